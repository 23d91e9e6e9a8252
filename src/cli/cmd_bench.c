/* cmd_bench.c: `mlc bench`: prefill and decode speed on random token ids; `mlc bench --membw`:
 * the read memory bandwidth of this machine, to put decode speeds against. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_model.h"
#include "runtime/runtime.h"
#include "format/quant.h"

/* Bytes of weights one decode step reads: every weight a kernel reads, except embedding tables
 * (one row per token) and the inactive share of stacked experts. */

/* bytes of `rows` rows of weight tensor t as stored (format/quant.h for packed dtypes) */
static double wbytes(const mlc_graph *g, int t, int64_t rows) {
  const mlc_tensor *w = &g->t[t];
  double b = (double)mlc_weight_bytes(w->dtype, rows, w->cols);
  if (mlc_dtype_is_quant(w->dtype) && w->scale_tensor >= 0) {
    const mlc_tensor *s = &g->t[w->scale_tensor];
    b += (double)s->rows.c * (double)s->cols * (double)mlc_dtype_size(s->dtype) * (double)rows / (double)w->rows.c;
  }
  return b;
}

static double weight_bytes_per_token(const mlc_model *m) {
  const mlc_graph *g = &m->g;
  char *seen = calloc((size_t)g->nt, 1);
  double total = 0;
  for (int i = 0; seen && i < g->nops; i++) {
    const mlc_op *o = &g->ops[i];
    for (int s = 0; s < o->nin; s++) {
      int t = o->in[s];
      if (t < 0 || g->t[t].kind != MLC_T_WEIGHT || seen[t])
        continue;
      seen[t] = 1;
      const mlc_tensor *w = &g->t[t];
      /* packed quantized weights: words plus their group scales */
      double bytes = wbytes(g, t, w->rows.c);
      if (o->kind == MLC_OP_EMBED)
        bytes = wbytes(g, t, 1);
      else if ((o->kind == MLC_OP_MATMUL || o->kind == MLC_OP_GATED_MATMUL) && o->in[3] >= 0 && m->cfg.num_experts > 0)
        bytes *= (double)m->cfg.num_experts_per_tok / m->cfg.num_experts;
      total += bytes;
    }
  }
  /* a tied lm_head reads the whole table once more */
  if (m->cfg.tie_word_embeddings)
    for (int i = 0; i < g->nops; i++)
      if (g->ops[i].kind == MLC_OP_MATMUL && g->t[g->ops[i].in[1]].kind == MLC_T_WEIGHT) {
        const mlc_tensor *w = &g->t[g->ops[i].in[1]];
        if (strcmp(w->name, "model.embed_tokens.weight") == 0)
          total += wbytes(g, g->ops[i].in[1], w->rows.c) - wbytes(g, g->ops[i].in[1], 1);
      }
  free(seen);
  return total;
}

/* ---- mlc bench --membw: read bandwidth probe ----
 * T threads (the --threads of a model run; default all cores) each stream one contiguous slice of
 * one buffer (default 1 GiB, filled first so every page is resident), summing it as 64-byte
 * vectors in four independent accumulators. All threads start a pass together (a barrier) and a
 * pass ends when the last one finishes; the best pass of N gives the GB/s (1 GB = 1e9 bytes). */

typedef uint64_t membw_vec __attribute__((vector_size(64)));

typedef struct membw_ctx {
  const unsigned char *buf;
  size_t slice; /* bytes per thread, a multiple of 256 */
  int nthreads, reps;
  pthread_barrier_t bar;
  double *secs;
  uint64_t sums[1024]; /* each thread's sum, kept so the reads are not optimised away */
} membw_ctx;

typedef struct membw_arg {
  membw_ctx *c;
  int id;
} membw_arg;

static uint64_t membw_read(const unsigned char *p, size_t n) {
  membw_vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
  for (size_t i = 0; i < n; i += 256) {
    membw_vec x0, x1, x2, x3;
    memcpy(&x0, p + i, 64);
    memcpy(&x1, p + i + 64, 64);
    memcpy(&x2, p + i + 128, 64);
    memcpy(&x3, p + i + 192, 64);
    a0 += x0, a1 += x1, a2 += x2, a3 += x3;
  }
  a0 += a1 + a2 + a3;
  uint64_t r = 0;
  for (int k = 0; k < 8; k++)
    r += a0[k];
  return r;
}

static void *membw_worker(void *p) {
  membw_arg *a = p;
  membw_ctx *c = a->c;
  for (int r = 0; r < c->reps; r++) {
    pthread_barrier_wait(&c->bar);
    double t0 = a->id == 0 ? mlc_now() : 0;
    c->sums[a->id] += membw_read(c->buf + (size_t)a->id * c->slice, c->slice);
    pthread_barrier_wait(&c->bar);
    if (a->id == 0)
      c->secs[r] = mlc_now() - t0;
  }
  return NULL;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static int membw_probe(int threads, long mib, long reps, bool json) {
  if (threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int)n : 1;
  }
  if (threads > 1024)
    threads = 1024;
  size_t total = (size_t)mib << 20;
  membw_ctx *c = calloc(1, sizeof *c);
  membw_arg *args = calloc((size_t)threads, sizeof *args);
  pthread_t *tid = calloc((size_t)threads, sizeof *tid);
  if (c)
    c->secs = calloc((size_t)reps, sizeof(double));
  if (c)
    c->slice = total / (size_t)threads / 256 * 256;
  unsigned char *buf = c && c->slice ? aligned_alloc(4096, (total + 4095) / 4096 * 4096) : NULL;
  if (!c || !args || !tid || !c->secs || !buf) {
    fprintf(stderr, "mlc bench: --membw: cannot allocate %ld MiB\n", mib);
    free(buf), free(tid), free(args);
    if (c)
      free(c->secs);
    free(c);
    return 1;
  }
  /* make every page resident (and not the shared zero page) before timing */
  memset(buf, 0x5a, total);
  c->buf = buf;
  c->nthreads = threads;
  c->reps = (int)reps;
  pthread_barrier_init(&c->bar, NULL, (unsigned)threads);
  for (int t = 0; t < threads; t++)
    args[t] = (membw_arg){c, t};
  for (int t = 1; t < threads; t++)
    if (pthread_create(&tid[t], NULL, membw_worker, &args[t]) != 0) {
      /* the started threads wait at a barrier that counts all of them: no clean way back */
      fprintf(stderr, "mlc bench: --membw: could not start %d threads\n", threads);
      exit(1);
    }
  membw_worker(&args[0]);
  for (int t = 1; t < threads; t++)
    pthread_join(tid[t], NULL);
  pthread_barrier_destroy(&c->bar);
  double bytes = (double)c->slice * threads;
  qsort(c->secs, (size_t)reps, sizeof(double), cmp_double);
  double best = bytes / c->secs[0] / 1e9, median = bytes / c->secs[reps / 2] / 1e9;
  if (json)
    printf("{\"membw\": true, \"threads\": %d, \"bytes\": %.0f, \"reps\": %ld, \"read_gb_s\": %.3f, "
           "\"median_read_gb_s\": %.3f}\n",
           threads, bytes, reps, best, median);
  else
    printf("membw: threads %d, read %.0f MiB, best of %ld: %.2f GB/s (median %.2f GB/s)\n", threads, bytes / 1048576.0,
           reps, best, median);
  free(buf), free(tid), free(args), free(c->secs), free(c);
  return 0;
}

/* A GPU's copy bandwidth (bytes read + written per second, as `torch` copies count it), measured
 * on the model's device in the same run: the best of 5 rounds of 8 device-to-device copies of a
 * buffer of 1 GiB (512 or 256 MiB where that does not fit); 0 where none fits or a copy fails. */
static double device_copy_gbs(mlc_device *d, size_t *bytes_out) {
  for (size_t bytes = (size_t)1 << 30; bytes >= (size_t)256 << 20; bytes /= 2) {
    mlc_dmem *a = NULL, *b = NULL;
    if (d->vt->alloc(d, bytes, &a) != MLC_OK || d->vt->alloc(d, bytes, &b) != MLC_OK) {
      d->vt->free(d, a);
      continue;
    }
    double best = 0;
    bool ok = d->vt->copy(d, b, 0, a, 0, bytes) == MLC_OK && d->vt->sync(d) == MLC_OK; /* warm up */
    for (int round = 0; round < 5 && ok; round++) {
      double t0 = mlc_now();
      for (int i = 0; i < 8 && ok; i++)
        ok = d->vt->copy(d, i % 2 ? a : b, 0, i % 2 ? b : a, 0, bytes) == MLC_OK;
      ok = ok && d->vt->sync(d) == MLC_OK;
      double gbs = 2.0 * 8 * (double)bytes / (mlc_now() - t0) / 1e9;
      if (ok && gbs > best)
        best = gbs;
    }
    d->vt->free(d, a);
    d->vt->free(d, b);
    *bytes_out = bytes;
    return ok ? best : 0;
  }
  return 0;
}

int mlc_cmd_bench(int argc, char **argv) {
  const char *cmd = "bench";
  mlc_cli_model o = {0};
  long plen = 128, glen = 64, membw_mib = 1024, membw_reps = 5;
  bool json = false, membw = false;
  for (int i = 1; i < argc; i++) {
    int r = mlc_cli_model_opt(cmd, argc, argv, &i, &o);
    if (r < 0)
      return 1;
    if (r)
      continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: mlc bench MODEL [--prompt-len N] [--gen-len M] [--threads T] [--json] [options]\n"
             "       mlc bench --membw [--threads T] [--membw-mib S] [--membw-reps R] [--json]\n\n"
             "Runs a prefill of N random tokens (default 128), then M greedy decode steps (default 64), and\n"
             "prints prefill and decode tokens/s, time to first token, peak memory, the weight bytes one\n"
             "decode step reads and the memory bandwidth that implies; on a GPU also the device's copy\n"
             "bandwidth measured in the same run and the decode's fraction of it.\n\n"
             "--membw measures read memory bandwidth instead (no MODEL): T threads (default all cores)\n"
             "stream one S MiB buffer (default 1024), each its own slice; prints the best of R passes\n"
             "(default 5) in GB/s (1e9 bytes/s).\n\n%s",
             mlc_cli_model_help);
      return 0;
    } else if ((!strcmp(a, "--prompt-len") || !strcmp(a, "--gen-len")) && v) {
      long x = strtol(v, &end, 10);
      if (*end || x < 1 || x > (1 << 20)) {
        fprintf(stderr, "mlc bench: %s: expected a positive integer, got \"%s\"\n", a, v);
        return 1;
      }
      *(!strcmp(a, "--prompt-len") ? &plen : &glen) = x;
      i++;
    } else if ((!strcmp(a, "--membw-mib") || !strcmp(a, "--membw-reps")) && v) {
      long x = strtol(v, &end, 10);
      if (*end || x < 1 || x > (1 << 20)) {
        fprintf(stderr, "mlc bench: %s: expected a positive integer, got \"%s\"\n", a, v);
        return 1;
      }
      *(!strcmp(a, "--membw-mib") ? &membw_mib : &membw_reps) = x;
      i++;
    } else if (!strcmp(a, "--membw")) {
      membw = true;
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else if (a[0] != '-' && !o.path) {
      o.path = a;
    } else {
      fprintf(stderr, "mlc bench: unexpected argument '%s' (see mlc bench --help)\n", a);
      return 1;
    }
  }
  if (membw) {
    if (o.path) {
      fprintf(stderr, "mlc bench: --membw takes no MODEL\n");
      return 1;
    }
    return membw_probe(o.opt.threads, membw_mib, membw_reps, json);
  }
  if (!o.path) {
    fprintf(stderr, "usage: mlc bench MODEL [--prompt-len N] [--gen-len M] [--threads T] [--json]\n");
    return 1;
  }
  if (o.opt.max_seq_len == 0)
    o.opt.max_seq_len = (int)(plen + glen + 16);
  if (mlc_cli_model_open(cmd, &o))
    return 1;
  int V = mlc_model_vocab_size(o.model);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)plen);
  uint64_t st = 12345;
  for (long i = 0; i < plen; i++) {
    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    ids[i] = (int32_t)((st >> 33) % (uint64_t)V);
  }
  int rc = 0;
  /* warm up: touch the weights and the kernels once */
  mlc_seq *s = NULL;
  if (mlc_seq_new(o.model, &s) == MLC_OK) {
    mlc_seq_forward(s, ids, plen < 8 ? (int)plen : 8, NULL, 0);
    mlc_seq_free(s);
  }
  mlc_cli_gen g = {0};
  mlc_cli_gen_opts go = {.max_tokens = (int)glen, .sampling = {.temperature = 0, .top_p = 1}, .ignore_eos = true};
  if (mlc_cli_generate(&o, ids, (int)plen, &go, &g) != MLC_OK) {
    rc = mlc_cli_fail(cmd);
  } else {
    double wb = weight_bytes_per_token(o.model);
    double bw = wb * g.decode_tps / 1e9;
    size_t rss = mlc_peak_rss();
    bool cpu = !strcmp(o.model->dev->vt->name, "cpu");
    int threads = cpu ? mlc_cpu_device_threads(o.model->dev) : 0;
    size_t cbytes = 0;
    double copy = cpu ? 0 : device_copy_gbs(o.model->dev, &cbytes); /* the CPU: `mlc bench --membw` */
    if (json)
      printf("{\"model\": \"%s\", \"threads\": %d, \"prompt_len\": %ld, \"gen_len\": %ld, \"prefill_tokens_per_s\": %.3f, "
             "\"decode_tokens_per_s\": %.3f, \"time_to_first_token_s\": %.6f, \"peak_rss_bytes\": %zu, "
             "\"weight_bytes_per_token\": %.0f, \"decode_bandwidth_gb_s\": %.3f, \"copy_bandwidth_gb_s\": %.3f, "
             "\"decode_of_copy_bandwidth\": %.4f}\n",
             o.path, threads, plen, glen, g.prefill_tps, g.decode_tps, g.ttft_s, rss, wb, bw, copy,
             copy > 0 ? bw / copy : 0);
    else
      printf("%s: threads %d, prefill %ld tok: %.1f tok/s (ttft %.3f s), decode %ld tok: %.2f tok/s, "
             "%.1f MB weights/token = %.2f GB/s, peak RSS %.1f MiB\n",
             o.path, threads, plen, g.prefill_tps, g.ttft_s, glen, g.decode_tps, wb / 1e6, bw, rss / 1048576.0);
    if (!json && copy > 0)
      printf("%s: device copy bandwidth %.0f GB/s (read + write, %zu MiB buffers, same run): decode streams %.2f of it\n",
             o.path, copy, cbytes >> 20, bw / copy);
  }
  free(g.ids);
  free(g.text);
  free(ids);
  mlc_cli_model_close(&o);
  return rc;
}
