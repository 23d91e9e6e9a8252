/*
 * kir.h: the kernel IR. One small IR for every generated kernel, rendered to C (CPU) and to GPU
 * languages (GLSL compute) by one table-driven emitter (render.c).
 *
 * A kernel is a body run for every index g of a one-dimensional parallel range [g0, g1): the
 * runtime splits the range across CPU threads, or maps it to GPU invocations. Inside, the body is
 * a tree of statements (serial/unrolled loops, locals, stores, ifs) over typed expressions
 * (constants, integer and float scalar parameters, loop variables, loads, arithmetic).
 *
 * Expressions are interned in the kernel's arena: building the same expression twice returns the
 * same node, so structural equality is pointer equality (free CSE for the renderer's let-binding).
 * Builders fold constants, so a kernel specialised for its sizes carries literals, not parameters.
 *
 * Calling convention of every rendered kernel (C):
 *   void NAME(void *const *bufs, const int64_t *ip, const float *fp, int64_t g0, int64_t g1)
 *   bufs: buffer pointers in kernel buffer order; ip: integer params; fp: float params.
 */
#ifndef MLC_KIR_H
#define MLC_KIR_H

#include "format/format.h"

/* KIR_VF32 / KIR_VI32: vectors of KIR_VW f32 / i32 lanes (C target: GCC vector extensions, which
 * every C compiler we use lowers to the host's SIMD width; docs/compiler.md "Vectors") */
typedef enum kir_type { KIR_F32 = 0, KIR_I64 = 1, KIR_BOOL = 2, KIR_VF32 = 3, KIR_VI32 = 4 } kir_type;
#define KIR_VW 16

typedef enum kir_op {
  /* leaves */
  KIR_CONST,  /* f or i */
  KIR_IPARAM, /* integer param index a */
  KIR_FPARAM, /* float param index a */
  KIR_VAR,    /* variable a (loop variable, local scalar, or the grid index 0) */
  KIR_LOAD,   /* buffer a [src0]; float element types load as f32, integer ones as i64 */
  KIR_LANE,   /* i64: this invocation's lane in [0, kernel lanes) (docs/backends.md) */
  KIR_GCNT,   /* i64 (C): indices this iteration of the range loop covers, min(grid_step, g1 - g) */
  /* binary */
  KIR_ADD, KIR_SUB, KIR_MUL, KIR_DIV, KIR_MOD, KIR_MAX, KIR_MIN,
  KIR_LT, KIR_LE, KIR_EQ, KIR_NE, KIR_AND, KIR_OR,
  KIR_SHR, KIR_BITAND, /* integer: a >> b (b < 32, a >= 0), a & b (packed quantized weights) */
  KIR_SHL, KIR_BITOR,  /* integer, 32-bit words: (a << b) & 0xffffffff (b < 32), a | b (packing bytes) */
  KIR_BITXOR,          /* integer, 32-bit words: a ^ b */
  /* unary */
  KIR_NEG, KIR_EXP, KIR_LOG, KIR_SQRT, KIR_TANH, KIR_ABS, KIR_ERF, KIR_COS, KIR_SIN,
  KIR_TOF, /* i64 -> f32; i = 1 (kir_tof_exact): |src0| < 2^22, which GPUs convert by two full-rate
            * instructions (the integer added to the bits of 1.5 * 2^23, then that float subtracted) */
  KIR_TOI, KIR_NOT,
  KIR_ROUND, /* f32: to the nearest integer, halves to even (C rintf in the default rounding mode);
              * TOI(ROUND(x)) needs |x| < 2^22 (CUDA converts by adding 1.5 * 2^23) */
  KIR_LANE_SUM, /* f32: the sum of src0 over the lanes of this parallel index, on every lane (i = 32:
                 * over this lane's warp only, in kernels whose lanes are several warps) */
  KIR_LANE_XRED, /* f32, kernels whose lanes are several warps: over the warps, of the lanes with this
                  * lane's index within its warp; i = 0 sum, 1 max (kir_lane_red) */
  /* ternary */
  KIR_SELECT, /* src0 ? src1 : src2 */
  /* statements */
  KIR_SEQ,    /* list */
  KIR_FOR,    /* var a from src0 to src1 (exclusive), body src2; i = loop kind */
  KIR_LOCAL,  /* declare scalar var a of type, init src0 */
  KIR_ASSIGN, /* var a = src0 */
  KIR_STORE,  /* buffer a [src0] = src1 */
  KIR_IF,     /* if src0 then src1 (else src2 if not NULL) */
  KIR_VLOAD,  /* local array i [0..len) = buffer a [src0 ..], src0 a multiple of len (one wide load);
               * with src1, src2 (constants): elements [src1, src1 + src2) of the array */
  /* vectors (C target): */
  KIR_VLD,    /* expr: KIR_VW consecutive elements of buffer a from [src0] (f32/f16/bf16 -> VF32, 32-bit ints -> VI32) */
  KIR_VBCAST, /* expr: src0 (f32 or i64) in every lane */
  KIR_VSUM,   /* expr: f32, the lanes of src0 summed in one fixed order (pairwise halving) */
  KIR_VSTORE, /* stmt: f32 buffer a [src0 .. src0 + KIR_VW) = src1 */
  KIR_VLD4,   /* expr: VF32, elements [src0 .. src0 + 4) of f32/f16 buffer a, each in 4 consecutive lanes */
  KIR_VDOT,   /* expr: VI32 src0 + per lane the dot of its 4 bytes of src1 (unsigned) and src2 (signed) */
  KIR_DP4A,   /* expr, scalar i64: src0 + the dot of the 4 signed bytes of the 32-bit words src1 and src2
               * (CUDA __dp4a; 8-bit activation GEMVs on GPUs, lower.c wdot_i8) */
  /* blocks of threads (CUDA; kernels whose lanes are the whole block, so a parallel index is a block): */
  KIR_BARRIER, /* stmt: every thread of the block reaches it before any goes on, and the block's shared
                * array writes before it are seen after it (__syncthreads) */
  KIR_MMA_S8,  /* stmt, CUDA sm_80+: i32 local array a [i .. i + 4) = the warp's 16 x 8 tile A B of one
                * mma.sync m16n8k32 with s8 inputs (a fresh sum, no accumulator): list[0..4) the A
                * fragment's words, list[4..6) the B fragment's (PTX fragment layout; lower.c qgemm_i8) */
  KIR_LANE_MAX, /* f32: the maximum of src0 over the lanes of this parallel index, on every lane (lower.c
                 * rule_sample; one lane: src0) */
  KIR_OP_COUNT
} kir_op;

/* KIR_LOOP_VECTOR: a short loop left rolled so the C compiler's loop vectoriser takes it (a
 * fully unrolled one is left to SLP, which misses the packed-weight lanes); a plain loop on GPUs */
typedef enum kir_loop { KIR_LOOP_SERIAL = 0, KIR_LOOP_UNROLL = 1, KIR_LOOP_VECTOR = 2 } kir_loop;

typedef struct kir_node kir_node;
struct kir_node {
  kir_op op;
  kir_type type;
  int a;          /* var / buffer / param index */
  int64_t i;      /* integer constant, loop kind */
  double f;       /* float constant */
  kir_node *src[3];
  kir_node **list; /* KIR_SEQ */
  int nlist;
  int uses;       /* filled by the renderer */
  kir_node *hnext; /* intern table chain */
  int id;
};

#define KIR_MAX_BUFS 16
#define KIR_MAX_VARS 512
#define KIR_MAX_PARAMS 24

typedef struct kir_buf {
  char name[24];
  mlc_dtype dtype; /* element type in memory */
  bool write;
  bool local;      /* a private array of local_len elements (per invocation) */
  bool shared;     /* (with local) one array of local_len elements per block, shared by its threads (CUDA
                    * __shared__; kir_buf_shared) */
  int64_t local_len;
  struct kir_node *scratch_len; /* C: a per-thread scratch array of this many elements (dynamic), kept across calls */
} kir_buf;

typedef struct kir_arena kir_arena;

typedef struct kir_kernel {
  char name[96];
  kir_arena *arena;
  kir_buf bufs[KIR_MAX_BUFS];
  int nbuf;        /* including local arrays */
  int nvar;        /* var 0 is the grid index */
  kir_type var_type[KIR_MAX_VARS];
  char var_name[KIR_MAX_VARS][16];
  int nip, nfp;    /* number of integer / float params the kernel reads */
  kir_node *body;
  kir_node **intern; /* hash table */
  int intern_cap;
  int nnodes;
  int block;       /* GPU languages: threads per block (0: the renderer's default) */
  int lanes;       /* invocations cooperating on one parallel index (0 or 1: one); KIR_LANE, KIR_LANE_SUM */
  int grid_step;   /* C: the range loop steps by this many indices (0/1: one); KIR_GCNT says how many remain */
  int min_blocks;  /* CUDA: blocks an SM should hold at once (__launch_bounds__'s second argument, which caps
                    * the registers a thread uses); 0: no bound */
  int per_index;   /* CUDA: outputs per parallel index (0/1: one): the device launches ceil(grid / per_index)
                    * indices and the body covers outputs [g * per_index, (g + 1) * per_index) */
  kir_node *prologue; /* C: statements run once per call (per thread) before the range loop */
  /* CUDA: a 2-D range of tiles. With row_tile > 0 the device launches ceil(grid / per_index) *
   * ceil(rows / row_tile) indices, rows = the value of tile_rows (an expression of the integer
   * params: the step's row count) */
  int row_tile;
  struct kir_node *tile_rows;
  /* CUDA: a second kernel for the same op and arguments, rendered into the same source, which the
   * device launches in this one's place when the step has at least alt_rows rows (the prefill
   * GEMM beside the decode GEMV; kir_free frees it with this one) */
  struct kir_kernel *alt;
  int alt_rows;
  /* CUDA: a kernel the device launches right before this one, with the same arguments (an
   * alternative's preparation: the prefill GEMM's x quantization); kir_free frees it */
  struct kir_kernel *pre;
  /* CUDA: with scratch[0] > 0 the kernel takes two more buffer arguments after the op's: device
   * scratch of rows * scratch[0] and rows * scratch[1] bytes (rows: tile_rows' value), which it
   * shares with its `pre` kernel (the device owns the memory) */
  int64_t scratch[2];
} kir_kernel;

kir_kernel *kir_new(const char *name);
void kir_free(kir_kernel *k);

/* declarations */
int kir_buf_arg(kir_kernel *k, const char *name, mlc_dtype dt, bool write); /* external buffer */
int kir_buf_local(kir_kernel *k, const char *name, mlc_dtype dt, int64_t len);
int kir_var(kir_kernel *k, const char *name, kir_type t);
/* CUDA: an array of len elements shared by the threads of a block (loads and stores as for a
 * local array; KIR_BARRIER orders them) */
int kir_buf_shared(kir_kernel *k, const char *name, mlc_dtype dt, int64_t len);

/* expressions (interned, constant-folded) */
kir_node *kir_i(kir_kernel *k, int64_t v);
kir_node *kir_f(kir_kernel *k, double v);
kir_node *kir_ip(kir_kernel *k, int idx); /* integer param */
kir_node *kir_fp(kir_kernel *k, int idx); /* float param */
kir_node *kir_v(kir_kernel *k, int var);
kir_node *kir_grid(kir_kernel *k);        /* the parallel index */
kir_node *kir_load(kir_kernel *k, int buf, kir_node *idx);
kir_node *kir_bin(kir_kernel *k, kir_op op, kir_node *a, kir_node *b);
kir_node *kir_un(kir_kernel *k, kir_op op, kir_node *a);
kir_node *kir_sel(kir_kernel *k, kir_node *c, kir_node *a, kir_node *b);
/* float(a) for an integer a known to lie in (-2^22, 2^22) (KIR_TOF with i = 1) */
kir_node *kir_tof_exact(kir_kernel *k, kir_node *a);
#define KADD(k, a, b) kir_bin(k, KIR_ADD, a, b)
#define KSUB(k, a, b) kir_bin(k, KIR_SUB, a, b)
#define KMUL(k, a, b) kir_bin(k, KIR_MUL, a, b)
#define KDIV(k, a, b) kir_bin(k, KIR_DIV, a, b)

/* statements (not interned) */
kir_node *kir_seq(kir_kernel *k, kir_node **items, int n);
kir_node *kir_for(kir_kernel *k, int var, kir_node *lo, kir_node *hi, kir_loop kind, kir_node *body);
kir_node *kir_local(kir_kernel *k, int var, kir_node *init);
kir_node *kir_assign(kir_kernel *k, int var, kir_node *val);
kir_node *kir_store(kir_kernel *k, int buf, kir_node *idx, kir_node *val);
kir_node *kir_if(kir_kernel *k, kir_node *c, kir_node *then_, kir_node *else_);
/* lanes (k->lanes > 1): the lane index; local array `local` = buf[idx .. idx + its length) */
kir_node *kir_lane(kir_kernel *k);
/* KIR_LANE_SUM / KIR_LANE_XRED with their mode i (see the enum); KIR_LANE_MAX (mode 0) */
kir_node *kir_lane_red(kir_kernel *k, kir_op op, kir_node *a, int64_t mode);
/* C, kernels with grid_step > 1: the indices [g, g + gcnt) this iteration covers */
kir_node *kir_gcnt(kir_kernel *k);
kir_node *kir_vload(kir_kernel *k, int local, int buf, kir_node *idx);
/* the same into elements [off, off + n) of the local array (src1 = off, src2 = n) */
kir_node *kir_vload_at(kir_kernel *k, int local, int64_t off, int64_t n, int buf, kir_node *idx);
/* vectors (C target only): load, broadcast, horizontal sum, store. Arithmetic (kir_bin: + - * max
 * min, and >> & on VI32) and KIR_TOF (VI32 -> VF32) take vectors as they take scalars. */
kir_node *kir_vld(kir_kernel *k, int buf, kir_node *idx);
kir_node *kir_vbcast(kir_kernel *k, kir_node *x);
kir_node *kir_vsum(kir_kernel *k, kir_node *v);
kir_node *kir_vstore(kir_kernel *k, int buf, kir_node *idx, kir_node *v);
kir_node *kir_vld4(kir_kernel *k, int buf, kir_node *idx);
kir_node *kir_vdot(kir_kernel *k, kir_node *acc, kir_node *u8, kir_node *s8);
/* scalar: acc + sum of the 4 signed-byte products of the 32-bit words a and b (KIR_DP4A) */
kir_node *kir_dp4a(kir_kernel *k, kir_node *acc, kir_node *a, kir_node *b);
/* statements of block kernels: a barrier; one int8 tensor-core tile (KIR_MMA_S8) into d[off .. off + 4)
 * of the i32 local array d from the A words a[4] and the B words b[2] */
kir_node *kir_barrier(kir_kernel *k);
kir_node *kir_mma_s8(kir_kernel *k, int d, int64_t off, kir_node *const *a, kir_node *const *b);
/* C: a per-thread scratch array of len (an expression of params) elements, written by the
 * kernel's prologue and read by its body (kir_kernel.prologue) */
int kir_buf_scratch(kir_kernel *k, const char *name, mlc_dtype dt, kir_node *len);

/* A statement-list builder. */
typedef struct kir_block {
  kir_node *items[64];
  int n;
} kir_block;
void kir_push(kir_block *b, kir_node *s);
kir_node *kir_block_done(kir_kernel *k, kir_block *b);

/* Integer params the kernel reads: the largest index referenced + 1 (computed on the body). */
void kir_finish(kir_kernel *k, kir_node *body);

/* ---- renderers ---- */
typedef enum kir_lang {
  KIR_LANG_C = 0,
  KIR_LANG_GLSL = 1,
  KIR_LANG_OPENCL = 2, /* OpenCL C 1.2 __kernel functions, one parallel index per work-item (render.c) */
  KIR_LANG_CUDA = 3, /* extern "C" __global__ kernels, one parallel index per thread (render.c) */
} kir_lang;
/* Appends the kernel's source in the language to out. For C, emits one function named k->name.
 * For GLSL, emits a whole compute shader (one kernel per shader). */
void kir_render(const kir_kernel *k, kir_lang lang, mlc_buf *out);
/* The prelude every C translation unit of kernels starts with (helpers for f16/bf16). */
const char *kir_c_prelude(void);
/* The prelude every CUDA module starts with: the kernel argument struct (mlc_kargs, passed by
 * value: buffer addresses, ip[16], fp[4], the range [g0, g1)) and the f16/bf16 bit conversions.
 * The host fills the same layout (src/backend/cuda). */
const char *kir_cuda_prelude(void);
/* The prelude every OpenCL program of kernels starts with (bf16 conversion, integer min/max). */
const char *kir_opencl_prelude(void);

/* GLSL as a device compiles it: the lines of src for features the device lacks blanked (subgroup
 * arithmetic: the lane sums keep their shared-memory paths; the integer dot product: KIR_DP4A by
 * its emulation). *out: a copy to free, or NULL where nothing needed blanking. */
mlc_status kir_glsl_for_device(const char *src, bool subgroups, bool int_dot, char **out);

/* Host-side evaluation of an expression with no loads/vars (used by tests). */

#endif
