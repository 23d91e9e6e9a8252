/* gemma2.c: Gemma 2: embeddings scaled by sqrt(hidden), (1 + w) RMSNorms, post-attention and
 * pre/post-feed-forward norms, GELU-tanh MLP, attention logit and final logit soft-capping,
 * query_pre_attn_scalar, sliding-window layers alternating with global ones. */
#include <math.h>

#include "model/arch.h"

static mlc_status build(mlc_builder *b) {
  const mlc_model_config *c = b->cfg;
  int64_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads;
  int64_t F = c->intermediate_size;
  int emb = mlc_b_weight(b, V, H, "model.embed_tokens.weight");
  b->x = mlc_b_embed(b, emb, sqrtf((float)H));
  for (int l = 0; l < c->num_layers && b->g->status == MLC_OK; l++) {
    b->layer = l;
    mlc_attn_w w = {.wqkv = -1, .bqkv = -1, .q_norm = -1, .k_norm = -1, .bq = -1, .bk = -1, .bv = -1, .bo = -1,
                    .norm_add_one = true};
    w.wq = mlc_b_weight(b, Hq * D, H, "model.layers.%d.self_attn.q_proj.weight", l);
    w.wk = mlc_b_weight(b, Hkv * D, H, "model.layers.%d.self_attn.k_proj.weight", l);
    w.wv = mlc_b_weight(b, Hkv * D, H, "model.layers.%d.self_attn.v_proj.weight", l);
    w.wo = mlc_b_weight(b, H, Hq * D, "model.layers.%d.self_attn.o_proj.weight", l);
    int ln_in = mlc_b_weight(b, H, 0, "model.layers.%d.input_layernorm.weight", l);
    int ln_pa = mlc_b_weight(b, H, 0, "model.layers.%d.post_attention_layernorm.weight", l);
    int ln_pf = mlc_b_weight(b, H, 0, "model.layers.%d.pre_feedforward_layernorm.weight", l);
    int ln_po = mlc_b_weight(b, H, 0, "model.layers.%d.post_feedforward_layernorm.weight", l);
    int wg = mlc_b_weight(b, F, H, "model.layers.%d.mlp.gate_proj.weight", l);
    int wu = mlc_b_weight(b, F, H, "model.layers.%d.mlp.up_proj.weight", l);
    int wd = mlc_b_weight(b, H, F, "model.layers.%d.mlp.down_proj.weight", l);
    if (b->g->status != MLC_OK)
      break;
    int xn = mlc_b_rmsnorm(b, b->x, ln_in, H, true);
    int a = mlc_b_rmsnorm(b, mlc_b_attention(b, xn, &w), ln_pa, H, true);
    b->x = mlc_b_add(b, b->x, a);
    xn = mlc_b_rmsnorm(b, b->x, ln_pf, H, true);
    int m = mlc_b_rmsnorm(b, mlc_b_mlp(b, xn, wg, wu, -1, wd, F, c->act), ln_po, H, true);
    b->x = mlc_b_add(b, b->x, m);
  }
  int norm = mlc_b_weight(b, H, 0, "model.norm.weight");
  int head = c->tie_word_embeddings ? emb : mlc_b_weight(b, V, H, "lm_head.weight");
  mlc_b_head(b, norm, true, head, c->final_softcap);
  return b->g->status;
}

const mlc_arch mlc_arch_gemma2 = {"gemma2", build};
