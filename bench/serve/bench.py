#!/usr/bin/env python3
"""bench.py: the Python 3 (standard library only) port of bench.mjs, for machines without node.

python3 bench/serve/bench.py BASE_URL [--model M] [--concurrency 1,8,32] [--requests 8,32,64]
  [--max-tokens 64] [--vocab V] [--api-key K] [--duration S] [--json]

Same requests, prompts and statistics as bench.mjs: each request is a streamed /v1/completions call
with a token-id prompt whose length comes from a fixed synthetic distribution (seeded: the same
prompts every run, and the same ones bench.mjs sends): 32 (40%), 64 (30%), 128 (20%), 256 (10%)
tokens, ignore_eos so every request generates exactly --max-tokens tokens. Reports requests/s,
output tokens/s, time to first token and inter-token latency percentiles. With --duration S it
runs one level (the first concurrency) for S seconds (a soak) and also samples /metrics (KV pages,
RSS) every 10 s. One thread per concurrent client, each with its own keep-alive connection; SSE
events are timestamped when the read that carried them returns (as in bench.mjs).
"""
import http.client
import json
import math
import sys
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlsplit

args = sys.argv[1:]
base = args[0] if args else None
if not base or base.startswith("--"):
    print("usage: python3 bench.py BASE_URL [--model M] [--concurrency 1,8,32] [--requests 8,32,64] "
          "[--max-tokens 64] [--vocab V] [--api-key K] [--duration S] [--json]", file=sys.stderr)
    sys.exit(2)


def opt(name, default):
    return args[args.index(name) + 1] if name in args else default


model = opt("--model", "default")
conc = [int(x) for x in opt("--concurrency", "1,8,32").split(",")]
reqs = [int(x) for x in opt("--requests", "8,32,64").split(",")]
max_tokens = int(opt("--max-tokens", "64"))
duration = float(opt("--duration", "0"))
api_key = opt("--api-key", "")
as_json = "--json" in args
vocab = int(opt("--vocab", "4096"))

url = urlsplit(base)
conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
path_prefix = url.path  # bench.mjs appends "/v1/completions" to BASE_URL as a string

# bench.mjs's generator, bit for bit: seed * 1103515245 is a double product there (rounded to 53
# bits before the + 12345 and the >>> 0), so it is computed in floats here too.
seed = 12345


def rnd():
    global seed
    seed = int(float(seed) * 1103515245.0 + 12345.0) % 4294967296
    return seed / 4294967296


def prompt():
    r = rnd()
    n = 32 if r < 0.4 else 64 if r < 0.7 else 128 if r < 0.9 else 256
    return [10 + math.floor(rnd() * (vocab - 20)) for _ in range(n)]


def now_ms():
    return time.perf_counter() * 1000.0


class Client:
    """One worker's keep-alive connection (node's fetch pools connections the same way)."""

    def __init__(self):
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        if self.conn is None:
            self.conn = conn_cls(url.hostname, url.port, timeout=300)
        try:
            self.conn.request(method, path_prefix + path, body=body, headers=headers or {})
            return self.conn.getresponse()
        except Exception:
            self.close()
            raise


def one(client, ids):
    t0 = now_ms()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    body = json.dumps({"model": model, "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "ignore_eos": True, "stream_options": {"include_usage": True}})
    res = client.request("POST", "/v1/completions", body.encode(), headers)
    try:
        if not 200 <= res.status < 300:
            raise RuntimeError("HTTP %d: %s" % (res.status, res.read().decode("utf-8", "replace")))
        buf, first, last, tokens, done, gaps = b"", 0.0, 0.0, 0, False, []
        read = res.read1 if hasattr(res, "read1") else res.readline
        while True:
            chunk = read(65536)
            if not chunk:
                break
            buf += chunk
            while True:
                k = buf.find(b"\n\n")
                if k < 0:
                    break
                ev, buf = buf[:k], buf[k + 2:]
                if not ev.startswith(b"data: "):
                    continue
                data = ev[6:]
                if data == b"[DONE]":
                    done = True
                    continue
                j = json.loads(data)
                if j.get("error"):
                    raise RuntimeError(j["error"].get("message"))
                if j.get("usage"):
                    tokens = j["usage"]["completion_tokens"]
                if j.get("choices"):
                    t = now_ms()
                    if not first:
                        first = t
                    else:
                        gaps.append(t - last)
                    last = t
        if not done:
            raise RuntimeError("stream ended without [DONE]")
        return {"ttft": first - t0, "e2e": now_ms() - t0, "tokens": tokens, "gaps": gaps}
    except Exception:
        client.close()  # a half-read stream cannot carry the next request
        raise
    finally:
        if res.will_close:
            client.close()


def pct(a, p):
    if not a:
        return math.nan
    s = sorted(a)
    return s[min(len(s) - 1, math.floor((p / 100) * len(s)))]


def metrics():
    try:
        c = Client()
        t = c.request("GET", "/metrics").read().decode("utf-8", "replace")
        c.close()
        m = {}
        for line in t.split("\n"):
            if line and not line.startswith("#"):
                i = line.rfind(" ")
                try:
                    m[line[:i]] = float(line[i + 1:])
                except ValueError:
                    m[line[:i]] = math.nan
        return m
    except Exception:
        return {}


def level(c, n, seconds):
    results, errors = [], []
    lock = threading.Lock()
    nxt = [0]
    t0 = now_ms()
    deadline = t0 + seconds * 1000 if seconds else math.inf
    samples = []
    stop = threading.Event()

    def sample():
        m = metrics()
        samples.append({"t": round((now_ms() - t0) / 1000), "kv": m.get("mlc_kv_cache_pages_used"),
                        "cache": m.get("mlc_prefix_cache_pages"), "rss": m.get("mlc_process_resident_memory_bytes"),
                        "running": m.get("mlc_num_requests_running")})

    def sampler():
        while not stop.wait(10):
            sample()

    st = None
    if seconds:
        sample()
        st = threading.Thread(target=sampler, daemon=True)
        st.start()

    def worker():
        client = Client()
        while True:
            with lock:  # bench.mjs takes the count and draws the prompt in one synchronous step
                if not (now_ms() < deadline if seconds else nxt[0] < n):
                    break
                nxt[0] += 1
                ids = prompt()
            try:
                r = one(client, ids)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 (every failure is counted, as in bench.mjs)
                with lock:
                    errors.append(str(e) or type(e).__name__)
        client.close()

    ws = [threading.Thread(target=worker) for _ in range(c)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    wall = (now_ms() - t0) / 1000
    stop.set()
    if st:
        st.join()
    toks = sum(r["tokens"] for r in results)
    ttft = [r["ttft"] for r in results]
    itl = [g for r in results for g in r["gaps"]]
    out = {"concurrency": c, "requests": len(results), "errors": len(errors)}
    if errors:
        out["first_error"] = errors[0]
    out.update({"wall_s": wall, "req_per_s": len(results) / wall, "out_tok_per_s": toks / wall,
                "ttft_ms": {"p50": pct(ttft, 50), "p90": pct(ttft, 90), "p99": pct(ttft, 99)},
                "itl_ms": {"p50": pct(itl, 50), "p90": pct(itl, 90), "p99": pct(itl, 99)},
                "e2e_ms": {"p50": pct([r["e2e"] for r in results], 50)}})
    if seconds:
        out["samples"] = samples
    return out


def to_fixed(x, d):
    """JavaScript's Number.prototype.toFixed (ties away from zero on the exact binary value)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-d), rounding=ROUND_HALF_UP))


def js_json(v):
    """JSON.stringify's view of numbers: NaN/Infinity -> null, integral floats without '.0'."""
    if isinstance(v, dict):
        return {k: js_json(x) for k, x in v.items() if x is not None or k not in ("kv", "cache", "rss", "running")}
    if isinstance(v, list):
        return [js_json(x) for x in v]
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        if v.is_integer() and abs(v) < 2**53:
            return int(v)
    return v


def main():
    out = []
    if duration:
        out.append(level(conc[0], 0, duration))
    else:
        for i, c in enumerate(conc):
            out.append(level(c, reqs[i] if i < len(reqs) else reqs[-1], 0))
    after = metrics()
    if as_json:
        print(json.dumps(js_json({"results": out, "metrics_after": after}), indent=1))
        return
    print("| concurrency | requests | errors | req/s | output tok/s | TTFT p50 / p90 / p99 (ms) | "
          "ITL p50 / p90 / p99 (ms) | E2E p50 (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")

    def f(x):
        return to_fixed(x, 0) if math.isfinite(x) else "-"

    for r in out:
        t, i = r["ttft_ms"], r["itl_ms"]
        print("| %d | %d | %d | %s | %s | %s / %s / %s | %s / %s / %s | %s |" % (
            r["concurrency"], r["requests"], r["errors"], to_fixed(r["req_per_s"], 2), to_fixed(r["out_tok_per_s"], 1),
            f(t["p50"]), f(t["p90"]), f(t["p99"]), f(i["p50"]), f(i["p90"]), f(i["p99"]), f(r["e2e_ms"]["p50"])))
    for r in out:
        if r.get("first_error"):
            print("first error at concurrency %d: %s" % (r["concurrency"], r["first_error"]))
    for r in out:
        for s in r.get("samples") or []:
            rss = s["rss"]
            print("t=%ds kv_pages=%s cache_pages=%s running=%s rss=%sMiB" % (
                s["t"], js_num(s["kv"]), js_num(s["cache"]), js_num(s["running"]),
                to_fixed(rss / 1048576, 1) if rss is not None and math.isfinite(rss) else "NaN"))


def js_num(x):
    """How a template literal prints a sampled number (or a missing one)."""
    if x is None:
        return "undefined"
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return str(int(x)) if x.is_integer() else repr(x)


if __name__ == "__main__":
    main()
