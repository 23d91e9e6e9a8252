/*
 * gguf.h: reading GGUF files (llama.cpp): header, metadata key/values, tensor infos, and the
 * dequantization of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K rows to f32.
 * Also what a GGUF model means in Hugging Face terms: a config.json, the HF name of each
 * tensor (row windows for stacked experts, the Q/K row permutation of llama-arch files undone),
 * and a tokenizer.json built from the tokenizer.ggml.* metadata.
 */
#ifndef MLC_GGUF_H
#define MLC_GGUF_H

#include "format/format.h"

enum {
  MLC_GGML_F32 = 0, MLC_GGML_F16 = 1, MLC_GGML_Q4_0 = 2, MLC_GGML_Q4_1 = 3, MLC_GGML_Q5_0 = 6, MLC_GGML_Q5_1 = 7,
  MLC_GGML_Q8_0 = 8, MLC_GGML_Q2_K = 10, MLC_GGML_Q3_K = 11, MLC_GGML_Q4_K = 12, MLC_GGML_Q5_K = 13,
  MLC_GGML_Q6_K = 14, MLC_GGML_BF16 = 30
};

typedef struct mlc_gguf_tensor {
  char *name;
  int ndim;
  int64_t ne[4];   /* ne[0]: the innermost (row length) */
  uint32_t type;
  const unsigned char *data;
  size_t nbytes;
} mlc_gguf_tensor;

typedef struct mlc_gguf mlc_gguf;

mlc_status mlc_gguf_open(const char *path, mlc_gguf **out);
void mlc_gguf_close(mlc_gguf *g);
int mlc_gguf_count(const mlc_gguf *g);
const mlc_gguf_tensor *mlc_gguf_at(const mlc_gguf *g, int i);
const mlc_gguf_tensor *mlc_gguf_find(const mlc_gguf *g, const char *name);
const char *mlc_gguf_path(const mlc_gguf *g);
/* The metadata as JSON (numbers, strings, bools, arrays); owned by g. */
const cJSON *mlc_gguf_meta(const mlc_gguf *g);
const char *mlc_gguf_type_name(uint32_t type);

/* Bytes of one row of n elements (n a multiple of the block size), 0 for unsupported types. */
size_t mlc_gguf_row_bytes(uint32_t type, int64_t n);
/* Dequantizes one row of n elements. */
void mlc_gguf_dequant_row(uint32_t type, const void *row, float *out, int64_t n);

/* Source tensors of a GGUF model under Hugging Face names. */
typedef struct mlc_gguf_src {
  char name[320];                /* HF name */
  const mlc_gguf_tensor *t;      /* backing tensor */
  int64_t row0, rows, cols;      /* window of the backing tensor's (flattened) rows */
  int unpermute;                 /* > 0: rows are in llama.cpp's rope order for this many heads */
  bool minus_one;                /* gemma norms stored as 1 + w */
} mlc_gguf_src;

/* A Hugging Face config.json (cJSON object, caller deletes) and the sources. */
mlc_status mlc_gguf_hf(const mlc_gguf *g, cJSON **config, mlc_gguf_src **srcs, int *nsrc);
/* tokenizer.json text (caller frees) from the tokenizer.ggml.* metadata. */
mlc_status mlc_gguf_tokenizer_json(const mlc_gguf *g, char **out);

#endif
