/* kprof.c: the device profiles' per-kernel table (kprof.h). */
#include "backend/kprof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mlc_kprof_add(mlc_kprof *p, const void *key, const char *name, long long rows, long long grid, long long lanes,
                   double ms) {
  int i = 0;
  while (i < p->n && !(p->e[i].rows == rows && p->e[i].grid == grid && (p->e[i].key == key || !strcmp(p->e[i].name, name))))
    i++;
  if (i == p->n) {
    if (p->n == p->cap) {
      int cap = p->cap ? 2 * p->cap : 64;
      mlc_kprof_entry *ne = realloc(p->e, sizeof *ne * (size_t)cap);
      if (!ne)
        return;
      p->e = ne;
      p->cap = cap;
    }
    memset(&p->e[i], 0, sizeof p->e[i]);
    p->e[i].rows = rows;
    p->e[i].grid = grid;
    snprintf(p->e[i].name, sizeof p->e[i].name, "%s", name);
    p->n++;
  }
  p->e[i].key = key;
  p->e[i].calls++;
  p->e[i].ms += ms;
  p->e[i].lanes = lanes;
}

static int entry_cmp(const void *a, const void *b) {
  const mlc_kprof_entry *x = a, *y = b;
  if (x->rows != y->rows)
    return x->rows < y->rows ? -1 : 1;
  return x->ms < y->ms ? 1 : x->ms > y->ms ? -1 : 0;
}

/* the op of a kernel name: k_<op>_<hash> or g_<op>_<variants> */
static void op_of(const char *name, char *op, size_t n) {
  snprintf(op, n, "%s", name + (name[0] && name[1] == '_' ? 2 : 0));
  char *u = strrchr(op, '_');
  if (name[0] == 'k' && u)
    *u = 0;
}

void mlc_kprof_print(mlc_kprof *p, const char *dev, const char *what, const char *unit) {
  if (!p->n)
    return;
  qsort(p->e, (size_t)p->n, sizeof *p->e, entry_cmp);
  for (int i = 0; i < p->n;) {
    long long rows = p->e[i].rows;
    int j = i;
    double tot = 0;
    long long calls = 0;
    for (; j < p->n && p->e[j].rows == rows; j++)
      tot += p->e[j].ms, calls += p->e[j].calls;
    fprintf(stderr, "mlc: %s profile, steps of %lld rows: %lld %s, %.3f ms of %s\n", dev, rows, calls, what, tot, unit);
    char ops[32][96];
    double opms[32] = {0};
    long long opcalls[32] = {0};
    int nops = 0;
    for (int q = i; q < j; q++) {
      char op[96];
      op_of(p->e[q].name, op, sizeof op);
      int o = 0;
      while (o < nops && strcmp(ops[o], op))
        o++;
      if (o == nops && nops < 32)
        snprintf(ops[nops++], sizeof ops[0], "%s", op);
      if (o < nops)
        opms[o] += p->e[q].ms, opcalls[o] += p->e[q].calls;
    }
    for (int o = 0; o < nops; o++)
      fprintf(stderr, "mlc:   op %-16s %6lld calls %9.3f ms %5.1f%%\n", ops[o], opcalls[o], opms[o],
              tot > 0 ? 100 * opms[o] / tot : 0);
    for (int q = i; q < j && q < i + 40; q++)
      fprintf(stderr, "mlc:   %-40s grid %8lld x%-3lld %6lld calls %9.3f ms %8.2f us/call\n", p->e[q].name, p->e[q].grid,
              p->e[q].lanes, p->e[q].calls, p->e[q].ms, 1000 * p->e[q].ms / (double)p->e[q].calls);
    i = j;
  }
}

void mlc_kprof_free(mlc_kprof *p) {
  free(p->e);
  memset(p, 0, sizeof *p);
}
