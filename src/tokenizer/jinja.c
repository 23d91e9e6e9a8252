/* jinja.c: lexer, parser and tree-walking interpreter of the Jinja2 subset chat templates use.
 * See jinja.h for the environment it mirrors; filters, tests and methods are in jinja_lib.c. */
#include "tokenizer/jinja_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================================================ */
/* arena                                                                                        */
/* ============================================================================================ */

void *jar_alloc(jarena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (!a->head || a->head->used + n > a->head->cap) {
    size_t cap = n > 32768 ? n : 65536;
    jblock *b = malloc(sizeof *b + cap);
    if (!b) {
      mlc_err(MLC_ERR_NOMEM, "out of memory in the template engine");
      longjmp(*a->oom, 1);
    }
    b->used = 0;
    b->cap = cap;
    if (a->head && n > 32768) { /* keep the current block's free space for small allocations */
      b->next = a->head->next;
      a->head->next = b;
      b->used = n;
      return b->data;
    }
    b->next = a->head;
    a->head = b;
  }
  void *p = a->head->data + a->head->used;
  a->head->used += n;
  return p;
}

void jar_free(jarena *a) {
  jblock *b = a->head;
  while (b) {
    jblock *nx = b->next;
    free(b);
    b = nx;
  }
  a->head = NULL;
}

/* ============================================================================================ */
/* errors, strings, values                                                                      */
/* ============================================================================================ */

mlc_status jerr(int line, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return mlc_err(MLC_ERR_FORMAT, "template line %d: %s", line, msg);
}

jstr *jstr_new(jarena *a, const char *s, size_t n) {
  jstr *r = jar_alloc(a, sizeof *r + n + 1);
  r->len = n;
  if (n)
    memcpy(r->s, s, n);
  r->s[n] = 0;
  return r;
}
jv jv_str(jarena *a, const char *s, size_t n) {
  jv v = {.t = JV_STR};
  v.u.s = jstr_new(a, s, n);
  return v;
}
jv jv_cstr(jarena *a, const char *s) { return jv_str(a, s, strlen(s)); }
jv jv_undef(jstr *hint) {
  jv v = {.t = JV_UNDEF};
  v.u.s = hint;
  return v;
}
jv jv_none(void) { return (jv){.t = JV_NONE}; }
jv jv_bool(bool b) {
  jv v = {.t = JV_BOOL};
  v.u.b = b;
  return v;
}
jv jv_int(int64_t i) {
  jv v = {.t = JV_INT};
  v.u.i = i;
  return v;
}
jv jv_float(double f) {
  jv v = {.t = JV_FLOAT};
  v.u.f = f;
  return v;
}
jv jv_list(jarena *a, size_t cap) {
  jv v = {.t = JV_LIST};
  v.u.l = jar_alloc(a, sizeof(jlist));
  memset(v.u.l, 0, sizeof(jlist));
  if (cap) {
    v.u.l->v = jar_alloc(a, cap * sizeof(jv));
    v.u.l->cap = cap;
  }
  return v;
}
jv jv_dict(jarena *a) {
  jv v = {.t = JV_DICT};
  v.u.d = jar_alloc(a, sizeof(jdict));
  memset(v.u.d, 0, sizeof(jdict));
  return v;
}
void jl_push(jarena *a, jlist *l, jv v) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 4;
    jv *nv = jar_alloc(a, nc * sizeof(jv));
    if (l->n)
      memcpy(nv, l->v, l->n * sizeof(jv));
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = v;
}
long jd_find_str(const jdict *d, const char *s, size_t n) {
  for (size_t i = 0; i < d->n; i++)
    if (d->k[i].t == JV_STR && d->k[i].u.s->len == n && memcmp(d->k[i].u.s->s, s, n) == 0)
      return (long)i;
  return -1;
}
long jd_find(const jdict *d, jv k) {
  if (k.t == JV_STR)
    return jd_find_str(d, k.u.s->s, k.u.s->len);
  for (size_t i = 0; i < d->n; i++)
    if (jv_eq(d->k[i], k))
      return (long)i;
  return -1;
}
void jd_set(jarena *a, jdict *d, jv k, jv v) {
  long i = jd_find(d, k);
  if (i >= 0) {
    d->v[i] = v;
    return;
  }
  if (d->n == d->cap) {
    size_t nc = d->cap ? d->cap * 2 : 8;
    jv *nk = jar_alloc(a, nc * sizeof(jv)), *nv = jar_alloc(a, nc * sizeof(jv));
    if (d->n) {
      memcpy(nk, d->k, d->n * sizeof(jv));
      memcpy(nv, d->v, d->n * sizeof(jv));
    }
    d->k = nk;
    d->v = nv;
    d->cap = nc;
  }
  d->k[d->n] = k;
  d->v[d->n] = v;
  d->n++;
}

void sb_init(jsb *b, jarena *a) {
  memset(b, 0, sizeof *b);
  b->ar = a;
}
void sb_add(jsb *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 64;
    while (nc < b->len + n + 1)
      nc *= 2;
    char *np = jar_alloc(b->ar, nc);
    if (b->len)
      memcpy(np, b->p, b->len);
    b->p = np;
    b->cap = nc;
  }
  if (n)
    memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}
void sb_puts(jsb *b, const char *s) { sb_add(b, s, strlen(s)); }
void sb_printf(jsb *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof tmp) {
    sb_add(b, tmp, (size_t)n);
    return;
  }
  char *big = jar_alloc(b->ar, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb_add(b, big, (size_t)n);
}
jv sb_value(jsb *b) { return jv_str(b->ar, b->p ? b->p : "", b->len); }

/* ---- utf-8 ---- */
size_t u8_dec(const char *s, size_t n, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  if (n == 0) {
    *cp = 0;
    return 0;
  }
  unsigned c = u[0];
  size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (len > n)
    len = 1;
  uint32_t r = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
  for (size_t i = 1; i < len; i++) {
    if ((u[i] & 0xc0) != 0x80) {
      *cp = c;
      return 1;
    }
    r = (r << 6) | (u[i] & 0x3f);
  }
  *cp = r;
  return len;
}
size_t u8_enc(uint32_t cp, char *o) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}
size_t u8_count(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += u8_dec(s + i, n - i, &cp);
    c++;
  }
  return c;
}
bool py_isspace(uint32_t cp) {
  return (cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* ---- Python-compatible value semantics ---- */
bool jv_truthy(jv v) {
  switch (v.t) {
  case JV_UNDEF:
  case JV_NONE: return false;
  case JV_BOOL: return v.u.b;
  case JV_INT: return v.u.i != 0;
  case JV_FLOAT: return v.u.f != 0.0;
  case JV_STR: return v.u.s->len > 0;
  case JV_LIST: return v.u.l->n > 0;
  case JV_DICT: return v.u.d->n > 0;
  default: return true;
  }
}

static bool is_num(jv v) { return v.t == JV_BOOL || v.t == JV_INT || v.t == JV_FLOAT; }
static double num_f(jv v) {
  return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t num_i(jv v) { return v.t == JV_INT ? v.u.i : v.t == JV_BOOL ? v.u.b : (int64_t)v.u.f; }

bool jv_eq(jv a, jv b) {
  if (is_num(a) && is_num(b)) {
    if (a.t == JV_FLOAT || b.t == JV_FLOAT)
      return num_f(a) == num_f(b);
    return num_i(a) == num_i(b);
  }
  if (a.t != b.t)
    return false;
  switch (a.t) {
  case JV_UNDEF:
  case JV_NONE: return true;
  case JV_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->s, b.u.s->s, a.u.s->len) == 0;
  case JV_LIST:
    if (a.u.l->n != b.u.l->n)
      return false;
    for (size_t i = 0; i < a.u.l->n; i++)
      if (!jv_eq(a.u.l->v[i], b.u.l->v[i]))
        return false;
    return true;
  case JV_DICT:
    if (a.u.d->n != b.u.d->n)
      return false;
    for (size_t i = 0; i < a.u.d->n; i++) {
      long j = jd_find(b.u.d, a.u.d->k[i]);
      if (j < 0 || !jv_eq(a.u.d->v[i], b.u.d->v[j]))
        return false;
    }
    return true;
  case JV_NS: return a.u.d == b.u.d;
  case JV_FUNC: return a.u.fn == b.u.fn;
  case JV_LOOP: return a.u.lp == b.u.lp;
  }
  return false;
}

const char *jv_typename(jv v) {
  static const char *names[] = {"Undefined", "NoneType", "bool",      "int",      "float",      "str",
                                "list",      "dict",     "Namespace", "function", "LoopContext"};
  if (v.t == JV_LIST && v.u.l->tuple)
    return "tuple";
  return names[v.t];
}

mlc_status jv_cmp(int line, jv a, jv b, int *res) {
  if (is_num(a) && is_num(b)) {
    if (a.t == JV_FLOAT || b.t == JV_FLOAT) {
      double x = num_f(a), y = num_f(b);
      *res = x < y ? -1 : x > y ? 1 : 0;
    } else {
      int64_t x = num_i(a), y = num_i(b);
      *res = x < y ? -1 : x > y ? 1 : 0;
    }
    return MLC_OK;
  }
  if (a.t == JV_STR && b.t == JV_STR) {
    size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
    int r = memcmp(a.u.s->s, b.u.s->s, n);
    *res = r < 0 ? -1 : r > 0 ? 1 : a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len ? 1 : 0;
    return MLC_OK;
  }
  if (a.t == JV_LIST && b.t == JV_LIST) {
    for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
      if (jv_eq(a.u.l->v[i], b.u.l->v[i]))
        continue;
      return jv_cmp(line, a.u.l->v[i], b.u.l->v[i], res);
    }
    *res = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n ? 1 : 0;
    return MLC_OK;
  }
  if (a.t == JV_UNDEF || b.t == JV_UNDEF) {
    jv u = a.t == JV_UNDEF ? a : b;
    return jerr(line, "%s", u.u.s ? u.u.s->s : "value is undefined");
  }
  return jerr(line, "'<' not supported between instances of '%s' and '%s'", jv_typename(a),
              jv_typename(b));
}

/* repr(float) as Python prints it: shortest round-tripping digits. */
void py_float_repr(double d, char *buf, size_t cap) {
  if (isnan(d)) {
    snprintf(buf, cap, "nan");
    return;
  }
  if (isinf(d)) {
    snprintf(buf, cap, d < 0 ? "-inf" : "inf");
    return;
  }
  char tmp[64];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
    if (strtod(tmp, NULL) == d)
      break;
  }
  /* tmp: [-]D[.DDD]e[+-]XX */
  char digits[32];
  int nd = 0, exp10;
  const char *p = tmp;
  bool neg = false;
  if (*p == '-') {
    neg = true;
    p++;
  }
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9')
      digits[nd++] = *p;
  exp10 = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  digits[nd] = 0;
  char out[64];
  int o = 0;
  if (neg)
    out[o++] = '-';
  if (exp10 < -4 || exp10 >= 16) {
    out[o++] = digits[0];
    if (nd > 1) {
      out[o++] = '.';
      for (int i = 1; i < nd; i++)
        out[o++] = digits[i];
    }
    o += snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
  } else if (exp10 >= 0) {
    for (int i = 0; i <= exp10; i++)
      out[o++] = i < nd ? digits[i] : '0';
    out[o++] = '.';
    if (nd > exp10 + 1)
      for (int i = exp10 + 1; i < nd; i++)
        out[o++] = digits[i];
    else
      out[o++] = '0';
    out[o] = 0;
  } else {
    out[o++] = '0';
    out[o++] = '.';
    for (int i = 0; i < -exp10 - 1; i++)
      out[o++] = '0';
    for (int i = 0; i < nd; i++)
      out[o++] = digits[i];
    out[o] = 0;
  }
  snprintf(buf, cap, "%s", out);
}

static void repr_str(jsb *b, const char *s, size_t n) {
  bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  sb_add(b, &q, 1);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = u8_dec(s + i, n - i, &cp);
    if (cp == (uint32_t)q || cp == '\\') {
      char e[2] = {'\\', (char)cp};
      sb_add(b, e, 2);
    } else if (cp == '\n')
      sb_add(b, "\\n", 2);
    else if (cp == '\r')
      sb_add(b, "\\r", 2);
    else if (cp == '\t')
      sb_add(b, "\\t", 2);
    else if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad)
      sb_printf(b, "\\x%02x", cp);
    else if (cp == 0x2028 || cp == 0x2029)
      sb_printf(b, "\\u%04x", cp);
    else
      sb_add(b, s + i, k);
    i += k;
  }
  sb_add(b, &q, 1);
}

static void to_str_impl(jctx *c, jsb *b, jv v, bool repr) {
  char tmp[64];
  switch (v.t) {
  case JV_UNDEF:
    if (repr)
      sb_puts(b, "Undefined");
    return;
  case JV_NONE: sb_puts(b, "None"); return;
  case JV_BOOL: sb_puts(b, v.u.b ? "True" : "False"); return;
  case JV_INT: sb_printf(b, "%lld", (long long)v.u.i); return;
  case JV_FLOAT:
    py_float_repr(v.u.f, tmp, sizeof tmp);
    sb_puts(b, tmp);
    return;
  case JV_STR:
    if (repr)
      repr_str(b, v.u.s->s, v.u.s->len);
    else
      sb_add(b, v.u.s->s, v.u.s->len);
    return;
  case JV_LIST:
    sb_puts(b, v.u.l->tuple ? "(" : "[");
    for (size_t i = 0; i < v.u.l->n; i++) {
      if (i)
        sb_puts(b, ", ");
      to_str_impl(c, b, v.u.l->v[i], true);
    }
    if (v.u.l->tuple && v.u.l->n == 1)
      sb_puts(b, ",");
    sb_puts(b, v.u.l->tuple ? ")" : "]");
    return;
  case JV_DICT:
  case JV_NS:
    if (v.t == JV_NS)
      sb_puts(b, "<Namespace ");
    sb_puts(b, "{");
    for (size_t i = 0; i < v.u.d->n; i++) {
      if (i)
        sb_puts(b, ", ");
      to_str_impl(c, b, v.u.d->k[i], true);
      sb_puts(b, ": ");
      to_str_impl(c, b, v.u.d->v[i], true);
    }
    sb_puts(b, "}");
    if (v.t == JV_NS)
      sb_puts(b, ">");
    return;
  case JV_FUNC: sb_printf(b, "<function %s>", v.u.fn->name ? v.u.fn->name : "?"); return;
  case JV_LOOP: sb_puts(b, "<LoopContext>"); return;
  }
}
void jv_to_str(jctx *c, jsb *b, jv v) { to_str_impl(c, b, v, false); }
void jv_repr(jctx *c, jsb *b, jv v) { to_str_impl(c, b, v, true); }
jv jv_stringify(jctx *c, jv v) {
  if (v.t == JV_STR)
    return v;
  jsb b;
  sb_init(&b, c->ar);
  jv_to_str(c, &b, v);
  return sb_value(&b);
}

static jstr *undef_hint(jctx *c, const char *fmt, const char *a, size_t an, const char *b) {
  char tmp[512];
  int n = snprintf(tmp, sizeof tmp, fmt, (int)(an > 200 ? 200 : an), a, b);
  return jstr_new(c->ar, tmp, n < 0 ? 0 : (size_t)n >= sizeof tmp ? sizeof tmp - 1 : (size_t)n);
}

static mlc_status undef_error(int line, jv u) {
  return jerr(line, "%s", u.u.s ? u.u.s->s : "value is undefined");
}

/* list of the items a for loop visits */
mlc_status jv_iter_list(jctx *c, int line, jv v, jlist **out) {
  switch (v.t) {
  case JV_LIST: *out = v.u.l; return MLC_OK;
  case JV_UNDEF: {
    jv l = jv_list(c->ar, 0);
    *out = l.u.l;
    return MLC_OK;
  }
  case JV_DICT: {
    jv l = jv_list(c->ar, v.u.d->n);
    for (size_t i = 0; i < v.u.d->n; i++)
      jl_push(c->ar, l.u.l, v.u.d->k[i]);
    *out = l.u.l;
    return MLC_OK;
  }
  case JV_STR: {
    jv l = jv_list(c->ar, v.u.s->len);
    for (size_t i = 0; i < v.u.s->len;) {
      uint32_t cp;
      size_t k = u8_dec(v.u.s->s + i, v.u.s->len - i, &cp);
      jl_push(c->ar, l.u.l, jv_str(c->ar, v.u.s->s + i, k));
      i += k;
    }
    *out = l.u.l;
    return MLC_OK;
  }
  default: return jerr(line, "'%s' object is not iterable", jv_typename(v));
  }
}

/* ============================================================================================ */
/* loop object                                                                                  */
/* ============================================================================================ */

typedef struct jloop {
  jlist *items;
  size_t idx;
  int depth;
  jv last_changed;
  bool has_changed;
  const struct jnode *node; /* recursive loops */
  jframe *frame;
} jloop;

static mlc_status loop_cycle(jctx *c, int line, jv self, jargs *a, jv *out) {
  if (a->np == 0)
    return jerr(line, "no items for cycling given");
  *out = a->pos[self.u.lp->idx % (size_t)a->np];
  return MLC_OK;
}
static mlc_status loop_changed(jctx *c, int line, jv self, jargs *a, jv *out) {
  jloop *lp = self.u.lp;
  jv val = jv_list(c->ar, (size_t)a->np);
  for (int i = 0; i < a->np; i++)
    jl_push(c->ar, val.u.l, a->pos[i]);
  bool ch = !lp->has_changed || !jv_eq(lp->last_changed, val);
  lp->last_changed = val;
  lp->has_changed = true;
  *out = jv_bool(ch);
  return MLC_OK;
}

static jv mkfunc(jctx *c, const char *name, jbuiltin_fn fn, jv self) {
  jfunc *f = jar_alloc(c->ar, sizeof *f);
  memset(f, 0, sizeof *f);
  f->name = name;
  f->fn = fn;
  f->self = self;
  jv v = {.t = JV_FUNC};
  v.u.fn = f;
  return v;
}

static mlc_status loop_attr(jctx *c, int line, jv obj, const char *name, size_t n, jv *out) {
  jloop *lp = obj.u.lp;
  size_t len = lp->items->n, i = lp->idx;
#define IS(s) (n == sizeof(s) - 1 && memcmp(name, s, n) == 0)
  if (IS("index"))
    *out = jv_int((int64_t)i + 1);
  else if (IS("index0"))
    *out = jv_int((int64_t)i);
  else if (IS("revindex"))
    *out = jv_int((int64_t)(len - i));
  else if (IS("revindex0"))
    *out = jv_int((int64_t)(len - i - 1));
  else if (IS("first"))
    *out = jv_bool(i == 0);
  else if (IS("last"))
    *out = jv_bool(i + 1 == len);
  else if (IS("length"))
    *out = jv_int((int64_t)len);
  else if (IS("depth"))
    *out = jv_int(lp->depth);
  else if (IS("depth0"))
    *out = jv_int(lp->depth - 1);
  else if (IS("previtem"))
    *out = i > 0 ? lp->items->v[i - 1] : jv_undef(jstr_new(c->ar, "there is no previous item", 25));
  else if (IS("nextitem"))
    *out = i + 1 < len ? lp->items->v[i + 1] : jv_undef(jstr_new(c->ar, "there is no next item", 21));
  else if (IS("cycle"))
    *out = mkfunc(c, "cycle", loop_cycle, obj);
  else if (IS("changed"))
    *out = mkfunc(c, "changed", loop_changed, obj);
  else
    *out = jv_undef(undef_hint(c, "'LoopContext object' has no attribute '%.*s'%s", name, n, ""));
#undef IS
  return MLC_OK;
}

/* ============================================================================================ */
/* attribute and item access                                                                    */
/* ============================================================================================ */

static mlc_status getattr_impl(jctx *c, int line, jv obj, const char *name, size_t n, jv *out,
                               bool try_item);

/* Python index normalisation; false when out of range */
static bool norm_index(int64_t i, size_t len, size_t *out) {
  if (i < 0)
    i += (int64_t)len;
  if (i < 0 || (uint64_t)i >= len)
    return false;
  *out = (size_t)i;
  return true;
}

mlc_status jv_getitem(jctx *c, int line, jv obj, jv key, jv *out) {
  switch (obj.t) {
  case JV_UNDEF: return undef_error(line, obj);
  case JV_DICT: {
    long i = jd_find(obj.u.d, key);
    if (i >= 0) {
      *out = obj.u.d->v[i];
      return MLC_OK;
    }
    break;
  }
  case JV_LIST:
    if (key.t == JV_INT || key.t == JV_BOOL) {
      size_t i;
      if (norm_index(num_i(key), obj.u.l->n, &i)) {
        *out = obj.u.l->v[i];
        return MLC_OK;
      }
      char tmp[96];
      snprintf(tmp, sizeof tmp, "'list object' has no element %lld", (long long)num_i(key));
      *out = jv_undef(jstr_new(c->ar, tmp, strlen(tmp)));
      return MLC_OK;
    }
    break;
  case JV_STR:
    if (key.t == JV_INT || key.t == JV_BOOL) {
      size_t cnt = u8_count(obj.u.s->s, obj.u.s->len), i;
      if (norm_index(num_i(key), cnt, &i)) {
        size_t off = 0;
        uint32_t cp;
        for (size_t k = 0; k < i; k++)
          off += u8_dec(obj.u.s->s + off, obj.u.s->len - off, &cp);
        size_t w = u8_dec(obj.u.s->s + off, obj.u.s->len - off, &cp);
        *out = jv_str(c->ar, obj.u.s->s + off, w);
        return MLC_OK;
      }
      *out = jv_undef(jstr_new(c->ar, "string index out of range", 25));
      return MLC_OK;
    }
    break;
  case JV_NS:
  case JV_LOOP:
    if (key.t == JV_STR)
      return getattr_impl(c, line, obj, key.u.s->s, key.u.s->len, out, false);
    break;
  default: break;
  }
  if (key.t == JV_STR && obj.t != JV_DICT)
    return getattr_impl(c, line, obj, key.u.s->s, key.u.s->len, out, false);
  if (key.t == JV_STR && obj.t == JV_DICT) {
    /* dict methods are reachable through [] as a fallback (jinja's getitem -> getattr) */
    bool unsafe = false;
    jbuiltin_fn m = jlib_method(obj, key.u.s->s, key.u.s->len, &unsafe);
    if (m) {
      *out = mkfunc(c, "method", m, obj);
      return MLC_OK;
    }
    *out = jv_undef(undef_hint(c, "'dict object' has no attribute '%.*s'%s", key.u.s->s, key.u.s->len, ""));
    return MLC_OK;
  }
  jsb b;
  sb_init(&b, c->ar);
  sb_printf(&b, "'%s object' has no element ", jv_typename(obj));
  jv_repr(c, &b, key);
  *out = jv_undef(jstr_new(c->ar, b.p, b.len));
  return MLC_OK;
}

static mlc_status unsafe_call(jctx *c, int line, jv self, jargs *a, jv *out) {
  /* self: [object, attribute name] */
  return jerr(line, "access to attribute '%s' of '%s' object is unsafe.", self.u.l->v[1].u.s->s,
              jv_typename(self.u.l->v[0]));
}

static mlc_status getattr_impl(jctx *c, int line, jv obj, const char *name, size_t n, jv *out,
                               bool try_item) {
  switch (obj.t) {
  case JV_UNDEF: return undef_error(line, obj);
  case JV_LOOP: return loop_attr(c, line, obj, name, n, out);
  case JV_NS: {
    long i = jd_find_str(obj.u.d, name, n);
    *out = i >= 0 ? obj.u.d->v[i]
                  : jv_undef(undef_hint(c, "'Namespace object' has no attribute '%.*s'%s", name, n, ""));
    return MLC_OK;
  }
  default: break;
  }
  bool unsafe = false;
  jbuiltin_fn m = jlib_method(obj, name, n, &unsafe);
  if (m) {
    *out = mkfunc(c, "method", m, obj);
    return MLC_OK;
  }
  if (unsafe) {
    jv pair = jv_list(c->ar, 2);
    jl_push(c->ar, pair.u.l, obj);
    jl_push(c->ar, pair.u.l, jv_str(c->ar, name, n));
    *out = mkfunc(c, "unsafe", unsafe_call, pair);
    return MLC_OK;
  }
  if (try_item && obj.t == JV_DICT) {
    long i = jd_find_str(obj.u.d, name, n);
    if (i >= 0) {
      *out = obj.u.d->v[i];
      return MLC_OK;
    }
  }
  jsb b;
  sb_init(&b, c->ar);
  sb_printf(&b, "'%s object' has no attribute '%.*s'", jv_typename(obj), (int)n, name);
  *out = jv_undef(jstr_new(c->ar, b.p, b.len));
  return MLC_OK;
}

mlc_status jv_getattr(jctx *c, int line, jv obj, const char *name, size_t n, jv *out) {
  return getattr_impl(c, line, obj, name, n, out, true);
}

/* ============================================================================================ */
/* lexer                                                                                        */
/* ============================================================================================ */

enum { TK_EOF, TK_TEXT, TK_VBEGIN, TK_VEND, TK_BBEGIN, TK_BEND, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP };

typedef struct jtok {
  int type, line;
  const char *p; /* NAME/OP text */
  size_t n;
  jstr *s; /* TEXT/STR value */
  int64_t i;
  double f;
} jtok;

typedef struct jlexer {
  jarena *ar;
  const char *src;
  size_t len, pos;
  int line;
  jtok *toks;
  size_t nt, cap;
} jlexer;

static jtok *lx_push(jlexer *L, int type, int line) {
  if (L->nt == L->cap) {
    size_t nc = L->cap ? L->cap * 2 : 256;
    jtok *nt = jar_alloc(L->ar, nc * sizeof(jtok));
    if (L->nt)
      memcpy(nt, L->toks, L->nt * sizeof(jtok));
    L->toks = nt;
    L->cap = nc;
  }
  jtok *t = &L->toks[L->nt++];
  memset(t, 0, sizeof *t);
  t->type = type;
  t->line = line;
  return t;
}

static int count_nl(const char *s, size_t n) {
  int c = 0;
  for (size_t i = 0; i < n; i++)
    c += s[i] == '\n';
  return c;
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }

static void lx_text(jlexer *L, size_t start, size_t end, int line) {
  if (end > start) {
    jtok *t = lx_push(L, TK_TEXT, line);
    t->s = jstr_new(L->ar, L->src + start, end - start);
  }
}

static mlc_status lx_string(jlexer *L, jtok *t) {
  const char *s = L->src;
  char q = s[L->pos];
  size_t i = L->pos + 1;
  jsb b;
  sb_init(&b, L->ar);
  int line0 = L->line;
  while (i < L->len && s[i] != q) {
    if (s[i] == '\\' && i + 1 < L->len) {
      char e = s[i + 1];
      i += 2;
      switch (e) {
      case 'n': sb_add(&b, "\n", 1); break;
      case 't': sb_add(&b, "\t", 1); break;
      case 'r': sb_add(&b, "\r", 1); break;
      case '\\': sb_add(&b, "\\", 1); break;
      case '\'': sb_add(&b, "'", 1); break;
      case '"': sb_add(&b, "\"", 1); break;
      case 'a': sb_add(&b, "\a", 1); break;
      case 'b': sb_add(&b, "\b", 1); break;
      case 'f': sb_add(&b, "\f", 1); break;
      case 'v': sb_add(&b, "\v", 1); break;
      case '\n': L->line++; break;
      case 'x':
      case 'u':
      case 'U': {
        int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        int k;
        for (k = 0; k < nd && i + (size_t)k < L->len; k++) {
          char h = s[i + (size_t)k];
          int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
          if (d < 0)
            break;
          cp = cp * 16 + (uint32_t)d;
        }
        if (k < nd)
          return jerr(L->line, "truncated \\%c escape in a string literal", e);
        i += (size_t)nd;
        char enc[4];
        sb_add(&b, enc, u8_enc(cp, enc));
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = (uint32_t)(e - '0');
          for (int k = 0; k < 2 && i < L->len && s[i] >= '0' && s[i] <= '7'; k++)
            cp = cp * 8 + (uint32_t)(s[i++] - '0');
          char enc[4];
          sb_add(&b, enc, u8_enc(cp, enc));
        } else {
          char raw[2] = {'\\', e};
          sb_add(&b, raw, 2);
          if (e == '\n')
            L->line++;
        }
      }
      continue;
    }
    if (s[i] == '\n')
      L->line++;
    sb_add(&b, s + i, 1);
    i++;
  }
  if (i >= L->len)
    return jerr(line0, "unterminated string literal");
  t->s = jstr_new(L->ar, b.p ? b.p : "", b.len);
  L->pos = i + 1;
  return MLC_OK;
}

/* lexes the inside of a {{ }} or {% %} tag, up to and including its end */
static mlc_status lx_tag(jlexer *L, bool block) {
  const char *s = L->src;
  int depth = 0;
  for (;;) {
    while (L->pos < L->len && is_ws(s[L->pos])) {
      if (s[L->pos] == '\n')
        L->line++;
      L->pos++;
    }
    if (L->pos >= L->len)
      return jerr(L->line, "unexpected end of template, expected '%s'", block ? "%}" : "}}");
    const char *p = s + L->pos;
    size_t rem = L->len - L->pos;
    if (depth == 0) {
      char e1 = block ? '%' : '}';
      int sign = 0;
      size_t k = 0;
      if ((p[0] == '-' || p[0] == '+') && rem >= 3 && p[1] == e1 && p[2] == '}') {
        sign = p[0];
        k = 3;
      } else if (rem >= 2 && p[0] == e1 && p[1] == '}')
        k = 2;
      if (k) {
        lx_push(L, block ? TK_BEND : TK_VEND, L->line);
        L->pos += k;
        if (sign == '-') {
          while (L->pos < L->len && is_ws(s[L->pos])) {
            if (s[L->pos] == '\n')
              L->line++;
            L->pos++;
          }
        } else if (block && sign != '+' && L->pos < L->len && s[L->pos] == '\n') {
          L->pos++; /* trim_blocks */
          L->line++;
        }
        return MLC_OK;
      }
    }
    char ch = p[0];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
      size_t k = 1;
      while (k < rem && ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z') || p[k] == '_' ||
                         (p[k] >= '0' && p[k] <= '9')))
        k++;
      jtok *t = lx_push(L, TK_NAME, L->line);
      t->p = p;
      t->n = k;
      L->pos += k;
      continue;
    }
    if (ch >= '0' && ch <= '9') {
      size_t k = 0;
      char num[128];
      size_t nn = 0;
      bool isf = false;
      while (k < rem && ((p[k] >= '0' && p[k] <= '9') || p[k] == '_')) {
        if (p[k] != '_' && nn < sizeof num - 1)
          num[nn++] = p[k];
        k++;
      }
      if (k + 1 < rem && p[k] == '.' && p[k + 1] >= '0' && p[k + 1] <= '9') {
        isf = true;
        num[nn++] = '.';
        k++;
        while (k < rem && ((p[k] >= '0' && p[k] <= '9') || p[k] == '_')) {
          if (p[k] != '_' && nn < sizeof num - 1)
            num[nn++] = p[k];
          k++;
        }
      }
      if (k < rem && (p[k] == 'e' || p[k] == 'E')) {
        size_t k2 = k + 1;
        if (k2 < rem && (p[k2] == '+' || p[k2] == '-'))
          k2++;
        if (k2 < rem && p[k2] >= '0' && p[k2] <= '9') {
          isf = true;
          while (k < k2 && nn < sizeof num - 1)
            num[nn++] = p[k++];
          while (k < rem && p[k] >= '0' && p[k] <= '9' && nn < sizeof num - 1)
            num[nn++] = p[k++];
        }
      }
      num[nn] = 0;
      jtok *t = lx_push(L, isf ? TK_FLOAT : TK_INT, L->line);
      if (isf)
        t->f = strtod(num, NULL);
      else
        t->i = strtoll(num, NULL, 10);
      L->pos += k;
      continue;
    }
    if (ch == '\'' || ch == '"') {
      jtok *t = lx_push(L, TK_STR, L->line);
      MLC_TRY(lx_string(L, t));
      continue;
    }
    static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">="};
    size_t k = 0;
    for (size_t o = 0; o < sizeof ops2 / sizeof *ops2; o++)
      if (rem >= 2 && p[0] == ops2[o][0] && p[1] == ops2[o][1])
        k = 2;
    if (!k) {
      if (strchr("+-*/%~[](){}<>=.:|,;", ch))
        k = 1;
      else
        return jerr(L->line, "unexpected char '%c' in a tag", ch);
    }
    if (ch == '(' || ch == '[' || ch == '{')
      depth++;
    if ((ch == ')' || ch == ']' || ch == '}') && depth > 0)
      depth--;
    jtok *t = lx_push(L, TK_OP, L->line);
    t->p = p;
    t->n = k;
    L->pos += k;
  }
}

/* true if at pos (just after "{%" and its sign) there is `raw` + optional sign + "%}" */
static bool lx_is_word_tag(const char *s, size_t len, size_t pos, const char *word, size_t *end, int *endsign) {
  while (pos < len && is_ws(s[pos]))
    pos++;
  size_t wn = strlen(word);
  if (pos + wn > len || memcmp(s + pos, word, wn) != 0)
    return false;
  pos += wn;
  while (pos < len && is_ws(s[pos]))
    pos++;
  *endsign = 0;
  if (pos < len && (s[pos] == '-' || s[pos] == '+'))
    *endsign = s[pos++];
  if (pos + 2 > len || s[pos] != '%' || s[pos + 1] != '}')
    return false;
  *end = pos + 2;
  return true;
}

static mlc_status lex(jlexer *L) {
  const char *s = L->src;
  size_t text_start = 0;
  int text_line = 1;
  for (;;) {
    /* find the next tag start */
    size_t q = L->pos;
    const char *hit = NULL;
    while (q + 1 < L->len) {
      const char *h = memchr(s + q, '{', L->len - q - 1);
      if (!h)
        break;
      size_t hp = (size_t)(h - s);
      char nx = s[hp + 1];
      if (nx == '{' || nx == '%' || nx == '#') {
        hit = h;
        break;
      }
      q = hp + 1;
    }
    if (!hit) {
      lx_text(L, text_start, L->len, text_line);
      break;
    }
    size_t tp = (size_t)(hit - s);
    char kind = s[tp + 1];
    char sign = (tp + 2 < L->len && (s[tp + 2] == '-' || s[tp + 2] == '+')) ? s[tp + 2] : 0;
    /* whitespace control of the text before the tag */
    size_t tend = tp;
    if (sign == '-') {
      while (tend > text_start && is_ws(s[tend - 1]))
        tend--;
    } else if (sign != '+' && kind != '{') {
      size_t lpos = tend;
      while (lpos > text_start && s[lpos - 1] != '\n')
        lpos--;
      bool line_starting = text_start == 0 || s[text_start - 1] == '\n';
      if (lpos > text_start || line_starting) {
        bool allws = lpos < tend;
        for (size_t k = lpos; k < tend; k++)
          if (!is_ws(s[k]))
            allws = false;
        if (allws)
          tend = lpos;
      }
    }
    L->line = text_line + count_nl(s + text_start, tp - text_start);
    lx_text(L, text_start, tend, text_line);
    L->pos = tp + 2 + (sign ? 1 : 0);
    if (kind == '#') {
      const char *e = NULL;
      for (size_t k = L->pos; k + 1 < L->len; k++)
        if (s[k] == '#' && s[k + 1] == '}') {
          e = s + k;
          break;
        }
      if (!e)
        return jerr(L->line, "missing end of comment tag");
      size_t ep = (size_t)(e - s);
      L->line += count_nl(s + L->pos, ep - L->pos);
      bool strip = ep > L->pos && s[ep - 1] == '-';
      L->pos = ep + 2;
      if (strip) {
        while (L->pos < L->len && is_ws(s[L->pos])) {
          if (s[L->pos] == '\n')
            L->line++;
          L->pos++;
        }
      } else if (!(ep > L->pos && s[ep - 1] == '+') && L->pos < L->len && s[L->pos] == '\n') {
        L->pos++;
        L->line++;
      }
    } else if (kind == '%') {
      size_t end;
      int esign;
      if (lx_is_word_tag(s, L->len, L->pos, "raw", &end, &esign)) {
        /* find {% endraw %} */
        size_t k = end, body_start = end;
        if (esign == '-')
          while (body_start < L->len && is_ws(s[body_start]))
            body_start++;
        else if (esign != '+' && body_start < L->len && s[body_start] == '\n')
          body_start++;
        bool found = false;
        while (k + 1 < L->len) {
          if (s[k] == '{' && s[k + 1] == '%') {
            size_t p2 = k + 2;
            int bsign = 0;
            if (p2 < L->len && (s[p2] == '-' || s[p2] == '+'))
              bsign = s[p2++];
            size_t e2;
            int es2;
            if (lx_is_word_tag(s, L->len, p2, "endraw", &e2, &es2)) {
              size_t bend = k;
              if (bsign == '-')
                while (bend > body_start && is_ws(s[bend - 1]))
                  bend--;
              lx_text(L, body_start, bend, L->line);
              L->line += count_nl(s + L->pos, e2 - L->pos);
              L->pos = e2;
              if (es2 == '-')
                while (L->pos < L->len && is_ws(s[L->pos])) {
                  if (s[L->pos] == '\n')
                    L->line++;
                  L->pos++;
                }
              else if (es2 != '+' && L->pos < L->len && s[L->pos] == '\n') {
                L->pos++;
                L->line++;
              }
              found = true;
              break;
            }
          }
          k++;
        }
        if (!found)
          return jerr(L->line, "missing end of raw directive");
      } else {
        lx_push(L, TK_BBEGIN, L->line);
        MLC_TRY(lx_tag(L, true));
      }
    } else {
      lx_push(L, TK_VBEGIN, L->line);
      MLC_TRY(lx_tag(L, false));
    }
    text_start = L->pos;
    text_line = L->line;
  }
  lx_push(L, TK_EOF, L->line);
  return MLC_OK;
}

/* ============================================================================================ */
/* AST and parser                                                                               */
/* ============================================================================================ */

enum {
  /* statements */
  N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_BREAK, N_CONTINUE,
  N_WITH, N_BODY,
  /* expressions */
  N_CONST, N_NAME, N_LIST, N_TUPLE, N_DICT, N_BINOP, N_NOT, N_NEG, N_POS, N_AND, N_OR, N_COMPARE,
  N_CMPOP, N_CONDEXPR, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_KWARG, N_PARAM
};

typedef struct jnlist {
  int n, cap;
  struct jnode **v;
} jnlist;

typedef struct jnode {
  int kind, op, line, flag;
  jstr *name;
  jv val;
  struct jnode *a, *b, *c, *d;
  jnlist args, args2, body, body2;
  jbuiltin_fn filt;
  jtest_fn test;
} jnode;

typedef struct jparser {
  jarena *ar;
  jtok *t;
  size_t i, n;
} jparser;

static jnode *nn(jparser *P, int kind, int line) {
  jnode *x = jar_alloc(P->ar, sizeof *x);
  memset(x, 0, sizeof *x);
  x->kind = kind;
  x->line = line;
  return x;
}
static void nl_push(jarena *a, jnlist *l, jnode *x) {
  if (l->n == l->cap) {
    int nc = l->cap ? l->cap * 2 : 4;
    jnode **nv = jar_alloc(a, (size_t)nc * sizeof(jnode *));
    if (l->n)
      memcpy(nv, l->v, (size_t)l->n * sizeof(jnode *));
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = x;
}

static jtok *cur(jparser *P) { return &P->t[P->i]; }
static bool is_op(jtok *t, const char *op) {
  return t->type == TK_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0;
}
static bool is_name(jtok *t, const char *nm) {
  return t->type == TK_NAME && t->n == strlen(nm) && memcmp(t->p, nm, t->n) == 0;
}
static const char *tok_desc(jtok *t, char *buf, size_t cap) {
  switch (t->type) {
  case TK_EOF: return "end of template";
  case TK_TEXT: return "template data";
  case TK_VBEGIN: return "'{{'";
  case TK_VEND: return "end of print statement";
  case TK_BBEGIN: return "'{%'";
  case TK_BEND: return "end of statement block";
  case TK_STR: return "string literal";
  case TK_INT:
  case TK_FLOAT: return "number";
  default: snprintf(buf, cap, "'%.*s'", (int)(t->n > 60 ? 60 : t->n), t->p); return buf;
  }
}
static mlc_status unexpected(jparser *P, const char *what) {
  char buf[80];
  return jerr(cur(P)->line, "expected %s, got %s", what, tok_desc(cur(P), buf, sizeof buf));
}
static mlc_status expect_op(jparser *P, const char *op) {
  if (!is_op(cur(P), op)) {
    char w[16];
    snprintf(w, sizeof w, "'%s'", op);
    return unexpected(P, w);
  }
  P->i++;
  return MLC_OK;
}
static mlc_status expect_name(jparser *P, jstr **out) {
  if (cur(P)->type != TK_NAME)
    return unexpected(P, "a name");
  *out = jstr_new(P->ar, cur(P)->p, cur(P)->n);
  P->i++;
  return MLC_OK;
}

static mlc_status parse_expr(jparser *P, jnode **out);
static mlc_status parse_or(jparser *P, jnode **out);
static mlc_status parse_unary(jparser *P, bool with_filter, jnode **out);
static mlc_status parse_primary(jparser *P, jnode **out);
static mlc_status parse_postfix(jparser *P, jnode **node);

/* (args) after '(' was seen: positional, name=value */
static mlc_status parse_call_args(jparser *P, jnlist *args) {
  MLC_TRY(expect_op(P, "("));
  while (!is_op(cur(P), ")")) {
    if (args->n) {
      MLC_TRY(expect_op(P, ","));
      if (is_op(cur(P), ")"))
        break;
    }
    if (cur(P)->type == TK_NAME && is_op(&P->t[P->i + 1], "=")) {
      jnode *kw = nn(P, N_KWARG, cur(P)->line);
      kw->name = jstr_new(P->ar, cur(P)->p, cur(P)->n);
      P->i += 2;
      MLC_TRY(parse_expr(P, &kw->a));
      nl_push(P->ar, args, kw);
    } else {
      jnode *e;
      MLC_TRY(parse_expr(P, &e));
      nl_push(P->ar, args, e);
    }
  }
  P->i++;
  return MLC_OK;
}

static mlc_status parse_filter(jparser *P, jnode *operand, jnode **out) {
  /* at a filter name (after '|') */
  jnode *f = nn(P, N_FILTER, cur(P)->line);
  f->a = operand;
  MLC_TRY(expect_name(P, &f->name));
  f->filt = jlib_filter(f->name->s); /* unknown: an error when evaluated, as in Jinja 3 */
  if (is_op(cur(P), "("))
    MLC_TRY(parse_call_args(P, &f->args));
  *out = f;
  return MLC_OK;
}

static mlc_status parse_filter_expr(jparser *P, jnode **node) {
  for (;;) {
    if (is_op(cur(P), "|")) {
      P->i++;
      MLC_TRY(parse_filter(P, *node, node));
    } else if (is_name(cur(P), "is")) {
      jnode *t = nn(P, N_TEST, cur(P)->line);
      P->i++;
      if (is_name(cur(P), "not")) {
        t->flag = 1;
        P->i++;
      }
      t->a = *node;
      MLC_TRY(expect_name(P, &t->name));
      t->test = jlib_test(t->name->s);
      jtok *c = cur(P);
      if (is_op(c, "(")) {
        MLC_TRY(parse_call_args(P, &t->args));
      } else if ((c->type == TK_NAME || c->type == TK_STR || c->type == TK_INT || c->type == TK_FLOAT ||
                  is_op(c, "[") || is_op(c, "{")) &&
                 !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is"))
          return jerr(c->line, "You cannot chain multiple tests with is");
        jnode *arg;
        MLC_TRY(parse_primary(P, &arg));
        MLC_TRY(parse_postfix(P, &arg));
        nl_push(P->ar, &t->args, arg);
      }
      *node = t;
    } else if (is_op(cur(P), "(")) {
      jnode *call = nn(P, N_CALL, cur(P)->line);
      call->a = *node;
      MLC_TRY(parse_call_args(P, &call->args));
      *node = call;
    } else
      return MLC_OK;
  }
}

static mlc_status parse_postfix(jparser *P, jnode **node) {
  for (;;) {
    jtok *c = cur(P);
    if (is_op(c, ".")) {
      P->i++;
      jtok *a = cur(P);
      if (a->type == TK_NAME) {
        jnode *g = nn(P, N_GETATTR, a->line);
        g->a = *node;
        g->name = jstr_new(P->ar, a->p, a->n);
        P->i++;
        *node = g;
      } else if (a->type == TK_INT) {
        jnode *g = nn(P, N_GETITEM, a->line);
        g->a = *node;
        g->b = nn(P, N_CONST, a->line);
        g->b->val = jv_int(a->i);
        P->i++;
        *node = g;
      } else
        return unexpected(P, "an attribute name");
    } else if (is_op(c, "[")) {
      P->i++;
      jnode *start = NULL, *stop = NULL, *step = NULL;
      bool slice = false;
      if (!is_op(cur(P), ":"))
        MLC_TRY(parse_expr(P, &start));
      if (is_op(cur(P), ":")) {
        slice = true;
        P->i++;
        if (!is_op(cur(P), "]") && !is_op(cur(P), ":"))
          MLC_TRY(parse_expr(P, &stop));
        if (is_op(cur(P), ":")) {
          P->i++;
          if (!is_op(cur(P), "]"))
            MLC_TRY(parse_expr(P, &step));
        }
      }
      MLC_TRY(expect_op(P, "]"));
      jnode *g = nn(P, slice ? N_SLICE : N_GETITEM, c->line);
      g->a = *node;
      g->b = start;
      g->c = stop;
      g->d = step;
      if (!slice && !start)
        return jerr(c->line, "expected an expression in []");
      *node = g;
    } else if (is_op(c, "(")) {
      jnode *call = nn(P, N_CALL, c->line);
      call->a = *node;
      MLC_TRY(parse_call_args(P, &call->args));
      *node = call;
    } else
      return MLC_OK;
  }
}

static mlc_status parse_primary(jparser *P, jnode **out) {
  jtok *c = cur(P);
  jnode *x;
  if (c->type == TK_NAME) {
    x = nn(P, N_CONST, c->line);
    if (is_name(c, "true") || is_name(c, "True"))
      x->val = jv_bool(true);
    else if (is_name(c, "false") || is_name(c, "False"))
      x->val = jv_bool(false);
    else if (is_name(c, "none") || is_name(c, "None"))
      x->val = jv_none();
    else {
      x->kind = N_NAME;
      x->name = jstr_new(P->ar, c->p, c->n);
    }
    P->i++;
  } else if (c->type == TK_STR) {
    x = nn(P, N_CONST, c->line);
    jsb b;
    sb_init(&b, P->ar);
    while (cur(P)->type == TK_STR) {
      sb_add(&b, cur(P)->s->s, cur(P)->s->len);
      P->i++;
    }
    x->val = sb_value(&b);
  } else if (c->type == TK_INT || c->type == TK_FLOAT) {
    x = nn(P, N_CONST, c->line);
    x->val = c->type == TK_INT ? jv_int(c->i) : jv_float(c->f);
    P->i++;
  } else if (is_op(c, "(")) {
    P->i++;
    if (is_op(cur(P), ")")) {
      P->i++;
      x = nn(P, N_TUPLE, c->line);
    } else {
      jnode *e;
      MLC_TRY(parse_expr(P, &e));
      if (is_op(cur(P), ",")) {
        x = nn(P, N_TUPLE, c->line);
        nl_push(P->ar, &x->args, e);
        while (is_op(cur(P), ",")) {
          P->i++;
          if (is_op(cur(P), ")"))
            break;
          MLC_TRY(parse_expr(P, &e));
          nl_push(P->ar, &x->args, e);
        }
      } else
        x = e;
      MLC_TRY(expect_op(P, ")"));
    }
  } else if (is_op(c, "[")) {
    P->i++;
    x = nn(P, N_LIST, c->line);
    while (!is_op(cur(P), "]")) {
      if (x->args.n) {
        MLC_TRY(expect_op(P, ","));
        if (is_op(cur(P), "]"))
          break;
      }
      jnode *e;
      MLC_TRY(parse_expr(P, &e));
      nl_push(P->ar, &x->args, e);
    }
    P->i++;
  } else if (is_op(c, "{")) {
    P->i++;
    x = nn(P, N_DICT, c->line);
    while (!is_op(cur(P), "}")) {
      if (x->args.n) {
        MLC_TRY(expect_op(P, ","));
        if (is_op(cur(P), "}"))
          break;
      }
      jnode *k, *v;
      MLC_TRY(parse_expr(P, &k));
      MLC_TRY(expect_op(P, ":"));
      MLC_TRY(parse_expr(P, &v));
      nl_push(P->ar, &x->args, k);
      nl_push(P->ar, &x->args2, v);
    }
    P->i++;
  } else
    return unexpected(P, "an expression");
  *out = x;
  return MLC_OK;
}

static mlc_status parse_unary(jparser *P, bool with_filter, jnode **out) {
  jtok *c = cur(P);
  jnode *x;
  if (is_op(c, "-") || is_op(c, "+")) {
    P->i++;
    x = nn(P, is_op(c, "-") ? N_NEG : N_POS, c->line);
    MLC_TRY(parse_unary(P, false, &x->a));
  } else
    MLC_TRY(parse_primary(P, &x));
  MLC_TRY(parse_postfix(P, &x));
  if (with_filter)
    MLC_TRY(parse_filter_expr(P, &x));
  *out = x;
  return MLC_OK;
}

static jnode *binop(jparser *P, int op, int line, jnode *a, jnode *b) {
  jnode *x = nn(P, N_BINOP, line);
  x->op = op;
  x->a = a;
  x->b = b;
  return x;
}

static mlc_status parse_pow(jparser *P, jnode **out) {
  MLC_TRY(parse_unary(P, true, out));
  while (is_op(cur(P), "**")) {
    int line = cur(P)->line;
    P->i++;
    jnode *r;
    MLC_TRY(parse_unary(P, true, &r));
    *out = binop(P, 'P', line, *out, r);
  }
  return MLC_OK;
}
static mlc_status parse_math2(jparser *P, jnode **out) {
  MLC_TRY(parse_pow(P, out));
  for (;;) {
    jtok *c = cur(P);
    int op = is_op(c, "*") ? '*' : is_op(c, "/") ? '/' : is_op(c, "//") ? 'F' : is_op(c, "%") ? '%' : 0;
    if (!op)
      return MLC_OK;
    P->i++;
    jnode *r;
    MLC_TRY(parse_pow(P, &r));
    *out = binop(P, op, c->line, *out, r);
  }
}
static mlc_status parse_concat(jparser *P, jnode **out) {
  MLC_TRY(parse_math2(P, out));
  while (is_op(cur(P), "~")) {
    int line = cur(P)->line;
    P->i++;
    jnode *r;
    MLC_TRY(parse_math2(P, &r));
    *out = binop(P, '~', line, *out, r);
  }
  return MLC_OK;
}
static mlc_status parse_math1(jparser *P, jnode **out) {
  MLC_TRY(parse_concat(P, out));
  for (;;) {
    jtok *c = cur(P);
    int op = is_op(c, "+") ? '+' : is_op(c, "-") ? '-' : 0;
    if (!op)
      return MLC_OK;
    P->i++;
    jnode *r;
    MLC_TRY(parse_concat(P, &r));
    *out = binop(P, op, c->line, *out, r);
  }
}
enum { CMP_EQ = 1, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN };
static mlc_status parse_compare(jparser *P, jnode **out) {
  jnode *left;
  MLC_TRY(parse_math1(P, &left));
  jnode *cmp = NULL;
  for (;;) {
    jtok *c = cur(P);
    int op = is_op(c, "==") ? CMP_EQ : is_op(c, "!=") ? CMP_NE : is_op(c, "<") ? CMP_LT
           : is_op(c, "<=") ? CMP_LE : is_op(c, ">") ? CMP_GT : is_op(c, ">=") ? CMP_GE
           : is_name(c, "in") ? CMP_IN : 0;
    if (!op && is_name(c, "not") && is_name(&P->t[P->i + 1], "in")) {
      op = CMP_NOTIN;
      P->i++;
    }
    if (!op)
      break;
    P->i++;
    if (!cmp) {
      cmp = nn(P, N_COMPARE, c->line);
      cmp->a = left;
    }
    jnode *o = nn(P, N_CMPOP, c->line);
    o->op = op;
    MLC_TRY(parse_math1(P, &o->a));
    nl_push(P->ar, &cmp->args, o);
  }
  *out = cmp ? cmp : left;
  return MLC_OK;
}
static mlc_status parse_not(jparser *P, jnode **out) {
  if (is_name(cur(P), "not")) {
    jnode *x = nn(P, N_NOT, cur(P)->line);
    P->i++;
    MLC_TRY(parse_not(P, &x->a));
    *out = x;
    return MLC_OK;
  }
  return parse_compare(P, out);
}
static mlc_status parse_and(jparser *P, jnode **out) {
  MLC_TRY(parse_not(P, out));
  while (is_name(cur(P), "and")) {
    jnode *x = nn(P, N_AND, cur(P)->line);
    P->i++;
    x->a = *out;
    MLC_TRY(parse_not(P, &x->b));
    *out = x;
  }
  return MLC_OK;
}
static mlc_status parse_or(jparser *P, jnode **out) {
  MLC_TRY(parse_and(P, out));
  while (is_name(cur(P), "or")) {
    jnode *x = nn(P, N_OR, cur(P)->line);
    P->i++;
    x->a = *out;
    MLC_TRY(parse_and(P, &x->b));
    *out = x;
  }
  return MLC_OK;
}
static mlc_status parse_expr(jparser *P, jnode **out) {
  MLC_TRY(parse_or(P, out));
  while (is_name(cur(P), "if")) {
    jnode *x = nn(P, N_CONDEXPR, cur(P)->line);
    P->i++;
    x->b = *out;
    MLC_TRY(parse_or(P, &x->a));
    if (is_name(cur(P), "else")) {
      P->i++;
      MLC_TRY(parse_expr(P, &x->c));
    }
    *out = x;
  }
  return MLC_OK;
}
/* expression or bare tuple "a, b" (set values, with-less contexts) */
static mlc_status parse_tuple_expr(jparser *P, jnode **out) {
  jnode *e;
  MLC_TRY(parse_expr(P, &e));
  if (!is_op(cur(P), ",")) {
    *out = e;
    return MLC_OK;
  }
  jnode *t = nn(P, N_TUPLE, e->line);
  nl_push(P->ar, &t->args, e);
  while (is_op(cur(P), ",")) {
    P->i++;
    if (cur(P)->type == TK_BEND || cur(P)->type == TK_VEND)
      break;
    MLC_TRY(parse_expr(P, &e));
    nl_push(P->ar, &t->args, e);
  }
  *out = t;
  return MLC_OK;
}

/* assignment target: name | name.attr | name, name | (name, name) */
static mlc_status parse_target(jparser *P, bool allow_attr, jnode **out) {
  bool paren = false;
  if (is_op(cur(P), "(")) {
    paren = true;
    P->i++;
  }
  jnode *t = NULL;
  for (;;) {
    jnode *x = nn(P, N_NAME, cur(P)->line);
    MLC_TRY(expect_name(P, &x->name));
    if (allow_attr && !paren && is_op(cur(P), ".")) {
      P->i++;
      jnode *g = nn(P, N_GETATTR, x->line);
      g->a = x;
      MLC_TRY(expect_name(P, &g->name));
      x = g;
    }
    if (!is_op(cur(P), ",")) {
      if (t)
        nl_push(P->ar, &t->args, x);
      else
        t = x;
      break;
    }
    if (!t || t->kind != N_TUPLE) {
      jnode *tu = nn(P, N_TUPLE, x->line);
      if (t)
        nl_push(P->ar, &tu->args, t);
      t = tu;
    }
    nl_push(P->ar, &t->args, x);
    P->i++;
    if (paren && is_op(cur(P), ")"))
      break;
  }
  if (paren)
    MLC_TRY(expect_op(P, ")"));
  *out = t;
  return MLC_OK;
}

static mlc_status expect_bend(jparser *P) {
  if (cur(P)->type != TK_BEND)
    return unexpected(P, "end of statement block");
  P->i++;
  return MLC_OK;
}

static mlc_status parse_body(jparser *P, jnlist *body, const char *const *ends, const char *ctx, int line);

/* parses a body and the end tag; *which receives the index in ends of the tag that ended it */
static mlc_status parse_until(jparser *P, jnlist *body, const char *const *ends, const char *ctx, int line, int *which) {
  MLC_TRY(parse_body(P, body, ends, ctx, line));
  /* at BBEGIN NAME */
  P->i++;
  jtok *t = cur(P);
  for (int k = 0; ends[k]; k++)
    if (is_name(t, ends[k])) {
      *which = k;
      P->i++;
      return MLC_OK;
    }
  return jerr(t->line, "internal: bad end tag");
}

static mlc_status parse_macro_params(jparser *P, jnlist *params) {
  MLC_TRY(expect_op(P, "("));
  while (!is_op(cur(P), ")")) {
    if (params->n) {
      MLC_TRY(expect_op(P, ","));
      if (is_op(cur(P), ")"))
        break;
    }
    jnode *p = nn(P, N_PARAM, cur(P)->line);
    MLC_TRY(expect_name(P, &p->name));
    if (is_op(cur(P), "=")) {
      P->i++;
      MLC_TRY(parse_expr(P, &p->a));
    }
    nl_push(P->ar, params, p);
  }
  P->i++;
  return MLC_OK;
}

static mlc_status parse_stmt(jparser *P, jnlist *body) {
  /* at TK_BBEGIN */
  int line = cur(P)->line;
  P->i++;
  jtok *t = cur(P);
  if (t->type != TK_NAME)
    return unexpected(P, "a statement name");
  int which;
  if (is_name(t, "if")) {
    P->i++;
    jnode *x = nn(P, N_IF, line), *top = x;
    MLC_TRY(parse_expr(P, &x->a));
    MLC_TRY(expect_bend(P));
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    for (;;) {
      MLC_TRY(parse_until(P, &x->body, ends, "if", line, &which));
      if (which == 0) {
        jnode *e = nn(P, N_IF, cur(P)->line);
        MLC_TRY(parse_expr(P, &e->a));
        MLC_TRY(expect_bend(P));
        nl_push(P->ar, &x->body2, e);
        x = e;
        continue;
      }
      if (which == 1) {
        MLC_TRY(expect_bend(P));
        static const char *const ends2[] = {"endif", NULL};
        MLC_TRY(parse_until(P, &x->body2, ends2, "if", line, &which));
      }
      MLC_TRY(expect_bend(P));
      break;
    }
    nl_push(P->ar, body, top);
  } else if (is_name(t, "for")) {
    P->i++;
    jnode *x = nn(P, N_FOR, line);
    MLC_TRY(parse_target(P, false, &x->a));
    if (!is_name(cur(P), "in"))
      return unexpected(P, "'in'");
    P->i++;
    MLC_TRY(parse_or(P, &x->b));
    if (is_name(cur(P), "if")) {
      P->i++;
      MLC_TRY(parse_expr(P, &x->c));
    }
    if (is_name(cur(P), "recursive")) {
      P->i++;
      x->flag = 1;
    }
    MLC_TRY(expect_bend(P));
    static const char *const ends[] = {"else", "endfor", NULL};
    MLC_TRY(parse_until(P, &x->body, ends, "for", line, &which));
    MLC_TRY(expect_bend(P));
    if (which == 0) {
      static const char *const ends2[] = {"endfor", NULL};
      MLC_TRY(parse_until(P, &x->body2, ends2, "for", line, &which));
      MLC_TRY(expect_bend(P));
    }
    nl_push(P->ar, body, x);
  } else if (is_name(t, "set")) {
    P->i++;
    jnode *x = nn(P, N_SET, line);
    MLC_TRY(parse_target(P, true, &x->a));
    if (is_op(cur(P), "=")) {
      P->i++;
      MLC_TRY(parse_tuple_expr(P, &x->b));
      MLC_TRY(expect_bend(P));
    } else {
      if (x->a->kind != N_NAME && x->a->kind != N_GETATTR)
        return jerr(line, "a block set needs a single target");
      jnode *chain = NULL;
      while (is_op(cur(P), "|")) {
        P->i++;
        MLC_TRY(parse_filter(P, chain, &chain));
      }
      x->c = chain;
      MLC_TRY(expect_bend(P));
      static const char *const ends[] = {"endset", NULL};
      MLC_TRY(parse_until(P, &x->body, ends, "set", line, &which));
      MLC_TRY(expect_bend(P));
      x->flag = 1;
    }
    nl_push(P->ar, body, x);
  } else if (is_name(t, "macro")) {
    P->i++;
    jnode *x = nn(P, N_MACRO, line);
    MLC_TRY(expect_name(P, &x->name));
    MLC_TRY(parse_macro_params(P, &x->args));
    MLC_TRY(expect_bend(P));
    static const char *const ends[] = {"endmacro", NULL};
    MLC_TRY(parse_until(P, &x->body, ends, "macro", line, &which));
    if (cur(P)->type == TK_NAME)
      P->i++; /* {% endmacro name %} */
    MLC_TRY(expect_bend(P));
    nl_push(P->ar, body, x);
  } else if (is_name(t, "call")) {
    P->i++;
    jnode *x = nn(P, N_CALLBLOCK, line);
    if (is_op(cur(P), "("))
      MLC_TRY(parse_macro_params(P, &x->args));
    MLC_TRY(parse_expr(P, &x->a));
    if (x->a->kind != N_CALL)
      return jerr(line, "expected a call after {%% call %%}");
    MLC_TRY(expect_bend(P));
    static const char *const ends[] = {"endcall", NULL};
    MLC_TRY(parse_until(P, &x->body, ends, "call", line, &which));
    MLC_TRY(expect_bend(P));
    nl_push(P->ar, body, x);
  } else if (is_name(t, "filter")) {
    P->i++;
    jnode *x = nn(P, N_FILTERBLOCK, line), *chain = NULL;
    MLC_TRY(parse_filter(P, NULL, &chain));
    while (is_op(cur(P), "|")) {
      P->i++;
      MLC_TRY(parse_filter(P, chain, &chain));
    }
    x->a = chain;
    MLC_TRY(expect_bend(P));
    static const char *const ends[] = {"endfilter", NULL};
    MLC_TRY(parse_until(P, &x->body, ends, "filter", line, &which));
    MLC_TRY(expect_bend(P));
    nl_push(P->ar, body, x);
  } else if (is_name(t, "with")) {
    P->i++;
    jnode *x = nn(P, N_WITH, line);
    while (cur(P)->type != TK_BEND) {
      if (x->args.n)
        MLC_TRY(expect_op(P, ","));
      jnode *kw = nn(P, N_KWARG, cur(P)->line);
      MLC_TRY(parse_target(P, false, &kw->b));
      MLC_TRY(expect_op(P, "="));
      MLC_TRY(parse_expr(P, &kw->a));
      nl_push(P->ar, &x->args, kw);
    }
    P->i++;
    static const char *const ends[] = {"endwith", NULL};
    MLC_TRY(parse_until(P, &x->body, ends, "with", line, &which));
    MLC_TRY(expect_bend(P));
    nl_push(P->ar, body, x);
  } else if (is_name(t, "generation")) {
    P->i++;
    MLC_TRY(expect_bend(P));
    jnode *x = nn(P, N_BODY, line);
    static const char *const ends[] = {"endgeneration", NULL};
    MLC_TRY(parse_until(P, &x->body, ends, "generation", line, &which));
    MLC_TRY(expect_bend(P));
    nl_push(P->ar, body, x);
  } else if (is_name(t, "break") || is_name(t, "continue")) {
    jnode *x = nn(P, is_name(t, "break") ? N_BREAK : N_CONTINUE, line);
    P->i++;
    MLC_TRY(expect_bend(P));
    nl_push(P->ar, body, x);
  } else {
    return jerr(line, "Encountered unknown tag '%.*s'.", (int)t->n, t->p);
  }
  return MLC_OK;
}

static mlc_status parse_body(jparser *P, jnlist *body, const char *const *ends, const char *ctx, int line) {
  for (;;) {
    jtok *t = cur(P);
    switch (t->type) {
    case TK_EOF:
      if (ends)
        return jerr(t->line, "Unexpected end of template. Jinja was looking for 'end%s' to close the '%s' block opened on line %d.",
                    ctx, ctx, line);
      return MLC_OK;
    case TK_TEXT: {
      jnode *x = nn(P, N_TEXT, t->line);
      x->val.t = JV_STR;
      x->val.u.s = t->s;
      nl_push(P->ar, body, x);
      P->i++;
      break;
    }
    case TK_VBEGIN: {
      jnode *x = nn(P, N_OUTPUT, t->line);
      P->i++;
      MLC_TRY(parse_tuple_expr(P, &x->a));
      if (cur(P)->type != TK_VEND)
        return unexpected(P, "end of print statement");
      P->i++;
      nl_push(P->ar, body, x);
      break;
    }
    case TK_BBEGIN: {
      jtok *nx = &P->t[P->i + 1];
      if (nx->type == TK_NAME && ends) {
        for (int k = 0; ends[k]; k++)
          if (is_name(nx, ends[k]))
            return MLC_OK;
      }
      if (nx->type == TK_NAME) {
        static const char *const stray[] = {"endif", "endfor", "elif", "else", "endset", "endmacro", "endcall",
                                            "endfilter", "endwith", "endgeneration", NULL};
        for (int k = 0; stray[k]; k++)
          if (is_name(nx, stray[k])) {
            if (ends)
              return jerr(nx->line, "Encountered unknown tag '%s'. Jinja was looking for '%s'.", stray[k], ends[0]);
            return jerr(nx->line, "Encountered unknown tag '%s'.", stray[k]);
          }
      }
      MLC_TRY(parse_stmt(P, body));
      break;
    }
    default: return unexpected(P, "template data");
    }
  }
}

struct mlc_jinja_template {
  jarena ar;
  jnlist body;
};

mlc_status mlc_jinja_parse(const char *src, mlc_jinja_template **out) {
  *out = NULL;
  mlc_jinja_template *t = calloc(1, sizeof *t);
  if (!t)
    return mlc_err(MLC_ERR_NOMEM, "out of memory parsing a template");
  jmp_buf jb;
  t->ar.oom = &jb;
  if (setjmp(jb)) {
    jar_free(&t->ar);
    free(t);
    return MLC_ERR_NOMEM;
  }
  /* newline normalisation and keep_trailing_newline=False */
  size_t n = strlen(src);
  char *s = jar_alloc(&t->ar, n + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (src[i] == '\r') {
      s[o++] = '\n';
      if (i + 1 < n && src[i + 1] == '\n')
        i++;
    } else
      s[o++] = src[i];
  }
  if (o > 0 && s[o - 1] == '\n')
    o--;
  s[o] = 0;
  jlexer L = {.ar = &t->ar, .src = s, .len = o, .line = 1};
  mlc_status st = lex(&L);
  if (st == MLC_OK) {
    jparser P = {.ar = &t->ar, .t = L.toks, .n = L.nt};
    st = parse_body(&P, &t->body, NULL, NULL, 0);
  }
  if (st != MLC_OK) {
    jar_free(&t->ar);
    free(t);
    return st;
  }
  t->ar.oom = NULL;
  *out = t;
  return MLC_OK;
}

void mlc_jinja_free(mlc_jinja_template *t) {
  if (!t)
    return;
  jar_free(&t->ar);
  free(t);
}

/* ============================================================================================ */
/* interpreter                                                                                  */
/* ============================================================================================ */

static mlc_status eval(jctx *c, jframe *f, const jnode *x, jv *out);
static mlc_status exec_body(jctx *c, jframe *f, const jnlist *body);

static jframe *frame_new(jctx *c, jframe *parent) {
  jframe *f = jar_alloc(c->ar, sizeof *f);
  memset(f, 0, sizeof *f);
  f->parent = parent;
  return f;
}
static bool frame_lookup(jframe *f, const char *s, size_t n, jv *out) {
  for (; f; f = f->parent) {
    long i = jd_find_str(&f->vars, s, n);
    if (i >= 0) {
      *out = f->vars.v[i];
      return true;
    }
  }
  return false;
}
static void frame_set(jctx *c, jframe *f, jstr *name, jv v) {
  jv k = {.t = JV_STR};
  k.u.s = name;
  jd_set(c->ar, &f->vars, k, v);
}

static mlc_status assign(jctx *c, jframe *f, const jnode *target, jv v) {
  if (target->kind == N_NAME) {
    frame_set(c, f, target->name, v);
    return MLC_OK;
  }
  if (target->kind == N_GETATTR) {
    jv ns;
    if (!frame_lookup(f, target->a->name->s, target->a->name->len, &ns) || ns.t != JV_NS)
      return jerr(target->line, "cannot assign attribute on non-namespace object");
    jv k = {.t = JV_STR};
    k.u.s = target->name;
    jd_set(c->ar, ns.u.d, k, v);
    return MLC_OK;
  }
  /* tuple unpacking */
  jlist *l;
  if (v.t != JV_LIST) {
    if (v.t == JV_STR || v.t == JV_DICT)
      MLC_TRY(jv_iter_list(c, target->line, v, &l));
    else
      return jerr(target->line, "cannot unpack non-iterable %s object", jv_typename(v));
  } else
    l = v.u.l;
  if (l->n != (size_t)target->args.n)
    return jerr(target->line, "%s values to unpack (expected %d, got %zu)",
                l->n > (size_t)target->args.n ? "too many" : "not enough", target->args.n, l->n);
  for (int i = 0; i < target->args.n; i++)
    MLC_TRY(assign(c, f, target->args.v[i], l->v[i]));
  return MLC_OK;
}

static mlc_status eval_args(jctx *c, jframe *f, const jnlist *args, jv *first, jargs *out) {
  int np = first ? 1 : 0, nk = 0;
  for (int i = 0; i < args->n; i++)
    args->v[i]->kind == N_KWARG ? nk++ : np++;
  out->np = 0;
  out->nk = 0;
  out->pos = jar_alloc(c->ar, (size_t)(np + 1) * sizeof(jv));
  out->kn = jar_alloc(c->ar, (size_t)(nk + 1) * sizeof(jstr *));
  out->kv = jar_alloc(c->ar, (size_t)(nk + 1) * sizeof(jv));
  if (first)
    out->pos[out->np++] = *first;
  for (int i = 0; i < args->n; i++) {
    const jnode *a = args->v[i];
    if (a->kind == N_KWARG) {
      out->kn[out->nk] = a->name;
      MLC_TRY(eval(c, f, a->a, &out->kv[out->nk]));
      out->nk++;
    } else {
      MLC_TRY(eval(c, f, a, &out->pos[out->np]));
      out->np++;
    }
  }
  return MLC_OK;
}

static int64_t py_floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    q--;
  return q;
}
static int64_t py_mod(int64_t a, int64_t b) {
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0)))
    m += b;
  return m;
}

mlc_status jlib_percent_format(jctx *c, int line, jv fmt, jv args, jv *out);

static mlc_status binop_eval(jctx *c, int line, int op, jv a, jv b, jv *out) {
  if (op == '~') {
    jsb s;
    sb_init(&s, c->ar);
    jv_to_str(c, &s, a);
    jv_to_str(c, &s, b);
    *out = sb_value(&s);
    return MLC_OK;
  }
  if (a.t == JV_UNDEF)
    return undef_error(line, a);
  if (b.t == JV_UNDEF)
    return undef_error(line, b);
  if (is_num(a) && is_num(b)) {
    bool fl = a.t == JV_FLOAT || b.t == JV_FLOAT;
    switch (op) {
    case '+': *out = fl ? jv_float(num_f(a) + num_f(b)) : jv_int(num_i(a) + num_i(b)); return MLC_OK;
    case '-': *out = fl ? jv_float(num_f(a) - num_f(b)) : jv_int(num_i(a) - num_i(b)); return MLC_OK;
    case '*': *out = fl ? jv_float(num_f(a) * num_f(b)) : jv_int(num_i(a) * num_i(b)); return MLC_OK;
    case '/':
      if (num_f(b) == 0)
        return jerr(line, "division by zero");
      *out = jv_float(num_f(a) / num_f(b));
      return MLC_OK;
    case 'F':
      if (num_f(b) == 0)
        return jerr(line, "integer division or modulo by zero");
      *out = fl ? jv_float(floor(num_f(a) / num_f(b))) : jv_int(py_floordiv(num_i(a), num_i(b)));
      return MLC_OK;
    case '%':
      if (num_f(b) == 0)
        return jerr(line, "integer division or modulo by zero");
      if (fl) {
        double m = fmod(num_f(a), num_f(b));
        if (m != 0 && ((m < 0) != (num_f(b) < 0)))
          m += num_f(b);
        *out = jv_float(m);
      } else
        *out = jv_int(py_mod(num_i(a), num_i(b)));
      return MLC_OK;
    case 'P':
      if (!fl && num_i(b) >= 0) {
        int64_t r = 1, base = num_i(a);
        for (int64_t e = num_i(b); e > 0; e--)
          r *= base;
        *out = jv_int(r);
      } else
        *out = jv_float(pow(num_f(a), num_f(b)));
      return MLC_OK;
    }
  }
  if (op == '+' && a.t == JV_STR && b.t == JV_STR) {
    jsb s;
    sb_init(&s, c->ar);
    sb_add(&s, a.u.s->s, a.u.s->len);
    sb_add(&s, b.u.s->s, b.u.s->len);
    *out = sb_value(&s);
    return MLC_OK;
  }
  if (op == '+' && a.t == JV_LIST && b.t == JV_LIST) {
    jv l = jv_list(c->ar, a.u.l->n + b.u.l->n);
    for (size_t i = 0; i < a.u.l->n; i++)
      jl_push(c->ar, l.u.l, a.u.l->v[i]);
    for (size_t i = 0; i < b.u.l->n; i++)
      jl_push(c->ar, l.u.l, b.u.l->v[i]);
    l.u.l->tuple = a.u.l->tuple;
    *out = l;
    return MLC_OK;
  }
  if (op == '*' && ((a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL))) {
    int64_t k = num_i(b);
    if (a.t == JV_STR) {
      jsb s;
      sb_init(&s, c->ar);
      for (int64_t i = 0; i < k; i++)
        sb_add(&s, a.u.s->s, a.u.s->len);
      *out = sb_value(&s);
    } else {
      jv l = jv_list(c->ar, 0);
      for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < a.u.l->n; j++)
          jl_push(c->ar, l.u.l, a.u.l->v[j]);
      *out = l;
    }
    return MLC_OK;
  }
  if (op == '%' && a.t == JV_STR)
    return jlib_percent_format(c, line, a, b, out);
  const char *opname = op == 'F' ? "//" : op == 'P' ? "**" : op == '+' ? "+" : op == '-' ? "-" : op == '*' ? "*"
                     : op == '/' ? "/" : "%";
  if (op == '+' && a.t == JV_STR)
    return jerr(line, "can only concatenate str (not \"%s\") to str", jv_typename(b));
  return jerr(line, "unsupported operand type(s) for %s: '%s' and '%s'", opname, jv_typename(a), jv_typename(b));
}

static mlc_status contains(jctx *c, int line, jv container, jv item, bool *out) {
  switch (container.t) {
  case JV_STR:
    if (item.t != JV_STR)
      return jerr(line, "'in <string>' requires string as left operand, not %s", jv_typename(item));
    if (item.u.s->len == 0) {
      *out = true;
      return MLC_OK;
    }
    *out = memmem(container.u.s->s, container.u.s->len, item.u.s->s, item.u.s->len) != NULL;
    return MLC_OK;
  case JV_LIST:
    *out = false;
    for (size_t i = 0; i < container.u.l->n; i++)
      if (jv_eq(container.u.l->v[i], item)) {
        *out = true;
        break;
      }
    return MLC_OK;
  case JV_DICT:
  case JV_NS: *out = jd_find(container.u.d, item) >= 0; return MLC_OK;
  case JV_UNDEF: *out = false; return MLC_OK;
  default: return jerr(line, "argument of type '%s' is not iterable", jv_typename(container));
  }
}

/* slices: Python semantics */
static void slice_indices(int64_t len, jv start, jv stop, int64_t step, int64_t *s0, int64_t *s1) {
  int64_t lo, hi;
  if (step > 0) {
    lo = 0;
    hi = len;
  } else {
    lo = -1;
    hi = len - 1;
  }
  int64_t st = step > 0 ? lo : hi, sp = step > 0 ? hi : lo;
  if (start.t == JV_INT || start.t == JV_BOOL) {
    st = num_i(start);
    if (st < 0) {
      st += len;
      if (st < lo)
        st = lo;
    } else if (st > hi)
      st = hi;
  }
  if (stop.t == JV_INT || stop.t == JV_BOOL) {
    sp = num_i(stop);
    if (sp < 0) {
      sp += len;
      if (sp < lo)
        sp = lo;
    } else if (sp > hi)
      sp = hi;
  }
  *s0 = st;
  *s1 = sp;
}

static mlc_status do_slice(jctx *c, int line, jv obj, jv start, jv stop, jv stepv, jv *out) {
  int64_t step = 1;
  if (stepv.t == JV_INT || stepv.t == JV_BOOL)
    step = num_i(stepv);
  else if (stepv.t != JV_NONE && stepv.t != JV_UNDEF)
    return jerr(line, "slice indices must be integers or None");
  if (step == 0)
    return jerr(line, "slice step cannot be zero");
  for (int k = 0; k < 2; k++) {
    jv v = k ? stop : start;
    if (v.t != JV_INT && v.t != JV_BOOL && v.t != JV_NONE && v.t != JV_UNDEF)
      return jerr(line, "slice indices must be integers or None");
  }
  if (obj.t == JV_LIST) {
    int64_t s0, s1;
    slice_indices((int64_t)obj.u.l->n, start, stop, step, &s0, &s1);
    jv l = jv_list(c->ar, 0);
    for (int64_t i = s0; step > 0 ? i < s1 : i > s1; i += step)
      jl_push(c->ar, l.u.l, obj.u.l->v[i]);
    l.u.l->tuple = obj.u.l->tuple;
    *out = l;
    return MLC_OK;
  }
  if (obj.t == JV_STR) {
    /* code point offsets */
    size_t n = obj.u.s->len, cnt = 0;
    size_t *offs = jar_alloc(c->ar, (n + 1) * sizeof(size_t));
    for (size_t i = 0; i < n;) {
      uint32_t cp;
      offs[cnt++] = i;
      i += u8_dec(obj.u.s->s + i, n - i, &cp);
    }
    offs[cnt] = n;
    int64_t s0, s1;
    slice_indices((int64_t)cnt, start, stop, step, &s0, &s1);
    jsb b;
    sb_init(&b, c->ar);
    if (step == 1) {
      if (s1 > s0)
        sb_add(&b, obj.u.s->s + offs[s0], offs[s1] - offs[s0]);
    } else
      for (int64_t i = s0; step > 0 ? i < s1 : i > s1; i += step)
        sb_add(&b, obj.u.s->s + offs[i], offs[i + 1] - offs[i]);
    *out = sb_value(&b);
    return MLC_OK;
  }
  if (obj.t == JV_UNDEF)
    return undef_error(line, obj);
  return jerr(line, "'%s' object is not subscriptable", jv_typename(obj));
}

static mlc_status call_macro(jctx *c, int line, jfunc *fn, jargs *a, jv *out);
mlc_status jexec_for(jctx *c, jframe *f, const jnode *x, jv iterable, int depth);

mlc_status jv_call(jctx *c, int line, jv fn, jargs *a, jv *out) {
  if (fn.t == JV_UNDEF)
    return undef_error(line, fn);
  if (fn.t == JV_LOOP) {
    /* recursive loop call: loop(items) */
    jloop *lp = fn.u.lp;
    if (!lp->node || !lp->node->flag)
      return jerr(line, "Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.");
    if (a->np != 1)
      return jerr(line, "loop() takes exactly one argument");
    jsb b, *saved = c->out;
    sb_init(&b, c->ar);
    c->out = &b;
    int saved_depth = c->depth;
    if (++c->depth > 256)
      return jerr(line, "maximum recursion depth exceeded");
    mlc_status st = jexec_for(c, lp->frame, lp->node, a->pos[0], lp->depth + 1);
    c->depth = saved_depth;
    c->out = saved;
    MLC_TRY(st);
    *out = sb_value(&b);
    return MLC_OK;
  }
  if (fn.t != JV_FUNC)
    return jerr(line, "'%s' object is not callable", jv_typename(fn));
  if (fn.u.fn->macro || fn.u.fn->caller_body)
    return call_macro(c, line, fn.u.fn, a, out);
  *out = jv_none();
  return fn.u.fn->fn(c, line, fn.u.fn->self, a, out);
}

static mlc_status eval_filter(jctx *c, jframe *f, const jnode *x, jv operand, jv *out) {
  jv v = operand;
  if (x->a)
    MLC_TRY(eval(c, f, x->a, &v));
  jargs a;
  MLC_TRY(eval_args(c, f, &x->args, NULL, &a));
  if (!x->filt)
    return jerr(x->line, "No filter named '%s'.", x->name->s);
  return x->filt(c, x->line, v, &a, out);
}
/* filter chain with the innermost operand replaced (filter blocks, block set) */
static mlc_status eval_filter_chain(jctx *c, jframe *f, const jnode *x, jv operand, jv *out) {
  if (!x) {
    *out = operand;
    return MLC_OK;
  }
  jv inner;
  MLC_TRY(eval_filter_chain(c, f, x->a, operand, &inner));
  jargs a;
  MLC_TRY(eval_args(c, f, &x->args, NULL, &a));
  if (!x->filt)
    return jerr(x->line, "No filter named '%s'.", x->name->s);
  return x->filt(c, x->line, inner, &a, out);
}

static mlc_status eval(jctx *c, jframe *f, const jnode *x, jv *out) {
  switch (x->kind) {
  case N_CONST: *out = x->val; return MLC_OK;
  case N_NAME:
    if (!frame_lookup(f, x->name->s, x->name->len, out)) {
      char tmp[300];
      int n = snprintf(tmp, sizeof tmp, "'%s' is undefined", x->name->s);
      *out = jv_undef(jstr_new(c->ar, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1));
    }
    return MLC_OK;
  case N_LIST:
  case N_TUPLE: {
    jv l = jv_list(c->ar, (size_t)x->args.n);
    l.u.l->tuple = x->kind == N_TUPLE;
    for (int i = 0; i < x->args.n; i++) {
      jv v;
      MLC_TRY(eval(c, f, x->args.v[i], &v));
      jl_push(c->ar, l.u.l, v);
    }
    *out = l;
    return MLC_OK;
  }
  case N_DICT: {
    jv d = jv_dict(c->ar);
    for (int i = 0; i < x->args.n; i++) {
      jv k, v;
      MLC_TRY(eval(c, f, x->args.v[i], &k));
      MLC_TRY(eval(c, f, x->args2.v[i], &v));
      jd_set(c->ar, d.u.d, k, v);
    }
    *out = d;
    return MLC_OK;
  }
  case N_BINOP: {
    jv a, b;
    MLC_TRY(eval(c, f, x->a, &a));
    MLC_TRY(eval(c, f, x->b, &b));
    return binop_eval(c, x->line, x->op, a, b, out);
  }
  case N_NOT: {
    jv a;
    MLC_TRY(eval(c, f, x->a, &a));
    *out = jv_bool(!jv_truthy(a));
    return MLC_OK;
  }
  case N_NEG:
  case N_POS: {
    jv a;
    MLC_TRY(eval(c, f, x->a, &a));
    if (a.t == JV_UNDEF)
      return undef_error(x->line, a);
    if (!is_num(a))
      return jerr(x->line, "bad operand type for unary %c: '%s'", x->kind == N_NEG ? '-' : '+', jv_typename(a));
    if (x->kind == N_POS)
      *out = a.t == JV_BOOL ? jv_int(a.u.b) : a;
    else
      *out = a.t == JV_FLOAT ? jv_float(-a.u.f) : jv_int(-num_i(a));
    return MLC_OK;
  }
  case N_AND:
  case N_OR: {
    jv a;
    MLC_TRY(eval(c, f, x->a, &a));
    bool t = jv_truthy(a);
    if ((x->kind == N_AND && !t) || (x->kind == N_OR && t)) {
      *out = a;
      return MLC_OK;
    }
    return eval(c, f, x->b, out);
  }
  case N_COMPARE: {
    jv left;
    MLC_TRY(eval(c, f, x->a, &left));
    for (int i = 0; i < x->args.n; i++) {
      const jnode *o = x->args.v[i];
      jv right;
      MLC_TRY(eval(c, f, o->a, &right));
      bool r;
      int cmp;
      switch (o->op) {
      case CMP_EQ: r = jv_eq(left, right); break;
      case CMP_NE: r = !jv_eq(left, right); break;
      case CMP_IN: MLC_TRY(contains(c, o->line, right, left, &r)); break;
      case CMP_NOTIN:
        MLC_TRY(contains(c, o->line, right, left, &r));
        r = !r;
        break;
      default:
        MLC_TRY(jv_cmp(o->line, left, right, &cmp));
        r = o->op == CMP_LT ? cmp < 0 : o->op == CMP_LE ? cmp <= 0 : o->op == CMP_GT ? cmp > 0 : cmp >= 0;
      }
      if (!r) {
        *out = jv_bool(false);
        return MLC_OK;
      }
      left = right;
    }
    *out = jv_bool(true);
    return MLC_OK;
  }
  case N_CONDEXPR: {
    jv cond;
    MLC_TRY(eval(c, f, x->a, &cond));
    if (jv_truthy(cond))
      return eval(c, f, x->b, out);
    if (x->c)
      return eval(c, f, x->c, out);
    *out = jv_undef(jstr_new(c->ar, "the inline if-expression evaluated to false and no else section was defined.", 76));
    return MLC_OK;
  }
  case N_GETATTR: {
    jv obj;
    MLC_TRY(eval(c, f, x->a, &obj));
    return jv_getattr(c, x->line, obj, x->name->s, x->name->len, out);
  }
  case N_GETITEM: {
    jv obj, key;
    MLC_TRY(eval(c, f, x->a, &obj));
    MLC_TRY(eval(c, f, x->b, &key));
    return jv_getitem(c, x->line, obj, key, out);
  }
  case N_SLICE: {
    jv obj, s0 = jv_none(), s1 = jv_none(), st = jv_none();
    MLC_TRY(eval(c, f, x->a, &obj));
    if (x->b)
      MLC_TRY(eval(c, f, x->b, &s0));
    if (x->c)
      MLC_TRY(eval(c, f, x->c, &s1));
    if (x->d)
      MLC_TRY(eval(c, f, x->d, &st));
    return do_slice(c, x->line, obj, s0, s1, st, out);
  }
  case N_CALL: {
    jv fn;
    MLC_TRY(eval(c, f, x->a, &fn));
    jargs a;
    MLC_TRY(eval_args(c, f, &x->args, NULL, &a));
    return jv_call(c, x->line, fn, &a, out);
  }
  case N_FILTER: return eval_filter(c, f, x, jv_undef(NULL), out);
  case N_TEST: {
    jv v;
    MLC_TRY(eval(c, f, x->a, &v));
    jargs a;
    MLC_TRY(eval_args(c, f, &x->args, NULL, &a));
    bool r;
    if (!x->test)
      return jerr(x->line, "No test named '%s'.", x->name->s);
    MLC_TRY(x->test(c, x->line, v, &a, &r));
    *out = jv_bool(x->flag ? !r : r);
    return MLC_OK;
  }
  default: return jerr(x->line, "internal: cannot evaluate node kind %d", x->kind);
  }
}

static mlc_status call_macro(jctx *c, int line, jfunc *fn, jargs *a, jv *out) {
  const jnode *m = fn->macro;
  const jnlist *params = m ? &m->args : NULL;
  const jnlist *body = m ? &m->body : &fn->caller_body->body;
  jframe *fr = frame_new(c, m ? fn->closure : fn->caller_frame);
  int np = params ? params->n : 0;
  if (fn->caller_body && !m) {
    /* caller(args): params of the call block */
    params = &fn->caller_body->args;
    np = params->n;
  }
  if (a->np > np)
    return jerr(line, "macro '%s' takes not more than %d argument(s)", fn->name ? fn->name : "caller", np);
  for (int i = 0; i < np; i++) {
    const jnode *p = params->v[i];
    jv v;
    bool found = false;
    if (i < a->np) {
      v = a->pos[i];
      found = true;
    }
    for (int k = 0; k < a->nk; k++)
      if (strcmp(a->kn[k]->s, p->name->s) == 0) {
        if (found)
          return jerr(line, "macro '%s' got multiple values for argument '%s'", fn->name, p->name->s);
        v = a->kv[k];
        found = true;
      }
    if (!found) {
      if (p->a)
        MLC_TRY(eval(c, fr, p->a, &v));
      else {
        char tmp[300];
        int n = snprintf(tmp, sizeof tmp, "parameter '%s' was not provided", p->name->s);
        v = jv_undef(jstr_new(c->ar, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1));
      }
    }
    frame_set(c, fr, p->name, v);
  }
  for (int k = 0; k < a->nk; k++) {
    bool known = false;
    for (int i = 0; i < np; i++)
      if (strcmp(a->kn[k]->s, params->v[i]->name->s) == 0)
        known = true;
    if (!known && strcmp(a->kn[k]->s, "caller") != 0)
      return jerr(line, "macro '%s' takes no keyword argument '%s'", fn->name ? fn->name : "caller", a->kn[k]->s);
    if (!known)
      frame_set(c, fr, a->kn[k], a->kv[k]);
  }
  if (++c->depth > 256)
    return jerr(line, "maximum recursion depth exceeded");
  jsb b, *saved = c->out;
  sb_init(&b, c->ar);
  c->out = &b;
  int saved_ctrl = c->ctrl;
  c->ctrl = 0;
  mlc_status st = exec_body(c, fr, body);
  c->ctrl = saved_ctrl;
  c->out = saved;
  c->depth--;
  MLC_TRY(st);
  *out = sb_value(&b);
  return MLC_OK;
}

mlc_status jexec_for(jctx *c, jframe *f, const jnode *x, jv iterable, int depth);
mlc_status jexec_for(jctx *c, jframe *f, const jnode *x, jv iterable, int depth) {
  jlist *items;
  MLC_TRY(jv_iter_list(c, x->line, iterable, &items));
  if (x->c) { /* {% for ... if cond %} */
    jv fl = jv_list(c->ar, items->n);
    for (size_t i = 0; i < items->n; i++) {
      jframe *it = frame_new(c, f);
      MLC_TRY(assign(c, it, x->a, items->v[i]));
      jv cond;
      MLC_TRY(eval(c, it, x->c, &cond));
      if (jv_truthy(cond))
        jl_push(c->ar, fl.u.l, items->v[i]);
    }
    items = fl.u.l;
  } else if (items->n) {
    /* iterate over a snapshot: appends in the body do not extend the loop */
    jv cp = jv_list(c->ar, items->n);
    memcpy(cp.u.l->v, items->v, items->n * sizeof(jv));
    cp.u.l->n = items->n;
    items = cp.u.l;
  }
  jloop *lp = jar_alloc(c->ar, sizeof *lp);
  memset(lp, 0, sizeof *lp);
  lp->items = items;
  lp->depth = depth;
  lp->node = x;
  lp->frame = f;
  jv loopv = {.t = JV_LOOP};
  loopv.u.lp = lp;
  if (!c->loop_name)
    c->loop_name = jstr_new(c->ar, "loop", 4);
  jstr *loop_name = c->loop_name;
  for (size_t i = 0; i < items->n; i++) {
    lp->idx = i;
    jframe *it = frame_new(c, f);
    frame_set(c, it, loop_name, loopv);
    MLC_TRY(assign(c, it, x->a, items->v[i]));
    MLC_TRY(exec_body(c, it, &x->body));
    if (c->ctrl == JC_BREAK) {
      c->ctrl = 0;
      break;
    }
    c->ctrl = 0;
  }
  if (items->n == 0 && x->body2.n)
    MLC_TRY(exec_body(c, frame_new(c, f), &x->body2));
  return MLC_OK;
}

static mlc_status exec_node(jctx *c, jframe *f, const jnode *x) {
  switch (x->kind) {
  case N_TEXT: sb_add(c->out, x->val.u.s->s, x->val.u.s->len); return MLC_OK;
  case N_OUTPUT: {
    jv v;
    MLC_TRY(eval(c, f, x->a, &v));
    jv_to_str(c, c->out, v);
    return MLC_OK;
  }
  case N_IF: {
    jv cond;
    MLC_TRY(eval(c, f, x->a, &cond));
    return exec_body(c, f, jv_truthy(cond) ? &x->body : &x->body2);
  }
  case N_FOR: {
    jv it;
    MLC_TRY(eval(c, f, x->b, &it));
    return jexec_for(c, f, x, it, 1);
  }
  case N_SET: {
    jv v;
    if (x->flag) {
      jsb b, *saved = c->out;
      sb_init(&b, c->ar);
      c->out = &b;
      mlc_status st = exec_body(c, f, &x->body);
      c->out = saved;
      MLC_TRY(st);
      MLC_TRY(eval_filter_chain(c, f, x->c, sb_value(&b), &v));
    } else
      MLC_TRY(eval(c, f, x->b, &v));
    return assign(c, f, x->a, v);
  }
  case N_MACRO: {
    jfunc *fn = jar_alloc(c->ar, sizeof *fn);
    memset(fn, 0, sizeof *fn);
    fn->name = x->name->s;
    fn->macro = x;
    fn->closure = f;
    jv v = {.t = JV_FUNC};
    v.u.fn = fn;
    frame_set(c, f, x->name, v);
    return MLC_OK;
  }
  case N_CALLBLOCK: {
    jfunc *caller = jar_alloc(c->ar, sizeof *caller);
    memset(caller, 0, sizeof *caller);
    caller->name = "caller";
    caller->caller_body = x;
    caller->caller_frame = f;
    jv cv = {.t = JV_FUNC};
    cv.u.fn = caller;
    const jnode *call = x->a;
    jv fn;
    MLC_TRY(eval(c, f, call->a, &fn));
    jargs a;
    MLC_TRY(eval_args(c, f, &call->args, NULL, &a));
    /* pass caller as a keyword */
    jstr **kn = jar_alloc(c->ar, (size_t)(a.nk + 1) * sizeof(jstr *));
    jv *kv = jar_alloc(c->ar, (size_t)(a.nk + 1) * sizeof(jv));
    if (a.nk) {
      memcpy(kn, a.kn, (size_t)a.nk * sizeof(jstr *));
      memcpy(kv, a.kv, (size_t)a.nk * sizeof(jv));
    }
    kn[a.nk] = jstr_new(c->ar, "caller", 6);
    kv[a.nk] = cv;
    a.kn = kn;
    a.kv = kv;
    a.nk++;
    jv r;
    MLC_TRY(jv_call(c, x->line, fn, &a, &r));
    jv_to_str(c, c->out, r);
    return MLC_OK;
  }
  case N_FILTERBLOCK: {
    jsb b, *saved = c->out;
    sb_init(&b, c->ar);
    c->out = &b;
    mlc_status st = exec_body(c, f, &x->body);
    c->out = saved;
    MLC_TRY(st);
    jv r;
    MLC_TRY(eval_filter_chain(c, f, x->a, sb_value(&b), &r));
    jv_to_str(c, c->out, r);
    return MLC_OK;
  }
  case N_WITH: {
    jframe *w = frame_new(c, f);
    for (int i = 0; i < x->args.n; i++) {
      jv v;
      MLC_TRY(eval(c, f, x->args.v[i]->a, &v));
      MLC_TRY(assign(c, w, x->args.v[i]->b, v));
    }
    return exec_body(c, w, &x->body);
  }
  case N_BODY: return exec_body(c, f, &x->body);
  case N_BREAK: c->ctrl = JC_BREAK; return MLC_OK;
  case N_CONTINUE: c->ctrl = JC_CONTINUE; return MLC_OK;
  default: return jerr(x->line, "internal: cannot execute node kind %d", x->kind);
  }
}

static mlc_status exec_body(jctx *c, jframe *f, const jnlist *body) {
  for (int i = 0; i < body->n; i++) {
    MLC_TRY(exec_node(c, f, body->v[i]));
    if (c->ctrl)
      return MLC_OK;
  }
  return MLC_OK;
}

/* ---- cJSON -> values ---- */
static jv from_json(jctx *c, const cJSON *j) {
  if (!j)
    return jv_none();
  if (cJSON_IsNull(j))
    return jv_none();
  if (cJSON_IsBool(j))
    return jv_bool(cJSON_IsTrue(j));
  if (cJSON_IsNumber(j)) {
    double d = j->valuedouble;
    if (d == floor(d) && fabs(d) < 9.2e18)
      return jv_int((int64_t)d);
    return jv_float(d);
  }
  if (cJSON_IsString(j))
    return jv_cstr(c->ar, j->valuestring ? j->valuestring : "");
  if (cJSON_IsArray(j)) {
    jv l = jv_list(c->ar, (size_t)cJSON_GetArraySize(j));
    for (const cJSON *e = j->child; e; e = e->next)
      jl_push(c->ar, l.u.l, from_json(c, e));
    return l;
  }
  if (cJSON_IsObject(j)) {
    jv d = jv_dict(c->ar);
    for (const cJSON *e = j->child; e; e = e->next)
      jd_set(c->ar, d.u.d, jv_cstr(c->ar, e->string ? e->string : ""), from_json(c, e));
    return d;
  }
  return jv_none();
}

mlc_status mlc_jinja_render(const mlc_jinja_template *t, const cJSON *vars, char **out) {
  *out = NULL;
  jarena ar = {0};
  jmp_buf jb;
  ar.oom = &jb;
  if (setjmp(jb)) {
    jar_free(&ar);
    return MLC_ERR_NOMEM;
  }
  jctx c = {.ar = &ar};
  c.globals = frame_new(&c, NULL);
  static const char *const globals[] = {"range", "namespace", "dict", "raise_exception", "strftime_now",
                                        "joiner", "cycler", "lipsum", NULL};
  for (int i = 0; globals[i]; i++) {
    jbuiltin_fn fn = jlib_global(globals[i]);
    if (fn)
      frame_set(&c, c.globals, jstr_new(&ar, globals[i], strlen(globals[i])), mkfunc(&c, globals[i], fn, jv_none()));
  }
  jframe *top = frame_new(&c, c.globals);
  if (vars && cJSON_IsObject(vars))
    for (const cJSON *e = vars->child; e; e = e->next)
      if (e->string)
        frame_set(&c, top, jstr_new(&ar, e->string, strlen(e->string)), from_json(&c, e));
  jsb b;
  sb_init(&b, &ar);
  c.out = &b;
  mlc_status st = exec_body(&c, top, &t->body);
  if (st == MLC_OK) {
    char *r = malloc(b.len + 1);
    if (!r)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory rendering a template");
    else {
      if (b.len)
        memcpy(r, b.p, b.len);
      r[b.len] = 0;
      *out = r;
    }
  }
  jar_free(&ar);
  return st;
}

mlc_status mlc_jinja_render_string(const char *src, const cJSON *vars, char **out) {
  mlc_jinja_template *t;
  MLC_TRY(mlc_jinja_parse(src, &t));
  mlc_status st = mlc_jinja_render(t, vars, out);
  mlc_jinja_free(t);
  return st;
}
