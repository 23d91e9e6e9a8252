"""Trains three tiny SentencePiece models on TEXT_FILE and writes them with reference ids from
the sentencepiece library (used once to make tests/fixtures/tokspm; not a test).
Usage: python3 spm_ref.py TEXT_FILE OUT_DIR"""
import json
import sys

import sentencepiece as spm

txt, out = sys.argv[1], sys.argv[2]
TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And God said, Let there be light: and there was light.",
    "  leading and trailing spaces   ",
    "two  spaces,   three   spaces\tand a tab\nand a newline",
    "Caf\u00e9 na\u00efve fa\u00e7ade \u00fcber",
    "\u4e2d\u6587 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",
    "emoji \U0001F600\U0001F44D\U0001F3FD ok",
    "\uff21\uff22\uff23 \uff11\uff12\uff13 \ufb01 \u2460 full width and ligatures",
    "Numbers 3:16, 1234567890 and 3.14159!",
    "UPPER lower MiXeD wOrDs",
    "x",
    "",
    " ",
    "\u2581already has a meta space",
    "quotes \u201clike these\u201d and \u2014 dashes \u2013 ok",
]
models = {
    # Llama 2 style: BPE, byte fallback, no normalization, spaces kept
    "bpe": dict(model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                remove_extra_whitespaces=False, split_digits=True),
    # T5 style: Unigram with the default nmt_nfkc charsmap, extra whitespace removed
    "unigram": dict(model_type="unigram"),
    # Unigram with byte fallback and the identity normalizer
    "unigram_bf": dict(model_type="unigram", byte_fallback=True, normalization_rule_name="identity"),
}
ref = {"texts": TEXTS, "models": {}}
for name, kw in models.items():
    spm.SentencePieceTrainer.train(input=txt, model_prefix=f"{out}/{name}", vocab_size=600,
                                   character_coverage=0.9995, input_sentence_size=40000,
                                   shuffle_input_sentence=True, num_threads=8, seed_sentencepiece_size=20000,
                                   minloglevel=2, **kw)
    sp = spm.SentencePieceProcessor(model_file=f"{out}/{name}.model")
    ids = [sp.encode(t) for t in TEXTS]
    ref["models"][name] = {"ids": ids, "decoded": [sp.decode(x) for x in ids]}
    print(name, [len(x) for x in ids])
json.dump(ref, open(f"{out}/spm_ref.json", "w"), ensure_ascii=False, indent=1)
print("sentencepiece", spm.__version__)
