/* cmd_convert.c: `mlc convert`: a Hugging Face directory, a GGUF file or an MLC package to an
 * MLC package (src/format/convert.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "cli/cli.h"
#include "format/convert.h"
#include "format/quant.h"

static void usage(FILE *f) {
  fprintf(f, "usage: mlc convert SRC -o OUTDIR --quant Q [--conv-template NAME] [--context-window N] [--threads T]\n"
             "  SRC                a Hugging Face directory, a .gguf file, or an MLC package directory\n"
             "  -o OUTDIR          the package to write (written to OUTDIR.tmp-XXXXXX, renamed at the end)\n"
             "  --quant Q          %s\n"
             "  --conv-template N  conversation template recorded in mlc-chat-config.json\n"
             "  --context-window N context_window_size (default: the model's)\n"
             "  --threads T        quantization threads (default: all cores)\n"
             "  --quiet            no progress bar\n",
          mlc_qscheme_list());
}

int mlc_cmd_convert(int argc, char **argv) {
  mlc_convert_opts o = {.progress = isatty(2)};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    bool takes = !strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--quant") || !strcmp(a, "--conv-template") ||
                 !strcmp(a, "--context-window") || !strcmp(a, "--threads");
    if (takes && i + 1 >= argc) {
      fprintf(stderr, "mlc convert: %s needs a value\n", a);
      return 2;
    }
    if (!strcmp(a, "-o") || !strcmp(a, "--output"))
      o.out = argv[++i];
    else if (!strcmp(a, "--quant"))
      o.quant = argv[++i];
    else if (!strcmp(a, "--conv-template"))
      o.conv_template = argv[++i];
    else if (!strcmp(a, "--context-window") || !strcmp(a, "--threads")) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v <= 0 || v > 1 << 24) {
        fprintf(stderr, "mlc convert: %s: expected a positive integer, got '%s'\n", a, argv[i]);
        return 2;
      }
      if (!strcmp(a, "--threads"))
        o.threads = (int)v;
      else
        o.context_window = (int)v;
    } else if (!strcmp(a, "--quiet"))
      o.progress = false;
    else if (a[0] != '-' && !o.src)
      o.src = a;
    else {
      fprintf(stderr, "mlc convert: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!o.src || !o.out || !o.quant) {
    usage(stderr);
    return 2;
  }
  mlc_convert_report r;
  if (mlc_convert(&o, &r) != MLC_OK)
    return mlc_cli_fail("convert");
  if (r.note[0])
    fprintf(stderr, "mlc convert: %s\n", r.note);
  printf("{\"output\": ");
  mlc_cli_print_json_string(o.out);
  printf(", \"quantization\": \"%s\", \"params\": %d, \"shards\": %d, \"bytes\": %.0f, \"bits_per_param\": %.3f, "
         "\"seconds\": %.2f, \"peak_rss_mb\": %.1f, \"lossless\": %d, \"requantized\": %d}\n",
         o.quant, r.params, r.shards, r.out_bytes, r.src_params > 0 ? r.out_bytes * 8 / r.src_params : 0, r.seconds,
         r.peak_rss / 1048576.0, r.lossless, r.requantized);
  return 0;
}
