/* test_sample.c: the distribution of the device sampler (MLC_OP_SAMPLE, lower.c rule_sample)
 * against the host sampler's filtered softmax (sampler.c mlc_sample_filter).
 *
 * For each configuration (temperature, top_k, top_p, min_p; one with ties at the cuts) one launch
 * draws N tokens from the same row of logits (row stride 0), each row with its own uniform from a
 * seeded splitmix64, so every run draws the same numbers. Checks, per device: no token outside
 * the host's kept set is drawn; Pearson's chi-square of the counts against the kept tokens'
 * renormalised probabilities is below its 1e-4 upper quantile (Wilson-Hilferty); and, so that the
 * test is known to catch a wrong filter, the same counts are rejected against three wrong
 * distributions (no filter, top_k one larger, temperature 1.25x) wherever those differ.
 *
 * Devices: the CPU, then each of $MLC_TEST_DEVICES (default "vulkan,opencl"; "cuda" on a GPU
 * machine: the ctest gpu_sample) that opens (one that does not is skipped; MLC_TEST_REQUIRE_DEVICE=1
 * makes it a failure; exit 77 when $MLC_TEST_DEVICES names devices and none opened).
 * Ends with "N passed, M failed". argv[1] (the root) is unused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "engine/sampler.h"
#include "kernel/lower.h"

static int passed, failed;
static void check(bool ok, const char *dev, const char *what, double v) {
  if (ok)
    passed++;
  else
    failed++;
  printf("%s %s: %s (%.4g)\n", ok ? "ok" : "FAIL", dev, what, v);
}

enum { V = 48, N = 10000 };

typedef struct cfg {
  const char *name;
  mlc_sampling s;
  bool ties;
} cfg;
static const cfg CFGS[] = {
    {"T 0.8, top_k 12", {.temperature = 0.8f, .top_p = 1, .top_k = 12}, false},
    {"T 1.0, top_p 0.8", {.temperature = 1.0f, .top_p = 0.8f}, false},
    {"T 0.7, min_p 0.05", {.temperature = 0.7f, .top_p = 1, .min_p = 0.05f}, false},
    {"T 1.2, top_k 20, top_p 0.9, min_p 0.01", {.temperature = 1.2f, .top_p = 0.9f, .top_k = 20, .min_p = 0.01f}, false},
    {"T 1.0, no filter", {.temperature = 1.0f, .top_p = 1}, false},
    {"T 0.9, top_k 7, ties at the cut", {.temperature = 0.9f, .top_p = 1, .top_k = 7}, true},
    {"T 1.1, top_p 0.6, ties at the cut", {.temperature = 1.1f, .top_p = 0.6f}, true},
};
enum { NCFG = sizeof CFGS / sizeof CFGS[0] };

/* the logits of a configuration: smooth random values, or five levels (ties) */
static void make_logits(bool ties, float *x) {
  uint64_t st = 0x5eed0001u + ties;
  for (int i = 0; i < V; i++) {
    double u = mlc_sample_uniform(&st);
    x[i] = ties ? (float)((int)(u * 5) - 2) : (float)(u * 6.0 - 3.0);
  }
}

/* the kept tokens' renormalised probabilities (0 elsewhere) by the host's filter */
static void filtered(const mlc_sampling *s, const float *x, double *q) {
  float prob[V];
  int32_t idx[V];
  int n = mlc_sample_filter(s, x, V, prob, idx);
  double tot = 0;
  for (int i = 0; i < n; i++)
    tot += prob[idx[i]];
  memset(q, 0, sizeof(double) * V);
  for (int i = 0; i < n; i++)
    q[idx[i]] = prob[idx[i]] / tot;
}

/* Pearson's statistic of the counts against q; a count where q is 0 makes it infinite */
static double chi2(const int *cnt, const double *q, int *df) {
  double c = 0;
  *df = -1;
  for (int i = 0; i < V; i++) {
    if (q[i] > 0) {
      double e = (double)N * q[i];
      c += (cnt[i] - e) * (cnt[i] - e) / e;
      ++*df;
    } else if (cnt[i]) {
      return INFINITY;
    }
  }
  return c;
}
/* the 1 - 1e-4 quantile of chi-square with df degrees of freedom (Wilson-Hilferty) */
static double chi2_limit(int df) {
  if (df <= 0)
    return 1e-9; /* one token: every draw is it */
  double a = 2.0 / (9.0 * df);
  return df * pow(1 - a + 3.719 * sqrt(a), 3);
}
static bool same_q(const double *a, const double *b) {
  for (int i = 0; i < V; i++)
    if (fabs(a[i] - b[i]) > 1e-3)
      return false;
  return true;
}

/* returns whether the device opened */
static bool run_device(const char *name) {
  mlc_device *dev = NULL;
  mlc_device_opts opt = {.threads = 2};
  if (mlc_device_open(name, &opt, &dev) != MLC_OK) {
    const char *req = getenv("MLC_TEST_REQUIRE_DEVICE");
    bool must = req && *req && strcmp(req, "0");
    printf("%s: device %s: %s\n", must ? "FAIL" : "SKIP", name, mlc_last_error());
    failed += must;
    return false;
  }
  printf("device: %s\n", dev->vt->describe(dev));
  mlc_kdesc d;
  memset(&d, 0, sizeof d);
  d.kind = MLC_OP_SAMPLE;
  d.size[0] = V;
  d.size[1] = 0; /* every row reads the same logits */
  kir_kernel *k = mlc_lower(&d, mlc_tunables_for(dev->caps.lang));
  mlc_buf src = {0};
  kir_render(k, dev->caps.lang, &src);
  const char *names[1] = {k->name}, *srcs[1] = {src.data};
  mlc_dmodule *mod = NULL;
  mlc_dmem *mt = NULL, *mx = NULL, *mp = NULL;
  float *prm = calloc((size_t)N * MLC_SAMPLE_SLOTS, sizeof(float));
  int32_t *tok = calloc(N, sizeof(int32_t));
  bool ok = prm && tok && dev->vt->build(dev, names, srcs, 1, 0, &mod) == MLC_OK &&
            dev->vt->alloc(dev, sizeof(int32_t) * N, &mt) == MLC_OK && dev->vt->alloc(dev, sizeof(float) * V, &mx) == MLC_OK &&
            dev->vt->alloc(dev, sizeof(float) * N * MLC_SAMPLE_SLOTS, &mp) == MLC_OK;
  if (!ok)
    printf("FAIL %s: setup: %s\n", name, mlc_last_error());
  failed += !ok;
  for (int ci = 0; ok && ci < NCFG; ci++) {
    const cfg *c = &CFGS[ci];
    float x[V];
    make_logits(c->ties, x);
    uint64_t st = 0xc0ffee00u + (uint64_t)ci; /* the draws: the same every run */
    for (int r = 0; r < N; r++) {
      mlc_sample_params sp;
      mlc_sample_device_params(&c->s, &st, &sp);
      float *row = prm + (size_t)r * MLC_SAMPLE_SLOTS;
      row[MLC_SAMPLE_TEMP] = sp.temperature;
      row[MLC_SAMPLE_TOP_P] = sp.top_p;
      row[MLC_SAMPLE_TOP_K] = (float)sp.top_k;
      row[MLC_SAMPLE_MIN_P] = sp.min_p;
      row[MLC_SAMPLE_U] = sp.uniform;
    }
    mlc_dmem *mem[3] = {mt, mx, mp};
    size_t off[3] = {0, 0, 0};
    int64_t ip[MLC_KIP] = {V, 0};
    float fp[MLC_KFP] = {0};
    ok = dev->vt->write(dev, mx, 0, x, sizeof x) == MLC_OK &&
         dev->vt->write(dev, mp, 0, prm, sizeof(float) * N * MLC_SAMPLE_SLOTS) == MLC_OK &&
         dev->vt->launch(dev, mod, 0, mem, off, 3, ip, fp, N) == MLC_OK &&
         dev->vt->read(dev, mt, 0, tok, sizeof(int32_t) * N) == MLC_OK;
    if (!ok) {
      printf("FAIL %s %s: %s\n", name, c->name, mlc_last_error());
      failed++;
      break;
    }
    int cnt[V] = {0}, bad = 0;
    for (int r = 0; r < N; r++) {
      if (tok[r] >= 0 && tok[r] < V)
        cnt[tok[r]]++;
      else
        bad++;
    }
    double q[V], qw[V];
    filtered(&c->s, x, q);
    int outside = bad;
    for (int i = 0; i < V; i++)
      outside += q[i] == 0 && cnt[i];
    char what[200];
    snprintf(what, sizeof what, "%s: every draw in the host's kept set", c->name);
    check(outside == 0, name, what, outside);
    int df;
    double x2 = chi2(cnt, q, &df), lim = chi2_limit(df);
    snprintf(what, sizeof what, "%s: chi-square over %d kept tokens below %.1f", c->name, df + 1, lim);
    check(x2 < lim, name, what, x2);
    /* the wrong filters the test must reject */
    mlc_sampling wrong[3] = {c->s, c->s, c->s};
    wrong[0].top_k = 0, wrong[0].top_p = 1, wrong[0].min_p = 0;
    wrong[1].top_k = c->s.top_k ? c->s.top_k + 1 : 0;
    wrong[2].temperature *= 1.25f;
    static const char *wn[3] = {"no filter", "top_k + 1", "temperature x1.25"};
    for (int w = 0; w < 3; w++) {
      filtered(&wrong[w], x, qw);
      if (same_q(q, qw))
        continue; /* this configuration cannot tell them apart */
      double xw = chi2(cnt, qw, &df);
      snprintf(what, sizeof what, "%s: rejects %s (chi-square above %.1f)", c->name, wn[w], chi2_limit(df));
      check(xw > chi2_limit(df), name, what, xw);
    }
  }
  free(prm);
  free(tok);
  mlc_buf_free(&src);
  kir_free(k);
  if (mt)
    dev->vt->free(dev, mt);
  if (mx)
    dev->vt->free(dev, mx);
  if (mp)
    dev->vt->free(dev, mp);
  if (mod)
    dev->vt->module_free(dev, mod);
  mlc_device_close(dev);
  return true;
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  run_device("cpu");
  const char *list = getenv("MLC_TEST_DEVICES");
  char *devs = mlc_strdup(list && *list ? list : "vulkan,opencl"), *save = NULL;
  int opened = 0;
  for (char *d = strtok_r(devs, ",", &save); d; d = strtok_r(NULL, ",", &save))
    opened += run_device(d);
  free(devs);
  printf("%d passed, %d failed\n", passed, failed);
  if (failed)
    return 1;
  return list && *list && !opened ? 77 : 0; /* named devices, none there (gpu_sample without a GPU): skipped */
}
