/* tok_pretok.c: HF pre-tokenizers (ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit,
 * Digits, Punctuation, BertPreTokenizer, CharDelimiterSplit, Sequence). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

enum { P_BYTELEVEL, P_SPLIT, P_METASPACE, P_WHITESPACE, P_WSSPLIT, P_DIGITS, P_PUNCT, P_BERT, P_CHARDELIM, P_SEQ };
enum { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIG };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

struct mlc_tok_pretok {
  int type;
  mlc_tok_re *re;
  int behavior;
  bool invert, add_prefix_space, use_regex, split, individual;
  char rep[8]; /* Metaspace replacement (UTF-8) */
  size_t rep_len;
  int prepend;
  uint32_t delim;
  mlc_tok_pretok **kids;
  int nkids;
};

static const char *GPT2_RE =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

uint32_t mlc_tok_byte_to_cp(unsigned b) {
  if (b <= 32) return 256 + b;
  if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
  if (b == 173) return 256 + 33 + 34;
  return b;
}

int mlc_tok_cp_to_byte(uint32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 255 && cp != 173)) return (int)cp;
  if (cp >= 256 && cp <= 288) return (int)(cp - 256);
  if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
  if (cp == 323) return 173;
  return -1;
}

void mlc_tok_pretok_free(mlc_tok_pretok *p) {
  if (!p)
    return;
  for (int i = 0; i < p->nkids; i++)
    mlc_tok_pretok_free(p->kids[i]);
  free(p->kids);
  mlc_tok_re_free(p->re);
  free(p);
}

static mlc_status parse_behavior(const mlc_tok_ctx *c, const cJSON *j, const char *path, int dflt, int *out) {
  const char *b;
  MLC_TRY(mlc_tok_json_str(c, j, path, "behavior", false, &b));
  if (!b) *out = dflt;
  else if (!strcmp(b, "Removed")) *out = B_REMOVED;
  else if (!strcmp(b, "Isolated")) *out = B_ISOLATED;
  else if (!strcmp(b, "MergedWithPrevious")) *out = B_PREV;
  else if (!strcmp(b, "MergedWithNext")) *out = B_NEXT;
  else if (!strcmp(b, "Contiguous")) *out = B_CONTIG;
  else return mlc_err(MLC_ERR_FORMAT, "%s: %s.behavior: unknown split behavior \"%s\"", c->file, path, b);
  return MLC_OK;
}

static mlc_status parse_prepend(const mlc_tok_ctx *c, const cJSON *j, const char *path, int *out) {
  const char *s;
  MLC_TRY(mlc_tok_json_str(c, j, path, "prepend_scheme", false, &s));
  if (!s) {
    bool aps;
    MLC_TRY(mlc_tok_json_bool(c, j, path, "add_prefix_space", true, &aps));
    *out = aps ? PS_ALWAYS : PS_NEVER;
  } else if (!strcmp(s, "always")) *out = PS_ALWAYS;
  else if (!strcmp(s, "first")) *out = PS_FIRST;
  else if (!strcmp(s, "never")) *out = PS_NEVER;
  else return mlc_err(MLC_ERR_FORMAT, "%s: %s.prepend_scheme: unknown value \"%s\"", c->file, path, s);
  return MLC_OK;
}

/* Shared with the Metaspace decoder. */
mlc_status mlc_tok_parse_metaspace(const mlc_tok_ctx *c, const cJSON *j, const char *path, char rep[8], size_t *rep_len,
                                   int *prepend);
mlc_status mlc_tok_parse_metaspace(const mlc_tok_ctx *c, const cJSON *j, const char *path, char rep[8], size_t *rep_len,
                                   int *prepend) {
  const char *r;
  MLC_TRY(mlc_tok_json_str(c, j, path, "replacement", false, &r));
  if (!r) r = "\xE2\x96\x81";
  uint32_t cp;
  size_t rl = strlen(r);
  if (!rl || (size_t)mlc_tok_utf8_dec(r, rl, &cp) != rl)
    return mlc_err(MLC_ERR_FORMAT, "%s: %s.replacement: expected a single character", c->file, path);
  memcpy(rep, r, rl);
  *rep_len = rl;
  return parse_prepend(c, j, path, prepend);
}

mlc_status mlc_tok_pretok_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path, mlc_tok_pretok **out) {
  *out = NULL;
  if (!j || cJSON_IsNull(j))
    return MLC_OK;
  if (!cJSON_IsObject(j))
    return mlc_err(MLC_ERR_FORMAT, "%s: %s: expected an object", c->file, path);
  const char *type;
  MLC_TRY(mlc_tok_json_str(c, j, path, "type", true, &type));
  mlc_tok_pretok *p = mlc_calloc(1, sizeof *p);
  if (!p)
    return MLC_ERR_NOMEM;
  mlc_status st = MLC_OK;
  char ctx[512];
  if (!strcmp(type, "ByteLevel")) {
    p->type = P_BYTELEVEL;
    if ((st = mlc_tok_json_bool(c, j, path, "add_prefix_space", true, &p->add_prefix_space)) == MLC_OK &&
        (st = mlc_tok_json_bool(c, j, path, "use_regex", true, &p->use_regex)) == MLC_OK && p->use_regex) {
      snprintf(ctx, sizeof ctx, "%s: %s", c->file, path);
      st = mlc_tok_re_new(GPT2_RE, false, ctx, &p->re);
    }
  } else if (!strcmp(type, "Split")) {
    p->type = P_SPLIT;
    if ((st = mlc_tok_json_pattern(c, j, path, &p->re, NULL)) == MLC_OK &&
        (st = parse_behavior(c, j, path, B_REMOVED, &p->behavior)) == MLC_OK)
      st = mlc_tok_json_bool(c, j, path, "invert", false, &p->invert);
  } else if (!strcmp(type, "Metaspace")) {
    p->type = P_METASPACE;
    if ((st = mlc_tok_parse_metaspace(c, j, path, p->rep, &p->rep_len, &p->prepend)) == MLC_OK)
      st = mlc_tok_json_bool(c, j, path, "split", true, &p->split);
  } else if (!strcmp(type, "Whitespace")) {
    p->type = P_WHITESPACE;
    snprintf(ctx, sizeof ctx, "%s: %s", c->file, path);
    st = mlc_tok_re_new("\\w+|[^\\w\\s]+", false, ctx, &p->re);
  } else if (!strcmp(type, "WhitespaceSplit")) {
    p->type = P_WSSPLIT;
  } else if (!strcmp(type, "Digits")) {
    p->type = P_DIGITS;
    st = mlc_tok_json_bool(c, j, path, "individual_digits", false, &p->individual);
  } else if (!strcmp(type, "Punctuation")) {
    p->type = P_PUNCT;
    st = parse_behavior(c, j, path, B_ISOLATED, &p->behavior);
  } else if (!strcmp(type, "BertPreTokenizer")) {
    p->type = P_BERT;
  } else if (!strcmp(type, "CharDelimiterSplit")) {
    p->type = P_CHARDELIM;
    const char *d;
    if ((st = mlc_tok_json_str(c, j, path, "delimiter", true, &d)) == MLC_OK)
      mlc_tok_utf8_dec(d, strlen(d), &p->delim);
  } else if (!strcmp(type, "Sequence")) {
    p->type = P_SEQ;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
    if (!cJSON_IsArray(arr)) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: %s.pretokenizers: expected an array", c->file, path);
    } else {
      int cnt = cJSON_GetArraySize(arr);
      p->kids = mlc_calloc((size_t)cnt + 1, sizeof *p->kids);
      if (!p->kids)
        st = MLC_ERR_NOMEM;
      for (int i = 0; st == MLC_OK && i < cnt; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i);
        st = mlc_tok_pretok_parse(c, cJSON_GetArrayItem(arr, i), sub, &p->kids[p->nkids]);
        if (st == MLC_OK && p->kids[p->nkids])
          p->nkids++;
      }
    }
  } else {
    st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: %s.type: unsupported pre-tokenizer \"%s\"", c->file, path, type);
  }
  if (st != MLC_OK) {
    mlc_tok_pretok_free(p);
    return st;
  }
  *out = p;
  return MLC_OK;
}

/* ---- splitting ---- */
typedef struct { size_t a, b; bool m; } seg;
typedef struct { seg *v; int n, cap; } segs;

static mlc_status seg_push(segs *s, size_t a, size_t b, bool m) {
  if (s->n == s->cap) {
    int nc = s->cap ? s->cap * 2 : 16;
    seg *nv = mlc_realloc(s->v, (size_t)nc * sizeof *nv);
    if (!nv)
      return MLC_ERR_NOMEM;
    s->v = nv;
    s->cap = nc;
  }
  s->v[s->n++] = (seg){a, b, m};
  return MLC_OK;
}

typedef bool (*char_pred)(uint32_t, const mlc_tok_pretok *);

/* Matches -> covering segments (like HF Pattern::find_matches). */
static mlc_status find_segments(const mlc_tok_pretok *p, const mlc_tok_re *re, char_pred pred, const char *s, size_t n,
                                segs *out) {
  out->n = 0;
  if (n == 0)
    return seg_push(out, 0, 0, false);
  if (re) {
    mlc_tok_spans sp = {0};
    mlc_status st = mlc_tok_re_find_all(re, s, n, &sp);
    size_t prev = 0;
    for (int i = 0; st == MLC_OK && i < sp.n; i++) {
      if (prev != sp.v[i].a)
        st = seg_push(out, prev, sp.v[i].a, false);
      if (st == MLC_OK)
        st = seg_push(out, sp.v[i].a, sp.v[i].b, true);
      prev = sp.v[i].b;
    }
    if (st == MLC_OK && prev != n)
      st = seg_push(out, prev, n, false);
    free(sp.v);
    return st;
  }
  if (!pred)
    return seg_push(out, 0, n, false);
  size_t i = 0, prev = 0;
  while (i < n) {
    uint32_t cp;
    int l = mlc_tok_utf8_dec(s + i, n - i, &cp);
    if (pred(cp, p)) {
      if (prev != i)
        MLC_TRY(seg_push(out, prev, i, false));
      MLC_TRY(seg_push(out, i, i + (size_t)l, true));
      prev = i + (size_t)l;
    }
    i += (size_t)l;
  }
  if (prev != n)
    MLC_TRY(seg_push(out, prev, n, false));
  return MLC_OK;
}

/* Applies a split behavior to segments; the result's m flags are meaningless except for
 * B_REMOVED where m marks what to drop. */
static mlc_status apply_behavior(int behavior, bool invert, segs *in, segs *out) {
  out->n = 0;
  if (invert)
    for (int i = 0; i < in->n; i++)
      in->v[i].m = !in->v[i].m;
  bool prevm = false;
  switch (behavior) {
  case B_ISOLATED:
  case B_REMOVED:
    for (int i = 0; i < in->n; i++)
      MLC_TRY(seg_push(out, in->v[i].a, in->v[i].b, behavior == B_REMOVED && in->v[i].m));
    return MLC_OK;
  case B_PREV:
    for (int i = 0; i < in->n; i++) {
      if (in->v[i].m && !prevm) {
        if (out->n)
          out->v[out->n - 1].b = in->v[i].b;
        else
          MLC_TRY(seg_push(out, in->v[i].a, in->v[i].b, false));
      } else {
        MLC_TRY(seg_push(out, in->v[i].a, in->v[i].b, false));
      }
      prevm = in->v[i].m;
    }
    return MLC_OK;
  case B_NEXT: {
    for (int i = in->n - 1; i >= 0; i--) {
      if (in->v[i].m && !prevm) {
        if (out->n)
          out->v[out->n - 1].a = in->v[i].a;
        else
          MLC_TRY(seg_push(out, in->v[i].a, in->v[i].b, false));
      } else {
        MLC_TRY(seg_push(out, in->v[i].a, in->v[i].b, false));
      }
      prevm = in->v[i].m;
    }
    for (int i = 0, k = out->n - 1; i < k; i++, k--) {
      seg t = out->v[i];
      out->v[i] = out->v[k];
      out->v[k] = t;
    }
    return MLC_OK;
  }
  case B_CONTIG:
    for (int i = 0; i < in->n; i++) {
      if (in->v[i].m == prevm && out->n)
        out->v[out->n - 1].b = in->v[i].b;
      else
        MLC_TRY(seg_push(out, in->v[i].a, in->v[i].b, false));
      prevm = in->v[i].m;
    }
    return MLC_OK;
  }
  return mlc_err(MLC_ERR_INTERNAL, "bad split behavior %d", behavior);
}

/* Splits every non-added piece with (re or pred, behavior, invert). */
static mlc_status split_pieces(const mlc_tok_pretok *p, const mlc_tok_re *re, char_pred pred, int behavior, bool invert,
                               mlc_tok_pieces *io) {
  mlc_tok_pieces res = {0};
  segs a = {0}, b = {0};
  mlc_status st = MLC_OK;
  for (int i = 0; st == MLC_OK && i < io->n; i++) {
    mlc_tok_piece *pc = &io->v[i];
    if (pc->id >= 0) {
      st = mlc_tok_pieces_push(&res, pc->s, pc->len, pc->id, pc->at_start);
      continue;
    }
    if ((st = find_segments(p, re, pred, pc->s, pc->len, &a)) != MLC_OK)
      break;
    if ((st = apply_behavior(behavior, invert, &a, &b)) != MLC_OK)
      break;
    for (int k = 0; st == MLC_OK && k < b.n; k++) {
      if (b.v[k].m || b.v[k].b == b.v[k].a)
        continue;
      st = mlc_tok_pieces_push(&res, pc->s + b.v[k].a, b.v[k].b - b.v[k].a, -1, pc->at_start && b.v[k].a == 0);
    }
  }
  free(a.v);
  free(b.v);
  if (st != MLC_OK) {
    mlc_tok_pieces_free(&res);
    return st;
  }
  mlc_tok_pieces_free(io);
  *io = res;
  return MLC_OK;
}

static bool pred_ws(uint32_t c, const mlc_tok_pretok *p) { (void)p; return mlc_tok_is_ws(c); }
static bool pred_num(uint32_t c, const mlc_tok_pretok *p) { (void)p; return mlc_tok_is_numeric(c); }
static bool pred_punct(uint32_t c, const mlc_tok_pretok *p) { (void)p; return mlc_tok_is_punct(c); }
static bool pred_delim(uint32_t c, const mlc_tok_pretok *p) { return c == p->delim; }
static bool pred_rep(uint32_t c, const mlc_tok_pretok *p) {
  uint32_t r;
  mlc_tok_utf8_dec(p->rep, p->rep_len, &r);
  return c == r;
}

/* Rewrites every non-added piece through fn. */
static mlc_status map_pieces(const mlc_tok_pretok *p, mlc_tok_pieces *io,
                             void (*fn)(const mlc_tok_pretok *, const mlc_tok_piece *, mlc_buf *)) {
  for (int i = 0; i < io->n; i++) {
    mlc_tok_piece *pc = &io->v[i];
    if (pc->id >= 0)
      continue;
    mlc_buf b = {0};
    fn(p, pc, &b);
    if (b.oom) {
      mlc_buf_free(&b);
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    }
    if (!b.data) {
      b.data = mlc_strdup("");
      if (!b.data)
        return MLC_ERR_NOMEM;
    }
    free(pc->s);
    pc->len = b.len;
    pc->s = mlc_buf_take(&b);
  }
  return MLC_OK;
}

static void fn_prefix_space(const mlc_tok_pretok *p, const mlc_tok_piece *pc, mlc_buf *b) {
  (void)p;
  if (pc->len == 0 || pc->s[0] != ' ')
    mlc_buf_append(b, " ", 1);
  mlc_buf_append(b, pc->s, pc->len);
}

static void fn_bytes(const mlc_tok_pretok *p, const mlc_tok_piece *pc, mlc_buf *b) {
  (void)p;
  for (size_t i = 0; i < pc->len; i++) {
    char tmp[4];
    int l = mlc_tok_utf8_enc(mlc_tok_byte_to_cp((unsigned char)pc->s[i]), tmp);
    mlc_buf_append(b, tmp, (size_t)l);
  }
}

static void fn_metaspace(const mlc_tok_pretok *p, const mlc_tok_piece *pc, mlc_buf *b) {
  bool starts = pc->len >= p->rep_len && memcmp(pc->s, p->rep, p->rep_len) == 0;
  bool starts_space = pc->len && pc->s[0] == ' ';
  if (!starts && !starts_space && (p->prepend == PS_ALWAYS || (p->prepend == PS_FIRST && pc->at_start)))
    mlc_buf_append(b, p->rep, p->rep_len);
  for (size_t i = 0; i < pc->len; i++) {
    if (pc->s[i] == ' ')
      mlc_buf_append(b, p->rep, p->rep_len);
    else
      mlc_buf_append(b, pc->s + i, 1);
  }
}

mlc_status mlc_tok_pretok_apply(const mlc_tok_pretok *p, mlc_tok_pieces *io) {
  switch (p->type) {
  case P_SEQ:
    for (int i = 0; i < p->nkids; i++)
      MLC_TRY(mlc_tok_pretok_apply(p->kids[i], io));
    return MLC_OK;
  case P_BYTELEVEL:
    if (p->add_prefix_space)
      MLC_TRY(map_pieces(p, io, fn_prefix_space));
    if (p->use_regex)
      MLC_TRY(split_pieces(p, p->re, NULL, B_ISOLATED, false, io));
    return map_pieces(p, io, fn_bytes);
  case P_SPLIT:
    if (!p->re) /* empty literal: nothing matches */
      return split_pieces(p, NULL, NULL, p->behavior, p->invert, io);
    return split_pieces(p, p->re, NULL, p->behavior, p->invert, io);
  case P_METASPACE:
    MLC_TRY(map_pieces(p, io, fn_metaspace));
    if (p->split)
      return split_pieces(p, NULL, pred_rep, B_NEXT, false, io);
    return MLC_OK;
  case P_WHITESPACE:
    return split_pieces(p, p->re, NULL, B_REMOVED, true, io);
  case P_WSSPLIT:
    return split_pieces(p, NULL, pred_ws, B_REMOVED, false, io);
  case P_DIGITS:
    return split_pieces(p, NULL, pred_num, p->individual ? B_ISOLATED : B_CONTIG, false, io);
  case P_PUNCT:
    return split_pieces(p, NULL, pred_punct, p->behavior, false, io);
  case P_BERT:
    MLC_TRY(split_pieces(p, NULL, pred_ws, B_REMOVED, false, io));
    return split_pieces(p, NULL, pred_punct, B_ISOLATED, false, io);
  case P_CHARDELIM:
    return split_pieces(p, NULL, pred_delim, B_REMOVED, false, io);
  }
  return mlc_err(MLC_ERR_INTERNAL, "unknown pre-tokenizer type %d", p->type);
}
