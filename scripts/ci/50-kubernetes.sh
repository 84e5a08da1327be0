#!/usr/bin/env bash
# Validates deploy/kubernetes/ against the Kubernetes API schemas with
# kubernetes-validate (PyPI), strictly: unknown or misspelt fields fail.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=${K8S_VERSION:-1.30.0}
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT

if ! python3 -m venv "$venv" >/dev/null 2>&1; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv >/dev/null
  python3 -m venv "$venv"
fi
timeout 300 "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
"$venv/bin/kubernetes-validate" --version

echo "validating deploy/kubernetes against Kubernetes $VERSION (strict)"
timeout 120 "$venv/bin/kubernetes-validate" --strict --kubernetes-version "$VERSION" deploy/kubernetes/*.yaml
