/* quant.c: MLC's group quantization (quantize, pack, dequantize) and the scheme table. */
#include "format/quant.h"

#include <math.h>
#include <string.h>

static const mlc_qscheme SCHEMES[] = {
    {"q0f32", MLC_F32, MLC_F32, 0, 0, 0, 0, false, 0},
    {"q0f16", MLC_F16, MLC_F16, 0, 0, 0, 0, false, 0},
    {"q0bf16", MLC_BF16, MLC_BF16, 0, 0, 0, 0, false, 0},
    {"q4f16_1", MLC_Q4F16_1, MLC_F16, 4, 32, 8, 7, false, 0},
    {"q4f32_1", MLC_Q4F32_1, MLC_F32, 4, 32, 8, 7, false, 0},
    {"q3f16_1", MLC_Q3F16_1, MLC_F16, 3, 40, 10, 3, false, 0},
    {"q4f16_0", MLC_Q4F16_0, MLC_F16, 4, 32, 8, 7, true, 0},
    {"q8f16_1", MLC_Q8F16_1, MLC_F16, 8, 32, 4, 127, false, 0},
    /* run-time layouts (not selectable by name) */
    {"q4f16_1i", MLC_Q4F16_1I, MLC_F16, 4, 32, 8, 7, false, 128},
    {"q4f32_1i", MLC_Q4F32_1I, MLC_F32, 4, 32, 8, 7, false, 128},
};
#define NSCHEMES ((int)(sizeof SCHEMES / sizeof SCHEMES[0]))

const mlc_qscheme *mlc_qscheme_find(const char *name) {
  for (int i = 0; name && i < NSCHEMES; i++)
    if (!SCHEMES[i].il && strcmp(SCHEMES[i].name, name) == 0)
      return &SCHEMES[i];
  return NULL;
}

const mlc_qscheme *mlc_qscheme_of(mlc_dtype dt) {
  if (!mlc_dtype_is_quant(dt))
    return NULL;
  for (int i = 0; i < NSCHEMES; i++)
    if (SCHEMES[i].dtype == dt)
      return &SCHEMES[i];
  return NULL;
}

const char *mlc_qscheme_list(void) { return "q0f32, q0f16, q0bf16, q4f16_1, q4f32_1, q3f16_1, q4f16_0, q8f16_1"; }

size_t mlc_q_scale_size(const mlc_qscheme *s) { return s->model_dtype == MLC_F32 ? 4 : 2; }

uint16_t mlc_tvm_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  /* the largest finite bf16 value, as f32 */
  const float limit = 3.38953139e38f; /* 0x7f7f0000 */
  uint32_t bias = (f < limit && f > -limit) ? ((u >> 16) & 1u) + 0x7fffu : 0u;
  return (uint16_t)((u + bias) >> 16);
}

/* f32 -> nearest-even f16 -> f32, inline for the normal f16 range (the hot path of
 * quantization); subnormals, overflow and NaN go through the exact library conversion. */
static inline float f16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t a = u & 0x7fffffffu;
  if (a < 0x38800000u || a >= 0x477ff000u) /* below 2^-14 or at/above 65520 (rounds to inf) */
    return mlc_f16_to_f32(mlc_f32_to_f16(f));
  u += 0xfffu + ((u >> 13) & 1u);
  u &= ~0x1fffu;
  memcpy(&f, &u, 4);
  return f;
}

/* nearest-even rounding to f16 precision by bit arithmetic, valid for normal f16 magnitudes */
static inline float f16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0xfffu + ((u >> 13) & 1u);
  u &= ~0x1fffu;
  memcpy(&f, &u, 4);
  return f;
}

/*
 * The fast path is exact when the scale is a normal number (f16: >= 2^-14; f32: > 0 and
 * finite): then |w / scale| <= max_int (1 + 2^-10), inside the normal f16 range, and a quotient
 * below 2^-14 in magnitude (where f16_bits differs from true subnormal rounding) cannot change
 * f16(t + max_int), whose half ulp is >= 2^-10. t + max_int is a multiple of the f16 ulp at
 * max_int or 0, so f16_bits is exact on it; rounding half away from zero of u >= 0 is
 * (int)(u + 0.5) (exact in f32 for f16 values), and u <= 0 clamps to 0.
 */
static inline bool fast_ok(mlc_dtype md, float sc) {
  if (md == MLC_F16)
    return sc >= 0x1p-14f && sc <= 65504.0f;
  if (md == MLC_F32)
    return sc >= 0x1p-126f && sc <= 3.4e38f;
  return false;
}

float mlc_round_to(mlc_dtype model, float f) {
  if (model == MLC_F16)
    return f16_round(f);
  if (model == MLC_BF16)
    return mlc_bf16_to_f32(mlc_f32_to_bf16(f));
  return f;
}

/* half away from zero; NaN (0/0 of an all-zero group) gives 0 */
static uint32_t qround(float u, int qmax) {
  if (isnan(u))
    return 0;
  float r = roundf(u);
  if (r < 0)
    r = 0;
  if (r > (float)qmax)
    r = (float)qmax;
  return (uint32_t)r;
}

void mlc_q_quantize_rows(const mlc_qscheme *s, const float *w, int64_t K, int64_t r0, int64_t r1, uint32_t *q,
                         void *scale) {
  int64_t G = mlc_q_groups(s, K), W = mlc_q_words(s, K);
  mlc_dtype md = s->model_dtype;
  float mi = (float)s->max_int;
  int qmax = 2 * s->max_int;
  float v[64];
  for (int64_t n = r0; n < r1; n++) {
    const float *row = w + n * K;
    uint32_t *qr = q + n * W;
    memset(qr, 0, sizeof(uint32_t) * (size_t)W);
    for (int64_t g = 0; g < G; g++) {
      int64_t k0 = g * s->group, k1 = k0 + s->group < K ? k0 + s->group : K;
      float mx = 0;
      for (int64_t k = k0; k < k1; k++) {
        v[k - k0] = md == MLC_F16 ? f16_round(row[k]) : mlc_round_to(md, row[k]);
        float a = fabsf(v[k - k0]);
        if (a > mx)
          mx = a;
      }
      float sc = mlc_round_to(md, mx / mi);
      if (md == MLC_F32)
        ((float *)scale)[n * G + g] = sc;
      else if (md == MLC_F16)
        ((uint16_t *)scale)[n * G + g] = mlc_f32_to_f16(sc);
      else
        ((uint16_t *)scale)[n * G + g] = mlc_f32_to_bf16(sc);
      uint32_t *qw = qr;
      if (fast_ok(md, sc)) {
        /* the hot path, branch-light so it vectorises: see fast_ok for why it is exact */
        uint32_t qv[64];
        int64_t nk = k1 - k0;
        float fq = (float)qmax;
        if (md == MLC_F16)
          for (int64_t k = 0; k < nk; k++) {
            float u = f16_bits(f16_bits(v[k] / sc) + mi);
            qv[k] = !(u > 0) ? 0u : u >= fq ? (uint32_t)qmax : (uint32_t)(int32_t)(u + 0.5f);
          }
        else
          for (int64_t k = 0; k < nk; k++) {
            float u = v[k] / sc + mi;
            qv[k] = !(u > 0) ? 0u : u >= fq ? (uint32_t)qmax : (uint32_t)(int32_t)(u + 0.5f);
          }
        for (int64_t k = k0; k < k1; k++)
          qw[k / s->per_word] |= qv[k - k0] << ((k % s->per_word) * s->bits);
        continue;
      }
      for (int64_t k = k0; k < k1; k++) {
        float t, u;
        if (md == MLC_F16) {
          t = f16_round(v[k - k0] / sc);
          u = f16_round(t + mi);
        } else {
          t = mlc_round_to(md, v[k - k0] / sc);
          u = mlc_round_to(md, t + mi);
        }
        uint32_t qv = qround(u, qmax);
        qr[k / s->per_word] |= qv << ((k % s->per_word) * s->bits);
      }
    }
  }
}

static float scale_at(const mlc_qscheme *s, const void *scale, int64_t i) {
  if (s->model_dtype == MLC_F32)
    return ((const float *)scale)[i];
  if (s->model_dtype == MLC_BF16)
    return mlc_bf16_to_f32(((const uint16_t *)scale)[i]);
  return mlc_f16_to_f32(((const uint16_t *)scale)[i]);
}

float mlc_q_dequant(const mlc_qscheme *s, const uint32_t *q, const void *scale, int64_t N, int64_t K, int64_t n,
                    int64_t k) {
  int64_t G = mlc_q_groups(s, K), W = mlc_q_words(s, K);
  int64_t wi = k / s->per_word, e = k % s->per_word;
  if (s->il) { /* block k / 128, lane k % 16, nibble (k % 128) / 16 */
    wi = k / s->il * (s->il / s->per_word) + k % (s->il / s->per_word);
    e = k % s->il / (s->il / s->per_word);
  }
  uint32_t word = s->kn ? q[wi * N + n] : q[n * W + wi];
  uint32_t v = (word >> (e * s->bits)) & ((1u << s->bits) - 1u);
  float sc = s->kn ? scale_at(s, scale, (k / s->group) * N + n) : scale_at(s, scale, n * G + k / s->group);
  return (float)((int)v - s->max_int) * sc;
}

const mlc_qscheme *mlc_q_interleaved_of(const mlc_qscheme *s, int64_t K) {
  if (!s || s->kn || s->il || s->bits != 4 || s->per_word != 8 || K % 128)
    return NULL;
  return mlc_qscheme_of(s->dtype == MLC_Q4F16_1 ? MLC_Q4F16_1I : s->dtype == MLC_Q4F32_1 ? MLC_Q4F32_1I : MLC_DTYPE_COUNT);
}

void mlc_q_interleave(const mlc_qscheme *s, int64_t K, int64_t r0, int64_t r1, const uint32_t *q, uint32_t *out) {
  int64_t W = mlc_q_words(s, K);
  for (int64_t r = r0; r < r1; r++)
    for (int64_t b = 0; b < W; b += 16) {
      const uint32_t *src = q + r * W + b;
      uint32_t *dst = out + r * W + b;
      for (int l = 0; l < 16; l++) {
        uint32_t w = 0;
        for (int e = 0; e < 8; e++) {
          int k = 16 * e + l; /* element of the block: word k / 8, nibble k % 8 of the plain layout */
          w |= ((src[k / 8] >> (4 * (k % 8))) & 15u) << (4 * e);
        }
        dst[l] = w;
      }
    }
}

void mlc_q_to_kn(const mlc_qscheme *s, int64_t N, int64_t K, const uint32_t *q, const void *scale, uint32_t *qt,
                 void *scalet) {
  int64_t G = mlc_q_groups(s, K), W = mlc_q_words(s, K);
  size_t ss = mlc_q_scale_size(s);
  for (int64_t n = 0; n < N; n++) {
    for (int64_t w = 0; w < W; w++)
      qt[w * N + n] = q[n * W + w];
    for (int64_t g = 0; g < G; g++)
      memcpy((char *)scalet + (size_t)(g * N + n) * ss, (const char *)scale + (size_t)(n * G + g) * ss, ss);
  }
}
