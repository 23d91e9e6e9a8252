/* llama.c: Llama 1/2/3 (incl. Llama-3 rope scaling, tied embeddings, any GQA ratio). Also the
 * shared dense decoder loop used by the llama-family files. */
#include "model/arch.h"
#include "model/dense.h"

mlc_status mlc_dense_decoder(mlc_builder *b, const mlc_dense_opts *o) {
  const mlc_model_config *c = b->cfg;
  int64_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads;
  int64_t F = c->intermediate_size;
  int emb = mlc_b_weight(b, V, H, "model.embed_tokens.weight");
  b->x = mlc_b_embed(b, emb, 1.0f);
  for (int l = 0; l < c->num_layers && b->g->status == MLC_OK; l++) {
    b->layer = l;
    mlc_attn_w w = {.wqkv = -1, .bqkv = -1, .q_norm = -1, .k_norm = -1, .bo = -1};
    w.wq = mlc_b_weight(b, Hq * D, H, "model.layers.%d.self_attn.q_proj.weight", l);
    w.wk = mlc_b_weight(b, Hkv * D, H, "model.layers.%d.self_attn.k_proj.weight", l);
    w.wv = mlc_b_weight(b, Hkv * D, H, "model.layers.%d.self_attn.v_proj.weight", l);
    w.wo = mlc_b_weight(b, H, Hq * D, "model.layers.%d.self_attn.o_proj.weight", l);
    w.bq = w.bk = w.bv = -1;
    if (c->attention_bias) {
      w.bq = mlc_b_weight(b, Hq * D, 0, "model.layers.%d.self_attn.q_proj.bias", l);
      w.bk = mlc_b_weight(b, Hkv * D, 0, "model.layers.%d.self_attn.k_proj.bias", l);
      w.bv = mlc_b_weight(b, Hkv * D, 0, "model.layers.%d.self_attn.v_proj.bias", l);
    }
    if (c->o_bias)
      w.bo = mlc_b_weight(b, H, 0, "model.layers.%d.self_attn.o_proj.bias", l);
    if (o->qk_norm) {
      w.q_norm = mlc_b_weight(b, D, 0, "model.layers.%d.self_attn.q_norm.weight", l);
      w.k_norm = mlc_b_weight(b, D, 0, "model.layers.%d.self_attn.k_norm.weight", l);
    }
    int ln1 = mlc_b_weight(b, H, 0, "model.layers.%d.input_layernorm.weight", l);
    int ln2 = mlc_b_weight(b, H, 0, "model.layers.%d.post_attention_layernorm.weight", l);
    if (b->g->status != MLC_OK)
      break;
    int xn = mlc_b_rmsnorm(b, b->x, ln1, H, false);
    b->x = mlc_b_add(b, b->x, mlc_b_attention(b, xn, &w));
    xn = mlc_b_rmsnorm(b, b->x, ln2, H, false);
    int y;
    if (c->num_experts > 0 && !c->layer_dense[l]) {
      int64_t Fe = c->moe_intermediate_size, E = c->num_experts;
      int router = mlc_b_weight(b, E, H, o->router_fmt, l);
      int wg = mlc_b_expert_stack(b, l, (int)E, Fe, H, o->expert_gate_fmt);
      int wu = mlc_b_expert_stack(b, l, (int)E, Fe, H, o->expert_up_fmt);
      int wd = mlc_b_expert_stack(b, l, (int)E, H, Fe, o->expert_down_fmt);
      y = mlc_b_moe(b, xn, router, wg, wu, wd, Fe);
    } else {
      int wg = mlc_b_weight(b, F, H, "model.layers.%d.mlp.gate_proj.weight", l);
      int wu = mlc_b_weight(b, F, H, "model.layers.%d.mlp.up_proj.weight", l);
      int wd = mlc_b_weight(b, H, F, "model.layers.%d.mlp.down_proj.weight", l);
      y = mlc_b_mlp(b, xn, wg, wu, -1, wd, F, c->act);
    }
    if (b->g->status == MLC_OK)
      b->x = mlc_b_add(b, b->x, y);
  }
  int norm = mlc_b_weight(b, H, 0, "model.norm.weight");
  int head = c->tie_word_embeddings ? emb : mlc_b_weight(b, V, H, "lm_head.weight");
  mlc_b_head(b, norm, false, head, 0);
  return b->g->status;
}

static mlc_status build(mlc_builder *b) {
  mlc_dense_opts o = {0};
  return mlc_dense_decoder(b, &o);
}

const mlc_arch mlc_arch_llama = {"llama", build};
