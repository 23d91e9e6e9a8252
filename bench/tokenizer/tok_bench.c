/* tok_bench.c: single-thread tokenizer speed (not a test).
 * Usage: tok_bench TOKENIZER TEXT_FILE [REPEATS]
 * TOKENIZER: a directory or tokenizer.json(.gz). Prints the load time (best of 5) and the
 * encode speed of TEXT_FILE as one string and line by line (best of REPEATS, default 3),
 * without special tokens. Build: see bench/tokenizer/README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/tokenizer.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tok_bench TOKENIZER TEXT_FILE [REPEATS]\n");
    return 2;
  }
  int reps = argc > 3 ? atoi(argv[3]) : 3;
  if (reps < 1) reps = 1;
  FILE *f = fopen(argv[2], "rb");
  if (!f) {
    perror(argv[2]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)n + 1);
  if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "read failed\n");
    return 1;
  }
  text[n] = 0;
  fclose(f);

  mlc_tokenizer *t = NULL;
  double best_load = 1e9;
  for (int i = 0; i < 5; i++) {
    if (t) mlc_tok_free(t);
    double t0 = now();
    mlc_status st = mlc_tok_load(argv[1], &t);
    double dt = now() - t0;
    if (st != MLC_OK) {
      fprintf(stderr, "load failed: %s\n", mlc_last_error());
      return 1;
    }
    if (dt < best_load) best_load = dt;
  }
  printf("load %s: %.1f ms (best of 5)\n", argv[1], best_load * 1e3);

  double mb = n / 1e6;
  double best_one = 1e9;
  int ntok = 0;
  for (int r = 0; r < reps; r++) {
    int32_t *ids;
    int m;
    double t0 = now();
    if (mlc_tok_encode(t, text, (size_t)n, false, &ids, &m) != MLC_OK) {
      fprintf(stderr, "encode failed: %s\n", mlc_last_error());
      return 1;
    }
    double dt = now() - t0;
    free(ids);
    if (dt < best_one) best_one = dt;
    ntok = m;
  }
  printf("encode one string: %.2f MB, %d tokens, %.3f s, %.2f MB/s\n", mb, ntok, best_one, mb / best_one);

  double best_lines = 1e9;
  long ltok = 0;
  for (int r = 0; r < reps; r++) {
    long tot = 0;
    double t0 = now();
    for (char *p = text, *e; p < text + n; p = e + 1) {
      e = memchr(p, '\n', (size_t)(text + n - p));
      if (!e) e = text + n;
      int32_t *ids;
      int m;
      if (mlc_tok_encode(t, p, (size_t)(e - p), false, &ids, &m) != MLC_OK) {
        fprintf(stderr, "encode failed: %s\n", mlc_last_error());
        return 1;
      }
      tot += m;
      free(ids);
    }
    double dt = now() - t0;
    if (dt < best_lines) best_lines = dt;
    ltok = tot;
  }
  printf("encode by lines: %ld tokens, %.3f s, %.2f MB/s\n", ltok, best_lines, mb / best_lines);
  mlc_tok_free(t);
  free(text);
  return 0;
}
