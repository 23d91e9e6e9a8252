/* qwen2.c: Qwen2 / Qwen2.5: the llama decoder with q/k/v biases (config.attention_bias is set
 * for qwen2 by the config loader). */
#include "model/dense.h"

static mlc_status build(mlc_builder *b) {
  mlc_dense_opts o = {0};
  return mlc_dense_decoder(b, &o);
}

const mlc_arch mlc_arch_qwen2 = {"qwen2", build};
