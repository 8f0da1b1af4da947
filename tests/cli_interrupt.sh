#!/usr/bin/env bash
# SIGINT / SIGTERM during a pndm-gen run: exit 130 / 143, one message, no temporary file, no
# partial output; when the signal arrives while a batch is being written through a %d pattern,
# the images already written stay complete and the rest are not started.
#   bash tests/cli_interrupt.sh BUILD_DIR DATA_DIR
set -u
export LC_ALL=C
GEN="$1/pndm-gen"
DATA="$2"
TINY="$DATA/hostile/tiny.safetensors"
GRAY="$DATA/unet/c_gray/model"
T=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }

no_temp() { # no_temp DIR WHAT
  if ls "$1"/*.tmp.* >/dev/null 2>&1; then bad "$2: temporary file left: $(ls "$1"/*.tmp.*)"; else ok; fi
}
complete_png() { [ "$(tail -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "49454e44ae426082" ]; }

# wait_for COND_COMMAND...: poll up to 180 s (sanitizer builds are slow, and ctest -j2 on a shared
# 2-core machine ran the 20000-image batch past 60 s before its 50th image)
wait_for() {
  local i
  for i in $(seq 1800); do "$@" && return 0; kill -0 "$PID" 2>/dev/null || return 1; sleep 0.1; done
  return 1
}

# 1. during generation: a long run (200 steps on the 28x28 test model), signalled once it has
#    started sampling (its first progress line)
for sig in INT TERM; do
  want=$([ $sig = INT ] && echo 130 || echo 143)
  mkdir -p "$T/gen_$sig"
  "$GEN" -m "$GRAY" -n 200 -b 2 -s 1 -o "$T/gen_$sig/img.png" --latents "$T/gen_$sig/lat.npy" \
    >"$T/out_$sig" 2>"$T/err_$sig" &
  PID=$!
  if ! wait_for grep -q "UNet call" "$T/err_$sig"; then bad "SIG$sig: the run never started sampling: $(cat "$T/err_$sig")"; fi
  t0=$SECONDS
  kill -$sig "$PID"
  wait "$PID"; rc=$?; PID=""
  [ "$rc" = "$want" ] && ok || bad "SIG$sig during generation: exit $rc, expected $want; stderr: $(tail -3 "$T/err_$sig")"
  [ $((SECONDS - t0)) -le 10 ] && ok || bad "SIG$sig: took $((SECONDS - t0)) s to stop"
  grep -q "^pndm-gen: interrupted at UNet call" "$T/err_$sig" && ok || bad "SIG$sig: no 'interrupted' message: $(tail -2 "$T/err_$sig")"
  [ -z "$(ls -A "$T/gen_$sig")" ] && ok || bad "SIG$sig: files left: $(ls -A "$T/gen_$sig")"
  [ ! -s "$T/out_$sig" ] && ok || bad "SIG$sig: stdout lists files: $(cat "$T/out_$sig")"
done

# 2. while a batch is written: 20000 tiny images through a pattern, signalled after 50 are out
mkdir -p "$T/batch"
"$GEN" -q -m "$TINY" -n 1 --skip-prk-steps -b 20000 -s 2 -o "$T/batch/img_%05d.png" >"$T/out_b" 2>"$T/err_b" &
PID=$!
if wait_for test -e "$T/batch/img_00050.png"; then
  kill -INT "$PID"
  wait "$PID"; rc=$?; PID=""
  [ "$rc" = 130 ] && ok || bad "SIGINT while writing: exit $rc, expected 130; stderr: $(cat "$T/err_b")"
  n=$(ls "$T/batch" | grep -c '^img_[0-9]*\.png$')
  msg=$(cat "$T/err_b")
  case "$msg" in
    "pndm-gen: interrupted by SIGINT: $n of 20000 output files written") ok;;
    *) bad "SIGINT while writing: message '$msg' (found $n files)";;
  esac
  [ "$n" -ge 51 ] && [ "$n" -lt 20000 ] && ok || bad "SIGINT while writing: $n images written"
  # files are numbered without gaps and every one is a complete PNG
  last=$(printf '%s/img_%05d.png' "$T/batch" $((n - 1)))
  [ -e "$last" ] && [ ! -e "$(printf '%s/img_%05d.png' "$T/batch" "$n")" ] && ok || bad "SIGINT while writing: gaps in the numbering"
  broken=0
  for f in "$T/batch"/img_*.png; do complete_png "$f" || broken=$((broken+1)); done
  [ "$broken" = 0 ] && ok || bad "SIGINT while writing: $broken incomplete PNGs"
  "$GEN" --info "$last" | grep -q "image_index=$((n - 1))" && ok || bad "SIGINT while writing: the last image's metadata"
  no_temp "$T/batch" "SIGINT while writing"
else
  bad "the batch run finished or failed before 50 images were written: $(cat "$T/err_b")"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
