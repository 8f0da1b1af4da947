#!/usr/bin/env bash
# Install the build dependencies (Debian/Ubuntu, needs root or sudo) and build pndm into ./build.
#   tools/bootstrap.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
# openmpi-bin + libopenmpi-dev: pndm-gen -N over MPI ranks (PNDM_MPI, on when found)
pkgs=(build-essential cmake pkg-config libpng-dev libcjson-dev libopenblas-dev openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "bootstrap: installing ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$(nproc)"
