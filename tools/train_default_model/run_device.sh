#!/usr/bin/env bash
# Runs train.py on the GPU machine and leaves the results under $OUT:
#   $OUT/model/*.safetensors  (the float16 shards)
#   $OUT/meta.tar.gz          (everything else: config, tokenizer, reference.json, samples, log)
# usage (from the repo root): bash tools/train_default_model/run_device.sh [train.py args]
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
W=/tmp/default_model
rm -rf "$W"; mkdir -p "$W" "$OUT/model"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
python3 tools/train_default_model/train.py --out "$W" "$@" 2>&1 | tee "$W/stdout.txt"
rc=$?
cp "$W"/model/*.safetensors "$OUT/model/" 2>/dev/null
(cd "$W" && tar czf "$OUT/meta.tar.gz" --exclude='*.safetensors' .)
du -sh "$W/model"
exit $rc
