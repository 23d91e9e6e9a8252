/* cmd_bench.c: `mlc bench`: prefill and decode speed on random token ids. */
#include <stdlib.h>
#include <string.h>

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

int mlc_cmd_bench(int argc, char **argv) {
  const char *cmd = "bench";
  mlc_cli_model o = {0};
  long plen = 128, glen = 64;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    int r = mlc_cli_model_opt(cmd, argc, argv, &i, &o);
    if (r < 0)
      return 1;
    if (r)
      continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: mlc bench MODEL [--prompt-len N] [--gen-len M] [--threads T] [--json] [options]\n\n"
             "Runs a prefill of N random tokens (default 128), then M greedy decode steps (default 64), and\n"
             "prints prefill and decode tokens/s, time to first token, peak memory, the weight bytes one\n"
             "decode step reads and the memory bandwidth that implies.\n\n%s",
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
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else if (a[0] != '-' && !o.path) {
      o.path = a;
    } else {
      fprintf(stderr, "mlc bench: unexpected argument '%s' (see mlc bench --help)\n", a);
      return 1;
    }
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
    int threads = strcmp(o.model->dev->vt->name, "cpu") ? 0 : mlc_cpu_device_threads(o.model->dev);
    if (json)
      printf("{\"model\": \"%s\", \"threads\": %d, \"prompt_len\": %ld, \"gen_len\": %ld, \"prefill_tokens_per_s\": %.3f, "
             "\"decode_tokens_per_s\": %.3f, \"time_to_first_token_s\": %.6f, \"peak_rss_bytes\": %zu, "
             "\"weight_bytes_per_token\": %.0f, \"decode_bandwidth_gb_s\": %.3f}\n",
             o.path, threads, plen, glen, g.prefill_tps, g.decode_tps, g.ttft_s, rss, wb, bw);
    else
      printf("%s: threads %d, prefill %ld tok: %.1f tok/s (ttft %.3f s), decode %ld tok: %.2f tok/s, "
             "%.1f MB weights/token = %.2f GB/s, peak RSS %.1f MiB\n",
             o.path, threads, plen, g.prefill_tps, g.ttft_s, glen, g.decode_tps, wb / 1e6, bw, rss / 1048576.0);
  }
  free(g.ids);
  free(g.text);
  free(ids);
  mlc_cli_model_close(&o);
  return rc;
}
