/* test_kernels.c: every generated CPU kernel against a plain reference implementation.
 *
 * For every op kind (and the structural variants the models use), a case builds the kernel
 * descriptor, buffers, dynamic params and grid exactly as the runtime's mlc_launch_fill does,
 * fills the inputs with random values (fixed seed, odd sizes so vector tails run) and computes
 * the expected outputs with an obviously-correct reference in double precision. Each case then
 * runs twice on a 2-thread pool: the specialised kernel (all of them rendered into one C source
 * and compiled once with the run-time compiler) and the generic kernel built into libmlc.
 *
 * Checks: max |got - ref| / max |ref| over the elements the kernel must write is within the
 * case's tolerance (1e-5, 1e-4 with transcendental functions); every other element of every
 * output (plus a guard region past its end) is bit-for-bit unchanged (outputs start filled with
 * a sentinel, the KV cache with random old contents); inputs are not written.
 *
 * Usage: test_kernels [REPO_ROOT]  (the root is unused). Ends with "N passed, M failed".
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "format/quant.h"
#include "kernel/lower.h"

#define GUARD 7              /* elements past the end of every output that must stay untouched */
#define SENT_F (-7777.25f)   /* sentinel of float outputs */
#define SENT_I 0x5a5a5a5a    /* sentinel of integer outputs */
#define TOL 1e-5
#define TOL_T 1e-4           /* transcendental functions involved */

static int passed, failed;

/* ---- random numbers (splitmix64, fixed seed) ---- */
static uint64_t rng = 0x9e3779b97f4a7c15ull ^ 20240607u;
static uint64_t rnd64(void) {
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double urand(void) { return (double)(rnd64() >> 11) / 9007199254740992.0 * 2.0 - 1.0; } /* [-1, 1) */
static int irand(int n) { return (int)(rnd64() % (uint64_t)n); }

/* ---- allocations, all freed at exit ---- */
static void **allocs;
static int nallocs, capallocs;
static void *talloc(size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (!p || (nallocs == capallocs && !(allocs = realloc(allocs, sizeof(void *) * (size_t)(capallocs = capallocs * 2 + 64))))) {
    fprintf(stderr, "test_kernels: out of memory\n");
    exit(2);
  }
  allocs[nallocs++] = p;
  return p;
}

/* ---- cases ---- */
typedef struct tbuf {
  void *p;            /* what the kernel gets */
  size_t bytes;       /* size of the region at p (checked unchanged for inputs) */
  mlc_dtype dt;
  bool out;
  /* outputs */
  size_t n;           /* elements including the guard */
  void *init;         /* contents before each run */
  double *ref;        /* expected value of each touched element */
  double *ref_i8;     /* or, for the CPU's specialised kernels ("spec"): with 8-bit activations (i8_ref) */
  unsigned char *touch;
  double tol;
} tbuf;

typedef struct tcase {
  char name[160];
  mlc_kdesc d;
  tbuf b[KIR_MAX_BUFS];
  int nbuf;
  int64_t dyn[4];
  int64_t grid;
  char spec_name[96], gen_name[96];
  char bname[KIR_MAX_BUFS][24];
  bool bad; /* the descriptor does not match the buffers: not run */
} tcase;

#define MAXCASES 200
static tcase cases[MAXCASES];
static int ncases;

static tcase *new_case(mlc_opkind kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static tcase *new_case(mlc_opkind kind, const char *fmt, ...) {
  if (ncases == MAXCASES) {
    fprintf(stderr, "test_kernels: too many cases\n");
    exit(2);
  }
  tcase *c = &cases[ncases++];
  memset(c, 0, sizeof *c); /* also zeroes the descriptor's padding: its bytes are hashed into the name */
  c->d.kind = kind;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->name, sizeof c->name, fmt, ap);
  va_end(ap);
  return c;
}

static int add_buf(tcase *c, void *p, size_t bytes, mlc_dtype dt) {
  tbuf *b = &c->b[c->nbuf];
  b->p = p;
  b->bytes = bytes;
  b->dt = dt;
  return c->nbuf++;
}

static float *rand_f32(size_t n, double scale) {
  float *p = talloc(sizeof(float) * n);
  for (size_t i = 0; i < n; i++)
    p[i] = (float)(urand() * scale);
  return p;
}

static float *in_f32(tcase *c, size_t n, double scale) {
  float *p = rand_f32(n, scale);
  add_buf(c, p, sizeof(float) * n, MLC_F32);
  return p;
}

/* a view: n elements at p inside an array made by rand_f32 */
static const float *in_view(tcase *c, const float *p, size_t n) {
  add_buf(c, (void *)p, sizeof(float) * n, MLC_F32);
  return p;
}

static int32_t *in_i32(tcase *c, size_t n) {
  int32_t *p = talloc(sizeof(int32_t) * n);
  add_buf(c, p, sizeof(int32_t) * n, MLC_I32);
  return p;
}

/* Weights stored as dt (f32, f16, bf16); returns their decoded values. */
static const float *make_w(mlc_dtype dt, size_t n, double scale, void **stored) {
  float *dec = talloc(sizeof(float) * n);
  if (dt == MLC_F32) {
    for (size_t i = 0; i < n; i++)
      dec[i] = (float)(urand() * scale);
    *stored = dec;
  } else {
    uint16_t *h = talloc(sizeof(uint16_t) * n);
    for (size_t i = 0; i < n; i++) {
      float f = (float)(urand() * scale);
      h[i] = dt == MLC_F16 ? mlc_f32_to_f16(f) : mlc_f32_to_bf16(f);
      dec[i] = dt == MLC_F16 ? mlc_f16_to_f32(h[i]) : mlc_bf16_to_f32(h[i]);
    }
    *stored = h;
  }
  return dec;
}
static const float *in_w(tcase *c, mlc_dtype dt, size_t n, double scale) {
  void *stored;
  const float *dec = make_w(dt, n, scale, &stored);
  add_buf(c, stored, (dt == MLC_F32 ? 4 : 2) * n, dt);
  return dec;
}

/* An output of n elements (plus the guard), filled with the sentinel, or with random old contents
 * (the KV cache) when old_scale > 0. Returns its buffer index. */
static int out_buf(tcase *c, mlc_dtype dt, size_t n, double tol, double old_scale) {
  size_t tot = n + GUARD;
  void *p = talloc(4 * tot);
  int bi = add_buf(c, p, 4 * tot, dt);
  tbuf *b = &c->b[bi];
  b->out = true;
  b->n = tot;
  b->tol = tol;
  b->init = talloc(4 * tot);
  b->ref = talloc(sizeof(double) * tot);
  b->touch = talloc(tot);
  for (size_t i = 0; i < tot; i++) {
    if (dt == MLC_I32)
      ((int32_t *)b->init)[i] = SENT_I;
    else
      ((float *)b->init)[i] = old_scale > 0 ? (float)(urand() * old_scale) : SENT_F;
  }
  return bi;
}

static void expect(tcase *c, int bi, size_t i, double v) {
  tbuf *b = &c->b[bi];
  if (i >= b->n - GUARD) {
    fprintf(stderr, "test_kernels: %s: reference writes past buffer %d\n", c->name, bi);
    exit(2);
  }
  if (b->touch[i]) {
    fprintf(stderr, "test_kernels: %s: reference writes element %zu of buffer %d twice\n", c->name, i, bi);
    exit(2);
  }
  b->ref[i] = v;
  b->touch[i] = 1;
}

static void set_sizes(tcase *c, int n, ...) {
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++)
    c->d.size[i] = va_arg(ap, int64_t);
  va_end(ap);
}
#define SIZES(c, ...) set_sizes(c, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), __VA_ARGS__)
/* sizes are int64_t varargs: pass every value through this */
#define Z(x) ((int64_t)(x))

/* ---- reference math ---- */
static double act_ref(int kind, double x) {
  switch (kind) {
  case MLC_KACT_SILU: return x / (1.0 + exp(-x));
  case MLC_KACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  default: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  }
}
static const char *act_name(int kind) {
  return kind == MLC_KACT_SILU ? "silu" : kind == MLC_KACT_GELU_TANH ? "gelu_tanh" : "gelu";
}
static const char *dt_name(mlc_dtype dt) { return mlc_dtype_name(dt); }
static double dotd(const float *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double)a[i] * (double)b[i];
  return s;
}

/* ---- the paged KV cache: [pages, 2, Hkv, 16, D] per layer ---- */
#define MAXP 4
#define NPAGES 9
#define NSEQ 2
static const int32_t PAGE_TABLE[NSEQ][MAXP] = {{6, 1, 8, 3}, {2, 7, 0, 5}};
/* (seq, pos) of the tokens of a step: several positions in several pages, two sequences */
static const int TOKS5[5][2] = {{0, 50}, {0, 17}, {1, 0}, {1, 33}, {0, 5}};
static const int TOKS1[1][2] = {{1, 47}};

typedef struct steptoks {
  int n;
  int32_t *pos, *seq, *pages;
} steptoks;
/* pos, seq, pages buffers (in that order) */
static steptoks in_tokens(tcase *c, int n) {
  steptoks s = {.n = n};
  s.pos = in_i32(c, (size_t)n);
  s.seq = in_i32(c, (size_t)n);
  s.pages = in_i32(c, NSEQ * MAXP);
  for (int t = 0; t < n; t++) { /* steps of more than 5 rows (long-step kernels): more tokens of both sequences */
    s.seq[t] = n == 1 ? TOKS1[t][0] : t < 5 ? TOKS5[t][0] : t % 2;
    s.pos[t] = n == 1 ? TOKS1[t][1] : t < 5 ? TOKS5[t][1] : (t * 13 + 7) % 60;
  }
  memcpy(s.pages, PAGE_TABLE, sizeof PAGE_TABLE);
  return s;
}
static size_t kv_elems(int64_t Hkv, int64_t D) { return (size_t)NPAGES * 2 * Hkv * MLC_KV_PAGE * D; }
static size_t kv_at(const steptoks *s, int seq, int p, int kv, int64_t h, int64_t i, int64_t Hkv, int64_t D) {
  int page = s->pages[seq * MAXP + p / MLC_KV_PAGE];
  return ((((size_t)page * 2 + kv) * Hkv + h) * MLC_KV_PAGE + p % MLC_KV_PAGE) * D + i;
}

static float *inv_freq_of(int64_t rot, double base) {
  float *f = talloc(sizeof(float) * (size_t)(rot / 2));
  for (int64_t i = 0; i < rot / 2; i++)
    f[i] = (float)pow(base, -2.0 * (double)i / (double)rot);
  return f;
}
/* HF rotate_half RoPE of one head x[0..D) into y (doubles), dims past rot copied */
static void rope_ref(const float *x, int pos, const float *invf, int64_t D, int64_t rot, double scale, double *y) {
  int64_t half = rot / 2;
  for (int64_t i = 0; i < half; i++) {
    double ang = (double)pos * invf[i], cs = cos(ang) * scale, sn = sin(ang) * scale;
    y[i] = x[i] * cs - x[i + half] * sn;
    y[i + half] = x[i + half] * cs + x[i] * sn;
  }
  for (int64_t i = rot; i < D; i++)
    y[i] = x[i];
}

/* ================= cases, one builder per op kind ================= */

static void case_embed(mlc_dtype dt, int64_t H, int V, int n, float scale) {
  tcase *c = new_case(MLC_OP_EMBED, "embed %s H=%lld V=%d n=%d scale=%g", dt_name(dt), (long long)H, V, n, scale);
  c->d.var[0] = dt;
  SIZES(c, Z(H));
  c->d.fv[0] = scale;
  int o = out_buf(c, MLC_F32, (size_t)n * H, TOL, 0);
  int32_t *ids = in_i32(c, (size_t)n);
  const float *tab = in_w(c, dt, (size_t)V * H, 1.0);
  for (int t = 0; t < n; t++)
    ids[t] = t == 0 ? V - 1 : t == 1 ? 0 : irand(V);
  for (int t = 0; t < n; t++)
    for (int64_t i = 0; i < H; i++)
      expect(c, o, (size_t)t * H + i, (double)tab[(size_t)ids[t] * H + i] * scale);
  c->grid = n;
}

/* groups of D inside rows of C; x rows xs apart */
static void case_rmsnorm(mlc_dtype dt, int add_one, int R, int64_t C, int64_t D, int64_t xs, float eps) {
  tcase *c = new_case(MLC_OP_RMSNORM, "rmsnorm w=%s add_one=%d R=%d C=%lld D=%lld xs=%lld", dt_name(dt), add_one, R,
                      (long long)C, (long long)D, (long long)xs);
  c->d.var[0] = dt;
  c->d.var[1] = add_one;
  SIZES(c, Z(C), Z(D), Z(xs));
  c->d.fv[0] = eps;
  int o = out_buf(c, MLC_F32, (size_t)R * C, TOL, 0);
  const float *x = in_f32(c, (size_t)R * xs, 2.0);
  const float *w = in_w(c, dt, (size_t)D, 1.0);
  for (int r = 0; r < R; r++)
    for (int64_t g = 0; g < C / D; g++) {
      const float *xr = x + (size_t)r * xs + g * D;
      double sc = 1.0 / sqrt(dotd(xr, xr, D) / (double)D + eps);
      for (int64_t i = 0; i < D; i++)
        expect(c, o, (size_t)r * C + g * D + i, xr[i] * sc * (add_one ? 1.0 + w[i] : (double)w[i]));
    }
  c->grid = (int64_t)R * (C / D);
}

static void case_add_rmsnorm(mlc_dtype dt, int add_one, int R, int64_t C, float eps) {
  tcase *c = new_case(MLC_OP_ADD_RMSNORM, "add_rmsnorm w=%s add_one=%d R=%d C=%lld", dt_name(dt), add_one, R,
                      (long long)C);
  c->d.var[0] = dt;
  c->d.var[1] = add_one;
  SIZES(c, Z(C));
  c->d.fv[0] = eps;
  int os = out_buf(c, MLC_F32, (size_t)R * C, TOL, 0);
  int on = out_buf(c, MLC_F32, (size_t)R * C, TOL, 0);
  const float *a = in_f32(c, (size_t)R * C, 1.5), *b = in_f32(c, (size_t)R * C, 1.5);
  const float *w = in_w(c, dt, (size_t)C, 1.0);
  for (int r = 0; r < R; r++) {
    double ss = 0;
    for (int64_t i = 0; i < C; i++) {
      /* the sum is rounded to f32 when stored; the norm uses the stored sum */
      float s = a[(size_t)r * C + i] + b[(size_t)r * C + i];
      expect(c, os, (size_t)r * C + i, s);
      ss += (double)s * s;
    }
    double sc = 1.0 / sqrt(ss / (double)C + eps);
    for (int64_t i = 0; i < C; i++) {
      float s = a[(size_t)r * C + i] + b[(size_t)r * C + i];
      expect(c, on, (size_t)r * C + i, s * sc * (add_one ? 1.0 + w[i] : (double)w[i]));
    }
  }
  c->grid = R;
}

static void case_add(int R, int64_t C) {
  tcase *c = new_case(MLC_OP_ADD, "add R=%d C=%lld", R, (long long)C);
  SIZES(c, Z(C));
  int o = out_buf(c, MLC_F32, (size_t)R * C, TOL, 0);
  const float *a = in_f32(c, (size_t)R * C, 3.0), *b = in_f32(c, (size_t)R * C, 3.0);
  for (size_t i = 0; i < (size_t)R * C; i++)
    expect(c, o, i, (double)a[i] + b[i]);
  c->grid = R;
}

/* R output rows; experts E > 0: W is [E*N, K], ids [R], x has R / in_div rows */
static void case_matmul(mlc_dtype dt, bool bias, int E, int in_div, float cap, int R, int64_t N, int64_t K,
                        int64_t xs) {
  tcase *c = new_case(MLC_OP_MATMUL, "matmul w=%s bias=%d experts=%d in_div=%d softcap=%g R=%d N=%lld K=%lld xs=%lld",
                      dt_name(dt), bias, E, in_div, cap, R, (long long)N, (long long)K, (long long)xs);
  bool ex = E > 0;
  int div = ex ? in_div : 1;
  c->d.var[0] = dt;
  c->d.var[1] = bias;
  c->d.var[2] = ex;
  c->d.var[3] = cap != 0;
  SIZES(c, Z(N), Z(K), Z(ex && in_div > 0 ? in_div : 1), Z(xs));
  c->d.fv[0] = cap;
  c->dyn[0] = R;
  c->grid = N;
  int o = out_buf(c, MLC_F32, (size_t)R * N, cap != 0 ? TOL_T : TOL, 0);
  int xrows = (R + div - 1) / div;
  const float *x = in_f32(c, (size_t)(xrows > 0 ? xrows : 1) * xs, 1.0);
  const float *w = in_w(c, dt, (size_t)(ex ? E : 1) * N * K, 1.0);
  const float *bb = bias ? in_w(c, dt, (size_t)N, 1.0) : NULL;
  int32_t *ids = ex ? in_i32(c, (size_t)(R > 0 ? R : 1)) : NULL;
  for (int r = 0; ex && r < R; r++)
    ids[r] = r == 0 ? E - 1 : irand(E);
  for (int r = 0; r < R; r++)
    for (int64_t j = 0; j < N; j++) {
      int64_t wrow = ex ? (int64_t)ids[r] * N + j : j;
      double y = dotd(x + (size_t)(r / div) * xs, w + (size_t)wrow * K, K);
      if (bias)
        y += bb[j];
      if (cap != 0)
        y = tanh(y / cap) * cap;
      expect(c, o, (size_t)r * N + j, y);
    }
}

/*
 * 4-bit weights in the interleaved run-time layout (quant.h; the CPU repacks at load): quantized
 * here with the plain scheme, the reference decoded from the plain layout, the kernel given the
 * interleaved words. Returns the decoded [n, K] values; adds the words, then (scale_after: later)
 * the scale buffer.
 */
static const float *in_qw_il(tcase *c, mlc_dtype plain, int64_t n, int64_t K, void **scale, size_t *scale_bytes) {
  const mlc_qscheme *s = mlc_qscheme_of(plain);
  float *w = rand_f32((size_t)(n * K), 1.0);
  int64_t W = mlc_q_words(s, K), G = mlc_q_groups(s, K);
  uint32_t *q = talloc(sizeof(uint32_t) * (size_t)(n * W)), *qi = talloc(sizeof(uint32_t) * (size_t)(n * W));
  *scale_bytes = mlc_q_scale_size(s) * (size_t)(n * G);
  *scale = talloc(*scale_bytes);
  mlc_q_quantize_rows(s, w, K, 0, n, q, *scale);
  mlc_q_interleave(s, K, 0, n, q, qi);
  float *dec = talloc(sizeof(float) * (size_t)(n * K));
  for (int64_t r = 0; r < n; r++)
    for (int64_t k = 0; k < K; k++)
      dec[r * K + k] = mlc_q_dequant(s, q, *scale, n, K, r, k);
  add_buf(c, qi, sizeof(uint32_t) * (size_t)(n * W), MLC_U32);
  return dec;
}

/* matmul / gated matmul over interleaved 4-bit weights; R below and above the tiles' deq_il_rows */
static void case_qmatmul_il(mlc_dtype plain, bool gated, int R, int64_t N, int64_t K) {
  const mlc_qscheme *si = mlc_q_interleaved_of(mlc_qscheme_of(plain), K);
  tcase *c = new_case(gated ? MLC_OP_GATED_MATMUL : MLC_OP_MATMUL, "%s w=%s R=%d N=%lld K=%lld",
                      gated ? "gated_matmul" : "matmul", si->name, R, (long long)N, (long long)K);
  c->d.var[0] = si->dtype;
  if (gated)
    SIZES(c, Z(N), Z(K), Z(1), Z(0), Z(N), Z(K));
  else
    SIZES(c, Z(N), Z(K), Z(1), Z(K));
  c->dyn[0] = R;
  c->grid = N;
  int o = out_buf(c, MLC_F32, (size_t)R * N, TOL_T, 0);
  const float *x = in_f32(c, (size_t)R * K, 1.0);
  void *s0, *s1 = NULL;
  size_t b0, b1 = 0;
  const float *wg = in_qw_il(c, plain, N, K, &s0, &b0), *wu = gated ? in_qw_il(c, plain, N, K, &s1, &b1) : NULL;
  add_buf(c, s0, b0, si->model_dtype);
  if (gated)
    add_buf(c, s1, b1, si->model_dtype);
  for (int r = 0; r < R; r++)
    for (int64_t j = 0; j < N; j++) {
      double g = dotd(x + (size_t)r * K, wg + (size_t)j * K, K);
      double y = gated ? g / (1 + exp(-g)) * dotd(x + (size_t)r * K, wu + (size_t)j * K, K) : g;
      expect(c, o, (size_t)r * N + j, y);
    }
}

/*
 * act(x Wg^T) * (x Wu^T). fused: the gate_up layout (one weight, per expert [gate F rows; up F
 * rows], up row offset F); else separate Wg, Wu ([E*F, K] with experts). The descriptor is
 * filled as mlc_launch_fill does; the reference follows the graph semantics (the weight's
 * actual layout).
 */
static void case_gated(mlc_dtype dt, int actk, bool fused, int E, int in_div, int R, int64_t F, int64_t K,
                       int64_t xs) {
  tcase *c = new_case(MLC_OP_GATED_MATMUL, "gated_matmul w=%s act=%s %s experts=%d in_div=%d R=%d F=%lld K=%lld xs=%lld",
                      dt_name(dt), act_name(actk), fused ? "fused_gate_up" : "separate", E, in_div, R, (long long)F,
                      (long long)K, (long long)xs);
  bool ex = E > 0;
  int div = ex ? in_div : 1;
  int64_t upoff = fused ? F : 0;
  c->d.var[0] = dt;
  c->d.var[1] = actk;
  c->d.var[2] = ex;
  /* mlc_launch_fill: size[2] = in_div or 1, size[3] = ia[3] (up offset), size[4] = ia[0] + ia[3]
   * (weight rows per expert: F, or 2F for a fused gate_up) */
  SIZES(c, Z(F), Z(K), Z(ex && in_div > 0 ? in_div : 1), Z(upoff), Z(F + upoff), Z(xs));
  c->dyn[0] = R;
  c->grid = F;
  int o = out_buf(c, MLC_F32, (size_t)R * F, TOL_T, 0);
  int xrows = (R + div - 1) / div;
  const float *x = in_f32(c, (size_t)xrows * xs, 1.5);
  int64_t rpe = fused ? 2 * F : F; /* weight rows per expert */
  const float *wg, *wu;
  if (fused) {
    void *stored;
    wg = wu = make_w(dt, (size_t)(ex ? E : 1) * rpe * K, 1.0, &stored);
    add_buf(c, stored, (size_t)(ex ? E : 1) * rpe * K * (dt == MLC_F32 ? 4 : 2), dt);
    add_buf(c, stored, (size_t)(ex ? E : 1) * rpe * K * (dt == MLC_F32 ? 4 : 2), dt);
  } else {
    wg = in_w(c, dt, (size_t)(ex ? E : 1) * rpe * K, 1.0);
    wu = in_w(c, dt, (size_t)(ex ? E : 1) * rpe * K, 1.0);
  }
  int32_t *ids = ex ? in_i32(c, (size_t)R) : NULL;
  for (int r = 0; ex && r < R; r++)
    ids[r] = r == 0 ? E - 1 : irand(E);
  for (int r = 0; r < R; r++)
    for (int64_t j = 0; j < F; j++) {
      int64_t eb = ex ? (int64_t)ids[r] * rpe : 0;
      const float *xr = x + (size_t)(r / div) * xs;
      double g = dotd(xr, wg + (size_t)(eb + j) * K, K), u = dotd(xr, wu + (size_t)(eb + upoff + j) * K, K);
      expect(c, o, (size_t)r * F + j, act_ref(actk, g) * u);
    }
}

/* a and b: views of one gate_up buffer [R, 2F] when sa == sb == 2F; else separate strided */
static void case_act_mul(int actk, int R, int64_t F, int64_t sa, int64_t sb) {
  tcase *c = new_case(MLC_OP_ACT_MUL, "act_mul %s R=%d F=%lld sa=%lld sb=%lld", act_name(actk), R, (long long)F,
                      (long long)sa, (long long)sb);
  c->d.var[0] = actk;
  SIZES(c, Z(F), Z(sa), Z(sb));
  c->grid = R;
  int o = out_buf(c, MLC_F32, (size_t)R * F, TOL_T, 0);
  const float *a, *b;
  if (sa == 2 * F && sb == 2 * F) {
    const float *gu = rand_f32((size_t)R * 2 * F, 4.0);
    a = in_view(c, gu, (size_t)R * 2 * F);
    b = in_view(c, gu + F, (size_t)R * 2 * F - F);
  } else {
    a = in_f32(c, (size_t)R * sa, 4.0);
    b = in_f32(c, (size_t)R * sb, 4.0);
  }
  for (int r = 0; r < R; r++)
    for (int64_t i = 0; i < F; i++)
      expect(c, o, (size_t)r * F + i, act_ref(actk, a[(size_t)r * sa + i]) * b[(size_t)r * sb + i]);
}

static void case_softcap(int R, int64_t C, float cap, double xscale) {
  tcase *c = new_case(MLC_OP_SOFTCAP, "softcap R=%d C=%lld cap=%g", R, (long long)C, cap);
  SIZES(c, Z(C));
  c->d.fv[0] = cap;
  c->grid = R;
  int o = out_buf(c, MLC_F32, (size_t)R * C, TOL_T, 0);
  const float *x = in_f32(c, (size_t)R * C, xscale);
  for (size_t i = 0; i < (size_t)R * C; i++)
    expect(c, o, i, tanh(x[i] / cap) * cap);
}

static void case_dequant(mlc_dtype dt, int R, int64_t C) {
  tcase *c = new_case(MLC_OP_DEQUANT, "dequant %s R=%d C=%lld", dt_name(dt), R, (long long)C);
  c->d.var[0] = dt;
  SIZES(c, Z(C));
  c->grid = R;
  int o = out_buf(c, MLC_F32, (size_t)R * C, TOL, 0);
  const float *w = in_w(c, dt, (size_t)R * C, 10.0);
  for (size_t i = 0; i < (size_t)R * C; i++)
    expect(c, o, i, w[i]);
}

static void case_rope(int n, int64_t H, int64_t D, int64_t rot, int64_t xs, float scale) {
  tcase *c = new_case(MLC_OP_ROPE, "rope n=%d H=%lld D=%lld rot=%lld xs=%lld scale=%g", n, (long long)H, (long long)D,
                      (long long)rot, (long long)xs, scale);
  SIZES(c, Z(H), Z(D), Z(rot), Z(xs));
  c->d.fv[0] = scale;
  c->grid = (int64_t)n * H;
  int o = out_buf(c, MLC_F32, (size_t)n * H * D, TOL_T, 0);
  const float *x = in_f32(c, (size_t)n * xs, 1.0);
  int32_t *pos = in_i32(c, (size_t)n);
  float *invf = inv_freq_of(rot, 10000.0);
  add_buf(c, invf, sizeof(float) * (size_t)(rot / 2), MLC_F32);
  double y[512];
  for (int t = 0; t < n; t++) {
    pos[t] = t == 0 ? 91 : irand(64);
    for (int64_t h = 0; h < H; h++) {
      rope_ref(x + (size_t)t * xs + h * D, pos[t], invf, D, rot, scale, y);
      for (int64_t i = 0; i < D; i++)
        expect(c, o, (size_t)t * H * D + h * D + i, y[i]);
    }
  }
}

/* k and v: views of a qkv buffer [n, (Hq + 2 Hkv) D] when qkv; else contiguous */
static void case_kv_append(int n, int64_t Hkv, int64_t D, bool qkv) {
  int64_t Hq = 2 * Hkv, ks = qkv ? (Hq + 2 * Hkv) * D : Hkv * D, vs = ks;
  tcase *c = new_case(MLC_OP_KV_APPEND, "kv_append n=%d Hkv=%lld D=%lld ks=%lld", n, (long long)Hkv, (long long)D,
                      (long long)ks);
  SIZES(c, Z(Hkv), Z(D), Z(ks), Z(vs), Z(MAXP));
  c->grid = (int64_t)n * Hkv;
  int kvb = out_buf(c, MLC_F32, kv_elems(Hkv, D), 0, 1.0);
  const float *k, *v;
  if (qkv) {
    const float *all = rand_f32((size_t)n * ks, 1.0);
    k = in_view(c, all + Hq * D, (size_t)n * ks - Hq * D);
    v = in_view(c, all + (Hq + Hkv) * D, (size_t)n * ks - (Hq + Hkv) * D);
  } else {
    k = in_f32(c, (size_t)n * ks, 1.0);
    v = in_f32(c, (size_t)n * vs, 1.0);
  }
  steptoks s = in_tokens(c, n);
  for (int t = 0; t < n; t++)
    for (int64_t h = 0; h < Hkv; h++)
      for (int64_t i = 0; i < D; i++) {
        expect(c, kvb, kv_at(&s, s.seq[t], s.pos[t], 0, h, i, Hkv, D), k[(size_t)t * ks + h * D + i]);
        expect(c, kvb, kv_at(&s, s.seq[t], s.pos[t], 1, h, i, Hkv, D), v[(size_t)t * vs + h * D + i]);
      }
}

static void case_rope_kv(int n, int64_t Hq, int64_t Hkv, int64_t D, int64_t rot, bool qkv, float scale) {
  int64_t qs = qkv ? (Hq + 2 * Hkv) * D : Hq * D, ks = qkv ? qs : Hkv * D, vs = ks;
  tcase *c = new_case(MLC_OP_ROPE_KV, "rope_kv_append n=%d Hq=%lld Hkv=%lld D=%lld rot=%lld qs=%lld scale=%g", n,
                      (long long)Hq, (long long)Hkv, (long long)D, (long long)rot, (long long)qs, scale);
  SIZES(c, Z(Hq), Z(Hkv), Z(D), Z(rot), Z(qs), Z(ks), Z(vs), Z(MAXP));
  c->d.fv[0] = scale;
  c->grid = (int64_t)n * (Hq + Hkv);
  int qo = out_buf(c, MLC_F32, (size_t)n * Hq * D, TOL_T, 0);
  int kvb = out_buf(c, MLC_F32, kv_elems(Hkv, D), TOL_T, 1.0);
  const float *q, *k, *v;
  if (qkv) {
    const float *all = rand_f32((size_t)n * qs, 1.0);
    q = in_view(c, all, (size_t)n * qs);
    k = in_view(c, all + Hq * D, (size_t)n * qs - Hq * D);
    v = in_view(c, all + (Hq + Hkv) * D, (size_t)n * qs - (Hq + Hkv) * D);
  } else {
    q = in_f32(c, (size_t)n * qs, 1.0);
    k = in_f32(c, (size_t)n * ks, 1.0);
    v = in_f32(c, (size_t)n * vs, 1.0);
  }
  steptoks s = in_tokens(c, n);
  float *invf = inv_freq_of(rot, 500000.0);
  add_buf(c, invf, sizeof(float) * (size_t)(rot / 2), MLC_F32);
  double y[512];
  for (int t = 0; t < n; t++) {
    for (int64_t h = 0; h < Hq; h++) {
      rope_ref(q + (size_t)t * qs + h * D, s.pos[t], invf, D, rot, scale, y);
      for (int64_t i = 0; i < D; i++)
        expect(c, qo, (size_t)t * Hq * D + h * D + i, y[i]);
    }
    for (int64_t h = 0; h < Hkv; h++) {
      rope_ref(k + (size_t)t * ks + h * D, s.pos[t], invf, D, rot, scale, y);
      for (int64_t i = 0; i < D; i++) {
        expect(c, kvb, kv_at(&s, s.seq[t], s.pos[t], 0, h, i, Hkv, D), y[i]);
        expect(c, kvb, kv_at(&s, s.seq[t], s.pos[t], 1, h, i, Hkv, D), v[(size_t)t * vs + h * D + i]);
      }
    }
  }
}

/* The whole cache holds random keys and values; each token attends to its own sequence's
 * positions 0..pos (or pos-window+1..pos). q: a view of qkv (stride (Hq + 2 Hkv) D). */
static void case_attention(int n, int64_t Hq, int64_t Hkv, int64_t D, int64_t window, float cap, double qscale) {
  int64_t qs = (Hq + 2 * Hkv) * D;
  float scale = (float)(1.0 / sqrt((double)D));
  tcase *c = new_case(MLC_OP_ATTENTION, "attention n=%d Hq=%lld Hkv=%lld D=%lld window=%lld softcap=%g", n,
                      (long long)Hq, (long long)Hkv, (long long)D, (long long)window, cap);
  c->d.var[0] = cap != 0;
  SIZES(c, Z(Hq), Z(Hkv), Z(D), Z(window), Z(MAXP), Z(qs), Z(1));
  c->d.fv[0] = scale;
  c->d.fv[1] = cap;
  c->grid = (int64_t)n * Hq;
  c->dyn[0] = n; /* the step's rows, as the runtime passes them (CUDA: long steps take the alternative) */
  int o = out_buf(c, MLC_F32, (size_t)n * Hq * D, TOL_T, 0);
  const float *q = in_f32(c, (size_t)n * qs, qscale);
  steptoks s = in_tokens(c, n);
  const float *kv = in_f32(c, kv_elems(Hkv, D), 1.0); /* read only: checked unchanged like every input */
  double sc[64], acc[512];
  for (int t = 0; t < n; t++)
    for (int64_t h = 0; h < Hq; h++) {
      int64_t kh = h / (Hq / Hkv);
      const float *qh = q + (size_t)t * qs + h * D;
      int pend = s.pos[t], pbeg = window > 0 && pend - window + 1 > 0 ? (int)(pend - window + 1) : 0;
      double mx = -INFINITY, den = 0;
      for (int p = pbeg; p <= pend; p++) {
        double d = dotd(qh, kv + kv_at(&s, s.seq[t], p, 0, kh, 0, Hkv, D), D) * scale;
        if (cap != 0)
          d = tanh(d / cap) * cap;
        sc[p] = d;
        mx = d > mx ? d : mx;
      }
      for (int64_t i = 0; i < D; i++)
        acc[i] = 0;
      for (int p = pbeg; p <= pend; p++) {
        double e = exp(sc[p] - mx);
        den += e;
        const float *vp = kv + kv_at(&s, s.seq[t], p, 1, kh, 0, Hkv, D);
        for (int64_t i = 0; i < D; i++)
          acc[i] += e * vp[i];
      }
      for (int64_t i = 0; i < D; i++)
        expect(c, o, (size_t)t * Hq * D + h * D + i, acc[i] / den);
    }
}

/* attention split over S blocks of positions (graph.h MLC_OP_ATTENTION ia4): per (token, head,
 * split) the max score, denominator and unnormalised output of the split's positions (chunk ch
 * of 8 positions belongs to split ch % S); positions chosen so that every split has some */
static void case_attention_split(int n, int64_t Hq, int64_t Hkv, int64_t D, int S) {
  int64_t qs = (Hq + 2 * Hkv) * D;
  float scale = (float)(1.0 / sqrt((double)D));
  tcase *c = new_case(MLC_OP_ATTENTION, "attention n=%d Hq=%lld Hkv=%lld D=%lld splits=%d", n, (long long)Hq,
                      (long long)Hkv, (long long)D, S);
  SIZES(c, Z(Hq), Z(Hkv), Z(D), Z(0), Z(MAXP), Z(qs), Z(S));
  c->d.fv[0] = scale;
  c->grid = (int64_t)n * Hq * S;
  c->dyn[0] = n;
  int o = out_buf(c, MLC_F32, (size_t)n * Hq * S * (D + 2), TOL_T, 0);
  const float *q = in_f32(c, (size_t)n * qs, 2.0);
  steptoks st = in_tokens(c, n);
  const float *kv = in_f32(c, kv_elems(Hkv, D), 1.0);
  MLC_ASSERT(n > 1 || st.pos[0] + 1 >= 8 * S); /* one row: every split has positions */
  for (int t = 0; t < n; t++)
    for (int64_t h = 0; h < Hq; h++) {
      int64_t kh = h / (Hq / Hkv);
      const float *qh = q + (size_t)t * qs + h * D;
      for (int s = 0; s < S; s++) { /* a split without positions: max -inf, den 0, acc 0 */
        double mx = -INFINITY, den = 0, acc[512] = {0}, sc[64];
        for (int p = 0; p <= st.pos[t]; p++)
          if ((p / 8) % S == s) {
            sc[p] = dotd(qh, kv + kv_at(&st, st.seq[t], p, 0, kh, 0, Hkv, D), D) * scale;
            mx = sc[p] > mx ? sc[p] : mx;
          }
        for (int p = 0; p <= st.pos[t]; p++)
          if ((p / 8) % S == s) {
            double e = exp(sc[p] - mx);
            den += e;
            const float *vp = kv + kv_at(&st, st.seq[t], p, 1, kh, 0, Hkv, D);
            for (int64_t i = 0; i < D; i++)
              acc[i] += e * vp[i];
          }
        size_t base = (((size_t)t * Hq + h) * S + s) * (size_t)(D + 2);
        expect(c, o, base, mx);
        expect(c, o, base + 1, den);
        for (int64_t i = 0; i < D; i++)
          expect(c, o, base + 2 + i, acc[i]);
      }
    }
}
/* the merge of S partial softmax states per (token, head); split 1 of token 0 has none (-inf) */
static void case_attn_combine(int n, int64_t Hq, int64_t D, int S) {
  tcase *c = new_case(MLC_OP_ATTN_COMBINE, "attn_combine n=%d Hq=%lld D=%lld splits=%d", n, (long long)Hq, (long long)D, S);
  SIZES(c, Z(Hq), Z(D), Z(S));
  c->grid = (int64_t)n * Hq;
  int o = out_buf(c, MLC_F32, (size_t)n * Hq * D, TOL_T, 0);
  float *part = in_f32(c, (size_t)n * Hq * S * (D + 2), 2.0);
  for (int64_t r = 0; r < n * Hq; r++)
    for (int s = 0; s < S; s++) {
      float *ps = part + ((size_t)r * S + s) * (size_t)(D + 2);
      ps[1] = 0.5f + fabsf(ps[1]) * 3; /* denominators are positive */
      if (r == 0 && s == 1) { /* a split without positions */
        ps[0] = -INFINITY;
        ps[1] = 0;
        for (int64_t i = 0; i < D; i++)
          ps[2 + i] = 0;
      }
    }
  for (int64_t r = 0; r < n * Hq; r++) {
    const float *pr = part + (size_t)r * S * (size_t)(D + 2);
    double m = -INFINITY, den = 0;
    for (int s = 0; s < S; s++)
      m = pr[s * (D + 2)] > m ? pr[s * (D + 2)] : m;
    for (int s = 0; s < S; s++)
      den += exp(pr[s * (D + 2)] - m) * pr[s * (D + 2) + 1];
    for (int64_t i = 0; i < D; i++) {
      double acc = 0;
      for (int s = 0; s < S; s++)
        acc += exp(pr[s * (D + 2)] - m) * pr[s * (D + 2) + 2 + i];
      expect(c, o, (size_t)r * D + i, acc / den);
    }
  }
}

/* logits: random, or rows with ties when ties */
static void case_moe_route(int n, int E, int K, int renorm, bool ties) {
  tcase *c = new_case(MLC_OP_MOE_ROUTE, "moe_route n=%d E=%d k=%d renormalise=%d%s", n, E, K, renorm,
                      ties ? " ties" : "");
  c->d.var[0] = renorm;
  SIZES(c, Z(E), Z(K));
  c->grid = n;
  int ow = out_buf(c, MLC_F32, (size_t)n * K, TOL_T, 0);
  int oi = out_buf(c, MLC_I32, (size_t)n * K, 0, 0);
  float *lg = in_f32(c, (size_t)n * E, 3.0);
  if (ties) {
    for (int t = 0; t < n; t++)
      for (int e = 0; e < E; e++) {
        float *l = &lg[(size_t)t * E + e];
        if (t == 0)
          *l = (e % 2) ? 0.9f : 0.5f; /* pairs of equal values */
        else if (t == 1)
          *l = 0.3f; /* all equal */
        else if (t == 2)
          *l = (e == 1 || e == E - 1) ? 2.0f : -1.0f;
        else
          *l = (float)irand(3); /* many ties at three levels */
      }
  }
  for (int t = 0; t < n; t++) {
    const float *l = lg + (size_t)t * E;
    double mx = -INFINITY, den = 0, tot = 0, p[256];
    int pick[256];
    bool used[256] = {0};
    for (int e = 0; e < E; e++)
      mx = l[e] > mx ? l[e] : mx;
    for (int e = 0; e < E; e++)
      den += exp(l[e] - mx);
    for (int s = 0; s < K; s++) {
      int best = -1;
      for (int e = 0; e < E; e++)
        if (!used[e] && (best < 0 || l[e] > l[best]))
          best = e;
      used[best] = true;
      pick[s] = best;
      p[s] = exp(l[best] - mx) / den;
      tot += p[s];
    }
    for (int s = 0; s < K; s++) {
      expect(c, ow, (size_t)t * K + s, renorm ? p[s] / tot : p[s]);
      expect(c, oi, (size_t)t * K + s, pick[s]);
    }
  }
}

static void case_moe_combine(int n, int64_t H, int K) {
  tcase *c = new_case(MLC_OP_MOE_COMBINE, "moe_combine n=%d H=%lld k=%d", n, (long long)H, K);
  SIZES(c, Z(H), Z(K));
  c->grid = n;
  int o = out_buf(c, MLC_F32, (size_t)n * H, TOL, 0);
  const float *y = in_f32(c, (size_t)n * K * H, 2.0), *w = in_f32(c, (size_t)n * K, 1.0);
  for (int t = 0; t < n; t++)
    for (int64_t i = 0; i < H; i++) {
      double a = 0;
      for (int s = 0; s < K; s++)
        a += (double)w[t * K + s] * y[((size_t)t * K + s) * H + i];
      expect(c, o, (size_t)t * H + i, a);
    }
}

/* Group-quantized weights of scheme dt [rows, K] (NK layout): the packed words as a buffer here,
 * the scales returned for a buffer the caller adds after the kernel's other buffers; returns the
 * dequantized values (the reference uses them). */
static const float *in_qw(tcase *c, mlc_dtype dt, int64_t rows, int64_t K, void **scale, size_t *sbytes) {
  const mlc_qscheme *s = mlc_qscheme_of(dt);
  float *w = rand_f32((size_t)(rows * K), 1.0);
  int64_t W = mlc_q_words(s, K), G = mlc_q_groups(s, K);
  uint32_t *q = talloc(sizeof(uint32_t) * (size_t)(rows * W));
  *sbytes = mlc_q_scale_size(s) * (size_t)(rows * G);
  *scale = talloc(*sbytes);
  mlc_q_quantize_rows(s, w, K, 0, rows, q, *scale);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < K; k++)
      w[r * K + k] = mlc_q_dequant(s, q, *scale, rows, K, r, k);
  add_buf(c, q, sizeof(uint32_t) * (size_t)(rows * W), MLC_U32);
  return w;
}

/*
 * The CPU's specialised kernels multiply 4-bit weights (plain layout, K a multiple of 128) with
 * 8-bit activations (docs/compiler.md), and so do CUDA's: per group of 32 of each x row, d = max|x| / 127 and
 * q = rintf(x * (1 / d)) (halves to even). Returns x as those q * d (R rows of K, doubles), or NULL where the kernel
 * keeps f32 activations; the reference of the "spec" variant is computed from it.
 */
static double *i8_ref_x(const mlc_qscheme *s, const float *x, int R, int64_t xs, int64_t K) {
  if (s->bits != 4 || s->kn || s->il || K % 128 || R <= 0)
    return NULL;
  double *q = talloc(sizeof(double) * (size_t)R * (size_t)K);
  for (int r = 0; r < R; r++)
    for (int64_t g = 0; g < K; g += 32) {
      float amax = 0;
      for (int i = 0; i < 32; i++)
        amax = fmaxf(amax, fabsf(x[r * xs + g + i]));
      float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
      for (int i = 0; i < 32; i++)
        q[(size_t)r * K + g + i] = (double)rintf(x[r * xs + g + i] * id) * d;
    }
  return q;
}
/* test_device_kernels: the device's specialised 4-bit GEMVs take 8-bit activations (its tunables'
 * i8_gemv: Vulkan with the integer dot product) */
static bool i8_device;
/* the variants whose 4-bit kernels take 8-bit activations: the CPU's specialised kernels, CUDA's
 * (lower.c qgemv_i8) and those of a device with i8_device; OpenCL keeps f32 activations */
static bool i8_variant(const char *variant) {
  return !strcmp(variant, "spec") || !strcmp(variant, "cuda spec") || (i8_device && strstr(variant, " spec"));
}
static double dotdd(const double *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}
static void set_ref_i8(tcase *c, int bi) {
  tbuf *b = &c->b[bi];
  b->ref_i8 = talloc(sizeof(double) * b->n);
}

/* matmul / gated_matmul with packed weights at the shapes the lanes GEMV takes (lower.c wdot_qlanes) */
static void case_matmul_q(mlc_dtype dt, bool bias, float cap, int R, int64_t N, int64_t K, int64_t xs) {
  tcase *c = new_case(MLC_OP_MATMUL, "matmul w=%s bias=%d softcap=%g R=%d N=%lld K=%lld xs=%lld", mlc_dtype_name(dt), bias,
                      cap, R, (long long)N, (long long)K, (long long)xs);
  const mlc_qscheme *s = mlc_qscheme_of(dt);
  c->d.var[0] = dt;
  c->d.var[1] = bias;
  c->d.var[3] = cap != 0;
  SIZES(c, Z(N), Z(K), Z(1), Z(xs));
  c->d.fv[0] = cap;
  c->dyn[0] = R;
  c->grid = N;
  int o = out_buf(c, MLC_F32, (size_t)R * N, cap != 0 ? TOL_T : TOL, 0);
  const float *x = in_f32(c, (size_t)(R > 0 ? R : 1) * xs, 1.0);
  void *sc;
  size_t sb;
  const float *w = in_qw(c, dt, N, K, &sc, &sb);
  const float *bb = bias ? in_w(c, s->model_dtype, (size_t)N, 1.0) : NULL;
  add_buf(c, sc, sb, s->model_dtype);
  double *xq = i8_ref_x(s, x, R, xs, K);
  if (xq)
    set_ref_i8(c, o);
  for (int r = 0; r < R; r++)
    for (int64_t j = 0; j < N; j++) {
      for (int v = 0; v < (xq ? 2 : 1); v++) {
        double y = v ? dotdd(xq + (size_t)r * K, w + (size_t)j * K, K) : dotd(x + (size_t)r * xs, w + (size_t)j * K, K);
        if (bias)
          y += bb[j];
        if (cap != 0)
          y = tanh(y / cap) * cap;
        if (v)
          c->b[o].ref_i8[(size_t)r * N + j] = y;
        else
          expect(c, o, (size_t)r * N + j, y);
      }
    }
}
static void case_gated_q(mlc_dtype dt, int actk, int R, int64_t F, int64_t K, int64_t xs) {
  tcase *c = new_case(MLC_OP_GATED_MATMUL, "gated_matmul w=%s act=%s separate R=%d F=%lld K=%lld xs=%lld",
                      mlc_dtype_name(dt), act_name(actk), R, (long long)F, (long long)K, (long long)xs);
  const mlc_qscheme *s = mlc_qscheme_of(dt);
  c->d.var[0] = dt;
  c->d.var[1] = actk;
  SIZES(c, Z(F), Z(K), Z(1), Z(0), Z(F), Z(xs));
  c->dyn[0] = R;
  c->grid = F;
  int o = out_buf(c, MLC_F32, (size_t)R * F, TOL_T, 0);
  const float *x = in_f32(c, (size_t)R * xs, 1.5);
  void *sg, *su;
  size_t bg, bu;
  const float *wg = in_qw(c, dt, F, K, &sg, &bg), *wu = in_qw(c, dt, F, K, &su, &bu);
  add_buf(c, sg, bg, s->model_dtype);
  add_buf(c, su, bu, s->model_dtype);
  double *xq = i8_ref_x(s, x, R, xs, K);
  if (xq)
    set_ref_i8(c, o);
  for (int r = 0; r < R; r++)
    for (int64_t j = 0; j < F; j++) {
      const float *xr = x + (size_t)r * xs;
      double g = dotd(xr, wg + (size_t)j * K, K), u = dotd(xr, wu + (size_t)j * K, K);
      expect(c, o, (size_t)r * F + j, act_ref(actk, g) * u);
      if (xq) {
        const double *qr = xq + (size_t)r * K;
        double g8 = dotdd(qr, wg + (size_t)j * K, K), u8 = dotdd(qr, wu + (size_t)j * K, K);
        c->b[o].ref_i8[(size_t)r * F + j] = act_ref(actk, g8) * u8;
      }
    }
}

/* ---- sample (lower.c rule_sample): per row greedy or one draw from the filtered softmax. The
 * reference keeps the prefix of the order (logit descending, index ascending) that min_p, top_k
 * and top_p allow, in double; the filters' parameters sit between two cumulative masses (top_p)
 * or two probabilities (min_p), and u in the middle of the chosen token's interval of the kept
 * tokens' running mass in index order, so f32 sums cannot change the expected token. ---- */
static const float *samp_row;
static int samp_cmp(const void *a, const void *b) {
  int i = *(const int *)a, j = *(const int *)b;
  if (samp_row[i] != samp_row[j])
    return samp_row[i] > samp_row[j] ? -1 : 1;
  return i - j;
}
static void case_sample(int rows, int V, int64_t xs, bool ties) {
  tcase *c = new_case(MLC_OP_SAMPLE, "sample rows=%d V=%d xs=%lld%s", rows, V, (long long)xs, ties ? " ties" : "");
  SIZES(c, Z(V), Z(xs));
  c->grid = rows;
  int o = out_buf(c, MLC_I32, (size_t)rows, 0, 0);
  float *x = in_f32(c, (size_t)rows * xs, 4.0);
  float *prm = in_f32(c, (size_t)rows * MLC_SAMPLE_SLOTS, 0);
  int *ord = talloc(sizeof(int) * (size_t)V);
  double *p = talloc(sizeof(double) * (size_t)V), *cum = talloc(sizeof(double) * (size_t)V);
  for (int r = 0; r < rows; r++) {
    float *xr = x + (size_t)r * xs, *pr = prm + (size_t)r * MLC_SAMPLE_SLOTS;
    int kind = r % 8;
    for (int i = 0; ties && i < V; i++)
      xr[i] = (float)(irand(9) - 4) * 0.5f; /* nine levels: ties at every cut */
    if (kind == 6) /* masked tokens (grammar-like): never drawn */
      for (int i = 0; i < V; i++)
        if (irand(3) == 0)
          xr[i] = -INFINITY;
    bool all_masked = r == rows - 1 && V == 50; /* every logit -inf: the first index (mlc_argmax) */
    for (int i = 0; all_masked && i < V; i++)
      xr[i] = -INFINITY;
    float T = kind == 0 ? 0.0f : kind == 5 ? 1.3f : kind == 7 ? 0.5f : 0.8f;
    pr[MLC_SAMPLE_TEMP] = all_masked ? 1.0f : T;
    int best = 0;
    for (int i = 1; i < V; i++)
      if (xr[i] > xr[best])
        best = i;
    if (T <= 0 || all_masked) {
      expect(c, o, (size_t)r, best);
      continue;
    }
    double mx = xr[best];
    int nl = 0;
    for (int i = 0; i < V; i++) {
      p[i] = xr[i] == -INFINITY ? 0 : exp(((double)xr[i] - mx) / (double)T);
      if (p[i] > 0)
        ord[nl++] = i;
    }
    samp_row = xr;
    qsort(ord, (size_t)nl, sizeof(int), samp_cmp);
    for (int j = 0; j < nl; j++)
      cum[j] = (j ? cum[j - 1] : 0) + p[ord[j]];
    double S = cum[nl - 1];
    int n = nl;
    if (kind == 2 || kind == 5 || kind == 6) { /* top_k */
      int K = 1 + irand(nl < 40 ? nl : 40);
      pr[MLC_SAMPLE_TOP_K] = (float)K;
      n = K < n ? K : n;
    }
    if (kind == 7)
      pr[MLC_SAMPLE_TOP_K] = (float)(V + 5); /* more than the vocabulary: off */
    if (kind == 3 || kind == 5 || kind == 7) { /* top_p: between the masses of t and t + 1 tokens */
      int t = irand(nl < 60 ? nl : 60);
      while (t > 0 && p[ord[t]] / S < 1e-3)
        t--;
      double P = (cum[t] - p[ord[t]] / 2) / S;
      pr[MLC_SAMPLE_TOP_P] = (float)P;
      if (P < 1)
        n = t + 1 < n ? t + 1 : n;
    }
    if (kind == 4 || kind == 5) { /* min_p: between two distinct probabilities */
      int t = 1 + irand(nl - 1 < 30 ? nl - 1 : 30);
      while (t < nl && p[ord[t]] > p[ord[t - 1]] / 1.001)
        t++;
      if (t < nl) {
        pr[MLC_SAMPLE_MIN_P] = (float)sqrt(p[ord[t]] * p[ord[t - 1]]);
        n = t < n ? t : n;
      }
    }
    /* the kept tokens in index order; u inside the interval of one with a fair share of the mass */
    double W = 0;
    for (int j = 0; j < n; j++)
      W += p[ord[j]];
    int pick = ord[irand(n)];
    if (p[pick] / W < 1e-3)
      pick = ord[0];
    double below = 0;
    for (int j = 0; j < n; j++)
      if (ord[j] < pick)
        below += p[ord[j]];
    pr[MLC_SAMPLE_U] = (float)((below + p[pick] / 2) / W);
    expect(c, o, (size_t)r, pick);
  }
}

/* Real shapes of the GPUs' 4-bit GEMV with 8-bit activations (lower.c qgemv_i8): outputs per index
 * 1-8, lanes 4 to 64 (two warps: K 14336, the down projection's), K not a multiple of 32 lanes'
 * groups, tiles of rows, gate and up. Run by test_cuda_kernels and test_device_kernels. */
__attribute__((unused)) static void build_i8_gemv_cases(void) {
  case_matmul_q(MLC_Q4F16_1, false, 0, 1, 4096, 4096, 4096);
  case_matmul_q(MLC_Q4F16_1, true, 0, 3, 1024, 3584, 3584);
  case_matmul_q(MLC_Q4F16_1, false, 0, 1, 16384, 256, 256);
  case_matmul_q(MLC_Q4F32_1, true, 0, 5, 128, 512, 516);
  case_matmul_q(MLC_Q4F16_1, false, 0, 9, 30, 1408, 1408);
  case_matmul_q(MLC_Q4F16_1, false, 0, 1, 512, 14336, 14336);
  case_matmul_q(MLC_Q4F16_1, false, 0, 3, 256, 14336, 14336);
  case_gated_q(MLC_Q4F16_1, MLC_KACT_SILU, 1, 1792, 1024, 1024);
  case_gated_q(MLC_Q4F16_1, MLC_KACT_SILU, 6, 256, 2048, 2048);
}

static void build_cases(void) {
  const mlc_dtype DT[3] = {MLC_F32, MLC_F16, MLC_BF16};
  /* embed */
  case_embed(MLC_F32, 37, 11, 5, 1.0f);
  case_embed(MLC_F16, 37, 11, 1, 4.5f);
  case_embed(MLC_BF16, 40, 9, 5, 0.125f);
  /* rmsnorm: whole rows, grouped per-head norm (D < C) on a strided view */
  case_rmsnorm(MLC_F32, 0, 5, 67, 67, 67, 1e-6f);
  case_rmsnorm(MLC_BF16, 1, 1, 67, 67, 67, 1e-6f);
  case_rmsnorm(MLC_F16, 0, 5, 72, 24, 120, 1e-5f);
  case_rmsnorm(MLC_F32, 1, 5, 40, 20, 100, 1e-6f);
  case_rmsnorm(MLC_BF16, 0, 1, 48, 16, 48, 1e-5f);
  /* add_rmsnorm */
  case_add_rmsnorm(MLC_F32, 0, 5, 67, 1e-6f);
  case_add_rmsnorm(MLC_BF16, 1, 1, 33, 1e-6f);
  case_add_rmsnorm(MLC_F16, 0, 5, 16, 1e-5f);
  /* add */
  case_add(5, 67);
  case_add(1, 13);
  /* matmul: dtypes, bias, experts (in_div > 1: gate/up of expert rows, 1: down), softcap, tails */
  case_matmul(MLC_F32, false, 0, 0, 0, 5, 13, 37, 37);
  /* interleaved 4-bit: single rows, a tile and a tail, the dequantize-once path (R >= 8),
   * partial column tiles (N % 4) */
  case_qmatmul_il(MLC_Q4F16_1, false, 1, 6, 256);
  case_qmatmul_il(MLC_Q4F16_1, false, 5, 9, 128);
  case_qmatmul_il(MLC_Q4F32_1, false, 9, 8, 384);
  case_qmatmul_il(MLC_Q4F16_1, true, 1, 5, 128);
  case_qmatmul_il(MLC_Q4F16_1, true, 10, 6, 256);
  case_matmul(MLC_F16, true, 0, 0, 0, 1, 7, 53, 53);
  case_matmul(MLC_BF16, true, 0, 0, 0.9f, 5, 11, 48, 60);
  case_matmul(MLC_F32, false, 0, 0, 2.0f, 5, 10, 30, 30);
  case_matmul(MLC_F32, false, 0, 0, 0, 5, 16, 32, 32);
  case_matmul(MLC_F32, false, 3, 2, 0, 6, 9, 21, 21);
  case_matmul(MLC_BF16, false, 4, 4, 0, 8, 6, 40, 44);
  case_matmul(MLC_F16, true, 4, 1, 1.5f, 5, 5, 7, 7);
  case_matmul(MLC_F16, false, 0, 0, 0, 1, 3, 1, 1);
  case_matmul(MLC_F32, false, 0, 0, 0, 0, 6, 17, 17); /* a step with no rows: nothing written */
  /* gated_matmul: all activations, separate and fused gate_up, experts */
  case_gated(MLC_F32, MLC_KACT_SILU, false, 0, 0, 5, 11, 37, 40);
  case_gated(MLC_F16, MLC_KACT_GELU_TANH, true, 0, 0, 1, 9, 20, 20);
  case_gated(MLC_BF16, MLC_KACT_GELU, false, 3, 2, 6, 7, 19, 19);
  case_gated(MLC_F16, MLC_KACT_GELU_TANH, false, 4, 1, 5, 6, 33, 33);
  case_gated(MLC_BF16, MLC_KACT_SILU, true, 0, 0, 5, 13, 48, 48);
  case_gated(MLC_F32, MLC_KACT_GELU, true, 0, 0, 5, 4, 5, 5);
  /* fused gate_up with experts: the weight is [E*2F, K], so expert e starts at row e*2F
   * (this case found a launch bug that read e*F) */
  case_gated(MLC_F32, MLC_KACT_SILU, true, 3, 2, 4, 5, 16, 16);
  /* act_mul */
  case_act_mul(MLC_KACT_SILU, 5, 23, 46, 46);
  case_act_mul(MLC_KACT_GELU_TANH, 1, 17, 17, 20);
  case_act_mul(MLC_KACT_GELU, 5, 31, 40, 31);
  /* softcap */
  case_softcap(5, 37, 0.7f, 3.0);
  case_softcap(1, 5, 30.0f, 50.0);
  /* dequant */
  for (int i = 0; i < 3; i++)
    case_dequant(DT[i], i == 2 ? 1 : 5, i == 2 ? 19 : 37);
  /* rope: full and partial rotary, strided input, attention scaling */
  case_rope(5, 3, 16, 16, 48, 1.0f);
  case_rope(5, 2, 24, 12, 100, 1.25f);
  case_rope(1, 4, 10, 6, 40, 1.0f);
  case_rope(5, 2, 64, 32, 128 + 3, 0.9f);
  /* kv_append: k, v as views of qkv; contiguous */
  case_kv_append(5, 2, 20, true);
  case_kv_append(1, 1, 16, false);
  case_kv_append(5, 3, 24, false);
  /* rope_kv_append */
  case_rope_kv(5, 4, 2, 20, 20, true, 1.0f);
  case_rope_kv(1, 3, 1, 24, 12, false, 0.9f);
  case_rope_kv(5, 6, 2, 32, 16, true, 1.0f);
  /* attention: GQA, MQA, sliding window, softcap, two sequences, several pages */
  case_attention(5, 4, 2, 20, 0, 0, 1.0);
  case_attention(5, 6, 2, 16, 7, 2.0f, 3.0);
  case_attention(1, 2, 2, 64, 20, 0, 2.0);
  case_attention(5, 8, 1, 24, 0, 1.5f, 3.0);
  case_attention(5, 4, 2, 36, 40, 0, 4.0);
  case_attention_split(1, 4, 2, 32, 4);
  case_attention_split(1, 2, 1, 64, 2);
  case_attn_combine(3, 2, 64, 3);
  case_attn_combine(1, 4, 20, 8);
  /* moe_route */
  case_moe_route(5, 8, 2, 1, false);
  case_moe_route(5, 5, 3, 0, true);
  case_moe_route(5, 6, 2, 1, true);
  case_moe_route(1, 4, 4, 1, false);
  case_moe_route(5, 60, 4, 0, false);
  /* moe_combine */
  case_moe_combine(5, 37, 2);
  case_moe_combine(1, 16, 4);
  case_moe_combine(5, 9, 1);
  /* packed weights at the shapes of the GPU lanes GEMV (lower.c wdot_qlanes; CUDA: 8 lanes an
   * output, 4 outputs a warp; N not a multiple of 4 leaves a warp's last outputs past the range;
   * xs odd: unaligned x rows) */
  case_matmul_q(MLC_Q4F16_1, false, 0, 1, 67, 512, 512);
  case_matmul_q(MLC_Q4F16_1, true, 0, 6, 40, 1024, 1027); /* two tiles of 4 rows, one partial */
  case_matmul_q(MLC_Q4F16_1, false, 30.0f, 2, 33, 2048, 2048);
  case_matmul_q(MLC_Q4F32_1, true, 0, 1, 16, 256, 256);
  case_matmul_q(MLC_Q8F16_1, false, 0, 2, 21, 512, 512);
  case_gated_q(MLC_Q4F16_1, MLC_KACT_SILU, 1, 45, 1024, 1024);
  case_gated_q(MLC_Q4F16_1, MLC_KACT_GELU_TANH, 5, 16, 768, 771);

  /* every other structural variant (generic kernel) of the multi-variant ops, small odd sizes */
  for (int dt = 0; dt < 3; dt++)
    for (int ao = 0; ao < 2; ao++) {
      case_rmsnorm(DT[dt], ao, 3, 30, 10, 35, 1e-6f);
      case_add_rmsnorm(DT[dt], ao, 2, 23, 1e-6f);
    }
  for (int v = 0; v < 24; v++) {
    int dt = v % 3, bias = (v / 3) % 2, ex = (v / 6) % 2, cap = v / 12;
    int64_t K = 17 + v;
    case_matmul(DT[dt], bias, ex ? 3 : 0, ex ? 1 + v % 3 : 0, cap ? 1.25f : 0, v % 2 ? 1 : 5, 3 + v % 5, K, K + v % 3);
  }
  for (int v = 0; v < 18; v++) {
    int dt = v % 3, a = (v / 3) % 3, ex = v / 9;
    int64_t K = 9 + 2 * v;
    case_gated(DT[dt], a, !ex && v % 2, ex ? 4 : 0, ex ? 1 + v % 2 : 0, v % 2 ? 1 : 5, 2 + v % 4, K, K + v % 2);
  }
  /* sample: fewer tokens than GPU lanes, a strided row with partial lane chunks, ties at every
   * cut (the index cut-off), a 128k vocabulary */
  case_sample(16, 50, 50, false);
  case_sample(16, 3001, 3004, false);
  case_sample(16, 3001, 3001, true);
  case_sample(8, 128256, 128256, false);
}

/* ================= running and checking ================= */

static void fail(const tcase *c, const char *variant, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(const tcase *c, const char *variant, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL %s [%s]: ", c->name, variant);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static bool check_out(const tcase *c, const char *variant, int bi) {
  const tbuf *b = &c->b[bi];
  bool ok = true;
  double maxref = 0, maxerr = 0;
  size_t worst = (size_t)-1, nbad = 0, firstbad = 0;
  for (size_t i = 0; i < b->n; i++) {
    if (!b->touch[i]) {
      if (memcmp((const char *)b->p + 4 * i, (const char *)b->init + 4 * i, 4) != 0) {
        if (!nbad++)
          firstbad = i;
      }
      continue;
    }
    if (b->dt == MLC_I32) {
      int32_t got = ((const int32_t *)b->p)[i];
      if (got != (int32_t)b->ref[i]) {
        if (ok)
          fail(c, variant, "%s[%zu] = %d, want %d", c->bname[bi], i, got, (int32_t)b->ref[i]);
        ok = false;
      }
      continue;
    }
    const double *ref = b->ref_i8 && i8_variant(variant) ? b->ref_i8 : b->ref;
    double got = ((const float *)b->p)[i], err = got == ref[i] ? 0 : fabs(got - ref[i]); /* equal infinities: 0 */
    if (isfinite(ref[i]) && fabs(ref[i]) > maxref)
      maxref = fabs(ref[i]);
    if (!(err <= maxerr)) { /* NaN counts as the worst */
      maxerr = isnan(err) ? INFINITY : err;
      worst = i;
    }
  }
  if (b->dt != MLC_I32 && worst != (size_t)-1) {
    double rel = maxerr / (maxref > 0 ? maxref : 1.0);
    if (!(rel <= b->tol)) {
      fail(c, variant, "%s: max rel error %.3g > %.0e at [%zu]: got %.9g, want %.9g", c->bname[bi], rel, b->tol, worst,
           ((const float *)b->p)[worst], (b->ref_i8 && i8_variant(variant) ? b->ref_i8 : b->ref)[worst]);
      ok = false;
    }
  }
  if (nbad) {
    if (b->dt == MLC_I32)
      fail(c, variant, "%s: %zu element(s) written that must stay untouched (first [%zu] = %d, was %d)", c->bname[bi],
           nbad, firstbad, ((const int32_t *)b->p)[firstbad], ((const int32_t *)b->init)[firstbad]);
    else
      fail(c, variant, "%s: %zu element(s) written that must stay untouched (first [%zu] = %.9g, was %.9g)",
           c->bname[bi], nbad, firstbad, ((const float *)b->p)[firstbad], ((const float *)b->init)[firstbad]);
    ok = false;
  }
  return ok;
}

static void run_case(mlc_pool *pool, tcase *c, mlc_kfn fn, const char *variant) {
  if (!fn) {
    fail(c, variant, "kernel %s not found", variant[0] == 's' ? c->spec_name : c->gen_name);
    failed++;
    return;
  }
  int64_t ip[MLC_KIP] = {0};
  float fp[MLC_KFP];
  memcpy(ip, c->d.size, sizeof c->d.size);
  for (int i = 0; i < 4; i++)
    ip[MLC_KDYN + i] = c->dyn[i];
  memcpy(fp, c->d.fv, sizeof fp);
  void *bufs[KIR_MAX_BUFS] = {0};
  void *snap[KIR_MAX_BUFS] = {0};
  for (int i = 0; i < c->nbuf; i++) {
    tbuf *b = &c->b[i];
    bufs[i] = b->p;
    if (b->out)
      memcpy(b->p, b->init, 4 * b->n);
  }
  for (int i = 0; i < c->nbuf; i++) { /* after the outputs are reset: views may overlap nothing else */
    snap[i] = malloc(c->b[i].bytes);
    memcpy(snap[i], c->b[i].p, c->b[i].bytes);
  }
  mlc_pool_run(pool, fn, bufs, ip, fp, c->grid);
  bool ok = true;
  for (int i = 0; i < c->nbuf; i++) {
    if (c->b[i].out)
      ok &= check_out(c, variant, i);
    else if (memcmp(snap[i], c->b[i].p, c->b[i].bytes) != 0) {
      fail(c, variant, "input %s was written", c->bname[i]);
      ok = false;
    }
    free(snap[i]);
  }
  if (ok)
    passed++;
  else
    failed++;
}

/* Lowers both forms of the case's kernel, checks the buffer list against the case's, and
 * appends the specialised kernel to src (once per name). */
static void lower_case(tcase *c, mlc_buf *src) {
  for (int generic = 0; generic < 2; generic++) {
    mlc_kdesc d;
    memcpy(&d, &c->d, sizeof d);
    d.generic = generic;
    kir_kernel *k = mlc_lower(&d, mlc_tunables_for(KIR_LANG_C));
    snprintf(generic ? c->gen_name : c->spec_name, sizeof c->spec_name, "%s", k->name);
    int nb = 0;
    for (int i = 0; i < k->nbuf; i++) {
      const kir_buf *b = &k->bufs[i];
      if (b->local)
        continue;
      if (nb < c->nbuf) {
        const tbuf *t = &c->b[nb];
        if (b->dtype != t->dt || b->write != t->out) {
          fail(c, generic ? "generic" : "spec", "buffer %d (%s): kernel wants %s%s, test gives %s%s", nb, b->name,
               mlc_dtype_name(b->dtype), b->write ? " (written)" : "", mlc_dtype_name(t->dt),
               t->out ? " (written)" : "");
          c->bad = true;
        }
        snprintf(c->bname[nb], sizeof c->bname[nb], "%s", b->name);
      }
      nb++;
    }
    if (nb != c->nbuf || nb != mlc_kdesc_nbufs(&d)) {
      fail(c, generic ? "generic" : "spec", "kernel takes %d buffers (mlc_kdesc_nbufs %d), test gives %d", nb,
           mlc_kdesc_nbufs(&d), c->nbuf);
      c->bad = true;
    }
    if (!generic) {
      bool seen = false;
      for (tcase *o = cases; o < c; o++)
        seen |= strcmp(o->spec_name, c->spec_name) == 0;
      if (!seen) {
        mlc_buf_puts(src, "\n");
        kir_render(k, KIR_LANG_C, src);
      }
    }
    kir_free(k);
  }
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  double t0 = mlc_now();
  build_cases();

  mlc_buf src = {0};
  mlc_buf_puts(&src, kir_c_prelude());
  for (int i = 0; i < ncases; i++)
    lower_case(&cases[i], &src);
  mlc_cpu_lib *lib = NULL;
  double tc = mlc_now();
  mlc_status st = src.oom ? MLC_ERR_NOMEM : mlc_cpu_lib_build(src.data, 0, &lib);
  tc = mlc_now() - tc;
  if (st != MLC_OK) {
    printf("FAIL compiling the specialised kernels: %s\n", mlc_last_error());
    failed++;
  }
  mlc_buf_free(&src);

  mlc_pool *pool = NULL;
  if (mlc_pool_new(2, &pool) != MLC_OK) {
    printf("FAIL mlc_pool_new: %s\n", mlc_last_error());
    return 1;
  }
  for (int i = 0; i < ncases; i++) {
    tcase *c = &cases[i];
    if (c->bad) {
      failed += 2;
      continue;
    }
    if (lib)
      run_case(pool, c, mlc_cpu_lib_sym(lib, c->spec_name), "spec");
    run_case(pool, c, mlc_generic_find(c->gen_name), "generic");
  }
  fprintf(stderr, "test_kernels: %d cases, compile %.2f s%s, total %.2f s\n", ncases, tc,
          lib && mlc_cpu_lib_was_cached(lib) ? " (cached)" : "", mlc_now() - t0);
  mlc_pool_free(pool);
  if (lib)
    mlc_cpu_lib_free(lib);
  for (int i = 0; i < nallocs; i++)
    free(allocs[i]);
  free(allocs);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
