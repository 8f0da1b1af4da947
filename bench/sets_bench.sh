#!/usr/bin/env bash
# Sample-set throughput (pndm-gen -N): one process x 2 threads, 2 MPI ranks x 1 thread on this
# host, and K ranks on K "hosts" (network namespaces, TCP only: bench/netns_mpi.sh), each run
# REPEAT times, interleaved; one line per run: wall time and images/s, CPU seconds per image (the
# ranks' own user+sys CPU time, summed: the per-image cost, which holds when other work shares
# the cores), the ranks' mean wait for a chunk between chunks (the scheduling overhead), all from
# --json, and the load average before and after. Ranks are not bound to cores (--bind-to none:
# the cores are shared with other work; OpenMPI binds 2 ranks to cores by default).
#   bench/sets_bench.sh MODEL N BATCH [STEPS] [REPEAT] [K...]  > runs.txt
# e.g. bench/sets_bench.sh weights/fashion_mnist.safetensors 64 16 50 3 2 4
# Needs root (namespaces) and OpenMPI; writes into a temporary folder it removes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
GEN="${PNDM_GEN:-$HERE/../build/pndm-gen}"
MODEL=$1 N=$2 B=$3 STEPS=${4:-50} REPEAT=${5:-3}
shift $(($# < 5 ? $# : 5))
KS=("$@")
T=$(mktemp -d /tmp/pndm-sets-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
ARGS=(-m "$(realpath "$MODEL")" -N "$N" -b "$B" -n "$STEPS" -s 0 -q --json)
load() { cut -d' ' -f1 /proc/loadavg; }
images_per_s() { sed -n '/"timings"/,$p' "$1" | sed -n 's/.*"images_per_s":[[:space:]]*\([0-9.e+-]*\).*/\1/p' | head -1; }
wall_s() { sed -n 's/.*"wall_s":[[:space:]]*\([0-9.e+-]*\).*/\1/p' "$1" | head -1; }
# mean wait per chunk over the ranks (ms): sum of wait_s / sum of (chunks - 1)
wait_ms() {
  awk '/"chunks":/ {gsub(/[^0-9.]/, "", $2); c += $2 - 1} /"wait_s":/ {gsub(/[^0-9.e-]/, "", $2); w += $2}
       END {printf "%.2f", (c > 0 ? 1000 * w / c : 0)}' "$1"
}
one() { # one NAME COMMAND...
  local name=$1; shift
  rm -rf "$T/set"; mkdir -p "$T/set"
  local l0; l0=$(load)
  "$@" >"$T/json" 2>"$T/err" || {
    echo "$name: failed: $(tail -3 "$T/err")" >&2
    return 1
  }
  local cpu; cpu=$(awk -v n="$N" '/"cpu_s":/ {gsub(/[^0-9.e-]/, "", $2); c += $2} END {printf "%.3f", c / n}' "$T/json")
  printf '%-22s N=%s B=%s steps=%s  wall %8.2f s  %8.3f images/s  %7.3f cpu-s/image  wait %6s ms/chunk  load %s -> %s\n' \
    "$name" "$N" "$B" "$STEPS" "$(wall_s "$T/json")" "$(images_per_s "$T/json")" "$cpu" "$(wait_ms "$T/json")" "$l0" "$(load)"
}
if [ ${#KS[@]} -gt 0 ]; then "$HERE/netns_mpi.sh" down; "$HERE/netns_mpi.sh" up "$(printf '%s\n' "${KS[@]}" | sort -n | tail -1)"; fi
echo "# $(uname -n) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $(basename "$MODEL")"
for rep in $(seq "$REPEAT"); do
  one "1 proc x 2 threads" "$GEN" "${ARGS[@]}" -t 2 -o "$T/set/%05d.png"
  one "2 ranks x 1 thread" mpirun --allow-run-as-root -n 2 --bind-to none "$GEN" "${ARGS[@]}" -t 1 -o "$T/set/%05d.png"
  for k in "${KS[@]}"; do
    one "$k netns hosts x 1 thr" "$HERE/netns_mpi.sh" run "$k" 1 -- "$GEN" "${ARGS[@]}" -t 1 -o "$T/set/%05d.png"
  done
done
if [ ${#KS[@]} -gt 0 ]; then "$HERE/netns_mpi.sh" down; fi
