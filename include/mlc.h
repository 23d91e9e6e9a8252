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

/* One sequence's part of a batched step. */
typedef struct mlc_batch_item {
  mlc_seq *seq;
  const int32_t *ids; /* n new tokens for seq */
  int n;
  int n_logits;       /* logits wanted for the last n_logits of them (0..n) */
  float *logits;      /* [n_logits, vocab] */
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

#ifdef __cplusplus
}
#endif
#endif /* MLC_H */
