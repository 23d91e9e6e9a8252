/* mistral.c: Mistral: the llama decoder with a sliding attention window on every layer
 * (config.sliding_window; the config loader marks the layers). */
#include "model/dense.h"

static mlc_status build(mlc_builder *b) {
  mlc_dense_opts o = {0};
  return mlc_dense_decoder(b, &o);
}

const mlc_arch mlc_arch_mistral = {"mistral", build};
