# A stand-in for the official `haproxy` image, for machines without an image
# registry: Debian's haproxy package, run like the official image (as the
# haproxy user, config at /usr/local/etc/haproxy/haproxy.cfg, master-worker
# mode in the foreground, SIGUSR1 for a graceful stop).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /usr/local/etc/haproxy
USER haproxy
WORKDIR /var/lib/haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
