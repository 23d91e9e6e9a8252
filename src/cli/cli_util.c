/* cli_util.c: small helpers shared by the `mlc` subcommands. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "cli/cli.h"

bool mlc_cli_parse_ids(const char *s, int32_t **ids, int *n) {
  *ids = NULL;
  *n = 0;
  int cap = 0;
  const char *p = s;
  if (!*p) {
    fprintf(stderr, "mlc: --ids: empty list\n");
    return false;
  }
  for (;;) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',')) {
      fprintf(stderr, "mlc: --ids: \"%s\" is not a comma-separated list of integers (at \"%s\")\n", s, p);
      free(*ids);
      *ids = NULL;
      *n = 0;
      return false;
    }
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      int32_t *nv = realloc(*ids, (size_t)cap * sizeof *nv);
      if (!nv) {
        fprintf(stderr, "mlc: out of memory\n");
        free(*ids);
        *ids = NULL;
        *n = 0;
        return false;
      }
      *ids = nv;
    }
    (*ids)[(*n)++] = (int32_t)v;
    if (!*end)
      return true;
    p = end + 1;
  }
}

int mlc_cli_fail(const char *cmd) {
  fprintf(stderr, "mlc %s: %s\n", cmd, mlc_last_error());
  return 1;
}

void mlc_cli_print_json_string(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", stdout); break;
    case '\\': fputs("\\\\", stdout); break;
    case '\n': fputs("\\n", stdout); break;
    case '\r': fputs("\\r", stdout); break;
    case '\t': fputs("\\t", stdout); break;
    case '\b': fputs("\\b", stdout); break;
    case '\f': fputs("\\f", stdout); break;
    default:
      if (*p < 0x20)
        printf("\\u%04x", *p);
      else
        putchar(*p);
    }
  }
  putchar('"');
}

/* The bundled model: $MLC_DEFAULT_MODEL, else models/default next to the build directory of this
 * binary, else ./models/default. */
char *mlc_cli_default_model(void) {
  const char *e = getenv("MLC_DEFAULT_MODEL");
  if (e && *e)
    return mlc_strdup(e);
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      const char *rel[] = {"/../models/default", "/../share/mlc-c/models/default", "/models/default"};
      for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        mlc_buf b = {0};
        mlc_buf_printf(&b, "%s%s", exe, rel[i]);
        char *p = mlc_buf_take(&b);
        if (p && mlc_is_dir(p))
          return p;
        free(p);
      }
    }
  }
  return mlc_strdup("models/default");
}
