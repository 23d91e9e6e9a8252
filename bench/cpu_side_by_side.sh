#!/usr/bin/env bash
# bench/cpu_side_by_side.sh: MLC-C against llama.cpp on this machine's CPU, interleaved.
#
# Takes paths only: it neither fetches nor builds llama.cpp (bench/RESULTS.md, "CPU side by side
# with llama.cpp", says how the llama.cpp side was built and how its GGUFs were made).
#
#   bench/cpu_side_by_side.sh --llama-bench /tmp/llamacpp/build/bin/llama-bench \
#       --gguf-q4_0 Q4_0.gguf --gguf-q8_0 Q8_0.gguf --gguf-f16 F16.gguf \
#       --q4f16_1 PKG --q4f32_1 PKG --q8f16_1 PKG --q0f16 PKG --q3f16_1 PKG \
#       [--mlc build/mlc] [--rounds 3] [--threads "1 2"] [--gen 32] [--groups "4bit 8bit 16bit 3bit"]
#       [--out DIR]
#
# Every configuration is measured once per round, in this order: for each thread count, for each
# group (4-bit, 8-bit, 16-bit, 3-bit): `mlc bench --membw` at that thread count, then our
# package(s) of the group, then llama.cpp's GGUF of the group. The table gives the median of the
# rounds for every figure:
#   ours:      `mlc bench PKG --prompt-len 128 --gen-len G+1` (prefill 128, then G decode steps
#              at context 128..128+G) and `mlc bench PKG --prompt-len 512 --gen-len 1` (prefill 512)
#   llama.cpp: `llama-bench -m GGUF -p 128,512 -n G -r 1 -t T -o json` (defaults otherwise:
#              flash attention off, batch 2048, ubatch 512, mmap; tgG starts from an empty cache)
#   decode bandwidth = weight bytes one decode step reads (ours: `mlc bench`'s weight_bytes_per_token;
#   llama.cpp: the GGUF's tensor bytes, its model_size, which a tied-embedding model reads whole
#   per token) x decode tok/s; "of membw" = that / the membw measured just before, per round.
# Ratios are ours / llama.cpp of the same group (q3f16_1 against Q4_0).
# Raw results: OUT/raw.jsonl (one JSON object per measurement), the table: OUT/table.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MLC=$HERE/../build/mlc
LB=""
declare -A GGUF=() PKG=()
ROUNDS=3
THREADS="1 2"
GEN=32
OUT=""
GROUPS_ORDER="4bit 8bit 16bit 3bit"
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --mlc) MLC=$2; shift 2 ;;
    --llama-bench) LB=$2; shift 2 ;;
    --gguf-q4_0) GGUF[q4]=$2; shift 2 ;;
    --gguf-q8_0) GGUF[q8]=$2; shift 2 ;;
    --gguf-f16) GGUF[f16]=$2; shift 2 ;;
    --q4f16_1 | --q4f32_1 | --q8f16_1 | --q0f16 | --q3f16_1) PKG[${1#--}]=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --gen) GEN=$2; shift 2 ;;
    --groups) GROUPS_ORDER=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "cpu_side_by_side.sh: unknown argument '$1'" >&2; usage 1 >&2 ;;
  esac
done
[ -x "$MLC" ] || { echo "cpu_side_by_side.sh: no mlc binary at $MLC (--mlc)" >&2; exit 1; }
if [ ${#GGUF[@]} -gt 0 ] && [ ! -x "$LB" ]; then
  echo "cpu_side_by_side.sh: GGUFs given but no llama-bench binary (--llama-bench)" >&2
  exit 1
fi
for k in "${!GGUF[@]}"; do [ -f "${GGUF[$k]}" ] || { echo "no file ${GGUF[$k]}" >&2; exit 1; }; done
for k in "${!PKG[@]}"; do [ -d "${PKG[$k]}" ] || { echo "no directory ${PKG[$k]}" >&2; exit 1; }; done
OUT=${OUT:-$(mktemp -d /tmp/cpu_sbs.XXXXXX)}
mkdir -p "$OUT"
RAW=$OUT/raw.jsonl
: >"$RAW"

# group -> our schemes, llama.cpp GGUF key
declare -A OURS=([4bit]="q4f16_1 q4f32_1" [8bit]="q8f16_1" [16bit]="q0f16" [3bit]="q3f16_1")
declare -A THEIRS=([4bit]=q4 [8bit]=q8 [16bit]=f16 [3bit]="")

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
# emit JSON_FROM_TOOL EXTRA_FIELDS: appends the tool's object with our fields to raw.jsonl
emit() { python3 -c 'import json,sys; o=json.loads(sys.argv[1]); o.update(json.loads(sys.argv[2])); print(json.dumps(o))' "$1" "$2" >>"$RAW"; }

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -srm), $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "mlc: $MLC (sha256 $(sha256sum "$MLC" | cut -c1-16))"
  echo "checkout of this script (not necessarily the mlc binary): $(git -C "$HERE/.." describe --always --dirty 2>/dev/null || echo '?'), $(git -C "$HERE/.." status --short 2>/dev/null | wc -l) paths changed"
  [ -n "$LB" ] && echo "llama-bench: $LB (sha256 $(sha256sum "$LB" | cut -c1-16))"
  echo "rounds $ROUNDS, threads '$THREADS', decode steps $GEN"
  for k in "${!PKG[@]}"; do echo "ours $k: ${PKG[$k]}"; done
  for k in "${!GGUF[@]}"; do echo "llama.cpp $k: ${GGUF[$k]}"; done
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/setup.txt" >&2

for r in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    for g in $GROUPS_ORDER; do
      th=${THEIRS[$g]}
      have=0
      for q in ${OURS[$g]}; do [ -n "${PKG[$q]:-}" ] && have=1; done
      [ -n "$th" ] && [ -n "${GGUF[$th]:-}" ] && have=1
      [ $have = 1 ] || continue
      base="{\"round\": $r, \"threads_asked\": $t, \"group\": \"$g\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\""
      if j=$("$MLC" bench --membw --threads "$t" --json 2>>"$OUT/stderr.log"); then
        emit "$j" "$base, \"engine\": \"membw\"}"
        log "round $r t$t $g membw $(echo "$j" | sed 's/.*"read_gb_s": \([0-9.]*\).*/\1/') GB/s"
      fi
      for q in ${OURS[$g]}; do
        p=${PKG[$q]:-}
        [ -n "$p" ] || continue
        if j=$("$MLC" bench "$p" --prompt-len 128 --gen-len $((GEN + 1)) --threads "$t" --json 2>>"$OUT/stderr.log"); then
          emit "$j" "$base, \"engine\": \"mlc\", \"weights\": \"$q\", \"test\": \"pp128+tg\"}"
          log "round $r t$t mlc $q pp128+tg$GEN: $j"
        else
          log "round $r t$t mlc $q pp128+tg FAILED (see $OUT/stderr.log)"
        fi
        if j=$("$MLC" bench "$p" --prompt-len 512 --gen-len 1 --threads "$t" --json 2>>"$OUT/stderr.log"); then
          emit "$j" "$base, \"engine\": \"mlc\", \"weights\": \"$q\", \"test\": \"pp512\"}"
          log "round $r t$t mlc $q pp512: $(echo "$j" | sed 's/.*"prefill_tokens_per_s": \([0-9.]*\).*/\1/') tok/s"
        else
          log "round $r t$t mlc $q pp512 FAILED (see $OUT/stderr.log)"
        fi
      done
      if [ -n "$th" ] && [ -n "${GGUF[$th]:-}" ]; then
        if j=$("$LB" -m "${GGUF[$th]}" -p 128,512 -n "$GEN" -r 1 -t "$t" -o json 2>>"$OUT/stderr.log"); then
          python3 -c '
import json, sys
for o in json.loads(sys.argv[1]):
    o.update(json.loads(sys.argv[2]))
    o["test"] = "pp%d" % o["n_prompt"] if o["n_prompt"] else "tg%d" % o["n_gen"]
    print(json.dumps(o))' "$j" "$base, \"engine\": \"llama.cpp\", \"weights\": \"$th\"}" >>"$RAW"
          log "round $r t$t llama.cpp $th: $(echo "$j" | python3 -c 'import json,sys; print(", ".join("p%d/n%d %.2f tok/s" % (o["n_prompt"], o["n_gen"], o["avg_ts"]) for o in json.load(sys.stdin)))')"
        else
          log "round $r t$t llama.cpp $th FAILED (see $OUT/stderr.log)"
        fi
      fi
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/setup.txt" >&2

python3 - "$RAW" "$GEN" >"$OUT/table.md" <<'EOF'
import json, statistics, sys
from collections import defaultdict
raw = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gen = int(sys.argv[2])
med = lambda xs: statistics.median(xs) if xs else None
membw = {(o["round"], o["threads_asked"], o["group"]): o["read_gb_s"] for o in raw if o["engine"] == "membw"}
# per (engine, weights, threads) and round: pp128, pp512, decode tok/s, bytes/token, decode GB/s, of membw
rows = defaultdict(lambda: defaultdict(dict))
groups = {}
for o in raw:
    if o["engine"] == "membw":
        continue
    key = (o["engine"], o["weights"], o["threads_asked"])
    groups[key] = o["group"]
    d = rows[key][o["round"]]
    mb = membw.get((o["round"], o["threads_asked"], o["group"]))
    if o["engine"] == "mlc":
        if o["test"] == "pp512":
            d["pp512"] = o["prefill_tokens_per_s"]
        else:
            d["pp128"] = o["prefill_tokens_per_s"]
            d["tg"] = o["decode_tokens_per_s"]
            d["bytes"] = o["weight_bytes_per_token"]
    else:
        if o["n_gen"]:
            d["tg"] = o["avg_ts"]
            d["bytes"] = o["model_size"]
        else:
            d["pp%d" % o["n_prompt"]] = o["avg_ts"]
    if "tg" in d and "bytes" in d:
        d["gbs"] = d["tg"] * d["bytes"] / 1e9
        if mb:
            d["frac"] = d["gbs"] / mb
names = {("mlc", "q4f16_1"): "MLC-C q4f16_1", ("mlc", "q4f32_1"): "MLC-C q4f32_1", ("mlc", "q8f16_1"): "MLC-C q8f16_1",
         ("mlc", "q0f16"): "MLC-C q0f16", ("mlc", "q3f16_1"): "MLC-C q3f16_1", ("llama.cpp", "q4"): "llama.cpp Q4_0",
         ("llama.cpp", "q8"): "llama.cpp Q8_0", ("llama.cpp", "f16"): "llama.cpp F16"}
ref = {"4bit": "q4", "8bit": "q8", "16bit": "f16", "3bit": "q4"}
order_g = ["4bit", "8bit", "16bit", "3bit"]
def fmt(x, p=1):
    return "-" if x is None else ("%.*f" % (p, x))
def stat(key, f):
    return med([d[f] for d in rows[key].values() if f in d])
print("| weights | threads | pp128 tok/s | pp512 tok/s | decode tok/s | ours/llama.cpp pp128 | pp512 | decode "
      "| MB read / token | decode GB/s | membw GB/s (same rounds) | decode of membw |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
threads = sorted({k[2] for k in rows})
for t in threads:
    for g in order_g:
        keys = [k for k in rows if k[2] == t and groups[k] == g]
        keys.sort(key=lambda k: (k[0] != "mlc", k[1]))
        for k in keys:
            lk = ("llama.cpp", ref[g], t)
            cells = [names.get(k[:2], k[1]), str(t)]
            cells += [fmt(stat(k, "pp128")), fmt(stat(k, "pp512")), fmt(stat(k, "tg"), 2)]
            if k[0] == "mlc" and lk in rows:
                rat = lambda f: (None if stat(k, f) is None or not stat(lk, f) else stat(k, f) / stat(lk, f))
                cells += [fmt(rat("pp128"), 2), fmt(rat("pp512"), 2), fmt(rat("tg"), 2)]
            else:
                cells += ["", "", ""]
            b = stat(k, "bytes")
            mbs = med([membw[(r, t, g)] for r in rows[k] if (r, t, g) in membw])
            cells += [fmt(b / 1e6 if b else None, 0), fmt(stat(k, "gbs")), fmt(mbs), fmt(stat(k, "frac"), 2)]
            print("| " + " | ".join(cells) + " |")
nr = len({o["round"] for o in raw})
print()
print("Median of %d rounds; decode = %d steps (ours: after a 128-token prompt; llama.cpp: tg%d from an empty cache); "
      "q3f16_1's ratios are against Q4_0." % (nr, gen, gen))
# spread, so a noisy figure shows
print()
print("Per-round decode tok/s (round order): " + "; ".join(
    "%s t%d: %s" % (names.get(k[:2], k[1]), k[2], " ".join(fmt(rows[k][r].get("tg"), 2) for r in sorted(rows[k])))
    for k in sorted(rows, key=lambda k: (k[2], order_g.index(groups[k]), k[0] != "mlc", k[1]))))
EOF
cat "$OUT/table.md"
echo "raw: $RAW" >&2
