#!/usr/bin/env bash
# Sample sets over MPI ranks (pndm-gen built with PNDM_MPI): mpirun -n 2 and -n 3 give the files,
# manifest and .npz of a one-process run byte for byte; --json counts per rank; a rank killed
# mid-run (kill -9) fails the job with a message naming its rank and host, and --skip-existing
# finishes the set; a rank that cannot write fails the job cleanly (exit 4, rank and host named);
# ranks that would write other images, or cannot start, are refused before any work.
#   bash tests/mpi_sets.sh BUILD_DIR DATA_DIR MPIEXEC
set -u
export LC_ALL=C
GEN="$(cd "$1" && pwd)/pndm-gen"
DATA="$(cd "$2" && pwd)"
MPIRUN="${3:-mpirun}"
GRAY="$DATA/unet/c_gray/model"
T=$(mktemp -d)
MPID=""
trap '[ -n "$MPID" ] && kill -9 "$MPID" 2>/dev/null; rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
# Sanitizer builds: OpenMPI's own allocations outlive MPI_Finalize, not ours to report. Keep its
# plugins loaded (so their frames have names) and unwind fully, then suppress by library.
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$DATA/lsan_mpi.supp:print_suppressions=0"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export OMPI_MCA_mca_base_component_disable_dlclose=1
# containers often forbid the cross-memory attach OpenMPI's shared-memory transport tries first
export OMPI_MCA_btl_vader_single_copy_mechanism=none
HOST=$(uname -n)   # what gethostname() returns
mpi() { "$MPIRUN" --allow-run-as-root --oversubscribe -n "$@"; }
in_dir() { local d=$1; shift; (cd "$d" && "$@"); }
same_dirs() {
  if diff -r "$1" "$2" >/dev/null; then ok; else bad "$3: $(diff -r "$1" "$2" 2>&1 | head -3)"; fi
}
SET=(-m "$GRAY" -n 8 -N 18 -s 7 -q)

# the one-process reference: a folder and an .npz
mkdir -p "$T/ref/set"
in_dir "$T/ref" "$GEN" "${SET[@]}" -b 3 -t 2 -o 'set/%02d.png' >/dev/null || bad "reference folder"
in_dir "$T/ref" "$GEN" "${SET[@]}" -b 5 -t 2 -o set.npz >/dev/null || bad "reference npz"

# 1. -n 2 and -n 3, other batch sizes: the same files and manifest
for rb in "2 3" "3 2" "3 5"; do
  set -- $rb
  d="$T/m$1_b$2"
  mkdir -p "$d/set"
  if in_dir "$d" mpi "$1" "$GEN" "${SET[@]}" -b "$2" -o 'set/%02d.png' --json >"$T/out" 2>"$T/err"; then ok; else
    bad "mpirun -n $1 -b $2: exit $?: $(tail -5 "$T/err")"; fi
  same_dirs "$T/ref/set" "$d/set" "mpirun -n $1 -b $2 vs one process"
  [ "$(grep -c '"rank":' "$T/out")" = "$1" ] && ok || bad "-n $1: --json ranks: $(head -c 600 "$T/out")"
  sum=$(sed -n '/"ranks"/,$p' "$T/out" | sed -n 's/.*"images":[[:space:]]*\([0-9]*\),.*/\1/p' | awk '{s+=$1} END {print s}')
  [ "$sum" = 18 ] && ok || bad "-n $1: per-rank images sum to $sum"
  [ "$(grep -c '"images":' "$T/out")" = $(($1 + 1)) ] && grep -q '"images":[[:space:]]*18,' "$T/out" && ok || bad "-n $1: one summary"
done
# 2. an .npz from three ranks
mkdir -p "$T/mz"
in_dir "$T/mz" mpi 3 "$GEN" "${SET[@]}" -b 4 -o set.npz >/dev/null 2>"$T/err" || bad "mpirun npz: $(tail -3 "$T/err")"
cmp -s "$T/ref/set.npz" "$T/mz/set.npz" && cmp -s "$T/ref/set.manifest.jsonl" "$T/mz/set.manifest.jsonl" && ok ||
  bad "mpirun -n 3 .npz differs from one process"
[ ! -e "$T/mz/set.npz.parts" ] && ok || bad "parts folder left"

# 3. a rank killed mid-run: the job fails naming the rank and host; --skip-existing finishes it
#    (a longer set, so that the others cannot finish it while mpirun ends the job)
SETK=(-m "$GRAY" -n 8 -N 48 -s 7 -q)
mkdir -p "$T/ref_k/set" "$T/k/set"
in_dir "$T/ref_k" "$GEN" "${SETK[@]}" -b 4 -t 2 -o 'set/%02d.png' >/dev/null || bad "reference of the kill test"
(cd "$T/k" && exec "$MPIRUN" --allow-run-as-root --oversubscribe -n 3 "$GEN" "${SETK[@]}" -b 2 -o 'set/%02d.png' \
  >"$T/out_k" 2>"$T/err_k") &
MPID=$!
victim=""
for i in $(seq 1200); do
  if [ "$(ls "$T/k/set" 2>/dev/null | grep -c 'png$')" -ge 1 ]; then
    # mpirun starts the local ranks as its children; rank 1 is the one with OMPI_COMM_WORLD_RANK=1
    for c in $(cat /proc/$MPID/task/*/children 2>/dev/null); do
      { tr '\0' '\n' < "/proc/$c/environ"; } 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$c
    done
    break
  fi
  kill -0 "$MPID" 2>/dev/null || break
  sleep 0.05
done
if [ -n "$victim" ]; then kill -9 "$victim"; ok; else bad "no rank 1 to kill (the run ended first?)"; fi
wait "$MPID"; rc=$?; MPID=""
[ "$rc" != 0 ] && ok || bad "killed rank: mpirun exit 0"
grep -q "rank 1" "$T/err_k" && grep -q "$HOST" "$T/err_k" && ok || bad "killed rank: no message naming rank 1 on $HOST: $(tail -5 "$T/err_k")"
have=$(ls "$T/k/set" | grep -c 'png$')
echo "killed rank 1: $have of 48 images were done"
[ "$have" -lt 48 ] && ok || bad "the set was complete before the kill"
if in_dir "$T/k" mpi 2 "$GEN" "${SETK[@]}" -b 3 -o 'set/%02d.png' --skip-existing >/dev/null 2>"$T/err"; then ok; else
  bad "resume: $(tail -3 "$T/err")"; fi
same_dirs "$T/ref_k/set" "$T/k/set" "killed rank, resumed"

# 4. a rank that cannot write (file size limit 0): exit 4, the rank and host named, resumable
mkdir -p "$T/f/set"
in_dir "$T/f" mpi 3 bash -c 'if [ "$OMPI_COMM_WORLD_RANK" = 2 ]; then ulimit -f 0; fi; exec "$@"' _ \
  "$GEN" "${SET[@]}" -b 2 -o 'set/%02d.png' >/dev/null 2>"$T/err_f"
rc=$?
[ "$rc" = 4 ] && ok || bad "unwritable rank: exit $rc; $(grep pndm-gen "$T/err_f" | head -3)"
grep -q "^pndm-gen\[rank 2 on $HOST\]: set/[0-9]*.png: write failed" "$T/err_f" && ok || bad "rank 2's own message: $(grep pndm-gen "$T/err_f")"
grep -q "^pndm-gen: rank 2 on $HOST failed (exit code 4" "$T/err_f" && ok || bad "rank 0's message: $(grep pndm-gen "$T/err_f")"
grep -q "rerun the same command with --skip-existing" "$T/err_f" && ok || bad "no resume hint"
if in_dir "$T/f" "$GEN" "${SET[@]}" -b 4 -o 'set/%02d.png' --skip-existing >/dev/null 2>"$T/err"; then ok; else bad "resume: $(cat "$T/err")"; fi
same_dirs "$T/ref/set" "$T/f/set" "unwritable rank, resumed"

# 5. ranks that would make other images (here: other steps on rank 1) are refused before work
mkdir -p "$T/d/set"
in_dir "$T/d" mpi 2 bash -c 's=8; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && s=9; exec "$@" -n $s' _ \
  "$GEN" -m "$GRAY" -N 18 -s 7 -q -b 2 -o 'set/%02d.png' >/dev/null 2>"$T/err_d"
rc=$?
[ "$rc" = 2 ] && ok || bad "mismatched ranks: exit $rc"
grep -q "rank 1 on $HOST would write other images than rank 0 on $HOST (its record has 'steps=9' where rank 0's has 'steps=8')" "$T/err_d" && ok ||
  bad "mismatch message: $(grep pndm-gen "$T/err_d")"
[ -z "$(ls -A "$T/d/set")" ] && ok || bad "mismatched ranks wrote files"

# 6. a rank that cannot start (here: its output folder's parent is missing) is named, nothing runs
mkdir -p "$T/s"
in_dir "$T/s" mpi 3 bash -c 'o=set/%02d.png; [ "$OMPI_COMM_WORLD_RANK" = 2 ] && o=no/where/%02d.png; exec "$@" -o "$o"' _ \
  "$GEN" "${SET[@]}" -b 2 >/dev/null 2>"$T/err_s"
rc=$?
[ "$rc" = 4 ] && ok || bad "rank that cannot start: exit $rc"
grep -q "^pndm-gen\[rank 2 on $HOST\]: output: directory 'no/where' does not exist" "$T/err_s" &&
  grep -q "^pndm-gen: rank 2 on $HOST could not start (exit code 4" "$T/err_s" && ok || bad "start failure messages: $(grep pndm-gen "$T/err_s")"
[ -z "$(ls -A "$T/s/set" 2>/dev/null)" ] && ok || bad "a job that could not start wrote images"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
