#!/usr/bin/env bash
# Observability suite: the Prometheus rules and config pass promtool (with
# unit tests of the alerts), every metric the dashboard and rules use is one
# Cairn exports, a real Prometheus scrapes a real three-node cluster and
# raises CairnNodeDown when a node is killed, and headless Chromium checks the
# status page (screenshots kept in the results folder).
#
# Needs root for apt-get (Debian `prometheus`, `chromium`). Bounded: every
# wait has a deadline; everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
RESULTS=${CAIRN_CI_RESULTS:-$ROOT/target/ci-results/60-observability}
mkdir -p "$RESULTS"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf -- '--- %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "install prometheus (promtool) and chromium"
if ! command -v promtool >/dev/null || ! command -v chromium >/dev/null || ! /usr/bin/python3 -c "import websocket" 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus chromium python3 python3-websocket curl ca-certificates >/dev/null
fi

step "promtool: config, rules, rule unit tests"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/tests.yml

step "every metric in deploy/ is one Cairn exports"
python3 - "$WORK/dashboard-rules.yml" <<'PY'
import json, re, sys
names = set(re.findall(r'"(cairn_[a-z0-9_]+)"', open("storage/src/telemetry.rs").read()))
used = set()
for path in ["deploy/grafana/cairn-dashboard.json", "deploy/prometheus/alerts.yml"]:
    used |= set(re.findall(r'\b(cairn_[a-z0-9_]+)(?![a-z0-9_:])', open(path).read()))
unknown = sorted(n for n in used
                 if re.sub(r'_(bucket|sum|count)$', '', n) not in names and n not in names)
if unknown:
    sys.exit("metrics used in deploy/ but not exported: %s" % unknown)
# Every dashboard query as a recording rule, so promtool parses its PromQL.
dash = json.load(open("deploy/grafana/cairn-dashboard.json"))
exprs = [t["expr"].replace("$job", "cairn")
         for p in dash["panels"] for t in p.get("targets", [])]
with open(sys.argv[1], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        f.write("      - record: dashboard_query_%d\n        expr: %s\n" % (i, json.dumps(e)))
print("%d metric names used, %d dashboard queries" % (len(used), len(exprs)))
PY
promtool check rules "$WORK/dashboard-rules.yml"

step "build"
cargo build --quiet --bin cairn
CAIRN=$ROOT/target/debug/cairn

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # description, seconds, command...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s waiting for: $what"
    sleep 0.5
  done
}

step "a real Prometheus scrapes a three-node cluster"
declare -A API RAFT NODEPID
CLUSTER=""
for i in 1 2 3; do API[$i]=$(free_port); RAFT[$i]=$(free_port); CLUSTER+="${CLUSTER:+,}$i=127.0.0.1:${RAFT[$i]}"; done
start_node() {
  local i=$1
  "$CAIRN" serve --id "$i" --data-dir "$WORK/n$i" --api-addr "127.0.0.1:${API[$i]}" \
    --raft-addr "127.0.0.1:${RAFT[$i]}" --initial-cluster "$CLUSTER" \
    >>"$RESULTS/node$i.log" 2>&1 &
  NODEPID[$i]=$!
  PIDS+=("$!")
}
for i in 1 2 3; do start_node "$i"; done
leader_known() { curl -sf "http://127.0.0.1:${API[1]}/v1/cluster" | grep -q '"leader":[0-9]'; }
wait_for "a leader" 60 leader_known

PROM_PORT=$(free_port)
sed -e 's/scrape_interval: 5s/scrape_interval: 1s/' -e 's/evaluation_interval: 15s/evaluation_interval: 1s/' \
    -e "s|- cairn-1:7070|- 127.0.0.1:${API[1]}|" -e "s|- cairn-2:7070|- 127.0.0.1:${API[2]}|" \
    -e "s|- cairn-3:7070|- 127.0.0.1:${API[3]}|" deploy/prometheus/prometheus.yml > "$WORK/prometheus.yml"
cp deploy/prometheus/alerts.yml "$WORK/alerts.yml"
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$RESULTS/prometheus.log" 2>&1 &
PIDS+=("$!")
query() { curl -sf --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1"; }
value_is() { query "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; sys.exit(0 if r and float(r[0]["value"][1])==float(sys.argv[1]) else 1)' "$2"; }
wait_for "all three nodes scraped" 60 value_is 'sum(up{job="cairn"})' 3
wait_for "exactly one leader in the scraped metrics" 30 value_is 'sum(cairn_raft_is_leader{job="cairn"})' 1
for i in 1 2 3; do curl -sf -XPUT "http://127.0.0.1:${API[1]}/v1/artifacts/ci-$i" -d '{"content":"scraped"}' >/dev/null; done
wait_for "request histograms scraped" 30 value_is 'count(cairn_http_request_duration_seconds_bucket{route="/v1/artifacts/{id}",le="+Inf"}) > 0' 1
wait_for "every node's resident memory scraped" 30 value_is 'count(process_resident_memory_bytes{job="cairn"} > 0)' 3
alert_state() { query 'ALERTS{alertname="CairnNodeDown"}' | grep -q "\"alertstate\":\"$1\""; }
alert_state pending && fail "CairnNodeDown raised while every node is up"
kill "${NODEPID[3]}"; wait "${NODEPID[3]}" 2>/dev/null || true
wait_for "CairnNodeDown pending for the killed node" 30 alert_state pending
query 'ALERTS{alertname="CairnNodeDown"}' | grep -q "127.0.0.1:${API[3]}" || fail "alert names the wrong instance"
echo "CairnNodeDown is pending for 127.0.0.1:${API[3]}"
kill "${NODEPID[1]}" "${NODEPID[2]}" 2>/dev/null || true

step "headless Chromium loads the status page"
CAIRN_TEST_RESULTS="$RESULTS" PYTHON=/usr/bin/python3 \
  timeout 600 cargo test --quiet --test status_page -- --ignored --nocapture
ls -l "$RESULTS"/*.png
echo "observability suite passed; results in $RESULTS"
