#!/usr/bin/env bash
# Hostile inputs through the real executables (pndm-gen, pndm-unet): broken and malicious model
# files, configs, flags, .npy inputs and output locations. Every case must end with the exit code
# of README.md's table, exactly one message line on stderr (pndm-gen may add its "Try ... --help"
# hint), no crash (exit < 128), no output or temporary file left, within 20 seconds.
# Hostile files are built here with printf/head/tail from the tiny test model; no Python.
#   bash tests/cli_hostile.sh BUILD_DIR DATA_DIR      (HOSTILE_VERBOSE=1: print every message)
set -u
export LC_ALL=C
GEN="$1/pndm-gen"
UNET="$1/pndm-unet"
DATA="$2"
TINY="$DATA/hostile/tiny.safetensors"   # 1 channel, 8x8, one level, 2801 parameters
GRAY="$DATA/unet/c_gray/model"          # 1 channel, 28x28, three levels
T=$(mktemp -d)
MOUNTS=()
cleanup() {
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
  [ -d "$T/ro" ] && chattr -i "$T/ro" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
pass=0; fail=0; skipped=0
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }

# run_case NAME CODE REGEX OUTPUT -- command...
#   CODE: expected exit code; REGEX: extended regex the message must match; OUTPUT: the path the
#   command was asked to write (must not exist afterwards; "-" for none). Temporary files are
#   looked for in $T/o and in OUTPUT's folder.
run_case() {
  local name=$1 code=$2 re=$3 out=$4; shift 5
  rm -f "$T/stdout" "$T/stderr"
  local t0=$SECONDS
  timeout -k 5 20 "$@" >"$T/stdout" 2>"$T/stderr" </dev/null
  local rc=$? dt=$((SECONDS - t0))
  check_case "$name" "$code" "$re" "$out" "$rc" "$dt"
  # nothing may stay behind for the next case either way
  if [ "$out" != - ]; then rm -f "$out" "$(dirname "$out")"/*.tmp.* 2>/dev/null; fi
  rm -f "$T/o"/*.tmp.* 2>/dev/null
}
check_case() {
  local name=$1 code=$2 re=$3 out=$4 rc=$5 dt=$6
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then bad "$name: timed out (hang?) after ${dt}s"; return; fi
  if [ "$rc" -ge 128 ] && [ "$code" -lt 128 ]; then bad "$name: crashed with signal $((rc - 128)); stderr: $(head -c 400 "$T/stderr")"; return; fi
  if [ "$rc" != "$code" ]; then bad "$name: exit $rc, expected $code; stderr: $(head -c 400 "$T/stderr")"; return; fi
  local msg; msg=$(grep -Ev "^Try 'pndm-(gen|unet) --help'\.\$" "$T/stderr")
  local n; n=$(printf '%s' "$msg" | grep -c '')
  if [ "$n" != 1 ]; then bad "$name: expected one message line, got $n: $(head -c 400 "$T/stderr")"; return; fi
  case "$msg" in "pndm-gen: "* | "pndm-unet: "*) ;; *) bad "$name: message does not start with the program's name: $msg"; return;; esac
  if ! printf '%s' "$msg" | grep -Eq -- "$re"; then bad "$name: message does not match /$re/: $msg"; return; fi
  if [ "$out" != - ]; then
    if [ -e "$out" ]; then bad "$name: left the output $out"; return; fi
    if ls "$(dirname "$out")"/*.tmp.* >/dev/null 2>&1; then bad "$name: left a temporary file in $(dirname "$out")"; return; fi
  fi
  if ls "$T/o"/*.tmp.* >/dev/null 2>&1; then bad "$name: left a temporary file in $T/o"; return; fi
  if [ "$dt" -gt 10 ]; then bad "$name: took ${dt}s"; return; fi
  pass=$((pass+1))
  if [ -n "${HOSTILE_VERBOSE:-}" ]; then printf 'ok %-45s exit %s  %s\n' "$name" "$rc" "$msg"; fi
}
skip() { skipped=$((skipped+1)); echo "SKIP: $*"; }
mkdir -p "$T/o"
OUT="$T/o/out.png"
NPY="$T/o/out.npy"

# ---- building blocks ---------------------------------------------------------------------
le64() { # 8 bytes little-endian of a non-negative integer < 2^63
  local n=$1 i
  for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf %03o $(( (n >> (8 * i)) & 255 )))"; done
}
st_make() { # st_make FILE HEADER [DATA_FILE]: a safetensors file
  { le64 "${#2}"; printf '%s' "$2"; if [ $# -ge 3 ]; then cat "$3"; fi; } >"$1"
}
HL=$(od -An -tu8 -N8 "$TINY" | tr -d ' ')
HDR=$(tail -c +9 "$TINY" | head -c "$HL")
tail -c +$((9 + HL)) "$TINY" >"$T/tiny.data"
DATA_BYTES=$(stat -c %s "$T/tiny.data")
[ "${#HDR}" = "$HL" ] && [ "$DATA_BYTES" -gt 0 ] || { echo "cannot split $TINY" >&2; exit 1; }
st_edit() { # st_edit FILE OLD NEW: the tiny model with one header substring replaced
  local h=${HDR/"$2"/"$3"}
  [ "$h" != "$HDR" ] || { echo "st_edit: '$2' not in the header" >&2; exit 1; }
  st_make "$1" "$h" "$T/tiny.data"
}
poke() { # poke FILE OFFSET BYTES(printf escapes): overwrite bytes in place
  printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
npy_make() { # npy_make FILE DESCR SHAPE DATA_FILE: a .npy (format 1.0)
  local dict="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
  local pad=$(( 63 - (10 + ${#dict}) % 64 ))
  { printf '\223NUMPY\001\000'; printf "\\$(printf %03o $(( (${#dict} + pad + 1) & 255 )))\\$(printf %03o $(( (${#dict} + pad + 1) >> 8 )))"
    printf '%s%*s\n' "$dict" "$pad" ''; cat "$4"; } >"$1"
}
G=(-q -n 1 --skip-prk-steps -s 1 -t 1)   # pndm-gen flags of every case (2 UNet calls, if it ever ran)

# ---- 1. weights files ----------------------------------------------------------------------
: >"$T/empty.safetensors"
run_case "weights: empty file" 3 "too small \(0 bytes\)" "$OUT" -- "$GEN" "${G[@]}" -m "$T/empty.safetensors" -o "$OUT"
head -c 5 "$TINY" >"$T/t5.safetensors"
run_case "weights: 5 bytes" 3 "too small" "$OUT" -- "$GEN" "${G[@]}" -m "$T/t5.safetensors" -o "$OUT"
head -c 4000 "$TINY" >"$T/cut_header.safetensors"
run_case "weights: truncated in the header" 3 "header length $HL runs past the end" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cut_header.safetensors" -o "$OUT"
head -c $((8 + HL + DATA_BYTES / 2)) "$TINY" >"$T/cut_data.safetensors"
run_case "weights: truncated in the data" 3 "tensor '.*': data_offsets .* end beyond the [0-9]+ bytes" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cut_data.safetensors" -o "$OUT"
{ printf '\377\377\377\377\377\377\377\177'; printf '{}'; } >"$T/huge_hlen.safetensors"
run_case "weights: header length 2^63-1" 3 "exceeds the 100 MiB limit" "$OUT" -- "$GEN" "${G[@]}" -m "$T/huge_hlen.safetensors" -o "$OUT"
{ le64 $((50 << 20)); printf '{}'; } >"$T/long_hlen.safetensors"
run_case "weights: header length past the end" 3 "runs past the end of the file" "$OUT" -- "$GEN" "${G[@]}" -m "$T/long_hlen.safetensors" -o "$OUT"
st_make "$T/notjson.safetensors" 'this is not JSON at all'
run_case "weights: header not JSON" 3 "header is not valid JSON" "$OUT" -- "$GEN" "${G[@]}" -m "$T/notjson.safetensors" -o "$OUT"
st_make "$T/array.safetensors" '[1, 2, 3]'
run_case "weights: header a JSON array" 3 "header is an array, expected a JSON object" "$OUT" -- "$GEN" "${G[@]}" -m "$T/array.safetensors" -o "$OUT"
{ le64 4; printf '{\000}'; printf ' '; } >"$T/nul.safetensors"
run_case "weights: NUL byte in the header" 3 "NUL byte" "$OUT" -- "$GEN" "${G[@]}" -m "$T/nul.safetensors" -o "$OUT"
st_edit "$T/range.safetensors" '"data_offsets":[16,160]' '"data_offsets":[16,99999999]'
run_case "weights: offsets out of range" 3 "tensor 'conv_in.weight': data_offsets \[16, 99999999\] end beyond" "$OUT" -- "$GEN" "${G[@]}" -m "$T/range.safetensors" -o "$OUT"
st_edit "$T/reversed.safetensors" '"data_offsets":[16,160]' '"data_offsets":[160,16]'
run_case "weights: offsets reversed" 3 "tensor 'conv_in.weight': .*reversed" "$OUT" -- "$GEN" "${G[@]}" -m "$T/reversed.safetensors" -o "$OUT"
st_edit "$T/overlap.safetensors" '"data_offsets":[16,160]' '"data_offsets":[8,152]'
run_case "weights: offsets overlapping" 3 "overlap those of tensor 'conv_in.bias'" "$OUT" -- "$GEN" "${G[@]}" -m "$T/overlap.safetensors" -o "$OUT"
st_edit "$T/count.safetensors" '"shape":[4,1,3,3]' '"shape":[4,1,3,4]'
run_case "weights: shape x dtype != bytes" 3 "tensor 'conv_in.weight': data_offsets \[16, 160\] give 144 bytes, shape \[4, 1, 3, 4\] x F32 needs 192" "$OUT" -- "$GEN" "${G[@]}" -m "$T/count.safetensors" -o "$OUT"
st_edit "$T/overflow.safetensors" '"shape":[4,1,3,3]' '"shape":[4294967296,4294967296,16]'
run_case "weights: dims overflow size_t" 3 "tensor 'conv_in.weight': shape .* overflows" "$OUT" -- "$GEN" "${G[@]}" -m "$T/overflow.safetensors" -o "$OUT"
st_edit "$T/negative.safetensors" '"shape":[4,1,3,3]' '"shape":[4,-1,3,3]'
run_case "weights: negative dimension" 3 "tensor 'conv_in.weight': shape\[1\] = -1 is not a non-negative integer" "$OUT" -- "$GEN" "${G[@]}" -m "$T/negative.safetensors" -o "$OUT"
st_edit "$T/float_dim.safetensors" '"shape":[4,1,3,3]' '"shape":[4,1.5,3,3]'
run_case "weights: fractional dimension" 3 "shape\[1\] = 1.5" "$OUT" -- "$GEN" "${G[@]}" -m "$T/float_dim.safetensors" -o "$OUT"
st_edit "$T/dtype.safetensors" '"conv_in.weight":{"dtype":"F32"' '"conv_in.weight":{"dtype":"Q4_K"'
run_case "weights: unknown dtype" 3 "tensor 'conv_in.weight': unknown dtype 'Q4_K'" "$OUT" -- "$GEN" "${G[@]}" -m "$T/dtype.safetensors" -o "$OUT"
st_edit "$T/i32.safetensors" '"conv_in.weight":{"dtype":"F32"' '"conv_in.weight":{"dtype":"I32"'
run_case "weights: unsupported dtype I32" 3 "tensor 'conv_in.weight': dtype I32 is not supported" "$OUT" -- "$GEN" "${G[@]}" -m "$T/i32.safetensors" -o "$OUT"
st_edit "$T/missing.safetensors" '"conv_in.weight":' '"conv_in.weightX":'
run_case "weights: missing tensor" 3 "missing tensor 'conv_in.weight' \(expected shape \[4, 1, 3, 3\]\)" "$OUT" -- "$GEN" "${G[@]}" -m "$T/missing.safetensors" -o "$OUT"
st_edit "$T/extra.safetensors" '"conv_in.bias":' '"zz.extra":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"conv_in.bias":'
run_case "weights: extra tensor" 3 "unexpected tensor 'zz.extra'" "$OUT" -- "$GEN" "${G[@]}" -m "$T/extra.safetensors" -o "$OUT"
st_edit "$T/shape.safetensors" '"shape":[4,1,3,3]' '"shape":[4,3,3,1]'
run_case "weights: wrong shape" 3 "tensor 'conv_in.weight': got \[4, 3, 3, 1\], expected \[4, 1, 3, 3\]" "$OUT" -- "$GEN" "${G[@]}" -m "$T/shape.safetensors" -o "$OUT"
st_edit "$T/dup.safetensors" '"conv_in.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},' '"conv_in.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"conv_in.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
run_case "weights: duplicate tensor name" 3 "conv_in.bias" "$OUT" -- "$GEN" "${G[@]}" -m "$T/dup.safetensors" -o "$OUT"
cp "$TINY" "$T/nan.safetensors"
poke "$T/nan.safetensors" $((8 + HL + 16 + 4 * 7)) '\000\000\300\177'   # conv_in.weight[7] = NaN
run_case "weights: NaN" 3 "NaN" "$OUT" -- "$GEN" "${G[@]}" -m "$T/nan.safetensors" -o "$OUT"
cp "$TINY" "$T/inf.safetensors"
poke "$T/inf.safetensors" $((8 + HL + 160 + 4)) '\000\000\200\377'      # conv_norm_out.bias[1] = -Inf
run_case "weights: -Inf" 3 "Inf" "$NPY" -- "$GEN" "${G[@]}" -m "$T/inf.safetensors" -o "$NPY"
cp "$TINY" "$T/huge.safetensors"                                          # conv_in.weight = 3e38: overflows
for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35; do
  poke "$T/huge.safetensors" $((8 + HL + 16 + 4 * i)) '\377\377\177\177'
done
run_case "weights: finite but overflowing float32" 3 "non-finite values \(NaN/Inf\)" "$NPY" -- "$GEN" "${G[@]}" -m "$T/huge.safetensors" -o "$NPY"
st_make "$T/nometa.safetensors" '{"conv_in.bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' "$T/tiny.data"
run_case "weights: not a pndm file, no config.json" 3 "no config.json beside it" "$OUT" -- "$GEN" "${G[@]}" -m "$T/nometa.safetensors" -o "$OUT"
run_case "weights: model file missing" 4 "cannot open: No such file" "$OUT" -- "$GEN" "${G[@]}" -m "$T/nope.safetensors" -o "$OUT"
run_case "weights: a character device" 4 "not a regular file" "$OUT" -- "$GEN" "${G[@]}" -m /dev/zero -o "$OUT"
mkfifo "$T/fifo.safetensors"
run_case "weights: a FIFO (must not block)" 4 "not a regular file" "$OUT" -- "$GEN" "${G[@]}" -m "$T/fifo.safetensors" -o "$OUT"
mkdir -p "$T/emptydir"
run_case "weights: empty folder" 3 "not a model folder" "$OUT" -- "$GEN" "${G[@]}" -m "$T/emptydir" -o "$OUT"

# ---- 2. configs ------------------------------------------------------------------------------
CFG_OK=$(printf '%s' "$HDR" | sed 's/.*"pndm.unet_config":"\(.*\)","pndm.scheduler_config".*/\1/; s/\\"/"/g')
mkcfg() { # mkcfg NAME CONFIG_TEXT: a diffusers model folder with the tiny weights
  mkdir -p "$T/$1"; cp "$TINY" "$T/$1/diffusion_pytorch_model.safetensors"; printf '%s' "$2" >"$T/$1/config.json"
}
cfg_sub() { # cfg_sub OLD NEW: the tiny config with one substring replaced
  local c=${CFG_OK/"$1"/"$2"}
  [ "$c" != "$CFG_OK" ] || { echo "cfg_sub: '$1' not in the config" >&2; exit 1; }
  printf '%s' "$c"
}
mkcfg cfg_ok "$CFG_OK"
# control: the unmodified folder works (so the cases below fail for the reason they name)
if "$GEN" "${G[@]}" -m "$T/cfg_ok" -o "$T/o/ok.npy" >/dev/null && [ -s "$T/o/ok.npy" ]; then pass=$((pass+1)); else bad "control: the valid model folder fails"; fi
rm -f "$T/o/ok.npy"
mkcfg cfg_notjson '{"sample_size": 8, '
run_case "config: not JSON" 3 "config.json: config is not valid JSON" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_notjson" -o "$OUT"
mkcfg cfg_type "$(cfg_sub '"layers_per_block": 1' '"layers_per_block": "one"')"
run_case "config: wrong type" 3 "option 'layers_per_block' must be an integer" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_type" -o "$OUT"
mkcfg cfg_block "$(cfg_sub '"down_block_types": ["DownBlock2D"]' '"down_block_types": ["WarpDriveBlock2D"]')"
run_case "config: unknown block type" 3 "unknown block type 'WarpDriveBlock2D'" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_block" -o "$OUT"
mkcfg cfg_xattn "$(cfg_sub '"down_block_types": ["DownBlock2D"]' '"down_block_types": ["CrossAttnDownBlock2D"]')"
run_case "config: unsupported block type" 3 "CrossAttnDownBlock2D' is not supported" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_xattn" -o "$OUT"
mkcfg cfg_groups "$(cfg_sub '"norm_num_groups": 2' '"norm_num_groups": 3')"
run_case "config: groups not dividing channels" 3 "norm_num_groups" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_groups" -o "$OUT"
mkcfg cfg_huge "$(cfg_sub '"block_out_channels": [4]' '"block_out_channels": [1000000]')"
run_case "config: block_out_channels [1000000]" 3 "option 'block_out_channels' must be a list of integers in \[1, 16384\]" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_huge" -o "$OUT"
mkdir -p "$T/cfg_levels"; cp "$GRAY/diffusion_pytorch_model.safetensors" "$T/cfg_levels/"
sed 's/"sample_size": 28/"sample_size": 30/' "$GRAY/config.json" >"$T/cfg_levels/config.json"
run_case "config: sample_size the UNet cannot halve" 3 "'sample_size' 30 must be divisible by 4" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_levels" -o "$OUT"
sed 's/"sample_size": 28/"sample_size": 3/' "$GRAY/config.json" >"$T/cfg_levels/config.json"   # 3 >> 2 == 0: was SIGFPE
run_case "config: sample_size below 2^(levels-1)" 3 "'sample_size' 3 must be divisible by 4" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_levels" -o "$OUT"
mkcfg cfg_key "$(cfg_sub '"act_fn": "silu"' '"act_fn": "silu", "warp_factor": 9')"
run_case "config: unknown key" 3 "unknown option 'warp_factor'" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_key" -o "$OUT"
mkcfg cfg_class "$(cfg_sub '"class_embed_type": null' '"class_embed_type": "timestep"')"
run_case "config: class conditioning" 3 "class_embed_type 'timestep' is not supported" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_class" -o "$OUT"
mkdir -p "$T/cfg_fifo"; cp "$TINY" "$T/cfg_fifo/diffusion_pytorch_model.safetensors"; mkfifo "$T/cfg_fifo/config.json"
run_case "config: config.json a FIFO (must not block)" 3 "no config.json" "$OUT" -- "$GEN" "${G[@]}" -m "$T/cfg_fifo" -o "$OUT"
# sizes the tiny weights accept but no machine can run: refused with the estimate, before allocating
st_edit "$T/too_big.safetensors" '\"sample_size\": 8' '\"sample_size\": 65536'
run_case "config: sample_size 65536" 3 "option 'sample_size' must be an integer in \[1, 16384\]" "$NPY" -- "$GEN" "${G[@]}" -m "$T/too_big.safetensors" -o "$NPY"
st_edit "$T/big_sample.safetensors" '\"sample_size\": 8' '\"sample_size\": 16384'
run_case "config: sample_size 16384 (memory)" 5 "needs about [0-9.]+ GiB of memory, this machine has [0-9.]+ GiB available" "$NPY" -- "$GEN" "${G[@]}" -m "$T/big_sample.safetensors" -o "$NPY"
mkdir -p "$T/pipe/unet" "$T/pipe/scheduler"; cp -r "$T/cfg_ok/." "$T/pipe/unet/"
printf '{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}' >"$T/pipe/model_index.json"
run_case "config: model_index.json with another UNet" 3 "unet class 'UNet2DConditionModel' is not supported" "$OUT" -- "$GEN" "${G[@]}" -m "$T/pipe" -o "$OUT"
printf '{"unet": ["diffusers", "UNet2DModel"]}' >"$T/pipe/model_index.json"
printf '{"num_train_timesteps": 0}' >"$T/pipe/scheduler/scheduler_config.json"
run_case "config: scheduler num_train_timesteps 0" 3 "num_train_timesteps" "$OUT" -- "$GEN" "${G[@]}" -m "$T/pipe" -o "$OUT"
printf '{"trained_betas": [0.1, 0.2], "num_train_timesteps": 3}' >"$T/sched.json"
run_case "config: trained_betas of the wrong length" 3 "trained_betas.*has 2 values" "$OUT" -- "$GEN" "${G[@]}" -m "$TINY" --scheduler-config "$T/sched.json" -o "$OUT"
printf '\377\376 not json' >"$T/sched_bin.json"
run_case "config: scheduler config binary junk" 3 "not valid JSON" "$OUT" -- "$GEN" "${G[@]}" -m "$TINY" --scheduler-config "$T/sched_bin.json" -o "$OUT"

# ---- 3. flags ------------------------------------------------------------------------------
GM=(-q -m "$TINY" -o "$OUT")
run_case "flags: --steps 0" 2 "invalid --steps '0'" "$OUT" -- "$GEN" "${GM[@]}" --steps 0
run_case "flags: --steps -5" 2 "invalid --steps '-5'" "$OUT" -- "$GEN" "${GM[@]}" --steps -5
run_case "flags: --steps 2^64" 2 "invalid --steps" "$OUT" -- "$GEN" "${GM[@]}" --steps 18446744073709551616
run_case "flags: --steps 1e3" 2 "invalid --steps '1e3'" "$OUT" -- "$GEN" "${GM[@]}" --steps 1e3
run_case "flags: --steps 5000 > num_train_timesteps" 2 "num_train_timesteps \(1000\)" "$OUT" -- "$GEN" "${GM[@]}" --steps 5000
run_case "flags: --batch 0" 2 "invalid --batch '0'" "$OUT" -- "$GEN" "${GM[@]}" --batch 0
run_case "flags: --batch ' 3'" 2 "invalid --batch" "$OUT" -- "$GEN" "${GM[@]}" --batch ' 3'
run_case "flags: --batch 99999999999" 2 "invalid --batch" "$OUT" -- "$GEN" "${GM[@]}" --batch 99999999999
run_case "flags: --batch 1048576 (memory)" 5 "batch 1048576 needs about [0-9.]+ GiB of memory, this machine has" "$OUT" -- "$GEN" -q -m "$GRAY" -o "$OUT" --batch 1048576
run_case "flags: --seed -5" 2 "invalid --seed '-5'" "$OUT" -- "$GEN" "${GM[@]}" --seed -5
run_case "flags: --seed 2^64" 2 "invalid --seed" "$OUT" -- "$GEN" "${GM[@]}" --seed 18446744073709551616
run_case "flags: --threads x" 2 "invalid --threads 'x'" "$OUT" -- "$GEN" "${GM[@]}" --threads x
run_case "flags: unknown flag" 2 "unknown option '--frobnicate'" "$OUT" -- "$GEN" "${GM[@]}" --frobnicate
run_case "flags: value missing" 2 "needs a value" "$OUT" -- "$GEN" "${GM[@]}" --steps
run_case "flags: bad pattern %n" 2 "bad output pattern" "$T/o/x%n.png" -- "$GEN" -q -m "$TINY" -o "$T/o/x%n.png"
run_case "flags: pattern %d in the folder" 2 "the directory part may not hold a %d" "$T/o/x%d/a.png" -- "$GEN" -q -m "$TINY" -b 2 -o "$T/o/x%d/a.png"
run_case "flags: pattern %25d" 2 "use exactly one %d" "$T/o/x%25d.png" -- "$GEN" -q -m "$TINY" -b 2 -o "$T/o/x%25d.png"
LONGDIR=$(printf 'd%.0s' $(seq 5000))
run_case "flags: pattern too long" 2 "bad output pattern \(name too long\)" - -- "$GEN" -q -m "$TINY" -b 2 -o "$T/o/$LONGDIR/x%d.png"
run_case "flags: pndm-unet unknown flag" 2 "unknown option '--frobnicate'" "$NPY" -- "$UNET" -m "$TINY" --frobnicate
run_case "flags: pndm-unet --timestep nan" 2 "--timestep: 'nan' is not a finite number" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x.npy" --timestep nan -o "$NPY"
run_case "flags: pndm-unet --threads 1e9" 2 "--threads" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x.npy" --timestep 1 -t 1000000000 -o "$NPY"

# ---- 4. input .npy (pndm-unet) -------------------------------------------------------------------
head -c 256 /dev/zero >"$T/z256"
npy_make "$T/x.npy" '<f4' '(1, 1, 8, 8)' "$T/z256"
if "$UNET" -m "$TINY" -x "$T/x.npy" --timestep 10 -o "$T/o/y.npy" >/dev/null && [ -s "$T/o/y.npy" ]; then pass=$((pass+1)); else bad "control: the valid sample fails"; fi
rm -f "$T/o/y.npy"
head -c 200 "$T/x.npy" >"$T/x_cut.npy"
run_case "npy: truncated" 6 "data is [0-9]+ bytes, shape needs 256" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x_cut.npy" --timestep 1 -o "$NPY"
printf 'hello, world' >"$T/x_text.npy"
run_case "npy: not a .npy" 6 "not a .npy file" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x_text.npy" --timestep 1 -o "$NPY"
npy_make "$T/x_huge.npy" '<f4' '(99999999999, 99999999999, 99999999999)' "$T/z256"
run_case "npy: dims overflowing" 6 "shape overflows" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x_huge.npy" --timestep 1 -o "$NPY"
npy_make "$T/x_i8.npy" '<i8' '(1, 1, 4, 8)' "$T/z256"
run_case "npy: integer sample" 6 "sample must be float32" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x_i8.npy" --timestep 1 -o "$NPY"
npy_make "$T/x_c4.npy" '<f4' '(1, 4, 4, 4)' "$T/z256"
run_case "npy: wrong channels" 6 "sample has 4 channels, the model takes 1" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x_c4.npy" --timestep 1 -o "$NPY"
{ printf '\000\000\300\177'; head -c 252 /dev/zero; } >"$T/nan256"
npy_make "$T/x_nan.npy" '<f4' '(1, 1, 8, 8)' "$T/nan256"
run_case "npy: NaN in the sample" 6 "element 0 of the sample is not finite" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x_nan.npy" --timestep 1 -o "$NPY"
head -c 144 /dev/zero >"$T/z144"
npy_make "$T/x6.npy" '<f4' '(1, 1, 6, 6)' "$T/z144"
run_case "npy: size not divisible by the levels" 6 "sample size 6x6 must be positive and divisible by 4" "$NPY" -- "$UNET" -m "$GRAY" -x "$T/x6.npy" --timestep 1 -o "$NPY"
head -c 12 /dev/zero >"$T/z12"; npy_make "$T/t3.npy" '<f4' '(3,)' "$T/z12"
run_case "npy: timesteps of the wrong shape" 6 "timesteps must have shape \(1,\)" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x.npy" --timesteps "$T/t3.npy" -o "$NPY"
mkfifo "$T/x_fifo.npy"
run_case "npy: sample a FIFO (must not block)" 4 "not a regular file" "$NPY" -- "$UNET" -m "$TINY" -x "$T/x_fifo.npy" --timestep 1 -o "$NPY"
run_case "npy: pndm-unet NaN weights" 3 "NaN" "$NPY" -- "$UNET" -m "$T/nan.safetensors" -x "$T/x.npy" --timestep 1 -o "$NPY"
run_case "npy: pndm-unet truncated weights" 3 "end beyond" "$NPY" -- "$UNET" -m "$T/cut_data.safetensors" -x "$T/x.npy" --timestep 1 -o "$NPY"

# ---- 5. --info on hostile PNGs ------------------------------------------------------------------
run_case "info: not a PNG" 6 "not a PNG file" - -- "$GEN" --info "$T/x.npy"
"$GEN" -q -m "$TINY" -n 4 -s 3 -o "$T/good.png" >/dev/null 2>&1
head -c 100 "$T/good.png" >"$T/cut.png"
run_case "info: truncated PNG" 6 "invalid PNG" - -- "$GEN" --info "$T/cut.png"
{ head -c 33 "$T/good.png"; printf '\177\377\377\377zTXt'; } >"$T/bomb.png"
run_case "info: chunk length 2 GiB" 6 "invalid PNG" - -- "$GEN" --info "$T/bomb.png"
run_case "info: missing file" 4 "cannot open" - -- "$GEN" --info "$T/nope.png"
mkfifo "$T/fifo.png"
run_case "info: a FIFO (must not block)" 4 "not a regular file" - -- "$GEN" --info "$T/fifo.png"

# ---- 6. outputs ------------------------------------------------------------------------------
run_case "output: missing directory" 4 "directory '.*/nodir' does not exist" "$T/nodir/x.png" -- "$GEN" "${G[@]}" -m "$TINY" -o "$T/nodir/x.png"
run_case "output: unknown extension" 2 "unknown output extension '.jpg'" "$T/o/x.jpg" -- "$GEN" "${G[@]}" -m "$TINY" -o "$T/o/x.jpg"
run_case "output: empty path" 2 "unknown output extension" - -- "$GEN" "${G[@]}" -m "$TINY" -o ""
mkdir -p "$T/o/adir.png"
run_case "output: a directory" 4 "is a directory" - -- "$GEN" "${G[@]}" -m "$TINY" -o "$T/o/adir.png"
rmdir "$T/o/adir.png"
run_case "output: --latents in a missing directory" 4 "--latents: .*directory .* does not exist" "$OUT" -- "$GEN" "${G[@]}" -m "$TINY" -o "$OUT" --latents "$T/nodir/l.npy"
ln -s /dev/full "$T/o/full.npy"
run_case "output: /dev/full through a symlink" 4 "is a symbolic link to a character device .*not replaced" - -- "$GEN" "${G[@]}" -m "$TINY" -o "$T/o/full.npy"
rm -f "$T/o/full.npy"
[ -c /dev/full ] || bad "/dev/full was replaced"
# a read-only directory (as root: a read-only bind mount, else chattr +i, else /proc)
mkdir -p "$T/ro"
RO=""
if mount --bind "$T/ro" "$T/ro" 2>/dev/null; then
  MOUNTS+=("$T/ro")
  if mount -o remount,ro,bind "$T/ro" 2>/dev/null; then RO="$T/ro"; fi
fi
if [ -z "$RO" ] && chattr +i "$T/ro" 2>/dev/null; then RO="$T/ro"; fi
if [ -n "$RO" ]; then
  run_case "output: read-only directory ($([ "${#MOUNTS[@]}" -gt 0 ] && echo ro bind mount || echo chattr +i))" 4 "not writable|Read-only|Operation not permitted|Permission denied" "$RO/x.png" -- "$GEN" "${G[@]}" -m "$TINY" -o "$RO/x.png"
else
  skip "read-only directory: neither a read-only bind mount nor chattr +i is possible here"
fi
run_case "output: under /proc" 4 "cannot create file|not writable" "/proc/pndm_x.png" -- "$GEN" "${G[@]}" -m "$TINY" -o /proc/pndm_x.png
# full disk: a 64 KiB tmpfs, 300 images of 8x8 floats as .npy need 77 KB
mkdir -p "$T/small"
if mount -t tmpfs -o size=64k tmpfs "$T/small" 2>/dev/null; then
  MOUNTS+=("$T/small")
  run_case "output: disk full (64 KiB tmpfs)" 4 "write failed: No space left on device \(disk full\)" "$T/small/x.npy" -- "$GEN" "${G[@]}" -m "$TINY" -b 300 -o "$T/small/x.npy"
  [ -z "$(ls -A "$T/small")" ] || bad "disk full: files left on the tmpfs: $(ls -A "$T/small")"
  run_case "output: disk full during a batch of PNGs" 4 "No space left on device \(disk full\)" "$T/small/none" -- "$GEN" "${G[@]}" -m "$TINY" -b 400 -o "$T/small/img_%03d.png"
  # images written before the disk filled up are complete PNGs; no partial or temporary file
  for f in "$T/small"/img_*.png; do
    [ -e "$f" ] || continue
    [ "$(tail -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "49454e44ae426082" ] || { bad "disk full: $f is not a complete PNG"; break; }
  done
else
  skip "disk full: cannot mount a 64 KiB tmpfs here (not root?)"
fi
run_case "output: file size limit (ulimit -f)" 4 "write failed: File too large" "$T/o/big.npy" -- bash -c "ulimit -f 16; exec '$GEN' ${G[*]} -m '$TINY' -b 300 -o '$T/o/big.npy'"
run_case "output: pndm-unet missing directory" 4 "cannot create file|does not exist" "$T/nodir/y.npy" -- "$UNET" -m "$TINY" -x "$T/x.npy" --timestep 1 -o "$T/nodir/y.npy"

echo "$pass passed, $fail failed, $skipped skipped (hostile-input matrix: $((pass + fail)) cases run)"
[ "$fail" = 0 ]
