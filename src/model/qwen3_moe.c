/* qwen3_moe.c: Qwen3-MoE: qwen3 attention (q/k norms) with sparse MoE layers (top-k routing,
 * renormalised when norm_topk_prob), dense MLP on mlp_only_layers. */
#include "model/dense.h"

static mlc_status build(mlc_builder *b) {
  mlc_dense_opts o = {
      .qk_norm = true,
      .router_fmt = "model.layers.%d.mlp.gate.weight",
      .expert_gate_fmt = "model.layers.%d.mlp.experts.%d.gate_proj.weight",
      .expert_up_fmt = "model.layers.%d.mlp.experts.%d.up_proj.weight",
      .expert_down_fmt = "model.layers.%d.mlp.experts.%d.down_proj.weight",
  };
  return mlc_dense_decoder(b, &o);
}

const mlc_arch mlc_arch_qwen3_moe = {"qwen3_moe", build};
