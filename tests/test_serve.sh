#!/usr/bin/env bash
# test_serve.sh MLC SRC: `mlc serve` on a free loopback port with the bundled model: raw HTTP for
# every bad input (each an OpenAI-shaped error with the right 4xx, the server serving on), CORS,
# auth, slow and half-sent requests (408), structured output (tests/serve/structured.py), then
# tests/serve/client.mjs (the official openai npm client, pinned; installed with `npm ci` into the
# build directory on first use), then the queue cap (429) on a second server with one slot. The
# servers are always killed at the end.
set -uo pipefail
MLC=${1:?usage: test_serve.sh MLC SRC}
SRC=${2:?usage: test_serve.sh MLC SRC}
MODEL="$SRC/models/default"
KEY="sk-test-$$"
WORK=$(mktemp -d)
SERVER_PID=
SERVER2_PID=
cleanup() {
  for pid in $SERVER_PID $SERVER2_PID; do
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
T0=$(date +%s)
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

for tool in curl python3 node npm; do
  command -v $tool >/dev/null || { echo "test_serve: $tool is required (scripts/deps.sh; node 20 with npm)"; exit 1; }
done

# the pinned openai client, installed once into the build directory
CLIENT_DIR="$(pwd)/serve-client"
if ! cmp -s "$SRC/tests/serve/package-lock.json" "$CLIENT_DIR/package-lock.json" || [ ! -d "$CLIENT_DIR/node_modules/openai" ]; then
  mkdir -p "$CLIENT_DIR"
  cp "$SRC/tests/serve/package.json" "$SRC/tests/serve/package-lock.json" "$CLIENT_DIR/"
  (cd "$CLIENT_DIR" && npm ci --no-audit --no-fund --loglevel=error) || { echo "test_serve: npm ci failed"; exit 1; }
fi
cp "$SRC/tests/serve/client.mjs" "$CLIENT_DIR/client.mjs"

"$MLC" serve "$MODEL" --port 0 --api-key "$KEY" --max-batch 32 --timeout 3 --max-body 65536 --threads 2 \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
PORT=
for _ in $(seq 600); do
  PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/server.out")
  [ -n "$PORT" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "test_serve: the server did not start"; cat "$WORK/server.err"; exit 1
fi
BASE="http://127.0.0.1:$PORT"
AUTH="Authorization: Bearer $KEY"

# req NAME EXPECTED_STATUS [curl args...]: checks the status and, for 4xx/5xx, the error shape
req() {
  local name=$1 want=$2
  shift 2
  local code
  code=$(curl -s -o "$WORK/body" -w '%{http_code}' --max-time 30 "$@")
  if [ "$code" != "$want" ]; then
    bad "$name: status $code, expected $want: $(head -c 300 "$WORK/body")"
    return
  fi
  if [ "$want" -ge 400 ]; then
    if python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert isinstance(e["message"], str) and e["message"] and isinstance(e["type"], str)
assert "param" in e and "code" in e
' "$WORK/body" 2>/dev/null; then ok; else bad "$name: not an OpenAI error: $(head -c 300 "$WORK/body")"; fi
  else
    ok
  fi
}
CHAT="$BASE/v1/chat/completions"
CMPL="$BASE/v1/completions"
J="Content-Type: application/json"

req "health" 200 "$BASE/health"
req "models" 200 -H "$AUTH" "$BASE/v1/models"
req "no key" 401 "$BASE/v1/models"
req "wrong key" 401 -H "Authorization: Bearer nope" "$BASE/v1/models"
req "good chat" 200 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
req "invalid JSON" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}'
req "trailing garbage" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[]} x'
req "not an object" 400 -H "$AUTH" -H "$J" "$CHAT" -d '[1,2]'
req "empty body" 400 -H "$AUTH" -H "$J" -X POST "$CHAT"
req "messages wrong type" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":"hi"}'
req "message wrong type" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[42]}'
req "bad role" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"wizard","content":"hi"}]}'
req "content wrong type" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":7}]}'
req "temperature wrong type" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}'
req "temperature out of range" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"temperature":5}'
req "max_tokens not integer" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"max_tokens":1.5}'
req "n zero" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"n":0}'
req "stream wrong type" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"stream":"yes"}'
req "logit_bias bad key" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"logit_bias":{"abc":1}}'
req "stop wrong type" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"stop":5}'
req "unknown field" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"frobnicate":1}'
req "unknown message field" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi","mood":"x"}]}'
req "empty messages" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[]}'
req "missing messages" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default"}'
req "missing model" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"messages":[{"role":"user","content":"hi"}]}'
req "unknown model" 404 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}'
req "response_format: unsupported schema keyword" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"d":{"type":"string","format":"date"}}}}}}'
grep -q "'format'" "$WORK/body" && grep -q unsupported_schema "$WORK/body" && ok || bad "the 400 names the keyword: $(head -c 300 "$WORK/body")"
req "response_format: unsupported schema keyword (completions)" 400 -H "$AUTH" -H "$J" "$CMPL" -d '{"model":"default","prompt":"hi","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"integer","minimum":3}}}}'
grep -q "'minimum'" "$WORK/body" && ok || bad "the 400 names the keyword: $(head -c 300 "$WORK/body")"
req "response_format: malformed schema" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"strin"}}}}'
req "response_format: unknown type" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"xml"}}'
req "response_format: json_schema without json_schema" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema"}}'
req "response_format: text" 200 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"response_format":{"type":"text"}}'
req "stream_options without stream" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}'
req "max_tokens beyond context" 400 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}'
python3 -c '
import json
print(json.dumps({"model": "default", "messages": [{"role": "user", "content": "tell me more " * 700}]}))' >"$WORK/long.json"
req "prompt longer than the context" 400 -H "$AUTH" -H "$J" "$CHAT" --data-binary "@$WORK/long.json"
grep -q context_length_exceeded "$WORK/body" && ok || bad "context error code: $(head -c 300 "$WORK/body")"
req "completions: missing prompt" 400 -H "$AUTH" -H "$J" "$CMPL" -d '{"model":"default"}'
req "completions: prompt wrong type" 400 -H "$AUTH" -H "$J" "$CMPL" -d '{"model":"default","prompt":{"a":1}}'
req "completions: token out of vocabulary" 400 -H "$AUTH" -H "$J" "$CMPL" -d '{"model":"default","prompt":[1,2,999999]}'
req "completions: best_of" 400 -H "$AUTH" -H "$J" "$CMPL" -d '{"model":"default","prompt":"hi","best_of":3}'
req "completions: logprobs > 5" 400 -H "$AUTH" -H "$J" "$CMPL" -d '{"model":"default","prompt":"hi","logprobs":9}'
req "completions: good" 200 -H "$AUTH" -H "$J" "$CMPL" -d '{"model":"default","prompt":"hi","max_tokens":3}'
req "unknown route" 404 -H "$AUTH" "$BASE/v1/nothing"
req "unknown route outside v1" 404 "$BASE/admin"
req "wrong method" 405 -H "$AUTH" "$CHAT"
req "wrong method on models" 405 -H "$AUTH" -X DELETE "$BASE/v1/models"
head -c 100000 /dev/zero | tr '\0' 'a' >"$WORK/big"
req "oversized body" 413 -H "$AUTH" -H "$J" "$CHAT" --data-binary "@$WORK/big"
# CORS preflight and headers
curl -s -D "$WORK/h" -o /dev/null -X OPTIONS -H "Origin: http://example.com" \
  -H "Access-Control-Request-Method: POST" "$CHAT"
grep -qi '^access-control-allow-origin: \*' "$WORK/h" && grep -q ' 204' "$WORK/h" && ok || bad "CORS preflight: $(cat "$WORK/h")"
curl -s -D "$WORK/h" -o /dev/null "$BASE/health"
grep -qi '^access-control-allow-origin' "$WORK/h" && ok || bad "CORS header on responses"

# a stream runs meanwhile: slow and broken clients must not hurt it
curl -sN --max-time 60 -H "$AUTH" -H "$J" "$CHAT" \
  -d '{"model":"default","messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":120,"ignore_eos":true,"stream":true}' \
  >"$WORK/bg" &
BG=$!
# a body that trickles in for longer than --timeout (3 s) gets 408
python3 - "$PORT" "$KEY" >"$WORK/slow" <<'EOF'
import socket, sys, time
port, key = int(sys.argv[1]), sys.argv[2]
body = b'{"model":"default","messages":[{"role":"user","content":"hi"}]}'
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
s.settimeout(10)
resp = b""
try:
    for ch in body:
        s.sendall(bytes([ch]))
        time.sleep(0.3)
        s.setblocking(False)
        try:
            resp += s.recv(65536)
        except BlockingIOError:
            pass
        s.setblocking(True)
        s.settimeout(10)
        if resp:
            break
except (BrokenPipeError, ConnectionResetError):
    pass
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
except Exception:
    pass
print(resp.decode(errors="replace").split("\r\n")[0])
EOF
grep -q ' 408' "$WORK/slow" && ok || bad "slow body: expected 408, got '$(cat "$WORK/slow")'"
# a half-sent request (headers promise a body that never comes) gets 408 after the timeout
python3 - "$PORT" >"$WORK/half" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"model\":")
s.settimeout(15)
t = time.time()
resp = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
    print("closed after %.1f s: %s" % (time.time() - t, resp.decode(errors="replace").split("\r\n")[0]))
except socket.timeout:
    print("still open")
EOF
grep -q 'closed after .* 408' "$WORK/half" && ok || bad "half-sent request: $(cat "$WORK/half")"
# headers trickling in (a byte every 0.4 s: libmicrohttpd's idle timeout never fires) are cut by
# the header watchdog after --timeout (3 s) + 1 s, with a 408
python3 - "$PORT" >"$WORK/trickle" <<'PYEOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
hdr = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
t = time.time()
s.settimeout(0.4)
resp = b""
try:
    for ch in hdr:
        s.sendall(bytes([ch]))
        try:
            d = s.recv(65536)
            if not d:
                break
            resp += d
        except socket.timeout:
            pass
        if time.time() - t > 15:
            break
except OSError:
    pass
print("closed after %.1f s: %s" % (time.time() - t, resp.decode(errors="replace").split("\r\n")[0]))
PYEOF
python3 -c 'import re, sys; m = re.match(r"closed after ([0-9.]+) s: HTTP/1.1 408", sys.argv[1]); sys.exit(0 if m and float(m.group(1)) < 8 else 1)' \
  "$(cat "$WORK/trickle")" && ok || bad "trickled headers: $(cat "$WORK/trickle")"
wait $BG
grep -q '^data: \[DONE\]' "$WORK/bg" && [ "$(grep -c '"finish_reason":"length"' "$WORK/bg")" = 1 ] && ok ||
  bad "a stream running beside slow clients: $(tail -c 300 "$WORK/bg")"
# a client that gives up on a non-streamed request cancels it: its KV pages come back
metric() { curl -s "$BASE/metrics" | sed -n "s/^$1 //p"; }
aborts0=$(metric 'mlc_requests_total{finish_reason="abort"}')
curl -s --max-time 1 -o /dev/null -H "$AUTH" -H "$J" "$CHAT" \
  -d '{"model":"default","messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":900,"ignore_eos":true}'
for _ in $(seq 50); do
  [ "$(metric mlc_num_requests_running)" = 0 ] && break
  sleep 0.1
done
aborts1=$(metric 'mlc_requests_total{finish_reason="abort"}')
used=$(metric mlc_kv_cache_pages_used)
cached=$(metric mlc_prefix_cache_pages)
[ "$aborts1" = $((aborts0 + 1)) ] && [ "$used" -le "$cached" ] && ok ||
  bad "non-streamed disconnect: aborts $aborts0 -> $aborts1, KV pages used $used, prefix cache $cached"
req "still serving after bad input" 200 -H "$AUTH" -H "$J" "$CHAT" -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
[ "$(metric mlc_header_timeouts_total)" -ge 1 ] && ok || bad "mlc_header_timeouts_total counts the trickled headers"
echo "test_serve (raw HTTP): $pass passed, $fail failed"

# structured output: every reply parses and validates against its JSON schema
python3 "$SRC/tests/serve/structured.py" "$BASE" "$KEY" default && ok || bad "structured output (tests/serve/structured.py)"

node "$CLIENT_DIR/client.mjs" "$BASE" "$KEY" default
crc=$?
req "health at the end" 200 "$BASE/health"
kill -0 "$SERVER_PID" 2>/dev/null && ok || bad "the server died"

# the queue cap: one sequence running, one waiting (--max-queue 1); the next request gets 429
"$MLC" serve "$MODEL" --port 0 --max-batch 1 --max-queue 1 --threads 1 >"$WORK/server2.out" 2>"$WORK/server2.err" &
SERVER2_PID=$!
PORT2=
for _ in $(seq 600); do
  PORT2=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/server2.out")
  [ -n "$PORT2" ] && break
  kill -0 "$SERVER2_PID" 2>/dev/null || break
  sleep 0.1
done
B2="http://127.0.0.1:$PORT2"
metric2() { curl -s "$B2/metrics" | sed -n "s/^$1 //p"; }
LONG='{"model":"default","prompt":"Once upon a time","max_tokens":900,"ignore_eos":true,"stream":true}'
curl -sN --max-time 60 -o /dev/null -H "$J" "$B2/v1/completions" -d "$LONG" &
Q1=$!
for _ in $(seq 100); do [ "$(metric2 mlc_num_requests_running)" = 1 ] && break; sleep 0.05; done
curl -sN --max-time 60 -o /dev/null -H "$J" "$B2/v1/completions" -d "$LONG" &
Q2=$!
for _ in $(seq 100); do [ "$(metric2 mlc_num_requests_waiting)" = 1 ] && break; sleep 0.05; done
curl -s -D "$WORK/h429" -o "$WORK/body" -w '%{http_code}' -H "$J" "$B2/v1/chat/completions" \
  -d '{"model":"default","messages":[{"role":"user","content":"hi"}],"max_tokens":2}' >"$WORK/code429"
python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert open(sys.argv[2]).read() == "429" and e["code"] == "queue_full" and e["type"] and e["message"]
' "$WORK/body" "$WORK/code429" 2>/dev/null && grep -qi '^retry-after:' "$WORK/h429" && ok ||
  bad "queue full: expected 429 queue_full with Retry-After, got $(cat "$WORK/code429"): $(head -c 300 "$WORK/body")"
kill $Q1 $Q2 2>/dev/null
wait $Q1 $Q2 2>/dev/null
for _ in $(seq 100); do [ "$(metric2 mlc_num_requests_running)" = 0 ] && [ "$(metric2 mlc_num_requests_waiting)" = 0 ] && break; sleep 0.05; done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$J" "$B2/v1/completions" -d '{"model":"default","prompt":"hi","max_tokens":2}')
[ "$code" = 200 ] && [ "$(metric2 mlc_rejected_requests_total)" = 1 ] && ok ||
  bad "after the queue drained: status $code, rejected $(metric2 mlc_rejected_requests_total)"
echo "test_serve: $pass raw checks passed, $fail failed, client exit $crc ($(( $(date +%s) - T0 )) s)"
if [ $fail -ne 0 ] || [ $crc -ne 0 ]; then
  echo "--- server stderr (tail) ---"; tail -20 "$WORK/server.err"
  exit 1
fi
exit 0
