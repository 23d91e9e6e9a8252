/* tok_spm.c: SentencePiece tokenizer.model files. The protobuf ModelProto is read with a small
 * reader of its own and turned into the tokenizer.json tree that transformers' converters
 * (convert_slow_tokenizer.py: LlamaConverter for BPE models, SpmConverter for Unigram) would
 * write, then loaded like any tokenizer.json. Normalization follows the model's NormalizerSpec
 * (add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces) as sentencepiece applies it;
 * a precompiled charsmap is approximated by the Nmt normalizer followed by NFKC.
 *
 * ModelProto fields used (sentencepiece_model.proto):
 *   1 pieces (repeated SentencePiece: 1 piece, 2 score (float), 3 type: 1 normal, 2 unknown,
 *     3 control, 4 user defined, 5 unused, 6 byte)
 *   2 trainer_spec: 3 model_type (1 unigram, 2 BPE, 3 word, 4 char), 24 treat_whitespace_as_suffix,
 *     35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id, 45 unk_piece
 *   3 normalizer_spec: 1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
 *     5 escape_whitespaces */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ---- protobuf reader ---- */
typedef struct { const uint8_t *p, *end; } pb;

static bool pb_varint(pb *r, uint64_t *v) {
  uint64_t x = 0;
  for (int sh = 0; sh < 64 && r->p < r->end; sh += 7) {
    uint8_t b = *r->p++;
    x |= (uint64_t)(b & 0x7f) << sh;
    if (!(b & 0x80)) {
      *v = x;
      return true;
    }
  }
  return false;
}

/* Next field: number, wire type, and for wire type 2 the bytes; for 0 the value; for 1/5 the
 * raw bits in *v. Returns 0 at the end, 1 on a field, -1 when malformed. */
static int pb_next(pb *r, uint32_t *field, int *wt, uint64_t *v, pb *sub) {
  if (r->p >= r->end)
    return 0;
  uint64_t key;
  if (!pb_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
    return -1;
  *field = (uint32_t)(key >> 3);
  *wt = (int)(key & 7);
  switch (*wt) {
  case 0: return pb_varint(r, v) ? 1 : -1;
  case 1:
  case 5: {
    size_t n = *wt == 1 ? 8 : 4;
    if ((size_t)(r->end - r->p) < n)
      return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
      x |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    *v = x;
    return 1;
  }
  case 2: {
    uint64_t n;
    if (!pb_varint(r, &n) || n > (uint64_t)(r->end - r->p))
      return -1;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    *v = n;
    return 1;
  }
  default: return -1; /* groups (3, 4) are not used by sentencepiece */
  }
}

typedef struct { char *s; size_t len; float score; int type; } spm_piece;

typedef struct {
  spm_piece *pieces;
  int n, cap;
  int model_type; /* 1 unigram, 2 BPE */
  bool byte_fallback, ws_suffix;
  int32_t unk_id, bos_id, eos_id, pad_id;
  char *unk_piece;
  char *norm_name;
  size_t charsmap_len;
  bool add_dummy_prefix, remove_extra_ws, escape_ws;
} spm_model;

static void spm_free(spm_model *m) {
  for (int i = 0; i < m->n; i++)
    free(m->pieces[i].s);
  free(m->pieces);
  free(m->unk_piece);
  free(m->norm_name);
}

static char *dup_n(const uint8_t *p, size_t n) {
  char *s = mlc_malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = 0;
  }
  return s;
}

static mlc_status bad(const char *file, const char *what) {
  return mlc_err(MLC_ERR_FORMAT, "%s: not a valid SentencePiece model: %s", file, what);
}

static mlc_status parse_piece(const char *file, pb *r, int idx, spm_piece *out) {
  uint32_t f;
  int wt, k;
  uint64_t v;
  pb sub;
  out->type = 1;
  while ((k = pb_next(r, &f, &wt, &v, &sub)) == 1) {
    if (f == 1 && wt == 2) {
      free(out->s);
      if (!(out->s = dup_n(sub.p, (size_t)v)))
        return MLC_ERR_NOMEM;
      out->len = (size_t)v;
      if (memchr(out->s, 0, out->len) || mlc_tok_utf8_valid_prefix(out->s, out->len) != out->len)
        return mlc_err(MLC_ERR_FORMAT, "%s: pieces[%d].piece: not valid UTF-8", file, idx);
    } else if (f == 2 && wt == 5) {
      uint32_t bits = (uint32_t)v;
      memcpy(&out->score, &bits, 4);
    } else if (f == 3 && wt == 0) {
      out->type = (int)v;
    }
  }
  if (k < 0)
    return mlc_err(MLC_ERR_FORMAT, "%s: pieces[%d]: malformed protobuf", file, idx);
  if (!out->s)
    return mlc_err(MLC_ERR_FORMAT, "%s: pieces[%d].piece: missing", file, idx);
  return MLC_OK;
}

static mlc_status parse_model(const char *file, const uint8_t *data, size_t len, spm_model *m) {
  memset(m, 0, sizeof *m);
  m->model_type = 1;
  m->unk_id = 0;
  m->bos_id = 1;
  m->eos_id = 2;
  m->pad_id = -1;
  m->add_dummy_prefix = m->remove_extra_ws = m->escape_ws = true;
  pb r = {data, data + len}, sub;
  uint32_t f;
  int wt, k;
  uint64_t v;
  while ((k = pb_next(&r, &f, &wt, &v, &sub)) == 1) {
    if (f == 1 && wt == 2) {
      if (m->n == m->cap) {
        int nc = m->cap ? m->cap * 2 : 256;
        spm_piece *np = mlc_realloc(m->pieces, (size_t)nc * sizeof *np);
        if (!np)
          return MLC_ERR_NOMEM;
        m->pieces = np;
        m->cap = nc;
      }
      memset(&m->pieces[m->n], 0, sizeof *m->pieces);
      m->n++;
      MLC_TRY(parse_piece(file, &sub, m->n - 1, &m->pieces[m->n - 1]));
    } else if (f == 2 && wt == 2) { /* trainer_spec */
      pb t = sub, s2;
      int k2;
      while ((k2 = pb_next(&t, &f, &wt, &v, &s2)) == 1) {
        if (wt == 0) {
          switch (f) {
          case 3: m->model_type = (int)v; break;
          case 24: m->ws_suffix = v != 0; break;
          case 35: m->byte_fallback = v != 0; break;
          case 40: m->unk_id = (int32_t)v; break;
          case 41: m->bos_id = (int32_t)v; break;
          case 42: m->eos_id = (int32_t)v; break;
          case 43: m->pad_id = (int32_t)v; break;
          default: break;
          }
        } else if (wt == 2 && f == 45) {
          free(m->unk_piece);
          if (!(m->unk_piece = dup_n(s2.p, (size_t)v)))
            return MLC_ERR_NOMEM;
        }
      }
      if (k2 < 0)
        return bad(file, "trainer_spec: malformed protobuf");
    } else if (f == 3 && wt == 2) { /* normalizer_spec */
      pb t = sub, s2;
      int k2;
      while ((k2 = pb_next(&t, &f, &wt, &v, &s2)) == 1) {
        if (wt == 2 && f == 1) {
          free(m->norm_name);
          if (!(m->norm_name = dup_n(s2.p, (size_t)v)))
            return MLC_ERR_NOMEM;
        } else if (wt == 2 && f == 2) {
          m->charsmap_len = (size_t)v;
        } else if (wt == 0 && f == 3) {
          m->add_dummy_prefix = v != 0;
        } else if (wt == 0 && f == 4) {
          m->remove_extra_ws = v != 0;
        } else if (wt == 0 && f == 5) {
          m->escape_ws = v != 0;
        }
      }
      if (k2 < 0)
        return bad(file, "normalizer_spec: malformed protobuf");
    }
  }
  if (k < 0)
    return bad(file, "malformed protobuf");
  if (m->n == 0)
    return bad(file, "no pieces");
  if (m->model_type != 1 && m->model_type != 2)
    return mlc_err(MLC_ERR_UNSUPPORTED,
                   "%s: trainer_spec.model_type: %d is not supported (only 1 UNIGRAM and 2 BPE)", file, m->model_type);
  if (m->unk_id < 0 || m->unk_id >= m->n)
    return mlc_err(MLC_ERR_FORMAT, "%s: trainer_spec.unk_id: %d is not a piece id", file, (int)m->unk_id);
  return MLC_OK;
}

/* ---- the equivalent tokenizer.json ---- */
static cJSON *obj_type(const char *type) {
  cJSON *o = cJSON_CreateObject();
  if (o) cJSON_AddStringToObject(o, "type", type);
  return o;
}

static cJSON *replace_norm(const char *pat, bool regex, const char *content) {
  cJSON *o = obj_type("Replace"), *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, regex ? "Regex" : "String", pat);
  cJSON_AddItemToObject(o, "pattern", p);
  cJSON_AddStringToObject(o, "content", content);
  return o;
}

static cJSON *make_normalizer(const spm_model *m) {
  cJSON *seq = obj_type("Sequence"), *arr = cJSON_AddArrayToObject(seq, "normalizers");
  const char *nm = m->norm_name ? m->norm_name : "";
  if (m->charsmap_len) { /* without a charsmap sentencepiece maps nothing, whatever the name */
    if (strncmp(nm, "nfkc", 4)) /* nmt_nfkc, nmt_nfkc_cf, or a custom charsmap */
      cJSON_AddItemToArray(arr, obj_type("Nmt"));
    cJSON_AddItemToArray(arr, obj_type("NFKC"));
    if (strstr(nm, "_cf"))
      cJSON_AddItemToArray(arr, obj_type("Lowercase"));
  }
  /* sentencepiece: whitespace is ' ' after the charsmap; leading spaces go, runs collapse to
   * one, the dummy prefix is added to non-empty text, spaces become U+2581, trailing ones go. */
  if (m->remove_extra_ws) {
    cJSON_AddItemToArray(arr, replace_norm("^ +", true, ""));
    cJSON_AddItemToArray(arr, replace_norm(" {2,}", true, " "));
  }
  const char *ws = m->escape_ws ? "\xE2\x96\x81" : " ";
  if (m->add_dummy_prefix) {
    cJSON *p = obj_type("Prepend");
    cJSON_AddStringToObject(p, "prepend", ws);
    cJSON_AddItemToArray(arr, p);
  }
  if (m->escape_ws)
    cJSON_AddItemToArray(arr, replace_norm(" ", false, ws));
  if (m->remove_extra_ws)
    cJSON_AddItemToArray(arr, replace_norm(m->escape_ws ? "\xE2\x96\x81+\\z" : " +\\z", true, ""));
  return seq;
}

static cJSON *make_decoder(const spm_model *m) {
  cJSON *seq = obj_type("Sequence"), *arr = cJSON_AddArrayToObject(seq, "decoders");
  if (m->escape_ws)
    cJSON_AddItemToArray(arr, replace_norm("\xE2\x96\x81", false, " "));
  cJSON_AddItemToArray(arr, obj_type("ByteFallback"));
  cJSON_AddItemToArray(arr, obj_type("Fuse"));
  if (m->add_dummy_prefix) {
    cJSON *s = obj_type("Strip");
    cJSON_AddStringToObject(s, "content", " ");
    cJSON_AddNumberToObject(s, "start", 1);
    cJSON_AddNumberToObject(s, "stop", 0);
    cJSON_AddItemToArray(arr, s);
  }
  return seq;
}

/* transformers generate_merges(vocab, vocab_scores): for each piece in order, every split into
 * two pieces of the vocab (sorted by the ids of the halves), then all sorted stably by
 * (score, chars of left, chars of right), descending. */
typedef struct { int32_t piece, l, r; uint32_t lc, rc; float score; int order; } mrg;

static int mrg_cmp(const void *pa, const void *pb_) {
  const mrg *a = pa, *b = pb_;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  if (a->lc != b->lc) return a->lc > b->lc ? -1 : 1;
  if (a->rc != b->rc) return a->rc > b->rc ? -1 : 1;
  return a->order - b->order;
}

static mlc_status make_merges(const spm_model *m, const float *score, const mlc_tok_strmap *vocab, cJSON *arr) {
  mrg *v = NULL;
  size_t n = 0, cap = 0;
  mlc_status st = MLC_OK;
  for (int i = 0; i < m->n && st == MLC_OK; i++) {
    const char *s = m->pieces[i].s;
    size_t len = m->pieces[i].len, start = n;
    uint32_t lc = 0, total = 0;
    for (size_t p = 0; p < len; p += (size_t)mlc_tok_utf8_dec(s + p, len - p, &(uint32_t){0}))
      total++;
    for (size_t p = 0; p < len;) {
      uint32_t cp;
      p += (size_t)mlc_tok_utf8_dec(s + p, len - p, &cp);
      lc++;
      if (p >= len)
        break;
      int32_t l = mlc_tok_strmap_get(vocab, s, p), r = mlc_tok_strmap_get(vocab, s + p, len - p);
      if (l < 0 || r < 0)
        continue;
      if (n == cap) {
        size_t nc = cap ? cap * 2 : 4096;
        mrg *nv = mlc_realloc(v, nc * sizeof *nv);
        if (!nv) {
          st = MLC_ERR_NOMEM;
          break;
        }
        v = nv;
        cap = nc;
      }
      v[n++] = (mrg){i, l, r, lc, total - lc, score[i], 0};
    }
    for (size_t a = start + 1; a < n; a++) /* insertion sort by (id of left, id of right) */
      for (size_t b = a; b > start && (v[b].l < v[b - 1].l || (v[b].l == v[b - 1].l && v[b].r < v[b - 1].r)); b--) {
        mrg t = v[b];
        v[b] = v[b - 1];
        v[b - 1] = t;
      }
  }
  for (size_t i = 0; i < n; i++)
    v[i].order = (int)i;
  if (st == MLC_OK && n)
    qsort(v, n, sizeof *v, mrg_cmp);
  for (size_t i = 0; st == MLC_OK && i < n; i++) {
    const spm_piece *p = &m->pieces[v[i].piece];
    size_t ll = m->pieces[v[i].l].len;
    char *ls = dup_n((const uint8_t *)p->s, ll);
    cJSON *pair = cJSON_CreateArray();
    if (!ls || !pair) {
      free(ls);
      cJSON_Delete(pair);
      st = MLC_ERR_NOMEM;
      break;
    }
    cJSON_AddItemToArray(pair, cJSON_CreateString(ls));
    cJSON_AddItemToArray(pair, cJSON_CreateString(p->s + ll));
    cJSON_AddItemToArray(arr, pair);
    free(ls);
  }
  free(v);
  return st;
}

static mlc_status make_tree(const spm_model *m, cJSON **out) {
  cJSON *root = cJSON_CreateObject();
  if (!root)
    return MLC_ERR_NOMEM;
  mlc_status st = MLC_OK;
  cJSON *model;
  if (m->model_type == 2) { /* BPE: LlamaConverter */
    model = obj_type("BPE");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    mlc_tok_strmap vm = {0};
    float *score = mlc_malloc((size_t)m->n * sizeof *score);
    if (!score || mlc_tok_strmap_reserve(&vm, (size_t)m->n) != MLC_OK)
      st = MLC_ERR_NOMEM;
    for (int i = 0; st == MLC_OK && i < m->n; i++) {
      cJSON_AddNumberToObject(vocab, m->pieces[i].s, i);
      st = mlc_tok_strmap_put(&vm, m->pieces[i].s, m->pieces[i].len, i);
      score[i] = i < 3 ? 0.0f : m->pieces[i].score; /* LlamaConverter.vocab() */
    }
    if (st == MLC_OK)
      st = make_merges(m, score, &vm, cJSON_AddArrayToObject(model, "merges"));
    free(score);
    mlc_tok_strmap_free(&vm);
    cJSON_AddStringToObject(model, "unk_token", m->unk_piece ? m->unk_piece : "<unk>");
    cJSON_AddBoolToObject(model, "fuse_unk", true);
    cJSON_AddBoolToObject(model, "byte_fallback", m->byte_fallback);
  } else { /* Unigram: SpmConverter */
    model = obj_type("Unigram");
    cJSON *vocab = cJSON_AddArrayToObject(model, "vocab");
    for (int i = 0; i < m->n; i++) {
      cJSON *e = cJSON_CreateArray();
      cJSON_AddItemToArray(e, cJSON_CreateString(m->pieces[i].s));
      cJSON_AddItemToArray(e, cJSON_CreateNumber(m->pieces[i].score));
      cJSON_AddItemToArray(vocab, e);
    }
    cJSON_AddNumberToObject(model, "unk_id", m->unk_id);
    cJSON_AddBoolToObject(model, "byte_fallback", m->byte_fallback);
  }
  cJSON_AddItemToObject(root, "model", model);
  cJSON_AddItemToObject(root, "normalizer", make_normalizer(m));
  cJSON_AddNullToObject(root, "pre_tokenizer");
  cJSON_AddNullToObject(root, "post_processor");
  cJSON_AddItemToObject(root, "decoder", make_decoder(m));
  /* Unknown and control pieces are special added tokens, user-defined ones plain added tokens
   * (SpmConverter.tokenizer(); transformers adds unk/bos/eos as special tokens too). */
  cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
  for (int i = 0; i < m->n; i++) {
    int ty = m->pieces[i].type;
    if (ty != 2 && ty != 3 && ty != 4)
      continue;
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", i);
    cJSON_AddStringToObject(a, "content", m->pieces[i].s);
    cJSON_AddBoolToObject(a, "single_word", false);
    cJSON_AddBoolToObject(a, "lstrip", false);
    cJSON_AddBoolToObject(a, "rstrip", false);
    cJSON_AddBoolToObject(a, "normalized", false);
    cJSON_AddBoolToObject(a, "special", ty != 4);
    cJSON_AddItemToArray(added, a);
  }
  if (st != MLC_OK) {
    cJSON_Delete(root);
    return st;
  }
  *out = root;
  return MLC_OK;
}

static const char *piece_at(const spm_model *m, int32_t id) {
  return id >= 0 && id < m->n ? m->pieces[id].s : NULL;
}

mlc_status mlc_tok_load_spm(const char *data, size_t len, const char *config_json, const char *name,
                            mlc_tokenizer **out) {
  *out = NULL;
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  spm_model m;
  mlc_status st = parse_model(base, (const uint8_t *)data, len, &m);
  if (st == MLC_OK && m.ws_suffix)
    st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: trainer_spec.treat_whitespace_as_suffix is not supported", base);
  cJSON *tree = NULL;
  if (st == MLC_OK)
    st = make_tree(&m, &tree);
  if (st == MLC_OK) {
    /* LlamaTokenizer adds BOS by default; plain sentencepiece (and Unigram models) add nothing.
     * tokenizer_config.json's add_bos_token / add_eos_token override. */
    mlc_tok_defaults d = {piece_at(&m, m.bos_id), piece_at(&m, m.eos_id), piece_at(&m, m.pad_id),
                          piece_at(&m, m.unk_id), m.model_type == 2 && piece_at(&m, m.bos_id) ? 1 : 0, 0};
    st = mlc_tok_load_tree(tree, config_json, name, &d, out);
  }
  spm_free(&m);
  return st;
}
