#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan + libFuzzer) and fuzz.
#   tests/fuzz/run_fuzz.sh TARGET SECONDS     one target (safetensors, unet_config, ...)
#   tests/fuzz/run_fuzz.sh all SECONDS        every target, two at a time, SECONDS each
#   tests/fuzz/run_fuzz.sh list               the target names
# Environment: FUZZ_BUILD (build folder, default build-fuzz), FUZZ_NICE (nice level, default 10),
#   FUZZ_MERGE=1 (merge inputs that add coverage into tests/fuzz/corpus/TARGET afterwards).
# The working corpus is FUZZ_BUILD/fuzz-work/TARGET (seeded from tests/fuzz/corpus/TARGET); crashing,
# leaking, slow and timed-out inputs are copied into tests/fuzz/corpus/TARGET, so that the
# replay test (ctest -L fuzz) keeps running them. Logs: FUZZ_BUILD/fuzz-logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
TARGETS="safetensors unet_config scheduler_config model model_index npy png_text png_decode zip pickle output_pattern"
B=${FUZZ_BUILD:-build-fuzz}
NICE=${FUZZ_NICE:-10}

usage() { sed -n '2,11p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = list ]; then echo "$TARGETS"; exit 0; fi
[ $# -eq 2 ] || usage
WHICH=$1 SECS=$2
case "$SECS" in ''|*[!0-9]*) echo "run_fuzz.sh: SECONDS must be a positive integer" >&2; exit 2;; esac
if [ "$WHICH" = all ]; then LIST=$TARGETS
else
  case " $TARGETS " in *" $WHICH "*) LIST=$WHICH;; *) echo "run_fuzz.sh: unknown target '$WHICH' (try: list)" >&2; exit 2;; esac
fi
command -v clang >/dev/null || { echo "run_fuzz.sh: clang is required (apt-get install clang)" >&2; exit 2; }

CC=clang cmake -S "$SRC" -B "$B" -DPNDM_FUZZ=ON -DPNDM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
for t in $LIST; do nice -n "$NICE" cmake --build "$B" -j 2 --target "fuzz_$t" >/dev/null; done

dict_for() {
  case "$1" in
    png_*) echo "$SRC/tests/fuzz/png.dict";;
    npy) echo "$SRC/tests/fuzz/npy.dict";;
    zip) echo "$SRC/tests/fuzz/zip.dict";;
    pickle) echo "$SRC/tests/fuzz/pickle.dict";;
    *) echo "$SRC/tests/fuzz/json.dict";;
  esac
}

# per-target extra options: the checkpoint readers run several parses per input, so keep inputs
# small (the committed seeds include tiny real torch files; larger seeds are truncated)
extra_for() {
  case "$1" in
    zip|pickle) echo "-max_len=8192";;
    *) echo "";;
  esac
}

fuzz_one() {
  local t=$1 work="$B/fuzz-work/$1" art="$B/fuzz-artifacts/$1" log="$B/fuzz-logs/$1.log"
  mkdir -p "$work" "$art" "$B/fuzz-logs"
  local t0=$SECONDS
  # -timeout: an input taking over 10 s is a hang; -rss_limit_mb: runaway allocation
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  TMPDIR=${TMPDIR:-/tmp} \
    nice -n "$NICE" "$B/tests/fuzz/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -report_slow_units=2 -print_final_stats=1 -dict="$(dict_for "$t")" $(extra_for "$t") \
      -artifact_prefix="$art/" "$work" "$SRC/tests/fuzz/corpus/$t" >"$log" 2>&1 || true
  local execs; execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  local found=0
  for f in "$art"/*; do
    [ -e "$f" ] || continue
    cp -n "$f" "$SRC/tests/fuzz/corpus/$t/$(basename "$f")"
    found=$((found + 1))
  done
  printf '%-18s %6d s  %12s executions  %d artifact(s)  (log %s)\n' "$t" $((SECONDS - t0)) "${execs:-?}" "$found" "$log"
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    nice -n "$NICE" "$B/tests/fuzz/fuzz_$t" -merge=1 -timeout=10 "$SRC/tests/fuzz/corpus/$t" "$work" >>"$log" 2>&1 || true
  fi
}

set -- $LIST
while [ $# -gt 0 ]; do
  fuzz_one "$1" &
  if [ $# -gt 1 ]; then fuzz_one "$2" & shift; fi
  shift
  wait
done
