/* tok_norm.c: HF normalizers (NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace,
 * Prepend, BertNormalizer, Nmt, Precompiled (approximated by NFKC), Sequence). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_STRIP, N_STRIP_ACCENTS, N_REPLACE, N_PREPEND, N_SEQ, N_BERT, N_NMT };

struct mlc_tok_norm {
  int type;
  bool left, right;                                       /* Strip */
  mlc_tok_re *re;                                         /* Replace */
  char *content;                                          /* Replace / Prepend */
  bool clean_text, chinese, strip_accents, lowercase;     /* Bert */
  mlc_tok_norm **kids;
  int nkids;
};

void mlc_tok_norm_free(mlc_tok_norm *n) {
  if (!n)
    return;
  for (int i = 0; i < n->nkids; i++)
    mlc_tok_norm_free(n->kids[i]);
  free(n->kids);
  mlc_tok_re_free(n->re);
  free(n->content);
  free(n);
}

mlc_status mlc_tok_norm_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path, mlc_tok_norm **out) {
  *out = NULL;
  if (!j || cJSON_IsNull(j))
    return MLC_OK;
  if (!cJSON_IsObject(j))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s: expected an object", c->file, path);
  const char *type;
  MLC_TRY(mlc_tok_json_str(c, j, path, "type", true, &type));
  mlc_tok_norm *n = mlc_calloc(1, sizeof *n);
  if (!n)
    return MLC_ERR_NOMEM;
  mlc_status st = MLC_OK;
  if (!strcmp(type, "NFC")) n->type = N_NFC;
  else if (!strcmp(type, "NFD")) n->type = N_NFD;
  else if (!strcmp(type, "NFKC")) n->type = N_NFKC;
  else if (!strcmp(type, "NFKD")) n->type = N_NFKD;
  else if (!strcmp(type, "Precompiled")) n->type = N_NFKC; /* SentencePiece charsmap: NFKC-like */
  else if (!strcmp(type, "Lowercase")) n->type = N_LOWER;
  else if (!strcmp(type, "StripAccents")) n->type = N_STRIP_ACCENTS;
  else if (!strcmp(type, "Nmt")) n->type = N_NMT;
  else if (!strcmp(type, "Strip")) {
    n->type = N_STRIP;
    if ((st = mlc_tok_json_bool(c, j, path, "strip_left", true, &n->left)) == MLC_OK)
      st = mlc_tok_json_bool(c, j, path, "strip_right", true, &n->right);
  } else if (!strcmp(type, "Replace")) {
    n->type = N_REPLACE;
    const char *content;
    if ((st = mlc_tok_json_pattern(c, j, path, &n->re, NULL)) == MLC_OK &&
        (st = mlc_tok_json_str(c, j, path, "content", true, &content)) == MLC_OK && !(n->content = mlc_strdup(content)))
      st = MLC_ERR_NOMEM;
  } else if (!strcmp(type, "Prepend")) {
    n->type = N_PREPEND;
    const char *p;
    if ((st = mlc_tok_json_str(c, j, path, "prepend", true, &p)) == MLC_OK && !(n->content = mlc_strdup(p)))
      st = MLC_ERR_NOMEM;
  } else if (!strcmp(type, "BertNormalizer")) {
    n->type = N_BERT;
    const cJSON *sa = cJSON_GetObjectItemCaseSensitive(j, "strip_accents");
    if ((st = mlc_tok_json_bool(c, j, path, "clean_text", true, &n->clean_text)) == MLC_OK &&
        (st = mlc_tok_json_bool(c, j, path, "handle_chinese_chars", true, &n->chinese)) == MLC_OK &&
        (st = mlc_tok_json_bool(c, j, path, "lowercase", true, &n->lowercase)) == MLC_OK) {
      if (!sa || cJSON_IsNull(sa))
        n->strip_accents = n->lowercase;
      else
        st = mlc_tok_json_bool(c, j, path, "strip_accents", false, &n->strip_accents);
    }
  } else if (!strcmp(type, "Sequence")) {
    n->type = N_SEQ;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
    if (!cJSON_IsArray(arr)) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: %s.normalizers: expected an array", c->file, path);
    } else {
      int cnt = cJSON_GetArraySize(arr);
      n->kids = mlc_calloc((size_t)cnt + 1, sizeof *n->kids);
      if (!n->kids)
        st = MLC_ERR_NOMEM;
      for (int i = 0; st == MLC_OK && i < cnt; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, i);
        st = mlc_tok_norm_parse(c, cJSON_GetArrayItem(arr, i), sub, &n->kids[n->nkids]);
        if (st == MLC_OK && n->kids[n->nkids])
          n->nkids++;
      }
    }
  } else {
    st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: %s.type: unsupported normalizer \"%s\"", c->file, path, type);
  }
  if (st != MLC_OK) {
    mlc_tok_norm_free(n);
    return st;
  }
  *out = n;
  return MLC_OK;
}

static mlc_status uproc(const char *s, size_t len, int opts, mlc_buf *out) {
  if (!len)
    return MLC_OK;
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst, (utf8proc_option_t)opts);
  if (r < 0) { /* invalid UTF-8 cannot reach here (encode makes input valid); copy through */
    mlc_buf_append(out, s, len);
    return MLC_OK;
  }
  mlc_buf_append(out, (const char *)dst, (size_t)r);
  free(dst);
  return MLC_OK;
}

static bool is_cased_letter(uint32_t c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static void lower(const char *s, size_t len, mlc_buf *out) {
  size_t i = 0;
  uint32_t prev = 0;
  while (i < len) {
    uint32_t cp;
    int l = mlc_tok_utf8_dec(s + i, len - i, &cp);
    char tmp[8];
    if (cp == 0x130) {
      mlc_buf_append(out, "i\xCC\x87", 3);
    } else if (cp == 0x3A3) {
      uint32_t next = 0;
      if (i + (size_t)l < len)
        mlc_tok_utf8_dec(s + i + l, len - i - (size_t)l, &next);
      bool final = prev && is_cased_letter(prev) && !(next && is_cased_letter(next));
      mlc_buf_append(out, final ? "\xCF\x82" : "\xCF\x83", 2);
    } else {
      uint32_t lc = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
      mlc_buf_append(out, tmp, (size_t)mlc_tok_utf8_enc(lc, tmp));
    }
    prev = cp;
    i += (size_t)l;
  }
}

static bool is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Applies a per-code-point filter: drop Mn (strip accents) */
static void strip_marks(const char *s, size_t len, mlc_buf *out) {
  size_t i = 0;
  while (i < len) {
    uint32_t cp;
    int l = mlc_tok_utf8_dec(s + i, len - i, &cp);
    if (utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_MN)
      mlc_buf_append(out, s + i, (size_t)l);
    i += (size_t)l;
  }
}

static mlc_status apply1(const mlc_tok_norm *n, const char *s, size_t len, mlc_buf *out) {
  switch (n->type) {
  case N_NFC: return uproc(s, len, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out);
  case N_NFD: return uproc(s, len, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out);
  case N_NFKC: return uproc(s, len, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
  case N_NFKD: return uproc(s, len, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
  case N_LOWER: lower(s, len, out); return MLC_OK;
  case N_STRIP_ACCENTS: strip_marks(s, len, out); return MLC_OK;
  case N_STRIP: {
    size_t a = 0, b = len;
    while (n->left && a < b) {
      uint32_t cp;
      int l = mlc_tok_utf8_dec(s + a, b - a, &cp);
      if (!mlc_tok_is_ws(cp)) break;
      a += (size_t)l;
    }
    while (n->right && b > a) {
      size_t k = b - 1;
      while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
      uint32_t cp;
      mlc_tok_utf8_dec(s + k, b - k, &cp);
      if (!mlc_tok_is_ws(cp)) break;
      b = k;
    }
    mlc_buf_append(out, s + a, b - a);
    return MLC_OK;
  }
  case N_PREPEND:
    if (len)
      mlc_buf_puts(out, n->content);
    mlc_buf_append(out, s, len);
    return MLC_OK;
  case N_REPLACE: {
    if (!n->re) {
      mlc_buf_append(out, s, len);
      return MLC_OK;
    }
    mlc_tok_spans sp = {0};
    mlc_status st = mlc_tok_re_find_all(n->re, s, len, &sp);
    if (st != MLC_OK) {
      free(sp.v);
      return st;
    }
    size_t prev = 0;
    for (int i = 0; i < sp.n; i++) {
      mlc_buf_append(out, s + prev, sp.v[i].a - prev);
      mlc_buf_puts(out, n->content);
      prev = sp.v[i].b;
    }
    mlc_buf_append(out, s + prev, len - prev);
    free(sp.v);
    return MLC_OK;
  }
  case N_NMT: {
    size_t i = 0;
    while (i < len) {
      uint32_t c;
      int l = mlc_tok_utf8_dec(s + i, len - i, &c);
      if ((c >= 1 && c <= 8) || c == 0xB || (c >= 0xE && c <= 0x1F) || c == 0x7F || c == 0x8F || c == 0x9F) {
      } else if (c == 9 || c == 0xA || c == 0xC || c == 0xD || c == 0x1680 || (c >= 0x200B && c <= 0x200F) ||
                 c == 0x2028 || c == 0x2029 || c == 0x2581 || c == 0xFEFF || c == 0xFFFD) {
        mlc_buf_append(out, " ", 1);
      } else {
        mlc_buf_append(out, s + i, (size_t)l);
      }
      i += (size_t)l;
    }
    return MLC_OK;
  }
  case N_BERT: {
    mlc_buf a = {0};
    size_t i = 0;
    while (i < len) {
      uint32_t c;
      int l = mlc_tok_utf8_dec(s + i, len - i, &c);
      i += (size_t)l;
      if (n->clean_text) {
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
        bool ws = c == '\t' || c == '\n' || c == '\r' || mlc_tok_is_ws(c);
        bool ctrl = !ws && (k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CS ||
                            k == UTF8PROC_CATEGORY_CO || k == UTF8PROC_CATEGORY_CN);
        if (c == 0 || c == 0xFFFD || ctrl)
          continue;
        if (ws) {
          mlc_buf_append(&a, " ", 1);
          continue;
        }
      }
      char tmp[4];
      int tl = mlc_tok_utf8_enc(c, tmp);
      if (n->chinese && is_cjk(c)) {
        mlc_buf_append(&a, " ", 1);
        mlc_buf_append(&a, tmp, (size_t)tl);
        mlc_buf_append(&a, " ", 1);
      } else {
        mlc_buf_append(&a, tmp, (size_t)tl);
      }
    }
    if (a.oom) {
      mlc_buf_free(&a);
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    }
    const char *cur = a.data ? a.data : "";
    size_t cl = a.len;
    mlc_buf b = {0};
    if (n->strip_accents) {
      mlc_buf d = {0};
      uproc(cur, cl, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, &d);
      strip_marks(d.data ? d.data : "", d.len, &b);
      mlc_buf_free(&d);
    } else {
      mlc_buf_append(&b, cur, cl);
    }
    if (n->lowercase)
      lower(b.data ? b.data : "", b.len, out);
    else
      mlc_buf_append(out, b.data ? b.data : "", b.len);
    mlc_buf_free(&a);
    mlc_buf_free(&b);
    return MLC_OK;
  }
  case N_SEQ: {
    mlc_buf cur = {0};
    mlc_buf_append(&cur, s, len);
    for (int i = 0; i < n->nkids; i++) {
      mlc_buf nx = {0};
      mlc_status st = apply1(n->kids[i], cur.data ? cur.data : "", cur.len, &nx);
      mlc_buf_free(&cur);
      if (st != MLC_OK) {
        mlc_buf_free(&nx);
        return st;
      }
      cur = nx;
    }
    mlc_buf_append(out, cur.data ? cur.data : "", cur.len);
    mlc_buf_free(&cur);
    return MLC_OK;
  }
  }
  return mlc_err(MLC_ERR_INTERNAL, "unknown normalizer type %d", n->type);
}

mlc_status mlc_tok_norm_apply(const mlc_tok_norm *n, const char *s, size_t len, mlc_buf *out) {
  mlc_status st = apply1(n, s, len, out);
  if (st == MLC_OK && out->oom)
    return mlc_err(MLC_ERR_NOMEM, "out of memory while normalizing");
  return st;
}
