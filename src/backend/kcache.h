/* kcache.h: the kernel cache directory shared by the GPU backends ($MLC_CACHE_DIR, else
 * $XDG_CACHE_HOME/mlc-c, else ~/.cache/mlc-c), for artifacts keyed by content hash (SPIR-V,
 * OpenCL program binaries). The CPU backend's jit.c uses the same directory. */
#ifndef MLC_KCACHE_H
#define MLC_KCACHE_H

#include "base/base.h"

/* The cache directory (heap string), created if missing. */
mlc_status mlc_kcache_dir(char **out);
/* Heap path "<cache dir>/<prefix><16 hex digits of hash><suffix>", creating the directory.
 * NULL if the directory cannot be created (the caller then works without a cache). */
char *mlc_kcache_path(const char *prefix, uint64_t hash, const char *suffix);

#endif
