#!/usr/bin/env bash
# Verifies a Cairn cluster behind a load balancer: the balancer's and every
# node's health, that load is spread across the nodes, and that a client
# reads its own writes through the balancer. Exits non-zero on any failure.
#
#   scripts/verify-cluster.sh [LB_URL] [NODE_URL...]
# Defaults match scripts/cluster-up.sh. CAIRN_API_TOKEN / CAIRN_ADMIN_TOKEN
# are sent when set.
set -uo pipefail

BASE=${CAIRN_BASE_PORT:-7000}
LB=${1:-http://127.0.0.1:${CAIRN_LB_PORT:-$BASE}}
shift || true
NODES=("$@")
if [ ${#NODES[@]} -eq 0 ]; then
  NODES=("http://127.0.0.1:$((BASE + 1))" "http://127.0.0.1:$((BASE + 2))" "http://127.0.0.1:$((BASE + 3))")
fi
REQUESTS=${VERIFY_REQUESTS:-30}
api_auth=(); [ -n "${CAIRN_API_TOKEN:-}" ] && api_auth=(-H "Authorization: Bearer $CAIRN_API_TOKEN")
admin_auth=(); [ -n "${CAIRN_ADMIN_TOKEN:-}" ] && admin_auth=(-H "Authorization: Bearer $CAIRN_ADMIN_TOKEN")

if [ -t 1 ]; then G=$'\e[32m' R=$'\e[31m' B=$'\e[1m' N=$'\e[0m'; else G="" R="" B="" N=""; fi
failed=0
declare -A results
ok() { printf '%s✓%s %s\n' "$G" "$N" "$*"; }
bad() { printf '%s✗%s %s\n' "$R" "$N" "$*"; failed=1; }
section() { printf '\n%s=== %s ===%s\n' "$B" "$*" "$N"; }
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }

printf '%s=== Cairn cluster verification ===%s\nbalancer %s, nodes %s\n' "$B" "$N" "$LB" "${NODES[*]}"

section "Load balancer"
if [ "$(status_of "$LB/health/ready")" = 200 ]; then ok "balancer answers /health/ready"; results[balancer]=1
else bad "balancer: /health/ready is not 200"; results[balancer]=0; fi

section "Individual nodes"
results[nodes]=1
for n in "${NODES[@]}"; do
  for p in /health/live /health/ready /health; do
    code=$(status_of "$n$p")
    if [ "$code" = 200 ]; then ok "$n$p"; else bad "$n$p answered $code"; results[nodes]=0; fi
  done
  score=$(curl -s --max-time 5 "$n/health" | jq -r '"score \(.score) (\(.status)), role \(.role), leader \(.leader)"' 2>/dev/null)
  [ -n "$score" ] && printf '    %s\n' "$score"
done

section "Cluster membership (through the balancer)"
# Reachability comes from probes once a second: allow a fresh cluster a
# few rounds before calling a member unreachable.
for _ in $(seq 1 10); do
  members=$(curl -s --max-time 5 "${admin_auth[@]}" "$LB/v1/cluster")
  voters=$(jq '[.members[] | select(.role == "voter")] | length' <<<"$members" 2>/dev/null || echo 0)
  unreachable=$(jq '[.members[] | select(.reachable | not)] | length' <<<"$members" 2>/dev/null || echo 0)
  [ "$voters" -ge 1 ] && [ "$unreachable" = 0 ] && break
  sleep 0.5
done
if [ "$voters" -ge 1 ] && [ "$unreachable" = 0 ]; then
  ok "leader $(jq .leader <<<"$members"), $voters voters, all reachable"; results[membership]=1
else bad "membership: $voters voters, $unreachable unreachable ($members)"; results[membership]=0; fi

section "Load distribution"
declare -A served
for _ in $(seq 1 "$REQUESTS"); do
  node=$(curl -s -D - -o /dev/null --max-time 5 "$LB/health/live" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cairn-node"{print $2}')
  served[${node:-none}]=$(( ${served[${node:-none}]:-0} + 1 ))
done
echo "load distribution across $REQUESTS requests:"
for k in $(printf '%s\n' "${!served[@]}" | sort); do
  awk -v k="$k" -v c="${served[$k]}" -v t="$REQUESTS" 'BEGIN{printf "  node %s: %d requests (%.1f%%)\n", k, c, 100*c/t}'
done
if [ "${#served[@]}" -eq "${#NODES[@]}" ] && [ -z "${served[none]:-}" ]; then
  ok "every node served requests"; results[distribution]=1
else bad "only ${#served[@]} of ${#NODES[@]} nodes served requests"; results[distribution]=0; fi

section "Read-your-writes through the balancer"
results[ryw]=1
run=$(date +%s%N)
for i in $(seq 1 20); do
  id="verify-$run-$i"; want="written $run $i"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${api_auth[@]}" -X PUT \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $id" \
    -d "{\"content\":\"$want\",\"kind\":\"verification\"}" "$LB/v1/artifacts/$id")
  got=$(curl -s --max-time 10 "${api_auth[@]}" "$LB/v1/artifacts/$id" | jq -r .content 2>/dev/null)
  if [ "$code" != 200 ] && [ "$code" != 201 ]; then bad "write $id answered $code"; results[ryw]=0
  elif [ "$got" != "$want" ]; then bad "read of $id right after its write returned '$got'"; results[ryw]=0; fi
done
[ "${results[ryw]}" = 1 ] && ok "20 writes each read back at once through the balancer"
for i in $(seq 1 20); do
  curl -s -o /dev/null --max-time 10 "${api_auth[@]}" -X DELETE "$LB/v1/artifacts/verify-$run-$i"
done

section "Verification summary"
for k in balancer nodes membership distribution ryw; do
  if [ "${results[$k]}" = 1 ]; then ok "$k"; else bad "$k"; fi
done
if [ "$failed" = 0 ]; then printf '\n%s✓ all verification checks passed%s\n' "$G" "$N"; exit 0; fi
printf '\n%s✗ verification failed%s\n' "$R" "$N"; exit 1
