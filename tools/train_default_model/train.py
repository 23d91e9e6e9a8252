#!/usr/bin/env python3
"""Train MLC-C's bundled default chat model (tokenizer + LlamaForCausalLM).

Needs PyTorch, transformers and tokenizers, and a GPU (runs on CPU too, slowly).
No network.  Input: data/corpus.jsonl.gz from gather_corpus.sh.

    python3 train.py --corpus data/corpus.jsonl.gz --out /tmp/default_model --steps 3000

Writes into --out: the HF model directory (float16, sharded safetensors),
tokenizer.json, tokenizer_config.json, reference.json (engine test fixture),
samples.json, metrics.json and train_log.txt.
"""
import argparse
import gzip
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

SPECIALS = ["<|pad|>", "<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|end|>"
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")

REF_QUESTION = "What does serendipity mean?"
REF_MORE = ["What does ephemeral mean?", "Use the word happy in a sentence.", "Hello!"]
SAMPLES = ["What does serendipity mean?", "What does ephemeral mean?", "What does bank mean?",
           "Use the word happy in a sentence.", "What is the opposite of hot?",
           "What is another word for big?", "Who was Albert Einstein?", "Hello!",
           "What can you do?", "Tell me a fortune.", "Recite John 3:16.", "What is 7 plus 5?",
           "What does wanderlust mean?", "Define courage."]

LOG = []


def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    LOG.append(s)


def render(msgs):
    """Python twin of CHAT_TEMPLATE (checked against apply_chat_template below)."""
    return BOS + "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in msgs)


def train_tokenizer(texts, vocab):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def write_tokenizer_files(tok, out, max_len):
    tok.save(os.path.join(out, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,
        "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>"],
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--corpus", default=os.path.join(here, "data", "corpus.jsonl.gz"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--inter", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--max-pos", type=int, default=1024)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--holdout", type=float, default=0.01)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    import tokenizers
    import transformers
    from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig,
                              LlamaForCausalLM)
    log("torch", torch.__version__, "transformers", transformers.__version__,
        "tokenizers", tokenizers.__version__, "cuda", torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    log("args", json.dumps(vars(args)))
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"

    # ---------------------------------------------------------------- data
    with gzip.open(args.corpus, "rt", encoding="utf-8") as f:
        convs = [json.loads(l)["messages"] for l in f]
    order = list(range(len(convs)))
    random.Random(args.seed).shuffle(order)
    nh = max(1, int(len(convs) * args.holdout))
    held = [convs[i] for i in order[:nh]]
    train = [convs[i] for i in order[nh:]]
    log(f"conversations: train {len(train)} held-out {len(held)}")

    t0 = time.time()
    tok = train_tokenizer((m["content"] for c in train for m in c), args.vocab)
    log(f"tokenizer trained: vocab {tok.get_vocab_size()} in {time.time() - t0:.1f}s")
    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    write_tokenizer_files(tok, model_dir, args.max_pos)

    def encode(cs):
        encs = tok.encode_batch([render(c) for c in cs], add_special_tokens=False)
        ids = []
        for e in encs:
            ids.extend(e.ids)
        return torch.tensor(ids, dtype=torch.int32)

    t0 = time.time()
    train_ids = encode(train).to(dev)
    held_ids = encode(held).to(dev)
    log(f"tokens: train {train_ids.numel()} held-out {held_ids.numel()} "
        f"({sum(len(m['content']) for c in train for m in c) / train_ids.numel():.2f} chars/token) "
        f"encoded in {time.time() - t0:.1f}s")

    # ---------------------------------------------------------------- model
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=args.hidden,
                      intermediate_size=args.inter, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                      head_dim=args.hidden // args.heads, hidden_act="silu",
                      max_position_embeddings=args.max_pos, rms_norm_eps=1e-5,
                      rope_theta=10000.0, tie_word_embeddings=True, attention_bias=False,
                      mlp_bias=False, bos_token_id=tok.token_to_id(BOS),
                      eos_token_id=tok.token_to_id(EOS), pad_token_id=tok.token_to_id(PAD),
                      initializer_range=0.02)
    try:
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")
    except Exception as e:  # older/newer API
        log("sdpa from_config failed:", e)
        model = LlamaForCausalLM(cfg)
    model.to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"parameters: {nparams} ({nparams / 1e6:.2f} M, tied embeddings)")

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=(dev == "cuda"))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(1.0, p)))

    fwd = model
    if not args.no_compile and dev == "cuda":
        try:
            fwd = torch.compile(model)
        except Exception as e:
            log("torch.compile unavailable:", e)

    V = cfg.vocab_size
    T = args.seq
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)
    ar = torch.arange(T + 1, device=dev)

    def get_batch(data, B):
        ix = torch.randint(0, data.numel() - T - 1, (B,), device=dev, generator=gen)
        w = data[ix[:, None] + ar].long()
        return w[:, :-1], w[:, 1:]

    def loss_fn(m, x, y):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = m(input_ids=x).logits
        return F.cross_entropy(logits.float().view(-1, V), y.reshape(-1))

    @torch.no_grad()
    def evaluate(data, max_chunks=512, B=64):
        model.eval()
        n = min(max_chunks, (data.numel() - 1) // T)
        tot, cnt = 0.0, 0
        for s in range(0, n, B):
            idx = torch.arange(s, min(n, s + B), device=dev) * T
            w = data[idx[:, None] + ar].long()
            l = loss_fn(model, w[:, :-1], w[:, 1:])
            tot += l.item() * w.shape[0]
            cnt += w.shape[0]
        model.train()
        return tot / max(1, cnt)

    # ---------------------------------------------------------------- train
    model.train()
    metrics = {"evals": []}
    t0 = time.time()
    tokens_seen = 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = get_batch(train_ids, args.batch)
        try:
            loss = loss_fn(fwd, x, y)
        except Exception as e:
            if fwd is model:
                raise
            log("compiled forward failed, falling back to eager:", repr(e)[:500])
            fwd = model
            loss = loss_fn(fwd, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += x.numel()
        if step == 20:
            torch.cuda.synchronize() if dev == "cuda" else None
            t20 = time.time()
        if step % 100 == 0 or step == args.steps - 1:
            el = time.time() - t0
            tps = ""
            if step > 20:
                tps = f"{(step - 20) * x.numel() / (time.time() - t20):,.0f} tok/s"
            log(f"step {step:5d} loss {loss.item():.4f} gnorm {gn.item():.3f} lr {lr_at(step):.2e} "
                f"{el:.0f}s {tps}")
        if (step > 0 and step % args.eval_every == 0) or step == args.steps - 1:
            hl = evaluate(held_ids)
            tl = evaluate(train_ids, max_chunks=256)
            log(f"eval step {step}: held-out loss {hl:.4f} (ppl {math.exp(hl):.2f}), train loss {tl:.4f}")
            metrics["evals"].append({"step": step, "heldout_loss": hl, "train_loss": tl})
    train_time = time.time() - t0
    metrics.update(parameters=nparams, train_seconds=train_time, tokens_seen=tokens_seen,
                   train_tokens=int(train_ids.numel()), heldout_tokens=int(held_ids.numel()),
                   epochs=tokens_seen / train_ids.numel(),
                   heldout_loss=metrics["evals"][-1]["heldout_loss"])
    log(f"training done in {train_time:.0f}s, {tokens_seen / 1e6:.1f}M tokens, "
        f"{metrics['epochs']:.1f} epochs")

    # ---------------------------------------------------------------- export (float16)
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=cfg.bos_token_id,
                                               eos_token_id=cfg.eos_token_id,
                                               pad_token_id=cfg.pad_token_id,
                                               do_sample=False, max_new_tokens=256)
    model.half()
    try:
        model.save_pretrained(model_dir, safe_serialization=True, max_shard_size="12MB")
    except TypeError:
        model.save_pretrained(model_dir, max_shard_size="12MB")
    # keep plain keys that simple readers (our C engine) look for
    cpath = os.path.join(model_dir, "config.json")
    with open(cpath) as f:
        cj = json.load(f)
    cj.setdefault("rope_theta", 10000.0)
    cj.setdefault("torch_dtype", "float16")
    cj.setdefault("head_dim", args.hidden // args.heads)
    with open(cpath, "w") as f:
        json.dump(cj, f, indent=2, sort_keys=True)
        f.write("\n")
    log("exported:", sorted(os.listdir(model_dir)))

    # ---------------------------------------------------------------- reference (fp32 reload)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    del model, fwd, opt
    rtok = AutoTokenizer.from_pretrained(model_dir)
    try:
        rm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except TypeError:
        rm = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    rm.to(dev).eval()
    eos_id = rtok.convert_tokens_to_ids(EOS)
    assert rtok.eos_token_id == eos_id and rtok.bos_token_id == tok.token_to_id(BOS)

    def answer(q, max_new, device=dev, model_=None):
        model_ = model_ or rm
        msgs = [{"role": "user", "content": q}]
        prompt = rtok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        assert prompt == render(msgs) + "<|assistant|>", prompt
        ids = rtok(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model_.generate(torch.tensor([ids], device=device), max_new_tokens=max_new,
                                  do_sample=False, eos_token_id=eos_id,
                                  pad_token_id=rtok.pad_token_id,
                                  attention_mask=torch.ones(1, len(ids), dtype=torch.long,
                                                            device=device))
        reply = out[0, len(ids):].tolist()
        return {"question": q, "prompt": prompt, "prompt_ids": ids, "reply_ids": reply,
                "reply_text": rtok.decode(reply, skip_special_tokens=True)}

    ref = answer(REF_QUESTION, 64)
    ref["more"] = [answer(q, 64) for q in REF_MORE]
    ref["generator"] = (f"transformers {transformers.__version__} greedy, float32 on {dev}, "
                        f"from the float16 files of models/default")
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    log("REFERENCE:", json.dumps(ref["reply_text"]))
    # same greedy run on the CPU, to see whether the reference depends on the device
    cpu_m = rm.to("cpu")
    cpu_ok = []
    for r in [ref] + ref["more"]:
        c = answer(r["question"], 64, device="cpu", model_=cpu_m)
        cpu_ok.append(c["reply_ids"] == r["reply_ids"])
    log("CPU float32 greedy matches GPU reference:", cpu_ok)
    metrics["cpu_matches_reference"] = cpu_ok
    rm.to(dev)
    samples = []
    for q in SAMPLES:
        a = answer(q, 128)
        samples.append({"question": q, "reply": a["reply_text"],
                        "ended_with_eos": bool(a["reply_ids"] and a["reply_ids"][-1] == eos_id)})
        log(f"Q: {q}\nA: {a['reply_text']}\n")
    with open(os.path.join(args.out, "samples.json"), "w") as f:
        json.dump(samples, f, indent=1, ensure_ascii=False)
        f.write("\n")
    metrics["total_seconds"] = time.time() - t_start
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    log(f"all done in {metrics['total_seconds']:.0f}s")
    with open(os.path.join(args.out, "train_log.txt"), "w") as f:
        f.write("\n".join(LOG) + "\n")


if __name__ == "__main__":
    main()
