/*
 * test_quant.c: quantization and MLC packages.
 *  - group quantization against a reference written here from MLC's definition (ties round
 *    half away from zero, offset 7, clamp 0..14, LSB-first nibbles, q3 10 per word, KN layout);
 *  - a package built by hand in MLC's exact layout (fused qkv_proj / gate_up_proj, q_weight /
 *    q_scale, params_shard_0.bin, ndarray-cache.json) loads and gives the fp32 reference logits
 *    within the q4f16_1 budget;
 *  - `mlc_convert` output re-read field by field (index, sharding, md5, dequantized weights bit
 *    for bit against the reference);
 *  - a GGUF file written here (Q4_0 / Q8_0 blocks, llama.cpp's Q/K row permutation, tokenizer
 *    metadata) converts losslessly and runs;
 *  - truncated and corrupted shards are reported as such;
 *  - every fixture architecture in every scheme against the fp32 reference logits.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/convert.h"
#include "format/format.h"
#include "format/package.h"
#include "format/quant.h"
#include "mlc.h"

static int passed, failed;
static void rm_rf(const char *p);
static const char *root;
static char tmpdir[256];

static void check(bool ok, const char *what, const char *detail) {
  if (ok)
    passed++;
  else {
    failed++;
    printf("FAIL %s: %s\n", what, detail ? detail : "");
  }
}

/* ---- reference quantizer, from the spec ---- */

static float f16r(float x) { return mlc_f16_to_f32(mlc_f32_to_f16(x)); }
static float rnd_away(float x) { return x < 0 ? -floorf(-x + 0.5f) : floorf(x + 0.5f); }

/* one row: bits, per word, group, max_int; f16 model arithmetic when f16 */
static void ref_quant_row(const float *w, int K, int bits, int epw, int group, int maxi, bool f16, uint32_t *words,
                          float *scales) {
  int G = (K + group - 1) / group, W = G * (group / epw);
  memset(words, 0, sizeof(uint32_t) * (size_t)W);
  for (int g = 0; g < G; g++) {
    float mx = 0;
    for (int k = g * group; k < K && k < (g + 1) * group; k++) {
      float v = f16 ? f16r(w[k]) : w[k];
      mx = fmaxf(mx, fabsf(v));
    }
    float s = f16 ? f16r(mx / (float)maxi) : mx / (float)maxi;
    scales[g] = s;
    for (int k = g * group; k < K && k < (g + 1) * group; k++) {
      float v = f16 ? f16r(w[k]) : w[k];
      float t = f16 ? f16r(f16r(v / s) + (float)maxi) : v / s + (float)maxi;
      float r = isnan(t) ? 0 : rnd_away(t);
      int q = r < 0 ? 0 : r > 2 * maxi ? 2 * maxi : (int)r;
      words[k / epw] |= (uint32_t)q << ((k % epw) * bits);
    }
  }
}

static void test_quantize(void) {
  /* hand-made ties: scale 1 (max 7), w + 7 = x.5 must round away from zero */
  float w[32] = {7, -7, 3.5f, -3.5f, 0.5f, -0.5f, 2.5f, -2.5f, 0, 1, -1, 6.5f};
  uint32_t q[4];
  uint16_t s[1];
  mlc_q_quantize_rows(mlc_qscheme_find("q4f16_1"), w, 32, 0, 1, q, s);
  int want[12] = {14, 0, 11, 4, 8, 7, 10, 5, 7, 8, 6, 14};
  bool ok = mlc_f16_to_f32(s[0]) == 1.0f;
  for (int k = 0; k < 12; k++)
    ok &= (int)((q[k / 8] >> ((k % 8) * 4)) & 15) == want[k];
  check(ok, "q4f16_1 ties round half away from zero, offset 7, clamp 0..14", NULL);
  /* random rows in every group scheme against the reference */
  static const struct {
    const char *name;
    int bits, epw, group, maxi;
    bool f16;
  } S[] = {{"q4f16_1", 4, 8, 32, 7, true},
           {"q4f32_1", 4, 8, 32, 7, false},
           {"q3f16_1", 3, 10, 40, 3, true},
           {"q8f16_1", 8, 4, 32, 127, true},
           {"q4f16_0", 4, 8, 32, 7, true}};
  int N = 7, K = 100; /* K not a multiple of any group: padded tails */
  float *x = malloc(sizeof(float) * (size_t)(N * K));
  unsigned seed = 12345;
  for (int i = 0; i < N * K; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = ((float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f) * (i % 13 == 0 ? 8.0f : 1.0f);
  }
  for (int k = 0; k < K; k++)
    x[3 * K + k] = 0; /* an all-zero row: scale 0, values 0 */
  for (size_t si = 0; si < sizeof S / sizeof S[0]; si++) {
    const mlc_qscheme *qs = mlc_qscheme_find(S[si].name);
    int64_t W = mlc_q_words(qs, K), G = mlc_q_groups(qs, K);
    uint32_t *qw = calloc((size_t)(N * W), 4), *rw = calloc((size_t)W, 4);
    void *sc = calloc((size_t)(N * G), 4);
    float *rs = calloc((size_t)G, 4);
    mlc_q_quantize_rows(qs, x, K, 0, N, qw, sc);
    bool ok = true, deq = true;
    for (int n = 0; n < N; n++) {
      ref_quant_row(x + n * K, K, S[si].bits, S[si].epw, S[si].group, S[si].maxi, S[si].f16, rw, rs);
      ok &= memcmp(rw, qw + n * W, sizeof(uint32_t) * (size_t)W) == 0;
      for (int g = 0; g < G; g++) {
        float got = S[si].f16 ? mlc_f16_to_f32(((uint16_t *)sc)[n * G + g]) : ((float *)sc)[n * G + g];
        ok &= got == rs[g];
      }
      /* dequantize: (q - max_int) * scale, element by element from the spec's bit positions */
      for (int k = 0; k < K; k++) {
        int qv = (int)((rw[k / S[si].epw] >> ((k % S[si].epw) * S[si].bits)) & ((1u << S[si].bits) - 1));
        float want = (float)(qv - S[si].maxi) * rs[k / S[si].group];
        const mlc_qscheme *nk = qs->kn ? mlc_qscheme_find("q4f16_1") : qs;
        deq &= mlc_q_dequant(nk, qw, sc, N, K, n, k) == want;
      }
    }
    if (qs->kn) { /* KN: words [W, N], scales [G, N] */
      uint32_t *tw = calloc((size_t)(N * W), 4);
      void *ts = calloc((size_t)(N * G), 4);
      mlc_q_to_kn(qs, N, K, qw, sc, tw, ts);
      for (int n = 0; n < N; n++)
        for (int64_t w2 = 0; w2 < W; w2++)
          ok &= tw[w2 * N + n] == qw[n * W + w2];
      for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
          deq &= mlc_q_dequant(qs, tw, ts, N, K, n, k) == mlc_q_dequant(mlc_qscheme_find("q4f16_1"), qw, sc, N, K, n, k);
      free(tw);
      free(ts);
    }
    char label[96];
    snprintf(label, sizeof label, "%s quantize = reference (words and scales bit for bit)", S[si].name);
    check(ok, label, NULL);
    snprintf(label, sizeof label, "%s dequantize = (q - max_int) * scale", S[si].name);
    check(deq, label, NULL);
    free(qw);
    free(rw);
    free(sc);
    free(rs);
  }
  /* TVM's f32-to-bf16 encoding: nearest even inside the range, truncation beyond */
  check(mlc_tvm_f32_to_bf16(1.00390625f) == 0x3f80 && mlc_tvm_f32_to_bf16(1.01171875f) == 0x3f82 &&
            mlc_tvm_f32_to_bf16(3.4028235e38f) == 0x7f7f,
        "f32-to-bf16 rounding", NULL);
  free(x);
}

/* ---- reference logits ---- */

typedef struct ref {
  int32_t ids[64];
  int n, V;
  float *logits;
} ref;

static bool load_ref(const char *dir, ref *r) {
  char p[1024];
  snprintf(p, sizeof p, "%s/ref.json", dir);
  cJSON *j = NULL;
  if (mlc_json_load(p, &j) != MLC_OK)
    return false;
  cJSON *ids = cJSON_GetObjectItem(j, "input_ids"), *lg = cJSON_GetObjectItem(j, "logits");
  r->n = cJSON_GetArraySize(ids);
  r->V = cJSON_GetArraySize(cJSON_GetArrayItem(lg, 0));
  for (int i = 0; i < r->n; i++)
    r->ids[i] = cJSON_GetArrayItem(ids, i)->valueint;
  r->logits = malloc(sizeof(float) * (size_t)(r->n * r->V));
  for (int i = 0; i < r->n; i++)
    for (int v = 0; v < r->V; v++)
      r->logits[i * r->V + v] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(lg, i), v)->valuedouble;
  cJSON_Delete(j);
  return true;
}

/* worst relative L2 error over positions; < 0 when loading or running failed */
static double logits_err(const char *path, const ref *r, int generic, char *err, size_t errn) {
  mlc_model_options opt = {.threads = 2, .generic_kernels = generic};
  mlc_model *m = NULL;
  if (mlc_model_load(path, &opt, &m) != MLC_OK) {
    snprintf(err, errn, "%s", mlc_last_error());
    return -1;
  }
  float *lg = malloc(sizeof(float) * (size_t)(r->n * r->V));
  mlc_seq *s = NULL;
  double worst = -1;
  if (mlc_model_vocab_size(m) == r->V && mlc_seq_new(m, &s) == MLC_OK &&
      mlc_seq_forward(s, r->ids, r->n, lg, r->n) == MLC_OK) {
    worst = 0;
    for (int i = 0; i < r->n; i++) {
      double num = 0, den = 0;
      for (int v = 0; v < r->V; v++) {
        double d = lg[i * r->V + v] - r->logits[i * r->V + v];
        num += d * d;
        den += (double)r->logits[i * r->V + v] * r->logits[i * r->V + v];
      }
      double e = sqrt(num / (den > 0 ? den : 1));
      if (!(e <= worst))
        worst = isnan(e) ? 1e9 : e;
    }
  } else
    snprintf(err, errn, "forward: %s", mlc_last_error());
  mlc_seq_free(s);
  mlc_model_free(m);
  free(lg);
  return worst;
}

/* ---- a package written by hand in MLC's layout ---- */

static void put_u32(FILE *f, const void *p, size_t n) { fwrite(p, 1, n, f); }

static void test_handmade_package(const ref *r) {
  char src[1024], dir[512];
  snprintf(src, sizeof src, "%s/tests/fixtures/models/llama", root);
  snprintf(dir, sizeof dir, "%s/hand-q4f16_1", tmpdir);
  mkdir(dir, 0755);
  mlc_st_set *st = NULL;
  mlc_model_config c;
  if (mlc_st_open_dir(src, &st) != MLC_OK || mlc_config_load(src, &c) != MLC_OK) {
    check(false, "hand-made package: fixture", mlc_last_error());
    return;
  }
  char shard[600];
  snprintf(shard, sizeof shard, "%s/params_shard_0.bin", dir);
  FILE *f = fopen(shard, "wb");
  cJSON *recs = cJSON_CreateArray();
  size_t off = 0;
  int H = c.hidden_size;
  /* (mlc name, hf sources to concatenate, quantize) */
  for (int pi = 0;; pi++) {
    char mname[160], srcs[3][160];
    int ns = 0;
    bool quant = true;
    int l = (pi - 1) / 6, part = (pi - 1) % 6;
    if (pi == 0) {
      snprintf(mname, sizeof mname, "model.embed_tokens.weight");
      snprintf(srcs[ns++], 160, "%s", mname);
    } else if (l < c.num_layers) {
      const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
      switch (part) {
      case 0:
        snprintf(mname, sizeof mname, "model.layers.%d.self_attn.qkv_proj.weight", l);
        for (int j = 0; j < 3; j++)
          snprintf(srcs[ns++], 160, "model.layers.%d.self_attn.%s.weight", l, qkv[j]);
        break;
      case 1: snprintf(mname, sizeof mname, "model.layers.%d.self_attn.o_proj.weight", l); snprintf(srcs[ns++], 160, "%s", mname); break;
      case 2:
        snprintf(mname, sizeof mname, "model.layers.%d.mlp.gate_up_proj.weight", l);
        snprintf(srcs[ns++], 160, "model.layers.%d.mlp.gate_proj.weight", l);
        snprintf(srcs[ns++], 160, "model.layers.%d.mlp.up_proj.weight", l);
        break;
      case 3: snprintf(mname, sizeof mname, "model.layers.%d.mlp.down_proj.weight", l); snprintf(srcs[ns++], 160, "%s", mname); break;
      case 4: snprintf(mname, sizeof mname, "model.layers.%d.input_layernorm.weight", l); snprintf(srcs[ns++], 160, "%s", mname); quant = false; break;
      default: snprintf(mname, sizeof mname, "model.layers.%d.post_attention_layernorm.weight", l); snprintf(srcs[ns++], 160, "%s", mname); quant = false; break;
      }
    } else if (pi == 1 + 6 * c.num_layers) {
      snprintf(mname, sizeof mname, "model.norm.weight");
      snprintf(srcs[ns++], 160, "%s", mname);
      quant = false;
    } else if (pi == 2 + 6 * c.num_layers) {
      snprintf(mname, sizeof mname, "lm_head.weight");
      snprintf(srcs[ns++], 160, "%s", mname);
    } else
      break;
    /* concatenate rows */
    int64_t rows = 0, K = 0;
    float *all = NULL;
    for (int j = 0; j < ns; j++) {
      const mlc_st_tensor *t = mlc_st_find(st, srcs[j]);
      int64_t tr = t->shape[0], tk = t->ndim > 1 ? t->shape[1] : 1;
      all = realloc(all, sizeof(float) * (size_t)((rows + tr) * tk));
      memcpy(all + rows * tk, t->data, sizeof(float) * (size_t)(tr * tk));
      rows += tr;
      K = tk;
    }
    cJSON *rec;
    if (quant) {
      int W = (int)(K / 8), G = (int)(K / 32);
      uint32_t *qw = malloc(sizeof(uint32_t) * (size_t)(rows * W));
      uint16_t *qs = malloc(2 * (size_t)(rows * G));
      float *sc = malloc(sizeof(float) * (size_t)G);
      for (int64_t n = 0; n < rows; n++) {
        ref_quant_row(all + n * K, (int)K, 4, 8, 32, 7, true, qw + n * W, sc);
        for (int g = 0; g < G; g++)
          qs[n * G + g] = mlc_f32_to_f16(sc[g]);
      }
      char base[160];
      snprintf(base, sizeof base, "%.*s", (int)(strlen(mname) - 7), mname);
      for (int k = 0; k < 2; k++) {
        rec = cJSON_CreateObject();
        char nm[200];
        snprintf(nm, sizeof nm, "%s.%s", base, k ? "q_scale" : "q_weight");
        cJSON_AddStringToObject(rec, "name", nm);
        cJSON *sh = cJSON_AddArrayToObject(rec, "shape");
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)rows));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(k ? G : W));
        cJSON_AddStringToObject(rec, "dtype", k ? "float16" : "uint32");
        cJSON_AddStringToObject(rec, "format", "f32-to-bf16");
        size_t nb = k ? 2 * (size_t)(rows * G) : 4 * (size_t)(rows * W);
        cJSON_AddNumberToObject(rec, "nbytes", (double)nb);
        cJSON_AddNumberToObject(rec, "byteOffset", (double)off);
        put_u32(f, k ? (void *)qs : (void *)qw, nb);
        off += nb;
        cJSON_AddItemToArray(recs, rec);
      }
      free(qw);
      free(qs);
      free(sc);
    } else {
      uint16_t *h = malloc(2 * (size_t)rows);
      for (int64_t i = 0; i < rows; i++)
        h[i] = mlc_f32_to_f16(all[i]);
      rec = cJSON_CreateObject();
      cJSON_AddStringToObject(rec, "name", mname);
      cJSON *sh = cJSON_AddArrayToObject(rec, "shape");
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)rows));
      cJSON_AddStringToObject(rec, "dtype", "float16");
      cJSON_AddStringToObject(rec, "format", "f32-to-bf16");
      cJSON_AddNumberToObject(rec, "nbytes", (double)(2 * rows));
      cJSON_AddNumberToObject(rec, "byteOffset", (double)off);
      put_u32(f, h, 2 * (size_t)rows);
      off += 2 * (size_t)rows;
      cJSON_AddItemToArray(recs, rec);
      free(h);
    }
    free(all);
  }
  fclose(f);
  (void)H;
  cJSON *j = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(j, "metadata");
  cJSON_AddNumberToObject(meta, "ParamSize", cJSON_GetArraySize(recs));
  cJSON *sr = cJSON_AddArrayToObject(j, "records"), *s0 = cJSON_CreateObject();
  cJSON_AddStringToObject(s0, "dataPath", "params_shard_0.bin");
  cJSON_AddStringToObject(s0, "format", "raw-shard");
  cJSON_AddNumberToObject(s0, "nbytes", (double)off);
  cJSON_AddItemToObject(s0, "records", recs);
  cJSON_AddItemToArray(sr, s0);
  char *text = cJSON_Print(j), p[700];
  snprintf(p, sizeof p, "%s/ndarray-cache.json", dir); /* the older name */
  mlc_write_file_atomic(p, text, strlen(text));
  free(text);
  cJSON_Delete(j);
  /* mlc-chat-config.json: model_config is the HF config plus MLC's fields */
  char cp[1100], *ctext = NULL;
  size_t cn;
  snprintf(cp, sizeof cp, "%s/config.json", src);
  mlc_read_file(cp, &ctext, &cn);
  cJSON *hf = cJSON_Parse(ctext), *cc = cJSON_CreateObject();
  free(ctext);
  cJSON_AddStringToObject(cc, "model_type", "llama");
  cJSON_AddStringToObject(cc, "quantization", "q4f16_1");
  cJSON_AddItemToObject(cc, "model_config", hf);
  text = cJSON_Print(cc);
  snprintf(p, sizeof p, "%s/mlc-chat-config.json", dir);
  mlc_write_file_atomic(p, text, strlen(text));
  free(text);
  cJSON_Delete(cc);
  mlc_st_close(st);
  char err[512] = "";
  double e = logits_err(dir, r, 0, err, sizeof err);
  char msg[700];
  snprintf(msg, sizeof msg, "relative L2 error %.4f (budget 0.25) %s", e, err);
  check(e >= 0 && e < 0.25, "hand-made MLC q4f16_1 package (ndarray-cache.json) runs", msg);
  printf("hand-made llama q4f16_1 package: logits relative L2 error %.4f\n", e);
}

/* ---- converted package, read back field by field ---- */

static void md5_file(const char *path, char out[33]) {
  char *d = NULL;
  size_t n = 0;
  out[0] = 0;
  if (mlc_read_file(path, &d, &n) != MLC_OK)
    return;
  mlc_md5 m;
  mlc_md5_init(&m);
  mlc_md5_update(&m, d, n);
  mlc_md5_hex(&m, out);
  free(d);
}

static void test_converted_package(void) {
  char src[1024], out[512];
  snprintf(src, sizeof src, "%s/tests/fixtures/models/llama", root);
  snprintf(out, sizeof out, "%s/conv-q4f16_1", tmpdir);
  mlc_convert_opts o = {.src = src, .out = out, .quant = "q4f16_1", .threads = 2};
  mlc_convert_report rep;
  if (mlc_convert(&o, &rep) != MLC_OK) {
    check(false, "convert llama q4f16_1", mlc_last_error());
    return;
  }
  /* md5 of the empty string and of "abc" (RFC 1321 test suite) */
  mlc_md5 m;
  char hx[33];
  mlc_md5_init(&m);
  mlc_md5_update(&m, "abc", 3);
  mlc_md5_hex(&m, hx);
  check(!strcmp(hx, "900150983cd24fb0d6963f7d28e17f72"), "md5(\"abc\")", hx);
  char p[700];
  snprintf(p, sizeof p, "%s/tensor-cache.json", out);
  cJSON *j = NULL;
  if (mlc_json_load(p, &j) != MLC_OK) {
    check(false, "tensor-cache.json parses", mlc_last_error());
    return;
  }
  mlc_st_set *st = NULL;
  mlc_model_config c;
  mlc_st_open_dir(src, &st);
  mlc_config_load(src, &c);
  cJSON *meta = cJSON_GetObjectItem(j, "metadata"), *shards = cJSON_GetObjectItem(j, "records");
  int nrec = 0;
  bool ok_shards = true, ok_md5 = true, ok_contig = true, ok_fmt = true, ok_q = true;
  double total = 0;
  char first[200] = "";
  for (int si = 0; si < cJSON_GetArraySize(shards); si++) {
    cJSON *sh = cJSON_GetArrayItem(shards, si);
    char want_name[64], md[33];
    snprintf(want_name, sizeof want_name, "params_shard_%d.bin", si);
    ok_shards &= !strcmp(cJSON_GetObjectItem(sh, "dataPath")->valuestring, want_name) &&
                 !strcmp(cJSON_GetObjectItem(sh, "format")->valuestring, "raw-shard");
    snprintf(p, sizeof p, "%s/%s", out, want_name);
    md5_file(p, md);
    ok_md5 &= !strcmp(md, cJSON_GetObjectItem(sh, "md5sum")->valuestring);
    struct stat sb;
    stat(p, &sb);
    ok_shards &= (double)sb.st_size == cJSON_GetObjectItem(sh, "nbytes")->valuedouble;
    ok_shards &= sb.st_size <= (32 << 20);
    double at = 0;
    cJSON *recs = cJSON_GetObjectItem(sh, "records");
    char *data = NULL;
    size_t dn;
    mlc_read_file(p, &data, &dn);
    for (int ri = 0; ri < cJSON_GetArraySize(recs); ri++, nrec++) {
      cJSON *rc = cJSON_GetArrayItem(recs, ri);
      const char *name = cJSON_GetObjectItem(rc, "name")->valuestring;
      if (!nrec)
        snprintf(first, sizeof first, "%s", name);
      double nb = cJSON_GetObjectItem(rc, "nbytes")->valuedouble, off = cJSON_GetObjectItem(rc, "byteOffset")->valuedouble;
      ok_contig &= off == at;
      at += nb;
      total += nb;
      ok_fmt &= !strcmp(cJSON_GetObjectItem(rc, "format")->valuestring, "f32-to-bf16");
      /* o_proj of layer 1: dequantized words equal the reference from the HF tensor */
      if (!strcmp(name, "model.layers.1.self_attn.o_proj.q_weight")) {
        const mlc_st_tensor *t = mlc_st_find(st, "model.layers.1.self_attn.o_proj.weight");
        int64_t N = t->shape[0], K = t->shape[1];
        uint32_t rw[64];
        float rs[8];
        for (int64_t n = 0; n < N; n++) {
          ref_quant_row((const float *)t->data + n * K, (int)K, 4, 8, 32, 7, true, rw, rs);
          ok_q &= memcmp(rw, data + (size_t)off + (size_t)(n * K / 8) * 4, (size_t)K / 2) == 0;
        }
        ok_q &= cJSON_GetArraySize(cJSON_GetObjectItem(rc, "shape")) == 2 &&
                cJSON_GetArrayItem(cJSON_GetObjectItem(rc, "shape"), 1)->valueint == K / 8 &&
                !strcmp(cJSON_GetObjectItem(rc, "dtype")->valuestring, "uint32");
      }
    }
    free(data);
    ok_contig &= at == cJSON_GetObjectItem(sh, "nbytes")->valuedouble;
  }
  check(ok_shards, "shards: names in commit order, raw-shard, sizes = nbytes <= 32 MiB", NULL);
  check(ok_md5, "shards: md5sum", NULL);
  check(ok_contig, "records: contiguous, no padding", NULL);
  check(ok_fmt, "records: format f32-to-bf16 (MLC's encode format)", NULL);
  check(ok_q, "q4f16_1 words bit for bit = reference quantization of the HF tensor", NULL);
  check(cJSON_GetObjectItem(meta, "ParamSize")->valueint == nrec && cJSON_GetObjectItem(meta, "ParamBytes")->valuedouble == total,
        "metadata ParamSize / ParamBytes", NULL);
  /* loading order: safetensors names sorted, so lm_head (first name) comes first */
  check(!strcmp(first, "lm_head.q_weight"), "MLC loading order (lm_head first for a sorted single file)", first);
  /* mlc-chat-config.json */
  snprintf(p, sizeof p, "%s/mlc-chat-config.json", out);
  cJSON *cc = NULL;
  bool ok_cc = mlc_json_load(p, &cc) == MLC_OK;
  if (ok_cc) {
    ok_cc = !strcmp(cJSON_GetObjectItem(cc, "version")->valuestring, "0.1.0") &&
            !strcmp(cJSON_GetObjectItem(cc, "model_type")->valuestring, "llama") &&
            !strcmp(cJSON_GetObjectItem(cc, "quantization")->valuestring, "q4f16_1") &&
            cJSON_GetObjectItem(cc, "vocab_size")->valueint == c.vocab_size &&
            cJSON_IsObject(cJSON_GetObjectItem(cc, "model_config")) && cJSON_GetObjectItem(cc, "conv_template");
  }
  check(ok_cc, "mlc-chat-config.json fields", NULL);
  cJSON_Delete(cc);
  /* a small tensor stays below the 16 MiB out-of-band rule: one shard here */
  check(cJSON_GetArraySize(shards) == 1, "sharding: one shard for a 100 KB model", NULL);
  /* the index text is Python's json.dump(indent=4) */
  char *text = NULL;
  size_t tn;
  snprintf(p, sizeof p, "%s/tensor-cache.json", out);
  mlc_read_file(p, &text, &tn);
  check(text && !strncmp(text, "{\n    \"metadata\": {\n        \"ParamSize\": ", 41) && text[tn - 1] == '}',
        "tensor-cache.json layout (indent 4, no trailing newline)", NULL);
  free(text);
  cJSON_Delete(j);
  mlc_st_close(st);
}

/* ---- broken shards ---- */

static void copy_dir(const char *from, const char *to) {
  mkdir(to, 0755);
  DIR *d = opendir(from);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char a[1024], b[1024], *data = NULL;
    size_t n;
    snprintf(a, sizeof a, "%s/%s", from, e->d_name);
    snprintf(b, sizeof b, "%s/%s", to, e->d_name);
    if (mlc_read_file(a, &data, &n) == MLC_OK)
      mlc_write_file_atomic(b, data, n);
    free(data);
  }
  if (d)
    closedir(d);
}

static void test_broken_shards(void) {
  char good[512], bad[600], p[700];
  snprintf(good, sizeof good, "%s/conv-q4f16_1", tmpdir);
  snprintf(bad, sizeof bad, "%s/truncated", tmpdir);
  copy_dir(good, bad);
  snprintf(p, sizeof p, "%s/params_shard_0.bin", bad);
  struct stat sb;
  stat(p, &sb);
  if (truncate(p, sb.st_size - 100) != 0)
    perror("truncate");
  mlc_model *m = NULL;
  mlc_model_options opt = {.threads = 1};
  mlc_status st = mlc_model_load(bad, &opt, &m);
  check(st != MLC_OK && strstr(mlc_last_error(), "corrupted shard") && strstr(mlc_last_error(), "truncated"),
        "truncated shard reported", mlc_last_error());
  mlc_model_free(m);
  snprintf(bad, sizeof bad, "%s/flipped", tmpdir);
  copy_dir(good, bad);
  snprintf(p, sizeof p, "%s/params_shard_0.bin", bad);
  FILE *f = fopen(p, "r+b");
  fseek(f, 1000, SEEK_SET);
  int ch = fgetc(f);
  fseek(f, 1000, SEEK_SET);
  fputc(ch ^ 0x40, f);
  fclose(f);
  m = NULL;
  st = mlc_model_load(bad, &opt, &m);
  check(st != MLC_OK && strstr(mlc_last_error(), "corrupted shard") && strstr(mlc_last_error(), "md5"),
        "md5 mismatch reported", mlc_last_error());
  mlc_model_free(m);
}

/* ---- GGUF ---- */

typedef struct gw {
  mlc_buf kv, ti, data;
  int nkv, nt;
} gw;
static void gstr(mlc_buf *b, const char *s) {
  uint64_t n = strlen(s);
  mlc_buf_append(b, (const char *)&n, 8);
  mlc_buf_append(b, s, n);
}
static void gkv_u32(gw *g, const char *k, uint32_t v) {
  gstr(&g->kv, k);
  uint32_t t = 4;
  mlc_buf_append(&g->kv, (char *)&t, 4);
  mlc_buf_append(&g->kv, (char *)&v, 4);
  g->nkv++;
}
static void gkv_f32(gw *g, const char *k, float v) {
  gstr(&g->kv, k);
  uint32_t t = 6;
  mlc_buf_append(&g->kv, (char *)&t, 4);
  mlc_buf_append(&g->kv, (char *)&v, 4);
  g->nkv++;
}
static void gkv_str(gw *g, const char *k, const char *v) {
  gstr(&g->kv, k);
  uint32_t t = 8;
  mlc_buf_append(&g->kv, (char *)&t, 4);
  gstr(&g->kv, v);
  g->nkv++;
}
static void gtensor(gw *g, const char *name, int64_t ne0, int64_t ne1, uint32_t type, const void *d, size_t n) {
  while (g->data.len % 32)
    mlc_buf_append(&g->data, "", 1);
  gstr(&g->ti, name);
  uint32_t nd = ne1 > 1 ? 2 : 1;
  mlc_buf_append(&g->ti, (char *)&nd, 4);
  uint64_t a = (uint64_t)ne0, b = (uint64_t)ne1;
  mlc_buf_append(&g->ti, (char *)&a, 8);
  if (nd == 2)
    mlc_buf_append(&g->ti, (char *)&b, 8);
  mlc_buf_append(&g->ti, (char *)&type, 4);
  uint64_t off = g->data.len;
  mlc_buf_append(&g->ti, (char *)&off, 8);
  mlc_buf_append(&g->data, d, n);
  g->nt++;
}
/* llama.cpp's Q4_0 / Q8_0 quantizers (d = max / -8 with the sign of the max; d = amax / 127) */
static void q4_0_row(const float *x, int64_t K, unsigned char *out) {
  for (int64_t b = 0; b < K / 32; b++, x += 32, out += 18) {
    float amax = 0, mx = 0;
    for (int j = 0; j < 32; j++)
      if (fabsf(x[j]) > amax) {
        amax = fabsf(x[j]);
        mx = x[j];
      }
    float d = mx / -8, id = d ? 1.0f / d : 0;
    uint16_t h = mlc_f32_to_f16(d);
    memcpy(out, &h, 2);
    for (int j = 0; j < 16; j++) {
      int a = (int)fminf(15, x[j] * id + 8.5f), b2 = (int)fminf(15, x[j + 16] * id + 8.5f);
      out[2 + j] = (unsigned char)(a | b2 << 4);
    }
  }
}
static void q8_0_row(const float *x, int64_t K, unsigned char *out) {
  for (int64_t b = 0; b < K / 32; b++, x += 32, out += 34) {
    float amax = 0;
    for (int j = 0; j < 32; j++)
      amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127, id = d ? 1 / d : 0;
    uint16_t h = mlc_f32_to_f16(d);
    memcpy(out, &h, 2);
    for (int j = 0; j < 32; j++)
      out[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
  }
}

static void write_gguf(const char *path, uint32_t qtype) {
  char src[1024];
  snprintf(src, sizeof src, "%s/tests/fixtures/models/llama", root);
  mlc_st_set *st = NULL;
  mlc_model_config c;
  mlc_st_open_dir(src, &st);
  mlc_config_load(src, &c);
  gw g = {0};
  gkv_str(&g, "general.architecture", "llama");
  gkv_u32(&g, "llama.embedding_length", (uint32_t)c.hidden_size);
  gkv_u32(&g, "llama.block_count", (uint32_t)c.num_layers);
  gkv_u32(&g, "llama.feed_forward_length", (uint32_t)c.intermediate_size);
  gkv_u32(&g, "llama.attention.head_count", (uint32_t)c.num_heads);
  gkv_u32(&g, "llama.attention.head_count_kv", (uint32_t)c.num_kv_heads);
  gkv_u32(&g, "llama.context_length", 256);
  gkv_f32(&g, "llama.attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  gkv_f32(&g, "llama.rope.freq_base", c.rope_theta);
  gkv_str(&g, "tokenizer.ggml.model", "gpt2");
  /* tokens: byte-level single characters, then filler; no merges */
  gstr(&g.kv, "tokenizer.ggml.tokens");
  uint32_t at = 9, et = 8;
  uint64_t nv = (uint64_t)c.vocab_size;
  mlc_buf_append(&g.kv, (char *)&at, 4);
  mlc_buf_append(&g.kv, (char *)&et, 4);
  mlc_buf_append(&g.kv, (char *)&nv, 8);
  for (int i = 0; i < c.vocab_size; i++) {
    char t[16];
    if (i >= 33 && i < 127)
      snprintf(t, sizeof t, "%c", i);
    else
      snprintf(t, sizeof t, "<t%d>", i);
    gstr(&g.kv, t);
  }
  g.nkv++;
  gkv_u32(&g, "tokenizer.ggml.bos_token_id", 1);
  gkv_u32(&g, "tokenizer.ggml.eos_token_id", 2);
  int n = mlc_st_count(st);
  for (int i = 0; i < n; i++) {
    const mlc_st_tensor *t = mlc_st_at(st, i);
    char gname[160];
    int l = -1;
    char rest[128] = "";
    if (sscanf(t->name, "model.layers.%d.%127s", &l, rest) == 2) {
      static const char *map[][2] = {{"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.k_proj.weight", "attn_k.weight"},
                                     {"self_attn.v_proj.weight", "attn_v.weight"}, {"self_attn.o_proj.weight", "attn_output.weight"},
                                     {"mlp.gate_proj.weight", "ffn_gate.weight"},  {"mlp.up_proj.weight", "ffn_up.weight"},
                                     {"mlp.down_proj.weight", "ffn_down.weight"},  {"input_layernorm.weight", "attn_norm.weight"},
                                     {"post_attention_layernorm.weight", "ffn_norm.weight"}};
      gname[0] = 0;
      for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
        if (!strcmp(rest, map[k][0]))
          snprintf(gname, sizeof gname, "blk.%d.%s", l, map[k][1]);
    } else if (!strcmp(t->name, "model.embed_tokens.weight"))
      snprintf(gname, sizeof gname, "token_embd.weight");
    else if (!strcmp(t->name, "model.norm.weight"))
      snprintf(gname, sizeof gname, "output_norm.weight");
    else
      snprintf(gname, sizeof gname, "output.weight");
    const float *w = t->data;
    if (t->ndim == 1) {
      gtensor(&g, gname, t->shape[0], 1, 0, w, t->nbytes);
      continue;
    }
    int64_t N = t->shape[0], K = t->shape[1];
    float *pw = malloc(t->nbytes);
    /* llama.cpp permutes q and k rows: gguf[h*D + 2j + i] = hf[h*D + i*D/2 + j] */
    int heads = strstr(gname, "attn_q.") ? c.num_heads : strstr(gname, "attn_k.") ? c.num_kv_heads : 0;
    for (int64_t r = 0; r < N; r++) {
      int64_t src_r = r;
      if (heads) {
        int64_t D = N / heads, h = r / D, w2 = r % D, j = w2 / 2, i2 = w2 % 2;
        src_r = h * D + i2 * (D / 2) + j;
      }
      memcpy(pw + r * K, w + src_r * K, sizeof(float) * (size_t)K);
    }
    size_t rb = (size_t)(K / 32) * (qtype == 2 ? 18 : 34);
    unsigned char *q = malloc(rb * (size_t)N);
    for (int64_t r = 0; r < N; r++)
      (qtype == 2 ? q4_0_row : q8_0_row)(pw + r * K, K, q + rb * (size_t)r);
    gtensor(&g, gname, K, N, qtype, q, rb * (size_t)N);
    free(q);
    free(pw);
  }
  FILE *f = fopen(path, "wb");
  uint32_t ver = 3;
  uint64_t nt = (uint64_t)g.nt, nk = (uint64_t)g.nkv;
  fwrite("GGUF", 1, 4, f);
  fwrite(&ver, 4, 1, f);
  fwrite(&nt, 8, 1, f);
  fwrite(&nk, 8, 1, f);
  fwrite(g.kv.data, 1, g.kv.len, f);
  fwrite(g.ti.data, 1, g.ti.len, f);
  long pos = ftell(f);
  while (pos % 32) {
    fputc(0, f);
    pos++;
  }
  fwrite(g.data.data, 1, g.data.len, f);
  fclose(f);
  mlc_buf_free(&g.kv);
  mlc_buf_free(&g.ti);
  mlc_buf_free(&g.data);
  mlc_st_close(st);
}

static void test_gguf(const ref *r) {
  static const struct {
    uint32_t type;
    const char *name, *scheme;
    double budget;
  } C[] = {{2, "Q4_0", "q4f16_1", 0.25}, {8, "Q8_0", "q8f16_1", 0.02}};
  for (int ci = 0; ci < 2; ci++) {
    char path[600], out[600], label[128], err[512] = "", msg[800];
    snprintf(path, sizeof path, "%s/llama-%s.gguf", tmpdir, C[ci].name);
    write_gguf(path, C[ci].type);
    /* convert: lossless, and the package dequantizes to exactly llama.cpp's values (after
     * undoing the row permutation) */
    snprintf(out, sizeof out, "%s/gguf-%s", tmpdir, C[ci].name);
    mlc_convert_opts o = {.src = path, .out = out, .quant = C[ci].scheme, .threads = 2};
    mlc_convert_report rep;
    snprintf(label, sizeof label, "GGUF %s -> %s converts losslessly", C[ci].name, C[ci].scheme);
    mlc_status st = mlc_convert(&o, &rep);
    snprintf(msg, sizeof msg, "%s lossless %d requantized %d", st == MLC_OK ? "" : mlc_last_error(), rep.lossless, rep.requantized);
    check(st == MLC_OK && rep.requantized == 0 && rep.lossless > 0, label, msg);
    /* q_proj of layer 0 through the package reader vs dequantized GGUF blocks, unpermuted */
    mlc_model_config cfg;
    mlc_st_set *ps = NULL;
    bool exact = st == MLC_OK && mlc_pkg_open(out, &cfg, &ps, NULL) == MLC_OK;
    mlc_st_set *hs = NULL;
    char src[1024];
    snprintf(src, sizeof src, "%s/tests/fixtures/models/llama", root);
    mlc_st_open_dir(src, &hs);
    if (exact) {
      const mlc_st_tensor *t = mlc_st_find(ps, "model.layers.0.self_attn.q_proj.weight");
      const mlc_st_tensor *h = mlc_st_find(hs, "model.layers.0.self_attn.q_proj.weight");
      exact = t && h && mlc_dtype_is_quant(t->dtype);
      int64_t N = exact ? t->shape[0] : 0, K = exact ? t->shape[1] : 0;
      const mlc_qscheme *qs = exact ? mlc_qscheme_of(t->dtype) : NULL;
      unsigned char blk[34];
      float y[32];
      for (int64_t rr = 0; exact && rr < N; rr++)
        for (int64_t b = 0; b < K / 32; b++) {
          /* requantize the HF row's block the way the writer did, then dequantize as llama.cpp */
          const float *hrow = (const float *)h->data + rr * K + b * 32;
          (C[ci].type == 2 ? q4_0_row : q8_0_row)(hrow, 32, blk);
          float d = mlc_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
          for (int j = 0; j < 32; j++)
            y[j] = C[ci].type == 2 ? (float)(((j < 16 ? blk[2 + j] : blk[2 + j - 16] >> 4) & 15) - 8) * d
                                   : (float)(int8_t)blk[2 + j] * d;
          for (int j = 0; j < 32; j++)
            exact &= mlc_q_dequant(qs, t->data, t->scale, N, K, rr, b * 32 + j) == y[j];
        }
    }
    snprintf(label, sizeof label, "GGUF %s: package weights = llama.cpp dequantization, rows unpermuted", C[ci].name);
    check(exact, label, NULL);
    mlc_st_close(ps);
    mlc_st_close(hs);
    /* runs directly from the .gguf path (converted into the cache) */
    double e = logits_err(path, r, 0, err, sizeof err);
    snprintf(label, sizeof label, "GGUF %s file runs (mlc_model_load on the .gguf)", C[ci].name);
    snprintf(msg, sizeof msg, "relative L2 error %.4f (budget %.2f) %s", e, C[ci].budget, err);
    check(e >= 0 && e < C[ci].budget, label, msg);
    printf("GGUF %s llama: logits relative L2 error %.4f\n", C[ci].name, e);
    char *cached = NULL; /* the package mlc_model_load made in the cache */
    if (mlc_gguf_package(path, NULL, &cached) == MLC_OK)
      rm_rf(cached);
    free(cached);
  }
}

/* ---- the package against its own dequantized weights ---- */

/* Writes the package's tensors (HF names, dequantized to f32) as dir/model.safetensors. */
static bool write_dequantized(const char *pkg, const char *src, const char *dir) {
  mlc_model_config c;
  mlc_st_set *ps = NULL;
  if (mlc_pkg_open(pkg, &c, &ps, NULL) != MLC_OK)
    return false;
  mkdir(dir, 0755);
  mlc_st_set *hs = NULL; /* the HF tensors give the logical K of padded quantized rows */
  mlc_st_open_dir(src, &hs);
  cJSON *h = cJSON_CreateObject();
  mlc_buf data = {0};
  for (int i = 0; i < mlc_st_count(ps); i++) {
    const mlc_st_tensor *t = mlc_st_at(ps, i);
    const mlc_st_tensor *ht0 = mlc_st_find(hs, t->name);
    int64_t N = t->shape[0], K = t->ndim > 1 ? (ht0 ? ht0->shape[ht0->ndim - 1] : t->shape[1]) : 1;
    const mlc_qscheme *q = mlc_qscheme_of(t->dtype);
    for (int64_t n = 0; n < N; n++)
      for (int64_t k = 0; k < K; k++) {
        float v;
        if (q)
          v = mlc_q_dequant(q, t->data, t->scale, N, K, n, k);
        else if (t->dtype == MLC_F32)
          v = ((const float *)t->data)[n * K + k];
        else if (t->dtype == MLC_F16)
          v = mlc_f16_to_f32(((const uint16_t *)t->data)[n * K + k]);
        else
          v = mlc_bf16_to_f32(((const uint16_t *)t->data)[n * K + k]);
        mlc_buf_append(&data, (const char *)&v, 4);
      }
    cJSON *e = cJSON_AddObjectToObject(h, t->name);
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)N));
    if (t->ndim > 1)
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)K));
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(data.len - (size_t)(N * K) * 4)));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)data.len));
  }
  char *ht = cJSON_PrintUnformatted(h);
  uint64_t hn = strlen(ht);
  char p[1700];
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  FILE *f = fopen(p, "wb");
  fwrite(&hn, 8, 1, f);
  fwrite(ht, 1, hn, f);
  fwrite(data.data, 1, data.len, f);
  fclose(f);
  free(ht);
  cJSON_Delete(h);
  mlc_buf_free(&data);
  mlc_st_close(ps);
  mlc_st_close(hs);
  char from[1700], to[1700], *txt = NULL;
  size_t tn;
  snprintf(from, sizeof from, "%s/config.json", src);
  snprintf(to, sizeof to, "%s/config.json", dir);
  if (mlc_read_file(from, &txt, &tn) != MLC_OK)
    return false;
  mlc_write_file_atomic(to, txt, tn);
  free(txt);
  return true;
}

/* ---- every fixture in every scheme ---- */

static void test_all(void) {
  static const struct {
    const char *q;
    double budget;
  } Q[] = {{"q0f32", 0.015},  {"q0f16", 0.003},  {"q0bf16", 0.015}, {"q4f16_1", 0.45},
           {"q4f32_1", 0.45}, {"q3f16_1", 0.80}, {"q4f16_0", 0.45}, {"q8f16_1", 0.03}};
  char mdir[1024];
  snprintf(mdir, sizeof mdir, "%s/tests/fixtures/models", root);
  DIR *d = opendir(mdir);
  struct dirent *e;
  double worst[8] = {0};
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char src[1300];
    snprintf(src, sizeof src, "%s/%s", mdir, e->d_name);
    ref r;
    if (!load_ref(src, &r))
      continue;
    for (int qi = 0; qi < 8; qi++) {
      char out[1400], label[300], err[512] = "", msg[900];
      snprintf(out, sizeof out, "%s/all-%s-%s", tmpdir, e->d_name, Q[qi].q);
      mlc_convert_opts o = {.src = src, .out = out, .quant = Q[qi].q, .threads = 2};
      mlc_convert_report rep;
      snprintf(label, sizeof label, "%s %s", e->d_name, Q[qi].q);
      if (mlc_convert(&o, &rep) != MLC_OK) {
        check(false, label, mlc_last_error());
        continue;
      }
      /* q4f16_1 with the specialised (compiled) kernels, the others with the generic ones */
      double er = logits_err(out, &r, strcmp(Q[qi].q, "q4f16_1") != 0, err, sizeof err);
      snprintf(msg, sizeof msg, "relative L2 error %.4f (budget %.2f) %s", er, Q[qi].budget, err);
      check(er >= 0 && er < Q[qi].budget, label, msg);
      if (er > worst[qi])
        worst[qi] = er;
      if (!strcmp(Q[qi].q, "q4f16_1") || !strcmp(Q[qi].q, "q3f16_1") || !strcmp(Q[qi].q, "q4f16_0")) {
        /* the quantized kernels against the f32 kernels on the same (dequantized) weights */
        char dq[1500], l2[400];
        snprintf(dq, sizeof dq, "%s-dequantized", out);
        ref r2 = r;
        r2.logits = malloc(sizeof(float) * (size_t)(r.n * r.V));
        mlc_model_options opt = {.threads = 2};
        mlc_model *m = NULL;
        mlc_seq *s = NULL;
        bool ok = write_dequantized(out, src, dq) && mlc_model_load(dq, &opt, &m) == MLC_OK &&
                  mlc_seq_new(m, &s) == MLC_OK && mlc_seq_forward(s, r.ids, r.n, r2.logits, r.n) == MLC_OK;
        mlc_seq_free(s);
        mlc_model_free(m);
        /* f32 activations: only the weights are quantized (MLC_NO_INT8, docs/compiler.md) */
        setenv("MLC_NO_INT8", "1", 1);
        double e2 = ok ? logits_err(out, &r2, strcmp(Q[qi].q, "q4f16_1") != 0, err, sizeof err) : -1;
        unsetenv("MLC_NO_INT8");
        snprintf(l2, sizeof l2, "%s %s = f32 model of its dequantized weights", e->d_name, Q[qi].q);
        snprintf(msg, sizeof msg, "relative L2 error %.3g (tolerance 1e-4) %s", e2, ok ? err : mlc_last_error());
        check(e2 >= 0 && e2 < 1e-4, l2, msg);
        if (!strcmp(Q[qi].q, "q4f16_1")) {
          /* the CPU's default 8-bit activations (rows of whole 128-element blocks: qwen3's o_proj
           * here) add their rounding on top: measured 0.0065 on qwen3 */
          double e3 = ok ? logits_err(out, &r2, 0, err, sizeof err) : -1;
          snprintf(l2, sizeof l2, "%s %s with 8-bit activations ~ f32 model of its dequantized weights", e->d_name, Q[qi].q);
          snprintf(msg, sizeof msg, "relative L2 error %.3g (tolerance 2e-2) %s", e3, ok ? err : mlc_last_error());
          check(e3 >= 0 && e3 < 2e-2, l2, msg);
        }
        free(r2.logits);
      }
      if (getenv("MLC_QUANT_VERBOSE"))
        printf("%-20s %-8s %.5f\n", e->d_name, Q[qi].q, er);
    }
    free(r.logits);
  }
  if (d)
    closedir(d);
  for (int qi = 0; qi < 8; qi++)
    printf("worst logits relative L2 error over the fixtures, %-8s %.4f (budget %g)\n", Q[qi].q, worst[qi], Q[qi].budget);
}

static void rm_rf(const char *p) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup of %s failed\n", p);
}

int main(int argc, char **argv) {
  root = argc > 1 ? argv[1] : ".";
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mlc-test-quant-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    printf("mkdtemp failed\n");
    return 1;
  }
  char cache[300];
  if (!getenv("MLC_CACHE_DIR")) {
    snprintf(cache, sizeof cache, "%s/kcache", tmpdir);
    setenv("MLC_CACHE_DIR", cache, 1);
  }
  test_quantize();
  char llama[1024];
  snprintf(llama, sizeof llama, "%s/tests/fixtures/models/llama", root);
  ref r;
  if (!load_ref(llama, &r)) {
    printf("cannot read %s/ref.json\n", llama);
    return 1;
  }
  test_handmade_package(&r);
  test_converted_package();
  test_broken_shards();
  test_gguf(&r);
  test_all();
  free(r.logits);
  rm_rf(tmpdir);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
