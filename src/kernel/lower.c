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

static const mlc_tunables TUNE_C = {.dot_lanes = 16, .unroll_max = 16, .vec = KIR_VW, .tile_rows = 4, .tile_cols = 4,
                                     .deq_il_rows = 8, .int8_act = 1, .i8_rows = 2};
static const mlc_tunables TUNE_OPENCL = {.dot_lanes = 16, .unroll_max = 16};
/* lanes: a workgroup per output (render.c); row_block, attn_warps: workgroups of 256; i8_gemv: on
 * devices with integer dot products (mlc_tunables_dev) */
static const mlc_tunables TUNE_GLSL = {.dot_lanes = 4, .unroll_max = 4, .lanes = 32, .qlanes = 32, .qlanes_per = 4,
                                        .attn_splits = 8, .row_block = 256, .attn_warps = 8, .i8_gemv = 8};
/* qlanes 8: four outputs of a packed-weight GEMV per warp, sharing each x load */
static const mlc_tunables TUNE_CUDA = {.dot_lanes = 4, .unroll_max = 8, .block = 128, .lanes = 32, .qlanes = 8,
                                        .row_block = 1024, .attn_warps = 4, .attn_splits = 8, .i8_gemv = 8,
                                        .mma_rows = 16}; /* row_block: norms, embed, add */
const mlc_tunables *mlc_tunables_for(kir_lang lang) {
  return lang == KIR_LANG_GLSL ? &TUNE_GLSL : lang == KIR_LANG_CUDA ? &TUNE_CUDA : lang == KIR_LANG_OPENCL ? &TUNE_OPENCL : &TUNE_C;
}
mlc_tunables mlc_tunables_dev(kir_lang lang, bool int8_dot) {
  mlc_tunables t = *mlc_tunables_for(lang);
  if (!int8_dot) /* the GPUs' 8-bit GEMV is as fast as its dot products (the CPU's tiles: int8_act) */
    t.i8_gemv = 0;
  return t;
}

/* ---- helpers ---- */
typedef struct lctx {
  kir_kernel *k;
  const mlc_kdesc *d;
  const mlc_tunables *tu;
  int gemm;       /* lowering the alternative kernel (1: the 8-bit GEMV's rules build qgemm_i8) or its
                   * preparation (2: qgemm_pre) */
  bool alt_ok;    /* the rule built a kernel that has an alternative for long steps (the 8-bit GEMV:
                   * qgemm_i8; attention's lanes kernel: attention_lanes shkv) */
  bool took_gemm; /* the rule built the GEMM (qgemm_i8) */
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

/* experiments: the power of two in [lo, hi] that environment variable `name` holds, else 0 */
static int env_pow2(const char *name, int lo, int hi) {
  const char *v = getenv(name);
  int x = v ? atoi(v) : 0;
  return x >= lo && x <= hi && !(x & (x - 1)) ? x : 0;
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
  kir_node *wi = DIV(k, I(c, pw)), *e = MOD(k, I(c, pw));
  if (w->q->il) { /* interleaved blocks (quant.h): word (k / il) * wpb + k % wpb, nibble (k % il) / wpb */
    kir_node *wpb = I(c, w->q->il / pw);
    wi = ADD(MUL(DIV(k, I(c, w->q->il)), wpb), MOD(k, wpb));
    e = DIV(MOD(k, I(c, w->q->il)), wpb);
  }
  kir_node *word = LD(w->buf, qword_idx(c, w, row, wi));
  return MUL(qvalue(c, w, word, e), LD(w->sbuf, qscale_idx(c, w, row, k)));
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
  if (w->q->il) { /* interleaved words (the C tiles read them; here: generic and expert kernels) */
    char nm[24];
    snprintf(nm, sizeof nm, "s_%s", tag);
    int res = kir_var(k, nm, KIR_F32), t = kir_var(k, "kt", KIR_I64);
    kir_push(blk, kir_local(k, res, F(c, 0)));
    kir_push(blk, kir_for(k, t, I(c, 0), K, KIR_LOOP_SERIAL,
                          kir_assign(k, res, ADD(V(res), MUL(wload(c, w, row, V(t)), LD(X, ADD(xbase, V(t))))))));
    return res;
  }
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
  /* x's n values by wide loads too (CUDA: 16-byte loads where aligned), not n scalar loads */
  snprintf(nm, sizeof nm, "xv_%s", tag);
  int xv = kir_buf_local(k, nm, MLC_F32, n);
  kir_push(&body, kir_vload(k, xv, X, ADD(xbase, base)));
  kir_node *upd = kir_assign(k, acc, ADD(V(acc), MUL(LD(wv, V(e)), LD(xv, V(e)))));
  kir_push(&body, kir_for(k, e, I(c, 0), I(c, n), KIR_LOOP_UNROLL, upd));
  int64_t trips = w->K->i / (L * n);
  kir_push(blk, kir_for(k, kk, I(c, 0), I(c, trips), trips <= 32 ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL,
                        kir_block_done(k, &body)));
  snprintf(nm, sizeof nm, "s_%s", tag);
  int res = kir_var(k, nm, KIR_F32);
  kir_push(blk, kir_local(k, res, kir_un(k, KIR_LANE_SUM, V(acc))));
  return res;
}
/*
 * GEMV with lanes over packed group-quantized words (CUDA, GLSL; docs/backends.md): `qlanes`
 * invocations per output (CUDA 8, so the four outputs of a warp share every x load; GLSL 32), lane
 * l taking words l, l + L, l + 2L, ... of the row (coalesced), U words a trip; per word its group's
 * scale, its per_word x values by 16-byte loads (KIR_VLOAD of 4 f32), the dequantized dot, then
 * one multiply by the scale. nw (1 or 2) weights share the x loads (gate and up). Taken by
 * specialised kernels of NK schemes with per_word a multiple of 4, whole words per group, K a
 * multiple of the group and the words of a row a multiple of L; 0 otherwise.
 */
/* outputs per parallel index of that GEMV (tunables qlanes_per, GLSL: a workgroup's P rows share
 * each x load): as many as the tunable allows while N / P keeps >= 64 indices, as i8_gpu_shape;
 * MLC_QLANES_P forces it (experiments; 1: one output a workgroup) */
static int qlanes_per(lctx *c, kir_node *N) {
  int p = c->tu->qlanes_per > 1 && N->op == KIR_CONST ? c->tu->qlanes_per : 1;
  int fp = env_pow2("MLC_QLANES_P", 1, 8);
  if (fp && N->op == KIR_CONST)
    p = fp;
  while (p > 1 && (N->i % p || N->i / p < 64))
    p /= 2;
  return p;
}
static int qlane_ok(lctx *c, const wsrc *w, kir_node *N, int P) {
  if (c->tu->qlanes <= 1 || c->d->generic || !w->q || w->q->kn || w->q->il || w->K->op != KIR_CONST || getenv("MLC_NO_LANES"))
    return 0;
  const mlc_qscheme *q = w->q;
  if (q->per_word % 4 || q->group % q->per_word || w->K->i % q->group)
    return 0;
  /* fewer outputs: more lanes each (a warp, then a block where the language has blocks:
   * row_block), so that about 4096 warps stream the matrix; more outputs: `qlanes`, whose outputs
   * share the x loads */
  int L = c->tu->qlanes, Lmax = c->tu->row_block > 256 ? 256 : c->tu->row_block > 32 ? c->tu->row_block : 32;
  while (L < Lmax && N->op == KIR_CONST && N->i / P * L / 32 < 4096)
    L *= 2;
  if (env_pow2("MLC_QLANES", 2, 256)) /* experiments: force the lanes per output */
    L = env_pow2("MLC_QLANES", 2, 256);
  int64_t words = w->K->i / q->per_word;
  while (L > c->tu->qlanes && words % L)
    L /= 2;
  return words % L == 0 ? L : 0;
}
/* a local array of the kernel by name, declared on first use (schedules that share one) */
static int local_named_t(lctx *c, const char *name, mlc_dtype dt, int64_t len) {
  for (int i = 0; i < c->k->nbuf; i++)
    if (c->k->bufs[i].local && !strcmp(c->k->bufs[i].name, name))
      return i;
  return kir_buf_local(c->k, name, dt, len);
}
static int local_named(lctx *c, const char *name, int64_t len) { return local_named_t(c, name, MLC_F32, len); }
enum { QROWS = 8 }; /* weight rows a wdot_qlanes call may take (P outputs of gate and up) */
static void wdot_qlanes(lctx *c, kir_block *blk, const wsrc *const *ws, kir_node *const *rows, int nw, int L, int X,
                        kir_node *const *xbases, int RT, int *res) {
  kir_kernel *k = c->k;
  const mlc_qscheme *q = ws[0]->q;
  int pw = q->per_word, wpg = q->group / pw;
  int64_t words = ws[0]->K->i / pw;
  int U = words % (L * 4) == 0 ? 4 : words % (L * 2) == 0 ? 2 : 1;
  int fu = env_pow2("MLC_QWORDS", 1, 4); /* experiments: words a lane loads per trip */
  if (fu && words % (L * fu) == 0)
    U = fu;
  if (RT > 1) /* RT rows of x (a tile of the step's rows) share each word: one word a trip */
    U = 1;
  while (U > 1 && U * nw > 8) /* at most 8 words a trip in flight (registers) */
    U /= 2;
  MLC_ASSERT(U * RT <= 4 && nw <= QROWS);
  k->lanes = L;
  if (L > 32) /* a block per output: lane sums through shared memory */
    k->block = L;
  int acc[QROWS * 4];
  for (int i = 0; i < nw * RT; i++) {
    acc[i] = kir_var(k, "qa", KIR_F32);
    kir_push(blk, kir_local(k, acc[i], F(c, 0)));
  }
  int t = kir_var(k, "qt", KIR_I64);
  kir_block body = {0};
  /* every load of the trip first (x slices, words, scales), then the arithmetic: the loads of
   * all U words are in flight together */
  int xv[4][4][2], wv[4][QROWS], sv[4][QROWS];
  for (int u = 0; u < U; u++) {
    kir_node *wi = ADD(MUL(ADD(MUL(V(t), I(c, U)), I(c, u)), I(c, L)), kir_lane(k));
    for (int i = 0; i < nw; i++) {
      const wsrc *w = ws[i];
      wv[u][i] = kir_var(k, "qw", KIR_I64);
      kir_push(&body, kir_local(k, wv[u][i], LD(w->buf, ADD(MUL(rows[i], I(c, words)), wi))));
      sv[u][i] = kir_var(k, "qsc", KIR_F32);
      kir_push(&body, kir_local(k, sv[u][i], LD(w->sbuf, ADD(MUL(rows[i], I(c, words / wpg)), DIV(wi, I(c, wpg))))));
    }
    for (int rt = 0; rt < RT; rt++)
      for (int h = 0; h < pw / 4 && h < 2; h++) {
        char nm[24];
        snprintf(nm, sizeof nm, "qx%d_%d", u * RT + rt, h);
        xv[u][rt][h] = local_named(c, nm, 4);
        kir_push(&body, kir_vload(k, xv[u][rt][h], X, ADD(xbases[rt], ADD(MUL(wi, I(c, pw)), I(c, 4 * h)))));
      }
  }
  for (int u = 0; u < U; u++)
    for (int rt = 0; rt < RT; rt++)
      for (int i = 0; i < nw; i++) {
        const wsrc *w = ws[i];
        kir_node *dot = NULL;
        for (int e = 0; e < pw; e++) {
          kir_node *term = MUL(qvalue(c, w, V(wv[u][i]), I(c, e)), LD(xv[u][rt][e / 4], I(c, e % 4)));
          dot = dot ? ADD(dot, term) : term;
        }
        int a = acc[rt * nw + i];
        kir_push(&body, kir_assign(k, a, ADD(V(a), MUL(dot, V(sv[u][i])))));
      }
  int64_t trips = words / (L * U);
  /* rolled beyond 2 trips: more warps resident rather than more loads in flight per warp */
  kir_push(blk, kir_for(k, t, I(c, 0), I(c, trips), trips <= 2 ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL,
                        kir_block_done(k, &body)));
  for (int i = 0; i < nw * RT; i++) {
    res[i] = kir_var(k, "qs", KIR_F32);
    kir_push(blk, kir_local(k, res[i], kir_un(k, KIR_LANE_SUM, V(acc[i]))));
  }
}
/* wdot, with lanes where the schedule allows */
static int wdot_any(lctx *c, kir_block *blk, const wsrc *w, kir_node *row, int X, kir_node *xbase, kir_node *K,
                    const char *tag) {
  int n = lane_slice(c, w), L = n ? 0 : qlane_ok(c, w, SZ(c, 0), 1);
  if (L) {
    int res;
    wdot_qlanes(c, blk, &w, &row, 1, L, X, &xbase, 1, &res);
    return res;
  }
  return n ? wdot_lanes(c, blk, w, n, row, X, xbase, tag) : wdot(c, blk, w, row, X, xbase, K, tag);
}
/* a store that one lane makes when the kernel uses lanes */
static kir_node *lane0(lctx *c, kir_node *st) {
  return c->k->lanes > 1 ? kir_if(c->k, kir_bin(c->k, KIR_EQ, kir_lane(c->k), I(c, 0)), st, NULL) : st;
}

static kir_node *act(lctx *c, int kind, kir_node *x);
static kir_node *softcap(lctx *c, kir_node *x, kir_node *cap);
/* what a packed-weight GEMV stores: matmul (+ bias, softcap) or gated (act(gate) * up) */
typedef struct qgemv_epi {
  int out, bias, act;
  kir_node *N;
  bool cap, gated;
} qgemv_epi;
static kir_node *qgemv_val(lctx *c, const qgemv_epi *e, kir_node *j, const int *s) {
  if (e->gated)
    return MUL(act(c, e->act, V(s[0])), V(s[1]));
  kir_node *y = V(s[0]);
  if (e->bias >= 0)
    y = ADD(y, LD(e->bias, j));
  return e->cap ? softcap(c, y, FV(c, 0)) : y;
}
/*
 * The whole packed-weight GEMV kernel (matmul / gated_matmul without experts, lanes taken): a step
 * of one row (decode) as one dot per output; more rows (prefill) in tiles of RT rows of x that
 * share each weight load (a tile past the step's rows repeats its last row, stores off), so the
 * weights are read once per tile rather than once per row. An index computes P outputs of each
 * of nw weights (weight i's row j * P + o + roff[i]); the dots come from wdot_qlanes (P = 1) or
 * wdot_i8.
 */
enum { QRT = 4 };
typedef struct gemv_dots {
  const wsrc *const *ws;
  kir_node *const *roff;
  int nw, P, L, X;
  bool i8;
} gemv_dots;
/* res[(rt * nw + i) * P + o] for the x rows at xb[0..RT) */
static void wdot_i8(lctx *c, kir_block *blk, const wsrc *const *ws, kir_node *const *roff, int nw, int P, int L, int X,
                    kir_node *const *xb, int RT, int *res);
static void gemv_dots_emit(lctx *c, kir_block *blk, const gemv_dots *g, kir_node *const *xb, int RT, int *res) {
  if (g->i8) {
    wdot_i8(c, blk, g->ws, g->roff, g->nw, g->P, g->L, g->X, xb, RT, res);
    return;
  }
  /* P outputs of nw weights: nw * P rows sharing each x load, in the order of res */
  const wsrc *ws[QROWS];
  kir_node *rows[QROWS];
  for (int i = 0; i < g->nw; i++)
    for (int o = 0; o < g->P; o++) {
      ws[i * g->P + o] = g->ws[i];
      rows[i * g->P + o] = ADD(g->roff[i], ADD(MUL(kir_grid(c->k), I(c, g->P)), I(c, o)));
    }
  wdot_qlanes(c, blk, ws, rows, g->nw * g->P, g->L, g->X, xb, RT, res);
}
enum { GEMV_MAXACC = 2 * 8 * QRT };
static void gemv_kernel(lctx *c, const gemv_dots *g, int RT, kir_node *xs, const qgemv_epi *e) {
  kir_kernel *k = c->k;
  int nw = g->nw, P = g->P;
  kir_node *j = kir_grid(k), *R = DYN(c, 0);
  kir_block one = {0};
  int s1[GEMV_MAXACC], sv[2];
  kir_node *x0 = I(c, 0);
  gemv_dots_emit(c, &one, g, &x0, 1, s1);
  for (int o = 0; o < P; o++) {
    kir_node *jj = ADD(MUL(j, I(c, P)), I(c, o));
    for (int i = 0; i < nw; i++)
      sv[i] = s1[i * P + o];
    kir_push(&one, lane0(c, kir_store(k, e->out, jj, qgemv_val(c, e, jj, sv))));
  }
  int rt = kir_var(k, "rt", KIR_I64);
  kir_block tb = {0};
  kir_node *xb[QRT] = {0};
  int rr[QRT];
  for (int i = 0; i < RT; i++) {
    rr[i] = kir_var(k, "rr", KIR_I64);
    kir_push(&tb, kir_local(k, rr[i], kir_bin(k, KIR_MIN, ADD(MUL(V(rt), I(c, RT)), I(c, i)), SUB(R, I(c, 1)))));
    xb[i] = MUL(V(rr[i]), xs);
  }
  int s4[GEMV_MAXACC];
  gemv_dots_emit(c, &tb, g, xb, RT, s4);
  kir_block sb = {0};
  for (int i = 0; i < RT; i++)
    for (int o = 0; o < P; o++) {
      kir_node *jj = ADD(MUL(j, I(c, P)), I(c, o));
      for (int w = 0; w < nw; w++)
        sv[w] = s4[(i * nw + w) * P + o];
      kir_node *live = kir_bin(k, KIR_LT, ADD(MUL(V(rt), I(c, RT)), I(c, i)), R);
      kir_node *st = kir_store(k, e->out, ADD(MUL(V(rr[i]), e->N), jj), qgemv_val(c, e, jj, sv));
      kir_push(&sb, lane0(c, kir_if(k, live, st, NULL)));
    }
  kir_push(&tb, kir_block_done(k, &sb));
  kir_node *tiles = kir_for(k, rt, I(c, 0), DIV(ADD(R, I(c, RT - 1)), I(c, RT)), KIR_LOOP_SERIAL, kir_block_done(k, &tb));
  kir_finish(k, kir_if(k, kir_bin(k, KIR_EQ, R, I(c, 1)), kir_block_done(k, &one), tiles));
}
static void qgemv_rows(lctx *c, const wsrc *const *ws, kir_node *const *roff, int nw, int P, int L, int X, kir_node *xs,
                       const qgemv_epi *e) {
  gemv_dots g = {.ws = ws, .roff = roff, .nw = nw, .P = P, .L = L, .X = X};
  if (P > 1)
    c->k->per_index = P;
  int RT = QRT;
  while (RT > 1 && nw * P * RT > 16) /* accumulators of a prefill tile: 16 at most */
    RT /= 2;
  gemv_kernel(c, &g, RT, xs, e);
}

/*
 * GPUs: the packed 4-bit GEMV with 8-bit activations (docs/backends.md, "8-bit activations on
 * GPUs"), by the rule of the CPU's tiles (i8_prologue): per group of 32 of an x row, d = max|x| /
 * 127 and q = rint(x * (1 / d)); per group of a weight row, the exact integer dot of q with the
 * 4-bit values, then acc += float(dot - max_int * sum(q)) * (scale * d). A parallel index computes
 * P consecutive outputs (kir_kernel.per_index) of each of nw weights (gate and up) on L lanes; lane
 * l takes the groups l, l + L, ...: per weight row one 16-byte load of the group's 4 words and its
 * scale, and the x group quantized once in registers for all its rows (8 16-byte loads, the
 * maximum, 32 rounds by a float add, 8 words of 4 bytes: the even elements of each 8 then the odd
 * ones, as the low and high nibbles of a word hold them), then per weight word two KIR_DP4A.
 */
static bool i8_gpu_ok(lctx *c, const wsrc *w, kir_node *N) {
  const mlc_qscheme *q = w->q;
  return c->tu->i8_gemv > 0 && !c->d->generic && q && !q->kn && !q->il && q->bits == 4 && q->per_word == 8 &&
         q->group == 32 && w->K->op == KIR_CONST && w->K->i % 128 == 0 && N->op == KIR_CONST && !getenv("MLC_NO_INT8") &&
         !getenv("MLC_NO_LANES");
}
/* outputs per index P and lanes per index L: P as large as the tunable allows while the matrix
 * keeps >= 2048 indices (the x quantization is shared by P rows), then L doubled (a block per
 * index past 32) until about 4096 warps stream it */
static void i8_gpu_shape(lctx *c, int64_t N, int64_t G, int *P, int *L) {
  int p = c->tu->i8_gemv;
  while (p > 1 && (N % p || N / p < 64))
    p /= 2;
  int l = 4;
  while (l < 32 && G % (2 * l) == 0)
    l *= 2;
  /* long rows (8 or more trips of a warp: the down projection) take two warps per index */
  if (l == 32 && G % 64 == 0 && G / 32 >= 8)
    l = 64;
  int fp = env_pow2("MLC_I8_P", 1, 8), fl = env_pow2("MLC_I8_L", 4, 256); /* experiments */
  if (fp && N % fp == 0)
    p = fp;
  if (fl && G % fl == 0)
    l = fl;
  *P = p, *L = l;
}
static kir_node *pack4(lctx *c, kir_node *a, kir_node *b, kir_node *d, kir_node *e) {
  kir_kernel *k = c->k;
  kir_node *m = I(c, 255);
#define B8(v, sh) kir_bin(k, KIR_SHL, kir_bin(k, KIR_BITAND, v, m), I(c, sh))
  return kir_bin(k, KIR_BITOR, kir_bin(k, KIR_BITOR, kir_bin(k, KIR_BITAND, a, m), B8(b, 8)),
                 kir_bin(k, KIR_BITOR, B8(d, 16), B8(e, 24)));
#undef B8
}

/* The 8-bit quantization of one group of 32 x values in the local array qx (the CPU's rule,
 * i8_prologue): d = max|x| / 127 (var *d), q = rint(x / d) packed into the words xw[0..8): word
 * 2w the even elements of 8w .. 8w + 7, word 2w + 1 the odd ones, as the low and high nibbles of
 * a 4-bit weight word hold them. Returns the sum of the q (an expression). */
static kir_node *quant_group(lctx *c, kir_block *blk, int qx, int *xw, int *d) {
  kir_kernel *k = c->k;
  kir_node *xe[32], *mx[32];
  for (int e = 0; e < 32; e++)
    xe[e] = LD(qx, I(c, e)), mx[e] = kir_un(k, KIR_ABS, xe[e]);
  for (int w = 16; w > 0; w /= 2) /* the maximum by a tree (short dependency chains) */
    for (int e = 0; e < w; e++)
      mx[e] = kir_bin(k, KIR_MAX, mx[e], mx[e + w]);
  *d = kir_var(k, "qd", KIR_F32);
  int id = kir_var(k, "qid", KIR_F32);
  kir_push(blk, kir_local(k, *d, DIV(mx[0], F(c, 127.0))));
  kir_push(blk, kir_local(k, id, kir_sel(k, kir_bin(k, KIR_NE, V(*d), F(c, 0)), DIV(F(c, 1.0), V(*d)), F(c, 0))));
  kir_node *qe[32];
  for (int e = 0; e < 32; e++)
    qe[e] = kir_un(k, KIR_TOI, kir_un(k, KIR_ROUND, MUL(xe[e], V(id))));
  kir_node *sum = I(c, 0), *ones = I(c, 0x01010101);
  for (int w = 0; w < 8; w++) {
    int b = (w / 2) * 8 + w % 2;
    xw[w] = kir_var(k, "qxw", KIR_I64);
    kir_push(blk, kir_local(k, xw[w], pack4(c, qe[b], qe[b + 2], qe[b + 4], qe[b + 6])));
    sum = kir_dp4a(k, sum, V(xw[w]), ones);
  }
  return sum;
}

/* res[(rt * nw + i) * P + o]: the dots of x rows xb[rt] with weight i's row j * P + o + roff[i] */
static void wdot_i8(lctx *c, kir_block *blk, const wsrc *const *ws, kir_node *const *roff, int nw, int P, int L, int X,
                    kir_node *const *xb, int RT, int *res) {
  kir_kernel *k = c->k;
  const mlc_qscheme *q = ws[0]->q;
  int64_t K = ws[0]->K->i, G = K / 32, W = K / 8;
  MLC_ASSERT(RT * nw * P <= GEMV_MAXACC && G % L == 0);
  kir_node *j = kir_grid(k);
  int acc[GEMV_MAXACC];
  kir_block ab = {0}, rb = {0};
  for (int i = 0; i < RT * nw * P; i++) {
    acc[i] = kir_var(k, "qa", KIR_F32);
    kir_push(&ab, kir_local(k, acc[i], F(c, 0)));
  }
  kir_push(blk, kir_block_done(k, &ab));
  int t = kir_var(k, "qt", KIR_I64);
  kir_block body = {0};
  kir_node *g = ADD(MUL(V(t), I(c, L)), kir_lane(k));
  int wv[2][8], sv[2][8];
  kir_block wb = {0}; /* statements in sub-blocks (a block holds 64) */
  for (int i = 0; i < nw; i++)
    for (int o = 0; o < P; o++) {
      kir_node *row = ADD(ADD(MUL(j, I(c, P)), I(c, o)), roff[i]);
      int qw = local_named_t(c, "qw", MLC_U32, 4 * nw * P);
      wv[i][o] = (i * P + o) * 4; /* the words' place in qw */
      kir_push(&wb, kir_vload_at(k, qw, wv[i][o], 4, ws[i]->buf, ADD(MUL(row, I(c, W)), MUL(g, I(c, 4)))));
      sv[i][o] = kir_var(k, "qsc", KIR_F32);
      kir_push(&wb, kir_local(k, sv[i][o], LD(ws[i]->sbuf, ADD(MUL(row, I(c, G)), g))));
    }
  kir_push(&body, kir_block_done(k, &wb));
  for (int rt = 0; rt < RT; rt++) {
    kir_block xbk = {0}, *xbp = &xbk;
    int qx = local_named(c, "qx", 32);
    kir_push(xbp, kir_vload(k, qx, X, ADD(xb[rt], MUL(g, I(c, 32)))));
    int d, xw[8];
    kir_node *sum = quant_group(c, xbp, qx, xw, &d);
    int xn = kir_var(k, "qxn", KIR_I64);
    kir_push(xbp, kir_local(k, xn, MUL(sum, I(c, -q->max_int))));
    for (int i = 0; i < nw; i++)
      for (int o = 0; o < P; o++) {
        kir_node *dot = V(xn);
        for (int w = 0; w < 4; w++) {
          kir_node *word = LD(local_named_t(c, "qw", MLC_U32, 4 * nw * P), I(c, wv[i][o] + w)), *nib = I(c, 0x0f0f0f0f);
          dot = kir_dp4a(k, dot, kir_bin(k, KIR_BITAND, word, nib), V(xw[2 * w]));
          dot = kir_dp4a(k, dot, kir_bin(k, KIR_BITAND, kir_bin(k, KIR_SHR, word, I(c, 4)), nib), V(xw[2 * w + 1]));
        }
        int a = acc[(rt * nw + i) * P + o];
        kir_push(xbp, kir_assign(k, a, ADD(V(a), MUL(kir_un(k, KIR_TOF, dot), MUL(V(sv[i][o]), V(d))))));
      }
    kir_push(&body, kir_block_done(k, &xbk));
  }
  int64_t trips = G / L, unroll = 2;
  const char *fu = getenv("MLC_I8_UNROLL"); /* experiments: the most trips unrolled */
  if (fu && atoi(fu) >= 0 && atoi(fu) <= 16)
    unroll = atoi(fu);
  kir_push(blk, kir_for(k, t, I(c, 0), I(c, trips), trips <= unroll ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL,
                        kir_block_done(k, &body)));
  for (int i = 0; i < RT * nw * P; i++) {
    res[i] = kir_var(k, "qs", KIR_F32);
    kir_push(&rb, kir_local(k, res[i], kir_un(k, KIR_LANE_SUM, V(acc[i]))));
  }
  kir_push(blk, kir_block_done(k, &rb));
}
/* The whole kernel (matmul / gated_matmul without experts): a step of one row as wdot_i8, more
 * rows in tiles of QRT rows of x sharing each weight load (as qgemv_rows) */
static bool qgemm_ok(lctx *c, const wsrc *w, int nw, int64_t N);
static void qgemm_i8(lctx *c, const wsrc *const *ws, kir_node *const *roff, int nw, const qgemv_epi *e);
static void qgemm_pre(lctx *c, const wsrc *w, int X, kir_node *xs, kir_node *N);
static void qgemv_i8(lctx *c, const wsrc *const *ws, kir_node *const *roff, int nw, int X, kir_node *xs,
                     const qgemv_epi *e) {
  kir_kernel *k = c->k;
  if (c->gemm && qgemm_ok(c, ws[0], nw, e->N->i)) {
    if (c->gemm == 2)
      qgemm_pre(c, ws[0], X, xs, e->N);
    else
      qgemm_i8(c, ws, roff, nw, e); /* x: quantized by qgemm_pre */
    c->took_gemm = true;
    return;
  }
  c->alt_ok = true;
  int P, L;
  i8_gpu_shape(c, e->N->i, ws[0]->K->i / 32, &P, &L);
  k->lanes = L;
  if (L > 32)
    k->block = L;
  k->per_index = P;
  const char *mr = getenv("MLC_I8_MAXREGS"); /* experiments: registers a thread may use (64..255) */
  if (mr && atoi(mr) >= 64 && atoi(mr) <= 255) {
    int blk = k->block > 0 ? k->block : c->tu->block > 0 ? c->tu->block : 128;
    k->min_blocks = 65536 / (blk * atoi(mr));
  }
  /* two rows of x a tile: four gave the prefill 4 % more and the decode kernel's registers cost
   * it 6 % (bench/RESULTS.md, "CUDA third pass") */
  int RT = 2;
  if (env_pow2("MLC_I8_RT", 1, QRT)) /* experiments: rows of x per tile */
    RT = env_pow2("MLC_I8_RT", 1, QRT);
  while (RT * nw * P > GEMV_MAXACC)
    RT /= 2;
  gemv_dots g = {.ws = ws, .roff = roff, .nw = nw, .P = P, .L = L, .X = X, .i8 = true};
  gemv_kernel(c, &g, RT, xs, e);
}

/*
 * The prefill GEMM (CUDA sm_80+; docs/gemm.md): out[R, N] = X[R, K] W[N, K]^T for 4-bit weights,
 * by the 8-bit GEMV's rule (quant_group: x per group of 32 to int8 with d = max|x| / 127; the
 * exact integer dot per group, then acc += float(dot) * (w_scale * d)), the integer dots on
 * tensor cores. A parallel index is a block of MM_THREADS threads (8 warps) computing a tile of
 * MM_BM rows of x by WR = 32 NF weight rows (WR / nw outputs of each of the nw weights: gated ops
 * keep gate and up of one output in one thread), walking K in steps of MM_BK = 4 groups:
 *   1. each thread quantizes one group of one x row into shared memory (sx: int8 words in
 *      quant_group's order, sxd: the d), and
 *   2. unpacks 16 / TPR words of one weight row (TPR = 256 / WR threads a row) to signed bytes in
 *      that same order (sw: word 2w the low nibbles of weight word w, 2w + 1 the high ones, each
 *      minus max_int by a borrow-free byte subtraction), with their scales (sws);
 *   3. warp (wm, wn) computes rows 32 wm .. + 32 by the weight rows of its NF fragments of 8 with
 *      m16n8k32 mma (PTX fragment layout: lane = 4 gq + tq; A words (row gq [+ 8], word tq [+ 4]),
 *      B words (column gq, word tq [+ 4]), D (rows gq, gq + 8; columns 2 tq, 2 tq + 1)), one mma
 *      per group of 32 (k = 32), scaled into float accumulators.
 * The global loads of step kt + 1 are issued before the tiles of step kt (registers qx, qw, qs),
 * so their latency hides behind the tensor cores. Shared rows are padded to MM_LD words, so the
 * fragment loads of a warp hit 32 distinct banks. The index is (column tile, row tile) with the
 * row tiles adjacent, so blocks running together share their weight tile in L2 (the weights
 * stream from memory about once).
 */
/* NF: n fragments of 8 weight rows per warp (8 needs more than the 48 KB of static shared memory
 * and 255 registers) */
enum { MM_BM = 64, MM_BK = 128, MM_THREADS = 256, MM_LD = MM_BK / 4 + 4, MM_NF = 4 };
static bool qgemm_ok(lctx *c, const wsrc *w, int nw, int64_t N) {
  return c->tu->mma_rows > 0 && !getenv("MLC_NO_MMA") && N % (32 * MM_NF / nw) == 0 && w->K->i % MM_BK == 0 &&
         w->q->max_int < 128;
}
static void qgemm_i8(lctx *c, const wsrc *const *ws, kir_node *const *roff, int nw, const qgemv_epi *e) {
  kir_kernel *k = c->k;
  const mlc_qscheme *q = ws[0]->q;
  const int NF = MM_NF, WR = 32 * NF, TPR = MM_THREADS / WR, WPT = 16 / TPR, SPT = WPT / 4;
  const char *pfe = getenv("MLC_MM_PF"); /* experiments: 0 loads each step's tiles after its barrier */
  const bool pf = !pfe || atoi(pfe) != 0;
  int64_t K = ws[0]->K->i, W = K / 8, G = K / 32, BN = WR / nw, nk = K / MM_BK; /* BN outputs per block */
  kir_node *R = DYN(c, 0);
  k->lanes = k->block = MM_THREADS;
  /* two blocks an SM (registers capped at 128): 5 % faster than one block of ~136 registers
   * (bench/RESULTS.md, "Prefill GEMM") */
  k->min_blocks = 2;
  if (env_pow2("MLC_MM_MINB", 1, 4)) /* experiments: blocks an SM must hold (caps the registers) */
    k->min_blocks = env_pow2("MLC_MM_MINB", 1, 4);
  k->per_index = (int)BN;
  k->row_tile = MM_BM;
  k->tile_rows = R;
  int sx = kir_buf_shared(k, "sx", MLC_U32, MM_BM * MM_LD), sxd = kir_buf_shared(k, "sxd", MLC_F32, MM_BM * 4);
  int sw = kir_buf_shared(k, "sw", MLC_U32, WR * MM_LD), sws = kir_buf_shared(k, "sws", MLC_F32, WR * 4);
  /* the step's x, quantized by qgemm_pre: int8 words [R, K / 4] and their d [R, K / 32] (device scratch) */
  int xq = kir_buf_arg(k, "xq", MLC_I32, false), xqd = kir_buf_arg(k, "xqd", MLC_F32, false);
  k->scratch[0] = K, k->scratch[1] = G * 4;
  /* registers of a step's loads (a kernel has at most KIR_MAX_BUFS arrays): qw the weight words, then
   * 8 words of x; qs the weight scales, then the x group's d */
  int qw = local_named_t(c, "qw", MLC_U32, WPT + 8), qs = local_named(c, "qs", SPT + 1), qxw = qw, qxd = qs;
  const int XW = WPT, XD = SPT; /* where x's words and d lie in them */
  int mmd = local_named_t(c, "mmd", MLC_I32, 2 * MM_NF * 4);
  kir_node *lane = kir_lane(k), *nrt = DIV(ADD(R, I(c, MM_BM - 1)), I(c, MM_BM));
  int ct = kir_var(k, "ct", KIR_I64), rt = kir_var(k, "rtl", KIR_I64), kt = kir_var(k, "kt", KIR_I64);
  kir_block top = {0}, ab = {0};
  kir_push(&top, kir_local(k, ct, DIV(kir_grid(k), nrt)));
  kir_push(&top, kir_local(k, rt, MOD(kir_grid(k), nrt)));
  int acc[2 * MM_NF * 4];
  for (int i = 0; i < 2 * NF * 4; i++) {
    acc[i] = kir_var(k, "ma", KIR_F32);
    kir_push(&ab, kir_local(k, acc[i], F(c, 0)));
  }
  kir_push(&top, kir_block_done(k, &ab));
  /* the global loads of step `ks` into registers: x (row lane / 4, group lane % 4 of the step's 64 x 4
   * groups); weight row br = lane / TPR, words part * WPT .. + WPT of its 16, and their scales
   * (gated: warps 0-3 load gate rows, 4-7 up rows, a warp-uniform branch) */
  kir_node *xr = DIV(lane, I(c, 4)), *xg = MOD(lane, I(c, 4)), *br = DIV(lane, I(c, TPR)), *part = MOD(lane, I(c, TPR));
  kir_node *xrow = kir_bin(k, KIR_MIN, ADD(MUL(V(rt), I(c, MM_BM)), xr), SUB(R, I(c, 1)));
  /* with prefetching: step 0's loads before the loop, step kt + 1's in it; else step kt's */
  kir_node *ksv[2] = {pf ? I(c, 0) : V(kt), ADD(V(kt), I(c, 1))};
  kir_node *loads[2];
  for (int v = 0; v < 2; v++) {
    kir_node *ks = ksv[v];
    kir_block lb = {0}, wb[2];
    memset(wb, 0, sizeof wb);
    kir_node *xqb = ADD(ADD(MUL(xrow, I(c, K / 4)), MUL(ks, I(c, MM_BK / 4))), MUL(xg, I(c, 8)));
    kir_push(&lb, kir_vload_at(k, qxw, XW, 4, xq, xqb));
    kir_push(&lb, kir_vload_at(k, qxw, XW + 4, 4, xq, ADD(xqb, I(c, 4))));
    kir_push(&lb, kir_store(k, qxd, I(c, XD), LD(xqd, ADD(ADD(MUL(xrow, I(c, G)), MUL(ks, I(c, MM_BK / 32))), xg))));
    for (int i = 0; i < nw; i++) {
      kir_node *row = ADD(ADD(MUL(V(ct), I(c, BN)), SUB(br, I(c, i * BN))), roff[i]);
      kir_node *wbase = ADD(ADD(MUL(row, I(c, W)), MUL(ks, I(c, MM_BK / 8))), MUL(part, I(c, WPT)));
      for (int v4 = 0; v4 < WPT / 4; v4++)
        kir_push(&wb[i], kir_vload_at(k, qw, v4 * 4, 4, ws[i]->buf, ADD(wbase, I(c, v4 * 4))));
      for (int s2 = 0; s2 < SPT; s2++) {
        kir_node *gi = ADD(MUL(part, I(c, SPT)), I(c, s2));
        kir_push(&wb[i], kir_store(k, qs, I(c, s2), LD(ws[i]->sbuf, ADD(ADD(MUL(row, I(c, G)), MUL(ks, I(c, MM_BK / 32))), gi))));
      }
    }
    kir_push(&lb, nw == 1 ? kir_block_done(k, &wb[0])
                          : kir_if(k, kir_bin(k, KIR_LT, lane, I(c, MM_THREADS / 2)), kir_block_done(k, &wb[0]),
                                   kir_block_done(k, &wb[1])));
    loads[v] = kir_block_done(k, &lb);
  }
  /* the registers into shared memory: x quantized, the weights unpacked */
  kir_block st = {0}, xb = {0}, ub = {0};
  for (int w = 0; w < 8; w++)
    kir_push(&xb, kir_store(k, sx, ADD(ADD(MUL(xr, I(c, MM_LD)), MUL(xg, I(c, 8))), I(c, w)), LD(qxw, I(c, XW + w))));
  kir_push(&xb, kir_store(k, sxd, ADD(MUL(xr, I(c, 4)), xg), LD(qxd, I(c, XD))));
  kir_push(&st, kir_block_done(k, &xb));
  kir_node *nib = I(c, 0x0f0f0f0f), *m80 = I(c, 0x80808080), *mq = I(c, 0x01010101LL * q->max_int);
  for (int w = 0; w < WPT; w++) {
    kir_node *word = LD(qw, I(c, w));
    kir_node *nb2[2] = {kir_bin(k, KIR_BITAND, word, nib), kir_bin(k, KIR_BITAND, kir_bin(k, KIR_SHR, word, I(c, 4)), nib)};
    for (int h = 0; h < 2; h++) {
      /* n - max_int in each byte without borrows: (n | 0x80) - max_int >= 0x80 - max_int > 0, then the top bit back */
      kir_node *sb = kir_bin(k, KIR_BITXOR, SUB(kir_bin(k, KIR_BITOR, nb2[h], m80), mq), m80);
      kir_push(&ub, kir_store(k, sw, ADD(ADD(MUL(br, I(c, MM_LD)), MUL(part, I(c, 2 * WPT))), I(c, 2 * w + h)), sb));
    }
  }
  for (int s2 = 0; s2 < SPT; s2++)
    kir_push(&ub, kir_store(k, sws, ADD(ADD(MUL(br, I(c, 4)), MUL(part, I(c, SPT))), I(c, s2)), LD(qs, I(c, s2))));
  kir_push(&st, kir_block_done(k, &ub));

  kir_block step = {0};
  kir_push(&step, kir_barrier(k)); /* the previous step's fragment loads are done */
  if (!pf)
    kir_push(&step, loads[0]);
  kir_push(&step, kir_block_done(k, &st));
  kir_push(&step, kir_barrier(k));
  if (pf)
    kir_push(&step, kir_if(k, kir_bin(k, KIR_LT, ksv[1], I(c, nk)), loads[1], NULL));
  /* the tensor-core tiles of the 4 groups */
  kir_node *warp = DIV(lane, I(c, 32)), *wm = DIV(warp, I(c, 4)), *wn = MOD(warp, I(c, 4));
  kir_node *gq = DIV(MOD(lane, I(c, 32)), I(c, 4)), *tq = MOD(lane, I(c, 4));
  kir_node *nbase[MM_NF];
  for (int f = 0; f < NF; f++) /* the fragment's first weight row in the block */
    nbase[f] = nw == 1 ? ADD(MUL(wn, I(c, NF * 8)), I(c, f * 8))
                       : ADD(ADD(MUL(wn, I(c, NF * 4)), I(c, (f % (NF / 2)) * 8)), I(c, (f / (NF / 2)) * BN));
  for (int gi = 0; gi < MM_BK / 32; gi++) {
    /* the group's 2 x NF tiles first (independent: each its own D registers), then their scaling,
     * so the tensor cores' latency overlaps */
    kir_block mb = {0}, sb[2];
    memset(sb, 0, sizeof sb);
    for (int mi = 0; mi < 2; mi++) {
      kir_node *r0 = ADD(ADD(MUL(wm, I(c, 32)), I(c, mi * 16)), gq), *r1 = ADD(r0, I(c, 8));
      kir_node *a[4] = {LD(sx, ADD(ADD(MUL(r0, I(c, MM_LD)), I(c, gi * 8)), tq)),
                        LD(sx, ADD(ADD(MUL(r1, I(c, MM_LD)), I(c, gi * 8)), tq)),
                        LD(sx, ADD(ADD(MUL(r0, I(c, MM_LD)), I(c, gi * 8 + 4)), tq)),
                        LD(sx, ADD(ADD(MUL(r1, I(c, MM_LD)), I(c, gi * 8 + 4)), tq))};
      kir_node *xd[2] = {LD(sxd, ADD(MUL(r0, I(c, 4)), I(c, gi))), LD(sxd, ADD(MUL(r1, I(c, 4)), I(c, gi)))};
      for (int f = 0; f < NF; f++) {
        kir_node *n0 = ADD(nbase[f], gq);
        kir_node *b[2] = {LD(sw, ADD(ADD(MUL(n0, I(c, MM_LD)), I(c, gi * 8)), tq)),
                          LD(sw, ADD(ADD(MUL(n0, I(c, MM_LD)), I(c, gi * 8 + 4)), tq))};
        int t = (mi * NF + f) * 4;
        kir_push(&mb, kir_mma_s8(k, mmd, t, a, b));
        for (int e2 = 0; e2 < 4; e2++) {
          kir_node *col = ADD(ADD(nbase[f], MUL(tq, I(c, 2))), I(c, e2 % 2));
          kir_node *sc = MUL(xd[e2 / 2], LD(sws, ADD(MUL(col, I(c, 4)), I(c, gi))));
          int a2 = acc[t + e2];
          /* |dot| <= 32 * 128 * 8 < 2^22: the conversion without the conversion unit */
          kir_push(&sb[mi], kir_assign(k, a2, ADD(V(a2), MUL(kir_tof_exact(k, LD(mmd, I(c, t + e2))), sc))));
        }
      }
    }
    kir_push(&step, kir_block_done(k, &mb));
    kir_push(&step, kir_block_done(k, &sb[0]));
    kir_push(&step, kir_block_done(k, &sb[1]));
  }
  if (pf)
    kir_push(&top, loads[0]); /* step 0's loads; the loop issues each next step's */
  kir_push(&top, kir_for(k, kt, I(c, 0), I(c, nk), KIR_LOOP_SERIAL, kir_block_done(k, &step)));
  /* the epilogue: each thread's D elements, rows < R stored */
  kir_block eb = {0};
  int sv[2];
  for (int mi = 0; mi < 2; mi++)
    for (int f = 0; f < NF / nw; f++)
      for (int e2 = 0; e2 < 4; e2++) {
        kir_node *row = ADD(ADD(ADD(MUL(V(rt), I(c, MM_BM)), MUL(wm, I(c, 32))), I(c, mi * 16 + (e2 / 2) * 8)), gq);
        kir_node *o = ADD(ADD(ADD(MUL(V(ct), I(c, BN)), nbase[f]), MUL(tq, I(c, 2))), I(c, e2 % 2));
        for (int i = 0; i < nw; i++)
          sv[i] = acc[(mi * NF + f + i * (NF / 2)) * 4 + e2];
        kir_push(&eb, kir_if(k, kir_bin(k, KIR_LT, row, R),
                             kir_store(k, e->out, ADD(MUL(row, e->N), o), qgemv_val(c, e, o, sv)), NULL));
      }
  kir_push(&top, kir_block_done(k, &eb));
  kir_finish(k, kir_block_done(k, &top));
}

/* The GEMM's preparation, launched right before it (kir_kernel.pre): the step's x rows quantized
 * once (quant_group's rule and word order) into the device scratch the GEMM reads, rather than by
 * every column tile of blocks. An index is a row (the launch range: one tile of N outputs times
 * R row tiles of 1); its 128 threads take the groups t, t + 128, ... */
static void qgemm_pre(lctx *c, const wsrc *w, int X, kir_node *xs, kir_node *N) {
  kir_kernel *k = c->k;
  int64_t K = w->K->i, G = K / 32;
  enum { T = 128 };
  k->lanes = k->block = T;
  k->per_index = (int)N->i;
  k->row_tile = 1;
  k->tile_rows = DYN(c, 0);
  int xq = kir_buf_arg(k, "xq", MLC_I32, true), xqd = kir_buf_arg(k, "xqd", MLC_F32, true); /* [R, K / 4], [R, G] */
  k->scratch[0] = K, k->scratch[1] = G * 4;
  int qx = local_named(c, "qx", 32), t = kir_var(k, "t", KIR_I64);
  kir_node *r = kir_grid(k), *grp = ADD(MUL(V(t), I(c, T)), kir_lane(k));
  kir_block b = {0};
  kir_push(&b, kir_vload(k, qx, X, ADD(MUL(r, xs), MUL(grp, I(c, 32)))));
  int d, xw[8];
  quant_group(c, &b, qx, xw, &d);
  for (int i = 0; i < 8; i++)
    kir_push(&b, kir_store(k, xq, ADD(ADD(MUL(r, I(c, K / 4)), MUL(grp, I(c, 8))), I(c, i)), V(xw[i])));
  kir_push(&b, kir_store(k, xqd, ADD(MUL(r, I(c, G)), grp), V(d)));
  kir_node *live = kir_if(k, kir_bin(k, KIR_LT, grp, I(c, G)), kir_block_done(k, &b), NULL);
  kir_finish(k, kir_for(k, t, I(c, 0), I(c, (G + T - 1) / T), KIR_LOOP_SERIAL, live));
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
/* row_lanes with a whole block per row where the language has one (CUDA: `row_block` threads,
 * the lane sums through shared memory; render.c): rows too long for one warp (norms, embed, add) */
static bool row_block(lctx *c, const int64_t *n, int cnt) {
  int B = c->tu->row_block;
  if (B > 32 && env_pow2("MLC_ROW_BLOCK", 64, 1024)) /* experiments: the largest block */
    B = env_pow2("MLC_ROW_BLOCK", 64, 1024);
  bool ok = false;
  for (; B > 32 && !ok; B /= 2) { /* the largest power-of-two block dividing the rows */
    ok = !c->d->generic && !getenv("MLC_NO_LANES");
    for (int i = 0; ok && i < cnt; i++)
      ok = n[i] > 0 && n[i] % B == 0;
    if (ok)
      break;
  }
  if (!ok)
    return row_lanes(c, n, cnt);
  c->k->lanes = B;
  c->k->block = B;
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
  return kir_for(k, t, I(c, 0), I(c, trips), trips <= 16 ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL, kir_seq(k, items, 2));
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

/*
 * Register-blocked tiles (the C target, tunables `vec`; docs/compiler.md "Vectors and tiles").
 * Every output (r, j) is the dot of x row r with one weight row, computed the same way whatever
 * tile it falls in: KIR_VW-lane partial sums over K in order, summed by KIR_VSUM, then a scalar
 * tail for K % KIR_VW. So a step's results do not depend on how many rows it has or on how the
 * range is split across threads (batch invariance, tests/test_batch.c). A tile keeps `nr` rows
 * of x and `nw` weight rows in vector registers: nr * nw accumulators, nr + nw loads per
 * nr * nw fused multiply-adds. Packed weights are dequantized once per tile into a local f32
 * array (reused by every row of the step), float weights are read in place.
 */
#define TILE_MAX 4
typedef struct trow {
  int buf;        /* a float buffer (the weight, or the tile's dequantized copy) */
  kir_node *base; /* the row's first element */
  const wsrc *il; /* or: interleaved packed weights (quant.h) read in place, row `row` */
  kir_node *row;
} trow;

static bool tile_ok(lctx *c, const wsrc *w) {
  if (!c->tu->vec || c->d->generic || w->K->op != KIR_CONST || getenv("MLC_NO_TILES"))
    return false;
  /* packed weights: read in place (il, 8-bit activations) or dequantized per tile, word by word;
   * rows that end mid-word (q3f16_1 at most K) keep wdot: dequantized element by element, a tile
   * ran decode 9x slower (0.72 against 6.3 tok/s on the 1B shape) for 7x faster prefill */
  return !w->q || w->q->kn || w->q->il || w->K->i % w->q->per_word == 0;
}

/* local dst[dbase .. dbase + K) = row `row` of packed weight w, as f32 */
static void deq_row(lctx *c, kir_block *blk, const wsrc *w, kir_node *row, int dst, kir_node *dbase) {
  kir_kernel *k = c->k;
  if (w->q->kn || w->q->il) { /* element by element */
    int i = kir_var(k, "i", KIR_I64);
    kir_push(blk, kir_for(k, i, I(c, 0), w->K, KIR_LOOP_VECTOR, kir_store(k, dst, ADD(dbase, V(i)), wload(c, w, row, V(i)))));
    return;
  }
  int pw = w->q->per_word;
  int wi = kir_var(k, "wi", KIR_I64), word = kir_var(k, "word", KIR_I64), sc = kir_var(k, "sc", KIR_F32),
      e = kir_var(k, "e", KIR_I64);
  kir_block body = {0};
  kir_push(&body, kir_local(k, word, LD(w->buf, qword_idx(c, w, row, V(wi)))));
  kir_push(&body, kir_local(k, sc, LD(w->sbuf, qscale_idx(c, w, row, MUL(V(wi), I(c, pw))))));
  kir_node *st = kir_store(k, dst, ADD(dbase, ADD(MUL(V(wi), I(c, pw)), V(e))), MUL(qvalue(c, w, V(word), V(e)), V(sc)));
  kir_push(&body, kir_for(k, e, I(c, 0), I(c, pw), KIR_LOOP_VECTOR, st));
  kir_push(blk, kir_for(k, wi, I(c, 0), DIV(w->K, I(c, pw)), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
}

/* n vector accumulators, zero */
static void tile_acc(lctx *c, kir_block *blk, int n, int *acc) {
  for (int i = 0; i < n; i++) {
    acc[i] = kir_var(c->k, "acc", KIR_VF32);
    kir_push(blk, kir_local(c->k, acc[i], kir_vbcast(c->k, F(c, 0))));
  }
}
/* res[i] (new f32 vars) = VSUM(acc[i]) */
static void tile_sums(lctx *c, kir_block *blk, int n, const int *acc, int *res) {
  for (int i = 0; i < n; i++) {
    res[i] = kir_var(c->k, "s", KIR_F32);
    kir_push(blk, kir_local(c->k, res[i], kir_vsum(c->k, V(acc[i]))));
  }
}

/* res[i * nw + j] (new f32 vars) = x[xb[i] .. + K) . wr[j] for i < nr, j < nw */
static void tile_dots(lctx *c, kir_block *blk, int X, kir_node *const *xb, int nr, const trow *wr, int nw, int64_t K,
                      int *res) {
  kir_kernel *k = c->k;
  int acc[TILE_MAX * TILE_MAX];
  tile_acc(c, blk, nr * nw, acc);
  int64_t nk = K / KIR_VW;
  if (nk > 0) {
    int kk = kir_var(k, "kk", KIR_I64);
    kir_node *off = MUL(V(kk), I(c, KIR_VW));
    kir_block body = {0};
    int xv[TILE_MAX];
    for (int i = 0; i < nr; i++) {
      xv[i] = kir_var(k, "xv", KIR_VF32);
      kir_push(&body, kir_local(k, xv[i], kir_vld(k, X, ADD(xb[i], off))));
    }
    for (int j = 0; j < nw; j++) {
      int wv = kir_var(k, "wv", KIR_VF32);
      kir_push(&body, kir_local(k, wv, kir_vld(k, wr[j].buf, ADD(wr[j].base, off))));
      for (int i = 0; i < nr; i++)
        kir_push(&body, kir_assign(k, acc[i * nw + j], ADD(V(acc[i * nw + j]), MUL(V(xv[i]), V(wv)))));
    }
    kir_push(blk, kir_for(k, kk, I(c, 0), I(c, nk), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
  }
  tile_sums(c, blk, nr * nw, acc, res);
  if (K % KIR_VW) {
    int t = kir_var(k, "kt", KIR_I64);
    kir_block body = {0};
    for (int i = 0; i < nr; i++)
      for (int j = 0; j < nw; j++)
        kir_push(&body, kir_assign(k, res[i * nw + j], ADD(V(res[i * nw + j]), MUL(LD(wr[j].buf, ADD(wr[j].base, V(t))),
                                                                                   LD(X, ADD(xb[i], V(t)))))));
    kir_push(blk, kir_for(k, t, I(c, nk * KIR_VW), I(c, K), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
  }
}

/*
 * tile_dots for interleaved 4-bit weights (quant.h): per block of 128 elements, each weight row's
 * 16 words are one VI32 load; nibble e of every lane is elements 16e .. 16e + 15 of the block, in
 * order and of one group, dequantized as (q - max_int) * scale and multiplied with the matching
 * x vector. Each output: KIR_VW-lane sums over blocks and e in order, then KIR_VSUM.
 */
static void tile_dots_il(lctx *c, kir_block *blk, int X, kir_node *const *xb, int nr, const trow *wr, int nw, int64_t K,
                         int *res) {
  kir_kernel *k = c->k;
  const mlc_qscheme *q = wr[0].il->q;
  int il = q->il, wpb = il / q->per_word, per_lane = il / KIR_VW;
  MLC_ASSERT(wpb == KIR_VW && K % il == 0);
  int acc[TILE_MAX * TILE_MAX];
  tile_acc(c, blk, nr * nw, acc);
  int kb = kir_var(k, "kb", KIR_I64);
  kir_block body = {0};
  int wv[TILE_MAX];
  for (int j = 0; j < nw; j++) {
    wv[j] = kir_var(k, "wq", KIR_VI32);
    kir_push(&body, kir_local(k, wv[j], kir_vld(k, wr[j].il->buf, qword_idx(c, wr[j].il, wr[j].row, MUL(V(kb), I(c, wpb))))));
  }
  kir_node *mask = kir_vbcast(k, I(c, (1 << q->bits) - 1)), *off = kir_vbcast(k, I(c, q->max_int));
  /* e stays a loop: unrolled, GCC hoists every block's x loads and spills */
  int e = kir_var(k, "e", KIR_I64);
  {
    kir_block eb = {0};
    kir_node *k0 = ADD(MUL(V(kb), I(c, il)), MUL(V(e), I(c, KIR_VW)));
    int xv[TILE_MAX];
    for (int i = 0; i < nr; i++) {
      xv[i] = kir_var(k, "xv", KIR_VF32);
      kir_push(&eb, kir_local(k, xv[i], kir_vld(k, X, ADD(xb[i], k0))));
    }
    for (int j = 0; j < nw; j++) {
      kir_node *qv = kir_bin(k, KIR_BITAND, kir_bin(k, KIR_SHR, V(wv[j]), kir_vbcast(k, MUL(V(e), I(c, q->bits)))), mask);
      kir_node *sc = kir_vbcast(k, LD(wr[j].il->sbuf, qscale_idx(c, wr[j].il, wr[j].row, k0)));
      int wf = kir_var(k, "wf", KIR_VF32);
      kir_push(&eb, kir_local(k, wf, MUL(kir_un(k, KIR_TOF, SUB(qv, off)), sc)));
      for (int i = 0; i < nr; i++)
        kir_push(&eb, kir_assign(k, acc[i * nw + j], ADD(V(acc[i * nw + j]), MUL(V(xv[i]), V(wf)))));
    }
    kir_push(&body, kir_for(k, e, I(c, 0), I(c, per_lane), KIR_LOOP_VECTOR, kir_block_done(k, &eb))); /* rolled */
  }
  kir_push(blk, kir_for(k, kb, I(c, 0), I(c, K / il), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
  tile_sums(c, blk, nr * nw, acc, res);
}

/* What a column tile computes: `nsrc` weights (1: matmul, 2: gate and up), columns j0 .. j0 + ncol
 * of each (weight row = roff[s] + column), and the store of each output. */
typedef struct tile_op {
  const wsrc *w[2];
  kir_node *roff[2];
  int nsrc;
  int X;
  kir_node *xs; /* x row stride */
  int out;
  kir_node *N;  /* out row stride */
  int bias;     /* matmul: bias buffer or -1 */
  bool cap;     /* matmul: softcap */
  int act;      /* gated: activation kind */
  int xq, xd, xn; /* 8-bit activations (tile_dots_i8): scratch arrays, else -1 */
} tile_op;

/*
 * 4-bit weights times 8-bit activations (C tiles with tunables int8_act; docs/compiler.md "8-bit
 * activations"). The kernel's prologue (i8_prologue) has quantized the step's x rows. Per block
 * of 128 elements, the 16 plain q4 words of a weight row are one VI32 load: their low nibbles
 * are the even elements of each lane's 8 and the high nibbles the odd ones, which match the two
 * 64-byte halves of the block's quantized x; per lane (8 elements, one group)
 *   d = vdot(vdot(-max_int * sum(q_x), low, x_even), high, x_odd)     (exact integers)
 *   acc += float(d) * (scale_w * scale_x)
 * and the output is VSUM(acc): one order whatever the tile, the thread split or the step's rows.
 */
static void tile_dots_i8(lctx *c, kir_block *blk, const tile_op *t, kir_node *r0, int nr, const trow *wr, int nw, int *res) {
  kir_kernel *k = c->k;
  const mlc_qscheme *q = wr[0].il->q;
  int64_t K = t->w[0]->K->i, wpb = 128 / q->per_word;
  int acc[TILE_MAX * TILE_MAX];
  tile_acc(c, blk, nr * nw, acc);
  int kb = kir_var(k, "kb", KIR_I64);
  kir_block body = {0};
  int lo[TILE_MAX], hi[TILE_MAX], sw[TILE_MAX];
  kir_node *nib = kir_vbcast(k, I(c, 0x0F0F0F0F));
  for (int j = 0; j < nw; j++) {
    int wv = kir_var(k, "wq", KIR_VI32);
    lo[j] = kir_var(k, "lo", KIR_VI32), hi[j] = kir_var(k, "hi", KIR_VI32), sw[j] = kir_var(k, "sw", KIR_VF32);
    kir_push(&body, kir_local(k, wv, kir_vld(k, wr[j].il->buf, qword_idx(c, wr[j].il, wr[j].row, MUL(V(kb), I(c, wpb))))));
    kir_push(&body, kir_local(k, lo[j], kir_bin(k, KIR_BITAND, V(wv), nib)));
    kir_push(&body, kir_local(k, hi[j], kir_bin(k, KIR_BITAND, kir_bin(k, KIR_SHR, V(wv), kir_vbcast(k, I(c, 4))), nib)));
    kir_push(&body, kir_local(k, sw[j], kir_vld4(k, wr[j].il->sbuf, qscale_idx(c, wr[j].il, wr[j].row, MUL(V(kb), I(c, 128))))));
  }
  for (int i = 0; i < nr; i++) {
    kir_block rb = {0};
    kir_node *r = ADD(r0, I(c, i));
    kir_node *qb = ADD(MUL(r, I(c, K)), MUL(V(kb), I(c, 128))), *lb = ADD(MUL(r, I(c, K / 8)), MUL(V(kb), I(c, 16)));
    int xl = kir_var(k, "xl", KIR_VI32), xh = kir_var(k, "xh", KIR_VI32), xd = kir_var(k, "xd", KIR_VF32),
        xn = kir_var(k, "xn", KIR_VI32);
    kir_push(&rb, kir_local(k, xl, kir_vld(k, t->xq, qb)));
    kir_push(&rb, kir_local(k, xh, kir_vld(k, t->xq, ADD(qb, I(c, 64)))));
    kir_push(&rb, kir_local(k, xd, kir_vld(k, t->xd, lb)));
    kir_push(&rb, kir_local(k, xn, kir_vld(k, t->xn, lb)));
    for (int j = 0; j < nw; j++) {
      kir_node *d = kir_vdot(k, kir_vdot(k, V(xn), V(lo[j]), V(xl)), V(hi[j]), V(xh));
      int a = acc[i * nw + j];
      kir_push(&rb, kir_assign(k, a, ADD(V(a), MUL(kir_un(k, KIR_TOF, d), MUL(V(sw[j]), V(xd))))));
    }
    kir_push(&body, kir_block_done(k, &rb));
  }
  kir_push(blk, kir_for(k, kb, I(c, 0), I(c, K / 128), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
  tile_sums(c, blk, nr * nw, acc, res);
}

/*
 * The prologue of an 8-bit-activation kernel: every row r of the step's x, per group of 32:
 * d = max|x| / 127, q = rint(x * (1 / d)) (halves to even; 0 where d = 0), stored in block order
 * (element 8l + j of a block of 128 at byte (j % 2) * 64 + 4l + j / 2); per lane l of 8 elements:
 * xd = d, xn = -max_int * sum(q).
 */
static kir_node *i8_prologue(lctx *c, const tile_op *t) {
  kir_kernel *k = c->k;
  int64_t K = t->w[0]->K->i, mi = t->w[0]->q->max_int;
  kir_node *R = DYN(c, 0);
  int r = kir_var(k, "pr", KIR_I64), g = kir_var(k, "pg", KIR_I64), i = kir_var(k, "pi", KIR_I64);
  int amax = kir_var(k, "amax", KIR_F32), d = kir_var(k, "d", KIR_F32), id = kir_var(k, "id", KIR_F32);
  kir_node *xrow = MUL(V(r), t->xs);
  kir_block gb = {0};
  kir_push(&gb, kir_local(k, amax, F(c, 0)));
  /* a select, not KIR_MAX: C's fmaxf is a library call where its NaN rule cannot be inlined */
  kir_node *ax = kir_un(k, KIR_ABS, LD(t->X, ADD(xrow, ADD(MUL(V(g), I(c, 32)), V(i)))));
  kir_push(&gb, kir_for(k, i, I(c, 0), I(c, 32), KIR_LOOP_SERIAL,
                        kir_assign(k, amax, kir_sel(k, kir_bin(k, KIR_LT, V(amax), ax), ax, V(amax)))));
  kir_push(&gb, kir_local(k, d, DIV(V(amax), F(c, 127.0))));
  kir_push(&gb, kir_local(k, id, kir_sel(k, kir_bin(k, KIR_NE, V(d), F(c, 0)), DIV(F(c, 1.0), V(d)), F(c, 0))));
  int l = kir_var(k, "pl", KIR_I64), j = kir_var(k, "pj", KIR_I64), sum = kir_var(k, "psum", KIR_I64),
      v = kir_var(k, "pv", KIR_F32), qv = kir_var(k, "pq", KIR_I64);
  kir_node *kk = ADD(ADD(MUL(V(g), I(c, 32)), MUL(V(l), I(c, 8))), V(j)); /* element of the row */
  kir_block jb = {0};
  kir_push(&jb, kir_local(k, v, MUL(LD(t->X, ADD(xrow, kk)), V(id))));
  kir_push(&jb, kir_local(k, qv, kir_un(k, KIR_TOI, kir_un(k, KIR_ROUND, V(v)))));
  kir_node *dst = ADD(ADD(MUL(DIV(kk, I(c, 128)), I(c, 128)), MUL(MOD(V(j), I(c, 2)), I(c, 64))),
                      ADD(MUL(DIV(MOD(kk, I(c, 128)), I(c, 8)), I(c, 4)), DIV(V(j), I(c, 2))));
  kir_push(&jb, kir_store(k, t->xq, ADD(MUL(V(r), I(c, K)), dst), V(qv)));
  kir_push(&jb, kir_assign(k, sum, ADD(V(sum), V(qv))));
  kir_block lb = {0};
  kir_push(&lb, kir_local(k, sum, I(c, 0)));
  kir_push(&lb, kir_for(k, j, I(c, 0), I(c, 8), KIR_LOOP_SERIAL, kir_block_done(k, &jb)));
  kir_node *li = ADD(MUL(V(r), I(c, K / 8)), ADD(MUL(V(g), I(c, 4)), V(l)));
  kir_push(&lb, kir_store(k, t->xd, li, V(d)));
  kir_push(&lb, kir_store(k, t->xn, li, MUL(V(sum), I(c, -mi))));
  kir_push(&gb, kir_for(k, l, I(c, 0), I(c, 4), KIR_LOOP_SERIAL, kir_block_done(k, &lb)));
  kir_node *gl = kir_for(k, g, I(c, 0), I(c, K / 32), KIR_LOOP_SERIAL, kir_block_done(k, &gb));
  return kir_for(k, r, I(c, 0), R, KIR_LOOP_SERIAL, gl);
}

static bool i8_ok(lctx *c, const wsrc *w) {
  const mlc_qscheme *q = w->q;
  return c->tu->vec && c->tu->int8_act && !c->d->generic && q && !q->kn && !q->il && q->bits == 4 && q->per_word == 8 &&
         q->group == 32 && w->K->op == KIR_CONST && w->K->i % 128 == 0 && !getenv("MLC_NO_INT8");
}

/* declares the scratch arrays of 8-bit activations and the prologue that fills them */
static void i8_setup(lctx *c, tile_op *t) {
  kir_kernel *k = c->k;
  int64_t K = t->w[0]->K->i;
  kir_node *R = DYN(c, 0);
  t->xq = kir_buf_scratch(k, "xq", MLC_I8, MUL(R, I(c, K)));
  t->xd = kir_buf_scratch(k, "xd", MLC_F32, MUL(R, I(c, K / 8)));
  t->xn = kir_buf_scratch(k, "xn", MLC_I32, MUL(R, I(c, K / 8)));
  k->prologue = i8_prologue(c, t);
}

static kir_node *tile_out(lctx *c, const tile_op *t, kir_node *r, kir_node *j, const int *s, int col, int ncol) {
  kir_node *y;
  if (t->nsrc == 2) {
    y = MUL(act(c, t->act, V(s[col])), V(s[ncol + col]));
  } else {
    y = V(s[col]);
    if (t->bias >= 0)
      y = ADD(y, LD(t->bias, j));
    if (t->cap)
      y = softcap(c, y, FV(c, 0));
  }
  return kir_store(c->k, t->out, ADD(MUL(r, t->N), j), y);
}

/* rows [r0, r0 + nr) of the columns' outputs */
static kir_node *tile_rows(lctx *c, const tile_op *t, const trow *wr, int ncol, kir_node *r0, int nr, kir_node *j0) {
  kir_kernel *k = c->k;
  kir_block blk = {0};
  kir_node *xb[TILE_MAX] = {0};
  for (int i = 0; i < nr; i++)
    xb[i] = MUL(ADD(r0, I(c, i)), t->xs);
  int nw = ncol * t->nsrc;
  int res[TILE_MAX * TILE_MAX];
  if (t->xq >= 0)
    tile_dots_i8(c, &blk, t, r0, nr, wr, nw, res);
  else if (wr[0].il)
    tile_dots_il(c, &blk, t->X, xb, nr, wr, nw, t->w[0]->K->i, res);
  else
    tile_dots(c, &blk, t->X, xb, nr, wr, nw, t->w[0]->K->i, res);
  for (int i = 0; i < nr; i++)
    for (int j = 0; j < ncol; j++)
      kir_push(&blk, tile_out(c, t, ADD(r0, I(c, i)), ADD(j0, I(c, j)), res + i * nw, j, ncol));
  return kir_block_done(k, &blk);
}

/* every row of the step: tiles of tile_rows rows, then single rows */
static kir_node *tile_all_rows(lctx *c, const tile_op *t, const trow *wr, int ncol, kir_node *j0) {
  kir_kernel *k = c->k;
  kir_block blk = {0};
  int TR = t->xq >= 0 ? c->tu->i8_rows : c->tu->tile_rows;
  kir_node *R = DYN(c, 0);
  int rt = kir_var(k, "rt", KIR_I64), r = kir_var(k, "r", KIR_I64);
  kir_push(&blk, kir_for(k, rt, I(c, 0), DIV(R, I(c, TR)), KIR_LOOP_SERIAL,
                         tile_rows(c, t, wr, ncol, MUL(V(rt), I(c, TR)), TR, j0)));
  kir_push(&blk, kir_for(k, r, MUL(DIV(R, I(c, TR)), I(c, TR)), R, KIR_LOOP_SERIAL, tile_rows(c, t, wr, ncol, V(r), 1, j0)));
  return kir_block_done(k, &blk);
}

/* local dst[dbase .. dbase + K) = row `row` of interleaved 4-bit weight w, dequantized exactly as
 * tile_dots_il does in registers */
static void deq_il(lctx *c, kir_block *blk, const wsrc *w, kir_node *row, int dst, kir_node *dbase) {
  kir_kernel *k = c->k;
  const mlc_qscheme *q = w->q;
  int il = q->il, wpb = il / q->per_word;
  int kb = kir_var(k, "kb", KIR_I64), e = kir_var(k, "e", KIR_I64), wv = kir_var(k, "wq", KIR_VI32);
  kir_block body = {0}, eb = {0};
  kir_push(&body, kir_local(k, wv, kir_vld(k, w->buf, qword_idx(c, w, row, MUL(V(kb), I(c, wpb))))));
  kir_node *k0 = ADD(MUL(V(kb), I(c, il)), MUL(V(e), I(c, KIR_VW)));
  kir_node *qv = kir_bin(k, KIR_BITAND, kir_bin(k, KIR_SHR, V(wv), kir_vbcast(k, MUL(V(e), I(c, q->bits)))),
                         kir_vbcast(k, I(c, (1 << q->bits) - 1)));
  kir_node *sc = kir_vbcast(k, LD(w->sbuf, qscale_idx(c, w, row, k0)));
  kir_push(&eb, kir_vstore(k, dst, ADD(dbase, k0), MUL(kir_un(k, KIR_TOF, SUB(qv, kir_vbcast(k, I(c, q->max_int)))), sc)));
  kir_push(&body, kir_for(k, e, I(c, 0), I(c, il / KIR_VW), KIR_LOOP_VECTOR, kir_block_done(k, &eb)));
  kir_push(blk, kir_for(k, kb, I(c, 0), DIV(w->K, I(c, il)), KIR_LOOP_SERIAL, kir_block_done(k, &body)));
}

/* all rows of the step for columns [j0, j0 + ncol) */
static kir_node *tile_columns(lctx *c, const tile_op *t, kir_node *j0, int ncol) {
  kir_kernel *k = c->k;
  kir_block blk = {0};
  trow wr[TILE_MAX] = {{0}};
  int64_t K = t->w[0]->K->i;
  int nw = 0, deq = -1;
  for (int s = 0; s < t->nsrc; s++)
    for (int j = 0; j < ncol; j++, nw++) {
      const wsrc *w = t->w[s];
      kir_node *row = ADD(t->roff[s], ADD(j0, I(c, j)));
      if (!w->q) {
        wr[nw] = (trow){w->buf, MUL(row, w->K), NULL, NULL};
        continue;
      }
      if (w->q->il || t->xq >= 0) {
        wr[nw] = (trow){-1, NULL, w, row};
        continue;
      }
      if (deq < 0)
        deq = kir_buf_local(k, ncol == 1 ? "deq1" : "deq", MLC_F32, (int64_t)ncol * t->nsrc * K);
      wr[nw] = (trow){deq, I(c, nw * K), NULL, NULL};
      deq_row(c, &blk, w, row, deq, I(c, nw * K));
    }
  if (wr[0].il && t->xq < 0) {
    /* interleaved weights: read in place for a few rows (decode); from `deq_il_rows` rows on,
     * dequantized once into a local f32 copy that every row tile reuses (prefill). Both give
     * the same values in the same order (tile_dots_il, deq_il), so the choice does not change
     * results. */
    kir_block many = {0};
    trow wf[TILE_MAX];
    int dl = kir_buf_local(k, ncol == 1 ? "deqi1" : "deqi", MLC_F32, (int64_t)nw * K);
    for (int j = 0; j < nw; j++) {
      deq_il(c, &many, wr[j].il, wr[j].row, dl, I(c, j * K));
      wf[j] = (trow){dl, I(c, j * K), NULL, NULL};
    }
    kir_push(&many, tile_all_rows(c, t, wf, ncol, j0));
    kir_push(&blk, kir_if(k, kir_bin(k, KIR_LT, DYN(c, 0), I(c, c->tu->deq_il_rows)), tile_all_rows(c, t, wr, ncol, j0),
                          kir_block_done(k, &many)));
    return kir_block_done(k, &blk);
  }
  kir_push(&blk, tile_all_rows(c, t, wr, ncol, j0));
  return kir_block_done(k, &blk);
}

/* The kernel body: the range steps `ncol` columns at a time (grid_step); a full step is one
 * column tile, the range's last partial step goes one column at a time. */
static void tile_kernel(lctx *c, const tile_op *t) {
  kir_kernel *k = c->k;
  int CT = c->tu->tile_cols / t->nsrc;
  k->grid_step = CT;
  kir_node *g = kir_grid(k);
  int jj = kir_var(k, "jj", KIR_I64);
  kir_node *part = kir_for(k, jj, I(c, 0), kir_gcnt(k), KIR_LOOP_SERIAL, tile_columns(c, t, ADD(g, V(jj)), 1));
  kir_finish(k, kir_if(k, kir_bin(k, KIR_EQ, kir_gcnt(k), I(c, CT)), tile_columns(c, t, g, CT), part));
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
  row_block(c, &c->d->size[0], 1);
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
  row_block(c, &c->d->size[fused_add ? 0 : 1], 1); /* a block or a warp per group: lanes over D */
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
  row_block(c, &c->d->size[0], 1);
  int i = kir_var(k, "i", KIR_I64);
  kir_node *idx = ADD(base, V(i));
  kir_finish(k, lfor(c, i, C, kir_store(k, out, idx, ADD(LD(a, idx), LD(b, idx)))));
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
  if (!expert && tile_ok(c, &w)) {
    tile_op t = {.w = {&w}, .roff = {I(c, 0)}, .nsrc = 1, .X = x, .xs = xs, .out = out, .N = N, .bias = bb, .cap = cap,
                 .xq = -1, .xd = -1, .xn = -1};
    if (i8_ok(c, &w))
      i8_setup(c, &t);
    tile_kernel(c, &t);
    return;
  }
  if (!expert && i8_gpu_ok(c, &w, N)) {
    const wsrc *ws[1] = {&w};
    kir_node *roff[1] = {I(c, 0)};
    qgemv_epi e = {.out = out, .bias = bb, .N = N, .cap = cap};
    qgemv_i8(c, ws, roff, 1, x, xs, &e);
    return;
  }
  int QP = expert ? 1 : qlanes_per(c, N), QL = expert ? 0 : qlane_ok(c, &w, N, QP);
  if (QL) {
    const wsrc *ws[1] = {&w};
    kir_node *roff[1] = {I(c, 0)};
    qgemv_epi e = {.out = out, .bias = bb, .N = N, .cap = cap};
    qgemv_rows(c, ws, roff, 1, QP, QL, x, xs, &e);
    return;
  }
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
  if (!expert && tile_ok(c, &wg) && c->tu->tile_cols % 2 == 0) {
    tile_op t = {.w = {&wg, &wu}, .roff = {I(c, 0), upoff}, .nsrc = 2, .X = x, .xs = xs, .out = out, .N = Fd, .bias = -1,
                 .act = d->var[1], .xq = -1, .xd = -1, .xn = -1};
    if (i8_ok(c, &wg))
      i8_setup(c, &t);
    tile_kernel(c, &t);
    return;
  }
  kir_node *j = kir_grid(k);
  if (!expert && i8_gpu_ok(c, &wg, Fd)) {
    const wsrc *ws[2] = {&wg, &wu};
    kir_node *roff[2] = {I(c, 0), upoff};
    qgemv_epi e = {.out = out, .bias = -1, .act = d->var[1], .N = Fd, .gated = true};
    qgemv_i8(c, ws, roff, 2, x, xs, &e);
    return;
  }
  int QP = expert ? 1 : qlanes_per(c, Fd), QL = expert ? 0 : qlane_ok(c, &wg, Fd, QP);
  if (QL) {
    const wsrc *ws[2] = {&wg, &wu};
    kir_node *roff[2] = {I(c, 0), upoff};
    qgemv_epi e = {.out = out, .bias = -1, .act = d->var[1], .N = Fd, .gated = true};
    qgemv_rows(c, ws, roff, 2, QP, QL, x, xs, &e);
    return;
  }
  int r = kir_var(k, "r", KIR_I64);
  kir_node *xrow = expert ? DIV(V(r), SZ(c, 2)) : V(r);
  kir_node *ebase = expert ? MUL(LD(ids, V(r)), rpe) : I(c, 0);
  kir_block body = {0};
  int sg, su, L = qlane_ok(c, &wg, Fd, 1);
  if (L) { /* gate and up share the x loads */
    const wsrc *ws[2] = {&wg, &wu};
    kir_node *rows[2] = {ADD(ebase, j), ADD(ADD(ebase, upoff), j)};
    int res[2];
    kir_node *xb = MUL(xrow, xs);
    wdot_qlanes(c, &body, ws, rows, 2, L, x, &xb, 1, res);
    sg = res[0], su = res[1];
  } else {
    sg = wdot_any(c, &body, &wg, ADD(ebase, j), x, MUL(xrow, xs), K, "g");
    su = wdot_any(c, &body, &wu, ADD(ADD(ebase, upoff), j), x, MUL(xrow, xs), K, "u");
  }
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
static void attention_lanes(lctx *c, int out, int q, int pos, int seq, int pages, int kv, bool shkv) {
  kir_kernel *k = c->k;
  bool cap = c->d->var[0];
  /* W warps per (token, head) where the language has blocks (CUDA: tunables attn_warps): warp w
   * takes chunks w, w + W, ... with its own online softmax, combined at the end across the warps
   * (KIR_LANE_XRED); else one warp (W = 1) */
  int L = k->lanes > 32 ? 32 : k->lanes, W = shkv ? 1 : k->lanes / L;
  int64_t per = c->d->size[2] / L;
  kir_node *lw = k->lanes > 32 ? MOD(kir_lane(k), I(c, 32)) : kir_lane(k);
  int lsum = k->lanes > 32 ? 32 : 0; /* lane sums over a warp (several in a block) or over all lanes */
  int qv = kir_buf_local(k, "qv", MLC_F32, per), acc = kir_buf_local(k, "o", MLC_F32, per);
  kir_node *Hq = SZ(c, 0), *Hkv = SZ(c, 1), *D = SZ(c, 2), *win = SZ(c, 3), *maxp = SZ(c, 4), *S = kir_bin(k, KIR_MAX, SZ(c, 6), I(c, 1));
  kir_node *g = kir_grid(k), *sp = MOD(g, S), *t = DIV(DIV(g, S), Hq), *h = MOD(DIV(g, S), Hq);
  kir_node *kvh = DIV(h, DIV(Hq, Hkv));
  int sk = -1, sv = -1;
  if (shkv) {
    /* an index is (token, kv head, split); warp w the query head kvh * G + w of the G sharing kv
     * head kvh, each chunk's K and V rows loaded once into shared memory for the G warps; g the
     * (token, head, split) the plain kernel's index would be */
    kir_node *G = DIV(Hq, Hkv), *i = kir_grid(k);
    sp = MOD(i, S), kvh = MOD(DIV(i, S), Hkv), t = DIV(DIV(i, S), Hkv);
    h = ADD(MUL(kvh, G), DIV(kir_lane(k), I(c, 32)));
    g = ADD(MUL(ADD(MUL(t, Hq), h), S), sp);
    sk = kir_buf_shared(k, "sk", MLC_F32, 8 * c->d->size[2]);
    sv = kir_buf_shared(k, "sv", MLC_F32, 8 * c->d->size[2]);
  }
  kir_loop kind = per <= 8 ? KIR_LOOP_UNROLL : KIR_LOOP_SERIAL;
#define LDX(j) ADD(MUL(j, I(c, L)), lw) /* the head dim of this lane's j-th element */
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
  /* positions in chunks of AU: the chunk's page lookups, K loads and lane sums are independent
   * (in flight together), then one online-softmax update for the chunk; positions past pend are
   * clamped to pend (valid loads) and get score -inf (weight 0) */
  enum { AU = 8 };
  int cc = kir_var(k, "pcc", KIR_I64), ch = kir_var(k, "pc", KIR_I64);
  kir_block pb = {0};
  /* chunk ch of the positions belongs to split ch % S; a split's k-th chunk to its warp k % W */
  kir_node *kw = W > 1 ? ADD(MUL(V(cc), I(c, W)), DIV(kir_lane(k), I(c, 32))) : V(cc);
  kir_push(&pb, kir_local(k, ch, ADD(sp, MUL(kw, S))));
  int scv[AU], vbv[AU];
  if (shkv) {
    /* the chunk's K and V rows into shared memory: warp w loads positions w, w + G, ... */
    int64_t G = c->d->size[0] / c->d->size[1];
    kir_node *warp = DIV(kir_lane(k), I(c, 32));
    for (int64_t u0 = 0; u0 < AU; u0 += G) {
      kir_block ub = {0};
      kir_node *u = ADD(warp, I(c, u0));
      int pp = kir_var(k, "pp", KIR_I64), pg = kir_var(k, "page", KIR_I64), kb = kir_var(k, "kb", KIR_I64),
          vb = kir_var(k, "vb", KIR_I64), j1 = kir_var(k, "j", KIR_I64);
      kir_push(&ub, kir_local(k, pp, kir_bin(k, KIR_MIN, ADD(ADD(V(pbeg), MUL(V(ch), I(c, AU))), u), V(pend))));
      kir_push(&ub, kir_local(k, pg, page_of(c, pages, seq, t, V(pp), maxp)));
      kir_node *slot = MOD(V(pp), I(c, MLC_KV_PAGE));
      kir_push(&ub, kir_local(k, kb, kv_index(c, V(pg), 0, kvh, slot, Hkv, D)));
      kir_push(&ub, kir_local(k, vb, kv_index(c, V(pg), 1, kvh, slot, Hkv, D)));
      kir_block cb = {0};
      kir_push(&cb, kir_store(k, sk, ADD(MUL(u, D), LDX(V(j1))), LD(kv, ADD(V(kb), LDX(V(j1))))));
      kir_push(&cb, kir_store(k, sv, ADD(MUL(u, D), LDX(V(j1))), LD(kv, ADD(V(vb), LDX(V(j1))))));
      kir_push(&ub, kir_for(k, j1, I(c, 0), I(c, per), kind, kir_block_done(k, &cb)));
      kir_push(&pb, kir_block_done(k, &ub));
    }
    kir_push(&pb, kir_barrier(k));
  }
  for (int u = 0; u < AU; u++) {
    kir_block ub = {0};
    kir_node *pu = ADD(ADD(V(pbeg), MUL(V(ch), I(c, AU))), I(c, u));
    kir_node *kat; /* element LDX(j) of position u's K row is kat + LDX(j); its V row's base: vbv[u] */
    vbv[u] = kir_var(k, "vb", KIR_I64);
    if (shkv) {
      kat = I(c, u * c->d->size[2]);
      kir_push(&ub, kir_local(k, vbv[u], kat));
    } else {
      int pp = kir_var(k, "pp", KIR_I64);
      kir_push(&ub, kir_local(k, pp, kir_bin(k, KIR_MIN, pu, V(pend))));
      int pg = kir_var(k, "page", KIR_I64);
      kir_push(&ub, kir_local(k, pg, page_of(c, pages, seq, t, V(pp), maxp)));
      kir_node *slot = MOD(V(pp), I(c, MLC_KV_PAGE));
      int kb = kir_var(k, "kb", KIR_I64);
      kir_push(&ub, kir_local(k, kb, kv_index(c, V(pg), 0, kvh, slot, Hkv, D)));
      kir_push(&ub, kir_local(k, vbv[u], kv_index(c, V(pg), 1, kvh, slot, Hkv, D)));
      kat = V(kb);
    }
    int kbuf = shkv ? sk : kv;
    int part = kir_var(k, "part", KIR_F32);
    kir_push(&ub, kir_local(k, part, F(c, 0)));
    int j1 = kir_var(k, "j", KIR_I64);
    kir_push(&ub, kir_for(k, j1, I(c, 0), I(c, per), kind,
                          kir_assign(k, part, ADD(V(part), MUL(LD(qv, V(j1)), LD(kbuf, ADD(kat, LDX(V(j1)))))))));
    int s = kir_var(k, "s_qk", KIR_F32);
    kir_push(&ub, kir_local(k, s, kir_lane_red(k, KIR_LANE_SUM, V(part), W > 1 ? 32 : lsum)));
    kir_node *sv_ = cap ? softcap(c, V(s), FV(c, 1)) : V(s);
    scv[u] = kir_var(k, "sc", KIR_F32);
    kir_push(&ub, kir_local(k, scv[u], kir_sel(k, kir_bin(k, KIR_LE, pu, V(pend)), sv_, F(c, -INFINITY))));
    kir_push(&pb, kir_block_done(k, &ub));
  }
  int mn = kir_var(k, "mnew", KIR_F32);
  kir_node *m = V(mx);
  for (int u = 0; u < AU; u++)
    m = kir_bin(k, KIR_MAX, m, V(scv[u]));
  kir_push(&pb, kir_local(k, mn, m));
  int corr = kir_var(k, "corr", KIR_F32);
  kir_push(&pb, kir_local(k, corr, kir_un(k, KIR_EXP, SUB(V(mx), V(mn)))));
  int ev[AU];
  kir_node *esum = NULL;
  for (int u = 0; u < AU; u++) {
    ev[u] = kir_var(k, "e", KIR_F32);
    kir_push(&pb, kir_local(k, ev[u], kir_un(k, KIR_EXP, SUB(V(scv[u]), V(mn)))));
    esum = esum ? ADD(esum, V(ev[u])) : V(ev[u]);
  }
  kir_push(&pb, kir_assign(k, den, ADD(MUL(V(den), V(corr)), esum)));
  int j2 = kir_var(k, "j", KIR_I64);
  kir_node *av = MUL(LD(acc, V(j2)), V(corr));
  for (int u = 0; u < AU; u++)
    av = ADD(av, MUL(V(ev[u]), LD(shkv ? sv : kv, ADD(V(vbv[u]), LDX(V(j2))))));
  kir_push(&pb, kir_for(k, j2, I(c, 0), I(c, per), kind, kir_store(k, acc, V(j2), av)));
  kir_push(&pb, kir_assign(k, mx, V(mn)));
  if (shkv) /* the chunk's rows are read before the next chunk's loads */
    kir_push(&pb, kir_barrier(k));
  kir_node *nch = DIV(ADD(SUB(V(pend), V(pbeg)), I(c, AU)), I(c, AU));
  nch = DIV(ADD(SUB(nch, sp), SUB(S, I(c, 1))), S); /* this split's chunks (sp < S: never negative) */
  if (W > 1) /* this warp's chunks */
    nch = DIV(SUB(ADD(nch, I(c, W - 1)), DIV(kir_lane(k), I(c, 32))), I(c, W));
  kir_push(&blk, kir_for(k, cc, I(c, 0), nch, KIR_LOOP_SERIAL, kir_block_done(k, &pb)));
  int j3 = kir_var(k, "j", KIR_I64);
  bool split = c->d->size[6] > 1; /* a specialised kernel: S is a literal */
  kir_node *oidx = ADD(ADD(MUL(t, MUL(Hq, D)), MUL(h, D)), LDX(V(j3)));
  /* split: partials [max, den, acc[D]] of (t, h, sp) (graph.h MLC_OP_ATTENTION) */
  kir_node *pbase = MUL(g, ADD(D, I(c, 2)));
  if (W > 1) {
    /* combine: each warp's state rescaled to the largest maximum (a warp without chunks has
     * mx = -inf: weight 0; so has a split without any), summed over the warps; warp 0 stores */
    int gm = kir_var(k, "gmx", KIR_F32), fw = kir_var(k, "fw", KIR_F32), gd = kir_var(k, "gden", KIR_F32);
    kir_push(&blk, kir_local(k, gm, kir_lane_red(k, KIR_LANE_XRED, V(mx), 1)));
    kir_push(&blk, kir_local(k, fw, kir_sel(k, kir_bin(k, KIR_EQ, V(mx), F(c, -INFINITY)), F(c, 0),
                                             kir_un(k, KIR_EXP, SUB(V(mx), V(gm))))));
    kir_push(&blk, kir_local(k, gd, kir_lane_red(k, KIR_LANE_XRED, MUL(V(den), V(fw)), 0)));
    int ov = kir_var(k, "ov", KIR_F32);
    kir_block sb = {0};
    kir_push(&sb, kir_local(k, ov, kir_lane_red(k, KIR_LANE_XRED, MUL(LD(acc, V(j3)), V(fw)), 0)));
    kir_node *st = split ? kir_store(k, out, ADD(pbase, ADD(I(c, 2), LDX(V(j3)))), V(ov))
                         : kir_store(k, out, oidx, DIV(V(ov), V(gd)));
    kir_push(&sb, kir_if(k, kir_bin(k, KIR_LT, kir_lane(k), I(c, 32)), st, NULL));
    kir_push(&blk, kir_for(k, j3, I(c, 0), I(c, per), kind, kir_block_done(k, &sb)));
    if (split) {
      kir_node *l0 = kir_bin(k, KIR_EQ, kir_lane(k), I(c, 0));
      kir_push(&blk, kir_if(k, l0, kir_store(k, out, pbase, V(gm)), NULL));
      kir_push(&blk, kir_if(k, l0, kir_store(k, out, ADD(pbase, I(c, 1)), V(gd)), NULL));
    }
  } else if (split) {
    kir_push(&blk, kir_for(k, j3, I(c, 0), I(c, per), kind, kir_store(k, out, ADD(pbase, ADD(I(c, 2), LDX(V(j3)))), LD(acc, V(j3)))));
    kir_node *l0 = kir_bin(k, KIR_EQ, lw, I(c, 0)); /* lane 0 of the head's warp */
    kir_push(&blk, kir_if(k, l0, kir_store(k, out, pbase, V(mx)), NULL));
    kir_push(&blk, kir_if(k, l0, kir_store(k, out, ADD(pbase, I(c, 1)), V(den)), NULL));
  } else {
    kir_push(&blk, kir_for(k, j3, I(c, 0), I(c, per), kind, kir_store(k, out, oidx, DIV(LD(acc, V(j3)), V(den)))));
  }
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
    int aw = c->tu->attn_warps;
    if (aw > 1 && env_pow2("MLC_ATTN_WARPS", 1, 32)) /* experiments: warps per (token, head) */
      aw = env_pow2("MLC_ATTN_WARPS", 1, 32);
    if (aw > 1) /* several warps per (token, head), split over the positions */
      k->lanes = k->block = 32 * aw;
    int64_t G = c->d->size[0] / c->d->size[1];
    if (c->gemm && G >= 2 && G <= 8 && 8 % G == 0 && c->d->size[2] <= 256 && !getenv("MLC_NO_ATTN_ALT")) {
      /* the alternative for long steps (mlc_lower): the query heads of a kv head share its K and V */
      k->lanes = k->block = (int)(32 * G);
      k->per_index = (int)G; /* the op's range is (token, query head, split) */
      attention_lanes(c, out, q, pos, seq, pages, kv, true);
      c->took_gemm = true;
      return;
    }
    attention_lanes(c, out, q, pos, seq, pages, kv, false);
    c->alt_ok = !c->d->generic;
    return;
  }
  int64_t LDIM = local_len(c, 2);
  int qv = kir_buf_local(k, "qv", MLC_F32, LDIM), acc = kir_buf_local(k, "o", MLC_F32, LDIM);
  kir_node *Hq = SZ(c, 0), *Hkv = SZ(c, 1), *D = SZ(c, 2), *win = SZ(c, 3), *maxp = SZ(c, 4), *S = kir_bin(k, KIR_MAX, SZ(c, 6), I(c, 1));
  kir_node *g = kir_grid(k), *sp = MOD(g, S), *t = DIV(DIV(g, S), Hq), *h = MOD(DIV(g, S), Hq);
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
  /* positions in chunks of 8, chunk ch of split ch % S (the rule of attention_lanes), in order */
  int kk = kir_var(k, "pk", KIR_I64), u = kir_var(k, "pu", KIR_I64);
  kir_node *nch = DIV(ADD(SUB(V(pend), V(pbeg)), I(c, 8)), I(c, 8));
  kir_node *ks = DIV(ADD(SUB(nch, sp), SUB(S, I(c, 1))), S);
  kir_node *pbody[2] = {kir_local(k, p, ADD(ADD(V(pbeg), MUL(ADD(sp, MUL(V(kk), S)), I(c, 8))), V(u))),
                        kir_if(k, kir_bin(k, KIR_LE, V(p), V(pend)), kir_block_done(k, &pb), NULL)};
  kir_node *uloop = kir_for(k, u, I(c, 0), I(c, 8), KIR_LOOP_SERIAL, kir_seq(k, pbody, 2));
  kir_push(&blk, kir_for(k, kk, I(c, 0), ks, KIR_LOOP_SERIAL, uloop));
  int d3 = kir_var(k, "i", KIR_I64);
  kir_node *whole = kir_for(k, d3, I(c, 0), D, KIR_LOOP_SERIAL,
                            kir_store(k, out, ADD(ADD(MUL(t, MUL(Hq, D)), MUL(h, D)), V(d3)), DIV(LD(acc, V(d3)), V(den))));
  /* split (S > 1): the partials [max, den, acc[D]] of (t, h, sp) */
  kir_node *pbase = MUL(g, ADD(D, I(c, 2)));
  int d4 = kir_var(k, "i", KIR_I64);
  kir_node *pst[3] = {kir_store(k, out, pbase, V(mx)), kir_store(k, out, ADD(pbase, I(c, 1)), V(den)),
                      kir_for(k, d4, I(c, 0), D, KIR_LOOP_SERIAL, kir_store(k, out, ADD(pbase, ADD(I(c, 2), V(d4))), LD(acc, V(d4))))};
  if (S->op == KIR_CONST)
    kir_push(&blk, S->i > 1 ? kir_seq(k, pst, 3) : whole);
  else
    kir_push(&blk, kir_if(k, kir_bin(k, KIR_LT, I(c, 1), S), kir_seq(k, pst, 3), whole));
  kir_finish(k, kir_block_done(k, &blk));
}

/*
 * Merges the S partial softmax states of each (token, head) (split attention, graph.h):
 * m = max_s mx_s, out = sum_s e^(mx_s - m) acc_s / sum_s e^(mx_s - m) den_s; a split without
 * positions has mx = -inf (weight 0).  grid: n * Hq, lanes over D where the device has them
 */
static void rule_attn_combine(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "out", MLC_F32, true);   /* [n, Hq * D] */
  int part = kir_buf_arg(k, "part", MLC_F32, false); /* [n, Hq * S * (D + 2)] */
  kir_node *D = SZ(c, 1), *S = SZ(c, 2), *g = kir_grid(k);
  row_lanes(c, &c->d->size[1], 1);
  kir_node *base = MUL(MUL(g, S), ADD(D, I(c, 2))); /* split s at base + s * (D + 2) */
#define PS(s) ADD(base, MUL(s, ADD(D, I(c, 2))))
  kir_block blk = {0};
  int m = kir_var(k, "m", KIR_F32), den = kir_var(k, "den", KIR_F32), s1 = kir_var(k, "s", KIR_I64),
      s2 = kir_var(k, "s", KIR_I64), s3 = kir_var(k, "s", KIR_I64), i = kir_var(k, "i", KIR_I64),
      o = kir_var(k, "o", KIR_F32);
  kir_push(&blk, kir_local(k, m, F(c, -INFINITY)));
  kir_push(&blk, kir_for(k, s1, I(c, 0), S, KIR_LOOP_SERIAL,
                         kir_assign(k, m, kir_sel(k, kir_bin(k, KIR_LT, V(m), LD(part, PS(V(s1)))), LD(part, PS(V(s1))), V(m)))));
  kir_node *w2 = kir_un(k, KIR_EXP, SUB(LD(part, PS(V(s2))), V(m)));
  kir_push(&blk, kir_local(k, den, F(c, 0)));
  kir_push(&blk, kir_for(k, s2, I(c, 0), S, KIR_LOOP_SERIAL,
                         kir_assign(k, den, ADD(V(den), MUL(w2, LD(part, ADD(PS(V(s2)), I(c, 1))))))));
  kir_node *w3 = kir_un(k, KIR_EXP, SUB(LD(part, PS(V(s3))), V(m)));
  kir_node *items[3] = {kir_local(k, o, F(c, 0)),
                        kir_for(k, s3, I(c, 0), S, KIR_LOOP_SERIAL,
                                kir_assign(k, o, ADD(V(o), MUL(w3, LD(part, ADD(PS(V(s3)), ADD(I(c, 2), V(i)))))))),
                        kir_store(k, out, ADD(MUL(g, D), V(i)), DIV(V(o), V(den)))};
  kir_push(&blk, lfor(c, i, D, kir_seq(k, items, 3)));
#undef PS
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
  row_block(c, &c->d->size[0], 1);
  int j = kir_var(k, "j", KIR_I64);
  kir_node *src = ADD(MUL(LD(rows, i), SZ(c, 1)), V(j));
  kir_finish(k, lfor(c, j, C, kir_store(k, out, ADD(MUL(i, C), V(j)), LD(x, src))));
}

/*
 * Token selection on the device (graph.h MLC_OP_SAMPLE; docs/engine.md "Sampling on the device").
 * One parallel index per logits row; on GPUs the whole row is one block of `row_block` lanes
 * (CUDA 1024, GLSL 256), lane l taking elements l, l + L, ... (coalesced), with block-wide
 * reductions (KIR_LANE_SUM, KIR_LANE_MAX); C and OpenCL run the same statements with one lane.
 * Every reduction's result is the same on every lane, so the control flow below is uniform.
 *
 * The rule, per row with x its logits, m = max x, p_i = exp((x_i - m) / T):
 *  - greedy (T <= 0, or m not finite): the first index of the maximum (mlc_argmax's rule).
 *  - else the order "x descending, index ascending" and its prefix of n tokens, n the smallest of
 *    (min_p) the count of p_i >= min_p, (top_k) k, (top_p) the shortest prefix whose mass reaches
 *    top_p * sum(p); tokens with p_i = 0 are never kept (the host never draws them either). The
 *    prefix ends at value t* with ties at t* kept in index order. t* is found by a bisection over
 *    the values (at most SAMPLE_ITERS passes; each narrows the bracket [lo, hi] of data values to
 *    the data values on one side of its midpoint), the ties by one count pass.
 *  - the draw: r = u * (mass of the kept tokens); the token is the first kept index, in index order,
 *    whose running mass exceeds r (lanes own contiguous chunks: the chunk by a bisection over lane
 *    prefix sums, then a scan of it). So each kept token is drawn with probability p_i / mass, the
 *    host sampler's distribution; the host walks the tokens in sorted order, so the same u may
 *    pick another token. Float rounding of the sums is the only difference from the exact rule.
 */
enum { SAMPLE_ITERS = 64 };
typedef struct samp {
  lctx *c;
  int L;      /* lanes per row (a power of two) */
  kir_node *V; /* tokens in the row */
  kir_block *b;
} samp;
/* a local initialised to init, declared in the current block */
static int samp_loc(samp *s, const char *name, kir_node *init) {
  int v = kir_var(s->c->k, name, init->type);
  kir_push(s->b, kir_local(s->c->k, v, init));
  return v;
}
/* body for every element i of the row, lane l taking i = l, l + L, ... */
static kir_node *samp_each(samp *s, int i, kir_node *body) {
  lctx *c = s->c;
  if (s->L <= 1)
    return kir_for(c->k, i, I(c, 0), s->V, KIR_LOOP_SERIAL, body);
  int t = kir_var(c->k, "st", KIR_I64);
  kir_node *items[2] = {kir_local(c->k, i, ADD(MUL(V(t), I(c, s->L)), kir_lane(c->k))),
                        kir_if(c->k, kir_bin(c->k, KIR_LT, V(i), s->V), body, NULL)};
  return kir_for(c->k, t, I(c, 0), DIV(ADD(s->V, I(c, s->L - 1)), I(c, s->L)), KIR_LOOP_SERIAL, kir_seq(c->k, items, 2));
}
static kir_node *samp_sum(samp *s, kir_node *v) { return s->L > 1 ? kir_lane_red(s->c->k, KIR_LANE_SUM, v, 0) : v; }
static kir_node *samp_max(samp *s, kir_node *v) { return s->L > 1 ? kir_lane_red(s->c->k, KIR_LANE_MAX, v, 0) : v; }
static kir_node *samp_min(samp *s, kir_node *v) {
  return s->L > 1 ? kir_un(s->c->k, KIR_NEG, samp_max(s, kir_un(s->c->k, KIR_NEG, v))) : v;
}
/* var += v */
static kir_node *samp_acc(samp *s, int var, kir_node *v) {
  lctx *c = s->c;
  return kir_assign(c->k, var, ADD(V(var), v));
}
/*
 * The first element e, in index order, where the running sum of the weights w (an expression of
 * the variable iv, >= 0) exceeds r = rmul * (sum of all weights) + radd. Lane l owns the chunk
 * [l * CS, (l + 1) * CS), CS = ceil(V / L): its chunk sum, then the chunk by a bisection over the
 * lanes (the sums over lanes < mid: the same tree of additions with zeros, so monotone in mid),
 * then every lane scans that chunk in order. Returns a variable holding e; where rounding leaves
 * the scan short of r, the chunk's last element of positive weight, else dflt.
 */
static int samp_find(samp *s, int iv, kir_node *w, kir_node *rmul, kir_node *radd, kir_node *dflt) {
  lctx *c = s->c;
  kir_kernel *k = c->k;
  kir_node *CS = DIV(ADD(s->V, I(c, s->L - 1)), I(c, s->L)), *lane = s->L > 1 ? kir_lane(k) : I(c, 0);
  int wl = samp_loc(s, "wl", F(c, 0));
  kir_node *c0 = MUL(lane, CS);
  kir_push(s->b, kir_for(k, iv, c0, kir_bin(k, KIR_MIN, ADD(c0, CS), s->V), KIR_LOOP_SERIAL, samp_acc(s, wl, w)));
  int W = samp_loc(s, "wtot", samp_sum(s, V(wl)));
  int r = samp_loc(s, "r", ADD(MUL(rmul, V(W)), radd));
  int cl = samp_loc(s, "cl", I(c, 0)), base = samp_loc(s, "base", F(c, 0));
  for (int step = s->L / 2; step >= 1; step /= 2) {
    int ps = samp_loc(s, "ps", samp_sum(s, kir_sel(k, kir_bin(k, KIR_LT, lane, ADD(V(cl), I(c, step))), V(wl), F(c, 0))));
    kir_node *mv[2] = {kir_assign(k, cl, ADD(V(cl), I(c, step))), kir_assign(k, base, V(ps))};
    kir_push(s->b, kir_if(k, kir_bin(k, KIR_LE, V(ps), V(r)), kir_seq(k, mv, 2), NULL));
  }
  int acc = samp_loc(s, "acc", V(base)), res = samp_loc(s, "res", I(c, -1)), last = samp_loc(s, "last", I(c, -1));
  int wv = kir_var(k, "wv", KIR_F32);
  kir_block sb = {0};
  kir_push(&sb, kir_local(k, wv, w));
  kir_push(&sb, samp_acc(s, acc, V(wv)));
  kir_push(&sb, kir_if(k, kir_bin(k, KIR_AND, kir_bin(k, KIR_LT, V(res), I(c, 0)), kir_bin(k, KIR_LT, V(r), V(acc))),
                       kir_assign(k, res, V(iv)), NULL));
  kir_push(&sb, kir_if(k, kir_bin(k, KIR_LT, F(c, 0), V(wv)), kir_assign(k, last, V(iv)), NULL));
  kir_node *s0 = MUL(V(cl), CS);
  kir_push(s->b, kir_for(k, iv, s0, kir_bin(k, KIR_MIN, ADD(s0, CS), s->V), KIR_LOOP_SERIAL, kir_block_done(k, &sb)));
  kir_node *lt0 = kir_bin(k, KIR_LE, I(c, 0), V(last));
  return samp_loc(s, "found", kir_sel(k, kir_bin(k, KIR_LE, I(c, 0), V(res)), V(res), kir_sel(k, lt0, V(last), dflt)));
}

/* tok[g] = the token drawn from logits row g with the parameters prm[g, :].  grid: m */
static void rule_sample(lctx *c) {
  kir_kernel *k = c->k;
  int out = kir_buf_arg(k, "tok", MLC_I32, true);     /* [m] */
  int x = kir_buf_arg(k, "logits", MLC_F32, false);  /* [m, xs] */
  int prm = kir_buf_arg(k, "prm", MLC_F32, false);   /* [m, MLC_SAMPLE_SLOTS] */
  int L = c->tu->row_block > 32 ? c->tu->row_block : 1;
  while (L > 32 && !c->d->generic && c->d->size[0] <= L / 2) /* a short row: fewer idle lanes */
    L /= 2;
  MLC_ASSERT(!(L & (L - 1)));
  if (L > 1)
    k->lanes = k->block = L;
  kir_block top = {0}, sb = {0}, tb = {0};
  samp S = {.c = c, .L = L, .V = SZ(c, 0), .b = &top}, *s = &S;
  kir_node *g = kir_grid(k), *xb = MUL(g, SZ(c, 1)), *pb = MUL(g, I(c, MLC_SAMPLE_SLOTS));
#define SLT(a, b) kir_bin(k, KIR_LT, a, b)
#define SLE(a, b) kir_bin(k, KIR_LE, a, b)
#define SAND(a, b) kir_bin(k, KIR_AND, a, b)
#define SOR(a, b) kir_bin(k, KIR_OR, a, b)
#define SIF(cnd, t) kir_if(k, cnd, t, NULL)
#define SEQ2(a, b) kir_seq(k, (kir_node *[]){a, b}, 2)
  int T = samp_loc(s, "temp", LD(prm, ADD(pb, I(c, MLC_SAMPLE_TEMP))));
  /* pass 1: the maximum and its first index (each lane its elements in order, then the lanes) */
  int mx = samp_loc(s, "mx", F(c, -INFINITY)), li = samp_loc(s, "li", s->V);
  int i1 = kir_var(k, "i", KIR_I64);
  kir_push(&top, samp_each(s, i1, SIF(SLT(V(mx), LD(x, ADD(xb, V(i1)))), SEQ2(kir_assign(k, mx, LD(x, ADD(xb, V(i1)))),
                                                                            kir_assign(k, li, V(i1))))));
  int m = samp_loc(s, "m", samp_max(s, V(mx)));
  int fi = samp_loc(s, "fi", kir_un(k, KIR_TOF, kir_sel(k, kir_bin(k, KIR_EQ, V(mx), V(m)), V(li), s->V)));
  int am = samp_loc(s, "am", kir_un(k, KIR_TOI, samp_min(s, V(fi))));
  kir_push(&top, kir_assign(k, am, kir_sel(k, SLT(V(am), s->V), V(am), I(c, 0)))); /* all -inf: 0, as mlc_argmax */
  kir_node *greedy = lane0(c, kir_store(k, out, g, V(am)));

  /* sampling (T > 0, m finite) */
  s->b = &sb;
  int inv = samp_loc(s, "inv", DIV(F(c, 1.0), V(T)));
#define PX(xv) kir_un(k, KIR_EXP, MUL(SUB(xv, V(m)), V(inv)))
  int Kk = samp_loc(s, "topk", LD(prm, ADD(pb, I(c, MLC_SAMPLE_TOP_K))));
  int P = samp_loc(s, "topp", LD(prm, ADD(pb, I(c, MLC_SAMPLE_TOP_P))));
  int M = samp_loc(s, "minp", LD(prm, ADD(pb, I(c, MLC_SAMPLE_MIN_P))));
  /* pass 2: the mass, the live tokens (p > 0) and their smallest value, the count of p >= min_p */
  int sm = samp_loc(s, "sm", F(c, 0)), nlo = samp_loc(s, "nlo", F(c, -INFINITY)), nl = samp_loc(s, "nl", F(c, 0)),
      cm = samp_loc(s, "cm", F(c, 0));
  {
    int i = kir_var(k, "i", KIR_I64), xv = kir_var(k, "xv", KIR_F32), pv = kir_var(k, "pv", KIR_F32);
    kir_block eb = {0}, lb = {0};
    kir_push(&eb, kir_local(k, xv, LD(x, ADD(xb, V(i)))));
    kir_push(&eb, kir_local(k, pv, PX(V(xv))));
    kir_push(&lb, samp_acc(s, sm, V(pv)));
    kir_push(&lb, kir_assign(k, nlo, kir_bin(k, KIR_MAX, V(nlo), kir_un(k, KIR_NEG, V(xv)))));
    kir_push(&lb, samp_acc(s, nl, F(c, 1.0)));
    kir_push(&lb, samp_acc(s, cm, kir_sel(k, SLE(V(M), V(pv)), F(c, 1.0), F(c, 0))));
    kir_push(&eb, SIF(SLT(F(c, 0), V(pv)), kir_block_done(k, &lb)));
    kir_push(&sb, samp_each(s, i, kir_block_done(k, &eb)));
  }
  int SM = samp_loc(s, "msum", samp_sum(s, V(sm))), lo = samp_loc(s, "lo", kir_un(k, KIR_NEG, samp_max(s, V(nlo))));
  int NL = samp_loc(s, "nlive", samp_sum(s, V(nl))), CM = samp_loc(s, "cmin", samp_sum(s, V(cm)));
  /* the filters as counts and a mass (an inactive one: all live tokens, or a mass never reached) */
  int nK = samp_loc(s, "nk", kir_sel(k, SAND(SLE(F(c, 1.0), V(Kk)), SLT(V(Kk), V(NL))), V(Kk), V(NL)));
  int nM = samp_loc(s, "nm", kir_sel(k, SAND(SLT(F(c, 0), V(M)), SLE(V(M), F(c, 1.0))), V(CM), V(NL)));
  int PS = samp_loc(s, "ps", kir_sel(k, SAND(SLT(F(c, 0), V(P)), SLT(V(P), F(c, 1.0))), MUL(V(P), V(SM)), F(c, INFINITY)));
  kir_node *active = SOR(SOR(SLT(V(nK), V(NL)), SLT(V(nM), V(NL))), SLT(V(PS), F(c, INFINITY)));
  int hi = samp_loc(s, "hi", kir_sel(k, active, V(m), V(lo)));
  /* bisection: [lo, hi] data values, lo's prefix {x >= lo} reaching a filter (Q), t* in [lo, hi] */
  {
    int it = kir_var(k, "it", KIR_I64);
    samp B = *s;
    kir_block bb = {0};
    B.b = &bb;
    int mid = samp_loc(&B, "mid", ADD(MUL(V(lo), F(c, 0.5)), MUL(V(hi), F(c, 0.5))));
    kir_push(&bb, kir_assign(k, mid, kir_sel(k, SLT(V(lo), V(mid)), V(mid), V(hi))));
    int cn = samp_loc(&B, "cn", F(c, 0)), ms = samp_loc(&B, "ms", F(c, 0)), a = samp_loc(&B, "a", F(c, INFINITY)),
        bv = samp_loc(&B, "b", F(c, -INFINITY));
    int i = kir_var(k, "i", KIR_I64), xv = kir_var(k, "xv", KIR_F32);
    kir_block eb = {0}, ge = {0};
    kir_push(&eb, kir_local(k, xv, LD(x, ADD(xb, V(i)))));
    kir_push(&ge, samp_acc(s, cn, F(c, 1.0)));
    kir_push(&ge, samp_acc(s, ms, PX(V(xv))));
    kir_push(&ge, SIF(SLE(V(xv), V(hi)), kir_assign(k, a, kir_bin(k, KIR_MIN, V(a), V(xv)))));
    kir_push(&eb, kir_if(k, SLE(V(mid), V(xv)), kir_block_done(k, &ge),
                         SIF(SLE(V(lo), V(xv)), kir_assign(k, bv, kir_bin(k, KIR_MAX, V(bv), V(xv))))));
    kir_push(&bb, samp_each(&B, i, kir_block_done(k, &eb)));
    int CN = samp_loc(&B, "cnt", samp_sum(&B, V(cn))), MS = samp_loc(&B, "mass", samp_sum(&B, V(ms)));
    int A = samp_loc(&B, "amin", samp_min(&B, V(a))), BV = samp_loc(&B, "bmax", samp_max(&B, V(bv)));
    kir_node *q = SOR(SOR(SLE(V(nK), V(CN)), SLE(V(PS), V(MS))), SLE(V(nM), V(CN)));
    kir_push(&bb, kir_if(k, q, kir_assign(k, lo, V(A)), kir_assign(k, hi, V(BV))));
    kir_push(&sb, kir_for(k, it, I(c, 0), I(c, SAMPLE_ITERS), KIR_LOOP_SERIAL, SIF(SLT(V(lo), V(hi)), kir_block_done(k, &bb))));
  }
  /* t* = lo; the tokens above it, at it, and the mass above it */
  int cg = samp_loc(s, "cg", F(c, 0)), ce = samp_loc(s, "ce", F(c, 0)), mg = samp_loc(s, "mg", F(c, 0));
  {
    int i = kir_var(k, "i", KIR_I64), xv = kir_var(k, "xv", KIR_F32);
    kir_block eb = {0}, gt = {0}, ge = {0};
    kir_push(&eb, kir_local(k, xv, LD(x, ADD(xb, V(i)))));
    kir_push(&gt, samp_acc(s, cg, F(c, 1.0)));
    kir_push(&gt, samp_acc(s, mg, PX(V(xv))));
    kir_push(&ge, samp_acc(s, ce, F(c, 1.0)));
    kir_push(&ge, SIF(SLT(V(lo), V(xv)), kir_block_done(k, &gt)));
    kir_push(&eb, SIF(SLE(V(lo), V(xv)), kir_block_done(k, &ge)));
    kir_push(&sb, samp_each(s, i, kir_block_done(k, &eb)));
  }
  int CG = samp_loc(s, "cgt", samp_sum(s, V(cg))), CE = samp_loc(s, "cge", samp_sum(s, V(ce)));
  int MG = samp_loc(s, "mgt", samp_sum(s, V(mg)));
  /* ties at t* to keep: all, or the filters' remainder (top_p: ceil((PS - mass above) / p(t*))) */
  int ties = samp_loc(s, "ties", SUB(V(CE), V(CG)));
  int need = samp_loc(s, "need", V(ties));
  kir_push(&sb, kir_assign(k, need, kir_bin(k, KIR_MIN, V(need), SUB(V(nK), V(CG)))));
  kir_push(&sb, kir_assign(k, need, kir_bin(k, KIR_MIN, V(need), SUB(V(nM), V(CG)))));
  int y = samp_loc(s, "y", kir_bin(k, KIR_MIN, kir_bin(k, KIR_MAX, DIV(SUB(V(PS), V(MG)), PX(V(lo))), F(c, 0)), V(ties)));
  int yc = samp_loc(s, "yc", kir_un(k, KIR_TOF, kir_un(k, KIR_TOI, V(y))));
  kir_push(&sb, kir_assign(k, need, kir_bin(k, KIR_MIN, V(need), kir_sel(k, SLT(V(yc), V(y)), ADD(V(yc), F(c, 1.0)), V(yc)))));
  kir_push(&sb, kir_assign(k, need, kir_bin(k, KIR_MAX, V(need), F(c, 1.0))));
  /* the last tie kept, in index order: the need-th (counts are exact in f32 below 2^24 tokens) */
  int jcut = samp_loc(s, "jcut", s->V);
  {
    int i = kir_var(k, "i", KIR_I64);
    samp Tt = *s;
    Tt.b = &tb;
    kir_node *w = kir_sel(k, kir_bin(k, KIR_EQ, LD(x, ADD(xb, V(i))), V(lo)), F(c, 1.0), F(c, 0));
    int j = samp_find(&Tt, i, w, F(c, 0), SUB(V(need), F(c, 1.0)), s->V);
    kir_push(&tb, kir_assign(k, jcut, V(j)));
    kir_push(&sb, SIF(SLT(V(need), V(ties)), kir_block_done(k, &tb)));
  }
  /* the draw */
  {
    int i = kir_var(k, "i", KIR_I64);
    kir_block db = {0};
    samp D = *s;
    D.b = &db;
    kir_node *xv = LD(x, ADD(xb, V(i)));
    kir_node *kept = SOR(SLT(V(lo), xv), SAND(kir_bin(k, KIR_EQ, xv, V(lo)), SLE(V(i), V(jcut))));
    kir_node *u = LD(prm, ADD(pb, I(c, MLC_SAMPLE_U)));
    int tok = samp_find(&D, i, kir_sel(k, kept, PX(xv), F(c, 0)), u, F(c, 0), V(am));
    kir_push(&db, lane0(c, kir_store(k, out, g, V(tok))));
    kir_push(&sb, kir_block_done(k, &db));
  }
  kir_node *sample = SAND(SAND(SLT(F(c, 0), V(T)), SLT(F(c, -INFINITY), V(m))), SLT(V(m), F(c, INFINITY)));
  kir_push(&top, kir_if(k, sample, kir_block_done(k, &sb), greedy));
  kir_finish(k, kir_block_done(k, &top));
#undef PX
#undef SLT
#undef SLE
#undef SAND
#undef SOR
#undef SIF
#undef SEQ2
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
  case MLC_OP_ATTN_COMBINE: rule_attn_combine(&c); break;
  case MLC_OP_SAMPLE: rule_sample(&c); break;
  default: mlc_abort(__FILE__, __LINE__, "no schedule rule for op %d", d->kind);
  }
  if (c.alt_ok && tu->mma_rows > 0) {
    /* the alternative for long steps, built by the same rule with the same arguments: the 8-bit
     * GEMV's tensor-core GEMM (qgemm_i8, with its x quantization qgemm_pre), attention's kernel
     * whose query heads share their K and V rows through shared memory */
    char an[sizeof k->name + 4];
    snprintf(an, sizeof an, "%s_mm", name);
    kir_kernel *a = kir_new(an);
    a->block = tu->block;
    lctx ca = {.k = a, .d = d, .tu = tu, .gemm = 1};
    if (d->kind == MLC_OP_MATMUL)
      rule_matmul(&ca);
    else if (d->kind == MLC_OP_GATED_MATMUL)
      rule_gated(&ca);
    else
      rule_attention(&ca);
    if (ca.took_gemm && d->kind == MLC_OP_ATTENTION) {
      k->alt = a;
      k->alt_rows = tu->mma_rows;
    } else if (ca.took_gemm) {
      snprintf(an, sizeof an, "%s_mq", name);
      a->pre = kir_new(an);
      a->pre->block = tu->block;
      lctx cp = {.k = a->pre, .d = d, .tu = tu, .gemm = 2};
      if (d->kind == MLC_OP_MATMUL)
        rule_matmul(&cp);
      else
        rule_gated(&cp);
      MLC_ASSERT(cp.took_gemm);
      k->alt = a;
      k->alt_rows = tu->mma_rows;
      const char *mr = getenv("MLC_MM_ROWS"); /* experiments: the shortest step that takes the GEMM */
      if (mr && atoi(mr) >= 1)
        k->alt_rows = atoi(mr);
    } else {
      kir_free(a);
    }
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
