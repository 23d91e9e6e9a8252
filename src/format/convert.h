/*
 * convert.h: `mlc convert`: a Hugging Face directory, a GGUF file or an MLC package becomes an
 * MLC package, written exactly as MLC LLM writes one (see package.h, quant.h, docs/quantization.md).
 */
#ifndef MLC_CONVERT_H
#define MLC_CONVERT_H

#include "format/format.h"

typedef struct mlc_convert_opts {
  const char *src;           /* HF directory, .gguf file or MLC package directory */
  const char *out;           /* output directory (created through OUT.tmp-XXXXXX + rename) */
  const char *quant;         /* scheme name (quant.h) */
  const char *conv_template; /* NULL: chosen from the architecture */
  int context_window;        /* 0: the model's */
  int threads;               /* 0: all cores */
  bool progress;             /* progress bar on stderr */
} mlc_convert_opts;

typedef struct mlc_convert_report {
  int params, shards;
  int lossless, requantized; /* tensors copied without rounding / dequantized and quantized again */
  double out_bytes, src_params, seconds;
  size_t peak_rss;
  char note[256];            /* e.g. "Q6_K tensors were dequantized and requantized to q4f16_1" */
} mlc_convert_report;

mlc_status mlc_convert(const mlc_convert_opts *o, mlc_convert_report *rep);

/* A GGUF model as a package in the cache ($MLC_CACHE_DIR or ~/.cache/mlc-c)/gguf-<hash>,
 * converted on first use (quant NULL: q4f16_1 for Q4_0 files, q8f16_1 for Q8_0, q0f16 for
 * F16/BF16/F32, else q4f16_1). *dir receives the package directory (caller frees). */
mlc_status mlc_gguf_package(const char *gguf_path, const char *quant, char **dir);

/*
 * What mlc_model_load opens: a Hugging Face directory (config.json + safetensors; quant NULL or
 * q0f32), an MLC package directory (tensor-cache.json / ndarray-cache.json; the package's own
 * quantization), or a .gguf file (a package in the cache, mlc_gguf_package; quant picks its
 * scheme). *dir receives the directory opened (caller frees).
 */
mlc_status mlc_model_source(const char *path, const char *quant, char **dir, mlc_model_config *cfg, mlc_st_set **st);

#endif
