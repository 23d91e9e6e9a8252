/* cmd_compile.c: `mlc compile MODEL --device cuda -o DIR`: ahead-of-time kernels. Lowers every
 * distinct kernel of the model's launch plan exactly as the runtime would for that device, and
 * compiles the module with NVRTC (which needs no GPU) for each target: cubins for sm_80 and
 * sm_90 and PTX for compute_80 by default. The files are named as in the kernel cache, so
 * `MLC_CACHE_DIR=DIR mlc ... --device cuda` loads them without compiling. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "cli/cli_model.h"
#include "runtime/runtime.h"

static const char *USAGE =
    "usage: mlc compile MODEL --device cuda -o DIR [--arch sm_80,sm_90,compute_80] [--print-source] [options]\n\n"
    "Compiles every kernel of MODEL for the device ahead of time (NVRTC; no GPU needed) into DIR:\n"
    "kernels.cu (the module source), one cubin per sm_XY target and PTX per compute_XY target, named as\n"
    "in the kernel cache (run with MLC_CACHE_DIR=DIR to use them), and kernels.txt (the kernel names).\n\n";

int mlc_cmd_compile(int argc, char **argv) {
  const char *cmd = "compile";
  mlc_cli_model o = {0};
  const char *outdir = NULL, *archs = "sm_80,sm_90,compute_80";
  bool print_src = false;
  for (int i = 1; i < argc; i++) {
    int r = mlc_cli_model_opt(cmd, argc, argv, &i, &o);
    if (r < 0)
      return 1;
    if (r)
      continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("%s%s", USAGE, mlc_cli_model_help);
      return 0;
    } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
      outdir = v;
      i++;
    } else if (!strcmp(a, "--arch") && v) {
      archs = v;
      i++;
    } else if (!strcmp(a, "--print-source")) {
      print_src = true;
    } else if (a[0] != '-' && !o.path) {
      o.path = a;
    } else {
      fprintf(stderr, "mlc %s: unexpected argument '%s'\n\n%s", cmd, a, USAGE);
      return 1;
    }
  }
  if (!o.path || (!outdir && !print_src)) {
    fprintf(stderr, "mlc %s: needs MODEL and -o DIR\n\n%s", cmd, USAGE);
    return 1;
  }
  const char *dev = o.opt.device ? o.opt.device : "cpu";
  if (strcmp(dev, "cuda")) {
    fprintf(stderr, "mlc %s: --device %s: only cuda kernels are compiled ahead of time (cpu kernels compile at load)\n",
            cmd, dev);
    return 1;
  }
  if (!print_src && mlc_nvrtc_load() != MLC_OK)
    return mlc_cli_fail(cmd);
  /* the launch plan without compiling anything: load on the CPU with its built-in kernels, then
   * describe each launch as the runtime does for a device that compiles specialised kernels */
  bool generic = o.opt.generic_kernels;
  o.opt.device = "cpu";
  o.opt.generic_kernels = 1;
  o.opt.threads = 1;
  mlc_model *m = NULL;
  if (mlc_model_load(o.path, &o.opt, &m) != MLC_OK)
    return mlc_cli_fail(cmd);
  m->opt.generic_kernels = generic;
  for (int i = 0; i < m->nlaunch; i++)
    mlc_launch_fill(m, m->launch[i].op, &m->launch[i]);
  const char **names = calloc((size_t)m->nlaunch + 1, sizeof *names);
  char **srcs = calloc((size_t)m->nlaunch + 1, sizeof *srcs);
  int n = 0, rc = 0;
  mlc_buf src = {0}, list = {0};
  for (int i = 0; names && srcs && i < m->nlaunch; i++) {
    const mlc_launch *L = &m->launch[i];
    int k = 0;
    while (k < n && strcmp(names[k], L->name))
      k++;
    if (k < n)
      continue;
    mlc_kdesc d = L->d;
    kir_kernel *kk = mlc_lower(&d, mlc_tunables_for(KIR_LANG_CUDA));
    mlc_buf b = {0};
    kir_render(kk, KIR_LANG_CUDA, &b);
    kir_free(kk);
    names[n] = L->name;
    srcs[n++] = mlc_buf_take(&b);
    mlc_buf_printf(&list, "%s\n", L->name);
  }
  if (!names || !srcs || mlc_cuda_module_source(names, (const char *const *)srcs, n, &src) != MLC_OK) {
    rc = mlc_cli_fail(cmd);
    goto done;
  }
  if (print_src)
    fputs(src.data, stdout);
  if (outdir) {
    char *p = mlc_path_join(outdir, "kernels.cu");
    char *q = mlc_path_join(outdir, "kernels.txt");
    double t0 = mlc_now();
    char *cu_path = NULL;
    size_t len = 0;
    /* first target creates the directory */
    char *al = mlc_strdup(archs);
    int nt = 0;
    for (char *save = NULL, *t = strtok_r(al, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
      double t1 = mlc_now();
      if (mlc_cuda_compile_to(src.data, t, outdir, &cu_path, &len) != MLC_OK) {
        rc = mlc_cli_fail(cmd);
        break;
      }
      printf("%s  %zu bytes  (%s, %.2f s)\n", cu_path, len, t, mlc_now() - t1);
      free(cu_path);
      nt++;
    }
    free(al);
    if (!rc && (mlc_write_file_atomic(p, src.data, src.len) != MLC_OK ||
                mlc_write_file_atomic(q, list.data ? list.data : "", list.len) != MLC_OK))
      rc = mlc_cli_fail(cmd);
    if (!rc)
      printf("compiled %d kernels (%zu bytes of CUDA) for %d targets with %s in %.2f s -> %s\n", n, src.len, nt,
             mlc_nvrtc_describe(), mlc_now() - t0, outdir);
    free(p);
    free(q);
  }
done:
  for (int i = 0; srcs && i < n; i++)
    free(srcs[i]);
  free(srcs);
  free(names);
  mlc_buf_free(&src);
  mlc_buf_free(&list);
  mlc_model_free(m);
  return rc;
}
