/* arch.c: the architecture registry. */
#include <string.h>

#include "model/arch.h"

extern const mlc_arch mlc_arch_llama, mlc_arch_mistral, mlc_arch_qwen2, mlc_arch_qwen3, mlc_arch_phi3,
    mlc_arch_gemma2, mlc_arch_mixtral, mlc_arch_qwen3_moe;

static const mlc_arch *const ARCHS[] = {&mlc_arch_llama, &mlc_arch_mistral, &mlc_arch_qwen2,   &mlc_arch_qwen3,
                                        &mlc_arch_phi3,  &mlc_arch_gemma2,  &mlc_arch_mixtral, &mlc_arch_qwen3_moe};

const mlc_arch *mlc_arch_find(const char *model_type) {
  for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
    if (strcmp(ARCHS[i]->model_type, model_type) == 0)
      return ARCHS[i];
  return NULL;
}

const char *mlc_arch_list(void) { return "llama, mistral, qwen2, qwen3, phi3, gemma2, mixtral, qwen3_moe"; }
