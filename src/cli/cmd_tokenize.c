/* cmd_tokenize.c: `mlc tokenize` and `mlc detokenize`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

static void usage_tokenize(FILE *f) {
  fprintf(f, "usage: mlc tokenize TOKENIZER (--text T | --file F) [--add-special]\n"
             "  TOKENIZER      a tokenizer.json(.gz) or tokenizer.model file, or a model directory\n"
             "  --text T       the text to tokenize\n"
             "  --file F       read the text from file F\n"
             "  --add-special  add the special tokens of the post-processor (BOS/EOS)\n"
             "prints {\"ids\": [...]}\n");
}

static void usage_detokenize(FILE *f) {
  fprintf(f, "usage: mlc detokenize TOKENIZER --ids 1,2,3\n"
             "  TOKENIZER  a tokenizer.json(.gz) or tokenizer.model file, or a model directory\n"
             "  --ids L    comma-separated token ids\n"
             "prints {\"text\": \"...\"} (special tokens kept)\n");
}

int mlc_cmd_tokenize(int argc, char **argv) {
  const char *tok = NULL, *text = NULL, *file = NULL;
  bool add_special = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage_tokenize(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--text") && i + 1 < argc) {
      text = argv[++i];
    } else if (!strcmp(argv[i], "--file") && i + 1 < argc) {
      file = argv[++i];
    } else if (!strcmp(argv[i], "--add-special")) {
      add_special = true;
    } else if (argv[i][0] != '-' && !tok) {
      tok = argv[i];
    } else {
      fprintf(stderr, "mlc tokenize: unexpected argument \"%s\"\n", argv[i]);
      usage_tokenize(stderr);
      return 1;
    }
  }
  if (!tok || (!text) == (!file)) {
    fprintf(stderr, "mlc tokenize: need TOKENIZER and exactly one of --text or --file\n");
    usage_tokenize(stderr);
    return 1;
  }
  char *buf = NULL;
  size_t len = 0;
  if (file) {
    if (mlc_read_file(file, &buf, &len) != MLC_OK)
      return mlc_cli_fail("tokenize");
  } else {
    len = strlen(text);
  }
  mlc_tokenizer *t;
  if (mlc_tok_load(tok, &t) != MLC_OK) {
    free(buf);
    return mlc_cli_fail("tokenize");
  }
  int32_t *ids;
  int n;
  mlc_status st = mlc_tok_encode(t, file ? buf : text, len, add_special, &ids, &n);
  free(buf);
  mlc_tok_free(t);
  if (st != MLC_OK)
    return mlc_cli_fail("tokenize");
  printf("{\"ids\": [");
  for (int i = 0; i < n; i++)
    printf(i ? ", %d" : "%d", ids[i]);
  printf("]}\n");
  free(ids);
  return 0;
}

int mlc_cmd_detokenize(int argc, char **argv) {
  const char *tok = NULL, *list = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage_detokenize(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--ids") && i + 1 < argc) {
      list = argv[++i];
    } else if (argv[i][0] != '-' && !tok) {
      tok = argv[i];
    } else {
      fprintf(stderr, "mlc detokenize: unexpected argument \"%s\"\n", argv[i]);
      usage_detokenize(stderr);
      return 1;
    }
  }
  if (!tok || !list) {
    fprintf(stderr, "mlc detokenize: need TOKENIZER and --ids\n");
    usage_detokenize(stderr);
    return 1;
  }
  int32_t *ids;
  int n;
  if (!mlc_cli_parse_ids(list, &ids, &n))
    return 1;
  mlc_tokenizer *t;
  if (mlc_tok_load(tok, &t) != MLC_OK) {
    free(ids);
    return mlc_cli_fail("detokenize");
  }
  for (int i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= mlc_tok_vocab_size(t)) {
      fprintf(stderr, "mlc detokenize: --ids: id %d is out of range (vocabulary size %d)\n", ids[i],
              mlc_tok_vocab_size(t));
      free(ids);
      mlc_tok_free(t);
      return 1;
    }
  }
  char *text;
  mlc_status st = mlc_tok_decode(t, ids, n, false, &text);
  free(ids);
  mlc_tok_free(t);
  if (st != MLC_OK)
    return mlc_cli_fail("detokenize");
  printf("{\"text\": ");
  mlc_cli_print_json_string(text);
  printf("}\n");
  free(text);
  return 0;
}
