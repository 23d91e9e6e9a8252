/* test_device_lockstep.c: every generated kernel of every fixture model, on a GPU backend against
 * the CPU backend, launch by launch on identical inputs.
 *
 * For each fixture model (tests/fixtures/models/<each>, models-bf16/llama) and each device in
 * $MLC_TEST_DEVICES (default "vulkan,opencl"; one that does not open is skipped, a failure with
 * MLC_TEST_REQUIRE_DEVICE=1) the model is loaded twice, on the CPU and on the device, and two
 * first tokens of ref.json's prompt run through the public API on both (page tables, KV history).
 * The rest of the prompt is then one step run by hand, a launch at a time, over an activation
 * arena filled with noise: before each launch the CPU's activations and KV cache are copied onto
 * the device, the launch runs on both, and the device's are read back and compared with the CPU's.
 * The error of a launch is max |device - cpu| over max |cpu| of the values either side wrote
 * (1e-4 allowed). Each distinct kernel of a model is one check, at its first launch. The llama
 * fixture also runs converted to the quantization schemes (packed words, group scales). Attention
 * runs split over 4 blocks of positions on both sides ($MLC_ATTN_SPLITS, default 4 here).
 * Ends with "N passed, M failed"; exit 77 when no device opened. argv[1] is the repo root. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "format/convert.h"
#include "mlc.h"
#include "runtime/runtime.h"

static int passed, failed;

static mlc_status launch(mlc_model *m, int li, int64_t n, int64_t mm) {
  mlc_launch *L = &m->launch[li];
  mlc_dmem *mem[KIR_MAX_BUFS];
  size_t off[KIR_MAX_BUFS];
  for (int b = 0; b < L->nbuf; b++)
    mem[b] = mlc_tensor_ref(m, L->buf[b], n, mm, &off[b]);
  for (int j = 0; j < 4; j++)
    L->ip[MLC_KDYN + j] = mlc_sym_eval(L->dyn[j], n, mm);
  mlc_status st = m->dev->vt->launch(m->dev, m->mod, L->kidx, mem, off, L->nbuf, L->ip, L->fp, mlc_sym_eval(L->grid, n, mm));
  return st == MLC_OK ? m->dev->vt->sync(m->dev) : st;
}

typedef struct state {
  size_t na, nk; /* floats in the arena, the KV cache */
  float *a, *k;
} state;

static mlc_status get_state(mlc_model *m, state *s) {
  MLC_TRY(m->dev->vt->read(m->dev, m->arena, 0, s->a, s->na * 4));
  return m->dev->vt->read(m->dev, m->kv, 0, s->k, s->nk * 4);
}
static mlc_status put_state(mlc_model *m, const state *s) {
  MLC_TRY(m->dev->vt->write(m->dev, m->arena, 0, s->a, s->na * 4));
  return m->dev->vt->write(m->dev, m->kv, 0, s->k, s->nk * 4);
}

/* Compares got with want where `before` is the state before the launch. Returns the relative
 * error of the written values, or INFINITY when an unwritten value differs (*where says where). */
static double compare(const float *before, const float *want, const float *got, size_t n, size_t *where) {
  double maxref = 0, maxerr = 0;
  for (size_t i = 0; i < n; i++) {
    if (memcmp(&before[i], &want[i], 4) == 0 && memcmp(&before[i], &got[i], 4) == 0)
      continue; /* written by neither */
    if (isinf(want[i]) && got[i] == want[i])
      continue; /* the same infinity (the maximum of a split of attention without positions) */
    double e = fabs((double)got[i] - want[i]);
    if (isnan(e) || e > maxerr) {
      maxerr = isnan(e) ? INFINITY : e;
      *where = i;
    }
    if (fabs(want[i]) > maxref)
      maxref = fabs(want[i]);
  }
  return maxerr / (maxref > 0 ? maxref : 1);
}

static int load_ids(const char *dir, int32_t *ids, int max) {
  char path[1200];
  snprintf(path, sizeof path, "%s/ref.json", dir);
  cJSON *j = NULL;
  if (mlc_json_load(path, &j) != MLC_OK)
    return 0;
  cJSON *a = cJSON_GetObjectItem(j, "input_ids");
  int n = cJSON_GetArraySize(a);
  if (n > max)
    n = max;
  for (int i = 0; i < n; i++)
    ids[i] = cJSON_GetArrayItem(a, i)->valueint;
  cJSON_Delete(j);
  return n;
}

/* dir: the model; ref_dir: where its ref.json (the prompt) is */
static void run_model(const char *devname, const char *dir, const char *ref_dir, const char *label) {
  int32_t ids[64];
  int n = load_ids(ref_dir, ids, 63);
  if (n < 2) {
    printf("FAIL %s: no input_ids in ref.json\n", label);
    failed++;
    return;
  }
  mlc_model_options oc = {.threads = 2}, od = {.threads = 2, .device = devname};
  mlc_model *A = NULL, *B = NULL;
  if (mlc_model_load(dir, &oc, &A) != MLC_OK || mlc_model_load(dir, &od, &B) != MLC_OK) {
    printf("FAIL %s [%s]: load: %s\n", label, devname, mlc_last_error());
    failed++;
    mlc_model_free(A);
    return;
  }
  state sa = {.na = A->g.arena_size / 4, .nk = A->kv_layer_elems * (size_t)A->cfg.num_layers};
  state s0 = sa, sb = sa;
  sa.a = malloc(sa.na * 4 + 4), sa.k = malloc(sa.nk * 4 + 4);
  s0.a = malloc(sa.na * 4 + 4), s0.k = malloc(sa.nk * 4 + 4);
  sb.a = malloc(sa.na * 4 + 4), sb.k = malloc(sa.nk * 4 + 4);
  int V = mlc_model_vocab_size(A);
  float *lg = malloc(sizeof(float) * (size_t)V);
  mlc_seq *qa = NULL, *qb = NULL;
  bool ok = mlc_seq_new(A, &qa) == MLC_OK && mlc_seq_new(B, &qb) == MLC_OK;
  /* names already checked in this model: one check per distinct kernel */
  char (*seen)[96] = calloc((size_t)A->nlaunch, sizeof *seen);
  int nseen = 0, nk = 0, nfail = 0;
  /* the first P tokens through the public API (pages, KV history), then one step of the rest by
   * hand, launch by launch, over an arena filled with noise (so stale values never pass) */
  const int P = 5, sn = n - P, mm = 2;
  ok = ok && sn >= mm && (P % MLC_KV_PAGE) + sn <= MLC_KV_PAGE && mlc_seq_forward(qa, ids, P, lg, 1) == MLC_OK &&
       mlc_seq_forward(qb, ids, P, lg, 1) == MLC_OK;
  mlc_model *both[2] = {A, B};
  for (int w = 0; ok && w < 2; w++) {
    mlc_model *m = both[w];
    mlc_seq *q = w ? qb : qa;
    for (int t = 0; t < sn; t++) {
      m->in[MLC_IN_IDS][t] = ids[P + t];
      m->in[MLC_IN_POS][t] = P + t;
      m->in[MLC_IN_SEQ][t] = q->slot;
    }
    for (int r = 0; r < mm; r++)
      m->in[MLC_IN_ROWS][r] = sn - mm + r;
    for (int i = 0; ok && i < MLC_IN_COUNT; i++) {
      size_t bytes = sizeof(int32_t) * (i == MLC_IN_PAGES ? (size_t)m->max_seqs * (size_t)m->max_pages : (size_t)m->max_n);
      ok = m->dev->vt->write(m->dev, m->in_mem[i], 0, m->in[i], bytes) == MLC_OK;
    }
  }
  uint64_t rng = 0x243f6a8885a308d3ull;
  for (size_t i = 0; ok && i < sa.na; i++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    s0.a[i] = (float)((double)(rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
  }
  ok = ok && get_state(A, &sa) == MLC_OK;
  if (ok) {
    memcpy(sa.a, s0.a, sa.na * 4);
    ok = put_state(A, &sa) == MLC_OK;
  }
  for (int li = 0; li < A->nlaunch && ok; li++) {
    bool first = true;
    for (int s = 0; s < nseen && first; s++)
      first = strcmp(seen[s], A->launch[li].name) != 0;
    ok = get_state(A, &s0) == MLC_OK && put_state(B, &s0) == MLC_OK && launch(A, li, sn, mm) == MLC_OK &&
         launch(B, li, sn, mm) == MLC_OK && get_state(A, &sa) == MLC_OK && get_state(B, &sb) == MLC_OK;
    if (!ok || !first)
      continue;
    snprintf(seen[nseen++], sizeof seen[0], "%s", A->launch[li].name);
    size_t wa = 0, wk = 0;
    double ea = compare(s0.a, sa.a, sb.a, sa.na, &wa), ek = compare(s0.k, sa.k, sb.k, sa.nk, &wk);
    nk++;
    if (!(ea <= 1e-4 && ek <= 1e-4)) {
      bool in_a = !(ea <= 1e-4);
      size_t w = in_a ? wa : wk;
      printf("FAIL %s [%s] launch %d (%s %s): %s[%zu] relative error %.3g: got %.9g, want %.9g (was %.9g)\n", label,
             devname, li, mlc_op_name(A->g.ops[A->launch[li].op].kind), A->launch[li].name, in_a ? "arena" : "kv", w,
             in_a ? ea : ek, in_a ? sb.a[w] : sb.k[w], in_a ? sa.a[w] : sa.k[w], in_a ? s0.a[w] : s0.k[w]);
      nfail++;
    }
  }
  if (!ok) {
    printf("FAIL %s [%s]: %s\n", label, devname, mlc_last_error());
    failed++;
  }
  passed += nk - nfail;
  failed += nfail;
  free(seen);
  mlc_seq_free(qa);
  mlc_seq_free(qb);
  free(lg);
  free(sa.a), free(sa.k), free(s0.a), free(s0.k), free(sb.a), free(sb.k);
  mlc_model_free(A);
  mlc_model_free(B);
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  /* one graph on both sides: GPUs split attention over the positions (model.c), the CPU does not
   * unless told; split both (attention partials and attn_combine are checked launch by launch) */
  setenv("MLC_ATTN_SPLITS", "4", 0);
  const char *list = getenv("MLC_TEST_DEVICES"), *req = getenv("MLC_TEST_REQUIRE_DEVICE");
  bool must = req && *req && strcmp(req, "0");
  char *devs = mlc_strdup(list && *list ? list : "vulkan,opencl"), *save = NULL;
  int opened = 0;
  double t0 = mlc_now();
  /* the quantized packages, converted once */
  static const char *QUANT[] = {"q4f16_1", "q4f16_0", "q3f16_1", "q8f16_1"};
  enum { NQ = sizeof QUANT / sizeof QUANT[0] };
  char tmpl[] = "/tmp/mlc-lockstep-XXXXXX", qdir[NQ][128];
  const char *tmp = mkdtemp(tmpl);
  int nquant = 0;
  for (int q = 0; tmp && q < NQ; q++) {
    char src[1024];
    snprintf(src, sizeof src, "%s/tests/fixtures/models/llama", root);
    snprintf(qdir[q], sizeof qdir[q], "%s/%s", tmp, QUANT[q]);
    mlc_convert_opts o = {.src = src, .out = qdir[q], .quant = QUANT[q], .threads = 2};
    mlc_convert_report rep;
    if (mlc_convert(&o, &rep) != MLC_OK) {
      printf("FAIL convert llama %s: %s\n", QUANT[q], mlc_last_error());
      failed++;
      break;
    }
    nquant++;
  }
  for (char *name = strtok_r(devs, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    mlc_device *dev = NULL;
    if (mlc_device_open(name, NULL, &dev) != MLC_OK) {
      printf("%s: device %s: %s\n", must ? "FAIL" : "SKIP", name, mlc_last_error());
      failed += must;
      continue;
    }
    printf("device: %s\n", dev->vt->describe(dev));
    mlc_device_close(dev);
    opened++;
    char mdir[1024];
    snprintf(mdir, sizeof mdir, "%s/tests/fixtures/models", root);
    DIR *d = opendir(mdir);
    struct dirent *e;
    int before = passed;
    while (d && (e = readdir(d))) {
      if (e->d_name[0] == '.')
        continue;
      char dir[1300];
      snprintf(dir, sizeof dir, "%s/%s", mdir, e->d_name);
      run_model(name, dir, dir, e->d_name);
    }
    if (d)
      closedir(d);
    char bf[1024];
    snprintf(bf, sizeof bf, "%s/tests/fixtures/models-bf16/llama", root);
    run_model(name, bf, bf, "models-bf16/llama");
    /* quantized packages: packed 4/3/8-bit words and group scales, both layouts */
    char src[1024];
    snprintf(src, sizeof src, "%s/tests/fixtures/models/llama", root);
    for (int q = 0; q < nquant; q++) {
      char label[64];
      snprintf(label, sizeof label, "llama %s", QUANT[q]);
      run_model(name, qdir[q], src, label);
    }
    fprintf(stderr, "test_device_lockstep: %s: %d kernels checked, %.1f s\n", name, passed - before, mlc_now() - t0);
  }
  free(devs);
  for (int q = 0; q < nquant; q++) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", qdir[q]);
    if (system(cmd) != 0)
      fprintf(stderr, "cannot remove %s\n", qdir[q]);
  }
  if (tmp)
    rmdir(tmp);
  printf("%d passed, %d failed\n", passed, failed);
  if (!opened && !failed)
    return 77;
  return failed ? 1 : 0;
}
