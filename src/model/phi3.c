/* phi3.c: Phi-3: fused qkv_proj and gate_up_proj (split as views; the fusion passes turn the
 * gate/up split into one gated matmul). */
#include "model/arch.h"

static mlc_status build(mlc_builder *b) {
  const mlc_model_config *c = b->cfg;
  int64_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads;
  int64_t F = c->intermediate_size;
  int emb = mlc_b_weight(b, V, H, "model.embed_tokens.weight");
  b->x = mlc_b_embed(b, emb, 1.0f);
  for (int l = 0; l < c->num_layers && b->g->status == MLC_OK; l++) {
    b->layer = l;
    mlc_attn_w w = {.wq = -1, .wk = -1, .wv = -1, .bq = -1, .bk = -1, .bv = -1, .bqkv = -1, .q_norm = -1,
                    .k_norm = -1, .bo = -1};
    w.wqkv = mlc_b_weight(b, (Hq + 2 * Hkv) * D, H, "model.layers.%d.self_attn.qkv_proj.weight", l);
    w.wo = mlc_b_weight(b, H, Hq * D, "model.layers.%d.self_attn.o_proj.weight", l);
    int ln1 = mlc_b_weight(b, H, 0, "model.layers.%d.input_layernorm.weight", l);
    int ln2 = mlc_b_weight(b, H, 0, "model.layers.%d.post_attention_layernorm.weight", l);
    int wgu = mlc_b_weight(b, 2 * F, H, "model.layers.%d.mlp.gate_up_proj.weight", l);
    int wd = mlc_b_weight(b, H, F, "model.layers.%d.mlp.down_proj.weight", l);
    if (b->g->status != MLC_OK)
      break;
    int xn = mlc_b_rmsnorm(b, b->x, ln1, H, false);
    b->x = mlc_b_add(b, b->x, mlc_b_attention(b, xn, &w));
    xn = mlc_b_rmsnorm(b, b->x, ln2, H, false);
    b->x = mlc_b_add(b, b->x, mlc_b_mlp(b, xn, -1, -1, wgu, wd, F, c->act));
  }
  int norm = mlc_b_weight(b, H, 0, "model.norm.weight");
  int head = c->tie_word_embeddings ? emb : mlc_b_weight(b, V, H, "lm_head.weight");
  mlc_b_head(b, norm, false, head, 0);
  return b->g->status;
}

const mlc_arch mlc_arch_phi3 = {"phi3", build};
