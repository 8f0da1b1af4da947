# pndm-unet end to end: each golden UNet case through the CLI (compared by
# `test_unet --compare`, no Python), byte-identical output for any --threads, and the error
# paths: exit code = pndm_status, one line on stderr, no output file left behind.
# usage: bash tests/cli_unet.sh BUILD_DIR DATA_DIR
set -u
BUILD=$1
DATA=$2
BIN="$BUILD/pndm-unet"
CMP="$BUILD/tests/test_unet"
U="$DATA/unet"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pndm_cli_unet.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { checks=$((checks + 1)); }

for f in "$BIN" "$CMP"; do
    [ -x "$f" ] || { echo "missing $f (build the pndm-unet and test_unet targets)"; exit 1; }
done

# ---- parity: t_batch and the scalar timestep of every case ----------------------------------
run_case() {   # case scalar_t
    local c=$1 t=$2
    if "$BIN" --model "$U/$c/model" --sample "$U/$c/sample.npy" --timesteps "$U/$c/t_batch.npy" \
        -o "$TMP/$c.batch.npy" >/dev/null 2>"$TMP/err"; then ok; else fail "$c batch: $(cat "$TMP/err")"; fi
    if "$CMP" --compare "$TMP/$c.batch.npy" "$U/$c/out_t_batch.npy"; then ok; else fail "$c out_t_batch"; fi
    if "$BIN" -m "$U/$c/model" -x "$U/$c/sample.npy" --timestep "$t" -o "$TMP/$c.scalar.npy" >/dev/null 2>"$TMP/err"; then ok
    else fail "$c scalar: $(cat "$TMP/err")"; fi
    if "$CMP" --compare "$TMP/$c.scalar.npy" "$U/$c/out_t_scalar.npy"; then ok; else fail "$c out_t_scalar"; fi
}
run_case a_dummy 500
run_case b_cifar10_shrunk 999
run_case c_gray 250
run_case d_scale_shift 42
run_case e_fourier_skip 7

# ---- determinism: --threads 1 and 3 give the bytes of the default ----------------------------
for n in 1 3; do
    "$BIN" --model "$U/b_cifar10_shrunk/model" --sample "$U/b_cifar10_shrunk/sample.npy" \
        --timesteps "$U/b_cifar10_shrunk/t_batch.npy" --threads "$n" -o "$TMP/th$n.npy" >/dev/null 2>&1
    if cmp -s "$TMP/th$n.npy" "$TMP/b_cifar10_shrunk.batch.npy"; then ok; else fail "--threads $n output differs"; fi
done

# ---- kernel choices: every backend and ISA path within the golden tolerance, and
# byte-identical for any --threads on each ---------------------------------------------------
B="$U/b_cifar10_shrunk"
for k in "--gemm native" "--gemm openblas" "--kernel generic" "--kernel avx2"; do
    # shellcheck disable=SC2086
    if ! "$BIN" -m "$B/model" -x "$B/sample.npy" --timesteps "$B/t_batch.npy" $k -v --overwrite -o "$TMP/k1.npy" \
        >/dev/null 2>"$TMP/err"; then
        if grep -q "not built in" "$TMP/err"; then echo "  ($k: $(cat "$TMP/err"))"; continue; fi
        fail "$k: $(cat "$TMP/err")"; continue
    fi
    echo "  $k: $(grep -o 'kernels [a-z0-9+]*' "$TMP/err")"
    if "$CMP" --compare "$TMP/k1.npy" "$B/out_t_batch.npy" >/dev/null; then ok; else fail "$k: out_t_batch"; fi
    # shellcheck disable=SC2086
    "$BIN" -m "$B/model" -x "$B/sample.npy" --timesteps "$B/t_batch.npy" $k -t 3 --overwrite -o "$TMP/k3.npy" >/dev/null 2>&1
    if cmp -s "$TMP/k1.npy" "$TMP/k3.npy"; then ok; else fail "$k: --threads 3 output differs"; fi
done

# ---- help ------------------------------------------------------------------------------------
out=$("$BIN" --help 2>/dev/null); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q -- "--timesteps" && printf '%s' "$out" | grep -q "default: "; then ok
else fail "--help (rc $rc)"; fi

# ---- errors ----------------------------------------------------------------------------------
# expect CODE DESCRIPTION ARGS...: exit code, exactly one stderr line, no output file
OUT="$TMP/err_out.npy"
expect() {
    local code=$1 what=$2
    shift 2
    rm -f "$OUT"
    "$BIN" "$@" >/dev/null 2>"$TMP/stderr"
    local rc=$?
    local lines
    # one message line; usage errors (exit 2) may add the pointer "Try 'pndm-unet --help'."
    lines=$(grep -cv "^Try 'pndm-unet --help'\.\$" "$TMP/stderr")
    if [ "$rc" -ne "$code" ]; then fail "$what: exit $rc, expected $code ($(cat "$TMP/stderr"))"; return; fi
    if [ "$lines" -ne 1 ]; then fail "$what: $lines stderr lines"; return; fi
    if [ "$code" -ne 2 ] && grep -q "^Try " "$TMP/stderr"; then fail "$what: help pointer on a non-usage error"; return; fi
    if ls "$TMP" | grep -q "^err_out"; then fail "$what: output file left behind"; return; fi
    ok
    echo "  exit $rc ($what): $(head -1 "$TMP/stderr")"
}
A="$U/a_dummy"
expect 2 "--gemm unknown" -m "$A/model" -x "$A/sample.npy" --timestep 1 --gemm cuda -o "$OUT"
expect 2 "--kernel unknown" -m "$A/model" -x "$A/sample.npy" --timestep 1 --kernel neon -o "$OUT"
# make_npy FILE SHAPE COUNT: a float32 .npy of zeros (format 1.0, header padded to 64 bytes)
make_npy() {
    local dict="{'descr': '<f4', 'fortran_order': False, 'shape': $2, }"
    local pad=$(( (64 - (10 + ${#dict} + 1) % 64) % 64 ))
    local hlen=$(( ${#dict} + pad + 1 ))
    {
        printf '\223NUMPY\001\000'
        printf "\\$(printf '%03o' $((hlen % 256)))\\$(printf '%03o' $((hlen / 256)))"
        printf '%s%*s\n' "$dict" "$pad" ''
        head -c $(( $3 * 4 )) /dev/zero
    } >"$1"
}
expect 2 "no arguments"
expect 2 "unknown flag" --frobnicate
expect 2 "missing --output" -m "$A/model" -x "$A/sample.npy" --timestep 1
expect 2 "both timestep flags" -m "$A/model" -x "$A/sample.npy" --timestep 1 --timesteps "$A/t_batch.npy" -o "$OUT"
expect 2 "bad --timestep" -m "$A/model" -x "$A/sample.npy" --timestep abc -o "$OUT"
expect 2 "bad --threads" -m "$A/model" -x "$A/sample.npy" --timestep 1 --threads -1 -o "$OUT"
expect 2 "flag without value" -m "$A/model" -x "$A/sample.npy" --timestep 1 -o
expect 4 "missing model" -m "$TMP/nope" -x "$A/sample.npy" --timestep 1 -o "$OUT"
mkdir -p "$TMP/badmodel"
sed 's/"act_fn": "silu"/"act_fn": "gelu"/' "$A/model/config.json" >"$TMP/badmodel/config.json"
ln -s "$(cd "$A/model" && pwd)/diffusion_pytorch_model.safetensors" "$TMP/badmodel/diffusion_pytorch_model.safetensors"
expect 3 "unsupported act_fn" -m "$TMP/badmodel" -x "$A/sample.npy" --timestep 1 -o "$OUT"
expect 3 "not a model folder" -m "$TMP" -x "$A/sample.npy" --timestep 1 -o "$OUT"
expect 4 "missing sample" -m "$A/model" -x "$TMP/nope.npy" --timestep 1 -o "$OUT"
expect 6 "sample not float" -m "$A/model" -x "$A/t_batch.npy" --timestep 1 -o "$OUT"
make_npy "$TMP/x2d.npy" "(2, 3)" 6
expect 6 "sample not 4-D" -m "$A/model" -x "$TMP/x2d.npy" --timestep 1 -o "$OUT"
expect 6 "sample channels" -m "$A/model" -x "$U/c_gray/sample.npy" --timestep 1 -o "$OUT"
make_npy "$TMP/x6.npy" "(1, 3, 6, 6)" 108
if "$BIN" -m "$A/model" -x "$TMP/x6.npy" --timestep 3 -o "$TMP/x6_out.npy" >/dev/null 2>&1; then ok
else fail "a (1, 3, 6, 6) sample made by make_npy does not run on a_dummy"; fi
expect 6 "sample size not divisible" -m "$U/b_cifar10_shrunk/model" -x "$TMP/x6.npy" --timestep 1 -o "$OUT"
printf 'not a npy file' >"$TMP/junk.npy"
expect 6 "malformed sample" -m "$A/model" -x "$TMP/junk.npy" --timestep 1 -o "$OUT"
expect 6 "timesteps length" -m "$U/c_gray/model" -x "$U/c_gray/sample.npy" --timesteps "$A/sample.npy" -o "$OUT"
expect 2 "fourier model, --timestep 0" -m "$U/e_fourier_skip/model" -x "$U/e_fourier_skip/sample.npy" --timestep 0 -o "$OUT"
expect 4 "output folder missing" -m "$A/model" -x "$A/sample.npy" --timestep 1 -o "$TMP/no/such/dir/out.npy"

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
