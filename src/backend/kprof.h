/* kprof.h: per-kernel GPU time totals for the device profiles ($MLC_CUDA_PROFILE,
 * $MLC_VULKAN_PROFILE): one entry per (kernel, step rows, grid), printed by step rows, then by op
 * and by kernel, when the device closes. */
#ifndef MLC_KPROF_H
#define MLC_KPROF_H

typedef struct mlc_kprof_entry {
  const void *key; /* the kernel's identity while its module lives (a function or its name pointer) */
  long long rows, calls, grid, lanes;
  double ms;
  char name[96];
} mlc_kprof_entry;

typedef struct mlc_kprof {
  mlc_kprof_entry *e;
  int n, cap;
} mlc_kprof;

/* one timed launch of kernel `name` (key: see above) in a step of `rows` rows over `grid` indices */
void mlc_kprof_add(mlc_kprof *p, const void *key, const char *name, long long rows, long long grid, long long lanes,
                   double ms);
/* prints the table to stderr: "mlc: DEV profile, steps of R rows: N WHAT, T ms of UNIT" */
void mlc_kprof_print(mlc_kprof *p, const char *dev, const char *what, const char *unit);
void mlc_kprof_free(mlc_kprof *p);

#endif
