/* tok_internal.h: shared internals of the tokenizer (not a public API). */
#ifndef MLC_TOK_INTERNAL_H
#define MLC_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "tokenizer/tokenizer.h"

typedef struct cJSON cJSON;

/* ---- hash maps ---- */
/* h == 0: empty; keys of up to 12 bytes are also copied into inl (no pointer chase on lookup) */
typedef struct { const char *k; uint32_t len; int32_t v; uint32_t h; char inl[12]; } mlc_tok_smslot;
typedef struct { mlc_tok_smslot *s; uint32_t cap, n; } mlc_tok_strmap; /* keys borrowed */
mlc_status mlc_tok_strmap_put(mlc_tok_strmap *m, const char *k, size_t len, int32_t v);
mlc_status mlc_tok_strmap_reserve(mlc_tok_strmap *m, size_t n); /* room for n keys without rehashing */
int32_t mlc_tok_strmap_get(const mlc_tok_strmap *m, const char *k, size_t len);
void mlc_tok_strmap_free(mlc_tok_strmap *m);

typedef struct { uint64_t k; int32_t a, b; } mlc_tok_pmslot; /* k == UINT64_MAX: empty */
typedef struct { mlc_tok_pmslot *s; uint32_t cap, n; } mlc_tok_pairmap;
mlc_status mlc_tok_pairmap_put(mlc_tok_pairmap *m, uint64_t k, int32_t a, int32_t b);
mlc_status mlc_tok_pairmap_reserve(mlc_tok_pairmap *m, size_t n);
const mlc_tok_pmslot *mlc_tok_pairmap_get(const mlc_tok_pairmap *m, uint64_t k);
void mlc_tok_pairmap_free(mlc_tok_pairmap *m);

/* ---- int vector ---- */
typedef struct { int32_t *v; int n, cap; } mlc_tok_ids;
mlc_status mlc_tok_ids_push(mlc_tok_ids *a, int32_t x);

/* ---- UTF-8 ---- */
/* Decodes one code point at s (n bytes available); returns its byte length (>=1); invalid
 * bytes decode as U+FFFD of length 1. */
int mlc_tok_utf8_dec(const char *s, size_t n, uint32_t *cp);
int mlc_tok_utf8_enc(uint32_t cp, char *out);
/* Length of the longest prefix of s that is complete, valid UTF-8. */
size_t mlc_tok_utf8_valid_prefix(const char *s, size_t n);
/* Appends s to b replacing invalid sequences by U+FFFD (like Rust from_utf8_lossy). */
void mlc_tok_utf8_lossy(mlc_buf *b, const char *s, size_t n);
bool mlc_tok_is_ws(uint32_t cp);     /* Unicode White_Space */
bool mlc_tok_is_alnum(uint32_t cp);  /* Rust char::is_alphanumeric */
bool mlc_tok_is_numeric(uint32_t cp);
bool mlc_tok_is_punct(uint32_t cp);  /* ASCII punctuation or Unicode P* */
bool mlc_tok_is_word(uint32_t cp);   /* regex \w */

/* ---- regex (PCRE2) ---- */
typedef struct mlc_tok_re mlc_tok_re;
typedef struct { size_t a, b; } mlc_tok_span;
typedef struct { mlc_tok_span *v; int n, cap; } mlc_tok_spans;
mlc_status mlc_tok_re_new(const char *pattern, bool literal, const char *ctx, mlc_tok_re **out);
void mlc_tok_re_free(mlc_tok_re *re);
/* All non-overlapping matches, left to right. */
mlc_status mlc_tok_re_find_all(const mlc_tok_re *re, const char *s, size_t n, mlc_tok_spans *out);

/* ---- pieces of text flowing through the pipeline ---- */
typedef struct { char *s; size_t len; int32_t id; bool at_start; } mlc_tok_piece; /* id>=0: added token */
typedef struct { mlc_tok_piece *v; int n, cap; } mlc_tok_pieces;
mlc_status mlc_tok_pieces_push(mlc_tok_pieces *p, const char *s, size_t len, int32_t id, bool at_start);
void mlc_tok_pieces_free(mlc_tok_pieces *p);

/* JSON helpers: errors name `file: path`. */
typedef struct { const char *file; } mlc_tok_ctx;
mlc_status mlc_tok_json_str(const mlc_tok_ctx *c, const cJSON *o, const char *path, const char *key,
                            bool required, const char **out);
mlc_status mlc_tok_json_bool(const mlc_tok_ctx *c, const cJSON *o, const char *path, const char *key,
                             bool dflt, bool *out);
mlc_status mlc_tok_json_int(const mlc_tok_ctx *c, const cJSON *o, const char *path, const char *key,
                            long dflt, long *out);
/* {"String": s} or {"Regex": r} */
mlc_status mlc_tok_json_pattern(const mlc_tok_ctx *c, const cJSON *o, const char *path,
                                mlc_tok_re **re, char **literal);

/* ---- normalizers ---- */
typedef struct mlc_tok_norm mlc_tok_norm;
mlc_status mlc_tok_norm_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path, mlc_tok_norm **out);
mlc_status mlc_tok_norm_apply(const mlc_tok_norm *n, const char *s, size_t len, mlc_buf *out);
void mlc_tok_norm_free(mlc_tok_norm *n);

/* ---- pre-tokenizers ---- */
typedef struct mlc_tok_pretok mlc_tok_pretok;
mlc_status mlc_tok_pretok_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path, mlc_tok_pretok **out);
/* Splits every piece with id < 0 in place. */
mlc_status mlc_tok_pretok_apply(const mlc_tok_pretok *p, mlc_tok_pieces *io);
void mlc_tok_pretok_free(mlc_tok_pretok *p);
uint32_t mlc_tok_byte_to_cp(unsigned b); /* GPT-2 byte-level alphabet */
int mlc_tok_cp_to_byte(uint32_t cp);      /* -1 if cp is not in the alphabet */

/* ---- models ---- */
typedef struct mlc_tok_model mlc_tok_model;
mlc_status mlc_tok_model_parse(const mlc_tok_ctx *c, const cJSON *j, mlc_tok_model **out);
mlc_status mlc_tok_model_encode(const mlc_tok_model *m, const char *s, size_t len, mlc_tok_ids *out);
int32_t mlc_tok_model_token_to_id(const mlc_tok_model *m, const char *s, size_t len);
const char *mlc_tok_model_id_to_token(const mlc_tok_model *m, int32_t id);
int mlc_tok_model_size(const mlc_tok_model *m); /* max id + 1 */
void mlc_tok_model_free(mlc_tok_model *m);

/* ---- decoders ---- */
typedef struct mlc_tok_dec mlc_tok_dec;
typedef struct { char **v; size_t *len; int n, cap; } mlc_tok_strs;
mlc_status mlc_tok_strs_push(mlc_tok_strs *a, const char *s, size_t len);
void mlc_tok_strs_free(mlc_tok_strs *a);
mlc_status mlc_tok_dec_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path, mlc_tok_dec **out);
/* Transforms the token strings in place (decode_chain). */
mlc_status mlc_tok_dec_chain(const mlc_tok_dec *d, mlc_tok_strs *toks);
void mlc_tok_dec_free(mlc_tok_dec *d);

/* ---- post-processors ---- */
typedef struct mlc_tok_post mlc_tok_post;
mlc_status mlc_tok_post_parse(const mlc_tok_ctx *c, const cJSON *j, const char *path,
                              const mlc_tokenizer *t, mlc_tok_post **out);
mlc_status mlc_tok_post_apply(const mlc_tok_post *p, mlc_tok_ids *ids);
bool mlc_tok_post_adds_specials(const mlc_tok_post *p);
void mlc_tok_post_free(mlc_tok_post *p);

/* ---- added tokens ---- */
typedef struct {
  char *content;
  char *match; /* content, normalized when `normalized` */
  int32_t id;
  bool special, lstrip, rstrip, single_word, normalized;
} mlc_tok_added;

/* byte trie; node 0 = root; root1[c] = 1 + the root's child for byte c (0: none) */
typedef struct { mlc_tok_pairmap edges; int32_t *term; int nnodes, cap; int32_t root1[256]; } mlc_tok_trie;
mlc_status mlc_tok_trie_add(mlc_tok_trie *t, const char *s, size_t len, int32_t val);
int mlc_tok_trie_child(const mlc_tok_trie *t, int node, unsigned char c); /* -1 if none */
void mlc_tok_trie_free(mlc_tok_trie *t);

struct mlc_tokenizer {
  char *name;
  mlc_tok_model *model;
  mlc_tok_norm *norm;
  mlc_tok_pretok *pre;
  mlc_tok_post *post;
  mlc_tok_dec *dec;
  mlc_tok_added *added;
  int n_added;
  mlc_tok_strmap added_map; /* content -> index in added */
  int32_t *added_by_id;     /* id -> index in added or -1; size vocab_size */
  mlc_tok_trie trie_raw, trie_norm;
  int vocab_size;
  char *chat_template, *bos_tok, *eos_tok, *pad_tok, *unk_tok;
  int32_t bos_id, eos_id;
  int cfg_add_bos, cfg_add_eos; /* -1 unset, 0, 1 */
  bool cleanup_spaces;
};

/* Defaults set before tokenizer_config.json is read (which overrides them); add_*: -1 unset, 0, 1. */
typedef struct { const char *bos, *eos, *pad, *unk; int add_bos, add_eos; } mlc_tok_defaults;
/* Builds a tokenizer from a parsed tokenizer.json tree (takes ownership of j; d may be NULL). */
mlc_status mlc_tok_load_tree(cJSON *j, const char *config_json, const char *name, const mlc_tok_defaults *d,
                             mlc_tokenizer **out);

mlc_status mlc_tok_added_finish(mlc_tokenizer *t); /* builds tries and id table */
int32_t mlc_tok_lookup(const mlc_tokenizer *t, const char *s, size_t len);
/* Decode without transformers-level cleanup. */
mlc_status mlc_tok_decode_raw(const mlc_tokenizer *t, const int32_t *ids, int n, bool skip_special, mlc_buf *out);
void mlc_tok_cleanup_spaces(mlc_buf *b);

#endif
