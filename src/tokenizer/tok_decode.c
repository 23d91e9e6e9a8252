/* tok_decode.c: HF decoders (ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, WordPiece,
 * BPEDecoder, CTC, Sequence) and post-processors (TemplateProcessing, ByteLevel, Roberta, Bert,
 * Sequence). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

enum { D_BYTELEVEL, D_METASPACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_REPLACE, D_WORDPIECE, D_BPE, D_CTC, D_SEQ };

struct mlc_tok_dec {
  int type;
  char rep[8];
  size_t rep_len;
  int prepend; /* Metaspace: 0 always, 1 first, 2 never */
  mlc_tok_re *re;
  char *content, *prefix, *pad;
  uint32_t strip_ch;
  long start, stop;
  bool cleanup;
  mlc_tok_dec **kids;
  int nkids;
};

mlc_status mlc_tok_parse_metaspace(const mlc_tok_ctx *c, const cJSON *j, const char *path, char rep[8], size_t *rep_len,
                                   int *prepend);

void mlc_tok_dec_free(mlc_tok_dec *d) {
  if (!d)
    return;
  for (int i = 0; i < d->nkids; i++)
    mlc_tok_dec_free(d->kids[i]);
  free(d->kids);
  mlc_tok_re_free(d->re);
  free(d->content);
  free(d->prefix);
  free(d->pad);
  free(d);
}

static mlc_status dup_str(const mlc_tok_ctx *c, const cJSON *j, const char *path, const char *key, const char *dflt,
                          char **out) {
  const char *s;
  MLC_TRY(mlc_tok_json_str(c, j, path, key, dflt == NULL, &s));
  if (!s)
    s = dflt;
  *out = mlc_strdup(s);
  return *out ? MLC_OK : MLC_ERR_NOMEM;
}

mlc_status mlc_tok_dec_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path, mlc_tok_dec **out) {
  *out = NULL;
  if (!j || cJSON_IsNull(j))
    return MLC_OK;
  if (!cJSON_IsObject(j))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s: expected an object", c->file, path);
  const char *type;
  MLC_TRY(mlc_tok_json_str(c, j, path, "type", true, &type));
  mlc_tok_dec *d = mlc_calloc(1, sizeof *d);
  if (!d)
    return MLC_ERR_NOMEM;
  mlc_status st = MLC_OK;
  if (!strcmp(type, "ByteLevel")) d->type = D_BYTELEVEL;
  else if (!strcmp(type, "ByteFallback")) d->type = D_BYTEFALLBACK;
  else if (!strcmp(type, "Fuse")) d->type = D_FUSE;
  else if (!strcmp(type, "Metaspace")) {
    d->type = D_METASPACE;
    st = mlc_tok_parse_metaspace(c, j, path, d->rep, &d->rep_len, &d->prepend);
  } else if (!strcmp(type, "Strip")) {
    d->type = D_STRIP;
    const char *ct;
    if ((st = mlc_tok_json_str(c, j, path, "content", true, &ct)) == MLC_OK &&
        (st = mlc_tok_json_int(c, j, path, "start", 0, &d->start)) == MLC_OK &&
        (st = mlc_tok_json_int(c, j, path, "stop", 0, &d->stop)) == MLC_OK)
      mlc_tok_utf8_dec(ct, strlen(ct), &d->strip_ch);
  } else if (!strcmp(type, "Replace")) {
    d->type = D_REPLACE;
    if ((st = mlc_tok_json_pattern(c, j, path, &d->re, NULL)) == MLC_OK)
      st = dup_str(c, j, path, "content", NULL, &d->content);
  } else if (!strcmp(type, "WordPiece")) {
    d->type = D_WORDPIECE;
    if ((st = dup_str(c, j, path, "prefix", "##", &d->prefix)) == MLC_OK)
      st = mlc_tok_json_bool(c, j, path, "cleanup", true, &d->cleanup);
  } else if (!strcmp(type, "BPEDecoder")) {
    d->type = D_BPE;
    st = dup_str(c, j, path, "suffix", "</w>", &d->content);
  } else if (!strcmp(type, "CTC")) {
    d->type = D_CTC;
    if ((st = dup_str(c, j, path, "pad_token", "<pad>", &d->pad)) == MLC_OK &&
        (st = dup_str(c, j, path, "word_delimiter_token", "|", &d->content)) == MLC_OK)
      st = mlc_tok_json_bool(c, j, path, "cleanup", true, &d->cleanup);
  } else if (!strcmp(type, "Sequence")) {
    d->type = D_SEQ;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "decoders");
    if (!cJSON_IsArray(arr)) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: %s.decoders: expected an array", c->file, path);
    } else {
      int cnt = cJSON_GetArraySize(arr);
      d->kids = mlc_calloc((size_t)cnt + 1, sizeof *d->kids);
      if (!d->kids)
        st = MLC_ERR_NOMEM;
      for (int i = 0; st == MLC_OK && i < cnt; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s.decoders[%d]", path, i);
        st = mlc_tok_dec_parse(c, cJSON_GetArrayItem(arr, i), sub, &d->kids[d->nkids]);
        if (st == MLC_OK && d->kids[d->nkids])
          d->nkids++;
      }
    }
  } else {
    st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: %s.type: unsupported decoder \"%s\"", c->file, path, type);
  }
  if (st != MLC_OK) {
    mlc_tok_dec_free(d);
    return st;
  }
  *out = d;
  return MLC_OK;
}

/* Replaces toks->v[i] by the buffer's content. */
static mlc_status set_tok(mlc_tok_strs *t, int i, mlc_buf *b) {
  if (b->oom) {
    mlc_buf_free(b);
    return mlc_err(MLC_ERR_NOMEM, "out of memory while decoding");
  }
  char *s = b->data ? mlc_buf_take(b) : mlc_strdup("");
  if (!s)
    return MLC_ERR_NOMEM;
  free(t->v[i]);
  t->v[i] = s;
  t->len[i] = strlen(s);
  return MLC_OK;
}

static mlc_status fuse_all(mlc_tok_strs *t) {
  mlc_buf b = {0};
  for (int i = 0; i < t->n; i++)
    mlc_buf_append(&b, t->v[i], t->len[i]);
  for (int i = 1; i < t->n; i++)
    free(t->v[i]);
  if (t->n == 0) {
    mlc_buf_free(&b);
    return MLC_OK;
  }
  t->n = 1;
  return set_tok(t, 0, &b);
}

void mlc_tok_cleanup_str(mlc_buf *b, bool wordpiece);
static void replace_all(mlc_buf *b, const char *from, const char *to) {
  size_t fl = strlen(from), tl = strlen(to);
  if (!b->len)
    return;
  mlc_buf o = {0};
  size_t i = 0;
  while (i < b->len) {
    if (i + fl <= b->len && memcmp(b->data + i, from, fl) == 0) {
      mlc_buf_append(&o, to, tl);
      i += fl;
    } else {
      mlc_buf_append(&o, b->data + i, 1);
      i++;
    }
  }
  if (o.oom) {
    mlc_buf_free(&o);
    b->oom = true;
    return;
  }
  mlc_buf_free(b);
  *b = o;
  if (!b->data) { /* keep a valid (empty) string */
    mlc_buf_append(b, "", 0);
  }
}

void mlc_tok_cleanup_str(mlc_buf *b, bool wordpiece) {
  replace_all(b, " .", ".");
  replace_all(b, " ?", "?");
  replace_all(b, " !", "!");
  replace_all(b, " ,", ",");
  replace_all(b, " ' ", "'");
  replace_all(b, " n't", "n't");
  replace_all(b, " 'm", "'m");
  if (wordpiece)
    replace_all(b, " do not", " don't");
  replace_all(b, " 's", "'s");
  replace_all(b, " 've", "'ve");
  replace_all(b, " 're", "'re");
}

void mlc_tok_cleanup_spaces(mlc_buf *b) { mlc_tok_cleanup_str(b, false); }

static int hexv(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

mlc_status mlc_tok_dec_chain(const mlc_tok_dec *d, mlc_tok_strs *t) {
  switch (d->type) {
  case D_SEQ:
    for (int i = 0; i < d->nkids; i++)
      MLC_TRY(mlc_tok_dec_chain(d->kids[i], t));
    return MLC_OK;
  case D_FUSE:
    return fuse_all(t);
  case D_BYTELEVEL: {
    mlc_buf raw = {0}, out = {0};
    for (int i = 0; i < t->n; i++) {
      size_t start = raw.len;
      bool ok = true;
      for (size_t k = 0; k < t->len[i];) {
        uint32_t cp;
        k += (size_t)mlc_tok_utf8_dec(t->v[i] + k, t->len[i] - k, &cp);
        int by = mlc_tok_cp_to_byte(cp);
        if (by < 0) {
          ok = false;
          break;
        }
        char ch = (char)by;
        mlc_buf_append(&raw, &ch, 1);
      }
      if (!ok) {
        raw.len = start;
        mlc_buf_append(&raw, t->v[i], t->len[i]);
      }
    }
    mlc_tok_utf8_lossy(&out, raw.data ? raw.data : "", raw.len);
    mlc_buf_free(&raw);
    for (int i = 1; i < t->n; i++)
      free(t->v[i]);
    if (t->n == 0) {
      mlc_buf_free(&out);
      return MLC_OK;
    }
    t->n = 1;
    return set_tok(t, 0, &out);
  }
  case D_METASPACE:
    for (int i = 0; i < t->n; i++) {
      mlc_buf b = {0};
      for (size_t k = 0; k < t->len[i];) {
        if (k + d->rep_len <= t->len[i] && memcmp(t->v[i] + k, d->rep, d->rep_len) == 0) {
          if (!(i == 0 && d->prepend != 2))
            mlc_buf_append(&b, " ", 1);
          k += d->rep_len;
        } else {
          mlc_buf_append(&b, t->v[i] + k, 1);
          k++;
        }
      }
      MLC_TRY(set_tok(t, i, &b));
    }
    return MLC_OK;
  case D_BYTEFALLBACK: {
    mlc_tok_strs o = {0};
    mlc_buf bytes = {0};
    mlc_status st = MLC_OK;
    for (int i = 0; st == MLC_OK && i <= t->n; i++) {
      const char *s = i < t->n ? t->v[i] : NULL;
      if (s && t->len[i] == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexv(s[3]) >= 0 && hexv(s[4]) >= 0) {
        char by = (char)(hexv(s[3]) * 16 + hexv(s[4]));
        mlc_buf_append(&bytes, &by, 1);
        continue;
      }
      if (bytes.len) {
        if (mlc_tok_utf8_valid_prefix(bytes.data, bytes.len) == bytes.len)
          st = mlc_tok_strs_push(&o, bytes.data, bytes.len);
        else
          for (size_t k = 0; st == MLC_OK && k < bytes.len; k++)
            st = mlc_tok_strs_push(&o, "\xEF\xBF\xBD", 3);
        bytes.len = 0;
      }
      if (s && st == MLC_OK)
        st = mlc_tok_strs_push(&o, s, t->len[i]);
    }
    if (bytes.oom && st == MLC_OK)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory");
    mlc_buf_free(&bytes);
    if (st != MLC_OK) {
      mlc_tok_strs_free(&o);
      return st;
    }
    mlc_tok_strs_free(t);
    *t = o;
    return MLC_OK;
  }
  case D_STRIP:
    for (int i = 0; i < t->n; i++) {
      const char *s = t->v[i];
      size_t a = 0, b = t->len[i];
      for (long k = 0; k < d->start && a < b; k++) {
        uint32_t cp;
        int l = mlc_tok_utf8_dec(s + a, b - a, &cp);
        if (cp != d->strip_ch)
          break;
        a += (size_t)l;
      }
      for (long k = 0; k < d->stop && b > a; k++) {
        size_t q = b - 1;
        while (q > a && ((unsigned char)s[q] & 0xC0) == 0x80)
          q--;
        uint32_t cp;
        mlc_tok_utf8_dec(s + q, b - q, &cp);
        if (cp != d->strip_ch)
          break;
        b = q;
      }
      mlc_buf nb = {0};
      mlc_buf_append(&nb, s + a, b - a);
      MLC_TRY(set_tok(t, i, &nb));
    }
    return MLC_OK;
  case D_REPLACE:
    if (!d->re)
      return MLC_OK;
    for (int i = 0; i < t->n; i++) {
      mlc_tok_spans sp = {0};
      mlc_status st = mlc_tok_re_find_all(d->re, t->v[i], t->len[i], &sp);
      if (st != MLC_OK) {
        free(sp.v);
        return st;
      }
      mlc_buf b = {0};
      size_t prev = 0;
      for (int k = 0; k < sp.n; k++) {
        mlc_buf_append(&b, t->v[i] + prev, sp.v[k].a - prev);
        mlc_buf_puts(&b, d->content);
        prev = sp.v[k].b;
      }
      mlc_buf_append(&b, t->v[i] + prev, t->len[i] - prev);
      free(sp.v);
      MLC_TRY(set_tok(t, i, &b));
    }
    return MLC_OK;
  case D_WORDPIECE:
    for (int i = 0; i < t->n; i++) {
      mlc_buf b = {0};
      size_t pl = strlen(d->prefix);
      if (i == 0) {
        mlc_buf_append(&b, t->v[i], t->len[i]);
      } else if (t->len[i] >= pl && !memcmp(t->v[i], d->prefix, pl)) {
        mlc_buf_append(&b, t->v[i] + pl, t->len[i] - pl);
      } else {
        mlc_buf_append(&b, " ", 1);
        mlc_buf_append(&b, t->v[i], t->len[i]);
      }
      if (d->cleanup)
        mlc_tok_cleanup_str(&b, true);
      MLC_TRY(set_tok(t, i, &b));
    }
    return MLC_OK;
  case D_BPE:
    for (int i = 0; i < t->n; i++) {
      mlc_buf b = {0};
      mlc_buf_append(&b, t->v[i], t->len[i]);
      replace_all(&b, d->content, i + 1 == t->n ? "" : " ");
      MLC_TRY(set_tok(t, i, &b));
    }
    return MLC_OK;
  case D_CTC: {
    mlc_tok_strs o = {0};
    mlc_status st = MLC_OK;
    for (int i = 0; st == MLC_OK && i < t->n; i++) {
      if (i > 0 && t->len[i] == t->len[i - 1] && !memcmp(t->v[i], t->v[i - 1], t->len[i]))
        continue;
      if (!strcmp(t->v[i], d->pad))
        continue;
      mlc_buf b = {0};
      mlc_buf_append(&b, t->v[i], t->len[i]);
      replace_all(&b, d->content, " ");
      if (d->cleanup)
        mlc_tok_cleanup_str(&b, true);
      st = b.oom ? MLC_ERR_NOMEM : mlc_tok_strs_push(&o, b.data ? b.data : "", b.len);
      mlc_buf_free(&b);
    }
    if (st != MLC_OK) {
      mlc_tok_strs_free(&o);
      return st;
    }
    mlc_tok_strs_free(t);
    *t = o;
    return MLC_OK;
  }
  }
  return mlc_err(MLC_ERR_INTERNAL, "unknown decoder type %d", d->type);
}

/* ---- post-processors ---- */
enum { PP_TEMPLATE, PP_NOOP, PP_SEQ };

struct mlc_tok_post {
  int type;
  mlc_tok_ids pre, post;
  mlc_tok_post **kids;
  int nkids;
};

void mlc_tok_post_free(mlc_tok_post *p) {
  if (!p)
    return;
  for (int i = 0; i < p->nkids; i++)
    mlc_tok_post_free(p->kids[i]);
  free(p->kids);
  free(p->pre.v);
  free(p->post.v);
  free(p);
}

static mlc_status special_ids(const mlc_tok_ctx *c, const cJSON *specials, const char *name, const char *path,
                              mlc_tok_ids *dst) {
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
  const cJSON *ids = sp ? cJSON_GetObjectItemCaseSensitive(sp, "ids") : NULL;
  if (!cJSON_IsArray(ids))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s: special token \"%s\" is not in post_processor.special_tokens", c->file, path,
                   name);
  int k = 0;
  for (const cJSON *e = ids->child; e; e = e->next, k++) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0)
      return mlc_err(MLC_ERR_FORMAT, "%s: %s.special_tokens[\"%s\"].ids[%d]: expected a token id", c->file, path, name, k);
    MLC_TRY(mlc_tok_ids_push(dst, (int32_t)e->valuedouble));
  }
  return MLC_OK;
}

static mlc_status pair_id(const mlc_tok_ctx *c, const cJSON *j, const char *path, const char *key, mlc_tok_ids *dst) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(v, 1)))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s.%s: expected [token, id]", c->file, path, key);
  return mlc_tok_ids_push(dst, (int32_t)cJSON_GetArrayItem(v, 1)->valuedouble);
}

mlc_status mlc_tok_post_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path, const mlc_tokenizer *t,
                              mlc_tok_post **out) {
  (void)t;
  *out = NULL;
  if (!j || cJSON_IsNull(j))
    return MLC_OK;
  if (!cJSON_IsObject(j))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s: expected an object", c->file, path);
  const char *type;
  MLC_TRY(mlc_tok_json_str(c, j, path, "type", true, &type));
  mlc_tok_post *p = mlc_calloc(1, sizeof *p);
  if (!p)
    return MLC_ERR_NOMEM;
  mlc_status st = MLC_OK;
  if (!strcmp(type, "TemplateProcessing")) {
    p->type = PP_TEMPLATE;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (!cJSON_IsArray(single)) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: %s.single: expected an array", c->file, path);
    } else {
      bool seen_a = false;
      int k = 0;
      for (const cJSON *e = single->child; st == MLC_OK && e; e = e->next, k++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s.single[%d]", path, k);
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        if (cJSON_IsString(e)) {
          if (e->valuestring[0] == '$')
            seen_a = true;
          else
            st = special_ids(c, specials, e->valuestring, path, seen_a ? &p->post : &p->pre);
        } else if (seq) {
          seen_a = true;
        } else if (tok) {
          const char *id;
          if ((st = mlc_tok_json_str(c, tok, sub, "id", true, &id)) == MLC_OK)
            st = special_ids(c, specials, id, path, seen_a ? &p->post : &p->pre);
        } else {
          st = mlc_err(MLC_ERR_FORMAT, "%s: %s: expected SpecialToken or Sequence", c->file, sub);
        }
      }
    }
  } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
    p->type = PP_TEMPLATE;
    if ((st = pair_id(c, j, path, "cls", &p->pre)) == MLC_OK)
      st = pair_id(c, j, path, "sep", &p->post);
  } else if (!strcmp(type, "ByteLevel")) {
    p->type = PP_NOOP;
  } else if (!strcmp(type, "Sequence")) {
    p->type = PP_SEQ;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "processors");
    if (!cJSON_IsArray(arr)) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: %s.processors: expected an array", c->file, path);
    } else {
      int cnt = cJSON_GetArraySize(arr);
      p->kids = mlc_calloc((size_t)cnt + 1, sizeof *p->kids);
      if (!p->kids)
        st = MLC_ERR_NOMEM;
      for (int i = 0; st == MLC_OK && i < cnt; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s.processors[%d]", path, i);
        st = mlc_tok_post_parse(c, cJSON_GetArrayItem(arr, i), sub, t, &p->kids[p->nkids]);
        if (st == MLC_OK && p->kids[p->nkids])
          p->nkids++;
      }
    }
  } else {
    st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: %s.type: unsupported post-processor \"%s\"", c->file, path, type);
  }
  if (st != MLC_OK) {
    mlc_tok_post_free(p);
    return st;
  }
  *out = p;
  return MLC_OK;
}

bool mlc_tok_post_adds_specials(const mlc_tok_post *p) {
  if (!p)
    return false;
  if (p->type == PP_TEMPLATE)
    return true;
  for (int i = 0; i < p->nkids; i++)
    if (mlc_tok_post_adds_specials(p->kids[i]))
      return true;
  return false;
}

mlc_status mlc_tok_post_apply(const mlc_tok_post *p, mlc_tok_ids *ids) {
  if (p->type == PP_SEQ) {
    for (int i = 0; i < p->nkids; i++)
      MLC_TRY(mlc_tok_post_apply(p->kids[i], ids));
    return MLC_OK;
  }
  if (p->type != PP_TEMPLATE)
    return MLC_OK;
  mlc_tok_ids o = {0};
  mlc_status st = MLC_OK;
  for (int i = 0; st == MLC_OK && i < p->pre.n; i++)
    st = mlc_tok_ids_push(&o, p->pre.v[i]);
  for (int i = 0; st == MLC_OK && i < ids->n; i++)
    st = mlc_tok_ids_push(&o, ids->v[i]);
  for (int i = 0; st == MLC_OK && i < p->post.n; i++)
    st = mlc_tok_ids_push(&o, p->post.v[i]);
  if (st != MLC_OK) {
    free(o.v);
    return st;
  }
  free(ids->v);
  *ids = o;
  return MLC_OK;
}
