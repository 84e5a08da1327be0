#!/usr/bin/env bash
# Starts a local three-node Cairn cluster behind HAProxy (installed from
# Debian if missing) with active health checks on /health/ready.
#
#   scripts/cluster-up.sh            # balancer on 127.0.0.1:7000
#   scripts/cluster-down.sh [--wipe] # stop (and delete the data)
#
# Environment: CAIRN_CLUSTER_DIR (default ./.cairn-cluster), CAIRN_LB_PORT
# (7000), CAIRN_BASE_PORT (7000: APIs on +1..+3, peers on +101..+103, HAProxy
# stats on +9), CAIRN_BIN (default: target/debug/cairn, built if missing),
# and any CAIRN_* node setting (e.g. CAIRN_ADMIN_TOKEN) passed to every node.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CAIRN_CLUSTER_DIR:-./.cairn-cluster}
BASE=${CAIRN_BASE_PORT:-7000}
LB_PORT=${CAIRN_LB_PORT:-$BASE}
STATS_PORT=$((BASE + 9))
BIN=${CAIRN_BIN:-target/debug/cairn}

if ! command -v haproxy >/dev/null 2>&1; then
  echo "installing haproxy (Debian package)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
if [ ! -x "$BIN" ]; then
  echo "building cairn"
  cargo build --quiet --bin cairn
fi

mkdir -p "$DIR"
if [ -e "$DIR/haproxy.pid" ] || ls "$DIR"/node*.pid >/dev/null 2>&1; then
  echo "a cluster already runs from $DIR; stop it with scripts/cluster-down.sh" >&2
  exit 1
fi

INITIAL=""
for i in 1 2 3; do
  INITIAL="${INITIAL:+$INITIAL,}$i=127.0.0.1:$((BASE + 100 + i))"
done
SERVERS=""
for i in 1 2 3; do
  "$BIN" serve --id "$i" --data-dir "$DIR/node$i" \
    --api-addr "127.0.0.1:$((BASE + i))" --raft-addr "127.0.0.1:$((BASE + 100 + i))" \
    --initial-cluster "$INITIAL" >>"$DIR/node$i.log" 2>&1 &
  echo $! >"$DIR/node$i.pid"
  SERVERS="$SERVERS    server node$i 127.0.0.1:$((BASE + i)) check\n"
done

sed -e "s|@BIND@|127.0.0.1:$LB_PORT|" -e "s|@STATS@|127.0.0.1:$STATS_PORT|" \
  -e "s|@SERVERS@|$SERVERS|" scripts/haproxy/cairn.cfg >"$DIR/haproxy.cfg"
haproxy -c -f "$DIR/haproxy.cfg" >/dev/null
haproxy -D -p "$DIR/haproxy.pid" -f "$DIR/haproxy.cfg"

printf 'waiting for the cluster to be ready through the balancer'
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$LB_PORT/health/ready" 2>/dev/null; then
    printf '\ncluster up: balancer http://127.0.0.1:%s, stats http://127.0.0.1:%s/, nodes http://127.0.0.1:%s..%s, data and logs in %s\n' \
      "$LB_PORT" "$STATS_PORT" "$((BASE + 1))" "$((BASE + 3))" "$DIR"
    exit 0
  fi
  printf '.'
  sleep 0.5
done
printf '\nthe cluster did not become ready within 60 s; see %s/node*.log\n' "$DIR" >&2
exit 1
