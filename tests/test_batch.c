/* test_batch.c: batched steps and shared KV pages give exactly the results of sequences run
 * alone: several sequences in one step (prefill mixed with decode), forks that share a prefix
 * (copy on write of a shared page), truncation, and KV page accounting back to zero. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlc.h"

static int passed, failed;
static void check(bool ok, const char *what) {
  if (ok)
    passed++;
  else {
    failed++;
    printf("FAIL %s: %s\n", what, mlc_last_error());
  }
}

/* logits of the last token after feeding ids to a fresh sequence */
static void alone(mlc_model *m, const int32_t *ids, int n, float *out) {
  mlc_seq *s;
  check(mlc_seq_new(m, &s) == MLC_OK && mlc_seq_forward(s, ids, n, out, 1) == MLC_OK, "alone");
  mlc_seq_free(s);
}

static void run(const char *dir, const char *quant) {
  mlc_model_options opt = {.threads = 2, .max_batch = 6, .prefill_chunk = 32, .max_total_tokens = 512, .quant = quant};
  mlc_model *m;
  if (mlc_model_load(dir, &opt, &m) != MLC_OK) {
    check(false, dir);
    return;
  }
  int V = mlc_model_vocab_size(m);
  int32_t a[40], b[40], c[40];
  for (int i = 0; i < 40; i++) {
    a[i] = (i * 37 + 5) % V;
    b[i] = (i * 11 + 100) % V;
    c[i] = (i * 53 + 7) % V;
  }
  float *ra = malloc(sizeof(float) * V * 3), *rb = ra + V, *rc = rb + V;
  float *ga = malloc(sizeof(float) * V * 3), *gb = ga + V, *gc = gb + V;
  /* references: a[0..20), b[0..17), c[0..9) each alone */
  alone(m, a, 20, ra);
  alone(m, b, 17, rb);
  alone(m, c, 9, rc);
  /* batched: a prefilled 19 then decodes 1 while b prefills 17 and c prefills 9 in one step */
  mlc_seq *sa, *sb, *sc;
  check(mlc_seq_new(m, &sa) == MLC_OK && mlc_seq_new(m, &sb) == MLC_OK && mlc_seq_new(m, &sc) == MLC_OK, "new");
  check(mlc_seq_forward(sa, a, 19, NULL, 0) == MLC_OK, "prefill a");
  mlc_batch_item items[3] = {{.seq = sa, .ids = a + 19, .n = 1, .n_logits = 1, .logits = ga},
                            {.seq = sb, .ids = b, .n = 17, .n_logits = 1, .logits = gb},
                            {.seq = sc, .ids = c, .n = 9, .n_logits = 1, .logits = gc}};
  check(mlc_batch_forward(m, items, 3) == MLC_OK, "batch step");
  check(memcmp(ga, ra, sizeof(float) * V) == 0, "batched decode equals alone");
  check(memcmp(gb, rb, sizeof(float) * V) == 0, "batched prefill equals alone");
  check(memcmp(gc, rc, sizeof(float) * V) == 0, "second batched prefill equals alone");
  /* a step larger than the step size is refused without side effects */
  int32_t big[40];
  memset(big, 0, sizeof big);
  mlc_batch_item over[2] = {{.seq = sb, .ids = big, .n = 20}, {.seq = sc, .ids = big, .n = 20}};
  check(mlc_batch_forward(m, over, 2) == MLC_ERR_LIMIT && mlc_seq_len(sb) == 17, "oversized step refused");
  /* fork a at 18 tokens (inside a shared, partly filled page), then both continue differently */
  mlc_seq *fa;
  check(mlc_seq_fork(sa, 18, &fa) == MLC_OK, "fork");
  int32_t fork_ids[20];
  memcpy(fork_ids, a, sizeof(int32_t) * 18);
  fork_ids[18] = c[3];
  fork_ids[19] = c[4];
  float *rf = malloc(sizeof(float) * V), *gf = malloc(sizeof(float) * V);
  alone(m, fork_ids, 20, rf);
  check(mlc_seq_forward(fa, fork_ids + 18, 2, gf, 1) == MLC_OK, "forked continue");
  check(memcmp(gf, rf, sizeof(float) * V) == 0, "fork equals alone");
  /* the original must be untouched by the fork's writes (copy on write) */
  float *ra21 = malloc(sizeof(float) * V), *ga21 = malloc(sizeof(float) * V);
  int32_t a21[21];
  memcpy(a21, a, sizeof a21);
  alone(m, a21, 21, ra21);
  check(mlc_seq_forward(sa, a + 20, 1, ga21, 1) == MLC_OK, "original continue");
  check(memcmp(ga21, ra21, sizeof(float) * V) == 0, "original unchanged by the fork");
  /* truncate and redo gives the same logits */
  check(mlc_seq_truncate(sa, 20) == MLC_OK && mlc_seq_forward(sa, a + 20, 1, ga21, 1) == MLC_OK, "truncate");
  check(memcmp(ga21, ra21, sizeof(float) * V) == 0, "truncate and redo");
  int used, total;
  mlc_seq_free(sa);
  mlc_seq_free(sb);
  mlc_seq_free(sc);
  mlc_seq_free(fa);
  mlc_model_kv_pages(m, &used, &total);
  check(used == 0 && total == 32, "all KV pages returned");
  free(ra);
  free(ga);
  free(rf);
  free(gf);
  free(ra21);
  free(ga21);
  mlc_model_free(m);
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  const char *models[] = {"llama", "qwen3-moe", "gemma2", "phi3"};
  for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/models/%s", root, models[i]);
    run(dir, NULL);
  }
  /* rows of 128-element blocks: the CPU repacks 4-bit weights into the interleaved layout, and
   * the vector tiles read it in place for small steps and dequantize it once per tile for large
   * ones: both must give a decode alone exactly what it gets in a batched step */
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/tests/fixtures/shapes/llama-k128", root);
  run(dir, "q4f16_1");
  run(dir, "q4f32_1");
  run(dir, "q0f16");
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
