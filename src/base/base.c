/* base.c: errors, allocation, string buffers, files, hashing and number conversions. */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char g_errmsg[4096];

const char *mlc_status_str(mlc_status st) {
  switch (st) {
  case MLC_OK: return "ok";
  case MLC_ERR_NOMEM: return "out of memory";
  case MLC_ERR_IO: return "I/O error";
  case MLC_ERR_FORMAT: return "malformed input";
  case MLC_ERR_UNSUPPORTED: return "unsupported";
  case MLC_ERR_DEVICE: return "device error";
  case MLC_ERR_INVALID_ARG: return "invalid argument";
  case MLC_ERR_INTERNAL: return "internal error";
  case MLC_ERR_LIMIT: return "limit exceeded";
  }
  return "unknown status";
}

const char *mlc_last_error(void) { return g_errmsg; }
void mlc_err_clear(void) { g_errmsg[0] = 0; }

mlc_status mlc_err(mlc_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
  va_end(ap);
  return st;
}

mlc_status mlc_err_context(mlc_status st, const char *fmt, ...) {
  char prefix[1024], old[sizeof g_errmsg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, g_errmsg, sizeof old);
  snprintf(g_errmsg, sizeof g_errmsg, "%.1000s: %.3000s", prefix, old);
  return st;
}

_Noreturn void mlc_abort(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "mlc: internal error at %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

void *mlc_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    mlc_err(MLC_ERR_NOMEM, "out of memory allocating %zu bytes", n);
  return p;
}
void *mlc_calloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p)
    mlc_err(MLC_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", n, sz);
  return p;
}
void *mlc_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    mlc_err(MLC_ERR_NOMEM, "out of memory reallocating to %zu bytes", n);
  return q;
}
char *mlc_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = mlc_malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* ---- string buffer ---- */
static bool buf_reserve(mlc_buf *b, size_t extra) {
  if (b->oom)
    return false;
  if (b->len + extra + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) {
    b->oom = true;
    return false;
  }
  b->data = d;
  b->cap = cap;
  return true;
}
void mlc_buf_append(mlc_buf *b, const char *s, size_t n) {
  if (!buf_reserve(b, n))
    return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}
void mlc_buf_puts(mlc_buf *b, const char *s) { mlc_buf_append(b, s, strlen(s)); }
void mlc_buf_vprintf(mlc_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0 || !buf_reserve(b, (size_t)n))
    return;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}
void mlc_buf_printf(mlc_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mlc_buf_vprintf(b, fmt, ap);
  va_end(ap);
}
void mlc_buf_free(mlc_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}
char *mlc_buf_take(mlc_buf *b) {
  char *d = b->data;
  if (!d && !b->oom)
    d = calloc(1, 1);
  memset(b, 0, sizeof *b);
  return d;
}

/* ---- files ---- */
mlc_status mlc_mmap_open(const char *path, mlc_mmap *out) {
  out->data = NULL;
  out->size = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return mlc_err(MLC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return mlc_err(MLC_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
  }
  if (st.st_size == 0) {
    close(fd);
    return MLC_OK;
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED)
    return mlc_err(MLC_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
  out->data = p;
  out->size = (size_t)st.st_size;
  return MLC_OK;
}
void mlc_mmap_close(mlc_mmap *m) {
  if (m->data)
    munmap(m->data, m->size);
  m->data = NULL;
  m->size = 0;
}

mlc_status mlc_read_file(const char *path, char **out, size_t *out_len) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return mlc_err(MLC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  mlc_buf b = {0};
  char tmp[65536];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
    mlc_buf_append(&b, tmp, n);
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    mlc_buf_free(&b);
    return mlc_err(MLC_ERR_IO, "%s: read error", path);
  }
  if (b.oom) {
    mlc_buf_free(&b);
    return mlc_err(MLC_ERR_NOMEM, "%s: out of memory reading file", path);
  }
  if (out_len)
    *out_len = b.len;
  *out = mlc_buf_take(&b);
  return *out ? MLC_OK : mlc_err(MLC_ERR_NOMEM, "out of memory");
}

mlc_status mlc_write_file_atomic(const char *path, const void *data, size_t len) {
  mlc_buf tmp = {0};
  mlc_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
  if (tmp.oom)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  FILE *f = fopen(tmp.data, "wb");
  if (!f) {
    mlc_status st = mlc_err(MLC_ERR_IO, "%s: cannot create: %s", tmp.data, strerror(errno));
    mlc_buf_free(&tmp);
    return st;
  }
  size_t w = fwrite(data, 1, len, f);
  int bad = (w != len) | (fflush(f) != 0);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp.data, path) != 0) {
    mlc_status st = mlc_err(MLC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    unlink(tmp.data);
    mlc_buf_free(&tmp);
    return st;
  }
  mlc_buf_free(&tmp);
  return MLC_OK;
}

bool mlc_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
bool mlc_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
mlc_status mlc_mkdirs(const char *path) {
  char *p = mlc_strdup(path);
  if (!p)
    return MLC_ERR_NOMEM;
  for (char *s = p + 1; *s; s++) {
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0755);
      *s = '/';
    }
  }
  int rc = mkdir(p, 0755);
  mlc_status st = (rc == 0 || errno == EEXIST) ? MLC_OK : mlc_err(MLC_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
  free(p);
  return st;
}

char *mlc_path_join(const char *dir, const char *name) {
  mlc_buf b = {0};
  size_t n = strlen(dir);
  mlc_buf_append(&b, dir, n);
  if (n && dir[n - 1] != '/')
    mlc_buf_puts(&b, "/");
  mlc_buf_puts(&b, name);
  if (b.oom) {
    mlc_buf_free(&b);
    mlc_err(MLC_ERR_NOMEM, "out of memory");
    return NULL;
  }
  return mlc_buf_take(&b);
}

uint64_t mlc_hash64(const void *data, size_t n, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* ---- numbers ---- */
static inline uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
float mlc_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) {
    if (man == 0)
      return u2f(sign);
    float v = (float)man / 1024.0f / 16384.0f; /* 2^-14 * man/1024 */
    return sign ? -v : v;
  }
  if (exp == 31)
    return u2f(sign | 0x7f800000u | (man << 13));
  return u2f(sign | ((exp + 112) << 23) | (man << 13));
}
uint16_t mlc_f32_to_f16(float f) {
  uint32_t u = f2u(f);
  uint32_t sign = (u >> 16) & 0x8000;
  int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
  uint32_t man = u & 0x7fffff;
  if (((u >> 23) & 0xff) == 0xff) /* inf / nan */
    return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
  if (exp >= 31)
    return (uint16_t)(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10)
      return (uint16_t)sign;
    man |= 0x800000;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1)))
      half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
    half++;
  return (uint16_t)half;
}
float mlc_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }
uint16_t mlc_f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffff) > 0x7f800000)
    return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

double mlc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
size_t mlc_peak_rss(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  return (size_t)ru.ru_maxrss * 1024;
}
