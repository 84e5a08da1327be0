#!/usr/bin/env bash
# Zero-downtime operations behind a real HAProxy (Debian package): the
# rolling-restart test, then the local cluster scripts and their
# verification. Bounded in time; cleans up on any exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v haproxy >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi

export CAIRN_CLUSTER_DIR
CAIRN_CLUSTER_DIR=$(mktemp -d)
# Ports unlikely to clash with a developer's own cluster on 7000.
export CAIRN_BASE_PORT=17400
cleanup() {
  bash scripts/cluster-down.sh --wipe >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "--- rolling restart behind HAProxy"
timeout 600 cargo test --test rolling_restart -- --ignored --nocapture

echo "--- local cluster behind HAProxy, then verification"
cargo build --quiet --bin cairn
timeout 120 bash scripts/cluster-up.sh
timeout 120 bash scripts/verify-cluster.sh
