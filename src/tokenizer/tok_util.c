/* tok_util.c: hash maps, UTF-8 and character classes, PCRE2 wrapper and JSON helpers for the
 * tokenizer. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

/* ---- string map ---- */
static inline uint32_t hash_bytes(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)k[i];
    h *= 1099511628211ull;
  }
  h ^= h >> 29;
  return (uint32_t)h | 1u; /* never 0: a stored hash of 0 marks an empty slot */
}

static inline bool slot_eq(const mlc_tok_smslot *e, const char *k, size_t len) {
  if (e->len != len)
    return false;
  return len <= sizeof e->inl ? memcmp(e->inl, k, len) == 0 : memcmp(e->k, k, len) == 0;
}

static mlc_status strmap_rehash(mlc_tok_strmap *m, uint32_t ncap) {
  mlc_tok_smslot *ns = mlc_calloc(ncap, sizeof *ns);
  if (!ns)
    return MLC_ERR_NOMEM;
  for (uint32_t i = 0; i < m->cap; i++) {
    if (!m->s[i].h)
      continue;
    uint32_t j = m->s[i].h & (ncap - 1);
    while (ns[j].h)
      j = (j + 1) & (ncap - 1);
    ns[j] = m->s[i];
  }
  free(m->s);
  m->s = ns;
  m->cap = ncap;
  return MLC_OK;
}

mlc_status mlc_tok_strmap_reserve(mlc_tok_strmap *m, size_t n) {
  uint32_t cap = 64;
  while ((size_t)cap < 2 * n)
    cap *= 2;
  return cap > m->cap ? strmap_rehash(m, cap) : MLC_OK;
}

mlc_status mlc_tok_strmap_put(mlc_tok_strmap *m, const char *k, size_t len, int32_t v) {
  if ((m->n + 1) * 4 >= m->cap * 3)
    MLC_TRY(strmap_rehash(m, m->cap ? m->cap * 2 : 64));
  uint32_t h = hash_bytes(k, len), j = h & (m->cap - 1);
  while (m->s[j].h) {
    if (m->s[j].h == h && slot_eq(&m->s[j], k, len)) {
      m->s[j].v = v;
      return MLC_OK;
    }
    j = (j + 1) & (m->cap - 1);
  }
  m->s[j].k = k;
  m->s[j].len = (uint32_t)len;
  m->s[j].v = v;
  m->s[j].h = h;
  if (len <= sizeof m->s[j].inl)
    memcpy(m->s[j].inl, k, len);
  m->n++;
  return MLC_OK;
}

int32_t mlc_tok_strmap_get(const mlc_tok_strmap *m, const char *k, size_t len) {
  if (!m->cap)
    return -1;
  uint32_t h = hash_bytes(k, len), j = h & (m->cap - 1);
  while (m->s[j].h) {
    if (m->s[j].h == h && slot_eq(&m->s[j], k, len))
      return m->s[j].v;
    j = (j + 1) & (m->cap - 1);
  }
  return -1;
}

void mlc_tok_strmap_free(mlc_tok_strmap *m) {
  free(m->s);
  memset(m, 0, sizeof *m);
}

/* ---- pair map ---- */
static inline uint32_t hash64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return (uint32_t)k;
}

static mlc_status pairmap_rehash(mlc_tok_pairmap *m, uint32_t ncap) {
  mlc_tok_pmslot *ns = mlc_malloc((size_t)ncap * sizeof *ns);
  if (!ns)
    return MLC_ERR_NOMEM;
  for (uint32_t i = 0; i < ncap; i++)
    ns[i].k = UINT64_MAX;
  for (uint32_t i = 0; i < m->cap; i++) {
    if (m->s[i].k == UINT64_MAX)
      continue;
    uint32_t j = hash64(m->s[i].k) & (ncap - 1);
    while (ns[j].k != UINT64_MAX)
      j = (j + 1) & (ncap - 1);
    ns[j] = m->s[i];
  }
  free(m->s);
  m->s = ns;
  m->cap = ncap;
  return MLC_OK;
}

mlc_status mlc_tok_pairmap_reserve(mlc_tok_pairmap *m, size_t n) {
  uint32_t cap = 64;
  while ((size_t)cap < 2 * n)
    cap *= 2;
  return cap > m->cap ? pairmap_rehash(m, cap) : MLC_OK;
}

mlc_status mlc_tok_pairmap_put(mlc_tok_pairmap *m, uint64_t k, int32_t a, int32_t b) {
  if ((m->n + 1) * 4 >= m->cap * 3)
    MLC_TRY(pairmap_rehash(m, m->cap ? m->cap * 2 : 64));
  uint32_t j = hash64(k) & (m->cap - 1);
  while (m->s[j].k != UINT64_MAX) {
    if (m->s[j].k == k) {
      m->s[j].a = a;
      m->s[j].b = b;
      return MLC_OK;
    }
    j = (j + 1) & (m->cap - 1);
  }
  m->s[j].k = k;
  m->s[j].a = a;
  m->s[j].b = b;
  m->n++;
  return MLC_OK;
}

const mlc_tok_pmslot *mlc_tok_pairmap_get(const mlc_tok_pairmap *m, uint64_t k) {
  if (!m->cap)
    return NULL;
  uint32_t j = hash64(k) & (m->cap - 1);
  while (m->s[j].k != UINT64_MAX) {
    if (m->s[j].k == k)
      return &m->s[j];
    j = (j + 1) & (m->cap - 1);
  }
  return NULL;
}

void mlc_tok_pairmap_free(mlc_tok_pairmap *m) {
  free(m->s);
  memset(m, 0, sizeof *m);
}

mlc_status mlc_tok_ids_push(mlc_tok_ids *a, int32_t x) {
  if (a->n == a->cap) {
    int nc = a->cap ? a->cap * 2 : 16;
    int32_t *nv = mlc_realloc(a->v, (size_t)nc * sizeof *nv);
    if (!nv)
      return MLC_ERR_NOMEM;
    a->v = nv;
    a->cap = nc;
  }
  a->v[a->n++] = x;
  return MLC_OK;
}

/* ---- UTF-8 ---- */
int mlc_tok_utf8_dec(const char *s, size_t n, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  if (n == 0) {
    *cp = 0xFFFD;
    return 1;
  }
  unsigned c = u[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  int len;
  uint32_t v, min;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    v = c & 0x1F;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    v = c & 0x0F;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    v = c & 0x07;
    min = 0x10000;
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  if ((size_t)len > n) {
    *cp = 0xFFFD;
    return 1;
  }
  for (int i = 1; i < len; i++) {
    if ((u[i] & 0xC0) != 0x80) {
      *cp = 0xFFFD;
      return 1;
    }
    v = (v << 6) | (u[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    *cp = 0xFFFD;
    return 1;
  }
  *cp = v;
  return len;
}

int mlc_tok_utf8_enc(uint32_t cp, char *out) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Length of a valid sequence at s, 0 if invalid or truncated. */
static int utf8_valid_len(const char *s, size_t n) {
  uint32_t cp;
  int l = mlc_tok_utf8_dec(s, n, &cp);
  if (cp == 0xFFFD && l == 1 && !(n >= 3 && memcmp(s, "\xEF\xBF\xBD", 3) == 0))
    return 0;
  return l;
}

size_t mlc_tok_utf8_valid_prefix(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if ((unsigned char)s[i] < 0x80) {
      i++;
      continue;
    }
    int l = utf8_valid_len(s + i, n - i);
    if (!l)
      break;
    i += (size_t)l;
  }
  return i;
}

void mlc_tok_utf8_lossy(mlc_buf *b, const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n) {
      if ((unsigned char)s[j] < 0x80) {
        j++;
        continue;
      }
      int l = utf8_valid_len(s + j, n - j);
      if (!l)
        break;
      j += (size_t)l;
    }
    mlc_buf_append(b, s + i, j - i);
    if (j >= n)
      break;
    /* invalid: skip the maximal prefix of a valid sequence (Rust from_utf8_lossy semantics) */
    const unsigned char *u = (const unsigned char *)s + j;
    size_t rem = n - j, k = 1;
    unsigned c = u[0];
    int need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 1;
    if (need > 1 && rem > 1) {
      unsigned lo = 0x80, hi = 0xBF;
      if (c == 0xE0) lo = 0xA0;
      else if (c == 0xED) hi = 0x9F;
      else if (c == 0xF0) lo = 0x90;
      else if (c == 0xF4) hi = 0x8F;
      if (u[1] >= lo && u[1] <= hi) {
        k = 2;
        while ((int)k < need && k < rem && (u[k] & 0xC0) == 0x80)
          k++;
      }
    }
    mlc_buf_append(b, "\xEF\xBF\xBD", 3);
    i = j + k;
  }
}

bool mlc_tok_is_ws(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

static utf8proc_category_t cat(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c); }

bool mlc_tok_is_numeric(uint32_t c) {
  utf8proc_category_t k = cat(c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static bool is_letter(utf8proc_category_t k) { return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO; }

bool mlc_tok_is_alnum(uint32_t c) {
  utf8proc_category_t k = cat(c);
  return is_letter(k) || mlc_tok_is_numeric(c) || k == UTF8PROC_CATEGORY_MC;
}

bool mlc_tok_is_punct(uint32_t c) {
  if (c < 128)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  utf8proc_category_t k = cat(c);
  return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

bool mlc_tok_is_word(uint32_t c) {
  utf8proc_category_t k = cat(c);
  return is_letter(k) || k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME ||
         k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC || c == 0x200C ||
         c == 0x200D;
}

/* ---- regex ---- */
struct mlc_tok_re {
  pcre2_code *code;
};

mlc_status mlc_tok_re_new(const char *pattern, bool literal, const char *ctx, mlc_tok_re **out) {
  int ec;
  PCRE2_SIZE eo;
  uint32_t opt = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof msg);
    return mlc_err(MLC_ERR_FORMAT, "%s: bad regex at offset %zu: %s", ctx, (size_t)eo, (char *)msg);
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
  mlc_tok_re *r = mlc_calloc(1, sizeof *r);
  if (!r) {
    pcre2_code_free(code);
    return MLC_ERR_NOMEM;
  }
  r->code = code;
  *out = r;
  return MLC_OK;
}

void mlc_tok_re_free(mlc_tok_re *re) {
  if (!re)
    return;
  pcre2_code_free(re->code);
  free(re);
}

mlc_status mlc_tok_re_find_all(const mlc_tok_re *re, const char *s, size_t n, mlc_tok_spans *out) {
  out->n = 0;
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
  if (!md)
    return mlc_err(MLC_ERR_NOMEM, "out of memory (regex match data)");
  size_t pos = 0;
  mlc_status st = MLC_OK;
  while (pos <= n) {
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
      break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      st = mlc_err(MLC_ERR_INTERNAL, "regex match failed: %s", (char *)msg);
      break;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t a = ov[0], b = ov[1];
    if (out->n == out->cap) {
      int nc = out->cap ? out->cap * 2 : 16;
      mlc_tok_span *nv = mlc_realloc(out->v, (size_t)nc * sizeof *nv);
      if (!nv) {
        st = MLC_ERR_NOMEM;
        break;
      }
      out->v = nv;
      out->cap = nc;
    }
    out->v[out->n].a = a;
    out->v[out->n].b = b;
    out->n++;
    if (b > a) {
      pos = b;
    } else {
      if (b >= n)
        break;
      uint32_t cp;
      pos = b + (size_t)mlc_tok_utf8_dec(s + b, n - b, &cp);
    }
  }
  pcre2_match_data_free(md);
  return st;
}

/* ---- pieces ---- */
mlc_status mlc_tok_pieces_push(mlc_tok_pieces *p, const char *s, size_t len, int32_t id, bool at_start) {
  if (p->n == p->cap) {
    int nc = p->cap ? p->cap * 2 : 16;
    mlc_tok_piece *nv = mlc_realloc(p->v, (size_t)nc * sizeof *nv);
    if (!nv)
      return MLC_ERR_NOMEM;
    p->v = nv;
    p->cap = nc;
  }
  char *c = mlc_malloc(len + 1);
  if (!c)
    return MLC_ERR_NOMEM;
  memcpy(c, s, len);
  c[len] = 0;
  p->v[p->n++] = (mlc_tok_piece){c, len, id, at_start};
  return MLC_OK;
}

void mlc_tok_pieces_free(mlc_tok_pieces *p) {
  for (int i = 0; i < p->n; i++)
    free(p->v[i].s);
  free(p->v);
  memset(p, 0, sizeof *p);
}

mlc_status mlc_tok_strs_push(mlc_tok_strs *a, const char *s, size_t len) {
  if (a->n == a->cap) {
    int nc = a->cap ? a->cap * 2 : 16;
    char **nv = mlc_realloc(a->v, (size_t)nc * sizeof *nv);
    if (!nv)
      return MLC_ERR_NOMEM;
    a->v = nv;
    size_t *nl = mlc_realloc(a->len, (size_t)nc * sizeof *nl);
    if (!nl)
      return MLC_ERR_NOMEM;
    a->len = nl;
    a->cap = nc;
  }
  char *c = mlc_malloc(len + 1);
  if (!c)
    return MLC_ERR_NOMEM;
  memcpy(c, s, len);
  c[len] = 0;
  a->v[a->n] = c;
  a->len[a->n] = len;
  a->n++;
  return MLC_OK;
}

void mlc_tok_strs_free(mlc_tok_strs *a) {
  for (int i = 0; i < a->n; i++)
    free(a->v[i]);
  free(a->v);
  free(a->len);
  memset(a, 0, sizeof *a);
}

/* ---- JSON helpers ---- */
mlc_status mlc_tok_json_str(const mlc_tok_ctx *c, const cJSON *o, const char *path, const char *key,
                            bool required, const char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) {
    *out = NULL;
    if (required)
      return mlc_err(MLC_ERR_FORMAT, "%s: %s.%s: missing (expected a string)", c->file, path, key);
    return MLC_OK;
  }
  if (!cJSON_IsString(v))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s.%s: expected a string", c->file, path, key);
  *out = v->valuestring;
  return MLC_OK;
}

mlc_status mlc_tok_json_bool(const mlc_tok_ctx *c, const cJSON *o, const char *path, const char *key,
                             bool dflt, bool *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) {
    *out = dflt;
    return MLC_OK;
  }
  if (!cJSON_IsBool(v))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s.%s: expected true or false", c->file, path, key);
  *out = cJSON_IsTrue(v);
  return MLC_OK;
}

mlc_status mlc_tok_json_int(const mlc_tok_ctx *c, const cJSON *o, const char *path, const char *key,
                            long dflt, long *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) {
    *out = dflt;
    return MLC_OK;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble)
    return mlc_err(MLC_ERR_FORMAT, "%s: %s.%s: expected an integer", c->file, path, key);
  *out = (long)v->valuedouble;
  return MLC_OK;
}

mlc_status mlc_tok_json_pattern(const mlc_tok_ctx *c, const cJSON *o, const char *path,
                                mlc_tok_re **re, char **literal) {
  *re = NULL;
  if (literal)
    *literal = NULL;
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
  if (!cJSON_IsObject(p))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", c->file, path);
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "String");
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(p, "Regex");
  char ctx[512];
  if (s) {
    if (!cJSON_IsString(s))
      return mlc_err(MLC_ERR_FORMAT, "%s: %s.pattern.String: expected a string", c->file, path);
    snprintf(ctx, sizeof ctx, "%s: %s.pattern.String", c->file, path);
    if (literal) {
      *literal = mlc_strdup(s->valuestring);
      if (!*literal)
        return MLC_ERR_NOMEM;
    }
    if (!s->valuestring[0])
      return MLC_OK; /* empty literal: never matches */
    return mlc_tok_re_new(s->valuestring, true, ctx, re);
  }
  if (r) {
    if (!cJSON_IsString(r))
      return mlc_err(MLC_ERR_FORMAT, "%s: %s.pattern.Regex: expected a string", c->file, path);
    snprintf(ctx, sizeof ctx, "%s: %s.pattern.Regex", c->file, path);
    return mlc_tok_re_new(r->valuestring, false, ctx, re);
  }
  return mlc_err(MLC_ERR_FORMAT, "%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", c->file, path);
}
