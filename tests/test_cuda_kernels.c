/* test_cuda_kernels.c: every kernel case of test_kernels.c (included below: the same cases,
 * random inputs and double-precision references) in the CUDA language.
 *
 * Everywhere: both forms of every case's kernel (specialised and generic) are rendered in
 * KIR_LANG_CUDA and compiled by NVRTC for sm_80 and sm_90 (NVRTC needs no GPU). Exit 77 (skipped)
 * when NVRTC is absent.
 * Where a CUDA device opens: the module is built through the device API and every case runs on
 * the GPU (device memory, launch, read back), checked as on the CPU: outputs within tolerance of
 * the reference, untouched elements and inputs unchanged. Without a device the run stops after
 * the compile checks, unless MLC_TEST_REQUIRE_DEVICE=1 (make test-gpu), which makes that a failure.
 *
 * Usage: test_cuda_kernels [REPO_ROOT]
 */
#define main test_kernels_cpu_main
#include "test_kernels.c"
#undef main

#include "backend/cuda/cuda.h"
#include "backend/device.h"

static void run_case_dev(mlc_device *dev, mlc_dmodule *mod, int kidx, tcase *c, const char *variant) {
  int64_t ip[MLC_KIP] = {0};
  float fp[MLC_KFP];
  memcpy(ip, c->d.size, sizeof c->d.size);
  for (int i = 0; i < 4; i++)
    ip[MLC_KDYN + i] = c->dyn[i];
  memcpy(fp, c->d.fv, sizeof fp);
  mlc_dmem *mem[KIR_MAX_BUFS] = {0};
  size_t off[KIR_MAX_BUFS] = {0};
  void *snap[KIR_MAX_BUFS] = {0};
  bool ok = true;
  for (int i = 0; i < c->nbuf && ok; i++) {
    tbuf *b = &c->b[i];
    if (b->out)
      memcpy(b->p, b->init, 4 * b->n);
    snap[i] = malloc(b->bytes);
    memcpy(snap[i], b->p, b->bytes);
    if (dev->vt->alloc(dev, b->bytes, &mem[i]) != MLC_OK || dev->vt->write(dev, mem[i], 0, b->p, b->bytes) != MLC_OK) {
      fail(c, variant, "device buffer %d: %s", i, mlc_last_error());
      ok = false;
    }
  }
  if (ok && dev->vt->launch(dev, mod, kidx, mem, off, c->nbuf, ip, fp, c->grid) != MLC_OK) {
    fail(c, variant, "launch: %s", mlc_last_error());
    ok = false;
  }
  for (int i = 0; i < c->nbuf && ok; i++) {
    tbuf *b = &c->b[i];
    if (b->out) {
      /* poison the host copy so a failed read cannot pass */
      memset(b->p, 0xff, 4 * b->n);
      if (dev->vt->read(dev, mem[i], 0, b->p, b->bytes) != MLC_OK) {
        fail(c, variant, "read back: %s", mlc_last_error());
        ok = false;
      } else {
        ok &= check_out(c, variant, i);
      }
    } else {
      void *back = malloc(b->bytes);
      if (dev->vt->read(dev, mem[i], 0, back, b->bytes) != MLC_OK || memcmp(back, snap[i], b->bytes) != 0) {
        fail(c, variant, "input %s was written (or could not be read back)", c->bname[i]);
        ok = false;
      }
      free(back);
    }
  }
  for (int i = 0; i < c->nbuf; i++) {
    if (!c->b[i].out && snap[i])
      memcpy(c->b[i].p, snap[i], c->b[i].bytes);
    free(snap[i]);
    if (mem[i])
      dev->vt->free(dev, mem[i]);
  }
  if (ok)
    passed++;
  else
    failed++;
}

static int kindex(const char **names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(names[i], name))
      return i;
  return -1;
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  double t0 = mlc_now();
  build_cases();
  /* shapes the lanes GEMV schedule takes (K a multiple of 32 lanes x one 16-byte slice) */
  case_matmul(MLC_F16, false, 0, 0, 0, 1, 67, 512, 512);
  case_matmul(MLC_F16, true, 0, 0, 0, 5, 33, 256, 300);
  case_matmul(MLC_BF16, false, 0, 0, 30.0f, 3, 40, 768, 768);
  case_matmul(MLC_F32, true, 0, 0, 0, 2, 29, 256, 256);
  case_matmul(MLC_F16, false, 4, 2, 0, 6, 24, 512, 512);
  case_gated(MLC_F16, MLC_KACT_SILU, true, 0, 0, 1, 48, 512, 512);
  case_gated(MLC_BF16, MLC_KACT_GELU_TANH, false, 0, 0, 4, 20, 256, 260);
  case_gated(MLC_F32, MLC_KACT_SILU, true, 3, 1, 3, 16, 384, 384);
  build_i8_gemv_cases(); /* 4-bit weights x 8-bit activations (lower.c qgemv_i8) */
  /* steps of >= 16 rows: the tensor-core GEMM (lower.c qgemm_i8, the kernels' alternative): one
   * and several row tiles of 64 (a partial last one), K of one and several steps of 128, x rows
   * strided, bias, softcap, gate and up */
  case_matmul_q(MLC_Q4F16_1, false, 0, 16, 256, 512, 512);
  case_matmul_q(MLC_Q4F16_1, true, 0, 100, 384, 1024, 1040);
  case_matmul_q(MLC_Q4F16_1, false, 30.0f, 130, 256, 128, 128);
  case_matmul_q(MLC_Q4F32_1, false, 0, 64, 128, 384, 384);
  case_gated_q(MLC_Q4F16_1, MLC_KACT_SILU, 70, 192, 512, 512);
  case_gated_q(MLC_Q4F16_1, MLC_KACT_GELU_TANH, 17, 64, 256, 264);
  /* real shapes the row-lanes schedules take (a warp per row / head: lanes over hidden 2048 or
   * 4096, head_dim 64 or 128; lower.c row_lanes, attention_lanes) */
  case_embed(MLC_F16, 2048, 50, 3, 1.0f);
  case_embed(MLC_BF16, 4096, 20, 1, 0.5f);
  case_rmsnorm(MLC_F16, 0, 3, 2048, 2048, 2048, 1e-5f);
  case_rmsnorm(MLC_F32, 1, 3, 1024, 128, 1100, 1e-6f);
  case_add_rmsnorm(MLC_F16, 0, 3, 2048, 1e-5f);
  case_add_rmsnorm(MLC_BF16, 1, 1, 4096, 1e-6f);
  case_rope(3, 4, 128, 128, 4 * 128 + 64, 1.0f);
  case_rope(1, 2, 64, 64, 200, 0.9f);
  case_kv_append(3, 2, 64, true);
  case_kv_append(1, 8, 128, false);
  case_rope_kv(3, 8, 2, 64, 64, true, 1.0f);
  case_rope_kv(1, 32, 8, 128, 128, true, 1.0f);
  case_attention(3, 8, 2, 64, 0, 0, 1.0);
  case_attention(5, 32, 8, 128, 0, 0, 1.0);
  case_attention(3, 4, 2, 128, 7, 2.0f, 3.0);
  /* steps of >= 16 rows: the query heads of a kv head sharing its K and V rows (lower.c
   * attention_lanes shkv, the kernels' alternative), whole and split over the positions */
  case_attention(20, 8, 2, 64, 0, 0, 1.0);
  case_attention(17, 32, 8, 128, 0, 0, 1.0);
  case_attention(24, 4, 2, 128, 7, 2.0f, 3.0);
  case_attention_split(18, 32, 8, 128, 8);
  case_attention_split(16, 8, 4, 64, 2);
  /* sample (one block of 1024 per row): a batch of 32 rows of Qwen's 151936 tokens, ties at every cut
   * of Llama 2's 32000, a row shorter than a warp (lanes 32: warp shuffles only) */
  case_sample(32, 151936, 151936, false);
  case_sample(16, 32000, 32000, true);
  case_sample(16, 20, 24, false);
  mlc_buf csrc = {0};
  const char **names = calloc(2 * MAXCASES, sizeof *names);
  char **srcs = calloc(2 * MAXCASES, sizeof *srcs);
  int n = 0;
  for (int i = 0; i < ncases; i++) {
    tcase *c = &cases[i];
    lower_case(c, &csrc); /* names, buffer checks */
    for (int generic = 0; generic < 2; generic++) {
      const char *nm = generic ? c->gen_name : c->spec_name;
      if (kindex(names, n, nm) >= 0)
        continue;
      mlc_kdesc d;
      memcpy(&d, &c->d, sizeof d);
      d.generic = generic;
      kir_kernel *k = mlc_lower(&d, mlc_tunables_for(KIR_LANG_CUDA));
      mlc_buf b = {0};
      kir_render(k, KIR_LANG_CUDA, &b);
      kir_free(k);
      names[n] = nm;
      srcs[n++] = mlc_buf_take(&b);
    }
  }
  mlc_buf_free(&csrc);
  if (mlc_nvrtc_load() != MLC_OK) {
    printf("SKIP: %s\n", mlc_last_error());
    return 77;
  }
  mlc_buf src = {0};
  mlc_cuda_module_source(names, (const char *const *)srcs, n, &src);
  const char *dump = getenv("MLC_TEST_CUDA_SOURCE"); /* debugging: the module's source to this file */
  if (dump) {
    FILE *f = fopen(dump, "w");
    if (f) {
      fputs(src.data, f);
      fclose(f);
    }
  }
  const char *targets[] = {"sm_80", "sm_90"};
  for (int t = 0; t < 2; t++) {
    char *path = NULL, *data = NULL;
    size_t len = 0;
    bool cached = false;
    double t1 = mlc_now();
    if (mlc_cuda_compile(src.data, targets[t], 0, &path, &data, &len, &cached) != MLC_OK) {
      printf("FAIL NVRTC %s: %s\n", targets[t], mlc_last_error());
      failed++;
    } else {
      fprintf(stderr, "test_cuda_kernels: %d kernels -> %s: %zu bytes in %.2f s%s\n", n, targets[t], len,
              mlc_now() - t1, cached ? " (cached)" : "");
      passed++;
    }
    free(path);
    free(data);
  }
  mlc_buf_free(&src);

  mlc_device *dev = NULL;
  const char *req = getenv("MLC_TEST_REQUIRE_DEVICE");
  if (mlc_device_open("cuda", NULL, &dev) != MLC_OK) {
    if (req && *req && strcmp(req, "0")) {
      printf("FAIL opening the cuda device: %s\n", mlc_last_error());
      failed++;
    } else {
      fprintf(stderr, "test_cuda_kernels: no CUDA device (%s): compile checks only\n", mlc_last_error());
    }
  } else {
    fprintf(stderr, "test_cuda_kernels: running on %s\n", dev->vt->describe(dev));
    mlc_dmodule *mod = NULL;
    double tb = mlc_now();
    if (dev->vt->build(dev, names, (const char *const *)srcs, n, 1, &mod) != MLC_OK) {
      printf("FAIL building the CUDA module: %s\n", mlc_last_error());
      failed++;
    } else {
      fprintf(stderr, "test_cuda_kernels: module built in %.2f s\n", mlc_now() - tb);
      for (int i = 0; i < ncases; i++) {
        tcase *c = &cases[i];
        if (c->bad) {
          failed += 2;
          continue;
        }
        run_case_dev(dev, mod, kindex(names, n, c->spec_name), c, "cuda spec");
        run_case_dev(dev, mod, kindex(names, n, c->gen_name), c, "cuda generic");
      }
      dev->vt->module_free(dev, mod);
    }
    mlc_device_close(dev);
  }
  for (int i = 0; i < n; i++)
    free(srcs[i]);
  free(srcs);
  free(names);
  fprintf(stderr, "test_cuda_kernels: %d cases, total %.2f s\n", ncases, mlc_now() - t0);
  for (int i = 0; i < nallocs; i++)
    free(allocs[i]);
  free(allocs);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
