/* main.c: the `mlc` command: dispatches to the subcommands listed in commands.def. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct cmd {
  const char *name, *summary;
  int (*fn)(int, char **);
} cmd;

static const cmd CMDS[] = {
#define MLC_CMD(name, summary) {#name, summary, mlc_cmd_##name},
#include "cli/commands.def"
#undef MLC_CMD
};

static void usage(FILE *f) {
  fprintf(f, "usage: mlc COMMAND [ARGS]\n\nMLC-C: run open language models natively, compiled for your machine.\n\ncommands:\n");
  for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
    fprintf(f, "  %-12s %s\n", CMDS[i].name, CMDS[i].summary);
  fprintf(f, "\n'mlc COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 1;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
    if (!strcmp(argv[1], CMDS[i].name))
      return CMDS[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "mlc: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 1;
}
