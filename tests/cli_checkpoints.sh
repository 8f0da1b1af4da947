#!/usr/bin/env bash
# Checkpoint formats and model locations through the real pndm-gen (fixtures: tests/data/ckpt,
# made by tools/make_ckpt_fixtures.py with diffusers 0.30.3 + torch 1.13; no Python here):
#   1. every case of cases.txt (Hub ids through HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME / HOME,
#      models--* and snapshot folders, --revision, --variant, the google/ddpm-* root layout with
#      old attention names, .bin zip / legacy / bf16 / views / zip64, shards, pipelines) against
#      diffusers' PNDMPipeline: final latents max|err| <= 1e-5 * max|ref|, images max|err| <= 1e-3
#      (the pipeline tolerances of tests/data/pipeline);
#   2. the hostile-pickle matrix: exit 3, one message line, no output file, and no canary file
#      (what the payload would create) ever appears;
#   3. files that are no weights say what they are; Hub misses, bad revisions, variants and
#      symlinks leaving the cache are refused with one clear line.
#   bash tests/cli_checkpoints.sh BUILD_DIR DATA_DIR        (CKPT_VERBOSE=1: print the figures)
set -u
export LC_ALL=C
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_HOME XDG_CACHE_HOME
B=$(cd "$1" && pwd) && D=$(cd "$2/ckpt" && pwd) || exit 1
GEN="$B/pndm-gen"
UNET="$B/pndm-unet"
CMP="$B/tests/test_checkpoints"
for f in "$GEN" "$UNET" "$CMP"; do [ -x "$f" ] || { echo "missing $f (build pndm-gen, pndm-unet, test_checkpoints)"; exit 1; }; done
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/o" "$T/cwd"
pass=0; fail=0
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
ok() { pass=$((pass+1)); }

# ---- 1. every layout against diffusers -------------------------------------------------------
while IFS='|' read -r name env model flags how; do
  case "$name" in ''|'#'*) continue;; esac
  m="$model"; [ -e "$D/$model" ] && m="$D/$model"
  envs=(); [ -n "$env" ] && envs=("${env//\{D\}/$D}")
  rm -f "$T/o"/*
  # shellcheck disable=SC2086
  if ! env "${envs[@]}" "$GEN" -q -t 1 -m "$m" $flags -o "$T/o/img.npy" --latents "$T/o/lat.npy" >/dev/null 2>"$T/err"; then
    bad "$name: pndm-gen failed: $(head -c 400 "$T/err")"; continue
  fi
  l=$("$CMP" --compare "$T/o/lat.npy" "$D/ref/$name/final_latents.npy" 1e-5 0) || { bad "$name: final latents: $l"; continue; }
  i=$("$CMP" --compare "$T/o/img.npy" "$D/ref/$name/images.npy" 0 1e-3) || { bad "$name: images: $i"; continue; }
  ok
  if [ -n "${CKPT_VERBOSE:-}" ]; then printf '%-22s latents %s\n%-22s images  %s\n' "$name" "$l" "" "$i"; fi
done <"$D/cases.txt"

# the default cache folder through HOME and XDG_CACHE_HOME (a symlinked hub, as people make them)
mkdir -p "$T/home/.cache/huggingface" "$T/xdg/huggingface"
ln -s "$D/hub" "$T/home/.cache/huggingface/hub"
ln -s "$D/hub" "$T/xdg/huggingface/hub"
for e in "HOME=$T/home" "XDG_CACHE_HOME=$T/xdg" "HUGGINGFACE_HUB_CACHE=$D/hub"; do
  rm -f "$T/o"/*
  if env "$e" "$GEN" -q -t 1 -m pndm-test/tiny-ddpm -n 10 -b 2 -s 1 -o "$T/o/img.npy" --latents "$T/o/lat.npy" \
       >/dev/null 2>"$T/err" && "$CMP" --compare "$T/o/lat.npy" "$D/ref/hub_id/final_latents.npy" 1e-5 0 >/dev/null; then
    ok
  else bad "Hub id through $e: $(head -c 300 "$T/err")"; fi
done
# pndm-unet takes the same models
rm -f "$T/o"/*
if HF_HUB_CACHE="$D/hub" "$UNET" -m pndm-test/tiny-ddpm --revision v2 --variant fp16 -x "$D/ref/hub_id/final_latents.npy" \
     --timestep 10 -o "$T/o/eps.npy" >/dev/null 2>"$T/err" && [ -s "$T/o/eps.npy" ]; then ok; else bad "pndm-unet with a Hub id: $(head -c 300 "$T/err")"; fi

# ---- 2. hostile files: exit 3, one line, nothing written, nothing run -------------------------
# expect_refused NAME CODE REGEX -- command...   (runs in $T/cwd, where a payload would leave CANARY_*)
expect_refused() {
  local name=$1 code=$2 re=$3; shift 4
  rm -f "$T/o"/* "$T/stderr"
  (cd "$T/cwd" && timeout -k 5 20 "$@" >/dev/null 2>"$T/stderr" </dev/null)
  local rc=$?
  local msg; msg=$(grep -Ev "^Try 'pndm-(gen|unet) --help'\.\$" "$T/stderr")
  if [ "$rc" != "$code" ]; then bad "$name: exit $rc, expected $code: $(head -c 300 "$T/stderr")"; return; fi
  if [ "$(printf '%s' "$msg" | grep -c '')" != 1 ]; then bad "$name: not one message line: $(head -c 300 "$T/stderr")"; return; fi
  if ! printf '%s' "$msg" | grep -Eq -- "$re"; then bad "$name: message does not match /$re/: $msg"; return; fi
  if [ -n "$(ls -A "$T/o")" ]; then bad "$name: left an output: $(ls -A "$T/o")"; return; fi
  if ls "$T/cwd"/CANARY_* "$T"/CANARY_* /tmp/CANARY_* >/dev/null 2>&1; then bad "$name: A PAYLOAD RAN (canary file exists)"; return; fi
  ok
  if [ -n "${CKPT_VERBOSE:-}" ]; then printf 'ok %-26s %s\n' "$name" "$msg"; fi
}
G=(-q -n 1 --skip-prk-steps -s 1 -t 1 -o "$T/o/out.png")
H="$D/hostile"
while read -r file re; do
  [ -n "$file" ] || continue
  expect_refused "$file" 3 "$re" -- "$GEN" "${G[@]}" -m "$H/$file"
done <<'EOF'
reduce_os_system.bin global 'posix\.system' is not allowed in a weights file \(refused without running anything
reduce_eval.bin global 'builtins\.eval' is not allowed
reduce_popen.bin global 'subprocess\.Popen' is not allowed
reduce_stack_global_p4.bin global 'posix\.system' is not allowed
legacy_os_system.bin legacy state-dict pickle: pickle offset [0-9]+: global 'posix\.system' is not allowed
global_numpy.bin global 'numpy\.core\.multiarray\._reconstruct' is not allowed
reduce_storage_class.bin REDUCE of torch\.FloatStorage is not allowed
reduce_string.bin REDUCE applies the string 'os\.system'
build_on_tensor.bin BUILD on a call of torch\._utils\._rebuild_tensor_v2
missing_data.bin tensor 'conv_in\.bias': its storage record 'archive/data/7' is missing from the archive
view_past_storage.bin tensor 'conv_in\.bias': view .* reaches element 5, past the 4 of its storage
stride_past_storage.bin tensor 'conv_in\.weight': view .* reaches element 4, past the 4 of its storage
negative_dim.bin tensor 'conv_in\.bias': size\[0\] = -1 is negative
huge_dims.bin tensor 'conv_in\.bias': size and stride overflow 64 bits
storage_size_mismatch.bin storage record 'archive/data/0' holds 16 bytes, but 8 elements of float32 need 32
float64.bin tensor 'conv_in\.bias': dtype float64 \(torch\.DoubleStorage\) is not supported
deflated.bin zip entry 'archive/data/0': is compressed \(method 8, deflate\)
truncated.bin zip archive without an end-of-central-directory record \(truncated
cd_outside.bin central directory .* lies outside the file
encrypted.bin zip entry 'archive/data\.pkl': is encrypted
outside_prefix.bin zip entry 'other/evil': is outside the archive folder 'archive/'
overlap.bin zip entry 'archive/data/0': overlaps entry 'archive/data\.pkl'
zip_not_torch.bin a zip archive, but not a PyTorch checkpoint: no 'readme/data\.pkl'
deep_nesting.bin values nested deeper than 100 levels
deep_marks.bin MARKs nested deeper than 100 levels
unbounded_memo.bin memo index 4294967280 out of range
memo_flood.bin memo index [0-9]+ out of range
protocol5_buffer.bin opcode NEXT_BUFFER \(protocol 5 out-of-band buffer\) is not allowed
not_a_dict.bin holds a list of 0 items, not a state dict
no_stop.bin pickle ends without STOP \(truncated\)
cyclic_list.bin not a state dict
image.png not a safetensors file: it starts like a PNG image
notes.txt not a safetensors file: it starts like a text file \('these are not weights'\)
lfs_pointer.safetensors it starts like a Git LFS pointer, not the weights themselves
random.safetensors header length .*; it does not look like a safetensors or PyTorch file \(first bytes 29 72
good.bin missing tensor 'conv_in\.weight'
EOF
# the same payloads inside a model folder, and through pndm-unet
for p in reduce_os_system reduce_eval reduce_popen; do
  mkdir -p "$T/m_$p"; cp "$H/config.json" "$T/m_$p/"; cp "$H/$p.bin" "$T/m_$p/diffusion_pytorch_model.bin"
  expect_refused "$p in a model folder" 3 "diffusion_pytorch_model\.bin: .*global .* is not allowed" -- "$GEN" "${G[@]}" -m "$T/m_$p"
  expect_refused "$p via pndm-unet" 3 "is not allowed" -- "$UNET" -m "$T/m_$p" -x "$D/ref/hub_id/final_latents.npy" --timestep 1 -o "$T/o/out.npy"
done

# ---- 3. locations ---------------------------------------------------------------------------
expect_refused "Hub id not in the cache" 3 "pndm-test/absent: no such file or folder, and not in the Hugging Face cache \(looked for .*models--pndm-test--absent.*huggingface-cli download pndm-test/absent" \
  -- env HF_HUB_CACHE="$D/hub" "$GEN" "${G[@]}" -m pndm-test/absent
expect_refused "unknown revision" 3 "revision 'nope' is not in the cache \(no refs/nope; cached refs: main, v2\)" \
  -- env HF_HUB_CACHE="$D/hub" "$GEN" "${G[@]}" -m pndm-test/tiny-ddpm --revision nope
expect_refused "revision with ..' " 2 "revision '\.\./main' is not a branch name or commit" \
  -- env HF_HUB_CACHE="$D/hub" "$GEN" "${G[@]}" -m pndm-test/tiny-ddpm --revision ../main
expect_refused "revision for a local folder" 2 "is a local path, not a Hub id" -- "$GEN" "${G[@]}" -m "$D/model_bin_zip" --revision main
expect_refused "variant only, none asked" 3 "only variants: fp16 \(choose one with --variant\)" \
  -- env HF_HUB_CACHE="$D/hub" "$GEN" "${G[@]}" -m pndm-test/tiny-ddpm --revision v2
expect_refused "variant missing" 3 "no weights for variant 'ema' .*found: config\.json, diffusion_pytorch_model\.fp16\.safetensors; variants here: fp16" \
  -- "$GEN" "${G[@]}" -m "$D/hub/models--pndm-test--tiny-ddpm" --revision v2 --variant ema
expect_refused "variant of a file" 2 "is a weights file" -- "$GEN" "${G[@]}" -m "$D/model_bin_zip/diffusion_pytorch_model.bin" --variant fp16
mkdir -p "$T/evil/models--o--evil/refs" "$T/evil/models--o--evil/snapshots/c1" "$T/secret"
printf c1 >"$T/evil/models--o--evil/refs/main"
cp "$D/model_bin_zip/config.json" "$T/secret/config.json"
ln -s ../../../../secret/config.json "$T/evil/models--o--evil/snapshots/c1/config.json"
cp "$D/model_bin_zip/diffusion_pytorch_model.bin" "$T/evil/models--o--evil/snapshots/c1/"
expect_refused "symlink leaving the cache" 3 "config\.json: resolves to .*secret/config\.json, outside the Hub cache folder" \
  -- env HF_HUB_CACHE="$T/evil" "$GEN" "${G[@]}" -m o/evil
mkdir -p "$T/one"; cp "$D/pipe_variant/unet/diffusion_pytorch_model.safetensors" "$T/one/weights.safetensors"
expect_refused "folder with one weights file" 3 "not a model folder .* it holds one weights file, weights\.safetensors: give that file with -m" \
  -- "$GEN" "${G[@]}" -m "$T/one"
mkdir -p "$T/nowts"; cp "$D/model_bin_zip/config.json" "$T/nowts/"; : >"$T/nowts/notes.md"
expect_refused "model folder without weights" 3 "no weights in the model folder \(looked for diffusion_pytorch_model\.safetensors, diffusion_pytorch_model\.bin and their \.index\.json shards\); found: config\.json, notes\.md" \
  -- "$GEN" "${G[@]}" -m "$T/nowts"
mkdir -p "$T/both"; cp "$D/model_bin_zip/config.json" "$T/both/"
cp "$D/pipe_variant/unet/diffusion_pytorch_model.safetensors" "$T/both/"
expect_refused "shard index naming a missing shard" 4 "shard 'x-00001\.safetensors'.*cannot open" \
  -- bash -c "printf '{\"weight_map\": {\"conv_in.bias\": \"x-00001.safetensors\"}}' >'$T/both/diffusion_pytorch_model.safetensors.index.json' && exec '$GEN' -q -n 1 --skip-prk-steps -o '$T/o/out.png' -m '$T/both'"
expect_refused "shard index leaving the folder" 3 "names '\.\./x\.safetensors', not a file inside the index's folder" \
  -- bash -c "printf '{\"weight_map\": {\"conv_in.bias\": \"../x.safetensors\"}}' >'$T/both/diffusion_pytorch_model.safetensors.index.json' && exec '$GEN' -q -n 1 --skip-prk-steps -o '$T/o/out.png' -m '$T/both'"
"$GEN" --help | grep -q "Hub id" && "$GEN" --help | grep -q "HF_HUB_CACHE" && ok || bad "--help does not mention Hub ids and HF_HUB_CACHE"

echo "cli_checkpoints: $pass passed, $fail failed"
[ "$fail" = 0 ]
