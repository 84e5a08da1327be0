#!/usr/bin/env bash
# Chaos smoke test (about two minutes): real cairn processes in network
# namespaces under partitions, kill -9, pauses, packet loss, leader
# transfers and membership changes, checked for linearizability and lost
# writes; and a run with stale reads that the checker must catch. Needs
# root (namespaces, iptables).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "jepsen smoke: needs root for network namespaces and iptables" >&2
  exit 1
fi
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo build -p cairn -p cairn-jepsen
bin=target/debug/cairn-jepsen
results=$(mktemp -d)
cleanup() {
  "$bin" cleanup >/dev/null 2>&1 || true
  rm -rf "$results"
}
trap cleanup EXIT INT TERM

run() {
  local expect=$1
  shift
  local code=0
  timeout 300 "$bin" run --results "$results" --cairn-bin target/debug/cairn "$@" || code=$?
  if [ "$code" -ne "$expect" ]; then
    echo "jepsen smoke: \`cairn-jepsen run $*\` exited $code, expected $expect" >&2
    find "$results" -name summary.json -newer "$0" -exec tail -n 40 {} \; >&2 || true
    exit 1
  fi
}

# Linearizable registers under partitions, kill -9, leader transfers and
# a voter removed and rejoining: must be valid.
run 0 --workload register --nemesis partition,kill,transfer,membership --time 50 --quiet 3 --hold 6
# Lost acknowledged writes under pauses, packet loss and clock skew: none.
run 0 --workload set --nemesis pause,loss,clock --time 25 --quiet 3 --hold 6
# Stale reads under partitions are not linearizable: the checker must say so.
run 1 --workload register --read-consistency stale --nemesis partition --time 20 --quiet 3 --hold 6
echo "jepsen smoke: ok"
