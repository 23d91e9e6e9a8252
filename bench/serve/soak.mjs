// soak.mjs: a mixed-traffic soak of `mlc serve` (or any OpenAI-compatible server).
// node bench/serve/soak.mjs BASE_URL [--model M] [--concurrency 16] [--duration 600] [--sample 30]
//   [--max-tokens 48] [--api-key K] [--json]
// Each worker loops until the duration is over, picking (seeded, so every run is the same mix):
//   28 % streamed /v1/completions (token-id prompt of 32..256 tokens)
//   18 % non-streamed /v1/completions
//   18 % streamed /v1/chat/completions
//   14 % non-streamed /v1/chat/completions
//    7 % chat with response_format json_schema (enum / boolean / null: the reply must be valid)
//   10 % streamed completion cancelled by the client after 1..8 chunks
//    5 % non-streamed completion cancelled by the client after 100..600 ms
// Every answer is checked (status 200, JSON shape, finish_reason, [DONE], usage); a cancelled
// request is an error only if it failed before the client gave up. /metrics is sampled every
// --sample seconds (KV pages, prefix-cache pages, RSS, running, waiting). At the end the soak waits
// for the server to go idle and reports the KV pages still used beyond the prefix cache's (a leak
// if not 0). Exit status 1 if any request failed or pages leaked.
const args = process.argv.slice(2);
const base = args[0];
if (!base || base.startsWith("--")) {
  console.error("usage: node soak.mjs BASE_URL [--model M] [--concurrency 16] [--duration 600] [--sample 30] [--max-tokens 48] [--json]");
  process.exit(2);
}
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const model = opt("--model", "default");
const conc = Number(opt("--concurrency", "16"));
const duration = Number(opt("--duration", "600"));
const every = Number(opt("--sample", "30"));
const maxTokens = Number(opt("--max-tokens", "48"));
const apiKey = opt("--api-key", "");
const vocab = Number(opt("--vocab", "4096"));
const asJson = args.includes("--json");
const headers = { "Content-Type": "application/json", ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) };

let seed = 4242;
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; /* 32-bit LCG; the high bits are the random ones */
  return (seed >>> 8) / 16777216;
};
const words = ["story", "river", "king", "light", "stone", "night", "garden", "letter", "ship", "song", "winter", "door"];
function ids() {
  const r = rnd();
  const len = r < 0.4 ? 32 : r < 0.7 ? 64 : r < 0.9 ? 128 : 256;
  const a = [];
  for (let i = 0; i < len; i++) a.push(10 + Math.floor(rnd() * (vocab - 20)));
  return a;
}
function chatMessages() {
  const n = 3 + Math.floor(rnd() * 20);
  let s = "Tell me about";
  for (let i = 0; i < n; i++) s += " " + words[Math.floor(rnd() * words.length)];
  return [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: s }];
}

const counts = { completions_stream: 0, completions: 0, chat_stream: 0, chat: 0, json_schema: 0, cancel_stream: 0,
  cancel_wait: 0 };
const schema = { type: "object", properties: { color: { enum: ["red", "green", "blue"] }, ok: { type: "boolean" },
  none: { type: "null" } }, required: ["color", "ok", "none"], additionalProperties: false };
const errors = [];
let tokens = 0;

async function sse(res, onEvent) {
  const dec = new TextDecoder();
  let buf = "", done = false;
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith("data: ")) throw new Error(`bad SSE line: ${ev.slice(0, 80)}`);
      const data = ev.slice(6);
      if (data === "[DONE]") { done = true; continue; }
      const j = JSON.parse(data);
      if (j.error) throw new Error(`stream error: ${j.error.message}`);
      if (onEvent(j) === false) return "aborted";
    }
  }
  if (!done) throw new Error("stream ended without [DONE]");
  return "done";
}

async function post(path, body, signal) {
  const res = await fetch(`${base}${path}`, { method: "POST", headers, body: JSON.stringify(body), signal });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  return res;
}

async function one(kind) {
  const temp = rnd() < 0.5 ? 0 : 0.8;
  const mt = 8 + Math.floor(rnd() * maxTokens);
  if (kind === "completions_stream" || kind === "completions") {
    const stream = kind === "completions_stream";
    const res = await post("/v1/completions", { model, prompt: ids(), max_tokens: mt, temperature: temp, stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}) });
    if (stream) {
      let fin = null, usage = null;
      await sse(res, (j) => {
        if (j.usage) usage = j.usage;
        for (const c of j.choices || []) if (c.finish_reason) fin = c.finish_reason;
      });
      if (!fin || !usage) throw new Error(`stream without finish_reason or usage`);
      tokens += usage.completion_tokens;
    } else {
      const j = await res.json();
      if (j.object !== "text_completion" || !j.choices?.[0]?.finish_reason || typeof j.choices[0].text !== "string")
        throw new Error(`bad completion: ${JSON.stringify(j).slice(0, 200)}`);
      tokens += j.usage.completion_tokens;
    }
  } else if (kind === "chat_stream" || kind === "chat") {
    const stream = kind === "chat_stream";
    const res = await post("/v1/chat/completions", { model, messages: chatMessages(), max_tokens: mt, temperature: temp,
      stream, ...(stream ? { stream_options: { include_usage: true } } : {}) });
    if (stream) {
      let fin = null, usage = null, role = false;
      await sse(res, (j) => {
        if (j.usage) usage = j.usage;
        for (const c of j.choices || []) {
          if (c.delta?.role === "assistant") role = true;
          if (c.finish_reason) fin = c.finish_reason;
        }
      });
      if (!fin || !usage || !role) throw new Error(`chat stream without role, finish_reason or usage`);
      tokens += usage.completion_tokens;
    } else {
      const j = await res.json();
      const c = j.choices?.[0];
      if (j.object !== "chat.completion" || !c?.finish_reason || typeof c.message?.content !== "string")
        throw new Error(`bad chat completion: ${JSON.stringify(j).slice(0, 200)}`);
      tokens += j.usage.completion_tokens;
    }
  } else if (kind === "json_schema") {
    const res = await post("/v1/chat/completions", { model, messages: chatMessages(), max_tokens: 300, temperature: temp,
      response_format: { type: "json_schema", json_schema: { name: "thing", strict: true, schema } } });
    const j = await res.json();
    const c = j.choices?.[0];
    if (c?.finish_reason !== "stop") throw new Error(`json_schema: finish_reason ${c?.finish_reason}`);
    const v = JSON.parse(c.message.content);
    if (!["red", "green", "blue"].includes(v.color) || typeof v.ok !== "boolean" || v.none !== null ||
        Object.keys(v).length !== 3)
      throw new Error(`json_schema: does not match the schema: ${c.message.content}`);
    tokens += j.usage.completion_tokens;
  } else if (kind === "cancel_stream") {
    const ac = new AbortController();
    const after = 1 + Math.floor(rnd() * 8);
    const res = await post("/v1/completions", { model, prompt: ids(), max_tokens: 400, ignore_eos: true, stream: true },
      ac.signal);
    let n = 0;
    try {
      const r = await sse(res, () => ++n < after);
      if (r === "aborted") ac.abort();
    } catch (e) {
      if (!ac.signal.aborted) throw e;
    }
  } else {
    const ac = new AbortController();
    const t = setTimeout(() => ac.abort(), 100 + Math.floor(rnd() * 500));
    try {
      const res = await post("/v1/completions", { model, prompt: ids(), max_tokens: 400, ignore_eos: true }, ac.signal);
      await res.json();
    } catch (e) {
      if (!ac.signal.aborted) throw e;
    } finally {
      clearTimeout(t);
    }
  }
}

function pick() {
  const r = rnd();
  return r < 0.28 ? "completions_stream" : r < 0.46 ? "completions" : r < 0.64 ? "chat_stream" : r < 0.78 ? "chat"
    : r < 0.85 ? "json_schema" : r < 0.95 ? "cancel_stream" : "cancel_wait";
}

async function metrics() {
  const t = await (await fetch(`${base}/metrics`)).text();
  const m = {};
  for (const l of t.split("\n")) if (l && !l.startsWith("#")) m[l.slice(0, l.lastIndexOf(" "))] = Number(l.slice(l.lastIndexOf(" ") + 1));
  return m;
}

const t0 = performance.now();
const deadline = t0 + duration * 1000;
const samples = [];
const sample = async () => {
  try {
    const m = await metrics();
    samples.push({ t: Math.round((performance.now() - t0) / 1000), kv_pages: m.mlc_kv_cache_pages_used,
      cache_pages: m.mlc_prefix_cache_pages, running: m.mlc_num_requests_running, waiting: m.mlc_num_requests_waiting,
      rss_mib: +(m.mlc_process_resident_memory_bytes / 1048576).toFixed(1) });
  } catch (e) {
    errors.push(`metrics: ${e.message || e}`);
  }
};
await sample();
const before = await metrics();
const timer = setInterval(sample, every * 1000);
async function worker() {
  while (performance.now() < deadline) {
    const kind = pick();
    counts[kind]++;
    try { await one(kind); } catch (e) { errors.push(`${kind}: ${e.message || e}`); }
  }
}
await Promise.all(Array.from({ length: conc }, worker));
clearInterval(timer);
const wall = (performance.now() - t0) / 1000;
await sample();
// idle: every request finished, cancelled ones included
let idle = null;
for (let i = 0; i < 100; i++) {
  const m = await metrics();
  if (m.mlc_num_requests_running === 0 && m.mlc_num_requests_waiting === 0) { idle = m; break; }
  await new Promise((r) => setTimeout(r, 100));
}
const requests = Object.values(counts).reduce((a, b) => a + b, 0);
const cancels = counts.cancel_stream + counts.cancel_wait;
const kvEnd = idle ? idle.mlc_kv_cache_pages_used : NaN, cacheEnd = idle ? idle.mlc_prefix_cache_pages : NaN;
const rss = samples.map((s) => s.rss_mib);
const dAborts = idle ? idle['mlc_requests_total{finish_reason="abort"}'] - before['mlc_requests_total{finish_reason="abort"}'] : NaN;
const result = { base, concurrency: conc, duration_s: duration, wall_s: +wall.toFixed(1), requests, by_kind: counts,
  client_cancels: cancels, server_aborts: dAborts, errors: errors.length, first_errors: errors.slice(0, 5),
  completion_tokens: tokens, tok_per_s: +(tokens / wall).toFixed(1),
  end: { idle: !!idle, kv_pages_used: kvEnd, prefix_cache_pages: cacheEnd, leaked_pages: kvEnd - cacheEnd,
    http_429: idle ? idle['mlc_http_requests_total{code="429"}'] || 0 : NaN },
  rss_mib: { first: rss[0], last: rss[rss.length - 1], min: Math.min(...rss), max: Math.max(...rss) }, samples };
if (asJson) console.log(JSON.stringify(result, null, 1));
else {
  console.log(`soak: ${requests} requests in ${result.wall_s} s at concurrency ${conc} (${JSON.stringify(counts)}), ` +
    `${errors.length} errors, ${cancels} client cancellations (${dAborts} aborts counted by the server), ` +
    `${tokens} completion tokens (${result.tok_per_s} tok/s)`);
  console.log(`end (idle: ${!!idle}): KV pages used ${kvEnd}, prefix cache ${cacheEnd}, leaked ${kvEnd - cacheEnd}; ` +
    `RSS first ${rss[0]} / last ${rss[rss.length - 1]} / max ${Math.max(...rss)} MiB`);
  for (const s of samples)
    console.log(`t=${s.t}s kv_pages=${s.kv_pages} cache_pages=${s.cache_pages} running=${s.running} waiting=${s.waiting} rss=${s.rss_mib}MiB`);
  for (const e of errors.slice(0, 5)) console.log(`error: ${e}`);
}
process.exit(errors.length || !idle || kvEnd !== cacheEnd ? 1 : 0);
