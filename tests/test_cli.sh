#!/usr/bin/env bash
# test_cli.sh: the `mlc` command forms and its handling of bad input.
#   bash tests/test_cli.sh PATH_TO_MLC REPO_ROOT
# Checks logits against the fixtures' reference logits, greedy generation against their greedy
# continuations, seeded sampling, the bundled model with generate and chat, bench's JSON, every
# subcommand's --help, unknown commands/flags, and that malformed models and arguments fail with
# exit 1 and an error naming the file and the field/tensor at fault. Uses bash, coreutils and
# python3 (stdlib only). Prints ok/FAIL per check, then "N passed, M failed".
set -u
if [ $# -lt 2 ]; then
  echo "usage: bash tests/test_cli.sh PATH_TO_MLC REPO_ROOT" >&2
  exit 2
fi
MLC=$(readlink -f "$1")
ROOT=$(readlink -f "$2")
cd "$ROOT" || exit 2
if [ ! -x "$MLC" ]; then
  echo "FAIL $1 is not an executable"
  echo "0 passed, 1 failed"
  exit 1
fi
T=$(mktemp -d /tmp/mlc_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT
START=$SECONDS

passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() {
  echo "FAIL $1${2:+: $2}"
  failed=$((failed + 1))
}
# show the captured stderr of the last run, indented (for failures)
show_err() { [ -s "$T/err" ] && sed -n '1,8s/^/       stderr: /p' "$T/err"; }

# run ARGS...: runs mlc, stdout to $T/out, stderr to $T/err, exit status to $rc
run() {
  "$MLC" "$@" >"$T/out" 2>"$T/err" </dev/null
  rc=$?
}

# ---- python helpers --------------------------------------------------------------------------

cat >"$T/check.py" <<'EOF'
import json, math, sys

def load_out(path):
    text = open(path, encoding="utf-8").read()
    dec = json.JSONDecoder()
    s = text.lstrip()
    obj, end = dec.raw_decode(s)
    if s[end:].strip():
        raise ValueError("trailing output after the JSON object: %r" % s[end:end + 60])
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj

def isnum(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

def logits(out, ref):
    o = load_out(out)
    r = json.load(open(ref))
    if set(o) != {"logits"}:
        raise ValueError("keys %s, expected only 'logits'" % sorted(o))
    L, R = o["logits"], r["logits"]
    if not isinstance(L, list) or len(L) != len(R):
        raise ValueError("%s rows, expected %d" % (len(L) if isinstance(L, list) else "no", len(R)))
    worst = 0.0
    for i, (a, b) in enumerate(zip(L, R)):
        if not isinstance(a, list) or len(a) != len(b) or not all(isnum(x) for x in a):
            raise ValueError("row %d: not %d finite numbers" % (i, len(b)))
        num = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
        den = math.sqrt(sum(y * y for y in b)) or 1.0
        worst = max(worst, num / den)
        if num / den > 1e-4:
            raise ValueError("row %d: relative L2 error %.3g > 1e-4" % (i, num / den))
    print("max rel L2 %.2g" % worst)

def generate(out, n, ref=None):
    o = load_out(out)
    keys = {"ids", "text", "prefill_tokens_per_s", "decode_tokens_per_s"}
    if set(o) != keys:
        raise ValueError("keys %s, expected %s" % (sorted(o), sorted(keys)))
    ids = o["ids"]
    if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ids):
        raise ValueError("ids is not a list of integers")
    if n is not None and len(ids) != n:
        raise ValueError("%d ids, expected %d" % (len(ids), n))
    if not isinstance(o["text"], str):
        raise ValueError("text is not a string")
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        if not isnum(o[k]) or o[k] < 0:
            raise ValueError("%s = %r" % (k, o[k]))
    if ref is not None:
        want = json.load(open(ref))["greedy_12"]
        if ids != want:
            raise ValueError("ids %s != greedy_12 %s" % (ids, want))
    return o

def main():
    what = sys.argv[1]
    if what == "logits":
        logits(sys.argv[2], sys.argv[3])
    elif what == "generate":          # OUT N [REF]
        generate(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    elif what == "generate-text":     # OUT MAXN: text non-empty
        o = generate(sys.argv[2], None)
        if not 1 <= len(o["ids"]) <= int(sys.argv[3]):
            raise ValueError("%d ids" % len(o["ids"]))
        if not o["text"].strip():
            raise ValueError("empty text")
    elif what == "ids":               # OUT: prints the ids on one line
        print(",".join(map(str, generate(sys.argv[2], None)["ids"])))
    elif what == "bench":
        o = load_out(sys.argv[2])
        for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "time_to_first_token_s", "peak_rss_bytes",
                  "weight_bytes_per_token", "decode_bandwidth_gb_s"):
            if k not in o:
                raise ValueError("no key %s" % k)
            if not isnum(o[k]) or not o[k] > 0:
                raise ValueError("%s = %r, expected a number > 0" % (k, o[k]))
    elif what == "refids":            # REF: the input ids, comma-separated
        print(",".join(map(str, json.load(open(sys.argv[2]))["input_ids"])))
    else:
        raise SystemExit("unknown check " + what)

try:
    main()
except SystemExit:
    raise
except Exception as e:
    print("%s: %s" % (type(e).__name__, e))
    sys.exit(1)
EOF

# Rewrites a safetensors file: st.py IN OUT OP [ARGS]
#   drop NAME             remove a tensor (header and data; offsets recomputed)
#   shape NAME D0,D1,...  give a tensor another shape (data unchanged)
#   header-len N          set the 8-byte header length to N, keep the rest
#   header-garbage        replace the header JSON with non-JSON of the same length
#   cut N                 keep only the first N bytes
cat >"$T/st.py" <<'EOF'
import json, struct, sys
src, dst, op = sys.argv[1], sys.argv[2], sys.argv[3]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
data = raw[8 + n:]

def write(hdr, data):
    tensors = [(k, v) for k, v in hdr.items() if k != "__metadata__"]
    out = {"__metadata__": hdr["__metadata__"]} if "__metadata__" in hdr else {}
    blob = bytearray()
    for k, v in sorted(tensors, key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = v["data_offsets"]
        chunk = v.pop("_data", data[a:b])
        v = dict(v, data_offsets=[len(blob), len(blob) + len(chunk)])
        blob += chunk
        out[k] = v
    h = json.dumps(out, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(h)) + h + bytes(blob))

if op == "drop":
    del hdr[sys.argv[4]]
    write(hdr, data)
elif op == "shape":
    hdr[sys.argv[4]]["shape"] = [int(x) for x in sys.argv[5].split(",")]
    write(hdr, data)
elif op == "header-len":
    open(dst, "wb").write(struct.pack("<Q", int(sys.argv[4])) + raw[8:])
elif op == "header-garbage":
    g = (b"this is not json " * (n // 17 + 1))[:n]
    open(dst, "wb").write(raw[:8] + g + data)
elif op == "cut":
    open(dst, "wb").write(raw[:int(sys.argv[4])])
else:
    raise SystemExit("unknown op " + op)
EOF

FIX=tests/fixtures/models
LLAMA=$FIX/llama
IDS=$(python3 "$T/check.py" refids "$LLAMA/ref.json")

# ---- logits ----------------------------------------------------------------------------------

for extra in "" "--device cpu --quant q0f32"; do
  name="logits llama${extra:+ $extra}"
  # shellcheck disable=SC2086
  run logits "$LLAMA" --ids "$IDS" $extra
  if [ $rc -ne 0 ]; then
    bad "$name" "exit $rc"
    show_err
  elif msg=$(python3 "$T/check.py" logits "$T/out" "$LLAMA/ref.json"); then
    ok "$name ($msg)"
  else
    bad "$name" "$msg"
  fi
done

# expect_fail NAME NEEDLE... -- ARGS...: exit 1 (not a crash), an error on stderr containing every
# NEEDLE (fixed strings, case-insensitive), nothing on stdout.
expect_fail() {
  local name=$1 needles=()
  shift
  while [ "$1" != "--" ]; do
    needles+=("$1")
    shift
  done
  shift
  run "$@"
  local why=""
  if [ $rc -ge 128 ]; then
    why="crashed (exit $rc, signal $((rc - 128)))"
  elif [ $rc -ne 1 ]; then
    why="exit $rc, expected 1"
  elif [ ! -s "$T/err" ]; then
    why="no error message on stderr"
  elif [ -s "$T/out" ]; then
    why="printed on stdout: $(head -c 80 "$T/out")"
  else
    for n in "${needles[@]}"; do
      if ! grep -qiF -- "$n" "$T/err"; then
        why="the error does not mention '$n'"
        break
      fi
    done
  fi
  if [ -z "$why" ]; then
    ok "$name ($(head -n 1 "$T/err" | cut -c1-150))"
  else
    bad "$name" "$why"
    show_err
  fi
}

expect_fail "logits --quant q9f99 (unknown scheme)" "q9f99" -- logits "$LLAMA" --ids "$IDS" --quant q9f99
expect_fail "logits --device cuda" "cuda" -- logits "$LLAMA" --ids "$IDS" --device cuda

# ---- generate --------------------------------------------------------------------------------

for arch in llama qwen3; do
  ids=$(python3 "$T/check.py" refids "$FIX/$arch/ref.json")
  run generate "$FIX/$arch" --ids "$ids" --temperature 0 --max-tokens 12 --json
  if [ $rc -ne 0 ]; then
    bad "generate $arch greedy" "exit $rc"
    show_err
  elif msg=$(python3 "$T/check.py" generate "$T/out" 12 "$FIX/$arch/ref.json"); then
    ok "generate $arch greedy = greedy_12"
  else
    bad "generate $arch greedy" "$msg"
  fi
done

# sampled ids for a seed, or "ERR ..." on failure
sample() {
  run generate "$LLAMA" --ids "$IDS" --temperature 0.8 --top-p 0.9 --top-k 20 --seed "$1" --max-tokens 12 --json
  if [ $rc -ne 0 ]; then
    echo "ERR exit $rc: $(head -n 1 "$T/err")"
  else
    python3 "$T/check.py" ids "$T/out" || echo "ERR"
  fi
}
s7a=$(sample 7)
s7b=$(sample 7)
others=()
for seed in 1 2 3 4; do others+=("$(sample $seed)"); done
case "$s7a $s7b ${others[*]}" in
*ERR*) bad "generate sampling" "$s7a | $s7b | ${others[*]}" ;;
*)
  if [ "$s7a" = "$s7b" ]; then ok "generate sampling: same seed, same ids"; else bad "generate sampling: seed 7 twice" "$s7a vs $s7b"; fi
  distinct=$(printf '%s\n' "$s7a" "${others[@]}" | sort -u | wc -l)
  if [ "$distinct" -gt 1 ]; then ok "generate sampling: seeds 7,1,2,3,4 give $distinct distinct outputs"; else bad "generate sampling: every seed gives the same ids" "$s7a"; fi
  ;;
esac

run generate models/default --prompt "Hello" --max-tokens 8 --temperature 0 --json
if [ $rc -ne 0 ]; then
  bad "generate models/default --prompt" "exit $rc"
  show_err
elif msg=$(python3 "$T/check.py" generate-text "$T/out" 8); then
  ok "generate models/default --prompt Hello"
else
  bad "generate models/default --prompt" "$msg"
fi

# ---- chat ------------------------------------------------------------------------------------

# chat_check NAME ARGS...: piped input gives a non-empty reply line and then a stats line
chat_check() {
  local name=$1
  shift
  printf 'What does serendipity mean?\n/stats\n' | "$MLC" chat "$@" >"$T/out" 2>"$T/err"
  rc=$?
  local nl last reply
  nl=$(wc -l <"$T/out")
  last=$(tail -n 1 "$T/out")
  reply=$(head -n $((nl > 0 ? nl - 1 : 0)) "$T/out" | tr -d '[:space:]')
  if [ $rc -ne 0 ]; then
    bad "$name" "exit $rc"
    show_err
  elif ! [[ $last =~ ^prefill:\ [0-9.]+\ tok/s,\ decode:\ [0-9.]+\ tok/s ]]; then
    bad "$name" "last line is not a stats line: '$last'"
  elif [ -z "$reply" ]; then
    bad "$name" "no reply before the stats line"
  else
    ok "$name (reply: $(head -n 1 "$T/out" | cut -c1-60))"
  fi
}
chat_check "chat (bundled model)"
chat_check "chat models/default" models/default

# ---- bench -----------------------------------------------------------------------------------

run bench "$LLAMA" --prompt-len 16 --gen-len 8 --json
if [ $rc -ne 0 ]; then
  bad "bench --json" "exit $rc"
  show_err
elif msg=$(python3 "$T/check.py" bench "$T/out"); then
  ok "bench --json"
else
  bad "bench --json" "$msg"
fi

# ---- help, unknown commands and flags --------------------------------------------------------

for c in logits generate chat bench tokenize detokenize template; do
  run "$c" --help
  if [ $rc -eq 0 ] && [ -s "$T/out" ]; then ok "$c --help"; else bad "$c --help" "exit $rc, $(wc -c <"$T/out") bytes"; fi
done
run --help
if [ $rc -eq 0 ] && grep -q logits "$T/out"; then ok "mlc --help"; else bad "mlc --help" "exit $rc"; fi
expect_fail "unknown command" "frobnicate" -- frobnicate
expect_fail "no command" "usage" --
for c in logits generate chat bench tokenize detokenize template; do
  expect_fail "$c unknown flag" "--no-such-flag" -- "$c" --no-such-flag
done
expect_fail "generate --temperature abc" "--temperature" -- generate "$LLAMA" --ids 1 --temperature abc

# ---- malformed models ------------------------------------------------------------------------

# mkmodel NAME: a fresh copy of the llama fixture in $T/NAME
mkmodel() {
  rm -rf "${T:?}/$1"
  mkdir -p "$T/$1"
  cp "$LLAMA/config.json" "$LLAMA/model.safetensors" "$T/$1/"
  echo "$T/$1"
}
st() { python3 "$T/st.py" "$LLAMA/model.safetensors" "$1/model.safetensors" "${@:2}"; }
SIZE=$(stat -c %s "$LLAMA/model.safetensors")

d=$(mkmodel cut_header) && st "$d" cut 500
expect_fail "safetensors cut in the header" "model.safetensors" -- logits "$d" --ids 1,2
# cut 16 bytes into the last tensor's data: the error must name that tensor
LAST=$(python3 - "$LLAMA/model.safetensors" <<'EOF2'
import json, struct, sys
f = open(sys.argv[1], "rb"); h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0])); h.pop("__metadata__", None)
print(max(h, key=lambda k: h[k]["data_offsets"][1]))
EOF2
)
d=$(mkmodel cut_data) && st "$d" cut $((SIZE - 16))
expect_fail "safetensors cut in the data" "model.safetensors" "$LAST" -- logits "$d" --ids 1,2
d=$(mkmodel hdr_len) && st "$d" header-len $((SIZE + 100))
expect_fail "safetensors header length > file" "model.safetensors" "header" -- logits "$d" --ids 1,2
d=$(mkmodel hdr_len_huge) && st "$d" header-len 18446744073709551615
expect_fail "safetensors header length 2^64-1" "model.safetensors" "header" -- logits "$d" --ids 1,2
d=$(mkmodel hdr_garbage) && st "$d" header-garbage
expect_fail "safetensors header not JSON" "model.safetensors" -- logits "$d" --ids 1,2
d=$(mkmodel missing) && st "$d" drop model.norm.weight
expect_fail "missing tensor model.norm.weight" "model.safetensors" "model.norm.weight" -- logits "$d" --ids 1,2
d=$(mkmodel shape) && st "$d" shape model.layers.0.self_attn.q_proj.weight 32,128
expect_fail "tensor with the wrong shape" "model.layers.0.self_attn.q_proj.weight" -- logits "$d" --ids 1,2
d=$(mkmodel shape_bytes) && st "$d" shape model.norm.weight 65
expect_fail "shape disagreeing with data_offsets" "model.safetensors" "model.norm.weight" -- logits "$d" --ids 1,2
d=$(mkmodel no_st) && rm "$d/model.safetensors"
expect_fail "no safetensors file" "$d" -- logits "$d" --ids 1,2

d=$(mkmodel cfg_json) && printf '{"model_type": "llama", "hidden_size": 64,,}' >"$d/config.json"
expect_fail "config.json not JSON" "config.json" -- logits "$d" --ids 1,2
d=$(mkmodel cfg_type) && python3 - "$d/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["num_attention_heads"] = "four"; json.dump(c, open(sys.argv[1], "w"))
EOF
expect_fail "config.json num_attention_heads \"four\"" "config.json" "num_attention_heads" -- logits "$d" --ids 1,2
d=$(mkmodel cfg_arch) && python3 - "$d/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["model_type"] = "gpt_neo_x_9000"; json.dump(c, open(sys.argv[1], "w"))
EOF
expect_fail "unsupported model_type" "config.json" "gpt_neo_x_9000" -- logits "$d" --ids 1,2
d=$(mkmodel cfg_missing) && rm "$d/config.json"
expect_fail "missing config.json" "config.json" -- logits "$d" --ids 1,2

# ---- bad arguments ---------------------------------------------------------------------------

expect_fail "logits --ids 999999 (out of range)" "999999" -- logits "$LLAMA" --ids 1,999999
expect_fail "logits --ids -1 (out of range)" "-1" -- logits "$LLAMA" --ids 1,-1
expect_fail "generate --ids 999999 (out of range)" "999999" -- generate "$LLAMA" --ids 999999 --max-tokens 2
expect_fail "logits empty --ids" "--ids" -- logits "$LLAMA" --ids ""
expect_fail "logits --ids 1,,2" "--ids" -- logits "$LLAMA" --ids 1,,2
echo '{}' >"$T/not_a_dir"
expect_fail "MODEL is a regular file" "$T/not_a_dir" -- logits "$T/not_a_dir" --ids 1,2
expect_fail "MODEL does not exist" "$T/no_such_dir" -- logits "$T/no_such_dir" --ids 1,2
expect_fail "generate MODEL is a regular file" "$T/not_a_dir" -- generate "$T/not_a_dir" --ids 1,2

# ---- devices ---------------------------------------------------------------------------------

out=$("$MLC" devices 2>&1)
if [ $? -eq 0 ] && grep -q "^cpu" <<<"$out" && grep -q "^vulkan" <<<"$out" && grep -q "^opencl" <<<"$out"; then
  ok "devices: a line for cpu, vulkan and opencl"
else
  bad "devices: a line for cpu, vulkan and opencl" "$out"
fi
expect_fail "unknown --device" "not available" -- logits "$LLAMA" --ids 1,2 --device nosuch

echo "($((SECONDS - START)) s)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
