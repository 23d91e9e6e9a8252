// bench.mjs: a load benchmark for `mlc serve` (or any OpenAI-compatible server).
// node bench/serve/bench.mjs BASE_URL [--model M] [--concurrency 1,8,32] [--requests 8,32,64]
//   [--max-tokens 64] [--api-key K] [--duration S] [--json]
// Each request is a streamed /v1/completions call with a token-id prompt whose length comes from a
// fixed synthetic distribution (seeded: the same prompts every run): 32 (40%), 64 (30%), 128 (20%),
// 256 (10%) tokens, ignore_eos so every request generates exactly --max-tokens tokens.
// Reports requests/s, output tokens/s, time to first token and inter-token latency percentiles.
// With --duration S it runs one level (the first concurrency) for S seconds (a soak) and also
// samples /metrics (KV pages, RSS) every 10 s.
const args = process.argv.slice(2);
const base = args[0];
if (!base || base.startsWith("--")) {
  console.error("usage: node bench.mjs BASE_URL [--model M] [--concurrency 1,8,32] [--requests 8,32,64] [--max-tokens 64] [--duration S] [--json]");
  process.exit(2);
}
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const model = opt("--model", "default");
const conc = opt("--concurrency", "1,8,32").split(",").map(Number);
const reqs = opt("--requests", "8,32,64").split(",").map(Number);
const maxTokens = Number(opt("--max-tokens", "64"));
const duration = Number(opt("--duration", "0"));
const apiKey = opt("--api-key", "");
const asJson = args.includes("--json");
const vocab = Number(opt("--vocab", "4096"));

let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
function prompt() {
  const r = rnd();
  const len = r < 0.4 ? 32 : r < 0.7 ? 64 : r < 0.9 ? 128 : 256;
  const ids = [];
  for (let i = 0; i < len; i++) ids.push(10 + Math.floor(rnd() * (vocab - 20)));
  return ids;
}

async function one(ids) {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) },
    body: JSON.stringify({ model, prompt: ids, max_tokens: maxTokens, temperature: 0, stream: true,
      ignore_eos: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const dec = new TextDecoder();
  let buf = "", first = 0, last = 0, tokens = 0, done = false;
  const gaps = [];
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith("data: ")) continue;
      const data = ev.slice(6);
      if (data === "[DONE]") { done = true; continue; }
      const j = JSON.parse(data);
      if (j.error) throw new Error(j.error.message);
      if (j.usage) tokens = j.usage.completion_tokens;
      if (j.choices && j.choices.length) {
        const now = performance.now();
        if (!first) first = now;
        else gaps.push(now - last);
        last = now;
      }
    }
  }
  if (!done) throw new Error("stream ended without [DONE]");
  return { ttft: first - t0, e2e: performance.now() - t0, tokens, gaps };
}

const pct = (a, p) => {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function metrics() {
  try {
    const t = await (await fetch(`${base}/metrics`)).text();
    const m = {};
    for (const l of t.split("\n")) if (l && !l.startsWith("#")) m[l.slice(0, l.lastIndexOf(" "))] = Number(l.slice(l.lastIndexOf(" ") + 1));
    return m;
  } catch { return {}; }
}

async function level(c, n, seconds) {
  const results = [], errors = [];
  let next = 0;
  const t0 = performance.now();
  const deadline = seconds ? t0 + seconds * 1000 : Infinity;
  const samples = [];
  let sampler = null;
  if (seconds) {
    const sample = async () => {
      const m = await metrics();
      samples.push({ t: Math.round((performance.now() - t0) / 1000), kv: m.mlc_kv_cache_pages_used,
        cache: m.mlc_prefix_cache_pages, rss: m.mlc_process_resident_memory_bytes, running: m.mlc_num_requests_running });
    };
    await sample();
    sampler = setInterval(sample, 10000);
  }
  async function worker() {
    while (seconds ? performance.now() < deadline : next < n) {
      next++;
      try { results.push(await one(prompt())); } catch (e) { errors.push(String(e.message || e)); }
    }
  }
  await Promise.all(Array.from({ length: c }, worker));
  const wall = (performance.now() - t0) / 1000;
  if (sampler) clearInterval(sampler);
  const toks = results.reduce((a, r) => a + r.tokens, 0);
  const ttft = results.map((r) => r.ttft), itl = results.flatMap((r) => r.gaps);
  return { concurrency: c, requests: results.length, errors: errors.length, first_error: errors[0], wall_s: wall,
    req_per_s: results.length / wall, out_tok_per_s: toks / wall,
    ttft_ms: { p50: pct(ttft, 50), p90: pct(ttft, 90), p99: pct(ttft, 99) },
    itl_ms: { p50: pct(itl, 50), p90: pct(itl, 90), p99: pct(itl, 99) },
    e2e_ms: { p50: pct(results.map((r) => r.e2e), 50) }, samples: seconds ? samples : undefined };
}

const out = [];
if (duration) out.push(await level(conc[0], 0, duration));
else for (let i = 0; i < conc.length; i++) out.push(await level(conc[i], reqs[i] ?? reqs[reqs.length - 1]));
const after = await metrics();
if (asJson) console.log(JSON.stringify({ results: out, metrics_after: after }, null, 1));
else {
  console.log(`| concurrency | requests | errors | req/s | output tok/s | TTFT p50 / p90 / p99 (ms) | ITL p50 / p90 / p99 (ms) | E2E p50 (ms) |`);
  console.log(`| --- | --- | --- | --- | --- | --- | --- | --- |`);
  const f = (x) => (Number.isFinite(x) ? x.toFixed(0) : "-");
  for (const r of out)
    console.log(`| ${r.concurrency} | ${r.requests} | ${r.errors} | ${r.req_per_s.toFixed(2)} | ${r.out_tok_per_s.toFixed(1)} | ${f(r.ttft_ms.p50)} / ${f(r.ttft_ms.p90)} / ${f(r.ttft_ms.p99)} | ${f(r.itl_ms.p50)} / ${f(r.itl_ms.p90)} / ${f(r.itl_ms.p99)} | ${f(r.e2e_ms.p50)} |`);
  for (const r of out) if (r.first_error) console.log(`first error at concurrency ${r.concurrency}: ${r.first_error}`);
  for (const r of out) if (r.samples) for (const s of r.samples) console.log(`t=${s.t}s kv_pages=${s.kv} cache_pages=${s.cache} running=${s.running} rss=${(s.rss / 1048576).toFixed(1)}MiB`);
}
