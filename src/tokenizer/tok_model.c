/* tok_model.c: tokenizer models: BPE (byte-level and SentencePiece-style with byte fallback),
 * Unigram (Viterbi), WordPiece and WordLevel. */
#include <cjson/cJSON.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

enum { M_BPE, M_UNIGRAM, M_WORDPIECE, M_WORDLEVEL };

struct mlc_tok_model {
  int type;
  char **id_tok; /* id -> token */
  char **extra;
  int nextra;
  int size;
  mlc_tok_strmap vocab;
  int32_t unk_id;
  /* BPE */
  mlc_tok_pairmap merges; /* (left<<32|right) -> (rank, new id) */
  bool fuse_unk, byte_fallback, ignore_merges;
  char *prefix, *suffix; /* continuing_subword_prefix / end_of_word_suffix (NULL if none) */
  int32_t byte_ids[256];
  /* Unigram */
  double *scores;
  double unk_score;
  mlc_tok_trie trie;
  /* WordPiece */
  long max_chars;
};

/* ---- byte trie ---- */
mlc_status mlc_tok_trie_add(mlc_tok_trie *t, const char *s, size_t len, int32_t val) {
  if (!t->nnodes) {
    t->term = mlc_malloc(64 * sizeof *t->term);
    if (!t->term)
      return MLC_ERR_NOMEM;
    t->cap = 64;
    t->nnodes = 1;
    t->term[0] = -1;
  }
  int node = 0;
  for (size_t i = 0; i < len; i++) {
    int ch = mlc_tok_trie_child(t, node, (unsigned char)s[i]);
    if (ch < 0) {
      if (t->nnodes == t->cap) {
        int nc = t->cap * 2;
        int32_t *nt = mlc_realloc(t->term, (size_t)nc * sizeof *nt);
        if (!nt)
          return MLC_ERR_NOMEM;
        t->term = nt;
        t->cap = nc;
      }
      ch = t->nnodes++;
      t->term[ch] = -1;
      MLC_TRY(mlc_tok_pairmap_put(&t->edges, ((uint64_t)node << 8) | (unsigned char)s[i], ch, 0));
      if (node == 0)
        t->root1[(unsigned char)s[i]] = ch + 1;
    }
    node = ch;
  }
  t->term[node] = val;
  return MLC_OK;
}

int mlc_tok_trie_child(const mlc_tok_trie *t, int node, unsigned char c) {
  if (node == 0)
    return t->root1[c] - 1;
  const mlc_tok_pmslot *e = mlc_tok_pairmap_get(&t->edges, ((uint64_t)node << 8) | c);
  return e ? e->a : -1;
}

void mlc_tok_trie_free(mlc_tok_trie *t) {
  mlc_tok_pairmap_free(&t->edges);
  free(t->term);
  memset(t, 0, sizeof *t);
}

void mlc_tok_model_free(mlc_tok_model *m) {
  if (!m)
    return;
  for (int i = 0; i < m->size; i++)
    free(m->id_tok[i]);
  free(m->id_tok);
  for (int i = 0; i < m->nextra; i++)
    free(m->extra[i]);
  free(m->extra);
  mlc_tok_strmap_free(&m->vocab);
  mlc_tok_pairmap_free(&m->merges);
  free(m->prefix);
  free(m->suffix);
  free(m->scores);
  mlc_tok_trie_free(&m->trie);
  free(m);
}

int32_t mlc_tok_model_token_to_id(const mlc_tok_model *m, const char *s, size_t len) {
  return mlc_tok_strmap_get(&m->vocab, s, len);
}
const char *mlc_tok_model_id_to_token(const mlc_tok_model *m, int32_t id) {
  return (id >= 0 && id < m->size) ? m->id_tok[id] : NULL;
}
int mlc_tok_model_size(const mlc_tok_model *m) { return m->size; }

/* vocab object {token: id}: ids index id_tok; the map's keys live in id_tok or in extra. */
static mlc_status parse_vocab_obj(const mlc_tok_ctx *c, mlc_tok_model *m, const cJSON *v) {
  if (!cJSON_IsObject(v))
    return mlc_err(MLC_ERR_FORMAT, "%s: model.vocab: expected an object of token: id", c->file);
  long maxid = -1;
  size_t count = 0;
  for (const cJSON *e = v->child; e; e = e->next, count++) {
    if (!cJSON_IsNumber(e) || e->valuedouble != (double)(long)e->valuedouble || e->valuedouble < 0 ||
        e->valuedouble > 100000000)
      return mlc_err(MLC_ERR_FORMAT, "%s: model.vocab[\"%.200s\"]: expected a non-negative integer id", c->file,
                     e->string);
    if ((long)e->valuedouble > maxid)
      maxid = (long)e->valuedouble;
  }
  MLC_TRY(mlc_tok_strmap_reserve(&m->vocab, count));
  m->size = (int)(maxid + 1);
  m->id_tok = mlc_calloc((size_t)m->size + 1, sizeof *m->id_tok);
  if (!m->id_tok)
    return MLC_ERR_NOMEM;
  for (const cJSON *e = v->child; e; e = e->next) {
    long id = (long)e->valuedouble;
    size_t l = strlen(e->string);
    char *k = mlc_strdup(e->string);
    if (!k)
      return MLC_ERR_NOMEM;
    if (!m->id_tok[id]) {
      m->id_tok[id] = k;
    } else { /* a second string for the same id: keep it alive in extra */
      char **nx = mlc_realloc(m->extra, (size_t)(m->nextra + 1) * sizeof *nx);
      if (!nx) {
        free(k);
        return MLC_ERR_NOMEM;
      }
      m->extra = nx;
      m->extra[m->nextra++] = k;
    }
    MLC_TRY(mlc_tok_strmap_put(&m->vocab, k, l, (int32_t)id));
  }
  return MLC_OK;
}

static mlc_status lookup_unk(const mlc_tok_ctx *c, mlc_tok_model *m, const cJSON *j) {
  const char *unk;
  m->unk_id = -1;
  MLC_TRY(mlc_tok_json_str(c, j, "model", "unk_token", false, &unk));
  if (unk) {
    m->unk_id = mlc_tok_strmap_get(&m->vocab, unk, strlen(unk));
    if (m->unk_id < 0 && m->type != M_BPE)
      return mlc_err(MLC_ERR_FORMAT, "%s: model.unk_token: \"%s\" is not in model.vocab", c->file, unk);
  }
  return MLC_OK;
}

static mlc_status parse_bpe(const mlc_tok_ctx *c, mlc_tok_model *m, const cJSON *j) {
  MLC_TRY(parse_vocab_obj(c, m, cJSON_GetObjectItemCaseSensitive(j, "vocab")));
  MLC_TRY(lookup_unk(c, m, j));
  MLC_TRY(mlc_tok_json_bool(c, j, "model", "fuse_unk", false, &m->fuse_unk));
  MLC_TRY(mlc_tok_json_bool(c, j, "model", "byte_fallback", false, &m->byte_fallback));
  MLC_TRY(mlc_tok_json_bool(c, j, "model", "ignore_merges", false, &m->ignore_merges));
  const char *pre, *suf;
  MLC_TRY(mlc_tok_json_str(c, j, "model", "continuing_subword_prefix", false, &pre));
  MLC_TRY(mlc_tok_json_str(c, j, "model", "end_of_word_suffix", false, &suf));
  if (pre && *pre && !(m->prefix = mlc_strdup(pre)))
    return MLC_ERR_NOMEM;
  if (suf && *suf && !(m->suffix = mlc_strdup(suf)))
    return MLC_ERR_NOMEM;
  for (int b = 0; b < 256; b++) {
    char tmp[8];
    snprintf(tmp, sizeof tmp, "<0x%02X>", b);
    m->byte_ids[b] = mlc_tok_strmap_get(&m->vocab, tmp, 6);
  }
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(j, "merges");
  if (!merges || cJSON_IsNull(merges))
    return MLC_OK;
  if (!cJSON_IsArray(merges))
    return mlc_err(MLC_ERR_FORMAT, "%s: model.merges: expected an array", c->file);
  MLC_TRY(mlc_tok_pairmap_reserve(&m->merges, (size_t)cJSON_GetArraySize(merges)));
  int rank = 0;
  mlc_buf cat = {0};
  for (const cJSON *e = merges->child; e; e = e->next, rank++) {
    const char *a, *b;
    size_t al, bl;
    if (cJSON_IsString(e)) {
      const char *s = e->valuestring, *sp = strchr(s, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        mlc_buf_free(&cat);
        return mlc_err(MLC_ERR_FORMAT, "%s: model.merges[%d]: expected \"left right\" with one space", c->file, rank);
      }
      a = s;
      al = (size_t)(sp - s);
      b = sp + 1;
      bl = strlen(b);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
               cJSON_IsString(e->child->next)) {
      a = e->child->valuestring;
      al = strlen(a);
      b = e->child->next->valuestring;
      bl = strlen(b);
    } else {
      mlc_buf_free(&cat);
      return mlc_err(MLC_ERR_FORMAT, "%s: model.merges[%d]: expected a string or a pair of strings", c->file, rank);
    }
    int32_t ia = mlc_tok_strmap_get(&m->vocab, a, al), ib = mlc_tok_strmap_get(&m->vocab, b, bl);
    cat.len = 0;
    mlc_buf_append(&cat, a, al);
    mlc_buf_append(&cat, b, bl);
    if (cat.oom)
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    int32_t in = mlc_tok_strmap_get(&m->vocab, cat.data, cat.len);
    if (ia < 0 || ib < 0 || in < 0) {
      mlc_status st = mlc_err(MLC_ERR_FORMAT, "%s: model.merges[%d]: token \"%.*s\" is not in model.vocab", c->file,
                              rank, (int)(ia < 0 ? al : ib < 0 ? bl : cat.len),
                              ia < 0 ? a : ib < 0 ? b : cat.data);
      mlc_buf_free(&cat);
      return st;
    }
    mlc_status st = mlc_tok_pairmap_put(&m->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib, rank, in);
    if (st != MLC_OK) {
      mlc_buf_free(&cat);
      return st;
    }
  }
  mlc_buf_free(&cat);
  return MLC_OK;
}

static mlc_status parse_unigram(const mlc_tok_ctx *c, mlc_tok_model *m, const cJSON *j) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "vocab");
  if (!cJSON_IsArray(v))
    return mlc_err(MLC_ERR_FORMAT, "%s: model.vocab: expected an array of [piece, score]", c->file);
  int cnt = cJSON_GetArraySize(v);
  m->id_tok = mlc_calloc((size_t)cnt + 1, sizeof *m->id_tok);
  m->scores = mlc_calloc((size_t)cnt + 1, sizeof *m->scores);
  if (!m->id_tok || !m->scores)
    return MLC_ERR_NOMEM;
  m->size = cnt;
  double minsc = DBL_MAX;
  int i = 0;
  for (const cJSON *e = v->child; e; e = e->next, i++) {
    if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(e->child) || !cJSON_IsNumber(e->child->next))
      return mlc_err(MLC_ERR_FORMAT, "%s: model.vocab[%d]: expected [piece, score]", c->file, i);
    if (!(m->id_tok[i] = mlc_strdup(e->child->valuestring)))
      return MLC_ERR_NOMEM;
    m->scores[i] = e->child->next->valuedouble;
    if (m->scores[i] < minsc)
      minsc = m->scores[i];
    size_t l = strlen(m->id_tok[i]);
    if (mlc_tok_strmap_get(&m->vocab, m->id_tok[i], l) < 0)
      MLC_TRY(mlc_tok_strmap_put(&m->vocab, m->id_tok[i], l, i));
    if (l)
      MLC_TRY(mlc_tok_trie_add(&m->trie, m->id_tok[i], l, i));
  }
  if (!m->trie.nnodes)
    MLC_TRY(mlc_tok_trie_add(&m->trie, "", 0, -1));
  m->unk_score = (cnt ? minsc : 0.0) - 10.0;
  long unk;
  MLC_TRY(mlc_tok_json_int(c, j, "model", "unk_id", -1, &unk));
  if (unk >= cnt)
    return mlc_err(MLC_ERR_FORMAT, "%s: model.unk_id: %ld is out of range (vocab has %d pieces)", c->file, unk, cnt);
  m->unk_id = (int32_t)unk;
  MLC_TRY(mlc_tok_json_bool(c, j, "model", "byte_fallback", false, &m->byte_fallback));
  for (int b = 0; b < 256; b++) {
    char tmp[8];
    snprintf(tmp, sizeof tmp, "<0x%02X>", b);
    m->byte_ids[b] = mlc_tok_strmap_get(&m->vocab, tmp, 6);
  }
  m->fuse_unk = true;
  return MLC_OK;
}

static mlc_status parse_wordpiece(const mlc_tok_ctx *c, mlc_tok_model *m, const cJSON *j, bool wordlevel) {
  MLC_TRY(parse_vocab_obj(c, m, cJSON_GetObjectItemCaseSensitive(j, "vocab")));
  MLC_TRY(lookup_unk(c, m, j));
  if (wordlevel)
    return MLC_OK;
  const char *pre;
  MLC_TRY(mlc_tok_json_str(c, j, "model", "continuing_subword_prefix", false, &pre));
  if (!(m->prefix = mlc_strdup(pre ? pre : "##")))
    return MLC_ERR_NOMEM;
  return mlc_tok_json_int(c, j, "model", "max_input_chars_per_word", 100, &m->max_chars);
}

mlc_status mlc_tok_model_parse(const mlc_tok_ctx *c, const cJSON *j, mlc_tok_model **out) {
  *out = NULL;
  if (!cJSON_IsObject(j))
    return mlc_err(MLC_ERR_FORMAT, "%s: model: expected an object", c->file);
  const char *type;
  MLC_TRY(mlc_tok_json_str(c, j, "model", "type", false, &type));
  if (!type) { /* old files omit the type: guess from the fields */
    if (cJSON_GetObjectItemCaseSensitive(j, "merges")) type = "BPE";
    else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "vocab"))) type = "Unigram";
    else if (cJSON_GetObjectItemCaseSensitive(j, "continuing_subword_prefix")) type = "WordPiece";
    else type = "WordLevel";
  }
  mlc_tok_model *m = mlc_calloc(1, sizeof *m);
  if (!m)
    return MLC_ERR_NOMEM;
  m->unk_id = -1;
  mlc_status st;
  if (!strcmp(type, "BPE")) {
    m->type = M_BPE;
    st = parse_bpe(c, m, j);
  } else if (!strcmp(type, "Unigram")) {
    m->type = M_UNIGRAM;
    st = parse_unigram(c, m, j);
  } else if (!strcmp(type, "WordPiece")) {
    m->type = M_WORDPIECE;
    st = parse_wordpiece(c, m, j, false);
  } else if (!strcmp(type, "WordLevel")) {
    m->type = M_WORDLEVEL;
    st = parse_wordpiece(c, m, j, true);
  } else {
    st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: model.type: unsupported model \"%s\"", c->file, type);
  }
  if (st != MLC_OK) {
    mlc_tok_model_free(m);
    return st;
  }
  *out = m;
  return MLC_OK;
}

/* ---- BPE ---- */
typedef struct { int32_t id; int prev, next; size_t len; } sym;
typedef struct { int32_t rank, pos, new_id; } hent;

static bool hless(const hent *a, const hent *b) { return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos); }

static void hpush(hent *h, int *n, hent e) {
  int i = (*n)++;
  h[i] = e;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!hless(&h[i], &h[p]))
      break;
    hent t = h[i];
    h[i] = h[p];
    h[p] = t;
    i = p;
  }
}

static hent hpop(hent *h, int *n) {
  hent top = h[0];
  h[0] = h[--(*n)];
  int i = 0;
  for (;;) {
    int l = 2 * i + 1, r = l + 1, s = i;
    if (l < *n && hless(&h[l], &h[s])) s = l;
    if (r < *n && hless(&h[r], &h[s])) s = r;
    if (s == i) break;
    hent t = h[i];
    h[i] = h[s];
    h[s] = t;
    i = s;
  }
  return top;
}

static mlc_status sym_push(sym **v, int *n, int *cap, int32_t id, size_t len) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 32;
    sym *nv = mlc_realloc(*v, (size_t)nc * sizeof *nv);
    if (!nv)
      return MLC_ERR_NOMEM;
    *v = nv;
    *cap = nc;
  }
  (*v)[*n] = (sym){id, *n - 1, -1, len};
  if (*n > 0)
    (*v)[*n - 1].next = *n;
  (*n)++;
  return MLC_OK;
}

static void try_pair(const mlc_tok_model *m, sym *s, int pos, hent *h, int *hn) {
  int nx = s[pos].next;
  if (nx < 0)
    return;
  const mlc_tok_pmslot *e = mlc_tok_pairmap_get(&m->merges, ((uint64_t)(uint32_t)s[pos].id << 32) | (uint32_t)s[nx].id);
  if (e)
    hpush(h, hn, (hent){e->a, pos, e->b});
}

static mlc_status bpe_encode(const mlc_tok_model *m, const char *w, size_t len, mlc_tok_ids *out) {
  if (!len)
    return MLC_OK;
  if (m->ignore_merges) {
    int32_t id = mlc_tok_strmap_get(&m->vocab, w, len);
    if (id >= 0)
      return mlc_tok_ids_push(out, id);
  }
  sym *s = NULL;
  int n = 0, cap = 0;
  mlc_status st = MLC_OK;
  mlc_buf tmp = {0};
  int32_t unk = -1;
  size_t unk_len = 0;
  size_t i = 0;
  while (st == MLC_OK && i < len) {
    uint32_t cp;
    size_t cl = (size_t)mlc_tok_utf8_dec(w + i, len - i, &cp);
    const char *key = w + i;
    size_t kl = cl;
    if ((m->prefix && i > 0) || (m->suffix && i + cl == len)) {
      tmp.len = 0;
      if (m->prefix && i > 0)
        mlc_buf_puts(&tmp, m->prefix);
      mlc_buf_append(&tmp, w + i, cl);
      if (m->suffix && i + cl == len)
        mlc_buf_puts(&tmp, m->suffix);
      if (tmp.oom) {
        st = mlc_err(MLC_ERR_NOMEM, "out of memory");
        break;
      }
      key = tmp.data;
      kl = tmp.len;
    }
    int32_t id = mlc_tok_strmap_get(&m->vocab, key, kl);
    if (id >= 0) {
      if (unk >= 0) {
        st = sym_push(&s, &n, &cap, unk, unk_len);
        unk = -1;
      }
      if (st == MLC_OK)
        st = sym_push(&s, &n, &cap, id, cl);
    } else {
      bool done = false;
      if (m->byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < cl; k++)
          if (m->byte_ids[(unsigned char)w[i + k]] < 0)
            all = false;
        if (all) {
          for (size_t k = 0; st == MLC_OK && k < cl; k++)
            st = sym_push(&s, &n, &cap, m->byte_ids[(unsigned char)w[i + k]], 1);
          done = true;
        }
      }
      if (!done && m->unk_id >= 0) {
        if (unk >= 0 && m->fuse_unk) {
          unk_len += cl;
        } else {
          if (unk >= 0)
            st = sym_push(&s, &n, &cap, unk, unk_len);
          unk = m->unk_id;
          unk_len = cl;
        }
      }
    }
    i += cl;
  }
  if (st == MLC_OK && unk >= 0)
    st = sym_push(&s, &n, &cap, unk, unk_len);
  mlc_buf_free(&tmp);
  hent *h = NULL;
  if (st == MLC_OK && n > 1) {
    h = mlc_malloc((size_t)(2 * n + 4) * sizeof *h);
    if (!h)
      st = MLC_ERR_NOMEM;
  }
  if (st == MLC_OK && n > 1) {
    int hn = 0;
    for (int k = 0; k + 1 < n; k++)
      try_pair(m, s, k, h, &hn);
    while (hn > 0) {
      hent t = hpop(h, &hn);
      sym *a = &s[t.pos];
      if (a->len == 0 || a->next < 0)
        continue;
      sym *b = &s[a->next];
      const mlc_tok_pmslot *e = mlc_tok_pairmap_get(&m->merges, ((uint64_t)(uint32_t)a->id << 32) | (uint32_t)b->id);
      if (!e || e->b != t.new_id || e->a != t.rank)
        continue;
      a->id = t.new_id;
      a->len += b->len;
      a->next = b->next;
      b->len = 0;
      if (a->next >= 0)
        s[a->next].prev = t.pos;
      if (a->prev >= 0)
        try_pair(m, s, a->prev, h, &hn);
      try_pair(m, s, t.pos, h, &hn);
    }
  }
  for (int k = 0; st == MLC_OK && n > 0 && k >= 0; k = s[k].next)
    st = mlc_tok_ids_push(out, s[k].id);
  free(h);
  free(s);
  return st;
}

/* ---- Unigram ---- */
static mlc_status push_fallback(const mlc_tok_model *m, const char *p, size_t l, mlc_tok_ids *out) {
  if (m->byte_fallback) {
    bool all = true;
    for (size_t k = 0; k < l; k++)
      if (m->byte_ids[(unsigned char)p[k]] < 0)
        all = false;
    if (all) {
      for (size_t k = 0; k < l; k++)
        MLC_TRY(mlc_tok_ids_push(out, m->byte_ids[(unsigned char)p[k]]));
      return MLC_OK;
    }
  }
  if (m->unk_id < 0)
    return mlc_err(MLC_ERR_FORMAT, "tokenizer: the text has a piece that the vocabulary cannot represent and the model has no unk_id");
  return mlc_tok_ids_push(out, m->unk_id);
}

static mlc_status unigram_encode(const mlc_tok_model *m, const char *w, size_t len, mlc_tok_ids *out) {
  if (!len)
    return MLC_OK;
  double *best = mlc_malloc((len + 1) * sizeof *best);
  int32_t *from = mlc_malloc((len + 1) * sizeof *from), *tid = mlc_malloc((len + 1) * sizeof *tid);
  size_t *ends = NULL;
  mlc_status st = MLC_OK;
  if (!best || !from || !tid) {
    st = MLC_ERR_NOMEM;
    goto done;
  }
  for (size_t i = 0; i <= len; i++)
    from[i] = -1;
  from[0] = 0;
  best[0] = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t cl = (size_t)mlc_tok_utf8_dec(w + i, len - i, &cp);
    if (from[i] < 0 && i > 0) { /* unreachable start (cannot happen with unk nodes) */
      i += cl;
      continue;
    }
    bool single = false;
    int node = 0;
    for (size_t k = i; k < len; k++) {
      node = mlc_tok_trie_child(&m->trie, node, (unsigned char)w[k]);
      if (node < 0)
        break;
      int32_t id = m->trie.term[node];
      if (id < 0)
        continue;
      size_t e = k + 1;
      double cand = best[i] + m->scores[id];
      if (from[e] < 0 || cand > best[e]) {
        best[e] = cand;
        from[e] = (int32_t)i;
        tid[e] = id;
      }
      if (e - i == cl)
        single = true;
    }
    if (!single) {
      size_t e = i + cl;
      double cand = best[i] + m->unk_score;
      if (from[e] < 0 || cand > best[e]) {
        best[e] = cand;
        from[e] = (int32_t)i;
        tid[e] = m->unk_id;
      }
    }
    i += cl;
  }
  /* backtrack */
  ends = mlc_malloc((len + 1) * sizeof *ends);
  if (!ends) {
    st = MLC_ERR_NOMEM;
    goto done;
  }
  int ne = 0;
  for (size_t e = len; e > 0; e = (size_t)from[e])
    ends[ne++] = e;
  /* forward pass with unk fusing */
  size_t unk_a = 0;
  bool in_unk = false;
  for (int k = ne - 1; st == MLC_OK && k >= 0; k--) {
    size_t e = ends[k], a = (size_t)from[e];
    int32_t id = tid[e];
    bool is_unk = m->unk_id >= 0 ? id == m->unk_id : id < 0;
    if (is_unk) {
      if (!in_unk) {
        in_unk = true;
        unk_a = a;
      }
      continue;
    }
    if (in_unk) {
      int32_t fid = mlc_tok_strmap_get(&m->vocab, w + unk_a, a - unk_a);
      st = fid >= 0 ? mlc_tok_ids_push(out, fid) : push_fallback(m, w + unk_a, a - unk_a, out);
      in_unk = false;
    }
    if (st == MLC_OK)
      st = mlc_tok_ids_push(out, id);
  }
  if (st == MLC_OK && in_unk) {
    int32_t fid = mlc_tok_strmap_get(&m->vocab, w + unk_a, len - unk_a);
    st = fid >= 0 ? mlc_tok_ids_push(out, fid) : push_fallback(m, w + unk_a, len - unk_a, out);
  }
done:
  free(best);
  free(from);
  free(tid);
  free(ends);
  return st;
}

/* ---- WordPiece / WordLevel ---- */
static mlc_status wordpiece_encode(const mlc_tok_model *m, const char *w, size_t len, mlc_tok_ids *out) {
  size_t nch = 0;
  for (size_t i = 0; i < len; nch++) {
    uint32_t cp;
    i += (size_t)mlc_tok_utf8_dec(w + i, len - i, &cp);
  }
  if ((long)nch > m->max_chars)
    goto unk;
  int start_n = out->n;
  mlc_buf tmp = {0};
  size_t a = 0;
  while (a < len) {
    size_t b = len;
    int32_t found = -1;
    while (b > a) {
      tmp.len = 0;
      if (a > 0)
        mlc_buf_puts(&tmp, m->prefix);
      mlc_buf_append(&tmp, w + a, b - a);
      if (tmp.oom) {
        mlc_buf_free(&tmp);
        return mlc_err(MLC_ERR_NOMEM, "out of memory");
      }
      found = mlc_tok_strmap_get(&m->vocab, tmp.data, tmp.len);
      if (found >= 0)
        break;
      /* step back one character */
      b--;
      while (b > a && ((unsigned char)w[b] & 0xC0) == 0x80)
        b--;
    }
    if (found < 0) {
      mlc_buf_free(&tmp);
      out->n = start_n;
      goto unk;
    }
    mlc_status st = mlc_tok_ids_push(out, found);
    if (st != MLC_OK) {
      mlc_buf_free(&tmp);
      return st;
    }
    a = b;
  }
  mlc_buf_free(&tmp);
  return MLC_OK;
unk:
  if (m->unk_id < 0)
    return mlc_err(MLC_ERR_FORMAT, "tokenizer: WordPiece needs an unk_token for \"%.*s\"", (int)len, w);
  return mlc_tok_ids_push(out, m->unk_id);
}

mlc_status mlc_tok_model_encode(const mlc_tok_model *m, const char *s, size_t len, mlc_tok_ids *out) {
  switch (m->type) {
  case M_BPE: return bpe_encode(m, s, len, out);
  case M_UNIGRAM: return unigram_encode(m, s, len, out);
  case M_WORDPIECE: return wordpiece_encode(m, s, len, out);
  case M_WORDLEVEL: {
    int32_t id = mlc_tok_strmap_get(&m->vocab, s, len);
    if (id < 0)
      id = m->unk_id;
    if (id < 0)
      return mlc_err(MLC_ERR_FORMAT, "tokenizer: WordLevel needs an unk_token for \"%.*s\"", (int)len, s);
    return mlc_tok_ids_push(out, id);
  }
  }
  return mlc_err(MLC_ERR_INTERNAL, "unknown model type %d", m->type);
}
