/* test_engine.c: the continuous-batching engine (docs/engine.md): stop strings across token
 * boundaries; greedy outputs under batching, prefix caching, n > 1 forks and KV preemption equal
 * the same request run alone; seeded sampling is reproducible; cancellation frees KV pages;
 * max_tokens, logprobs, logit_bias; structured output (json_schema) per choice. Uses the bundled
 * model (models/default). */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/grammar.h"
#include "engine/sampler.h"
#include "mlc.h"

static int passed, failed;
static void check(bool ok, const char *what) {
  if (ok)
    passed++;
  else {
    failed++;
    printf("FAIL %s (%s)\n", what, mlc_last_error());
  }
}

/* ---- stop strings ---- */
static void test_stop(void) {
  const char *stops[] = {"STOP", "\n\n"};
  mlc_buf h = {0};
  char *o;
  bool s = mlc_stop_scan(&h, "hello S", stops, 2, false, &o);
  check(!s && !strcmp(o, "hello "), "stop: holds a possible prefix");
  free(o);
  s = mlc_stop_scan(&h, "T", stops, 2, false, &o);
  check(!s && !strcmp(o, ""), "stop: still a prefix");
  free(o);
  s = mlc_stop_scan(&h, "OP and more", stops, 2, false, &o);
  check(s && !strcmp(o, ""), "stop: found across pieces, nothing of it emitted");
  free(o);
  s = mlc_stop_scan(&h, "ab\n", stops, 2, false, &o);
  check(!s && !strcmp(o, "ab"), "stop: newline held");
  free(o);
  s = mlc_stop_scan(&h, "x", stops, 2, false, &o);
  check(!s && !strcmp(o, "\nx"), "stop: released when it cannot match");
  free(o);
  s = mlc_stop_scan(&h, "tail ST", stops, 2, true, &o);
  check(!s && !strcmp(o, "tail ST"), "stop: final releases everything");
  free(o);
  mlc_buf_free(&h);
}

/* ---- the sampler's partial sort equals a full sort ---- */
static uint64_t ref_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static int ref_cmp(const void *a, const void *b, void *ctx) {
  const float *p = ctx;
  float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
  if (x != y)
    return x < y ? 1 : -1;
  return *(const int32_t *)a - *(const int32_t *)b;
}
static int32_t ref_sample(const mlc_sampling *p, uint64_t *st, const float *lg, int V, float *prob, int32_t *idx) {
  float mx = lg[mlc_argmax(lg, V)];
  double sum = 0;
  for (int i = 0; i < V; i++) {
    prob[i] = expf((lg[i] - mx) / p->temperature);
    sum += prob[i];
  }
  for (int i = 0; i < V; i++) {
    prob[i] = (float)(prob[i] / sum);
    idx[i] = i;
  }
  int n = V;
  qsort_r(idx, (size_t)V, sizeof(int32_t), ref_cmp, prob);
  if (p->top_k > 0 && p->top_k < n)
    n = p->top_k;
  if (p->top_p < 1) {
    double cum = 0;
    for (int i = 0; i < n; i++) {
      cum += prob[idx[i]];
      if (cum >= p->top_p) {
        n = i + 1;
        break;
      }
    }
  }
  double total = 0, acc = 0;
  for (int i = 0; i < n; i++)
    total += prob[idx[i]];
  double r = (double)(ref_u64(st) >> 11) * (1.0 / 9007199254740992.0) * total;
  for (int i = 0; i < n; i++) {
    acc += prob[idx[i]];
    if (r < acc)
      return idx[i];
  }
  return idx[n - 1];
}
static void test_sampler(void) {
  int V = 20000, bad = 0;
  float *lg = malloc(sizeof(float) * V), *pr = malloc(sizeof(float) * V);
  int32_t *ix = malloc(sizeof(int32_t) * V);
  uint64_t g = 99;
  for (int t = 0; t < 60; t++) {
    for (int i = 0; i < V; i++)
      lg[i] = (float)((ref_u64(&g) >> 40) % 10000) / 10000.0f * (float)(2 + t % 5) * 4;
    if (t % 4 == 0)
      for (int i = 0; i < 50; i++)
        lg[i * 7] = lg[0]; /* ties */
    mlc_sampling p = {.temperature = 0.5f + (float)(t % 4) * 0.4f, .top_p = (t % 2) ? 0.9f : 1.0f,
                      .top_k = (t % 3) ? 40 * (t % 3) : 0};
    if (p.top_p == 1.0f && p.top_k == 0)
      p.top_p = 0.5f;
    uint64_t a = (uint64_t)t, b = (uint64_t)t;
    for (int k = 0; k < 4; k++)
      bad += mlc_sample_logits(&p, &a, lg, V, pr, ix) != ref_sample(&p, &b, lg, V, pr, ix);
  }
  check(bad == 0, "top-k / top-p over a partial sort draw exactly what a full sort draws");
  free(lg);
  free(pr);
  free(ix);
}

/* ---- a collector of one request's events ---- */
typedef struct coll {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n;
  int32_t toks[4][600];
  int ntok[4];
  char text[4][4096];
  float lp[4][600], top0[4][600];
  mlc_finish fin[4];
  int done, events, cached, prompt, completion[4];
} coll;

static void on_event(void *u, const mlc_engine_event *ev) {
  coll *c = u;
  pthread_mutex_lock(&c->mu);
  int i = ev->index;
  if (ev->token >= 0 && c->ntok[i] < 600) {
    c->lp[i][c->ntok[i]] = ev->logprob;
    c->top0[i][c->ntok[i]] = ev->n_top ? ev->top_logprobs[0] : 1;
    c->toks[i][c->ntok[i]++] = ev->token;
  }
  strncat(c->text[i], ev->text, sizeof c->text[i] - strlen(c->text[i]) - 1);
  if (ev->finish)
    c->fin[i] = ev->finish;
  c->cached = ev->cached_tokens;
  c->prompt = ev->prompt_tokens;
  c->completion[i] = ev->completion_tokens;
  c->events++;
  if (ev->request_done)
    c->done = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static coll *coll_new(void) {
  coll *c = calloc(1, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  return c;
}
static void coll_wait(coll *c) {
  pthread_mutex_lock(&c->mu);
  while (!c->done)
    pthread_cond_wait(&c->cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
}
static void coll_free(coll *c) {
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c);
}

static void make_prompt(int32_t *p, int n, int seed, int V) {
  for (int i = 0; i < n; i++)
    p[i] = 5 + (int)((unsigned)(i * 131 + seed * 977 + (i * seed) % 17) % (unsigned)(V - 10));
}

static coll *run1(mlc_engine *e, const int32_t *p, int n, const mlc_gen_params *gp) {
  coll *c = coll_new();
  uint64_t id;
  check(mlc_engine_submit(e, p, n, gp, on_event, c, &id) == MLC_OK, "submit");
  coll_wait(c);
  return c;
}

static bool same_tokens(const coll *a, int ia, const coll *b, int ib) {
  return a->ntok[ia] == b->ntok[ib] && !memcmp(a->toks[ia], b->toks[ib], sizeof(int32_t) * (size_t)a->ntok[ia]);
}

static void wait_idle(mlc_engine *e, mlc_engine_stats *st) {
  for (int i = 0; i < 200; i++) {
    mlc_engine_stats_get(e, st);
    if (!st->running && !st->waiting)
      return;
    usleep(10000);
  }
}

static void test_engine(const char *dir, int max_total, int max_tokens, const char *label) {
  mlc_engine_options o = {.model = {.threads = 2, .prefill_chunk = 64}, .max_batch = 8, .max_total_tokens = max_total};
  mlc_engine *e;
  double t_start = mlc_now();
  if (mlc_engine_new(dir, &o, &e) != MLC_OK) {
    check(false, "engine_new");
    return;
  }
  int V = mlc_engine_vocab_size(e);
  enum { NR = 8 };
  int32_t prompts[NR][120];
  int plen[NR];
  for (int r = 0; r < NR; r++) {
    plen[r] = 20 + r * 11;
    make_prompt(prompts[r], plen[r], r + 1, V);
    if (r >= 4) /* these share a 40-token prefix with prompt 0's first tokens */
      make_prompt(prompts[r], 40, 1, V);
  }
  mlc_gen_params gp = {.max_tokens = max_tokens, .ignore_eos = 1};
  coll *alone[NR];
  for (int r = 0; r < NR; r++)
    alone[r] = run1(e, prompts[r], plen[r], &gp);
  mlc_engine_stats st;
  wait_idle(e, &st);
  char what[128];
  snprintf(what, sizeof what, "%s: prefix cache hit on a shared prefix", label);
  check(st.cache_hits >= 1 && st.cache_hit_tokens >= 32, what);
  /* all at once: batching (and, with a small KV cache, preemption) must not change results */
  coll *many[NR];
  for (int r = 0; r < NR; r++) {
    many[r] = coll_new();
    check(mlc_engine_submit(e, prompts[r], plen[r], &gp, on_event, many[r], NULL) == MLC_OK, "submit many");
  }
  bool same = true;
  for (int r = 0; r < NR; r++) {
    coll_wait(many[r]);
    same &= same_tokens(many[r], 0, alone[r], 0) && many[r]->fin[0] == MLC_FINISH_LENGTH && many[r]->ntok[0] == max_tokens;
  }
  snprintf(what, sizeof what, "%s: %d concurrent greedy requests equal each alone", label, NR);
  check(same, what);
  /* n > 1 by forking: greedy choices all equal the single run */
  mlc_gen_params g3 = gp;
  g3.n = 3;
  coll *c3 = run1(e, prompts[2], plen[2], &g3);
  snprintf(what, sizeof what, "%s: n=3 greedy choices equal the single run", label);
  check(same_tokens(c3, 0, alone[2], 0) && same_tokens(c3, 1, alone[2], 0) && same_tokens(c3, 2, alone[2], 0), what);
  coll_free(c3);
  wait_idle(e, &st);
  if (max_total <= 256) {
    snprintf(what, sizeof what, "%s: the small KV cache forced preemptions (%llu)", label,
             (unsigned long long)st.preemptions);
    check(st.preemptions > 0, what);
  }
  printf("%s: %llu steps, %llu preemptions, %llu prefill tokens, %llu cache hit tokens, %llu generated (%.1f s)\n", label,
         (unsigned long long)st.steps, (unsigned long long)st.preemptions, (unsigned long long)st.prefill_tokens,
         (unsigned long long)st.cache_hit_tokens, (unsigned long long)st.generated_tokens, mlc_now() - t_start);
  /* KV pages: with nothing running only the prefix cache holds pages */
  snprintf(what, sizeof what, "%s: idle KV pages (%d) are the prefix cache's (%d)", label, st.kv_pages_used,
           st.cache_pages);
  check(st.kv_pages_used <= st.cache_pages, what);
  for (int r = 0; r < NR; r++) {
    coll_free(alone[r]);
    coll_free(many[r]);
  }
  mlc_engine_free(e);
}

static void test_params(const char *dir) {
  mlc_engine_options o = {.model = {.threads = 2}, .max_batch = 4, .max_total_tokens = 4096};
  mlc_engine *e;
  if (mlc_engine_new(dir, &o, &e) != MLC_OK) {
    check(false, "engine_new");
    return;
  }
  int V = mlc_engine_vocab_size(e);
  int32_t p[30];
  make_prompt(p, 30, 7, V);
  /* seeded sampling is reproducible, and two choices of one request differ */
  mlc_gen_params gs = {.max_tokens = 30, .temperature = 1.0f, .top_p = 0.9f, .top_k = 50, .min_p = 0.01f,
                       .has_seed = 1, .seed = 42, .n = 2, .ignore_eos = 1, .presence_penalty = 0.5f,
                       .frequency_penalty = 0.3f, .repetition_penalty = 1.2f};
  coll *a = run1(e, p, 30, &gs), *b = run1(e, p, 30, &gs);
  check(same_tokens(a, 0, b, 0) && same_tokens(a, 1, b, 1), "seeded sampling is reproducible");
  check(!same_tokens(a, 0, a, 1), "two sampled choices differ");
  coll_free(a);
  coll_free(b);
  /* logprobs: greedy picks the top alternative; logit_bias forces a token */
  int32_t forced = 77;
  float big = 100;
  mlc_gen_params gl = {.max_tokens = 5, .logprobs = 1, .top_logprobs = 3, .bias_ids = &forced, .bias_values = &big,
                       .n_bias = 1, .ignore_eos = 1};
  a = run1(e, p, 30, &gl);
  bool ok = a->ntok[0] == 5 && a->fin[0] == MLC_FINISH_LENGTH && a->completion[0] == 5;
  for (int i = 0; i < a->ntok[0]; i++)
    ok &= a->toks[0][i] == forced && a->lp[0][i] <= 0 && a->lp[0][i] == a->top0[0][i];
  check(ok, "logit_bias forces a token; its logprob is the top one; max_tokens -> length");
  coll_free(a);
  /* stop token ids end with stop */
  mlc_gen_params gt = {.max_tokens = 20, .bias_ids = &forced, .bias_values = &big, .n_bias = 1, .stop_ids = &forced,
                       .n_stop_ids = 1};
  a = run1(e, p, 30, &gt);
  check(a->ntok[0] == 1 && a->fin[0] == MLC_FINISH_STOP, "a stop token id finishes with stop");
  coll_free(a);
  /* stop strings through the tokenizer: the text of a greedy run, cut at a later piece of it */
  mlc_gen_params gg = {.max_tokens = 40, .ignore_eos = 1, .skip_special = 1};
  a = run1(e, p, 30, &gg);
  size_t L = strlen(a->text[0]);
  if (L >= 12) {
    char stop[8];
    memcpy(stop, a->text[0] + L / 2, 5);
    stop[5] = 0;
    const char *stops[] = {stop};
    mlc_gen_params gss = gg;
    gss.stop = stops;
    gss.n_stop = 1;
    b = run1(e, p, 30, &gss);
    const char *at = strstr(a->text[0], stop);
    check(b->fin[0] == MLC_FINISH_STOP && at && strlen(b->text[0]) == (size_t)(at - a->text[0]) &&
              !strncmp(b->text[0], a->text[0], strlen(b->text[0])),
          "a stop string cuts the text before it and finishes with stop");
    coll_free(b);
  } else
    check(false, "greedy text long enough for the stop-string test");
  coll_free(a);
  /* cancellation frees the KV pages */
  mlc_engine_stats st0, st;
  wait_idle(e, &st0);
  mlc_gen_params gc = {.max_tokens = 500, .ignore_eos = 1};
  coll *c = coll_new();
  uint64_t id;
  int32_t q[50];
  make_prompt(q, 50, 99, V);
  check(mlc_engine_submit(e, q, 50, &gc, on_event, c, &id) == MLC_OK, "submit long");
  for (int i = 0; i < 500; i++) {
    pthread_mutex_lock(&c->mu);
    int nt = c->ntok[0];
    pthread_mutex_unlock(&c->mu);
    if (nt >= 3)
      break;
    usleep(2000);
  }
  mlc_engine_stats_get(e, &st);
  int during = st.kv_pages_used;
  mlc_engine_cancel(e, id);
  coll_wait(c);
  wait_idle(e, &st);
  check(c->fin[0] == MLC_FINISH_CANCELLED && c->ntok[0] < 500, "cancel finishes with cancelled");
  check(during > st0.kv_pages_used && st.kv_pages_used <= st.cache_pages, "cancel frees the KV pages");
  check(st.requests_by_finish[MLC_FINISH_CANCELLED] == 1, "the cancellation is counted");
  coll_free(c);
  /* structured output: each of n = 2 sampled choices (its own parser) ends by itself (ignore_eos:
   * no EOS allowed, the closed object finishes it) with text matching the schema */
  const char *schema = "{\"type\":\"object\",\"properties\":{\"c\":{\"enum\":[\"x\",\"y\"]},\"b\":{\"type\":"
                       "\"boolean\"}},\"required\":[\"c\",\"b\"],\"additionalProperties\":false}";
  mlc_grammar *g = NULL;
  check(mlc_grammar_compile(schema, &g) == MLC_OK, "schema compiles");
  mlc_gen_params gj = {.max_tokens = 300, .temperature = 1.0f, .n = 2, .has_seed = 1, .seed = 3, .ignore_eos = 1,
                       .skip_special = 1, .json_schema = schema};
  a = run1(e, p, 30, &gj);
  for (int i = 0; i < 2 && g; i++)
    check(a->fin[i] == MLC_FINISH_STOP && mlc_grammar_matches(g, a->text[i], strlen(a->text[i])),
          "json_schema: the choice stops with text matching the schema");
  coll_free(a);
  mlc_grammar_free(g);
  mlc_gen_params gu = {.max_tokens = 4, .json_schema = "{\"type\":\"string\",\"pattern\":\"^a\"}"};
  check(mlc_engine_submit(e, p, 30, &gu, on_event, NULL, NULL) == MLC_ERR_UNSUPPORTED &&
            strstr(mlc_last_error(), "pattern"),
        "json_schema: an unsupported keyword is refused at submit, named");
  /* bad requests are refused synchronously */
  int32_t bad = V + 5;
  check(mlc_engine_submit(e, &bad, 1, &gg, on_event, NULL, NULL) != MLC_OK, "out-of-vocabulary prompt refused");
  int ctx = mlc_engine_context(e);
  int32_t *longp = calloc((size_t)ctx + 1, sizeof(int32_t));
  check(mlc_engine_submit(e, longp, ctx, &gg, on_event, NULL, NULL) == MLC_ERR_LIMIT, "a prompt filling the context refused");
  free(longp);
  mlc_engine_free(e);
}

/* ---- sampling on the device (MLC_OP_SAMPLE; forced on the CPU by MLC_DEVICE_SAMPLING=1) ---- */
static mlc_engine *engine_sampling(const char *dir, const char *on) {
  setenv("MLC_DEVICE_SAMPLING", on, 1); /* read when the engine loads its model */
  mlc_engine_options o = {.model = {.threads = 2, .prefill_chunk = 64}, .max_batch = 4, .max_total_tokens = 4096};
  mlc_engine *e = NULL;
  if (mlc_engine_new(dir, &o, &e) != MLC_OK)
    e = NULL;
  unsetenv("MLC_DEVICE_SAMPLING");
  check(e != NULL, "engine_new for device sampling");
  return e;
}
static void test_device_sampling(const char *dir) {
  mlc_engine *ed = engine_sampling(dir, "1"), *eh = engine_sampling(dir, "0");
  if (!ed || !eh) {
    mlc_engine_free(ed);
    mlc_engine_free(eh);
    return;
  }
  int V = mlc_engine_vocab_size(ed);
  enum { NR = 3 };
  int32_t p[NR][40];
  for (int r = 0; r < NR; r++)
    make_prompt(p[r], 25 + 5 * r, 50 + r, V);
  /* greedy: batched requests on the device equal the host's argmax, token for token */
  mlc_gen_params gp = {.max_tokens = 12, .ignore_eos = 1};
  coll *d[NR], *h[NR];
  for (int r = 0; r < NR; r++) {
    d[r] = coll_new();
    check(mlc_engine_submit(ed, p[r], 25 + 5 * r, &gp, on_event, d[r], NULL) == MLC_OK, "device sampling: submit");
  }
  bool same = true;
  for (int r = 0; r < NR; r++) {
    coll_wait(d[r]);
    h[r] = run1(eh, p[r], 25 + 5 * r, &gp);
    same &= same_tokens(d[r], 0, h[r], 0) && d[r]->ntok[0] == 12;
  }
  check(same, "device sampling: greedy requests equal the host sampler's");
  mlc_engine_stats sd, sh;
  wait_idle(ed, &sd);
  wait_idle(eh, &sh);
  check(sd.device_sampled == sd.generated_tokens && sd.generated_tokens == NR * 12 && sh.device_sampled == 0,
        "device sampling: every token of the device engine picked there, none of the host engine's");
  for (int r = 0; r < NR; r++) {
    coll_free(d[r]);
    coll_free(h[r]);
  }
  /* seeded sampling on the device: reproducible, seeds differ, choices of n = 2 differ */
  mlc_gen_params gs = {.max_tokens = 20, .temperature = 1.0f, .top_p = 0.9f, .top_k = 40, .min_p = 0.02f, .has_seed = 1,
                       .seed = 11, .ignore_eos = 1, .n = 2};
  coll *a = run1(ed, p[0], 25, &gs), *b = run1(ed, p[0], 25, &gs);
  gs.seed = 12;
  coll *c = run1(ed, p[0], 25, &gs);
  check(same_tokens(a, 0, b, 0) && same_tokens(a, 1, b, 1), "device sampling: seeded sampling is reproducible");
  check(!same_tokens(a, 0, c, 0) && !same_tokens(a, 0, a, 1), "device sampling: other seeds and choices differ");
  coll_free(a);
  coll_free(b);
  coll_free(c);
  /* what needs the logits on the host takes the host path: logprobs, penalties */
  wait_idle(ed, &sd);
  uint64_t before = sd.device_sampled;
  mlc_gen_params gl = {.max_tokens = 4, .logprobs = 1, .top_logprobs = 2, .ignore_eos = 1};
  a = run1(ed, p[1], 30, &gl);
  mlc_gen_params gr = {.max_tokens = 4, .repetition_penalty = 1.3f, .ignore_eos = 1};
  b = run1(ed, p[1], 30, &gr);
  wait_idle(ed, &sd);
  check(a->ntok[0] == 4 && b->ntok[0] == 4 && a->lp[0][0] <= 0 && sd.device_sampled == before,
        "device sampling: logprobs and penalties keep the host path");
  coll_free(a);
  coll_free(b);
  mlc_engine_free(ed);
  mlc_engine_free(eh);
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/models/default", root);
  double t0 = mlc_now();
  test_stop();
  test_sampler();
  test_engine(dir, 16384, 16, "large KV");
  test_engine(dir, 256, 48, "small KV");
  double t1 = mlc_now();
  test_params(dir);
  printf("params: %.1f s\n", mlc_now() - t1);
  t1 = mlc_now();
  test_device_sampling(dir);
  printf("device sampling: %.1f s\n", mlc_now() - t1);
  printf("test_engine: %d passed, %d failed (%.1f s)\n", passed, failed, mlc_now() - t0);
  return failed ? 1 : 0;
}
