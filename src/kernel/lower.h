/*
 * lower.h: schedules. Each graph op kind has a rule that writes its kernel in the kernel IR,
 * specialised (sizes and float attributes become literals) or generic (they are read from the
 * param arrays), with tunables per target language.
 *
 * Parameter layout shared by every kernel: ip[0..11] are the descriptor's sizes, ip[12..15] the
 * dynamic values of the step (row counts), fp[0..3] the float attributes. A specialised kernel
 * ignores the slots it has as literals, so one launch record serves both forms.
 */
#ifndef MLC_LOWER_H
#define MLC_LOWER_H

#include "compiler/graph.h"
#include "kernel/kir.h"

#define MLC_KSIZES 12
#define MLC_KDYN 12  /* first dynamic slot */
#define MLC_KIP 16   /* total integer params */
#define MLC_KFP 4
#define MLC_KVARS 4
#define MLC_GENERIC_MAX_HEAD_DIM 256 /* local arrays of generic attention/rope kernels */
#define MLC_KV_PAGE 16               /* tokens per KV page */

typedef enum mlc_act_kind { MLC_KACT_SILU = 0, MLC_KACT_GELU_TANH = 1, MLC_KACT_GELU = 2 } mlc_act_kind;

typedef struct mlc_kdesc {
  mlc_opkind kind;
  int var[MLC_KVARS];        /* structural variant: part of the generic kernel's key */
  int64_t size[MLC_KSIZES];  /* literals when specialised */
  float fv[MLC_KFP];         /* literals when specialised */
  bool generic;
} mlc_kdesc;

typedef struct mlc_tunables {
  int dot_lanes;   /* independent accumulators in a dot product (the SIMD width in floats) */
  int unroll_max;  /* longest loop the schedule fully unrolls */
  int block;       /* GPU languages: threads per block (kir_kernel.block); 0: the renderer's default */
  int lanes;       /* lanes a GEMV schedule may give one output (kir_kernel.lanes); 0/1: none */
  int qlanes;      /* lanes per output of the packed-weight GEMV (lower.c wdot_qlanes); 0/1: none */
  int qlanes_per;  /* outputs per parallel index of that GEMV, sharing the x loads (qlanes_per); 0/1: one */
  int row_block;   /* threads (a multiple of 32) given one row of a norm / embed / add; 0: a warp (lanes) */
  int attn_warps;  /* warps given one (token, head) of decode attention, split over the positions; 0/1: one */
  int attn_splits; /* blocks (graph: attention partials + attn_combine) the positions of one (token, head)
                    * are split over (model.c, passes.c mlc_pass_split_attention); 0/1: none */
  int vec;         /* C: register-blocked matmul tiles of KIR_VW-lane vectors (0: none) */
  int tile_rows;   /* C tiles: rows of x held in registers */
  int tile_cols;   /* C tiles: output columns (weight rows) held in registers */
  int deq_il_rows; /* C tiles: steps of this many rows dequantize interleaved weights once per tile */
  int int8_act;    /* C tiles: 4-bit weights multiply 8-bit quantized activations (integer dot products) */
  int i8_rows;     /* C tiles with 8-bit activations: rows of x per tile */
  int i8_gemv;     /* GPUs: the packed 4-bit GEMV multiplies 8-bit activations by integer dot products
                    * (lower.c qgemv_i8), `i8_gemv` outputs per parallel index at most */
  int mma_rows;    /* CUDA: steps of at least this many rows run those GEMVs as an int8 tensor-core GEMM
                    * (lower.c qgemm_i8, the kernel's alternative: kir_kernel.alt); 0: never */
} mlc_tunables;
const mlc_tunables *mlc_tunables_for(kir_lang lang);
/* The language's tunables for one device: without 8-bit integer dot products (mlc_device_caps
 * int8_dot false) the GPU GEMVs keep f32 activations (i8_gemv 0). */
mlc_tunables mlc_tunables_dev(kir_lang lang, bool int8_dot);

/* Writes the kernel for d. The name is "g_<key>" for generic kernels, "k_<hash>" otherwise. */
kir_kernel *mlc_lower(const mlc_kdesc *d, const mlc_tunables *tu);
/* "matmul_2_1_0_0": the op name and the variant, which identifies a generic kernel. */
void mlc_kdesc_key(const mlc_kdesc *d, char *buf, size_t n);
/* For kgen: the number of values each variant slot takes for this op kind (0: slot unused). */
void mlc_kvariant_ranges(mlc_opkind kind, int ranges[MLC_KVARS]);
/* For kgen: false for combinations inside the ranges that name no kernel (a weight-dtype slot
 * holding an integer dtype). */
bool mlc_kvariant_valid(const mlc_kdesc *d);
/* Whether ops of this kind run a kernel (collectives move data between ranks instead). */
bool mlc_op_has_kernel(mlc_opkind kind);
/* Launch records of ops reading packed quantized weights (embed, matmul, gated_matmul,
 * dequant): appends each such weight's scale tensor to bufs (the kernels declare the scale
 * buffers last) and sets the KN layout's row counts; returns the new buffer count. */
int mlc_kdesc_quant(const mlc_graph *g, const mlc_op *o, mlc_kdesc *d, int *bufs, int nb);
/* Number of external buffers the kernel of this kind takes (for the given variant). */
int mlc_kdesc_nbufs(const mlc_kdesc *d);

#endif
