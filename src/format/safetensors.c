/* safetensors.c: memory-mapped safetensors files, single or sharded, fully validated.
 *
 * Layout of a file: 8-byte little-endian header length N, N bytes of JSON (an object mapping
 * tensor names to {dtype, shape, data_offsets}, plus an optional "__metadata__" object), then the
 * data section. Offsets are relative to the start of the data section. Tensor data is never
 * copied: mlc_st_tensor.data points into the mapping, which lives as long as the set. */
#include "format/format.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* the limit of the reference implementation */
#define ST_MAX_INT ((double)9007199254740992.0) /* 2^53: larger integers are not exact in JSON */

/* ---- dtypes ---- */
static const struct {
  const char *st_name, *name;
  size_t size;
} g_dtypes[MLC_DTYPE_COUNT] = {
    [MLC_F32] = {"F32", "f32", 4}, [MLC_F16] = {"F16", "f16", 2}, [MLC_BF16] = {"BF16", "bf16", 2},
    [MLC_I32] = {"I32", "i32", 4}, [MLC_U32] = {"U32", "u32", 4}, [MLC_I8] = {"I8", "i8", 1},
    [MLC_U8] = {"U8", "u8", 1},    [MLC_I64] = {"I64", "i64", 8},
    /* packed group-quantized weights: no safetensors name, no per-element size */
    [MLC_Q4F16_1] = {NULL, "q4f16_1", 0}, [MLC_Q4F32_1] = {NULL, "q4f32_1", 0},
    [MLC_Q3F16_1] = {NULL, "q3f16_1", 0}, [MLC_Q4F16_0] = {NULL, "q4f16_0", 0},
    [MLC_Q8F16_1] = {NULL, "q8f16_1", 0}, [MLC_Q4F16_1I] = {NULL, "q4f16_1i", 0},
    [MLC_Q4F32_1I] = {NULL, "q4f32_1i", 0},
};

/* dtypes that safetensors defines but this build cannot read. */
static const char *const g_known_unsupported[] = {
    "F64", "I16", "U16", "U64", "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "E8M0",
    "F4",  "F6_E2M3", "F6_E3M2", "C64", "F8_E4M3FN", "F8_E5M2FNUZ", "F8_E4M3FNUZ", NULL};

size_t mlc_dtype_size(mlc_dtype t) {
  return (unsigned)t < MLC_DTYPE_COUNT ? g_dtypes[t].size : 0;
}
const char *mlc_dtype_name(mlc_dtype t) {
  return (unsigned)t < MLC_DTYPE_COUNT ? g_dtypes[t].name : "invalid";
}
static const char *st_dtype_name(mlc_dtype t) {
  return (unsigned)t < MLC_DTYPE_COUNT && g_dtypes[t].st_name ? g_dtypes[t].st_name : "invalid";
}

/* ---- the set ---- */
typedef struct st_file {
  char *path;
  mlc_mmap map;
} st_file;

struct mlc_st_set {
  char *where; /* the directory or file opened, for messages */
  st_file *files;
  int nfiles;
  void **bufs; /* heap buffers owned by a virtual set */
  int nbufs;
  mlc_st_tensor *t;
  int n, cap;
  int *hash; /* open addressing, -1 empty */
  size_t hcap;
};

void mlc_st_close(mlc_st_set *s) {
  if (!s)
    return;
  for (int i = 0; i < s->n; i++)
    free(s->t[i].name);
  free(s->t);
  for (int i = 0; i < s->nfiles; i++) {
    mlc_mmap_close(&s->files[i].map);
    free(s->files[i].path);
  }
  free(s->files);
  for (int i = 0; i < s->nbufs; i++)
    free(s->bufs[i]);
  free(s->bufs);
  free(s->hash);
  free(s->where);
  free(s);
}

int mlc_st_count(const mlc_st_set *s) { return s ? s->n : 0; }
const mlc_st_tensor *mlc_st_at(const mlc_st_set *s, int i) {
  return (s && i >= 0 && i < s->n) ? &s->t[i] : NULL;
}

static uint64_t name_hash(const char *name) { return mlc_hash64(name, strlen(name), 0x5afe); }

const mlc_st_tensor *mlc_st_find(const mlc_st_set *s, const char *name) {
  if (!s || !name || !s->hash)
    return NULL;
  size_t mask = s->hcap - 1;
  for (size_t h = (size_t)name_hash(name) & mask;; h = (h + 1) & mask) {
    int i = s->hash[h];
    if (i < 0)
      return NULL;
    if (strcmp(s->t[i].name, name) == 0)
      return &s->t[i];
  }
}

/* Builds the name index; fails on a name present twice. */
static mlc_status st_build_hash(mlc_st_set *s) {
  size_t cap = 16;
  while (cap < (size_t)s->n * 2 + 1)
    cap *= 2;
  free(s->hash);
  s->hash = mlc_malloc(cap * sizeof *s->hash);
  if (!s->hash)
    return MLC_ERR_NOMEM;
  s->hcap = cap;
  for (size_t i = 0; i < cap; i++)
    s->hash[i] = -1;
  for (int i = 0; i < s->n; i++) {
    size_t h = (size_t)name_hash(s->t[i].name) & (cap - 1);
    while (s->hash[h] >= 0) {
      const mlc_st_tensor *o = &s->t[s->hash[h]];
      if (strcmp(o->name, s->t[i].name) == 0) {
        if (o->file == s->t[i].file)
          return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' is listed twice in the header",
                         o->file, o->name);
        return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' is in both %s and %s", s->where,
                       o->name, o->file, s->t[i].file);
      }
      h = (h + 1) & (cap - 1);
    }
    s->hash[h] = i;
  }
  return MLC_OK;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (k < n)
    snprintf(buf + k, n - k, "]");
}

/* ---- parsing one header ---- */

/* An exact non-negative integer (at most 2^53). */
static bool json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v))
    return false;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= ST_MAX_INT) || d != (double)(uint64_t)d)
    return false;
  *out = (uint64_t)d;
  return true;
}

typedef struct span {
  uint64_t begin, end;
  int idx;
} span;
static int span_cmp(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return 0;
}

static mlc_status st_push_tensor(mlc_st_set *s, mlc_st_tensor *t) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 64;
    mlc_st_tensor *nt = mlc_realloc(s->t, (size_t)cap * sizeof *nt);
    if (!nt)
      return MLC_ERR_NOMEM;
    s->t = nt;
    s->cap = cap;
  }
  s->t[s->n++] = *t;
  return MLC_OK;
}

static mlc_status parse_dtype(const char *path, const char *name, const cJSON *v, mlc_dtype *out) {
  char got[80];
  if (!v)
    return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': missing field 'dtype'", path, name);
  if (!cJSON_IsString(v) || !v->valuestring) {
    mlc_json_describe(v, got, sizeof got);
    return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': field 'dtype': expected a string, got %s",
                   path, name, got);
  }
  for (int d = 0; d < MLC_DTYPE_COUNT; d++)
    if (g_dtypes[d].st_name && strcmp(v->valuestring, g_dtypes[d].st_name) == 0) {
      *out = (mlc_dtype)d;
      return MLC_OK;
    }
  for (int i = 0; g_known_unsupported[i]; i++)
    if (strcmp(v->valuestring, g_known_unsupported[i]) == 0)
      return mlc_err(MLC_ERR_UNSUPPORTED,
                     "%s: tensor '%s': dtype %s is not supported (supported: F32, F16, BF16, "
                     "I32, I64, U8, I8, U32)",
                     path, name, v->valuestring);
  mlc_json_describe(v, got, sizeof got);
  return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': unknown dtype %s", path, name, got);
}

/* Parses the header of a mapped file and appends its tensors to the set. */
static mlc_status st_parse_file(mlc_st_set *s, st_file *f) {
  const char *path = f->path;
  const unsigned char *base = f->map.data;
  size_t size = f->map.size;
  if (size < 8)
    return mlc_err(MLC_ERR_FORMAT,
                   "%s: file is truncated: %zu bytes, too short for the 8-byte header length",
                   path, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | base[i];
  if (hlen > size - 8)
    return mlc_err(MLC_ERR_FORMAT, "%s: header length %llu exceeds file size %zu", path,
                   (unsigned long long)hlen, size);
  if (hlen == 0)
    return mlc_err(MLC_ERR_FORMAT, "%s: header length is 0: the JSON header is empty", path);
  if (hlen > ST_MAX_HEADER)
    return mlc_err(MLC_ERR_UNSUPPORTED, "%s: header length %llu exceeds the limit of %llu bytes",
                   path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
  const unsigned char *data = base + 8 + hlen;
  size_t data_size = size - 8 - (size_t)hlen;

  /* The header is parsed from a bounded copy; the tensor data is never copied. */
  char *label = mlc_malloc(strlen(path) + 16);
  if (!label)
    return MLC_ERR_NOMEM;
  sprintf(label, "%s: header", path);
  cJSON *root = NULL;
  mlc_status st = mlc_json_parse_len((const char *)base + 8, (size_t)hlen, label, &root);
  free(label);
  if (st != MLC_OK)
    return st;
  if (!cJSON_IsObject(root)) {
    char got[80];
    mlc_json_describe(root, got, sizeof got);
    cJSON_Delete(root);
    return mlc_err(MLC_ERR_FORMAT, "%s: header is not a JSON object (got %s)", path, got);
  }

  int first = s->n;
  for (const cJSON *e = root->child; e; e = e->next) {
    const char *name = e->string ? e->string : "";
    if (strcmp(name, "__metadata__") == 0) {
      if (!cJSON_IsObject(e) && !cJSON_IsNull(e)) {
        st = mlc_err(MLC_ERR_FORMAT, "%s: '__metadata__' is not a JSON object", path);
        goto fail;
      }
      continue;
    }
    if (!cJSON_IsObject(e)) {
      char got[80];
      mlc_json_describe(e, got, sizeof got);
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': expected an object, got %s", path, name,
                   got);
      goto fail;
    }
    mlc_st_tensor t;
    memset(&t, 0, sizeof t);
    st = parse_dtype(path, name, cJSON_GetObjectItemCaseSensitive(e, "dtype"), &t.dtype);
    if (st != MLC_OK)
      goto fail;

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!shape) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': missing field 'shape'", path, name);
      goto fail;
    }
    if (!cJSON_IsArray(shape)) {
      char got[80];
      mlc_json_describe(shape, got, sizeof got);
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': field 'shape': expected an array, got %s",
                   path, name, got);
      goto fail;
    }
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > MLC_MAX_DIMS) {
      st = mlc_err(MLC_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d supported)",
                   path, name, ndim, MLC_MAX_DIMS);
      goto fail;
    }
    uint64_t nelem = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *x = shape->child; x; x = x->next, d++) {
      uint64_t v;
      if (!json_uint(x, &v) || v > (uint64_t)INT64_MAX) {
        char got[80];
        mlc_json_describe(x, got, sizeof got);
        st = mlc_err(MLC_ERR_FORMAT,
                     "%s: tensor '%s': field 'shape': dimension %d is %s, not a non-negative "
                     "integer",
                     path, name, d, got);
        goto fail;
      }
      t.shape[d] = (int64_t)v;
      if (v && nelem > UINT64_MAX / v)
        overflow = true;
      else
        nelem *= v;
    }
    t.ndim = ndim;
    size_t esz = g_dtypes[t.dtype].size;
    if (nelem > UINT64_MAX / esz)
      overflow = true;
    uint64_t want = overflow ? 0 : nelem * esz;

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!offs) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': missing field 'data_offsets'", path, name);
      goto fail;
    }
    uint64_t b = 0, en = 0;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
        !json_uint(offs->child->next, &en)) {
      st = mlc_err(MLC_ERR_FORMAT,
                   "%s: tensor '%s': field 'data_offsets': expected two non-negative integers "
                   "[begin, end]",
                   path, name);
      goto fail;
    }
    if (b > en) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu]: begin > end", path,
                   name, (unsigned long long)b, (unsigned long long)en);
      goto fail;
    }
    if (en > data_size) {
      st = mlc_err(MLC_ERR_FORMAT,
                   "%s: tensor '%s': data_offsets [%llu, %llu] extend past the end of the data "
                   "section (%zu bytes; is the file truncated?)",
                   path, name, (unsigned long long)b, (unsigned long long)en, data_size);
      goto fail;
    }
    if (overflow || en - b != want) {
      char sh[160], sz[64];
      shape_str(t.shape, t.ndim, sh, sizeof sh);
      if (overflow)
        snprintf(sz, sizeof sz, "a size that overflows 64 bits");
      else
        snprintf(sz, sizeof sz, "%llu bytes", (unsigned long long)want);
      st = mlc_err(MLC_ERR_FORMAT,
                   "%s: tensor '%s': data_offsets [%llu, %llu] do not match shape %s x %s (%s)",
                   path, name, (unsigned long long)b, (unsigned long long)en, sh,
                   st_dtype_name(t.dtype), sz);
      goto fail;
    }
    t.nbytes = (size_t)(en - b);
    t.data = data + b;
    t.file = f->path;
    t.name = mlc_strdup(name);
    if (!t.name) {
      st = MLC_ERR_NOMEM;
      goto fail;
    }
    st = st_push_tensor(s, &t);
    if (st != MLC_OK) {
      free(t.name);
      goto fail;
    }
  }
  cJSON_Delete(root);
  root = NULL;

  /* No two tensors of this file may share bytes. */
  int cnt = s->n - first;
  if (cnt > 1) {
    span *sp = mlc_malloc((size_t)cnt * sizeof *sp);
    if (!sp)
      return MLC_ERR_NOMEM;
    int m = 0;
    for (int i = first; i < s->n; i++) {
      if (!s->t[i].nbytes)
        continue;
      uint64_t b = (uint64_t)((const unsigned char *)s->t[i].data - data);
      sp[m++] = (span){b, b + s->t[i].nbytes, i};
    }
    qsort(sp, (size_t)m, sizeof *sp, span_cmp);
    for (int i = 1; i < m; i++) {
      if (sp[i].begin < sp[i - 1].end) {
        st = mlc_err(MLC_ERR_FORMAT,
                     "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                     path, s->t[sp[i].idx].name, (unsigned long long)sp[i].begin,
                     (unsigned long long)sp[i].end, s->t[sp[i - 1].idx].name,
                     (unsigned long long)sp[i - 1].begin, (unsigned long long)sp[i - 1].end);
        free(sp);
        return st;
      }
    }
    free(sp);
  }
  return MLC_OK;

fail:
  cJSON_Delete(root);
  return st;
}

/* Maps and parses one file into the set. */
static mlc_status st_add_file(mlc_st_set *s, const char *path) {
  st_file *nf = mlc_realloc(s->files, (size_t)(s->nfiles + 1) * sizeof *nf);
  if (!nf)
    return MLC_ERR_NOMEM;
  s->files = nf;
  st_file *f = &s->files[s->nfiles];
  memset(f, 0, sizeof *f);
  f->path = mlc_strdup(path);
  if (!f->path)
    return MLC_ERR_NOMEM;
  s->nfiles++;
  MLC_TRY(mlc_mmap_open(path, &f->map));
  return st_parse_file(s, f);
}

static mlc_st_set *st_new(const char *where) {
  mlc_st_set *s = mlc_calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->where = mlc_strdup(where);
  if (!s->where) {
    free(s);
    return NULL;
  }
  return s;
}

mlc_status mlc_st_open_file(const char *path, mlc_st_set **out) {
  *out = NULL;
  if (!path)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_st_open_file: no path given");
  mlc_st_set *s = st_new(path);
  if (!s)
    return MLC_ERR_NOMEM;
  mlc_status st = st_add_file(s, path);
  if (st == MLC_OK)
    st = st_build_hash(s);
  if (st != MLC_OK) {
    mlc_st_close(s);
    return st;
  }
  *out = s;
  return MLC_OK;
}

/* A shard name from an index must stay inside the directory. */
static bool shard_name_ok(const char *n) {
  if (!n[0] || n[0] == '/')
    return false;
  const char *p = n;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (len == 2 && p[0] == '.' && p[1] == '.')
      return false;
    if (!slash)
      break;
    p = slash + 1;
  }
  return true;
}

static mlc_status st_open_index(mlc_st_set *s, const char *dir, const char *index_path) {
  cJSON *root = NULL;
  MLC_TRY(mlc_json_load(index_path, &root));
  mlc_status st = MLC_OK;
  const char **shards = NULL;
  int nshards = 0;
  char got[80];
  const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map")
                                         : NULL;
  if (!cJSON_IsObject(root)) {
    mlc_json_describe(root, got, sizeof got);
    st = mlc_err(MLC_ERR_FORMAT, "%s: expected a JSON object, got %s", index_path, got);
    goto done;
  }
  if (!wm) {
    st = mlc_err(MLC_ERR_FORMAT, "%s: missing field 'weight_map'", index_path);
    goto done;
  }
  if (!cJSON_IsObject(wm)) {
    mlc_json_describe(wm, got, sizeof got);
    st = mlc_err(MLC_ERR_FORMAT, "%s: field 'weight_map': expected an object, got %s",
                 index_path, got);
    goto done;
  }
  int nentries = cJSON_GetArraySize(wm);
  if (nentries == 0) {
    st = mlc_err(MLC_ERR_FORMAT, "%s: field 'weight_map' lists no tensors", index_path);
    goto done;
  }
  shards = mlc_calloc((size_t)nentries, sizeof *shards);
  if (!shards) {
    st = MLC_ERR_NOMEM;
    goto done;
  }
  for (const cJSON *e = wm->child; e; e = e->next) {
    const char *tn = e->string ? e->string : "";
    if (!cJSON_IsString(e) || !e->valuestring) {
      mlc_json_describe(e, got, sizeof got);
      st = mlc_err(MLC_ERR_FORMAT,
                   "%s: field 'weight_map': tensor '%s': expected a shard file name, got %s",
                   index_path, tn, got);
      goto done;
    }
    if (!shard_name_ok(e->valuestring)) {
      st = mlc_err(MLC_ERR_FORMAT,
                   "%s: field 'weight_map': tensor '%s': shard name '%s' leaves the directory",
                   index_path, tn, e->valuestring);
      goto done;
    }
    bool seen = false;
    for (int i = 0; i < nshards && !seen; i++)
      seen = strcmp(shards[i], e->valuestring) == 0;
    if (seen)
      continue;
    shards[nshards++] = e->valuestring;
    char *p = mlc_path_join(dir, e->valuestring);
    if (!p) {
      st = MLC_ERR_NOMEM;
      goto done;
    }
    if (!mlc_file_exists(p)) {
      st = mlc_err(MLC_ERR_IO, "%s: shard '%s' (listed for tensor '%s') does not exist: %s",
                   index_path, e->valuestring, tn, p);
      free(p);
      goto done;
    }
    st = st_add_file(s, p);
    free(p);
    if (st != MLC_OK) {
      mlc_err_context(st, "%s", index_path);
      goto done;
    }
  }
  st = st_build_hash(s);
  if (st != MLC_OK)
    goto done;
  /* Every tensor the index lists must be in the shard it names. */
  for (const cJSON *e = wm->child; e; e = e->next) {
    const mlc_st_tensor *t = mlc_st_find(s, e->string);
    size_t fl = t ? strlen(t->file) : 0, sl = strlen(e->valuestring);
    bool same = t && fl >= sl && strcmp(t->file + fl - sl, e->valuestring) == 0 &&
                (fl == sl || t->file[fl - sl - 1] == '/');
    if (!t || !same) {
      st = mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but %s", index_path,
                   e->string, e->valuestring,
                   t ? "is stored in another shard" : "that file does not contain it");
      goto done;
    }
  }
done:
  free(shards);
  cJSON_Delete(root);
  return st;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

mlc_status mlc_st_open_dir(const char *dir, mlc_st_set **out) {
  *out = NULL;
  if (!dir)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_st_open_dir: no directory given");
  if (!mlc_is_dir(dir)) {
    if (mlc_file_exists(dir))
      return mlc_st_open_file(dir, out);
    return mlc_err(MLC_ERR_IO, "%s: no such directory", dir);
  }
  mlc_st_set *s = st_new(dir);
  if (!s)
    return MLC_ERR_NOMEM;
  mlc_status st = MLC_OK;
  char *single = mlc_path_join(dir, "model.safetensors");
  char *index = mlc_path_join(dir, "model.safetensors.index.json");
  char **names = NULL;
  int nnames = 0, capnames = 0;
  if (!single || !index) {
    st = MLC_ERR_NOMEM;
    goto done;
  }
  if (mlc_file_exists(single)) {
    st = st_add_file(s, single);
    if (st == MLC_OK)
      st = st_build_hash(s);
    goto done;
  }
  if (mlc_file_exists(index)) {
    st = st_open_index(s, dir, index);
    goto done;
  }
  /* Otherwise a lone *.safetensors file. */
  DIR *dh = opendir(dir);
  if (!dh) {
    st = mlc_err(MLC_ERR_IO, "%s: cannot list directory", dir);
    goto done;
  }
  struct dirent *de;
  while ((de = readdir(dh)) != NULL) {
    size_t l = strlen(de->d_name);
    if (l <= 12 || strcmp(de->d_name + l - 12, ".safetensors") != 0)
      continue;
    if (nnames == capnames) {
      capnames = capnames ? capnames * 2 : 8;
      char **nn = mlc_realloc(names, (size_t)capnames * sizeof *nn);
      if (!nn) {
        st = MLC_ERR_NOMEM;
        break;
      }
      names = nn;
    }
    if (!(names[nnames] = mlc_strdup(de->d_name))) {
      st = MLC_ERR_NOMEM;
      break;
    }
    nnames++;
  }
  closedir(dh);
  if (st != MLC_OK)
    goto done;
  if (nnames > 1)
    qsort(names, (size_t)nnames, sizeof *names, cmp_str);
  if (nnames == 0) {
    st = mlc_err(MLC_ERR_IO,
                 "%s: no model.safetensors, model.safetensors.index.json or other *.safetensors "
                 "file in this directory",
                 dir);
  } else if (nnames > 1) {
    st = mlc_err(MLC_ERR_FORMAT,
                 "%s: %d *.safetensors files (%s, %s%s) but no model.safetensors.index.json "
                 "saying how they fit together",
                 dir, nnames, names[0], names[1], nnames > 2 ? ", ..." : "");
  } else {
    char *p = mlc_path_join(dir, names[0]);
    if (!p) {
      st = MLC_ERR_NOMEM;
    } else {
      st = st_add_file(s, p);
      if (st == MLC_OK)
        st = st_build_hash(s);
      free(p);
    }
  }
done:
  for (int i = 0; i < nnames; i++)
    free(names[i]);
  free(names);
  free(single);
  free(index);
  if (st != MLC_OK) {
    mlc_st_close(s);
    return st;
  }
  *out = s;
  return MLC_OK;
}

mlc_status mlc_st_get(const mlc_st_set *s, const char *name, int ndim, const int64_t *shape,
                      const mlc_st_tensor **out) {
  *out = NULL;
  if (!s || !name)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_st_get: no tensor set or name given");
  const mlc_st_tensor *t = mlc_st_find(s, name);
  if (!t)
  {
    /* name the file(s) searched: the one file, or the shards of the index */
    const char *file = s->n > 0 ? mlc_st_at(s, 0)->file : s->where;
    bool one = true;
    for (int i = 1; i < s->n && one; i++)
      one = strcmp(mlc_st_at(s, i)->file, file) == 0;
    if (one)
      return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' not found (%d tensors present)", file, name, s->n);
    return mlc_err(MLC_ERR_FORMAT, "%s/model.safetensors.index.json: tensor '%s' not found in any shard (%d tensors present)",
                   s->where, name, s->n);
  }
  if (shape) {
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) {
      ok = shape[i] < 0 || shape[i] == t->shape[i];
      /* packed weights store K padded to whole groups: any K that pads to it matches */
      if (!ok && i == ndim - 1 && mlc_dtype_is_quant(t->dtype)) {
        int64_t g = t->dtype == MLC_Q3F16_1 ? 40 : 32;
        ok = (shape[i] + g - 1) / g * g == t->shape[i];
      }
    }
    if (!ok) {
      char have[160], want[160];
      shape_str(t->shape, t->ndim, have, sizeof have);
      shape_str(shape, ndim < 0 ? 0 : (ndim > MLC_MAX_DIMS ? MLC_MAX_DIMS : ndim), want,
                sizeof want);
      return mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s': shape %s does not match the expected %s",
                     t->file, name, have, want);
    }
  }
  *out = t;
  return MLC_OK;
}

/* ---- hand-built sets (packages) ---- */

mlc_st_set *mlc_st_new_virtual(const char *where) { return st_new(where); }

const char *mlc_st_where(const mlc_st_set *s) { return s ? s->where : ""; }

mlc_st_tensor *mlc_st_add(mlc_st_set *s, const char *name, mlc_dtype dt, int ndim, const int64_t *shape,
                          const void *data, size_t nbytes, const char *file) {
  if (ndim < 0 || ndim > MLC_MAX_DIMS) {
    mlc_err(MLC_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", file, name, ndim, MLC_MAX_DIMS);
    return NULL;
  }
  mlc_st_tensor t = {0};
  t.name = mlc_strdup(name);
  if (!t.name)
    return NULL;
  t.dtype = dt;
  t.ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t.shape[i] = shape[i];
  t.data = data;
  t.nbytes = nbytes;
  t.file = file;
  if (st_push_tensor(s, &t) != MLC_OK) {
    free(t.name);
    return NULL;
  }
  return &s->t[s->n - 1];
}

mlc_status mlc_st_index(mlc_st_set *s) { return st_build_hash(s); }

const char *mlc_st_keep_map(mlc_st_set *s, const char *path, mlc_mmap map) {
  st_file *nf = mlc_realloc(s->files, (size_t)(s->nfiles + 1) * sizeof *nf);
  if (!nf)
    return NULL;
  s->files = nf;
  st_file *f = &s->files[s->nfiles];
  f->path = mlc_strdup(path);
  if (!f->path)
    return NULL;
  f->map = map;
  s->nfiles++;
  return f->path;
}

mlc_status mlc_st_keep_buf(mlc_st_set *s, void *buf) {
  void **nb = mlc_realloc(s->bufs, (size_t)(s->nbufs + 1) * sizeof *nb);
  if (!nb) {
    free(buf);
    return MLC_ERR_NOMEM;
  }
  s->bufs = nb;
  s->bufs[s->nbufs++] = buf;
  return MLC_OK;
}
