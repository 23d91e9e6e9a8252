/*
 * quant.h: the quantization schemes of MLC packages, bit-exact with MLC LLM's group
 * quantization (python/mlc_llm/quantization/group_quantization.py), plus our 8-bit scheme.
 *
 * A group-quantized [N, K] weight (K = the input/reduction axis) is stored as
 *   q_weight  uint32 [N, W]   W = ceil(K / group) * (group / per_word) words per row (NK)
 *   q_scale   model  [N, G]   G = ceil(K / group) scales per row
 * Element (n, k) is (q_weight[n, k / per_word] >> ((k % per_word) * bits)) & mask (LSB first),
 * and dequantizes to (q - max_int) * q_scale[n, k / group]. KN schemes (q4f16_0) store both
 * arrays transposed: q_weight [W, N], q_scale [G, N].
 *
 * Quantize (MLC's _quantize, in the model dtype, every operation rounded to it):
 *   scale = max|w over the group| / max_int;  q = clamp(round(w / scale + max_int), 0, 2 max_int)
 * round = half away from zero. An all-zero group has scale 0 and q = 0.
 *
 * Schemes: q0f32 q0f16 q0bf16 (no quantization), q4f16_1 q4f32_1 q3f16_1 q4f16_0 (MLC), and
 * q8f16_1 (ours: 8 bits, 4 per word, group 32, max_int 127, q in 0..254 when quantizing; any
 * byte 0..255 dequantizes, which keeps GGUF Q8_0 lossless).
 */
#ifndef MLC_QUANT_H
#define MLC_QUANT_H

#include "format/format.h"

typedef struct mlc_qscheme {
  const char *name;      /* "q4f16_1" */
  mlc_dtype dtype;       /* MLC_Q* for quantized schemes; the model dtype for q0 schemes */
  mlc_dtype model_dtype; /* MLC_F16 / MLC_BF16 / MLC_F32: unquantized params, scales, biases */
  int bits;              /* 0: not quantized */
  int group;             /* elements per group along K */
  int per_word;          /* elements per uint32 */
  int max_int;           /* offset: 7 (int4), 3 (int3), 127 (int8) */
  bool kn;               /* transposed (KN) layout for linear weights */
  int il;                /* run-time interleaved layout (MLC_Q4F16_1I): elements per block, else 0 */
} mlc_qscheme;

/* NULL if unknown (no error set). */
const mlc_qscheme *mlc_qscheme_find(const char *name);
/* The scheme of a quantized dtype (NULL for float dtypes). */
const mlc_qscheme *mlc_qscheme_of(mlc_dtype dt);
/* "q0f32, q0f16, ..." */
const char *mlc_qscheme_list(void);

static inline int64_t mlc_q_groups(const mlc_qscheme *s, int64_t K) { return (K + s->group - 1) / s->group; }
static inline int64_t mlc_q_words(const mlc_qscheme *s, int64_t K) {
  return mlc_q_groups(s, K) * (s->group / s->per_word);
}
/* Bytes of a [rows, cols] weight of dtype dt as stored (packed words for quantized dtypes). */
static inline size_t mlc_weight_bytes(mlc_dtype dt, int64_t rows, int64_t cols) {
  if (!mlc_dtype_is_quant(dt))
    return (size_t)rows * (size_t)cols * mlc_dtype_size(dt);
  int64_t g = dt == MLC_Q3F16_1 ? 40 : 32, pw = dt == MLC_Q3F16_1 ? 10 : dt == MLC_Q8F16_1 ? 4 : 8;
  return (size_t)rows * (size_t)((cols + g - 1) / g * (g / pw)) * 4;
}
/* Bytes of one scale element (2 for f16/bf16, 4 for f32). */
size_t mlc_q_scale_size(const mlc_qscheme *s);

/*
 * Quantizes rows [r0, r1) of w [N, K] (f32 values; they are first rounded to the model dtype as
 * MLC does) into NK arrays: words q [N, W] and scales [N, G] (model-dtype bits: uint16 for f16,
 * float for f32). Rows are independent, so callers split work by rows.
 */
void mlc_q_quantize_rows(const mlc_qscheme *s, const float *w, int64_t K, int64_t r0, int64_t r1, uint32_t *q,
                         void *scale);
/* Dequantizes element (n, k) of a [N, K] weight stored in the scheme's layout (f32 math:
 * (q - max_int) * scale, exact). */
float mlc_q_dequant(const mlc_qscheme *s, const uint32_t *q, const void *scale, int64_t N, int64_t K, int64_t n,
                    int64_t k);
/*
 * The interleaved layout (schemes with il = 128, 4-bit: 16 words a block): within each block of
 * 128 elements of a row, word l holds elements l, 16 + l, ..., 112 + l (nibble e = element
 * 16e + l), so the words of a block loaded as 16 vector lanes and shifted by 4e give elements
 * 16e .. 16e + 15 in order, all of one group (16e / 32). Scales are unchanged. Needs K % 128 == 0.
 * mlc_q_interleave rewrites rows of the plain layout (s: the plain scheme) into it; returns the
 * interleaved scheme, or NULL when the scheme or K does not allow it.
 */
const mlc_qscheme *mlc_q_interleaved_of(const mlc_qscheme *s, int64_t K);
void mlc_q_interleave(const mlc_qscheme *s, int64_t K, int64_t r0, int64_t r1, const uint32_t *q, uint32_t *out);
/* Transposes NK arrays into KN (q4f16_0): words [N, W] -> [W, N], scales [N, G] -> [G, N]. */
void mlc_q_to_kn(const mlc_qscheme *s, int64_t N, int64_t K, const uint32_t *q, const void *scale, uint32_t *qt,
                 void *scalet);
/* TVM's f32-to-bf16 dump encoding: round to nearest even inside the bf16 range, truncation
 * outside it (and for NaN). */
uint16_t mlc_tvm_f32_to_bf16(float f);
/* Rounds f to the model dtype and back (f16 / bf16 round to nearest even; f32 unchanged). */
float mlc_round_to(mlc_dtype model, float f);

#endif
