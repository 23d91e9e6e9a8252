/* base.h: errors, allocation helpers, files, string buffers and JSON glue shared by all modules. */
#ifndef MLC_BASE_H
#define MLC_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mlc.h"

/* Records a formatted message as this thread's last error and returns `st`. */
mlc_status mlc_err(mlc_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current last error (adds context while unwinding); returns st. */
mlc_status mlc_err_context(mlc_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mlc_err_clear(void);

#define MLC_TRY(expr)                   \
  do {                                  \
    mlc_status mlc_try_st_ = (expr);    \
    if (mlc_try_st_ != MLC_OK)          \
      return mlc_try_st_;               \
  } while (0)

/* Aborts with file and line: only for broken internal invariants, never for bad input. */
#define MLC_ASSERT(x)                                                      \
  do {                                                                     \
    if (!(x))                                                              \
      mlc_abort(__FILE__, __LINE__, "assertion failed: %s", #x);           \
  } while (0)
_Noreturn void mlc_abort(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Allocation that aborts on failure is NOT used; these return NULL and set the last error. */
void *mlc_malloc(size_t n);
void *mlc_calloc(size_t n, size_t sz);
void *mlc_realloc(void *p, size_t n);
char *mlc_strdup(const char *s);

/* ---- growable string buffer ---- */
typedef struct mlc_buf {
  char *data; /* always NUL-terminated when len > 0 or after mlc_buf_reserve */
  size_t len, cap;
  bool oom;   /* set once an append failed; later appends are ignored */
} mlc_buf;
void mlc_buf_append(mlc_buf *b, const char *s, size_t n);
void mlc_buf_puts(mlc_buf *b, const char *s);
void mlc_buf_printf(mlc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mlc_buf_vprintf(mlc_buf *b, const char *fmt, va_list ap);
void mlc_buf_free(mlc_buf *b);
/* Takes ownership of the data (caller frees); the buffer is reset. */
char *mlc_buf_take(mlc_buf *b);

/* ---- files ---- */
typedef struct mlc_mmap {
  void *data;
  size_t size;
} mlc_mmap;
/* Maps a whole file read-only. */
mlc_status mlc_mmap_open(const char *path, mlc_mmap *out);
void mlc_mmap_close(mlc_mmap *m);
/* Reads a whole file into a NUL-terminated heap buffer. */
mlc_status mlc_read_file(const char *path, char **out, size_t *out_len);
/* Writes data to path through a temporary name and rename, so nothing is left half-written. */
mlc_status mlc_write_file_atomic(const char *path, const void *data, size_t len);
bool mlc_file_exists(const char *path);
bool mlc_is_dir(const char *path);
/* mkdir -p; an error names the directory. */
mlc_status mlc_mkdirs(const char *path);
/* path_join into a heap string. */
char *mlc_path_join(const char *dir, const char *name);

/* ---- hashing ---- */
/* 64-bit FNV-1a over bytes, for content-addressed caches. */
uint64_t mlc_hash64(const void *data, size_t n, uint64_t seed);

/* ---- numbers ---- */
float mlc_f16_to_f32(uint16_t h);
uint16_t mlc_f32_to_f16(float f);
float mlc_bf16_to_f32(uint16_t h);
uint16_t mlc_f32_to_bf16(float f); /* round to nearest even */

/* Monotonic seconds. */
double mlc_now(void);
/* Peak resident set size of this process, bytes (0 if unknown). */
size_t mlc_peak_rss(void);

#endif
