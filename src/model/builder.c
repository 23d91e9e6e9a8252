/* builder.c: the pieces the architecture files build their graphs from. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "format/quant.h"
#include "kernel/lower.h"
#include "model/arch.h"

void *mlc_owned_alloc(mlc_owned *o, size_t bytes) {
  if (o->n == o->cap) {
    int cap = o->cap ? o->cap * 2 : 16;
    void **p = realloc(o->ptrs, sizeof(void *) * (size_t)cap);
    if (!p)
      return NULL;
    o->ptrs = p;
    o->cap = cap;
  }
  void *m = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  if (m)
    o->ptrs[o->n++] = m;
  return m;
}
void mlc_owned_free(mlc_owned *o) {
  for (int i = 0; i < o->n; i++)
    free(o->ptrs[i]);
  free(o->ptrs);
  memset(o, 0, sizeof *o);
}

/* How tensor parallelism splits a weight, from its name. */
typedef enum shard_rule {
  SH_NONE = 0, /* replicated */
  SH_ROW,      /* output rows split: q/k/v, gate/up projections (and their biases) */
  SH_COL,      /* input columns split: o and down projections */
  SH_RANK0,    /* bias of a column-split projection: added once, on rank 0 */
  SH_QKV,      /* fused qkv rows: each of the q, k, v sections split */
  SH_GATEUP    /* fused gate_up rows: each half split */
} shard_rule;

static bool ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && !strcmp(s + n - k, suf);
}

static shard_rule shard_rule_for(const char *name) {
  static const char *row[] = {".q_proj.weight", ".k_proj.weight", ".v_proj.weight", ".q_proj.bias", ".k_proj.bias",
                              ".v_proj.bias",   ".gate_proj.weight", ".up_proj.weight", ".w1.weight", ".w3.weight"};
  static const char *col[] = {".o_proj.weight", ".down_proj.weight", ".w2.weight"};
  for (size_t i = 0; i < sizeof row / sizeof row[0]; i++)
    if (ends_with(name, row[i]))
      return SH_ROW;
  for (size_t i = 0; i < sizeof col / sizeof col[0]; i++)
    if (ends_with(name, col[i]))
      return SH_COL;
  if (ends_with(name, ".o_proj.bias") || ends_with(name, ".down_proj.bias"))
    return SH_RANK0;
  if (ends_with(name, ".qkv_proj.weight") || ends_with(name, ".qkv_proj.bias"))
    return SH_QKV;
  if (ends_with(name, ".gate_up_proj.weight"))
    return SH_GATEUP;
  return SH_NONE;
}

/* Copies row windows [starts[i], starts[i] + lens[i]) of t (row bytes rb) into one buffer. */
static const void *gather_row_windows(mlc_builder *b, const mlc_st_tensor *t, size_t rb, const int64_t *starts,
                                      const int64_t *lens, int n) {
  int64_t total = 0;
  for (int i = 0; i < n; i++)
    total += lens[i];
  char *dst = mlc_owned_alloc(b->owned, rb * (size_t)total);
  if (!dst)
    return NULL;
  size_t o = 0;
  for (int i = 0; i < n; i++) {
    memcpy(dst + o, (const char *)t->data + rb * (size_t)starts[i], rb * (size_t)lens[i]);
    o += rb * (size_t)lens[i];
  }
  return dst;
}

/* A packed group-quantized weight (MLC packages, format/quant.h): the words as the weight
 * tensor [rows, cols] (logical f32 shape) and the group scales as a second weight tensor it
 * names in scale_tensor. Kernels dequantize on the fly. */
static int quant_weight(mlc_builder *b, const mlc_st_tensor *t, const char *name, int64_t rows, int64_t cols) {
  const mlc_qscheme *q = mlc_qscheme_of(t->dtype);
  if (!cols || !q) {
    b->g->status = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': a quantized tensor must be 2-D", t->file, name);
    return -1;
  }
  int w = mlc_g_tensor(b->g, name, MLC_T_WEIGHT, t->dtype, mlc_sym_c(rows), cols);
  b->g->t[w].data = t->data;
  char sn[128];
  snprintf(sn, sizeof sn, "scale(%.80s)", name);
  int64_t G = mlc_q_groups(q, cols);
  int s = mlc_g_tensor(b->g, sn, MLC_T_WEIGHT, q->model_dtype, mlc_sym_c(q->kn ? G : rows), q->kn ? rows : G);
  b->g->t[s].data = t->scale;
  b->g->t[w].scale_tensor = s;
  return w;
}

static int weight_v(mlc_builder *b, bool optional, int64_t rows, int64_t cols, const char *fmt, va_list ap) {
  char name[256];
  vsnprintf(name, sizeof name, fmt, ap);
  if (b->g->status != MLC_OK)
    return -1;
  const mlc_st_tensor *t = mlc_st_find(b->st, name);
  if (!t && optional)
    return -1;
  int N = b->tp_n > 1 ? b->tp_n : 1, r = b->tp_rank;
  shard_rule rule = N > 1 ? shard_rule_for(name) : SH_NONE;
  if (rule == SH_RANK0 && r > 0)
    return -1; /* added once, on rank 0 */
  /* the shape in the file: this rank's shape times N along the split dimension */
  int64_t frows = rows, fcols = cols;
  if (rule == SH_ROW || rule == SH_QKV || rule == SH_GATEUP)
    frows = rows * N;
  else if (rule == SH_COL)
    fcols = cols * N;
  int64_t shape[2] = {frows, fcols};
  mlc_status st = mlc_st_get(b->st, name, cols ? 2 : 1, shape, &t);
  if (st != MLC_OK) {
    b->g->status = st;
    return -1;
  }
  if (mlc_dtype_is_quant(t->dtype)) {
    if (rule != SH_NONE) {
      b->g->status = mlc_err(MLC_ERR_UNSUPPORTED, "%s: tensor '%s': tensor parallelism over quantized (%s) weights is not supported",
                             t->file, name, mlc_dtype_name(t->dtype));
      return -1;
    }
    return quant_weight(b, t, name, rows, cols);
  }
  if (t->dtype != MLC_F32 && t->dtype != MLC_F16 && t->dtype != MLC_BF16) {
    b->g->status = mlc_err(MLC_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; weights must be f32, f16 or bf16",
                           t->file, name, mlc_dtype_name(t->dtype));
    return -1;
  }
  size_t es = mlc_dtype_size(t->dtype), rb = (size_t)(cols ? fcols : 1) * es;
  const void *data = t->data;
  if (rule == SH_ROW) {
    data = (const char *)t->data + rb * (size_t)(r * rows); /* a contiguous window: no copy */
  } else if (rule == SH_COL) {
    char *dst = mlc_owned_alloc(b->owned, (size_t)rows * (size_t)cols * es);
    if (dst)
      for (int64_t i = 0; i < rows; i++)
        memcpy(dst + (size_t)(i * cols) * es, (const char *)t->data + ((size_t)(i * fcols) + (size_t)(r * cols)) * es,
               (size_t)cols * es);
    data = dst;
  } else if (rule == SH_QKV) {
    int64_t D = b->cfg->head_dim, q = b->cfg->num_heads * D, kv = b->cfg->num_kv_heads * D;
    int64_t starts[3] = {r * q, N * q + r * kv, N * q + N * kv + r * kv}, lens[3] = {q, kv, kv};
    data = gather_row_windows(b, t, rb, starts, lens, 3);
  } else if (rule == SH_GATEUP) {
    int64_t F = rows / 2;
    int64_t starts[2] = {r * F, N * F + r * F}, lens[2] = {F, F};
    data = gather_row_windows(b, t, rb, starts, lens, 2);
  }
  if (!data) {
    b->g->status = mlc_err(MLC_ERR_NOMEM, "out of memory sharding tensor '%s'", name);
    return -1;
  }
  int w = mlc_g_tensor(b->g, name, MLC_T_WEIGHT, t->dtype, mlc_sym_c(rows), cols ? cols : rows);
  if (!cols)
    b->g->t[w].rows = mlc_sym_c(1);
  b->g->t[w].data = data;
  return w;
}

mlc_status mlc_tp_config(const mlc_model_config *full, int n, mlc_model_config *out) {
  *out = *full;
  if (n <= 1)
    return MLC_OK;
  struct {
    const char *field;
    int v;
  } need[] = {{"num_attention_heads", full->num_heads},
              {"num_key_value_heads", full->num_kv_heads},
              {"intermediate_size", full->intermediate_size},
              {"vocab_size", full->vocab_size},
              {"moe_intermediate_size", full->num_experts ? full->moe_intermediate_size : n}};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
    if (need[i].v % n)
      return mlc_err(MLC_ERR_INVALID_ARG, "tensor parallelism over %d shards needs %s (%d) divisible by %d", n,
                     need[i].field, need[i].v, n);
  out->num_heads /= n;
  out->num_kv_heads /= n;
  out->intermediate_size /= n;
  if (full->num_experts)
    out->moe_intermediate_size /= n;
  return MLC_OK;
}

int mlc_b_allreduce(mlc_builder *b, int x) {
  if (x < 0 || b->tp_n <= 1)
    return x;
  int y = mlc_g_act(b->g, "allreduce", b->g->t[x].rows, b->g->t[x].cols);
  int o = mlc_g_op(b->g, MLC_OP_ALLREDUCE, &x, 1, &y, 1);
  b->g->ops[o].layer = b->layer;
  return y;
}

int mlc_b_weight(mlc_builder *b, int64_t rows, int64_t cols, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = weight_v(b, false, rows, cols, fmt, ap);
  va_end(ap);
  return w;
}
int mlc_b_weight_opt(mlc_builder *b, int64_t rows, int64_t cols, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = weight_v(b, true, rows, cols, fmt, ap);
  va_end(ap);
  return w;
}

/* Quantized experts (NK): the words and the scales of each expert, stacked. w0: expert 0's
 * weight tensor (already made). */
static int quant_expert_stack(mlc_builder *b, int layer, int E, int64_t rows, int64_t cols, const char *fmt, int w0) {
  mlc_dtype dt = b->g->t[w0].dtype;
  const mlc_qscheme *q = mlc_qscheme_of(dt);
  if (q->kn) {
    b->g->status = mlc_err(MLC_ERR_UNSUPPORTED, "layer %d: stacked experts in the KN layout are not supported", layer);
    return -1;
  }
  size_t wb = (size_t)(rows * mlc_q_words(q, cols)) * 4, sb = (size_t)(rows * mlc_q_groups(q, cols)) * mlc_q_scale_size(q);
  char *wd = mlc_owned_alloc(b->owned, wb * (size_t)E), *sd = mlc_owned_alloc(b->owned, sb * (size_t)E);
  if (!wd || !sd) {
    b->g->status = mlc_err(MLC_ERR_NOMEM, "out of memory stacking experts of layer %d", layer);
    return -1;
  }
  for (int e = 0; e < E; e++) {
    int w = e == 0 ? w0 : mlc_b_weight(b, rows, cols, fmt, layer, e);
    if (w < 0)
      return -1;
    if (b->g->t[w].dtype != dt) {
      b->g->status = mlc_err(MLC_ERR_FORMAT, "tensor '%s': experts of layer %d mix dtypes", b->g->t[w].name, layer);
      return -1;
    }
    memcpy(wd + wb * (size_t)e, b->g->t[w].data, wb);
    memcpy(sd + sb * (size_t)e, b->g->t[b->g->t[w].scale_tensor].data, sb);
  }
  char name[128];
  snprintf(name, sizeof name, "layers.%d.experts(%s)", layer, fmt);
  int s = mlc_g_tensor(b->g, name, MLC_T_WEIGHT, dt, mlc_sym_c(rows * E), cols); /* [E*rows, cols] */
  b->g->t[s].data = wd;
  int sc = mlc_g_tensor(b->g, "scale(experts)", MLC_T_WEIGHT, q->model_dtype, mlc_sym_c(rows * E), mlc_q_groups(q, cols));
  b->g->t[sc].data = sd;
  b->g->t[s].scale_tensor = sc;
  return s;
}

int mlc_b_expert_stack(mlc_builder *b, int layer, int E, int64_t rows, int64_t cols, const char *fmt) {
  if (b->g->status != MLC_OK)
    return -1;
  mlc_dtype dt = MLC_F32;
  void *dst = NULL;
  size_t each = 0;
  for (int e = 0; e < E; e++) {
    int w = mlc_b_weight(b, rows, cols, fmt, layer, e);
    if (w < 0)
      return -1;
    mlc_tensor *t = &b->g->t[w];
    if (e == 0) {
      dt = t->dtype;
      if (mlc_dtype_is_quant(dt))
        return quant_expert_stack(b, layer, E, rows, cols, fmt, w);
      each = (size_t)rows * (size_t)cols * mlc_dtype_size(dt);
      dst = mlc_owned_alloc(b->owned, each * (size_t)E);
      if (!dst) {
        b->g->status = mlc_err(MLC_ERR_NOMEM, "out of memory stacking experts of layer %d", layer);
        return -1;
      }
    } else if (t->dtype != dt) {
      b->g->status = mlc_err(MLC_ERR_FORMAT, "tensor '%s': experts of layer %d mix dtypes", t->name, layer);
      return -1;
    }
    memcpy((char *)dst + each * (size_t)e, t->data, each);
  }
  char name[128];
  snprintf(name, sizeof name, "layers.%d.experts(%s)", layer, fmt);
  int s = mlc_g_tensor(b->g, name, MLC_T_WEIGHT, dt, mlc_sym_c(rows * E), cols); /* [E*rows, cols] */
  b->g->t[s].data = dst;
  return s;
}

int mlc_b_use(mlc_builder *b, int w) {
  if (w < 0 || b->g->t[w].dtype == MLC_F32)
    return w;
  mlc_tensor *t = &b->g->t[w];
  char name[128];
  snprintf(name, sizeof name, "f32(%s)", t->name);
  int y = mlc_g_act(b->g, name, t->rows, t->cols);
  int o = mlc_g_op(b->g, MLC_OP_DEQUANT, &w, 1, &y, 1);
  b->g->ops[o].layer = b->layer;
  return y;
}

static int op1(mlc_builder *b, mlc_opkind k, const int *in, int nin, int out) {
  int o = mlc_g_op(b->g, k, in, nin, &out, out >= 0 ? 1 : 0);
  b->g->ops[o].layer = b->layer;
  return o;
}

int mlc_b_embed(mlc_builder *b, int table, float scale) {
  int64_t H = b->g->t[table].cols;
  int y = mlc_g_act(b->g, "embed", mlc_sym_n(1), H); /* [n, H] */
  int in[2] = {b->in[MLC_IN_IDS], mlc_b_use(b, table)};
  int o = op1(b, MLC_OP_EMBED, in, 2, y);
  b->g->ops[o].fa[0] = scale;
  return y;
}

int mlc_b_rmsnorm(mlc_builder *b, int x, int w, int64_t group, bool add_one) {
  mlc_tensor *t = &b->g->t[x];
  int y = mlc_g_act(b->g, "norm", t->rows, t->cols);
  int in[2] = {x, mlc_b_use(b, w)};
  int o = op1(b, MLC_OP_RMSNORM, in, 2, y);
  b->g->ops[o].ia[0] = group;
  b->g->ops[o].ia[1] = add_one;
  b->g->ops[o].fa[0] = b->cfg->rms_norm_eps;
  return y;
}

int mlc_b_linear(mlc_builder *b, int x, int w, int bias, const char *name) {
  if (x < 0 || w < 0)
    return -1;
  int64_t N = b->g->t[w].rows.c;
  mlc_dtype wdt = b->g->t[w].dtype;
  if (mlc_dtype_is_quant(wdt))
    wdt = mlc_qscheme_of(wdt)->model_dtype; /* a quantized weight's bias is in the model dtype */
  if (bias >= 0 && b->g->t[bias].dtype != wdt) {
    b->g->status = mlc_err(MLC_ERR_UNSUPPORTED, "bias '%s' and weight '%s' have different dtypes",
                           b->g->t[bias].name, b->g->t[w].name);
    return -1;
  }
  int y = mlc_g_act(b->g, name, b->g->t[x].rows, N); /* [R, N] */
  int in[4] = {x, mlc_b_use(b, w), mlc_b_use(b, bias), -1};
  int o = op1(b, MLC_OP_MATMUL, in, 4, y);
  b->g->ops[o].ia[0] = N;
  return y;
}

int mlc_b_add(mlc_builder *b, int a, int c) {
  int y = mlc_g_act(b->g, "residual", b->g->t[a].rows, b->g->t[a].cols);
  int in[2] = {a, c};
  op1(b, MLC_OP_ADD, in, 2, y);
  return y;
}

int mlc_b_softcap(mlc_builder *b, int x, float cap) {
  int y = mlc_g_act(b->g, "softcap", b->g->t[x].rows, b->g->t[x].cols);
  int o = op1(b, MLC_OP_SOFTCAP, &x, 1, y);
  b->g->ops[o].fa[0] = cap;
  return y;
}

static int rope(mlc_builder *b, int x, int64_t heads, int64_t D) {
  int y = mlc_g_act(b->g, "rope", mlc_sym_n(1), heads * D); /* [n, heads*D] */
  int in[3] = {x, b->in[MLC_IN_POS], b->inv_freq};
  int o = op1(b, MLC_OP_ROPE, in, 3, y);
  b->g->ops[o].ia[0] = heads;
  b->g->ops[o].ia[1] = D;
  b->g->ops[o].ia[2] = b->rot_dim;
  b->g->ops[o].fa[0] = b->rope_scale;
  return y;
}

/* Weights w[0..n) that lie back to back in memory, with their scales (the q, k, v windows of an
 * MLC package's fused qkv_proj, which the loader splits), as one weight of their rows together,
 * so that one GEMV launch reads them; -1 where they do not (separate tensors: nothing is copied).
 * vec: the parts are [1, N] vectors (the biases of those weights, windows of the fused bias),
 * joined along their columns instead. The parts stay in the graph unread (the runtime uploads
 * only weights that ops read). */
static int fuse_adjacent(mlc_builder *b, const int *w, int n, bool vec, const char *name) {
  mlc_graph *g = b->g;
  if (b->tp_n > 1 || getenv("MLC_NO_FUSE_QKV"))
    return -1;
  for (int i = 0; i < n; i++)
    if (w[i] < 0)
      return -1;
  const mlc_tensor *t0 = &g->t[w[0]];
  const mlc_qscheme *q = mlc_qscheme_of(t0->dtype);
  if ((q && (q->kn || vec)) || !t0->data || (q && t0->scale_tensor < 0))
    return -1;
  const char *next = t0->data, *snext = q ? g->t[t0->scale_tensor].data : NULL;
  int64_t rows = 0, cols = 0;
  for (int i = 0; i < n; i++) {
    const mlc_tensor *t = &g->t[w[i]];
    int64_t r = mlc_sym_eval(t->rows, 0, 0);
    if (t->dtype != t0->dtype || (vec ? r != 1 : t->cols != t0->cols) || t->rows.n || t->rows.m || t->data != next)
      return -1;
    next += mlc_weight_bytes(t->dtype, r, t->cols);
    if (q) {
      if (t->scale_tensor < 0 || g->t[t->scale_tensor].data != snext)
        return -1;
      snext += (size_t)(r * mlc_q_groups(q, t->cols)) * mlc_q_scale_size(q);
    }
    rows += r;
    cols += t->cols;
  }
  int f = mlc_g_tensor(g, name, MLC_T_WEIGHT, t0->dtype, mlc_sym_c(vec ? 1 : rows), vec ? cols : t0->cols);
  if (f < 0)
    return -1;
  g->t[f].data = g->t[w[0]].data;
  if (q) {
    char sn[128];
    snprintf(sn, sizeof sn, "scale(%.80s)", name);
    int sc = mlc_g_tensor(g, sn, MLC_T_WEIGHT, q->model_dtype, mlc_sym_c(rows), mlc_q_groups(q, g->t[w[0]].cols));
    if (sc < 0)
      return -1;
    g->t[sc].data = g->t[g->t[w[0]].scale_tensor].data;
    g->t[f].scale_tensor = sc;
  }
  return f;
}

int mlc_b_attention(mlc_builder *b, int xn, const mlc_attn_w *w) {
  const mlc_model_config *c = b->cfg;
  mlc_graph *g = b->g;
  if (g->status != MLC_OK)
    return -1;
  int64_t Hq = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
  int q, k, v;
  int wqkv = w->wqkv, bqkv = w->bqkv;
  if (wqkv < 0) {
    char nm[64];
    snprintf(nm, sizeof nm, "layers.%d.qkv(adjacent)", b->layer);
    wqkv = fuse_adjacent(b, (const int[]){w->wq, w->wk, w->wv}, 3, false, nm);
    /* q/k/v biases (qwen2): adjacent too, or the three matmuls stay */
    if (wqkv >= 0 && (w->bq >= 0 || w->bk >= 0 || w->bv >= 0)) {
      snprintf(nm, sizeof nm, "layers.%d.qkv_bias(adjacent)", b->layer);
      bqkv = fuse_adjacent(b, (const int[]){w->bq, w->bk, w->bv}, 3, true, nm);
      if (bqkv < 0)
        wqkv = -1;
    }
  }
  if (g->status != MLC_OK)
    return -1;
  if (wqkv >= 0) {
    int qkv = mlc_b_linear(b, xn, wqkv, bqkv, "qkv"); /* [n, (Hq+2Hkv)*D] */
    q = mlc_g_view(g, qkv, "q", mlc_sym_n(1), Hq * D, mlc_sym_c(0));
    k = mlc_g_view(g, qkv, "k", mlc_sym_n(1), Hkv * D, mlc_sym_c(Hq * D));
    v = mlc_g_view(g, qkv, "v", mlc_sym_n(1), Hkv * D, mlc_sym_c((Hq + Hkv) * D));
  } else {
    q = mlc_b_linear(b, xn, w->wq, w->bq, "q"); /* [n, Hq*D] */
    k = mlc_b_linear(b, xn, w->wk, w->bk, "k"); /* [n, Hkv*D] */
    v = mlc_b_linear(b, xn, w->wv, w->bv, "v"); /* [n, Hkv*D] */
  }
  if (g->status != MLC_OK)
    return -1;
  if (w->q_norm >= 0)
    q = mlc_b_rmsnorm(b, q, w->q_norm, D, w->norm_add_one);
  if (w->k_norm >= 0)
    k = mlc_b_rmsnorm(b, k, w->k_norm, D, w->norm_add_one);
  char kvname[32];
  snprintf(kvname, sizeof kvname, "kv.%d", b->layer);
  int kv = mlc_g_tensor(g, kvname, MLC_T_KV, MLC_F32, mlc_sym_c(1), 1);
  g->t[kv].layer = b->layer;
  int qr = rope(b, q, Hq, D);
  int kr = rope(b, k, Hkv, D);
  int ain[6] = {kr, v, b->in[MLC_IN_POS], b->in[MLC_IN_SEQ], b->in[MLC_IN_PAGES], kv};
  int ao = op1(b, MLC_OP_KV_APPEND, ain, 6, -1);
  g->ops[ao].ia[0] = Hkv;
  g->ops[ao].ia[1] = D;
  int o = mlc_g_act(g, "attn", mlc_sym_n(1), Hq * D); /* [n, Hq*D] */
  int tin[5] = {qr, b->in[MLC_IN_POS], b->in[MLC_IN_SEQ], b->in[MLC_IN_PAGES], kv};
  int to = op1(b, MLC_OP_ATTENTION, tin, 5, o);
  g->ops[to].ia[0] = Hq;
  g->ops[to].ia[1] = Hkv;
  g->ops[to].ia[2] = D;
  g->ops[to].ia[3] = c->sliding_window > 0 && c->layer_sliding[b->layer] ? c->sliding_window : 0;
  float qpas = c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : (float)D;
  g->ops[to].fa[0] = 1.0f / sqrtf(qpas);
  g->ops[to].fa[1] = c->attn_softcap;
  return mlc_b_allreduce(b, mlc_b_linear(b, o, w->wo, w->bo, "o"));
}

static int act_kind(int act) {
  return act == MLC_ACT_GELU_TANH ? MLC_KACT_GELU_TANH : act == MLC_ACT_GELU ? MLC_KACT_GELU : MLC_KACT_SILU;
}

int mlc_b_mlp(mlc_builder *b, int xn, int wg, int wu, int wgu, int wd, int64_t F, int act) {
  mlc_graph *g = b->g;
  int gt, ut;
  if (wgu >= 0) {
    int gu = mlc_b_linear(b, xn, wgu, -1, "gate_up"); /* [n, 2F] */
    if (gu < 0)
      return -1;
    gt = mlc_g_view(g, gu, "gate", g->t[gu].rows, F, mlc_sym_c(0));
    ut = mlc_g_view(g, gu, "up", g->t[gu].rows, F, mlc_sym_c(F));
  } else {
    gt = mlc_b_linear(b, xn, wg, -1, "gate"); /* [n, F] */
    ut = mlc_b_linear(b, xn, wu, -1, "up");   /* [n, F] */
  }
  if (g->status != MLC_OK)
    return -1;
  int h = mlc_g_act(g, "act", g->t[xn].rows, F);
  int in[2] = {gt, ut};
  int o = op1(b, MLC_OP_ACT_MUL, in, 2, h);
  g->ops[o].ia[2] = act_kind(act);
  return mlc_b_allreduce(b, mlc_b_linear(b, h, wd, -1, "down"));
}

/* A matmul whose weight rows are chosen per output row by expert ids. */
static int expert_linear(mlc_builder *b, int x, int w, int ids, int64_t N, int64_t in_div, mlc_sym rows, const char *nm) {
  int y = mlc_g_act(b->g, nm, rows, N);
  int in[4] = {x, mlc_b_use(b, w), -1, ids};
  int o = op1(b, MLC_OP_MATMUL, in, 4, y);
  b->g->ops[o].ia[0] = N;
  b->g->ops[o].ia[1] = in_div;
  return y;
}

int mlc_b_moe(mlc_builder *b, int xn, int router, int wg, int wu, int wd, int64_t F) {
  mlc_graph *g = b->g;
  const mlc_model_config *c = b->cfg;
  if (g->status != MLC_OK)
    return -1;
  int64_t E = c->num_experts, K = c->num_experts_per_tok, H = c->hidden_size;
  int logits = mlc_b_linear(b, xn, router, -1, "router"); /* [n, E] */
  int wts = mlc_g_act(g, "route_w", mlc_sym_n(K), 1);    /* [n*k] */
  int ids = mlc_g_tensor(g, "route_ids", MLC_T_ACT, MLC_I32, mlc_sym_n(K), 1); /* [n*k] */
  int outs[2] = {wts, ids};
  int ro = mlc_g_op(g, MLC_OP_MOE_ROUTE, &logits, 1, outs, 2);
  g->ops[ro].layer = b->layer;
  g->ops[ro].ia[0] = E;
  g->ops[ro].ia[1] = K;
  g->ops[ro].ia[2] = c->norm_topk_prob;
  int gt = expert_linear(b, xn, wg, ids, F, K, mlc_sym_n(K), "e_gate"); /* [n*k, F] */
  int ut = expert_linear(b, xn, wu, ids, F, K, mlc_sym_n(K), "e_up");   /* [n*k, F] */
  int h = mlc_g_act(g, "e_act", mlc_sym_n(K), F);
  int in[2] = {gt, ut};
  int o = op1(b, MLC_OP_ACT_MUL, in, 2, h);
  g->ops[o].ia[2] = act_kind(c->act);
  int y = expert_linear(b, h, wd, ids, H, 1, mlc_sym_n(K), "e_down"); /* [n*k, H] */
  int out = mlc_g_act(g, "moe", mlc_sym_n(1), H);                    /* [n, H] */
  int cin[2] = {y, wts};
  int co = op1(b, MLC_OP_MOE_COMBINE, cin, 2, out);
  g->ops[co].ia[0] = K;
  return mlc_b_allreduce(b, out);
}

void mlc_b_head(mlc_builder *b, int norm_w, bool norm_add_one, int lm_head, float softcap) {
  mlc_graph *g = b->g;
  if (g->status != MLC_OK)
    return;
  int64_t H = b->cfg->hidden_size;
  b->layer = -1;
  /* the m rows whose logits are wanted (the last token of each sequence in the step) */
  int last = mlc_g_act(g, "logit_rows", mlc_sym_m(1), H); /* [m, H] */
  int gin[2] = {b->x, b->in[MLC_IN_ROWS]};
  int go = mlc_g_op(g, MLC_OP_GATHER_ROWS, gin, 2, &last, 1);
  g->ops[go].layer = -1;
  int xn = mlc_b_rmsnorm(b, last, norm_w, H, norm_add_one);
  if (b->tp_n > 1 && lm_head >= 0) {
    /* vocabulary split: this rank's rows of the head, logits gathered after */
    mlc_tensor *w = &g->t[lm_head];
    int64_t V = w->rows.c / b->tp_n;
    int s = mlc_g_tensor(g, w->name, MLC_T_WEIGHT, w->dtype, mlc_sym_c(V), w->cols); /* [V/N, H] */
    g->t[s].data = (const char *)g->t[lm_head].data + (size_t)(b->tp_rank * V) * (size_t)g->t[lm_head].cols *
                                                          mlc_dtype_size(g->t[lm_head].dtype);
    lm_head = s;
  }
  int logits = mlc_b_linear(b, xn, lm_head, -1, "logits"); /* [m, V] ([m, V/N] on a rank) */
  if (softcap > 0)
    logits = mlc_b_softcap(b, logits, softcap);
  if (b->tp_n > 1 && logits >= 0) {
    int full = mlc_g_act(g, "logits_all", mlc_sym_m(1), g->t[logits].cols * b->tp_n); /* [m, V] */
    int o = mlc_g_op(g, MLC_OP_ALLGATHER, &logits, 1, &full, 1);
    g->ops[o].layer = -1;
    logits = full;
  }
  g->logits = logits;
  if (logits >= 0)
    g->t[logits].is_output = true;
}
