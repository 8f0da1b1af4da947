#!/usr/bin/env bash
# Sample sets (pndm-gen -N) in one process: every image byte-identical to `pndm-gen -b 1 -s seed+i`
# for several --batch and --threads, --start-index, --shard, the manifest, .npz and --npz,
# --skip-existing (keeps this run's files, refuses others), kill -9 at random moments and resume
# (the final set byte-identical to an uninterrupted run), SIGINT within one chunk, usage errors.
#   bash tests/cli_sets.sh BUILD_DIR DATA_DIR
set -u
export LC_ALL=C
GEN="$(cd "$1" && pwd)/pndm-gen"
DATA="$(cd "$2" && pwd)"
GRAY="$DATA/unet/c_gray/model"         # 1-channel 28x28 test UNet
TINY="$DATA/hostile/tiny.safetensors"  # 8x8, fast: for the many-image runs
T=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }

# expect CODE DESCRIPTION -- command...   (stderr must name pndm-gen for errors)
expect() {
  local code=$1 what=$2; shift 3
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" != "$code" ]; then bad "$what: exit $rc, expected $code; stderr: $(head -c 400 "$T/err")"; return 1; fi
  if [ "$code" != 0 ] && ! grep -q "pndm-gen" "$T/err"; then bad "$what: no error message"; return 1; fi
  ok
}
in_dir() { local d=$1; shift; (cd "$d" && "$@"); }
same_dirs() { # same_dirs A B WHAT: the same file names and bytes, nothing else
  if diff -r "$1" "$2" >/dev/null; then ok; else bad "$3: $(diff -r "$1" "$2" 2>&1 | head -3)"; fi
}
manifest_ok() { # manifest_ok DIR MANIFEST WHAT: every line's sha256 is its file's
  local n=0 badn=0 line f h
  while IFS= read -r line; do
    f=$(printf '%s' "$line" | sed 's/.*"file":"\([^"]*\)".*/\1/')
    h=$(printf '%s' "$line" | sed 's/.*"sha256":"\([0-9a-f]*\)".*/\1/')
    [ "$(cd "$1" && sha256sum "$f" | cut -d' ' -f1)" = "$h" ] || badn=$((badn+1))
    n=$((n+1))
  done < "$2"
  [ "$badn" = 0 ] && [ "$n" -gt 0 ] && ok || bad "$3: $badn of $n manifest hashes wrong"
}

S=100          # the set's seed
N=10
STEPS=(-n 4)

# 1. the reference: image i alone, `-b 1 -s S+i`
mkdir -p "$T/ref/set"
for i in $(seq 0 $((N - 1))); do
  "$GEN" -q -m "$GRAY" "${STEPS[@]}" -b 1 -s $((S + i)) -t 1 -o "$T/ref/set/$(printf %02d "$i").png" >/dev/null ||
    bad "reference image $i"
done

# 2. chunked runs, several batches and thread counts: the same bytes, and the same manifest
for bt in "1 1" "3 2" "4 1" "10 2" "16 1"; do
  set -- $bt
  d="$T/b$1_t$2"
  mkdir -p "$d/set"
  (cd "$d" && "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N $N -b "$1" -t "$2" -s $S -o 'set/%02d.png' >"$T/out_b" 2>"$T/err_b") ||
    bad "chunked -b $1 -t $2: $(cat "$T/err_b")"
  [ -s "$d/set/manifest.jsonl" ] && ok || bad "-b $1: no manifest"
  manifest_ok "$d" "$d/set/manifest.jsonl" "-b $1 -t $2"
  mv "$d/set/manifest.jsonl" "$d/manifest.jsonl"
  same_dirs "$T/ref/set" "$d/set" "-N $N -b $1 -t $2 vs -b 1 -s seed+i"
  [ "$(wc -l < "$T/out_b")" = $((N + 1)) ] && [ "$(head -1 "$T/out_b")" = "set/00.png" ] &&
    [ "$(tail -1 "$T/out_b")" = "set/manifest.jsonl" ] && ok || bad "-b $1: stdout lists the files: $(head -3 "$T/out_b")"
done
cmp -s "$T/b1_t1/manifest.jsonl" "$T/b4_t1/manifest.jsonl" && cmp -s "$T/b1_t1/manifest.jsonl" "$T/b10_t2/manifest.jsonl" &&
  ok || bad "manifests differ between batch sizes"
head -1 "$T/b1_t1/manifest.jsonl" | grep -q '^{"index":0,"seed":100,"file":"set/00.png","sha256":"[0-9a-f]\{64\}"}$' &&
  ok || bad "manifest line: $(head -1 "$T/b1_t1/manifest.jsonl")"
"$GEN" --info "$T/b4_t1/set/07.png" | grep "seed=107; per_image_seeds=0; batch=1;" | grep -q "image_index=0; image_seed=107" &&
  ok || bad "PNG record of image 7: $("$GEN" --info "$T/b4_t1/set/07.png" | head -1)"
expect 0 "--reproduce a set image" -- "$GEN" -q --reproduce "$T/b4_t1/set/07.png" -m "$GRAY" -o "$T/rep07.png"
cmp -s "$T/rep07.png" "$T/ref/set/07.png" && ok || bad "--reproduce of a set image differs"

# 3. --start-index continues a set; --shard K/R splits it; the shards' union is the set
mkdir -p "$T/si/set" "$T/sh/set"
expect 0 "--start-index" -- "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N 4 --start-index 6 -b 3 -s $S -o "$T/si/set/%02d.png"
for i in 06 07 08 09; do cmp -s "$T/si/set/$i.png" "$T/ref/set/$i.png" || bad "--start-index: image $i differs"; done
[ ! -e "$T/si/set/05.png" ] && [ ! -e "$T/si/set/10.png" ] && ok || bad "--start-index wrote outside its range"
[ -s "$T/si/set/manifest.6-9.jsonl" ] && [ ! -e "$T/si/set/manifest.jsonl" ] && ok || bad "--start-index manifest: $(ls "$T/si/set")"
for k in 0 1 2; do
  expect 0 "--shard $k/3" -- "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N $N -b 2 -s $S --shard $k/3 -o "$T/sh/set/%02d.png"
  [ -s "$T/sh/set/manifest.shard-$k-of-3.jsonl" ] && ok || bad "shard $k manifest"
done
[ "$(cat "$T"/sh/set/manifest.shard-*.jsonl | wc -l)" = $N ] && ok || bad "shard manifests: $(cat "$T"/sh/set/manifest.shard-*.jsonl | wc -l) lines"
rm -f "$T"/sh/set/manifest.shard-*
same_dirs "$T/ref/set" "$T/sh/set" "--shard union"

# 4. .npz: -o FILE.npz (parts folder removed after), and --npz next to the PNGs: the same bytes
expect 0 "npz output" -- "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o "$T/set.npz"
[ -s "$T/set.npz" ] && [ ! -e "$T/set.npz.parts" ] && [ -s "$T/set.manifest.jsonl" ] && ok || bad "npz output files: $(ls "$T")"
head -c 4 "$T/set.npz" | od -An -tx1 | grep -q "50 4b 03 04" && ok || bad "npz is not a zip"
# the zip holds arr_0.npy, stored, uint8 (N, 28, 28, 1): header fields at their offsets (numpy's layout)
[ "$(dd if="$T/set.npz" bs=1 skip=30 count=9 2>/dev/null)" = "arr_0.npy" ] && ok || bad "npz member name"
dd if="$T/set.npz" bs=1 skip=39 count=128 2>/dev/null | grep -q "'descr': '|u1', 'fortran_order': False, 'shape': ($N, 28, 28, 1)" &&
  ok || bad "npz .npy header"
grep -q '"file":"'"$T"'/set.npz","row":3,' "$T/set.manifest.jsonl" && ok || bad "npz manifest: $(sed -n 4p "$T/set.manifest.jsonl")"
mkdir -p "$T/pk/set"; cp "$T"/ref/set/*.png "$T/pk/set/"
expect 0 "--npz from the PNGs" -- "$GEN" -q --json -m "$GRAY" "${STEPS[@]}" -N $N -b 3 -s $S -o "$T/pk/set/%02d.png" --skip-existing --npz "$T/pk.npz"
grep -q '"generated":[[:space:]]*0,' "$T/out" && grep -q '"skipped":[[:space:]]*'$N, "$T/out" && ok || bad "packing generated images: $(head -5 "$T/out")"
cmp -s "$T/set.npz" "$T/pk.npz" && ok || bad "-o set.npz and --npz differ"

# 5. --skip-existing: keeps this run's files, makes the missing ones, refuses other runs' files
mkdir -p "$T/sk"; cp -r "$T/ref/set" "$T/sk/"; rm "$T/sk/set/03.png" "$T/sk/set/08.png"
expect 0 "--skip-existing" -- in_dir "$T/sk" "$GEN" -q --json -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o 'set/%02d.png' --skip-existing
grep -q '"generated":[[:space:]]*2,' "$T/out" && grep -q '"skipped":[[:space:]]*8,' "$T/out" && ok || bad "skip counts: $(grep -E 'generated|skipped' "$T/out")"
mv "$T/sk/set/manifest.jsonl" "$T/sk/manifest.jsonl"
same_dirs "$T/ref/set" "$T/sk/set" "--skip-existing result"
cmp -s "$T/sk/manifest.jsonl" "$T/b4_t1/manifest.jsonl" && ok || bad "--skip-existing manifest"
cp "$T/ref/set/04.png" "$T/sk/set/05.png"     # another image in image 5's place
expect 4 "file of another image in the way" -- "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o "$T/sk/set/%02d.png" --skip-existing
grep -q "set/05.png is in the way: it is not image 5 of this set (it has 'seed=104' where this run has 'seed=105')" "$T/err" &&
  ok || bad "in-the-way message: $(cat "$T/err")"
cmp -s "$T/ref/set/04.png" "$T/sk/set/05.png" && ok || bad "the file in the way was touched"
expect 4 "other steps" -- "$GEN" -q -m "$GRAY" -n 5 -N $N -b 4 -s $S -o "$T/ref/set/%02d.png" --skip-existing
grep -q "it has 'steps=4' where this run has 'steps=5'" "$T/err" && ok || bad "steps mismatch message: $(cat "$T/err")"
printf 'not a png' > "$T/sk/set/05.png"
expect 4 "junk in the way" -- "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o "$T/sk/set/%02d.png" --skip-existing
grep -q "05.png is in the way: it is not image 5 of this set (not a complete PNG" "$T/err" && ok || bad "junk message: $(cat "$T/err")"
mkdir "$T/sk/set/06.png.d"; rm "$T/sk/set/06.png"; ln -s 06.png.d "$T/sk/set/06.png"; rm "$T/sk/set/05.png"
expect 4 "symlink in the way" -- "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o "$T/sk/set/%02d.png" --skip-existing
grep -q "06.png is in the way: it is not a regular file" "$T/err" && ok || bad "symlink message: $(cat "$T/err")"
[ -L "$T/sk/set/06.png" ] && [ -d "$T/sk/set/06.png.d" ] && ok || bad "the symlink was replaced"

# existing files without --skip-existing: refused before the run (nothing written), or replaced
# with --overwrite; --skip-existing --overwrite replaces only a file of another run
mkdir -p "$T/ow"; cp -r "$T/ref/set" "$T/ow/"; cp "$T/ref/set/02.png" "$T/ow/set/05.png"
expect 4 "existing set, no policy" -- "$GEN" -q -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o "$T/ow/set/%02d.png"
grep -q "00.png and other images of the set exist: use --skip-existing" "$T/err" && [ ! -e "$T/ow/set/manifest.jsonl" ] &&
  ok || bad "refusal of an existing set: $(cat "$T/err")"
expect 0 "--skip-existing --overwrite" -- "$GEN" -q --json -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o "$T/ow/set/%02d.png" --skip-existing --overwrite
grep -q '"generated":[[:space:]]*1,' "$T/out" && cmp -s "$T/ow/set/05.png" "$T/ref/set/05.png" && ok || bad "the file of another run was not remade"
cp "$T/ref/set/02.png" "$T/ow/set/05.png"
expect 0 "--overwrite" -- "$GEN" -q --json -m "$GRAY" "${STEPS[@]}" -N $N -b 4 -s $S -o "$T/ow/set/%02d.png" --overwrite
grep -q '"generated":[[:space:]]*'$N, "$T/out" && ok || bad "--overwrite: $(grep generated "$T/out")"
rm "$T/ow/set/manifest.jsonl"
same_dirs "$T/ref/set" "$T/ow/set" "after --overwrite"
expect 2 "-N with --reproduce" -- "$GEN" -N 2 --reproduce "$T/ref/set/00.png" -o "$T/u2.png"

# 6. kill -9 at random moments, resume each time with --skip-existing: the final set is the
#    uninterrupted run's, byte for byte, with no temporary file left
R=${PNDM_TEST_SEED:-$RANDOM}
RANDOM=$R
echo "kill -9 test: random seed $R (PNDM_TEST_SEED=$R to repeat)"
KN=240
mkdir -p "$T/k_ref/set" "$T/k/set"
t0=$(date +%s%N)
(cd "$T/k_ref" && "$GEN" -q -m "$TINY" -n 5 -N $KN -b 7 -s 3 -o 'set/%03d.png' >/dev/null) || bad "kill test reference"
ref_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
# each run is killed after 3-12 % of the uninterrupted run's time: at least three rounds are
# killed on any machine, however fast, even when the reference ran twice as slow as the rest
kills=0
for round in 1 2 3 4 5 6; do
  (cd "$T/k" && exec "$GEN" -q -m "$TINY" -n 5 -N $KN -b 7 -s 3 -o 'set/%03d.png' --skip-existing >/dev/null 2>"$T/err_k") &
  PID=$!
  ms=$(( ref_ms * (RANDOM % 10 + 3) / 100 + 1 ))
  sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
  if kill -9 "$PID" 2>/dev/null; then kills=$((kills+1)); fi
  wait "$PID" 2>/dev/null; PID=""
done
have=$(ls "$T/k/set" | grep -c '^[0-9]*\.png$')
echo "kill -9 test: $kills kills, $have of $KN images before the last run (uninterrupted run: $ref_ms ms)"
[ "$kills" -ge 3 ] && ok || bad "the runs finished before they could be killed ($kills kills)"
expect 0 "resume after kill -9" -- in_dir "$T/k" "$GEN" -q --json -m "$TINY" -n 5 -N $KN -b 7 -s 3 -o 'set/%03d.png' --skip-existing
grep -q '"skipped":[[:space:]]*'"$have"',' "$T/out" && ok || bad "resume skipped != images there ($have): $(grep skipped "$T/out")"
same_dirs "$T/k_ref/set" "$T/k/set" "set after kill -9 and resume"

# 7. SIGINT stops within one chunk's UNet calls; finished images stay, the message says how to go on
mkdir -p "$T/int/set"
"$GEN" -m "$GRAY" -n 200 -N 50 -b 2 -s 1 -t 1 -o "$T/int/set/%02d.png" >"$T/out_i" 2>"$T/err_i" &
PID=$!
for i in $(seq 600); do [ -e "$T/int/set/00.png" ] && break; kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
t0=$SECONDS
kill -INT "$PID"; wait "$PID"; rc=$?; PID=""
[ "$rc" = 130 ] && ok || bad "SIGINT: exit $rc; $(tail -2 "$T/err_i")"
[ $((SECONDS - t0)) -le 10 ] && ok || bad "SIGINT took $((SECONDS - t0)) s"
grep -q "^pndm-gen: interrupted by SIGINT: [0-9]* of 50 images done; rerun the same command with --skip-existing to finish" "$T/err_i" &&
  ok || bad "SIGINT message: $(tail -2 "$T/err_i")"
n=$(ls "$T/int/set" | grep -c 'png$')
[ "$n" -ge 2 ] && [ "$n" -lt 50 ] && [ ! -e "$T/int/set/manifest.jsonl" ] && ok || bad "SIGINT: $n images, manifest $(ls "$T/int/set" | grep -c manifest)"
ls "$T/int/set" | grep -q tmp && bad "SIGINT: temporary file left" || ok

# 8. usage errors, before any model is loaded
mkdir -p "$T/u"
for args in "-N 0" "-N x" "-N 10000001" "-N 3 --start-index -1" "-N 3 --shard 3/3" "-N 3 --shard 1" "-N 3 --shard a/b" \
            "-N 3 -o $T/u/x.png" "-N 3 -o $T/u/x.npy" "-N 3 --grid -o $T/u/%d.png" "-N 3 --latents $T/u/l.npy -o $T/u/%d.png" \
            "-N 3 --skip-existing -o $T/u/%d.png" "--skip-existing -s 1 -o $T/u/%d.png" "--npz $T/u/a.npz" \
            "-N 3 --manifest $T/u/m.txt -o $T/u/%d.png" "-N 3 -o $T/u/a%d/b%d.png" "-N 3 -o $T/u/%d%d.png" \
            "-N 3 --shard 0/2 -o $T/u/x.npz" "-N 3 -o $T/u/x.npz --npz $T/u/y.npz" "-N 3 --npz $T/u/y.txt -o $T/u/%d.png"; do
  # shellcheck disable=SC2086
  expect 2 "usage: $args" -- "$GEN" -m "$GRAY" $args
done
expect 2 "steps < 4 with PRK" -- "$GEN" -m "$GRAY" -N 3 -n 3 -s 1 -o "$T/u/%d.png"
grep -q "steps must be >= 4" "$T/err" && ! grep -q "images done" "$T/err" && ok || bad "steps refusal: $(cat "$T/err")"
expect 4 "missing directory" -- "$GEN" -m "$GRAY" -N 3 -o "$T/no/dir/%d.png"
[ ! -e "$T/no" ] && ok || bad "made a folder for a missing parent"
expect 0 "the set's folder is made" -- "$GEN" -m "$GRAY" -n 4 -N 2 -s 1 -o "$T/newdir/%d.png"
[ -s "$T/newdir/1.png" ] && grep -q "created '$T/newdir'" "$T/err" && ok || bad "set folder not made: $(cat "$T/err")"
[ -z "$(ls -A "$T/u")" ] && ok || bad "usage errors left files: $(ls "$T/u")"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
