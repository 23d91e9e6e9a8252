/*
 * arch.h: architectures. Each one is a small file (llama.c, qwen3.c, gemma2.c, ...) that builds
 * the model graph from the config and the weight names, with the shared pieces in builder.c.
 */
#ifndef MLC_ARCH_H
#define MLC_ARCH_H

#include "compiler/graph.h"

/* Buffers the graph needs that the builder creates (stacked expert weights, rope tables);
 * owned by the model. */
typedef struct mlc_owned {
  void **ptrs;
  int n, cap;
} mlc_owned;
void *mlc_owned_alloc(mlc_owned *o, size_t bytes);
void mlc_owned_free(mlc_owned *o);

typedef struct mlc_builder {
  mlc_graph *g;
  const mlc_model_config *cfg;
  const mlc_st_set *st;
  mlc_owned *owned;
  const char *dir;
  int in[MLC_IN_COUNT]; /* input tensors */
  int inv_freq;         /* rope table [rot/2] f32 */
  float rope_scale;     /* cos/sin scale (yarn attention factor) */
  int rot_dim;
  int max_pages;        /* page-table row length */
  int x;                /* the residual stream [n, H] being built */
  int tp_rank, tp_n;    /* tensor parallelism: this rank of tp_n (cfg holds this rank's heads/ffn) */
  int layer;
} mlc_builder;

/* ---- pieces shared by the architectures (builder.c) ---- */
/* A weight by name, shape checked ([rows, cols]; cols 0 for 1-D). Records the first error. */
int mlc_b_weight(mlc_builder *b, int64_t rows, int64_t cols, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An optional weight: -1 when absent. */
int mlc_b_weight_opt(mlc_builder *b, int64_t rows, int64_t cols, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Stacks per-expert [rows, cols] weights named fmt % (layer, e) into one [E*rows, cols] tensor. */
int mlc_b_expert_stack(mlc_builder *b, int layer, int E, int64_t rows, int64_t cols, const char *fmt);
/* The weight as the kernels read it: f32 as is, other types through a DEQUANT op (fused later). */
int mlc_b_use(mlc_builder *b, int w);

int mlc_b_embed(mlc_builder *b, int table, float scale);
int mlc_b_rmsnorm(mlc_builder *b, int x, int w, int64_t group, bool add_one);
int mlc_b_linear(mlc_builder *b, int x, int w, int bias, const char *name);
int mlc_b_add(mlc_builder *b, int a, int c);
/* Tensor parallel: the sum of x over all ranks (x itself when there is one rank). */
int mlc_b_allreduce(mlc_builder *b, int x);
/* The model config of rank `rank` of n: heads, KV heads and FFN widths divided; checks that they
 * divide evenly (errors name the field). */
mlc_status mlc_tp_config(const mlc_model_config *full, int n, mlc_model_config *out);
int mlc_b_softcap(mlc_builder *b, int x, float cap);

typedef struct mlc_attn_w {
  int wq, wk, wv, bq, bk, bv; /* separate projections (wq < 0 when fused) */
  int wqkv, bqkv;             /* fused [ (Hq+2Hkv)*D, H ] */
  int q_norm, k_norm;         /* per-head RMSNorm weights or -1 */
  int wo, bo;
  bool norm_add_one;
} mlc_attn_w;
/* Self-attention of layer b->layer on xn: projections, optional q/k norms, RoPE, KV append,
 * paged causal attention, output projection. Returns [n, H]. */
int mlc_b_attention(mlc_builder *b, int xn, const mlc_attn_w *w);

/* Gated MLP: down(act(gate(x)) * up(x)); gate_up fused when wgu >= 0 ([2F, H]). */
int mlc_b_mlp(mlc_builder *b, int xn, int wg, int wu, int wgu, int wd, int64_t F, int act);
/* Sparse MoE: router [E, H], stacked experts; top-k routing. */
int mlc_b_moe(mlc_builder *b, int xn, int router, int wg, int wu, int wd, int64_t F);

/* Final norm on the last m rows, lm_head (or tied embeddings), optional softcap: sets g->logits. */
void mlc_b_head(mlc_builder *b, int norm_w, bool norm_add_one, int lm_head, float softcap);

/* Rope tables (rope.c): inv_freq for the config's rope type, and the cos/sin scale. */
mlc_status mlc_rope_inv_freq(const mlc_model_config *cfg, int rot_dim, float *inv_freq, float *scale);

typedef struct mlc_arch {
  const char *model_type;
  mlc_status (*build)(mlc_builder *b);
} mlc_arch;
const mlc_arch *mlc_arch_find(const char *model_type);
/* "llama, mistral, ..." */
const char *mlc_arch_list(void);

#endif
