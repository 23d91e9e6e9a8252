/* format.h: reading model files. Safetensors (single file or sharded through
 * model.safetensors.index.json), memory-mapped; Hugging Face config.json into mlc_model_config. */
#ifndef MLC_FORMAT_H
#define MLC_FORMAT_H

#include <cjson/cJSON.h>

#include "base/base.h"

typedef enum mlc_dtype {
  MLC_F32 = 0,
  MLC_F16 = 1,
  MLC_BF16 = 2,
  MLC_I32 = 3,
  MLC_U32 = 4,
  MLC_I8 = 5,
  MLC_U8 = 6,
  MLC_I64 = 7,
  /* Group-quantized weights (src/format/quant.h): the data is packed uint32 words, the group
   * scales are a second buffer (mlc_st_tensor.scale, mlc_tensor.scale_tensor). A weight of one
   * of these dtypes is logically [N, K] f32; mlc_dtype_size() is 0 (not a per-element size). */
  MLC_Q4F16_1 = 8,  /* MLC q4f16_1: NK, 8 nibbles/word, group 32, offset 7, f16 scales */
  MLC_Q4F32_1 = 9,  /* MLC q4f32_1: as q4f16_1 with f32 scales */
  MLC_Q3F16_1 = 10, /* MLC q3f16_1: NK, 10 x 3 bits/word, group 40, offset 3, f16 scales */
  MLC_Q4F16_0 = 11, /* MLC q4f16_0: KN (words [K/8, N], scales [K/32, N]) */
  MLC_Q8F16_1 = 12, /* ours: NK, 4 bytes/word, group 32, offset 127, f16 scales */
  /* Run-time layouts, never in files: q4f16_1 / q4f32_1 words interleaved within each block of
   * 128 elements of a row for 16-lane vectors (quant.h, mlc_q_interleave; the CPU repacks at load) */
  MLC_Q4F16_1I = 13,
  MLC_Q4F32_1I = 14,
  MLC_DTYPE_COUNT
} mlc_dtype;
size_t mlc_dtype_size(mlc_dtype t);
const char *mlc_dtype_name(mlc_dtype t); /* "f32", "f16", ..., "q4f16_1" */
static inline bool mlc_dtype_is_quant(mlc_dtype t) { return t >= MLC_Q4F16_1 && t < MLC_DTYPE_COUNT; }

/* ---- safetensors ---- */
#define MLC_MAX_DIMS 6
typedef struct mlc_st_tensor {
  char *name;
  mlc_dtype dtype;
  int ndim;
  int64_t shape[MLC_MAX_DIMS];
  const void *data; /* points into the mapped file */
  size_t nbytes;
  const char *file; /* the file it lives in (owned by the set) */
  /* quantized dtypes only: the group scales (in the scheme's scale dtype) and their bytes;
   * shape is the logical [N, K_padded] (K padded to whole groups) */
  const void *scale;
  size_t scale_nbytes;
} mlc_st_tensor;

typedef struct mlc_st_set mlc_st_set; /* all tensors of a model directory */

/* Opens dir/model.safetensors, or the shards listed in dir/model.safetensors.index.json.
 * Validates headers fully (8-byte length within the file, JSON object, dtype, shape,
 * data_offsets inside the data section, offsets consistent with shape x dtype size). Errors name
 * the file and the tensor. */
mlc_status mlc_st_open_dir(const char *dir, mlc_st_set **out);
/* Opens one safetensors file. */
mlc_status mlc_st_open_file(const char *path, mlc_st_set **out);
void mlc_st_close(mlc_st_set *s);
/* A set built by hand (packages, src/runtime/package.c): tensors point into memory the set
 * owns through mlc_st_keep_map / mlc_st_keep_buf. `where` names it in messages. */
mlc_st_set *mlc_st_new_virtual(const char *where);
/* Adds a tensor (name copied); returns its slot or NULL (error set). Call mlc_st_index after
 * the last add. */
mlc_st_tensor *mlc_st_add(mlc_st_set *s, const char *name, mlc_dtype dt, int ndim, const int64_t *shape,
                          const void *data, size_t nbytes, const char *file);
mlc_status mlc_st_index(mlc_st_set *s);
/* The set keeps (and frees/unmaps at close) a mapping or a heap buffer. Returns the stored
 * file path string (for mlc_st_tensor.file) or NULL on failure. */
const char *mlc_st_keep_map(mlc_st_set *s, const char *path, mlc_mmap map);
mlc_status mlc_st_keep_buf(mlc_st_set *s, void *buf);
/* The directory or file the set was opened from. */
const char *mlc_st_where(const mlc_st_set *s);
int mlc_st_count(const mlc_st_set *s);
const mlc_st_tensor *mlc_st_at(const mlc_st_set *s, int i);
/* NULL if absent (no error set). */
const mlc_st_tensor *mlc_st_find(const mlc_st_set *s, const char *name);
/* Like find, but sets an error naming the tensor and the directory when absent, or when the
 * shape differs from `shape` (ndim entries; -1 entries match anything). */
mlc_status mlc_st_get(const mlc_st_set *s, const char *name, int ndim, const int64_t *shape,
                      const mlc_st_tensor **out);

/* ---- config.json ---- */
typedef enum mlc_rope_type {
  MLC_ROPE_DEFAULT = 0,
  MLC_ROPE_LINEAR,
  MLC_ROPE_LLAMA3,
  MLC_ROPE_DYNAMIC, /* NTK-aware dynamic: treated as default within original length */
  MLC_ROPE_YARN,
  MLC_ROPE_LONGROPE
} mlc_rope_type;

typedef enum mlc_act { MLC_ACT_SILU = 0, MLC_ACT_GELU_TANH, MLC_ACT_GELU } mlc_act;

typedef struct mlc_model_config {
  char arch[64];       /* model_type: "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "mixtral", "qwen3_moe" */
  int vocab_size;
  int hidden_size;
  int intermediate_size;
  int num_layers;
  int num_heads;
  int num_kv_heads;
  int head_dim;        /* explicit head_dim or hidden/heads */
  int max_position_embeddings;
  float rms_norm_eps;
  bool tie_word_embeddings;
  bool attention_bias; /* q/k/v biases (qwen2 always) */
  bool o_bias;         /* o_proj bias (attention_bias on llama) */
  bool mlp_bias;
  mlc_act act;
  int bos_token_id, eos_token_id; /* -1 if absent; eos: the first if a list */
  int eos_ids[8];                  /* all eos ids */
  int n_eos;

  /* rope */
  mlc_rope_type rope_type;
  float rope_theta;
  float partial_rotary_factor; /* 1.0 default */
  float rope_factor;           /* linear / llama3 / yarn factor */
  float rope_low_freq_factor, rope_high_freq_factor;
  int rope_original_max_pos;
  float yarn_beta_fast, yarn_beta_slow, yarn_attn_factor; /* yarn; attn_factor also longrope */
  /* longrope (phi3): per-frequency factors, rope_n_factors = rotary dims / 2 entries each;
   * long_factor applies beyond rope_original_max_pos. rope_factor = max_pos / original max. */
  int rope_n_factors;
  float rope_short_factor[256], rope_long_factor[256];

  /* attention shape variants */
  int sliding_window;       /* 0: none */
  bool layer_sliding[256];  /* per layer: does this layer use the sliding window */
  float attn_softcap;       /* 0: none (gemma2 attn_logit_softcapping) */
  float final_softcap;      /* 0: none (gemma2 final_logit_softcapping) */
  float query_pre_attn_scalar; /* 0: use head_dim (scale = 1/sqrt(this)) */

  /* MoE */
  int num_experts;          /* 0: dense */
  int num_experts_per_tok;
  int moe_intermediate_size;
  bool norm_topk_prob;
  int decoder_sparse_step;   /* qwen3_moe: MoE every N layers (1: all) */
  bool layer_dense[256];     /* per layer: dense MLP instead of MoE (mlp_only_layers / sparse step) */
} mlc_model_config;

/* Parses dir/config.json. Accepts both the older rope_theta/rope_scaling form and the
 * transformers-5 rope_parameters form. Errors name the file and field. */
mlc_status mlc_config_load(const char *dir, mlc_model_config *out);
mlc_status mlc_config_parse(const char *json_text, const char *filename, mlc_model_config *out);

/* ---- small JSON helpers on cJSON (errors name file and field) ---- */
mlc_status mlc_json_parse(const char *text, const char *filename, cJSON **out);
mlc_status mlc_json_load(const char *path, cJSON **out);
/* Like mlc_json_parse, for text of known length that need not be NUL-terminated. */
mlc_status mlc_json_parse_len(const char *text, size_t len, const char *filename, cJSON **out);
/* Renders a value briefly for error messages: "four" (quoted), 12, true, null, an array, ... */
void mlc_json_describe(const cJSON *v, char *buf, size_t n);

#endif
