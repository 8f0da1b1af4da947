#!/usr/bin/env bash
# Never lose or clobber a result: stdout writes are checked (/dev/full, a closed stdout), outputs
# that are one file are refused before the run (same path, ./, symlinked folder, hard link, an
# input), an existing output is refused unless --overwrite, a symlink to a file is written
# through and one to a device/FIFO/folder is never renamed over (-o /dev/stdout), -o - writes to
# stdout, pndm-unet refuses a non-.npy output, --json reports errors and interrupts, -q still
# prints a random seed; and the small frictions (-n10, bundled switches, "did you mean",
# --help listing -t 0 and the environment).
#   bash tests/cli_outputs.sh BUILD_DIR DATA_DIR
set -u
export LC_ALL=C
GEN="$(cd "$1" && pwd)/pndm-gen"
UNET="$(cd "$1" && pwd)/pndm-unet"
DATA="$(cd "$2" && pwd)"
TINY="$DATA/hostile/tiny.safetensors" # 1 channel, 8x8: runs in milliseconds
T=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
G=(-m "$TINY" -n 4 -s 1 -q)

# expect CODE REGEX DESCRIPTION -- command...: the exit code, and stderr matches REGEX
expect() {
  local code=$1 re=$2 what=$3; shift 4
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" != "$code" ]; then bad "$what: exit $rc, expected $code; stderr: $(head -c 400 "$T/err")"; return 1; fi
  if [ -n "$re" ] && ! grep -Eq -- "$re" "$T/err"; then bad "$what: stderr does not match /$re/: $(head -c 400 "$T/err")"; return 1; fi
  ok
}
no_tmp() { if ls "$1"/*.tmp.* >/dev/null 2>&1; then bad "$2: temporary file left"; else ok; fi; }
mkdir -p "$T/o"
cd "$T/o" || exit 1

# ---- stdout: every write checked ------------------------------------------------------------
expect 4 "^pndm-gen: write error: No space left on device$" "--help > /dev/full" -- sh -c "'$GEN' --help > /dev/full"
expect 4 "^pndm-gen: write error: No space left on device$" "--version > /dev/full" -- sh -c "'$GEN' --version > /dev/full"
expect 4 "^pndm-unet: write error: No space left on device$" "pndm-unet --help > /dev/full" -- sh -c "'$UNET' --help > /dev/full"
expect 4 "write error: Bad file descriptor" "--help, stdout closed" -- sh -c "'$GEN' --help >&-"
expect 0 "" "--help to a pipe" -- sh -c "'$GEN' --help | cat > /dev/null"
expect 4 "write error: No space left on device" "--json > /dev/full" -- sh -c "'$GEN' ${G[*]} --json -o j.png > /dev/full"
[ -s j.png ] && ok || bad "--json > /dev/full: the image itself must still be written"
expect 4 "write error: Bad file descriptor" "paths, stdout closed" -- sh -c "'$GEN' ${G[*]} -o c.png >&-"
[ -s c.png ] && ok || bad "closed stdout: the image itself must still be written"
# a closed stdout never becomes an output file: the PNG must not receive the listing
expect 4 "write error" "closed stdout, the PNG intact" -- sh -c "'$GEN' ${G[*]} -o c2.png --overwrite >&-"
[ "$(tail -c 8 c2.png | od -An -tx1 | tr -d ' \n')" = "49454e44ae426082" ] && ok || bad "closed stdout: c2.png is not a clean PNG"
expect 4 "write error: No space left on device" "--info > /dev/full" -- sh -c "'$GEN' --info j.png > /dev/full"
expect 4 "write error" "--compare > /dev/full" -- sh -c "'$GEN' --compare j.png j.png > /dev/full"
expect 4 "write error: No space left on device" "pndm-unet path > /dev/full" -- sh -c \
  "'$UNET' -m '$DATA/unet/c_gray/model' -x '$DATA/unet/c_gray/sample.npy' --timestep 5 -o u.npy > /dev/full"

# ---- outputs that are one file, refused before the run ---------------------------------------
expect 2 "--latents and output are both 'x.npy'" "-o x.npy --latents x.npy" -- "$GEN" "${G[@]}" -o x.npy --latents x.npy
expect 2 "are the same file" "./x.npy" -- "$GEN" "${G[@]}" -o x.npy --latents ./x.npy
mkdir -p d && ln -s d dl
expect 2 "are the same file" "through a symlinked folder" -- "$GEN" "${G[@]}" -o d/x.npy --save-noise dl/x.npy
expect 2 "are the same file" "d/../x" -- "$GEN" "${G[@]}" -o x.npy --latents d/../x.npy
echo a > h1.npy && ln h1.npy h2.npy
expect 2 "are the same file" "hard links" -- "$GEN" "${G[@]}" -o h1.npy --latents h2.npy --overwrite
[ "$(cat h1.npy)" = a ] && ok || bad "hard-linked outputs: written"
printf '{}' > sched.json
expect 2 "is the input --scheduler-config" "sidecar over the scheduler config" -- "$GEN" "${G[@]}" -o sched.npy --scheduler-config sched.json --overwrite
[ "$(cat sched.json)" = "{}" ] && ok || bad "the scheduler config was touched"
expect 2 "same file" "a pattern and --latents" -- "$GEN" "${G[@]}" -b 2 -o 'p_%d.png' --latents p_1.png.npy --save-noise ./p_1.png.npy
ls x.npy sched.npy d/x.npy >/dev/null 2>&1 && bad "files written by a refused run" || ok

# ---- existing outputs: refused unless --overwrite ---------------------------------------------
expect 0 "" "a batch" -- "$GEN" "${G[@]}" -b 3 -o col.png
sum=$(md5sum col-1.png)
expect 4 "output 'col-0.png' exists \(and 2 more of the 3 outputs\): not replaced.*--overwrite" "the same batch again" -- "$GEN" "${G[@]}" -s 2 -b 3 -o col.png
rm col-0.png col-2.png
expect 4 "output 'col-1.png' exists: not replaced" "another run's col-1.png" -- "$GEN" "${G[@]}" -s 2 -b 3 -o col.png
[ "$(md5sum col-1.png)" = "$sum" ] && [ ! -e col-0.png ] && ok || bad "col-1.png changed, or the run started"
expect 0 "" "--overwrite" -- "$GEN" "${G[@]}" -s 2 -b 3 -o col.png --overwrite
[ "$(md5sum col-1.png)" != "$sum" ] && [ -s col-0.png ] && ok || bad "--overwrite did not replace col-1.png"
expect 4 "'lat.npy' exists" "existing --latents" -- sh -c "touch lat.npy && '$GEN' ${G[*]} -o l.png --latents lat.npy"
[ ! -s lat.npy ] && [ ! -e l.png ] && ok || bad "existing --latents: something was written"

# ---- what is there is not a regular file ---------------------------------------------------------
echo keep > target.npy
ln -s target.npy link.npy
expect 0 "" "a symlink to a file is written through" -- "$GEN" "${G[@]}" -o link.npy --overwrite --metadata none
[ -L link.npy ] && [ "$(head -c 6 target.npy | od -An -c | tr -d ' ')" = "223NUMPY" ] && ok || bad "symlink replaced, or its target not written"
expect 4 "'link.npy' exists" "a symlink to a file, no --overwrite" -- "$GEN" "${G[@]}" -o link.npy --metadata none
ln -s /dev/null null.png
expect 4 "is a symbolic link to a character device \('/dev/null'\): not replaced" "a symlink to /dev/null" -- "$GEN" "${G[@]}" -o null.png --overwrite
[ -L null.png ] && [ -c /dev/null ] && ok || bad "the /dev/null link or /dev/null changed"
mkfifo fifo.png
expect 4 "exists and is a FIFO: not replaced" "a FIFO" -- timeout 20 "$GEN" "${G[@]}" -o fifo.png --overwrite
[ -p fifo.png ] && ok || bad "the FIFO was replaced"
ln -s nowhere.png dangling.png
expect 4 "symbolic link whose target cannot be resolved" "a dangling symlink" -- "$GEN" "${G[@]}" -o dangling.png
ln -s d dirlink.png
expect 4 "symbolic link to a directory" "a symlink to a folder" -- "$GEN" "${G[@]}" -o dirlink.png --overwrite
no_tmp . "refused outputs"

# -o -: the PNG to stdout; never to a terminal-less check here, so through a pipe
"$GEN" "${G[@]}" -o - 2>"$T/err" | cat > piped.png
[ "$(head -c 8 piped.png | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && ok || bad "-o -: no PNG on stdout: $(cat "$T/err")"
expect 2 "cannot go there too" "-o - --json" -- "$GEN" "${G[@]}" -o - --json
expect 2 "use --grid for a batch" "-o - with a batch" -- "$GEN" "${G[@]}" -b 2 -o -

# pndm-unet: .npy only; /dev/stdout (a link to /proc/self/fd/1) is never renamed over
X="$DATA/unet/c_gray/sample.npy"; M="$DATA/unet/c_gray/model"
expect 2 "must be a .npy file or -" "pndm-unet -o eps.png" -- "$UNET" -m "$M" -x "$X" --timestep 5 -o eps.png
[ ! -e eps.png ] && ok || bad "pndm-unet wrote eps.png"
ln -s /proc/self/fd/1 fd1.npy
expect 4 "cannot be resolved|not replaced" "pndm-unet -o a link to fd 1 (a pipe)" -- bash -c "set -o pipefail; '$UNET' -m '$M' -x '$X' --timestep 5 -o fd1.npy --overwrite | cat"
[ -L fd1.npy ] && ok || bad "the fd-1 link was replaced"
expect 4 "is a symbolic link to a character device|not replaced" "pndm-unet -o a link to fd 1 (/dev/null)" -- bash -c "'$UNET' -m '$M' -x '$X' --timestep 5 -o fd1.npy --overwrite > /dev/null"
[ -L fd1.npy ] && [ -c /dev/null ] && ok || bad "the fd-1 link or /dev/null was replaced"
# stdout a regular file: written through the links into that file
"$UNET" -m "$M" -x "$X" --timestep 5 -o fd1.npy --overwrite > viafile.npy 2>"$T/err"
[ -L fd1.npy ] && [ "$(head -c 6 viafile.npy | od -An -c | tr -d ' ')" = "223NUMPY" ] && ok || bad "-o fd1.npy > file: $(cat "$T/err")"
if [ -L fd1.npy ] && [ -L /dev/stdout ]; then # the system's /dev/stdout (run as root: writable /dev)
  expect 2 "must be a .npy file or -" "pndm-unet -o /dev/stdout" -- bash -c "set -o pipefail; '$UNET' -m '$M' -x '$X' --timestep 5 -o /dev/stdout --overwrite | cat"
  [ -L /dev/stdout ] && ok || bad "/dev/stdout is no longer a symbolic link"
  expect 2 "unknown output extension" "pndm-gen -o /dev/stdout" -- "$GEN" "${G[@]}" -o /dev/stdout --overwrite
  [ -L /dev/stdout ] && ok || bad "/dev/stdout is no longer a symbolic link"
fi
"$UNET" -q -m "$M" -x "$X" --timestep 5 -o - 2>"$T/err" | cat > unet_stdout.npy
[ "$(head -c 6 unet_stdout.npy | od -An -c | tr -d ' ')" = "223NUMPY" ] && [ ! -s "$T/err" ] && ok || bad "pndm-unet -o -: $(cat "$T/err")"
expect 0 "" "pndm-unet" -- "$UNET" -m "$M" -x "$X" --timestep 5 -o u2.npy
expect 4 "'u2.npy' exists" "pndm-unet: an existing output" -- "$UNET" -m "$M" -x "$X" --timestep 5 -o u2.npy
expect 2 "is the input --sample" "pndm-unet: the output is the sample" -- sh -c "cp '$X' xs.npy && '$UNET' -m '$M' -x xs.npy --timestep 5 -o ./xs.npy --overwrite"
expect 0 "" "pndm-unet --version" -- "$UNET" --version
grep -q "^pndm-unet [0-9]" "$T/out" && ok || bad "pndm-unet --version: $(cat "$T/out")"
"$UNET" --help > "$T/h"; grep -q "130" "$T/h" && grep -q -- "-q, --quiet" "$T/h" && grep -q "PNDM_KERNEL" "$T/h" && ok || bad "pndm-unet --help: exit codes, -q, environment"
expect 0 "" "pndm-unet -v -q" -- "$UNET" -v -q -m "$M" -x "$X" --timestep 5 -o u3.npy
[ ! -s "$T/err" ] && ok || bad "pndm-unet -q still printed: $(cat "$T/err")"

# ---- --json on failure, -q and a random seed ------------------------------------------------------
expect 3 "" "--json, model error" -- "$GEN" -m "$T/o/sched.json" --json -o je.png
grep -q '"error"' "$T/out" && grep -q '"code":[[:space:]]*3' "$T/out" && grep -q '"message":' "$T/out" && ok || bad "--json model error: $(cat "$T/out")"
expect 2 "" "--json, usage error" -- "$GEN" --json --steps 0
grep -q '"code":[[:space:]]*2' "$T/out" && grep -q 'invalid --steps' "$T/out" && ok || bad "--json usage error: $(cat "$T/out")"
expect 4 "" "--json, existing output" -- "$GEN" "${G[@]}" --json -o j.png
grep -q '"code":[[:space:]]*4' "$T/out" && grep -q '"seed":[[:space:]]*1' "$T/out" && ok || bad "--json existing output: $(cat "$T/out")"
expect 0 "^pndm-gen: seed [0-9]+ \(random\)$" "-q with a random seed" -- "$GEN" -m "$TINY" -n 4 -q -o rs.npy
seed=$(sed -n 's/^pndm-gen: seed \([0-9]*\) (random)$/\1/p' "$T/err")
[ "$(wc -l < "$T/err")" = 1 ] && grep -q "\"seed\":[[:space:]]*$seed," rs.json && ok || bad "-q: the random seed is not in the sidecar: $(cat rs.json)"
expect 0 "" "-q with a given seed prints nothing" -- "$GEN" "${G[@]}" -o qs.png
[ ! -s "$T/err" ] && ok || bad "-q printed: $(cat "$T/err")"
# interrupted: an error object with what was written so far
"$GEN" -q -m "$TINY" -n 1 --skip-prk-steps -b 4000 -s 3 --json -o 'int_%04d.png' >"$T/ij" 2>"$T/ie" &
PID=$!
for i in $(seq 1200); do [ -e int_0020.png ] && break; kill -0 $PID 2>/dev/null || break; sleep 0.05; done
kill -INT $PID 2>/dev/null; wait $PID; rc=$?; PID=""
if [ "$rc" = 130 ]; then
  n=$(ls int_*.png | wc -l)
  grep -q '"code":[[:space:]]*130' "$T/ij" && [ "$(grep -o 'int_[0-9]*\.png' "$T/ij" | wc -l)" = "$n" ] && ok || bad "--json on SIGINT: $(head -c 300 "$T/ij") ($n files)"
else
  bad "--json interrupt: exit $rc (the batch finished before the signal?)"
fi

# ---- small frictions --------------------------------------------------------------------------
expect 0 "" "-n4 -s1 -qo (attached values, bundled switches)" -- "$GEN" -m "$TINY" -n4 -s1 -b2 -qo att.png
[ -s att-0.png ] && [ -s att-1.png ] && ok || bad "attached values"
"$GEN" --info att-1.png | grep -q "steps=4;" && ok || bad "-n4 not taken as 4 steps"
expect 2 "unknown option '--stpes' \(did you mean --steps\?\)" "misspelt --steps" -- "$GEN" --stpes 4
expect 2 "did you mean --seed\?" "--sed" -- "$GEN" --sed 4
expect 2 "did you mean --overwrite\?" "--overwrit" -- "$GEN" --overwrit
expect 2 "unknown option '-steps' \(did you mean --steps\?\)" "-steps" -- "$GEN" -steps 4
expect 2 "unknown option '--frobnicate'$" "no suggestion when nothing is close" -- "$GEN" --frobnicate
expect 2 "needs a value" "-n at the end" -- "$GEN" -n
"$GEN" --help > "$T/h"
grep -q "0 = auto" "$T/h" && ok || bad "--help: -t 0 = auto"
for v in PNDM_MODEL PNDM_KERNEL PNDM_WINOGRAD; do grep -q "$v" "$T/h" && ok || bad "--help lacks $v"; done
grep -q " 8  " "$T/h" && grep -q "143" "$T/h" && ok || bad "--help: exit codes"
expect 0 "" "--man" -- "$GEN" --man
grep -q '^\.TH "PNDM-GEN" 1' "$T/out" && grep -q 'EXIT STATUS' "$T/out" && ok || bad "--man"
if command -v groff >/dev/null; then
  for p in "$GEN" "$UNET"; do w=$("$p" --man | groff -man -Tutf8 -ww -z 2>&1); [ -z "$w" ] && ok || bad "$p --man: groff warns: $w"; done
fi
expect 0 "" "--completion bash" -- "$GEN" --completion bash
out=$(bash -c "source '$T/out'; COMP_WORDS=(pndm-gen --ste); COMP_CWORD=1; _pndm_gen; echo \"\${COMPREPLY[*]}\"; COMP_WORDS=(pndm-gen --metadata m); COMP_CWORD=2; _pndm_gen; echo \"\${COMPREPLY[*]}\"")
[ "$out" = "--steps
minimal" ] && ok || bad "bash completion: '$out'"

echo "cli_outputs: $pass passed, $fail failed"
[ "$fail" = 0 ]
