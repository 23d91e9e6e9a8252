/*
 * plan.c: static memory planning. Every activation gets a fixed offset in one arena sized from
 * the symbolic upper bound (n <= max_n, m <= n). Two activations share bytes only when their
 * live ranges (first def .. last use, in op order) do not overlap. Greedy by size, largest first,
 * each placed at the lowest offset that fits among the already placed tensors it overlaps.
 */
#include "compiler/graph.h"

#include <stdlib.h>
#include <string.h>

static size_t upper_bytes(const mlc_tensor *t, int64_t max_n) {
  int64_t rows = mlc_sym_eval(t->rows, max_n, max_n);
  if (rows < 0)
    rows = 0;
  return ((size_t)rows * (size_t)t->cols * mlc_dtype_size(t->dtype) + 63) & ~(size_t)63;
}

static int cmp_size_desc(const void *a, const void *b, void *ctx) {
  const mlc_graph *g = ctx;
  const mlc_tensor *x = &g->t[*(const int *)a], *y = &g->t[*(const int *)b];
  if (x->size_max != y->size_max)
    return x->size_max < y->size_max ? 1 : -1;
  return *(const int *)a - *(const int *)b;
}

mlc_status mlc_plan_memory(mlc_graph *g, int64_t max_n) {
  g->max_n = max_n;
  for (int i = 0; i < g->nt; i++) {
    g->t[i].first_def = g->t[i].last_use = -1;
  }
  for (int i = 0; i < g->nops; i++) {
    const mlc_op *o = &g->ops[i];
    for (int k = 0; k < o->nout; k++) {
      mlc_tensor *t = &g->t[mlc_g_root(g, o->out[k])];
      if (t->first_def < 0)
        t->first_def = i;
      if (t->last_use < i)
        t->last_use = i;
    }
    for (int k = 0; k < o->nin; k++) {
      if (o->in[k] < 0)
        continue;
      mlc_tensor *t = &g->t[mlc_g_root(g, o->in[k])];
      if (t->last_use < i)
        t->last_use = i;
    }
  }
  if (g->logits >= 0)
    g->t[mlc_g_root(g, g->logits)].last_use = g->nops;
  if (g->tokens >= 0) /* read back after the step, like the logits */
    g->t[mlc_g_root(g, g->tokens)].last_use = g->nops;

  int *order = malloc(sizeof(int) * (size_t)(g->nt ? g->nt : 1));
  if (!order)
    return mlc_err(MLC_ERR_NOMEM, "out of memory planning activations");
  int n = 0;
  for (int i = 0; i < g->nt; i++) {
    mlc_tensor *t = &g->t[i];
    if (t->kind != MLC_T_ACT || t->first_def < 0)
      continue;
    t->size_max = upper_bytes(t, max_n);
    order[n++] = i;
  }
  qsort_r(order, (size_t)n, sizeof(int), cmp_size_desc, g);
  size_t total = 0;
  for (int a = 0; a < n; a++) {
    mlc_tensor *t = &g->t[order[a]];
    size_t off = 0;
    bool moved = true;
    /* move past every placed, overlapping-in-time tensor that overlaps in space */
    while (moved) {
      moved = false;
      for (int b = 0; b < a; b++) {
        mlc_tensor *u = &g->t[order[b]];
        bool live = !(u->last_use < t->first_def || t->last_use < u->first_def);
        if (live && off < u->offset + u->size_max && u->offset < off + t->size_max) {
          off = u->offset + u->size_max;
          moved = true;
        }
      }
    }
    t->offset = off;
    if (off + t->size_max > total)
      total = off + t->size_max;
  }
  free(order);
  g->arena_size = total;
  return MLC_OK;
}
