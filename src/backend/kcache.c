/* kcache.c: paths in the kernel cache directory (see kcache.h). */
#include "backend/kcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool mkdirs(char *p) {
  for (char *s = p + 1; *s; s++) {
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0755);
      *s = '/';
    }
  }
  return mkdir(p, 0755) == 0 || errno == EEXIST;
}

char *mlc_kcache_path(const char *prefix, uint64_t hash, const char *suffix) {
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
  if (!dir || !mkdirs(dir)) {
    free(dir);
    return NULL;
  }
  mlc_buf_printf(&b, "%s/%s%016llx%s", dir, prefix, (unsigned long long)hash, suffix);
  free(dir);
  return mlc_buf_take(&b);
}
