/* kcache.c: paths in the kernel cache directory (see kcache.h). */
#include "backend/kcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

mlc_status mlc_kcache_dir(char **out) {
  *out = NULL;
  const char *e = getenv("MLC_CACHE_DIR");
  mlc_buf b = {0};
  if (e && *e) {
    mlc_buf_puts(&b, e);
  } else {
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (x && *x)
      mlc_buf_printf(&b, "%s/mlc-c", x);
    else
      mlc_buf_printf(&b, "%s/.cache/mlc-c", h && *h ? h : "/tmp");
  }
  char *dir = mlc_buf_take(&b);
  if (!dir)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  mlc_status st = mlc_mkdirs(dir);
  if (st != MLC_OK) {
    free(dir);
    return mlc_err_context(st, "the kernel cache");
  }
  *out = dir;
  return MLC_OK;
}

char *mlc_kcache_path(const char *prefix, uint64_t hash, const char *suffix) {
  char *dir = NULL;
  if (mlc_kcache_dir(&dir) != MLC_OK)
    return NULL;
  mlc_buf b = {0};
  mlc_buf_printf(&b, "%s/%s%016llx%s", dir, prefix, (unsigned long long)hash, suffix);
  free(dir);
  return mlc_buf_take(&b);
}
