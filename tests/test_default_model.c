/* test_default_model.c: the bundled model (models/default) answers the reference questions with
 * exactly the greedy replies transformers produced on the GPU machine
 * (tests/fixtures/default_model/reference.json): chat template, tokenizer and f16 model end to end. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"
#include "format/format.h"
#include "mlc.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

static int passed, failed;
static void check(bool ok, const char *q, const char *what) {
  if (ok)
    passed++;
  else {
    failed++;
    printf("FAIL \"%s\": %s\n", q, what);
  }
}

static void run(const char *dir, mlc_model *m, mlc_tokenizer *tok, const cJSON *item) {
  const char *q = cJSON_GetObjectItem(item, "question")->valuestring;
  const char *want_prompt = cJSON_GetObjectItem(item, "prompt")->valuestring;
  const cJSON *pids = cJSON_GetObjectItem(item, "prompt_ids"), *rids = cJSON_GetObjectItem(item, "reply_ids");
  const char *want_text = cJSON_GetObjectItem(item, "reply_text")->valuestring;
  cJSON *msgs = cJSON_CreateArray(), *msg = cJSON_CreateObject();
  cJSON_AddStringToObject(msg, "role", "user");
  cJSON_AddStringToObject(msg, "content", q);
  cJSON_AddItemToArray(msgs, msg);
  char *prompt = NULL;
  int32_t *ids = NULL;
  int n = 0;
  if (mlc_chat_render_dir(dir, msgs, NULL, true, NULL, &prompt) != MLC_OK) {
    check(false, q, mlc_last_error());
    cJSON_Delete(msgs);
    return;
  }
  check(strcmp(prompt, want_prompt) == 0, q, "chat template prompt differs");
  bool ok = mlc_tok_encode(tok, prompt, strlen(prompt), false, &ids, &n) == MLC_OK && n == cJSON_GetArraySize(pids);
  for (int i = 0; ok && i < n; i++)
    ok = ids[i] == cJSON_GetArrayItem(pids, i)->valueint;
  check(ok, q, "prompt ids differ");
  int V = mlc_model_vocab_size(m), eos = mlc_tok_eos_id(tok);
  float *lg = malloc(sizeof(float) * (size_t)V);
  mlc_seq *s = NULL;
  int32_t got[64];
  int ng = 0;
  if (mlc_seq_new(m, &s) == MLC_OK && mlc_seq_forward(s, ids, n, lg, 1) == MLC_OK) {
    while (ng < 64) {
      got[ng] = mlc_argmax(lg, V);
      if (got[ng++] == eos || ng == 64 || mlc_seq_forward(s, &got[ng - 1], 1, lg, 1) != MLC_OK)
        break;
    }
  }
  bool same = ng == cJSON_GetArraySize(rids);
  for (int i = 0; same && i < ng; i++)
    same = got[i] == cJSON_GetArrayItem(rids, i)->valueint;
  char msgbuf[256];
  snprintf(msgbuf, sizeof msgbuf, "greedy reply ids differ (%d tokens, want %d)", ng, cJSON_GetArraySize(rids));
  check(same, q, msgbuf);
  char *text = NULL;
  if (mlc_tok_decode(tok, got, ng, true, &text) == MLC_OK) {
    check(strcmp(text, want_text) == 0, q, "reply text differs");
    printf("%s -> %s\n", q, text);
  }
  free(text);
  mlc_seq_free(s);
  free(lg);
  free(ids);
  free(prompt);
  cJSON_Delete(msgs);
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  char dir[1024], refp[1024];
  snprintf(dir, sizeof dir, "%s/models/default", root);
  snprintf(refp, sizeof refp, "%s/tests/fixtures/default_model/reference.json", root);
  cJSON *ref = NULL;
  mlc_model *m = NULL;
  mlc_tokenizer *tok = NULL;
  mlc_model_options opt = {.threads = 2};
  if (mlc_json_load(refp, &ref) != MLC_OK || mlc_model_load(dir, &opt, &m) != MLC_OK || mlc_tok_load(dir, &tok) != MLC_OK) {
    printf("FAIL setup: %s\n0 passed, 1 failed\n", mlc_last_error());
    return 1;
  }
  run(dir, m, tok, ref);
  const cJSON *more = cJSON_GetObjectItem(ref, "more"), *it;
  cJSON_ArrayForEach(it, more) run(dir, m, tok, it);
  mlc_tok_free(tok);
  mlc_model_free(m);
  cJSON_Delete(ref);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
