#!/usr/bin/env bash
# Benchmark harness smoke run: cairn-bench --quick against Cairn, etcd
# (Debian etcd-server) and Redis (Debian redis-server), from the debug build
# `cargo test --workspace` already made, with short points. It proves the
# harness drives all three systems and fails on any failed operation; the
# numbers of a debug build mean nothing (docs/BENCHMARKS.md has how to run the
# real one, with --release).
#
# Needs root for apt-get. Bounded: the bench stops its own servers, and the
# whole run has a timeout.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
RESULTS=${CAIRN_CI_RESULTS:-$ROOT/target/ci-results/70-bench-smoke}
mkdir -p "$RESULTS"

step() { printf -- '--- %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "install etcd-server and redis-server"
if ! command -v etcd >/dev/null || ! command -v redis-server >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends etcd-server redis-server >/dev/null
fi
# Debian starts the packaged services; the bench runs its own on other ports.
for svc in etcd redis-server; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done

step "cairn-bench --quick (debug build, 2 s points, 2 failovers each)"
timeout 600 cargo run --quiet -p cairn-bench -- --quick --duration 2 \
  --cairn-bin target/debug/cairn \
  --out "$RESULTS/run" --json "$RESULTS/report.json"

step "every system ran every workload it supports, with no failed operation"
python3 - "$RESULTS/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
runs = report["runs"]
want = {
    "cairn": {"put", "get_linearizable", "get_stale", "lock", "artifact_64k", "artifact_1m", "failover"},
    "etcd": {"put", "get_linearizable", "get_stale", "lock", "failover"},
    "redis": {"put", "get_stale", "lock"},
}
problems = []
for system, workloads in want.items():
    seen = {r["workload"] for r in runs if r["system"] == system}
    if seen != workloads:
        problems.append(f"{system}: ran {sorted(seen)}, expected {sorted(workloads)}")
for r in runs:
    if r["ops"] == 0 or r["errors"] != 0:
        problems.append(f"{r['system']} {r['workload']} {r.get('op') or ''}: {r['ops']} ok, {r['errors']} failed ({r.get('first_error')})")
if not report["targets"]:
    problems.append("no targets judged")
for p in problems:
    print("FAIL:", p)
sys.exit(1 if problems else 0)
PY
echo "bench smoke passed; report in $RESULTS"
