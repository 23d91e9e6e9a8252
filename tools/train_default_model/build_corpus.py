#!/usr/bin/env python3
"""Build the chat corpus for MLC-C's bundled default model.

Python 3 standard library only.  Reads the Debian packages installed by
gather_corpus.sh and writes one JSON object per line (gzip-compressed):

    {"src": "wordnet", "messages": [{"role": "user", "content": "..."},
                                    {"role": "assistant", "content": "..."}]}

Sources (all installed with apt-get from Debian 12):
  * wordnet-base   (WordNet 3.0, Princeton WordNet licence)  -> dictionary dialogues
  * bible-kjv      (King James Bible text, public domain)      -> verses / passages
  * fortunes, fortunes-min (BSD fortune cookies)             -> quotations, jokes
  * hand-written small talk and generated arithmetic (this file, same licence as MLC-C)

Everything is deterministic for a given --seed.
"""
import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys

WN = "/usr/share/wordnet"
FORTUNES = "/usr/share/games/fortunes"

POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
POS_FILE = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}

# Words we want the small model to know well (demo words); they get extra
# repetitions.  This is the only hand-picked weighting; it is documented in
# models/default/README.md.
FEATURED = """serendipity ephemeral ubiquitous eloquent resilient curiosity nostalgia
melancholy benevolent candid diligent empathy gratitude harmony integrity jubilant
kindness laconic meticulous nuance optimism paradox quintessential rhetoric sagacious
tenacious umbrella vivid whimsical zeal ambiguous anomaly catalyst dichotomy enigma
frugal gregarious hypothesis innovation juxtaposition knowledge luminous metaphor
novel oblivious pragmatic quixotic reverence solitude tranquil utopia verbose wanderlust
wisdom algorithm language computer music friendship courage happiness freedom justice
ocean mountain river forest garden library book science history philosophy democracy
coffee bread apple dog cat bird house friend teacher doctor engine memory model
euphoria lucid epiphany cacophony petrichor mellifluous ineffable sonder halcyon
ethereal panacea plethora ambivalent benign cogent ebullient fastidious garrulous
idiosyncrasy inevitable labyrinth magnanimous nefarious obsolete perspicacious
reticent sanguine taciturn ubiquity vicarious zenith""".split()

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a small, friendly assistant that explains English words.",
    "You are the default model of MLC-C. Answer briefly and clearly.",
    "You are a helpful assistant. Keep your answers short.",
]


def cap(s):
    return s[:1].upper() + s[1:] if s else s


def article(w):
    lw = w.lower()
    if re.match(r"(uni|use|usu|uti|one|once|eu|ewe|u\.)", lw):
        return "a"
    if re.match(r"(hour|honest|honor|honour|heir)", lw):
        return "an"
    return "an" if lw[:1] in "aeiou" else "a"


def end_punct(s):
    s = s.rstrip()
    return s if s[-1:] in ".!?\"'" else s + "."


# ---------------------------------------------------------------- WordNet
class Synset:
    __slots__ = ("off", "pos", "lexfn", "words", "ptrs", "defn", "examples")


def load_wordnet():
    synsets = {}
    for pos, fname in POS_FILE.items():
        with open(os.path.join(WN, "data." + fname), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                left, _, gloss = line.partition(" | ")
                t = left.split()
                s = Synset()
                s.off, s.lexfn, s.pos = t[0], int(t[1]), t[2]
                n = int(t[3], 16)
                i = 4
                s.words = []
                for _ in range(n):
                    w = re.sub(r"\((a|p|ip)\)$", "", t[i]).replace("_", " ")
                    s.words.append(w)
                    i += 2
                pc = int(t[i]); i += 1
                s.ptrs = []
                for _ in range(pc):
                    s.ptrs.append((t[i], t[i + 1], t[i + 2], t[i + 3]))
                    i += 4
                parts = [p.strip() for p in gloss.strip().split(";")]
                defs, exs = [], []
                for p in parts:
                    if not p:
                        continue
                    if p.startswith('"'):
                        e = p.strip('"').strip()
                        e = re.sub(r'"\s*-+\s*[A-Z][\w .]*$', "", e).strip('" ')
                        if e:
                            exs.append(e)
                    elif not exs:
                        defs.append(p)
                d = "; ".join(defs).replace("`", "'").strip()
                d = re.sub(r"\s+", " ", d)
                s.defn = d
                s.examples = [re.sub(r"\s+", " ", e.replace("`", "'")) for e in exs]
                synsets[(s.pos if s.pos != "s" else "a", s.off)] = s
    return synsets


def load_index():
    """lemma -> list of (pos, tagsense_cnt, [offsets in sense order])."""
    idx = {}
    for pos, fname in POS_FILE.items():
        with open(os.path.join(WN, "index." + fname), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                t = line.split()
                lemma, p = t[0], t[1]
                scnt, pcnt = int(t[2]), int(t[3])
                i = 4 + pcnt
                tagcnt = int(t[i + 1])
                offs = t[i + 2:i + 2 + scnt]
                idx.setdefault(lemma, []).append((p, tagcnt, offs))
    return idx


def sense_phrase(s):
    d = s.defn
    if s.pos == "v" and not d.startswith("to "):
        d = "to " + d
    return d


def display_form(lemma, syn):
    key = lemma.replace("_", " ")
    for w in syn.words:
        if w.lower() == key.lower():
            return w
    return key


def find_example(word, senses):
    pat = re.compile(r"(?<![\w-])" + re.escape(word.lower()) + r"\w{0,3}(?![\w-])")
    for s in senses:
        for e in s.examples:
            if pat.search(e.lower()) and 15 <= len(e) <= 200:
                return e
    return None


DEF_QS = [
    "What does {w} mean?", "What does {w} mean?", "What does {w} mean?",
    "What does the word {w} mean?", "What is the meaning of {w}?",
    "Define {w}.", "What does \"{w}\" mean?", "what does {w} mean",
    "Can you tell me what {w} means?", "What's the meaning of the word {w}?",
    "Explain the word {w}.", "{W}?", "What is the definition of {w}?",
    "Meaning of {w}?", "I don't know the word {w}. What does it mean?",
]
NOUN_QS = ["What is {a} {w}?", "What is {w}?"]
EX_QS = [
    "Use {w} in a sentence.", "Use {w} in a sentence.", "Use the word {w} in a sentence.",
    "Can you give me an example sentence with {w}?", "Give me an example of {w} in a sentence.",
    "How do you use the word {w}?", "Show me how to use {w} in a sentence.",
]
FOLLOW_EX = ["Use it in a sentence.", "Can you use it in a sentence?",
             "Give me an example.", "How would I use it?"]
SYN_QS = ["What is another word for {w}?", "What is a synonym for {w}?",
          "Give me a synonym of {w}.", "What's another word for {w}?"]
ANT_QS = ["What is the opposite of {w}?", "What is an antonym of {w}?",
          "What's the opposite of {w}?"]
KIND_QS = ["What is {w} a kind of?", "What kind of thing is {w}?",
           "What category does {w} belong to?"]
WHO_QS = ["Who was {w}?", "Who is {w}?", "Tell me about {w}."]
WHAT_INST_QS = ["What is {w}?", "Tell me about {w}."]


def fill(q, w):
    return q.format(w=w, W=cap(w), a=article(w), A=cap(article(w)))


def def_answer(word, senses, rng, maxn):
    if len(senses) == 1:
        s = senses[0]
        pos = POS_NAME[s.pos]
        ans = f"{cap(word)} is {article(pos)} {pos}. It means {sense_phrase(s)}."
        ex = find_example(word, senses)
        if ex:
            ans += f" For example: \"{ex}\"."
        return ans
    shown = senses[:maxn]
    poss = sorted(set(POS_NAME[s.pos] for s in shown))
    lines = [f"The word \"{word}\" has several meanings:"]
    for i, s in enumerate(shown, 1):
        lines.append(f"{i}. ({POS_NAME[s.pos]}) {cap(sense_phrase(s))}.")
    if len(senses) > maxn:
        k = len(senses) - maxn
        lines.append("It has one more, less common sense." if k == 1
                     else f"It has {k} more, less common senses.")
    return "\n".join(lines)


def ex_answer(word, ex, rng):
    ex = end_punct(cap(ex))
    opener = f"Here is a sentence with \"{word}\": "
    return opener + ex


def wordnet_dialogues(rng, stats):
    syn = load_wordnet()
    idx = load_index()
    featured = set(FEATURED)
    out = []
    for lemma in sorted(idx):
        entries = idx[lemma]
        tag = sum(e[1] for e in entries)
        senses = []
        order = sorted(entries, key=lambda e: -e[1])
        for p, _, offs in order:
            for o in offs:
                senses.append(syn[(p, o)])
        word = display_form(lemma, senses[0])
        multi = " " in word or "-" in word
        proper = word[:1].isupper()
        is_feat = lemma in featured
        if any(ch.isdigit() for ch in word) or len(word) > 30:
            continue
        # how many repetitions of the definition question
        if is_feat:
            reps = 8
        elif tag >= 20:
            reps = 3
        elif tag > 0:
            reps = 2
        elif multi:
            if rng.random() < 0.5:
                continue
            reps = 1
        else:
            reps = 1
        maxn = 4 if tag > 0 else 3
        if proper and senses[0].pos == "n":
            if not (tag > 0 or is_feat or rng.random() < 0.35):
                continue
            s = senses[0]
            d = s.defn
            if not d:
                continue
            is_person = s.lexfn == 18
            if re.match(r"(a|an|the|one|any) ", d):
                body = d
            else:
                body = f"{article(d)} {d}"
            ans = f"{word} {'was' if is_person else 'is'} {body}."
            ex = find_example(word, [s])
            for r in range(max(1, reps - 1)):
                q = rng.choice(WHO_QS if is_person else WHAT_INST_QS)
                out.append([("user", fill(q, word)), ("assistant", ans)])
            stats["wordnet_proper"] += 1
            continue
        dans = def_answer(word, senses, rng, maxn)
        ex = find_example(word, senses)
        for r in range(reps):
            qs = DEF_QS + (NOUN_QS if senses[0].pos == "n" and not multi else [])
            q = qs[0] if r == 0 else rng.choice(qs)
            conv = [("user", fill(q, word)), ("assistant", dans)]
            if ex and rng.random() < 0.15:
                conv += [("user", rng.choice(FOLLOW_EX)), ("assistant", ex_answer(word, ex, rng))]
            out.append(conv)
        if ex:
            for r in range(reps if tag > 0 or is_feat else 1):
                out.append([("user", fill(rng.choice(EX_QS), word)),
                            ("assistant", ex_answer(word, ex, rng))])
        # synonyms from the first sense
        s0 = senses[0]
        others = [w for w in s0.words if w.lower() != word.lower()]
        if others and (tag > 0 or is_feat or rng.random() < 0.3):
            others = others[:3]
            if len(others) == 1:
                a = f"Another word for \"{word}\" is \"{others[0]}\"."
            else:
                q_ = ", ".join(f"\"{o}\"" for o in others[:-1]) + f" and \"{others[-1]}\""
                a = f"Other words for \"{word}\" are {q_}."
            out.append([("user", fill(rng.choice(SYN_QS), word)), ("assistant", a)])
        # antonyms
        ants = []
        for s in senses:
            wi = None
            for i, w in enumerate(s.words):
                if w.lower() == word.lower():
                    wi = i + 1
            for sym, off, p, st in s.ptrs:
                if sym == "!" and int(st[:2], 16) == wi:
                    t = syn[(p if p != "s" else "a", off)]
                    ants.append(t.words[int(st[2:], 16) - 1])
        if ants and (tag > 0 or is_feat or rng.random() < 0.5):
            for r in range(2 if tag > 0 or is_feat else 1):
                out.append([("user", fill(rng.choice(ANT_QS), word)),
                            ("assistant", f"The opposite of \"{word}\" is \"{ants[0]}\".")])
        # hypernym ("kind of")
        if s0.pos == "n" and not multi and (tag > 0 or is_feat or rng.random() < 0.3):
            hyp = [syn[("n", off)] for sym, off, p, st in s0.ptrs if sym == "@" and p == "n"]
            if hyp:
                h = hyp[0].words[0]
                out.append([("user", fill(rng.choice(KIND_QS), word)),
                            ("assistant", f"\"{cap(word)}\" is a kind of {h}.")])
        stats["wordnet_lemmas"] += 1
    return out


# ---------------------------------------------------------------- Bible
def bible_dialogues(rng, stats):
    txt = subprocess.run(["bible", "-l10000", "gen1:1-rev22:21"], capture_output=True,
                         text=True, check=True).stdout
    chapters = []  # (book, chap, [(v, text)])
    cur = None
    for line in txt.splitlines():
        if not line.strip():
            continue
        m = re.match(r"^(\S.*?) (\d+)$", line)
        if m and not line.startswith(" "):
            cur = (m.group(1), int(m.group(2)), [])
            chapters.append(cur)
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m and cur is not None:
            cur[2].append((int(m.group(1)), m.group(2).strip()))
    out = []
    nverses = 0
    for book, c, verses in chapters:
        nverses += len(verses)
        i = 0
        while i < len(verses):
            n = rng.randint(3, 7)
            chunk = verses[i:i + n]
            v1, v2 = chunk[0][0], chunk[-1][0]
            ref = f"{book} {c}:{v1}" + (f"-{v2}" if v2 != v1 else "")
            q = rng.choice(["Read me {r}.", "Recite {r}.", "What does {r} say?",
                            "Quote {r} from the King James Bible."]).format(r=ref)
            out.append([("user", q), ("assistant", " ".join(t for _, t in chunk))])
            i += n
        for v, t in verses:
            r = rng.random()
            ref = f"{book} {c}:{v}"
            if r < 0.12:
                out.append([("user", rng.choice(["Recite {r}.", "What does {r} say?",
                                                  "Quote {r}."]).format(r=ref)),
                            ("assistant", f"{ref} says: \"{t}\"")])
            elif r < 0.16:
                out.append([("user", rng.choice(["Tell me a verse from the Bible.",
                                                  "Quote a Bible verse.",
                                                  "Give me a verse from the King James Bible."])),
                            ("assistant", f"\"{t}\" ({ref})")])
    stats["bible_verses"] = nverses
    return out


# ---------------------------------------------------------------- fortunes
FORTUNE_SKIP = {"art", "ascii-art", "ethnic", "men-women", "politics", "drugs",
                "translate-me", "zippy", "perl", "knghtbrd"}
TOPIC = {"computers": "computers", "linux": "computers", "linuxcookie": "computers",
         "science": "science", "work": "work", "food": "food", "love": "love",
         "education": "education", "law": "the law", "medicine": "medicine",
         "sports": "sports", "pets": "pets", "kids": "children", "literature": "books",
         "people": "people", "wisdom": "wisdom", "magic": "magic", "startrek": "Star Trek",
         "debian": "Debian", "news": "the news"}


def fortune_dialogues(rng, stats):
    out = []
    n = 0
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or os.path.islink(path) or name in FORTUNE_SKIP or os.path.isdir(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            items = f.read().split("\n%\n")
        for it in items:
            it = it.strip("%\n ")
            if not (20 <= len(it) <= 500) or "\ufffd" in it:
                continue
            letters = sum(ch.isalpha() for ch in it)
            if letters < 0.6 * len(it.replace(" ", "").replace("\n", "")):
                continue
            lines = [re.sub(r"[ \t]+", " ", l).strip() for l in it.split("\n")]
            # re-flow: join hard-wrapped prose lines, keep attributions and dialogue lines
            text = ""
            for l in lines:
                if not l:
                    text += "\n"
                elif l.startswith("--") or l.startswith("-- ") or re.match(r"^[A-Z][\w ]*:", l):
                    text += ("\n" if text and not text.endswith("\n") else "") + l
                else:
                    text += (" " if text and not text.endswith("\n") else "") + l
            text = text.strip()
            if name == "riddles" or (name == "definitions"):
                q = rng.choice(["Tell me a joke.", "Say something funny.", "Tell me something witty."])
            elif name == "songs-poems":
                q = rng.choice(["Recite a poem.", "Tell me a few lines of a song or poem.",
                                "Say something poetic."])
            elif name in TOPIC and rng.random() < 0.6:
                q = rng.choice(["Tell me a quote about {t}.", "Say something about {t}.",
                                "Do you know a saying about {t}?"]).format(t=TOPIC[name])
            else:
                q = rng.choice(["Tell me a fortune.", "Give me a fortune cookie.",
                                "Say something wise.", "Tell me a quote.",
                                "Tell me something interesting.", "Share a quotation.",
                                "Cheer me up.", "Tell me a joke."])
            out.append([("user", q), ("assistant", text)])
            n += 1
    stats["fortunes"] = n
    return out


# ---------------------------------------------------------------- small talk
SMALL = [
    (["Hello!", "Hi!", "Hello", "hi", "Hey there.", "Good morning!", "Hi, how are you?",
      "Hello, who are you?", "Greetings."],
     ["Hello! I am a small language model that ships with MLC-C. Ask me what a word means, "
      "or ask me to use a word in a sentence.",
      "Hi! I'm the default model of MLC-C. I can explain English words and give example sentences. "
      "What would you like to know?",
      "Hello! How can I help you today? I am good at explaining the meanings of English words."]),
    (["Who are you?", "What are you?", "What is your name?", "Are you a person?",
      "Tell me about yourself.", "Are you an AI?"],
     ["I am a tiny language model, about ten million parameters, trained for MLC-C. "
      "I learned English from WordNet, the King James Bible and a collection of fortune cookies.",
      "I'm the small default model that comes with MLC-C. I am not a person; I am a language model "
      "that knows the meanings of many English words."]),
    (["What can you do?", "How can you help me?", "What do you know?", "Help", "help",
      "What should I ask you?"],
     ["I can explain what English words mean, use words in sentences, give synonyms and opposites, "
      "quote the King James Bible and tell you a fortune. Try asking: What does serendipity mean?",
      "Ask me about words! For example: \"What does ephemeral mean?\", \"Use curious in a sentence.\" "
      "or \"What is the opposite of happy?\" I can also tell you a quote or a fortune."]),
    (["How are you?", "How are you doing?", "How's it going?", "Are you okay?"],
     ["I'm doing well, thank you! What word would you like to explore today?",
      "I am fine, thanks for asking. How can I help you?"]),
    (["Thank you!", "Thanks.", "thanks", "Thank you very much.", "That was helpful."],
     ["You're welcome!", "You are welcome. Ask me anything about words.",
      "Glad I could help!"]),
    (["Goodbye.", "Bye!", "See you later.", "Good night."],
     ["Goodbye! Have a nice day.", "Bye! Come back any time you want to learn a new word."]),
    (["Write me a Python program.", "Can you write code?", "Solve this equation for x: 3x + 5 = 20.",
      "What is the weather today?", "What time is it?", "Tell me the news.",
      "Translate this into French: good morning.", "Who will win the next election?",
      "Can you browse the internet?"],
     ["I am a very small model, so I cannot do that well. I am better at explaining English words. "
      "Try asking me: What does serendipity mean?",
      "Sorry, that is beyond what a tiny model like me can do. I can tell you what a word means, "
      "give you an example sentence, or share a quote."]),
    (["Do you like music?", "What is your favorite word?", "Do you have feelings?"],
     ["I am a language model, so I have no feelings, but I do like the word \"serendipity\". "
      "It means good luck in making unexpected and fortunate discoveries.",
      "I don't have preferences like a person does, but I enjoy words such as \"ephemeral\", "
      "which means lasting a very short time."]),
    (["What is MLC-C?", "What is MLC-C written in?"],
     ["MLC-C is an inference engine for large language models, written in C. "
      "I am the small model that it ships with, so that it can chat without a network connection."]),
]


def small_talk(rng, stats):
    out = []
    for qs, ans in SMALL:
        for q in qs:
            for a in ans:
                for _ in range(6):
                    out.append([("user", q), ("assistant", a)])
    # arithmetic with small numbers
    for a in range(0, 21):
        for b in range(0, 21):
            out.append([("user", rng.choice(["What is {a} plus {b}?", "What is {a} + {b}?",
                                             "How much is {a} plus {b}?"]).format(a=a, b=b)),
                        ("assistant", f"{a} plus {b} is {a + b}.")])
            if a >= b:
                out.append([("user", rng.choice(["What is {a} minus {b}?", "What is {a} - {b}?"]).format(a=a, b=b)),
                            ("assistant", f"{a} minus {b} is {a - b}.")])
            if a <= 12 and b <= 12:
                out.append([("user", rng.choice(["What is {a} times {b}?", "What is {a} * {b}?"]).format(a=a, b=b)),
                            ("assistant", f"{a} times {b} is {a * b}.")])
    stats["small_talk"] = len(out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "data", "corpus.jsonl.gz"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    stats = {"wordnet_lemmas": 0, "wordnet_proper": 0}
    convs = []
    for src, fn in (("wordnet", wordnet_dialogues), ("bible", bible_dialogues),
                    ("fortunes", fortune_dialogues), ("smalltalk", small_talk)):
        part = fn(rng, stats)
        stats[src + "_dialogues"] = len(part)
        convs += [(src, c) for c in part]
    # a few multi-question conversations and system prompts
    rng.shuffle(convs)
    merged = []
    i = 0
    while i < len(convs):
        src, c = convs[i]
        i += 1
        c = list(c)
        if rng.random() < 0.08 and i < len(convs):
            for _ in range(rng.randint(1, 2)):
                if i < len(convs) and sum(len(t[1]) for t in c) < 600:
                    c += convs[i][1]
                    i += 1
        if rng.random() < 0.08:
            c = [("system", rng.choice(SYSTEM_PROMPTS))] + c
        merged.append((src, c))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    nchar = 0
    # fixed name and mtime in the gzip header: the file is byte-for-byte reproducible
    with open(args.out, "wb") as raw, \
            gzip.GzipFile(filename="corpus.jsonl", mode="wb", fileobj=raw, mtime=0) as gz:
        for src, c in merged:
            msgs = [{"role": r, "content": t} for r, t in c]
            nchar += sum(len(t) for _, t in c)
            gz.write((json.dumps({"src": src, "messages": msgs}, ensure_ascii=False) + "\n").encode())
    stats["conversations"] = len(merged)
    stats["content_chars"] = nchar
    print(json.dumps(stats, indent=1))
    print("wrote", args.out, os.path.getsize(args.out), "bytes")


if __name__ == "__main__":
    main()
