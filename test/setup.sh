#!/usr/bin/env bash
# Idempotent set-up of this machine for weir: system packages (Debian), npm
# dependencies, and the build. Safe to run repeatedly; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  iptables nftables libnftables-dev iproute2 containernetworking-plugins
  cmake g++ make pkg-config libbpf-dev clang llvm libclang-rt-14-dev
  dnsutils dnsmasq dnsperf haproxy nginx nghttp2-client socat conntrack procps util-linux
  containerd runc busybox-static curl openssl python3-h2 libnghttp2-dev
)

need_apt=0
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { need_apt=1; break; }
done
if [ "$need_apt" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup: missing Debian packages and not root; install: ${SYSTEM_PACKAGES[*]}" >&2; exit 1; fi
  echo "setup: installing Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}" >/dev/null
fi

# The ebpf backend pins its programs and maps in bpffs (the agent mounts it
# too when it can; its tests need it).
if [ "$(id -u)" = 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf || echo "setup: could not mount bpffs at /sys/fs/bpf (ebpf tests will fail)" >&2
fi

# npm dependencies: reinstall when the lockfile changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: build"
npm run --silent build
