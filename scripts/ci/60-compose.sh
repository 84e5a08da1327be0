#!/usr/bin/env bash
# docker-compose.yml end to end, offline: scripts/compose-smoke.sh builds the
# images locally, runs the three-node cluster behind HAProxy, kills the
# leader's container under writes and checks every acknowledged write.
set -euo pipefail
cd "$(dirname "$0")/../.."

docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable" >&2; exit 1; }
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v debootstrap >/dev/null || missing+=(debootstrap)
python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  missing+=(docker-compose)
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi
exec scripts/compose-smoke.sh
