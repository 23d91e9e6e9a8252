#!/usr/bin/env bash
# test_arm64.sh: the aarch64 (NEON) build under qemu-user, as part of `make test` (docs/arm.md).
#   bash tests/test_arm64.sh PATH_TO_MLC REPO_ROOT
# Cross-builds into <the mlc binary's build dir>/arm64 with cmake/aarch64-linux-gnu.cmake and runs
# scripts/test-arm64.sh's subset under qemu-aarch64, plus a greedy-generation comparison against
# this (native) mlc. Exit 77 (skipped) where it cannot run: on an ARM host (the ordinary tests
# already run natively there), inside the cross build itself, or without the Debian packages and
# no way to install them (the apt-get line is printed). MLC_TEST_SKIP_ARM64=1 skips it.
set -u
if [ $# -lt 2 ]; then
  echo "usage: bash tests/test_arm64.sh PATH_TO_MLC REPO_ROOT" >&2
  exit 2
fi
MLC=$(readlink -f "$1")
ROOT=$(readlink -f "$2")
if [ -n "${MLC_TEST_SKIP_ARM64:-}" ] && [ "${MLC_TEST_SKIP_ARM64}" != 0 ]; then
  echo "SKIP: MLC_TEST_SKIP_ARM64 is set"
  exit 77
fi
case "$(uname -m)" in
  aarch64|arm64) echo "SKIP: the host is ARM; the other tests run natively here"; exit 77 ;;
esac
if [ ! -x "$MLC" ]; then
  echo "FAIL $1 is not an executable"
  exit 1
fi
# ELF e_machine 183: an aarch64 mlc, i.e. ctest in the cross build (its tests already run under qemu)
if [ "$(od -An -tu2 -j18 -N2 "$MLC" | tr -d ' ')" = 183 ]; then
  echo "SKIP: $MLC is an aarch64 program (the cross build's own ctest)"
  exit 77
fi
export MLC_ARM64_BUILD=$(dirname "$MLC")/arm64
exec bash "$ROOT/scripts/test-arm64.sh" --native-mlc "$MLC"
