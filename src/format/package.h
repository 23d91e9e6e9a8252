/*
 * package.h: MLC LLM model packages (the output of `mlc_llm convert_weight` + `gen_config`):
 *   mlc-chat-config.json, tensor-cache.json (or the older ndarray-cache.json),
 *   params_shard_N.bin, tokenizer files.
 *
 * Names. A package stores MLC's parameter names (fused self_attn.qkv_proj / c_attn,
 * mlp.gate_up_proj, stacked experts e1_e3 / moe_gate_up_proj, phi3's transformer.h.N.mixer...,
 * X.q_weight + X.q_scale for quantized X.weight). The architecture files ask for Hugging Face
 * names. One table (mlc_pkg_params) lists, per architecture, each MLC parameter and the HF
 * tensors it is the row-concatenation of. The writer (convert) concatenates along it; the reader
 * (mlc_pkg_open) turns it around and presents the package as an mlc_st_set under HF names, each
 * a row window into the mapped shard (quantized ones carry their scale window too). So the
 * architecture files and the builder need nothing package-specific.
 */
#ifndef MLC_PACKAGE_H
#define MLC_PACKAGE_H

#include "format/format.h"
#include "format/quant.h"

typedef struct mlc_pparam {
  char name[160];     /* MLC name, e.g. "model.layers.0.self_attn.qkv_proj.weight" */
  int nsrc;
  char (*src)[160];   /* HF names, concatenated along rows in this order */
  int64_t *src_rows;  /* rows of each source */
  int64_t rows, cols; /* total rows; cols: K (0 for a 1-D tensor) */
  int experts;        /* > 0: MLC shape [experts, rows / experts, cols] */
  bool quant;         /* quantized by the group schemes (linear weights, embedding, lm_head) */
  bool embedding;     /* embedding table: NK even in KN schemes */
  bool add_one;       /* gemma norms: MLC stores 1 + w */
} mlc_pparam;

/* The MLC parameters of an architecture, in MLC's named_parameters order. */
mlc_status mlc_pkg_params(const mlc_model_config *c, mlc_pparam **out, int *n);
void mlc_pkg_params_free(mlc_pparam *p, int n);

/* True when dir holds tensor-cache.json or ndarray-cache.json. */
bool mlc_pkg_is_package(const char *dir);

/*
 * Opens a package: config from mlc-chat-config.json's model_config, shards mapped and checked
 * (format, file size against nbytes, md5sum unless $MLC_SKIP_MD5=1, every record inside its
 * shard), tensors presented under HF names. quant (may be NULL) receives the scheme name.
 */
mlc_status mlc_pkg_open(const char *dir, mlc_model_config *cfg, mlc_st_set **out, char quant[16]);

/* ---- md5 (RFC 1321), for shard checksums ---- */
typedef struct mlc_md5 {
  uint32_t h[4];
  uint64_t len;
  unsigned char buf[64];
} mlc_md5;
void mlc_md5_init(mlc_md5 *m);
void mlc_md5_update(mlc_md5 *m, const void *data, size_t n);
void mlc_md5_hex(mlc_md5 *m, char out[33]);

#endif
