#!/bin/bash
# cuda_gpu_run.sh BIN [bench]: the CUDA checks on a GPU machine from prebuilt binaries in BIN
# (mlc, test_cuda_kernels, test_models, test_sample, mlc-random-model, and the shared libraries they need), run
# from the repository root. Used with the lent H100 (the binaries are built on the CPU machine and
# carried; see docs/backends.md); on a machine with a build tree, `make test-gpu` does the same.
#   1. every kernel case against the double-precision CPU reference through the device API
#   2. every fixture model's logits with --device cuda against ref.json (rel. L2 1e-4)
#   3. with "bench": mlc bench on random Llama shapes made on that machine (spec
#      preset[@layers]:scheme[:nolanes|:nographs|:profile][:device]; a quantized scheme is made by
#      mlc convert from the f16 model; profile = $MLC_CUDA_PROFILE per-kernel times; device default
#      cuda; $BENCH_ARGS replaces --prompt-len 128 --gen-len 32)
# $SKIP_TESTS=1 skips 1 and 2; $MODELS_TIMEOUT bounds step 2 (seconds); $VULKAN_TESTS=1 also runs
# test_models with MLC_TEST_DEVICE=vulkan (the Vulkan loader must be installed: docs/backends.md)
# and, where BIN has it, test_device_kernels on Vulkan (every kernel case, the 8-bit GEMV's shapes).
# $BENCH_ENVS: environment variants, ';'-separated, each bench spec runs once per variant (A/B in
# one call), e.g. BENCH_ENVS="X=1;MLC_CUDA_PDL=1;MLC_ATTN_SPLITS=1 MLC_ATTN_WARPS=16".
BIN=${1:-.gpu}
BIN=$(cd "$BIN" && pwd)
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MLC_CACHE_DIR=${MLC_CACHE_DIR:-/tmp/mlc-kcache}
export MLC_TEST_REQUIRE_DEVICE=1
export MLC_CUDA_GRAPH_STATS=1
OUT=${OUT:-/tmp/mlc-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if ! ldconfig -p | grep -q libnvrtc && [ -z "$MLC_NVRTC" ] && ! ls /usr/local/cuda/lib64/libnvrtc.so* >/dev/null 2>&1; then
  f=$(find / -name 'libnvrtc.so.1[0-9]*' -not -name '*builtins*' 2>/dev/null | head -1)
  [ -n "$f" ] && export MLC_NVRTC=$f
fi
echo "MLC_NVRTC=${MLC_NVRTC:-default search}"
rc=0
if [ "${SKIP_TESTS:-0}" = 0 ]; then
t0=$(date +%s)
"$BIN/test_cuda_kernels" . >"$OUT/kernels.log" 2>&1 || rc=1
tail -4 "$OUT/kernels.log"; grep FAIL "$OUT/kernels.log" | head -20
t1=$(date +%s)
MLC_TEST_DEVICE=cuda timeout "${MODELS_TIMEOUT:-3600}" "$BIN/test_models" . >"$OUT/models.log" 2>&1 || rc=1
head -1 "$OUT/models.log"; tail -1 "$OUT/models.log"; grep FAIL "$OUT/models.log" | head -20
t2=$(date +%s)
if [ -x "$BIN/test_sample" ]; then   # the device sampler's distribution against the host's (docs/engine.md)
  MLC_TEST_DEVICES=cuda "$BIN/test_sample" . >"$OUT/sample.log" 2>&1 || rc=1
  tail -1 "$OUT/sample.log"; grep FAIL "$OUT/sample.log" | head -20
fi
echo "kernels $((t1 - t0)) s, models $((t2 - t1)) s, rc=$rc"
"$BIN/mlc" logits tests/fixtures/models/llama --ids 1,2,3 --device cuda --verbose 2>&1 | grep -i "cuda\|error" | cut -c1-200 | head -3
fi
if [ "${VULKAN_TESTS:-0}" != 0 ]; then   # the fixture models on Vulkan too (needs the Vulkan loader)
  t1=$(date +%s)
  MLC_TEST_DEVICE=vulkan timeout "${MODELS_TIMEOUT:-3600}" "$BIN/test_models" . >"$OUT/models_vulkan.log" 2>&1 || rc=1
  head -1 "$OUT/models_vulkan.log"; tail -1 "$OUT/models_vulkan.log"; grep FAIL "$OUT/models_vulkan.log" | head -20
  echo "vulkan models $(( $(date +%s) - t1 )) s, rc=$rc"
  if [ -x "$BIN/test_device_kernels" ]; then
    t1=$(date +%s)
    MLC_TEST_DEVICES=vulkan "$BIN/test_device_kernels" . >"$OUT/kernels_vulkan.log" 2>&1 || rc=1
    grep -m2 "device:\|GEMVs" "$OUT/kernels_vulkan.log" | cut -c1-300; tail -1 "$OUT/kernels_vulkan.log"
    grep FAIL "$OUT/kernels_vulkan.log" | head -20
    echo "vulkan kernels $(( $(date +%s) - t1 )) s, rc=$rc"
  fi
fi
if [ "$2" = bench ]; then
  shift 2
  # copy bandwidth on this GPU (bytes read + written), for the decode fraction
  python3 -c "
import torch
a=torch.empty(2**30,dtype=torch.uint8,device='cuda'); b=torch.empty_like(a)
for _ in range(3): b.copy_(a)
s=torch.cuda.Event(enable_timing=True); e=torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(20): b.copy_(a)
e.record(); torch.cuda.synchronize()
print('copy bandwidth %.0f GB/s (read+write, 1 GiB buffers)' % (2*20*2**30/(s.elapsed_time(e)/1e3)/1e9))
" 2>&1 | tail -1 | tee -a "$OUT/bench.log"
  for spec in "$@"; do   # preset[@layers]:scheme[:nolanes|:nographs|:profile][:device], e.g. llama-1b:f16 llama-8b@4:q4f16_1:profile
    IFS=: read -r p d extra dv <<<"$spec"
    base=${p%@*}; layers=; [ "$base" != "$p" ] && layers="--layers ${p#*@}"
    src=/tmp/rand-$p-f16
    case $d in f32|f16|bf16) src=/tmp/rand-$p-$d ;; esac
    [ -d "$src" ] || { t0=$(date +%s); "$BIN/mlc-random-model" --preset "$base" $layers --dtype "${src##*-}" -o "$src" >/dev/null || continue;
                       echo "made $src in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/bench.log"; }
    dir=$src
    case $d in f32|f16|bf16) ;; *) dir=/tmp/rand-$p-$d
      [ -d "$dir" ] || { t0=$(date +%s); "$BIN/mlc" convert "$src" -o "$dir" --quant "$d" --threads 16 >/dev/null || continue;
                         echo "converted $dir in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/bench.log"; } ;; esac
    echo "== $spec" | tee -a "$OUT/bench.log"
    if [ "$extra" = nolanes ]; then export MLC_NO_LANES=1; else unset MLC_NO_LANES; fi
    if [ "$extra" = nographs ]; then export MLC_CUDA_GRAPHS=0; else unset MLC_CUDA_GRAPHS; fi
    if [ "$extra" = profile ]; then export MLC_CUDA_PROFILE=1; else unset MLC_CUDA_PROFILE; fi
    IFS=';' read -r -a envs <<<"${BENCH_ENVS:-X=1}"
    for e in "${envs[@]}"; do
      [ "${#envs[@]}" -gt 1 ] && echo "-- $e" | tee -a "$OUT/bench.log"
      # shellcheck disable=SC2086  # a variant is several VAR=value words
      env $e "$BIN/mlc" bench "$dir" --device "${dv:-cuda}" ${BENCH_ARGS:---prompt-len 128 --gen-len 32} 2>&1 | tee -a "$OUT/bench.log"
    done
  done
  unset MLC_NO_LANES MLC_CUDA_GRAPHS MLC_CUDA_PROFILE
fi
exit $rc
