/* tok_api.c: loading tokenizer.json(.gz) + tokenizer_config.json, added tokens, the encode and
 * decode pipelines and the streaming detokenizer. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tokenizer/tok_internal.h"

/* ---- file reading (plain or gzip) ---- */
static mlc_status read_maybe_gz(const char *path, char **out, size_t *out_len) {
  gzFile f = gzopen(path, "rb");
  if (!f)
    return mlc_err(MLC_ERR_IO, "%s: cannot open", path);
  mlc_buf b = {0};
  char chunk[1 << 16];
  for (;;) {
    int r = gzread(f, chunk, sizeof chunk);
    if (r < 0) {
      int e;
      const char *msg = gzerror(f, &e);
      mlc_status st = mlc_err(MLC_ERR_IO, "%s: read failed: %s", path, msg ? msg : "?");
      gzclose(f);
      mlc_buf_free(&b);
      return st;
    }
    if (r == 0)
      break;
    mlc_buf_append(&b, chunk, (size_t)r);
  }
  gzclose(f);
  if (b.oom) {
    mlc_buf_free(&b);
    return mlc_err(MLC_ERR_NOMEM, "%s: out of memory", path);
  }
  *out_len = b.len;
  *out = b.data ? mlc_buf_take(&b) : mlc_strdup("");
  return *out ? MLC_OK : MLC_ERR_NOMEM;
}

/* ---- added tokens ---- */
static mlc_status add_token(mlc_tokenizer *t, const mlc_tok_added *a) {
  mlc_tok_added *nv = mlc_realloc(t->added, (size_t)(t->n_added + 1) * sizeof *nv);
  if (!nv)
    return MLC_ERR_NOMEM;
  t->added = nv;
  mlc_tok_added *d = &t->added[t->n_added];
  *d = *a;
  d->content = mlc_strdup(a->content);
  d->match = NULL;
  if (!d->content)
    return MLC_ERR_NOMEM;
  t->n_added++;
  return MLC_OK;
}

static mlc_status parse_added(mlc_tokenizer *t, const mlc_tok_ctx *c, const cJSON *e, const char *path, long id_given,
                              bool only_new) {
  if (!cJSON_IsObject(e))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s: expected an object", c->file, path);
  mlc_tok_added a = {0};
  const char *content;
  long id = id_given;
  MLC_TRY(mlc_tok_json_str(c, e, path, "content", true, &content));
  if (id_given < 0) {
    MLC_TRY(mlc_tok_json_int(c, e, path, "id", -1, &id));
    if (id < 0 || id > 100000000)
      return mlc_err(MLC_ERR_FORMAT, "%s: %s.id: expected a non-negative token id", c->file, path);
  }
  MLC_TRY(mlc_tok_json_bool(c, e, path, "special", false, &a.special));
  MLC_TRY(mlc_tok_json_bool(c, e, path, "lstrip", false, &a.lstrip));
  MLC_TRY(mlc_tok_json_bool(c, e, path, "rstrip", false, &a.rstrip));
  MLC_TRY(mlc_tok_json_bool(c, e, path, "single_word", false, &a.single_word));
  MLC_TRY(mlc_tok_json_bool(c, e, path, "normalized", !a.special, &a.normalized));
  if (only_new)
    for (int i = 0; i < t->n_added; i++)
      if (t->added[i].id == id || !strcmp(t->added[i].content, content))
        return MLC_OK;
  a.content = (char *)content;
  a.id = (int32_t)id;
  return add_token(t, &a);
}

mlc_status mlc_tok_added_finish(mlc_tokenizer *t) {
  int vs = mlc_tok_model_size(t->model);
  for (int i = 0; i < t->n_added; i++)
    if (t->added[i].id + 1 > vs)
      vs = t->added[i].id + 1;
  t->vocab_size = vs;
  free(t->added_by_id);
  t->added_by_id = mlc_malloc((size_t)(vs + 1) * sizeof *t->added_by_id);
  if (!t->added_by_id)
    return MLC_ERR_NOMEM;
  for (int i = 0; i < vs; i++)
    t->added_by_id[i] = -1;
  mlc_tok_strmap_free(&t->added_map);
  mlc_tok_trie_free(&t->trie_raw);
  mlc_tok_trie_free(&t->trie_norm);
  for (int i = 0; i < t->n_added; i++) {
    mlc_tok_added *a = &t->added[i];
    t->added_by_id[a->id] = i;
    MLC_TRY(mlc_tok_strmap_put(&t->added_map, a->content, strlen(a->content), i));
    free(a->match);
    a->match = NULL;
    if (!a->content[0])
      continue;
    if (a->normalized && t->norm) {
      mlc_buf b = {0};
      MLC_TRY(mlc_tok_norm_apply(t->norm, a->content, strlen(a->content), &b));
      a->match = b.data ? mlc_buf_take(&b) : mlc_strdup("");
    } else {
      a->match = mlc_strdup(a->content);
    }
    if (!a->match)
      return MLC_ERR_NOMEM;
    if (a->match[0])
      MLC_TRY(mlc_tok_trie_add(a->normalized ? &t->trie_norm : &t->trie_raw, a->match, strlen(a->match), i));
  }
  return MLC_OK;
}

/* ---- loading ---- */
void mlc_tok_free(mlc_tokenizer *t) {
  if (!t)
    return;
  mlc_tok_model_free(t->model);
  mlc_tok_norm_free(t->norm);
  mlc_tok_pretok_free(t->pre);
  mlc_tok_post_free(t->post);
  mlc_tok_dec_free(t->dec);
  for (int i = 0; i < t->n_added; i++) {
    free(t->added[i].content);
    free(t->added[i].match);
  }
  free(t->added);
  mlc_tok_strmap_free(&t->added_map);
  free(t->added_by_id);
  mlc_tok_trie_free(&t->trie_raw);
  mlc_tok_trie_free(&t->trie_norm);
  free(t->name);
  free(t->chat_template);
  free(t->bos_tok);
  free(t->eos_tok);
  free(t->pad_tok);
  free(t->unk_tok);
  free(t);
}

static mlc_status json_parse(const char *text, size_t len, const char *file, cJSON **out) {
  cJSON *j = cJSON_ParseWithLength(text, len);
  if (!j) {
    const char *e = cJSON_GetErrorPtr();
    long off = (e && e >= text && e <= text + len) ? (long)(e - text) : -1;
    return mlc_err(MLC_ERR_FORMAT, "%s: invalid JSON near byte %ld", file, off);
  }
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return mlc_err(MLC_ERR_FORMAT, "%s: expected a JSON object at the top level", file);
  }
  *out = j;
  return MLC_OK;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} */
static mlc_status cfg_token(const mlc_tok_ctx *c, const cJSON *cfg, const char *key, char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (!v || cJSON_IsNull(v))
    return MLC_OK;
  const char *s = NULL;
  if (cJSON_IsString(v))
    s = v->valuestring;
  else if (cJSON_IsObject(v))
    MLC_TRY(mlc_tok_json_str(c, v, key, "content", true, &s));
  else
    return mlc_err(MLC_ERR_FORMAT, "%s: %s: expected a string or {\"content\": ...}", c->file, key);
  free(*out);
  *out = mlc_strdup(s);
  return *out ? MLC_OK : MLC_ERR_NOMEM;
}

static mlc_status load_config(mlc_tokenizer *t, const char *cfg_text, const char *file) {
  cJSON *cfg = NULL;
  MLC_TRY(json_parse(cfg_text, strlen(cfg_text), file, &cfg));
  mlc_tok_ctx c = {file};
  mlc_status st = MLC_OK;
  const cJSON *atd = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
  if (atd && !cJSON_IsNull(atd)) {
    if (!cJSON_IsObject(atd))
      st = mlc_err(MLC_ERR_FORMAT, "%s: added_tokens_decoder: expected an object", file);
    for (const cJSON *e = atd ? atd->child : NULL; st == MLC_OK && e; e = e->next) {
      char path[300];
      snprintf(path, sizeof path, "added_tokens_decoder[\"%.200s\"]", e->string);
      char *end;
      long id = strtol(e->string, &end, 10);
      if (*end || id < 0 || end == e->string)
        st = mlc_err(MLC_ERR_FORMAT, "%s: %s: the key must be a token id", file, path);
      else
        st = parse_added(t, &c, e, path, id, true);
    }
  }
  if (st == MLC_OK) st = cfg_token(&c, cfg, "bos_token", &t->bos_tok);
  if (st == MLC_OK) st = cfg_token(&c, cfg, "eos_token", &t->eos_tok);
  if (st == MLC_OK) st = cfg_token(&c, cfg, "pad_token", &t->pad_tok);
  if (st == MLC_OK) st = cfg_token(&c, cfg, "unk_token", &t->unk_tok);
  const cJSON *v;
  if (st == MLC_OK && (v = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token")) && !cJSON_IsNull(v)) {
    if (!cJSON_IsBool(v)) st = mlc_err(MLC_ERR_FORMAT, "%s: add_bos_token: expected true or false", file);
    else t->cfg_add_bos = cJSON_IsTrue(v);
  }
  if (st == MLC_OK && (v = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token")) && !cJSON_IsNull(v)) {
    if (!cJSON_IsBool(v)) st = mlc_err(MLC_ERR_FORMAT, "%s: add_eos_token: expected true or false", file);
    else t->cfg_add_eos = cJSON_IsTrue(v);
  }
  /* clean_up_tokenization_spaces is deliberately not applied: the reference decode() outputs
   * (tests/fixtures/tok, llama3 has it set) keep " ," as is. t->cleanup_spaces stays false. */
  if (st == MLC_OK && (v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")) && !cJSON_IsNull(v)) {
    const char *tpl = NULL;
    if (cJSON_IsString(v)) {
      tpl = v->valuestring;
    } else if (cJSON_IsArray(v)) { /* [{"name": ..., "template": ...}]: the "default" one, else the first */
      int k = 0;
      for (const cJSON *e = v->child; e; e = e->next, k++) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name"), *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsString(tp)) {
          st = mlc_err(MLC_ERR_FORMAT, "%s: chat_template[%d].template: expected a string", file, k);
          break;
        }
        if (!tpl || (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default")))
          tpl = tp->valuestring;
      }
    } else {
      st = mlc_err(MLC_ERR_FORMAT, "%s: chat_template: expected a string", file);
    }
    if (st == MLC_OK && tpl && !(t->chat_template = mlc_strdup(tpl)))
      st = MLC_ERR_NOMEM;
  }
  cJSON_Delete(cfg);
  return st;
}

mlc_status mlc_tok_load_json(const char *json, size_t len, const char *config_json, const char *name,
                             mlc_tokenizer **out) {
  *out = NULL;
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  cJSON *j = NULL;
  MLC_TRY(json_parse(json, len, base, &j));
  return mlc_tok_load_tree(j, config_json, name, NULL, out);
}

static mlc_status dup_default(const char *s, char **out) {
  if (!s)
    return MLC_OK;
  return (*out = mlc_strdup(s)) ? MLC_OK : MLC_ERR_NOMEM;
}

mlc_status mlc_tok_load_tree(cJSON *j, const char *config_json, const char *name, const mlc_tok_defaults *d,
                             mlc_tokenizer **out) {
  *out = NULL;
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  mlc_tokenizer *t = mlc_calloc(1, sizeof *t);
  if (!t) {
    cJSON_Delete(j);
    return MLC_ERR_NOMEM;
  }
  t->cfg_add_bos = t->cfg_add_eos = -1;
  t->bos_id = t->eos_id = -1;
  mlc_tok_ctx c = {base};
  mlc_status st = MLC_OK;
  if (!(t->name = mlc_strdup(name)))
    st = MLC_ERR_NOMEM;
  if (st == MLC_OK && d) {
    t->cfg_add_bos = d->add_bos;
    t->cfg_add_eos = d->add_eos;
    if ((st = dup_default(d->bos, &t->bos_tok)) == MLC_OK && (st = dup_default(d->eos, &t->eos_tok)) == MLC_OK &&
        (st = dup_default(d->pad, &t->pad_tok)) == MLC_OK)
      st = dup_default(d->unk, &t->unk_tok);
  }
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  if (st == MLC_OK && !model)
    st = mlc_err(MLC_ERR_FORMAT, "%s: model: missing", base);
  if (st == MLC_OK) st = mlc_tok_model_parse(&c, model, &t->model);
  if (st == MLC_OK) st = mlc_tok_norm_parse(&c, cJSON_GetObjectItemCaseSensitive(j, "normalizer"), "normalizer", &t->norm);
  if (st == MLC_OK)
    st = mlc_tok_pretok_parse(&c, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), "pre_tokenizer", &t->pre);
  if (st == MLC_OK)
    st = mlc_tok_post_parse(&c, cJSON_GetObjectItemCaseSensitive(j, "post_processor"), "post_processor", t, &t->post);
  if (st == MLC_OK) st = mlc_tok_dec_parse(&c, cJSON_GetObjectItemCaseSensitive(j, "decoder"), "decoder", &t->dec);
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
  if (st == MLC_OK && added && !cJSON_IsNull(added)) {
    if (!cJSON_IsArray(added))
      st = mlc_err(MLC_ERR_FORMAT, "%s: added_tokens: expected an array", base);
    int k = 0;
    for (const cJSON *e = added->child; st == MLC_OK && e; e = e->next, k++) {
      char path[64];
      snprintf(path, sizeof path, "added_tokens[%d]", k);
      st = parse_added(t, &c, e, path, -1, false);
    }
  }
  cJSON_Delete(j);
  if (st == MLC_OK && config_json)
    st = load_config(t, config_json, "tokenizer_config.json");
  if (st == MLC_OK) st = mlc_tok_added_finish(t);
  if (st == MLC_OK) {
    if (t->bos_tok) t->bos_id = mlc_tok_token_to_id(t, t->bos_tok);
    if (t->eos_tok) t->eos_id = mlc_tok_token_to_id(t, t->eos_tok);
  }
  if (st != MLC_OK) {
    mlc_tok_free(t);
    return st;
  }
  *out = t;
  return MLC_OK;
}

mlc_status mlc_tok_load(const char *path, mlc_tokenizer **out) {
  *out = NULL;
  if (!path)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_tok_load: path is NULL");
  char *file = NULL, *cfg = NULL;
  if (mlc_is_dir(path)) {
    file = mlc_path_join(path, "tokenizer.json");
    if (file && !mlc_file_exists(file)) {
      free(file);
      file = mlc_path_join(path, "tokenizer.json.gz");
      if (file && !mlc_file_exists(file)) {
        free(file);
        file = mlc_path_join(path, "tokenizer.model");
        if (file && !mlc_file_exists(file)) {
          mlc_status st = mlc_err(MLC_ERR_IO, "%s: no tokenizer.json, tokenizer.json.gz or tokenizer.model in this directory",
                                  path);
          free(file);
          return st;
        }
      }
    }
    cfg = mlc_path_join(path, "tokenizer_config.json");
  } else {
    file = mlc_strdup(path);
  }
  if (!file) {
    free(cfg);
    return MLC_ERR_NOMEM;
  }
  char *text = NULL, *cfg_text = NULL;
  size_t len = 0, cfg_len = 0;
  mlc_status st = read_maybe_gz(file, &text, &len);
  if (st == MLC_OK && cfg && mlc_file_exists(cfg))
    st = read_maybe_gz(cfg, &cfg_text, &cfg_len);
  if (st == MLC_OK) {
    size_t fl = strlen(file);
    if (fl >= 6 && !strcmp(file + fl - 6, ".model"))
      st = mlc_tok_load_spm(text, len, cfg_text, file, out);
    else
      st = mlc_tok_load_json(text, len, cfg_text, file, out);
  }
  free(text);
  free(cfg_text);
  free(file);
  free(cfg);
  return st;
}

/* ---- queries ---- */
int mlc_tok_vocab_size(const mlc_tokenizer *t) { return t->vocab_size; }
int32_t mlc_tok_bos_id(const mlc_tokenizer *t) { return t->bos_id; }
int32_t mlc_tok_eos_id(const mlc_tokenizer *t) { return t->eos_id; }
const char *mlc_tok_chat_template(const mlc_tokenizer *t) { return t->chat_template; }

const char *mlc_tok_special_token(const mlc_tokenizer *t, const char *which) {
  if (!which) return NULL;
  if (!strcmp(which, "bos_token")) return t->bos_tok;
  if (!strcmp(which, "eos_token")) return t->eos_tok;
  if (!strcmp(which, "pad_token")) return t->pad_tok;
  if (!strcmp(which, "unk_token")) return t->unk_tok;
  return NULL;
}

int32_t mlc_tok_lookup(const mlc_tokenizer *t, const char *s, size_t len) {
  int32_t i = mlc_tok_strmap_get(&t->added_map, s, len);
  if (i >= 0)
    return t->added[i].id;
  return mlc_tok_model_token_to_id(t->model, s, len);
}

int32_t mlc_tok_token_to_id(const mlc_tokenizer *t, const char *token) {
  return token ? mlc_tok_lookup(t, token, strlen(token)) : -1;
}

const char *mlc_tok_id_to_token(const mlc_tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->vocab_size)
    return NULL;
  if (t->added_by_id[id] >= 0)
    return t->added[t->added_by_id[id]].content;
  return mlc_tok_model_id_to_token(t->model, id);
}

bool mlc_tok_is_special(const mlc_tokenizer *t, int32_t id) {
  return id >= 0 && id < t->vocab_size && t->added_by_id[id] >= 0 && t->added[t->added_by_id[id]].special;
}

/* ---- encoding ---- */
static bool ends_with_word(const char *s, size_t n) {
  if (!n) return false;
  size_t k = n - 1;
  while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
  uint32_t cp;
  mlc_tok_utf8_dec(s + k, n - k, &cp);
  return mlc_tok_is_word(cp);
}

static bool starts_with_word(const char *s, size_t n) {
  if (!n) return false;
  uint32_t cp;
  mlc_tok_utf8_dec(s, n, &cp);
  return mlc_tok_is_word(cp);
}

/* Splits s by the added tokens of `trie` (leftmost-longest), appending pieces to out. */
static mlc_status split_added(const mlc_tokenizer *t, const mlc_tok_trie *trie, const char *s, size_t n, bool at_start,
                              mlc_tok_pieces *out) {
  size_t start_off = 0, pos = 0;
  while (trie->nnodes && pos < n) {
    int node = 0, best = -1;
    size_t best_end = 0;
    for (size_t k = pos; k < n; k++) {
      node = mlc_tok_trie_child(trie, node, (unsigned char)s[k]);
      if (node < 0)
        break;
      if (trie->term[node] >= 0) {
        best = trie->term[node];
        best_end = k + 1;
      }
    }
    if (best < 0) {
      pos++;
      continue;
    }
    const mlc_tok_added *a = &t->added[best];
    size_t ms = pos, me = best_end;
    pos = best_end;
    if (ms < start_off)
      continue;
    if (a->single_word) {
      bool sp_l = ms == 0 || !ends_with_word(s, ms);
      bool sp_r = me == n || !starts_with_word(s + me, n - me);
      if (!sp_l || !sp_r)
        continue;
    }
    if (a->lstrip) {
      size_t ns = ms;
      while (ns > start_off) {
        size_t k = ns - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        mlc_tok_utf8_dec(s + k, ns - k, &cp);
        if (!mlc_tok_is_ws(cp)) break;
        ns = k;
      }
      ms = ns;
    }
    if (a->rstrip) {
      while (me < n) {
        uint32_t cp;
        int l = mlc_tok_utf8_dec(s + me, n - me, &cp);
        if (!mlc_tok_is_ws(cp)) break;
        me += (size_t)l;
      }
    }
    if (start_off < ms)
      MLC_TRY(mlc_tok_pieces_push(out, s + start_off, ms - start_off, -1, at_start && start_off == 0));
    MLC_TRY(mlc_tok_pieces_push(out, s + ms, me - ms, a->id, at_start && ms == 0));
    start_off = me;
    if (pos < me)
      pos = me;
  }
  if (start_off < n)
    MLC_TRY(mlc_tok_pieces_push(out, s + start_off, n - start_off, -1, at_start && start_off == 0));
  return MLC_OK;
}

static mlc_status encode_pieces(const mlc_tokenizer *t, const char *text, size_t len, mlc_tok_ids *ids) {
  mlc_tok_pieces p1 = {0}, p2 = {0};
  mlc_status st = split_added(t, &t->trie_raw, text, len, true, &p1);
  for (int i = 0; st == MLC_OK && i < p1.n; i++) {
    mlc_tok_piece *pc = &p1.v[i];
    if (pc->id >= 0) {
      st = mlc_tok_pieces_push(&p2, pc->s, pc->len, pc->id, pc->at_start);
      continue;
    }
    if (t->norm) {
      mlc_buf b = {0};
      st = mlc_tok_norm_apply(t->norm, pc->s, pc->len, &b);
      if (st == MLC_OK)
        st = split_added(t, &t->trie_norm, b.data ? b.data : "", b.len, pc->at_start, &p2);
      mlc_buf_free(&b);
    } else {
      st = split_added(t, &t->trie_norm, pc->s, pc->len, pc->at_start, &p2);
    }
  }
  mlc_tok_pieces_free(&p1);
  if (st == MLC_OK && t->pre)
    st = mlc_tok_pretok_apply(t->pre, &p2);
  for (int i = 0; st == MLC_OK && i < p2.n; i++) {
    if (p2.v[i].id >= 0)
      st = mlc_tok_ids_push(ids, p2.v[i].id);
    else if (p2.v[i].len)
      st = mlc_tok_model_encode(t->model, p2.v[i].s, p2.v[i].len, ids);
  }
  mlc_tok_pieces_free(&p2);
  return st;
}

mlc_status mlc_tok_encode(const mlc_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                          int *n) {
  *ids = NULL;
  *n = 0;
  if (!t || (!text && len))
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_tok_encode: NULL tokenizer or text");
  mlc_buf clean = {0};
  const char *s = text ? text : "";
  if (mlc_tok_utf8_valid_prefix(s, len) != len) { /* invalid UTF-8: replace like from_utf8_lossy */
    mlc_tok_utf8_lossy(&clean, s, len);
    if (clean.oom) {
      mlc_buf_free(&clean);
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    }
    s = clean.data;
    len = clean.len;
  }
  mlc_tok_ids out = {0};
  mlc_status st = encode_pieces(t, s, len, &out);
  mlc_buf_free(&clean);
  if (st == MLC_OK && add_special) {
    if (t->post && mlc_tok_post_adds_specials(t->post)) {
      st = mlc_tok_post_apply(t->post, &out);
    } else {
      if (t->cfg_add_bos == 1 && t->bos_id >= 0) {
        st = mlc_tok_ids_push(&out, 0);
        if (st == MLC_OK) {
          memmove(out.v + 1, out.v, (size_t)(out.n - 1) * sizeof *out.v);
          out.v[0] = t->bos_id;
        }
      }
      if (st == MLC_OK && t->cfg_add_eos == 1 && t->eos_id >= 0)
        st = mlc_tok_ids_push(&out, t->eos_id);
    }
  }
  if (st != MLC_OK) {
    free(out.v);
    return st;
  }
  if (!out.v) {
    out.v = mlc_malloc(sizeof *out.v);
    if (!out.v)
      return MLC_ERR_NOMEM;
  }
  *ids = out.v;
  *n = out.n;
  return MLC_OK;
}

/* ---- decoding ---- */
mlc_status mlc_tok_decode_raw(const mlc_tokenizer *t, const int32_t *ids, int n, bool skip_special, mlc_buf *out) {
  mlc_tok_strs toks = {0};
  mlc_status st = MLC_OK;
  for (int i = 0; st == MLC_OK && i < n; i++) {
    const char *s = mlc_tok_id_to_token(t, ids[i]);
    if (!s)
      continue;
    if (skip_special && mlc_tok_is_special(t, ids[i]))
      continue;
    st = mlc_tok_strs_push(&toks, s, strlen(s));
  }
  if (st == MLC_OK && t->dec)
    st = mlc_tok_dec_chain(t->dec, &toks);
  for (int i = 0; st == MLC_OK && i < toks.n; i++) {
    if (!t->dec && i > 0)
      mlc_buf_append(out, " ", 1);
    mlc_buf_append(out, toks.v[i], toks.len[i]);
  }
  mlc_tok_strs_free(&toks);
  if (st == MLC_OK && out->oom)
    st = mlc_err(MLC_ERR_NOMEM, "out of memory while decoding");
  return st;
}

mlc_status mlc_tok_decode(const mlc_tokenizer *t, const int32_t *ids, int n, bool skip_special, char **out) {
  *out = NULL;
  if (!t || (!ids && n > 0) || n < 0)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_tok_decode: bad arguments");
  mlc_buf b = {0};
  mlc_status st = mlc_tok_decode_raw(t, ids, n, skip_special, &b);
  if (st == MLC_OK && t->cleanup_spaces)
    mlc_tok_cleanup_spaces(&b);
  if (st == MLC_OK && b.oom)
    st = mlc_err(MLC_ERR_NOMEM, "out of memory while decoding");
  if (st != MLC_OK) {
    mlc_buf_free(&b);
    return st;
  }
  *out = b.data ? mlc_buf_take(&b) : mlc_strdup("");
  return *out ? MLC_OK : MLC_ERR_NOMEM;
}

/* ---- streaming ---- */
struct mlc_tok_stream {
  const mlc_tokenizer *t;
  bool skip;
  mlc_tok_ids ids;
  int prefix, read;   /* ids[prefix:read] is context already emitted; ids[read:] is pending */
  char *prev;         /* decode of ids[prefix:read] */
  size_t prev_len;
  mlc_buf pend;       /* raw text held back for the clean-up of tokenization spaces */
};

mlc_status mlc_tok_stream_new(const mlc_tokenizer *t, bool skip_special, mlc_tok_stream **out) {
  *out = NULL;
  if (!t)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_tok_stream_new: NULL tokenizer");
  mlc_tok_stream *s = mlc_calloc(1, sizeof *s);
  if (!s)
    return MLC_ERR_NOMEM;
  s->t = t;
  s->skip = skip_special;
  *out = s;
  return MLC_OK;
}

void mlc_tok_stream_free(mlc_tok_stream *s) {
  if (!s)
    return;
  free(s->ids.v);
  free(s->prev);
  mlc_buf_free(&s->pend);
  free(s);
}

static const char *const CLEAN_TAILS[] = {".", "?", "!", ",", "' ", "n't", "'m", "'s", "'ve", "'re"};

/* Moves raw text through the clean-up layer, appending what can be released to out. */
static void release(mlc_tok_stream *s, const char *raw, size_t n, bool final, mlc_buf *out) {
  if (!s->t->cleanup_spaces) {
    mlc_buf_append(out, raw, n);
    return;
  }
  mlc_buf_append(&s->pend, raw, n);
  size_t cut = s->pend.len;
  if (!final && s->pend.len) {
    /* hold back a tail " xyz" that could still become a clean-up pattern */
    const char *p = s->pend.data;
    size_t L = s->pend.len;
    for (size_t k = L; k-- > 0 && L - k <= 4;) {
      if (p[k] != ' ')
        continue;
      const char *tail = p + k + 1;
      size_t tl = L - k - 1;
      bool could = false;
      for (size_t q = 0; q < sizeof CLEAN_TAILS / sizeof *CLEAN_TAILS; q++)
        if (tl < strlen(CLEAN_TAILS[q]) + (tl == 0) && !strncmp(CLEAN_TAILS[q], tail, tl))
          could = true;
      if (tl == 0)
        could = true;
      if (could) {
        cut = k;
        break;
      }
    }
  }
  mlc_buf seg = {0};
  mlc_buf_append(&seg, s->pend.data ? s->pend.data : "", cut);
  mlc_tok_cleanup_spaces(&seg);
  mlc_buf_append(out, seg.data ? seg.data : "", seg.len);
  mlc_buf_free(&seg);
  memmove(s->pend.data, s->pend.data + cut, s->pend.len - cut);
  s->pend.len -= cut;
  if (s->pend.data)
    s->pend.data[s->pend.len] = 0;
}

static bool ends_with_fffd(const char *s, size_t n) { return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3); }

static mlc_status stream_step(mlc_tok_stream *s, bool final, char **text) {
  *text = NULL;
  mlc_buf cur = {0}, out = {0};
  mlc_status st = MLC_OK;
  if (s->read < s->ids.n)
    st = mlc_tok_decode_raw(s->t, s->ids.v + s->prefix, s->ids.n - s->prefix, s->skip, &cur);
  if (st == MLC_OK && s->read < s->ids.n && cur.len > s->prev_len && (final || !ends_with_fffd(cur.data, cur.len))) {
    size_t common = s->prev_len;
    if (memcmp(cur.data, s->prev ? s->prev : "", s->prev_len) != 0) {
      /* the decoder rewrote earlier text; emit from the first differing char we have not sent */
      common = 0;
      while (common < s->prev_len && cur.data[common] == s->prev[common])
        common++;
      common = mlc_tok_utf8_valid_prefix(cur.data, common);
      if (common < s->prev_len)
        common = s->prev_len < cur.len ? s->prev_len : cur.len;
    }
    release(s, cur.data + common, cur.len - common, final, &out);
    /* new context: the ids just emitted */
    mlc_buf ctx = {0};
    s->prefix = s->read;
    s->read = s->ids.n;
    st = mlc_tok_decode_raw(s->t, s->ids.v + s->prefix, s->read - s->prefix, s->skip, &ctx);
    free(s->prev);
    s->prev_len = ctx.len;
    s->prev = ctx.data ? mlc_buf_take(&ctx) : NULL;
    mlc_buf_free(&ctx);
  } else if (st == MLC_OK && final) {
    release(s, "", 0, true, &out);
  }
  mlc_buf_free(&cur);
  if (st == MLC_OK && out.oom)
    st = mlc_err(MLC_ERR_NOMEM, "out of memory while decoding");
  if (st != MLC_OK) {
    mlc_buf_free(&out);
    return st;
  }
  *text = out.data ? mlc_buf_take(&out) : mlc_strdup("");
  return *text ? MLC_OK : MLC_ERR_NOMEM;
}

mlc_status mlc_tok_stream_put(mlc_tok_stream *s, int32_t id, char **text) {
  *text = NULL;
  MLC_TRY(mlc_tok_ids_push(&s->ids, id));
  return stream_step(s, false, text);
}

mlc_status mlc_tok_stream_flush(mlc_tok_stream *s, char **text) {
  mlc_status st = stream_step(s, true, text);
  if (st == MLC_OK) { /* start over: the next put begins a new text */
    s->ids.n = 0;
    s->prefix = s->read = 0;
    free(s->prev);
    s->prev = NULL;
    s->prev_len = 0;
  }
  return st;
}
