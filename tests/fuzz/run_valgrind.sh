#!/usr/bin/env bash
# valgrind memcheck on a small end-to-end pndm-gen run and on error paths (not part of ctest:
# it takes a minute). Every run must report no errors and no leaks ("definitely", "indirectly"
# or "possibly" lost); the exit code of the program itself is checked too.
#   tests/fuzz/run_valgrind.sh BUILD_DIR      (a build without sanitizers, e.g. RelWithDebInfo)
set -u
B=${1:?usage: run_valgrind.sh BUILD_DIR}
cd "$(dirname "$0")/../.."
D=tests/data
TINY=$D/hostile/tiny.safetensors
GRAY=$D/unet/c_gray/model
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 2; }
pass=0; fail=0
# vg NAME EXPECTED_EXIT -- command...
vg() {
  local name=$1 want=$2; shift 3
  valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 --track-origins=yes \
    --log-file="$T/vg.log" "$@" >/dev/null 2>"$T/err"
  local rc=$?
  local errs; errs=$(grep -o 'ERROR SUMMARY: [0-9]*' "$T/vg.log" | grep -o '[0-9]*$')
  local lost; lost=$(grep -E 'definitely lost:|indirectly lost:|possibly lost:' "$T/vg.log" | sed 's/==[0-9]*== *//' | tr '\n' ' ')
  if [ "$rc" = "$want" ] && [ "$errs" = 0 ]; then
    pass=$((pass+1)); printf 'ok   %-40s exit %s, %s errors %s\n' "$name" "$rc" "$errs" "${lost:-(no leaks possible: all heap blocks freed)}"
  else
    fail=$((fail+1)); printf 'FAIL %-40s exit %s (want %s), %s errors\n' "$name" "$rc" "$want" "${errs:-?}"
    grep -A12 -E 'Invalid|uninitialised|lost in loss record' "$T/vg.log" | head -60
  fi
}
"$B/pndm-gen" -q -m "$TINY" -n 4 -s 3 -o "$T/good.png" >/dev/null
head -c 4000 "$TINY" >"$T/cut.safetensors"
cp "$TINY" "$T/nan.safetensors"
HL=$(od -An -tu8 -N8 "$TINY" | tr -d ' ')
printf '\000\000\300\177' | dd of="$T/nan.safetensors" bs=1 seek=$((8 + HL + 16)) conv=notrunc status=none
printf '{"sample_size": 8, "norm_num_groups": 3}' >"$T/cfg.json"
mkdir -p "$T/m"; cp "$TINY" "$T/m/diffusion_pytorch_model.safetensors"; cp "$T/cfg.json" "$T/m/config.json"
"$B/pndm-gen" -q -m "$TINY" -n 1 --skip-prk-steps -b 1 -s 1 -o "$T/x.npy" --save-noise "$T/noise.npy" >/dev/null

vg "e2e: tiny, PRK, batch 3, pattern + latents" 0 -- "$B/pndm-gen" -q -m "$TINY" -n 4 -b 3 -s 1 -t 2 -o "$T/img_%d.png" --latents "$T/lat.npy"
vg "e2e: c_gray (attention), npy + json" 0 -- "$B/pndm-gen" -q -m "$GRAY" -n 2 --skip-prk-steps -b 2 -s 5 -t 1 --json -o "$T/g.npy"
vg "e2e: grid, per-image seeds" 0 -- "$B/pndm-gen" -q -m "$TINY" -n 2 --skip-prk-steps -b 4 -s 9 --per-image-seeds --grid -o "$T/grid.png"
vg "e2e: pndm-unet forward" 0 -- "$B/pndm-unet" -m "$GRAY" -x "$D/unet/c_gray/sample.npy" --timesteps "$D/unet/c_gray/t_batch.npy" -o "$T/y.npy"
vg "--info" 0 -- "$B/pndm-gen" --info "$T/good.png"
vg "error: truncated weights" 3 -- "$B/pndm-gen" -q -m "$T/cut.safetensors" -o "$T/e.png"
vg "error: NaN weights" 3 -- "$B/pndm-gen" -q -m "$T/nan.safetensors" -n 2 --skip-prk-steps -o "$T/e.png"
vg "error: groups not dividing channels" 3 -- "$B/pndm-gen" -q -m "$T/m" -o "$T/e.png"
printf '{"beta_schedule": "wavy"}' >"$T/sched.json"
vg "error: bad scheduler config" 3 -- "$B/pndm-gen" -q -m "$TINY" --scheduler-config "$T/sched.json" -o "$T/e.png"
vg "error: missing output directory" 4 -- "$B/pndm-gen" -q -m "$TINY" -o "$T/nodir/e.png"
head -c 60 "$T/good.png" >"$T/cut.png"
vg "error: --info on a truncated PNG" 6 -- "$B/pndm-gen" --info "$T/cut.png"
vg "error: pndm-unet wrong channels" 6 -- "$B/pndm-unet" -m "$TINY" -x "$D/unet/a_dummy/sample.npy" --timestep 1 -o "$T/e.npy"
vg "error: usage" 2 -- "$B/pndm-gen" --steps 0
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
