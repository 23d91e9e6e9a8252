#!/usr/bin/env bash
# test_convert.sh: `mlc convert` and running its packages from the command line.
#   bash tests/test_convert.sh PATH_TO_MLC REPO_ROOT
# Converts the llama fixture (HF) to q4f16_1, re-converts the package to q8f16_1 (MLC source),
# runs `mlc logits` / `mlc generate` on the packages against the fixture's reference logits,
# checks the output files MLC writes, the progress-free JSON summary, and bad arguments. Prints
# ok/FAIL per check, then "N passed, M failed".
set -u
if [ $# -lt 2 ]; then
  echo "usage: bash tests/test_convert.sh PATH_TO_MLC REPO_ROOT" >&2
  exit 2
fi
MLC=$(readlink -f "$1")
ROOT=$(readlink -f "$2")
cd "$ROOT" || exit 2
T=$(mktemp -d /tmp/mlc_convert_XXXXXX)
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() {
  echo "FAIL $1${2:+: $2}"
  failed=$((failed + 1))
}
run() {
  "$MLC" "$@" >"$T/out" 2>"$T/err" </dev/null
  rc=$?
}
FIX=tests/fixtures/models/llama
IDS=$(python3 -c "import json;print(','.join(map(str,json.load(open('$FIX/ref.json'))['input_ids'])))")

# relative L2 error of `mlc logits` output ($T/out) against the reference
relerr() {
  python3 - "$FIX/ref.json" "$T/out" <<'PY'
import json, math, sys
ref = json.load(open(sys.argv[1]))["logits"]
got = json.load(open(sys.argv[2]))["logits"]
worst = 0.0
for r, g in zip(ref, got):
    num = sum((a - b) ** 2 for a, b in zip(r, g))
    den = sum(a * a for a in r)
    worst = max(worst, math.sqrt(num / den))
print("%.4f" % worst if len(ref) == len(got) else "nan")
PY
}

run convert "$FIX" -o "$T/q4" --quant q4f16_1
if [ $rc -eq 0 ] && python3 -c "import json,sys; d=json.load(open('$T/out')); sys.exit(0 if d['quantization']=='q4f16_1' and d['shards']>=1 else 1)"; then
  ok "convert HF -> q4f16_1 (JSON summary)"
else
  bad "convert HF -> q4f16_1" "rc=$rc $(head -c 300 "$T/err")"
fi
for f in mlc-chat-config.json tensor-cache.json params_shard_0.bin; do
  [ -f "$T/q4/$f" ] && ok "package has $f" || bad "package has $f"
done
[ -z "$(ls -d "$T"/q4.tmp-* 2>/dev/null)" ] && ok "no temporary directory left" || bad "temporary directory left"
[ ! -f "$T/q4/tensor-cache-b16.json" ] && ok "no tensor-cache-b16.json without float32 records" || bad "unexpected tensor-cache-b16.json"

run logits "$T/q4" --ids "$IDS"
e=$(relerr)
if [ $rc -eq 0 ] && python3 -c "import sys; sys.exit(0 if float('$e') < 0.25 else 1)"; then
  ok "mlc logits on the q4f16_1 package (relative L2 $e, budget 0.25)"
else
  bad "mlc logits on the q4f16_1 package" "rc=$rc err=$e $(head -c 300 "$T/err")"
fi

run convert "$FIX" -o "$T/f32" --quant q0f32
[ $rc -eq 0 ] && [ -f "$T/f32/tensor-cache-b16.json" ] && grep -q '"bfloat16"' "$T/f32/tensor-cache-b16.json" &&
  ok "q0f32: float32 records stored as bf16, tensor-cache-b16.json written" || bad "q0f32 package" "$(head -c 300 "$T/err")"
run logits "$T/f32" --ids "$IDS"
e=$(relerr)
[ $rc -eq 0 ] && python3 -c "import sys; sys.exit(0 if float('$e') < 0.015 else 1)" &&
  ok "mlc logits on the q0f32 package (relative L2 $e)" || bad "mlc logits on the q0f32 package" "$e"

# an MLC package as the source
run convert "$T/q4" -o "$T/q8" --quant q8f16_1
[ $rc -eq 0 ] && ok "convert MLC package -> q8f16_1" || bad "convert MLC package" "$(head -c 300 "$T/err")"
run logits "$T/q8" --ids "$IDS"
e=$(relerr)
[ $rc -eq 0 ] && python3 -c "import sys; sys.exit(0 if float('$e') < 0.25 else 1)" &&
  ok "mlc logits on the re-converted package (relative L2 $e)" || bad "re-converted package logits" "$e"

# same-scheme re-conversion of a package is lossless: identical shards
run convert "$T/q4" -o "$T/q4b" --quant q4f16_1
if [ $rc -eq 0 ] && cmp -s "$T/q4/params_shard_0.bin" "$T/q4b/params_shard_0.bin"; then
  ok "q4f16_1 package -> q4f16_1: identical shard"
else
  bad "q4f16_1 package -> q4f16_1 identical" "$(head -c 300 "$T/err")"
fi

# converting over an existing package replaces it; over a non-package directory is refused
run convert "$FIX" -o "$T/q4" --quant q4f16_1
[ $rc -eq 0 ] && ok "convert over an existing package" || bad "convert over an existing package" "$(head -c 200 "$T/err")"
mkdir -p "$T/other" && echo x >"$T/other/keep.txt"
run convert "$FIX" -o "$T/other" --quant q4f16_1
[ $rc -ne 0 ] && [ -f "$T/other/keep.txt" ] && grep -q "not an MLC package" "$T/err" &&
  ok "refuses to replace a non-package directory" || bad "refuses to replace a non-package directory" "rc=$rc"

# a GGUF file (F32 tensors, llama.cpp's Q/K row permutation, byte-level tokenizer) runs directly
python3 - "$FIX" "$T/m.gguf" <<'PY'
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
cfg = json.load(open(src + "/config.json"))
raw = open(src + "/model.safetensors", "rb").read()
hn = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + hn]); base = 8 + hn
def s(x):
    b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = []
def put(k, t, v): kv.append(s(k) + struct.pack("<I", t) + v)
put("general.architecture", 8, s("llama"))
H, L, F = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
Hq, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
for k, v in [("embedding_length", H), ("block_count", L), ("feed_forward_length", F), ("attention.head_count", Hq),
             ("attention.head_count_kv", Hkv), ("context_length", 256)]:
    put("llama." + k, 4, struct.pack("<I", v))
put("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", cfg["rms_norm_eps"]))
put("llama.rope.freq_base", 6, struct.pack("<f", 10000.0))
put("tokenizer.ggml.model", 8, s("gpt2"))
V = cfg["vocab_size"]
toks = [chr(i) if 33 <= i < 127 else "<t%d>" % i for i in range(V)]
put("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, V) + b"".join(s(t) for t in toks))
put("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1))
put("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))
names = {"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
         "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
         "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
         "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
         "post_attention_layernorm.weight": "ffn_norm.weight"}
infos, data = [], b""
for name, t in hdr.items():
    if name == "__metadata__": continue
    if name.startswith("model.layers."):
        l, rest = name[len("model.layers."):].split(".", 1); g = "blk.%s.%s" % (l, names[rest])
    else:
        g = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}[name]
    a, b = t["data_offsets"]; buf = raw[base + a:base + b]; shape = t["shape"]
    if g.endswith("attn_q.weight") or g.endswith("attn_k.weight"):
        heads = Hq if "attn_q" in g else Hkv
        N, K = shape; D = N // heads; rows = [buf[r * K * 4:(r + 1) * K * 4] for r in range(N)]
        perm = []
        for r in range(N):
            h, w = divmod(r, D); j, i = divmod(w, 2)
            perm.append(rows[h * D + i * (D // 2) + j])
        buf = b"".join(perm)
    while len(data) % 32: data += b"\0"
    dims = list(reversed(shape))
    infos.append(s(g) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) +
                 struct.pack("<IQ", 0, len(data)))
    data += buf
head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kv)) + b"".join(kv) + b"".join(infos)
head += b"\0" * ((32 - len(head) % 32) % 32)
open(out, "wb").write(head + data)
PY
# the GGUF's converted package goes to a cache of this test's own
export MLC_CACHE_DIR_SAVED="${MLC_CACHE_DIR:-}"
export MLC_CACHE_DIR="$T/cache"
run logits "$T/m.gguf" --ids "$IDS"
e=$(relerr)
[ $rc -eq 0 ] && python3 -c "import sys; sys.exit(0 if float('$e') < 0.015 else 1)" &&
  ok "mlc logits on a GGUF file (F32 -> q0f32 cache package; relative L2 $e)" || bad "mlc logits on a GGUF file" "$e $(head -c 300 "$T/err")"
run generate "$T/m.gguf" --prompt "abc" --max-tokens 4
[ $rc -eq 0 ] && [ -s "$T/out" ] && ok "mlc generate on a GGUF file (tokenizer.json from its metadata)" || bad "mlc generate on a GGUF file" "$(head -c 300 "$T/err")"
run convert "$T/m.gguf" -o "$T/from-gguf" --quant q4f16_1
[ $rc -eq 0 ] && grep -q '"requantized": 0' "$T/out" && [ -f "$T/from-gguf/tokenizer.json" ] &&
  ok "convert GGUF (F32) -> q4f16_1 with its tokenizer" || bad "convert GGUF -> q4f16_1" "$(head -c 300 "$T/err")"
export MLC_CACHE_DIR="$MLC_CACHE_DIR_SAVED"

# bad arguments
run convert "$FIX" -o "$T/x" --quant q5f16_9
[ $rc -ne 0 ] && grep -q "unknown quantization 'q5f16_9'" "$T/err" && ok "unknown scheme named" || bad "unknown scheme" "$(cat "$T/err")"
run convert "$T/nowhere" -o "$T/x" --quant q4f16_1
[ $rc -ne 0 ] && grep -q "nowhere" "$T/err" && ok "missing source named" || bad "missing source" "$(cat "$T/err")"
run convert "$FIX" --quant q4f16_1
[ $rc -eq 2 ] && ok "missing -o: usage, exit 2" || bad "missing -o" "rc=$rc"
run convert --help
[ $rc -eq 0 ] && grep -q "q8f16_1" "$T/out" && ok "convert --help lists the schemes" || bad "convert --help"
# --quant on a HF directory: quantized once into the cache, same logits as the converted package
MLC_CACHE_DIR_SAVED="${MLC_CACHE_DIR:-}"
export MLC_CACHE_DIR="$T/cache2"
run logits "$FIX" --ids "$IDS" --quant q4f16_1
cp "$T/out" "$T/hfq.json"
e=$(relerr)
[ $rc -eq 0 ] && [ -n "$(ls -d "$T"/cache2/pkg-* 2>/dev/null)" ] && python3 -c "import sys; sys.exit(0 if float('$e') < 0.25 else 1)" &&
  ok "--quant q4f16_1 on a HF directory quantizes at load (relative L2 $e)" || bad "--quant on a HF directory" "$(head -c 300 "$T/err")"
run logits "$T/q4" --ids "$IDS"
cmp -s "$T/out" "$T/hfq.json" && ok "... identical to the logits of the converted package" || bad "quantize-at-load logits differ from the package's"
export MLC_CACHE_DIR="$MLC_CACHE_DIR_SAVED"
run logits "$FIX" --ids "$IDS" --quant q9f99
[ $rc -ne 0 ] && grep -q "unknown quantization 'q9f99'" "$T/err" && ok "--quant with an unknown scheme" || bad "--quant unknown" "$(cat "$T/err")"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
