/* dense.h: the llama-family decoder loop (llama.c) that mistral, qwen2, qwen3, mixtral and
 * qwen3_moe configure. */
#ifndef MLC_DENSE_H
#define MLC_DENSE_H

#include "model/arch.h"

typedef struct mlc_dense_opts {
  bool qk_norm;                /* qwen3: RMSNorm over each q and k head before RoPE */
  const char *router_fmt;      /* MoE: router weight name (layer) */
  const char *expert_gate_fmt; /* MoE: expert weight names (layer, expert) */
  const char *expert_up_fmt;
  const char *expert_down_fmt;
} mlc_dense_opts;

mlc_status mlc_dense_decoder(mlc_builder *b, const mlc_dense_opts *o);

#endif
