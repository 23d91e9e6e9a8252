/* test_device_kernels.c: every kernel case of test_kernels.c on the GPU backends, through the
 * device API, against the same double-precision references.
 *
 * For each device in $MLC_TEST_DEVICES (default "vulkan,opencl"; one that does not open is
 * skipped, or fails with MLC_TEST_REQUIRE_DEVICE=1) it renders every case's kernel in the device's
 * language, specialised and generic, builds them all in one module, and runs each case: all its
 * buffers are placed in one device allocation at offsets that are multiples of 4 but not of 16
 * (so views with unaligned offsets are exercised: Vulkan's bound-offset remainder, OpenCL's
 * offset arguments), inputs written, outputs preset to their sentinel, launch, read back, and the
 * checks of test_kernels.c (tolerance, untouched elements and guard regions, inputs unchanged).
 * Ends with "N passed, M failed"; exit 77 when no device opened. argv[1] (the root) is unused. */
#define main test_kernels_cpu_main
#include "test_kernels.c"
#undef main

#include "backend/device.h"

static size_t place(size_t *cursor, size_t bytes, int i) {
  size_t off = (*cursor + 63) / 64 * 64 + 4 * (size_t)(1 + i % 3);
  *cursor = off + bytes;
  return off;
}

static void run_on_device(mlc_device *dev, mlc_dmodule *mod, int kidx, tcase *c, const char *variant) {
  int64_t ip[MLC_KIP] = {0};
  float fp[MLC_KFP];
  memcpy(ip, c->d.size, sizeof c->d.size);
  for (int i = 0; i < 4; i++)
    ip[MLC_KDYN + i] = c->dyn[i];
  memcpy(fp, c->d.fv, sizeof fp);
  size_t off[KIR_MAX_BUFS], bytes[KIR_MAX_BUFS], cursor = 0;
  for (int i = 0; i < c->nbuf; i++) {
    bytes[i] = c->b[i].out ? 4 * c->b[i].n : c->b[i].bytes;
    off[i] = place(&cursor, bytes[i], i);
  }
  mlc_dmem *arena = NULL;
  mlc_dmem *mem[KIR_MAX_BUFS];
  bool ok = dev->vt->alloc(dev, cursor + 64, &arena) == MLC_OK;
  for (int i = 0; ok && i < c->nbuf; i++) {
    mem[i] = arena;
    ok = dev->vt->write(dev, arena, off[i], c->b[i].out ? c->b[i].init : c->b[i].p, bytes[i]) == MLC_OK;
  }
  ok = ok && dev->vt->launch(dev, mod, kidx, mem, off, c->nbuf, ip, fp, c->grid) == MLC_OK;
  ok = ok && dev->vt->sync(dev) == MLC_OK;
  if (!ok) {
    fail(c, variant, "device error: %s", mlc_last_error());
    failed++;
    dev->vt->free(dev, arena);
    return;
  }
  for (int i = 0; i < c->nbuf; i++) {
    tbuf *b = &c->b[i];
    if (b->out) {
      if (dev->vt->read(dev, arena, off[i], b->p, bytes[i]) != MLC_OK)
        ok = false;
      else
        ok &= check_out(c, variant, i);
    } else {
      void *got = malloc(bytes[i]);
      if (!got || dev->vt->read(dev, arena, off[i], got, bytes[i]) != MLC_OK || memcmp(got, b->p, bytes[i]) != 0) {
        fail(c, variant, "input %s was written", c->bname[i]);
        ok = false;
      }
      free(got);
    }
  }
  dev->vt->free(dev, arena);
  if (ok)
    passed++;
  else
    failed++;
}

/* Renders both forms of every case in the device's language, builds one module, runs the cases. */
static void run_device(mlc_device *dev) {
  double t0 = mlc_now();
  const mlc_tunables tu = mlc_tunables_dev(dev->caps.lang, dev->caps.int8_dot); /* as the runtime's (model.c) */
  i8_device = tu.i8_gemv > 0;
  printf("%s: 4-bit GEMVs with %s activations\n", dev->vt->name, i8_device ? "8-bit" : "f32");
  int cap = 2 * ncases, n = 0;
  const char **names = calloc((size_t)cap, sizeof *names);
  char **srcs = calloc((size_t)cap, sizeof *srcs);
  int *kidx = calloc((size_t)cap, sizeof *kidx); /* per (case, form) */
  for (int i = 0; i < ncases; i++)
    for (int generic = 0; generic < 2; generic++) {
      tcase *c = &cases[i];
      const char *nm = generic ? c->gen_name : c->spec_name;
      int k = 0;
      while (k < n && strcmp(names[k], nm))
        k++;
      kidx[2 * i + generic] = k;
      if (k < n || c->bad)
        continue;
      mlc_kdesc d;
      memcpy(&d, &c->d, sizeof d);
      d.generic = generic;
      kir_kernel *kk = mlc_lower(&d, &tu);
      mlc_buf b = {0};
      kir_render(kk, dev->caps.lang, &b);
      kir_free(kk);
      names[n] = nm;
      srcs[n] = mlc_buf_take(&b);
      n++;
    }
  mlc_dmodule *mod = NULL;
  if (dev->vt->build(dev, names, (const char *const *)srcs, n, 0, &mod) != MLC_OK) {
    printf("FAIL building %d kernels on %s: %s\n", n, dev->vt->name, mlc_last_error());
    failed++;
  } else {
    double tb = mlc_now();
    for (int i = 0; i < ncases; i++) {
      tcase *c = &cases[i];
      if (c->bad) {
        failed += 2;
        continue;
      }
      char v[64];
      snprintf(v, sizeof v, "%s spec", dev->vt->name);
      run_on_device(dev, mod, kidx[2 * i], c, v);
      snprintf(v, sizeof v, "%s generic", dev->vt->name);
      run_on_device(dev, mod, kidx[2 * i + 1], c, v);
    }
    fprintf(stderr, "test_device_kernels: %s: %d kernels built in %.2f s, %d cases run in %.2f s\n", dev->vt->name, n,
            tb - t0, ncases, mlc_now() - tb);
    dev->vt->module_free(dev, mod);
  }
  for (int i = 0; i < n; i++)
    free(srcs[i]);
  free(names);
  free(srcs);
  free(kidx);
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  build_cases();
  build_i8_gemv_cases(); /* the Vulkan 8-bit GEMV's shapes (f32 activations elsewhere) */
  mlc_buf csrc = {0};
  for (int i = 0; i < ncases; i++)
    lower_case(&cases[i], &csrc); /* names, buffer checks */
  mlc_buf_free(&csrc);
  const char *list = getenv("MLC_TEST_DEVICES"), *req = getenv("MLC_TEST_REQUIRE_DEVICE");
  bool must = req && *req && strcmp(req, "0");
  char *devs = mlc_strdup(list && *list ? list : "vulkan,opencl"), *save = NULL;
  int opened = 0;
  for (char *name = strtok_r(devs, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    mlc_device *dev = NULL;
    if (mlc_device_open(name, NULL, &dev) != MLC_OK) {
      printf("%s: device %s: %s\n", must ? "FAIL" : "SKIP", name, mlc_last_error());
      failed += must;
      continue;
    }
    opened++;
    printf("device: %s\n", dev->vt->describe(dev));
    fflush(stdout);
    run_device(dev);
    mlc_device_close(dev);
  }
  free(devs);
  for (int i = 0; i < nallocs; i++)
    free(allocs[i]);
  free(allocs);
  printf("%d passed, %d failed\n", passed, failed);
  if (!opened && !failed)
    return 77;
  return failed ? 1 : 0;
}
