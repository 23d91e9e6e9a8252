/* cpu.h: the CPU backend: a thread pool that runs generated kernels over their parallel range,
 * the run-time C compiler path (specialised kernels built with the system compiler and cached by
 * content hash), and the generic kernels built into libmlc. */
#ifndef MLC_CPU_H
#define MLC_CPU_H

#include "base/base.h"

/* Every generated CPU kernel. bufs: buffer pointers; ip/fp: integer and float params;
 * [g0, g1): the slice of the parallel range this call runs. */
typedef void (*mlc_kfn)(void *const *bufs, const int64_t *ip, const float *fp, int64_t g0, int64_t g1);

typedef struct mlc_generic_entry {
  const char *name;
  mlc_kfn fn;
} mlc_generic_entry;
/* The kernels generated at build time (generated/mlc_generic_kernels.c). */
const mlc_generic_entry *mlc_generic_kernels(int *n);
mlc_kfn mlc_generic_find(const char *name);

/* ---- thread pool ---- */
typedef struct mlc_pool mlc_pool;
/* nthreads <= 0: the number of online CPUs. */
mlc_status mlc_pool_new(int nthreads, mlc_pool **out);
void mlc_pool_free(mlc_pool *p);
int mlc_pool_threads(const mlc_pool *p);
/* Runs fn over [0, grid), split into contiguous slices across the threads; returns when done. */
void mlc_pool_run(mlc_pool *p, mlc_kfn fn, void *const *bufs, const int64_t *ip, const float *fp, int64_t grid);

/* ---- run-time compilation ---- */
typedef struct mlc_cpu_lib mlc_cpu_lib;
/* Compiles a C translation unit of kernels with the system compiler ($MLC_CC, else cc) into a
 * shared object cached under $MLC_CACHE_DIR (else ~/.cache/mlc-c) by the hash of the source and
 * flags, and loads it. Fails with MLC_ERR_DEVICE when no compiler works. */
mlc_status mlc_cpu_lib_build(const char *source, int verbose, mlc_cpu_lib **out);
mlc_kfn mlc_cpu_lib_sym(mlc_cpu_lib *lib, const char *name);
const char *mlc_cpu_lib_path(const mlc_cpu_lib *lib);
bool mlc_cpu_lib_was_cached(const mlc_cpu_lib *lib);
void mlc_cpu_lib_free(mlc_cpu_lib *lib);

#endif
