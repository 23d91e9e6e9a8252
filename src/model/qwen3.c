/* qwen3.c: Qwen3: per-head RMSNorm on q and k before RoPE, explicit head_dim. */
#include "model/dense.h"

static mlc_status build(mlc_builder *b) {
  mlc_dense_opts o = {.qk_norm = true};
  return mlc_dense_decoder(b, &o);
}

const mlc_arch mlc_arch_qwen3 = {"qwen3", build};
