/* gguf.c: GGUF files (see gguf.h). Layout: "GGUF", version (2 or 3), tensor count, metadata
 * count (u64), metadata key/values, tensor infos (name, dims, ggml type, offset), padding to
 * general.alignment (32), tensor data. */
#include "format/gguf.h"

#include <stdlib.h>
#include <string.h>

struct mlc_gguf {
  char *path;
  mlc_mmap map;
  cJSON *meta;
  mlc_gguf_tensor *t;
  int n;
};

typedef struct rd {
  const unsigned char *p, *end;
  const char *path;
  bool bad;
} rd;

static bool need(rd *r, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = true;
    return false;
  }
  return true;
}
static uint64_t ru(rd *r, int n) {
  if (!need(r, (size_t)n))
    return 0;
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)r->p[i] << (8 * i);
  r->p += n;
  return v;
}
static char *rstr(rd *r) {
  uint64_t n = ru(r, 8);
  if (r->bad || n > (1u << 30) || !need(r, (size_t)n)) {
    r->bad = true;
    return NULL;
  }
  char *s = malloc((size_t)n + 1);
  if (!s) {
    r->bad = true;
    return NULL;
  }
  memcpy(s, r->p, (size_t)n);
  s[n] = 0;
  r->p += n;
  return s;
}

static cJSON *rvalue(rd *r, uint32_t type, int depth) {
  union {
    uint32_t u;
    float f;
  } f32;
  union {
    uint64_t u;
    double f;
  } f64;
  switch (type) {
  case 0: return cJSON_CreateNumber((double)(uint8_t)ru(r, 1));
  case 1: return cJSON_CreateNumber((double)(int8_t)ru(r, 1));
  case 2: return cJSON_CreateNumber((double)(uint16_t)ru(r, 2));
  case 3: return cJSON_CreateNumber((double)(int16_t)ru(r, 2));
  case 4: return cJSON_CreateNumber((double)(uint32_t)ru(r, 4));
  case 5: return cJSON_CreateNumber((double)(int32_t)ru(r, 4));
  case 6: f32.u = (uint32_t)ru(r, 4); return cJSON_CreateNumber((double)f32.f);
  case 7: return cJSON_CreateBool(ru(r, 1) != 0);
  case 8: {
    char *s = rstr(r);
    if (!s)
      return NULL;
    cJSON *v = cJSON_CreateString(s);
    free(s);
    return v;
  }
  case 9: {
    uint32_t et = (uint32_t)ru(r, 4);
    uint64_t n = ru(r, 8);
    if (r->bad || depth > 2 || n > (uint64_t)(r->end - r->p)) {
      r->bad = true;
      return NULL;
    }
    cJSON *a = cJSON_CreateArray();
    for (uint64_t i = 0; a && i < n && !r->bad; i++) {
      cJSON *v = rvalue(r, et, depth + 1);
      if (!v) {
        r->bad = true;
        break;
      }
      cJSON_AddItemToArray(a, v);
    }
    return a;
  }
  case 10: return cJSON_CreateNumber((double)ru(r, 8));
  case 11: return cJSON_CreateNumber((double)(int64_t)ru(r, 8));
  case 12: f64.u = ru(r, 8); return cJSON_CreateNumber(f64.f);
  default: r->bad = true; return NULL;
  }
}

static const struct {
  uint32_t type;
  const char *name;
  int block;
  int bytes;
} TYPES[] = {
    {MLC_GGML_F32, "F32", 1, 4},      {MLC_GGML_F16, "F16", 1, 2},      {MLC_GGML_BF16, "BF16", 1, 2},
    {MLC_GGML_Q4_0, "Q4_0", 32, 18},  {MLC_GGML_Q4_1, "Q4_1", 32, 20},  {MLC_GGML_Q5_0, "Q5_0", 32, 22},
    {MLC_GGML_Q5_1, "Q5_1", 32, 24},  {MLC_GGML_Q8_0, "Q8_0", 32, 34},  {MLC_GGML_Q2_K, "Q2_K", 256, 84},
    {MLC_GGML_Q3_K, "Q3_K", 256, 110}, {MLC_GGML_Q4_K, "Q4_K", 256, 144}, {MLC_GGML_Q5_K, "Q5_K", 256, 176},
    {MLC_GGML_Q6_K, "Q6_K", 256, 210},
};
static int type_idx(uint32_t t) {
  for (int i = 0; i < (int)(sizeof TYPES / sizeof TYPES[0]); i++)
    if (TYPES[i].type == t)
      return i;
  return -1;
}
const char *mlc_gguf_type_name(uint32_t type) {
  int i = type_idx(type);
  return i < 0 ? "unsupported" : TYPES[i].name;
}
size_t mlc_gguf_row_bytes(uint32_t type, int64_t n) {
  int i = type_idx(type);
  if (i < 0 || n % TYPES[i].block)
    return 0;
  return (size_t)(n / TYPES[i].block) * (size_t)TYPES[i].bytes;
}

void mlc_gguf_close(mlc_gguf *g) {
  if (!g)
    return;
  for (int i = 0; i < g->n; i++)
    free(g->t[i].name);
  free(g->t);
  cJSON_Delete(g->meta);
  mlc_mmap_close(&g->map);
  free(g->path);
  free(g);
}
int mlc_gguf_count(const mlc_gguf *g) { return g->n; }
const mlc_gguf_tensor *mlc_gguf_at(const mlc_gguf *g, int i) { return i >= 0 && i < g->n ? &g->t[i] : NULL; }
const mlc_gguf_tensor *mlc_gguf_find(const mlc_gguf *g, const char *name) {
  for (int i = 0; i < g->n; i++)
    if (!strcmp(g->t[i].name, name))
      return &g->t[i];
  return NULL;
}
const char *mlc_gguf_path(const mlc_gguf *g) { return g->path; }
const cJSON *mlc_gguf_meta(const mlc_gguf *g) { return g->meta; }

mlc_status mlc_gguf_open(const char *path, mlc_gguf **out) {
  *out = NULL;
  mlc_gguf *g = calloc(1, sizeof *g);
  if (!g || !(g->path = mlc_strdup(path))) {
    free(g);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  mlc_status st = mlc_mmap_open(path, &g->map);
  if (st != MLC_OK) {
    mlc_gguf_close(g);
    return st;
  }
  rd r = {g->map.data, (const unsigned char *)g->map.data + g->map.size, path, false};
  if (g->map.size < 24 || memcmp(g->map.data, "GGUF", 4) != 0) {
    mlc_gguf_close(g);
    return mlc_err(MLC_ERR_FORMAT, "%s: not a GGUF file (no GGUF magic)", path);
  }
  r.p += 4;
  uint32_t ver = (uint32_t)ru(&r, 4);
  if (ver != 2 && ver != 3) {
    mlc_gguf_close(g);
    return mlc_err(MLC_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", path, ver);
  }
  uint64_t nt = ru(&r, 8), nkv = ru(&r, 8);
  if (nt > (1u << 24) || nkv > (1u << 24)) {
    mlc_gguf_close(g);
    return mlc_err(MLC_ERR_FORMAT, "%s: implausible counts (%llu tensors, %llu metadata keys)", path,
                   (unsigned long long)nt, (unsigned long long)nkv);
  }
  g->meta = cJSON_CreateObject();
  for (uint64_t i = 0; i < nkv && !r.bad; i++) {
    char *key = rstr(&r);
    uint32_t type = (uint32_t)ru(&r, 4);
    cJSON *v = key ? rvalue(&r, type, 0) : NULL;
    if (v && key)
      cJSON_AddItemToObject(g->meta, key, v);
    else
      r.bad = true;
    free(key);
  }
  if (r.bad) {
    mlc_gguf_close(g);
    return mlc_err(MLC_ERR_FORMAT, "%s: truncated or malformed metadata", path);
  }
  g->t = calloc((size_t)nt + 1, sizeof *g->t);
  uint64_t *offs = calloc((size_t)nt + 1, sizeof *offs);
  if (!g->t || !offs) {
    free(offs);
    mlc_gguf_close(g);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  for (uint64_t i = 0; i < nt && !r.bad; i++) {
    mlc_gguf_tensor *t = &g->t[i];
    t->name = rstr(&r);
    uint32_t nd = (uint32_t)ru(&r, 4);
    if (nd < 1 || nd > 4) {
      r.bad = true;
      break;
    }
    t->ndim = (int)nd;
    for (int d = 0; d < 4; d++)
      t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++)
      t->ne[d] = (int64_t)ru(&r, 8);
    t->type = (uint32_t)ru(&r, 4);
    offs[i] = ru(&r, 8);
    g->n = (int)i + 1;
  }
  cJSON *al = cJSON_GetObjectItem(g->meta, "general.alignment");
  uint64_t align = cJSON_IsNumber(al) && al->valuedouble >= 1 ? (uint64_t)al->valuedouble : 32;
  size_t pos = (size_t)(r.p - (const unsigned char *)g->map.data);
  size_t data0 = (pos + align - 1) / align * align;
  for (int i = 0; i < g->n && !r.bad && st == MLC_OK; i++) {
    mlc_gguf_tensor *t = &g->t[i];
    size_t rb = mlc_gguf_row_bytes(t->type, t->ne[0]);
    if (!rb) {
      st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: tensor '%s' has ggml type %u (%s), not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)",
                   path, t->name, t->type, mlc_gguf_type_name(t->type));
      break;
    }
    t->nbytes = rb * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
    if (offs[i] % align || data0 + offs[i] + t->nbytes > g->map.size) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': %zu bytes at offset %llu lie outside the file (%zu bytes) or are misaligned",
                   path, t->name, t->nbytes, (unsigned long long)offs[i], g->map.size);
      break;
    }
    t->data = (const unsigned char *)g->map.data + data0 + offs[i];
  }
  free(offs);
  if (r.bad && st == MLC_OK)
    st = mlc_err(MLC_ERR_FORMAT, "%s: truncated or malformed tensor infos", path);
  if (st != MLC_OK) {
    mlc_gguf_close(g);
    return st;
  }
  *out = g;
  return MLC_OK;
}

/* ---- dequantization (llama.cpp's block layouts) ---- */

static float h2f(const unsigned char *p) { return mlc_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void scale_min_k4(int j, const unsigned char *q, int *d, int *m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void mlc_gguf_dequant_row(uint32_t type, const void *row, float *y, int64_t n) {
  const unsigned char *b = row;
  switch (type) {
  case MLC_GGML_F32: memcpy(y, row, sizeof(float) * (size_t)n); return;
  case MLC_GGML_F16:
    for (int64_t i = 0; i < n; i++)
      y[i] = h2f(b + 2 * i);
    return;
  case MLC_GGML_BF16:
    for (int64_t i = 0; i < n; i++)
      y[i] = mlc_bf16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
    return;
  default: break;
  }
  if (type == MLC_GGML_Q4_0 || type == MLC_GGML_Q4_1 || type == MLC_GGML_Q5_0 || type == MLC_GGML_Q5_1 ||
      type == MLC_GGML_Q8_0) {
    for (int64_t blk = 0; blk < n / 32; blk++, y += 32) {
      float d = h2f(b), m = 0;
      switch (type) {
      case MLC_GGML_Q4_0:
        for (int j = 0; j < 16; j++) {
          y[j] = (float)((b[2 + j] & 0xF) - 8) * d;
          y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
        b += 18;
        break;
      case MLC_GGML_Q4_1:
        m = h2f(b + 2);
        for (int j = 0; j < 16; j++) {
          y[j] = (float)(b[4 + j] & 0xF) * d + m;
          y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
        b += 20;
        break;
      case MLC_GGML_Q5_0:
      case MLC_GGML_Q5_1: {
        bool one = type == MLC_GGML_Q5_1;
        if (one)
          m = h2f(b + 2);
        const unsigned char *qhp = b + (one ? 4 : 2), *qs = qhp + 4;
        uint32_t qh = (uint32_t)qhp[0] | (uint32_t)qhp[1] << 8 | (uint32_t)qhp[2] << 16 | (uint32_t)qhp[3] << 24;
        for (int j = 0; j < 16; j++) {
          int x0 = (qs[j] & 0xF) | (int)(((qh >> j) << 4) & 0x10);
          int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
          if (one) {
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
          } else {
            y[j] = (float)(x0 - 16) * d;
            y[j + 16] = (float)(x1 - 16) * d;
          }
        }
        b += one ? 24 : 22;
        break;
      }
      default: /* Q8_0 */
        for (int j = 0; j < 32; j++)
          y[j] = (float)(int8_t)b[2 + j] * d;
        b += 34;
        break;
      }
    }
    return;
  }
  for (int64_t blk = 0; blk < n / 256; blk++) {
    switch (type) {
    case MLC_GGML_Q2_K: {
      const unsigned char *sc = b, *q = b + 16;
      float d = h2f(b + 80), mn = h2f(b + 82);
      int is = 0;
      for (int nn = 0; nn < 256; nn += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
          int s = sc[is++];
          float dl = d * (float)(s & 0xF), ml = mn * (float)(s >> 4);
          for (int l = 0; l < 16; l++)
            *y++ = dl * (float)((q[l] >> shift) & 3) - ml;
          s = sc[is++];
          dl = d * (float)(s & 0xF);
          ml = mn * (float)(s >> 4);
          for (int l = 0; l < 16; l++)
            *y++ = dl * (float)((q[l + 16] >> shift) & 3) - ml;
          shift += 2;
        }
        q += 32;
      }
      b += 84;
      break;
    }
    case MLC_GGML_Q3_K: {
      const unsigned char *hm = b, *q = b + 32;
      float d = h2f(b + 108);
      uint32_t aux[4];
      memcpy(aux, b + 96, 12);
      uint32_t tmp = aux[2];
      const uint32_t k1 = 0x03030303, k2 = 0x0f0f0f0f;
      aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
      aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
      aux[0] = (aux[0] & k2) | (((tmp >> 0) & k1) << 4);
      aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
      int8_t scales[16];
      memcpy(scales, aux, 16);
      int is = 0;
      unsigned m = 1;
      for (int nn = 0; nn < 256; nn += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
          float dl = d * (float)(scales[is++] - 32);
          for (int l = 0; l < 16; l++)
            *y++ = dl * (float)((int)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
          dl = d * (float)(scales[is++] - 32);
          for (int l = 0; l < 16; l++)
            *y++ = dl * (float)((int)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
          shift += 2;
          m <<= 1;
        }
        q += 32;
      }
      b += 110;
      break;
    }
    case MLC_GGML_Q4_K:
    case MLC_GGML_Q5_K: {
      bool five = type == MLC_GGML_Q5_K;
      float d = h2f(b), mn = h2f(b + 2);
      const unsigned char *sc = b + 4, *qh = b + 16, *q = b + (five ? 48 : 16);
      int is = 0;
      unsigned u1 = 1, u2 = 2;
      for (int j = 0; j < 256; j += 64) {
        int s, m;
        scale_min_k4(is, sc, &s, &m);
        float d1 = d * (float)s, m1 = mn * (float)m;
        scale_min_k4(is + 1, sc, &s, &m);
        float d2 = d * (float)s, m2 = mn * (float)m;
        for (int l = 0; l < 32; l++)
          *y++ = d1 * (float)((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++)
          *y++ = d2 * (float)((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
        q += 32;
        is += 2;
        u1 <<= 2;
        u2 <<= 2;
      }
      b += five ? 176 : 144;
      break;
    }
    default: { /* Q6_K */
      const unsigned char *ql = b, *qh = b + 128;
      const int8_t *sc = (const int8_t *)(b + 192);
      float d = h2f(b + 208);
      for (int nn = 0; nn < 256; nn += 128) {
        for (int l = 0; l < 32; l++) {
          int is = l / 16;
          int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          y[l] = d * (float)sc[is] * (float)q1;
          y[l + 32] = d * (float)sc[is + 2] * (float)q2;
          y[l + 64] = d * (float)sc[is + 4] * (float)q3;
          y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
      }
      b += 210;
      break;
    }
    }
  }
}

/* ---- Hugging Face view ---- */

static double meta_num(const mlc_gguf *g, const char *arch, const char *key, double def) {
  char k[160];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  cJSON *v = cJSON_GetObjectItem(g->meta, k);
  return cJSON_IsNumber(v) ? v->valuedouble : def;
}

mlc_status mlc_gguf_hf(const mlc_gguf *g, cJSON **config, mlc_gguf_src **srcs, int *nsrc) {
  *config = NULL;
  *srcs = NULL;
  *nsrc = 0;
  cJSON *av = cJSON_GetObjectItem(g->meta, "general.architecture");
  if (!cJSON_IsString(av))
    return mlc_err(MLC_ERR_FORMAT, "%s: no general.architecture", g->path);
  const char *arch = av->valuestring;
  int E = (int)meta_num(g, arch, "expert_count", 0);
  const char *mt = NULL;
  if (!strcmp(arch, "llama"))
    mt = E > 0 ? "mixtral" : "llama";
  else if (!strcmp(arch, "qwen2") || !strcmp(arch, "qwen3") || !strcmp(arch, "phi3") || !strcmp(arch, "gemma2"))
    mt = arch;
  else if (!strcmp(arch, "qwen3moe"))
    mt = "qwen3_moe";
  if (!mt)
    return mlc_err(MLC_ERR_UNSUPPORTED, "%s: GGUF architecture '%s' is not supported (llama, qwen2, qwen3, qwen3moe, phi3, gemma2)",
                   g->path, arch);
  const mlc_gguf_tensor *emb = mlc_gguf_find(g, "token_embd.weight");
  if (!emb)
    return mlc_err(MLC_ERR_FORMAT, "%s: no token_embd.weight", g->path);
  int H = (int)meta_num(g, arch, "embedding_length", (double)emb->ne[0]);
  int L = (int)meta_num(g, arch, "block_count", 0);
  int Hq = (int)meta_num(g, arch, "attention.head_count", 0);
  int Hkv = (int)meta_num(g, arch, "attention.head_count_kv", Hq);
  int D = (int)meta_num(g, arch, "attention.key_length", Hq ? H / Hq : 0);
  cJSON *toks = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.tokens");
  int V = (int)emb->ne[1];
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "model_type", mt);
  cJSON_AddNumberToObject(c, "vocab_size", V);
  cJSON_AddNumberToObject(c, "hidden_size", H);
  cJSON_AddNumberToObject(c, "intermediate_size", meta_num(g, arch, "feed_forward_length", 0));
  cJSON_AddNumberToObject(c, "num_hidden_layers", L);
  cJSON_AddNumberToObject(c, "num_attention_heads", Hq);
  cJSON_AddNumberToObject(c, "num_key_value_heads", Hkv);
  cJSON_AddNumberToObject(c, "head_dim", D);
  cJSON_AddNumberToObject(c, "rms_norm_eps", meta_num(g, arch, "attention.layer_norm_rms_epsilon", 1e-5));
  cJSON_AddNumberToObject(c, "rope_theta", meta_num(g, arch, "rope.freq_base", 10000));
  cJSON_AddNumberToObject(c, "max_position_embeddings", meta_num(g, arch, "context_length", 4096));
  cJSON_AddBoolToObject(c, "tie_word_embeddings", mlc_gguf_find(g, "output.weight") == NULL);
  double rot = meta_num(g, arch, "rope.dimension_count", D);
  if (D > 0 && rot != D)
    cJSON_AddNumberToObject(c, "partial_rotary_factor", rot / D);
  cJSON *bos = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.bos_token_id"),
        *eos = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.eos_token_id");
  if (cJSON_IsNumber(bos))
    cJSON_AddNumberToObject(c, "bos_token_id", bos->valuedouble);
  if (cJSON_IsNumber(eos))
    cJSON_AddNumberToObject(c, "eos_token_id", eos->valuedouble);
  if (!strcmp(mt, "qwen2") || (!strcmp(mt, "qwen3") && mlc_gguf_find(g, "blk.0.attn_q.bias")))
    cJSON_AddBoolToObject(c, "attention_bias", mlc_gguf_find(g, "blk.0.attn_q.bias") != NULL);
  if (E > 0) {
    cJSON_AddNumberToObject(c, !strcmp(mt, "mixtral") ? "num_local_experts" : "num_experts", E);
    cJSON_AddNumberToObject(c, "num_experts_per_tok", meta_num(g, arch, "expert_used_count", 2));
    if (!strcmp(mt, "qwen3_moe")) {
      cJSON_AddNumberToObject(c, "moe_intermediate_size", meta_num(g, arch, "expert_feed_forward_length", 0));
      cJSON_AddBoolToObject(c, "norm_topk_prob", true);
    }
  }
  if (!strcmp(mt, "gemma2")) {
    cJSON_AddStringToObject(c, "hidden_activation", "gelu_pytorch_tanh");
    cJSON_AddNumberToObject(c, "attn_logit_softcapping", meta_num(g, arch, "attn_logit_softcapping", 50));
    cJSON_AddNumberToObject(c, "final_logit_softcapping", meta_num(g, arch, "final_logit_softcapping", 30));
    cJSON_AddNumberToObject(c, "sliding_window", meta_num(g, arch, "attention.sliding_window", 4096));
    cJSON_AddNumberToObject(c, "query_pre_attn_scalar", D);
  }
  (void)toks;

  /* tensors */
  int cap = g->n + (E > 0 ? 3 * E * L : 0) + 8, n = 0;
  mlc_gguf_src *s = calloc((size_t)cap, sizeof *s);
  if (!s) {
    cJSON_Delete(c);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  bool llama = !strcmp(arch, "llama"), gemma = !strcmp(mt, "gemma2"), phi3 = !strcmp(mt, "phi3");
  const char *moe_blk = !strcmp(mt, "mixtral") ? "block_sparse_moe" : "mlp";
  for (int i = 0; i < g->n; i++) {
    const mlc_gguf_tensor *t = &g->t[i];
    int l = -1, pos = 0;
    char rest[96] = {0};
    if (sscanf(t->name, "blk.%d.%n", &l, &pos) == 1 && pos > 0)
      snprintf(rest, sizeof rest, "%s", t->name + pos);
    mlc_gguf_src x = {.t = t, .row0 = 0, .rows = t->ne[1] * t->ne[2] * t->ne[3], .cols = t->ne[0]};
    if (t->ndim == 1)
      x.cols = 0, x.rows = t->ne[0];
    const char *hf = NULL;
    char buf[160];
    if (!strcmp(t->name, "token_embd.weight"))
      hf = "model.embed_tokens.weight";
    else if (!strcmp(t->name, "output_norm.weight"))
      hf = "model.norm.weight", x.minus_one = gemma;
    else if (!strcmp(t->name, "output.weight"))
      hf = "lm_head.weight";
    else if (l >= 0) {
      static const char *map[][2] = {
          {"attn_q.weight", "self_attn.q_proj.weight"},     {"attn_k.weight", "self_attn.k_proj.weight"},
          {"attn_v.weight", "self_attn.v_proj.weight"},     {"attn_output.weight", "self_attn.o_proj.weight"},
          {"attn_q.bias", "self_attn.q_proj.bias"},         {"attn_k.bias", "self_attn.k_proj.bias"},
          {"attn_v.bias", "self_attn.v_proj.bias"},         {"attn_qkv.weight", "self_attn.qkv_proj.weight"},
          {"attn_q_norm.weight", "self_attn.q_norm.weight"}, {"attn_k_norm.weight", "self_attn.k_norm.weight"},
          {"attn_norm.weight", "input_layernorm.weight"},   {"ffn_gate.weight", "mlp.gate_proj.weight"},
          {"ffn_down.weight", "mlp.down_proj.weight"},      {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
          {"post_attention_norm.weight", "post_attention_layernorm.weight"},
      };
      for (size_t k = 0; k < sizeof map / sizeof map[0] && !hf; k++)
        if (!strcmp(rest, map[k][0]))
          hf = map[k][1];
      if (!strcmp(rest, "ffn_up.weight"))
        hf = phi3 ? "mlp.gate_up_proj.weight" : "mlp.up_proj.weight";
      if (!strcmp(rest, "ffn_norm.weight"))
        hf = gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight";
      if (!strcmp(rest, "ffn_gate_inp.weight")) {
        snprintf(buf, sizeof buf, "%s.gate.weight", moe_blk);
        hf = buf;
      }
      if (hf) {
        char full[320];
        snprintf(full, sizeof full, "model.layers.%d.%s", l, hf);
        snprintf(x.name, sizeof x.name, "%s", full);
        if (gemma && strstr(rest, "norm") && !strstr(rest, "attn_q_norm") && !strstr(rest, "attn_k_norm"))
          x.minus_one = true;
        if (llama && !strcmp(rest, "attn_q.weight"))
          x.unpermute = Hq;
        if (llama && !strcmp(rest, "attn_k.weight"))
          x.unpermute = Hkv;
        s[n++] = x;
        continue;
      }
      static const char *exps[3][3] = {{"ffn_gate_exps.weight", "w1", "gate_proj"},
                                       {"ffn_up_exps.weight", "w3", "up_proj"},
                                       {"ffn_down_exps.weight", "w2", "down_proj"}};
      for (int k = 0; k < 3; k++) {
        if (strcmp(rest, exps[k][0]))
          continue;
        int64_t per = t->ne[1];
        for (int e = 0; e < t->ne[2] && n < cap; e++) {
          mlc_gguf_src y = x;
          y.row0 = e * per;
          y.rows = per;
          snprintf(y.name, sizeof y.name, "model.layers.%d.%s.experts.%d.%s.weight", l, moe_blk, e,
                   !strcmp(mt, "mixtral") ? exps[k][1] : exps[k][2]);
          s[n++] = y;
        }
        hf = "";
      }
      if (hf)
        continue;
    }
    if (!hf)
      continue; /* rope_freqs and other tensors the HF model does not have */
    snprintf(x.name, sizeof x.name, "%s", hf);
    s[n++] = x;
  }
  *config = c;
  *srcs = s;
  *nsrc = n;
  return MLC_OK;
}

/* ---- tokenizer ---- */

mlc_status mlc_gguf_tokenizer_json(const mlc_gguf *g, char **out) {
  *out = NULL;
  cJSON *model = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.model");
  cJSON *toks = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.tokens");
  cJSON *types = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.token_type");
  cJSON *scores = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.scores");
  cJSON *merges = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.merges");
  if (!cJSON_IsString(model) || !cJSON_IsArray(toks))
    return mlc_err(MLC_ERR_FORMAT, "%s: no tokenizer.ggml.model / tokenizer.ggml.tokens", g->path);
  bool spm = !strcmp(model->valuestring, "llama");
  bool bpe = !strcmp(model->valuestring, "gpt2");
  if (!spm && !bpe)
    return mlc_err(MLC_ERR_UNSUPPORTED, "%s: tokenizer model '%s' is not supported (llama, gpt2)", g->path,
                   model->valuestring);
  int n = cJSON_GetArraySize(toks);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "version", "1.0");
  cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
  cJSON *m = cJSON_CreateObject();
  cJSON *vocab = NULL;
  if (spm) {
    /* SentencePiece with scores: a Unigram model (byte fallback pieces <0xNN>) */
    cJSON_AddStringToObject(m, "type", "Unigram");
    int unk = 0;
    cJSON *uid = cJSON_GetObjectItem(g->meta, "tokenizer.ggml.unknown_token_id");
    if (cJSON_IsNumber(uid))
      unk = uid->valueint;
    cJSON_AddNumberToObject(m, "unk_id", unk);
    vocab = cJSON_AddArrayToObject(m, "vocab");
    cJSON_AddBoolToObject(m, "byte_fallback", true);
  } else {
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddBoolToObject(m, "byte_fallback", false);
    vocab = cJSON_AddObjectToObject(m, "vocab");
    cJSON *mg = cJSON_AddArrayToObject(m, "merges");
    for (int i = 0; cJSON_IsArray(merges) && i < cJSON_GetArraySize(merges); i++)
      cJSON_AddItemToArray(mg, cJSON_CreateString(cJSON_GetArrayItem(merges, i)->valuestring));
  }
  for (int i = 0; i < n; i++) {
    const char *tok = cJSON_GetArrayItem(toks, i)->valuestring;
    int ty = cJSON_IsArray(types) ? cJSON_GetArrayItem(types, i)->valueint : 1;
    if (spm) {
      cJSON *pair = cJSON_CreateArray();
      cJSON_AddItemToArray(pair, cJSON_CreateString(tok));
      cJSON_AddItemToArray(pair, cJSON_CreateNumber(cJSON_IsArray(scores) ? cJSON_GetArrayItem(scores, i)->valuedouble : 0));
      cJSON_AddItemToArray(vocab, pair);
    } else {
      cJSON_AddNumberToObject(vocab, tok, i);
    }
    if (ty == 3 || ty == 4) { /* control / user-defined */
      cJSON *a = cJSON_CreateObject();
      cJSON_AddNumberToObject(a, "id", i);
      cJSON_AddStringToObject(a, "content", tok);
      cJSON_AddBoolToObject(a, "single_word", false);
      cJSON_AddBoolToObject(a, "lstrip", false);
      cJSON_AddBoolToObject(a, "rstrip", false);
      cJSON_AddBoolToObject(a, "normalized", false);
      cJSON_AddBoolToObject(a, "special", ty == 3);
      cJSON_AddItemToArray(added, a);
    }
  }
  if (spm) {
    cJSON *norm = cJSON_AddObjectToObject(j, "normalizer");
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON *ns = cJSON_AddArrayToObject(norm, "normalizers");
    cJSON *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "type", "Prepend");
    cJSON_AddStringToObject(pre, "prepend", "\xe2\x96\x81");
    cJSON_AddItemToArray(ns, pre);
    cJSON *rep = cJSON_CreateObject();
    cJSON_AddStringToObject(rep, "type", "Replace");
    cJSON *pat = cJSON_AddObjectToObject(rep, "pattern");
    cJSON_AddStringToObject(pat, "String", " ");
    cJSON_AddStringToObject(rep, "content", "\xe2\x96\x81");
    cJSON_AddItemToArray(ns, rep);
    cJSON_AddNullToObject(j, "pre_tokenizer");
    cJSON *dec = cJSON_AddObjectToObject(j, "decoder");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *ds = cJSON_AddArrayToObject(dec, "decoders");
    cJSON *d1 = cJSON_CreateObject();
    cJSON_AddStringToObject(d1, "type", "Replace");
    cJSON *p1 = cJSON_AddObjectToObject(d1, "pattern");
    cJSON_AddStringToObject(p1, "String", "\xe2\x96\x81");
    cJSON_AddStringToObject(d1, "content", " ");
    cJSON_AddItemToArray(ds, d1);
    cJSON *d2 = cJSON_CreateObject();
    cJSON_AddStringToObject(d2, "type", "ByteFallback");
    cJSON_AddItemToArray(ds, d2);
    cJSON *d3 = cJSON_CreateObject();
    cJSON_AddStringToObject(d3, "type", "Fuse");
    cJSON_AddItemToArray(ds, d3);
    cJSON *d4 = cJSON_CreateObject();
    cJSON_AddStringToObject(d4, "type", "Strip");
    cJSON_AddStringToObject(d4, "content", " ");
    cJSON_AddNumberToObject(d4, "start", 1);
    cJSON_AddNumberToObject(d4, "stop", 0);
    cJSON_AddItemToArray(ds, d4);
  } else {
    cJSON_AddNullToObject(j, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(j, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", false);
    cJSON_AddBoolToObject(pre, "trim_offsets", true);
    cJSON_AddBoolToObject(pre, "use_regex", true);
    cJSON *dec = cJSON_AddObjectToObject(j, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", true);
    cJSON_AddBoolToObject(dec, "trim_offsets", true);
    cJSON_AddBoolToObject(dec, "use_regex", true);
  }
  cJSON_AddItemToObject(j, "model", m);
  *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return *out ? MLC_OK : mlc_err(MLC_ERR_NOMEM, "out of memory");
}
