#!/usr/bin/env bash
# The installed library: `cmake --install` into temporary prefixes (everything; and headers +
# libpndm.a only), then the usage example at the top of include/pndm.h, extracted as written,
# is built outside the source tree against each with pkg-config and with find_package(pndm),
# shared and static, and run. Also: libpndm.so exports pndm_* only, the soname is versioned,
# and the installed executables, man pages and completions are in place and work.
#   bash tests/cli_install.sh BUILD_DIR DATA_DIR
set -u
BUILD=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
SRC=$(cd "$DATA/../.." && pwd)
MODEL="$DATA/hostile/tiny.safetensors"
WANT_ID=$(cat "$DATA/weights_id/expected.txt")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
CC=${CC:-cc}
# a sanitizer build's objects need the same flags in the program that links them
FLAGS=""
grep -q '^PNDM_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && FLAGS="-fsanitize=address,undefined"
grep -q '^PNDM_SANITIZE_THREAD:BOOL=ON' "$BUILD/CMakeCache.txt" && FLAGS="-fsanitize=thread"
SHARED=1
grep -q '^PNDM_BUILD_SHARED:BOOL=OFF' "$BUILD/CMakeCache.txt" && SHARED=0

# 1. install: everything, and a development-only prefix with the static library
cmake --install "$BUILD" --prefix "$T/full" >"$T/log" 2>&1 || { bad "cmake --install: $(tail -3 "$T/log")"; }
for c in pndm_dev pndm_static; do
  cmake --install "$BUILD" --prefix "$T/static" --component $c >>"$T/log" 2>&1 || bad "install component $c"
done
LIB=$(cd "$T/full" && ls -d lib* | head -1)
for f in include/pndm.h include/pndm_io.h $LIB/libpndm.a $LIB/pkgconfig/pndm.pc $LIB/cmake/pndm/pndmConfig.cmake \
         $LIB/cmake/pndm/pndmConfigVersion.cmake bin/pndm-gen bin/pndm-unet; do
  [ -e "$T/full/$f" ] && ok || bad "not installed: $f"
done
[ -e "$T/static/$LIB/libpndm.a" ] && [ ! -e "$T/static/$LIB/libpndm.so" ] && [ ! -e "$T/static/bin/pndm-gen" ] && ok \
  || bad "the static prefix holds: $(cd "$T/static" && find . -type f -o -type l | tr '\n' ' ')"

# 2. the shared library: versioned soname, only pndm_* exported
if [ $SHARED = 1 ]; then
  so=$(ls "$T/full/$LIB"/libpndm.so.*.*.* 2>/dev/null | head -1)
  [ -n "$so" ] && [ -L "$T/full/$LIB/libpndm.so" ] && ok || bad "libpndm.so.X.Y.Z + libpndm.so link not installed"
  soname=$(readelf -d "$so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
  case "$soname" in libpndm.so.[0-9]*) ok ;; *) bad "soname '$soname'" ;; esac
  [ -e "$T/full/$LIB/$soname" ] && ok || bad "no $soname link"
  other=$(nm -D --defined-only "$so" | awk '$2 != "A" && $3 !~ /^pndm_/ {print $3}')
  [ -z "$other" ] && ok || bad "libpndm.so exports non-pndm symbols: $(echo $other | head -c 300)"
  nfun=$(nm -D --defined-only "$so" | awk '$2 == "T"' | wc -l)
  [ "$nfun" -ge 40 ] && ok || bad "only $nfun functions exported"
  nm -D --defined-only "$so" | grep -q " T pndm_model_sha256" && ok || bad "pndm_model_sha256 not exported"
  readelf -d "$so" | grep -q TEXTREL && bad "text relocations (not PIC)" || ok
fi

# 3. the header's example, as written, outside the source tree
mkdir -p "$T/app"
sed -n '/^ \*     #include <pndm.h>/,/^ \*     }$/p' "$SRC/include/pndm.h" | sed -e 's/^ \*     //' -e 's/^ \*$//' > "$T/app/app.c"
grep -q "int main" "$T/app/app.c" && [ "$(tail -1 "$T/app/app.c")" = "}" ] && ok || bad "example not found in pndm.h"
cd "$T/app" || exit 1

run_app() { # what exe needs_shared(0/1)
  local what=$1 exe=$2 want_shared=$3
  if [ ! -x "$exe" ]; then bad "$what: not built"; return; fi
  if readelf -d "$exe" | grep -q 'NEEDED.*libpndm'; then has=1; else has=0; fi
  [ $has = "$want_shared" ] && ok || bad "$what: linked $([ $has = 1 ] && echo shared || echo static), expected the other"
  LD_LIBRARY_PATH="$T/full/$LIB" "$exe" "$MODEL" >"$T/app/out" 2>"$T/app/err"; local rc=$?
  [ $rc = 0 ] && grep -q "4 images, model .*tiny.safetensors, weights $WANT_ID" "$T/app/out" && ok \
    || bad "$what: exit $rc, out: $(head -c 200 "$T/app/out") err: $(head -c 300 "$T/app/err")"
}

# pkg-config (the prefix is found from the .pc file's place: relocatable)
if [ $SHARED = 1 ]; then
  PKG_CONFIG_PATH="$T/full/$LIB/pkgconfig" pkg-config --modversion pndm >/dev/null && ok || bad "pkg-config pndm"
  $CC $FLAGS app.c -o app_pc_shared $(PKG_CONFIG_PATH="$T/full/$LIB/pkgconfig" pkg-config --cflags --libs pndm) \
    2>"$T/app/cc" || bad "pkg-config shared build: $(head -c 400 "$T/app/cc")"
  run_app "pkg-config, shared" ./app_pc_shared 1
fi
$CC $FLAGS app.c -o app_pc_static $(PKG_CONFIG_PATH="$T/static/$LIB/pkgconfig" pkg-config --static --cflags --libs pndm) \
  2>"$T/app/cc" || bad "pkg-config static build: $(head -c 400 "$T/app/cc")"
run_app "pkg-config, static" ./app_pc_static 0

# find_package(pndm) -> pndm::pndm
cat > CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.16)
project(pndm_app C)
find_package(pndm 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE pndm::pndm)
CM
cmake_app() { # what prefix want_shared extra-args...
  local what=$1 prefix=$2 want=$3; shift 3
  rm -rf b
  if cmake -S . -B b -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" "$@" \
       >"$T/app/cm" 2>&1 && cmake --build b >>"$T/app/cm" 2>&1; then
    run_app "$what" b/app "$want"
  else
    bad "$what: $(grep -i -m3 'error' "$T/app/cm")"
  fi
}
if [ $SHARED = 1 ]; then
  cmake_app "find_package, shared" "$T/full" 1
  cmake_app "find_package, PNDM_USE_STATIC_LIBS" "$T/full" 0 -DPNDM_USE_STATIC_LIBS=ON
fi
cmake_app "find_package, static only" "$T/static" 0

# 4. the installed executables
"$T/full/bin/pndm-gen" --version >"$T/app/v" 2>&1 && grep -q "^pndm-gen [0-9]" "$T/app/v" && ok || bad "installed pndm-gen --version"
"$T/full/bin/pndm-unet" --version >"$T/app/v" 2>&1 && grep -q "^pndm-unet [0-9]" "$T/app/v" && ok || bad "installed pndm-unet --version"

for f in share/man/man1/pndm-gen.1 share/man/man1/pndm-unet.1 share/bash-completion/completions/pndm-gen \
         share/bash-completion/completions/pndm-unet; do
  [ -s "$T/full/$f" ] && ok || bad "not installed: $f"
done
if command -v man >/dev/null; then
  MANPATH="$T/full/share/man" man -P cat pndm-gen 2>/dev/null | grep -q -- "--reproduce" && ok || bad "man pndm-gen (installed) does not show --reproduce"
fi
bash -c "source '$T/full/share/bash-completion/completions/pndm-unet' && complete -p pndm-unet" >/dev/null 2>&1 && ok \
  || bad "the installed pndm-unet completion does not load"
# the installed pndm-gen and the build tree's make the same image, byte for byte with
# --metadata minimal, and equal pixels (--compare) with the default full metadata
mkdir -p "$T/gold" "$T/inst"
"$BUILD/pndm-gen" -m "$MODEL" -n 6 -b 2 -s 5 -q --metadata minimal -o "$T/gold/g_%d.png" >/dev/null || bad "build-tree run"
"$T/full/bin/pndm-gen" -m "$MODEL" -n 6 -b 2 -s 5 -q --metadata minimal -o "$T/inst/g_%d.png" >/dev/null || bad "installed run"
cmp -s "$T/gold/g_1.png" "$T/inst/g_1.png" && ok || bad "installed pndm-gen: not byte-identical with --metadata minimal"
rm "$T/inst"/*.png
"$T/full/bin/pndm-gen" -m "$MODEL" -n 6 -b 2 -s 5 -q -o "$T/inst/g_%d.png" >/dev/null || bad "installed run (full)"
"$T/full/bin/pndm-gen" --compare "$T/inst" "$T/gold" >"$T/app/cmp" 2>&1 && ok || bad "installed vs build tree: $(cat "$T/app/cmp")"
# the installed copy finds its bundled model under <prefix>/share/pndm, wherever the prefix is
if [ -e "$T/full/share/pndm/fashion_mnist.safetensors" ]; then
  env -u PNDM_MODEL "$T/full/bin/pndm-gen" -n 1 --skip-prk-steps -s 1 -v -o "$T/inst/def.png" 2>"$T/app/def" >/dev/null
  grep -q "model $T/full/share/pndm/fashion_mnist.safetensors" "$T/app/def" && ok || bad "installed default model: $(head -2 "$T/app/def")"
fi

echo "cli_install: $pass passed, $fail failed"
[ $fail = 0 ]
