#!/usr/bin/env bash
# Stops the cluster started by scripts/cluster-up.sh: HAProxy, then each
# node with SIGTERM (graceful: leadership handed over, requests finished).
# --wipe also deletes its data and logs.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${CAIRN_CLUSTER_DIR:-./.cairn-cluster}

stop_pid() { # pidfile: TERM, wait up to 20 s, then KILL
  local file=$1 pid
  [ -e "$file" ] || return 0
  pid=$(cat "$file")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop_pid "$DIR/haproxy.pid"
for f in "$DIR"/node*.pid; do
  [ -e "$f" ] && stop_pid "$f"
done
if [ "${1:-}" = "--wipe" ]; then
  rm -rf "$DIR"
fi
echo "cluster stopped"
