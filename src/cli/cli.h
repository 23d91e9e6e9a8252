/* cli.h: the `mlc` command's subcommands. Each is `int mlc_cmd_NAME(int argc, char **argv)`
 * (argv[0] is the subcommand name) returning the process exit code; all are listed in
 * commands.def. */
#ifndef MLC_CLI_H
#define MLC_CLI_H

#define MLC_CMD(name, summary) int mlc_cmd_##name(int argc, char **argv);
#include "cli/commands.def"
#undef MLC_CMD

/* Small shared helpers for argument parsing (cli_util.c). */
#include <stdbool.h>
#include <stdint.h>
/* Parses "5,17,42" into a heap array; returns false (and prints why) on a bad list. */
bool mlc_cli_parse_ids(const char *s, int32_t **ids, int *n);
/* Prints "mlc NAME: <last error>" to stderr and returns 1. */
int mlc_cli_fail(const char *cmd);
/* The bundled model's directory (heap string): $MLC_DEFAULT_MODEL, else models/default next to
 * the build directory of this binary, else ./models/default. */
char *mlc_cli_default_model(void);
/* Writes s as a JSON string literal (with quotes) to stdout. */
void mlc_cli_print_json_string(const char *s);

#endif
