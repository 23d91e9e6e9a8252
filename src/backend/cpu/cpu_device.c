/* cpu_device.c: the CPU behind the device API. Memory is host memory (mapped weights are used in
 * place), kernels are C: specialised ones compiled by the system compiler into one cached shared
 * object, or the generic ones built into libmlc; launches run on the thread pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/device.h"

struct mlc_dmem {
  void *p;
  bool owned;
};

struct mlc_dmodule {
  mlc_cpu_lib *lib; /* NULL for generic kernels */
  mlc_kfn *fn;
  int n;
  /* $MLC_PROFILE: per kernel, launches and seconds (printed when the module is freed) */
  char **names;
  double *secs;
  long *calls;
};

typedef struct cpu_device {
  mlc_device base;
  mlc_pool *pool;
  char desc[128];
} cpu_device;

static void cpu_destroy(mlc_device *d) {
  cpu_device *c = (cpu_device *)d;
  mlc_pool_free(c->pool);
  free(c);
}

static mlc_status cpu_alloc(mlc_device *d, size_t bytes, mlc_dmem **out) {
  mlc_dmem *m = malloc(sizeof *m);
  void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  if (!m || !p) {
    free(m);
    free(p);
    return mlc_err(MLC_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
  }
  memset(p, 0, bytes);
  m->p = p;
  m->owned = true;
  *out = m;
  return MLC_OK;
}

static mlc_status cpu_from_host(mlc_device *d, const void *p, size_t bytes, mlc_dmem **out) {
  mlc_dmem *m = malloc(sizeof *m);
  if (!m)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  m->p = (void *)p;
  m->owned = false;
  *out = m;
  return MLC_OK;
}

static void cpu_free(mlc_device *d, mlc_dmem *m) {
  if (!m)
    return;
  if (m->owned)
    free(m->p);
  free(m);
}

static mlc_status cpu_write(mlc_device *d, mlc_dmem *m, size_t off, const void *src, size_t n) {
  if ((char *)m->p + off != src)
    memmove((char *)m->p + off, src, n);
  return MLC_OK;
}
static mlc_status cpu_read(mlc_device *d, mlc_dmem *m, size_t off, void *dst, size_t n) {
  if ((char *)m->p + off != dst)
    memmove(dst, (char *)m->p + off, n);
  return MLC_OK;
}
static mlc_status cpu_copy(mlc_device *d, mlc_dmem *dst, size_t doff, mlc_dmem *src, size_t soff, size_t n) {
  memmove((char *)dst->p + doff, (char *)src->p + soff, n);
  return MLC_OK;
}

static void cpu_module_free(mlc_device *d, mlc_dmodule *mod) {
  if (!mod)
    return;
  if (mod->secs) {
    double total = 0;
    for (int i = 0; i < mod->n; i++)
      total += mod->secs[i];
    fprintf(stderr, "mlc profile (cpu): %.3f s in kernels\n", total);
    for (int i = 0; i < mod->n; i++)
      if (mod->calls[i])
        fprintf(stderr, "  %6.2f%% %9.3f ms %7ld calls  %s\n", total > 0 ? 100 * mod->secs[i] / total : 0,
                1000 * mod->secs[i], mod->calls[i], mod->names[i]);
    for (int i = 0; i < mod->n; i++)
      free(mod->names[i]);
  }
  free(mod->names);
  free(mod->secs);
  free(mod->calls);
  mlc_cpu_lib_free(mod->lib);
  free(mod->fn);
  free(mod);
}

static mlc_status cpu_build(mlc_device *d, const char *const *names, const char *const *sources, int n, int verbose,
                            mlc_dmodule **out) {
  *out = NULL;
  mlc_dmodule *mod = calloc(1, sizeof *mod);
  if (!mod || !(mod->fn = calloc((size_t)(n ? n : 1), sizeof *mod->fn))) {
    free(mod);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  mod->n = n;
  mlc_status st = MLC_OK;
  if (sources) {
    /* one translation unit: the prelude once, each distinct kernel once */
    mlc_buf src = {0};
    mlc_buf_puts(&src, kir_c_prelude());
    for (int i = 0; i < n; i++) {
      bool dup = false;
      for (int j = 0; j < i && !dup; j++)
        dup = !strcmp(names[i], names[j]);
      if (!dup) {
        mlc_buf_puts(&src, "\n");
        mlc_buf_puts(&src, sources[i]);
      }
    }
    st = src.oom ? mlc_err(MLC_ERR_NOMEM, "out of memory") : mlc_cpu_lib_build(src.data, verbose, &mod->lib);
    mlc_buf_free(&src);
  }
  for (int i = 0; st == MLC_OK && i < n; i++) {
    mod->fn[i] = mod->lib ? mlc_cpu_lib_sym(mod->lib, names[i]) : mlc_generic_find(names[i]);
    if (!mod->fn[i])
      st = mlc_err(MLC_ERR_INTERNAL, "kernel %s not found in the %s kernels", names[i], mod->lib ? "compiled" : "generic");
  }
  const char *prof = getenv("MLC_PROFILE");
  if (st == MLC_OK && prof && *prof && strcmp(prof, "0")) {
    mod->names = calloc((size_t)(n ? n : 1), sizeof *mod->names);
    mod->secs = calloc((size_t)(n ? n : 1), sizeof *mod->secs);
    mod->calls = calloc((size_t)(n ? n : 1), sizeof *mod->calls);
    for (int i = 0; mod->names && i < n; i++)
      mod->names[i] = mlc_strdup(names[i]);
    if (!mod->names || !mod->secs || !mod->calls)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  if (st != MLC_OK) {
    cpu_module_free(d, mod);
    return st;
  }
  *out = mod;
  return MLC_OK;
}

static mlc_status cpu_launch(mlc_device *d, mlc_dmodule *mod, int k, mlc_dmem *const *mem, const size_t *off, int nbuf,
                             const int64_t *ip, const float *fp, int64_t grid) {
  void *bufs[KIR_MAX_BUFS];
  for (int i = 0; i < nbuf; i++)
    bufs[i] = (char *)mem[i]->p + off[i];
  double t0 = mod->secs ? mlc_now() : 0;
  mlc_pool_run(((cpu_device *)d)->pool, mod->fn[k], bufs, ip, fp, grid);
  if (mod->secs) {
    mod->secs[k] += mlc_now() - t0;
    mod->calls[k]++;
  }
  return MLC_OK;
}

static mlc_status cpu_sync(mlc_device *d) { return MLC_OK; }
static const char *cpu_describe(mlc_device *d) { return ((cpu_device *)d)->desc; }

static const mlc_device_vt CPU_VT = {
    .name = "cpu", .destroy = cpu_destroy, .alloc = cpu_alloc, .from_host = cpu_from_host, .free = cpu_free,
    .write = cpu_write, .read = cpu_read, .copy = cpu_copy, .build = cpu_build, .module_free = cpu_module_free,
    .launch = cpu_launch, .sync = cpu_sync, .describe = cpu_describe,
};

mlc_status mlc_cpu_device_new(const mlc_device_opts *opt, mlc_device **out) {
  *out = NULL;
  cpu_device *c = calloc(1, sizeof *c);
  if (!c)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  mlc_status st = mlc_pool_new(opt ? opt->threads : 0, &c->pool);
  if (st != MLC_OK) {
    free(c);
    return st;
  }
  c->base.vt = &CPU_VT;
  c->base.caps = (mlc_device_caps){.lang = KIR_LANG_C, .host_memory = true, .generic_kernels = true};
  snprintf(c->desc, sizeof c->desc, "cpu (%d threads)", mlc_pool_threads(c->pool));
  *out = &c->base;
  return MLC_OK;
}

int mlc_cpu_device_threads(const mlc_device *d) { return mlc_pool_threads(((const cpu_device *)d)->pool); }
