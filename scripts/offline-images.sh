#!/usr/bin/env bash
# Builds, without an image registry, every image that Dockerfile and
# docker-compose.yml name, tagged with those names, so both work unchanged
# on a machine whose Docker engine can pull nothing:
#   debian:bookworm-slim  debootstrap + docker import (scripts/offline/debian-slim.sh)
#   rust:1-bookworm       that base + gcc + this machine's Rust toolchain + the
#                         crates of Cargo.lock, vendored (no crates.io needed)
#   haproxy:2.6           that base + Debian's haproxy, run like the official image
# Every step is cached (tarball, image tags keyed by toolchain version and
# Cargo.lock), so a rerun takes seconds. Set CAIRN_REBUILD_IMAGES=1 to rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CAIRN_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn-images}
REBUILD=${CAIRN_REBUILD_IMAGES:-0}
BASE=debian:bookworm-slim
RUST=rust:1-bookworm
HAPROXY=haproxy:2.6
# Without buildx the docker CLI falls back to the classic builder, which is
# all this needs; say so explicitly rather than print a warning per build.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

have() { [ "$REBUILD" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }
# docker build, quiet unless it fails.
build() { docker build -q "$@" >/dev/null 2>"$CACHE/build.log" || { cat "$CACHE/build.log" >&2; return 1; }; }
say() { printf '[offline-images] %s\n' "$*"; }

# Refuse to pretend: every image the two files use must be one built here.
check_names() {
  local wanted
  wanted=$( (sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' Dockerfile
             sed -n 's/^[[:space:]]*image:[[:space:]]*\([^[:space:]]\+\).*/\1/p' docker-compose.yml) | sort -u)
  for image in $wanted; do
    case "$image" in
      "$BASE" | "$RUST" | "$HAPROXY" | cairn:*) ;;
      *) say "Dockerfile or docker-compose.yml uses $image, which this script does not build"; exit 1 ;;
    esac
  done
}

build_base() {
  if have "$BASE"; then say "$BASE present"; return; fi
  scripts/offline/debian-slim.sh "$BASE"
}

build_rust() {
  local rustc_version toolchain_dir toolchain_tag lock_hash vendored_tag ctx
  rustc_version=$(rustc --version | awk '{print $2}')
  toolchain_dir=$(rustc --print sysroot)
  toolchain_tag=cairn-offline/rust-toolchain:$rustc_version
  if have "$toolchain_tag"; then
    say "$toolchain_tag present"
  else
    say "building $toolchain_tag from $toolchain_dir"
    ctx=$(mktemp -d "$CACHE/toolchain-ctx.XXXXXX")
    mkdir -p "$ctx/toolchain"
    # Hard links when possible: the toolchain is ~600 MB without its docs.
    for part in bin lib libexec etc; do
      [ -e "$toolchain_dir/$part" ] || continue
      cp -al "$toolchain_dir/$part" "$ctx/toolchain/" 2>/dev/null || cp -a "$toolchain_dir/$part" "$ctx/toolchain/"
    done
    cp scripts/offline/rust-toolchain.Dockerfile "$ctx/Dockerfile"
    build -t "$toolchain_tag" "$ctx" || { rm -rf "$ctx"; exit 1; }
    rm -rf "$ctx"
  fi

  lock_hash=$(sha256sum Cargo.lock | cut -c1-16)
  vendored_tag=cairn-offline/rust:$rustc_version-$lock_hash
  if have "$vendored_tag"; then
    say "$vendored_tag present"
  else
    say "vendoring the crates of Cargo.lock into $vendored_tag"
    ctx=$(mktemp -d "$CACHE/rust-ctx.XXXXXX")
    cargo vendor --locked --versioned-dirs "$ctx/vendor" >/dev/null 2>"$CACHE/vendor.log" \
      || { cat "$CACHE/vendor.log" >&2; rm -rf "$ctx"; exit 1; }
    cp scripts/offline/rust.Dockerfile "$ctx/Dockerfile"
    build --build-arg TOOLCHAIN_IMAGE="$toolchain_tag" -t "$vendored_tag" "$ctx" || { rm -rf "$ctx"; exit 1; }
    rm -rf "$ctx"
  fi
  docker tag "$vendored_tag" "$RUST"
}

build_haproxy() {
  if have "$HAPROXY"; then say "$HAPROXY present"; return; fi
  say "building $HAPROXY from Debian's haproxy package"
  build -t "$HAPROXY" -f scripts/offline/haproxy.Dockerfile scripts/offline
}

mkdir -p "$CACHE"
check_names
start=$SECONDS
build_base
build_rust
build_haproxy
say "images ready in $((SECONDS - start)) s: $BASE $RUST $HAPROXY"
