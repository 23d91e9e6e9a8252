/* cmd_chat.c: `mlc chat [MODEL]`: an interactive conversation. Each turn renders the whole
 * conversation through the model's chat template, keeps the KV cache of the longest common
 * token prefix and prefills only the rest. With stdin not a terminal, every input line is one
 * user message and each reply is printed on its own line. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_model.h"
#include "runtime/runtime.h"
#include "tokenizer/chat.h"


static void help(FILE *f) {
  fprintf(f, "commands: /help (this text)  /reset (forget the conversation)  /stats (speed of the last reply)  /exit\n");
}

int mlc_cmd_chat(int argc, char **argv) {
  const char *cmd = "chat";
  mlc_cli_model o = {0};
  long max_tokens = 256;
  const char *system = NULL;
  mlc_sampling sp = {.temperature = 0, .top_p = 0.95f, .top_k = 0, .seed = 0};
  bool seeded = false;
  for (int i = 1; i < argc; i++) {
    int r = mlc_cli_model_opt(cmd, argc, argv, &i, &o);
    if (r < 0)
      return 1;
    if (r)
      continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: mlc chat [MODEL] [options]\n\n"
             "Chats with MODEL (default: the bundled model in models/default). On a terminal it is interactive;\n"
             "otherwise each input line is one user message and each reply is printed on one line.\n\n"
             "  --max-tokens N     reply length limit (default 256)\n"
             "  --temperature T    0 is greedy (default 0)\n"
             "  --top-p P          nucleus sampling when T > 0 (default 0.95)\n"
             "  --top-k K          (default 0: off)\n"
             "  --seed S           random seed for sampling\n"
             "  --system TEXT      a system message opening the conversation\n\n");
      help(stdout);
      printf("\n%s", mlc_cli_model_help);
      return 0;
    }
    bool takes = !strcmp(a, "--max-tokens") || !strcmp(a, "--temperature") || !strcmp(a, "--top-p") ||
                 !strcmp(a, "--top-k") || !strcmp(a, "--seed") || !strcmp(a, "--system");
    if (takes && !v) {
      fprintf(stderr, "mlc chat: %s needs a value\n", a);
      return 1;
    }
    if (takes) {
      bool bad = false;
      if (!strcmp(a, "--system"))
        system = v;
      else if (!strcmp(a, "--temperature") || !strcmp(a, "--top-p")) {
        double d = strtod(v, &end);
        bad = *end || d < 0 || (!strcmp(a, "--top-p") && (d <= 0 || d > 1));
        *(!strcmp(a, "--temperature") ? &sp.temperature : &sp.top_p) = (float)d;
      } else {
        long l = strtol(v, &end, 10);
        bad = *end || l < 0;
        if (!strcmp(a, "--max-tokens"))
          max_tokens = l, bad |= l < 1;
        else if (!strcmp(a, "--top-k"))
          sp.top_k = (int)l;
        else
          sp.seed = (uint64_t)l, seeded = true;
      }
      if (bad) {
        fprintf(stderr, "mlc chat: %s: invalid value \"%s\"\n", a, v);
        return 1;
      }
      i++;
    } else if (a[0] != '-' && !o.path) {
      o.path = a;
    } else {
      fprintf(stderr, "mlc chat: unexpected argument '%s' (see mlc chat --help)\n", a);
      return 1;
    }
  }
  char *defpath = NULL;
  if (!o.path)
    o.path = defpath = mlc_cli_default_model();
  if (!seeded)
    sp.seed = (uint64_t)(mlc_now() * 1e6) ^ (uint64_t)getpid();
  if (mlc_cli_model_open(cmd, &o)) {
    free(defpath);
    return 1;
  }
  int rc = 0;
  if (!o.tok) {
    mlc_err(MLC_ERR_IO, "%s: chat needs a tokenizer (tokenizer.json)", o.path);
    rc = mlc_cli_fail(cmd);
  }
  bool tty = isatty(0);
  cJSON *msgs = cJSON_CreateArray();
  mlc_seq *s = NULL;
  int32_t *cached = NULL; /* token ids now in the KV cache */
  int ncached = 0;
  mlc_cli_gen last = {0};
  if (!rc && mlc_seq_new(o.model, &s) != MLC_OK)
    rc = mlc_cli_fail(cmd);
  if (!rc && system) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "system");
    cJSON_AddStringToObject(m, "content", system);
    cJSON_AddItemToArray(msgs, m);
  }
  if (!rc && tty) {
    fprintf(stderr, "mlc chat: %s (%d layers, vocab %d). Type /help for commands.\n", o.path, o.model->cfg.num_layers,
            o.model->cfg.vocab_size);
  }
  char *line = NULL;
  size_t cap = 0;
  while (!rc) {
    if (tty) {
      fputs(">>> ", stdout);
      fflush(stdout);
    }
    ssize_t len = getline(&line, &cap, stdin);
    if (len < 0)
      break;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    if (len == 0)
      continue;
    if (line[0] == '/') {
      if (!strcmp(line, "/exit") || !strcmp(line, "/quit"))
        break;
      if (!strcmp(line, "/help")) {
        help(stdout);
      } else if (!strcmp(line, "/reset")) {
        cJSON_Delete(msgs);
        msgs = cJSON_CreateArray();
        mlc_seq_truncate(s, 0);
        ncached = 0;
        printf("(conversation reset)\n");
      } else if (!strcmp(line, "/stats")) {
        printf("prefill: %.1f tok/s, decode: %.1f tok/s, last reply %d tokens, context %d/%d tokens\n", last.prefill_tps,
               last.decode_tps, last.n, mlc_seq_len(s), o.model->max_seq_len);
      } else {
        printf("unknown command %s; ", line);
        help(stdout);
      }
      fflush(stdout);
      continue;
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", line);
    cJSON_AddItemToArray(msgs, m);
    char *prompt = NULL;
    int32_t *ids = NULL;
    int n = 0;
    if (mlc_chat_render_dir(o.path, msgs, NULL, true, NULL, &prompt) != MLC_OK ||
        mlc_tok_encode(o.tok, prompt, strlen(prompt), false, &ids, &n) != MLC_OK) {
      rc = mlc_cli_fail(cmd);
      free(prompt);
      break;
    }
    free(prompt);
    /* reuse the cached prefix; always recompute at least the last prompt token */
    int common = 0;
    while (common < ncached && common < n - 1 && cached[common] == ids[common])
      common++;
    if (n + 1 > o.model->max_seq_len) {
      /* the conversation no longer fits: start over from this message */
      fprintf(stderr, "(context window full: the conversation was reset)\n");
      cJSON_Delete(msgs);
      msgs = cJSON_CreateArray();
      cJSON_AddItemToArray(msgs, cJSON_Duplicate(m, true));
      free(ids);
      mlc_seq_truncate(s, 0);
      ncached = 0;
      if (mlc_chat_render_dir(o.path, msgs, NULL, true, NULL, &prompt) != MLC_OK ||
          mlc_tok_encode(o.tok, prompt, strlen(prompt), false, &ids, &n) != MLC_OK) {
        rc = mlc_cli_fail(cmd);
        free(prompt);
        break;
      }
      free(prompt);
      common = 0;
    }
    mlc_seq_truncate(s, common);
    int room = o.model->max_seq_len - n;
    mlc_cli_gen_opts go = {.max_tokens = (int)(max_tokens < room ? max_tokens : room), .sampling = sp,
                           .stream = true, .seq = s};
    free(last.ids);
    free(last.text);
    if (mlc_cli_generate(&o, ids + common, n - common, &go, &last) != MLC_OK) {
      rc = mlc_cli_fail(cmd);
      free(ids);
      break;
    }
    putchar('\n');
    fflush(stdout);
    /* the cache now holds ids + generated tokens (all but the last, which was not fed) */
    free(cached);
    ncached = n + (last.n > 0 ? last.n - 1 : 0);
    cached = malloc(sizeof(int32_t) * (size_t)(ncached + 1));
    memcpy(cached, ids, sizeof(int32_t) * (size_t)n);
    if (last.n > 1)
      memcpy(cached + n, last.ids, sizeof(int32_t) * (size_t)(last.n - 1));
    free(ids);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "role", "assistant");
    cJSON_AddStringToObject(r, "content", last.text ? last.text : "");
    cJSON_AddItemToArray(msgs, r);
  }
  free(line);
  free(cached);
  free(last.ids);
  free(last.text);
  cJSON_Delete(msgs);
  mlc_seq_free(s);
  mlc_cli_model_close(&o);
  free(defpath);
  return rc;
}
