// client.mjs: `mlc serve` through the official openai npm client (pinned in package.json):
// chat and completions, streamed and not; logprobs, stop, n, seed; 32 concurrent streams whose
// greedy outputs equal each request run alone; cancellation frees KV pages; a repeated prefix is
// served from the prefix cache. Usage: node client.mjs BASE_URL API_KEY MODEL
import OpenAI from "openai";

const [base, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 120000 });
let passed = 0, failed = 0;
function check(ok, what, extra) {
  if (ok) passed++;
  else {
    failed++;
    console.log(`FAIL ${what}${extra !== undefined ? ": " + JSON.stringify(extra).slice(0, 600) : ""}`);
  }
}

async function metrics() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    m[line.slice(0, sp)] = Number(line.slice(sp + 1));
  }
  return m;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function idle() {
  for (let i = 0; i < 300; i++) {
    const m = await metrics();
    if (m.mlc_num_requests_running === 0 && m.mlc_num_requests_waiting === 0) return m;
    await sleep(50);
  }
  return metrics();
}

async function chatAlone(messages, extra = {}) {
  return client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 16, ...extra });
}

async function streamText(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  let text = "", finish = null, usage = null, roles = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) roles++;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, usage, roles };
}

const t0 = Date.now();
// ---- models ----
{
  const list = await client.models.list();
  const ids = [];
  for await (const m of list) ids.push(m.id);
  check(ids.includes(model), "models.list has the model", ids);
}

// ---- chat, not streamed / streamed ----
const msgs = [{ role: "user", content: "Hello! Who are you?" }];
{
  const r = await chatAlone(msgs, { max_tokens: 24 });
  const c = r.choices[0];
  check(r.object === "chat.completion" && typeof c.message.content === "string" && c.message.content.length > 0,
    "chat: a reply", r);
  check(c.message.role === "assistant" && ["stop", "length"].includes(c.finish_reason), "chat: role and finish_reason", c);
  check(r.usage && r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens &&
    r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 24, "chat: usage", r.usage);
  const s = await streamText({ model, messages: msgs, temperature: 0, max_tokens: 24,
    stream_options: { include_usage: true } });
  check(s.text === c.message.content, "chat stream: same text as not streamed", [s.text, c.message.content]);
  check(s.finish === c.finish_reason && s.roles === 1, "chat stream: finish_reason, role once", s);
  check(s.usage && s.usage.completion_tokens === r.usage.completion_tokens &&
    s.usage.prompt_tokens === r.usage.prompt_tokens, "chat stream: include_usage", s.usage);
  const l = await chatAlone(msgs, { max_tokens: 3, ignore_eos: true });
  check(l.choices[0].finish_reason === "length" && l.usage.completion_tokens === 3, "chat: max_tokens -> length", l);
  // logprobs
  const lp = await chatAlone(msgs, { max_tokens: 4, logprobs: true, top_logprobs: 2, ignore_eos: true });
  const content = lp.choices[0].logprobs && lp.choices[0].logprobs.content;
  check(Array.isArray(content) && content.length === 4 && content.every((t) => typeof t.token === "string" &&
    t.logprob <= 0 && t.top_logprobs.length === 2 && t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob &&
    Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6), "chat: logprobs (greedy = top 1)", content);
  // n and seed
  const n2 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 8, n: 2, seed: 7, temperature: 1 });
  const n2b = await client.chat.completions.create({ model, messages: msgs, max_tokens: 8, n: 2, seed: 7, temperature: 1 });
  check(n2.choices.length === 2 && n2.choices[1].index === 1, "chat: n = 2", n2.choices);
  check(n2.choices.map((c) => c.message.content).join("|") === n2b.choices.map((c) => c.message.content).join("|"),
    "chat: same seed, same samples", [n2.choices, n2b.choices]);
  // stop string
  const full = l.choices[0].message.content;
  const long = await chatAlone(msgs, { max_tokens: 24 });
  const ft = long.choices[0].message.content;
  if (ft.length > 10) {
    const stop = ft.slice(6, 9);
    const st = await chatAlone(msgs, { max_tokens: 24, stop: [stop] });
    check(st.choices[0].finish_reason === "stop" && st.choices[0].message.content === ft.slice(0, ft.indexOf(stop)),
      "chat: stop string", [stop, st.choices[0].message.content, ft]);
    const ss = await streamText({ model, messages: msgs, max_tokens: 24, temperature: 0, stop: stop });
    check(ss.text === ft.slice(0, ft.indexOf(stop)) && ss.finish === "stop", "chat stream: stop string", ss);
  } else check(false, "a long enough reply for the stop test", ft);
  void full;
}

// ---- completions ----
{
  const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0 });
  check(r.object === "text_completion" && typeof r.choices[0].text === "string" && r.choices[0].text.length > 0,
    "completions: text", r);
  check(r.usage.prompt_tokens > 0 && r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens,
    "completions: usage", r.usage);
  const stream = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0,
    stream: true, stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null;
  for await (const ch of stream) {
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(text === r.choices[0].text && finish === r.choices[0].finish_reason, "completions stream: same text", [text, r.choices[0].text]);
  check(usage && usage.completion_tokens === r.usage.completion_tokens, "completions stream: usage", usage);
  const lp = await client.completions.create({ model, prompt: [5, 17, 42, 99], max_tokens: 3, temperature: 0,
    logprobs: 2, echo: false, ignore_eos: true });
  const L = lp.choices[0].logprobs;
  check(L && L.tokens.length === 3 && L.token_logprobs.length === 3 && L.top_logprobs.length === 3 &&
    L.text_offset.length === 3, "completions: token-id prompt, logprobs", lp.choices[0]);
  const echo = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 4, temperature: 0, echo: true });
  check(echo.choices[0].text.startsWith("Once upon a time"), "completions: echo", echo.choices[0].text);
  const multi = await client.completions.create({ model, prompt: ["Once upon a time", "The cat"], max_tokens: 4, temperature: 0 });
  check(multi.choices.length === 2 && multi.choices[0].text === echo.choices[0].text.slice("Once upon a time".length),
    "completions: two prompts", multi.choices);
}

// ---- errors through the client ----
{
  try {
    await client.chat.completions.create({ model: "no-such-model", messages: msgs });
    check(false, "unknown model must fail");
  } catch (e) {
    check(e.status === 404 && e.error && e.error.code === "model_not_found", "client sees a 404 model_not_found", e.error);
  }
}

// ---- 32 concurrent streams equal each alone ----
{
  const N = 32;
  const prompts = [];
  for (let i = 0; i < N; i++)
    prompts.push([{ role: "user", content: `Request ${i}: tell me about ${["cats", "rivers", "the moon", "bread"][i % 4]} number ${i * 7 % 13}.` }]);
  const alone = [];
  for (let i = 0; i < N; i++) {
    const r = await chatAlone(prompts[i], { max_tokens: 12, ignore_eos: true });
    alone.push(r.choices[0].message.content);
  }
  const t = Date.now();
  const together = await Promise.all(prompts.map((m) =>
    streamText({ model, messages: m, temperature: 0, max_tokens: 12, ignore_eos: true })));
  const secs = (Date.now() - t) / 1000;
  let same = 0;
  for (let i = 0; i < N; i++) {
    if (together[i].text === alone[i] && together[i].finish === "length") same++;
    else console.log(`  differs ${i}: ${JSON.stringify(together[i].text)} vs ${JSON.stringify(alone[i])}`);
  }
  check(same === N, `32 concurrent streams equal each alone (${same}/${N}, ${secs.toFixed(1)} s together)`);
}

// ---- cancellation frees KV pages ----
{
  const before = await idle();
  const ac = new AbortController();
  const stream = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Tell me a long story." }],
    max_tokens: 900, ignore_eos: true, temperature: 0, stream: true }, { signal: ac.signal });
  let chunks = 0, during = null;
  try {
    for await (const ch of stream) {
      void ch;
      if (++chunks === 20) {
        during = await metrics();
        ac.abort();
      }
    }
  } catch (e) {
    void e;
  }
  const after = await idle();
  check(during && during.mlc_kv_cache_pages_used > before.mlc_kv_cache_pages_used,
    "KV pages used while streaming", [during && during.mlc_kv_cache_pages_used, before.mlc_kv_cache_pages_used]);
  check(after.mlc_kv_cache_pages_used <= after.mlc_prefix_cache_pages,
    "cancelled: KV pages freed (only the prefix cache's remain)", [after.mlc_kv_cache_pages_used, after.mlc_prefix_cache_pages]);
  check(after['mlc_requests_total{finish_reason="abort"}'] === before['mlc_requests_total{finish_reason="abort"}'] + 1,
    "cancelled: counted as abort", after);
  check(after.mlc_client_disconnects_total >= before.mlc_client_disconnects_total + 1, "client disconnect counted");
}

// ---- a repeated prefix comes from the prefix cache ----
{
  const system = "You are a careful assistant. " + "Answer briefly and precisely, and never invent facts. ".repeat(8);
  const m1 = [{ role: "system", content: system }, { role: "user", content: "What is a river?" }];
  const m2 = [{ role: "system", content: system }, { role: "user", content: "What is a mountain?" }];
  const before = await idle();
  const a = await chatAlone(m1, { max_tokens: 4 });
  const b = await chatAlone(m2, { max_tokens: 4 });
  const after = await idle();
  const hit = after.mlc_prefix_cache_hit_tokens_total - before.mlc_prefix_cache_hit_tokens_total;
  check(hit >= 64, `repeated system prompt served from the prefix cache (${hit} tokens)`, after);
  check(b.usage.prompt_tokens_details && b.usage.prompt_tokens_details.cached_tokens >= 64,
    "usage.prompt_tokens_details.cached_tokens", b.usage);
  check(a.usage.prompt_tokens > 100, "the system prompt is long", a.usage);
}

// ---- structured output through the client's own types ----
{
  const schema = { type: "object", properties: { answer: { enum: ["yes", "no"] }, sure: { type: "boolean" } },
    required: ["answer", "sure"], additionalProperties: false };
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Is water wet?" }],
    max_tokens: 200, seed: 5, response_format: { type: "json_schema", json_schema: { name: "verdict", strict: true, schema } } });
  const c = r.choices[0];
  let v = null;
  try { v = JSON.parse(c.message.content); } catch { /* checked below */ }
  check(c.finish_reason === "stop" && v && ["yes", "no"].includes(v.answer) && typeof v.sure === "boolean" &&
    Object.keys(v).length === 2, "response_format json_schema: the reply matches the schema", c);
  let err = null;
  try {
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4,
      response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", pattern: "^a" } } } });
  } catch (e) { err = e; }
  check(err && err.status === 400 && /pattern/.test(err.message), "an unsupported schema keyword is a 400 naming it",
    err && err.message);
}

console.log(`client.mjs: ${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);
