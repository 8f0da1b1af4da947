# CMake toolchain for a Debian multiarch cross build to aarch64 (tools/cross_aarch64.sh):
# gcc-aarch64-linux-gnu, the arm64 -dev packages under /usr/lib/aarch64-linux-gnu, and the tests
# run under qemu-aarch64 (user mode) through CMAKE_CROSSCOMPILING_EMULATOR.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
# The arm64 runtime is Debian's multiarch one (libc6:arm64 and the libraries above in
# /lib/aarch64-linux-gnu), which qemu-aarch64 finds by itself. Not "-L /usr/aarch64-linux-gnu"
# (libc6-arm64-cross): that loads a second C library beside the multiarch ones, and then
# pthread_create hangs under qemu 7.2 (so do pndm's thread pool and OpenBLAS's start-up).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
