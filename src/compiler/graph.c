/* graph.c: building the model graph. */
#include "compiler/graph.h"

#include <stdlib.h>
#include <string.h>

static const char *OP_NAMES[MLC_OP_COUNT] = {
    [MLC_OP_EMBED] = "embed",           [MLC_OP_RMSNORM] = "rmsnorm",
    [MLC_OP_ADD] = "add",               [MLC_OP_ADD_RMSNORM] = "add_rmsnorm",
    [MLC_OP_MATMUL] = "matmul",         [MLC_OP_GATED_MATMUL] = "gated_matmul",
    [MLC_OP_ACT_MUL] = "act_mul",       [MLC_OP_SOFTCAP] = "softcap",
    [MLC_OP_DEQUANT] = "dequant",       [MLC_OP_ROPE] = "rope",
    [MLC_OP_KV_APPEND] = "kv_append",   [MLC_OP_ROPE_KV] = "rope_kv_append",
    [MLC_OP_ATTENTION] = "attention",   [MLC_OP_MOE_ROUTE] = "moe_route",
    [MLC_OP_MOE_COMBINE] = "moe_combine", [MLC_OP_GATHER_ROWS] = "gather_rows",
    [MLC_OP_ALLREDUCE] = "allreduce",   [MLC_OP_ALLGATHER] = "allgather",
    [MLC_OP_ATTN_COMBINE] = "attn_combine", [MLC_OP_SAMPLE] = "sample",
};
const char *mlc_op_name(mlc_opkind k) { return k < MLC_OP_COUNT ? OP_NAMES[k] : "?"; }

void mlc_graph_init(mlc_graph *g) {
  memset(g, 0, sizeof *g);
  g->logits = -1;
  g->tokens = -1;
}
void mlc_graph_free(mlc_graph *g) {
  free(g->t);
  free(g->ops);
  memset(g, 0, sizeof *g);
}

int mlc_g_tensor(mlc_graph *g, const char *name, mlc_tkind kind, mlc_dtype dt, mlc_sym rows, int64_t cols) {
  if (g->nt == g->capt) {
    int cap = g->capt ? g->capt * 2 : 256;
    mlc_tensor *t = realloc(g->t, sizeof *t * (size_t)cap);
    MLC_ASSERT(t != NULL);
    g->t = t;
    g->capt = cap;
  }
  mlc_tensor *t = &g->t[g->nt];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->kind = kind;
  t->dtype = dt;
  t->rows = rows;
  t->cols = cols;
  t->row_stride = cols;
  t->view_src = -1;
  t->scale_tensor = -1;
  t->first_def = t->last_use = -1;
  return g->nt++;
}

int mlc_g_act(mlc_graph *g, const char *name, mlc_sym rows, int64_t cols) {
  return mlc_g_tensor(g, name, MLC_T_ACT, MLC_F32, rows, cols);
}

int mlc_g_view(mlc_graph *g, int src, const char *name, mlc_sym rows, int64_t cols, mlc_sym off) {
  mlc_dtype dt = g->t[src].dtype;
  int64_t stride = g->t[src].row_stride;
  int v = mlc_g_tensor(g, name, MLC_T_VIEW, dt, rows, cols);
  g->t[v].view_src = src;
  g->t[v].view_off = off;
  g->t[v].row_stride = stride;
  return v;
}

int mlc_g_root(const mlc_graph *g, int t) {
  while (t >= 0 && g->t[t].kind == MLC_T_VIEW)
    t = g->t[t].view_src;
  return t;
}

int mlc_g_op(mlc_graph *g, mlc_opkind kind, const int *in, int nin, const int *out, int nout) {
  MLC_ASSERT(nin <= MLC_OP_MAX_IN && nout <= 2);
  if (g->nops == g->capops) {
    int cap = g->capops ? g->capops * 2 : 256;
    mlc_op *o = realloc(g->ops, sizeof *o * (size_t)cap);
    MLC_ASSERT(o != NULL);
    g->ops = o;
    g->capops = cap;
  }
  mlc_op *o = &g->ops[g->nops];
  memset(o, 0, sizeof *o);
  o->kind = kind;
  for (int i = 0; i < MLC_OP_MAX_IN; i++)
    o->in[i] = i < nin ? in[i] : -1;
  o->nin = nin;
  o->out[0] = nout > 0 ? out[0] : -1;
  o->out[1] = nout > 1 ? out[1] : -1;
  o->nout = nout;
  o->layer = -1;
  return g->nops++;
}
