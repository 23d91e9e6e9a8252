/* cmd_model.c: the model-running commands: logits, generate, bench (chat is in cmd_chat.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_model.h"
#include "format/convert.h"
#include "engine/sampler.h"
#include "runtime/runtime.h"

/* ---- shared option parsing ---- */

static bool parse_int(const char *cmd, const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < lo || x > hi) {
    fprintf(stderr, "mlc %s: %s: expected an integer in %ld..%ld, got \"%s\"\n", cmd, flag, lo, hi, v);
    return false;
  }
  *out = x;
  return true;
}
static bool parse_float(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!*v || *end || errno || !(x >= lo && x <= hi)) {
    fprintf(stderr, "mlc %s: %s: expected a number in %g..%g, got \"%s\"\n", cmd, flag, lo, hi, v);
    return false;
  }
  *out = x;
  return true;
}

/* Returns 1 if argv[*i] was a model option (consumed), 0 if not, -1 on a bad value. */
int mlc_cli_model_opt(const char *cmd, int argc, char **argv, int *i, mlc_cli_model *o) {
  const char *a = argv[*i];
  const char *next = *i + 1 < argc ? argv[*i + 1] : NULL;
  long v;
  bool takes = !strcmp(a, "--device") || !strcmp(a, "--quant") || !strcmp(a, "--threads") ||
               !strcmp(a, "--max-seq-len") || !strcmp(a, "--prefill-chunk") || !strcmp(a, "--tensor-parallel-shards");
  if (takes && !next) {
    fprintf(stderr, "mlc %s: %s needs a value\n", cmd, a);
    return -1;
  }
  if (!strcmp(a, "--device"))
    o->opt.device = next;
  else if (!strcmp(a, "--quant"))
    o->opt.quant = next;
  else if (!strcmp(a, "--threads")) {
    if (!parse_int(cmd, a, next, 1, 1024, &v))
      return -1;
    o->opt.threads = (int)v;
  } else if (!strcmp(a, "--max-seq-len")) {
    if (!parse_int(cmd, a, next, 16, 1 << 22, &v))
      return -1;
    o->opt.max_seq_len = (int)v;
  } else if (!strcmp(a, "--prefill-chunk")) {
    if (!parse_int(cmd, a, next, 1, 1 << 16, &v))
      return -1;
    o->opt.prefill_chunk = (int)v;
  } else if (!strcmp(a, "--tensor-parallel-shards")) {
    if (!parse_int(cmd, a, next, 1, 64, &v))
      return -1;
    o->opt.tensor_parallel_shards = (int)v;
  } else if (!strcmp(a, "--generic-kernels"))
    o->opt.generic_kernels = 1;
  else if (!strcmp(a, "--verbose") || !strcmp(a, "-v"))
    o->opt.verbose = 1;
  else
    return 0;
  if (takes)
    (*i)++;
  return 1;
}

const char *mlc_cli_model_help =
    "model options:\n"
    "  --device D          cpu (default), cuda[:N], vulkan[:N], opencl[:N] (see `mlc devices`)\n"
    "  --quant Q           a Hugging Face directory: q0f32 (default: the stored weights), or a scheme\n"
    "                      (q4f16_1, q8f16_1, ...: converted once into the kernel cache); a GGUF file:\n"
    "                      the scheme of its cached package\n"
    "  --threads T         worker threads (default: all cores)\n"
    "  --max-seq-len N     context window (default: the model's, at most 4096)\n"
    "  --prefill-chunk N   tokens per forward step (default 256)\n"
    "  --tensor-parallel-shards N  shard the weights over N ranks (all-reduce after attention and FFN)\n"
    "  --generic-kernels   use the kernels built into libmlc instead of compiling specialised ones\n"
    "  --verbose           print the compiler's passes and kernels\n";

int mlc_cli_model_open(const char *cmd, mlc_cli_model *o) {
  if (mlc_model_load(o->path, &o->opt, &o->model) != MLC_OK)
    return mlc_cli_fail(cmd);
  if (o->opt.verbose)
    fprintf(stderr, "%s", mlc_model_describe(o->model));
  o->tok = NULL;
  /* a GGUF file runs from its converted package in the cache, which holds its tokenizer.json */
  char *gdir = NULL;
  const char *tdir = o->path;
  if (!mlc_is_dir(o->path) && mlc_gguf_package(o->path, o->opt.quant, &gdir) == MLC_OK)
    tdir = gdir;
  char *tj = mlc_path_join(tdir, "tokenizer.json");
  char *tg = mlc_path_join(tdir, "tokenizer.json.gz");
  int rc = 0;
  if ((tj && mlc_file_exists(tj)) || (tg && mlc_file_exists(tg))) {
    if (mlc_tok_load(tdir, &o->tok) != MLC_OK)
      rc = mlc_cli_fail(cmd);
  }
  free(tj);
  free(tg);
  free(gdir);
  return rc;
}

void mlc_cli_model_close(mlc_cli_model *o) {
  mlc_tok_free(o->tok);
  mlc_model_free(o->model);
  o->tok = NULL;
  o->model = NULL;
}

bool mlc_cli_is_eos(const mlc_cli_model *o, int32_t id) {
  const mlc_model_config *c = &o->model->cfg;
  for (int i = 0; i < c->n_eos; i++)
    if (c->eos_ids[i] == id)
      return true;
  if (c->n_eos == 0 && c->eos_token_id >= 0 && c->eos_token_id == id)
    return true;
  return o->tok && mlc_tok_eos_id(o->tok) == id;
}

/* ---- logits ---- */

int mlc_cmd_logits(int argc, char **argv) {
  const char *cmd = "logits";
  mlc_cli_model o = {0};
  const char *ids_s = NULL;
  for (int i = 1; i < argc; i++) {
    int r = mlc_cli_model_opt(cmd, argc, argv, &i, &o);
    if (r < 0)
      return 1;
    if (r)
      continue;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: mlc logits MODEL --ids 5,17,42 [options]\n\nPrints {\"logits\": [[...], ...]}: one row of vocab "
             "floats per input position.\n\n%s",
             mlc_cli_model_help);
      return 0;
    } else if (!strcmp(argv[i], "--ids") && i + 1 < argc) {
      ids_s = argv[++i];
    } else if (argv[i][0] != '-' && !o.path) {
      o.path = argv[i];
    } else {
      fprintf(stderr, "mlc logits: unexpected argument '%s' (see mlc logits --help)\n", argv[i]);
      return 1;
    }
  }
  if (!o.path || !ids_s) {
    fprintf(stderr, "usage: mlc logits MODEL --ids 5,17,42 [options]\n");
    return 1;
  }
  int32_t *ids;
  int n;
  if (!mlc_cli_parse_ids(ids_s, &ids, &n))
    return 1;
  if (mlc_cli_model_open(cmd, &o)) {
    free(ids);
    return 1;
  }
  int V = mlc_model_vocab_size(o.model);
  float *lg = malloc(sizeof(float) * (size_t)n * V);
  mlc_seq *s = NULL;
  int rc = 0;
  if (!lg) {
    mlc_err(MLC_ERR_NOMEM, "out of memory for %d x %d logits", n, V);
    rc = mlc_cli_fail(cmd);
  } else if (mlc_seq_new(o.model, &s) != MLC_OK || mlc_seq_forward(s, ids, n, lg, n) != MLC_OK) {
    rc = mlc_cli_fail(cmd);
  } else {
    fputs("{\"logits\": [", stdout);
    for (int r = 0; r < n; r++) {
      fputs(r ? ", [" : "[", stdout);
      for (int c = 0; c < V; c++)
        printf(c ? ", %.7g" : "%.7g", lg[(size_t)r * V + c]);
      fputs("]", stdout);
    }
    fputs("]}\n", stdout);
  }
  mlc_seq_free(s);
  free(lg);
  free(ids);
  mlc_cli_model_close(&o);
  return rc;
}

/* ---- generate ---- */

int mlc_cmd_generate(int argc, char **argv) {
  const char *cmd = "generate";
  mlc_cli_model o = {0};
  const char *prompt = NULL, *ids_s = NULL;
  long max_tokens = 128;
  bool json = false;
  mlc_sampling sp = {.temperature = 0.7f, .top_p = 0.95f, .top_k = 0, .seed = 0};
  bool seeded = false;
  for (int i = 1; i < argc; i++) {
    int r = mlc_cli_model_opt(cmd, argc, argv, &i, &o);
    if (r < 0)
      return 1;
    if (r)
      continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double d;
    long l;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: mlc generate MODEL (--prompt TEXT | --ids 1,2,3) [options]\n\n"
             "  --max-tokens N     tokens to generate at most (default 128); stops early at EOS\n"
             "  --temperature T    0 is greedy (default 0.7)\n"
             "  --top-p P          nucleus sampling (default 0.95)\n"
             "  --top-k K          keep the K most likely tokens (default 0: off)\n"
             "  --seed S           random seed (default: from the clock)\n"
             "  --json             print {\"ids\", \"text\", \"prefill_tokens_per_s\", \"decode_tokens_per_s\"}\n\n%s",
             mlc_cli_model_help);
      return 0;
    }
    bool takes = !strcmp(a, "--prompt") || !strcmp(a, "--ids") || !strcmp(a, "--max-tokens") ||
                 !strcmp(a, "--temperature") || !strcmp(a, "--top-p") || !strcmp(a, "--top-k") || !strcmp(a, "--seed");
    if (takes && !v) {
      fprintf(stderr, "mlc generate: %s needs a value\n", a);
      return 1;
    }
    if (!strcmp(a, "--prompt"))
      prompt = v;
    else if (!strcmp(a, "--ids"))
      ids_s = v;
    else if (!strcmp(a, "--max-tokens")) {
      if (!parse_int(cmd, a, v, 0, 1 << 22, &max_tokens))
        return 1;
    } else if (!strcmp(a, "--temperature")) {
      if (!parse_float(cmd, a, v, 0, 100, &d))
        return 1;
      sp.temperature = (float)d;
    } else if (!strcmp(a, "--top-p")) {
      if (!parse_float(cmd, a, v, 1e-6, 1, &d))
        return 1;
      sp.top_p = (float)d;
    } else if (!strcmp(a, "--top-k")) {
      if (!parse_int(cmd, a, v, 0, 1 << 24, &l))
        return 1;
      sp.top_k = (int)l;
    } else if (!strcmp(a, "--seed")) {
      if (!parse_int(cmd, a, v, 0, 0x7fffffffL, &l))
        return 1;
      sp.seed = (uint64_t)l;
      seeded = true;
    } else if (!strcmp(a, "--json"))
      json = true;
    else if (a[0] != '-' && !o.path)
      o.path = a;
    else {
      fprintf(stderr, "mlc generate: unexpected argument '%s' (see mlc generate --help)\n", a);
      return 1;
    }
    if (takes)
      i++;
  }
  if (!o.path || (!prompt && !ids_s) || (prompt && ids_s)) {
    fprintf(stderr, "usage: mlc generate MODEL (--prompt TEXT | --ids 1,2,3) [options]\n");
    return 1;
  }
  if (!seeded)
    sp.seed = (uint64_t)(mlc_now() * 1e6) ^ (uint64_t)getpid();
  int32_t *ids = NULL;
  int n = 0;
  if (ids_s && !mlc_cli_parse_ids(ids_s, &ids, &n))
    return 1;
  if (mlc_cli_model_open(cmd, &o)) {
    free(ids);
    return 1;
  }
  int rc = 0;
  if (prompt) {
    if (!o.tok) {
      mlc_err(MLC_ERR_IO, "%s: no tokenizer.json: use --ids", o.path);
      rc = mlc_cli_fail(cmd);
    } else if (mlc_tok_encode(o.tok, prompt, strlen(prompt), true, &ids, &n) != MLC_OK) {
      rc = mlc_cli_fail(cmd);
    } else if (n == 0) {
      mlc_err(MLC_ERR_INVALID_ARG, "the prompt encodes to no tokens");
      rc = mlc_cli_fail(cmd);
    }
  }
  mlc_cli_gen g = {0};
  if (!rc) {
    mlc_cli_gen_opts go = {.max_tokens = (int)max_tokens, .sampling = sp, .stream = !json};
    if (mlc_cli_generate(&o, ids, n, &go, &g) != MLC_OK)
      rc = mlc_cli_fail(cmd);
  }
  if (!rc && json) {
    fputs("{\"ids\": [", stdout);
    for (int i = 0; i < g.n; i++)
      printf(i ? ", %d" : "%d", g.ids[i]);
    fputs("], \"text\": ", stdout);
    mlc_cli_print_json_string(g.text ? g.text : "");
    printf(", \"prefill_tokens_per_s\": %.3f, \"decode_tokens_per_s\": %.3f}\n", g.prefill_tps, g.decode_tps);
  } else if (!rc) {
    putchar('\n');
  }
  free(g.ids);
  free(g.text);
  free(ids);
  mlc_cli_model_close(&o);
  return rc;
}

/* ---- the generation loop shared by generate and chat ---- */

mlc_status mlc_cli_generate(mlc_cli_model *o, const int32_t *prompt, int n, const mlc_cli_gen_opts *go, mlc_cli_gen *out) {
  memset(out, 0, sizeof *out);
  mlc_model *m = o->model;
  int V = mlc_model_vocab_size(m);
  mlc_sampler smp;
  mlc_status st = mlc_sampler_init(&smp, V, &go->sampling);
  if (st != MLC_OK)
    return st;
  float *lg = malloc(sizeof(float) * (size_t)V);
  out->ids = malloc(sizeof(int32_t) * (size_t)(go->max_tokens + 1));
  mlc_seq *s = go->seq;
  bool own_seq = !s;
  mlc_tok_stream *ts = NULL;
  mlc_buf text = {0};
  if (!lg || !out->ids) {
    st = mlc_err(MLC_ERR_NOMEM, "out of memory");
    goto done;
  }
  if (own_seq && (st = mlc_seq_new(m, &s)) != MLC_OK)
    goto done;
  if (o->tok && (st = mlc_tok_stream_new(o->tok, true, &ts)) != MLC_OK)
    goto done;
  /* the next token picked on the device (MLC_OP_SAMPLE: only its id crosses to the host) where the
   * model does that (mlc_model_device_sampling), else from the logits by the host sampler; both
   * take one uniform per sampled token from the seeded generator */
  bool dev = mlc_model_device_sampling(m);
  mlc_sample_params dsp;
  int32_t next = 0;
  double t0 = mlc_now();
  if (dev)
    mlc_sample_device_params(&go->sampling, &smp.state, &dsp);
  if ((st = dev ? mlc_seq_forward_sample(s, prompt, n, &dsp, &next) : mlc_seq_forward(s, prompt, n, lg, 1)) != MLC_OK)
    goto done;
  double t1 = mlc_now();
  out->prefill_tps = n / (t1 - t0 > 1e-9 ? t1 - t0 : 1e-9);
  out->ttft_s = t1 - t0;
  int decoded = 0;
  double td = 0;
  for (int step = 0; step < go->max_tokens; step++) {
    int32_t id = dev ? next : mlc_sampler_sample(&smp, lg);
    out->ids[out->n++] = id;
    if (ts) {
      char *piece = NULL;
      if ((st = mlc_tok_stream_put(ts, id, &piece)) != MLC_OK)
        goto done;
      if (!mlc_cli_is_eos(o, id) || !go->stop_at_eos_silently) {
        mlc_buf_puts(&text, piece);
        if (go->stream && !mlc_cli_is_eos(o, id)) {
          fputs(piece, stdout);
          fflush(stdout);
        }
      }
      free(piece);
    }
    if (!go->ignore_eos && mlc_cli_is_eos(o, id)) {
      out->stopped_at_eos = true;
      break;
    }
    if (step + 1 == go->max_tokens)
      break;
    if (mlc_seq_len(s) + 1 > m->max_seq_len)
      break;
    double a = mlc_now();
    if (dev)
      mlc_sample_device_params(&go->sampling, &smp.state, &dsp);
    if ((st = dev ? mlc_seq_forward_sample(s, &id, 1, &dsp, &next) : mlc_seq_forward(s, &id, 1, lg, 1)) != MLC_OK)
      goto done;
    td += mlc_now() - a;
    decoded++;
  }
  out->decode_tps = decoded ? decoded / (td > 1e-9 ? td : 1e-9) : 0;
  if (ts) {
    char *rest = NULL;
    if (mlc_tok_stream_flush(ts, &rest) == MLC_OK && rest) {
      mlc_buf_puts(&text, rest);
      if (go->stream)
        fputs(rest, stdout);
    }
    free(rest);
  }
  if (o->tok) {
    /* the reported text is the full decode of the generated ids, without special tokens */
    char *full = NULL;
    if ((st = mlc_tok_decode(o->tok, out->ids, out->n, true, &full)) != MLC_OK)
      goto done;
    out->text = full;
  }
done:
  mlc_buf_free(&text);
  mlc_tok_stream_free(ts);
  if (own_seq)
    mlc_seq_free(s);
  free(lg);
  mlc_sampler_free(&smp);
  return st;
}
