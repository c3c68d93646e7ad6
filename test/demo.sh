#!/usr/bin/env bash
# `npm run demo`: run weir on this machine and show what it does.
# Sets the machine up (Debian packages, npm ci, build; idempotent), then
# starts a private containerd, two pods with weir's proxy, captures and sends
# traffic, prints what happened, and removes everything it created.
#   npm run demo                 # containerd (falls back to netns pods if it cannot run)
#   npm run demo -- --netns      # plain network namespaces, no container runtime
#   WEIR_SKIP_SETUP=1 npm run demo   # skip test/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (it runs containerd and creates network namespaces); try: sudo npm run demo" >&2
  exit 1
fi
[ "${WEIR_SKIP_SETUP:-0}" = 1 ] || bash test/setup.sh
exec node --import tsx test/demo/demo.ts "$@"
