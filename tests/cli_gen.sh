#!/usr/bin/env bash
# pndm-gen through the real executable: help, usage errors and their exit codes, outputs,
# PNG metadata, JSON, determinism across thread counts, no output file left on error.
#   bash tests/cli_gen.sh BUILD_DIR DATA_DIR
set -u
BIN="$1/pndm-gen"
DATA="$2"
MODEL="$DATA/unet/c_gray/model"       # tiny 1-channel 28x28 test model
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }

# expect CODE DESCRIPTION -- command...   (also: stderr must be one non-empty line for errors)
expect() {
  local code=$1 what=$2; shift 3
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" != "$code" ]; then bad "$what: exit $rc, expected $code; stderr: $(head -c 300 "$T/err")"; return; fi
  if [ "$code" != 0 ] && ! grep -q "pndm-gen: " "$T/err"; then bad "$what: no error message"; return; fi
  ok
}
no_files() { # no file matching the glob may exist
  local what=$1; shift
  for f in "$@"; do [ -e "$f" ] && { bad "$what: left $f behind"; return; }; done
  if ls "$T/o"/*.tmp.* >/dev/null 2>&1; then bad "$what: temporary file left"; return; fi
  ok
}
mkdir -p "$T/o"

expect 0 "help" -- "$BIN" --help
grep -q -- "--steps N" "$T/out" && grep -q "default: 50" "$T/out" && grep -q -- "--per-image-seeds" "$T/out" && ok || bad "help text"
expect 0 "version" -- "$BIN" --version
for args in "--bogus" "--steps 0" "--steps -3" "--steps 12x" "--steps 99999999999" "--batch 0" "--batch -1" \
            "--batch many" "--threads -2" "--seed abc" "--seed 1.5" "-o x.jpg" "-o noext" "--steps" \
            "--grid -o x.npy" "-o a%s.png" "-o a%d%d.png" "--latents l.txt" "extra" "-n 5 -x"; do
  # shellcheck disable=SC2086
  expect 2 "usage: $args" -- "$BIN" -m "$MODEL" -o "$T/o/u.png" $args
done
expect 2 "steps < 4 with PRK" -- "$BIN" -m "$MODEL" -n 3 -o "$T/o/u.png"
expect 2 "steps > num_train_timesteps" -- "$BIN" -m "$MODEL" -n 1001 -o "$T/o/u.png"
no_files "usage errors" "$T/o/u.png"

# model errors
expect 4 "missing model" -- "$BIN" -m "$T/nope.safetensors" -o "$T/o/m.png"
printf 'garbage' > "$T/bad.safetensors"
expect 3 "corrupt model" -- "$BIN" -m "$T/bad.safetensors" -o "$T/o/m.png"
no_files "model errors" "$T/o/m.png"
printf '{"beta_schedule": "wavy"}' > "$T/sched.json"
expect 3 "bad scheduler config" -- "$BIN" -m "$MODEL" --scheduler-config "$T/sched.json" -o "$T/o/m.png"
grep -q "beta_schedule" "$T/err" && ok || bad "scheduler error names the key"

# output errors
expect 4 "missing output dir" -- "$BIN" -m "$MODEL" -n 4 -o "$T/nodir/x.png"
mkdir -p "$T/dir.png"; ln -s /dev/full "$T/full.npy"
expect 4 "output is a directory" -- "$BIN" -m "$MODEL" -n 4 -o "$T/dir.png"
expect 4 "output is a device" -- "$BIN" -m "$MODEL" -n 4 -o "$T/o/dev.png" --latents "$T/full.npy"
no_files "device output" "$T/o/dev.png"
[ -c /dev/full ] && ok || bad "/dev/full replaced"
no_files "output errors" "$T/nodir/x.png"

# a real run: batch of 2 through a pattern, metadata, json
expect 0 "generate" -- "$BIN" -m "$MODEL" -n 4 -b 2 -s 123 -t 1 -q -o "$T/o/img_%02d.png" --latents "$T/o/lat.npy" --save-noise "$T/o/noise.npy"
[ -s "$T/o/img_00.png" ] && [ -s "$T/o/img_01.png" ] && ok || bad "pattern outputs missing"
grep -q "img_00.png" "$T/out" && ok || bad "stdout lists the files"
[ "$(head -c 6 "$T/o/lat.npy" | od -An -c | tr -d ' ')" = "223NUMPY" ] && ok || bad "latents .npy"
[ "$(stat -c %s "$T/o/noise.npy")" -eq $((128 + 2*28*28*4)) ] && ok || bad "noise .npy size $(stat -c %s "$T/o/noise.npy")"
expect 0 "info" -- "$BIN" --info "$T/o/img_01.png"
grep -q "seed=123" "$T/out" && grep -q "image_index=1" "$T/out" && grep -q "steps=4" "$T/out" && ok || bad "PNG metadata: $(cat "$T/out")"
expect 6 "info on a non-PNG" -- "$BIN" --info "$T/o/lat.npy"

# same bytes for any thread count
expect 0 "threads 2" -- "$BIN" -m "$MODEL" -n 4 -b 2 -s 123 -t 2 -q -o "$T/o/t2_%02d.png"
cmp -s "$T/o/img_00.png" "$T/o/t2_00.png" && cmp -s "$T/o/img_01.png" "$T/o/t2_01.png" && ok || bad "threads 1 vs 2 differ"

# default naming without a pattern, grid, npy output, json
expect 0 "numbered" -- "$BIN" -m "$MODEL" -n 4 -b 2 -s 5 -q -o "$T/o/n.png"
[ -s "$T/o/n-0.png" ] && [ -s "$T/o/n-1.png" ] && ok || bad "numbered outputs"
expect 0 "grid" -- "$BIN" -m "$MODEL" -n 4 -b 3 -s 5 -q --grid -o "$T/o/grid.png"
[ -s "$T/o/grid.png" ] && ok || bad "grid output"
expect 0 "npy+json" -- "$BIN" -m "$MODEL" -n 2 --skip-prk-steps -b 2 -s 9 --per-image-seeds -q --json -o "$T/o/imgs.npy"
grep -q '"seed":[[:space:]]*9,' "$T/out" && grep -q '"image_seeds"' "$T/out" && grep -q 'imgs.npy' "$T/out" && ok || bad "json: $(cat "$T/out")"
[ "$(stat -c %s "$T/o/imgs.npy")" -eq $((128 + 2*28*28*1*4)) ] && ok || bad "images .npy size"
# seed is reported even when random
expect 0 "random seed" -- "$BIN" -m "$MODEL" -n 1 --skip-prk-steps -o "$T/o/r.png"
grep -q "seed [0-9]" "$T/err" && ok || bad "seed not reported"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
