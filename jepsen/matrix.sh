#!/usr/bin/env bash
# The full matrix (about 25 minutes): every workload under every family of
# faults, 60 s each, then the stale-read run the checker must catch, and a
# Markdown table of the results. Needs root. Usage: jepsen/matrix.sh [SECONDS]
set -uo pipefail
cd "$(dirname "$0")/.."
t=${1:-60}
results=${RESULTS:-jepsen-results/matrix-$(date +%s)}
cargo build -p cairn -p cairn-jepsen || exit 2
bin=target/debug/cairn-jepsen
trap '"$bin" cleanup >/dev/null 2>&1' EXIT INT TERM
run() { "$bin" run --results "$results" --time "$t" "$@"; echo "exit $? for: $*"; }

run --workload register --nemesis partition
run --workload register --nemesis partition-leader,partition-ring,partition-bridge
run --workload register --nemesis kill,pause
run --workload register --read-consistency lease --nemesis pause,clock,partition-leader
run --workload artifact --nemesis partition,kill,loss
run --workload set --nemesis partition,kill,pause,loss
run --workload lock --nemesis pause,clock,partition-leader,kill
run --workload register --nemesis loss,clock
run --workload register --nemesis transfer,membership
run --workload lock --nemesis transfer,pause,clock
run --workload set --nemesis membership,kill,loss
run --workload artifact --nemesis partition,transfer
# Expected invalid: stale reads are not linearizable.
run --workload register --read-consistency stale --nemesis partition
"$bin" table "$results"
