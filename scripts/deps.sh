#!/usr/bin/env bash
# Installs the Debian 12 packages shadowtee needs to build, test, bench and
# run the demo, when any is missing. Idempotent; runs apt-get update once.
set -euo pipefail
PKGS=(
  build-essential pkg-config make gcc
  libuv1-dev libssl-dev openssl libhiredis-dev libcmocka-dev libjansson-dev
  node-llhttp
  redis-server wrk nginx-light haproxy curl procps util-linux
  python3 python3-flask python3-jsonschema python3-yaml python3-redis python3-pytest
  valgrind
  clang libfuzzer-14-dev libclang-rt-14-dev
)
if [ "${1:-}" = "--with-browser" ]; then PKGS+=(chromium); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
