/*
 * lower.c: the schedule rules, one per op kind, writing kernels in the kernel IR; and the
 * mapping from a graph op to its kernel descriptor, buffers, dynamic params and grid.
 *
 * CPU schedules (the C target): the parallel range covers independent output units (matrix
 * columns for matmuls so each weight row is read once per step and reused across all rows of
 * the step; rows for norms; (token, head) pairs for attention). Dot products keep `dot_lanes`
 * independent accumulators so the C compiler vectorises them without reassociating floats.
 */
#include "kernel/lower.h"

#include <math.h>
#include <stdlib.h>

#include "format/quant.h"
#include <string.h>

static const mlc_tunables TUNE_C = {.dot_lanes = 16, .unroll_max = 16};
static const mlc_tunables TUNE_GLSL = {.dot_lanes = 4, .unroll_max = 4, .lanes = 32}; /* lanes: a workgroup per output (render.c) */
static const mlc_tunables TUNE_CUDA = {.dot_lanes = 4, .unroll_max = 8, .block = 128, .lanes = 32};
const mlc_tunables *mlc_tunables_for(kir_lang lang) {
  return lang == KIR_LANG_GLSL ? &TUNE_GLSL : lang == KIR_LANG_CUDA ? &TUNE_CUDA : &TUNE_C;
}

/* ---- helpers ---- */
typedef struct lctx {
  kir_kernel *k;
  const mlc_kdesc *d;
  const mlc_tunables *tu;
} lctx;

/* size i: literal when specialised, ip[i] when generic */
static kir_node *SZ(lctx *c, int i) { return c->d->generic ? kir_ip(c->k, i) : kir_i(c->k, c->d->size[i]); }
static kir_node *FV(lctx *c, int i) { return c->d->generic ? kir_fp(c->k, i) : kir_f(c->k, c->d->fv[i]); }
static kir_node *DYN(lctx *c, int i) { return kir_ip(c->k, MLC_KDYN + i); }
static kir_node *I(lctx *c, int64_t v) { return kir_i(c->k, v); }
static kir_node *F(lctx *c, double v) { return kir_f(c->k, v); }
#define ADD(a, b) kir_bin(c->k, KIR_ADD, a, b)
#define SUB(a, b) kir_bin(c->k, KIR_SUB, a, b)
#define MUL(a, b) kir_bin(c->k, KIR_MUL, a, b)
#define DIV(a, b) kir_bin(c->k, KIR_DIV, a, b)
#define MOD(a, b) kir_bin(c->k, KIR_MOD, a, b)
#define LD(b, i) kir_load(c->k, b, i)
#define V(x) kir_v(c->k, x)
/* the largest head_dim a local array must hold */
static int64_t local_len(lctx *c, int size_idx) {
  return c->d->generic ? MLC_GENERIC_MAX_HEAD_DIM : c->d->size[size_idx];
}

/*
 * Emits into blk: float `res` = sum_{i<K} A[abase+i] * B[bbase+i], with `lanes` independent
 * partial sums held in a local array (vectorisable), then a serial tail.
 */
static int dot(lctx *c, kir_block *blk, int A, kir_node *abase, int B, kir_node *bbase, kir_node *K,
               const char *tag) {
  kir_kernel *k = c->k;
  int L = c->tu->dot_lanes;
  char nm[24];
  snprintf(nm, sizeof nm, "acc_%s", tag);
  int acc = kir_buf_local(k, nm, MLC_F32, L);
  int l0 = kir_var(k, "l", KIR_I64);
  kir_push(blk, kir_for(k, l0, I(c, 0), I(c, L), KIR_LOOP_UNROLL, kir_store(k, acc, V(l0), F(c, 0))));
  int kk = kir_var(k, "kk", KIR_I64), l1 = kir_var(k, "l", KIR_I64);
  kir_node *idx = ADD(MUL(V(kk), I(c, L)), V(l1));
  kir_node *upd = kir_store(k, acc, V(l1),
                            ADD(LD(acc, V(l1)), MUL(LD(A, ADD(abase, idx)), LD(B, ADD(bbase, idx)))));
  kir_node *inner = kir_for(k, l1, I(c, 0), I(c, L), KIR_LOOP_UNROLL, upd);
  kir_push(blk, kir_for(k, kk, I(c, 0), DIV(K, I(c, L)), KIR_LOOP_SERIAL, inner));
  snprintf(nm, sizeof nm, "s_%s", tag);
  int res = kir_var(k, nm, KIR_F32);
  kir_push(blk, kir_local(k, res, F(c, 0)));
  int l2 = kir_var(k, "l", KIR_I64);
  kir_push(blk, kir_for(k, l2, I(c, 0), I(c, L), KIR_LOOP_UNROLL, kir_assign(k, res, ADD(V(res), LD(acc, V(l2))))));
  int t = kir_var(k, "kt", KIR_I64);
  kir_node *tail = kir_assign(k, res, ADD(V(res), MUL(LD(A, ADD(abase, V(t))), LD(B, ADD(bbase, V(t))))));
  kir_node *lo = MUL(DIV(K, I(c, L)), I(c, L));
  if (!(lo->op == KIR_CONST && K->op == KIR_CONST && lo->i == K->i))
    kir_push(blk, kir_for(k, t, lo, K, KIR_LOOP_SERIAL, tail));
  return res;
}

/*
 * Weights as the schedules read them: a plain buffer (f32/f16/bf16, converted by the load), or
 * packed group-quantized words plus their scale buffer (format/quant.h), dequantized inside the
 * kernel: (((word >> shift) & mask) - max_int) * scale. No dequantized matrix is materialised.
 */
typedef struct wsrc {
  int buf, sbuf;            /* sbuf: -1 for plain weights */
  const mlc_qscheme *q;     /* NULL for plain weights */
  kir_node *K;              /* logical row length */
  kir_node *N;              /* rows (KN layout: the word array's row stride) */
} wsrc;

/* Declares the weight buffer of dtype dt (and, when quantized, notes that a scale buffer follows
 * the kernel's other buffers: call wsrc_scale after declaring them). */
static wsrc wsrc_new(lctx *c, const char *name, mlc_dtype dt, kir_node *K, kir_node *N) {
  wsrc w = {.sbuf = -1, .K = K, .N = N};
  w.q = mlc_qscheme_of(dt);
  w.buf = kir_buf_arg(c->k, name, w.q ? MLC_U32 : dt, false);
  return w;
}
static void wsrc_scale(lctx *c, wsrc *w, const char *name) {
  if (w->q)
    w->sbuf = kir_buf_arg(c->k, name, w->q->model_dtype, false);
}
/* dtype of values that accompany a weight of dtype dt (bias): the scheme's model dtype */
static mlc_dtype companion_dtype(int dt) {
  const mlc_qscheme *q = mlc_qscheme_of((mlc_dtype)dt);
  return q ? q->model_dtype : (mlc_dtype)dt;
}
static kir_node *qword_idx(lctx *c, const wsrc *w, kir_node *row, kir_node *wi) {
  if (w->q->kn)
    return ADD(MUL(wi, w->N), row);
  kir_node *W = MUL(DIV(ADD(w->K, I(c, w->q->group - 1)), I(c, w->q->group)), I(c, w->q->group / w->q->per_word));
  return ADD(MUL(row, W), wi);
}
static kir_node *qscale_idx(lctx *c, const wsrc *w, kir_node *row, kir_node *k) {
  kir_node *g = DIV(k, I(c, w->q->group));
  if (w->q->kn)
    return ADD(MUL(g, w->N), row);
  kir_node *G = DIV(ADD(w->K, I(c, w->q->group - 1)), I(c, w->q->group));
  return ADD(MUL(row, G), g);
}
static kir_node *qvalue(lctx *c, const wsrc *w, kir_node *word, kir_node *e) {
  kir_node *v = kir_bin(c->k, KIR_BITAND, kir_bin(c->k, KIR_SHR, word, MUL(e, I(c, w->q->bits))),
                        I(c, (1 << w->q->bits) - 1));
  return kir_un(c->k, KIR_TOF, SUB(v, I(c, w->q->max_int)));
}
/* element (row, k) of the weight as f32 */
static kir_node *wload(lctx *c, const wsrc *w, kir_node *row, kir_node *k) {
  if (!w->q)
    return LD(w->buf, ADD(MUL(row, w->K), k));
  int pw = w->q->per_word;
  kir_node *word = LD(w->buf, qword_idx(c, w, row, DIV(k, I(c, pw))));
  return MUL(qvalue(c, w, word, MOD(k, I(c, pw))), LD(w->sbuf, qscale_idx(c, w, row, k)));
}

/*
 * dot of weight row `row` with X[xbase .. xbase+K): plain weights use dot(); packed ones loop
 * over words (one load, one scale per word) with the word's elements unrolled as the lanes.
 */
static int wdot(lctx *c, kir_block *blk, const wsrc *w, kir_node *row, int X, kir_node *xbase, kir_node *K,
                const char *tag) {
  if (!w->q)
    return dot(c, blk, w->buf, MUL(row, w->K), X, xbase, K, tag);
  kir_kernel *k = c->k;
  int pw = w->q->per_word;
  char nm[24];
  snprintf(nm, sizeof nm, "acc_%s", tag);
  /* two words per step into two accumulator sets: independent chains for the FMA latency */
  int acc = kir_buf_local(k, nm, MLC_F32, 2 * pw);
  int l0 = kir_var(k, "l", KIR_I64);
  kir_push(blk, kir_for(k, l0, I(c, 0), I(c, 2 * pw), KIR_LOOP_UNROLL, kir_store(k, acc, V(l0), F(c, 0))));
  int wp = kir_var(k, "wp", KIR_I64);
  kir_block body = {0};
  for (int h = 0; h < 2; h++) {
    kir_node *wi = ADD(MUL(V(wp), I(c, 2)), I(c, h));
    int word = kir_var(k, "word", KIR_I64), sc = kir_var(k, "sc", KIR_F32), e = kir_var(k, "e", KIR_I64);
    kir_push(&body, kir_local(k, word, LD(w->buf, qword_idx(c, w, row, wi))));
    kir_push(&body, kir_local(k, sc, LD(w->sbuf, qscale_idx(c, w, row, MUL(wi, I(c, pw))))));
    kir_node *xv = LD(X, ADD(xbase, ADD(MUL(wi, I(c, pw)), V(e))));
    kir_node *slot = ADD(V(e), I(c, h * pw));
    kir_node *upd = kir_store(k, acc, slot, ADD(LD(acc, slot), MUL(MUL(qvalue(c, w, V(word), V(e)), V(sc)), xv)));
    kir_push(&body, kir_for(k, e, I(c, 0), I(c, pw), KIR_LOOP_VECTOR, upd));
  }
  kir_push(blk, kir_for(k, wp, I(c, 0), DIV(K, I(c, 2 * pw)), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
  snprintf(nm, sizeof nm, "s_%s", tag);
  int res = kir_var(k, nm, KIR_F32);
  kir_push(blk, kir_local(k, res, F(c, 0)));
  int l2 = kir_var(k, "l", KIR_I64);
  kir_push(blk, kir_for(k, l2, I(c, 0), I(c, 2 * pw), KIR_LOOP_UNROLL, kir_assign(k, res, ADD(V(res), LD(acc, V(l2))))));
  int t = kir_var(k, "kt", KIR_I64);
  kir_node *lo = MUL(DIV(K, I(c, 2 * pw)), I(c, 2 * pw));
  if (!(lo->op == KIR_CONST && K->op == KIR_CONST && lo->i == K->i))
    kir_push(blk, kir_for(k, t, lo, K, KIR_LOOP_SERIAL,
                          kir_assign(k, res, ADD(V(res), MUL(wload(c, w, row, V(t)), LD(X, ADD(xbase, V(t))))))));
  return res;
}

/*
 * GEMV with lanes (GPU languages whose tunables set `lanes`; docs/backends.md): the `lanes`
 * invocations of one output split K; each step a lane loads a 16-byte slice of the weight row
 * (KIR_VLOAD) and multiplies it with the matching x values; KIR_LANE_SUM combines the partial
 * sums. For float weights with literal sizes and K a multiple of lanes * slice; 0 otherwise
 * (the caller keeps the one-invocation schedule). $MLC_NO_LANES disables it (comparisons).
 */
static int lane_slice(lctx *c, const wsrc *w) {
  if (c->tu->lanes <= 1 || c->d->generic || w->q || w->K->op != KIR_CONST || getenv("MLC_NO_LANES"))
    return 0;
  mlc_dtype dt = c->k->bufs[w->buf].dtype;
  int n = dt == MLC_F32 ? 4 : (dt == MLC_F16 || dt == MLC_BF16) ? 8 : 0;
  return n && w->K->i % (c->tu->lanes * n) == 0 ? n : 0;
}
static int wdot_lanes(lctx *c, kir_block *blk, const wsrc *w, int n, kir_node *row, int X, kir_node *xbase,
                      const char *tag) {
  kir_kernel *k = c->k;
  int L = c->tu->lanes;
  k->lanes = L;
  char nm[24];
  snprintf(nm, sizeof nm, "wv_%s", tag);
  int wv = kir_buf_local(k, nm, MLC_F32, n);
  snprintf(nm, sizeof nm, "p_%s", tag);
  int acc = kir_var(k, nm, KIR_F32);
  kir_push(blk, kir_local(k, acc, F(c, 0)));
  int kk = kir_var(k, "kk", KIR_I64), e = kir_var(k, "e", KIR_I64);
  kir_node *base = MUL(ADD(MUL(V(kk), I(c, L)), kir_lane(k)), I(c, n));
  kir_block body = {0};
  kir_push(&body, kir_vload(k, wv, w->buf, ADD(MUL(row, w->K), base)));
  kir_node *upd = kir_assign(k, acc, ADD(V(acc), MUL(LD(wv, V(e)), LD(X, ADD(xbase, ADD(base, V(e)))))));
  kir_push(&body, kir_for(k, e, I(c, 0), I(c, n), KIR_LOOP_UNROLL, upd));
  int64_t trips = w->K->i / (L * n);
  kir_push(blk, kir_for(k, kk, I(c, 0), I(c, trips), trips <= 32 ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL,
                        kir_block_done(k, &body)));
  snprintf(nm, sizeof nm, "s_%s", tag);
  int res = kir_var(k, nm, KIR_F32);
  kir_push(blk, kir_local(k, res, kir_un(k, KIR_LANE_SUM, V(acc))));
  return res;
}
/* wdot, with lanes where the schedule allows */
static int wdot_any(lctx *c, kir_block *blk, const wsrc *w, kir_node *row, int X, kir_node *xbase, kir_node *K,
                    const char *tag) {
  int n = lane_slice(c, w);
  return n ? wdot_lanes(c, blk, w, n, row, X, xbase, tag) : wdot(c, blk, w, row, X, xbase, K, tag);
}
/* a store that one lane makes when the kernel uses lanes */
static kir_node *lane0(lctx *c, kir_node *st) {
  return c->k->lanes > 1 ? kir_if(c->k, kir_bin(c->k, KIR_EQ, kir_lane(c->k), I(c, 0)), st, NULL) : st;
}

/*
 * Lanes over a row (CUDA; docs/backends.md): the `lanes` invocations of one parallel index split
 * a loop of n iterations, lane l taking i = trip * lanes + l (coalesced). Taken by specialised
 * kernels whose loop lengths are literal multiples of the lanes (row_lanes sets k->lanes); C,
 * generic kernels and odd sizes keep one invocation per index. $MLC_NO_LANES disables it.
 */
static bool row_lanes(lctx *c, const int64_t *n, int cnt) {
  if (c->tu->lanes <= 1 || c->d->generic || getenv("MLC_NO_LANES"))
    return false;
  for (int i = 0; i < cnt; i++)
    if (n[i] <= 0 || n[i] % c->tu->lanes)
      return false;
  c->k->lanes = c->tu->lanes;
  return true;
}
/* for var in [0, n): body, split over the lanes when the kernel has them */
static kir_node *lfor(lctx *c, int var, kir_node *n, kir_node *body) {
  kir_kernel *k = c->k;
  if (k->lanes <= 1)
    return kir_for(k, var, I(c, 0), n, KIR_LOOP_SERIAL, body);
  MLC_ASSERT(n->op == KIR_CONST && n->i % k->lanes == 0);
  int t = kir_var(k, "lt", KIR_I64);
  kir_node *items[2] = {kir_local(k, var, ADD(MUL(V(t), I(c, k->lanes)), kir_lane(k))), body};
  int64_t trips = n->i / k->lanes;
  return kir_for(k, t, I(c, 0), I(c, trips), trips <= 8 ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL, kir_seq(k, items, 2));
}

static kir_node *act(lctx *c, int kind, kir_node *x) {
  kir_kernel *k = c->k;
  switch (kind) {
  case MLC_KACT_SILU:
    return DIV(x, ADD(F(c, 1.0), kir_un(k, KIR_EXP, kir_un(k, KIR_NEG, x))));
  case MLC_KACT_GELU_TANH: {
    kir_node *inner = MUL(F(c, 0.7978845608028654), ADD(x, MUL(F(c, 0.044715), MUL(x, MUL(x, x)))));
    return MUL(MUL(F(c, 0.5), x), ADD(F(c, 1.0), kir_un(k, KIR_TANH, inner)));
  }
  default: /* exact GELU */
    return MUL(MUL(F(c, 0.5), x), ADD(F(c, 1.0), kir_un(k, KIR_ERF, MUL(x, F(c, 0.7071067811865476)))));
  }
}

static kir_node *softcap(lctx *c, kir_node *x, kir_node *cap) {
  return MUL(kir_un(c->k, KIR_TANH, DIV(x, cap)), cap);
}

/* ---- rules ---- */

/* out[t, :] = table[ids[t], :] * scale.  grid: n */
static void rule_embed(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true);    /* [n, H] */
  int ids = kir_buf_arg(k, "ids", MLC_I32, false);   /* [n] */
  kir_node *H = SZ(c, 0), *t = kir_grid(k);
  wsrc tab = wsrc_new(c, "table", (mlc_dtype)c->d->var[0], H, SZ(c, 1)); /* [V, H] */
  wsrc_scale(c, &tab, "table_scale");
  row_lanes(c, &c->d->size[0], 1);
  int i = kir_var(k, "i", KIR_I64);
  kir_node *row = LD(ids, t);
  kir_node *st = kir_store(k, out, ADD(MUL(t, H), V(i)), MUL(wload(c, &tab, row, V(i)), FV(c, 0)));
  kir_finish(k, lfor(c, i, H, st));
}

/* Normalises groups of D within rows of C: y = x * rsqrt(mean(x^2) + eps) * (w or 1 + w).
 * grid: R * (C / D). With `fused_add`, x = a + b is computed and stored to `sum` first. */
static void rule_rmsnorm(lctx *c, bool fused_add) {
  kir_kernel *k = c->k;
  int sum = -1, a = -1, b = -1, x;
  if (fused_add)
    sum = kir_buf_arg(k, "sum", MLC_F32, true); /* [R, C] */
  int out = kir_buf_arg(k, "out", MLC_F32, true); /* [R, C] */
  if (fused_add) {
    a = kir_buf_arg(k, "a", MLC_F32, false);
    b = kir_buf_arg(k, "b", MLC_F32, false);
  } else {
    x = kir_buf_arg(k, "x", MLC_F32, false);
  }
  int w = kir_buf_arg(k, "w", (mlc_dtype)c->d->var[0], false); /* [D] */
  bool add_one = c->d->var[1];
  kir_node *C = SZ(c, 0), *D = fused_add ? C : SZ(c, 1), *xs = fused_add ? C : SZ(c, 2);
  kir_node *g = kir_grid(k);
  kir_node *groups = DIV(C, D);
  kir_node *r = DIV(g, groups), *grp = MOD(g, groups);
  kir_node *obase = ADD(MUL(r, C), MUL(grp, D));
  row_lanes(c, &c->d->size[fused_add ? 0 : 1], 1); /* a warp per group: lanes over D */
  kir_block blk = {0};
  int ss = kir_var(k, "ss", KIR_F32);
  kir_push(&blk, kir_local(k, ss, F(c, 0)));
  int i = kir_var(k, "i", KIR_I64);
  if (fused_add) {
    kir_node *v = ADD(LD(a, ADD(obase, V(i))), LD(b, ADD(obase, V(i))));
    kir_block body = {0};
    kir_push(&body, kir_store(k, sum, ADD(obase, V(i)), v));
    kir_push(&body, kir_assign(k, ss, ADD(V(ss), MUL(v, v))));
    kir_push(&blk, lfor(c, i, D, kir_block_done(k, &body)));
    x = sum; /* each lane reads back only the elements it wrote */
  } else {
    kir_node *v = LD(x, ADD(ADD(MUL(r, xs), MUL(grp, D)), V(i)));
    kir_push(&blk, lfor(c, i, D, kir_assign(k, ss, ADD(V(ss), MUL(v, v)))));
  }
  if (k->lanes > 1)
    kir_push(&blk, kir_assign(k, ss, kir_un(k, KIR_LANE_SUM, V(ss))));
  int sc = kir_var(k, "scale", KIR_F32);
  kir_push(&blk, kir_local(k, sc, DIV(F(c, 1.0), kir_un(k, KIR_SQRT, ADD(DIV(V(ss), kir_un(k, KIR_TOF, D)), FV(c, 0))))));
  int j = kir_var(k, "j", KIR_I64);
  kir_node *xin = fused_add ? LD(x, ADD(obase, V(j))) : LD(x, ADD(ADD(MUL(r, xs), MUL(grp, D)), V(j)));
  kir_node *wv = LD(w, V(j));
  if (add_one)
    wv = ADD(F(c, 1.0), wv);
  kir_push(&blk, lfor(c, j, D, kir_store(k, out, ADD(obase, V(j)), MUL(MUL(xin, V(sc)), wv))));
  kir_finish(k, kir_block_done(k, &blk));
}

/* out = a + b, rows of C. grid: R */
static void rule_add(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true), a = kir_buf_arg(k, "a", MLC_F32, false),
      b = kir_buf_arg(k, "b", MLC_F32, false);
  kir_node *C = SZ(c, 0), *base = MUL(kir_grid(k), C);
  int i = kir_var(k, "i", KIR_I64);
  kir_node *idx = ADD(base, V(i));
  kir_finish(k, kir_for(k, i, I(c, 0), C, KIR_LOOP_SERIAL, kir_store(k, out, idx, ADD(LD(a, idx), LD(b, idx)))));
}

/* out[r, j] = softcap(x[xrow(r), :] . W[wrow(r, j), :] + bias[j]).  grid: N (one output column
 * per unit: the weight row is read once and reused for every row r of the step).
 * Experts: wrow = ids[r] * N + j and xrow = r / in_div. */
static void rule_matmul(lctx *c) {
  kir_kernel *k = c->k;
  const mlc_kdesc *d = c->d;
  bool bias = d->var[1], expert = d->var[2], cap = d->var[3];
  int out = kir_buf_arg(k, "out", MLC_F32, true);                 /* [R, N] */
  int x = kir_buf_arg(k, "x", MLC_F32, false);                    /* [R / in_div, K] */
  kir_node *N = SZ(c, 0), *K = SZ(c, 1), *xs = SZ(c, 3), *j = kir_grid(k);
  wsrc w = wsrc_new(c, "w", (mlc_dtype)d->var[0], K, SZ(c, 4));    /* [N, K] or [E * N, K] */
  int bb = bias ? kir_buf_arg(k, "bias", companion_dtype(d->var[0]), false) : -1; /* [N] */
  int ids = expert ? kir_buf_arg(k, "ids", MLC_I32, false) : -1;  /* [R] */
  wsrc_scale(c, &w, "w_scale");
  int r = kir_var(k, "r", KIR_I64);
  kir_node *xrow = expert ? DIV(V(r), SZ(c, 2)) : V(r);
  kir_node *wrow = expert ? ADD(MUL(LD(ids, V(r)), N), j) : j;
  kir_block body = {0};
  int s = wdot_any(c, &body, &w, wrow, x, MUL(xrow, xs), K, "d");
  kir_node *y = V(s);
  if (bias)
    y = ADD(y, LD(bb, j));
  if (cap)
    y = softcap(c, y, FV(c, 0));
  kir_push(&body, lane0(c, kir_store(k, out, ADD(MUL(V(r), N), j), y)));
  kir_finish(k, kir_for(k, r, I(c, 0), DYN(c, 0), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
}

/* out[r, j] = act(x . Wg[row j]) * (x . Wu[up_off + j]).  grid: F */
static void rule_gated(lctx *c) {
  kir_kernel *k = c->k;
  const mlc_kdesc *d = c->d;
  bool expert = d->var[2];
  int out = kir_buf_arg(k, "out", MLC_F32, true);                 /* [R, F] */
  int x = kir_buf_arg(k, "x", MLC_F32, false);                    /* [R / in_div, K] */
  kir_node *Fd = SZ(c, 0), *K = SZ(c, 1), *upoff = SZ(c, 3), *rpe = SZ(c, 4), *xs = SZ(c, 5);
  wsrc wg = wsrc_new(c, "wg", (mlc_dtype)d->var[0], K, SZ(c, 6)); /* [E * rows_per_expert, K] */
  wsrc wu = wsrc_new(c, "wu", (mlc_dtype)d->var[0], K, SZ(c, 7));
  int ids = expert ? kir_buf_arg(k, "ids", MLC_I32, false) : -1;
  wsrc_scale(c, &wg, "wg_scale");
  wsrc_scale(c, &wu, "wu_scale");
  kir_node *j = kir_grid(k);
  int r = kir_var(k, "r", KIR_I64);
  kir_node *xrow = expert ? DIV(V(r), SZ(c, 2)) : V(r);
  kir_node *ebase = expert ? MUL(LD(ids, V(r)), rpe) : I(c, 0);
  kir_block body = {0};
  int sg = wdot_any(c, &body, &wg, ADD(ebase, j), x, MUL(xrow, xs), K, "g");
  int su = wdot_any(c, &body, &wu, ADD(ADD(ebase, upoff), j), x, MUL(xrow, xs), K, "u");
  kir_push(&body, lane0(c, kir_store(k, out, ADD(MUL(V(r), Fd), j), MUL(act(c, d->var[1], V(sg)), V(su)))));
  kir_finish(k, kir_for(k, r, I(c, 0), DYN(c, 0), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
}

/* out[r, i] = act(a[r, i]) * b[r, i] (a, b may be strided views).  grid: R */
static void rule_act_mul(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true), a = kir_buf_arg(k, "a", MLC_F32, false),
      b = kir_buf_arg(k, "b", MLC_F32, false);
  kir_node *Fd = SZ(c, 0), *r = kir_grid(k);
  int i = kir_var(k, "i", KIR_I64);
  kir_node *y = MUL(act(c, c->d->var[0], LD(a, ADD(MUL(r, SZ(c, 1)), V(i)))), LD(b, ADD(MUL(r, SZ(c, 2)), V(i))));
  kir_finish(k, kir_for(k, i, I(c, 0), Fd, KIR_LOOP_SERIAL, kir_store(k, out, ADD(MUL(r, Fd), V(i)), y)));
}

/* out = tanh(x / cap) * cap.  grid: R */
static void rule_softcap(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true), x = kir_buf_arg(k, "x", MLC_F32, false);
  kir_node *C = SZ(c, 0);
  int i = kir_var(k, "i", KIR_I64);
  kir_node *idx = ADD(MUL(kir_grid(k), C), V(i));
  kir_finish(k, kir_for(k, i, I(c, 0), C, KIR_LOOP_SERIAL, kir_store(k, out, idx, softcap(c, LD(x, idx), FV(c, 0)))));
}

/* out = f32(W).  grid: rows */
static void rule_dequant(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true);
  kir_node *C = SZ(c, 0);
  wsrc w = wsrc_new(c, "w", (mlc_dtype)c->d->var[0], C, SZ(c, 1));
  wsrc_scale(c, &w, "w_scale");
  int i = kir_var(k, "i", KIR_I64);
  kir_node *idx = ADD(MUL(kir_grid(k), C), V(i));
  kir_finish(k, kir_for(k, i, I(c, 0), C, KIR_LOOP_SERIAL, kir_store(k, out, idx, wload(c, &w, kir_grid(k), V(i)))));
}

/*
 * Rotates one head (HF rotate_half layout: pairs (i, i + rot/2)) of src at sbase into the
 * store callback's destination; dims past rot are copied. angle = pos * inv_freq[i].
 */
typedef struct rot_dst {
  int buf;
  kir_node *base;
} rot_dst;
static void rotate_head(lctx *c, kir_block *blk, int src, kir_node *sbase, kir_node *pos, int invf, kir_node *D,
                        kir_node *rot, kir_node *scale, rot_dst dst) {
  kir_kernel *k = c->k;
  kir_node *half = DIV(rot, I(c, 2));
  int i = kir_var(k, "i", KIR_I64);
  kir_block body = {0};
  int ang = kir_var(k, "ang", KIR_F32);
  kir_push(&body, kir_local(k, ang, MUL(kir_un(k, KIR_TOF, pos), LD(invf, V(i)))));
  int cs = kir_var(k, "cs", KIR_F32), sn = kir_var(k, "sn", KIR_F32);
  kir_push(&body, kir_local(k, cs, MUL(kir_un(k, KIR_COS, V(ang)), scale)));
  kir_push(&body, kir_local(k, sn, MUL(kir_un(k, KIR_SIN, V(ang)), scale)));
  kir_node *x1 = LD(src, ADD(sbase, V(i))), *x2 = LD(src, ADD(sbase, ADD(V(i), half)));
  kir_push(&body, kir_store(k, dst.buf, ADD(dst.base, V(i)), SUB(MUL(x1, V(cs)), MUL(x2, V(sn)))));
  kir_push(&body, kir_store(k, dst.buf, ADD(dst.base, ADD(V(i), half)), ADD(MUL(x2, V(cs)), MUL(x1, V(sn)))));
  kir_push(blk, lfor(c, i, half, kir_block_done(k, &body)));
  int p = kir_var(k, "p", KIR_I64);
  kir_node *cp = kir_store(k, dst.buf, ADD(dst.base, V(p)), LD(src, ADD(sbase, V(p))));
  if (!(rot->op == KIR_CONST && D->op == KIR_CONST && rot->i == D->i))
    kir_push(blk, kir_for(k, p, rot, D, KIR_LOOP_SERIAL, cp));
}

/* The cache element of (page, kv, head, slot, dim) in one layer's [pages, 2, Hkv, 16, D] block. */
static kir_node *kv_index(lctx *c, kir_node *page, int kv, kir_node *head, kir_node *slot, kir_node *Hkv,
                          kir_node *D) {
  kir_node *blk = ADD(MUL(ADD(MUL(page, I(c, 2)), I(c, kv)), Hkv), head);
  return ADD(MUL(blk, MUL(I(c, MLC_KV_PAGE), D)), MUL(slot, D));
}

/* The page holding position p of token t's sequence. */
static kir_node *page_of(lctx *c, int pages, int seq, kir_node *t, kir_node *p, kir_node *maxp) {
  return LD(pages, ADD(MUL(LD(seq, t), maxp), DIV(p, I(c, MLC_KV_PAGE))));
}

/* Copies head `h` of k and v rows of token t into the cache. */
static void append_kv_head(lctx *c, kir_block *blk, int kv, int k_, int v_, int pos, int seq, int pages, kir_node *t,
                           kir_node *h, kir_node *Hkv, kir_node *D, kir_node *ks, kir_node *vs, kir_node *maxp,
                           bool copy_k) {
  kir_kernel *k = c->k;
  kir_node *p = LD(pos, t);
  int pg = kir_var(k, "page", KIR_I64);
  kir_push(blk, kir_local(k, pg, page_of(c, pages, seq, t, p, maxp)));
  kir_node *slot = MOD(p, I(c, MLC_KV_PAGE));
  int i = kir_var(k, "i", KIR_I64);
  kir_block body = {0};
  if (copy_k)
    kir_push(&body, kir_store(k, kv, ADD(kv_index(c, V(pg), 0, h, slot, Hkv, D), V(i)),
                              LD(k_, ADD(ADD(MUL(t, ks), MUL(h, D)), V(i)))));
  kir_push(&body, kir_store(k, kv, ADD(kv_index(c, V(pg), 1, h, slot, Hkv, D), V(i)),
                            LD(v_, ADD(ADD(MUL(t, vs), MUL(h, D)), V(i)))));
  kir_push(blk, lfor(c, i, D, kir_block_done(k, &body)));
}

/* out[t, h] = rope(x[t, h]).  grid: n * H */
/* lanes for a rotation of whole heads (rot == D): over the rot / 2 pairs */
static void rope_lanes(lctx *c, int D_idx, int rot_idx) {
  int64_t half = c->d->size[rot_idx] / 2;
  if (c->d->size[rot_idx] == c->d->size[D_idx])
    row_lanes(c, &half, 1);
}

static void rule_rope(lctx *c) {
  kir_kernel *k = c->k;
  rope_lanes(c, 1, 2);
  int out = kir_buf_arg(k, "out", MLC_F32, true);  /* [n, H * D] */
  int x = kir_buf_arg(k, "x", MLC_F32, false);     /* [n, stride] */
  int pos = kir_buf_arg(k, "pos", MLC_I32, false); /* [n] */
  int invf = kir_buf_arg(k, "inv_freq", MLC_F32, false); /* [rot / 2] */
  kir_node *H = SZ(c, 0), *D = SZ(c, 1), *g = kir_grid(k);
  kir_node *t = DIV(g, H), *h = MOD(g, H);
  kir_block blk = {0};
  rotate_head(c, &blk, x, ADD(MUL(t, SZ(c, 3)), MUL(h, D)), LD(pos, t), invf, D, SZ(c, 2), FV(c, 0),
              (rot_dst){out, ADD(MUL(t, MUL(H, D)), MUL(h, D))});
  kir_finish(k, kir_block_done(k, &blk));
}

/* Writes k and v heads into the paged cache.  grid: n * Hkv */
static void rule_kv_append(lctx *c) {
  kir_kernel *k = c->k;
  int kv = kir_buf_arg(k, "kv", MLC_F32, true);
  int k_ = kir_buf_arg(k, "k", MLC_F32, false), v_ = kir_buf_arg(k, "v", MLC_F32, false);
  int pos = kir_buf_arg(k, "pos", MLC_I32, false), seq = kir_buf_arg(k, "seq", MLC_I32, false),
      pages = kir_buf_arg(k, "pages", MLC_I32, false);
  kir_node *Hkv = SZ(c, 0), *D = SZ(c, 1), *g = kir_grid(k);
  row_lanes(c, &c->d->size[1], 1);
  kir_block blk = {0};
  append_kv_head(c, &blk, kv, k_, v_, pos, seq, pages, DIV(g, Hkv), MOD(g, Hkv), Hkv, D, SZ(c, 2), SZ(c, 3), SZ(c, 4),
                 true);
  kir_finish(k, kir_block_done(k, &blk));
}

/* Units g < n*Hq rotate a q head into qout; the others rotate a k head straight into the
 * cache and copy its v head.  grid: n * (Hq + Hkv) */
static void rule_rope_kv(lctx *c) {
  kir_kernel *k = c->k;
  int qout = kir_buf_arg(k, "qout", MLC_F32, true); /* [n, Hq * D] */
  int kv = kir_buf_arg(k, "kv", MLC_F32, true);     /* [pages, 2, Hkv, 16, D] */
  int q = kir_buf_arg(k, "q", MLC_F32, false), k_ = kir_buf_arg(k, "k", MLC_F32, false),
      v_ = kir_buf_arg(k, "v", MLC_F32, false);
  int pos = kir_buf_arg(k, "pos", MLC_I32, false), seq = kir_buf_arg(k, "seq", MLC_I32, false),
      pages = kir_buf_arg(k, "pages", MLC_I32, false);
  int invf = kir_buf_arg(k, "inv_freq", MLC_F32, false);
  kir_node *Hq = SZ(c, 0), *Hkv = SZ(c, 1), *D = SZ(c, 2), *rot = SZ(c, 3), *maxp = SZ(c, 7);
  rope_lanes(c, 2, 3); /* then D = rot is a multiple of the lanes too (append_kv_head) */
  kir_node *g = kir_grid(k), *HT = ADD(Hq, Hkv);
  kir_node *t = DIV(g, HT), *hh = MOD(g, HT);
  kir_node *p = LD(pos, t);
  kir_block qb = {0}, kb = {0};
  rotate_head(c, &qb, q, ADD(MUL(t, SZ(c, 4)), MUL(hh, D)), p, invf, D, rot, FV(c, 0),
              (rot_dst){qout, ADD(MUL(t, MUL(Hq, D)), MUL(hh, D))});
  kir_node *h = SUB(hh, Hq);
  int pg = kir_var(k, "kpage", KIR_I64);
  kir_push(&kb, kir_local(k, pg, page_of(c, pages, seq, t, p, maxp)));
  rotate_head(c, &kb, k_, ADD(MUL(t, SZ(c, 5)), MUL(h, D)), p, invf, D, rot, FV(c, 0),
              (rot_dst){kv, kv_index(c, V(pg), 0, h, MOD(p, I(c, MLC_KV_PAGE)), Hkv, D)});
  append_kv_head(c, &kb, kv, k_, v_, pos, seq, pages, t, h, Hkv, D, SZ(c, 5), SZ(c, 6), maxp, false);
  kir_finish(k, kir_if(k, kir_bin(k, KIR_LT, hh, Hq), kir_block_done(k, &qb), kir_block_done(k, &kb)));
}

/*
 * attention with lanes (a warp per (token, query head), D a multiple of the lanes): lane l holds
 * dims l, l + lanes, ... of q and of the output accumulator; per position the lanes' partial
 * q.k products are combined by KIR_LANE_SUM, every lane runs the same online softmax and updates
 * its own output dims.
 */
static void attention_lanes(lctx *c, int out, int q, int pos, int seq, int pages, int kv) {
  kir_kernel *k = c->k;
  bool cap = c->d->var[0];
  int L = k->lanes;
  int64_t per = c->d->size[2] / L;
  int qv = kir_buf_local(k, "qv", MLC_F32, per), acc = kir_buf_local(k, "o", MLC_F32, per);
  kir_node *Hq = SZ(c, 0), *Hkv = SZ(c, 1), *D = SZ(c, 2), *win = SZ(c, 3), *maxp = SZ(c, 4);
  kir_node *g = kir_grid(k), *t = DIV(g, Hq), *h = MOD(g, Hq);
  kir_node *kvh = DIV(h, DIV(Hq, Hkv));
  kir_loop kind = per <= 8 ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL;
#define LDX(j) ADD(MUL(j, I(c, L)), kir_lane(k)) /* the head dim of this lane's j-th element */
  kir_block blk = {0};
  int i = kir_var(k, "j", KIR_I64);
  kir_block ib = {0};
  kir_push(&ib, kir_store(k, qv, V(i), MUL(LD(q, ADD(ADD(MUL(t, SZ(c, 5)), MUL(h, D)), LDX(V(i)))), FV(c, 0))));
  kir_push(&ib, kir_store(k, acc, V(i), F(c, 0)));
  kir_push(&blk, kir_for(k, i, I(c, 0), I(c, per), kind, kir_block_done(k, &ib)));
  int pend = kir_var(k, "pend", KIR_I64), pbeg = kir_var(k, "pbeg", KIR_I64);
  kir_push(&blk, kir_local(k, pend, LD(pos, t)));
  kir_node *wstart = kir_bin(k, KIR_MAX, I(c, 0), ADD(SUB(V(pend), win), I(c, 1)));
  kir_push(&blk, kir_local(k, pbeg, kir_sel(k, kir_bin(k, KIR_LT, I(c, 0), win), wstart, I(c, 0))));
  int mx = kir_var(k, "mx", KIR_F32), den = kir_var(k, "den", KIR_F32);
  kir_push(&blk, kir_local(k, mx, F(c, -INFINITY)));
  kir_push(&blk, kir_local(k, den, F(c, 0)));
  int p = kir_var(k, "p", KIR_I64);
  kir_block pb = {0};
  int pg = kir_var(k, "page", KIR_I64);
  kir_push(&pb, kir_local(k, pg, page_of(c, pages, seq, t, V(p), maxp)));
  kir_node *slot = MOD(V(p), I(c, MLC_KV_PAGE));
  int kb = kir_var(k, "kb", KIR_I64), vb = kir_var(k, "vb", KIR_I64);
  kir_push(&pb, kir_local(k, kb, kv_index(c, V(pg), 0, kvh, slot, Hkv, D)));
  kir_push(&pb, kir_local(k, vb, kv_index(c, V(pg), 1, kvh, slot, Hkv, D)));
  int part = kir_var(k, "part", KIR_F32);
  kir_push(&pb, kir_local(k, part, F(c, 0)));
  int j1 = kir_var(k, "j", KIR_I64);
  kir_push(&pb, kir_for(k, j1, I(c, 0), I(c, per), kind,
                        kir_assign(k, part, ADD(V(part), MUL(LD(qv, V(j1)), LD(kv, ADD(V(kb), LDX(V(j1)))))))));
  int s = kir_var(k, "s_qk", KIR_F32);
  kir_push(&pb, kir_local(k, s, kir_un(k, KIR_LANE_SUM, V(part))));
  kir_node *sv = cap ? softcap(c, V(s), FV(c, 1)) : V(s);
  int sc = kir_var(k, "sc", KIR_F32);
  kir_push(&pb, kir_local(k, sc, sv));
  int mn = kir_var(k, "mnew", KIR_F32);
  kir_push(&pb, kir_local(k, mn, kir_bin(k, KIR_MAX, V(mx), V(sc))));
  int corr = kir_var(k, "corr", KIR_F32), e = kir_var(k, "e", KIR_F32);
  kir_push(&pb, kir_local(k, corr, kir_un(k, KIR_EXP, SUB(V(mx), V(mn)))));
  kir_push(&pb, kir_local(k, e, kir_un(k, KIR_EXP, SUB(V(sc), V(mn)))));
  kir_push(&pb, kir_assign(k, den, ADD(MUL(V(den), V(corr)), V(e))));
  int j2 = kir_var(k, "j", KIR_I64);
  kir_push(&pb, kir_for(k, j2, I(c, 0), I(c, per), kind,
                        kir_store(k, acc, V(j2), ADD(MUL(LD(acc, V(j2)), V(corr)), MUL(V(e), LD(kv, ADD(V(vb), LDX(V(j2)))))))));
  kir_push(&pb, kir_assign(k, mx, V(mn)));
  kir_push(&blk, kir_for(k, p, V(pbeg), ADD(V(pend), I(c, 1)), KIR_LOOP_SERIAL, kir_block_done(k, &pb)));
  int j3 = kir_var(k, "j", KIR_I64);
  kir_push(&blk, kir_for(k, j3, I(c, 0), I(c, per), kind,
                         kir_store(k, out, ADD(ADD(MUL(t, MUL(Hq, D)), MUL(h, D)), LDX(V(j3))), DIV(LD(acc, V(j3)), V(den)))));
#undef LDX
  kir_finish(k, kir_block_done(k, &blk));
}

/*
 * Causal attention of one (token, query head) over its sequence's paged cache with an online
 * softmax: scores scaled, optionally soft-capped, limited to a sliding window when window > 0.
 * grid: n * Hq
 */
static void rule_attention(lctx *c) {
  kir_kernel *k = c->k;
  bool cap = c->d->var[0];
  int out = kir_buf_arg(k, "out", MLC_F32, true); /* [n, Hq * D] */
  int q = kir_buf_arg(k, "q", MLC_F32, false);    /* [n, q_stride] */
  int pos = kir_buf_arg(k, "pos", MLC_I32, false), seq = kir_buf_arg(k, "seq", MLC_I32, false),
      pages = kir_buf_arg(k, "pages", MLC_I32, false);
  int kv = kir_buf_arg(k, "kv", MLC_F32, false);
  if (row_lanes(c, &c->d->size[2], 1)) {
    attention_lanes(c, out, q, pos, seq, pages, kv);
    return;
  }
  int64_t LDIM = local_len(c, 2);
  int qv = kir_buf_local(k, "qv", MLC_F32, LDIM), acc = kir_buf_local(k, "o", MLC_F32, LDIM);
  kir_node *Hq = SZ(c, 0), *Hkv = SZ(c, 1), *D = SZ(c, 2), *win = SZ(c, 3), *maxp = SZ(c, 4);
  kir_node *g = kir_grid(k), *t = DIV(g, Hq), *h = MOD(g, Hq);
  kir_node *kvh = DIV(h, DIV(Hq, Hkv));
  kir_block blk = {0};
  int i = kir_var(k, "i", KIR_I64);
  kir_block ib = {0};
  kir_push(&ib, kir_store(k, qv, V(i), MUL(LD(q, ADD(ADD(MUL(t, SZ(c, 5)), MUL(h, D)), V(i))), FV(c, 0))));
  kir_push(&ib, kir_store(k, acc, V(i), F(c, 0)));
  kir_push(&blk, kir_for(k, i, I(c, 0), D, KIR_LOOP_SERIAL, kir_block_done(k, &ib)));
  int pend = kir_var(k, "pend", KIR_I64), pbeg = kir_var(k, "pbeg", KIR_I64);
  kir_push(&blk, kir_local(k, pend, LD(pos, t)));
  kir_node *wstart = kir_bin(k, KIR_MAX, I(c, 0), ADD(SUB(V(pend), win), I(c, 1)));
  kir_push(&blk, kir_local(k, pbeg, kir_sel(k, kir_bin(k, KIR_LT, I(c, 0), win), wstart, I(c, 0))));
  int mx = kir_var(k, "mx", KIR_F32), den = kir_var(k, "den", KIR_F32);
  kir_push(&blk, kir_local(k, mx, F(c, -INFINITY)));
  kir_push(&blk, kir_local(k, den, F(c, 0)));
  int p = kir_var(k, "p", KIR_I64);
  kir_block pb = {0};
  int pg = kir_var(k, "page", KIR_I64);
  kir_push(&pb, kir_local(k, pg, page_of(c, pages, seq, t, V(p), maxp)));
  kir_node *slot = MOD(V(p), I(c, MLC_KV_PAGE));
  int kb = kir_var(k, "kb", KIR_I64), vb = kir_var(k, "vb", KIR_I64);
  kir_push(&pb, kir_local(k, kb, kv_index(c, V(pg), 0, kvh, slot, Hkv, D)));
  kir_push(&pb, kir_local(k, vb, kv_index(c, V(pg), 1, kvh, slot, Hkv, D)));
  int s = dot(c, &pb, qv, I(c, 0), kv, V(kb), D, "qk");
  kir_node *sv = cap ? softcap(c, V(s), FV(c, 1)) : V(s);
  int sc = kir_var(k, "sc", KIR_F32);
  kir_push(&pb, kir_local(k, sc, sv));
  int mn = kir_var(k, "mnew", KIR_F32);
  kir_push(&pb, kir_local(k, mn, kir_bin(k, KIR_MAX, V(mx), V(sc))));
  int corr = kir_var(k, "corr", KIR_F32), e = kir_var(k, "e", KIR_F32);
  kir_push(&pb, kir_local(k, corr, kir_un(k, KIR_EXP, SUB(V(mx), V(mn)))));
  kir_push(&pb, kir_local(k, e, kir_un(k, KIR_EXP, SUB(V(sc), V(mn)))));
  kir_push(&pb, kir_assign(k, den, ADD(MUL(V(den), V(corr)), V(e))));
  int d2 = kir_var(k, "i", KIR_I64);
  kir_push(&pb, kir_for(k, d2, I(c, 0), D, KIR_LOOP_SERIAL,
                        kir_store(k, acc, V(d2), ADD(MUL(LD(acc, V(d2)), V(corr)), MUL(V(e), LD(kv, ADD(V(vb), V(d2))))))));
  kir_push(&pb, kir_assign(k, mx, V(mn)));
  kir_push(&blk, kir_for(k, p, V(pbeg), ADD(V(pend), I(c, 1)), KIR_LOOP_SERIAL, kir_block_done(k, &pb)));
  int d3 = kir_var(k, "i", KIR_I64);
  kir_push(&blk, kir_for(k, d3, I(c, 0), D, KIR_LOOP_SERIAL,
                         kir_store(k, out, ADD(ADD(MUL(t, MUL(Hq, D)), MUL(h, D)), V(d3)), DIV(LD(acc, V(d3)), V(den)))));
  kir_finish(k, kir_block_done(k, &blk));
}

/*
 * Top-k expert routing of one token: softmax over all E router logits, the k largest (ties to
 * the lower index), optionally renormalised to sum 1.  grid: n
 */
static void rule_moe_route(lctx *c) {
  kir_kernel *k = c->k;
  int wout = kir_buf_arg(k, "weights", MLC_F32, true); /* [n * k] */
  int iout = kir_buf_arg(k, "ids", MLC_I32, true);     /* [n * k] */
  int lg = kir_buf_arg(k, "logits", MLC_F32, false);   /* [n, E] */
  kir_node *E = SZ(c, 0), *K = SZ(c, 1), *t = kir_grid(k);
  kir_node *base = MUL(t, E);
  kir_block blk = {0};
  int mx = kir_var(k, "mx", KIR_F32), den = kir_var(k, "den", KIR_F32), tot = kir_var(k, "tot", KIR_F32);
  kir_push(&blk, kir_local(k, mx, F(c, -INFINITY)));
  int e = kir_var(k, "e", KIR_I64);
  kir_push(&blk, kir_for(k, e, I(c, 0), E, KIR_LOOP_SERIAL, kir_assign(k, mx, kir_bin(k, KIR_MAX, V(mx), LD(lg, ADD(base, V(e)))))));
  kir_push(&blk, kir_local(k, den, F(c, 0)));
  int e2 = kir_var(k, "e", KIR_I64);
  kir_push(&blk, kir_for(k, e2, I(c, 0), E, KIR_LOOP_SERIAL,
                         kir_assign(k, den, ADD(V(den), kir_un(k, KIR_EXP, SUB(LD(lg, ADD(base, V(e2))), V(mx)))))));
  kir_push(&blk, kir_local(k, tot, F(c, 0)));
  int pv = kir_var(k, "pv", KIR_F32), pe = kir_var(k, "pe", KIR_I64);
  kir_push(&blk, kir_local(k, pv, F(c, INFINITY)));
  kir_push(&blk, kir_local(k, pe, I(c, -1)));
  int s = kir_var(k, "s", KIR_I64);
  kir_block sb = {0};
  int bv = kir_var(k, "bv", KIR_F32), be = kir_var(k, "be", KIR_I64);
  kir_push(&sb, kir_local(k, bv, F(c, -INFINITY)));
  kir_push(&sb, kir_local(k, be, I(c, -1)));
  int e3 = kir_var(k, "e", KIR_I64);
  kir_node *v = LD(lg, ADD(base, V(e3)));
  /* eligible: ranks after the previous pick in (value desc, index asc) order */
  kir_node *elig = kir_bin(k, KIR_OR, kir_bin(k, KIR_LT, v, V(pv)),
                           kir_bin(k, KIR_AND, kir_bin(k, KIR_EQ, v, V(pv)), kir_bin(k, KIR_LT, V(pe), V(e3))));
  kir_node *better = kir_bin(k, KIR_OR, kir_bin(k, KIR_LT, V(be), I(c, 0)), kir_bin(k, KIR_LT, V(bv), v));
  kir_block upd = {0};
  kir_push(&upd, kir_assign(k, bv, v));
  kir_push(&upd, kir_assign(k, be, V(e3)));
  kir_push(&sb, kir_for(k, e3, I(c, 0), E, KIR_LOOP_SERIAL, kir_if(k, kir_bin(k, KIR_AND, elig, better), kir_block_done(k, &upd), NULL)));
  int wv = kir_var(k, "wv", KIR_F32);
  kir_push(&sb, kir_local(k, wv, DIV(kir_un(k, KIR_EXP, SUB(V(bv), V(mx))), V(den))));
  kir_push(&sb, kir_store(k, wout, ADD(MUL(t, K), V(s)), V(wv)));
  kir_push(&sb, kir_store(k, iout, ADD(MUL(t, K), V(s)), V(be)));
  kir_push(&sb, kir_assign(k, tot, ADD(V(tot), V(wv))));
  kir_push(&sb, kir_assign(k, pv, V(bv)));
  kir_push(&sb, kir_assign(k, pe, V(be)));
  kir_push(&blk, kir_for(k, s, I(c, 0), K, KIR_LOOP_SERIAL, kir_block_done(k, &sb)));
  if (c->d->var[0]) {
    int s2 = kir_var(k, "s", KIR_I64);
    kir_node *idx = ADD(MUL(t, K), V(s2));
    kir_push(&blk, kir_for(k, s2, I(c, 0), K, KIR_LOOP_SERIAL, kir_store(k, wout, idx, DIV(LD(wout, idx), V(tot)))));
  }
  kir_finish(k, kir_block_done(k, &blk));
}

/* out[t, :] = sum_s w[t*k+s] * y[t*k+s, :].  grid: n */
static void rule_moe_combine(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true), y = kir_buf_arg(k, "y", MLC_F32, false),
      w = kir_buf_arg(k, "w", MLC_F32, false);
  kir_node *H = SZ(c, 0), *K = SZ(c, 1), *t = kir_grid(k);
  int i = kir_var(k, "i", KIR_I64), s = kir_var(k, "s", KIR_I64), a = kir_var(k, "a", KIR_F32);
  kir_node *row = ADD(MUL(t, K), V(s));
  kir_block ib = {0};
  kir_push(&ib, kir_local(k, a, F(c, 0)));
  kir_push(&ib, kir_for(k, s, I(c, 0), K, KIR_LOOP_SERIAL,
                        kir_assign(k, a, ADD(V(a), MUL(LD(w, row), LD(y, ADD(MUL(row, H), V(i))))))));
  kir_push(&ib, kir_store(k, out, ADD(MUL(t, H), V(i)), V(a)));
  kir_finish(k, kir_for(k, i, I(c, 0), H, KIR_LOOP_SERIAL, kir_block_done(k, &ib)));
}

/* out[i, :] = x[rows[i], :].  grid: m */
static void rule_gather_rows(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true);    /* [m, C] */
  int x = kir_buf_arg(k, "x", MLC_F32, false);       /* [n, stride] */
  int rows = kir_buf_arg(k, "rows", MLC_I32, false); /* [m] */
  kir_node *C = SZ(c, 0), *i = kir_grid(k);
  int j = kir_var(k, "j", KIR_I64);
  kir_node *src = ADD(MUL(LD(rows, i), SZ(c, 1)), V(j));
  kir_finish(k, kir_for(k, j, I(c, 0), C, KIR_LOOP_SERIAL, kir_store(k, out, ADD(MUL(i, C), V(j)), LD(x, src))));
}

bool mlc_op_has_kernel(mlc_opkind kind) { return kind != MLC_OP_ALLREDUCE && kind != MLC_OP_ALLGATHER; }

void mlc_kdesc_key(const mlc_kdesc *d, char *buf, size_t n) {
  snprintf(buf, n, "%s_%d_%d_%d_%d", mlc_op_name(d->kind), d->var[0], d->var[1], d->var[2], d->var[3]);
}

void mlc_kvariant_ranges(mlc_opkind kind, int r[MLC_KVARS]) {
  memset(r, 0, sizeof(int) * MLC_KVARS);
  switch (kind) {
  case MLC_OP_EMBED: r[0] = MLC_DTYPE_COUNT; break;           /* table dtype (float or packed) */
  case MLC_OP_RMSNORM:
  case MLC_OP_ADD_RMSNORM: r[0] = 3; r[1] = 2; break;         /* w dtype, add_one */
  case MLC_OP_MATMUL: r[0] = MLC_DTYPE_COUNT; r[1] = 2; r[2] = 2; r[3] = 2; break; /* dtype, bias, experts, softcap */
  case MLC_OP_GATED_MATMUL: r[0] = MLC_DTYPE_COUNT; r[1] = 3; r[2] = 2; break;     /* dtype, act, experts */
  case MLC_OP_ACT_MUL: r[0] = 3; break;                       /* act */
  case MLC_OP_DEQUANT: r[0] = MLC_DTYPE_COUNT; break;         /* stored dtype */
  case MLC_OP_ATTENTION: r[0] = 2; break;                     /* softcap */
  case MLC_OP_MOE_ROUTE: r[0] = 2; break;                     /* renormalise */
  default: break;
  }
}

bool mlc_kvariant_valid(const mlc_kdesc *d) {
  switch (d->kind) {
  case MLC_OP_EMBED:
  case MLC_OP_MATMUL:
  case MLC_OP_GATED_MATMUL:
  case MLC_OP_DEQUANT: {
    /* weight dtype slot: the float types and the packed ones, not the integer types */
    mlc_dtype dt = (mlc_dtype)d->var[0];
    return dt == MLC_F32 || dt == MLC_F16 || dt == MLC_BF16 || mlc_dtype_is_quant(dt);
  }
  default:
    return true;
  }
}

kir_kernel *mlc_lower(const mlc_kdesc *d, const mlc_tunables *tu) {
  char name[96];
  if (d->generic) {
    char key[64];
    mlc_kdesc_key(d, key, sizeof key);
    snprintf(name, sizeof name, "g_%s", key);
  } else {
    uint64_t h = mlc_hash64(d, sizeof *d, 0);
    snprintf(name, sizeof name, "k_%s_%016llx", mlc_op_name(d->kind), (unsigned long long)h);
  }
  kir_kernel *k = kir_new(name);
  k->block = tu->block;
  lctx c = {.k = k, .d = d, .tu = tu};
  switch (d->kind) {
  case MLC_OP_EMBED: rule_embed(&c); break;
  case MLC_OP_RMSNORM: rule_rmsnorm(&c, false); break;
  case MLC_OP_ADD_RMSNORM: rule_rmsnorm(&c, true); break;
  case MLC_OP_ADD: rule_add(&c); break;
  case MLC_OP_MATMUL: rule_matmul(&c); break;
  case MLC_OP_GATED_MATMUL: rule_gated(&c); break;
  case MLC_OP_ACT_MUL: rule_act_mul(&c); break;
  case MLC_OP_SOFTCAP: rule_softcap(&c); break;
  case MLC_OP_DEQUANT: rule_dequant(&c); break;
  case MLC_OP_ROPE: rule_rope(&c); break;
  case MLC_OP_KV_APPEND: rule_kv_append(&c); break;
  case MLC_OP_ROPE_KV: rule_rope_kv(&c); break;
  case MLC_OP_ATTENTION: rule_attention(&c); break;
  case MLC_OP_MOE_ROUTE: rule_moe_route(&c); break;
  case MLC_OP_MOE_COMBINE: rule_moe_combine(&c); break;
  case MLC_OP_GATHER_ROWS: rule_gather_rows(&c); break;
  default: mlc_abort(__FILE__, __LINE__, "no schedule rule for op %d", d->kind);
  }
  return k;
}

int mlc_kdesc_quant(const mlc_graph *g, const mlc_op *o, mlc_kdesc *d, int *bufs, int nb) {
  int w[2] = {-1, -1}, slot[2] = {-1, -1};
  switch (o->kind) {
  case MLC_OP_EMBED: w[0] = o->in[1], slot[0] = 1; break;
  case MLC_OP_MATMUL: w[0] = o->in[1], slot[0] = 4; break;
  case MLC_OP_GATED_MATMUL: w[0] = o->in[1], w[1] = o->in[2], slot[0] = 6, slot[1] = 7; break;
  case MLC_OP_DEQUANT: w[0] = o->in[0], slot[0] = 1; break;
  default: return nb;
  }
  for (int i = 0; i < 2; i++) {
    if (w[i] < 0 || !mlc_dtype_is_quant(g->t[w[i]].dtype))
      continue;
    const mlc_tensor *t = &g->t[w[i]];
    MLC_ASSERT(t->scale_tensor >= 0 && nb < KIR_MAX_BUFS);
    bufs[nb++] = t->scale_tensor;
    if (mlc_qscheme_of(t->dtype)->kn)
      d->size[slot[i]] = t->rows.c; /* the transposed arrays' row stride */
  }
  return nb;
}

int mlc_kdesc_nbufs(const mlc_kdesc *d) {
  kir_kernel *k = mlc_lower(d, &TUNE_C);
  int n = 0;
  for (int i = 0; i < k->nbuf; i++)
    n += !k->bufs[i].local;
  kir_free(k);
  return n;
}
