/*
 * render.c: one C-like emitter for every kernel language, driven by a per-language table
 * (type names, literals, math functions, load/store forms, the kernel header). C is the CPU
 * language; GLSL compute is the Vulkan backend's, OpenCL C 1.2 the OpenCL backend's (their
 * argument conventions: docs/backends.md).
 */
#include "kernel/kir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct lang_table {
  const char *t_f32, *t_i64, *t_bool;
  const char *exp, *log, *sqrt, *tanh, *fabs, *erf, *cos, *sin, *fmax, *fmin;
  const char *imax, *imin;
  const char *tof, *toi; /* printf formats with one %s */
  const char *unroll;    /* pragma line or NULL */
  bool f_suffix;         /* float literals end in 'f' */
} lang_table;

static const lang_table LANGS[] = {
    [KIR_LANG_C] = {"float", "int64_t", "int", "expf", "logf", "sqrtf", "tanhf", "fabsf", "erff",
                    "cosf", "sinf", "fmaxf", "fminf", "MLC_IMAX", "MLC_IMIN", "(float)(%s)", "(int64_t)(%s)",
                    "#pragma GCC unroll 16", true},
    [KIR_LANG_GLSL] = {"float", "int", "bool", "exp", "log", "sqrt", "tanh", "abs", "mlc_erf",
                       "cos", "sin", "max", "min", "max", "min", "float(%s)", "int(%s)", NULL, false},
    [KIR_LANG_CUDA] = {"float", "long long", "bool", "expf", "logf", "sqrtf", "tanhf", "fabsf", "erff",
                       "cosf", "sinf", "fmaxf", "fminf", "MLC_IMAX", "MLC_IMIN", "(float)(int)(%s)", "(long long)(%s)",
                       "#pragma unroll", true}, /* to float through int: the IR's TOF operands fit 32 bits (GLSL's int) */
    [KIR_LANG_OPENCL] = {"float", "long", "bool", "exp", "log", "sqrt", "tanh", "fabs", "erf", "cos", "sin",
                         "fmax", "fmin", "max", "min", "(float)(%s)", "(long)(%s)", "#pragma unroll", true},
};

static const char *C_PRELUDE =
    "#include <stdint.h>\n"
    "#include <string.h>\n"
    "#include <math.h>\n"
    "#define MLC_IMAX(a, b) ((a) > (b) ? (a) : (b))\n"
    "#define MLC_IMIN(a, b) ((a) < (b) ? (a) : (b))\n"
    "/* branchless, so loops over f16 weights vectorise: normals and subnormals by one exact scale,\n"
    "   inf/nan by forcing the exponent */\n"
    "static inline float mlc_h2f(uint16_t h) {\n"
    "  uint32_t o = (uint32_t)(h & 0x7fffu) << 13, u;\n"
    "  float f; memcpy(&f, &o, 4); f *= 0x1p112f; memcpy(&u, &f, 4);\n"
    "  u |= ((h & 0x7c00u) == 0x7c00u) ? 0x7f800000u : 0u;\n"
    "  u |= (uint32_t)(h & 0x8000u) << 16;\n"
    "  memcpy(&f, &u, 4); return f;\n"
    "}\n"
    "static inline float mlc_bf2f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }\n"
    /* KIR_DP4A: acc + the dot of the 4 signed bytes of two 32-bit words */
    "static inline int64_t mlc_dp4a(int64_t acc, int64_t a, int64_t b) {\n"
    "  for (int i = 0; i < 32; i += 8) acc += (int64_t)(int8_t)(uint8_t)(a >> i) * (int8_t)(uint8_t)(b >> i);\n"
    "  return acc;\n"
    "}\n"
    /* one f16 value outside a vectorised loop (a broadcast scale): the host's instruction */
    "#if defined(__F16C__)\n#include <immintrin.h>\n"
    "static inline float mlc_h2f1(uint16_t h) { return _cvtsh_ss(h); }\n"
    "#else\n#define mlc_h2f1 mlc_h2f\n#endif\n"
    /* vectors (KIR_VF32 / KIR_VI32): GCC vector extensions of 16 lanes, which the compiler splits
       to the host's width; f16 loads convert with the host's instruction where there is one.
       GCC: register-pressure-aware scheduling keeps a register-blocked tile's operands in
       registers (without it GCC re-loads them as memory operands: 1.7x slower tiles). */
    "#if defined(__GNUC__) && !defined(__clang__)\n"
    "#pragma GCC optimize(\"schedule-insns\", \"sched-pressure\")\n"
    "#endif\n"
    "#if defined(__GNUC__)\n#pragma GCC diagnostic ignored \"-Wpsabi\"\n#endif\n"
    "#if defined(__AVX512F__) || defined(__F16C__) || defined(__AVX2__)\n#include <immintrin.h>\n#endif\n"
    "#if defined(__ARM_FEATURE_DOTPROD)\n#include <arm_neon.h>\n#endif\n"
    "#include <stdlib.h>\n"
    "typedef float mlc_vf __attribute__((vector_size(64)));\n"
    "typedef int32_t mlc_vi __attribute__((vector_size(64)));\n"
    "typedef uint16_t mlc_vh __attribute__((vector_size(32)));\n"
    "typedef uint32_t mlc_vu __attribute__((vector_size(64)));\n"
    "static inline mlc_vf mlc_vld_f32(const float *p) { mlc_vf v; memcpy(&v, p, sizeof v); return v; }\n"
    "static inline mlc_vi mlc_vld_i32(const void *p) { mlc_vi v; memcpy(&v, p, sizeof v); return v; }\n"
    "static inline mlc_vf mlc_vld_f16(const uint16_t *p) {\n"
    "#if defined(__AVX512F__)\n"
    "  return (mlc_vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));\n"
    "#elif defined(__F16C__)\n"
    "  __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));\n"
    "  __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 8)));\n"
    "  mlc_vf v; memcpy(&v, &lo, 32); memcpy((char *)&v + 32, &hi, 32); return v;\n"
    "#else\n"
    "  mlc_vf v; for (int i = 0; i < 16; i++) v[i] = mlc_h2f(p[i]); return v;\n"
    "#endif\n"
    "}\n"
    "static inline mlc_vf mlc_vld_bf16(const uint16_t *p) {\n"
    "  mlc_vh h; memcpy(&h, p, sizeof h); mlc_vu u = __builtin_convertvector(h, mlc_vu) << 16; return (mlc_vf)u;\n"
    "}\n"
    /* broadcasts as scalar-vector arithmetic, which GCC turns into one broadcast (x - 0 keeps -0) */
    "static inline mlc_vf mlc_vbf(float x) { return x - (mlc_vf){0}; }\n"
    "static inline mlc_vi mlc_vbi(int64_t x) { return (int32_t)x + (mlc_vi){0}; }\n"
    "static inline mlc_vf mlc_vld4_f32(const float *p) {\n"
    "#if defined(__AVX512F__)\n"
    "  return (mlc_vf)_mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_castps128_ps512(_mm_loadu_ps(p)));\n"
    "#else\n"
    "  mlc_vf v; for (int i = 0; i < 16; i++) v[i] = p[i >> 2]; return v;\n"
    "#endif\n"
    "}\n"
    "static inline mlc_vf mlc_vld4_f16(const uint16_t *p) {\n"
    "#if defined(__AVX512F__)\n"
    "  __m128 s = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)p));\n"
    "  return (mlc_vf)_mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_castps128_ps512(s));\n"
    "#else\n"
    "  mlc_vf v; for (int i = 0; i < 16; i++) v[i] = mlc_h2f(p[i >> 2]); return v;\n"
    "#endif\n"
    "}\n"
    "/* per 32-bit lane: acc + the dot of its 4 unsigned bytes of a with the 4 signed bytes of b */\n"
    "static inline mlc_vi mlc_vdot(mlc_vi acc, mlc_vi a, mlc_vi b) {\n"
    "#if defined(__AVX512VNNI__) && defined(__AVX512F__)\n"
    "  return (mlc_vi)_mm512_dpbusd_epi32((__m512i)acc, (__m512i)a, (__m512i)b);\n"
    "#elif defined(__AVX2__)\n"
    "  const __m256i one = _mm256_set1_epi16(1); __m256i x[2], y[2], z[2]; memcpy(x, &a, 64); memcpy(y, &b, 64); memcpy(z, &acc, 64);\n"
    "  for (int h = 0; h < 2; h++) z[h] = _mm256_add_epi32(z[h], _mm256_madd_epi16(_mm256_maddubs_epi16(x[h], y[h]), one));\n"
    "  mlc_vi r; memcpy(&r, z, 64); return r;\n"
    "#elif defined(__ARM_FEATURE_DOTPROD)\n"
    "  int32x4_t z[4]; int8x16_t x[4], y[4]; memcpy(z, &acc, 64); memcpy(x, &a, 64); memcpy(y, &b, 64);\n"
    "  for (int h = 0; h < 4; h++) z[h] = vdotq_s32(z[h], x[h], y[h]); /* a holds 0..127 */\n"
    "  mlc_vi r; memcpy(&r, z, 64); return r;\n"
    "#else\n"
    "  uint8_t x[64]; int8_t y[64]; memcpy(x, &a, 64); memcpy(y, &b, 64);\n"
    "  for (int l = 0; l < 16; l++) for (int j = 0; j < 4; j++) acc[l] += (int32_t)x[4 * l + j] * (int32_t)y[4 * l + j];\n"
    "  return acc;\n"
    "#endif\n"
    "}\n"
    "/* per-thread scratch arrays of the kernels with a prologue, grown as needed, kept for the thread */\n"
    "static _Thread_local void *mlc_scr[4];\n"
    "static _Thread_local size_t mlc_scr_n[4];\n"
    "static inline void *mlc_scratch(int s, size_t n) {\n"
    "  if (n > mlc_scr_n[s]) { free(mlc_scr[s]); mlc_scr[s] = aligned_alloc(64, (n + 63) & ~(size_t)63); mlc_scr_n[s] = mlc_scr[s] ? n : 0; }\n"
    "  return mlc_scr[s];\n"
    "}\n"
    "/* one fixed order: pairwise halving */\n"
    "static inline float mlc_vsum(mlc_vf v) {\n"
    "  float a[16]; memcpy(a, &v, sizeof a);\n"
    "  for (int w = 8; w > 0; w >>= 1) for (int i = 0; i < w; i++) a[i] += a[i + w];\n"
    "  return a[0];\n"
    "}\n";

const char *kir_c_prelude(void) { return C_PRELUDE; }

/* CUDA: no headers (NVRTC compiles it without the toolkit's include directory); 16-bit floats are
 * converted by bits (f16 with the cvt instruction), arithmetic is f32. */
static const char *CUDA_PRELUDE =
    "struct mlc_kargs { unsigned long long b[16]; long long ip[16]; float fp[4]; long long g0, g1; };\n"
    "#define MLC_IMAX(a, b) ((a) > (b) ? (a) : (b))\n"
    "#define MLC_IMIN(a, b) ((a) < (b) ? (a) : (b))\n"
    "#ifndef INFINITY\n#define INFINITY __int_as_float(0x7f800000)\n#endif\n"
    "static __device__ __forceinline__ float mlc_h2f(unsigned short h) {\n"
    "  float f; asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h)); return f;\n"
    "}\n"
    "static __device__ __forceinline__ float mlc_bf2f(unsigned short h) { return __uint_as_float((unsigned)h << 16); }\n"
    "struct alignas(16) mlc_v16 { unsigned int w[4]; };\n"
    "/* the sum over the 32 lanes of a warp (kernels with lanes: one parallel index per warp) */\n"
    "static __device__ __forceinline__ float mlc_lane_sum(float v) {\n"
    "#pragma unroll\n"
    "  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
    "  return v;\n"
    "}\n"
    "/* the sum over a block of nw warps (kernels whose lanes are a block: one index per block), the\n"
    "   same on every thread; red: nw floats of shared memory */\n"
    "static __device__ __forceinline__ float mlc_block_sum(float v, float *red, int nw) {\n"
    "  v = mlc_lane_sum(v);\n"
    "  __syncthreads();\n"
    "  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;\n"
    "  __syncthreads();\n"
    "  float s = 0.0f;\n"
    "  for (int i = 0; i < nw; i++) s += red[i];\n"
    "  return s;\n"
    "}\n"
    "/* over the nw warps of a block, of the lanes with this lane's index in its warp: the sum (mx 0)\n"
    "   or the maximum (mx 1); red: 32 * nw floats of shared memory */\n"
    "static __device__ __forceinline__ float mlc_xwarp(float v, float *red, int nw, int mx) {\n"
    "  __syncthreads();\n"
    "  red[threadIdx.x] = v;\n"
    "  __syncthreads();\n"
    "  const int l = threadIdx.x & 31;\n"
    "  float s = red[l];\n"
    "  for (int w = 1; w < nw; w++) s = mx ? fmaxf(s, red[32 * w + l]) : s + red[32 * w + l];\n"
    "  return s;\n"
    "}\n"
    "/* the sum over aligned groups of n lanes (kernels with n < 32 lanes: 32 / n indices per warp) */\n"
    "static __device__ __forceinline__ float mlc_lane_sum_n(float v, int n) {\n"
    "  for (int o = n >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
    "  return v;\n"
    "}\n"
    /* KIR_LANE_MAX (lower.c rule_sample): the maximum over aligned groups of n lanes of a warp, and
       over a block of nw warps (warp maxima through shared memory, as mlc_block_sum) */
    "static __device__ __forceinline__ float mlc_lane_max_n(float v, int n) {\n"
    "  for (int o = n >> 1; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));\n"
    "  return v;\n"
    "}\n"
    "static __device__ __forceinline__ float mlc_block_max(float v, float *red, int nw) {\n"
    "  v = mlc_lane_max_n(v, 32);\n"
    "  __syncthreads();\n"
    "  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;\n"
    "  __syncthreads();\n"
    "  float s = red[0];\n"
    "  for (int i = 1; i < nw; i++) s = fmaxf(s, red[i]);\n"
    "  return s;\n"
    "}\n";

const char *kir_cuda_prelude(void) { return CUDA_PRELUDE; }

/* OpenCL C 1.2: f16 is read with vload_half (core; no cl_khr_fp16 needed), bf16 by a shift. */
static const char *OPENCL_PRELUDE = "inline float mlc_bf2f(ushort h) { return as_float((uint)h << 16); }\n"
                                    "inline long mlc_dp4a(long acc, long a, long b) {\n"
                                    "  for (int i = 0; i < 32; i += 8) acc += (long)(char)(a >> i) * (char)(b >> i);\n"
                                    "  return acc;\n"
                                    "}\n";
const char *kir_opencl_prelude(void) { return OPENCL_PRELUDE; }

typedef struct rctx {
  const kir_kernel *k;
  const lang_table *L;
  kir_lang lang;
  mlc_buf *out;
  int indent;
  const unsigned char *pred; /* GLSL, in a loop made uniform (glsl_uniform_for): per variable, declared in it
                             * (else its assignments, and all stores, need mlc_act) */
} rctx;

/* GLSL reserves words like `out`: buffers are prefixed there. */
static const char *bname(const rctx *r, const kir_buf *b) {
  static _Thread_local char nm[40];
  if (r->lang != KIR_LANG_GLSL)
    return b->name;
  snprintf(nm, sizeof nm, "b_%s", b->name);
  return nm;
}

static void ind(rctx *r) {
  for (int i = 0; i < r->indent; i++)
    mlc_buf_puts(r->out, "  ");
}

static const char *type_name(rctx *r, kir_type t) {
  if (t == KIR_VF32 || t == KIR_VI32) { /* vectors: the C target only (kir.h) */
    MLC_ASSERT(r->lang == KIR_LANG_C);
    return t == KIR_VF32 ? "mlc_vf" : "mlc_vi";
  }
  return t == KIR_F32 ? r->L->t_f32 : t == KIR_I64 ? r->L->t_i64 : r->L->t_bool;
}

static void expr(rctx *r, const kir_node *n);
/* pre a s1 b s2 c post: the three operands of a call or a ternary */
static void expr3(rctx *r, const char *pre, const kir_node *a, const char *s1, const kir_node *b, const char *s2,
                  const kir_node *c, const char *post) {
  mlc_buf_puts(r->out, pre);
  expr(r, a);
  mlc_buf_puts(r->out, s1);
  expr(r, b);
  mlc_buf_puts(r->out, s2);
  expr(r, c);
  mlc_buf_puts(r->out, post);
}
static const char *c_elem(mlc_dtype dt);
static const char *cuda_elem(mlc_dtype dt);

static void fconst(rctx *r, double v) {
  if (isinf(v)) {
    if (r->lang != KIR_LANG_GLSL)
      mlc_buf_puts(r->out, v > 0 ? "INFINITY" : "(-INFINITY)");
    else
      mlc_buf_puts(r->out, v > 0 ? "uintBitsToFloat(0x7f800000u)" : "uintBitsToFloat(0xff800000u)");
    return;
  }
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.9g", v);
  if (!strpbrk(tmp, ".eEn"))
    strcat(tmp, ".0");
  mlc_buf_puts(r->out, v < 0 ? "(" : "");
  mlc_buf_puts(r->out, tmp);
  if (r->L->f_suffix)
    mlc_buf_puts(r->out, "f");
  mlc_buf_puts(r->out, v < 0 ? ")" : "");
}

/* The index of an element of buffer bi. GLSL binds each buffer at an offset rounded down to
 * the device's minStorageBufferOffsetAlignment; the remainder (bytes) is mlc_bo[k] of the params
 * block, added here in elements of the buffer's type (uint words hold two 16-bit values). */
static void index_of(rctx *r, int bi, const kir_node *idx) {
  const kir_buf *b = &r->k->bufs[bi];
  if (r->lang != KIR_LANG_GLSL || b->local) {
    expr(r, idx);
    return;
  }
  int ext = 0;
  for (int i = 0; i < bi; i++)
    ext += !r->k->bufs[i].local;
  int sz = (int)mlc_dtype_size(b->dtype);
  mlc_buf_puts(r->out, "(");
  expr(r, idx);
  mlc_buf_printf(r->out, " + (mlc_bo[%d] >> %d))", ext, sz >= 4 ? 2 : sz == 2 ? 1 : 0);
}

static void load(rctx *r, const kir_node *n) {
  const kir_buf *b = &r->k->bufs[n->a];
  mlc_buf *o = r->out;
  if (!b->local && b->dtype == MLC_F16 && r->lang == KIR_LANG_OPENCL) {
    mlc_buf_puts(o, "vload_half(");
    index_of(r, n->a, n->src[0]);
    mlc_buf_printf(o, ", %s)", bname(r, b));
    return;
  }
  if (b->local || b->dtype == MLC_F32 || r->lang != KIR_LANG_GLSL) {
    if (!b->local && b->dtype == MLC_F16)
      mlc_buf_puts(o, "mlc_h2f(");
    else if (!b->local && b->dtype == MLC_BF16)
      mlc_buf_puts(o, "mlc_bf2f(");
    else if (b->dtype != MLC_F32)
      mlc_buf_printf(o, r->lang == KIR_LANG_GLSL ? "%s(" : "(%s)(", r->L->t_i64);
    else
      mlc_buf_puts(o, "(");
    mlc_buf_printf(o, "%s[", bname(r, b));
    index_of(r, n->a, n->src[0]);
    mlc_buf_puts(o, "])");
    return;
  }
  /* GLSL: 16-bit types are stored packed in uint words */
  switch (b->dtype) {
  case MLC_F16:
    mlc_buf_printf(o, "unpackHalf2x16(%s[(", bname(r, b));
    index_of(r, n->a, n->src[0]);
    mlc_buf_puts(o, ") >> 1])[(");
    index_of(r, n->a, n->src[0]);
    mlc_buf_puts(o, ") & 1]");
    break;
  case MLC_BF16:
    mlc_buf_printf(o, "uintBitsToFloat(((%s[(", bname(r, b));
    index_of(r, n->a, n->src[0]);
    mlc_buf_puts(o, ") >> 1] >> (((");
    index_of(r, n->a, n->src[0]);
    mlc_buf_puts(o, ") & 1) * 16)) & 0xffffu) << 16)");
    break;
  default:
    mlc_buf_printf(o, "int(%s[", bname(r, b));
    index_of(r, n->a, n->src[0]);
    mlc_buf_puts(o, "])");
    break;
  }
}

static void expr(rctx *r, const kir_node *n) {
  mlc_buf *o = r->out;
  const lang_table *L = r->L;
  switch (n->op) {
  case KIR_CONST:
    if (n->type == KIR_F32)
      fconst(r, n->f);
    else if (r->lang == KIR_LANG_C)
      mlc_buf_printf(o, "INT64_C(%lld)", (long long)n->i);
    else if (r->lang == KIR_LANG_CUDA)
      mlc_buf_printf(o, "%lldLL", (long long)n->i);
    else if (r->lang == KIR_LANG_OPENCL)
      mlc_buf_printf(o, "%lldL", (long long)n->i);
    else
      mlc_buf_printf(o, "%lld", (long long)n->i);
    return;
  case KIR_IPARAM: /* CUDA: straight from the by-value argument struct (no pointer into param space) */
    mlc_buf_printf(o, r->lang == KIR_LANG_CUDA ? "mlc_A.ip[%d]" : "ip[%d]", n->a);
    return;
  case KIR_FPARAM:
    mlc_buf_printf(o, r->lang == KIR_LANG_CUDA ? "mlc_A.fp[%d]" : "fp[%d]", n->a);
    return;
  case KIR_VAR:
    mlc_buf_printf(o, "%s_%d", r->k->var_name[n->a], n->a);
    return;
  case KIR_LOAD:
    load(r, n);
    return;
  case KIR_LANE:
    mlc_buf_puts(o, r->lang == KIR_LANG_CUDA || r->lang == KIR_LANG_GLSL ? "mlc_lane" : r->lang == KIR_LANG_C ? "INT64_C(0)" : "0");
    return;
  case KIR_GCNT:
    MLC_ASSERT(r->lang == KIR_LANG_C);
    mlc_buf_puts(o, "mlc_gcnt");
    return;
  case KIR_VLD: {
    const kir_buf *b = &r->k->bufs[n->a];
    MLC_ASSERT(r->lang == KIR_LANG_C);
    mlc_buf_printf(o, "%s(%s + ", b->dtype == MLC_F16 ? "mlc_vld_f16" : b->dtype == MLC_BF16 ? "mlc_vld_bf16"
                                  : b->dtype == MLC_F32 ? "mlc_vld_f32" : "mlc_vld_i32", bname(r, b));
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  }
  case KIR_VLD4:
    MLC_ASSERT(r->lang == KIR_LANG_C);
    mlc_buf_printf(o, "%s(%s + ", r->k->bufs[n->a].dtype == MLC_F16 ? "mlc_vld4_f16" : "mlc_vld4_f32", bname(r, &r->k->bufs[n->a]));
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  case KIR_DP4A: /* CUDA: __dp4a(a, b, acc); elsewhere the prelude's mlc_dp4a(acc, a, b) */
    if (r->lang == KIR_LANG_CUDA)
      expr3(r, "((long long)__dp4a((int)(", n->src[1], "), (int)(", n->src[2], "), (int)(", n->src[0], ")))");
    else
      expr3(r, "mlc_dp4a((", n->src[0], "), (", n->src[1], "), (", n->src[2], "))");
    return;
  case KIR_VDOT:
    MLC_ASSERT(r->lang == KIR_LANG_C);
    expr3(r, "mlc_vdot(", n->src[0], ", ", n->src[1], ", ", n->src[2], ")");
    return;
  case KIR_VBCAST:
    if (n->src[0]->op == KIR_LOAD && r->k->bufs[n->src[0]->a].dtype == MLC_F16 && !r->k->bufs[n->src[0]->a].local) {
      mlc_buf_printf(o, "mlc_vbf(mlc_h2f1(%s[", bname(r, &r->k->bufs[n->src[0]->a]));
      expr(r, n->src[0]->src[0]);
      mlc_buf_puts(o, "]))");
      return;
    }
    /* fall through */
  case KIR_VSUM:
    MLC_ASSERT(r->lang == KIR_LANG_C);
    mlc_buf_puts(o, n->op == KIR_VSUM ? "mlc_vsum(" : n->type == KIR_VF32 ? "mlc_vbf(" : "mlc_vbi(");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  case KIR_LANE_XRED: /* over the warps of a block (CUDA; GLSL: a workgroup of several warps of 32) */
    MLC_ASSERT((r->lang == KIR_LANG_CUDA || r->lang == KIR_LANG_GLSL) && r->k->lanes > 32);
    if (r->lang == KIR_LANG_GLSL) { /* render_glsl: through shared memory */
      mlc_buf_puts(o, "mlc_xwarp(");
      expr(r, n->src[0]);
      mlc_buf_printf(o, ", %d)", (int)n->i);
      return;
    }
    mlc_buf_puts(o, "mlc_xwarp(");
    expr(r, n->src[0]);
    mlc_buf_printf(o, ", mlc_red, %d, %d)", r->k->lanes / 32, (int)n->i);
    return;
  case KIR_LANE_MAX: /* lower.c rule_sample; one lane per index (C, OpenCL): the value itself */
    if (r->lang == KIR_LANG_CUDA && r->k->lanes > 32)
      mlc_buf_puts(o, "mlc_block_max(");
    else if (r->lang == KIR_LANG_CUDA && r->k->lanes > 1)
      mlc_buf_puts(o, "mlc_lane_max_n(");
    else
      mlc_buf_puts(o, r->lang == KIR_LANG_GLSL && r->k->lanes > 1 ? "mlc_lane_max(" : "(");
    expr(r, n->src[0]);
    if (r->lang == KIR_LANG_CUDA && r->k->lanes > 32)
      mlc_buf_printf(o, ", mlc_red, %d)", r->k->lanes / 32);
    else if (r->lang == KIR_LANG_CUDA && r->k->lanes > 1)
      mlc_buf_printf(o, ", %d)", r->k->lanes);
    else
      mlc_buf_puts(o, ")");
    return;
  case KIR_LANE_SUM: /* one lane per index outside CUDA (kir_kernel.lanes stays 1 there) */
    if (r->lang == KIR_LANG_GLSL && r->k->lanes > 32 && n->i == 32) { /* this lane's warp of 32 (render_glsl) */
      mlc_buf_puts(o, "mlc_warp_sum(");
      expr(r, n->src[0]);
      mlc_buf_puts(o, ")");
      return;
    }
    if (r->lang == KIR_LANG_CUDA && r->k->lanes > 32 && n->i == 32) { /* this lane's warp */
      mlc_buf_puts(o, "mlc_lane_sum(");
      expr(r, n->src[0]);
      mlc_buf_puts(o, ")");
      return;
    }
    if (r->lang == KIR_LANG_CUDA && r->k->lanes > 32) { /* a block: warp sums through shared memory */
      mlc_buf_puts(o, "mlc_block_sum(");
      expr(r, n->src[0]);
      mlc_buf_printf(o, ", mlc_red, %d)", r->k->lanes / 32);
      return;
    }
    if (r->lang == KIR_LANG_CUDA && r->k->lanes < 32) { /* a group of lanes inside a warp */
      mlc_buf_puts(o, "mlc_lane_sum_n(");
      expr(r, n->src[0]);
      mlc_buf_printf(o, ", %d)", r->k->lanes);
      return;
    }
    mlc_buf_puts(o, r->lang == KIR_LANG_CUDA || r->lang == KIR_LANG_GLSL ? "mlc_lane_sum(" : "(");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  default:
    break;
  }
  static const char *binop[KIR_OP_COUNT] = {
      [KIR_ADD] = "+", [KIR_SUB] = "-", [KIR_MUL] = "*", [KIR_DIV] = "/", [KIR_MOD] = "%",
      [KIR_LT] = "<",  [KIR_LE] = "<=", [KIR_EQ] = "==", [KIR_NE] = "!=", [KIR_AND] = "&&",
      [KIR_OR] = "||", [KIR_SHR] = ">>", [KIR_BITAND] = "&", [KIR_SHL] = "<<", [KIR_BITOR] = "|",
      [KIR_BITXOR] = "^"};
  if (n->op == KIR_SHL && r->lang != KIR_LANG_GLSL) { /* a 32-bit word (kir.h) */
    mlc_buf_printf(o, "((%s)(%s)((%s)(", r->L->t_i64, r->lang == KIR_LANG_C ? "uint32_t" : r->lang == KIR_LANG_CUDA ? "unsigned" : "uint",
                   r->lang == KIR_LANG_C ? "uint32_t" : r->lang == KIR_LANG_CUDA ? "unsigned" : "uint");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ") << (");
    expr(r, n->src[1]);
    mlc_buf_puts(o, ")))");
    return;
  }
  if ((n->op == KIR_SHR || n->op == KIR_BITAND || n->op == KIR_BITOR || n->op == KIR_BITXOR) && r->lang == KIR_LANG_CUDA &&
      n->type == KIR_I64) {
    /* packed weight words (kir.h: a >= 0, b < 32): 32-bit operations, as GLSL's int */
    mlc_buf_puts(o, "((long long)((unsigned)(");
    expr(r, n->src[0]);
    mlc_buf_printf(o, ") %s (unsigned)(", binop[n->op]);
    expr(r, n->src[1]);
    mlc_buf_puts(o, ")))");
    return;
  }
  if (binop[n->op]) {
    mlc_buf_puts(o, "(");
    expr(r, n->src[0]);
    mlc_buf_printf(o, " %s ", binop[n->op]);
    expr(r, n->src[1]);
    mlc_buf_puts(o, ")");
    return;
  }
  const char *fn = NULL;
  bool isf = n->type == KIR_F32;
  switch (n->op) {
  case KIR_MAX: fn = isf ? L->fmax : L->imax; break;
  case KIR_MIN: fn = isf ? L->fmin : L->imin; break;
  case KIR_EXP: fn = L->exp; break;
  case KIR_LOG: fn = L->log; break;
  case KIR_SQRT: fn = L->sqrt; break;
  case KIR_TANH: fn = L->tanh; break;
  case KIR_ERF: fn = L->erf; break;
  case KIR_COS: fn = L->cos; break;
  case KIR_SIN: fn = L->sin; break;
  case KIR_ROUND: fn = r->lang == KIR_LANG_C || r->lang == KIR_LANG_CUDA ? "rintf" : r->lang == KIR_LANG_GLSL ? "roundEven" : "rint"; break;
  case KIR_ABS: fn = isf ? L->fabs : r->lang == KIR_LANG_CUDA ? "llabs" : "abs"; break;
  default: break;
  }
  if (fn) {
    mlc_buf_printf(o, "%s(", fn);
    expr(r, n->src[0]);
    if (n->op == KIR_MAX || n->op == KIR_MIN) {
      mlc_buf_puts(o, ", ");
      expr(r, n->src[1]);
    }
    mlc_buf_puts(o, ")");
    return;
  }
  switch (n->op) {
  case KIR_NEG:
    mlc_buf_puts(o, "(-");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  case KIR_NOT:
    mlc_buf_puts(o, "(!");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  case KIR_TOF:
    if (n->i == 1 && (r->lang == KIR_LANG_CUDA || r->lang == KIR_LANG_GLSL)) { /* kir_tof_exact */
      bool cu = r->lang == KIR_LANG_CUDA;
      mlc_buf_puts(o, cu ? "(__int_as_float((int)(" : "(intBitsToFloat(int(");
      expr(r, n->src[0]);
      mlc_buf_puts(o, cu ? ") + 0x4B400000) - 12582912.0f)" : ") + 0x4B400000) - 12582912.0)");
      return;
    }
    if (r->lang == KIR_LANG_CUDA || r->lang == KIR_LANG_GLSL) {
      /* a masked field minus a constant (a packed weight's value, lower.c qvalue: ((w >> s) & m) - c):
       * no int-to-float conversion (a quarter-rate instruction on NVIDIA GPUs) and one logic op a
       * value: the field is masked where it lies in its 16-bit half of w (bit kk = s % 16) under the
       * exponent of 2^(23 - kk), which makes the float exactly 2^(23 - kk) + field */
      const kir_node *s0 = n->src[0];
      const kir_node *f = s0->op == KIR_SUB && s0->src[1]->op == KIR_CONST ? s0->src[0] : s0;
      int64_t off = f == s0 ? 0 : s0->src[1]->i;
      if (f->op == KIR_BITAND && f->src[1]->op == KIR_CONST && f->src[1]->i >= 0 && off >= 0 && off < (1 << 20)) {
        const kir_node *base = f->src[0];
        int64_t sh = 0, m = f->src[1]->i;
        if (base->op == KIR_SHR && base->src[1]->op == KIR_CONST && base->src[1]->i >= 0 && base->src[1]->i < 32)
          sh = base->src[1]->i, base = base->src[0];
        else if (base->op == KIR_SHR)
          base = NULL;
        int64_t kk = sh & 15, hi = sh - kk;
        if (base && m < (1 << 20) && (m << kk) < (1 << 22)) {
          bool cu = r->lang == KIR_LANG_CUDA;
          mlc_buf_puts(o, cu ? "(__int_as_float((int)((((unsigned)(" : "(intBitsToFloat((((int(");
          expr(r, base);
          mlc_buf_printf(o, ")%s) & 0x%llx%s) | 0x%x%s)) - %lld.0%s)", hi ? " >> 16" : "", (unsigned long long)(m << kk),
                         cu ? "u" : "", (unsigned)(150 - kk) << 23, cu ? "u" : "", (long long)((1LL << (23 - kk)) + off),
                         cu ? "f" : "");
          return;
        }
      }
    }
    if (n->src[0]->type == KIR_VI32) {
      mlc_buf_puts(o, "__builtin_convertvector(");
      expr(r, n->src[0]);
      mlc_buf_puts(o, ", mlc_vf)");
      return;
    }
    /* fall through */
  case KIR_TOI: {
    if (n->op == KIR_TOI && r->lang == KIR_LANG_GLSL && n->src[0]->op == KIR_ROUND) { /* as CUDA's, below */
      mlc_buf_puts(o, "mlc_rint(");
      expr(r, n->src[0]->src[0]);
      mlc_buf_puts(o, ")");
      return;
    }
    if (n->op == KIR_TOI && r->lang == KIR_LANG_CUDA && n->src[0]->op == KIR_ROUND) {
      /* |x| < 2^22 (kir.h): the float add rounds x to an integer (halves to even) in the low
       * mantissa bits of 1.5 * 2^23 + x: two full-rate instructions, no conversion unit */
      mlc_buf_puts(o, "((long long)(__float_as_int(__fadd_rn(("); /* _rn: never contracted into an FMA */
      expr(r, n->src[0]->src[0]);
      mlc_buf_puts(o, "), 12582912.0f)) - 0x4B400000))");
      return;
    }
    mlc_buf inner = {0};
    rctx r2 = *r;
    r2.out = &inner;
    expr(&r2, n->src[0]);
    mlc_buf_printf(o, n->op == KIR_TOF ? L->tof : L->toi, inner.data ? inner.data : "");
    mlc_buf_free(&inner);
    return;
  }
  case KIR_SELECT:
    expr3(r, "(", n->src[0], " ? ", n->src[1], " : ", n->src[2], ")");
    return;
  default:
    mlc_abort(__FILE__, __LINE__, "kir: cannot render op %d as an expression", n->op);
  }
}

static bool glsl_uniform_for(rctx *r, const kir_node *n);
/* GLSL: the length of the run of statements at l (of n) that declare a workgroup lane sum each
 * (res = KIR_LANE_SUM(v): the P outputs of a GEMV index, lower.c wdot_i8 / wdot_qlanes) */
static bool glsl_reads_vars(const kir_node *n, const unsigned char *vars, unsigned char *seen) {
  if (!n || seen[n->id])
    return false;
  seen[n->id] = 1;
  if (n->op == KIR_VAR && vars[n->a])
    return true;
  for (int i = 0; i < 3; i++)
    if (glsl_reads_vars(n->src[i], vars, seen))
      return true;
  return false;
}
static int glsl_sum_run(const kir_kernel *k, kir_node *const *l, int n) {
  int m = 0;
  unsigned char vars[KIR_MAX_VARS] = {0}; /* the sums of the run so far, which no later one may read */
  while (m < n && k->lanes > 1 && l[m]->op == KIR_LOCAL && l[m]->src[0]->op == KIR_LANE_SUM &&
         !(k->lanes > 32 && l[m]->src[0]->i == 32)) {
    if (m) {
      unsigned char *seen = mlc_calloc((size_t)k->nnodes + 1, 1);
      MLC_ASSERT(seen);
      bool dep = glsl_reads_vars(l[m]->src[0], vars, seen);
      free(seen);
      if (dep)
        break;
    }
    vars[l[m]->a] = 1;
    m++;
  }
  return m;
}
static bool glsl_has_sum_run(const kir_kernel *k, const kir_node *n) {
  if (!n)
    return false;
  if (n->op == KIR_SEQ) {
    for (int i = 0; i < n->nlist; i++)
      if (glsl_sum_run(k, n->list + i, n->nlist - i) > 1 || glsl_has_sum_run(k, n->list[i]))
        return true;
    return false;
  }
  if (n->op == KIR_FOR)
    return glsl_has_sum_run(k, n->src[2]);
  if (n->op == KIR_IF)
    return glsl_has_sum_run(k, n->src[1]) || glsl_has_sum_run(k, n->src[2]);
  return false;
}
/* Such a run, four sums at a time by the vec4 mlc_lane_sum: the same sums, a quarter of the
 * subgroup operations' issue and of the barriers (a workgroup of several subgroups) */
static void glsl_lane_sums(rctx *r, kir_node *const *l, int m) {
  mlc_buf *o = r->out;
  const kir_kernel *k = r->k;
  for (int i = 0; i < m; i++) {
    ind(r);
    mlc_buf_printf(o, "float %s_%d;\n", k->var_name[l[i]->a], l[i]->a);
  }
  for (int i = 0; i < m; i += 4) {
    ind(r);
    mlc_buf_puts(o, "{\n");
    ind(r);
    mlc_buf_puts(o, "  vec4 mlc_s = mlc_lane_sum(vec4(");
    for (int j = 0; j < 4; j++) {
      if (j)
        mlc_buf_puts(o, ", ");
      if (i + j < m)
        expr(r, l[i + j]->src[0]->src[0]);
      else
        mlc_buf_puts(o, "0.0");
    }
    mlc_buf_puts(o, "));\n");
    for (int j = 0; j < 4 && i + j < m; j++) {
      ind(r);
      mlc_buf_printf(o, "  %s_%d = mlc_s.%c;\n", k->var_name[l[i + j]->a], l[i + j]->a, "xyzw"[j]);
    }
    ind(r);
    mlc_buf_puts(o, "}\n");
  }
}
/* GLSL: a KIR_VLOAD that can take 16-byte loads: whole vec4s of a read-only buffer of 32-bit
 * elements into a local array of the same kind (float / int) */
static bool glsl_vec_ok(const kir_kernel *k, const kir_node *n) {
  const kir_buf *b = &k->bufs[n->a], *L = &k->bufs[n->i];
  int64_t len = n->src[2] ? n->src[2]->i : L->local_len;
  bool f = b->dtype == MLC_F32, i = b->dtype == MLC_I32 || b->dtype == MLC_U32;
  return !b->local && !b->write && len % 4 == 0 && (f || i) && f == (L->dtype == MLC_F32);
}
/* GLSL: the buffers some KIR_VLOAD reads by 16-byte loads (bit per buffer index) */
static unsigned glsl_vec_bufs(const kir_kernel *k, const kir_node *n) {
  if (!n)
    return 0;
  if (n->op == KIR_VLOAD)
    return glsl_vec_ok(k, n) ? 1u << n->a : 0;
  unsigned m = 0;
  if (n->op == KIR_SEQ)
    for (int i = 0; i < n->nlist; i++)
      m |= glsl_vec_bufs(k, n->list[i]);
  else if (n->op == KIR_FOR)
    m = glsl_vec_bufs(k, n->src[2]);
  else if (n->op == KIR_IF)
    m = glsl_vec_bufs(k, n->src[1]) | glsl_vec_bufs(k, n->src[2]);
  return m;
}

static void stmt(rctx *r, const kir_node *n) {
  mlc_buf *o = r->out;
  const kir_kernel *k = r->k;
  switch (n->op) {
  case KIR_SEQ:
    for (int i = 0; i < n->nlist; i++) {
      int m = r->lang == KIR_LANG_GLSL && !r->pred ? glsl_sum_run(k, n->list + i, n->nlist - i) : 0;
      if (m > 1) {
        glsl_lane_sums(r, n->list + i, m);
        i += m - 1;
      } else {
        stmt(r, n->list[i]);
      }
    }
    return;
  case KIR_FOR: {
    const char *vn = k->var_name[n->a];
    if (r->lang == KIR_LANG_GLSL && glsl_uniform_for(r, n)) /* a lane-dependent trip count around barriers */
      return;
    if (n->i == KIR_LOOP_UNROLL && r->L->unroll) {
      ind(r);
      mlc_buf_printf(o, "%s\n", r->L->unroll);
    }
    if (n->i == KIR_LOOP_VECTOR && r->lang == KIR_LANG_C) {
      ind(r);
      mlc_buf_puts(o, "#pragma GCC unroll 1\n");
    }
    ind(r);
    mlc_buf_printf(o, "for (%s %s_%d = ", type_name(r, KIR_I64), vn, n->a);
    expr(r, n->src[0]);
    mlc_buf_printf(o, "; %s_%d < ", vn, n->a);
    expr(r, n->src[1]);
    mlc_buf_printf(o, "; %s_%d++) {\n", vn, n->a);
    r->indent++;
    stmt(r, n->src[2]);
    r->indent--;
    ind(r);
    mlc_buf_puts(o, "}\n");
    return;
  }
  case KIR_LOCAL:
    ind(r);
    mlc_buf_printf(o, "%s %s_%d = ", type_name(r, k->var_type[n->a]), k->var_name[n->a], n->a);
    expr(r, n->src[0]);
    mlc_buf_puts(o, ";\n");
    return;
  case KIR_ASSIGN:
    ind(r);
    if (r->pred && !r->pred[n->a])
      mlc_buf_puts(o, "if (mlc_act) ");
    mlc_buf_printf(o, "%s_%d = ", k->var_name[n->a], n->a);
    expr(r, n->src[0]);
    mlc_buf_puts(o, ";\n");
    return;
  case KIR_STORE: {
    const kir_buf *b = &k->bufs[n->a];
    MLC_ASSERT(b->local || b->dtype == MLC_F32 || b->dtype == MLC_I32);
    ind(r);
    if (r->lang == KIR_LANG_CUDA && k->lanes > 1 && k->lanes < 32 && !b->local)
      mlc_buf_puts(o, "if (mlc_live) "); /* lanes of an index past the range (render_cuda) */
    if (r->pred)
      mlc_buf_puts(o, "if (mlc_act) ");
    mlc_buf_printf(o, "%s[", bname(r, b));
    index_of(r, n->a, n->src[0]);
    mlc_buf_puts(o, "] = ");
    if (b->dtype == MLC_I32)
      mlc_buf_puts(o, r->lang == KIR_LANG_C ? "(int32_t)" : r->lang == KIR_LANG_GLSL ? "int" : "(int)");
    mlc_buf_puts(o, "(");
    expr(r, n->src[1]);
    mlc_buf_puts(o, ");\n");
    return;
  }
  case KIR_VLOAD: {
    /* CUDA: one 16-byte load when the slice is 16 bytes; else element by element */
    const kir_buf *b = &k->bufs[n->a], *L = &k->bufs[n->i];
    size_t es = mlc_dtype_size(b->dtype);
    const char *conv = b->dtype == MLC_F16 ? "mlc_h2f" : b->dtype == MLC_BF16 ? "mlc_bf2f" : "";
    const char *et = r->lang == KIR_LANG_CUDA ? cuda_elem(b->dtype) : c_elem(b->dtype);
    /* elements [off, off + len) of the local array (kir_vload_at), by default all of it */
    long long off = n->src[1] ? (long long)n->src[1]->i : 0, len = n->src[2] ? (long long)n->src[2]->i : (long long)L->local_len;
    if (r->lang == KIR_LANG_GLSL && glsl_vec_ok(k, n) && !r->pred) {
      /* 16-byte loads through the buffer's vec4 view (render_glsl) where the element (offset
       * remainder included) lies on a 16-byte boundary of the bound range: always for weights
       * (rows of whole 16-byte slices), for x rows whose stride is a multiple of 4; else element
       * by element */
      bool f = b->dtype == MLC_F32;
      char src[40]; /* bname's buffer is reused by each call */
      snprintf(src, sizeof src, "%s", bname(r, b));
      ind(r);
      mlc_buf_puts(o, "{\n");
      r->indent++;
      ind(r);
      mlc_buf_puts(o, "int mlc_e = ");
      index_of(r, n->a, n->src[0]);
      mlc_buf_puts(o, ";\n");
      ind(r);
      mlc_buf_puts(o, "if ((mlc_e & 3) == 0) {\n");
      for (long long q = 0; q < len / 4; q++) {
        ind(r);
        mlc_buf_printf(o, "  %s mlc_v%lld = %s_v[(mlc_e >> 2) + %lld];\n", f ? "vec4" : "ivec4", q, src, q);
        for (int e = 0; e < 4; e++) {
          ind(r);
          mlc_buf_printf(o, "  %s[%lld] = mlc_v%lld.%c;\n", bname(r, L), off + 4 * q + e, q, "xyzw"[e]);
        }
      }
      ind(r);
      mlc_buf_puts(o, "} else {\n");
      for (long long e = 0; e < len; e++) {
        ind(r);
        mlc_buf_printf(o, "  %s[%lld] = %s[mlc_e + %lld];\n", bname(r, L), off + e, src, e);
      }
      ind(r);
      mlc_buf_puts(o, "}\n");
      r->indent--;
      ind(r);
      mlc_buf_puts(o, "}\n");
      return;
    }
    if (r->lang == KIR_LANG_GLSL) {
      /* element by element through the load path (16-bit unpacking, offset remainder): nodes
       * built on the stack, as the renderer only reads them */
      for (int64_t e = 0; e < len; e++) {
        kir_node c = {.op = KIR_CONST, .type = KIR_I64, .i = e};
        kir_node ix = {.op = KIR_ADD, .type = KIR_I64, .src = {n->src[0], &c}};
        kir_node ld = {.op = KIR_LOAD, .type = KIR_F32, .a = n->a, .src = {&ix}};
        ind(r);
        if (r->pred)
          mlc_buf_puts(o, "if (mlc_act) ");
        mlc_buf_printf(o, "%s[%lld] = ", bname(r, L), off + (long long)e);
        expr(r, &ld);
        mlc_buf_puts(o, ";\n");
      }
      return;
    }
    if (r->lang == KIR_LANG_CUDA && (es * (size_t)len) % 16 == 0 && b->dtype == MLC_F32) {
      /* f32 (activations): 16-byte loads where the address allows it, one test for the slice
       * (the schedule makes the index a multiple of 4; a view's base may still be unaligned: then
       * element by element); weights (16-bit, packed words) are allocated aligned: always the
       * wide load */
      ind(r);
      mlc_buf_printf(o, "{\n");
      r->indent++;
      ind(r);
      mlc_buf_printf(o, "const %s *mlc_p = (%s + ", et, bname(r, b));
      expr(r, n->src[0]);
      mlc_buf_puts(o, ");\n");
      ind(r);
      mlc_buf_puts(o, "if (((unsigned long long)mlc_p & 15) == 0) {\n");
      ind(r);
      mlc_buf_printf(o, "#pragma unroll\n");
      ind(r);
      mlc_buf_printf(o, "  for (int mlc_q = 0; mlc_q < %lld; mlc_q++) {\n", len / 4);
      ind(r);
      mlc_buf_printf(o, "    const mlc_v16 mlc_v = ((const mlc_v16 *)mlc_p)[mlc_q];\n");
      ind(r);
      mlc_buf_printf(o, "    const %s *mlc_e = (const %s *)&mlc_v;\n", et, et);
      ind(r);
      mlc_buf_printf(o, "#pragma unroll\n");
      ind(r);
      mlc_buf_printf(o, "    for (int mlc_i = 0; mlc_i < 4; mlc_i++) %s[%lld + 4 * mlc_q + mlc_i] = %s(mlc_e[mlc_i]);\n",
                     bname(r, L), off, conv);
      ind(r);
      mlc_buf_puts(o, "  }\n");
      ind(r);
      mlc_buf_puts(o, "} else {\n");
      ind(r);
      mlc_buf_printf(o, "#pragma unroll\n");
      ind(r);
      mlc_buf_printf(o, "  for (int mlc_i = 0; mlc_i < %lld; mlc_i++) %s[%lld + mlc_i] = %s(mlc_p[mlc_i]);\n",
                     len, bname(r, L), off, conv);
      ind(r);
      mlc_buf_puts(o, "}\n");
      r->indent--;
      ind(r);
      mlc_buf_puts(o, "}\n");
      return;
    }
    ind(r);
    mlc_buf_puts(o, "{\n");
    r->indent++;
    ind(r);
    if (r->lang == KIR_LANG_CUDA && es * (size_t)len == 16)
      mlc_buf_printf(o, "const mlc_v16 mlc_v = *(const mlc_v16 *)(%s + ", bname(r, b));
    else
      mlc_buf_printf(o, "const %s *mlc_e = (%s + ", et, bname(r, b));
    expr(r, n->src[0]);
    mlc_buf_puts(o, ");\n");
    if (r->lang == KIR_LANG_CUDA && es * (size_t)len == 16) {
      ind(r);
      mlc_buf_printf(o, "const %s *mlc_e = (const %s *)&mlc_v;\n", et, et);
    }
    if (r->L->unroll) {
      ind(r);
      mlc_buf_printf(o, "%s\n", r->L->unroll);
    }
    ind(r);
    mlc_buf_printf(o, "for (int mlc_i = 0; mlc_i < %lld; mlc_i++) %s[%lld + mlc_i] = %s(mlc_e[mlc_i]);\n", len,
                   bname(r, L), off, conv);
    r->indent--;
    ind(r);
    mlc_buf_puts(o, "}\n");
    return;
  }
  case KIR_VSTORE: {
    MLC_ASSERT(r->lang == KIR_LANG_C);
    ind(r);
    mlc_buf_puts(o, "{ const mlc_vf mlc_t = ");
    expr(r, n->src[1]);
    mlc_buf_printf(o, "; memcpy(%s + ", bname(r, &k->bufs[n->a]));
    expr(r, n->src[0]);
    mlc_buf_puts(o, ", &mlc_t, sizeof mlc_t); }\n");
    return;
  }
  case KIR_IF:
    ind(r);
    mlc_buf_puts(o, "if (");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ") {\n");
    r->indent++;
    stmt(r, n->src[1]);
    r->indent--;
    if (n->src[2]) {
      ind(r);
      mlc_buf_puts(o, "} else {\n");
      r->indent++;
      stmt(r, n->src[2]);
      r->indent--;
    }
    ind(r);
    mlc_buf_puts(o, "}\n");
    return;
  case KIR_BARRIER:
    MLC_ASSERT(r->lang == KIR_LANG_CUDA);
    ind(r);
    mlc_buf_puts(o, "__syncthreads();\n");
    return;
  case KIR_MMA_S8: {
    /* one m16n8k32 int8 tensor-core op of the warp (sm_80+; the device launches these kernels only
     * there, other targets of the module compile it to a trap) */
    MLC_ASSERT(r->lang == KIR_LANG_CUDA && n->nlist == 6);
    const char *d = bname(r, &k->bufs[n->a]);
    int64_t e = n->i;
    ind(r);
    mlc_buf_puts(o, "{\n#if __CUDA_ARCH__ >= 800\n");
    ind(r);
    mlc_buf_puts(o, "  asm(\"mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                    "{%10,%10,%10,%10};\"\n");
    ind(r);
    mlc_buf_printf(o, "      : \"=r\"(%s[%lld]), \"=r\"(%s[%lld]), \"=r\"(%s[%lld]), \"=r\"(%s[%lld])\n", d, (long long)e, d,
                   (long long)e + 1, d, (long long)e + 2, d, (long long)e + 3);
    ind(r);
    mlc_buf_puts(o, "      :");
    for (int i = 0; i < 6; i++) {
      mlc_buf_puts(o, i ? ", \"r\"((unsigned)(" : " \"r\"((unsigned)(");
      expr(r, n->list[i]);
      mlc_buf_puts(o, "))");
    }
    mlc_buf_puts(o, ", \"r\"(0));\n#else\n");
    ind(r);
    mlc_buf_puts(o, "  __trap();\n#endif\n");
    ind(r);
    mlc_buf_puts(o, "}\n");
    return;
  }
  default:
    mlc_abort(__FILE__, __LINE__, "kir: op %d is not a statement", n->op);
  }
}

static const char *c_elem(mlc_dtype dt) {
  switch (dt) {
  case MLC_F32: return "float";
  case MLC_F16:
  case MLC_BF16: return "uint16_t";
  case MLC_I32: return "int32_t";
  case MLC_U32: return "uint32_t";
  case MLC_I8: return "int8_t";
  case MLC_U8: return "uint8_t";
  case MLC_I64: return "int64_t";
  default: return "void";
  }
}

static void render_c(rctx *r) {
  const kir_kernel *k = r->k;
  mlc_buf *o = r->out;
  mlc_buf_printf(o,
                 "void %s(void *const *bufs, const int64_t *restrict ip, const float *restrict fp, "
                 "int64_t g0, int64_t g1) {\n",
                 k->name);
  int ext = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      continue;
    mlc_buf_printf(o, "  %s%s *restrict %s = (%s%s *)bufs[%d];\n", b->write ? "" : "const ",
                   c_elem(b->dtype), b->name, b->write ? "" : "const ", c_elem(b->dtype), ext++);
  }
  mlc_buf_puts(o, "  (void)ip; (void)fp;\n");
  int nscr = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (!b->scratch_len)
      continue;
    MLC_ASSERT(nscr < 4);
    mlc_buf_printf(o, "  %s *restrict %s = (%s *)mlc_scratch(%d, sizeof(%s) * (size_t)(", c_elem(b->dtype), b->name,
                   c_elem(b->dtype), nscr++, c_elem(b->dtype));
    expr(r, b->scratch_len);
    mlc_buf_puts(o, "));\n");
  }
  if (k->prologue) {
    r->indent = 1;
    stmt(r, k->prologue);
  }
  int step = k->grid_step > 1 ? k->grid_step : 1;
  if (step == 1)
    mlc_buf_printf(o, "  for (int64_t %s_0 = g0; %s_0 < g1; %s_0++) {\n", k->var_name[0], k->var_name[0], k->var_name[0]);
  else
    mlc_buf_printf(o, "  for (int64_t %s_0 = g0; %s_0 < g1; %s_0 += %d) {\n    const int64_t mlc_gcnt = g1 - %s_0 < %d ? g1 - %s_0 : %d;\n",
                   k->var_name[0], k->var_name[0], k->var_name[0], step, k->var_name[0], step, k->var_name[0], step);
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local && !b->scratch_len)
      mlc_buf_printf(o, "    %s %s[%lld];\n", c_elem(b->dtype), b->name, (long long)b->local_len);
  }
  r->indent = 2;
  stmt(r, k->body);
  mlc_buf_puts(o, "  }\n}\n");
}

static const char *GLSL_ERF =
    "float mlc_erf(float x) {\n"
    "  float s = sign(x), a = abs(x);\n"
    "  float t = 1.0 / (1.0 + 0.3275911 * a);\n"
    "  float y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);\n"
    "  return s * y;\n"
    "}\n";

/* KIR_DP4A in GLSL (kernels that use it): the SPIR-V integer dot product (SPV_KHR_integer_dot_product,
 * OpSDot on 4x8-bit packed words: NVIDIA's dp4a), declared through GL_EXT_spirv_intrinsics as
 * Debian 12's glslang has no GL_EXT_integer_dot_product; on devices without the feature the backend
 * blanks the GLSL_INT_DOT line (kir_glsl_for_device) and the exact emulation renders instead:
 * bitfieldExtract of an int sign-extends each byte. The saturating OpSDotAccSat is not needed: the
 * sums stay far below 2^31 (wdot_i8: 64 products of at most 127 * 15 per group). */
#define GLSL_INT_DOT "#define MLC_INT_DOT 1"
static const char *GLSL_DP4A_EXT = GLSL_INT_DOT "\n#ifdef MLC_INT_DOT\n#extension GL_EXT_spirv_intrinsics : require\n#endif\n";
static const char *GLSL_DP4A =
    "#ifdef MLC_INT_DOT\n"
    "spirv_instruction(extensions = [\"SPV_KHR_integer_dot_product\"], capabilities = [6018, 6019], id = 4450)\n"
    "int mlc_sdot(int a, int b, spirv_literal int fmt); /* OpSDot a b PackedVectorFormat4x8Bit */\n"
    "int mlc_dp4a(int acc, int a, int b) { return acc + mlc_sdot(a, b, 0); }\n"
    "#else\n"
    "int mlc_dp4a(int acc, int a, int b) {\n"
    "  for (int i = 0; i < 32; i += 8) acc += bitfieldExtract(a, i, 8) * bitfieldExtract(b, i, 8);\n"
    "  return acc;\n"
    "}\n"
    "#endif\n";

mlc_status kir_glsl_for_device(const char *src, bool subgroups, bool int_dot, char **out) {
  *out = NULL;
  static const char sg_ext[] = "#extension GL_KHR_shader_subgroup_arithmetic : require";
  bool sg = !subgroups && strstr(src, "subgroupAdd"), dot = !int_dot && strstr(src, GLSL_INT_DOT);
  if (!sg && !dot)
    return MLC_OK;
  char *own = mlc_strdup(src);
  if (!own)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  /* blanked with spaces, so nothing moves (line numbers of compiler messages stay) */
  for (char *p = sg ? strstr(own, sg_ext) : NULL; p; p = strstr(p, sg_ext))
    memset(p, ' ', sizeof sg_ext - 1);
  for (char *p = sg ? strstr(own, "if (gl_SubgroupSize") : NULL; p; p = strstr(p, "if (gl_SubgroupSize"))
    for (; *p && *p != '\n'; p++)
      *p = ' ';
  for (char *p = dot ? strstr(own, GLSL_INT_DOT) : NULL; p; p = strstr(p, GLSL_INT_DOT))
    memset(p, ' ', strlen(GLSL_INT_DOT));
  *out = own;
  return MLC_OK;
}

/* GLSL: whether the tree at n (expression or statement) holds a node of op a or b (seen: per node
 * id, as expressions are shared) */
static bool glsl_has(const kir_node *n, kir_op a, kir_op b, unsigned char *seen) {
  if (!n || seen[n->id])
    return false;
  seen[n->id] = 1;
  if (n->op == a || n->op == b)
    return true;
  for (int i = 0; i < 3; i++)
    if (glsl_has(n->src[i], a, b, seen))
      return true;
  for (int i = 0; i < n->nlist; i++)
    if (glsl_has(n->list[i], a, b, seen))
      return true;
  return false;
}
static bool glsl_has_op(const kir_kernel *k, const kir_node *n, kir_op a, kir_op b) {
  unsigned char *seen = mlc_calloc((size_t)k->nnodes + 1, 1);
  MLC_ASSERT(seen);
  bool h = glsl_has(n, a, b, seen);
  free(seen);
  return h;
}
/* a loop whose trip count depends on the lane (attention_lanes: each warp its own chunks) around
 * lane reductions, which are barriers here (not warp shuffles): not uniform control flow */
static bool glsl_divergent_for(const kir_kernel *k, const kir_node *n) {
  return n->op == KIR_FOR && k->lanes > 1 && glsl_has_op(k, n->src[1], KIR_LANE, KIR_LANE) &&
         glsl_has_op(k, n->src[2], KIR_LANE_SUM, KIR_LANE_XRED);
}
static bool glsl_any_divergent_for(const kir_kernel *k, const kir_node *n) {
  if (!n)
    return false;
  if (n->op == KIR_SEQ) {
    for (int i = 0; i < n->nlist; i++)
      if (glsl_any_divergent_for(k, n->list[i]))
        return true;
    return false;
  }
  if (n->op == KIR_FOR)
    return glsl_divergent_for(k, n) || glsl_any_divergent_for(k, n->src[2]);
  if (n->op == KIR_IF)
    return glsl_any_divergent_for(k, n->src[1]) || glsl_any_divergent_for(k, n->src[2]);
  return false;
}
/* the variables declared in the statements at n */
static void glsl_locals(const kir_node *n, unsigned char *in) {
  if (!n)
    return;
  if (n->op == KIR_SEQ)
    for (int i = 0; i < n->nlist; i++)
      glsl_locals(n->list[i], in);
  else if (n->op == KIR_LOCAL)
    in[n->a] = 1;
  else if (n->op == KIR_FOR)
    glsl_locals(n->src[2], in);
  else if (n->op == KIR_IF)
    glsl_locals(n->src[1], in), glsl_locals(n->src[2], in);
}
/* Such a loop made uniform: every invocation runs the workgroup's largest trip count, the trips
 * past its own with stores and assignments to variables from outside the loop off (mlc_act); the
 * lane sums run on every trip, so the barriers inside are reached by the whole workgroup. The
 * schedule keeps the loads of those trips in bounds (attention_lanes clamps positions to the
 * last one). */
static bool glsl_uniform_for(rctx *r, const kir_node *n) {
  const kir_kernel *k = r->k;
  if (!glsl_divergent_for(k, n))
    return false;
  MLC_ASSERT(!r->pred && !glsl_has_op(k, n->src[0], KIR_LANE, KIR_LANE)); /* one level; a uniform start */
  unsigned char inner[KIR_MAX_VARS] = {0};
  glsl_locals(n->src[2], inner);
  mlc_buf *o = r->out;
  const char *vn = k->var_name[n->a];
  ind(r);
  mlc_buf_puts(o, "{\n");
  r->indent++;
  ind(r);
  mlc_buf_puts(o, "int mlc_hi = ");
  expr(r, n->src[1]);
  mlc_buf_puts(o, ";\n");
  ind(r);
  mlc_buf_puts(o, "int mlc_him = mlc_wg_max(mlc_hi);\n");
  ind(r);
  mlc_buf_printf(o, "for (int %s_%d = ", vn, n->a);
  expr(r, n->src[0]);
  mlc_buf_printf(o, "; %s_%d < mlc_him; %s_%d++) {\n", vn, n->a, vn, n->a);
  r->indent++;
  ind(r);
  mlc_buf_printf(o, "bool mlc_act = %s_%d < mlc_hi;\n", vn, n->a);
  r->pred = inner;
  stmt(r, n->src[2]);
  r->pred = NULL;
  r->indent--;
  ind(r);
  mlc_buf_puts(o, "}\n");
  r->indent--;
  ind(r);
  mlc_buf_puts(o, "}\n");
  return true;
}

/* GLSL: mlc_lane_sum over values of type T (float or vec4; overloads), through mlc_sg_add. Every
 * subgroup operation is on an "if (gl_SubgroupSize" line, which the backend blanks on devices
 * without subgroup arithmetic (kir_glsl_for_device): s stays 0 there (s: size, id, count, this
 * invocation's index in its subgroup). The sum over the workgroup (KIR_LANE_SUM): one subgroup
 * holds it (NVIDIA 32, AMD 64 for a workgroup of 32), or the subgroups' sums through shared memory
 * red, or a shared-memory tree; the same order on every invocation. */
static void glsl_lane_sum_fn(mlc_buf *o, const char *T, const char *red, int nl) {
  mlc_buf_printf(o, "%s mlc_sg_add(%s v, inout uvec4 s) {\n"
                    "  if (gl_SubgroupSize > 0u) { s = uvec4(gl_SubgroupSize, gl_SubgroupID, gl_NumSubgroups, "
                    "gl_SubgroupInvocationID); return subgroupAdd(v); }\n"
                    "  return v;\n}\n", T, T);
  mlc_buf_printf(o, "%s mlc_lane_sum(%s v) {\n"
                    "  uvec4 s = uvec4(0u);\n  %s t = mlc_sg_add(v, s);\n"
                    "  if (s.x >= %du) return t;\n"
                    "  uint l = gl_LocalInvocationID.x;\n  barrier();\n"
                    "  if (s.x > 0u) {\n"
                    "    if (s.w == 0u) %s[s.y] = t;\n    barrier();\n"
                    "    t = %s(0.0);\n    for (uint i = 0u; i < s.z; i++) t += %s[i];\n    return t;\n  }\n"
                    "  %s[l] = v;\n  barrier();\n"
                    "  for (uint h = %du; h > 0u; h >>= 1) {\n    if (l < h) %s[l] += %s[l + h];\n"
                    "    barrier();\n  }\n  return %s[0];\n}\n",
                 T, T, T, nl, red, T, red, red, nl / 2, red, red, red);
}

static void render_glsl(rctx *r) {
  const kir_kernel *k = r->k;
  mlc_buf *o = r->out;
  /* with lanes: one workgroup of `lanes` invocations per parallel index, the lane sums through
   * subgroups or shared memory (uniform control flow: the whole workgroup shares its index); the
   * Vulkan backend reads the "mlc_lanes" marker to dispatch one workgroup per index */
  bool dp4a = glsl_has_op(k, k->body, KIR_DP4A, KIR_DP4A);
  if (k->lanes > 1)
    mlc_buf_printf(o, "#version 450\n#extension GL_KHR_shader_subgroup_arithmetic : require\n%s// kernel %s\n// mlc_lanes=%d\n"
                   "layout(local_size_x = %d) in;\n", dp4a ? GLSL_DP4A_EXT : "", k->name, k->lanes, k->lanes);
  else
    mlc_buf_printf(o, "#version 450\n%s// kernel %s\nlayout(local_size_x = 64) in;\n", dp4a ? GLSL_DP4A_EXT : "", k->name);
  /* P outputs per parallel index (kir_kernel.per_index): the backend dispatches ceil(grid / P)
   * indices and passes the range [g0, g1) in indices */
  if (k->per_index > 1)
    mlc_buf_printf(o, "// mlc_per=%d\n", k->per_index);
  int binding = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      continue;
    const char *et = b->dtype == MLC_F32 ? "float" : (b->dtype == MLC_F16 || b->dtype == MLC_BF16) ? "uint" : "int";
    mlc_buf_printf(o, "layout(std430, binding = %d) %sbuffer Buf%d { %s %s[]; };\n", binding, b->write ? "" : "readonly ",
                   binding, et, bname(r, b));
    binding++;
  }
  /* vec4 views of the buffers read by 16-byte loads (the same binding: aliases; after every
   * buffer's own declaration, which the backend reads for `readonly`) */
  unsigned vec = glsl_vec_bufs(k, k->body);
  binding = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      continue;
    if (vec & (1u << i))
      mlc_buf_printf(o, "layout(std430, binding = %d) readonly buffer Buf%dv { %s %s_v[]; };\n", binding, binding,
                     b->dtype == MLC_F32 ? "vec4" : "ivec4", bname(r, b));
    binding++;
  }
  /* params: one block at a fixed binding after the largest buffer list (src/backend/vulkan) */
  mlc_buf_printf(o, "layout(std430, binding = %d) readonly buffer Params { int ip[16]; float fp[4]; int mlc_g0; int mlc_g1; "
                 "int mlc_bo[%d]; };\n", KIR_MAX_BUFS, KIR_MAX_BUFS);
  mlc_buf_puts(o, GLSL_ERF);
  if (dp4a)
    mlc_buf_puts(o, GLSL_DP4A);
  if (glsl_has_op(k, k->body, KIR_ROUND, KIR_ROUND))
    /* KIR_TOI(KIR_ROUND(x)), |x| < 2^22 (kir.h): the float add rounds x to an integer (halves to
     * even) in the low mantissa bits of 1.5 * 2^23 + x, no conversion instructions (a quarter of
     * the float rate on NVIDIA GPUs); `precise`: never contracted with a product into an FMA */
    mlc_buf_puts(o, "int mlc_rint(float x) {\n  precise float t = x + 12582912.0;\n  return floatBitsToInt(t) - 0x4B400000;\n}\n");
  if (k->lanes > 1) {
    int nl = k->lanes;
    MLC_ASSERT(!(nl & (nl - 1)) && (nl <= 32 || nl % 32 == 0)); /* the tree; warps of 32 */
    mlc_buf_printf(o, "shared float mlc_red[%d];\n", nl);
    glsl_lane_sum_fn(o, "float", "mlc_red", nl);
    if (glsl_has_sum_run(k, k->body)) { /* four lane sums at once (glsl_lane_sums) */
      mlc_buf_printf(o, "shared vec4 mlc_red4[%d];\n", nl);
      glsl_lane_sum_fn(o, "vec4", "mlc_red4", nl);
    }
    if (nl > 32) {
      /* KIR_LANE_SUM i = 32: over this invocation's warp (32 consecutive invocations); a
       * subgroup of 32 is one (NVIDIA); else through shared memory, in order */
      mlc_buf_puts(o, "float mlc_warp_sum(float v) {\n"
                      "  uvec4 s = uvec4(0u);\n  float t = mlc_sg_add(v, s);\n"
                      "  if (s.x == 32u) return t;\n"
                      "  uint l = gl_LocalInvocationID.x, w = l & ~31u;\n"
                      "  barrier();\n  mlc_red[l] = v;\n  barrier();\n"
                      "  t = 0.0;\n  for (uint i = 0u; i < 32u; i++) t += mlc_red[w + i];\n  return t;\n}\n");
      /* KIR_LANE_XRED: over the warps, of the invocations with this one's index in its warp: the
       * sum (mx 0) or the maximum (mx 1) */
      mlc_buf_printf(o, "float mlc_xwarp(float v, int mx) {\n"
                        "  uint l = gl_LocalInvocationID.x, j = l & 31u;\n"
                        "  barrier();\n  mlc_red[l] = v;\n  barrier();\n"
                        "  float t = mlc_red[j];\n"
                        "  for (uint w = 1u; w < %du; w++) t = mx != 0 ? max(t, mlc_red[32u * w + j]) : t + mlc_red[32u * w + j];\n"
                        "  return t;\n}\n", nl / 32);
    }
    if (glsl_has_op(k, k->body, KIR_LANE_MAX, KIR_LANE_MAX)) /* the maximum over the workgroup: a shared-memory tree */
      mlc_buf_printf(o, "float mlc_lane_max(float v) {\n"
                        "  uint l = gl_LocalInvocationID.x;\n  barrier();\n  mlc_red[l] = v;\n  barrier();\n"
                        "  for (uint h = %du; h > 0u; h >>= 1) {\n    if (l < h) mlc_red[l] = max(mlc_red[l], mlc_red[l + h]);\n"
                        "    barrier();\n  }\n  return mlc_red[0];\n}\n", nl / 2);
    if (glsl_any_divergent_for(k, k->body)) /* glsl_uniform_for: the workgroup's largest trip count */
      mlc_buf_printf(o, "shared int mlc_ired[%d];\n"
                        "int mlc_wg_max(int v) {\n"
                        "  uint l = gl_LocalInvocationID.x;\n  barrier();\n  mlc_ired[l] = v;\n  barrier();\n"
                        "  int m = v;\n  for (uint i = 0u; i < %du; i++) m = max(m, mlc_ired[i]);\n  return m;\n}\n",
                     nl, nl);
  }
  mlc_buf_puts(o, "void main() {\n");
  if (k->lanes > 1) {
    mlc_buf_puts(o, "  int mlc_lane = int(gl_LocalInvocationID.x);\n");
    mlc_buf_printf(o, "  int %s_0 = mlc_g0 + int(gl_WorkGroupID.x);\n", k->var_name[0]);
  } else
    mlc_buf_printf(o, "  int %s_0 = mlc_g0 + int(gl_GlobalInvocationID.x);\n", k->var_name[0]);
  mlc_buf_printf(o, "  if (%s_0 >= mlc_g1) return;\n", k->var_name[0]);
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      mlc_buf_printf(o, "  %s %s[%lld];\n", b->dtype == MLC_F32 ? "float" : "int", bname(r, b),
                     (long long)b->local_len);
  }
  r->indent = 1;
  stmt(r, k->body);
  mlc_buf_puts(o, "}\n");
}

static const char *cuda_elem(mlc_dtype dt) {
  switch (dt) {
  case MLC_F32: return "float";
  case MLC_F16:
  case MLC_BF16: return "unsigned short";
  case MLC_I32: return "int";
  case MLC_U32: return "unsigned int";
  case MLC_I8: return "signed char";
  case MLC_U8: return "unsigned char";
  case MLC_I64: return "long long";
  default: return "void";
  }
}

/* CUDA: the parallel range is a grid of 1-D blocks, one index per thread (blockDim.x threads a
 * block, at most k->block: __launch_bounds__; the device launches with that size). Arguments come
 * as one mlc_kargs struct by value (kir_cuda_prelude). */
static void render_cuda(rctx *r) {
  const kir_kernel *k = r->k;
  mlc_buf *o = r->out;
  int block = k->block > 0 ? k->block : 128;
  if (k->lanes > 1) {
    /* the device reads this marker: it launches grid * lanes threads */
    /* lanes: a part of a warp, a warp, or a whole block (lanes == block) */
    MLC_ASSERT(k->lanes <= 32 ? 32 % k->lanes == 0 && block % 32 == 0 : k->lanes % 32 == 0 && block == k->lanes);
    mlc_buf_printf(o, "/* mlc_lanes=%d */\n", k->lanes);
  }
  int per = k->per_index > 1 ? k->per_index : 1;
  if (per > 1) /* and launches ceil(grid / per) indices */
    mlc_buf_printf(o, "/* mlc_per=%d */\n", per);
  if (k->row_tile > 0) /* times ceil(rows / row_tile) (kir_kernel.row_tile; rows: the step's, ip[MLC_KDYN]) */
    mlc_buf_printf(o, "/* mlc_rtile=%d */\n", k->row_tile);
  if (k->scratch[0] > 0) /* two scratch arguments after the op's, of rows times these bytes */
    mlc_buf_printf(o, "/* mlc_scratch=%lld,%lld */\n", (long long)k->scratch[0], (long long)k->scratch[1]);
  if (k->min_blocks > 0)
    mlc_buf_printf(o, "extern \"C\" __global__ void __launch_bounds__(%d, %d) %s(const mlc_kargs mlc_A) {\n", block,
                   k->min_blocks, k->name);
  else
    mlc_buf_printf(o, "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mlc_kargs mlc_A) {\n", block, k->name);
  /* the end of the range of indices (outputs / per_index, times the row tiles) */
  if (k->row_tile > 0) {
    MLC_ASSERT(k->tile_rows && k->lanes == block);
    mlc_buf_printf(o, "  const long long mlc_g1 = (mlc_A.g1 + %d) / %d * ((", per - 1, per);
    expr(r, k->tile_rows);
    mlc_buf_printf(o, " + %d) / %d);\n", k->row_tile - 1, k->row_tile);
  } else if (per > 1)
    mlc_buf_printf(o, "  const long long mlc_g1 = (mlc_A.g1 + %d) / %d;\n", per - 1, per);
  else
    mlc_buf_puts(o, "  const long long mlc_g1 = mlc_A.g1;\n");
  if (k->lanes > 1) {
    mlc_buf_puts(o, "  const long long mlc_t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n");
    mlc_buf_printf(o, "  const long long mlc_lane = mlc_t %% %d;\n", k->lanes);
    if (k->lanes < 32) {
      /* 32 / lanes indices per warp: the lane sums shuffle across the whole warp, so lanes of an
       * index past the range run on (on the last index) with their stores off (mlc_live) */
      mlc_buf_printf(o, "  if (mlc_A.g0 + mlc_t / 32 * %d >= mlc_g1) return;\n", 32 / k->lanes);
      mlc_buf_printf(o, "  const bool mlc_live = mlc_A.g0 + mlc_t / %d < mlc_g1;\n", k->lanes);
      mlc_buf_printf(o, "  const long long %s_0 = mlc_live ? mlc_A.g0 + mlc_t / %d : mlc_g1 - 1;\n", k->var_name[0],
                     k->lanes);
    } else {
      mlc_buf_printf(o, "  const long long %s_0 = mlc_A.g0 + mlc_t / %d;\n", k->var_name[0], k->lanes);
    }
  } else {
    mlc_buf_printf(o, "  const long long %s_0 = mlc_A.g0 + (long long)blockIdx.x * blockDim.x + threadIdx.x;\n", k->var_name[0]);
  }
  if (k->lanes <= 1 || k->lanes >= 32)
    mlc_buf_printf(o, "  if (%s_0 >= mlc_g1) return;\n", k->var_name[0]);
  /* programmatic dependent launch (sm_90; src/backend/cuda step graphs): wait for the kernels this
   * one depends on (a no-op when launched without the attribute), then let the next one launch */
  mlc_buf_puts(o, "#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900\n"
                  "  asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");\n"
                  "  asm volatile(\"griddepcontrol.launch_dependents;\" ::: \"memory\");\n"
                  "#endif\n");
  int ext = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      continue;
    mlc_buf_printf(o, "  %s%s *__restrict__ %s = (%s%s *)mlc_A.b[%d];\n", b->write ? "" : "const ", cuda_elem(b->dtype),
                   b->name, b->write ? "" : "const ", cuda_elem(b->dtype), ext++);
  }
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      mlc_buf_printf(o, "  %s%s %s[%lld];\n", b->shared ? "__shared__ __align__(16) " : "", cuda_elem(b->dtype), b->name,
                     (long long)b->local_len);
  }
  if (k->lanes > 32) /* block sums (nw floats) and cross-warp reductions (32 nw floats) */
    mlc_buf_printf(o, "  __shared__ float mlc_red[%d];\n", k->lanes);
  r->indent = 1;
  stmt(r, k->body);
  mlc_buf_puts(o, "}\n");
}

static const char *opencl_elem(mlc_dtype dt) {
  switch (dt) {
  case MLC_F32: return "float";
  case MLC_F16: return "half"; /* read only through vload_half */
  case MLC_BF16: return "ushort";
  case MLC_I32: return "int";
  case MLC_U32: return "uint";
  case MLC_I8: return "char";
  case MLC_U8: return "uchar";
  case MLC_I64: return "long";
  default: return "void";
  }
}

/* OpenCL C: one __kernel per kernel; each buffer is a (pointer, byte offset) argument pair (so a
 * view needs no aligned sub-buffer), then ip[16] and fp[4] as scalar arguments, then the range
 * [g0, g1). One work-item per index; the host rounds the global size up to its work-group size. */
static void render_opencl(rctx *r) {
  const kir_kernel *k = r->k;
  mlc_buf *o = r->out;
  mlc_buf_printf(o, "__kernel void %s(", k->name);
  int ext = 0;
  for (int i = 0; i < k->nbuf; i++)
    if (!k->bufs[i].local) {
      mlc_buf_printf(o, "__global %s%s *mlc_b%d, long mlc_o%d, ", k->bufs[i].write ? "" : "const ",
                     opencl_elem(k->bufs[i].dtype), ext, ext);
      ext++;
    }
  for (int i = 0; i < 16; i++)
    mlc_buf_printf(o, "long ip%d, ", i);
  for (int i = 0; i < 4; i++)
    mlc_buf_printf(o, "float fp%d, ", i);
  mlc_buf_puts(o, "long mlc_g0, long mlc_g1) {\n");
  mlc_buf_printf(o, "  const long %s_0 = mlc_g0 + (long)get_global_id(0);\n", k->var_name[0]);
  mlc_buf_printf(o, "  if (%s_0 >= mlc_g1) return;\n", k->var_name[0]);
  mlc_buf_puts(o, "  const long ip[16] = {ip0, ip1, ip2, ip3, ip4, ip5, ip6, ip7, ip8, ip9, ip10, ip11, ip12, ip13, ip14, ip15};\n");
  mlc_buf_puts(o, "  const float fp[4] = {fp0, fp1, fp2, fp3};\n  (void)ip; (void)fp;\n");
  ext = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      continue;
    const char *c = b->write ? "" : "const ", *t = opencl_elem(b->dtype);
    mlc_buf_printf(o, "  __global %s%s *restrict %s = (__global %s%s *)((__global %schar *)mlc_b%d + mlc_o%d);\n", c, t,
                   bname(r, b), c, t, c, ext, ext);
    ext++;
  }
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      mlc_buf_printf(o, "  %s %s[%lld];\n", opencl_elem(b->dtype), b->name, (long long)b->local_len);
  }
  r->indent = 1;
  stmt(r, k->body);
  mlc_buf_puts(o, "}\n");
}

void kir_render(const kir_kernel *k, kir_lang lang, mlc_buf *out) {
  rctx r = {.k = k, .L = &LANGS[lang], .lang = lang, .out = out};

  MLC_ASSERT(k->lanes <= 1 || lang == KIR_LANG_CUDA || lang == KIR_LANG_GLSL); /* lanes: CUDA and GLSL so far */
  MLC_ASSERT(k->grid_step <= 1 || lang == KIR_LANG_C); /* range steps: the C target */
  MLC_ASSERT(k->per_index <= 1 || lang == KIR_LANG_CUDA || lang == KIR_LANG_GLSL); /* outputs per index */
  MLC_ASSERT(k->row_tile <= 0 || lang == KIR_LANG_CUDA);  /* tiles of rows: CUDA (an alt kernel: ignored elsewhere) */
  if (lang == KIR_LANG_C)
    render_c(&r);
  else if (lang == KIR_LANG_CUDA) {
    render_cuda(&r);
    if (k->alt) { /* the device reads the markers after this line as the alternative's */
      MLC_ASSERT(k->alt_rows > 0 && !k->alt->alt);
      mlc_buf_printf(out, "/* mlc_alt rows=%d */\n", k->alt_rows);
      rctx ra = r;
      ra.k = k->alt;
      render_cuda(&ra);
      if (k->alt->pre) { /* and those after this one as its preparation's */
        MLC_ASSERT(!k->alt->pre->alt && !k->alt->pre->pre);
        mlc_buf_puts(out, "/* mlc_pre */\n");
        ra.k = k->alt->pre;
        render_cuda(&ra);
      }
    }
  }
  else if (lang == KIR_LANG_OPENCL)
    render_opencl(&r);
  else
    render_glsl(&r);
}
