/* cmd_serve.c: `mlc serve [MODEL]`: the OpenAI-compatible server (src/server, docs/engine.md). */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_model.h"
#include "server/server.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = 1; }


static bool int_arg(const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || x < lo || x > hi) {
    fprintf(stderr, "mlc serve: %s: expected an integer in %ld..%ld, got \"%s\"\n", flag, lo, hi, v ? v : "");
    return false;
  }
  *out = x;
  return true;
}

int mlc_cmd_serve(int argc, char **argv) {
  mlc_cli_model m = {0};
  mlc_serve_options o = {.port = 8000};
  for (int i = 1; i < argc; i++) {
    int r = mlc_cli_model_opt("serve", argc, argv, &i, &m);
    if (r < 0)
      return 1;
    if (r)
      continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long l;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: mlc serve [MODEL] [options]\n\n"
             "Serves MODEL (default: the bundled model) over the OpenAI API: POST /v1/chat/completions,\n"
             "POST /v1/completions, GET /v1/models, GET /health, GET /metrics (Prometheus).\n\n"
             "  --host H              IPv4 address to listen on (default 127.0.0.1)\n"
             "  --port P              TCP port (default 8000; 0: any free port, printed)\n"
             "  --api-key KEY         require 'Authorization: Bearer KEY' on /v1/*\n"
             "  --model-id NAME       the model name clients send (default: the directory's name)\n"
             "  --max-batch N         sequences generated at once (default 32)\n"
             "  --max-total-tokens N  KV cache capacity in tokens (default 16384)\n"
             "  --cache-slots N       prefix-cache entries (default: max-batch; 0: off)\n"
             "  --mixed-prefill N     prompt tokens in a step that also decodes (default: prefill chunk / 4;\n"
             "                        0: no bound); lower: steadier streams, higher: faster first tokens\n"
             "  --timeout S           idle connection and slow-body timeout in seconds (default 30)\n"
             "  --max-body BYTES      request body limit (default 1048576)\n"
             "  --max-queue N         requests waiting for admission; beyond it new ones get 429 (default 256)\n\n%s",
             mlc_cli_model_help);
      return 0;
    }
    bool takes = !strcmp(a, "--host") || !strcmp(a, "--port") || !strcmp(a, "--api-key") || !strcmp(a, "--model-id") ||
                 !strcmp(a, "--max-batch") || !strcmp(a, "--max-total-tokens") || !strcmp(a, "--timeout") ||
                 !strcmp(a, "--max-body") || !strcmp(a, "--cache-slots") ||
                 !strcmp(a, "--mixed-prefill") || !strcmp(a, "--max-queue");
    if (takes && !v) {
      fprintf(stderr, "mlc serve: %s needs a value\n", a);
      return 1;
    }
    if (!strcmp(a, "--host"))
      o.host = v;
    else if (!strcmp(a, "--api-key"))
      o.api_key = v;
    else if (!strcmp(a, "--model-id"))
      o.model_id = v;
    else if (!strcmp(a, "--port")) {
      if (!int_arg(a, v, 0, 65535, &l))
        return 1;
      o.port = (int)l;
    } else if (!strcmp(a, "--max-batch")) {
      if (!int_arg(a, v, 1, 1024, &l))
        return 1;
      o.engine.max_batch = (int)l;
    } else if (!strcmp(a, "--max-total-tokens")) {
      if (!int_arg(a, v, 16, 1 << 24, &l))
        return 1;
      o.engine.max_total_tokens = (int)l;
    } else if (!strcmp(a, "--cache-slots")) {
      if (!int_arg(a, v, 0, 4096, &l))
        return 1;
      o.engine.cache_slots = l ? (int)l : -1;
    } else if (!strcmp(a, "--mixed-prefill")) {
      if (!int_arg(a, v, 0, 1 << 20, &l))
        return 1;
      o.engine.mixed_prefill = l ? (int)l : -1;
    } else if (!strcmp(a, "--timeout")) {
      if (!int_arg(a, v, 1, 3600, &l))
        return 1;
      o.timeout_s = (int)l;
    } else if (!strcmp(a, "--max-queue")) {
      if (!int_arg(a, v, 1, 1 << 20, &l))
        return 1;
      o.max_queue = (int)l;
    } else if (!strcmp(a, "--max-body")) {
      if (!int_arg(a, v, 1024, 1L << 30, &l))
        return 1;
      o.max_body = (size_t)l;
    } else if (a[0] != '-' && !m.path) {
      m.path = a;
    } else {
      fprintf(stderr, "mlc serve: unexpected argument '%s' (see mlc serve --help)\n", a);
      return 1;
    }
    if (takes)
      i++;
  }
  char *defpath = NULL;
  if (!m.path)
    m.path = defpath = mlc_cli_default_model();
  if (!o.engine.max_batch)
    o.engine.max_batch = 32;
  o.model_dir = m.path;
  o.engine.model = m.opt;
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int rc = mlc_serve_run(&o, &g_stop);
  free(defpath);
  return rc;
}
