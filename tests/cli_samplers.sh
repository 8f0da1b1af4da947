#!/usr/bin/env bash
# pndm-gen --sampler through the real executable: the listing in --help, -v (schedule, config
# class, ignored keys), the metadata (PNG parameters, --json, --info), refusals and their exit
# codes, and the default sampler's metadata unchanged.
#   bash tests/cli_samplers.sh BUILD_DIR DATA_DIR
set -u
BIN="$1/pndm-gen"
DATA="$2"
MODEL="$DATA/unet/c_gray/model"       # tiny 1-channel 28x28 test model
SDIR="$DATA/samplers"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
expect() { # expect CODE DESCRIPTION -- command...
  local code=$1 what=$2; shift 3
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" != "$code" ]; then bad "$what: exit $rc, expected $code; stderr: $(head -c 400 "$T/err")"; return; fi
  if [ "$code" != 0 ] && ! grep -q "pndm-gen: " "$T/err"; then bad "$what: no error message"; return; fi
  ok
}
has() { grep -qF -- "$2" "$T/$1" && ok || bad "$3: '$2' not in $1: $(head -c 600 "$T/$1")"; }

# --help: every sampler with its call count for N (default 50; -n before --help sets N)
expect 0 "help" -- "$BIN" --help
for s in pndm ddim ddpm ddim-paper s-pndm f-pndm fon pf; do has out "  $s " "help lists $s"; done
has out "pndm        59 " "pndm: 59 calls for 50 steps"
has out "s-pndm      51 " "s-pndm: 51 calls"
has out "pf          adaptive" "pf: adaptive"
expect 0 "help -n 30" -- "$BIN" -n 30 --help
has out "ddim-paper  31 " "the paper's 30 steps are 31"
has out "f-pndm      40 " "f-pndm at 30: 40 calls"

# refusals
expect 2 "unknown sampler" -- "$BIN" -m "$MODEL" --sampler euler -o "$T/u.png"
has err "one of pndm, ddim, ddpm, ddim-paper, s-pndm, f-pndm, fon, pf" "unknown sampler lists them"
expect 2 "eta for ddpm" -- "$BIN" -m "$MODEL" --sampler ddpm --eta 1 -o "$T/u.png"
expect 0 "eta 0 for pndm (the no-op)" -- "$BIN" -m "$MODEL" --sampler pndm --eta 0 -n 4 -q -o "$T/e0.png"
expect 2 "bad eta" -- "$BIN" -m "$MODEL" --sampler ddim --eta -1 -o "$T/u.png"
expect 2 "paper crash set" -- "$BIN" -m "$MODEL" --sampler f-pndm -n 27 -o "$T/u.png"
has err "nearby step counts that work: 26 or 28" "crash set names nearby counts"
expect 2 "paper n > T" -- "$BIN" -m "$MODEL" --sampler fon -n 1001 -o "$T/u.png"
printf '{"_class_name": "DDPMScheduler", "variance_type": "fixed_large_log"}' > "$T/fll.json"
expect 3 "fixed_large_log" -- "$BIN" -m "$MODEL" --sampler ddpm --scheduler-config "$T/fll.json" -n 5 -o "$T/u.png"
has err "fixed_large_log" "fixed_large_log named"
printf '{"_class_name": "DDPMScheduler", "variance_type": "learned"}' > "$T/learned.json"
expect 3 "learned variance, 1-channel output" -- "$BIN" -m "$MODEL" --sampler ddpm --scheduler-config "$T/learned.json" -n 5 -o "$T/u.png"
has err "2 * in_channels" "learned variance needs 2C outputs"
[ ! -e "$T/u.png" ] && ok || bad "a refused run left an output"

# -v: the resolved schedule, the config's class, the keys the sampler ignores
CFG="$SDIR/traces/ddim_eta1_n15_genlist/scheduler_config.json"
expect 0 "ddim -v" -- "$BIN" -m "$MODEL" --sampler ddim --eta 1 --scheduler-config "$CFG" -n 5 -b 2 -s 3 -v -o "$T/d.png"
has err "sampler ddim: 5 steps, 5 model calls at t = 800, 600, 400, 200, 0" "ddim schedule"
has err "(class DDIMScheduler); keys the ddim sampler ignores: none" "ddim ignores nothing"
expect 0 "pndm -v on a DDIM config" -- "$BIN" -m "$MODEL" --scheduler-config "$CFG" -n 5 -s 3 -v -o "$T/p.png"
has err "keys the pndm sampler ignores: clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value, rescale_betas_zero_snr" "pndm ignores the DDIM keys"
expect 0 "f-pndm -v" -- "$BIN" -m "$MODEL" --sampler f-pndm -n 8 -s 3 -v --scheduler-config "$SDIR/pipeline/pndm_n10_b2/scheduler_config.json" -o "$T/f.png"
has err "8 steps, 17 model calls at t = 875, 812.5, 812.5, 750" "fractional midpoints"
has err "keys the f-pndm sampler ignores: trained_betas, skip_prk_steps, set_alpha_to_one, prediction_type, timestep_spacing, steps_offset" "f-pndm ignores the PNDM keys"

# metadata: PNG parameters, --info, --json
expect 0 "info ddim" -- "$BIN" --info "$T/d-0.png"
has out "sampler=ddim; eta=1; use_clipped_model_output=0; steps=5; seed=3; per_image_seeds=0; batch=2; scheduler=DDIMScheduler(num_train_timesteps=1000" "ddim in PNG"
expect 0 "info f-pndm" -- "$BIN" --info "$T/f.png"
has out "sampler=f-pndm; steps=8; seed=3; per_image_seeds=0; batch=1; scheduler=PNDM paper F-PNDM (Schedule(type=linear" "f-pndm in PNG"
expect 0 "default sampler metadata" -- "$BIN" --info "$T/p.png"
has out "sampler=pndm; steps=5; seed=3; per_image_seeds=0; batch=1; scheduler=PNDMScheduler(num_train_timesteps=1000, beta_start=0.0001" "pndm metadata as before"
expect 0 "json" -- "$BIN" -m "$MODEL" --sampler ddim --eta 0.5 --use-clipped-model-output -n 4 -s 1 -q --json -o "$T/j.npy"
has out '"sampler":	"ddim"' "json sampler"
has out '"eta":	0.5' "json eta"
has out '"use_clipped_model_output":	true' "json clipped"
has out '"unet_calls":	4' "json calls"
expect 0 "json pf" -- "$BIN" -m "$MODEL" --sampler pf -n 1 -s 1 -q --json -o "$T/pf.npy"
has out '"adaptive_calls":	true' "pf adaptive in json"
expect 0 "json paper steps" -- "$BIN" -m "$MODEL" --sampler ddim-paper -n 30 -s 1 -q --json -o "$T/dp.npy"
has out '"sampler_steps":	31' "the paper's 30 steps are 31 in json"
has out '"unet_calls":	31' "31 calls"

# determinism: same bytes for 1 and 2 threads (ddpm draws noise at every step)
expect 0 "ddpm t1" -- "$BIN" -m "$MODEL" --sampler ddpm -n 6 -b 2 -s 4 -t 1 -q -o "$T/t1.png"
expect 0 "ddpm t2" -- "$BIN" -m "$MODEL" --sampler ddpm -n 6 -b 2 -s 4 -t 2 -q -o "$T/t2.png"
cmp -s "$T/t1-0.png" "$T/t2-0.png" && cmp -s "$T/t1-1.png" "$T/t2-1.png" && ok || bad "ddpm: threads change the bytes"

# --reproduce regenerates from the record: the sampler and its options come back from it
# (ddim with eta 1 draws step noise: image 1 of a batch of 2 is regenerated from the batch)
expect 0 "reproduce ddim eta 1" -- "$BIN" -q -m "$MODEL" --reproduce "$T/d-1.png" -o "$T/d-1.re.png"
expect 0 "reproduce f-pndm" -- "$BIN" -q -m "$MODEL" --reproduce "$T/f.png" -o "$T/f.re.png"
cmp -s "$T/f.png" "$T/f.re.png" && ok || bad "reproduced f-pndm image differs from the original"
for smp in pndm ddim ddpm ddim-paper s-pndm f-pndm fon pf; do # every sampler, image 1 of a batch of 2
  expect 0 "$smp for --reproduce" -- "$BIN" -q -m "$MODEL" --sampler $smp -n 5 -b 2 -s 11 -o "$T/r_$smp.png"
  expect 0 "reproduce $smp" -- "$BIN" -q -m "$MODEL" --reproduce "$T/r_$smp-1.png" -o "$T/r_$smp.re.png"
done
expect 2 "reproduce takes the sampler from the record" -- "$BIN" -q -m "$MODEL" --reproduce "$T/f.png" --sampler ddim -o "$T/u.png"

# sample sets with a sampler: image i == -b 1 -s seed+i (ddpm draws step noise from each image's generator)
expect 0 "-N ddpm" -- "$BIN" -q -m "$MODEL" --sampler ddpm -n 4 -N 3 -b 2 -s 5 -o "$T/set/%d.png"
for i in 0 1 2; do
  "$BIN" -q -m "$MODEL" --sampler ddpm -n 4 -b 1 -s $((5 + i)) -o "$T/one$i.png" >/dev/null 2>&1
  cmp -s "$T/set/$i.png" "$T/one$i.png" && ok || bad "-N ddpm image $i differs from -b 1 -s $((5 + i))"
done
expect 2 "pf set with a batch" -- "$BIN" -q -m "$MODEL" --sampler pf -n 2 -N 2 -b 2 -s 5 -o "$T/pf/%d.png"
has err "chunks of one image" "pf set refusal says why"

echo "cli_samplers: $pass passed, $fail failed"
[ "$fail" = 0 ]
