/* package.c: MLC parameter names per architecture, md5, and reading MLC packages as tensor
 * sets under Hugging Face names (see package.h). */
#include "format/package.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- parameter table ---- */

typedef struct plist {
  mlc_pparam *p;
  int n, cap;
  bool oom;
} plist;

static mlc_pparam *padd(plist *l, const char *name, int64_t cols, bool quant) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    mlc_pparam *np = realloc(l->p, sizeof *np * (size_t)cap);
    if (!np) {
      l->oom = true;
      return NULL;
    }
    l->p = np;
    l->cap = cap;
  }
  mlc_pparam *p = &l->p[l->n++];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->cols = cols;
  p->quant = quant;
  return p;
}

static void psrc(plist *l, mlc_pparam *p, const char *name, int64_t rows) {
  if (!p)
    return;
  char(*ns)[160] = realloc(p->src, sizeof *ns * (size_t)(p->nsrc + 1));
  int64_t *nr = ns ? realloc(p->src_rows, sizeof *nr * (size_t)(p->nsrc + 1)) : NULL;
  if (!ns || !nr) {
    if (ns)
      p->src = ns;
    l->oom = true;
    return;
  }
  p->src = ns;
  p->src_rows = nr;
  snprintf(p->src[p->nsrc], sizeof p->src[0], "%s", name);
  p->src_rows[p->nsrc++] = rows;
  p->rows += rows;
}

/* one parameter with one source of the same name */
static mlc_pparam *p1(plist *l, const char *name, int64_t rows, int64_t cols, bool quant) {
  mlc_pparam *p = padd(l, name, cols, quant);
  psrc(l, p, name, rows);
  return p;
}

void mlc_pkg_params_free(mlc_pparam *p, int n) {
  for (int i = 0; p && i < n; i++) {
    free(p[i].src);
    free(p[i].src_rows);
  }
  free(p);
}

mlc_status mlc_pkg_params(const mlc_model_config *c, mlc_pparam **out, int *nout) {
  *out = NULL;
  *nout = 0;
  const char *a = c->arch;
  bool phi3 = !strcmp(a, "phi3"), gemma2 = !strcmp(a, "gemma2");
  bool cattn = !strcmp(a, "qwen2") || !strcmp(a, "qwen3") || !strcmp(a, "qwen3_moe");
  bool mixtral = !strcmp(a, "mixtral"), qmoe = !strcmp(a, "qwen3_moe");
  if (!phi3 && !gemma2 && !cattn && !mixtral && strcmp(a, "llama") && strcmp(a, "mistral"))
    return mlc_err(MLC_ERR_UNSUPPORTED, "MLC packages: no parameter mapping for model_type '%s'", a);
  int64_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads;
  int64_t F = c->intermediate_size, E = c->num_experts, Fe = c->moe_intermediate_size;
  plist l = {0};
  char nm[160], s1[160];
  mlc_pparam *p;
  p = p1(&l, phi3 ? "transformer.embd.weight" : "model.embed_tokens.weight", V, H, true);
  if (p) {
    snprintf(p->src[0], sizeof p->src[0], "model.embed_tokens.weight");
    p->embedding = true;
  }
  for (int i = 0; i < c->num_layers && !l.oom; i++) {
    char hp[64], mp[64];
    snprintf(hp, sizeof hp, "model.layers.%d", i);
    snprintf(mp, sizeof mp, phi3 ? "transformer.h.%d" : "model.layers.%d", i);
    /* attention */
    if (phi3) {
      snprintf(nm, sizeof nm, "%s.mixer.qkv_proj.weight", mp);
      p = padd(&l, nm, H, true);
      snprintf(s1, sizeof s1, "%s.self_attn.qkv_proj.weight", hp);
      psrc(&l, p, s1, (Hq + 2 * Hkv) * D);
      snprintf(nm, sizeof nm, "%s.mixer.out_proj.weight", mp);
      p = padd(&l, nm, Hq * D, true);
      snprintf(s1, sizeof s1, "%s.self_attn.o_proj.weight", hp);
      psrc(&l, p, s1, H);
    } else {
      const char *qkv = cattn ? "c_attn" : "qkv_proj";
      static const char *parts[3] = {"q_proj", "k_proj", "v_proj"};
      int64_t prow[3] = {Hq * D, Hkv * D, Hkv * D};
      snprintf(nm, sizeof nm, "%s.self_attn.%s.weight", hp, qkv);
      p = padd(&l, nm, H, true);
      for (int j = 0; j < 3; j++) {
        snprintf(s1, sizeof s1, "%s.self_attn.%s.weight", hp, parts[j]);
        psrc(&l, p, s1, prow[j]);
      }
      if (cattn && c->attention_bias) {
        snprintf(nm, sizeof nm, "%s.self_attn.%s.bias", hp, qkv);
        p = padd(&l, nm, 0, false);
        for (int j = 0; j < 3; j++) {
          snprintf(s1, sizeof s1, "%s.self_attn.%s.bias", hp, parts[j]);
          psrc(&l, p, s1, prow[j]);
        }
      }
      snprintf(nm, sizeof nm, "%s.self_attn.o_proj.weight", hp);
      p1(&l, nm, H, Hq * D, true);
      if (!strcmp(a, "qwen3") || qmoe) {
        snprintf(nm, sizeof nm, "%s.self_attn.q_norm.weight", hp);
        p1(&l, nm, D, 0, false);
        snprintf(nm, sizeof nm, "%s.self_attn.k_norm.weight", hp);
        p1(&l, nm, D, 0, false);
      }
    }
    /* mlp */
    bool moe = E > 0 && !c->layer_dense[i];
    if (moe) {
      const char *blk = mixtral ? "block_sparse_moe" : "mlp";
      snprintf(nm, sizeof nm, "%s.%s.gate.weight", hp, blk);
      p1(&l, nm, E, H, false); /* the router stays unquantized (is_moe_gate) */
      snprintf(nm, sizeof nm, mixtral ? "%s.%s.experts.e1_e3.weight" : "%s.%s.moe_gate_up_proj.weight", hp, blk);
      p = padd(&l, nm, H, true);
      if (p)
        p->experts = (int)E;
      for (int e = 0; e < E; e++) {
        snprintf(s1, sizeof s1, mixtral ? "%s.%s.experts.%d.w1.weight" : "%s.%s.experts.%d.gate_proj.weight", hp, blk, e);
        psrc(&l, p, s1, Fe);
        snprintf(s1, sizeof s1, mixtral ? "%s.%s.experts.%d.w3.weight" : "%s.%s.experts.%d.up_proj.weight", hp, blk, e);
        psrc(&l, p, s1, Fe);
      }
      snprintf(nm, sizeof nm, mixtral ? "%s.%s.experts.e2.weight" : "%s.%s.moe_down_proj.weight", hp, blk);
      p = padd(&l, nm, Fe, true);
      if (p)
        p->experts = (int)E;
      for (int e = 0; e < E; e++) {
        snprintf(s1, sizeof s1, mixtral ? "%s.%s.experts.%d.w2.weight" : "%s.%s.experts.%d.down_proj.weight", hp, blk, e);
        psrc(&l, p, s1, H);
      }
    } else if (phi3) {
      snprintf(nm, sizeof nm, "%s.mlp.gate_up_proj.weight", mp);
      p = padd(&l, nm, H, true);
      snprintf(s1, sizeof s1, "%s.mlp.gate_up_proj.weight", hp);
      psrc(&l, p, s1, 2 * F);
      snprintf(nm, sizeof nm, "%s.mlp.down_proj.weight", mp);
      p = padd(&l, nm, F, true);
      snprintf(s1, sizeof s1, "%s.mlp.down_proj.weight", hp);
      psrc(&l, p, s1, H);
    } else {
      snprintf(nm, sizeof nm, "%s.mlp.gate_up_proj.weight", hp);
      p = padd(&l, nm, H, true);
      snprintf(s1, sizeof s1, "%s.mlp.gate_proj.weight", hp);
      psrc(&l, p, s1, F);
      snprintf(s1, sizeof s1, "%s.mlp.up_proj.weight", hp);
      psrc(&l, p, s1, F);
      snprintf(nm, sizeof nm, "%s.mlp.down_proj.weight", hp);
      p1(&l, nm, H, F, true);
    }
    /* norms */
    static const char *norms[4] = {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                                   "post_feedforward_layernorm"};
    for (int j = 0; j < (gemma2 ? 4 : 2); j++) {
      snprintf(s1, sizeof s1, "%s.%s.weight", hp, norms[j]);
      if (phi3 && j == 0)
        snprintf(nm, sizeof nm, "%s.ln.weight", mp);
      else
        snprintf(nm, sizeof nm, "%s.%s.weight", mp, norms[j]);
      p = padd(&l, nm, 0, false);
      psrc(&l, p, s1, H);
      if (p)
        p->add_one = gemma2;
    }
  }
  p = padd(&l, phi3 ? "transformer.norm.weight" : "model.norm.weight", 0, false);
  psrc(&l, p, "model.norm.weight", H);
  if (p)
    p->add_one = gemma2;
  if (!c->tie_word_embeddings && !gemma2)
    p1(&l, "lm_head.weight", V, H, true);
  if (l.oom) {
    mlc_pkg_params_free(l.p, l.n);
    return mlc_err(MLC_ERR_NOMEM, "out of memory listing parameters");
  }
  *out = l.p;
  *nout = l.n;
  return MLC_OK;
}

/* ---- md5 ---- */

static const uint32_t MD5_K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
static const unsigned char MD5_R[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                        5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                        6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_block(uint32_t h[4], const unsigned char *p) {
  uint32_t w[16];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
  for (int i = 0; i < 64; i++) {
    uint32_t f;
    int g;
    if (i < 16) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (i < 32) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) & 15;
    } else if (i < 48) {
      f = b ^ c ^ d;
      g = (3 * i + 5) & 15;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) & 15;
    }
    uint32_t t = d;
    d = c;
    c = b;
    uint32_t x = a + f + MD5_K[i] + w[g];
    b = b + ((x << MD5_R[i]) | (x >> (32 - MD5_R[i])));
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
}

void mlc_md5_init(mlc_md5 *m) {
  m->h[0] = 0x67452301;
  m->h[1] = 0xefcdab89;
  m->h[2] = 0x98badcfe;
  m->h[3] = 0x10325476;
  m->len = 0;
}

void mlc_md5_update(mlc_md5 *m, const void *data, size_t n) {
  const unsigned char *p = data;
  size_t have = (size_t)(m->len & 63);
  m->len += n;
  if (have) {
    size_t take = 64 - have < n ? 64 - have : n;
    memcpy(m->buf + have, p, take);
    p += take;
    n -= take;
    if (have + take < 64)
      return;
    md5_block(m->h, m->buf);
  }
  while (n >= 64) {
    md5_block(m->h, p);
    p += 64;
    n -= 64;
  }
  memcpy(m->buf, p, n);
}

void mlc_md5_hex(mlc_md5 *m, char out[33]) {
  uint64_t bits = m->len * 8;
  unsigned char pad[72] = {0x80};
  size_t have = (size_t)(m->len & 63);
  size_t padn = have < 56 ? 56 - have : 120 - have;
  mlc_md5_update(m, pad, padn);
  unsigned char lb[8];
  for (int i = 0; i < 8; i++)
    lb[i] = (unsigned char)(bits >> (8 * i));
  mlc_md5_update(m, lb, 8);
  for (int i = 0; i < 16; i++)
    snprintf(out + 2 * i, 3, "%02x", (unsigned)(m->h[i / 4] >> (8 * (i % 4))) & 0xffu);
}

/* ---- reading ---- */

bool mlc_pkg_is_package(const char *dir) {
  char *a = mlc_path_join(dir, "tensor-cache.json"), *b = mlc_path_join(dir, "ndarray-cache.json");
  bool r = (a && mlc_file_exists(a)) || (b && mlc_file_exists(b));
  free(a);
  free(b);
  return r;
}

/* MLC's model_config (plus the top-level fields) as a Hugging Face config.json. */
static mlc_status chat_config(const char *dir, mlc_model_config *cfg, char quant[16]) {
  char *path = mlc_path_join(dir, "mlc-chat-config.json");
  if (!path)
    return MLC_ERR_NOMEM;
  cJSON *j = NULL;
  mlc_status st = mlc_json_load(path, &j);
  if (st != MLC_OK) {
    free(path);
    return st;
  }
  cJSON *mc = cJSON_GetObjectItem(j, "model_config"), *mt = cJSON_GetObjectItem(j, "model_type"),
        *q = cJSON_GetObjectItem(j, "quantization");
  if (!cJSON_IsObject(mc) || !cJSON_IsString(mt) || !cJSON_IsString(q)) {
    st = mlc_err(MLC_ERR_FORMAT, "%s: expected fields model_type, quantization (strings) and model_config (object)", path);
    goto done;
  }
  snprintf(quant, 16, "%s", q->valuestring);
  cJSON *hf = cJSON_Duplicate(mc, 1);
  if (!hf) {
    st = MLC_ERR_NOMEM;
    goto done;
  }
  cJSON *kw = cJSON_GetObjectItem(hf, "kwargs");
  if (cJSON_IsObject(kw)) {
    for (cJSON *it = kw->child; it; it = it->next)
      if (!cJSON_GetObjectItem(hf, it->string))
        cJSON_AddItemToObject(hf, it->string, cJSON_Duplicate(it, 1));
  }
  cJSON_DeleteItemFromObject(hf, "model_type");
  cJSON_AddStringToObject(hf, "model_type", mt->valuestring);
  static const char *alias[][2] = {{"position_embedding_base", "rope_theta"},
                                   {"context_window_size", "max_position_embeddings"},
                                   {"num_local_experts", "num_experts"}};
  for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++) {
    cJSON *v = cJSON_GetObjectItem(hf, alias[i][0]);
    if (v && !cJSON_GetObjectItem(hf, alias[i][1]))
      cJSON_AddItemToObject(hf, alias[i][1], cJSON_Duplicate(v, 1));
  }
  cJSON *sw = cJSON_GetObjectItem(hf, "sliding_window_size"); /* MLC's name; -1: off */
  if (cJSON_IsNumber(sw) && sw->valuedouble > 0 && !cJSON_GetObjectItem(hf, "sliding_window"))
    cJSON_AddNumberToObject(hf, "sliding_window", sw->valuedouble);
  char *text = cJSON_PrintUnformatted(hf);
  cJSON_Delete(hf);
  if (!text) {
    st = MLC_ERR_NOMEM;
    goto done;
  }
  st = mlc_config_parse(text, path, cfg);
  free(text);
done:
  cJSON_Delete(j);
  free(path);
  return st;
}

typedef struct prec {
  const char *name;
  const char *dtype;
  bool bf16enc; /* float32 stored as bf16 (f32-to-bf16) */
  int ndim;
  int64_t shape[MLC_MAX_DIMS];
  const unsigned char *data;
  size_t nbytes;
  const char *file;
} prec;

static size_t tvm_dtype_size(const char *dt) {
  if (!strcmp(dt, "float32") || !strcmp(dt, "uint32") || !strcmp(dt, "int32"))
    return 4;
  if (!strcmp(dt, "float16") || !strcmp(dt, "bfloat16"))
    return 2;
  if (!strcmp(dt, "int8") || !strcmp(dt, "uint8"))
    return 1;
  return 0;
}

typedef struct md5job {
  const void *data;
  size_t n;
  char hex[33];
} md5job;
static void *md5_thread(void *arg) {
  md5job *j = arg;
  mlc_md5 m;
  mlc_md5_init(&m);
  mlc_md5_update(&m, j->data, j->n);
  mlc_md5_hex(&m, j->hex);
  return NULL;
}

static const prec *find_rec(const prec *r, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(r[i].name, name))
      return &r[i];
  return NULL;
}

/* A float record as a tensor of `rows` x `cols` (cols 0: 1-D), rows [r0, r0+nr) presented. */
static mlc_status add_float(mlc_st_set *s, const prec *r, const char *hfname, int64_t r0, int64_t nr, int64_t cols,
                            bool widen, bool minus_one) {
  int64_t rowlen = cols ? cols : 1;
  int64_t shape[2] = {nr, cols};
  int nd = cols ? 2 : 1;
  size_t es = r->bf16enc ? 2 : tvm_dtype_size(r->dtype);
  const unsigned char *p = r->data + (size_t)(r0 * rowlen) * es;
  size_t n = (size_t)(nr * rowlen);
  mlc_dtype dt = !strcmp(r->dtype, "float16") ? MLC_F16 : (r->bf16enc || !strcmp(r->dtype, "bfloat16")) ? MLC_BF16 : MLC_F32;
  if (widen || minus_one) {
    float *f = aligned_alloc(64, (n * 4 + 63) & ~(size_t)63);
    if (!f)
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      float v;
      if (dt == MLC_F32)
        memcpy(&v, p + 4 * i, 4);
      else {
        memcpy(&h, p + 2 * i, 2);
        v = dt == MLC_F16 ? mlc_f16_to_f32(h) : mlc_bf16_to_f32(h);
      }
      f[i] = minus_one ? v - 1.0f : v;
    }
    MLC_TRY(mlc_st_keep_buf(s, f));
    return mlc_st_add(s, hfname, MLC_F32, nd, shape, f, n * 4, r->file) ? MLC_OK : MLC_ERR_NOMEM;
  }
  return mlc_st_add(s, hfname, dt, nd, shape, p, n * es, r->file) ? MLC_OK : MLC_ERR_NOMEM;
}

static mlc_status open_records(const char *dir, mlc_st_set *s, cJSON *root, const char *jname, prec **out, int *nout) {
  cJSON *shards = cJSON_GetObjectItem(root, "records");
  if (!cJSON_IsArray(shards))
    return mlc_err(MLC_ERR_FORMAT, "%s/%s: missing array 'records'", dir, jname);
  int cap = 0, n = 0;
  prec *r = NULL;
  int ns = cJSON_GetArraySize(shards);
  md5job *jobs = calloc((size_t)ns + 1, sizeof *jobs);
  const char **md5want = calloc((size_t)ns + 1, sizeof *md5want);
  const char **files = calloc((size_t)ns + 1, sizeof *files);
  mlc_status st = (jobs && md5want && files) ? MLC_OK : mlc_err(MLC_ERR_NOMEM, "out of memory");
  for (int si = 0; si < ns && st == MLC_OK; si++) {
    cJSON *sh = cJSON_GetArrayItem(shards, si);
    cJSON *dp = cJSON_GetObjectItem(sh, "dataPath"), *fm = cJSON_GetObjectItem(sh, "format"),
          *nb = cJSON_GetObjectItem(sh, "nbytes"), *recs = cJSON_GetObjectItem(sh, "records"),
          *md = cJSON_GetObjectItem(sh, "md5sum");
    if (!cJSON_IsString(dp) || !cJSON_IsNumber(nb) || !cJSON_IsArray(recs)) {
      st = mlc_err(MLC_ERR_FORMAT, "%s/%s: shard record %d needs dataPath, nbytes and records", dir, jname, si);
      break;
    }
    if (fm && (!cJSON_IsString(fm) || strcmp(fm->valuestring, "raw-shard"))) {
      st = mlc_err(MLC_ERR_FORMAT, "%s/%s: shard %s: format must be \"raw-shard\"", dir, jname, dp->valuestring);
      break;
    }
    if (strchr(dp->valuestring, '/') || !strcmp(dp->valuestring, "..") || !dp->valuestring[0]) {
      st = mlc_err(MLC_ERR_FORMAT, "%s/%s: shard path '%s' leaves the directory", dir, jname, dp->valuestring);
      break;
    }
    char *path = mlc_path_join(dir, dp->valuestring);
    mlc_mmap map = {0};
    struct stat sb;
    if (!path) {
      st = MLC_ERR_NOMEM;
      break;
    }
    if (stat(path, &sb) != 0) {
      st = mlc_err(MLC_ERR_IO, "%s: shard listed in %s is missing", path, jname);
      free(path);
      break;
    }
    if ((double)sb.st_size != nb->valuedouble) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: corrupted shard: %lld bytes, %s says %.0f%s", path, (long long)sb.st_size,
                   jname, nb->valuedouble, (double)sb.st_size < nb->valuedouble ? " (truncated)" : "");
      free(path);
      break;
    }
    if (sb.st_size > 0 && (st = mlc_mmap_open(path, &map)) != MLC_OK) {
      free(path);
      break;
    }
    const char *file = mlc_st_keep_map(s, path, map);
    free(path);
    if (!file) {
      mlc_mmap_close(&map);
      st = MLC_ERR_NOMEM;
      break;
    }
    files[si] = file;
    jobs[si].data = map.data;
    jobs[si].n = map.size;
    md5want[si] = cJSON_IsString(md) ? md->valuestring : NULL;
    int nr = cJSON_GetArraySize(recs);
    for (int ri = 0; ri < nr; ri++) {
      cJSON *rc = cJSON_GetArrayItem(recs, ri);
      cJSON *name = cJSON_GetObjectItem(rc, "name"), *shape = cJSON_GetObjectItem(rc, "shape"),
            *dt = cJSON_GetObjectItem(rc, "dtype"), *f = cJSON_GetObjectItem(rc, "format"),
            *rb = cJSON_GetObjectItem(rc, "nbytes"), *off = cJSON_GetObjectItem(rc, "byteOffset");
      if (!cJSON_IsString(name) || !cJSON_IsArray(shape) || !cJSON_IsString(dt) || !cJSON_IsNumber(rb) ||
          !cJSON_IsNumber(off)) {
        st = mlc_err(MLC_ERR_FORMAT, "%s: record %d needs name, shape, dtype, nbytes, byteOffset", file, ri);
        break;
      }
      if (n == cap) {
        cap = cap ? cap * 2 : 256;
        prec *nrp = realloc(r, sizeof *nrp * (size_t)cap);
        if (!nrp) {
          st = MLC_ERR_NOMEM;
          break;
        }
        r = nrp;
      }
      prec *p = &r[n];
      memset(p, 0, sizeof *p);
      p->name = name->valuestring;
      p->dtype = dt->valuestring;
      p->file = file;
      p->bf16enc = cJSON_IsString(f) && !strcmp(f->valuestring, "f32-to-bf16") && !strcmp(dt->valuestring, "float32");
      p->ndim = cJSON_GetArraySize(shape);
      size_t es = p->bf16enc ? 2 : tvm_dtype_size(p->dtype);
      if (!es || p->ndim > MLC_MAX_DIMS) {
        st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s / %d dims not supported", file, p->name, p->dtype,
                     p->ndim);
        break;
      }
      double numel = 1;
      for (int d = 0; d < p->ndim; d++) {
        p->shape[d] = (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
        numel *= (double)p->shape[d];
      }
      double o = off->valuedouble, b = rb->valuedouble;
      if (b != numel * (double)es || o < 0 || o + b > (double)map.size) {
        st = mlc_err(MLC_ERR_FORMAT, "%s: corrupted record '%s': %.0f bytes at offset %.0f (shape x dtype = %.0f, shard %zu bytes)",
                     file, p->name, b, o, numel * (double)es, map.size);
        break;
      }
      p->data = (const unsigned char *)map.data + (size_t)o;
      p->nbytes = (size_t)b;
      n++;
    }
  }
  /* md5sums, the shards in parallel */
  const char *skip = getenv("MLC_SKIP_MD5");
  if (st == MLC_OK && !(skip && skip[0] == '1')) {
    pthread_t th[64];
    for (int i0 = 0; i0 < ns; i0 += 64) {
      int i1 = i0 + 64 < ns ? i0 + 64 : ns, started = 0;
      for (int i = i0; i < i1; i++)
        if (md5want[i] && pthread_create(&th[i - i0], NULL, md5_thread, &jobs[i]) == 0)
          started |= 0;
        else
          md5want[i] = NULL;
      (void)started;
      for (int i = i0; i < i1; i++)
        if (md5want[i])
          pthread_join(th[i - i0], NULL);
    }
    for (int i = 0; i < ns; i++)
      if (md5want[i] && strcmp(jobs[i].hex, md5want[i])) {
        st = mlc_err(MLC_ERR_FORMAT, "%s: corrupted shard: md5sum %s, %s says %s", files[i], jobs[i].hex, jname, md5want[i]);
        break;
      }
  }
  free(jobs);
  free(md5want);
  free(files);
  if (st != MLC_OK) {
    free(r);
    return st;
  }
  *out = r;
  *nout = n;
  return MLC_OK;
}

mlc_status mlc_pkg_open(const char *dir, mlc_model_config *cfg, mlc_st_set **out, char quant_out[16]) {
  *out = NULL;
  char quant[16] = {0};
  MLC_TRY(chat_config(dir, cfg, quant));
  if (quant_out)
    snprintf(quant_out, 16, "%s", quant);
  const mlc_qscheme *qs = mlc_qscheme_find(quant);
  if (!qs)
    return mlc_err(MLC_ERR_UNSUPPORTED, "%s/mlc-chat-config.json: quantization '%s' is not supported (supported: %s)", dir,
                   quant, mlc_qscheme_list());
  const char *jname = "tensor-cache.json";
  char *jpath = mlc_path_join(dir, jname);
  if (jpath && !mlc_file_exists(jpath)) {
    free(jpath);
    jname = "ndarray-cache.json";
    jpath = mlc_path_join(dir, jname);
  }
  if (!jpath)
    return MLC_ERR_NOMEM;
  cJSON *root = NULL;
  mlc_status st = mlc_json_load(jpath, &root);
  free(jpath);
  if (st != MLC_OK)
    return st;
  mlc_st_set *s = mlc_st_new_virtual(dir);
  prec *r = NULL;
  int nr = 0;
  mlc_pparam *pp = NULL;
  int np = 0;
  if (!s)
    st = MLC_ERR_NOMEM;
  if (st == MLC_OK)
    st = open_records(dir, s, root, jname, &r, &nr);
  if (st == MLC_OK)
    st = mlc_pkg_params(cfg, &pp, &np);
  for (int i = 0; i < np && st == MLC_OK; i++) {
    const mlc_pparam *p = &pp[i];
    char base[160];
    snprintf(base, sizeof base, "%s", p->name);
    char *dot = strrchr(base, '.');
    if (dot && !strcmp(dot, ".weight"))
      *dot = 0;
    char qwn[180], qsn[180];
    snprintf(qwn, sizeof qwn, "%s.q_weight", base);
    snprintf(qsn, sizeof qsn, "%s.q_scale", base);
    const prec *qw = qs->bits && p->quant ? find_rec(r, nr, qwn) : NULL;
    if (qw) {
      const prec *sc = find_rec(r, nr, qsn);
      if (!sc) {
        st = mlc_err(MLC_ERR_FORMAT, "%s: '%s' has no '%s'", dir, qwn, qsn);
        break;
      }
      /* NK: the embedding, stacked experts (3-D) and NK schemes; KN: linear weights of q4f16_0 */
      bool kn = qs->kn && !p->embedding && qw->ndim == 2;
      mlc_dtype dt = kn || !qs->kn ? qs->dtype : MLC_Q4F16_1;
      const mlc_qscheme *q = mlc_qscheme_of(dt);
      int64_t W = mlc_q_words(q, p->cols), G = mlc_q_groups(q, p->cols), Kp = G * q->group;
      size_t ss = mlc_q_scale_size(q);
      if (strcmp(qw->dtype, "uint32") || qw->nbytes != (size_t)(p->rows * W) * 4 ||
          sc->nbytes != (size_t)(p->rows * G) * (sc->bf16enc ? 2 : ss)) {
        st = mlc_err(MLC_ERR_FORMAT, "%s: '%s' / '%s' do not hold a [%lld, %lld] %s weight", qw->file, qwn, qsn,
                     (long long)p->rows, (long long)p->cols, qs->name);
        break;
      }
      const unsigned char *sdata = sc->data;
      if (sc->bf16enc) { /* q4f32_1: f32 scales stored as bf16 */
        float *f = aligned_alloc(64, ((size_t)(p->rows * G) * 4 + 63) & ~(size_t)63);
        if (!f || mlc_st_keep_buf(s, f) != MLC_OK) {
          st = mlc_err(MLC_ERR_NOMEM, "out of memory");
          break;
        }
        for (int64_t k = 0; k < p->rows * G; k++) {
          uint16_t h;
          memcpy(&h, sc->data + 2 * k, 2);
          f[k] = mlc_bf16_to_f32(h);
        }
        sdata = (const unsigned char *)f;
      }
      const unsigned char *wdata = qw->data;
      int64_t r0 = 0;
      for (int j = 0; j < p->nsrc && st == MLC_OK; j++) {
        int64_t nrw = p->src_rows[j];
        const void *wd, *sd;
        if (kn && p->nsrc > 1) { /* a column window of the transposed arrays: copy it */
          uint32_t *wc = aligned_alloc(64, ((size_t)(nrw * W) * 4 + 63) & ~(size_t)63);
          unsigned char *scp = aligned_alloc(64, ((size_t)(nrw * G) * ss + 63) & ~(size_t)63);
          if (!wc || !scp || mlc_st_keep_buf(s, wc) != MLC_OK || mlc_st_keep_buf(s, scp) != MLC_OK) {
            st = mlc_err(MLC_ERR_NOMEM, "out of memory");
            break;
          }
          for (int64_t w = 0; w < W; w++)
            memcpy(wc + w * nrw, wdata + (size_t)(w * p->rows + r0) * 4, (size_t)nrw * 4);
          for (int64_t g = 0; g < G; g++)
            memcpy(scp + (size_t)(g * nrw) * ss, sdata + (size_t)(g * p->rows + r0) * ss, (size_t)nrw * ss);
          wd = wc;
          sd = scp;
        } else {
          wd = wdata + (size_t)(r0 * W) * 4;
          sd = sdata + (size_t)(r0 * G) * ss;
        }
        int64_t shape[2] = {nrw, Kp};
        mlc_st_tensor *t = mlc_st_add(s, p->src[j], dt, 2, shape, wd, (size_t)(nrw * W) * 4, qw->file);
        if (!t) {
          st = MLC_ERR_NOMEM;
          break;
        }
        t->scale = sd;
        t->scale_nbytes = (size_t)(nrw * G) * ss;
        r0 += nrw;
      }
      continue;
    }
    const prec *rc = find_rec(r, nr, p->name);
    if (!rc) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' not found in the package (quantization %s)", dir,
                   qs->bits && p->quant ? qwn : p->name, quant);
      break;
    }
    double numel = 1;
    for (int d = 0; d < rc->ndim; d++)
      numel *= (double)rc->shape[d];
    if (numel != (double)p->rows * (double)(p->cols ? p->cols : 1) || !strcmp(rc->dtype, "uint32")) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' (%s) does not hold a [%lld, %lld] float tensor", rc->file, p->name,
                   rc->dtype, (long long)p->rows, (long long)p->cols);
      break;
    }
    /* f32-to-bf16 records beside quantized weights are small (norms, biases): widen them */
    bool widen = rc->bf16enc && qs->bits;
    int64_t r0 = 0;
    for (int j = 0; j < p->nsrc && st == MLC_OK; j++) {
      st = add_float(s, rc, p->src[j], r0, p->src_rows[j], p->cols, widen, p->add_one);
      r0 += p->src_rows[j];
    }
  }
  if (st == MLC_OK)
    st = mlc_st_index(s);
  mlc_pkg_params_free(pp, np);
  free(r);
  cJSON_Delete(root);
  if (st != MLC_OK) {
    mlc_st_close(s);
    return st;
  }
  *out = s;
  return MLC_OK;
}
