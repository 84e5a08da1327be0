# `rust:1-bookworm` for machines without an image registry or crates.io:
# the toolchain image plus the crates Cargo.lock names, vendored, with Cargo
# told to take crates.io packages from them. Containers built from it never
# touch the network.
ARG TOOLCHAIN_IMAGE
FROM ${TOOLCHAIN_IMAGE}
COPY vendor/ /usr/local/cargo/vendor/
RUN printf '%s\n' \
      '[source.crates-io]' \
      'replace-with = "vendored-sources"' \
      '[source.vendored-sources]' \
      'directory = "/usr/local/cargo/vendor"' \
      >/usr/local/cargo/config.toml
ENV CARGO_NET_OFFLINE=true
