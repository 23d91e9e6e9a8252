/* mixtral.c: Mixtral: sparse MoE feed-forward, top-k of a softmax router, renormalised. */
#include "model/dense.h"

static mlc_status build(mlc_builder *b) {
  mlc_dense_opts o = {
      .router_fmt = "model.layers.%d.block_sparse_moe.gate.weight",
      .expert_gate_fmt = "model.layers.%d.block_sparse_moe.experts.%d.w1.weight",
      .expert_up_fmt = "model.layers.%d.block_sparse_moe.experts.%d.w3.weight",
      .expert_down_fmt = "model.layers.%d.block_sparse_moe.experts.%d.w2.weight",
  };
  return mlc_dense_decoder(b, &o);
}

const mlc_arch mlc_arch_mixtral = {"mixtral", build};
