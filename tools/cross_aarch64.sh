#!/usr/bin/env bash
# Portability check: cross-build pndm for aarch64 (Debian multiarch) and run the unit tests and
# the golden parity tests under qemu-aarch64 (user mode). There the own kernels take the portable
# C path, so --gemm auto runs the matrix products on OpenBLAS; the golden tests also run on the
# native (portable C) tiles.
#   tools/cross_aarch64.sh [--no-install] [ctest args...]      (needs root or sudo to install)
# Build directory: build-aarch64/.
set -euo pipefail
cd "$(dirname "$0")/.."
install=1
if [ "${1:-}" = "--no-install" ]; then install=0; shift; fi
if [ $install = 1 ]; then
  pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libpng-dev:arm64 libcjson-dev:arm64 libopenblas-dev:arm64)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "cross_aarch64: installing ${missing[*]}" >&2
    dpkg --print-foreign-architectures | grep -qx arm64 || $sudo dpkg --add-architecture arm64
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE="$PWD/tools/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DPNDM_WERROR=ON >/dev/null
cmake --build build-aarch64 -j "$(nproc)"
file build-aarch64/pndm-gen
# Executables run under qemu-aarch64 via ctest's emulator; the cli_*.sh tests start the binaries
# from bash themselves (no binfmt here), so they are left out, as are the fuzz corpus replays.
if [ $# -eq 0 ]; then set -- -R '^test_(ops|rng|scheduler|safetensors|png|unet|unet_openblas|unet_generic|pipeline)$'; fi
ctest --test-dir build-aarch64 --output-on-failure -j "$(nproc)" "$@"
