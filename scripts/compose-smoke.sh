#!/usr/bin/env bash
# End-to-end check of docker-compose.yml, offline: build every image locally,
# start the three nodes and the balancer, write and read through the
# balancer, kill the leader's container while writing, bring it back, and
# verify that every acknowledged write is still there, on every node.
# Exits 0 only if all of that holds. Bounded in time (CAIRN_SMOKE_LIMIT
# seconds, default 3000: a cold image build on two cores takes most of it);
# always removes its containers, network and volumes, even on failure or
# timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=${CAIRN_SMOKE_LIMIT:-3000}
if [ -z "${CAIRN_SMOKE_BOUNDED:-}" ]; then
  # timeout signals the whole process group, so the trap below still runs
  # `down -v`; --kill-after bounds that clean-up too.
  CAIRN_SMOKE_BOUNDED=1 exec timeout --kill-after=120 "$LIMIT" "$0" "$@"
fi

say() { printf '[compose-smoke %s] %s\n' "$(date +%T)" "$*"; }
fail() { say "FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }

# The compose command this machine has.
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  fail "neither 'docker compose' nor 'docker-compose' is installed"
fi
for tool in curl jq timeout; do
  command -v "$tool" >/dev/null || fail "$tool is needed"
done

# A project and a loopback port of our own, so nothing else is disturbed.
export COMPOSE_PROJECT_NAME=cairn-smoke-$$
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CAIRN_PUBLISH=127.0.0.1:$PORT
LB=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
compose() { "${COMPOSE[@]}" "$@"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [ -f "$WORK/stop" ] || touch "$WORK/stop"
  wait 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    say "failed (exit $status); last logs:"
    compose logs --no-color --tail 40 2>&1 | sed 's/^/    /' || true
  fi
  docker rm -f -v "$COMPOSE_PROJECT_NAME-wrapper" >/dev/null 2>&1 || true
  say "docker compose down -v"
  compose down -v --remove-orphans >/dev/null 2>&1 || say "down -v failed"
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@"; do
    [ $((SECONDS - start)) -lt "$limit" ] || fail "$what: not within ${limit}s"
    sleep 0.5
  done
}

# ---------------------------------------------------------------- images
say "building base images offline (scripts/offline-images.sh)"
t=$SECONDS
scripts/offline-images.sh 2>&1 | grep -v -e DEPRECATED -e 'BuildKit is currently disabled' -e 'environment-variable' -e '^ *$' | sed 's/^/    /'
say "base images: $((SECONDS - t)) s"
t=$SECONDS
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
compose build >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "image build"; }
say "cairn image build: $((SECONDS - t)) s"

# The Kubernetes StatefulSet derives the node id from the pod ordinal in a
# shell wrapper: run that wrapper, as Kubernetes would after reducing "$$"
# to "$", in the image just built, and ask the node who it is.
wrapper=$(python3 -c '
import yaml
sts = yaml.safe_load(open("deploy/kubernetes/statefulset.yaml"))
print(sts["spec"]["template"]["spec"]["containers"][0]["args"][0].replace("$$", "$"))')
docker run -d --name "$COMPOSE_PROJECT_NAME-wrapper" -e POD_NAME=cairn-2 \
  --entrypoint /bin/sh cairn:latest -c "$wrapper" >/dev/null
wrapper_id() {
  docker exec "$COMPOSE_PROJECT_NAME-wrapper" curl -fsS --max-time 2 http://127.0.0.1:7070/v1/cluster 2>/dev/null |
    jq -e '.node_id == 3' >/dev/null
}
wait_for 30 "the StatefulSet wrapper running pod cairn-2 as node 3" wrapper_id
docker rm -f -v "$COMPOSE_PROJECT_NAME-wrapper" >/dev/null
say "StatefulSet wrapper: pod cairn-2 runs as node 3"

# ---------------------------------------------------------------- up
cluster() { curl -fsS --max-time 3 "$LB/v1/cluster" 2>/dev/null; }
lb_ready() { curl -fsS --max-time 3 -o /dev/null "$LB/health/ready" 2>/dev/null; }

t0=$(now_ms)
compose up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "docker compose up"; }
wait_for 120 "balancer answering /health/ready" lb_ready
probe_write() {
  curl -fsS --max-time 10 -o /dev/null -X PUT -H 'Idempotency-Key: smoke-probe' \
    -d '{"conversation_id":"smoke","kind":"probe","title":"probe","content":"probe"}' \
    "$LB/v1/artifacts/smoke-probe" 2>/dev/null
}
wait_for 60 "first write through the balancer" probe_write
ready_ms=$(($(now_ms) - t0))
say "time to ready: ${ready_ms} ms (up -d to the first acknowledged write through the balancer)"

all_reachable() {
  cluster | jq -e '(.members | length) == 3 and all(.members[]; .reachable) and .leader != null' >/dev/null 2>&1
}
wait_for 60 "three reachable members" all_reachable
# The image's own HEALTHCHECK (/health/live) must pass on every node.
all_healthy() {
  local n
  for n in 1 2 3; do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q cairn-$n)" 2>/dev/null)" = healthy ] || return 1
  done
}
wait_for 60 "Docker HEALTHCHECK healthy on all three nodes" all_healthy
say "Docker HEALTHCHECK: all three nodes healthy"

# Round-robin over all three: every node must answer some requests.
seen_all_nodes() {
  local i
  for i in 1 2 3 4 5 6; do
    curl -fsS --max-time 3 -o /dev/null -D - "$LB/health/ready" 2>/dev/null |
      tr -d '\r' | sed -n 's/^x-cairn-node: //Ip' >>"$WORK/nodes"
  done
  [ "$(sort -u "$WORK/nodes" | wc -l)" -eq 3 ]
}
: >"$WORK/nodes"
wait_for 60 "requests spread over all three nodes" seen_all_nodes
say "balancer spreads requests: $(sort "$WORK/nodes" | uniq -c | awk '{printf "node %s: %s  ", $2, $1}')"

# ---------------------------------------------------------------- writer
# Writes w-00001, w-00002, ... through the balancer, one at a time, each
# retried with the same Idempotency-Key until acknowledged (or given up
# after 20 s). Logs every acknowledgement and every failed attempt.
writer() {
  local n=0 id code start body
  while [ ! -f "$WORK/stop" ] && [ "$n" -lt 900 ]; do
    n=$((n + 1))
    id=$(printf 'w-%05d' "$n")
    body="{\"conversation_id\":\"smoke\",\"kind\":\"smoke\",\"title\":\"$id\",\"content\":\"content of $id\"}"
    start=$SECONDS
    while :; do
      code=$(curl -s -o "$WORK/resp" -w '%{http_code}' --max-time 10 -X PUT \
        -H 'Content-Type: application/json' -H "Idempotency-Key: $id" \
        --data "$body" "$LB/v1/artifacts/$id" 2>/dev/null) || true
      if [ "$code" = 200 ] || [ "$code" = 201 ]; then
        echo "$(now_ms) $id" >>"$WORK/acked"
        break
      fi
      echo "$(now_ms) $id ${code:-000}" >>"$WORK/failed"
      if [ $((SECONDS - start)) -ge 20 ] || [ -f "$WORK/stop" ]; then
        echo "$(now_ms) $id" >>"$WORK/gave_up"
        break
      fi
      sleep 0.2
    done
  done
}
: >"$WORK/acked"
: >"$WORK/failed"
: >"$WORK/gave_up"
acked() { wc -l <"$WORK/acked"; }
acked_since() { awk -v t="$1" '$1 >= t' "$WORK/acked" | wc -l; }
writer &
writer_pid=$!

at_least_acked() { [ "$(acked)" -ge "$1" ]; }
wait_for 60 "30 writes before the kill" at_least_acked 30

# ---------------------------------------------------------------- kill
leader=$(cluster | jq -r '.leader')
[[ "$leader" =~ ^[123]$ ]] || fail "leader is '$leader'"
kill_ms=$(now_ms)
say "killing the leader's container: cairn-$leader"
compose kill cairn-"$leader" >/dev/null 2>&1 || fail "docker compose kill cairn-$leader"

new_leader() {
  local l
  l=$(cluster | jq -r '.leader') || return 1
  [[ "$l" =~ ^[123]$ ]] && [ "$l" != "$leader" ] && new=$l
}
wait_for 30 "a new leader" new_leader
say "new leader: node $new after $(($(now_ms) - kill_ms)) ms"
acked_since_ge() { [ "$(acked_since "$1")" -ge "$2" ]; }
wait_for 60 "30 writes with the old leader down" acked_since_ge "$kill_ms" 30

# ---------------------------------------------------------------- back
back_ms=$(now_ms)
state=$(docker inspect -f '{{.State.Status}}' "$(compose ps -q cairn-"$leader")" 2>/dev/null) || state=unknown
say "bringing cairn-$leader back (its container is $state)"
compose start cairn-"$leader" >/dev/null 2>&1 || fail "docker compose start cairn-$leader"
node_ready() {
  compose exec -T cairn-"$leader" curl -fsS --max-time 3 -o /dev/null \
    http://127.0.0.1:7070/health/ready >/dev/null 2>&1
}
wait_for 60 "cairn-$leader ready again" node_ready
wait_for 60 "three reachable members again" all_reachable
say "cairn-$leader ready again after $(($(now_ms) - back_ms)) ms"
wait_for 60 "30 writes after the node came back" acked_since_ge "$back_ms" 30
touch "$WORK/stop"
wait "$writer_pid"
end_ms=$(now_ms)

# ---------------------------------------------------------------- verify
total=$(acked)
before=$(awk -v k="$kill_ms" '$1 < k' "$WORK/acked" | wc -l)
down=$(awk -v k="$kill_ms" -v b="$back_ms" '$1 >= k && $1 < b' "$WORK/acked" | wc -l)
after=$(awk -v b="$back_ms" '$1 >= b' "$WORK/acked" | wc -l)
failed=$(wc -l <"$WORK/failed")
gave_up=$(wc -l <"$WORK/gave_up")
gap=$(awk 'NR > 1 && $1 - p > g { g = $1 - p } { p = $1 } END { print g + 0 }' "$WORK/acked")

say "verifying $total acknowledged writes through the balancer"
bad=0
while read -r _ id; do
  got=$(curl -fsS --max-time 10 "$LB/v1/artifacts/$id/content" 2>/dev/null) || got="<error>"
  if [ "$got" != "content of $id" ]; then
    say "lost or wrong: $id -> $got"
    bad=$((bad + 1))
  fi
done <"$WORK/acked"

# The restarted node must hold every acknowledged write itself.
last=$(cluster | jq -r '.commit_index')
caught_up() {
  local applied
  applied=$(compose exec -T cairn-"$leader" curl -fsS --max-time 3 \
    http://127.0.0.1:7070/v1/cluster 2>/dev/null | jq -r '.applied_index') || return 1
  [ "${applied:-0}" -ge "${last:-0}" ]
}
wait_for 30 "cairn-$leader applying everything" caught_up
compose exec -T cairn-"$leader" curl -fsS --max-time 10 \
  'http://127.0.0.1:7070/v1/artifacts?prefix=w-&limit=1000&consistency=stale' 2>/dev/null |
  jq -r '.artifacts[].id' | sort >"$WORK/on_restarted"
missing=$(awk '{print $2}' "$WORK/acked" | sort | comm -23 - "$WORK/on_restarted" | wc -l)

say "----------------------------------------------------------------"
say "time to ready:                     ${ready_ms} ms"
say "writes acknowledged before kill:   $before"
say "writes acknowledged leader down:   $down"
say "writes acknowledged after return:  $after"
say "writes acknowledged in total:      $total in $(((end_ms - t0) / 1000)) s"
say "failed requests (retried):         $failed $(awk '{print $3}' "$WORK/failed" | sort | uniq -c | awk '{printf "[%s x %s] ", $1, $2}')"
say "writes given up after 20 s:        $gave_up"
say "longest gap between acks:          ${gap} ms"
say "acknowledged writes lost or wrong: $bad (through the balancer)"
say "missing on the restarted node:     $missing"
say "----------------------------------------------------------------"
[ "$bad" -eq 0 ] || fail "$bad acknowledged writes lost or wrong"
[ "$missing" -eq 0 ] || fail "$missing acknowledged writes missing on the restarted node"
[ "$before" -ge 30 ] && [ "$down" -ge 30 ] && [ "$after" -ge 30 ] || fail "too few writes in some phase"
say "PASS"
