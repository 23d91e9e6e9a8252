/* nvrtc.c: CUDA modules compiled at run time by NVRTC and cached by content hash (the source,
 * the target, the options and NVRTC's version) in the kernel cache directory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/kcache.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_api.h"

/* -w: the renderer leaves unused locals (ip/fp) by design */
static const char *OPTS[] = {"-w"};
enum { NOPTS = sizeof OPTS / sizeof OPTS[0] };

mlc_status mlc_nvrtc_load(void) { return mlc_nvrtc_api_load() ? MLC_OK : MLC_ERR_UNSUPPORTED; }

const char *mlc_nvrtc_describe(void) {
  static char s[64];
  const mlc_nvrtc_api *nv = mlc_nvrtc_api_load();
  int a = 0, b = 0;
  if (!nv || nv->Version(&a, &b) != 0)
    return "NVRTC (not loaded)";
  snprintf(s, sizeof s, "NVRTC %d.%d", a, b);
  return s;
}

mlc_status mlc_cuda_module_source(const char *const *names, const char *const *sources, int n, mlc_buf *out) {
  mlc_buf_puts(out, kir_cuda_prelude());
  for (int i = 0; i < n; i++) {
    bool dup = false;
    for (int j = 0; j < i && !dup; j++)
      dup = !strcmp(names[i], names[j]);
    if (!dup) {
      mlc_buf_puts(out, "\n");
      mlc_buf_puts(out, sources[i]);
    }
  }
  return out->oom ? mlc_err(MLC_ERR_NOMEM, "out of memory") : MLC_OK;
}


/* The file name a module compiles to: cuda-<hash>-<arch>.cubin (sm_*) or .ptx (compute_*). */
static char *module_path(const char *dir, const char *src, const char *arch) {
  const mlc_nvrtc_api *nv = mlc_nvrtc_api_load();
  int ver[2] = {0, 0};
  if (nv)
    nv->Version(&ver[0], &ver[1]);
  uint64_t h = mlc_hash64(src, strlen(src), 0);
  h = mlc_hash64(arch, strlen(arch), h);
  h = mlc_hash64(ver, sizeof ver, h);
  for (int i = 0; i < NOPTS; i++)
    h = mlc_hash64(OPTS[i], strlen(OPTS[i]), h);
  mlc_buf b = {0};
  mlc_buf_printf(&b, "%s/cuda-%016llx-%s.%s", dir, (unsigned long long)h, arch, strncmp(arch, "sm_", 3) ? "ptx" : "cubin");
  return mlc_buf_take(&b);
}

/* NVRTC: source -> cubin (sm_*) or PTX (compute_*). */
static mlc_status nvrtc_run(const char *src, const char *arch, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  const mlc_nvrtc_api *nv = mlc_nvrtc_api_load();
  if (!nv)
    return MLC_ERR_UNSUPPORTED;
  nvrtcProgram prog = NULL;
  nvrtcResult r = nv->CreateProgram(&prog, src, "mlc_kernels.cu", 0, NULL, NULL);
  if (r != 0)
    return mlc_err(MLC_ERR_DEVICE, "nvrtcCreateProgram: %s", nv->GetErrorString(r));
  char opt_arch[64];
  snprintf(opt_arch, sizeof opt_arch, "--gpu-architecture=%s", arch);
  const char *opts[NOPTS + 1];
  opts[0] = opt_arch;
  for (int i = 0; i < NOPTS; i++)
    opts[1 + i] = OPTS[i];
  r = nv->CompileProgram(prog, NOPTS + 1, opts);
  mlc_status st = MLC_OK;
  if (r != 0) {
    size_t n = 0;
    nv->GetProgramLogSize(prog, &n);
    char *log = calloc(1, n + 1);
    if (log)
      nv->GetProgramLog(prog, log);
    /* the first lines of the log say what broke */
    if (log && strlen(log) > 1500)
      strcpy(log + 1500, "\n...");
    st = mlc_err(MLC_ERR_DEVICE, "NVRTC failed compiling the kernels for %s: %s\n%s", arch, nv->GetErrorString(r),
                 log ? log : "");
    free(log);
  } else {
    bool cubin = !strncmp(arch, "sm_", 3);
    size_t n = 0;
    r = cubin ? nv->GetCUBINSize(prog, &n) : nv->GetPTXSize(prog, &n);
    char *buf = r == 0 ? malloc(n + 1) : NULL;
    if (r == 0 && buf)
      r = cubin ? nv->GetCUBIN(prog, buf) : nv->GetPTX(prog, buf);
    if (r != 0 || !buf) {
      free(buf);
      st = r != 0 ? mlc_err(MLC_ERR_DEVICE, "NVRTC: reading the %s: %s", cubin ? "cubin" : "PTX", nv->GetErrorString(r))
                  : mlc_err(MLC_ERR_NOMEM, "out of memory");
    } else {
      buf[n] = 0;
      if (!cubin && n > 0 && buf[n - 1] == 0)
        n--; /* PTX comes NUL-terminated */
      *data = buf;
      *len = n;
    }
  }
  nv->DestroyProgram(&prog);
  return st;
}

mlc_status mlc_cuda_compile(const char *src, const char *arch, int verbose, char **path, char **data, size_t *len,
                            bool *cached) {
  *path = NULL;
  *data = NULL;
  *len = 0;
  *cached = false;
  char *dir = NULL;
  mlc_status st = mlc_kcache_dir(&dir);
  char *p = st == MLC_OK ? module_path(dir, src, arch) : NULL;
  free(dir);
  if (st != MLC_OK)
    return st;
  if (!p)
    return MLC_ERR_NOMEM;
  if (mlc_file_exists(p) && mlc_read_file(p, data, len) == MLC_OK) {
    *cached = true;
    *path = p;
    return MLC_OK;
  }
  double t0 = mlc_now();
  st = nvrtc_run(src, arch, data, len);
  if (st == MLC_OK) {
    /* a cache that cannot be written only costs the next load a compile */
    mlc_write_file_atomic(p, *data, *len);
    if (verbose)
      fprintf(stderr, "mlc: NVRTC compiled the kernels for %s in %.2f s -> %s\n", arch, mlc_now() - t0, p);
    *path = p;
  } else {
    free(p);
  }
  return st;
}

mlc_status mlc_cuda_compile_to(const char *src, const char *arch, const char *dir, char **path, size_t *len) {
  *path = NULL;
  *len = 0;
  MLC_TRY(mlc_mkdirs(dir));
  char *data = NULL;
  MLC_TRY(nvrtc_run(src, arch, &data, len));
  char *p = module_path(dir, src, arch);
  mlc_status st = p ? mlc_write_file_atomic(p, data, *len) : MLC_ERR_NOMEM;
  free(data);
  if (st != MLC_OK) {
    free(p);
    return st;
  }
  *path = p;
  return MLC_OK;
}
