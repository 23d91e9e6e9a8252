# Cross build for 64-bit ARM Linux with Debian's cross compiler and multiarch arm64 libraries:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Needs (Debian 12, as root):
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
#     libcjson-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64 zlib1g-dev:arm64 libmicrohttpd-dev:arm64
# scripts/test-arm64.sh does all of it and runs the tests under qemu-aarch64 (docs/arm.md).
#
# The build-time kernel generator (mlc-kgen) is built for aarch64 like everything else and run
# through CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64), which CMake puts in front of executable
# targets named in custom commands and tests; `ctest` in the cross build directory therefore
# runs the test programs under qemu too (set MLC_CC=aarch64-linux-gnu-gcc for the run-time
# kernel compiler, see docs/arm.md).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(MLC_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${MLC_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${MLC_CROSS_TRIPLE}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${MLC_CROSS_TRIPLE})

# Headers and libraries: the cross libc in /usr/aarch64-linux-gnu, the multiarch arm64 packages
# in /usr/lib/aarch64-linux-gnu (found through CMAKE_LIBRARY_ARCHITECTURE under /usr). Programs
# (pkg-config, glslangValidator, qemu) are the build machine's.
set(CMAKE_FIND_ROOT_PATH /usr/${MLC_CROSS_TRIPLE} /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads only the arm64 .pc files (never the build machine's x86-64 ones).
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${MLC_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# qemu-user runs the aarch64 programs. With the multiarch libc6:arm64 installed (the :arm64 -dev
# packages pull it in) the programs must use its loader, /lib/ld-linux-aarch64.so.1, and no -L:
# `-L /usr/aarch64-linux-gnu` would pair the cross package's ld.so with libc6:arm64's libc.so.6,
# and when their Debian revisions differ the first pthread_create hangs.
find_program(MLC_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(MLC_QEMU_AARCH64)
  if(EXISTS /lib/ld-linux-aarch64.so.1)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${MLC_QEMU_AARCH64})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${MLC_QEMU_AARCH64} -L /usr/${MLC_CROSS_TRIPLE})
  endif()
endif()
