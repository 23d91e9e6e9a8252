#!/bin/bash
# test_cuda_compile.sh MLC SRCDIR: `mlc compile MODEL --device cuda` renders every kernel of every
# fixture model in CUDA and compiles it with NVRTC (no GPU needed) to cubins for sm_80 and sm_90.
# Skipped (77) only when NVRTC is absent.
MLC=$1
SRC=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for d in "$SRC"/tests/fixtures/models/*/; do
  name=$(basename "$d")
  out="$tmp/$name"
  if ! "$MLC" compile "$d" --device cuda --arch sm_80,sm_90 -o "$out" >"$tmp/$name.log" 2>&1; then
    if grep -q "NVRTC not found" "$tmp/$name.log"; then
      echo "SKIP: $(cat "$tmp/$name.log")"
      exit 77
    fi
    echo "FAIL $name: mlc compile --device cuda failed:"
    head -c 3000 "$tmp/$name.log"
    fail=1
    continue
  fi
  cubins=$(ls "$out"/cuda-*-sm_80.cubin "$out"/cuda-*-sm_90.cubin 2>/dev/null | wc -l)
  if [ "$cubins" != 2 ] || [ ! -s "$out/kernels.cu" ] || [ ! -s "$out/kernels.txt" ]; then
    echo "FAIL $name: expected 2 cubins, kernels.cu and kernels.txt in $out"
    ls -l "$out"
    fail=1
    continue
  fi
  # every kernel the plan names is in the module
  while read -r k; do
    grep -q "void __launch_bounds__([0-9]*) $k(" "$out/kernels.cu" || { echo "FAIL $name: kernel $k missing from kernels.cu"; fail=1; }
  done <"$out/kernels.txt"
  n=$((n + 1))
done
# a device that is not there fails clearly, and compile refuses other devices
if "$MLC" compile "$SRC/tests/fixtures/models/llama" --device cpu -o "$tmp/x" >/dev/null 2>&1; then
  echo "FAIL: mlc compile --device cpu should be refused"
  fail=1
fi
[ "$n" -ge 10 ] || { echo "FAIL: only $n fixture models compiled"; fail=1; }
echo "$n fixture models compiled for sm_80 and sm_90"
exit $fail
