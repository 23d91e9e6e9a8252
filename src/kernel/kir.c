/* kir.c: kernel IR construction: arena, interning (hash-consing) and constant folding. */
#include "kernel/kir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kir_arena {
  struct kir_arena *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

static void *arena_alloc(kir_kernel *k, size_t n) {
  n = (n + 15) & ~(size_t)15;
  kir_arena *a = k->arena;
  if (!a || a->used + n > a->cap) {
    size_t cap = n > 65536 ? n : 65536;
    kir_arena *na = malloc(sizeof *na + cap);
    MLC_ASSERT(na != NULL);
    na->next = a;
    na->used = 0;
    na->cap = cap;
    k->arena = na;
    a = na;
  }
  void *p = a->data + a->used;
  a->used += n;
  memset(p, 0, n);
  return p;
}

kir_kernel *kir_new(const char *name) {
  kir_kernel *k = calloc(1, sizeof *k);
  MLC_ASSERT(k != NULL);
  snprintf(k->name, sizeof k->name, "%s", name);
  k->intern_cap = 1024;
  k->intern = calloc((size_t)k->intern_cap, sizeof *k->intern);
  MLC_ASSERT(k->intern != NULL);
  kir_var(k, "g", KIR_I64); /* var 0: the grid index */
  return k;
}

void kir_free(kir_kernel *k) {
  if (!k)
    return;
  kir_arena *a = k->arena;
  while (a) {
    kir_arena *n = a->next;
    free(a);
    a = n;
  }
  free(k->intern);
  kir_free(k->alt);
  kir_free(k->pre);
  free(k);
}

int kir_buf_arg(kir_kernel *k, const char *name, mlc_dtype dt, bool write) {
  MLC_ASSERT(k->nbuf < KIR_MAX_BUFS);
  kir_buf *b = &k->bufs[k->nbuf];
  snprintf(b->name, sizeof b->name, "%s", name);
  b->dtype = dt;
  b->write = write;
  return k->nbuf++;
}

int kir_buf_local(kir_kernel *k, const char *name, mlc_dtype dt, int64_t len) {
  int i = kir_buf_arg(k, name, dt, true);
  k->bufs[i].local = true;
  k->bufs[i].local_len = len;
  return i;
}

int kir_buf_shared(kir_kernel *k, const char *name, mlc_dtype dt, int64_t len) {
  int i = kir_buf_local(k, name, dt, len);
  k->bufs[i].shared = true;
  return i;
}

int kir_var(kir_kernel *k, const char *name, kir_type t) {
  MLC_ASSERT(k->nvar < KIR_MAX_VARS);
  k->var_type[k->nvar] = t;
  snprintf(k->var_name[k->nvar], sizeof k->var_name[0], "%s", name);
  return k->nvar++;
}

/* ---- interning ---- */
static uint64_t node_hash(const kir_node *n) {
  uint64_t h = mlc_hash64(&n->op, sizeof n->op, 0);
  h = mlc_hash64(&n->type, sizeof n->type, h);
  h = mlc_hash64(&n->a, sizeof n->a, h);
  h = mlc_hash64(&n->i, sizeof n->i, h);
  h = mlc_hash64(&n->f, sizeof n->f, h);
  h = mlc_hash64(n->src, sizeof n->src, h);
  return h;
}
static bool node_eq(const kir_node *x, const kir_node *y) {
  return x->op == y->op && x->type == y->type && x->a == y->a && x->i == y->i &&
         memcmp(&x->f, &y->f, sizeof x->f) == 0 && memcmp(x->src, y->src, sizeof x->src) == 0;
}

static void intern_grow(kir_kernel *k) {
  int cap = k->intern_cap * 2;
  kir_node **t = calloc((size_t)cap, sizeof *t);
  MLC_ASSERT(t != NULL);
  for (int i = 0; i < k->intern_cap; i++) {
    kir_node *n = k->intern[i];
    while (n) {
      kir_node *next = n->hnext;
      uint64_t h = node_hash(n) & (uint64_t)(cap - 1);
      n->hnext = t[h];
      t[h] = n;
      n = next;
    }
  }
  free(k->intern);
  k->intern = t;
  k->intern_cap = cap;
}

static kir_node *intern(kir_kernel *k, const kir_node *tmpl) {
  uint64_t h = node_hash(tmpl) & (uint64_t)(k->intern_cap - 1);
  for (kir_node *n = k->intern[h]; n; n = n->hnext)
    if (node_eq(n, tmpl))
      return n;
  kir_node *n = arena_alloc(k, sizeof *n);
  *n = *tmpl;
  n->id = k->nnodes++;
  n->hnext = k->intern[h];
  k->intern[h] = n;
  if (k->nnodes > k->intern_cap)
    intern_grow(k);
  return n;
}

static kir_node *stmt(kir_kernel *k, const kir_node *tmpl) {
  kir_node *n = arena_alloc(k, sizeof *n);
  *n = *tmpl;
  n->id = k->nnodes++;
  return n;
}

kir_node *kir_i(kir_kernel *k, int64_t v) {
  kir_node t = {.op = KIR_CONST, .type = KIR_I64, .i = v};
  return intern(k, &t);
}
kir_node *kir_f(kir_kernel *k, double v) {
  kir_node t = {.op = KIR_CONST, .type = KIR_F32, .f = (double)(float)v};
  return intern(k, &t);
}
kir_node *kir_ip(kir_kernel *k, int idx) {
  kir_node t = {.op = KIR_IPARAM, .type = KIR_I64, .a = idx};
  return intern(k, &t);
}
kir_node *kir_fp(kir_kernel *k, int idx) {
  kir_node t = {.op = KIR_FPARAM, .type = KIR_F32, .a = idx};
  return intern(k, &t);
}
kir_node *kir_v(kir_kernel *k, int var) {
  MLC_ASSERT(var >= 0 && var < k->nvar);
  kir_node t = {.op = KIR_VAR, .type = k->var_type[var], .a = var};
  return intern(k, &t);
}
kir_node *kir_grid(kir_kernel *k) { return kir_v(k, 0); }

kir_node *kir_load(kir_kernel *k, int buf, kir_node *idx) {
  MLC_ASSERT(buf >= 0 && buf < k->nbuf);
  mlc_dtype dt = k->bufs[buf].dtype;
  kir_type t = (dt == MLC_F32 || dt == MLC_F16 || dt == MLC_BF16) ? KIR_F32 : KIR_I64;
  kir_node n = {.op = KIR_LOAD, .type = t, .a = buf, .src = {idx}};
  return intern(k, &n);
}

static bool is_ci(const kir_node *n, int64_t v) {
  return n->op == KIR_CONST && n->type == KIR_I64 && n->i == v;
}
static bool is_cf(const kir_node *n, double v) {
  return n->op == KIR_CONST && n->type == KIR_F32 && n->f == v;
}

kir_node *kir_bin(kir_kernel *k, kir_op op, kir_node *a, kir_node *b) {
  bool cmp = op >= KIR_LT && op <= KIR_NE;
  bool logic = op == KIR_AND || op == KIR_OR;
  if (!logic)
    MLC_ASSERT(a->type == b->type);
  if (op == KIR_SHR || op == KIR_BITAND)
    MLC_ASSERT(a->type == KIR_I64 || a->type == KIR_VI32);
  if (op == KIR_SHL || op == KIR_BITOR || op == KIR_BITXOR)
    MLC_ASSERT(a->type == KIR_I64);
  if (a->type == KIR_VF32 || a->type == KIR_VI32) /* vectors: + - * (and >> & on VI32) */
    MLC_ASSERT(op == KIR_ADD || op == KIR_SUB || op == KIR_MUL || op == KIR_SHR || op == KIR_BITAND);
  kir_type t = (cmp || logic) ? KIR_BOOL : a->type;
  /* constant folding */
  if (a->op == KIR_CONST && b->op == KIR_CONST && a->type == KIR_I64) {
    int64_t x = a->i, y = b->i;
    switch (op) {
    case KIR_ADD: return kir_i(k, x + y);
    case KIR_SUB: return kir_i(k, x - y);
    case KIR_MUL: return kir_i(k, x * y);
    case KIR_DIV: if (y) return kir_i(k, x / y); break;
    case KIR_MOD: if (y) return kir_i(k, x % y); break;
    case KIR_MAX: return kir_i(k, x > y ? x : y);
    case KIR_MIN: return kir_i(k, x < y ? x : y);
    case KIR_SHR: return kir_i(k, x >> y);
    case KIR_BITAND: return kir_i(k, x & y);
    case KIR_SHL: return kir_i(k, (int64_t)(((uint64_t)x << y) & 0xffffffffu));
    case KIR_BITOR: return kir_i(k, x | y);
    case KIR_BITXOR: return kir_i(k, x ^ y);
    default: break;
    }
  }
  if (a->op == KIR_CONST && b->op == KIR_CONST && a->type == KIR_F32) {
    double x = a->f, y = b->f;
    switch (op) {
    case KIR_ADD: return kir_f(k, (float)x + (float)y);
    case KIR_SUB: return kir_f(k, (float)x - (float)y);
    case KIR_MUL: return kir_f(k, (float)x * (float)y);
    case KIR_DIV: if (y != 0) return kir_f(k, (float)x / (float)y); break;
    default: break;
    }
  }
  /* identities */
  if (t == KIR_I64) {
    if (op == KIR_ADD && is_ci(a, 0)) return b;
    if ((op == KIR_ADD || op == KIR_SUB) && is_ci(b, 0)) return a;
    if (op == KIR_MUL && (is_ci(a, 0) || is_ci(b, 0))) return kir_i(k, 0);
    if (op == KIR_MUL && is_ci(a, 1)) return b;
    if ((op == KIR_MUL || op == KIR_DIV) && is_ci(b, 1)) return a;
    if (op == KIR_MOD && is_ci(b, 1)) return kir_i(k, 0);
    if (op == KIR_SHR && is_ci(b, 0)) return a;
  } else if (t == KIR_F32) {
    if (op == KIR_MUL && is_cf(a, 1.0)) return b;
    if ((op == KIR_MUL || op == KIR_DIV) && is_cf(b, 1.0)) return a;
    if (op == KIR_ADD && is_cf(a, 0.0)) return b;
    if ((op == KIR_ADD || op == KIR_SUB) && is_cf(b, 0.0)) return a;
  }
  /* canonical order for commutative ops, so a+b and b+a intern together */
  if ((op == KIR_ADD || op == KIR_MUL || op == KIR_MAX || op == KIR_MIN) && a->op == KIR_CONST &&
      b->op != KIR_CONST) {
    kir_node *tmp = a;
    a = b;
    b = tmp;
  }
  kir_node n = {.op = op, .type = t, .src = {a, b}};
  return intern(k, &n);
}

kir_node *kir_un(kir_kernel *k, kir_op op, kir_node *a) {
  kir_type t = a->type;
  MLC_ASSERT((t != KIR_VF32 && t != KIR_VI32) || (op == KIR_TOF && t == KIR_VI32)); /* vectors: VI32 -> VF32 only */
  if (op == KIR_TOF)
    t = a->type == KIR_VI32 ? KIR_VF32 : KIR_F32;
  else if (op == KIR_TOI)
    t = KIR_I64;
  else if (op == KIR_NOT)
    t = KIR_BOOL;
  if (a->op == KIR_CONST) {
    if (op == KIR_TOF && a->type == KIR_I64) return kir_f(k, (double)a->i);
    if (op == KIR_NEG && a->type == KIR_I64) return kir_i(k, -a->i);
    if (op == KIR_NEG && a->type == KIR_F32) return kir_f(k, -a->f);
    if (op == KIR_SQRT && a->type == KIR_F32) return kir_f(k, sqrtf((float)a->f));
  }
  kir_node n = {.op = op, .type = t, .src = {a}};
  return intern(k, &n);
}

kir_node *kir_tof_exact(kir_kernel *k, kir_node *a) {
  MLC_ASSERT(a->type == KIR_I64);
  if (a->op == KIR_CONST)
    return kir_f(k, (double)a->i);
  kir_node n = {.op = KIR_TOF, .type = KIR_F32, .i = 1, .src = {a}};
  return intern(k, &n);
}

kir_node *kir_sel(kir_kernel *k, kir_node *c, kir_node *a, kir_node *b) {
  MLC_ASSERT(a->type == b->type);
  kir_node n = {.op = KIR_SELECT, .type = a->type, .src = {c, a, b}};
  return intern(k, &n);
}

kir_node *kir_seq(kir_kernel *k, kir_node **items, int n) {
  kir_node t = {.op = KIR_SEQ};
  kir_node *s = stmt(k, &t);
  s->list = arena_alloc(k, sizeof(kir_node *) * (size_t)(n ? n : 1));
  memcpy(s->list, items, sizeof(kir_node *) * (size_t)n);
  s->nlist = n;
  return s;
}
kir_node *kir_for(kir_kernel *k, int var, kir_node *lo, kir_node *hi, kir_loop kind, kir_node *body) {
  kir_node t = {.op = KIR_FOR, .a = var, .i = kind, .src = {lo, hi, body}};
  return stmt(k, &t);
}
kir_node *kir_local(kir_kernel *k, int var, kir_node *init) {
  MLC_ASSERT(init->type == k->var_type[var]);
  kir_node t = {.op = KIR_LOCAL, .a = var, .src = {init}};
  return stmt(k, &t);
}
kir_node *kir_assign(kir_kernel *k, int var, kir_node *val) {
  MLC_ASSERT(val->type == k->var_type[var]);
  kir_node t = {.op = KIR_ASSIGN, .a = var, .src = {val}};
  return stmt(k, &t);
}
kir_node *kir_store(kir_kernel *k, int buf, kir_node *idx, kir_node *val) {
  MLC_ASSERT(buf >= 0 && buf < k->nbuf && k->bufs[buf].write);
  kir_node t = {.op = KIR_STORE, .a = buf, .src = {idx, val}};
  return stmt(k, &t);
}
kir_node *kir_if(kir_kernel *k, kir_node *c, kir_node *then_, kir_node *else_) {
  kir_node t = {.op = KIR_IF, .src = {c, then_, else_}};
  return stmt(k, &t);
}

kir_node *kir_lane(kir_kernel *k) {
  kir_node t = {.op = KIR_LANE, .type = KIR_I64};
  return intern(k, &t);
}
kir_node *kir_lane_red(kir_kernel *k, kir_op op, kir_node *a, int64_t mode) {
  MLC_ASSERT((op == KIR_LANE_SUM || op == KIR_LANE_XRED || op == KIR_LANE_MAX) && a->type == KIR_F32);
  kir_node t = {.op = op, .type = KIR_F32, .i = mode, .src = {a}};
  return intern(k, &t);
}
kir_node *kir_vload(kir_kernel *k, int local, int buf, kir_node *idx) {
  MLC_ASSERT(local >= 0 && local < k->nbuf && k->bufs[local].local && buf >= 0 && buf < k->nbuf && !k->bufs[buf].local);
  kir_node t = {.op = KIR_VLOAD, .a = buf, .i = local, .src = {idx}};
  return stmt(k, &t);
}
kir_node *kir_vload_at(kir_kernel *k, int local, int64_t off, int64_t n, int buf, kir_node *idx) {
  MLC_ASSERT(local >= 0 && local < k->nbuf && k->bufs[local].local && off >= 0 && n > 0 && off + n <= k->bufs[local].local_len);
  kir_node *s = kir_vload(k, local, buf, idx);
  s->src[1] = kir_i(k, off);
  s->src[2] = kir_i(k, n);
  return s;
}

kir_node *kir_gcnt(kir_kernel *k) {
  kir_node t = {.op = KIR_GCNT, .type = KIR_I64};
  return intern(k, &t);
}
kir_node *kir_vld(kir_kernel *k, int buf, kir_node *idx) {
  MLC_ASSERT(buf >= 0 && buf < k->nbuf && idx->type == KIR_I64);
  mlc_dtype dt = k->bufs[buf].dtype;
  MLC_ASSERT(dt == MLC_F32 || dt == MLC_F16 || dt == MLC_BF16 || dt == MLC_U32 || dt == MLC_I32 || dt == MLC_I8);
  /* I8: the 64 bytes from element idx as 16 words */
  kir_node n = {.op = KIR_VLD, .type = dt == MLC_F32 || dt == MLC_F16 || dt == MLC_BF16 ? KIR_VF32 : KIR_VI32, .a = buf, .src = {idx}};
  return intern(k, &n);
}
kir_node *kir_vld4(kir_kernel *k, int buf, kir_node *idx) {
  MLC_ASSERT(buf >= 0 && buf < k->nbuf && (k->bufs[buf].dtype == MLC_F32 || k->bufs[buf].dtype == MLC_F16));
  kir_node n = {.op = KIR_VLD4, .type = KIR_VF32, .a = buf, .src = {idx}};
  return intern(k, &n);
}
kir_node *kir_vdot(kir_kernel *k, kir_node *acc, kir_node *u8, kir_node *s8) {
  MLC_ASSERT(acc->type == KIR_VI32 && u8->type == KIR_VI32 && s8->type == KIR_VI32);
  kir_node n = {.op = KIR_VDOT, .type = KIR_VI32, .src = {acc, u8, s8}};
  return intern(k, &n);
}
kir_node *kir_dp4a(kir_kernel *k, kir_node *acc, kir_node *a, kir_node *b) {
  MLC_ASSERT(acc->type == KIR_I64 && a->type == KIR_I64 && b->type == KIR_I64);
  kir_node n = {.op = KIR_DP4A, .type = KIR_I64, .src = {acc, a, b}};
  return intern(k, &n);
}
kir_node *kir_barrier(kir_kernel *k) {
  kir_node t = {.op = KIR_BARRIER};
  return stmt(k, &t);
}
kir_node *kir_mma_s8(kir_kernel *k, int d, int64_t off, kir_node *const *a, kir_node *const *b) {
  MLC_ASSERT(d >= 0 && d < k->nbuf && k->bufs[d].local && k->bufs[d].dtype == MLC_I32 && off >= 0 &&
             off + 4 <= k->bufs[d].local_len);
  kir_node *w[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  for (int i = 0; i < 6; i++)
    MLC_ASSERT(w[i]->type == KIR_I64);
  kir_node *s = kir_seq(k, w, 6);
  s->op = KIR_MMA_S8;
  s->a = d;
  s->i = off;
  return s;
}
int kir_buf_scratch(kir_kernel *k, const char *name, mlc_dtype dt, kir_node *len) {
  int i = kir_buf_arg(k, name, dt, true);
  k->bufs[i].local = true; /* not bound by the caller */
  k->bufs[i].scratch_len = len;
  return i;
}
kir_node *kir_vbcast(kir_kernel *k, kir_node *x) {
  MLC_ASSERT(x->type == KIR_F32 || x->type == KIR_I64);
  kir_node n = {.op = KIR_VBCAST, .type = x->type == KIR_F32 ? KIR_VF32 : KIR_VI32, .src = {x}};
  return intern(k, &n);
}
kir_node *kir_vsum(kir_kernel *k, kir_node *v) {
  MLC_ASSERT(v->type == KIR_VF32);
  kir_node n = {.op = KIR_VSUM, .type = KIR_F32, .src = {v}};
  return intern(k, &n);
}
kir_node *kir_vstore(kir_kernel *k, int buf, kir_node *idx, kir_node *v) {
  MLC_ASSERT(buf >= 0 && buf < k->nbuf && k->bufs[buf].write && k->bufs[buf].dtype == MLC_F32 && v->type == KIR_VF32);
  kir_node t = {.op = KIR_VSTORE, .a = buf, .src = {idx, v}};
  return stmt(k, &t);
}

void kir_push(kir_block *b, kir_node *s) {
  MLC_ASSERT(b->n < (int)(sizeof b->items / sizeof b->items[0]));
  b->items[b->n++] = s;
}
kir_node *kir_block_done(kir_kernel *k, kir_block *b) { return kir_seq(k, b->items, b->n); }

static void scan_params(kir_kernel *k, const kir_node *n) {
  if (!n)
    return;
  if (n->op == KIR_IPARAM && n->a + 1 > k->nip)
    k->nip = n->a + 1;
  if (n->op == KIR_FPARAM && n->a + 1 > k->nfp)
    k->nfp = n->a + 1;
  for (int i = 0; i < 3; i++)
    scan_params(k, n->src[i]);
  for (int i = 0; i < n->nlist; i++)
    scan_params(k, n->list[i]);
}

void kir_finish(kir_kernel *k, kir_node *body) {
  k->body = body;
  scan_params(k, body);
  scan_params(k, k->prologue);
  for (int i = 0; i < k->nbuf; i++)
    scan_params(k, k->bufs[i].scratch_len);
}
