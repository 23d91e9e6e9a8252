/* test_jinja.c: chat template rendering.
 * argv[1] is the repo root. Checks, under tests/fixtures/chat/:
 *   <model>.json        HF reference rows (apply_chat_template(..., add_generation_prompt=True))
 *                       rendered from <model>/tokenizer_config.json with mlc_chat_render_dir;
 *   cases.json          hand-written templates (or a fixture "dir") with their expected output or
 *                       error (make_cases.py writes it; check_cases.py checks it against jinja2);
 *   conv_cases.json     MLC conversation templates (mlc_chat_render_conv).
 * Prints each failure and ends with "N passed, M failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "tokenizer/chat.h"
#include "tokenizer/jinja.h"

static int g_pass, g_fail;

static void show(const char *label, const char *s) {
  fprintf(stderr, "    %s: ", label);
  if (!s) {
    fprintf(stderr, "(null)\n");
    return;
  }
  fputc('"', stderr);
  for (const char *p = s; *p; p++) {
    if (*p == '\n')
      fputs("\\n", stderr);
    else if (*p == '"')
      fputs("\\\"", stderr);
    else
      fputc(*p, stderr);
  }
  fputs("\"\n", stderr);
}

/* the message inside ValueError('...') or TemplateError("...") */
static char *ref_error_text(const char *e) {
  const char *a = strchr(e, '(');
  size_t n = strlen(e);
  if (!a || n < 3 || e[n - 1] != ')')
    return mlc_strdup(e);
  a++;
  const char *b = e + n - 1;
  if ((*a == '\'' || *a == '"') && b > a + 1 && b[-1] == *a) {
    a++;
    b--;
  }
  char *r = malloc((size_t)(b - a) + 1);
  memcpy(r, a, (size_t)(b - a));
  r[b - a] = 0;
  return r;
}

static void check(const char *name, mlc_status st, const char *out, const char *expected, const char *error) {
  if (error) {
    if (st == MLC_OK) {
      g_fail++;
      fprintf(stderr, "FAIL %s: expected an error containing \"%s\", got output\n", name, error);
      show("got", out);
      return;
    }
    if (!strstr(mlc_last_error(), error)) {
      g_fail++;
      fprintf(stderr, "FAIL %s: error \"%s\" does not contain \"%s\"\n", name, mlc_last_error(), error);
      return;
    }
    g_pass++;
    return;
  }
  if (st != MLC_OK) {
    g_fail++;
    fprintf(stderr, "FAIL %s: %s\n", name, mlc_last_error());
    return;
  }
  if (strcmp(out, expected) != 0) {
    g_fail++;
    fprintf(stderr, "FAIL %s: output differs\n", name);
    show("expected", expected);
    show("got     ", out);
    return;
  }
  g_pass++;
}

static cJSON *load(const char *root, const char *rel) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  char *text;
  size_t n;
  if (mlc_read_file(path, &text, &n) != MLC_OK) {
    fprintf(stderr, "FAIL %s: %s\n", rel, mlc_last_error());
    g_fail++;
    return NULL;
  }
  cJSON *j = cJSON_ParseWithLength(text, n);
  free(text);
  if (!j) {
    fprintf(stderr, "FAIL %s: not valid JSON\n", rel);
    g_fail++;
  }
  return j;
}

static void hf_reference(const char *root, const char *model) {
  char rel[256], dir[4096];
  snprintf(rel, sizeof rel, "tests/fixtures/chat/%s.json", model);
  snprintf(dir, sizeof dir, "%s/tests/fixtures/chat/%s", root, model);
  cJSON *j = load(root, rel);
  if (!j)
    return;
  const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "chat");
  int i = 0;
  for (const cJSON *r = rows ? rows->child : NULL; r; r = r->next, i++) {
    char name[300];
    snprintf(name, sizeof name, "%s chat[%d]", model, i);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(r, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(r, "prompt");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(r, "tools");
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(r, "extra");
    char *out = NULL;
    mlc_status st = mlc_chat_render_dir(dir, msgs, tools, true, extra, &out);
    char *etext = cJSON_IsString(err) ? ref_error_text(err->valuestring) : NULL;
    check(name, st, out, cJSON_IsString(prompt) ? prompt->valuestring : "", etext);
    free(etext);
    free(out);
  }
  cJSON_Delete(j);
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void template_cases(const char *root) {
  cJSON *j = load(root, "tests/fixtures/chat/cases.json");
  if (!j)
    return;
  for (const cJSON *c = j->child; c; c = c->next) {
    const char *name = jstr(c, "name"), *tmpl = jstr(c, "template");
    const cJSON *agp = cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(c, "messages");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(c, "tools");
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(c, "extra");
    char *out = NULL;
    mlc_status st;
    if (jstr(c, "dir")) { /* a fixture directory: mlc_chat_render_dir */
      char dir[4096];
      snprintf(dir, sizeof dir, "%s/%s", root, jstr(c, "dir"));
      st = mlc_chat_render_dir(dir, msgs, tools, !agp || cJSON_IsTrue(agp), extra, &out);
    } else
      st = mlc_chat_render(tmpl ? tmpl : "", msgs, tools, !agp || cJSON_IsTrue(agp), jstr(c, "bos_token"),
                           jstr(c, "eos_token"), extra, &out);
    check(name ? name : "?", st, out, jstr(c, "expected") ? jstr(c, "expected") : "", jstr(c, "error"));
    free(out);
  }
  cJSON_Delete(j);
}

static void conv_cases(const char *root) {
  cJSON *j = load(root, "tests/fixtures/chat/conv_cases.json");
  if (!j)
    return;
  for (const cJSON *c = j->child; c; c = c->next) {
    const cJSON *agp = cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt");
    char *out = NULL;
    mlc_status st = mlc_chat_render_conv(cJSON_GetObjectItemCaseSensitive(c, "conv"),
                                         cJSON_GetObjectItemCaseSensitive(c, "messages"), !agp || cJSON_IsTrue(agp), &out);
    char name[300];
    snprintf(name, sizeof name, "conv %s", jstr(c, "name") ? jstr(c, "name") : "?");
    check(name, st, out, jstr(c, "expected") ? jstr(c, "expected") : "", jstr(c, "error"));
    free(out);
  }
  cJSON_Delete(j);
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  static const char *const models[] = {"llama2", "llama3", "qwen3", "gemma3"};
  for (int i = 0; i < 4; i++)
    hf_reference(root, models[i]);
  template_cases(root);
  conv_cases(root);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
