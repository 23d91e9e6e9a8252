/*
 * convert.c: writing MLC packages.
 *
 * Sources (HF safetensors, GGUF, MLC packages) are first seen as a list of tensors under HF names
 * (cv_src). MLC's parameter table (package.c) says which HF tensors each MLC parameter is the row
 * concatenation of; parameters are produced one at a time in MLC's loading order (HF files in
 * order, names in order), rows read from the mapped source in chunks, quantized on all cores,
 * and handed to a shard writer that follows TVM's TensorCacheShardingManager (32 MiB cap,
 * tensors of >= 16 MiB alone in their own shard, md5 per shard). The index is written like
 * Python's json.dump(indent=4), and the whole package goes to OUT.tmp-XXXXXX, renamed at the end.
 */
#include "format/convert.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"
#include "format/package.h"
#include "format/quant.h"

#define SHARD_CAP ((size_t)32 << 20)

/* ---- sources ---- */

enum { CV_FLOAT = 0, CV_GGML = 1, CV_PKGQ = 2 };

typedef struct cv_src {
  char name[320];
  int kind;
  mlc_dtype dt;       /* CV_FLOAT: F32/F16/BF16; CV_PKGQ: the packed dtype */
  uint32_t gtype;     /* CV_GGML */
  const unsigned char *data;
  size_t row_bytes;
  const void *scale;  /* CV_PKGQ */
  int64_t rows, cols; /* 1-D tensors: rows = length, cols = 1 */
  int64_t kp;         /* CV_PKGQ: K padded */
  int unpermute;
  bool minus_one;
  int order;
} cv_src;

typedef struct cv_source {
  cv_src *s;
  int n;
  mlc_model_config cfg;
  cJSON *hf_config; /* the config.json written into model_config */
  const char *kind; /* "hf", "gguf", "mlc" */
  mlc_st_set *st;
  mlc_gguf *gg;
  char *gg_tokenizer; /* tokenizer.json from GGUF metadata */
  const char *dir;    /* where tokenizer files are copied from (NULL for GGUF) */
  char src_quant[16];
} cv_source;

static const cv_src *src_find(const cv_source *S, const char *name) {
  for (int i = 0; i < S->n; i++)
    if (!strcmp(S->s[i].name, name))
      return &S->s[i];
  return NULL;
}

/* branchless f16 -> f32 (exact for every value, as the kernels' mlc_h2f) */
static inline float h2f_fast(uint16_t h) {
  uint32_t o = (uint32_t)(h & 0x7fffu) << 13, u;
  float f;
  memcpy(&f, &o, 4);
  f *= 0x1p112f;
  memcpy(&u, &f, 4);
  u |= ((h & 0x7c00u) == 0x7c00u) ? 0x7f800000u : 0u;
  u |= (uint32_t)(h & 0x8000u) << 16;
  memcpy(&f, &u, 4);
  return f;
}

static int64_t perm_row(int64_t r, int64_t rows, int heads) {
  if (heads <= 0)
    return r;
  int64_t D = rows / heads, h = r / D, w = r % D, half = D / 2;
  int64_t i = w / half, j = w % half;
  return h * D + 2 * j + i;
}

static const unsigned char *row_ptr(const cv_src *s, int64_t r) {
  return s->data + (size_t)perm_row(r, s->rows, s->unpermute) * s->row_bytes;
}

/* rows [r0, r0+nr) as f32 */
static void src_read(const cv_src *s, int64_t r0, int64_t nr, float *out) {
  int64_t K = s->cols;
  for (int64_t r = r0; r < r0 + nr; r++) {
    float *y = out + (r - r0) * K;
    const unsigned char *p = row_ptr(s, r);
    if (s->kind == CV_GGML)
      mlc_gguf_dequant_row(s->gtype, p, y, K);
    else if (s->kind == CV_PKGQ) {
      const mlc_qscheme *q = mlc_qscheme_of(s->dt);
      for (int64_t k = 0; k < K; k++)
        y[k] = mlc_q_dequant(q, s->data == NULL ? NULL : (const uint32_t *)s->data, s->scale, s->rows, s->kp, r, k);
    } else if (s->dt == MLC_F32)
      memcpy(y, p, sizeof(float) * (size_t)K);
    else
      for (int64_t k = 0; k < K; k++) {
        uint16_t h;
        memcpy(&h, p + 2 * k, 2);
        y[k] = s->dt == MLC_F16 ? h2f_fast(h) : mlc_bf16_to_f32(h);
      }
    if (s->minus_one)
      for (int64_t k = 0; k < K; k++)
        y[k] -= 1.0f;
  }
}

/* Releases the source pages of a tensor once it is done (keeps RSS near one tensor). */
static void src_release(const cv_src *s) {
  long pg = sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)s->data, e = a + s->row_bytes * (size_t)s->rows;
  a = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
  if (e > a)
    madvise((void *)a, e - a, MADV_DONTNEED);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* HF directory: loading order = files in order of first appearance in the weight map (or the
 * single file), names in weight-map order (sorted within a single file, as safetensors lists
 * them). */
static mlc_status open_hf(const char *dir, cv_source *S) {
  MLC_TRY(mlc_config_load(dir, &S->cfg));
  char *cp = mlc_path_join(dir, "config.json");
  mlc_status st = cp ? mlc_json_load(cp, &S->hf_config) : MLC_ERR_NOMEM;
  free(cp);
  MLC_TRY(st);
  MLC_TRY(mlc_st_open_dir(dir, &S->st));
  int n = mlc_st_count(S->st);
  S->s = calloc((size_t)n + 1, sizeof *S->s);
  if (!S->s)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  /* order */
  char *ip = mlc_path_join(dir, "model.safetensors.index.json");
  cJSON *idx = NULL;
  if (ip && mlc_file_exists(ip))
    mlc_json_load(ip, &idx);
  free(ip);
  const char **names = malloc(sizeof *names * (size_t)(n + 1));
  int nn = 0;
  if (!names) {
    cJSON_Delete(idx);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  cJSON *wm = idx ? cJSON_GetObjectItem(idx, "weight_map") : NULL;
  if (cJSON_IsObject(wm)) {
    /* group by file in order of first appearance */
    const char *files[256];
    int nf = 0;
    for (cJSON *it = wm->child; it; it = it->next) {
      bool seen = false;
      for (int f = 0; f < nf && !seen; f++)
        seen = !strcmp(files[f], it->valuestring);
      if (!seen && nf < 256)
        files[nf++] = it->valuestring;
    }
    for (int f = 0; f < nf; f++)
      for (cJSON *it = wm->child; it; it = it->next)
        if (!strcmp(it->valuestring, files[f]) && nn < n && mlc_st_find(S->st, it->string))
          names[nn++] = it->string;
  } else {
    for (int i = 0; i < n; i++)
      names[nn++] = mlc_st_at(S->st, i)->name;
    qsort(names, (size_t)nn, sizeof *names, cmp_str);
  }
  for (int i = 0; i < nn; i++) {
    const mlc_st_tensor *t = mlc_st_find(S->st, names[i]);
    cv_src *x = &S->s[S->n];
    if (!t || (t->dtype != MLC_F32 && t->dtype != MLC_F16 && t->dtype != MLC_BF16))
      continue;
    snprintf(x->name, sizeof x->name, "%s", t->name);
    x->kind = CV_FLOAT;
    x->dt = t->dtype;
    x->data = t->data;
    x->rows = t->ndim >= 2 ? t->shape[0] : (t->ndim == 1 ? t->shape[0] : 1);
    x->cols = t->ndim >= 2 ? t->shape[t->ndim - 1] : 1;
    for (int d = 1; d < t->ndim - 1; d++)
      x->rows *= t->shape[d];
    x->row_bytes = (size_t)x->cols * mlc_dtype_size(t->dtype);
    x->order = S->n;
    S->n++;
  }
  free(names);
  cJSON_Delete(idx);
  S->kind = "hf";
  S->dir = dir;
  return MLC_OK;
}

static mlc_status open_gguf(const char *path, cv_source *S) {
  MLC_TRY(mlc_gguf_open(path, &S->gg));
  mlc_gguf_src *gs = NULL;
  int n = 0;
  MLC_TRY(mlc_gguf_hf(S->gg, &S->hf_config, &gs, &n));
  char *text = cJSON_PrintUnformatted(S->hf_config);
  mlc_status st = text ? mlc_config_parse(text, path, &S->cfg) : MLC_ERR_NOMEM;
  free(text);
  S->s = calloc((size_t)n + 1, sizeof *S->s);
  if (st == MLC_OK && !S->s)
    st = mlc_err(MLC_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n && st == MLC_OK; i++) {
    cv_src *x = &S->s[S->n++];
    snprintf(x->name, sizeof x->name, "%s", gs[i].name);
    x->kind = CV_GGML;
    x->gtype = gs[i].t->type;
    x->cols = gs[i].cols ? gs[i].cols : 1;
    x->rows = gs[i].rows;
    x->row_bytes = mlc_gguf_row_bytes(x->gtype, x->cols);
    x->data = gs[i].t->data + (size_t)gs[i].row0 * x->row_bytes;
    x->unpermute = gs[i].unpermute;
    x->minus_one = gs[i].minus_one;
    x->order = i;
  }
  free(gs);
  if (st == MLC_OK && mlc_gguf_tokenizer_json(S->gg, &S->gg_tokenizer) != MLC_OK) {
    fprintf(stderr, "mlc convert: warning: %s\n", mlc_last_error());
    S->gg_tokenizer = NULL;
  }
  S->kind = "gguf";
  return st;
}

static mlc_status open_pkg(const char *dir, cv_source *S) {
  MLC_TRY(mlc_pkg_open(dir, &S->cfg, &S->st, S->src_quant));
  char *cp = mlc_path_join(dir, "mlc-chat-config.json");
  cJSON *j = NULL;
  mlc_status st = cp ? mlc_json_load(cp, &j) : MLC_ERR_NOMEM;
  free(cp);
  MLC_TRY(st);
  S->hf_config = cJSON_DetachItemFromObject(j, "model_config");
  cJSON_Delete(j);
  int n = mlc_st_count(S->st);
  S->s = calloc((size_t)n + 1, sizeof *S->s);
  if (!S->s)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    const mlc_st_tensor *t = mlc_st_at(S->st, i);
    cv_src *x = &S->s[S->n++];
    snprintf(x->name, sizeof x->name, "%s", t->name);
    x->dt = t->dtype;
    x->data = t->data;
    x->rows = t->shape[0];
    x->cols = t->ndim >= 2 ? t->shape[1] : 1;
    x->order = i;
    if (mlc_dtype_is_quant(t->dtype)) {
      x->kind = CV_PKGQ;
      x->scale = t->scale;
      x->kp = t->shape[1];
      x->row_bytes = 0; /* rows are addressed through mlc_q_dequant */
    } else {
      x->kind = CV_FLOAT;
      x->row_bytes = (size_t)x->cols * mlc_dtype_size(t->dtype);
    }
  }
  /* loading order: the package's own record order (a same-scheme conversion is then a copy) */
  char *ip = mlc_path_join(dir, "tensor-cache.json");
  if (ip && !mlc_file_exists(ip)) {
    free(ip);
    ip = mlc_path_join(dir, "ndarray-cache.json");
  }
  cJSON *idx = NULL;
  mlc_pparam *pp = NULL;
  int np = 0;
  if (ip && mlc_json_load(ip, &idx) == MLC_OK && mlc_pkg_params(&S->cfg, &pp, &np) == MLC_OK) {
    int pos = 0;
    cJSON *shards = cJSON_GetObjectItem(idx, "records");
    for (cJSON *sh = shards ? shards->child : NULL; sh; sh = sh->next)
      for (cJSON *rc = cJSON_GetObjectItem(sh, "records") ? cJSON_GetObjectItem(sh, "records")->child : NULL; rc;
           rc = rc->next, pos++) {
        cJSON *nm = cJSON_GetObjectItem(rc, "name");
        if (!cJSON_IsString(nm))
          continue;
        for (int i = 0; i < np; i++) {
          char qn[200];
          size_t L = strlen(pp[i].name);
          snprintf(qn, sizeof qn, "%.*s.q_weight", L > 7 ? (int)(L - 7) : (int)L, pp[i].name);
          if (strcmp(nm->valuestring, pp[i].name) && strcmp(nm->valuestring, qn))
            continue;
          for (int j = 0; j < pp[i].nsrc; j++)
            for (int k = 0; k < S->n; k++)
              if (!strcmp(S->s[k].name, pp[i].src[j]))
                S->s[k].order = pos * 1024 + j;
        }
      }
  }
  mlc_pkg_params_free(pp, np);
  cJSON_Delete(idx);
  free(ip);
  S->kind = "mlc";
  S->dir = dir;
  return MLC_OK;
}

static void source_close(cv_source *S) {
  free(S->s);
  cJSON_Delete(S->hf_config);
  mlc_st_close(S->st);
  mlc_gguf_close(S->gg);
  free(S->gg_tokenizer);
}

/* ---- Python-style JSON numbers ---- */

/* repr(float) as Python prints it: shortest round trip, fixed for 1e-4 <= |x| < 1e16. */
static void py_float(char *out, size_t n, double v) {
  if (v == 0) {
    snprintf(out, n, "0.0");
    return;
  }
  char tmp[64];
  int p;
  for (p = 1; p <= 17; p++) {
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
  /* tmp = [-]d.ddde[+-]XX */
  char digits[32];
  int nd = 0;
  const char *q = tmp;
  bool neg = *q == '-';
  if (neg)
    q++;
  for (; *q && *q != 'e'; q++)
    if (*q != '.')
      digits[nd++] = *q;
  digits[nd] = 0;
  int ex = atoi(q + 1);
  while (nd > 1 && digits[nd - 1] == '0')
    digits[--nd] = 0;
  size_t k = 0;
  if (neg)
    out[k++] = '-';
  if (ex >= -4 && ex < 16) {
    if (ex < 0) {
      k += (size_t)snprintf(out + k, n - k, "0.");
      for (int i = 0; i < -ex - 1; i++)
        out[k++] = '0';
      k += (size_t)snprintf(out + k, n - k, "%s", digits);
    } else {
      for (int i = 0; i <= ex || i < nd; i++) {
        if (i == ex + 1)
          out[k++] = '.';
        out[k++] = i < nd ? digits[i] : '0';
      }
      if (nd <= ex + 1) {
        out[k++] = '.';
        out[k++] = '0';
      }
    }
    out[k] = 0;
  } else {
    out[k++] = digits[0];
    if (nd > 1) {
      out[k++] = '.';
      for (int i = 1; i < nd; i++)
        out[k++] = digits[i];
    }
    snprintf(out + k, n - k, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
  }
}

static void py_str(mlc_buf *b, const char *s) {
  mlc_buf_puts(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      mlc_buf_printf(b, "\\%c", *p);
    else if (*p == '\n')
      mlc_buf_puts(b, "\\n");
    else if (*p == '\t')
      mlc_buf_puts(b, "\\t");
    else if (*p == '\r')
      mlc_buf_puts(b, "\\r");
    else if (*p < 0x20)
      mlc_buf_printf(b, "\\u%04x", *p);
    else if (*p < 0x80)
      mlc_buf_append(b, (const char *)p, 1);
    else {
      /* ensure_ascii: UTF-8 to \uXXXX (surrogate pairs above the BMP) */
      uint32_t cp = 0;
      int extra = *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : 1;
      cp = *p & (0x3f >> extra);
      for (int i = 0; i < extra && p[1]; i++)
        cp = (cp << 6) | (*++p & 0x3f);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        mlc_buf_printf(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else
        mlc_buf_printf(b, "\\u%04x", cp);
    }
  }
  mlc_buf_puts(b, "\"");
}

/* json.dump(v, indent=ind) of a cJSON value */
static void py_json(mlc_buf *b, const cJSON *v, int ind, int depth) {
  char num[64];
  if (cJSON_IsNull(v))
    mlc_buf_puts(b, "null");
  else if (cJSON_IsTrue(v))
    mlc_buf_puts(b, "true");
  else if (cJSON_IsFalse(v))
    mlc_buf_puts(b, "false");
  else if (cJSON_IsString(v))
    py_str(b, v->valuestring);
  else if (cJSON_IsRaw(v))
    mlc_buf_puts(b, v->valuestring);
  else if (cJSON_IsNumber(v)) {
    /* cJSON keeps no int/float distinction: integral values print as integers, Python floats
     * the writer means are added as raw items (py_float_item) */
    double d = v->valuedouble;
    if (d == floor(d) && fabs(d) < 9e15)
      snprintf(num, sizeof num, "%lld", (long long)d);
    else
      py_float(num, sizeof num, d);
    mlc_buf_puts(b, num);
  } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
    bool obj = cJSON_IsObject(v);
    if (!v->child) {
      mlc_buf_puts(b, obj ? "{}" : "[]");
      return;
    }
    mlc_buf_puts(b, obj ? "{" : "[");
    for (const cJSON *c = v->child; c; c = c->next) {
      mlc_buf_printf(b, "\n%*s", ind * (depth + 1), "");
      if (obj) {
        py_str(b, c->string);
        mlc_buf_puts(b, ": ");
      }
      py_json(b, c, ind, depth + 1);
      if (c->next)
        mlc_buf_puts(b, ",");
    }
    mlc_buf_printf(b, "\n%*s%s", ind * depth, "", obj ? "}" : "]");
  }
}

/* A number that json.dump prints as a float (Python float values). */
static cJSON *py_float_item(double v) {
  char num[64];
  py_float(num, sizeof num, v);
  return cJSON_CreateRaw(num);
}

/* ---- shard writer (TVM's TensorCacheShardingManager) ---- */

typedef struct wrec {
  char name[180];
  int ndim;
  int64_t shape[4];
  const char *dtype;
  size_t nbytes, offset;
} wrec;

typedef struct wshard {
  char path[32];
  size_t nbytes;
  char md5[33];
  wrec *recs;
  int nrecs;
} wshard;

typedef struct writer {
  const char *dir;
  int counter;
  unsigned char *pending;
  size_t npending, cap;
  wrec *precs;
  int nprecs, cprecs;
  wshard *shards;
  int nshards;
  mlc_status st;
} writer;

static void commit_internal(writer *w, const void *data, size_t n, wrec *recs, int nrecs) {
  if (w->st != MLC_OK)
    return;
  wshard *ns = realloc(w->shards, sizeof *ns * (size_t)(w->nshards + 1));
  if (!ns) {
    w->st = mlc_err(MLC_ERR_NOMEM, "out of memory");
    return;
  }
  w->shards = ns;
  wshard *s = &w->shards[w->nshards++];
  memset(s, 0, sizeof *s);
  snprintf(s->path, sizeof s->path, "params_shard_%d.bin", w->counter++);
  s->nbytes = n;
  s->recs = malloc(sizeof *recs * (size_t)(nrecs ? nrecs : 1));
  if (!s->recs) {
    w->st = mlc_err(MLC_ERR_NOMEM, "out of memory");
    return;
  }
  memcpy(s->recs, recs, sizeof *recs * (size_t)nrecs);
  s->nrecs = nrecs;
  mlc_md5 m;
  mlc_md5_init(&m);
  mlc_md5_update(&m, data, n);
  mlc_md5_hex(&m, s->md5);
  char *p = mlc_path_join(w->dir, s->path);
  FILE *f = p ? fopen(p, "wb") : NULL;
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
    w->st = mlc_err(MLC_ERR_IO, "%s: cannot write: %s", p ? p : s->path, strerror(errno));
    if (f)
      fclose(f);
  }
  free(p);
}

static void commit(writer *w) {
  if (w->npending) {
    commit_internal(w, w->pending, w->npending, w->precs, w->nprecs);
    w->npending = 0;
    w->nprecs = 0;
  }
}

static void append(writer *w, const char *name, int ndim, const int64_t *shape, const char *dtype, const void *data,
                   size_t n) {
  if (w->st != MLC_OK)
    return;
  wrec r = {0};
  snprintf(r.name, sizeof r.name, "%s", name);
  r.ndim = ndim;
  memcpy(r.shape, shape, sizeof(int64_t) * (size_t)ndim);
  r.dtype = dtype;
  r.nbytes = n;
  if (w->npending + n >= SHARD_CAP) {
    if (n * 2 >= SHARD_CAP) {
      r.offset = 0;
      commit_internal(w, data, n, &r, 1);
      return;
    }
    commit(w);
  }
  if (w->npending + n > w->cap) {
    size_t cap = w->cap ? w->cap : SHARD_CAP;
    while (cap < w->npending + n)
      cap *= 2;
    unsigned char *np = realloc(w->pending, cap);
    if (!np) {
      w->st = mlc_err(MLC_ERR_NOMEM, "out of memory");
      return;
    }
    w->pending = np;
    w->cap = cap;
  }
  if (w->nprecs == w->cprecs) {
    int cap = w->cprecs ? w->cprecs * 2 : 64;
    wrec *nr = realloc(w->precs, sizeof *nr * (size_t)cap);
    if (!nr) {
      w->st = mlc_err(MLC_ERR_NOMEM, "out of memory");
      return;
    }
    w->precs = nr;
    w->cprecs = cap;
  }
  r.offset = w->npending;
  w->precs[w->nprecs++] = r;
  memcpy(w->pending + w->npending, data, n);
  w->npending += n;
}

static void writer_free(writer *w) {
  free(w->pending);
  free(w->precs);
  for (int i = 0; i < w->nshards; i++)
    free(w->shards[i].recs);
  free(w->shards);
}

/* tensor-cache.json (b16: the tensor-cache-b16.json variant) */
static char *index_json(const writer *w, double param_size, double param_bytes, double bits, bool b16) {
  mlc_buf b = {0};
  char f1[64], f2[64];
  py_float(f1, sizeof f1, param_bytes);
  py_float(f2, sizeof f2, bits);
  mlc_buf_printf(&b, "{\n    \"metadata\": {\n        \"ParamSize\": %.0f,\n        \"ParamBytes\": %s,\n        \"BitsPerParam\": %s\n    },\n    \"records\": [",
                 param_size, f1, f2);
  for (int i = 0; i < w->nshards; i++) {
    const wshard *s = &w->shards[i];
    mlc_buf_printf(&b, "%s\n        {\n            \"dataPath\": \"%s\",\n            \"format\": \"raw-shard\",\n            \"nbytes\": %zu,\n            \"records\": [",
                   i ? "," : "", s->path, s->nbytes);
    for (int j = 0; j < s->nrecs; j++) {
      const wrec *r = &s->recs[j];
      bool f32 = !strcmp(r->dtype, "float32");
      mlc_buf_printf(&b, "%s\n                {\n                    \"name\": ", j ? "," : "");
      py_str(&b, r->name);
      mlc_buf_puts(&b, ",\n                    \"shape\": [");
      for (int d = 0; d < r->ndim; d++)
        mlc_buf_printf(&b, "%s\n                        %lld", d ? "," : "", (long long)r->shape[d]);
      mlc_buf_printf(&b, "%s],\n                    \"dtype\": \"%s\",\n                    \"format\": \"%s\",\n                    \"nbytes\": %zu,\n                    \"byteOffset\": %zu\n                }",
                     r->ndim ? "\n                    " : "", b16 && f32 ? "bfloat16" : r->dtype,
                     b16 && f32 ? "raw" : "f32-to-bf16", r->nbytes, r->offset);
    }
    mlc_buf_printf(&b, "\n            ],\n            \"md5sum\": \"%s\"\n        }", s->md5);
  }
  mlc_buf_puts(&b, w->nshards ? "\n    ]\n}" : "]\n}");
  return mlc_buf_take(&b);
}

/* ---- quantization workers ---- */

typedef struct qjob {
  const mlc_qscheme *q;
  const float *w;
  int64_t K, r0, r1;
  uint32_t *words;
  void *scale;
} qjob;
static void *qjob_run(void *a) {
  qjob *j = a;
  mlc_q_quantize_rows(j->q, j->w, j->K, j->r0, j->r1, j->words, j->scale);
  return NULL;
}
static void quantize_parallel(const mlc_qscheme *q, const float *w, int64_t K, int64_t rows, uint32_t *words,
                              void *scale, int threads) {
  pthread_t th[64];
  qjob jobs[64];
  int T = threads < 1 ? 1 : threads > 64 ? 64 : threads;
  if (rows < T * 4)
    T = 1;
  bool started[64] = {0};
  for (int t = 0; t < T; t++) {
    jobs[t] = (qjob){q, w, K, rows * t / T, rows * (t + 1) / T, words, scale};
    if (t == T - 1 || pthread_create(&th[t], NULL, qjob_run, &jobs[t]) != 0)
      qjob_run(&jobs[t]);
    else
      started[t] = true;
  }
  for (int t = 0; t < T - 1; t++)
    if (started[t])
      pthread_join(th[t], NULL);
}

/* Lossless GGUF blocks -> packed rows: Q4_0 into q4f16_1 (stored 15 - q, scale -d), Q8_0 into
 * q8f16_1 (stored 127 - q, scale -d). (15-q-7)(-d) = (q-8)d and (127-(127-q))... = q d exactly. */
static bool lossless_ok(const cv_src *s, const mlc_qscheme *q) {
  if (s->kind == CV_GGML && s->gtype == MLC_GGML_Q4_0 && q->bits == 4 && q->model_dtype == MLC_F16)
    return true;
  if (s->kind == CV_GGML && s->gtype == MLC_GGML_Q8_0 && q->bits == 8)
    return true;
  if (s->kind == CV_PKGQ && mlc_qscheme_of(s->dt)->bits == q->bits && mlc_qscheme_of(s->dt)->group == q->group &&
      mlc_qscheme_of(s->dt)->model_dtype == q->model_dtype && !mlc_qscheme_of(s->dt)->kn)
    return true;
  return false;
}
static void lossless_rows(const cv_src *s, const mlc_qscheme *q, int64_t r0, int64_t nr, uint32_t *words,
                          uint16_t *scales16, float *scales32) {
  int64_t K = s->cols, W = mlc_q_words(q, K), G = mlc_q_groups(q, K);
  for (int64_t r = r0; r < r0 + nr; r++) {
    uint32_t *wr = words + (r - r0) * W;
    if (s->kind == CV_PKGQ) {
      const mlc_qscheme *sq = mlc_qscheme_of(s->dt);
      memcpy(wr, (const uint32_t *)s->data + r * W, sizeof(uint32_t) * (size_t)W);
      size_t ss = mlc_q_scale_size(sq);
      memcpy(scales32 ? (void *)(scales32 + (r - r0) * G) : (void *)(scales16 + (r - r0) * G),
             (const char *)s->scale + (size_t)(r * G) * ss, ss * (size_t)G);
      continue;
    }
    const unsigned char *b = row_ptr(s, r);
    memset(wr, 0, sizeof(uint32_t) * (size_t)W);
    for (int64_t g = 0; g < G; g++) {
      uint16_t d = (uint16_t)(b[0] | b[1] << 8);
      scales16[(r - r0) * G + g] = d ^ 0x8000u;
      for (int k = 0; k < 32; k++) {
        uint32_t v;
        if (s->gtype == MLC_GGML_Q4_0)
          v = 15u - (uint32_t)(k < 16 ? (b[2 + k] & 0xF) : (b[2 + k - 16] >> 4));
        else
          v = (uint32_t)(127 - (int)(int8_t)b[2 + k]);
        int64_t e = g * 32 + k;
        wr[e / q->per_word] |= v << ((e % q->per_word) * q->bits);
      }
      b += s->gtype == MLC_GGML_Q4_0 ? 18 : 34;
    }
  }
}

/* ---- the conversion ---- */

typedef struct progress {
  bool on;
  double total, done, t0;
} progress;
static void progress_show(progress *p, const char *name) {
  if (!p->on)
    return;
  double f = p->total > 0 ? p->done / p->total : 1;
  int w = 30, filled = (int)(f * w + 0.5);
  char bar[64];
  for (int i = 0; i < w; i++)
    bar[i] = i < filled ? '#' : '-';
  bar[w] = 0;
  double el = mlc_now() - p->t0;
  fprintf(stderr, "\r[%s] %3.0f%% %6.1f MB/s %-40.40s", bar, f * 100, el > 0 ? p->done / el / 1e6 : 0, name);
  fflush(stderr);
}

static const char *tvm_dtype(mlc_dtype d) {
  return d == MLC_F32 ? "float32" : d == MLC_F16 ? "float16" : d == MLC_BF16 ? "bfloat16" : "uint32";
}

/* encode one float in the model dtype as stored (f32 records use TVM's bf16 encoding) */
static void encode_floats(mlc_dtype md, const float *v, size_t n, uint16_t *out) {
  for (size_t i = 0; i < n; i++)
    out[i] = md == MLC_F16 ? mlc_f32_to_f16(v[i]) : md == MLC_BF16 ? mlc_f32_to_bf16(v[i]) : mlc_tvm_f32_to_bf16(v[i]);
}

typedef struct cv_ctx {
  const mlc_convert_opts *o;
  cv_source *S;
  const mlc_qscheme *q;
  writer w;
  progress pr;
  int threads;
  double param_bytes, src_params;
  int nparams;
  int lossless, requant;
  char requant_types[128];
} cv_ctx;

static mlc_status emit_param(cv_ctx *c, const mlc_pparam *p) {
  const mlc_qscheme *q = c->q;
  cv_src **srcs = calloc((size_t)p->nsrc, sizeof *srcs);
  if (!srcs)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  for (int j = 0; j < p->nsrc; j++) {
    srcs[j] = (cv_src *)src_find(c->S, p->src[j]);
    int64_t want_cols = p->cols ? p->cols : 1;
    if (!srcs[j]) {
      free(srcs);
      return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' (for MLC parameter %s) not found", c->o->src, p->src[j], p->name);
    }
    if (srcs[j]->rows != p->src_rows[j] || (srcs[j]->cols != want_cols && !(srcs[j]->kind == CV_PKGQ && srcs[j]->kp >= want_cols))) {
      mlc_status st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' is [%lld, %lld], expected [%lld, %lld]", c->o->src, p->src[j],
                              (long long)srcs[j]->rows, (long long)srcs[j]->cols, (long long)p->src_rows[j],
                              (long long)want_cols);
      free(srcs);
      return st;
    }
    if (srcs[j]->kind == CV_PKGQ)
      srcs[j]->cols = want_cols;
    c->src_params += (double)p->src_rows[j] * (double)want_cols;
  }
  int64_t K = p->cols ? p->cols : 1, N = p->rows;
  bool quant = q->bits && p->quant;
  /* MoE experts and embeddings stay NK in KN schemes (as MLC's embedding / expert modules) */
  const mlc_qscheme *qq = quant && q->kn && (p->embedding || p->experts) ? mlc_qscheme_of(MLC_Q4F16_1) : q;
  mlc_status st = MLC_OK;
  int64_t chunk = (int64_t)((16u << 20) / (size_t)(K * 4));
  if (chunk < 1)
    chunk = 1;
  float *buf = malloc(sizeof(float) * (size_t)(chunk * K));
  char qwn[200], qsn[200];
  char base[180];
  snprintf(base, sizeof base, "%s", p->name);
  char *dot = strrchr(base, '.');
  if (dot && !strcmp(dot, ".weight"))
    *dot = 0;
  snprintf(qwn, sizeof qwn, "%s.q_weight", base);
  snprintf(qsn, sizeof qsn, "%s.q_scale", base);
  if (!buf) {
    free(srcs);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  if (quant) {
    int64_t W = mlc_q_words(qq, K), G = mlc_q_groups(qq, K);
    size_t ss = mlc_q_scale_size(qq);
    uint32_t *words = malloc(sizeof(uint32_t) * (size_t)(N * W));
    void *scale = malloc(ss * (size_t)(N * G));
    if (!words || !scale)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory (%s)", p->name);
    int64_t r0 = 0;
    for (int j = 0; j < p->nsrc && st == MLC_OK; j++) {
      cv_src *s = srcs[j];
      bool ll = lossless_ok(s, qq) && K % 32 == 0;
      if (ll)
        c->lossless++;
      else if ((s->kind == CV_GGML && s->gtype != MLC_GGML_F32 && s->gtype != MLC_GGML_F16 && s->gtype != MLC_GGML_BF16) ||
               s->kind == CV_PKGQ) {
        c->requant++;
        const char *tn = s->kind == CV_GGML ? mlc_gguf_type_name(s->gtype) : mlc_dtype_name(s->dt);
        if (!strstr(c->requant_types, tn) && strlen(c->requant_types) + strlen(tn) + 3 < sizeof c->requant_types) {
          if (c->requant_types[0])
            strcat(c->requant_types, ", ");
          strcat(c->requant_types, tn);
        }
      }
      for (int64_t a = 0; a < s->rows; a += chunk) {
        int64_t nr = a + chunk <= s->rows ? chunk : s->rows - a;
        uint32_t *wd = words + (r0 + a) * W;
        void *sd = (char *)scale + (size_t)((r0 + a) * G) * ss;
        if (ll)
          lossless_rows(s, qq, a, nr, wd, ss == 2 ? sd : NULL, ss == 4 ? sd : NULL);
        else {
          src_read(s, a, nr, buf);
          quantize_parallel(qq, buf, K, nr, wd, sd, c->threads);
        }
        c->pr.done += (double)nr * (double)(s->row_bytes ? s->row_bytes : (size_t)K / 2);
        progress_show(&c->pr, p->name);
      }
      src_release(s);
      r0 += s->rows;
    }
    if (st == MLC_OK) {
      int64_t wshape[3], sshape[3];
      int nd;
      if (qq->kn) {
        uint32_t *wt = malloc(sizeof(uint32_t) * (size_t)(N * W));
        void *stt = malloc(ss * (size_t)(N * G));
        if (!wt || !stt) {
          free(wt);
          free(stt);
          st = mlc_err(MLC_ERR_NOMEM, "out of memory");
        } else {
          mlc_q_to_kn(qq, N, K, words, scale, wt, stt);
          free(words);
          free(scale);
          words = wt;
          scale = stt;
        }
        nd = 2;
        wshape[0] = W, wshape[1] = N, sshape[0] = G, sshape[1] = N;
      } else if (p->experts) {
        nd = 3;
        wshape[0] = sshape[0] = p->experts;
        wshape[1] = sshape[1] = N / p->experts;
        wshape[2] = W, sshape[2] = G;
      } else {
        nd = 2;
        wshape[0] = sshape[0] = N;
        wshape[1] = W, sshape[1] = G;
      }
      if (st == MLC_OK) {
        append(&c->w, qwn, nd, wshape, "uint32", words, sizeof(uint32_t) * (size_t)(N * W));
        if (ss == 4) { /* f32 scales: stored as bf16 */
          uint16_t *enc = malloc(2 * (size_t)(N * G));
          if (!enc)
            st = mlc_err(MLC_ERR_NOMEM, "out of memory");
          else {
            encode_floats(MLC_F32, scale, (size_t)(N * G), enc);
            append(&c->w, qsn, nd, sshape, "float32", enc, 2 * (size_t)(N * G));
            free(enc);
          }
        } else
          append(&c->w, qsn, nd, sshape, tvm_dtype(qq->model_dtype), scale, ss * (size_t)(N * G));
        c->param_bytes += 4.0 * (double)(N * W) + (double)ss * (double)(N * G);
        c->nparams += 2;
      }
    }
    free(words);
    free(scale);
  } else {
    mlc_dtype md = q->model_dtype;
    uint16_t *out = malloc(sizeof(uint16_t) * (size_t)(N * K));
    if (!out)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory (%s)", p->name);
    int64_t r0 = 0;
    for (int j = 0; j < p->nsrc && st == MLC_OK; j++) {
      cv_src *s = srcs[j];
      if (s->kind != CV_FLOAT && !(s->kind == CV_GGML && (s->gtype == MLC_GGML_F32 || s->gtype == MLC_GGML_F16 || s->gtype == MLC_GGML_BF16)))
        c->requant++;
      for (int64_t a = 0; a < s->rows; a += chunk) {
        int64_t nr = a + chunk <= s->rows ? chunk : s->rows - a;
        src_read(s, a, nr, buf);
        if (p->add_one)
          for (int64_t i = 0; i < nr * K; i++) {
            float v = s->kind == CV_FLOAT && s->dt != MLC_F32 ? mlc_round_to(s->dt, buf[i] + 1.0f) : buf[i] + 1.0f;
            buf[i] = v;
          }
        encode_floats(md, buf, (size_t)(nr * K), out + (r0 + a) * K);
        c->pr.done += (double)nr * (double)s->row_bytes;
        progress_show(&c->pr, p->name);
      }
      src_release(s);
      r0 += s->rows;
    }
    if (st == MLC_OK) {
      int64_t shape[3];
      int nd;
      if (!p->cols) {
        nd = 1;
        shape[0] = N;
      } else if (p->experts) {
        nd = 3;
        shape[0] = p->experts, shape[1] = N / p->experts, shape[2] = K;
      } else {
        nd = 2;
        shape[0] = N, shape[1] = K;
      }
      append(&c->w, p->name, nd, shape, tvm_dtype(md), out, sizeof(uint16_t) * (size_t)(N * K));
      c->param_bytes += (double)(N * K) * (md == MLC_F32 ? 4.0 : 2.0);
      c->nparams++;
    }
    free(out);
  }
  free(buf);
  free(srcs);
  return st != MLC_OK ? st : c->w.st;
}

/* conv_template objects for a few common templates; others are written by name (as MLC does
 * for templates it does not know). */
static cJSON *conv_template(const char *name) {
  cJSON *c = cJSON_CreateObject();
  const char *sys_t = "{system_message}", *sys = "", *sep = "\n", *rcs = ": ", *res = ":";
  const char *user = "USER", *asst = "ASSISTANT";
  const char *stop = NULL;
  bool chatml = !strcmp(name, "chatml") || !strcmp(name, "qwen2");
  bool l3 = !strcmp(name, "llama-3");
  if (chatml) {
    sys_t = "<|im_start|>system\n{system_message}<|im_end|>\n";
    sys = !strcmp(name, "qwen2") ? "You are a helpful assistant." : "A conversation between a user and an LLM-based AI assistant. The assistant gives helpful and honest answers.";
    user = "<|im_start|>user";
    asst = "<|im_start|>assistant";
    sep = "<|im_end|>\n";
    rcs = "\n";
    res = "\n";
    stop = "<|im_end|>";
  } else if (l3) {
    sys_t = "<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|>";
    sys = "You are a helpful, respectful and honest assistant.";
    user = "<|start_header_id|>user";
    asst = "<|start_header_id|>assistant";
    sep = "<|eot_id|>";
    rcs = "<|end_header_id|>\n\n";
    res = "<|end_header_id|>\n\n";
  } else if (!strcmp(name, "LM")) {
    sys_t = "{system_message}";
    user = "";
    asst = "";
    sep = "";
    rcs = "";
    res = "";
  } else {
    cJSON_Delete(c);
    return cJSON_CreateString(name);
  }
  cJSON_AddStringToObject(c, "name", name);
  cJSON_AddStringToObject(c, "system_template", sys_t);
  cJSON_AddStringToObject(c, "system_message", sys);
  if (l3) {
    cJSON *p = cJSON_AddArrayToObject(c, "system_prefix_token_ids");
    cJSON_AddItemToArray(p, cJSON_CreateNumber(128000));
  } else
    cJSON_AddNullToObject(c, "system_prefix_token_ids");
  cJSON_AddBoolToObject(c, "add_role_after_system_message", true);
  cJSON *roles = cJSON_AddObjectToObject(c, "roles");
  cJSON_AddStringToObject(roles, "user", user);
  cJSON_AddStringToObject(roles, "assistant", asst);
  cJSON *rt = cJSON_AddObjectToObject(c, "role_templates");
  cJSON_AddStringToObject(rt, "user", "{user_message}");
  cJSON_AddStringToObject(rt, "assistant", "{assistant_message}");
  cJSON_AddStringToObject(rt, "tool", "{tool_message}");
  cJSON_AddArrayToObject(c, "messages");
  cJSON *seps = cJSON_AddArrayToObject(c, "seps");
  cJSON_AddItemToArray(seps, cJSON_CreateString(sep));
  cJSON_AddStringToObject(c, "role_content_sep", rcs);
  cJSON_AddStringToObject(c, "role_empty_sep", res);
  cJSON *ss = cJSON_AddArrayToObject(c, "stop_str");
  if (stop)
    cJSON_AddItemToArray(ss, cJSON_CreateString(stop));
  cJSON *sti = cJSON_AddArrayToObject(c, "stop_token_ids");
  if (l3) {
    cJSON_AddItemToArray(sti, cJSON_CreateNumber(128001));
    cJSON_AddItemToArray(sti, cJSON_CreateNumber(128009));
  }
  cJSON_AddStringToObject(c, "function_string", "");
  cJSON_AddBoolToObject(c, "use_function_calling", false);
  return c;
}

static const char *TOKENIZER_FILES[] = {"tokenizer.model", "tokenizer.json", "vocab.json", "merges.txt",
                                        "added_tokens.json", "tokenizer_config.json", NULL};

static mlc_status copy_file(const char *from, const char *to) {
  char *data = NULL;
  size_t n = 0;
  MLC_TRY(mlc_read_file(from, &data, &n));
  FILE *f = fopen(to, "wb");
  mlc_status st = MLC_OK;
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0)
    st = mlc_err(MLC_ERR_IO, "%s: cannot write: %s", to, strerror(errno));
  free(data);
  return st;
}

static mlc_status write_text(const char *dir, const char *name, const char *text) {
  char *p = mlc_path_join(dir, name);
  if (!p)
    return MLC_ERR_NOMEM;
  FILE *f = fopen(p, "wb");
  size_t n = strlen(text);
  mlc_status st = MLC_OK;
  if (!f || fwrite(text, 1, n, f) != n || fclose(f) != 0)
    st = mlc_err(MLC_ERR_IO, "%s: cannot write: %s", p, strerror(errno));
  free(p);
  return st;
}

static mlc_status write_chat_config(cv_ctx *c, const char *dir, cJSON *tok_files) {
  const mlc_model_config *cfg = &c->S->cfg;
  int ctx = c->o->context_window > 0 ? c->o->context_window : cfg->max_position_embeddings > 0 ? cfg->max_position_embeddings : 4096;
  int prefill = ctx < 8192 ? ctx : 8192;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "version", "0.1.0");
  cJSON_AddStringToObject(j, "model_type", cfg->arch);
  cJSON_AddStringToObject(j, "quantization", c->q->name);
  cJSON *mc = cJSON_Duplicate(c->S->hf_config, 1);
  if (!mc)
    mc = cJSON_CreateObject();
  /* the MLC fields the runtime reads beside the architecture's own */
  static const char *drop[] = {"context_window_size", "prefill_chunk_size", "tensor_parallel_shards", "max_batch_size",
                               "position_embedding_base"};
  for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
    cJSON_DeleteItemFromObject(mc, drop[i]);
  cJSON_AddNumberToObject(mc, "context_window_size", ctx);
  cJSON_AddNumberToObject(mc, "prefill_chunk_size", prefill);
  cJSON_AddNumberToObject(mc, "tensor_parallel_shards", 1);
  cJSON_AddNumberToObject(mc, "max_batch_size", 128);
  if (!cJSON_GetObjectItem(mc, "head_dim"))
    cJSON_AddNumberToObject(mc, "head_dim", cfg->head_dim);
  cJSON_AddItemToObject(mc, "position_embedding_base", py_float_item(cfg->rope_theta));
  cJSON_AddItemToObject(j, "model_config", mc);
  cJSON_AddNumberToObject(j, "vocab_size", cfg->vocab_size);
  cJSON_AddNumberToObject(j, "context_window_size", ctx);
  cJSON_AddNumberToObject(j, "sliding_window_size", cfg->sliding_window > 0 ? cfg->sliding_window : -1);
  cJSON_AddNumberToObject(j, "prefill_chunk_size", prefill);
  cJSON_AddNumberToObject(j, "attention_sink_size", -1);
  cJSON_AddNumberToObject(j, "tensor_parallel_shards", 1);
  cJSON_AddNumberToObject(j, "pipeline_parallel_stages", 1);
  cJSON_AddNumberToObject(j, "active_vocab_size", cfg->vocab_size);
  /* sampling defaults from generation_config.json / config.json, else MLC's system defaults */
  double temp = 1.0, top_p = 1.0, rep = 1.0;
  if (c->S->dir) {
    char *gp = mlc_path_join(c->S->dir, "generation_config.json");
    cJSON *g = NULL;
    if (gp && mlc_file_exists(gp) && mlc_json_load(gp, &g) == MLC_OK) {
      cJSON *v;
      if (cJSON_IsNumber(v = cJSON_GetObjectItem(g, "temperature")))
        temp = v->valuedouble;
      if (cJSON_IsNumber(v = cJSON_GetObjectItem(g, "top_p")))
        top_p = v->valuedouble;
      if (cJSON_IsNumber(v = cJSON_GetObjectItem(g, "repetition_penalty")))
        rep = v->valuedouble;
      cJSON_Delete(g);
    }
    free(gp);
  }
  cJSON_AddItemToObject(j, "temperature", py_float_item(temp));
  cJSON_AddItemToObject(j, "presence_penalty", py_float_item(0.0));
  cJSON_AddItemToObject(j, "frequency_penalty", py_float_item(0.0));
  cJSON_AddItemToObject(j, "repetition_penalty", py_float_item(rep));
  cJSON_AddItemToObject(j, "top_p", py_float_item(top_p));
  cJSON_AddItemToObject(j, "tokenizer_files", tok_files);
  cJSON *ti = cJSON_AddObjectToObject(j, "tokenizer_info");
  bool byte_level = false;
  if (c->S->gg_tokenizer)
    byte_level = strstr(c->S->gg_tokenizer, "\"ByteLevel\"") != NULL;
  else if (c->S->dir) {
    char *tp = mlc_path_join(c->S->dir, "tokenizer.json");
    char *t = NULL;
    size_t tn = 0;
    if (tp && mlc_file_exists(tp) && mlc_read_file(tp, &t, &tn) == MLC_OK)
      byte_level = strstr(t, "\"ByteLevel\"") != NULL;
    free(t);
    free(tp);
  }
  cJSON_AddStringToObject(ti, "token_postproc_method", byte_level ? "byte_level" : "byte_fallback");
  cJSON_AddBoolToObject(ti, "prepend_space_in_encode", false);
  cJSON_AddBoolToObject(ti, "strip_space_in_decode", false);
  const char *tmpl = c->o->conv_template;
  if (!tmpl)
    tmpl = !strcmp(cfg->arch, "qwen2") || !strcmp(cfg->arch, "qwen3") || !strcmp(cfg->arch, "qwen3_moe") ? "chatml" : "LM";
  cJSON_AddItemToObject(j, "conv_template", conv_template(tmpl));
  cJSON_AddNumberToObject(j, "pad_token_id", 0);
  cJSON_AddNumberToObject(j, "bos_token_id", cfg->bos_token_id >= 0 ? cfg->bos_token_id : 1);
  if (cfg->n_eos > 1) {
    cJSON *e = cJSON_AddArrayToObject(j, "eos_token_id");
    for (int i = 0; i < cfg->n_eos; i++)
      cJSON_AddItemToArray(e, cJSON_CreateNumber(cfg->eos_ids[i]));
  } else
    cJSON_AddNumberToObject(j, "eos_token_id", cfg->eos_token_id >= 0 ? cfg->eos_token_id : 2);
  cJSON_AddStringToObject(j, "model_task", "chat");
  cJSON_AddNullToObject(j, "embedding_metadata");
  mlc_buf b = {0};
  py_json(&b, j, 2, 0);
  cJSON_Delete(j);
  if (b.oom) {
    mlc_buf_free(&b);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  mlc_status st = write_text(dir, "mlc-chat-config.json", b.data);
  mlc_buf_free(&b);
  return st;
}

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
        continue;
      char *p = mlc_path_join(dir, e->d_name);
      if (p)
        unlink(p);
      free(p);
    }
    closedir(d);
  }
  rmdir(dir);
}

static int cmp_order(const void *a, const void *b) {
  const int *x = a, *y = b;
  return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

mlc_status mlc_convert(const mlc_convert_opts *o, mlc_convert_report *rep) {
  memset(rep, 0, sizeof *rep);
  double t0 = mlc_now();
  const mlc_qscheme *q = mlc_qscheme_find(o->quant);
  if (!q)
    return mlc_err(MLC_ERR_INVALID_ARG, "unknown quantization '%s' (supported: %s)", o->quant ? o->quant : "",
                   mlc_qscheme_list());
  cv_source S = {0};
  mlc_status st;
  size_t sl = strlen(o->src);
  if (mlc_is_dir(o->src))
    st = mlc_pkg_is_package(o->src) ? open_pkg(o->src, &S) : open_hf(o->src, &S);
  else if (sl > 5 && !strcmp(o->src + sl - 5, ".gguf"))
    st = open_gguf(o->src, &S);
  else if (mlc_file_exists(o->src))
    st = open_gguf(o->src, &S);
  else
    st = mlc_err(MLC_ERR_IO, "%s: no such directory or file", o->src);
  if (st != MLC_OK) {
    source_close(&S);
    return st;
  }
  mlc_pparam *pp = NULL;
  int np = 0;
  st = mlc_pkg_params(&S.cfg, &pp, &np);
  /* loading order: each parameter by its first source in the source order */
  int *ord = st == MLC_OK ? malloc(sizeof(int) * 2 * (size_t)(np + 1)) : NULL;
  if (st == MLC_OK && !ord)
    st = mlc_err(MLC_ERR_NOMEM, "out of memory");
  for (int i = 0; i < np && st == MLC_OK; i++) {
    int best = 1 << 30;
    for (int j = 0; j < pp[i].nsrc; j++) {
      const cv_src *s = src_find(&S, pp[i].src[j]);
      if (s && s->order < best)
        best = s->order;
    }
    ord[2 * i] = best;
    ord[2 * i + 1] = i;
  }
  if (st == MLC_OK)
    qsort(ord, (size_t)np, sizeof(int) * 2, cmp_order);
  /* output directory */
  char *tmp = NULL;
  if (st == MLC_OK) {
    size_t n = strlen(o->out) + 16;
    tmp = malloc(n);
    if (!tmp)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory");
    else {
      snprintf(tmp, n, "%s.tmp-XXXXXX", o->out);
      if (!mkdtemp(tmp))
        st = mlc_err(MLC_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
  }
  cv_ctx c = {.o = o, .S = &S, .q = q};
  c.w.dir = tmp;
  c.threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  c.pr.on = o->progress;
  c.pr.t0 = mlc_now();
  for (int i = 0; i < S.n; i++)
    c.pr.total += (double)S.s[i].rows * (double)(S.s[i].row_bytes ? S.s[i].row_bytes : (size_t)S.s[i].cols / 2);
  for (int i = 0; i < np && st == MLC_OK; i++)
    st = emit_param(&c, &pp[ord[2 * i + 1]]);
  if (st == MLC_OK) {
    commit(&c.w);
    st = c.w.st;
  }
  if (c.pr.on)
    fprintf(stderr, "\n");
  if (st == MLC_OK) {
    double bits = c.src_params > 0 ? c.param_bytes * 8.0 / c.src_params : 0;
    char *ij = index_json(&c.w, c.nparams, c.param_bytes, bits, false);
    st = ij ? write_text(tmp, "tensor-cache.json", ij) : MLC_ERR_NOMEM;
    free(ij);
    bool any_f32 = false;
    for (int i = 0; i < c.w.nshards; i++)
      for (int j = 0; j < c.w.shards[i].nrecs; j++)
        any_f32 |= !strcmp(c.w.shards[i].recs[j].dtype, "float32");
    if (st == MLC_OK && any_f32) {
      ij = index_json(&c.w, c.nparams, c.param_bytes, bits, true);
      st = ij ? write_text(tmp, "tensor-cache-b16.json", ij) : MLC_ERR_NOMEM;
      free(ij);
    }
  }
  /* tokenizer files */
  cJSON *tf = cJSON_CreateArray();
  for (int i = 0; TOKENIZER_FILES[i] && st == MLC_OK && S.dir; i++) {
    char *from = mlc_path_join(S.dir, TOKENIZER_FILES[i]), *to = mlc_path_join(tmp, TOKENIZER_FILES[i]);
    if (from && to && mlc_file_exists(from)) {
      st = copy_file(from, to);
      cJSON_AddItemToArray(tf, cJSON_CreateString(TOKENIZER_FILES[i]));
    }
    free(from);
    free(to);
  }
  if (st == MLC_OK && S.gg_tokenizer) {
    st = write_text(tmp, "tokenizer.json", S.gg_tokenizer);
    cJSON_AddItemToArray(tf, cJSON_CreateString("tokenizer.json"));
  }
  if (st == MLC_OK)
    st = write_chat_config(&c, tmp, tf);
  else
    cJSON_Delete(tf);
  /* rename into place (an existing package or empty directory is replaced) */
  if (st == MLC_OK) {
    if (mlc_is_dir(o->out)) {
      if (!mlc_pkg_is_package(o->out) && rmdir(o->out) != 0)
        st = mlc_err(MLC_ERR_IO, "%s: exists and is not an MLC package or an empty directory; not replacing it", o->out);
      else
        rm_tree(o->out);
    }
    if (st == MLC_OK && rename(tmp, o->out) != 0)
      st = mlc_err(MLC_ERR_IO, "%s: cannot rename %s into place: %s", o->out, tmp, strerror(errno));
  }
  if (st != MLC_OK && tmp)
    rm_tree(tmp);
  rep->params = c.nparams;
  rep->shards = c.w.nshards;
  rep->lossless = c.lossless;
  rep->requantized = c.requant;
  rep->out_bytes = c.param_bytes;
  rep->src_params = c.src_params;
  rep->seconds = mlc_now() - t0;
  rep->peak_rss = mlc_peak_rss();
  if (c.requant && !strcmp(S.kind, "gguf"))
    snprintf(rep->note, sizeof rep->note, "%d tensors (%s) were dequantized and requantized to %s%s", c.requant,
             c.requant_types[0] ? c.requant_types : "non-float", q->name,
             c.lossless ? "; the others were kept losslessly" : "");
  else if (c.lossless && !strcmp(S.kind, "gguf"))
    snprintf(rep->note, sizeof rep->note, "all %d quantized tensors were kept losslessly", c.lossless);
  writer_free(&c.w);
  free(tmp);
  free(ord);
  mlc_pkg_params_free(pp, np);
  source_close(&S);
  return st;
}

/* ---- GGUF cache ---- */

mlc_status mlc_gguf_package(const char *gguf_path, const char *quant, char **dir) {
  *dir = NULL;
  struct stat sb;
  if (stat(gguf_path, &sb) != 0)
    return mlc_err(MLC_ERR_IO, "%s: %s", gguf_path, strerror(errno));
  const char *q = quant;
  if (!q || !strcmp(q, "q0f32")) {
    mlc_gguf *g = NULL;
    MLC_TRY(mlc_gguf_open(gguf_path, &g));
    int counts[64] = {0};
    for (int i = 0; i < mlc_gguf_count(g); i++) {
      const mlc_gguf_tensor *t = mlc_gguf_at(g, i);
      if (t->ndim >= 2 && t->type < 64)
        counts[t->type]++;
    }
    mlc_gguf_close(g);
    int best = 0;
    for (int i = 0; i < 64; i++)
      if (counts[i] > counts[best])
        best = i;
    q = best == MLC_GGML_Q8_0 ? "q8f16_1" : (best == MLC_GGML_F16 || best == MLC_GGML_BF16) ? "q0f16" : best == MLC_GGML_F32 ? "q0f32" : "q4f16_1";
  }
  char key[1024];
  snprintf(key, sizeof key, "%s|%lld|%lld|%s|v1", gguf_path, (long long)sb.st_size, (long long)sb.st_mtime, q);
  const char *cd = getenv("MLC_CACHE_DIR");
  const char *home = getenv("HOME");
  char base[900];
  if (cd && cd[0])
    snprintf(base, sizeof base, "%s", cd);
  else
    snprintf(base, sizeof base, "%s/.cache/mlc-c", home ? home : "/tmp");
  char path[1024];
  snprintf(path, sizeof path, "%s/gguf-%016llx", base, (unsigned long long)mlc_hash64(key, strlen(key), 0));
  if (!mlc_pkg_is_package(path)) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s", base);
    for (char *p = cmd + 1; *p; p++)
      if (*p == '/') {
        *p = 0;
        mkdir(cmd, 0755);
        *p = '/';
      }
    mkdir(cmd, 0755);
    mlc_convert_opts o = {.src = gguf_path, .out = path, .quant = q};
    mlc_convert_report rep;
    mlc_status st = mlc_convert(&o, &rep);
    if (st != MLC_OK)
      return mlc_err_context(st, "converting %s to %s", gguf_path, path);
    if (rep.note[0])
      fprintf(stderr, "mlc: %s: %s\n", gguf_path, rep.note);
  }
  *dir = mlc_strdup(path);
  return *dir ? MLC_OK : MLC_ERR_NOMEM;
}

/* A Hugging Face directory quantized into $MLC_CACHE_DIR/pkg-<hash of its files' names, sizes,
 * times and the scheme>. */
static mlc_status hf_package(const char *dir, const char *quant, char **out) {
  *out = NULL;
  if (!mlc_qscheme_find(quant))
    return mlc_err(MLC_ERR_INVALID_ARG, "unknown quantization '%s' (supported: %s)", quant, mlc_qscheme_list());
  uint64_t h = mlc_hash64(quant, strlen(quant), 0x9e37);
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (!(n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) && strcmp(e->d_name, "config.json") &&
        strcmp(e->d_name, "model.safetensors.index.json"))
      continue;
    char *p = mlc_path_join(dir, e->d_name);
    struct stat sb;
    if (p && stat(p, &sb) == 0) {
      long long v[2] = {(long long)sb.st_size, (long long)sb.st_mtime};
      h ^= mlc_hash64(e->d_name, n, 0) + mlc_hash64(v, sizeof v, 0); /* order-independent */
    }
    free(p);
  }
  if (d)
    closedir(d);
  char *abs = realpath(dir, NULL);
  if (abs)
    h = mlc_hash64(abs, strlen(abs), h);
  free(abs);
  const char *cd = getenv("MLC_CACHE_DIR"), *home = getenv("HOME");
  char base[900], path[1024];
  if (cd && cd[0])
    snprintf(base, sizeof base, "%s", cd);
  else
    snprintf(base, sizeof base, "%s/.cache/mlc-c", home ? home : "/tmp");
  snprintf(path, sizeof path, "%s/pkg-%016llx", base, (unsigned long long)h);
  if (!mlc_pkg_is_package(path)) {
    for (char *p = base + 1; *p; p++)
      if (*p == '/') {
        *p = 0;
        mkdir(base, 0755);
        *p = '/';
      }
    mkdir(base, 0755);
    mlc_convert_opts o = {.src = dir, .out = path, .quant = quant};
    mlc_convert_report rep;
    mlc_status st = mlc_convert(&o, &rep);
    if (st != MLC_OK)
      return mlc_err_context(st, "quantizing %s to %s", dir, quant);
  }
  *out = mlc_strdup(path);
  return *out ? MLC_OK : MLC_ERR_NOMEM;
}

mlc_status mlc_model_source(const char *path, const char *quant, char **dir, mlc_model_config *cfg, mlc_st_set **st) {
  *dir = NULL;
  *st = NULL;
  size_t n = strlen(path);
  bool gguf = !mlc_is_dir(path) && n > 5 && !strcmp(path + n - 5, ".gguf");
  mlc_status s = MLC_OK;
  if (gguf) {
    if (quant && !mlc_qscheme_find(quant))
      return mlc_err(MLC_ERR_INVALID_ARG, "unknown quantization '%s' (supported: %s)", quant, mlc_qscheme_list());
    MLC_TRY(mlc_gguf_package(path, quant, dir));
  } else if (!mlc_is_dir(path)) {
    return mlc_err(MLC_ERR_IO, "%s: not a model directory or .gguf file (expected a Hugging Face directory with config.json, "
                               "an MLC package with tensor-cache.json, or a GGUF file)", path);
  } else {
    *dir = mlc_strdup(path);
    if (!*dir)
      return MLC_ERR_NOMEM;
  }
  if (mlc_pkg_is_package(*dir)) {
    char pq[16] = {0};
    s = mlc_pkg_open(*dir, cfg, st, pq);
    if (s == MLC_OK && quant && !gguf && strcmp(quant, pq) && strcmp(quant, "q0f32"))
      s = mlc_err(MLC_ERR_INVALID_ARG, "%s is a %s package; --quant %s would need a conversion (mlc convert)", *dir, pq, quant);
  } else if (quant && strcmp(quant, "q0f32") != 0) {
    /* quantize at load: a package in the cache, converted once */
    char *pkg = NULL;
    s = hf_package(*dir, quant, &pkg);
    if (s == MLC_OK)
      s = mlc_pkg_open(pkg, cfg, st, NULL);
    free(pkg);
  } else {
    s = mlc_config_load(*dir, cfg);
    if (s == MLC_OK)
      s = mlc_st_open_dir(*dir, st);
  }
  if (s != MLC_OK) {
    mlc_st_close(*st);
    *st = NULL;
    free(*dir);
    *dir = NULL;
  }
  return s;
}
