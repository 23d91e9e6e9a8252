/* engine.c: the continuous-batching engine (docs/engine.md): one thread that owns the model,
 * admits requests, runs mixed prefill/decode steps, samples, detokenizes and calls back. */
#include "engine/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar.h"
#include "engine/sampler.h"
#include "runtime/runtime.h"

/* ---- stop strings ---- */

bool mlc_stop_scan(mlc_buf *hold, const char *add, const char *const *stop, int n_stop, bool final, char **out) {
  if (add && *add)
    mlc_buf_puts(hold, add);
  const char *h = hold->data ? hold->data : "";
  size_t hl = hold->len;
  /* the earliest stop string occurrence */
  size_t best = (size_t)-1;
  for (int i = 0; i < n_stop; i++) {
    if (!stop[i][0])
      continue;
    const char *f = strstr(h, stop[i]);
    if (f && (size_t)(f - h) < best)
      best = (size_t)(f - h);
  }
  if (best != (size_t)-1) {
    *out = mlc_malloc(best + 1);
    memcpy(*out, h, best);
    (*out)[best] = 0;
    hold->len = 0;
    if (hold->data)
      hold->data[0] = 0;
    return true;
  }
  /* keep the longest suffix that is a proper prefix of some stop string */
  size_t keep = 0;
  if (!final)
    for (int i = 0; i < n_stop; i++) {
      size_t sl = strlen(stop[i]);
      if (!sl)
        continue;
      for (size_t k = sl - 1 < hl ? sl - 1 : hl; k > keep; k--)
        if (!memcmp(h + hl - k, stop[i], k)) {
          keep = k;
          break;
        }
    }
  size_t emit = hl - keep;
  *out = mlc_malloc(emit + 1);
  memcpy(*out, h, emit);
  (*out)[emit] = 0;
  if (emit) {
    memmove(hold->data, h + emit, keep + 1);
    hold->len = keep;
  }
  return false;
}

/* ---- state ---- */

typedef struct request request;

typedef struct choice {
  request *req;
  int index;
  mlc_seq *seq;      /* NULL: not holding KV (waiting, preempted, waiting for the fork, finished) */
  int32_t *toks;     /* prompt + generated */
  int ntoks, cap;
  int ngen;
  uint64_t rng;
  mlc_tok_stream *ds;
  mlc_buf hold;      /* text held back for stop strings */
  mlc_finish finish;
  bool fork_wait;    /* choices 1..n-1 until the prompt is prefilled by choice 0 */
  mlc_grammar_state *gs; /* structured output: the parser of the text so far */
} choice;

struct request {
  uint64_t id;
  mlc_gen_params p;
  char **stop;
  int32_t *stop_ids, *bias_ids;
  float *bias_values;
  mlc_grammar *grammar; /* structured output (json_schema), shared by the choices */
  int n_prompt;
  mlc_engine_cb cb;
  void *user;
  choice *ch;
  int n, n_done;
  bool cancelled, prompt_done;
  int cached_tokens;
  request *next; /* inbox link */
};

typedef struct pc_entry pc_entry;
typedef struct pc_node {
  int32_t tok[MLC_KV_PAGE];
  struct pc_node *parent, **kids;
  int nkids, capkids;
  pc_entry *owner;
} pc_node;
struct pc_entry {
  mlc_seq *seq;
  pc_node *leaf;
  int len;
  uint64_t last_used;
};

struct mlc_engine {
  mlc_model *m;
  mlc_tokenizer *tok;
  char *dir;
  int V, ctx, step_tokens, max_batch, cache_slots, mixed_prefill;
  int32_t eos[10];
  int n_eos;
  pthread_t th;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool quit;
  request *inbox, *inbox_tail;
  uint64_t *cancels;
  int ncancel, capcancel;
  uint64_t next_id, seed_ctr;
  mlc_engine_stats st; /* under mu */
  /* engine thread only */
  request **run;  /* admitted, in admission order */
  int nrun;
  request **wait; /* FIFO; preempted requests go to the head */
  int nwait, capwait;
  int seqs_running;
  float *logits, *work, *prob;
  int32_t *idx;
  bool device_sampling;     /* the model picks tokens on the device (mlc_model_device_sampling) */
  mlc_sample_params *dsp;   /* [max_batch + 1] per step item: the device draw's parameters */
  int32_t *dtok;            /* [max_batch + 1] per step item: the token the device drew */
  int *cnt;
  pc_node root;
  pc_entry **cache;
  int ncache;
  uint64_t tick;
  double rate_t[16];
  uint64_t rate_n[16];
  /* structured output: every token's bytes in a trie, built by the first json_schema request */
  pthread_mutex_t gmu;
  mlc_grammar_vocab *gvocab;
  uint8_t *gmask; /* [V], engine thread */
};

const mlc_tokenizer *mlc_engine_tokenizer(const mlc_engine *e) { return e->tok; }
const char *mlc_engine_model_dir(const mlc_engine *e) { return e->dir; }
int mlc_engine_vocab_size(const mlc_engine *e) { return e->V; }
int mlc_engine_context(const mlc_engine *e) { return e->ctx; }

/* ---- KV pages ---- */

static int free_pages(const mlc_engine *e) { return e->m->n_free; }

static int pages_needed(const mlc_seq *s, int n) {
  const mlc_model *m = s->m;
  int need = (s->len + n + MLC_KV_PAGE - 1) / MLC_KV_PAGE - s->npages;
  if (s->len % MLC_KV_PAGE && m->page_ref[m->in[MLC_IN_PAGES][(size_t)s->slot * m->max_pages + s->npages - 1]] > 1)
    need++;
  return need;
}

/* ---- prefix cache: a radix tree of full pages ---- */

static pc_node *pc_child(pc_node *n, const int32_t *tok) {
  for (int i = 0; i < n->nkids; i++)
    if (!memcmp(n->kids[i]->tok, tok, sizeof(int32_t) * MLC_KV_PAGE))
      return n->kids[i];
  return NULL;
}

static void pc_evict(mlc_engine *e, pc_entry *E) {
  mlc_seq_free(E->seq);
  pc_node *n = E->leaf;
  while (n != &e->root && n->nkids == 0) {
    pc_node *p = n->parent;
    for (int i = 0; i < p->nkids; i++)
      if (p->kids[i] == n) {
        p->kids[i] = p->kids[--p->nkids];
        break;
      }
    free(n->kids);
    free(n);
    n = p;
  }
  for (; n != &e->root && n->owner == E; n = n->parent)
    n->owner = n->kids[0]->owner;
  for (int i = 0; i < e->ncache; i++)
    if (e->cache[i] == E) {
      e->cache[i] = e->cache[--e->ncache];
      break;
    }
  free(E);
}

static bool pc_evict_lru(mlc_engine *e) {
  if (!e->ncache)
    return false;
  pc_entry *lru = e->cache[0];
  for (int i = 1; i < e->ncache; i++)
    if (e->cache[i]->last_used < lru->last_used)
      lru = e->cache[i];
  pc_evict(e, lru);
  return true;
}

/* The entry holding the longest page-aligned prefix of toks[0..n), or NULL. */
static pc_entry *pc_lookup(mlc_engine *e, const int32_t *toks, int n, int *matched) {
  pc_node *node = &e->root;
  int d = 0;
  while ((d + 1) * MLC_KV_PAGE <= n) {
    pc_node *k = pc_child(node, toks + d * MLC_KV_PAGE);
    if (!k)
      break;
    node = k;
    d++;
  }
  *matched = 0;
  if (!d)
    return NULL;
  node->owner->last_used = ++e->tick;
  *matched = d * MLC_KV_PAGE;
  return node->owner;
}

static void pc_insert(mlc_engine *e, mlc_seq *src, const int32_t *toks, int n) {
  int np = n / MLC_KV_PAGE;
  if (e->cache_slots <= 0 || np == 0)
    return;
  pc_node *node = &e->root;
  for (int d = 0; d < np; d++) {
    pc_node *k = pc_child(node, toks + d * MLC_KV_PAGE);
    if (!k) {
      k = calloc(1, sizeof *k);
      if (!k)
        return;
      memcpy(k->tok, toks + d * MLC_KV_PAGE, sizeof k->tok);
      k->parent = node;
      if (node->nkids == node->capkids) {
        int c = node->capkids ? node->capkids * 2 : 4;
        pc_node **nk = realloc(node->kids, sizeof *nk * (size_t)c);
        if (!nk) {
          free(k);
          return;
        }
        node->kids = nk;
        node->capkids = c;
      }
      node->kids[node->nkids++] = k;
    }
    node = k;
  }
  if (node->owner) { /* an entry already covers this prefix (it ends here or goes deeper) */
    node->owner->last_used = ++e->tick;
    return;
  }
  /* new leaf: make room, then fork */
  while (e->ncache >= e->cache_slots && pc_evict_lru(e)) {
  }
  pc_entry *E = calloc(1, sizeof *E);
  if (!E || mlc_seq_fork(src, np * MLC_KV_PAGE, &E->seq) != MLC_OK) {
    free(E);
    /* unlink the nodes made for it */
    while (node != &e->root && node->nkids == 0 && !node->owner) {
      pc_node *p = node->parent;
      for (int i = 0; i < p->nkids; i++)
        if (p->kids[i] == node) {
          p->kids[i] = p->kids[--p->nkids];
          break;
        }
      free(node->kids);
      free(node);
      node = p;
    }
    return;
  }
  E->leaf = node;
  E->len = np * MLC_KV_PAGE;
  E->last_used = ++e->tick;
  e->cache[e->ncache++] = E;
  /* own the path; entries ending on it are now redundant */
  pc_entry *stale[64];
  int ns = 0;
  for (pc_node *x = node; x != &e->root; x = x->parent) {
    if (x->owner && x->owner != E && x->owner->leaf == x && ns < 64)
      stale[ns++] = x->owner;
    x->owner = E;
  }
  for (int i = 0; i < ns; i++)
    pc_evict(e, stale[i]);
}

/* ---- requests ---- */

static void request_free(request *r) {
  if (!r)
    return;
  for (int i = 0; i < r->n; i++) {
    choice *c = &r->ch[i];
    mlc_seq_free(c->seq);
    free(c->toks);
    mlc_tok_stream_free(c->ds);
    mlc_buf_free(&c->hold);
    mlc_grammar_state_free(c->gs);
  }
  free(r->ch);
  mlc_grammar_free(r->grammar);
  for (int i = 0; i < r->p.n_stop; i++)
    free(r->stop[i]);
  free(r->stop);
  free(r->stop_ids);
  free(r->bias_ids);
  free(r->bias_values);
  free(r);
}

static void seq_release(mlc_engine *e, choice *c) {
  if (c->seq) {
    mlc_seq_free(c->seq);
    c->seq = NULL;
    e->seqs_running--;
  }
}

static void emit(mlc_engine *e, request *r, choice *c, int32_t tok, float lp, int n_top, const int32_t *top_ids,
                 const float *top_lps, const char *text, mlc_finish fin, const char *err) {
  if (fin != MLC_FINISH_NONE && c->finish == MLC_FINISH_NONE) {
    c->finish = fin;
    r->n_done++;
    seq_release(e, c);
  }
  mlc_engine_event ev = {.request = r->id, .index = c->index, .token = tok, .logprob = lp, .n_top = n_top,
                         .top_ids = top_ids, .top_logprobs = top_lps, .text = text ? text : "", .finish = fin,
                         .request_done = r->n_done == r->n, .prompt_tokens = r->n_prompt,
                         .completion_tokens = c->ngen, .cached_tokens = r->cached_tokens, .error = err};
  r->cb(r->user, &ev);
}

/* Finishes every unfinished choice of r (the last event has request_done). */
static void finish_all(mlc_engine *e, request *r, mlc_finish fin, const char *err) {
  for (int i = 0; i < r->n; i++) {
    choice *c = &r->ch[i];
    if (c->finish != MLC_FINISH_NONE)
      continue;
    char *tail = NULL;
    if (fin != MLC_FINISH_CANCELLED && fin != MLC_FINISH_ERROR) {
      char *fl = NULL;
      if (c->ds)
        mlc_tok_stream_flush(c->ds, &fl);
      mlc_stop_scan(&c->hold, fl, (const char *const *)r->stop, r->p.n_stop, true, &tail);
      free(fl);
    }
    emit(e, r, c, -1, 0, 0, NULL, NULL, tail, fin, err);
    free(tail);
  }
}

static void stats_finish(mlc_engine *e, request *r) {
  pthread_mutex_lock(&e->mu);
  e->st.requests_total++;
  mlc_finish f = MLC_FINISH_STOP;
  for (int i = 0; i < r->n; i++)
    if (r->ch[i].finish > f)
      f = r->ch[i].finish;
  e->st.requests_by_finish[f]++;
  pthread_mutex_unlock(&e->mu);
}

/* ---- submit / cancel ---- */

mlc_status mlc_engine_submit(mlc_engine *e, const int32_t *prompt, int n_prompt, const mlc_gen_params *p,
                             mlc_engine_cb cb, void *user, uint64_t *id) {
  if (!e || !p || !cb || n_prompt <= 0 || !prompt)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_engine_submit: needs an engine, a non-empty prompt, params and a callback");
  for (int i = 0; i < n_prompt; i++)
    if (prompt[i] < 0 || prompt[i] >= e->V)
      return mlc_err(MLC_ERR_INVALID_ARG, "prompt token %d at position %d is outside the vocabulary (0..%d)", prompt[i], i,
                     e->V - 1);
  if (n_prompt + 1 > e->ctx)
    return mlc_err(MLC_ERR_LIMIT, "the prompt has %d tokens; the context window is %d (one more is needed to generate)",
                   n_prompt, e->ctx);
  int total_pages = e->m->n_pages;
  if ((n_prompt + 1 + MLC_KV_PAGE - 1) / MLC_KV_PAGE > total_pages)
    return mlc_err(MLC_ERR_LIMIT, "the prompt has %d tokens; the KV cache holds %d", n_prompt, total_pages * MLC_KV_PAGE);
  int n = p->n ? p->n : 1;
  if (n < 1 || n > e->max_batch)
    return mlc_err(MLC_ERR_INVALID_ARG, "n = %d: must be in 1..%d (max_batch)", n, e->max_batch);
  if (p->max_tokens < 0 || p->temperature < 0 || p->top_p < 0 || p->top_p > 1 || p->top_k < 0 || p->min_p < 0 ||
      p->min_p > 1 || p->repetition_penalty < 0 || p->top_logprobs < 0 || p->top_logprobs > 20 || p->n_stop < 0 ||
      p->n_bias < 0 || p->n_stop_ids < 0 || !isfinite(p->temperature) || !isfinite(p->presence_penalty) ||
      !isfinite(p->frequency_penalty) || !isfinite(p->repetition_penalty))
    return mlc_err(MLC_ERR_INVALID_ARG, "invalid sampling parameters");
  for (int i = 0; i < p->n_bias; i++)
    if (p->bias_ids[i] < 0 || p->bias_ids[i] >= e->V || !isfinite(p->bias_values[i]))
      return mlc_err(MLC_ERR_INVALID_ARG, "logit_bias: token %d is outside the vocabulary (0..%d)", p->bias_ids[i], e->V - 1);
  for (int i = 0; i < p->n_stop_ids; i++)
    if (p->stop_ids[i] < 0 || p->stop_ids[i] >= e->V)
      return mlc_err(MLC_ERR_INVALID_ARG, "stop token %d is outside the vocabulary", p->stop_ids[i]);
  request *r = calloc(1, sizeof *r);
  if (!r)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  r->p = *p;
  r->p.n = n;
  r->n = n;
  r->n_prompt = n_prompt;
  r->cb = cb;
  r->user = user;
  bool ok = true;
  r->ch = calloc((size_t)n, sizeof *r->ch);
  ok = r->ch != NULL;
  if (ok && p->n_stop) {
    r->stop = calloc((size_t)p->n_stop, sizeof(char *));
    ok = r->stop != NULL;
    for (int i = 0; ok && i < p->n_stop; i++)
      ok = (r->stop[i] = mlc_strdup(p->stop[i] ? p->stop[i] : "")) != NULL;
  } else
    r->p.n_stop = 0;
  if (ok && p->n_stop_ids) {
    r->stop_ids = malloc(sizeof(int32_t) * (size_t)p->n_stop_ids);
    ok = r->stop_ids && memcpy(r->stop_ids, p->stop_ids, sizeof(int32_t) * (size_t)p->n_stop_ids);
  }
  if (ok && p->n_bias) {
    r->bias_ids = malloc(sizeof(int32_t) * (size_t)p->n_bias);
    r->bias_values = malloc(sizeof(float) * (size_t)p->n_bias);
    ok = r->bias_ids && r->bias_values;
    if (ok) {
      memcpy(r->bias_ids, p->bias_ids, sizeof(int32_t) * (size_t)p->n_bias);
      memcpy(r->bias_values, p->bias_values, sizeof(float) * (size_t)p->n_bias);
    }
  }
  r->p.stop = NULL;
  r->p.stop_ids = NULL;
  r->p.bias_ids = NULL;
  r->p.bias_values = NULL;
  r->p.json_schema = NULL;
  if (ok && p->json_schema) {
    mlc_status gst = MLC_OK;
    if (!e->tok)
      gst = mlc_err(MLC_ERR_INVALID_ARG, "structured output (json_schema) needs the model's tokenizer");
    if (gst == MLC_OK)
      gst = mlc_grammar_compile(p->json_schema, &r->grammar);
    if (gst == MLC_OK) {
      pthread_mutex_lock(&e->gmu);
      if (!e->gvocab)
        gst = mlc_grammar_vocab_from_tokenizer(e->tok, e->V, &e->gvocab);
      pthread_mutex_unlock(&e->gmu);
    }
    if (gst != MLC_OK) {
      request_free(r);
      return gst;
    }
  }
  pthread_mutex_lock(&e->mu);
  uint64_t seed = p->has_seed ? p->seed : e->seed_ctr++ * 0x9e3779b97f4a7c15ULL;
  r->id = ++e->next_id;
  pthread_mutex_unlock(&e->mu);
  for (int i = 0; ok && i < n; i++) {
    choice *c = &r->ch[i];
    c->req = r;
    c->index = i;
    c->cap = n_prompt + 64;
    c->toks = malloc(sizeof(int32_t) * (size_t)c->cap);
    ok = c->toks != NULL;
    if (!ok)
      break;
    memcpy(c->toks, prompt, sizeof(int32_t) * (size_t)n_prompt);
    c->ntoks = n_prompt;
    c->rng = seed + (uint64_t)i * 0xd1b54a32d192ed03ULL;
    c->fork_wait = i > 0;
    if (e->tok && mlc_tok_stream_new(e->tok, p->skip_special != 0, &c->ds) != MLC_OK)
      ok = false;
    if (ok && r->grammar && mlc_grammar_state_new(r->grammar, &c->gs) != MLC_OK)
      ok = false;
  }
  if (!ok) {
    request_free(r);
    return mlc_err(MLC_ERR_NOMEM, "out of memory for a request");
  }
  pthread_mutex_lock(&e->mu);
  if (e->inbox_tail)
    e->inbox_tail->next = r;
  else
    e->inbox = r;
  e->inbox_tail = r;
  e->st.waiting++;
  e->st.prompt_tokens += (uint64_t)n_prompt;
  if (id)
    *id = r->id;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  return MLC_OK;
}

void mlc_engine_cancel(mlc_engine *e, uint64_t id) {
  if (!e)
    return;
  pthread_mutex_lock(&e->mu);
  if (e->ncancel == e->capcancel) {
    int c = e->capcancel ? e->capcancel * 2 : 16;
    uint64_t *nc = realloc(e->cancels, sizeof *nc * (size_t)c);
    if (nc) {
      e->cancels = nc;
      e->capcancel = c;
    }
  }
  if (e->ncancel < e->capcancel)
    e->cancels[e->ncancel++] = id;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
}

void mlc_engine_stats_get(mlc_engine *e, mlc_engine_stats *out) {
  pthread_mutex_lock(&e->mu);
  *out = e->st;
  pthread_mutex_unlock(&e->mu);
}

/* ---- sampling ---- */

static bool is_stop_token(const mlc_engine *e, const request *r, int32_t t) {
  if (!r->p.ignore_eos)
    for (int i = 0; i < e->n_eos; i++)
      if (e->eos[i] == t)
        return true;
  for (int i = 0; i < r->p.n_stop_ids; i++)
    if (r->stop_ids[i] == t)
      return true;
  return false;
}

static mlc_sampling sampling_of(const mlc_gen_params *p) {
  return (mlc_sampling){.temperature = p->temperature, .top_p = p->top_p, .top_k = p->top_k, .min_p = p->min_p};
}

/* Whether c's next token can be picked on the device (MLC_OP_SAMPLE; docs/engine.md): nothing of
 * the request needs the logits on the host (logprobs, structured output, penalties, logit bias),
 * and the step does not also draw the first tokens of c's sibling choices from the same row. */
static bool device_sample_ok(const mlc_engine *e, const choice *c) {
  const request *r = c->req;
  const mlc_gen_params *p = &r->p;
  return e->device_sampling && !p->logprobs && !p->top_logprobs && !c->gs && !p->n_bias &&
         !(p->repetition_penalty > 0 && p->repetition_penalty != 1) && p->presence_penalty == 0 &&
         p->frequency_penalty == 0 && !(c->index == 0 && !r->prompt_done && r->n > 1);
}

static void take_token(mlc_engine *e, choice *c, int32_t tok, float lp, int ntop, const int32_t *top_ids,
                       const float *top_lps);

/* Samples the next token of c from one row of logits, appends it and calls back. */
static void sample_choice(mlc_engine *e, choice *c, const float *row) {
  request *r = c->req;
  const mlc_gen_params *p = &r->p;
  int V = e->V;
  float *w = e->work;
  memcpy(w, row, sizeof(float) * (size_t)V);
  for (int i = 0; i < p->n_bias; i++)
    w[r->bias_ids[i]] += r->bias_values[i];
  if (p->repetition_penalty > 0 && p->repetition_penalty != 1) {
    for (int i = 0; i < c->ntoks; i++) {
      int32_t t = c->toks[i];
      if (!e->cnt[t]) {
        e->cnt[t] = 1;
        w[t] = w[t] > 0 ? w[t] / p->repetition_penalty : w[t] * p->repetition_penalty;
      }
    }
    for (int i = 0; i < c->ntoks; i++)
      e->cnt[c->toks[i]] = 0;
  }
  if (p->presence_penalty != 0 || p->frequency_penalty != 0) {
    for (int i = r->n_prompt; i < c->ntoks; i++)
      e->cnt[c->toks[i]]++;
    for (int i = r->n_prompt; i < c->ntoks; i++) {
      int32_t t = c->toks[i];
      if (e->cnt[t]) {
        w[t] -= p->presence_penalty + (float)e->cnt[t] * p->frequency_penalty;
        e->cnt[t] = 0;
      }
    }
  }
  if (c->gs) {
    /* structured output: only tokens the automaton accepts; the end (EOS, stop ids) only after a
     * complete value */
    int allowed = mlc_grammar_mask(e->gvocab, c->gs, e->gmask);
    bool end_ok = mlc_grammar_accepting(c->gs);
    for (int i = 0; i < e->n_eos; i++) {
      e->gmask[e->eos[i]] = end_ok && !p->ignore_eos;
      allowed += end_ok && !p->ignore_eos;
    }
    for (int i = 0; i < p->n_stop_ids; i++) {
      e->gmask[r->stop_ids[i]] = end_ok;
      allowed += end_ok;
    }
    if (!allowed) {
      emit(e, r, c, -1, 0, 0, NULL, NULL, NULL, MLC_FINISH_ERROR,
           "structured output: no token of the vocabulary can continue the JSON text");
      return;
    }
    for (int i = 0; i < V; i++)
      if (!e->gmask[i])
        w[i] = -INFINITY;
  }
  mlc_sampling sp = sampling_of(p);
  int32_t tok = mlc_sample_logits(&sp, &c->rng, w, V, e->prob, e->idx);
  if (c->gs && !e->gmask[tok]) /* only a rounding fallback of the draw can land here */
    tok = mlc_argmax(w, V);
  float lp = 0;
  int ntop = 0;
  int32_t top_ids[20];
  float top_lps[20];
  if (p->logprobs || p->top_logprobs) {
    float mx = w[mlc_argmax(w, V)];
    double s = 0;
    for (int i = 0; i < V; i++)
      s += exp((double)w[i] - mx);
    float lse = mx + (float)log(s);
    lp = w[tok] - lse;
    int k = p->top_logprobs;
    for (int i = 0; i < V && k; i++) {
      float v = w[i];
      if (v == -INFINITY) /* masked by the grammar */
        continue;
      if (ntop < k || v > w[top_ids[ntop - 1]]) {
        int j = ntop < k ? ntop++ : k - 1;
        while (j > 0 && w[top_ids[j - 1]] < v) {
          top_ids[j] = top_ids[j - 1];
          j--;
        }
        top_ids[j] = i;
      }
    }
    for (int i = 0; i < ntop; i++)
      top_lps[i] = w[top_ids[i]] - lse;
  }
  take_token(e, c, tok, lp, ntop, top_ids, top_lps);
}

/* Appends the sampled token tok to c (from the host sampler or the device), feeds the grammar and
 * the detokenizer, and calls back. */
static void take_token(mlc_engine *e, choice *c, int32_t tok, float lp, int ntop, const int32_t *top_ids,
                       const float *top_lps) {
  request *r = c->req;
  const mlc_gen_params *p = &r->p;
  if (c->ntoks == c->cap) {
    int nc = c->cap * 2;
    int32_t *nt = realloc(c->toks, sizeof(int32_t) * (size_t)nc);
    if (!nt) {
      emit(e, r, c, -1, 0, 0, NULL, NULL, NULL, MLC_FINISH_ERROR, "out of memory");
      return;
    }
    c->toks = nt;
    c->cap = nc;
  }
  c->toks[c->ntoks++] = tok;
  c->ngen++;
  pthread_mutex_lock(&e->mu);
  e->st.generated_tokens++;
  pthread_mutex_unlock(&e->mu);
  mlc_finish fin = MLC_FINISH_NONE;
  char *piece = NULL, *out = NULL;
  bool eos = is_stop_token(e, r, tok);
  bool gdone = false; /* structured output: the value is complete and nothing may follow */
  if (c->gs && !eos) {
    if (!mlc_grammar_feed_token(e->gvocab, c->gs, tok)) {
      emit(e, r, c, -1, 0, 0, NULL, NULL, NULL, MLC_FINISH_ERROR, "structured output: a masked token was sampled");
      return;
    }
    gdone = mlc_grammar_finished(c->gs);
  }
  if (!eos && c->ds)
    mlc_tok_stream_put(c->ds, tok, &piece);
  bool at_limit = (p->max_tokens > 0 && c->ngen >= p->max_tokens) || c->ntoks >= e->ctx;
  bool final = eos || at_limit || gdone;
  char *fl = NULL;
  if (final && c->ds) {
    mlc_tok_stream_flush(c->ds, &fl);
    if (fl && *fl) {
      size_t a = piece ? strlen(piece) : 0, b = strlen(fl);
      char *j = mlc_malloc(a + b + 1);
      if (j) {
        memcpy(j, piece ? piece : "", a);
        memcpy(j + a, fl, b + 1);
        free(piece);
        piece = j;
      }
    }
    free(fl);
  }
  bool stopped = mlc_stop_scan(&c->hold, piece, (const char *const *)r->stop, p->n_stop, final, &out);
  if (stopped || eos || gdone)
    fin = MLC_FINISH_STOP;
  else if (at_limit)
    fin = MLC_FINISH_LENGTH;
  emit(e, r, c, tok, lp, ntop, top_ids, top_lps, out, fin, NULL);
  free(piece);
  free(out);
}

/* ---- the scheduler ---- */

static void remove_run(mlc_engine *e, int i) {
  memmove(e->run + i, e->run + i + 1, sizeof *e->run * (size_t)(e->nrun - i - 1));
  e->nrun--;
}

static bool wait_push(mlc_engine *e, request *r, bool front) {
  if (e->nwait == e->capwait) {
    int c = e->capwait ? e->capwait * 2 : 64;
    request **nw = realloc(e->wait, sizeof *nw * (size_t)c);
    if (!nw)
      return false;
    e->wait = nw;
    e->capwait = c;
  }
  if (front) {
    memmove(e->wait + 1, e->wait, sizeof *e->wait * (size_t)e->nwait);
    e->wait[0] = r;
  } else
    e->wait[e->nwait] = r;
  e->nwait++;
  return true;
}

static void preempt(mlc_engine *e, int ri) {
  request *r = e->run[ri];
  for (int i = 0; i < r->n; i++)
    seq_release(e, &r->ch[i]);
  remove_run(e, ri);
  if (!wait_push(e, r, true)) {
    finish_all(e, r, MLC_FINISH_ERROR, "out of memory");
    stats_finish(e, r);
    request_free(r);
  }
  pthread_mutex_lock(&e->mu);
  e->st.preemptions++;
  pthread_mutex_unlock(&e->mu);
}

/* Drops finished requests from run. */
static void reap(mlc_engine *e) {
  for (int i = 0; i < e->nrun;) {
    request *r = e->run[i];
    if (r->n_done == r->n) {
      stats_finish(e, r);
      remove_run(e, i);
      request_free(r);
    } else
      i++;
  }
}

static void take_inbox(mlc_engine *e) {
  pthread_mutex_lock(&e->mu);
  request *in = e->inbox;
  e->inbox = e->inbox_tail = NULL;
  int nc = e->ncancel;
  uint64_t cancels[64];
  if (nc > 64)
    nc = 64;
  memcpy(cancels, e->cancels, sizeof(uint64_t) * (size_t)nc);
  memmove(e->cancels, e->cancels + nc, sizeof(uint64_t) * (size_t)(e->ncancel - nc));
  e->ncancel -= nc;
  pthread_mutex_unlock(&e->mu);
  while (in) {
    request *nx = in->next;
    in->next = NULL;
    if (!wait_push(e, in, false)) {
      finish_all(e, in, MLC_FINISH_ERROR, "out of memory");
      stats_finish(e, in);
      request_free(in);
    }
    in = nx;
  }
  for (int k = 0; k < nc; k++) {
    for (int i = 0; i < e->nrun; i++)
      if (e->run[i]->id == cancels[k])
        finish_all(e, e->run[i], MLC_FINISH_CANCELLED, NULL);
    for (int i = 0; i < e->nwait; i++)
      if (e->wait[i]->id == cancels[k]) {
        request *r = e->wait[i];
        memmove(e->wait + i, e->wait + i + 1, sizeof *e->wait * (size_t)(e->nwait - i - 1));
        e->nwait--;
        finish_all(e, r, MLC_FINISH_CANCELLED, NULL);
        stats_finish(e, r);
        request_free(r);
        break;
      }
  }
  reap(e);
}

/* Choices of r that need a sequence now (not finished, not holding one, not waiting for the fork). */
static int seqs_wanted(const request *r) {
  int k = 0;
  for (int i = 0; i < r->n; i++) {
    const choice *c = &r->ch[i];
    if (c->finish == MLC_FINISH_NONE && !c->seq && !c->fork_wait)
      k++;
  }
  return k;
}
/* Slots r will take in all (waiting forks included). */
static int seqs_total(const request *r) {
  int k = 0;
  for (int i = 0; i < r->n; i++)
    if (r->ch[i].finish == MLC_FINISH_NONE && !r->ch[i].seq)
      k++;
  return k;
}

typedef struct step_item {
  choice *c;
  int n;
  bool logits;
} step_item;

static int fork_reserved(const mlc_engine *e) {
  int k = 0;
  for (int i = 0; i < e->nrun; i++)
    for (int j = 0; j < e->run[i]->n; j++)
      if (e->run[i]->ch[j].fork_wait && e->run[i]->ch[j].finish == MLC_FINISH_NONE)
        k++;
  return k;
}

/* Gives choice c a sequence (a fork of the longest cached prefix, else a new one) and plans its
 * first chunk as items[ni]. Returns the chunk's tokens, 0 if there is no room (nothing changed). */
static int try_attach(mlc_engine *e, choice *c, int budget, int *fp, step_item *items, int ni) {
  int matched = 0;
  pc_entry *E = pc_lookup(e, c->toks, c->ntoks, &matched);
  if (matched >= c->ntoks)
    matched = c->ntoks - 1;
  int rem = c->ntoks - matched, n = rem < budget ? rem : budget;
  if (n <= 0)
    return 0;
  /* pages for the chunk, plus a page of headroom per running sequence */
  int need = (matched % MLC_KV_PAGE ? 1 : 0) + (matched + n + MLC_KV_PAGE - 1) / MLC_KV_PAGE -
             (matched + MLC_KV_PAGE - 1) / MLC_KV_PAGE + e->seqs_running;
  while (need > *fp && e->ncache > (E ? 1 : 0) && pc_evict_lru(e)) {
    E = pc_lookup(e, c->toks, c->ntoks, &matched);
    if (matched >= c->ntoks)
      matched = c->ntoks - 1;
    *fp = free_pages(e);
    for (int k = 0; k < ni; k++)
      *fp -= pages_needed(items[k].c->seq, items[k].n);
  }
  if (need > *fp)
    return 0;
  rem = c->ntoks - matched;
  n = rem < budget ? rem : budget;
  if (n <= 0 || (E ? mlc_seq_fork(E->seq, matched, &c->seq) : mlc_seq_new(e->m, &c->seq)) != MLC_OK) {
    c->seq = NULL;
    return 0;
  }
  e->seqs_running++;
  request *r = c->req;
  pthread_mutex_lock(&e->mu);
  e->st.cache_lookups++;
  if (matched) {
    e->st.cache_hits++;
    e->st.cache_hit_tokens += (uint64_t)matched;
  }
  pthread_mutex_unlock(&e->mu);
  if (c->index == 0 && !r->prompt_done)
    r->cached_tokens = matched;
  *fp -= pages_needed(c->seq, n);
  items[ni] = (step_item){c, n, n == rem};
  return n;
}

/* Plans and runs one step. Returns false when there was nothing to do. */
static bool engine_step(mlc_engine *e) {
  int budget = e->step_tokens;
  step_item *items = malloc(sizeof *items * (size_t)(e->max_batch + 1));
  mlc_batch_item *bi = malloc(sizeof *bi * (size_t)(e->max_batch + 1));
  if (!items || !bi) {
    free(items);
    free(bi);
    return false;
  }
  int ni = 0;
  /* 1. decodes, with pages for them (evict the cache, then preempt the newest request) */
  for (;;) {
    ni = 0;
    int need = 0;
    for (int i = 0; i < e->nrun; i++)
      for (int j = 0; j < e->run[i]->n; j++) {
        choice *c = &e->run[i]->ch[j];
        if (c->seq && c->finish == MLC_FINISH_NONE && c->ntoks - c->seq->len == 1 && ni < budget) {
          items[ni++] = (step_item){c, 1, true};
          need += pages_needed(c->seq, 1);
        }
      }
    if (need <= free_pages(e))
      break;
    if (pc_evict_lru(e))
      continue;
    if (e->nrun > 1) {
      preempt(e, e->nrun - 1);
      continue;
    }
    /* one request alone does not fit: it has filled the KV cache */
    if (e->nrun == 1)
      finish_all(e, e->run[0], MLC_FINISH_LENGTH, NULL);
    reap(e);
    ni = 0;
    break;
  }
  budget -= ni;
  int decodes = ni;
  if (decodes && budget > e->mixed_prefill)
    budget = e->mixed_prefill; /* keep the decoding requests' steps short */
  int fp = free_pages(e);
  for (int i = 0; i < ni; i++)
    fp -= pages_needed(items[i].c->seq, 1);
  /* 2. prefills of admitted choices */
  for (int i = 0; i < e->nrun && budget > 0 && ni < e->max_batch; i++)
    for (int j = 0; j < e->run[i]->n && budget > 0 && ni < e->max_batch; j++) {
      choice *c = &e->run[i]->ch[j];
      if (!c->seq && !c->fork_wait && c->finish == MLC_FINISH_NONE && e->seqs_running < e->max_batch) {
        /* a choice of a partly admitted request */
        int n = try_attach(e, c, budget, &fp, items, ni);
        if (n) {
          ni++;
          budget -= n;
        }
        continue;
      }
      if (!c->seq || c->finish != MLC_FINISH_NONE || c->ntoks - c->seq->len <= 1)
        continue;
      int rem = c->ntoks - c->seq->len, n = rem < budget ? rem : budget;
      while (n > 0 && pages_needed(c->seq, n) > fp) {
        if (pc_evict_lru(e)) {
          fp = free_pages(e);
          for (int k = 0; k < ni; k++)
            fp -= pages_needed(items[k].c->seq, items[k].n);
          continue;
        }
        n = n > MLC_KV_PAGE ? (n - MLC_KV_PAGE) / MLC_KV_PAGE * MLC_KV_PAGE : 0;
      }
      if (n <= 0)
        continue;
      fp -= pages_needed(c->seq, n);
      items[ni++] = (step_item){c, n, n == rem};
      budget -= n;
    }
  /* 3. admission (FIFO) */
  while (e->nwait && budget > 0 && ni < e->max_batch) {
    request *r = e->wait[0];
    int want = seqs_wanted(r), total = seqs_total(r);
    if (e->seqs_running + fork_reserved(e) + total > e->max_batch || ni + want > e->max_batch)
      break;
    bool ok = true;
    for (int j = 0; j < r->n && ok && budget > 0; j++) {
      choice *c = &r->ch[j];
      if (c->finish != MLC_FINISH_NONE || c->seq || c->fork_wait)
        continue;
      int n = try_attach(e, c, budget, &fp, items, ni);
      if (!n) {
        ok = false;
        break;
      }
      ni++;
      budget -= n;
    }
    bool admitted_any = false;
    for (int j = 0; j < r->n; j++)
      admitted_any |= r->ch[j].seq != NULL;
    if (!admitted_any)
      break;
    memmove(e->wait, e->wait + 1, sizeof *e->wait * (size_t)(e->nwait - 1));
    e->nwait--;
    e->run[e->nrun++] = r;
    if (!ok)
      break;
  }
  if (!ni) {
    free(items);
    free(bi);
    return false;
  }
  /* run */
  int nl = 0;
  int prefill_toks = 0;
  for (int i = 0; i < ni; i++) {
    choice *c = items[i].c;
    bool dev = items[i].logits && device_sample_ok(e, c);
    if (dev) { /* the draw's uniform from c's generator now; the token comes back with the step */
      mlc_sampling sp = sampling_of(&c->req->p);
      mlc_sample_device_params(&sp, &c->rng, &e->dsp[i]);
    }
    bi[i] = (mlc_batch_item){.seq = c->seq, .ids = c->toks + c->seq->len, .n = items[i].n,
                             .n_logits = items[i].logits ? 1 : 0,
                             .logits = items[i].logits && !dev ? e->logits + (size_t)nl * e->V : NULL,
                             .sample = dev ? &e->dsp[i] : NULL, .token = dev ? &e->dtok[i] : NULL};
    nl += items[i].logits;
    if (i >= decodes)
      prefill_toks += items[i].n;
  }
  mlc_status st = mlc_batch_forward(e->m, bi, ni);
  if (st != MLC_OK) {
    const char *msg = mlc_last_error();
    for (int i = 0; i < ni; i++)
      finish_all(e, items[i].c->req, MLC_FINISH_ERROR, msg);
    reap(e);
    free(items);
    free(bi);
    return true;
  }
  pthread_mutex_lock(&e->mu);
  e->st.prefill_tokens += (uint64_t)prefill_toks;
  e->st.steps++;
  pthread_mutex_unlock(&e->mu);
  /* sample */
  nl = 0;
  for (int i = 0; i < ni; i++) {
    if (!items[i].logits)
      continue;
    const float *row = e->logits + (size_t)nl++ * e->V;
    choice *c = items[i].c;
    request *r = c->req;
    if (c->finish != MLC_FINISH_NONE)
      continue;
    if (c->index == 0 && !r->prompt_done) {
      r->prompt_done = true;
      pc_insert(e, c->seq, c->toks, r->n_prompt);
      for (int j = 1; j < r->n; j++) {
        choice *s = &r->ch[j];
        if (!s->fork_wait || s->finish != MLC_FINISH_NONE)
          continue;
        s->fork_wait = false;
        if (mlc_seq_fork(c->seq, r->n_prompt, &s->seq) != MLC_OK) {
          s->seq = NULL; /* it will be admitted again after a preemption-like recompute */
          continue;
        }
        e->seqs_running++;
        sample_choice(e, s, row);
      }
    }
    if (bi[i].sample) {
      pthread_mutex_lock(&e->mu);
      e->st.device_sampled++;
      pthread_mutex_unlock(&e->mu);
      take_token(e, c, e->dtok[i], 0, 0, NULL, NULL);
    } else
      sample_choice(e, c, row);
  }
  reap(e);
  free(items);
  free(bi);
  return true;
}

static void update_stats(mlc_engine *e) {
  int used, total;
  mlc_model_kv_pages(e->m, &used, &total);
  int cp = 0;
  for (int i = 0; i < e->ncache; i++)
    cp += e->cache[i]->len / MLC_KV_PAGE;
  double now = mlc_now();
  pthread_mutex_lock(&e->mu);
  e->st.kv_pages_used = used;
  e->st.kv_pages_total = total;
  e->st.cache_entries = e->ncache;
  e->st.cache_pages = cp;
  e->st.running = e->nrun;
  int inbox = 0;
  for (request *r = e->inbox; r; r = r->next)
    inbox++;
  e->st.waiting = e->nwait + inbox;
  /* tokens/s over the last ~8 s, in one-second buckets */
  int b = (int)now & 15;
  if ((int)e->rate_t[b] != (int)now) {
    e->rate_t[b] = (int)now;
    e->rate_n[b] = e->st.generated_tokens;
  }
  int ob = ((int)now - 8) & 15;
  if ((int)e->rate_t[ob] == (int)now - 8)
    e->st.tokens_per_s = (double)(e->st.generated_tokens - e->rate_n[ob]) / 8.0;
  else
    e->st.tokens_per_s = 0;
  pthread_mutex_unlock(&e->mu);
}

static void *engine_main(void *arg) {
  mlc_engine *e = arg;
  for (;;) {
    take_inbox(e);
    bool worked = engine_step(e);
    update_stats(e);
    if (worked)
      continue;
    pthread_mutex_lock(&e->mu);
    bool q = e->quit;
    if (!q && !e->inbox && !e->ncancel) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += 1;
      pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    q = e->quit;
    pthread_mutex_unlock(&e->mu);
    if (q)
      break;
  }
  /* shutting down: cancel everything */
  take_inbox(e);
  for (int i = 0; i < e->nrun; i++)
    finish_all(e, e->run[i], MLC_FINISH_CANCELLED, NULL);
  reap(e);
  for (int i = 0; i < e->nwait; i++) {
    finish_all(e, e->wait[i], MLC_FINISH_CANCELLED, NULL);
    request_free(e->wait[i]);
  }
  e->nwait = 0;
  return NULL;
}

/* ---- lifetime ---- */

mlc_status mlc_engine_new(const char *model_dir, const mlc_engine_options *opt, mlc_engine **out) {
  *out = NULL;
  mlc_engine_options o = opt ? *opt : (mlc_engine_options){0};
  mlc_engine *e = calloc(1, sizeof *e);
  if (!e)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  pthread_mutex_init(&e->gmu, NULL);
  e->seed_ctr = (uint64_t)(mlc_now() * 1e6); /* unseeded requests differ across runs too */
  e->max_batch = o.max_batch > 0 ? o.max_batch : 16;
  e->cache_slots = o.cache_slots < 0 ? 0 : o.cache_slots > 0 ? o.cache_slots : e->max_batch;
  mlc_model_options mo = o.model;
  mo.max_batch = e->max_batch + e->cache_slots;
  mo.max_total_tokens = o.max_total_tokens > 0 ? o.max_total_tokens : 16384;
  e->dir = mlc_strdup(model_dir);
  mlc_status st = mlc_model_load(model_dir, &mo, &e->m);
  if (st != MLC_OK) {
    mlc_engine_free(e);
    return st;
  }
  char *tj = mlc_path_join(model_dir, "tokenizer.json"), *tg = mlc_path_join(model_dir, "tokenizer.json.gz"),
       *tm = mlc_path_join(model_dir, "tokenizer.model");
  if ((tj && mlc_file_exists(tj)) || (tg && mlc_file_exists(tg)) || (tm && mlc_file_exists(tm)))
    st = mlc_tok_load(model_dir, &e->tok);
  free(tj);
  free(tg);
  free(tm);
  if (st != MLC_OK) {
    mlc_engine_free(e);
    return st;
  }
  e->V = mlc_model_vocab_size(e->m);
  e->ctx = mlc_model_context(e->m);
  e->step_tokens = mlc_model_step_tokens(e->m);
  e->mixed_prefill = o.mixed_prefill < 0 ? e->step_tokens : o.mixed_prefill > 0 ? o.mixed_prefill : e->step_tokens / 4;
  if (e->mixed_prefill < 1)
    e->mixed_prefill = 1;
  const mlc_model_config *c = &e->m->cfg;
  for (int i = 0; i < c->n_eos && e->n_eos < 9; i++)
    e->eos[e->n_eos++] = c->eos_ids[i];
  if (!c->n_eos && c->eos_token_id >= 0)
    e->eos[e->n_eos++] = c->eos_token_id;
  if (e->tok && mlc_tok_eos_id(e->tok) >= 0)
    e->eos[e->n_eos++] = mlc_tok_eos_id(e->tok);
  size_t V = (size_t)e->V;
  e->logits = malloc(sizeof(float) * V * (size_t)(e->max_batch + 1));
  e->work = malloc(sizeof(float) * V);
  e->prob = malloc(sizeof(float) * V);
  e->idx = malloc(sizeof(int32_t) * V);
  e->cnt = calloc(V, sizeof(int));
  e->gmask = malloc(V);
  e->dsp = calloc((size_t)e->max_batch + 1, sizeof *e->dsp);
  e->dtok = calloc((size_t)e->max_batch + 1, sizeof *e->dtok);
  e->device_sampling = mlc_model_device_sampling(e->m);
  e->run = calloc((size_t)e->max_batch + 1, sizeof *e->run);
  e->cache = calloc((size_t)e->cache_slots + 1, sizeof *e->cache);
  if (!e->logits || !e->work || !e->prob || !e->idx || !e->cnt || !e->gmask || !e->dsp || !e->dtok || !e->run || !e->cache) {
    mlc_engine_free(e);
    return mlc_err(MLC_ERR_NOMEM, "out of memory for the engine");
  }
  int used, total;
  mlc_model_kv_pages(e->m, &used, &total);
  e->st.kv_pages_total = total;
  if (pthread_create(&e->th, NULL, engine_main, e) != 0) {
    mlc_engine_free(e);
    return mlc_err(MLC_ERR_INTERNAL, "cannot start the engine thread");
  }
  e->started = true;
  *out = e;
  return MLC_OK;
}

void mlc_engine_free(mlc_engine *e) {
  if (!e)
    return;
  if (e->started) {
    pthread_mutex_lock(&e->mu);
    e->quit = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
  }
  while (e->ncache)
    pc_evict(e, e->cache[0]);
  free(e->root.kids);
  free(e->run);
  free(e->wait);
  free(e->cache);
  free(e->cancels);
  free(e->logits);
  free(e->work);
  free(e->prob);
  free(e->idx);
  free(e->cnt);
  free(e->gmask);
  free(e->dsp);
  free(e->dtok);
  mlc_grammar_vocab_free(e->gvocab);
  mlc_tok_free(e->tok);
  mlc_model_free(e->m);
  free(e->dir);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
  pthread_mutex_destroy(&e->gmu);
  free(e);
}
