/* cli_model.h: what the model-running subcommands share: options, opening a model with its
 * tokenizer, and the generation loop. */
#ifndef MLC_CLI_MODEL_H
#define MLC_CLI_MODEL_H

#include "cli/cli.h"
#include "engine/sampler.h"
#include "mlc.h"
#include "tokenizer/tokenizer.h"

typedef struct mlc_cli_model {
  const char *path;
  mlc_model_options opt;
  mlc_model *model;
  mlc_tokenizer *tok; /* NULL when the directory has no tokenizer */
} mlc_cli_model;

extern const char *mlc_cli_model_help;
int mlc_cli_model_opt(const char *cmd, int argc, char **argv, int *i, mlc_cli_model *o);
int mlc_cli_model_open(const char *cmd, mlc_cli_model *o);
void mlc_cli_model_close(mlc_cli_model *o);
bool mlc_cli_is_eos(const mlc_cli_model *o, int32_t id);

typedef struct mlc_cli_gen_opts {
  int max_tokens;
  mlc_sampling sampling;
  bool stream;                /* print text as it is generated */
  bool ignore_eos;            /* bench: run the full length */
  bool stop_at_eos_silently;  /* unused by generate; chat keeps EOS out of the text */
  mlc_seq *seq;               /* continue this sequence (chat); NULL: a fresh one */
} mlc_cli_gen_opts;

typedef struct mlc_cli_gen {
  int32_t *ids;
  int n;
  char *text;
  double prefill_tps, decode_tps, ttft_s;
  bool stopped_at_eos;
} mlc_cli_gen;

mlc_status mlc_cli_generate(mlc_cli_model *o, const int32_t *prompt, int n, const mlc_cli_gen_opts *go, mlc_cli_gen *out);

#endif
