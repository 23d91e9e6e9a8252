"""HF tokenizers (Rust) single-thread speed on the same text as tok_bench.c (not a test).
Usage: TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 python3 hf_bench.py tokenizer.json TEXT_FILE"""
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

tj, txt = sys.argv[1], sys.argv[2]
best = 1e9
for _ in range(5):
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(tj)
    best = min(best, time.perf_counter() - t0)
print(f"hf tokenizers {tokenizers.__version__} load {tj}: {best * 1e3:.1f} ms (best of 5)")
text = open(txt, encoding="utf-8").read()
mb = len(text.encode()) / 1e6
best = 1e9
for _ in range(3):
    t0 = time.perf_counter()
    e = tok.encode(text, add_special_tokens=False)
    best = min(best, time.perf_counter() - t0)
print(f"hf encode one string: {mb:.2f} MB, {len(e.ids)} tokens, {best:.3f} s, {mb / best:.2f} MB/s")
lines = text.split("\n")
best = 1e9
for _ in range(3):
    t0 = time.perf_counter()
    es = tok.encode_batch(lines, add_special_tokens=False)
    best = min(best, time.perf_counter() - t0)
n = sum(len(x.ids) for x in es)
print(f"hf encode_batch lines: {n} tokens, {best:.3f} s, {mb / best:.2f} MB/s")
