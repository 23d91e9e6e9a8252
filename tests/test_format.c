/* test_format.c: safetensors and config.json loading (src/format/).
 * Usage: test_format <repo root>. Prints "N passed, M failed"; exits non-zero on any failure. */
#include "format/format.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *g_root;
static char g_tmp[256];
static char g_why[2048];
static int g_checks;
static int g_verbose; /* MLC_TEST_VERBOSE=1: print every expected error message */

#define CHECK(cond, ...)                                                                   \
  do {                                                                                     \
    g_checks++;                                                                            \
    if (!(cond)) {                                                                         \
      int n_ = snprintf(g_why, sizeof g_why, "%s:%d: %s: ", __FILE__, __LINE__, #cond);    \
      if (n_ > 0 && (size_t)n_ < sizeof g_why)                                             \
        snprintf(g_why + n_, sizeof g_why - (size_t)n_, __VA_ARGS__);                      \
      return false;                                                                        \
    }                                                                                      \
  } while (0)
#define TRY_OK(expr)                                                                       \
  do {                                                                                     \
    mlc_status s_ = (expr);                                                                \
    CHECK(s_ == MLC_OK, "%s -> %s: %s", #expr, mlc_status_str(s_), mlc_last_error());     \
  } while (0)
/* The call must fail with `want` and a message containing both substrings. */
#define EXPECT_ERR(expr, want, sub1, sub2)                                                 \
  do {                                                                                     \
    mlc_err_clear();                                                                       \
    mlc_status e_ = (expr);                                                                \
    const char *m_ = mlc_last_error();                                                     \
    if (g_verbose)                                                                         \
      printf("    [%s] %s\n", mlc_status_str(e_), m_);                                     \
    CHECK(e_ == (want), "%s -> %s (want %s): %s", #expr, mlc_status_str(e_),              \
          mlc_status_str(want), m_);                                                       \
    CHECK(has(m_, (sub1)), "message lacks '%s': %s", (sub1) ? (sub1) : "", m_);            \
    CHECK(has(m_, (sub2)), "message lacks '%s': %s", (sub2) ? (sub2) : "", m_);            \
  } while (0)

/* ---- helpers ---- */
static bool has(const char *msg, const char *sub) { return !sub || strstr(msg, sub) != NULL; }
static char *path2(const char *a, const char *b) {
  static char bufs[8][1024];
  static int k;
  char *p = bufs[k++ % 8];
  snprintf(p, 1024, "%s/%s", a, b);
  return p;
}
static char *fixture(const char *kind, const char *name) {
  static char bufs[8][1024];
  static int k;
  char *p = bufs[k++ % 8];
  snprintf(p, 1024, "%s/tests/fixtures/%s/%s", g_root, kind, name);
  return p;
}
static bool write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return false;
  bool ok = fwrite(data, 1, n, f) == n;
  return (fclose(f) == 0) && ok;
}
static bool write_text(const char *path, const char *s) { return write_bytes(path, s, strlen(s)); }
/* Builds a safetensors image: 8-byte length, header, data_len bytes of data. */
static unsigned char *st_image(const char *header, size_t data_len, size_t *out_len) {
  size_t hl = strlen(header);
  unsigned char *b = calloc(1, 8 + hl + data_len + 1);
  if (!b)
    return NULL;
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, header, hl);
  for (size_t i = 0; i < data_len; i++)
    b[8 + hl + i] = (unsigned char)(i * 7 + 1);
  *out_len = 8 + hl + data_len;
  return b;
}
static bool write_st(const char *path, const char *header, size_t data_len) {
  size_t n;
  unsigned char *b = st_image(header, data_len, &n);
  bool ok = b && write_bytes(path, b, n);
  free(b);
  return ok;
}
static void rm_rf(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
        continue;
      char p[1024];
      snprintf(p, sizeof p, "%s/%s", path, e->d_name);
      rm_rf(p);
    }
    closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}
static bool copy_file(const char *from, const char *to) {
  char *data = NULL;
  size_t n = 0;
  if (mlc_read_file(from, &data, &n) != MLC_OK)
    return false;
  bool ok = write_bytes(to, data, n);
  free(data);
  return ok;
}
/* A fresh empty subdirectory of the temp dir. */
static const char *subdir(const char *name) {
  static char bufs[4][1024];
  static int k;
  char *p = bufs[k++ % 4];
  snprintf(p, 1024, "%s/%s", g_tmp, name);
  rm_rf(p);
  mkdir(p, 0755);
  return p;
}

static const char *g_models[] = {"gemma2",  "llama", "llama-mha", "llama3-rope-tied", "mistral",
                                 "mixtral", "phi3",  "qwen2",     "qwen3",            "qwen3-moe"};
#define N_MODELS (int)(sizeof g_models / sizeof g_models[0])

/* A small valid file: three tensors, __metadata__, a scalar and an empty tensor. */
static const char *SMALL_HDR =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
    "\"e\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[40,40]}}";

/* ================================ tests ================================ */

static bool test_fixtures_load(void) {
  for (int i = 0; i < N_MODELS; i++) {
    const char *dir = fixture("models", g_models[i]);
    mlc_model_config c;
    TRY_OK(mlc_config_load(dir, &c));
    mlc_st_set *s = NULL;
    TRY_OK(mlc_st_open_dir(dir, &s));
    const mlc_st_tensor *t;
    int64_t emb[2] = {c.vocab_size, c.hidden_size}, norm[1] = {c.hidden_size};
    mlc_status st = mlc_st_get(s, "model.embed_tokens.weight", 2, emb, &t);
    if (st == MLC_OK)
      st = mlc_st_get(s, "model.norm.weight", 1, norm, &t);
    if (st == MLC_OK)
      st = mlc_st_get(s, "model.layers.0.input_layernorm.weight", 1, norm, &t);
    if (st == MLC_OK && strcmp(c.arch, "phi3") != 0) {
      int64_t q[2] = {(int64_t)c.num_heads * c.head_dim, c.hidden_size};
      int64_t k[2] = {(int64_t)c.num_kv_heads * c.head_dim, c.hidden_size};
      st = mlc_st_get(s, "model.layers.0.self_attn.q_proj.weight", 2, q, &t);
      if (st == MLC_OK)
        st = mlc_st_get(s, "model.layers.1.self_attn.k_proj.weight", 2, k, &t);
    } else if (st == MLC_OK) {
      int64_t qkv[2] = {(int64_t)(c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.hidden_size};
      st = mlc_st_get(s, "model.layers.0.self_attn.qkv_proj.weight", 2, qkv, &t);
    }
    bool has_head = mlc_st_find(s, "lm_head.weight") != NULL;
    int n = mlc_st_count(s);
    const mlc_st_tensor *t0 = mlc_st_at(s, 0);
    bool f32 = true;
    for (int j = 0; j < n; j++)
      f32 = f32 && mlc_st_at(s, j)->dtype == MLC_F32;
    mlc_st_close(s);
    CHECK(st == MLC_OK, "%s: %s", g_models[i], mlc_last_error());
    CHECK(has_head == !c.tie_word_embeddings, "%s: lm_head present=%d but tie=%d", g_models[i],
          has_head, c.tie_word_embeddings);
    CHECK(n > 10 && t0 && f32, "%s: %d tensors", g_models[i], n);
  }
  return true;
}

static bool test_config_values(void) {
  mlc_model_config c;
  TRY_OK(mlc_config_load(fixture("models", "gemma2"), &c));
  CHECK(!strcmp(c.arch, "gemma2") && c.act == MLC_ACT_GELU_TANH && c.tie_word_embeddings, "gemma2");
  CHECK(c.layer_sliding[0] && !c.layer_sliding[1] && c.sliding_window == 4096, "gemma2 sliding");
  CHECK(c.attn_softcap == 50.0f && c.final_softcap == 30.0f && c.query_pre_attn_scalar == 16.0f,
        "gemma2 softcap");
  CHECK(c.head_dim == 16 && c.num_kv_heads == 2 && c.bos_token_id == 2 && c.eos_token_id == 1 &&
            c.n_eos == 1,
        "gemma2 sizes");
  CHECK(c.num_experts == 0 && c.layer_dense[0] && c.layer_dense[1], "gemma2 dense");

  TRY_OK(mlc_config_load(fixture("models", "llama3-rope-tied"), &c));
  CHECK(c.rope_type == MLC_ROPE_LLAMA3 && c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f &&
            c.rope_high_freq_factor == 4.0f && c.rope_original_max_pos == 64 &&
            c.rope_theta == 500000.0f && c.tie_word_embeddings,
        "llama3 rope");

  TRY_OK(mlc_config_load(fixture("models", "llama"), &c));
  CHECK(c.vocab_size == 512 && c.hidden_size == 64 && c.intermediate_size == 160 &&
            c.num_layers == 2 && c.num_heads == 4 && c.num_kv_heads == 2 && c.head_dim == 16 &&
            c.max_position_embeddings == 256 && fabsf(c.rms_norm_eps - 1e-5f) < 1e-12f &&
            !c.tie_word_embeddings && !c.attention_bias && !c.o_bias && !c.mlp_bias &&
            c.act == MLC_ACT_SILU && c.bos_token_id == 1 && c.eos_token_id == 2 &&
            c.rope_type == MLC_ROPE_DEFAULT && c.rope_theta == 10000.0f &&
            c.partial_rotary_factor == 1.0f && c.sliding_window == 0 && !c.layer_sliding[0],
        "llama");

  TRY_OK(mlc_config_load(fixture("models", "qwen2"), &c));
  CHECK(c.attention_bias && !c.o_bias && c.bos_token_id == -1 && c.eos_token_id == -1 &&
            c.n_eos == 0 && c.tie_word_embeddings && c.rope_theta == 1e6f && c.sliding_window == 0,
        "qwen2");

  TRY_OK(mlc_config_load(fixture("models", "qwen3"), &c));
  CHECK(c.head_dim == 32 && !c.attention_bias && c.tie_word_embeddings, "qwen3");

  TRY_OK(mlc_config_load(fixture("models", "mistral"), &c));
  CHECK(c.sliding_window == 4096 && c.layer_sliding[0] && c.layer_sliding[1] &&
            !c.layer_sliding[2],
        "mistral sliding");

  TRY_OK(mlc_config_load(fixture("models", "mixtral"), &c));
  CHECK(c.head_dim == 16 && c.num_experts == 4 && c.num_experts_per_tok == 2 &&
            c.moe_intermediate_size == 160 && c.norm_topk_prob && c.sliding_window == 0 &&
            !c.layer_dense[0] && !c.layer_dense[1] && c.rope_theta == 1e6f,
        "mixtral");

  TRY_OK(mlc_config_load(fixture("models", "qwen3-moe"), &c));
  CHECK(!strcmp(c.arch, "qwen3_moe") && c.num_experts == 4 && c.num_experts_per_tok == 2 &&
            c.moe_intermediate_size == 48 && c.norm_topk_prob && c.decoder_sparse_step == 1 &&
            !c.layer_dense[0] && !c.layer_dense[1],
        "qwen3_moe");

  TRY_OK(mlc_config_load(fixture("models", "phi3"), &c));
  CHECK(c.head_dim == 16 && c.num_kv_heads == 4 && c.rope_original_max_pos == 4096 &&
            c.partial_rotary_factor == 1.0f && c.sliding_window == 0,
        "phi3");
  return true;
}

static bool test_sharded_same_bytes(void) {
  mlc_st_set *a = NULL, *b = NULL;
  TRY_OK(mlc_st_open_dir(fixture("models", "llama"), &a));
  mlc_status st = mlc_st_open_dir(fixture("models-sharded", "llama"), &b);
  if (st != MLC_OK)
    mlc_st_close(a);
  CHECK(st == MLC_OK, "%s", mlc_last_error());
  bool same = mlc_st_count(a) == mlc_st_count(b);
  const char *bad = "";
  int nfiles2 = 0;
  for (int i = 0; same && i < mlc_st_count(a); i++) {
    const mlc_st_tensor *x = mlc_st_at(a, i), *y = mlc_st_find(b, x->name);
    same = y && y->dtype == x->dtype && y->ndim == x->ndim && y->nbytes == x->nbytes &&
           !memcmp(y->shape, x->shape, sizeof x->shape) && !memcmp(x->data, y->data, x->nbytes);
    if (!same)
      bad = x->name;
    if (y && strstr(y->file, "model-00002-of-00002.safetensors"))
      nfiles2++;
  }
  mlc_st_close(a);
  mlc_st_close(b);
  CHECK(same, "tensor '%s' differs between single and sharded", bad);
  CHECK(nfiles2 > 0, "no tensor came from the second shard");
  return true;
}

static bool test_bf16(void) {
  const char *names[] = {"llama", "qwen3", "gemma2"};
  for (int k = 0; k < 3; k++) {
    mlc_model_config c1, c2;
    TRY_OK(mlc_config_load(fixture("models", names[k]), &c1));
    TRY_OK(mlc_config_load(fixture("models-bf16", names[k]), &c2));
    CHECK(!memcmp(&c1, &c2, sizeof c1), "%s: bf16 config differs", names[k]);
    mlc_st_set *a = NULL, *b = NULL;
    TRY_OK(mlc_st_open_dir(fixture("models", names[k]), &a));
    mlc_status st = mlc_st_open_dir(fixture("models-bf16", names[k]), &b);
    if (st != MLC_OK)
      mlc_st_close(a);
    CHECK(st == MLC_OK, "%s", mlc_last_error());
    bool ok = mlc_st_count(a) == mlc_st_count(b);
    const char *bad = "";
    for (int i = 0; ok && i < mlc_st_count(a); i++) {
      const mlc_st_tensor *x = mlc_st_at(a, i), *y = mlc_st_find(b, x->name);
      ok = y && y->dtype == MLC_BF16 && y->nbytes * 2 == x->nbytes;
      for (size_t j = 0; ok && j < x->nbytes / 4; j++) {
        float f;
        uint16_t h;
        memcpy(&f, (const char *)x->data + 4 * j, 4);
        memcpy(&h, (const char *)y->data + 2 * j, 2);
        ok = h == mlc_f32_to_bf16(f);
      }
      if (!ok)
        bad = x->name;
    }
    mlc_st_close(a);
    mlc_st_close(b);
    CHECK(ok, "%s: tensor '%s' is not the bf16 rounding of the f32 one", names[k], bad);
  }
  CHECK(mlc_dtype_size(MLC_BF16) == 2 && !strcmp(mlc_dtype_name(MLC_BF16), "bf16") &&
            mlc_dtype_size(MLC_I64) == 8 && mlc_dtype_size(MLC_U8) == 1 &&
            mlc_dtype_size(MLC_DTYPE_COUNT) == 0,
        "dtype table");
  return true;
}

static bool test_legacy_identical(void) {
  for (int i = 0; i < N_MODELS; i++) {
    mlc_model_config a, b;
    TRY_OK(mlc_config_load(fixture("models", g_models[i]), &a));
    TRY_OK(mlc_config_load(fixture("models-legacy", g_models[i]), &b));
    CHECK(a.rope_type == b.rope_type && a.rope_theta == b.rope_theta &&
              a.rope_factor == b.rope_factor &&
              a.partial_rotary_factor == b.partial_rotary_factor,
          "%s: rope differs", g_models[i]);
    CHECK(!memcmp(&a, &b, sizeof a), "%s: legacy config parses differently", g_models[i]);
    /* the legacy config goes with the tensors of the original directory */
    mlc_st_set *s = NULL;
    TRY_OK(mlc_st_open_dir(fixture("models", g_models[i]), &s));
    const mlc_st_tensor *t = NULL;
    int64_t emb[2] = {b.vocab_size, b.hidden_size};
    mlc_status st = mlc_st_get(s, "model.embed_tokens.weight", 2, emb, &t);
    mlc_st_close(s);
    CHECK(st == MLC_OK, "%s: %s", g_models[i], mlc_last_error());
  }
  return true;
}

/* Every prefix and many corruptions of each fixture's config.json: a config or a clean error. */
static bool test_config_robust(void) {
  uint64_t rng = 12345;
  for (int i = 0; i < N_MODELS; i++) {
    for (int form = 0; form < 2; form++) {
      char *text = NULL;
      size_t n = 0;
      TRY_OK(mlc_read_file(path2(fixture(form ? "models-legacy" : "models", g_models[i]), "config.json"),
                           &text, &n));
      char *buf = malloc(n + 1);
      CHECK(buf, "alloc");
      bool ok = true;
      mlc_status bad = MLC_OK;
      size_t bad_len = 0;
      for (size_t len = 0; len <= n && ok; len++) {
        memcpy(buf, text, len);
        buf[len] = 0;
        mlc_model_config c;
        mlc_err_clear();
        mlc_status st = mlc_config_parse(buf, "config.json", &c);
        /* a prefix cut just after the closing brace still parses */
        ok = st == MLC_OK ? len >= n - 2
                          : (st == MLC_ERR_FORMAT && strstr(mlc_last_error(), "config.json"));
        bad = st;
        bad_len = len;
      }
      for (int it = 0; it < 400 && ok; it++) {
        memcpy(buf, text, n + 1);
        for (int k = 0; k < 3; k++) {
          rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
          static const char alpha[] = "{}[]\",:0123456789-.e tfnul\"x";
          buf[rng % n] = alpha[(rng >> 32) % (sizeof alpha - 1)];
        }
        mlc_model_config c;
        mlc_err_clear();
        mlc_status st = mlc_config_parse(buf, "config.json", &c);
        ok = st == MLC_OK || ((st == MLC_ERR_FORMAT || st == MLC_ERR_UNSUPPORTED) &&
                              strstr(mlc_last_error(), "config.json"));
        bad = st;
        bad_len = (size_t)it;
      }
      free(buf);
      free(text);
      CHECK(ok, "%s (%s): case %zu: %s: %s", g_models[i], form ? "legacy" : "new", bad_len,
            mlc_status_str(bad), mlc_last_error());
    }
  }
  return true;
}

static bool test_dir_fallbacks(void) {
  /* a lone *.safetensors file with another name */
  const char *d = subdir("lone");
  CHECK(copy_file(path2(fixture("models", "qwen2"), "model.safetensors"), path2(d, "weights.safetensors")),
        "copy");
  mlc_st_set *s = NULL;
  TRY_OK(mlc_st_open_dir(d, &s));
  int n = mlc_st_count(s);
  mlc_st_close(s);
  CHECK(n == 26, "lone file: %d tensors", n);
  /* two of them and no index */
  CHECK(copy_file(path2(d, "weights.safetensors"), path2(d, "other.safetensors")), "copy");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, d, "index");
  /* none at all */
  d = subdir("empty");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_IO, d, "model.safetensors");
  EXPECT_ERR(mlc_st_open_dir(path2(g_tmp, "does-not-exist"), &s), MLC_ERR_IO, "does-not-exist", NULL);
  CHECK(s == NULL, "out set on failure");
  /* a file path is accepted too */
  TRY_OK(mlc_st_open_dir(path2(fixture("models", "qwen2"), "model.safetensors"), &s));
  mlc_st_close(s);
  TRY_OK(mlc_st_open_file(path2(fixture("models", "qwen2"), "model.safetensors"), &s));
  mlc_st_close(s);
  return true;
}

static bool test_small_valid(void) {
  const char *p = path2(g_tmp, "small.safetensors");
  CHECK(write_st(p, SMALL_HDR, 40), "write");
  mlc_st_set *s = NULL;
  TRY_OK(mlc_st_open_file(p, &s));
  const mlc_st_tensor *a = mlc_st_find(s, "a"), *b = mlc_st_find(s, "b"), *sc = mlc_st_find(s, "s"),
                      *e = mlc_st_find(s, "e");
  bool ok = mlc_st_count(s) == 4 && a && b && sc && e && !mlc_st_find(s, "__metadata__") &&
            a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3 && a->nbytes == 24 &&
            b->dtype == MLC_BF16 && b->nbytes == 8 && sc->ndim == 0 && sc->nbytes == 8 &&
            e->nbytes == 0 && (const char *)b->data - (const char *)a->data == 24 &&
            ((const unsigned char *)a->data)[0] == 1 && !strcmp(a->file, p);
  mlc_st_close(s);
  CHECK(ok, "small file parsed wrongly");
  return true;
}

/* Writes a safetensors file from a header and checks the error it gives. */
#define ST_CASE(hdr, datalen, want, sub)                                        \
  do {                                                                          \
    const char *p_ = path2(g_tmp, "bad.safetensors");                           \
    CHECK(write_st(p_, (hdr), (datalen)), "write");                             \
    mlc_st_set *s_ = NULL;                                                      \
    EXPECT_ERR(mlc_st_open_file(p_, &s_), (want), "bad.safetensors", (sub));    \
    CHECK(s_ == NULL, "set returned on failure");                               \
  } while (0)

static bool test_st_truncated(void) {
  const char *p = path2(g_tmp, "bad.safetensors");
  mlc_st_set *s = NULL;
  CHECK(write_bytes(p, "\x10\0\0\0\0", 5), "write");
  EXPECT_ERR(mlc_st_open_file(p, &s), MLC_ERR_FORMAT, "bad.safetensors", "truncated");
  CHECK(write_bytes(p, "", 0), "write");
  EXPECT_ERR(mlc_st_open_file(p, &s), MLC_ERR_FORMAT, "bad.safetensors", "truncated");
  /* data section cut short: the last tensor names the problem */
  ST_CASE(SMALL_HDR, 30, MLC_ERR_FORMAT, "tensor 'b'");
  ST_CASE(SMALL_HDR, 39, MLC_ERR_FORMAT, "tensor 's'");
  return true;
}

static bool test_st_header_len(void) {
  const char *p = path2(g_tmp, "bad.safetensors");
  unsigned char b[64] = {0};
  uint64_t big = 123456789;
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)(big >> (8 * i));
  memcpy(b + 8, "{}", 2);
  CHECK(write_bytes(p, b, sizeof b), "write");
  mlc_st_set *s = NULL;
  EXPECT_ERR(mlc_st_open_file(p, &s), MLC_ERR_FORMAT, "bad.safetensors",
             "header length 123456789 exceeds file size 64");
  memset(b, 0xff, 8); /* 2^64-1: no overflow in the comparison */
  CHECK(write_bytes(p, b, sizeof b), "write");
  EXPECT_ERR(mlc_st_open_file(p, &s), MLC_ERR_FORMAT, "bad.safetensors", "exceeds file size");
  memset(b, 0, 8); /* zero */
  CHECK(write_bytes(p, b, sizeof b), "write");
  EXPECT_ERR(mlc_st_open_file(p, &s), MLC_ERR_FORMAT, "bad.safetensors", "header");
  return true;
}

static bool test_st_bad_json(void) {
  ST_CASE("{\"a\": {\"dtype\": \"F32\",, }", 0, MLC_ERR_FORMAT, "invalid JSON");
  ST_CASE("not json at all", 0, MLC_ERR_FORMAT, "header");
  ST_CASE("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} trailing", 4,
          MLC_ERR_FORMAT, "header");
  /* padding with spaces is fine */
  const char *p = path2(g_tmp, "pad.safetensors");
  CHECK(write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}      ", 4),
        "write");
  mlc_st_set *s = NULL;
  TRY_OK(mlc_st_open_file(p, &s));
  mlc_st_close(s);
  return true;
}

static bool test_st_not_object(void) {
  ST_CASE("[1, 2, 3]", 0, MLC_ERR_FORMAT, "not a JSON object");
  ST_CASE("\"str\"", 0, MLC_ERR_FORMAT, "not a JSON object");
  ST_CASE("{\"a\": 5}", 0, MLC_ERR_FORMAT, "tensor 'a'");
  ST_CASE("{\"__metadata__\": 5}", 0, MLC_ERR_FORMAT, "__metadata__");
  return true;
}

static bool test_st_missing_fields(void) {
  ST_CASE("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "tensor 'w'");
  ST_CASE("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "'dtype'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "'shape'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MLC_ERR_FORMAT, "'data_offsets'");
  ST_CASE("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "'dtype'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "'shape'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "'shape'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "'shape'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT, "tensor 'w'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, MLC_ERR_FORMAT, "'data_offsets'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, MLC_ERR_FORMAT, "'data_offsets'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4, MLC_ERR_FORMAT, "'data_offsets'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
          MLC_ERR_UNSUPPORTED, "tensor 'w'");
  return true;
}

static bool test_st_offsets(void) {
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, MLC_ERR_FORMAT,
          "tensor 'w'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, MLC_ERR_FORMAT,
          "data section");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, MLC_ERR_FORMAT,
          "tensor 'w'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", 8,
          MLC_ERR_FORMAT, "tensor 'w'");
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, MLC_ERR_FORMAT,
          "tensor 'w'");
  /* overlapping tensors */
  ST_CASE("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
          12, MLC_ERR_FORMAT, "overlap");
  /* duplicate names */
  ST_CASE("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
          8, MLC_ERR_FORMAT, "tensor 'x'");
  return true;
}

static bool test_st_shape_mismatch(void) {
  ST_CASE("{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[0,300]}}",
          300, MLC_ERR_FORMAT,
          "tensor 'model.norm.weight': data_offsets [0, 300] do not match shape [64] x F32 (256 bytes)");
  ST_CASE("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
          MLC_ERR_FORMAT, "[2, 3] x BF16 (12 bytes)");
  /* element count overflowing 64 bits */
  ST_CASE("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}",
          4, MLC_ERR_FORMAT, "tensor 'w'");
  return true;
}

static bool test_st_dtypes(void) {
  ST_CASE("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
          MLC_ERR_UNSUPPORTED, "F8_E4M3");
  ST_CASE("{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
          MLC_ERR_UNSUPPORTED, "tensor 'w'");
  ST_CASE("{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, MLC_ERR_FORMAT,
          "Q4_K");
  /* every supported dtype */
  const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[4,6]},"
                    "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[6,8]},"
                    "\"d\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                    "\"e\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[12,16]},"
                    "\"f\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                    "\"g\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[24,25]},"
                    "\"h\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[25,26]}}";
  const char *p = path2(g_tmp, "dtypes.safetensors");
  CHECK(write_st(p, hdr, 26), "write");
  mlc_st_set *s = NULL;
  TRY_OK(mlc_st_open_file(p, &s));
  mlc_dtype want[8] = {MLC_F32, MLC_F16, MLC_BF16, MLC_I32, MLC_U32, MLC_I64, MLC_I8, MLC_U8};
  bool ok = mlc_st_count(s) == 8;
  for (int i = 0; ok && i < 8; i++) {
    char nm[2] = {(char)('a' + i), 0};
    const mlc_st_tensor *t = mlc_st_find(s, nm);
    ok = t && t->dtype == want[i] && t->nbytes == mlc_dtype_size(want[i]);
  }
  mlc_st_close(s);
  CHECK(ok, "dtypes parsed wrongly");
  return true;
}

static bool test_st_get(void) {
  mlc_st_set *s = NULL;
  const char *dir = fixture("models", "llama");
  TRY_OK(mlc_st_open_dir(dir, &s));
  const mlc_st_tensor *t = NULL;
  int64_t sh[2] = {64, 64}, any[2] = {-1, 64}, wrong[2] = {64, 32};
  mlc_status st1 = mlc_st_get(s, "model.layers.0.self_attn.q_proj.weight", 2, sh, &t);
  mlc_status st2 = mlc_st_get(s, "model.layers.0.self_attn.k_proj.weight", 2, any, &t);
  bool k_ok = t && t->shape[0] == 32;
  mlc_err_clear();
  mlc_status st3 = mlc_st_get(s, "model.layers.9.self_attn.q_proj.weight", 2, sh, &t);
  char m3[1024];
  snprintf(m3, sizeof m3, "%s", mlc_last_error());
  mlc_status st4 = mlc_st_get(s, "model.layers.0.self_attn.q_proj.weight", 2, wrong, &t);
  char m4[1024];
  snprintf(m4, sizeof m4, "%s", mlc_last_error());
  mlc_status st5 = mlc_st_get(s, "model.norm.weight", 2, sh, &t);
  mlc_err_clear();
  const mlc_st_tensor *f = mlc_st_find(s, "nope");
  bool quiet = mlc_last_error()[0] == 0;
  mlc_st_close(s);
  CHECK(st1 == MLC_OK && st2 == MLC_OK && k_ok, "get ok");
  CHECK(st3 == MLC_ERR_FORMAT && strstr(m3, "model.layers.9.self_attn.q_proj.weight") &&
            strstr(m3, "models/llama"),
        "missing tensor: %s", m3);
  CHECK(st4 == MLC_ERR_FORMAT && strstr(m4, "q_proj.weight") && strstr(m4, "[64, 64]") &&
            strstr(m4, "[64, 32]") && strstr(m4, "model.safetensors"),
        "wrong shape: %s", m4);
  CHECK(st5 == MLC_ERR_FORMAT && t == NULL, "wrong ndim");
  CHECK(f == NULL && quiet, "find sets no error");
  return true;
}

static bool test_index_errors(void) {
  const char *src = fixture("models-sharded", "llama");
  const char *d = subdir("shard-missing");
  CHECK(copy_file(path2(src, "model.safetensors.index.json"), path2(d, "model.safetensors.index.json")) &&
            copy_file(path2(src, "model-00001-of-00002.safetensors"),
                      path2(d, "model-00001-of-00002.safetensors")),
        "copy");
  mlc_st_set *s = NULL;
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_IO, "model.safetensors.index.json",
             "model-00002-of-00002.safetensors");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_IO, "tensor '", NULL);

  /* the index lists a tensor the shard lacks */
  d = subdir("shard-lacks");
  CHECK(copy_file(path2(src, "model-00001-of-00002.safetensors"), path2(d, "a.safetensors")),
        "copy");
  CHECK(write_text(path2(d, "model.safetensors.index.json"),
                   "{\"metadata\":{},\"weight_map\":{\"lm_head.weight\":\"a.safetensors\","
                   "\"model.ghost.weight\":\"a.safetensors\"}}"),
        "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "model.safetensors.index.json",
             "model.ghost.weight");
  /* broken index files */
  CHECK(write_text(path2(d, "model.safetensors.index.json"), "{\"weight_map\": [1]}"), "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "model.safetensors.index.json", "weight_map");
  CHECK(write_text(path2(d, "model.safetensors.index.json"), "{\"metadata\": {}}"), "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "model.safetensors.index.json", "weight_map");
  CHECK(write_text(path2(d, "model.safetensors.index.json"), "{\"weight_map\": {\"x\": 3}}"), "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "model.safetensors.index.json", "'x'");
  CHECK(write_text(path2(d, "model.safetensors.index.json"),
                   "{\"weight_map\": {\"x\": \"../../etc/passwd\"}}"),
        "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "model.safetensors.index.json", "'x'");
  CHECK(write_text(path2(d, "model.safetensors.index.json"), "{\"weight_map\": {"), "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "model.safetensors.index.json", "JSON");
  /* a bad shard: the message names the index and the shard */
  CHECK(write_st(path2(d, "a.safetensors"), "[]", 0), "write");
  CHECK(write_text(path2(d, "model.safetensors.index.json"),
                   "{\"weight_map\": {\"x\": \"a.safetensors\"}}"),
        "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "model.safetensors.index.json", "a.safetensors");
  /* the same tensor in two shards */
  d = subdir("shard-dup");
  CHECK(copy_file(path2(src, "model-00001-of-00002.safetensors"), path2(d, "a.safetensors")) &&
            copy_file(path2(src, "model-00001-of-00002.safetensors"), path2(d, "b.safetensors")),
        "copy");
  CHECK(write_text(path2(d, "model.safetensors.index.json"),
                   "{\"weight_map\":{\"lm_head.weight\":\"a.safetensors\","
                   "\"model.embed_tokens.weight\":\"b.safetensors\"}}"),
        "write");
  EXPECT_ERR(mlc_st_open_dir(d, &s), MLC_ERR_FORMAT, "lm_head.weight", "b.safetensors");
  return true;
}

/* ---- config errors ---- */
static const char *BASE_CFG =
    "{\"model_type\": \"llama\", \"vocab_size\": 512, \"hidden_size\": 64, "
    "\"intermediate_size\": 160, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 2%s}";

static mlc_status cfg_with(const char *extra, mlc_model_config *c) {
  char buf[8192];
  snprintf(buf, sizeof buf, BASE_CFG, extra);
  return mlc_config_parse(buf, "config.json", c);
}
/* Replaces the model_type / fields: parses text made from BASE_CFG with a replacement. */
static mlc_status cfg_text(const char *text, mlc_model_config *c) {
  return mlc_config_parse(text, "config.json", c);
}

static bool test_config_missing(void) {
  mlc_model_config c;
  const char *d = subdir("nocfg");
  EXPECT_ERR(mlc_config_load(d, &c), MLC_ERR_IO, "config.json", NULL);
  EXPECT_ERR(mlc_config_load(d, &c), MLC_ERR_IO, "nocfg", NULL);
  return true;
}

static bool test_config_bad_json(void) {
  mlc_model_config c;
  const char *d = subdir("badcfg");
  CHECK(write_text(path2(d, "config.json"), "{\n  \"model_type\": \"llama\",\n  \"x\": [1, 2,\n}\n"),
        "write");
  EXPECT_ERR(mlc_config_load(d, &c), MLC_ERR_FORMAT, "config.json", "line 4");
  CHECK(write_text(path2(d, "config.json"), ""), "write");
  EXPECT_ERR(mlc_config_load(d, &c), MLC_ERR_FORMAT, "config.json", "JSON");
  CHECK(write_text(path2(d, "config.json"), "[1,2]"), "write");
  EXPECT_ERR(mlc_config_load(d, &c), MLC_ERR_FORMAT, "config.json", "object");
  CHECK(write_text(path2(d, "config.json"), "{\"vocab_size\": 5}"), "write");
  EXPECT_ERR(mlc_config_load(d, &c), MLC_ERR_FORMAT, "config.json", "'model_type'");
  cJSON *j = NULL;
  EXPECT_ERR(mlc_json_parse("{\"a\": tru}", "x.json", &j), MLC_ERR_FORMAT, "x.json", "byte");
  EXPECT_ERR(mlc_json_parse("{} {}", "x.json", &j), MLC_ERR_FORMAT, "x.json", NULL);
  TRY_OK(mlc_json_parse(" {\"a\": [1, 2]}\n", "x.json", &j));
  cJSON_Delete(j);
  TRY_OK(mlc_json_load(path2(fixture("models", "llama"), "ref.json"), &j));
  cJSON_Delete(j);
  return true;
}

static bool test_config_types(void) {
  mlc_model_config c;
  EXPECT_ERR(mlc_config_parse("{\"model_type\": \"llama\", \"vocab_size\": 512, \"hidden_size\": "
                              "64, \"intermediate_size\": 160, \"num_hidden_layers\": 2, "
                              "\"num_attention_heads\": \"four\"}",
                              "config.json", &c),
             MLC_ERR_FORMAT, "config.json: field 'num_attention_heads': expected an integer, got \"four\"",
             NULL);
  EXPECT_ERR(cfg_with(", \"rms_norm_eps\": \"small\"", &c), MLC_ERR_FORMAT, "config.json", "'rms_norm_eps'");
  EXPECT_ERR(cfg_with(", \"tie_word_embeddings\": 1", &c), MLC_ERR_FORMAT, "config.json", "'tie_word_embeddings'");
  EXPECT_ERR(cfg_with(", \"head_dim\": 16.5", &c), MLC_ERR_FORMAT, "config.json", "'head_dim'");
  EXPECT_ERR(cfg_with(", \"eos_token_id\": [1, \"x\"]", &c), MLC_ERR_FORMAT, "config.json", "'eos_token_id'");
  EXPECT_ERR(cfg_with(", \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": \"8\"}", &c),
             MLC_ERR_FORMAT, "config.json", "'rope_parameters.factor'");
  EXPECT_ERR(cfg_with(", \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8}", &c),
             MLC_ERR_FORMAT, "config.json", "'rope_parameters.original_max_position_embeddings'");
  EXPECT_ERR(cfg_with(", \"rope_scaling\": {\"type\": \"mrope\"}", &c), MLC_ERR_UNSUPPORTED,
             "config.json", "mrope");
  EXPECT_ERR(cfg_with(", \"rope_scaling\": 3", &c), MLC_ERR_FORMAT, "config.json", "'rope_scaling'");
  EXPECT_ERR(cfg_with(", \"hidden_act\": \"relu\"", &c), MLC_ERR_UNSUPPORTED, "config.json", "'hidden_act'");
  EXPECT_ERR(cfg_with(", \"hidden_act\": 5", &c), MLC_ERR_FORMAT, "config.json", "'hidden_act'");
  EXPECT_ERR(mlc_config_parse("{\"model_type\": \"llama\", \"hidden_size\": 64}", "config.json", &c),
             MLC_ERR_FORMAT, "config.json", "'vocab_size'");
  return true;
}

static bool test_config_validation(void) {
  mlc_model_config c;
  EXPECT_ERR(mlc_config_parse("{\"model_type\": \"llama\", \"vocab_size\": 512, \"hidden_size\": "
                              "64, \"intermediate_size\": 160, \"num_hidden_layers\": 2, "
                              "\"num_attention_heads\": 4, \"num_key_value_heads\": 3}",
                              "config.json", &c),
             MLC_ERR_FORMAT, "config.json", "'num_key_value_heads'");
  EXPECT_ERR(cfg_with(", \"num_key_value_heads\": 3", &c), MLC_ERR_FORMAT, "config.json",
             "'num_key_value_heads' appears twice");
  EXPECT_ERR(mlc_config_parse("{\"model_type\": \"llama\", \"vocab_size\": 512, \"hidden_size\": "
                              "66, \"intermediate_size\": 160, \"num_hidden_layers\": 2, "
                              "\"num_attention_heads\": 4}",
                              "config.json", &c),
             MLC_ERR_FORMAT, "config.json", "'hidden_size'");
  EXPECT_ERR(mlc_config_parse("{\"model_type\": \"llama\", \"vocab_size\": 512, \"hidden_size\": "
                              "64, \"intermediate_size\": 160, \"num_hidden_layers\": 300, "
                              "\"num_attention_heads\": 4}",
                              "config.json", &c),
             MLC_ERR_UNSUPPORTED, "config.json", "'num_hidden_layers'");
  EXPECT_ERR(mlc_config_parse("{\"model_type\": \"llama\", \"vocab_size\": 0, \"hidden_size\": "
                              "64, \"intermediate_size\": 160, \"num_hidden_layers\": 2, "
                              "\"num_attention_heads\": 4}",
                              "config.json", &c),
             MLC_ERR_FORMAT, "config.json", "'vocab_size'");
  EXPECT_ERR(cfg_with(", \"partial_rotary_factor\": 1.5", &c), MLC_ERR_FORMAT, "config.json",
             "'partial_rotary_factor'");
  /* head_dim given: hidden need not divide */
  TRY_OK(mlc_config_parse("{\"model_type\": \"llama\", \"vocab_size\": 512, \"hidden_size\": 66, "
                          "\"intermediate_size\": 160, \"num_hidden_layers\": 2, "
                          "\"num_attention_heads\": 4, \"head_dim\": 16}",
                          "config.json", &c));
  CHECK(c.head_dim == 16 && c.num_kv_heads == 4 && c.bos_token_id == -1 && c.n_eos == 0, "defaults");
  /* eos list, null bos, null head_dim */
  TRY_OK(cfg_with(", \"eos_token_id\": [7, 9, 11], \"bos_token_id\": null, \"head_dim\": null", &c));
  CHECK(c.eos_token_id == 7 && c.n_eos == 3 && c.eos_ids[2] == 11 && c.bos_token_id == -1 &&
            c.head_dim == 16,
        "eos list");
  /* llama attention_bias: q, k, v and o */
  TRY_OK(cfg_with(", \"attention_bias\": true, \"mlp_bias\": true", &c));
  CHECK(c.attention_bias && c.o_bias && c.mlp_bias, "llama biases");
  /* legacy linear / yarn / dynamic */
  TRY_OK(cfg_with(", \"rope_theta\": 5e5, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", &c));
  CHECK(c.rope_type == MLC_ROPE_LINEAR && c.rope_factor == 2.0f && c.rope_theta == 5e5f, "linear");
  TRY_OK(cfg_with(", \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0, \"rope_theta\": 1e6, "
                  "\"original_max_position_embeddings\": 32}",
                  &c));
  CHECK(c.rope_type == MLC_ROPE_YARN && c.rope_factor == 4.0f && c.yarn_beta_fast == 32.0f &&
            c.yarn_beta_slow == 1.0f && fabsf(c.yarn_attn_factor - (0.1f * logf(4.0f) + 1.0f)) < 1e-6f &&
            c.rope_original_max_pos == 32 && c.rope_theta == 1e6f,
        "yarn");
  TRY_OK(cfg_with(", \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}", &c));
  CHECK(c.rope_type == MLC_ROPE_DYNAMIC && c.rope_original_max_pos == 2048, "dynamic");
  EXPECT_ERR(cfg_with(", \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\"}}", &c),
             MLC_ERR_UNSUPPORTED, "config.json", "rope_parameters");
  /* partial rotary in both places */
  TRY_OK(cfg_with(", \"partial_rotary_factor\": 0.5", &c));
  CHECK(c.partial_rotary_factor == 0.5f, "prf top");
  TRY_OK(cfg_with(", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 100.0, "
                  "\"partial_rotary_factor\": 0.25}",
                  &c));
  CHECK(c.partial_rotary_factor == 0.25f && c.rope_theta == 100.0f, "prf in rope_parameters");
  return true;
}

static bool test_config_families(void) {
  mlc_model_config c;
  EXPECT_ERR(cfg_text("{\"model_type\": \"falcon\", \"vocab_size\": 5}", &c), MLC_ERR_UNSUPPORTED,
             "config.json", "falcon");
  EXPECT_ERR(cfg_text("{\"model_type\": 5}", &c), MLC_ERR_FORMAT, "config.json", "'model_type'");
  const char *sizes = "\"vocab_size\": 512, \"hidden_size\": 64, \"intermediate_size\": 160, "
                      "\"num_hidden_layers\": 6, \"num_attention_heads\": 4";
  char buf[8192];
  /* gemma2 defaults: tied, alternating sliding, softcaps, gelu tanh, head_dim 256 */
  snprintf(buf, sizeof buf, "{\"model_type\": \"gemma2\", %s}", sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(c.tie_word_embeddings && c.layer_sliding[0] && !c.layer_sliding[1] && c.layer_sliding[4] &&
            !c.layer_sliding[5] && c.sliding_window == 4096 && c.attn_softcap == 50.0f &&
            c.final_softcap == 30.0f && c.query_pre_attn_scalar == 256.0f && c.head_dim == 256 &&
            c.act == MLC_ACT_GELU_TANH,
        "gemma2 defaults");
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"gemma2\", %s, \"tie_word_embeddings\": false, "
           "\"query_pre_attn_scalar\": null, \"final_logit_softcapping\": null, \"head_dim\": 16}",
           sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(!c.tie_word_embeddings && c.query_pre_attn_scalar == 0 && c.final_softcap == 0, "gemma2 nulls");
  snprintf(buf, sizeof buf, "{\"model_type\": \"gemma2\", %s, \"layer_types\": [\"full_attention\"]}", sizes);
  EXPECT_ERR(cfg_text(buf, &c), MLC_ERR_FORMAT, "config.json", "'layer_types'");
  /* gemma (v1): no sliding, no softcap */
  snprintf(buf, sizeof buf, "{\"model_type\": \"gemma\", %s, \"head_dim\": 16}", sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(!strcmp(c.arch, "gemma") && c.tie_word_embeddings && c.sliding_window == 0 &&
            !c.layer_sliding[0] && c.attn_softcap == 0 && c.act == MLC_ACT_GELU_TANH,
        "gemma");
  /* qwen2 sliding only with use_sliding_window */
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"qwen2\", %s, \"sliding_window\": 128, \"max_window_layers\": 4}", sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(c.sliding_window == 0 && !c.layer_sliding[5], "qwen2 no sliding");
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"qwen2\", %s, \"sliding_window\": 128, \"max_window_layers\": 4, "
           "\"use_sliding_window\": true}",
           sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(c.sliding_window == 128 && !c.layer_sliding[3] && c.layer_sliding[4] && c.layer_sliding[5],
        "qwen2 max_window_layers");
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"qwen3\", %s, \"sliding_window\": 64, \"use_sliding_window\": true, "
           "\"head_dim\": 16, \"layer_types\": [\"sliding_attention\", \"full_attention\", "
           "\"full_attention\", \"full_attention\", \"full_attention\", \"sliding_attention\"]}",
           sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(c.layer_sliding[0] && !c.layer_sliding[1] && c.layer_sliding[5], "qwen3 layer_types");
  /* mistral: null window */
  snprintf(buf, sizeof buf, "{\"model_type\": \"mistral\", %s, \"sliding_window\": null}", sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(c.sliding_window == 0 && !c.layer_sliding[0] && !c.attention_bias, "mistral null window");
  /* qwen3_moe sparse step and mlp_only_layers */
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"qwen3_moe\", %s, \"head_dim\": 16, \"num_experts\": 8, "
           "\"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32, \"decoder_sparse_step\": 2, "
           "\"mlp_only_layers\": [3]}",
           sizes);
  TRY_OK(cfg_text(buf, &c));
  CHECK(c.num_experts == 8 && c.layer_dense[0] && !c.layer_dense[1] && c.layer_dense[2] &&
            c.layer_dense[3] && c.layer_dense[4] && !c.layer_dense[5] && !c.norm_topk_prob &&
            c.decoder_sparse_step == 2,
        "qwen3_moe layers");
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"qwen3_moe\", %s, \"num_experts\": 8, \"num_experts_per_tok\": 9}", sizes);
  EXPECT_ERR(cfg_text(buf, &c), MLC_ERR_FORMAT, "config.json", "'num_experts_per_tok'");
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"qwen3_moe\", %s, \"num_experts\": 8, \"mlp_only_layers\": [6]}", sizes);
  EXPECT_ERR(cfg_text(buf, &c), MLC_ERR_FORMAT, "config.json", "'mlp_only_layers'");
  /* phi3 longrope */
  char sf[256] = "[", lf[256] = "[";
  for (int i = 0; i < 8; i++) {
    char x[32];
    snprintf(x, sizeof x, "%s%g", i ? ", " : "", 1.0 + i);
    strcat(sf, x);
    snprintf(x, sizeof x, "%s%g", i ? ", " : "", 2.0 + i);
    strcat(lf, x);
  }
  strcat(sf, "]");
  strcat(lf, "]");
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"phi3\", %s, \"max_position_embeddings\": 4096, "
           "\"original_max_position_embeddings\": 1024, \"partial_rotary_factor\": 1.0, "
           "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": %s, \"long_factor\": %s}}",
           sizes, sf, lf);
  TRY_OK(cfg_text(buf, &c));
  CHECK(c.rope_type == MLC_ROPE_LONGROPE && c.rope_n_factors == 8 && c.rope_short_factor[7] == 8.0f &&
            c.rope_long_factor[0] == 2.0f && c.rope_factor == 4.0f &&
            fabsf(c.yarn_attn_factor - sqrtf(1 + logf(4.0f) / logf(1024.0f))) < 1e-6f &&
            c.rope_original_max_pos == 1024,
        "longrope");
  snprintf(buf, sizeof buf,
           "{\"model_type\": \"phi3\", %s, \"rope_scaling\": {\"type\": \"longrope\", "
           "\"short_factor\": [1.0], \"long_factor\": [1.0]}}",
           sizes);
  EXPECT_ERR(cfg_text(buf, &c), MLC_ERR_FORMAT, "config.json", "'rope_scaling.short_factor'");
  return true;
}

/* Every prefix of every file must load or fail cleanly, with the file named. */
static bool truncation_loop(const char *header, size_t data_len, const char *what) {
  size_t n;
  unsigned char *img = st_image(header, data_len, &n);
  CHECK(img, "alloc");
  const char *p = path2(g_tmp, "trunc.safetensors");
  bool ok = true;
  size_t bad_len = 0;
  mlc_status bad_st = MLC_OK;
  char bad_msg[512] = "";
  for (size_t len = 0; len <= n && ok; len++) {
    if (!write_bytes(p, img, len)) {
      ok = false;
      break;
    }
    mlc_st_set *s = NULL;
    mlc_err_clear();
    mlc_status st = mlc_st_open_file(p, &s);
    if (st == MLC_OK) {
      for (int i = 0; i < mlc_st_count(s); i++) { /* touch every byte */
        const mlc_st_tensor *t = mlc_st_at(s, i);
        volatile unsigned char sum = 0;
        for (size_t j = 0; j < t->nbytes; j++)
          sum ^= ((const unsigned char *)t->data)[j];
        (void)sum;
      }
      mlc_st_close(s);
    } else if ((st != MLC_ERR_FORMAT && st != MLC_ERR_UNSUPPORTED) || s ||
               !strstr(mlc_last_error(), "trunc.safetensors")) {
      ok = false;
      bad_len = len;
      bad_st = st;
      snprintf(bad_msg, sizeof bad_msg, "%s", mlc_last_error());
    }
  }
  free(img);
  CHECK(ok, "%s: prefix of %zu bytes: %s: %s", what, bad_len, mlc_status_str(bad_st), bad_msg);
  return true;
}

static const char *MALFORMED[][2] = {
    {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "4"},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "4"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", "4"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "8"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[0,300]}}", "300"},
    {"{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", "4"},
    {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     "12"},
    {"[1,2,3]", "0"},
    {"{\"a\": {\"dtype\": \"F32\",, }", "0"},
};

static bool test_truncations(void) {
  if (!truncation_loop(SMALL_HDR, 40, "small valid file"))
    return false;
  for (size_t i = 0; i < sizeof MALFORMED / sizeof MALFORMED[0]; i++)
    if (!truncation_loop(MALFORMED[i][0], (size_t)atoi(MALFORMED[i][1]), MALFORMED[i][0]))
      return false;
  /* the header region of a real fixture */
  char *data = NULL;
  size_t n = 0;
  TRY_OK(mlc_read_file(path2(fixture("models", "qwen3-moe"), "model.safetensors"), &data, &n));
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = (hl << 8) | (unsigned char)data[i];
  const char *p = path2(g_tmp, "trunc.safetensors");
  bool ok = true;
  size_t bad = 0;
  for (size_t len = 0; len < 8 + hl + 64 && ok; len += 1 + len / 64) {
    mlc_st_set *s = NULL;
    if (!write_bytes(p, data, len))
      break;
    mlc_status st = mlc_st_open_file(p, &s);
    ok = st == MLC_ERR_FORMAT && !s && strstr(mlc_last_error(), "trunc.safetensors");
    bad = len;
  }
  free(data);
  CHECK(ok, "real fixture cut at %zu: %s", bad, mlc_last_error());
  return true;
}

/* Random byte corruption of the small file's header: no crash, clean status. */
static bool test_corruption(void) {
  size_t n;
  unsigned char *img = st_image(SMALL_HDR, 40, &n);
  CHECK(img, "alloc");
  const char *p = path2(g_tmp, "fuzz.safetensors");
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  bool ok = true;
  int loaded = 0;
  for (int iter = 0; iter < 3000 && ok; iter++) {
    unsigned char *b = malloc(n);
    memcpy(b, img, n);
    int flips = 1 + iter % 4;
    for (int k = 0; k < flips; k++) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      size_t pos = (size_t)(rng % (8 + strlen(SMALL_HDR)));
      static const char alphabet[] = "{}[]\",:0123456789-e.ABFUI \x00\xff";
      b[pos] = (unsigned char)alphabet[(rng >> 32) % (sizeof alphabet - 1)];
    }
    ok = write_bytes(p, b, n);
    free(b);
    mlc_st_set *s = NULL;
    mlc_err_clear();
    mlc_status st = mlc_st_open_file(p, &s);
    if (st == MLC_OK) {
      loaded++;
      for (int i = 0; i < mlc_st_count(s); i++) { /* touch every byte (ASan checks bounds) */
        const mlc_st_tensor *t = mlc_st_at(s, i);
        volatile unsigned char sum = 0;
        for (size_t j = 0; j < t->nbytes; j++)
          sum ^= ((const unsigned char *)t->data)[j];
        (void)sum;
      }
      mlc_st_close(s);
    } else {
      ok = (st == MLC_ERR_FORMAT || st == MLC_ERR_UNSUPPORTED) && !s &&
           strstr(mlc_last_error(), "fuzz.safetensors");
      if (!ok)
        snprintf(g_why, sizeof g_why, "iteration %d: %s: %s", iter, mlc_status_str(st), mlc_last_error());
    }
  }
  free(img);
  if (!ok)
    return false;
  CHECK(loaded > 0, "no corrupted file loaded at all (suspicious)");
  return true;
}

/* ================================ main ================================ */
typedef bool (*test_fn)(void);
static const struct {
  const char *name;
  test_fn fn;
} g_tests[] = {
    {"fixtures_load", test_fixtures_load},
    {"config_values", test_config_values},
    {"sharded_same_bytes", test_sharded_same_bytes},
    {"bf16", test_bf16},
    {"legacy_identical", test_legacy_identical},
    {"dir_fallbacks", test_dir_fallbacks},
    {"small_valid", test_small_valid},
    {"st_truncated", test_st_truncated},
    {"st_header_len", test_st_header_len},
    {"st_bad_json", test_st_bad_json},
    {"st_not_object", test_st_not_object},
    {"st_missing_fields", test_st_missing_fields},
    {"st_offsets", test_st_offsets},
    {"st_shape_mismatch", test_st_shape_mismatch},
    {"st_dtypes", test_st_dtypes},
    {"st_get", test_st_get},
    {"index_errors", test_index_errors},
    {"config_missing", test_config_missing},
    {"config_bad_json", test_config_bad_json},
    {"config_types", test_config_types},
    {"config_validation", test_config_validation},
    {"config_families", test_config_families},
    {"truncations", test_truncations},
    {"corruption", test_corruption},
    {"config_robust", test_config_robust},
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <repo root>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  g_verbose = getenv("MLC_TEST_VERBOSE") && atoi(getenv("MLC_TEST_VERBOSE")) > 0;
  const char *tmpdir = getenv("TMPDIR");
  snprintf(g_tmp, sizeof g_tmp, "%s/mlc-test-format-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 2;
  }
  int passed = 0, failed = 0;
  for (size_t i = 0; i < sizeof g_tests / sizeof g_tests[0]; i++) {
    g_why[0] = 0;
    int before = g_checks;
    bool ok = g_tests[i].fn();
    if (ok) {
      passed++;
      printf("ok   %-20s (%d checks)\n", g_tests[i].name, g_checks - before);
    } else {
      failed++;
      printf("FAIL %-20s %s\n", g_tests[i].name, g_why);
    }
  }
  rm_rf(g_tmp);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
