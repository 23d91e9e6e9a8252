/* jinja_lib.c: the filters, tests, globals and Python methods templates call (see jinja.h). */
#include "tokenizer/jinja_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

bool jargs_get(jargs *a, int i, const char *name, jv *out) {
  if (i >= 0 && i < a->np) {
    *out = a->pos[i];
    return true;
  }
  if (name)
    for (int k = 0; k < a->nk; k++)
      if (strcmp(a->kn[k]->s, name) == 0) {
        *out = a->kv[k];
        return true;
      }
  return false;
}
static bool arg_bool(jargs *a, int i, const char *name, bool def) {
  jv v;
  return jargs_get(a, i, name, &v) ? jv_truthy(v) : def;
}
static bool is_intlike(jv v) { return v.t == JV_INT || v.t == JV_BOOL; }
static int64_t iv(jv v) { return v.t == JV_INT ? v.u.i : v.t == JV_BOOL ? v.u.b : v.t == JV_FLOAT ? (int64_t)v.u.f : 0; }
static double fv(jv v) { return v.t == JV_FLOAT ? v.u.f : (double)iv(v); }
static bool is_number(jv v) { return v.t == JV_INT || v.t == JV_BOOL || v.t == JV_FLOAT; }

static mlc_status need_str(int line, jv v, const char *what) {
  if (v.t != JV_STR)
    return jerr(line, "%s must be str, not %s", what, jv_typename(v));
  return MLC_OK;
}

/* str(v) for filters that coerce (jinja soft_str) */
static jstr *sstr(jctx *c, jv v) { return jv_stringify(c, v).u.s; }

/* ---- unicode case mapping ---- */
typedef enum { CASE_UPPER, CASE_LOWER } casemode;
/* full (multi-character) case mappings Python applies that simple mappings lack */
static const char *special_case(uint32_t cp, casemode m) {
  if (m == CASE_UPPER) {
    switch (cp) {
    case 0xdf: return "SS";
    case 0x149: return "\xca\xbcN";
    case 0xfb00: return "FF";
    case 0xfb01: return "FI";
    case 0xfb02: return "FL";
    case 0xfb03: return "FFI";
    case 0xfb04: return "FFL";
    case 0xfb05:
    case 0xfb06: return "ST";
    default: return NULL;
    }
  }
  return cp == 0x130 ? "i\xcc\x87" : NULL;
}
static jv map_case(jctx *c, const char *s, size_t n, casemode m) {
  jsb b;
  sb_init(&b, c->ar);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = u8_dec(s + i, n - i, &cp);
    const char *sp = cp >= 0x80 ? special_case(cp, m) : NULL;
    if (sp) {
      sb_puts(&b, sp);
      i += k;
      continue;
    }
    uint32_t r = m == CASE_UPPER ? (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp)
                                 : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    if (cp < 0x80 || r != cp) {
      char enc[4];
      sb_add(&b, enc, u8_enc(r, enc));
    } else
      sb_add(&b, s + i, k);
    i += k;
  }
  return sb_value(&b);
}
static bool is_cased_letter(uint32_t cp) {
  utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}
static void add_cp(jsb *b, uint32_t cp) {
  char enc[4];
  sb_add(b, enc, u8_enc(cp, enc));
}
/* Python str.title() */
static jv py_title(jctx *c, const char *s, size_t n) {
  jsb b;
  sb_init(&b, c->ar);
  bool prev_cased = false;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += u8_dec(s + i, n - i, &cp);
    bool cased = is_cased_letter(cp);
    add_cp(&b, prev_cased ? (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp)
                          : (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp));
    prev_cased = cased;
  }
  return sb_value(&b);
}
/* jinja's title filter: words start after [-\s({[<] */
static jv jinja_title(jctx *c, const char *s, size_t n) {
  jsb b;
  sb_init(&b, c->ar);
  bool start = true;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += u8_dec(s + i, n - i, &cp);
    bool sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
    if (sep) {
      add_cp(&b, cp);
      start = true;
    } else {
      add_cp(&b, start ? (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp)
                       : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
      start = false;
    }
  }
  return sb_value(&b);
}
static jv py_capitalize(jctx *c, const char *s, size_t n) {
  jsb b;
  sb_init(&b, c->ar);
  bool first = true;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += u8_dec(s + i, n - i, &cp);
    add_cp(&b, first ? (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
    first = false;
  }
  return sb_value(&b);
}

/* ---- strip ---- */
static bool cp_in(uint32_t cp, const jstr *chars) {
  for (size_t i = 0; i < chars->len;) {
    uint32_t x;
    i += u8_dec(chars->s + i, chars->len - i, &x);
    if (x == cp)
      return true;
  }
  return false;
}
static jv do_strip(jctx *c, jstr *s, const jstr *chars, bool left, bool right) {
  size_t a = 0, b = s->len;
  if (left)
    while (a < b) {
      uint32_t cp;
      size_t k = u8_dec(s->s + a, b - a, &cp);
      if (chars ? !cp_in(cp, chars) : !py_isspace(cp))
        break;
      a += k;
    }
  if (right)
    while (b > a) {
      size_t st = b - 1;
      while (st > a && ((unsigned char)s->s[st] & 0xc0) == 0x80)
        st--;
      uint32_t cp;
      u8_dec(s->s + st, b - st, &cp);
      if (chars ? !cp_in(cp, chars) : !py_isspace(cp))
        break;
      b = st;
    }
  return jv_str(c->ar, s->s + a, b - a);
}
static mlc_status strip_common(jctx *c, int line, jv self, jargs *a, jv *out, bool l, bool r) {
  jv ch;
  const jstr *chars = NULL;
  if (jargs_get(a, 0, "chars", &ch) && ch.t != JV_NONE) {
    MLC_TRY(need_str(line, ch, "strip arg"));
    chars = ch.u.s;
  }
  *out = do_strip(c, sstr(c, self), chars, l, r);
  return MLC_OK;
}

/* ---- split ---- */
static mlc_status do_split(jctx *c, int line, jstr *s, jv sepv, int64_t maxsplit, bool from_right, jv *out) {
  jv l = jv_list(c->ar, 0);
  if (sepv.t == JV_NONE || sepv.t == JV_UNDEF) {
    /* runs of whitespace */
    if (!from_right) {
      size_t i = 0;
      int64_t splits = 0;
      while (i < s->len) {
        uint32_t cp;
        size_t k;
        while (i < s->len && (k = u8_dec(s->s + i, s->len - i, &cp)) && py_isspace(cp))
          i += k;
        if (i >= s->len)
          break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          /* rest, right-stripped? Python keeps the rest as is (left-stripped only) */
          jl_push(c->ar, l.u.l, jv_str(c->ar, s->s + i, s->len - i));
          break;
        }
        size_t st = i;
        while (i < s->len && (k = u8_dec(s->s + i, s->len - i, &cp)) && !py_isspace(cp))
          i += k;
        jl_push(c->ar, l.u.l, jv_str(c->ar, s->s + st, i - st));
        splits++;
      }
    } else {
      /* rsplit(None): collect from the right */
      jv tmp = jv_list(c->ar, 0);
      size_t e = s->len;
      int64_t splits = 0;
      while (e > 0) {
        while (e > 0 && py_isspace((unsigned char)s->s[e - 1]))
          e--;
        if (e == 0)
          break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          jl_push(c->ar, tmp.u.l, jv_str(c->ar, s->s, e));
          break;
        }
        size_t st = e;
        while (st > 0 && !py_isspace((unsigned char)s->s[st - 1]))
          st--;
        jl_push(c->ar, tmp.u.l, jv_str(c->ar, s->s + st, e - st));
        e = st;
        splits++;
      }
      for (size_t i = tmp.u.l->n; i > 0; i--)
        jl_push(c->ar, l.u.l, tmp.u.l->v[i - 1]);
    }
    *out = l;
    return MLC_OK;
  }
  MLC_TRY(need_str(line, sepv, "separator"));
  jstr *sep = sepv.u.s;
  if (sep->len == 0)
    return jerr(line, "empty separator");
  if (!from_right) {
    size_t i = 0;
    int64_t splits = 0;
    for (;;) {
      const char *h = (maxsplit < 0 || splits < maxsplit) ? memmem(s->s + i, s->len - i, sep->s, sep->len) : NULL;
      if (!h) {
        jl_push(c->ar, l.u.l, jv_str(c->ar, s->s + i, s->len - i));
        break;
      }
      size_t hp = (size_t)(h - s->s);
      jl_push(c->ar, l.u.l, jv_str(c->ar, s->s + i, hp - i));
      i = hp + sep->len;
      splits++;
    }
  } else {
    jv tmp = jv_list(c->ar, 0);
    size_t e = s->len;
    int64_t splits = 0;
    for (;;) {
      size_t found = (size_t)-1;
      if (maxsplit < 0 || splits < maxsplit)
        for (size_t p = e >= sep->len ? e - sep->len + 1 : 0; p > 0; p--)
          if (memcmp(s->s + p - 1, sep->s, sep->len) == 0) {
            found = p - 1;
            break;
          }
      if (found == (size_t)-1) {
        jl_push(c->ar, tmp.u.l, jv_str(c->ar, s->s, e));
        break;
      }
      jl_push(c->ar, tmp.u.l, jv_str(c->ar, s->s + found + sep->len, e - found - sep->len));
      e = found;
      splits++;
    }
    for (size_t i = tmp.u.l->n; i > 0; i--)
      jl_push(c->ar, l.u.l, tmp.u.l->v[i - 1]);
  }
  *out = l;
  return MLC_OK;
}

static jv do_replace(jctx *c, jstr *s, jstr *old, jstr *new_, int64_t count) {
  jsb b;
  sb_init(&b, c->ar);
  if (old->len == 0) {
    int64_t n = 0;
    size_t i = 0;
    for (;;) {
      if (count < 0 || n < count) {
        sb_add(&b, new_->s, new_->len);
        n++;
      }
      if (i >= s->len)
        break;
      uint32_t cp;
      size_t k = u8_dec(s->s + i, s->len - i, &cp);
      sb_add(&b, s->s + i, k);
      i += k;
    }
    return sb_value(&b);
  }
  size_t i = 0;
  int64_t n = 0;
  while (i < s->len) {
    const char *h = (count < 0 || n < count) ? memmem(s->s + i, s->len - i, old->s, old->len) : NULL;
    if (!h) {
      sb_add(&b, s->s + i, s->len - i);
      break;
    }
    size_t hp = (size_t)(h - s->s);
    sb_add(&b, s->s + i, hp - i);
    sb_add(&b, new_->s, new_->len);
    i = hp + old->len;
    n++;
  }
  return sb_value(&b);
}

/* ---- attribute paths ("a.b", "0") for map/selectattr/sort/... ---- */
static mlc_status get_path(jctx *c, int line, jv item, jv attr, jv *out) {
  if (attr.t != JV_STR) {
    if (is_intlike(attr))
      return jv_getitem(c, line, item, attr, out);
    return jv_getitem(c, line, item, attr, out);
  }
  const char *s = attr.u.s->s;
  size_t n = attr.u.s->len, i = 0;
  jv cur = item;
  while (i <= n) {
    size_t e = i;
    while (e < n && s[e] != '.')
      e++;
    bool digits = e > i;
    for (size_t k = i; k < e; k++)
      if (s[k] < '0' || s[k] > '9')
        digits = false;
    jv key = digits ? jv_int(strtoll(s + i, NULL, 10)) : jv_str(c->ar, s + i, e - i);
    MLC_TRY(jv_getitem(c, line, cur, key, &cur));
    i = e + 1;
    if (e >= n)
      break;
  }
  *out = cur;
  return MLC_OK;
}

/* ---- stable merge sort with a fallible comparator ---- */
typedef struct sortctx {
  jctx *c;
  int line;
  bool case_sensitive, reverse;
  jv attr; /* JV_UNDEF: none */
  mlc_status st;
} sortctx;
static jv sort_key(sortctx *s, jv v) {
  if (s->attr.t != JV_UNDEF) {
    jv r;
    if (s->st == MLC_OK)
      s->st = get_path(s->c, s->line, v, s->attr, &r);
    if (s->st != MLC_OK)
      return jv_none();
    v = r;
  }
  if (!s->case_sensitive && v.t == JV_STR)
    v = map_case(s->c, v.u.s->s, v.u.s->len, CASE_LOWER);
  return v;
}
static int sort_cmp(sortctx *s, jv a, jv b) {
  if (s->st != MLC_OK)
    return 0;
  int r = 0;
  s->st = jv_cmp(s->line, sort_key(s, a), sort_key(s, b), &r);
  return s->reverse ? -r : r;
}
static void msort(sortctx *s, jv *v, jv *tmp, size_t n) {
  if (n < 2)
    return;
  size_t m = n / 2;
  msort(s, v, tmp, m);
  msort(s, v + m, tmp, n - m);
  size_t i = 0, j = m, k = 0;
  while (i < m && j < n)
    tmp[k++] = sort_cmp(s, v[j], v[i]) < 0 ? v[j++] : v[i++];
  while (i < m)
    tmp[k++] = v[i++];
  while (j < n)
    tmp[k++] = v[j++];
  memcpy(v, tmp, n * sizeof(jv));
}
static mlc_status sorted_copy(jctx *c, int line, jlist *src, bool reverse, bool cs, jv attr, jv *out) {
  jv l = jv_list(c->ar, src->n);
  if (src->n)
    memcpy(l.u.l->v, src->v, src->n * sizeof(jv));
  l.u.l->n = src->n;
  sortctx s = {.c = c, .line = line, .case_sensitive = cs, .reverse = reverse, .attr = attr};
  jv *tmp = jar_alloc(c->ar, (src->n + 1) * sizeof(jv));
  msort(&s, l.u.l->v, tmp, src->n);
  MLC_TRY(s.st);
  *out = l;
  return MLC_OK;
}

/* ============================================================================================ */
/* tojson (HF: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)) */
/* ============================================================================================ */

static void json_str(jsb *b, const char *s, size_t n, bool ascii) {
  sb_add(b, "\"", 1);
  for (size_t i = 0; i < n;) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"') {
      sb_add(b, "\\\"", 2);
      i++;
    } else if (ch == '\\') {
      sb_add(b, "\\\\", 2);
      i++;
    } else if (ch == '\n') {
      sb_add(b, "\\n", 2);
      i++;
    } else if (ch == '\r') {
      sb_add(b, "\\r", 2);
      i++;
    } else if (ch == '\t') {
      sb_add(b, "\\t", 2);
      i++;
    } else if (ch == '\b') {
      sb_add(b, "\\b", 2);
      i++;
    } else if (ch == '\f') {
      sb_add(b, "\\f", 2);
      i++;
    } else if (ch < 0x20) {
      sb_printf(b, "\\u%04x", ch);
      i++;
    } else if (ch >= 0x80 && ascii) {
      uint32_t cp;
      i += u8_dec(s + i, n - i, &cp);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        sb_printf(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else
        sb_printf(b, "\\u%04x", cp);
    } else {
      size_t k = i + 1;
      while (k < n && (unsigned char)s[k] >= 0x20 && s[k] != '"' && s[k] != '\\' && !(ascii && (unsigned char)s[k] >= 0x80))
        k++;
      sb_add(b, s + i, k - i);
      i = k;
    }
  }
  sb_add(b, "\"", 1);
}

static void json_nl(jsb *b, const char *indent, int level) {
  sb_add(b, "\n", 1);
  for (int i = 0; i < level; i++)
    sb_puts(b, indent);
}

static mlc_status json_dump(jctx *c, int line, jv v, bool ascii, const char *indent, const char *isep,
                            const char *ksep, bool sort_keys, int level, jsb *b) {
  char tmp[64];
  switch (v.t) {
  case JV_NONE: sb_puts(b, "null"); return MLC_OK;
  case JV_BOOL: sb_puts(b, v.u.b ? "true" : "false"); return MLC_OK;
  case JV_INT: sb_printf(b, "%lld", (long long)v.u.i); return MLC_OK;
  case JV_FLOAT:
    if (isnan(v.u.f))
      sb_puts(b, "NaN");
    else if (isinf(v.u.f))
      sb_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
    else {
      py_float_repr(v.u.f, tmp, sizeof tmp);
      sb_puts(b, tmp);
    }
    return MLC_OK;
  case JV_STR: json_str(b, v.u.s->s, v.u.s->len, ascii); return MLC_OK;
  case JV_LIST:
    if (v.u.l->n == 0) {
      sb_puts(b, "[]");
      return MLC_OK;
    }
    sb_puts(b, "[");
    for (size_t i = 0; i < v.u.l->n; i++) {
      if (i)
        sb_puts(b, isep);
      if (indent)
        json_nl(b, indent, level + 1);
      MLC_TRY(json_dump(c, line, v.u.l->v[i], ascii, indent, isep, ksep, sort_keys, level + 1, b));
    }
    if (indent)
      json_nl(b, indent, level);
    sb_puts(b, "]");
    return MLC_OK;
  case JV_DICT: {
    jdict *d = v.u.d;
    if (d->n == 0) {
      sb_puts(b, "{}");
      return MLC_OK;
    }
    size_t *order = jar_alloc(c->ar, d->n * sizeof(size_t));
    for (size_t i = 0; i < d->n; i++)
      order[i] = i;
    if (sort_keys) /* insertion sort, stable */
      for (size_t i = 1; i < d->n; i++) {
        size_t x = order[i], j = i;
        while (j > 0) {
          int r;
          MLC_TRY(jv_cmp(line, d->k[order[j - 1]], d->k[x], &r));
          if (r <= 0)
            break;
          order[j] = order[j - 1];
          j--;
        }
        order[j] = x;
      }
    sb_puts(b, "{");
    for (size_t ii = 0; ii < d->n; ii++) {
      size_t i = order[ii];
      if (ii)
        sb_puts(b, isep);
      if (indent)
        json_nl(b, indent, level + 1);
      jv k = d->k[i];
      if (k.t == JV_STR)
        json_str(b, k.u.s->s, k.u.s->len, ascii);
      else if (k.t == JV_INT || k.t == JV_BOOL || k.t == JV_NONE || k.t == JV_FLOAT) {
        jsb kb;
        sb_init(&kb, c->ar);
        MLC_TRY(json_dump(c, line, k, ascii, NULL, isep, ksep, false, 0, &kb));
        sb_puts(b, "\"");
        sb_add(b, kb.p, kb.len);
        sb_puts(b, "\"");
      } else
        return jerr(line, "keys must be str, int, float, bool or None, not %s", jv_typename(k));
      sb_puts(b, ksep);
      MLC_TRY(json_dump(c, line, d->v[i], ascii, indent, isep, ksep, sort_keys, level + 1, b));
    }
    if (indent)
      json_nl(b, indent, level);
    sb_puts(b, "}");
    return MLC_OK;
  }
  default: return jerr(line, "Object of type %s is not JSON serializable", jv_typename(v));
  }
}

mlc_status jlib_tojson(jctx *c, int line, jv v, bool ascii, const char *indent, const char *isep, const char *ksep,
                       bool sort_keys, jsb *b) {
  return json_dump(c, line, v, ascii, indent, isep, ksep, sort_keys, 0, b);
}

static mlc_status f_tojson(jctx *c, int line, jv v, jargs *a, jv *out) {
  bool ascii = arg_bool(a, 0, "ensure_ascii", false);
  jv ind, seps;
  const char *indent = NULL;
  char ibuf[64];
  if (jargs_get(a, 1, "indent", &ind) && ind.t != JV_NONE) {
    if (is_intlike(ind)) {
      int64_t n = iv(ind);
      if (n < 0)
        n = 0;
      if (n > 60)
        n = 60;
      memset(ibuf, ' ', (size_t)n);
      ibuf[n] = 0;
      indent = ibuf;
    } else if (ind.t == JV_STR)
      indent = ind.u.s->s;
    else
      return jerr(line, "tojson: indent must be an int or a string");
  }
  const char *isep = indent ? "," : ", ", *ksep = ": ";
  if (jargs_get(a, 2, "separators", &seps) && seps.t != JV_NONE) {
    if (seps.t != JV_LIST || seps.u.l->n != 2 || seps.u.l->v[0].t != JV_STR || seps.u.l->v[1].t != JV_STR)
      return jerr(line, "tojson: separators must be a pair of strings");
    isep = seps.u.l->v[0].u.s->s;
    ksep = seps.u.l->v[1].u.s->s;
  }
  bool sk = arg_bool(a, 3, "sort_keys", false);
  jsb b;
  sb_init(&b, c->ar);
  MLC_TRY(jlib_tojson(c, line, v, ascii, indent, isep, ksep, sk, &b));
  *out = sb_value(&b);
  return MLC_OK;
}

/* ============================================================================================ */
/* filters                                                                                      */
/* ============================================================================================ */

#define FILTER(name) static mlc_status f_##name(jctx *c, int line, jv v, jargs *a, jv *out)

FILTER(trim) { return strip_common(c, line, v, a, out, true, true); }
FILTER(upper) {
  jstr *s = sstr(c, v);
  *out = map_case(c, s->s, s->len, CASE_UPPER);
  return MLC_OK;
}
FILTER(lower) {
  jstr *s = sstr(c, v);
  *out = map_case(c, s->s, s->len, CASE_LOWER);
  return MLC_OK;
}
FILTER(title) {
  jstr *s = sstr(c, v);
  *out = jinja_title(c, s->s, s->len);
  return MLC_OK;
}
FILTER(capitalize) {
  jstr *s = sstr(c, v);
  *out = py_capitalize(c, s->s, s->len);
  return MLC_OK;
}
FILTER(length) {
  switch (v.t) {
  case JV_STR: *out = jv_int((int64_t)u8_count(v.u.s->s, v.u.s->len)); return MLC_OK;
  case JV_LIST: *out = jv_int((int64_t)v.u.l->n); return MLC_OK;
  case JV_DICT:
  case JV_NS: *out = jv_int((int64_t)v.u.d->n); return MLC_OK;
  case JV_UNDEF: *out = jv_int(0); return MLC_OK;
  default: return jerr(line, "object of type '%s' has no len()", jv_typename(v));
  }
}
FILTER(first) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  *out = l->n ? l->v[0] : jv_undef(jstr_new(c->ar, "No first item, sequence was empty.", 34));
  return MLC_OK;
}
FILTER(last) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  *out = l->n ? l->v[l->n - 1] : jv_undef(jstr_new(c->ar, "No last item, sequence was empty.", 33));
  return MLC_OK;
}
FILTER(join) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv sep = jv_str(c->ar, "", 0), attr;
  jargs_get(a, 0, "d", &sep);
  bool has_attr = jargs_get(a, 1, "attribute", &attr) && attr.t != JV_NONE;
  jstr *ss = sstr(c, sep);
  jsb b;
  sb_init(&b, c->ar);
  for (size_t i = 0; i < l->n; i++) {
    if (i)
      sb_add(&b, ss->s, ss->len);
    jv it = l->v[i];
    if (has_attr)
      MLC_TRY(get_path(c, line, it, attr, &it));
    jv_to_str(c, &b, it);
  }
  *out = sb_value(&b);
  return MLC_OK;
}
FILTER(default) {
  jv dv = jv_str(c->ar, "", 0);
  jargs_get(a, 0, "default_value", &dv);
  bool boolean = arg_bool(a, 1, "boolean", false);
  *out = (v.t == JV_UNDEF || (boolean && !jv_truthy(v))) ? dv : v;
  return MLC_OK;
}
FILTER(replace) {
  jv old, new_, cnt;
  if (!jargs_get(a, 0, "old", &old) || !jargs_get(a, 1, "new", &new_))
    return jerr(line, "replace() needs old and new");
  int64_t count = -1;
  if (jargs_get(a, 2, "count", &cnt) && cnt.t != JV_NONE)
    count = iv(cnt);
  *out = do_replace(c, sstr(c, v), sstr(c, old), sstr(c, new_), count);
  return MLC_OK;
}
FILTER(list) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv r = jv_list(c->ar, l->n);
  for (size_t i = 0; i < l->n; i++)
    jl_push(c->ar, r.u.l, l->v[i]);
  *out = r;
  return MLC_OK;
}
FILTER(string) {
  *out = jv_stringify(c, v);
  return MLC_OK;
}
FILTER(safe) {
  *out = v;
  return MLC_OK;
}
FILTER(escape) {
  jstr *s = sstr(c, v);
  jsb b;
  sb_init(&b, c->ar);
  for (size_t i = 0; i < s->len; i++) {
    switch (s->s[i]) {
    case '&': sb_puts(&b, "&amp;"); break;
    case '<': sb_puts(&b, "&lt;"); break;
    case '>': sb_puts(&b, "&gt;"); break;
    case '"': sb_puts(&b, "&#34;"); break;
    case '\'': sb_puts(&b, "&#39;"); break;
    default: sb_add(&b, s->s + i, 1);
    }
  }
  *out = sb_value(&b);
  return MLC_OK;
}
static bool parse_int_str(const char *s, int base, int64_t *out) {
  while (*s && py_isspace((unsigned char)*s))
    s++;
  char *end;
  if (!*s)
    return false;
  char buf[128];
  size_t n = 0;
  for (const char *p = s; *p && n < sizeof buf - 1; p++)
    if (*p != '_')
      buf[n++] = *p;
  buf[n] = 0;
  long long r = strtoll(buf, &end, base);
  while (*end && py_isspace((unsigned char)*end))
    end++;
  if (*end || end == buf)
    return false;
  *out = r;
  return true;
}
FILTER(int) {
  jv dv = jv_int(0), bv;
  jargs_get(a, 0, "default", &dv);
  int base = jargs_get(a, 1, "base", &bv) ? (int)iv(bv) : 10;
  if (is_number(v)) {
    *out = jv_int(iv(v));
    return MLC_OK;
  }
  if (v.t == JV_STR) {
    int64_t r;
    if (parse_int_str(v.u.s->s, base, &r)) {
      *out = jv_int(r);
      return MLC_OK;
    }
    char *end;
    double d = strtod(v.u.s->s, &end);
    if (end != v.u.s->s && *end == 0) {
      *out = jv_int((int64_t)d);
      return MLC_OK;
    }
  }
  *out = dv;
  return MLC_OK;
}
FILTER(float) {
  jv dv = jv_float(0.0);
  jargs_get(a, 0, "default", &dv);
  if (is_number(v)) {
    *out = jv_float(fv(v));
    return MLC_OK;
  }
  if (v.t == JV_STR) {
    char *end;
    double d = strtod(v.u.s->s, &end);
    while (*end && py_isspace((unsigned char)*end))
      end++;
    if (end != v.u.s->s && *end == 0) {
      *out = jv_float(d);
      return MLC_OK;
    }
  }
  *out = dv;
  return MLC_OK;
}
FILTER(abs) {
  if (v.t == JV_FLOAT)
    *out = jv_float(fabs(v.u.f));
  else if (is_intlike(v))
    *out = jv_int(iv(v) < 0 ? -iv(v) : iv(v));
  else
    return jerr(line, "bad operand type for abs(): '%s'", jv_typename(v));
  return MLC_OK;
}
FILTER(round) {
  jv pv, mv;
  int64_t prec = jargs_get(a, 0, "precision", &pv) ? iv(pv) : 0;
  const char *method = jargs_get(a, 1, "method", &mv) && mv.t == JV_STR ? mv.u.s->s : "common";
  if (!is_number(v))
    return jerr(line, "type %s doesn't define __round__ method", jv_typename(v));
  if (strcmp(method, "common") == 0) {
    if (v.t != JV_FLOAT) {
      *out = jv_int(iv(v));
      return MLC_OK;
    }
    char buf[400];
    if (prec > 300)
      prec = 300;
    if (prec >= 0) {
      snprintf(buf, sizeof buf, "%.*f", (int)prec, v.u.f); /* correctly rounded, half to even */
      *out = jv_float(strtod(buf, NULL));
    } else {
      double p = pow(10.0, (double)-prec);
      *out = jv_float(nearbyint(v.u.f / p) * p);
    }
    return MLC_OK;
  }
  double p = pow(10.0, (double)prec), x = fv(v) * p;
  if (strcmp(method, "floor") == 0)
    x = floor(x);
  else if (strcmp(method, "ceil") == 0)
    x = ceil(x);
  else
    return jerr(line, "method must be 'common', 'ceil' or 'floor'");
  *out = jv_float(x / p);
  return MLC_OK;
}
static jv pair(jctx *c, jv k, jv v) {
  jv p = jv_list(c->ar, 2);
  p.u.l->tuple = true;
  jl_push(c->ar, p.u.l, k);
  jl_push(c->ar, p.u.l, v);
  return p;
}
FILTER(items) {
  if (v.t == JV_UNDEF) {
    *out = jv_list(c->ar, 0);
    return MLC_OK;
  }
  if (v.t != JV_DICT && v.t != JV_NS)
    return jerr(line, "Can only get item pairs from a mapping.");
  jv l = jv_list(c->ar, v.u.d->n);
  for (size_t i = 0; i < v.u.d->n; i++)
    jl_push(c->ar, l.u.l, pair(c, v.u.d->k[i], v.u.d->v[i]));
  *out = l;
  return MLC_OK;
}
FILTER(dictsort) {
  if (v.t != JV_DICT)
    return jerr(line, "You can only sort by either \"key\" or \"value\"");
  bool cs = arg_bool(a, 0, "case_sensitive", false), rev = arg_bool(a, 2, "reverse", false);
  jv by;
  int pos = 0;
  if (jargs_get(a, 1, "by", &by) && by.t == JV_STR) {
    if (strcmp(by.u.s->s, "value") == 0)
      pos = 1;
    else if (strcmp(by.u.s->s, "key") != 0)
      return jerr(line, "You can only sort by either \"key\" or \"value\"");
  }
  jv items;
  MLC_TRY(f_items(c, line, v, a, &items));
  return sorted_copy(c, line, items.u.l, rev, cs, jv_int(pos), out);
}
FILTER(unique) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  bool cs = arg_bool(a, 0, "case_sensitive", false);
  jv attr;
  bool has_attr = jargs_get(a, 1, "attribute", &attr) && attr.t != JV_NONE;
  jv r = jv_list(c->ar, 0), seen = jv_list(c->ar, 0);
  for (size_t i = 0; i < l->n; i++) {
    jv key = l->v[i];
    if (has_attr)
      MLC_TRY(get_path(c, line, key, attr, &key));
    if (!cs && key.t == JV_STR)
      key = map_case(c, key.u.s->s, key.u.s->len, CASE_LOWER);
    bool dup = false;
    for (size_t k = 0; k < seen.u.l->n && !dup; k++)
      dup = jv_eq(seen.u.l->v[k], key);
    if (!dup) {
      jl_push(c->ar, seen.u.l, key);
      jl_push(c->ar, r.u.l, l->v[i]);
    }
  }
  *out = r;
  return MLC_OK;
}
FILTER(reverse) {
  if (v.t == JV_STR) {
    jsb b;
    sb_init(&b, c->ar);
    size_t e = v.u.s->len;
    while (e > 0) {
      size_t st = e - 1;
      while (st > 0 && ((unsigned char)v.u.s->s[st] & 0xc0) == 0x80)
        st--;
      sb_add(&b, v.u.s->s + st, e - st);
      e = st;
    }
    *out = sb_value(&b);
    return MLC_OK;
  }
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv r = jv_list(c->ar, l->n);
  for (size_t i = l->n; i > 0; i--)
    jl_push(c->ar, r.u.l, l->v[i - 1]);
  *out = r;
  return MLC_OK;
}
FILTER(sort) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv attr = jv_undef(NULL);
  if (jargs_get(a, 2, "attribute", &attr) && attr.t == JV_NONE)
    attr = jv_undef(NULL);
  return sorted_copy(c, line, l, arg_bool(a, 0, "reverse", false), arg_bool(a, 1, "case_sensitive", false), attr, out);
}
static mlc_status minmax(jctx *c, int line, jv v, jargs *a, jv *out, bool want_max) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv attr = jv_undef(NULL);
  if (jargs_get(a, 1, "attribute", &attr) && attr.t == JV_NONE)
    attr = jv_undef(NULL);
  if (l->n == 0) {
    *out = jv_undef(jstr_new(c->ar, "No aggregated item, sequence was empty.", 39));
    return MLC_OK;
  }
  sortctx s = {.c = c, .line = line, .case_sensitive = arg_bool(a, 0, "case_sensitive", false), .attr = attr};
  jv best = l->v[0];
  for (size_t i = 1; i < l->n; i++) {
    int r = sort_cmp(&s, l->v[i], best);
    MLC_TRY(s.st);
    if (want_max ? r > 0 : r < 0)
      best = l->v[i];
  }
  *out = best;
  return MLC_OK;
}
FILTER(min) { return minmax(c, line, v, a, out, false); }
FILTER(max) { return minmax(c, line, v, a, out, true); }
FILTER(sum) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv attr, start = jv_int(0);
  bool has_attr = jargs_get(a, 0, "attribute", &attr) && attr.t != JV_NONE;
  jargs_get(a, 1, "start", &start);
  jv acc = start;
  bool fl = acc.t == JV_FLOAT;
  double fs = fv(acc);
  int64_t is = iv(acc);
  for (size_t i = 0; i < l->n; i++) {
    jv it = l->v[i];
    if (has_attr)
      MLC_TRY(get_path(c, line, it, attr, &it));
    if (!is_number(it))
      return jerr(line, "unsupported operand type(s) for +: 'int' and '%s'", jv_typename(it));
    if (it.t == JV_FLOAT && !fl) {
      fl = true;
      fs = (double)is;
    }
    if (fl)
      fs += fv(it);
    else
      is += iv(it);
  }
  *out = fl ? jv_float(fs) : jv_int(is);
  return MLC_OK;
}
FILTER(indent) {
  jv wv, fv_, bv;
  jstr *ind;
  if (jargs_get(a, 0, "width", &wv) && wv.t == JV_STR)
    ind = wv.u.s;
  else {
    int64_t w = jargs_get(a, 0, "width", &wv) ? iv(wv) : 4;
    if (w < 0)
      w = 0;
    char *sp = jar_alloc(c->ar, (size_t)w + 1);
    memset(sp, ' ', (size_t)w);
    ind = jstr_new(c->ar, sp, (size_t)w);
  }
  bool first = jargs_get(a, 1, "first", &fv_) && jv_truthy(fv_);
  bool blank = jargs_get(a, 2, "blank", &bv) && jv_truthy(bv);
  jstr *s = sstr(c, v);
  /* s + "\n", splitlines */
  jv lines = jv_list(c->ar, 0);
  size_t i = 0;
  while (i < s->len) {
    size_t e = i;
    while (e < s->len && s->s[e] != '\n' && s->s[e] != '\r')
      e++;
    jl_push(c->ar, lines.u.l, jv_str(c->ar, s->s + i, e - i));
    if (e < s->len && s->s[e] == '\r' && e + 1 < s->len && s->s[e + 1] == '\n')
      e++;
    i = e + 1;
  }
  /* the appended "\n" ends the last line; a string ending in a newline yields one "" line more */
  if (s->len > 0 && (s->s[s->len - 1] == '\n' || s->s[s->len - 1] == '\r'))
    jl_push(c->ar, lines.u.l, jv_str(c->ar, "", 0));
  if (lines.u.l->n == 0)
    jl_push(c->ar, lines.u.l, jv_str(c->ar, "", 0));
  jsb b;
  sb_init(&b, c->ar);
  if (first)
    sb_add(&b, ind->s, ind->len);
  for (size_t k = 0; k < lines.u.l->n; k++) {
    jstr *ln = lines.u.l->v[k].u.s;
    if (k) {
      sb_add(&b, "\n", 1);
      if (blank || ln->len)
        sb_add(&b, ind->s, ind->len);
    }
    sb_add(&b, ln->s, ln->len);
  }
  *out = sb_value(&b);
  return MLC_OK;
}
FILTER(center) {
  jv wv;
  int64_t w = jargs_get(a, 0, "width", &wv) ? iv(wv) : 80;
  jstr *s = sstr(c, v);
  int64_t n = (int64_t)u8_count(s->s, s->len);
  if (n >= w) {
    *out = jv_str(c->ar, s->s, s->len);
    return MLC_OK;
  }
  int64_t pad = w - n, left = pad / 2 + (pad & w & 1);
  jsb b;
  sb_init(&b, c->ar);
  for (int64_t i = 0; i < left; i++)
    sb_add(&b, " ", 1);
  sb_add(&b, s->s, s->len);
  for (int64_t i = 0; i < pad - left; i++)
    sb_add(&b, " ", 1);
  *out = sb_value(&b);
  return MLC_OK;
}
FILTER(wordcount) {
  jstr *s = sstr(c, v);
  int64_t n = 0;
  bool in = false;
  for (size_t i = 0; i < s->len; i++) {
    unsigned char ch = (unsigned char)s->s[i];
    bool w = ch >= 0x80 || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
    if (w && !in)
      n++;
    in = w;
  }
  *out = jv_int(n);
  return MLC_OK;
}
FILTER(attr) {
  /* a Python attribute only: no fallback to items */
  jv name;
  if (!jargs_get(a, 0, "name", &name) || name.t != JV_STR)
    return jerr(line, "attr() needs a name");
  if (v.t == JV_NS || v.t == JV_LOOP || v.t == JV_UNDEF || jlib_method(v, name.u.s->s, name.u.s->len, &(bool){0}))
    return jv_getattr(c, line, v, name.u.s->s, name.u.s->len, out);
  char tmp[300];
  int n = snprintf(tmp, sizeof tmp, "'%s object' has no attribute '%s'", jv_typename(v), name.u.s->s);
  *out = jv_undef(jstr_new(c->ar, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1));
  return MLC_OK;
}

mlc_status jlib_percent_format(jctx *c, int line, jv fmt, jv args, jv *out);
FILTER(format) {
  jv tup = jv_list(c->ar, (size_t)a->np);
  tup.u.l->tuple = true;
  for (int i = 0; i < a->np; i++)
    jl_push(c->ar, tup.u.l, a->pos[i]);
  if (a->nk && a->np)
    return jerr(line, "can't handle positional and keyword arguments at the same time");
  if (a->nk) {
    jv d = jv_dict(c->ar);
    for (int i = 0; i < a->nk; i++)
      jd_set(c->ar, d.u.d, jv_cstr(c->ar, a->kn[i]->s), a->kv[i]);
    return jlib_percent_format(c, line, jv_stringify(c, v), d, out);
  }
  return jlib_percent_format(c, line, jv_stringify(c, v), tup, out);
}

/* test application used by select/reject */
static mlc_status apply_test(jctx *c, int line, jv item, jargs *a, int first_arg, bool *r) {
  jv tn;
  if (!jargs_get(a, first_arg, NULL, &tn)) {
    *r = jv_truthy(item);
    return MLC_OK;
  }
  if (tn.t != JV_STR)
    return jerr(line, "test name must be a string");
  jtest_fn t = jlib_test(tn.u.s->s);
  if (!t)
    return jerr(line, "No test named '%s'.", tn.u.s->s);
  jargs ta = {.np = a->np > first_arg + 1 ? a->np - first_arg - 1 : 0, .nk = a->nk, .kn = a->kn, .kv = a->kv};
  ta.pos = a->pos + (a->np > first_arg + 1 ? first_arg + 1 : 0);
  return t(c, line, item, &ta, r);
}
static mlc_status select_impl(jctx *c, int line, jv v, jargs *a, jv *out, bool attr_mode, bool keep) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv r = jv_list(c->ar, 0), attr;
  if (attr_mode && !jargs_get(a, 0, "attribute", &attr))
    return jerr(line, "Missing parameter for attribute name");
  for (size_t i = 0; i < l->n; i++) {
    jv it = l->v[i];
    if (attr_mode)
      MLC_TRY(get_path(c, line, it, attr, &it));
    bool t;
    MLC_TRY(apply_test(c, line, it, a, attr_mode ? 1 : 0, &t));
    if (t == keep)
      jl_push(c->ar, r.u.l, l->v[i]);
  }
  *out = r;
  return MLC_OK;
}
FILTER(select) { return select_impl(c, line, v, a, out, false, true); }
FILTER(reject) { return select_impl(c, line, v, a, out, false, false); }
FILTER(selectattr) { return select_impl(c, line, v, a, out, true, true); }
FILTER(rejectattr) { return select_impl(c, line, v, a, out, true, false); }
FILTER(map) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv r = jv_list(c->ar, l->n), attr, fname;
  bool has_attr = false;
  for (int k = 0; k < a->nk; k++)
    if (strcmp(a->kn[k]->s, "attribute") == 0) {
      attr = a->kv[k];
      has_attr = true;
    }
  if (has_attr) {
    jv dflt;
    bool has_def = false;
    for (int k = 0; k < a->nk; k++)
      if (strcmp(a->kn[k]->s, "default") == 0) {
        dflt = a->kv[k];
        has_def = true;
      }
    for (size_t i = 0; i < l->n; i++) {
      jv it;
      MLC_TRY(get_path(c, line, l->v[i], attr, &it));
      if (it.t == JV_UNDEF && has_def)
        it = dflt;
      jl_push(c->ar, r.u.l, it);
    }
    *out = r;
    return MLC_OK;
  }
  if (!jargs_get(a, 0, NULL, &fname) || fname.t != JV_STR)
    return jerr(line, "map() needs a filter name or attribute=");
  jbuiltin_fn f = jlib_filter(fname.u.s->s);
  if (!f)
    return jerr(line, "No filter named '%s'.", fname.u.s->s);
  jargs fa = {.np = a->np - 1, .pos = a->pos + 1, .nk = a->nk, .kn = a->kn, .kv = a->kv};
  for (size_t i = 0; i < l->n; i++) {
    jv it;
    MLC_TRY(f(c, line, l->v[i], &fa, &it));
    jl_push(c->ar, r.u.l, it);
  }
  *out = r;
  return MLC_OK;
}
FILTER(batch) {
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, v, &l));
  jv nv, fill;
  int64_t n = jargs_get(a, 0, "linecount", &nv) ? iv(nv) : 1;
  bool has_fill = jargs_get(a, 1, "fill_with", &fill) && fill.t != JV_NONE;
  if (n <= 0)
    return jerr(line, "batch size must be positive");
  jv r = jv_list(c->ar, 0), cur = jv_list(c->ar, 0);
  for (size_t i = 0; i < l->n; i++) {
    jl_push(c->ar, cur.u.l, l->v[i]);
    if ((int64_t)cur.u.l->n == n) {
      jl_push(c->ar, r.u.l, cur);
      cur = jv_list(c->ar, 0);
    }
  }
  if (cur.u.l->n) {
    while (has_fill && (int64_t)cur.u.l->n < n)
      jl_push(c->ar, cur.u.l, fill);
    jl_push(c->ar, r.u.l, cur);
  }
  *out = r;
  return MLC_OK;
}
FILTER(truncate) {
  jv lv, kv, ev, lev;
  int64_t length = jargs_get(a, 0, "length", &lv) ? iv(lv) : 255;
  bool killwords = jargs_get(a, 1, "killwords", &kv) && jv_truthy(kv);
  jstr *end = jargs_get(a, 2, "end", &ev) ? sstr(c, ev) : jstr_new(c->ar, "...", 3);
  int64_t leeway = jargs_get(a, 3, "leeway", &lev) ? iv(lev) : 5;
  jstr *s = sstr(c, v);
  int64_t n = (int64_t)u8_count(s->s, s->len), elen = (int64_t)u8_count(end->s, end->len);
  if (length < elen)
    return jerr(line, "expected length >= %lld, got %lld", (long long)elen, (long long)length);
  if (leeway < 0)
    return jerr(line, "expected leeway >= 0, got %lld", (long long)leeway);
  if (n <= length + leeway) {
    *out = jv_str(c->ar, s->s, s->len);
    return MLC_OK;
  }
  int64_t keep = length - elen;
  if (keep < 0)
    keep = 0;
  size_t off = 0;
  for (int64_t i = 0; i < keep; i++) {
    uint32_t cp;
    off += u8_dec(s->s + off, s->len - off, &cp);
  }
  size_t cut = off;
  if (!killwords) {
    /* rsplit(" ", 1)[0] */
    size_t k = off;
    while (k > 0 && s->s[k - 1] != ' ')
      k--;
    if (k > 0)
      cut = k - 1;
  }
  jsb b;
  sb_init(&b, c->ar);
  sb_add(&b, s->s, cut);
  sb_add(&b, end->s, end->len);
  *out = sb_value(&b);
  return MLC_OK;
}

static const struct {
  const char *name;
  jbuiltin_fn fn;
} g_filters[] = {
    {"abs", f_abs},         {"attr", f_attr},         {"batch", f_batch},
    {"capitalize", f_capitalize}, {"center", f_center}, {"count", f_length},
    {"d", f_default},       {"default", f_default},   {"dictsort", f_dictsort},
    {"e", f_escape},        {"escape", f_escape},     {"first", f_first},
    {"float", f_float},     {"format", f_format},     {"forceescape", f_escape},
    {"indent", f_indent},   {"int", f_int},           {"items", f_items},
    {"join", f_join},       {"last", f_last},         {"length", f_length},
    {"list", f_list},       {"lower", f_lower},       {"map", f_map},
    {"max", f_max},         {"min", f_min},           {"reject", f_reject},
    {"rejectattr", f_rejectattr}, {"replace", f_replace}, {"reverse", f_reverse},
    {"round", f_round},     {"safe", f_safe},         {"select", f_select},
    {"selectattr", f_selectattr}, {"sort", f_sort},   {"string", f_string},
    {"sum", f_sum},         {"title", f_title},       {"tojson", f_tojson},
    {"trim", f_trim},       {"truncate", f_truncate}, {"unique", f_unique},
    {"upper", f_upper},     {"wordcount", f_wordcount},
};
jbuiltin_fn jlib_filter(const char *name) {
  for (size_t i = 0; i < sizeof g_filters / sizeof *g_filters; i++)
    if (strcmp(g_filters[i].name, name) == 0)
      return g_filters[i].fn;
  return NULL;
}

/* ============================================================================================ */
/* tests                                                                                        */
/* ============================================================================================ */

#define TEST(name) static mlc_status t_##name(jctx *c, int line, jv v, jargs *a, bool *out)
static jv targ(jargs *a) {
  jv x = jv_undef(NULL);
  if (a->np)
    x = a->pos[0];
  else if (a->nk)
    x = a->kv[0];
  return x;
}
TEST(defined) { *out = v.t != JV_UNDEF; return MLC_OK; }
TEST(undefined) { *out = v.t == JV_UNDEF; return MLC_OK; }
TEST(none) { *out = v.t == JV_NONE; return MLC_OK; }
TEST(string) { *out = v.t == JV_STR; return MLC_OK; }
TEST(number) { *out = is_number(v); return MLC_OK; }
TEST(integer) { *out = v.t == JV_INT; return MLC_OK; }
TEST(float) { *out = v.t == JV_FLOAT; return MLC_OK; }
TEST(boolean) { *out = v.t == JV_BOOL; return MLC_OK; }
TEST(true) { *out = v.t == JV_BOOL && v.u.b; return MLC_OK; }
TEST(false) { *out = v.t == JV_BOOL && !v.u.b; return MLC_OK; }
TEST(mapping) { *out = v.t == JV_DICT; return MLC_OK; }
TEST(sequence) { *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT; return MLC_OK; }
TEST(iterable) { *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF; return MLC_OK; }
TEST(callable) { *out = v.t == JV_FUNC || v.t == JV_LOOP; return MLC_OK; }
TEST(odd) {
  if (!is_number(v))
    return jerr(line, "unsupported operand type(s) for %%: '%s' and 'int'", jv_typename(v));
  *out = (iv(v) & 1) != 0;
  return MLC_OK;
}
TEST(even) {
  if (!is_number(v))
    return jerr(line, "unsupported operand type(s) for %%: '%s' and 'int'", jv_typename(v));
  *out = (iv(v) & 1) == 0;
  return MLC_OK;
}
TEST(divisibleby) {
  jv n = targ(a);
  if (!is_number(v) || !is_number(n) || iv(n) == 0)
    return jerr(line, "divisibleby needs non-zero numbers");
  *out = iv(v) % iv(n) == 0;
  return MLC_OK;
}
TEST(eq) { *out = jv_eq(v, targ(a)); return MLC_OK; }
TEST(ne) { *out = !jv_eq(v, targ(a)); return MLC_OK; }
static mlc_status cmp_test(int line, jv v, jargs *a, int *r) { return jv_cmp(line, v, targ(a), r); }
TEST(lt) { int r; MLC_TRY(cmp_test(line, v, a, &r)); *out = r < 0; return MLC_OK; }
TEST(le) { int r; MLC_TRY(cmp_test(line, v, a, &r)); *out = r <= 0; return MLC_OK; }
TEST(gt) { int r; MLC_TRY(cmp_test(line, v, a, &r)); *out = r > 0; return MLC_OK; }
TEST(ge) { int r; MLC_TRY(cmp_test(line, v, a, &r)); *out = r >= 0; return MLC_OK; }
TEST(in) {
  jv seq = targ(a);
  if (seq.t == JV_STR) {
    if (v.t != JV_STR)
      return jerr(line, "'in <string>' requires string as left operand, not %s", jv_typename(v));
    *out = v.u.s->len == 0 || memmem(seq.u.s->s, seq.u.s->len, v.u.s->s, v.u.s->len) != NULL;
    return MLC_OK;
  }
  if (seq.t == JV_DICT) {
    *out = jd_find(seq.u.d, v) >= 0;
    return MLC_OK;
  }
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, seq, &l));
  *out = false;
  for (size_t i = 0; i < l->n; i++)
    if (jv_eq(l->v[i], v))
      *out = true;
  return MLC_OK;
}
TEST(sameas) {
  jv o = targ(a);
  if (v.t != o.t)
    *out = false;
  else if (v.t == JV_LIST)
    *out = v.u.l == o.u.l;
  else if (v.t == JV_DICT || v.t == JV_NS)
    *out = v.u.d == o.u.d;
  else if (v.t == JV_STR)
    *out = v.u.s == o.u.s || jv_eq(v, o);
  else
    *out = jv_eq(v, o);
  return MLC_OK;
}
static bool case_is(jv v, bool upper) {
  if (v.t != JV_STR)
    return false;
  bool cased = false;
  for (size_t i = 0; i < v.u.s->len;) {
    uint32_t cp;
    i += u8_dec(v.u.s->s + i, v.u.s->len - i, &cp);
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) {
      if (!upper)
        return false;
      cased = true;
    } else if (cat == UTF8PROC_CATEGORY_LL) {
      if (upper)
        return false;
      cased = true;
    }
  }
  return cased;
}
TEST(lower) { *out = case_is(v, false); return MLC_OK; }
TEST(upper) { *out = case_is(v, true); return MLC_OK; }
TEST(escaped) { *out = false; return MLC_OK; }
TEST(filter) { *out = v.t == JV_STR && jlib_filter(v.u.s->s) != NULL; return MLC_OK; }
TEST(test) { *out = v.t == JV_STR && jlib_test(v.u.s->s) != NULL; return MLC_OK; }

static const struct {
  const char *name;
  jtest_fn fn;
} g_tests[] = {
    {"!=", t_ne},         {"<", t_lt},           {"<=", t_le},           {"==", t_eq},         {">", t_gt},
    {">=", t_ge},         {"boolean", t_boolean}, {"callable", t_callable}, {"defined", t_defined},
    {"divisibleby", t_divisibleby}, {"eq", t_eq}, {"equalto", t_eq},    {"escaped", t_escaped},
    {"even", t_even},     {"false", t_false},    {"filter", t_filter},   {"float", t_float},   {"ge", t_ge},
    {"greaterthan", t_gt}, {"gt", t_gt},         {"in", t_in},           {"integer", t_integer},
    {"iterable", t_iterable}, {"le", t_le},      {"lessthan", t_lt},     {"lower", t_lower},   {"lt", t_lt},
    {"mapping", t_mapping}, {"ne", t_ne},        {"none", t_none},       {"number", t_number}, {"odd", t_odd},
    {"sameas", t_sameas}, {"sequence", t_sequence}, {"string", t_string}, {"test", t_test},   {"true", t_true},
    {"undefined", t_undefined}, {"upper", t_upper},
};
jtest_fn jlib_test(const char *name) {
  for (size_t i = 0; i < sizeof g_tests / sizeof *g_tests; i++)
    if (strcmp(g_tests[i].name, name) == 0)
      return g_tests[i].fn;
  return NULL;
}

/* ============================================================================================ */
/* % formatting and str.format                                                                  */
/* ============================================================================================ */

mlc_status jlib_percent_format(jctx *c, int line, jv fmt, jv args, jv *out) {
  jstr *f = fmt.u.s;
  jlist *tup = NULL;
  if (args.t == JV_LIST && args.u.l->tuple)
    tup = args.u.l;
  size_t ai = 0;
  bool used_single = false;
  jsb b;
  sb_init(&b, c->ar);
  for (size_t i = 0; i < f->len; i++) {
    if (f->s[i] != '%') {
      sb_add(&b, f->s + i, 1);
      continue;
    }
    i++;
    if (i >= f->len)
      return jerr(line, "incomplete format");
    jv arg;
    bool have_arg = false;
    if (f->s[i] == '(') {
      size_t e = i + 1;
      while (e < f->len && f->s[e] != ')')
        e++;
      if (args.t != JV_DICT)
        return jerr(line, "format requires a mapping");
      long k = jd_find_str(args.u.d, f->s + i + 1, e - i - 1);
      arg = k >= 0 ? args.u.d->v[k] : jv_undef(NULL);
      have_arg = true;
      i = e + 1;
    }
    char spec[32];
    size_t sn = 0;
    spec[sn++] = '%';
    while (i < f->len && strchr("-+ #0", f->s[i]) && sn < 20)
      spec[sn++] = f->s[i++];
    while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9' && sn < 24)
      spec[sn++] = f->s[i++];
    if (i < f->len && f->s[i] == '.') {
      spec[sn++] = f->s[i++];
      while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9' && sn < 28)
        spec[sn++] = f->s[i++];
    }
    if (i >= f->len)
      return jerr(line, "incomplete format");
    char conv = f->s[i];
    if (conv == '%') {
      sb_add(&b, "%", 1);
      continue;
    }
    if (!have_arg) {
      if (tup) {
        if (ai >= tup->n)
          return jerr(line, "not enough arguments for format string");
        arg = tup->v[ai++];
      } else {
        if (used_single)
          return jerr(line, "not enough arguments for format string");
        arg = args;
        used_single = true;
      }
    }
    switch (conv) {
    case 's':
    case 'r':
    case 'a': {
      jsb t;
      sb_init(&t, c->ar);
      if (conv == 's')
        jv_to_str(c, &t, arg);
      else
        jv_repr(c, &t, arg);
      spec[sn++] = 's';
      spec[sn] = 0;
      sb_printf(&b, spec, t.p ? t.p : "");
      break;
    }
    case 'd':
    case 'i':
    case 'x':
    case 'X':
    case 'o':
    case 'c':
      if (!is_number(arg))
        return jerr(line, "%%%c format: a number is required, not %s", conv, jv_typename(arg));
      if (conv == 'c') {
        add_cp(&b, (uint32_t)iv(arg));
        break;
      }
      spec[sn++] = 'l';
      spec[sn++] = 'l';
      spec[sn++] = conv == 'i' ? 'd' : conv;
      spec[sn] = 0;
      sb_printf(&b, spec, (long long)iv(arg));
      break;
    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G':
      if (!is_number(arg))
        return jerr(line, "must be real number, not %s", jv_typename(arg));
      spec[sn++] = conv;
      spec[sn] = 0;
      sb_printf(&b, spec, fv(arg));
      break;
    default: return jerr(line, "unsupported format character '%c'", conv);
    }
  }
  if (tup && ai < tup->n)
    return jerr(line, "not all arguments converted during string formatting");
  *out = sb_value(&b);
  return MLC_OK;
}

static mlc_status str_format(jctx *c, int line, jv self, jargs *a, jv *out) {
  jstr *f = self.u.s;
  jsb b;
  sb_init(&b, c->ar);
  int auto_idx = 0;
  for (size_t i = 0; i < f->len; i++) {
    char ch = f->s[i];
    if (ch == '{' && i + 1 < f->len && f->s[i + 1] == '{') {
      sb_add(&b, "{", 1);
      i++;
      continue;
    }
    if (ch == '}' && i + 1 < f->len && f->s[i + 1] == '}') {
      sb_add(&b, "}", 1);
      i++;
      continue;
    }
    if (ch != '{') {
      sb_add(&b, &ch, 1);
      continue;
    }
    size_t e = i + 1;
    while (e < f->len && f->s[e] != '}')
      e++;
    if (e >= f->len)
      return jerr(line, "Single '{' encountered in format string");
    size_t ne = i + 1;
    while (ne < e && f->s[ne] != ':' && f->s[ne] != '!')
      ne++;
    jv arg;
    if (ne == i + 1) {
      if (auto_idx >= a->np)
        return jerr(line, "Replacement index %d out of range for positional args tuple", auto_idx);
      arg = a->pos[auto_idx++];
    } else if (f->s[i + 1] >= '0' && f->s[i + 1] <= '9') {
      int idx = atoi(f->s + i + 1);
      if (idx >= a->np)
        return jerr(line, "Replacement index %d out of range for positional args tuple", idx);
      arg = a->pos[idx];
    } else {
      bool found = false;
      for (int k = 0; k < a->nk; k++)
        if (a->kn[k]->len == ne - i - 1 && memcmp(a->kn[k]->s, f->s + i + 1, ne - i - 1) == 0) {
          arg = a->kv[k];
          found = true;
        }
      if (!found)
        return jerr(line, "KeyError: '%.*s'", (int)(ne - i - 1), f->s + i + 1);
    }
    if (ne < e && f->s[ne] == '!' && ne + 1 < e && f->s[ne + 1] == 'r')
      jv_repr(c, &b, arg);
    else
      jv_to_str(c, &b, arg);
    i = e;
  }
  *out = sb_value(&b);
  return MLC_OK;
}

/* ============================================================================================ */
/* methods                                                                                      */
/* ============================================================================================ */

#define METHOD(name) static mlc_status m_##name(jctx *c, int line, jv self, jargs *a, jv *out)

static mlc_status affix_test(jctx *c, int line, jv self, jargs *a, jv *out, bool start) {
  jv p;
  if (!jargs_get(a, 0, NULL, &p))
    return jerr(line, "%swith() takes at least 1 argument", start ? "starts" : "ends");
  jstr *s = self.u.s;
  jlist one = {0};
  jlist *cands;
  if (p.t == JV_LIST)
    cands = p.u.l;
  else {
    MLC_TRY(need_str(line, p, start ? "startswith first arg" : "endswith first arg"));
    one.n = one.cap = 1;
    one.v = &p;
    cands = &one;
  }
  *out = jv_bool(false);
  for (size_t i = 0; i < cands->n; i++) {
    jv x = cands->v[i];
    MLC_TRY(need_str(line, x, "tuple for startswith/endswith"));
    size_t n = x.u.s->len;
    if (n <= s->len && memcmp(start ? s->s : s->s + s->len - n, x.u.s->s, n) == 0)
      *out = jv_bool(true);
  }
  return MLC_OK;
}
METHOD(startswith) { return affix_test(c, line, self, a, out, true); }
METHOD(endswith) { return affix_test(c, line, self, a, out, false); }
METHOD(strip) { return strip_common(c, line, self, a, out, true, true); }
METHOD(lstrip) { return strip_common(c, line, self, a, out, true, false); }
METHOD(rstrip) { return strip_common(c, line, self, a, out, false, true); }
static mlc_status split_common(jctx *c, int line, jv self, jargs *a, jv *out, bool right) {
  jv sep = jv_none(), ms;
  jargs_get(a, 0, "sep", &sep);
  int64_t maxsplit = jargs_get(a, 1, "maxsplit", &ms) ? iv(ms) : -1;
  return do_split(c, line, self.u.s, sep, maxsplit, right, out);
}
METHOD(split) { return split_common(c, line, self, a, out, false); }
METHOD(rsplit) { return split_common(c, line, self, a, out, true); }
METHOD(upper) { return f_upper(c, line, self, a, out); }
METHOD(lower) { return f_lower(c, line, self, a, out); }
METHOD(title) {
  *out = py_title(c, self.u.s->s, self.u.s->len);
  return MLC_OK;
}
METHOD(capitalize) { return f_capitalize(c, line, self, a, out); }
METHOD(replace) {
  jv old, new_, cnt;
  if (!jargs_get(a, 0, NULL, &old) || !jargs_get(a, 1, NULL, &new_))
    return jerr(line, "replace expected at least 2 arguments");
  MLC_TRY(need_str(line, old, "replace() argument 1"));
  MLC_TRY(need_str(line, new_, "replace() argument 2"));
  int64_t count = jargs_get(a, 2, "count", &cnt) ? iv(cnt) : -1;
  *out = do_replace(c, self.u.s, old.u.s, new_.u.s, count);
  return MLC_OK;
}
static mlc_status find_common(jctx *c, int line, jv self, jargs *a, jv *out, bool rev, bool must) {
  jv sub;
  if (!jargs_get(a, 0, NULL, &sub))
    return jerr(line, "find() takes at least 1 argument");
  MLC_TRY(need_str(line, sub, "find() argument"));
  jstr *s = self.u.s;
  long pos = -1;
  if (!rev) {
    const char *h = sub.u.s->len ? memmem(s->s, s->len, sub.u.s->s, sub.u.s->len) : s->s;
    if (h)
      pos = (long)(h - s->s);
  } else if (sub.u.s->len <= s->len) {
    for (size_t p = s->len - sub.u.s->len + 1; p > 0; p--)
      if (memcmp(s->s + p - 1, sub.u.s->s, sub.u.s->len) == 0) {
        pos = (long)(p - 1);
        break;
      }
  }
  if (pos < 0 && must)
    return jerr(line, "substring not found");
  *out = jv_int(pos < 0 ? -1 : (int64_t)u8_count(s->s, (size_t)pos));
  return MLC_OK;
}
METHOD(find) { return find_common(c, line, self, a, out, false, false); }
METHOD(rfind) { return find_common(c, line, self, a, out, true, false); }
METHOD(sindex) { return find_common(c, line, self, a, out, false, true); }
METHOD(scount) {
  jv sub;
  if (!jargs_get(a, 0, NULL, &sub))
    return jerr(line, "count() takes at least 1 argument");
  MLC_TRY(need_str(line, sub, "count() argument"));
  jstr *s = self.u.s;
  int64_t n = 0;
  if (sub.u.s->len == 0)
    n = (int64_t)u8_count(s->s, s->len) + 1;
  else
    for (size_t i = 0; i + sub.u.s->len <= s->len;) {
      const char *h = memmem(s->s + i, s->len - i, sub.u.s->s, sub.u.s->len);
      if (!h)
        break;
      n++;
      i = (size_t)(h - s->s) + sub.u.s->len;
    }
  *out = jv_int(n);
  return MLC_OK;
}
METHOD(sjoin) {
  jv seq;
  if (!jargs_get(a, 0, NULL, &seq))
    return jerr(line, "join() takes exactly one argument");
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, seq, &l));
  jsb b;
  sb_init(&b, c->ar);
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i].t != JV_STR)
      return jerr(line, "sequence item %zu: expected str instance, %s found", i, jv_typename(l->v[i]));
    if (i)
      sb_add(&b, self.u.s->s, self.u.s->len);
    sb_add(&b, l->v[i].u.s->s, l->v[i].u.s->len);
  }
  *out = sb_value(&b);
  return MLC_OK;
}
static mlc_status char_class(jv self, jv *out, int kind) {
  jstr *s = self.u.s;
  bool ok = s->len > 0;
  for (size_t i = 0; i < s->len && ok;) {
    uint32_t cp;
    i += u8_dec(s->s + i, s->len - i, &cp);
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
    bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    bool digit = cat == UTF8PROC_CATEGORY_ND;
    if (kind == 0)
      ok = digit;
    else if (kind == 1)
      ok = alpha;
    else if (kind == 2)
      ok = alpha || digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
    else
      ok = py_isspace(cp);
  }
  *out = jv_bool(ok);
  return MLC_OK;
}
METHOD(isdigit) { return char_class(self, out, 0); }
METHOD(isalpha) { return char_class(self, out, 1); }
METHOD(isalnum) { return char_class(self, out, 2); }
METHOD(isspace) { return char_class(self, out, 3); }
METHOD(islower) {
  *out = jv_bool(case_is(self, false));
  return MLC_OK;
}
METHOD(isupper) {
  *out = jv_bool(case_is(self, true));
  return MLC_OK;
}
METHOD(splitlines) {
  jstr *s = self.u.s;
  jv l = jv_list(c->ar, 0);
  bool keep = arg_bool(a, 0, "keepends", false);
  size_t i = 0;
  while (i < s->len) {
    size_t e = i;
    while (e < s->len && s->s[e] != '\n' && s->s[e] != '\r')
      e++;
    size_t ne = e;
    if (e < s->len)
      ne = (s->s[e] == '\r' && e + 1 < s->len && s->s[e + 1] == '\n') ? e + 2 : e + 1;
    jl_push(c->ar, l.u.l, jv_str(c->ar, s->s + i, (keep ? ne : e) - i));
    i = ne;
  }
  *out = l;
  return MLC_OK;
}
METHOD(sformat) { return str_format(c, line, self, a, out); }

METHOD(get) {
  jv k, d = jv_none();
  if (!jargs_get(a, 0, NULL, &k))
    return jerr(line, "get expected at least 1 argument, got 0");
  jargs_get(a, 1, NULL, &d);
  long i = jd_find(self.u.d, k);
  *out = i >= 0 ? self.u.d->v[i] : d;
  return MLC_OK;
}
METHOD(items) { return f_items(c, line, self, a, out); }
METHOD(keys) {
  jv l = jv_list(c->ar, self.u.d->n);
  for (size_t i = 0; i < self.u.d->n; i++)
    jl_push(c->ar, l.u.l, self.u.d->k[i]);
  *out = l;
  return MLC_OK;
}
METHOD(values) {
  jv l = jv_list(c->ar, self.u.d->n);
  for (size_t i = 0; i < self.u.d->n; i++)
    jl_push(c->ar, l.u.l, self.u.d->v[i]);
  *out = l;
  return MLC_OK;
}
METHOD(dcopy) {
  jv d = jv_dict(c->ar);
  for (size_t i = 0; i < self.u.d->n; i++)
    jd_set(c->ar, d.u.d, self.u.d->k[i], self.u.d->v[i]);
  *out = d;
  return MLC_OK;
}
METHOD(append) {
  jv x;
  if (!jargs_get(a, 0, NULL, &x))
    return jerr(line, "append() takes exactly one argument");
  jl_push(c->ar, self.u.l, x);
  *out = jv_none();
  return MLC_OK;
}
METHOD(extend) {
  jv x;
  if (!jargs_get(a, 0, NULL, &x))
    return jerr(line, "extend() takes exactly one argument");
  jlist *l;
  MLC_TRY(jv_iter_list(c, line, x, &l));
  size_t n = l->n;
  for (size_t i = 0; i < n; i++)
    jl_push(c->ar, self.u.l, l->v[i]);
  *out = jv_none();
  return MLC_OK;
}
METHOD(lindex) {
  jv x;
  if (!jargs_get(a, 0, NULL, &x))
    return jerr(line, "index() takes at least 1 argument");
  for (size_t i = 0; i < self.u.l->n; i++)
    if (jv_eq(self.u.l->v[i], x)) {
      *out = jv_int((int64_t)i);
      return MLC_OK;
    }
  return jerr(line, "value is not in list");
}
METHOD(lcount) {
  jv x;
  if (!jargs_get(a, 0, NULL, &x))
    return jerr(line, "count() takes exactly one argument");
  int64_t n = 0;
  for (size_t i = 0; i < self.u.l->n; i++)
    n += jv_eq(self.u.l->v[i], x);
  *out = jv_int(n);
  return MLC_OK;
}

typedef struct {
  const char *name;
  jbuiltin_fn fn;
} jmeth;
static const jmeth g_str_methods[] = {
    {"startswith", m_startswith}, {"endswith", m_endswith}, {"strip", m_strip},       {"lstrip", m_lstrip},
    {"rstrip", m_rstrip},         {"split", m_split},       {"rsplit", m_rsplit},     {"upper", m_upper},
    {"lower", m_lower},           {"title", m_title},       {"capitalize", m_capitalize}, {"replace", m_replace},
    {"find", m_find},             {"rfind", m_rfind},       {"index", m_sindex},      {"count", m_scount},
    {"join", m_sjoin},            {"isdigit", m_isdigit},   {"isalpha", m_isalpha},   {"isalnum", m_isalnum},
    {"isspace", m_isspace},       {"islower", m_islower},   {"isupper", m_isupper},   {"splitlines", m_splitlines},
    {"format", m_sformat},        {NULL, NULL}};
static const jmeth g_dict_methods[] = {
    {"get", m_get}, {"items", m_items}, {"keys", m_keys}, {"values", m_values}, {"copy", m_dcopy}, {NULL, NULL}};
static const jmeth g_list_methods[] = {
    {"append", m_append}, {"extend", m_extend}, {"index", m_lindex}, {"count", m_lcount}, {NULL, NULL}};
static const char *const g_dict_unsafe[] = {"update", "pop", "popitem", "setdefault", "clear", NULL};
static const char *const g_list_unsafe[] = {"pop", "insert", "remove", "reverse", "sort", "clear", NULL};

static jbuiltin_fn find_meth(const jmeth *t, const char *name, size_t n) {
  for (; t->name; t++)
    if (strlen(t->name) == n && memcmp(t->name, name, n) == 0)
      return t->fn;
  return NULL;
}
static bool in_names(const char *const *t, const char *name, size_t n) {
  for (; *t; t++)
    if (strlen(*t) == n && memcmp(*t, name, n) == 0)
      return true;
  return false;
}
jbuiltin_fn jlib_method(jv obj, const char *name, size_t n, bool *unsafe) {
  *unsafe = false;
  switch (obj.t) {
  case JV_STR: return find_meth(g_str_methods, name, n);
  case JV_DICT:
    *unsafe = in_names(g_dict_unsafe, name, n);
    return find_meth(g_dict_methods, name, n);
  case JV_LIST:
    *unsafe = in_names(g_list_unsafe, name, n);
    return find_meth(g_list_methods, name, n);
  default: return NULL;
  }
}

/* ============================================================================================ */
/* globals                                                                                      */
/* ============================================================================================ */

static mlc_status g_range(jctx *c, int line, jv self, jargs *a, jv *out) {
  int64_t start = 0, stop, step = 1;
  if (a->np == 0)
    return jerr(line, "range expected at least 1 argument, got 0");
  for (int i = 0; i < a->np; i++)
    if (!is_intlike(a->pos[i]))
      return jerr(line, "'%s' object cannot be interpreted as an integer", jv_typename(a->pos[i]));
  if (a->np == 1)
    stop = iv(a->pos[0]);
  else {
    start = iv(a->pos[0]);
    stop = iv(a->pos[1]);
    if (a->np > 2)
      step = iv(a->pos[2]);
  }
  if (step == 0)
    return jerr(line, "range() arg 3 must not be zero");
  int64_t n = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0)
                       : (start > stop ? (start - stop - step - 1) / -step : 0);
  if (n > 100000)
    return jerr(line, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  jv l = jv_list(c->ar, (size_t)n);
  for (int64_t i = 0; i < n; i++)
    jl_push(c->ar, l.u.l, jv_int(start + i * step));
  *out = l;
  return MLC_OK;
}
static mlc_status g_namespace(jctx *c, int line, jv self, jargs *a, jv *out) {
  jv ns = jv_dict(c->ar);
  ns.t = JV_NS;
  for (int i = 0; i < a->np; i++) {
    if (a->pos[i].t != JV_DICT)
      return jerr(line, "namespace() positional arguments must be mappings");
    for (size_t k = 0; k < a->pos[i].u.d->n; k++)
      jd_set(c->ar, ns.u.d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]);
  }
  for (int i = 0; i < a->nk; i++) {
    jv k = {.t = JV_STR};
    k.u.s = a->kn[i];
    jd_set(c->ar, ns.u.d, k, a->kv[i]);
  }
  *out = ns;
  return MLC_OK;
}
static mlc_status g_dict(jctx *c, int line, jv self, jargs *a, jv *out) {
  jv d = jv_dict(c->ar);
  for (int i = 0; i < a->np; i++) {
    if (a->pos[i].t == JV_DICT) {
      for (size_t k = 0; k < a->pos[i].u.d->n; k++)
        jd_set(c->ar, d.u.d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]);
    } else if (a->pos[i].t == JV_LIST) {
      for (size_t k = 0; k < a->pos[i].u.l->n; k++) {
        jv p = a->pos[i].u.l->v[k];
        if (p.t != JV_LIST || p.u.l->n != 2)
          return jerr(line, "dictionary update sequence element has wrong length");
        jd_set(c->ar, d.u.d, p.u.l->v[0], p.u.l->v[1]);
      }
    } else
      return jerr(line, "'%s' object is not iterable", jv_typename(a->pos[i]));
  }
  for (int i = 0; i < a->nk; i++) {
    jv k = {.t = JV_STR};
    k.u.s = a->kn[i];
    jd_set(c->ar, d.u.d, k, a->kv[i]);
  }
  *out = d;
  return MLC_OK;
}
static mlc_status g_raise_exception(jctx *c, int line, jv self, jargs *a, jv *out) {
  jv m = jv_str(c->ar, "", 0);
  jargs_get(a, 0, "message", &m);
  return jerr(line, "%s", sstr(c, m)->s);
}
static mlc_status g_strftime_now(jctx *c, int line, jv self, jargs *a, jv *out) {
  jv f;
  if (!jargs_get(a, 0, "format", &f) || f.t != JV_STR)
    return jerr(line, "strftime_now() needs a format string");
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  char buf[1024];
  size_t n = f.u.s->len ? strftime(buf, sizeof buf, f.u.s->s, &tm) : 0;
  *out = jv_str(c->ar, buf, n);
  return MLC_OK;
}

jbuiltin_fn jlib_global(const char *name) {
  if (strcmp(name, "range") == 0)
    return g_range;
  if (strcmp(name, "namespace") == 0)
    return g_namespace;
  if (strcmp(name, "dict") == 0)
    return g_dict;
  if (strcmp(name, "raise_exception") == 0)
    return g_raise_exception;
  if (strcmp(name, "strftime_now") == 0)
    return g_strftime_now;
  return NULL;
}
