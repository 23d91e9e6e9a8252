/* cmd_template.c: `mlc template`: render a chat prompt with a model's chat template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "cli/cli.h"
#include "tokenizer/chat.h"

static void usage(FILE *f) {
  fprintf(f, "usage: mlc template DIR --messages FILE.json [--tools FILE.json] [--extra FILE.json]\n"
             "                    [--add-generation-prompt]\n"
             "  DIR                      a model or tokenizer directory with tokenizer_config.json\n"
             "                           (or chat_template.jinja); a .jinja file is used as the template\n"
             "  --messages FILE.json     the conversation: a JSON array of {\"role\", \"content\", ...}\n"
             "                           (or an object with a \"messages\" array, and optionally \"tools\")\n"
             "  --tools FILE.json        tool definitions: a JSON array (the template's `tools`)\n"
             "  --extra FILE.json        a JSON object of extra template variables, e.g.\n"
             "                           {\"enable_thinking\": false}\n"
             "  --add-generation-prompt  end with the assistant turn's header\n"
             "prints the rendered prompt exactly, with nothing added\n");
}

static cJSON *load_json(const char *path, const char *what) {
  char *text;
  size_t n;
  if (mlc_read_file(path, &text, &n) != MLC_OK) {
    fprintf(stderr, "mlc template: %s: %s\n", what, mlc_last_error());
    return NULL;
  }
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text, n, &end, 0);
  if (!j) {
    size_t off = end ? (size_t)(end - text) : 0;
    fprintf(stderr, "mlc template: %s: %s: not valid JSON (near byte %zu)\n", what, path, off);
  }
  free(text);
  return j;
}

static bool ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && strcmp(s + n - m, suf) == 0;
}

int mlc_cmd_template(int argc, char **argv) {
  const char *dir = NULL, *msg_path = NULL, *tools_path = NULL, *extra_path = NULL;
  bool agp = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--messages") && i + 1 < argc) {
      msg_path = argv[++i];
    } else if (!strcmp(argv[i], "--tools") && i + 1 < argc) {
      tools_path = argv[++i];
    } else if (!strcmp(argv[i], "--extra") && i + 1 < argc) {
      extra_path = argv[++i];
    } else if (!strcmp(argv[i], "--add-generation-prompt")) {
      agp = true;
    } else if (argv[i][0] != '-' && !dir) {
      dir = argv[i];
    } else {
      fprintf(stderr, "mlc template: unexpected argument \"%s\"\n", argv[i]);
      usage(stderr);
      return 1;
    }
  }
  if (!dir || !msg_path) {
    fprintf(stderr, "mlc template: need DIR and --messages FILE.json\n");
    usage(stderr);
    return 1;
  }
  int rc = 1;
  cJSON *msgs = NULL, *tools = NULL, *extra = NULL;
  char *out = NULL, *src = NULL;
  msgs = load_json(msg_path, "--messages");
  if (!msgs)
    goto done;
  const cJSON *messages = msgs, *tools_arg = NULL;
  if (cJSON_IsObject(msgs)) {
    messages = cJSON_GetObjectItemCaseSensitive(msgs, "messages");
    tools_arg = cJSON_GetObjectItemCaseSensitive(msgs, "tools");
    if (!cJSON_IsArray(messages)) {
      fprintf(stderr, "mlc template: --messages: %s: field \"messages\" must be an array\n", msg_path);
      goto done;
    }
    if (tools_arg && !cJSON_IsArray(tools_arg) && !cJSON_IsNull(tools_arg)) {
      fprintf(stderr, "mlc template: --messages: %s: field \"tools\" must be an array\n", msg_path);
      goto done;
    }
  } else if (!cJSON_IsArray(msgs)) {
    fprintf(stderr, "mlc template: --messages: %s: expected a JSON array of messages\n", msg_path);
    goto done;
  }
  int idx = 0;
  for (const cJSON *m = messages->child; m; m = m->next, idx++) {
    if (!cJSON_IsObject(m)) {
      fprintf(stderr, "mlc template: --messages: %s: messages[%d] must be an object\n", msg_path, idx);
      goto done;
    }
  }
  if (tools_path) {
    tools = load_json(tools_path, "--tools");
    if (!tools)
      goto done;
    if (!cJSON_IsArray(tools)) {
      fprintf(stderr, "mlc template: --tools: %s: expected a JSON array\n", tools_path);
      goto done;
    }
    tools_arg = tools;
  }
  if (extra_path) {
    extra = load_json(extra_path, "--extra");
    if (!extra)
      goto done;
    if (!cJSON_IsObject(extra)) {
      fprintf(stderr, "mlc template: --extra: %s: expected a JSON object\n", extra_path);
      goto done;
    }
  }
  mlc_status st;
  if (ends_with(dir, ".jinja") && !mlc_is_dir(dir)) {
    size_t n;
    st = mlc_read_file(dir, &src, &n);
    if (st == MLC_OK)
      st = mlc_chat_render(src, messages, tools_arg, agp, NULL, NULL, extra, &out);
  } else {
    st = mlc_chat_render_dir(dir, messages, tools_arg, agp, extra, &out);
  }
  if (st != MLC_OK) {
    mlc_cli_fail("template");
    goto done;
  }
  size_t len = strlen(out);
  if (fwrite(out, 1, len, stdout) != len || fflush(stdout) != 0) {
    fprintf(stderr, "mlc template: cannot write to stdout\n");
    goto done;
  }
  rc = 0;
done:
  free(out);
  free(src);
  cJSON_Delete(msgs);
  cJSON_Delete(tools);
  cJSON_Delete(extra);
  return rc;
}
