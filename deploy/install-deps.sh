#!/usr/bin/env bash
# Installs everything Turnpike needs to build, test and benchmark on Debian 12. Idempotent:
# when every package is already installed it changes nothing and touches no network.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang-14 libclang-rt-14-dev
  # libraries
  libboost1.81-dev libssl-dev libnghttp2-dev libyaml-cpp-dev libluajit2-5.1-dev libpcre2-dev zlib1g-dev libbrotli-dev
  prometheus-cpp-dev libspdlog-dev libfmt-dev googletest libgtest-dev libgmock-dev
  # test and benchmark peers
  curl wrk nghttp2-client nginx-light libnginx-mod-http-lua haproxy linux-perf
  python3 python3-pytest python3-h2 python3-yaml python3-grpcio python3-cryptography python3-brotli openssl ca-certificates
  # a real Prometheus server scrapes the admin listener in tests/integration/test_metrics.py
  prometheus
  # ops: keepalived checks deploy/lvs/keepalived.conf; dpkg-dev (dpkg-shlibdeps) for the CPack DEB package;
  # a real rsyslogd receives the syslog sink's lines in tests/integration/test_syslog.py
  keepalived dpkg-dev rsyslog
  # node discovery: c-ares resolves upstream names (src/upstream/dns.cc); a real dnsmasq answers them
  # in tests/integration/test_discovery.py
  libc-ares-dev dnsmasq-base
  # the health checker makes a tick's sends and receives in one system call (src/upstream/io_batch.h)
  liburing-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The packaged nginx starts a service on port 80; Turnpike's tests and benchmarks run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  $SUDO systemctl stop nginx || true
fi
