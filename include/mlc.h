/*
 * mlc.h: the public C API of MLC-C.
 *
 * Conventions: every fallible call returns an mlc_status (MLC_OK == 0) and writes its results
 * through trailing out-pointers; on failure mlc_last_error() returns a message naming the file,
 * field and value at fault (thread-local, valid until the next failing call on this thread).
 * Handles are opaque; *_free(NULL) is a no-op. The library never calls exit().
 */
#ifndef MLC_H
#define MLC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mlc_status {
  MLC_OK = 0,
  MLC_ERR_NOMEM = 1,       /* an allocation failed */
  MLC_ERR_IO = 2,          /* a file could not be opened, read, mapped or written */
  MLC_ERR_FORMAT = 3,      /* malformed input: JSON, safetensors, config, tokenizer */
  MLC_ERR_UNSUPPORTED = 4, /* valid input this build cannot handle (architecture, dtype) */
  MLC_ERR_DEVICE = 5,      /* a device or its toolchain failed */
  MLC_ERR_INVALID_ARG = 6, /* the caller passed a bad argument */
  MLC_ERR_INTERNAL = 7,    /* a broken invariant: a bug in MLC-C */
  MLC_ERR_LIMIT = 8        /* a size limit was exceeded (context window, KV cache) */
} mlc_status;

/* A static string naming the status. */
const char *mlc_status_str(mlc_status st);
/* The message of the last failure on this thread ("" if none). */
const char *mlc_last_error(void);

/* ---- models ---------------------------------------------------------------------------- */

typedef struct mlc_model mlc_model;

typedef struct mlc_model_options {
  const char *device;      /* "cpu" (default) */
  const char *quant;       /* NULL or "q0f32": compute in f32 from the stored weights */
  int threads;             /* 0: all cores */
  int max_seq_len;         /* 0: the model's context window (capped by max_position_embeddings) */
  int prefill_chunk;       /* tokens per forward step; 0: 256 */
  int generic_kernels;     /* 1: use only the kernels built into libmlc (no C compiler at run time) */
  int max_batch;           /* sequences that may exist at once; 0: 4 */
  int max_total_tokens;    /* KV cache capacity over all sequences, in tokens; 0: max_seq_len */
  int tensor_parallel_shards; /* 0/1: one device; N: weights sharded over N ranks that step in
                                 lockstep with all-reduce after attention and FFN */
  int verbose;             /* 1: print compiler passes and kernel decisions to stderr */
} mlc_model_options;

/* Loads a model from a Hugging Face directory (config.json + safetensors). */
mlc_status mlc_model_load(const char *path, const mlc_model_options *opt, mlc_model **out);
void mlc_model_free(mlc_model *m);

int mlc_model_vocab_size(const mlc_model *m);
/* Human-readable summary (architecture, sizes, kernels); valid while m lives. */
const char *mlc_model_describe(const mlc_model *m);

/* A sequence: one conversation's KV cache on a model. */
typedef struct mlc_seq mlc_seq;
mlc_status mlc_seq_new(mlc_model *m, mlc_seq **out);
void mlc_seq_free(mlc_seq *s);
int mlc_seq_len(const mlc_seq *s);
/* Drops the KV cache entries from position `len` on. */
mlc_status mlc_seq_truncate(mlc_seq *s, int len);

/* A new sequence sharing the KV cache of the first `len` tokens of src (no copy: pages are
 * shared and copied on write). For prefix caching and n > 1 sampling. */
mlc_status mlc_seq_fork(mlc_seq *src, int len, mlc_seq **out);

/* Tokens one step can process (the prefill chunk); mlc_batch_forward takes at most this many. */
int mlc_model_step_tokens(const mlc_model *m);
/* KV cache pages (16 tokens each) in use and in total. */
void mlc_model_kv_pages(const mlc_model *m, int *used, int *total);
/* The context window in tokens. */
int mlc_model_context(const mlc_model *m);

/* Token selection on the device for one row of logits (docs/engine.md "Sampling on the device"):
 * greedy, or one draw from the softmax at `temperature` filtered by min_p, top_k and top_p as the
 * host sampler filters it; `uniform` is the draw, so a run is reproducible from its seed. */
typedef struct mlc_sample_params {
  float temperature; /* <= 0: greedy (the first index of the largest logit) */
  float top_p;       /* in (0, 1): the shortest most-likely prefix holding top_p of the mass; else off */
  int top_k;         /* >= 1: the k most likely; 0: off */
  float min_p;       /* in (0, 1]: tokens at least min_p times as likely as the top one; else off */
  float uniform;     /* in [0, 1): from the request's seeded generator */
} mlc_sample_params;

/* One sequence's part of a batched step. */
typedef struct mlc_batch_item {
  mlc_seq *seq;
  const int32_t *ids; /* n new tokens for seq */
  int n;
  int n_logits;       /* logits wanted for the last n_logits of them (0..n) */
  float *logits;      /* [n_logits, vocab] */
  /* with n_logits == 1: the token drawn on the device from that row goes to *token; logits may
   * then be NULL, and a step whose items all leave it NULL reads back only token ids */
  const mlc_sample_params *sample;
  int32_t *token;
} mlc_batch_item;

/*
 * One forward step over several sequences at once (continuous batching: some items prefill,
 * others decode one token). The total of n over items must not exceed mlc_model_step_tokens().
 * On error nothing is changed (no sequence advances).
 */
mlc_status mlc_batch_forward(mlc_model *m, const mlc_batch_item *items, int n_items);

/*
 * Feeds n token ids to the sequence. If logits != NULL it receives the logits of the last
 * `n_logits` positions, row-major [n_logits, vocab] floats (n_logits in 1..n).
 */
mlc_status mlc_seq_forward(mlc_seq *s, const int32_t *ids, int n, float *logits, int n_logits);
/* Feeds n token ids and draws the next token from the last position's logits on the device
 * (mlc_sample_params); only the id is read back. */
mlc_status mlc_seq_forward_sample(mlc_seq *s, const int32_t *ids, int n, const mlc_sample_params *sp, int32_t *token);


/* ---- engine: continuous batching over one model (docs/engine.md) ------------------------ */

typedef struct mlc_engine mlc_engine;

typedef struct mlc_engine_options {
  mlc_model_options model; /* model.max_batch / max_total_tokens are set from the fields below */
  int max_batch;           /* running sequences at once; 0: 16 */
  int max_total_tokens;    /* KV cache capacity in tokens (16 a page); 0: 16384 */
  int cache_slots;         /* prefix-cache entries; 0: max_batch; -1: no prefix cache */
  int mixed_prefill;       /* prefill tokens in a step that also decodes (bounds the inter-token
                              latency of running requests); 0: step tokens / 4; -1: no bound */
} mlc_engine_options;

/* Loads the model (and its tokenizer, if the directory has one) and starts the engine thread. */
mlc_status mlc_engine_new(const char *model_dir, const mlc_engine_options *opt, mlc_engine **out);
/* Cancels everything still running (callbacks get MLC_FINISH_CANCELLED), stops the thread, frees. */
void mlc_engine_free(mlc_engine *e);
int mlc_engine_context(const mlc_engine *e);

typedef enum mlc_finish {
  MLC_FINISH_NONE = 0,     /* still generating */
  MLC_FINISH_STOP = 1,     /* EOS, a stop token id or a stop string */
  MLC_FINISH_LENGTH = 2,   /* max_tokens or the context window */
  MLC_FINISH_CANCELLED = 3,
  MLC_FINISH_ERROR = 4
} mlc_finish;

typedef struct mlc_gen_params {
  int n;                    /* choices; 0: 1 */
  int max_tokens;           /* 0: up to the context window */
  float temperature;        /* 0: greedy */
  float top_p;              /* 0 or 1: off */
  int top_k;                /* 0: off */
  float min_p;              /* 0: off */
  float presence_penalty, frequency_penalty; /* -2..2 */
  float repetition_penalty; /* 0 or 1: off */
  int has_seed;
  uint64_t seed;
  int logprobs;             /* 1: report the sampled token's logprob */
  int top_logprobs;         /* 0..20 alternatives per token */
  const int32_t *bias_ids;  /* logit_bias: n_bias (id, value) pairs */
  const float *bias_values;
  int n_bias;
  const char *const *stop;  /* stop strings (not included in the text) */
  int n_stop;
  const int32_t *stop_ids;  /* extra stop token ids */
  int n_stop_ids;
  int ignore_eos;
  int skip_special;         /* 1: special tokens are left out of the text */
  const char *json_schema;  /* structured output: NULL: free text; else a JSON Schema (the subset of
                               src/engine/grammar.h) the text must match: every token the schema's
                               automaton rejects is masked, the end comes only after a complete
                               value. "{\"type\":\"object\"}": any JSON object. Needs a tokenizer. */
} mlc_gen_params;

typedef struct mlc_engine_event {
  uint64_t request;
  int index;                  /* the choice */
  int32_t token;              /* the sampled token, -1 when the event only finishes the choice */
  float logprob;
  int n_top;
  const int32_t *top_ids;     /* n_top alternatives, most likely first */
  const float *top_logprobs;
  const char *text;           /* text released by this event (may be "") */
  mlc_finish finish;          /* != NONE: this choice is finished */
  int request_done;           /* 1: the last event of the request */
  int prompt_tokens, completion_tokens, cached_tokens; /* completion_tokens: of this choice */
  const char *error;          /* with MLC_FINISH_ERROR */
} mlc_engine_event;

/* Called on the engine thread; must not block. Pointers in ev are valid during the call only. */
typedef void (*mlc_engine_cb)(void *user, const mlc_engine_event *ev);

/* Queues a request (any thread). The prompt and params are copied. */
mlc_status mlc_engine_submit(mlc_engine *e, const int32_t *prompt, int n_prompt, const mlc_gen_params *p,
                             mlc_engine_cb cb, void *user, uint64_t *id);
/* Finishes a request early (any thread); unknown or finished ids are ignored. */
void mlc_engine_cancel(mlc_engine *e, uint64_t id);

typedef struct mlc_engine_stats {
  int running, waiting;         /* requests */
  int kv_pages_used, kv_pages_total;
  int cache_entries, cache_pages;
  uint64_t requests_total, requests_by_finish[5];
  uint64_t prompt_tokens, generated_tokens, prefill_tokens; /* prefill: computed, not cached */
  uint64_t cache_lookups, cache_hits, cache_hit_tokens;
  uint64_t preemptions, steps;
  double tokens_per_s;          /* generated tokens/s over the last few seconds */
  uint64_t device_sampled;      /* generated tokens picked on the device (only their ids read back) */
} mlc_engine_stats;
void mlc_engine_stats_get(mlc_engine *e, mlc_engine_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* MLC_H */
