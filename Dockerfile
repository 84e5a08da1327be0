# Cairn node image: compiled in the official Rust image, run from Debian slim
# as an unprivileged user with its data in a volume.
#
#   docker build -t cairn .
#   docker run -p 7070:7070 -v cairn-data:/var/lib/cairn cairn
#
# Without an image registry, scripts/offline-images.sh builds the two base
# images below locally under these same names first.

# The workspace reduced to what decides its dependencies: manifests, the
# lock, build scripts and their protos, the patched crates in vendor/ whole
# (they are dependencies), and every other Rust file replaced by a stub.
# Editing Cairn's code leaves this skeleton byte-identical, so the
# dependency layer below is reused; new crates need no change here.
FROM rust:1-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN find . -path ./vendor -prune -o -type f ! -name Cargo.toml ! -name Cargo.lock \
      ! -name build.rs ! -name '*.proto' ! -name '*.rs' -exec rm {} + \
 && find . -path ./vendor -prune -o -name '*.rs' ! -name build.rs \
      -exec sh -c 'for f; do echo "fn main() { }" >"$f"; done' sh {} + \
 && find . -type d -empty -delete

FROM rust:1-bookworm AS build
WORKDIR /src
COPY --from=skeleton /src ./
RUN cargo build --release --locked -p cairn
COPY . .
# COPY keeps the files' original times, older than the stubs' build: touch
# them so Cargo rebuilds the workspace crates from the real sources.
RUN find . \( -path ./target -o -path ./vendor \) -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p cairn \
 && install -D -m 0755 target/release/cairn /out/cairn

FROM debian:bookworm-slim
# curl serves the HEALTHCHECK and Kubernetes preStop hooks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cairn \
 && useradd --system --uid 10001 --gid cairn --home-dir /var/lib/cairn \
      --no-create-home --shell /usr/sbin/nologin cairn \
 && install -d -o cairn -g cairn -m 0750 /var/lib/cairn
COPY --from=build /out/cairn /usr/local/bin/cairn

# Listen on every interface inside the container; a cluster member also
# needs CAIRN_ADVERTISE_API_ADDR / CAIRN_ADVERTISE_RAFT_ADDR set to the
# names its peers reach it by (see docker-compose.yml).
ENV CAIRN_DATA_DIR=/var/lib/cairn \
    CAIRN_API_ADDR=0.0.0.0:7070 \
    CAIRN_RAFT_ADDR=0.0.0.0:7071
USER cairn:cairn
WORKDIR /var/lib/cairn
VOLUME ["/var/lib/cairn"]
EXPOSE 7070 7071
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${CAIRN_API_ADDR##*:}/health/live" || exit 1
ENTRYPOINT ["cairn"]
CMD ["serve"]
