/*
 * passes.c: graph-to-graph rewrites. Each pass is small, finds one pattern in the op list and
 * replaces it by a fused op, marking the ops it absorbed dead. Ops stay in topological order:
 * a fused op takes the place of the last op of its pattern.
 */
#include "compiler/graph.h"

#include <string.h>

/* Number of live ops reading tensor t (directly or through a view of it). */
static int uses(const mlc_graph *g, int t) {
  int n = 0;
  for (int i = 0; i < g->nops; i++) {
    const mlc_op *o = &g->ops[i];
    if (o->dead)
      continue;
    for (int j = 0; j < o->nin; j++) {
      int x = o->in[j];
      while (x >= 0) {
        if (x == t) {
          n++;
          break;
        }
        x = g->t[x].kind == MLC_T_VIEW ? g->t[x].view_src : -1;
      }
    }
  }
  return n + (g->logits == t);
}

static int producer(const mlc_graph *g, int t) {
  for (int i = 0; i < g->nops; i++)
    if (!g->ops[i].dead && (g->ops[i].out[0] == t || g->ops[i].out[1] == t))
      return i;
  return -1;
}

/* DEQUANT(W) feeding only weight slots of matmul/gated/embed/norm ops: read W in its stored
 * type inside those kernels instead of materialising an f32 copy. */
int mlc_pass_fuse_dequant(mlc_graph *g) {
  int n = 0;
  for (int i = 0; i < g->nops; i++) {
    mlc_op *d = &g->ops[i];
    if (d->dead || d->kind != MLC_OP_DEQUANT)
      continue;
    int w = d->in[0], y = d->out[0];
    bool ok = true;
    for (int j = 0; j < g->nops && ok; j++) {
      mlc_op *o = &g->ops[j];
      if (o->dead || j == i)
        continue;
      for (int s = 0; s < o->nin; s++) {
        if (o->in[s] != y)
          continue;
        bool weight_slot = ((o->kind == MLC_OP_MATMUL && (s == 1 || s == 2)) ||
                            (o->kind == MLC_OP_GATED_MATMUL && (s == 1 || s == 2)) ||
                            (o->kind == MLC_OP_EMBED && s == 1) ||
                            ((o->kind == MLC_OP_RMSNORM) && s == 1) ||
                            (o->kind == MLC_OP_ADD_RMSNORM && s == 2));
        if (!weight_slot)
          ok = false;
      }
    }
    if (!ok || g->logits == y)
      continue;
    for (int j = 0; j < g->nops; j++)
      for (int s = 0; s < g->ops[j].nin; s++)
        if (g->ops[j].in[s] == y)
          g->ops[j].in[s] = w;
    d->dead = true;
    n++;
  }
  return n;
}

/* ADD(a, b) -> s, then RMSNORM(s) over whole rows: one kernel writes s and norm(s). */
int mlc_pass_fuse_add_rmsnorm(mlc_graph *g) {
  int n = 0;
  for (int i = 0; i < g->nops; i++) {
    mlc_op *a = &g->ops[i];
    if (a->dead || a->kind != MLC_OP_ADD)
      continue;
    int s = a->out[0];
    /* the first norm after the add that reads s whole */
    for (int j = i + 1; j < g->nops; j++) {
      mlc_op *r = &g->ops[j];
      if (r->dead || r->kind != MLC_OP_RMSNORM || r->in[0] != s || r->ia[0] != g->t[s].cols)
        continue;
      /* nothing between i and j may write a or b (ops are SSA: only outputs are written) */
      mlc_op f = *r;
      f.kind = MLC_OP_ADD_RMSNORM;
      f.in[0] = a->in[0];
      f.in[1] = a->in[1];
      f.in[2] = r->in[1];
      f.nin = 3;
      f.out[0] = s;
      f.out[1] = r->out[0];
      f.nout = 2;
      /* the fused op takes the add's place: norm(s) is ready earlier, which is harmless */
      r->dead = true;
      *a = f;
      n++;
      break;
    }
  }
  return n;
}

static bool same_expert_cfg(const mlc_op *a, const mlc_op *b) {
  return a->ia[1] == b->ia[1] && a->in[3] == b->in[3];
}

/* ACT_MUL(MATMUL(x, Wg), MATMUL(x, Wu)) -> GATED_MATMUL(x, Wg, Wu); also the fused gate_up form
 * ACT_MUL(view(MATMUL(x, Wgu), 0), view(same, F)) -> GATED_MATMUL(x, Wgu, Wgu, up offset F). */
int mlc_pass_fuse_gated(mlc_graph *g) {
  int n = 0;
  for (int i = 0; i < g->nops; i++) {
    mlc_op *am = &g->ops[i];
    if (am->dead || am->kind != MLC_OP_ACT_MUL)
      continue;
    int ta = am->in[0], tb = am->in[1];
    int F = (int)g->t[am->out[0]].cols;
    mlc_op f = {0};
    f.kind = MLC_OP_GATED_MATMUL;
    f.ia[0] = F;
    f.ia[2] = am->ia[2];
    f.layer = am->layer;
    f.out[0] = am->out[0];
    f.nout = 1;
    for (int s = 0; s < MLC_OP_MAX_IN; s++)
      f.in[s] = -1;
    if (g->t[ta].kind == MLC_T_VIEW && g->t[tb].kind == MLC_T_VIEW && g->t[ta].view_src == g->t[tb].view_src) {
      int src = g->t[ta].view_src;
      int pi = producer(g, src);
      if (pi < 0 || g->ops[pi].kind != MLC_OP_MATMUL || g->ops[pi].in[2] >= 0 || g->ops[pi].fa[0] != 0)
        continue;
      if (g->t[ta].view_off.c != 0 || g->t[tb].view_off.c != F || uses(g, src) != 1)
        continue;
      mlc_op *mm = &g->ops[pi];
      f.in[0] = mm->in[0];
      f.in[1] = mm->in[1];
      f.in[2] = mm->in[1];
      f.in[3] = mm->in[3];
      f.ia[1] = mm->ia[1];
      f.ia[3] = F;
      f.nin = 4;
      mm->dead = true;
    } else {
      int pa = producer(g, ta), pb = producer(g, tb);
      if (pa < 0 || pb < 0)
        continue;
      mlc_op *ma = &g->ops[pa], *mb = &g->ops[pb];
      if (ma->kind != MLC_OP_MATMUL || mb->kind != MLC_OP_MATMUL || ma->in[0] != mb->in[0] ||
          ma->in[2] >= 0 || mb->in[2] >= 0 || ma->fa[0] != 0 || mb->fa[0] != 0 || !same_expert_cfg(ma, mb) ||
          uses(g, ta) != 1 || uses(g, tb) != 1 || g->t[ma->in[1]].dtype != g->t[mb->in[1]].dtype)
        continue;
      f.in[0] = ma->in[0];
      f.in[1] = ma->in[1];
      f.in[2] = mb->in[1];
      f.in[3] = ma->in[3];
      f.ia[1] = ma->ia[1];
      f.nin = 4;
      ma->dead = true;
      mb->dead = true;
    }
    *am = f;
    n++;
  }
  return n;
}

/* SOFTCAP(MATMUL(...)) -> MATMUL with a tanh-softcap epilogue. */
int mlc_pass_fuse_softcap(mlc_graph *g) {
  int n = 0;
  for (int i = 0; i < g->nops; i++) {
    mlc_op *sc = &g->ops[i];
    if (sc->dead || sc->kind != MLC_OP_SOFTCAP)
      continue;
    int p = producer(g, sc->in[0]);
    if (p < 0 || g->ops[p].kind != MLC_OP_MATMUL || g->ops[p].fa[0] != 0 || uses(g, sc->in[0]) != 1)
      continue;
    mlc_op f = g->ops[p];
    f.fa[0] = sc->fa[0];
    f.out[0] = sc->out[0];
    g->ops[p].dead = true;
    *sc = f;
    n++;
  }
  return n;
}

/* ROPE(q), ROPE(k), KV_APPEND(k_rot, v) of one layer -> ROPE_KV: one kernel rotates q and k
 * and writes k and v into the paged cache (k_rot never exists in memory). */
int mlc_pass_fuse_rope_kv(mlc_graph *g) {
  int n = 0;
  for (int i = 0; i < g->nops; i++) {
    mlc_op *ap = &g->ops[i];
    if (ap->dead || ap->kind != MLC_OP_KV_APPEND)
      continue;
    int kr = ap->in[0];
    int pk = producer(g, kr);
    if (pk < 0 || g->ops[pk].kind != MLC_OP_ROPE || uses(g, kr) != 1)
      continue;
    int pq = -1;
    for (int j = 0; j < g->nops; j++) {
      mlc_op *o = &g->ops[j];
      if (!o->dead && o->kind == MLC_OP_ROPE && j != pk && o->layer == ap->layer && o->in[1] == g->ops[pk].in[1] &&
          o->in[2] == g->ops[pk].in[2])
        pq = j;
    }
    if (pq < 0)
      continue;
    mlc_op *rq = &g->ops[pq], *rk = &g->ops[pk];
    if (rq->ia[1] != rk->ia[1] || rq->ia[2] != rk->ia[2] || rq->fa[0] != rk->fa[0])
      continue;
    /* place the fused op where the later of the two ropes was, and the append op goes */
    int at = pq > pk ? pq : pk;
    int pv = producer(g, mlc_g_root(g, ap->in[1]));
    if (at > i || pv > at)
      continue;
    mlc_op f = {0};
    f.kind = MLC_OP_ROPE_KV;
    int in[8] = {rq->in[0], rk->in[0], ap->in[1], ap->in[2], ap->in[3], ap->in[4], rq->in[2], ap->in[5]};
    memcpy(f.in, in, sizeof in);
    f.nin = 8;
    f.out[0] = rq->out[0];
    f.nout = 1;
    f.ia[0] = rq->ia[0];
    f.ia[1] = rk->ia[0];
    f.ia[2] = rq->ia[1];
    f.ia[3] = rq->ia[2];
    f.fa[0] = rq->fa[0];
    f.layer = ap->layer;
    rq->dead = true;
    rk->dead = true;
    ap->dead = true;
    g->ops[at] = f;
    n++;
  }
  return n;
}

/* Removes ops whose outputs nobody reads (KV appends are kept: they write the cache). */
int mlc_pass_split_attention(mlc_graph *g, int S) {
  if (S <= 1)
    return 0;
  int n = 0;
  for (int i = 0; i < g->nops; i++) {
    if (g->ops[i].dead || g->ops[i].kind != MLC_OP_ATTENTION || g->ops[i].ia[4] > 1)
      continue;
    int o = g->ops[i].out[0];
    int64_t Hq = g->ops[i].ia[0], D = g->ops[i].ia[2];
    int part = mlc_g_act(g, "attn_part", g->t[o].rows, Hq * S * (D + 2)); /* [n, Hq*S*(D+2)] */
    int c = mlc_g_op(g, MLC_OP_ATTN_COMBINE, &part, 1, &o, 1);
    if (part < 0 || c < 0)
      return n;
    mlc_op comb = g->ops[c];
    comb.ia[0] = Hq;
    comb.ia[1] = D;
    comb.ia[2] = S;
    comb.layer = g->ops[i].layer;
    /* in place of the next op: the ops after the attention move down one */
    memmove(&g->ops[i + 2], &g->ops[i + 1], sizeof *g->ops * (size_t)(g->nops - 1 - (i + 1)));
    g->ops[i + 1] = comb;
    g->ops[i].out[0] = part;
    g->ops[i].ia[4] = S;
    n++;
    i++;
  }
  return n;
}

int mlc_pass_dce(mlc_graph *g) {
  int removed = 0;
  bool changed = true;
  while (changed) {
    changed = false;
    for (int i = g->nops - 1; i >= 0; i--) {
      mlc_op *o = &g->ops[i];
      if (o->dead || o->kind == MLC_OP_KV_APPEND || o->kind == MLC_OP_ROPE_KV || o->kind == MLC_OP_SAMPLE)
        continue;
      bool used = false;
      for (int k = 0; k < o->nout; k++)
        if (uses(g, o->out[k]) > 0)
          used = true;
      if (!used) {
        o->dead = true;
        removed++;
        changed = true;
      }
    }
  }
  /* compact */
  int w = 0;
  for (int i = 0; i < g->nops; i++)
    if (!g->ops[i].dead)
      g->ops[w++] = g->ops[i];
  g->nops = w;
  return removed;
}

void mlc_passes_run(mlc_graph *g, mlc_pass_stats *st) {
  mlc_pass_stats s = {0};
  s.dequant_fused = mlc_pass_fuse_dequant(g);
  s.softcap_fused = mlc_pass_fuse_softcap(g);
  s.gated_fused = mlc_pass_fuse_gated(g);
  s.rope_kv_fused = mlc_pass_fuse_rope_kv(g);
  s.add_norm_fused = mlc_pass_fuse_add_rmsnorm(g);
  s.dead_removed = mlc_pass_dce(g);
  if (st)
    *st = s;
}
