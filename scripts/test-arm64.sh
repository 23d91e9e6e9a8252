#!/usr/bin/env bash
# test-arm64.sh: cross-builds MLC-C for aarch64 (Debian's cross compiler, multiarch arm64
# libraries) and runs a subset of the test programs under qemu-user, the run-time kernel compiler
# being the cross compiler (the specialised kernels are aarch64 NEON code dlopened by the emulated
# process). See docs/arm.md.
#
#   scripts/test-arm64.sh [--no-install] [--native-mlc PATH]
#
# Environment:
#   MLC_ARM64_BUILD   cross build directory (default: build-arm64 in the repository)
#   MLC_ARM64_TESTS   the test programs to run, blank-separated (default: the subset below);
#                     "all" runs every tests/test_*.c program (test_engine alone takes >15 min)
#   MLC_ARM64_JOBS    build jobs (default: nproc)
# --native-mlc PATH: also run `mlc generate` on a fixture with this x86-64 mlc and require the same
# greedy tokens from the aarch64 mlc (specialised and --generic-kernels).
#
# Exit status: 0 all passed, 1 a failure, 77 the Debian packages are missing and cannot be
# installed here (not root; the apt-get line is printed).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MLC_ARM64_BUILD:-$ROOT/build-arm64}
JOBS=${MLC_ARM64_JOBS:-$(nproc 2>/dev/null || echo 2)}
INSTALL=1
NATIVE_MLC=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) INSTALL=0 ;;
    --native-mlc) NATIVE_MLC=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-arm64.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# The default subset (2.5 minutes from scratch on 2 cores, 25 s with the cross build and the
# kernel cache warm; docs/arm.md):
# every kernel against its reference (specialised and generic), all fixture architectures' logits
# against the transformers reference (specialised, generic, unfused, bf16), continuous batching,
# the tokenizers, quantized weights; then test_kernels again on an emulated Cortex-A53 (Armv8.0, no
# fp16/dotprod), which the run-time compiler must target with plain -march=armv8-a.
TESTS=${MLC_ARM64_TESTS:-test_kernels test_models test_batch test_tokenizer test_quant test_kernels@cortex-a53}
if [ "$TESTS" = all ]; then
  TESTS=$(cd "$ROOT/tests" && ls test_*.c | sed 's/\.c$//' | tr '\n' ' ')
fi

TRIPLE=aarch64-linux-gnu
export MLC_CC=$TRIPLE-gcc

# ---- Debian packages ----
ARM_PKGS="libcjson-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64 zlib1g-dev:arm64 libmicrohttpd-dev:arm64"
HOST_PKGS="gcc-$TRIPLE libc6-dev-arm64-cross qemu-user cmake pkg-config make"
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=""
for p in $HOST_PKGS $ARM_PKGS; do
  installed "$p" || missing="$missing $p"
done
need_arch=0
dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64 || need_arch=1
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ] || [ $INSTALL = 0 ]; then
    echo "test-arm64.sh: missing Debian packages:$missing" >&2
    echo "install them with:" >&2
    [ $need_arch = 1 ] && echo "  sudo dpkg --add-architecture arm64 && sudo apt-get update" >&2
    echo "  sudo apt-get install -y --no-install-recommends$missing" >&2
    exit 77
  fi
  echo "test-arm64.sh: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  [ $need_arch = 1 ] && dpkg --add-architecture arm64
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
    echo "test-arm64.sh: FAIL apt-get install$missing" >&2
    exit 1
  fi
fi

# ---- cross build ----
T0=$SECONDS
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  mkdir -p "$BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/$TRIPLE.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DMLC_WERROR=ON >"$BUILD/configure.log" 2>&1 || {
    tail -40 "$BUILD/configure.log"
    echo "test-arm64.sh: FAIL configuring the cross build (log: $BUILD/configure.log)"
    exit 1
  }
fi
targets="mlc_cli"
for t in $TESTS; do targets="$targets ${t%@*}"; done
# shellcheck disable=SC2086
if ! cmake --build "$BUILD" -j "$JOBS" --target $(echo $targets | tr ' ' '\n' | sort -u) >"$BUILD/build.log" 2>&1; then
  grep -E "error|Error" "$BUILD/build.log" | head -40
  echo "test-arm64.sh: FAIL cross build (log: $BUILD/build.log)"
  exit 1
fi
echo "cross build ($BUILD): $((SECONDS - T0)) s"

# ---- tests under qemu-user ----
# The programs use the multiarch loader /lib/ld-linux-aarch64.so.1 from libc6:arm64; no -L (see
# cmake/aarch64-linux-gnu.cmake for why the cross libc prefix must not be mixed in).
QEMU=(qemu-aarch64)
[ -e /lib/ld-linux-aarch64.so.1 ] || QEMU=(qemu-aarch64 -L /usr/$TRIPLE)
export MLC_CACHE_DIR=$BUILD/kcache
fails=0
summary=""
for t in $TESTS; do
  prog=${t%@*}
  cpu=""
  [ "$t" != "$prog" ] && cpu=${t#*@}
  t1=$SECONDS
  log=$BUILD/$t.log
  if [ -n "$cpu" ]; then
    QEMU_CPU=$cpu "${QEMU[@]}" "$BUILD/$prog" "$ROOT" >"$log" 2>&1
  else
    "${QEMU[@]}" "$BUILD/$prog" "$ROOT" >"$log" 2>&1
  fi
  rc=$?
  line=$(grep -E "passed, [0-9]+ failed" "$log" | tail -1)
  if [ $rc = 0 ] || [ $rc = 77 ]; then
    [ $rc = 77 ] && line="skipped"
    echo "ok   $t ($((SECONDS - t1)) s): $line"
  else
    echo "FAIL $t ($((SECONDS - t1)) s, exit $rc): $line"
    grep -E "^FAIL|FAIL " "$log" | head -20 | sed 's/^/       /'
    echo "       log: $log"
    fails=$((fails + 1))
  fi
  summary="$summary $t=$((SECONDS - t1))s"
done

# ---- the CLI, and the same greedy tokens as the native build ----
FIX=$ROOT/tests/fixtures/models/llama
# gen EXTRA_FLAG COMMAND...: the greedy token ids as '"ids": [...]'
gen() {
  local extra=$1
  shift
  "$@" generate "$FIX" --ids 1,5,9,2 --max-tokens 8 --temperature 0 --threads 2 --json $extra 2>/dev/null |
    grep -o '"ids": *\[[^]]*\]'
}
t1=$SECONDS
arm_spec=$(gen "" "${QEMU[@]}" "$BUILD/mlc")
arm_gen=$(gen --generic-kernels "${QEMU[@]}" "$BUILD/mlc")
if [ -z "$arm_spec" ] || [ "$arm_spec" != "$arm_gen" ]; then
  echo "FAIL mlc generate under qemu: specialised '$arm_spec' vs generic '$arm_gen'"
  fails=$((fails + 1))
elif [ -n "$NATIVE_MLC" ]; then
  nat=$(MLC_CC=cc gen "" "$NATIVE_MLC") # same cache: its hash has the compiler
  if [ "$nat" = "$arm_spec" ]; then
    echo "ok   mlc generate: aarch64 (specialised, generic) = x86-64 ($((SECONDS - t1)) s)"
  else
    echo "FAIL mlc generate: aarch64 '$arm_spec' vs x86-64 '$nat'"
    fails=$((fails + 1))
  fi
else
  echo "ok   mlc generate: aarch64 specialised = generic ($((SECONDS - t1)) s)"
fi

echo "arm64 under qemu: $((SECONDS - T0)) s in all;$summary"
if [ $fails -gt 0 ]; then
  echo "test-arm64.sh: $fails failed"
  exit 1
fi
echo "test-arm64.sh: all passed"
