/*
 * graph.h: the model graph IR. Architectures build it (src/model/), passes rewrite it
 * (passes.c), the memory planner places its activations (plan.c), and the runtime lowers each
 * op to a kernel (src/kernel/lower.c) and runs the launch plan.
 *
 * Every tensor is logically 2-D: [rows, cols], where rows is symbolic (mlc_sym: a linear form in
 * the step's dynamic sizes n = tokens in this step and m = rows of logits wanted) and cols is
 * a constant. Higher-dimensional meaning (heads, experts) is written in shape comments where a
 * tensor is made. No padding: a step of n tokens computes exactly n rows.
 */
#ifndef MLC_GRAPH_H
#define MLC_GRAPH_H

#include "format/format.h"

/* c + n*N + m*M */
typedef struct mlc_sym {
  int64_t c, n, m;
} mlc_sym;
static inline mlc_sym mlc_sym_c(int64_t c) { return (mlc_sym){c, 0, 0}; }
static inline mlc_sym mlc_sym_n(int64_t a) { return (mlc_sym){0, a, 0}; }
static inline mlc_sym mlc_sym_m(int64_t a) { return (mlc_sym){0, 0, a}; }
static inline int64_t mlc_sym_eval(mlc_sym s, int64_t n, int64_t m) { return s.c + s.n * n + s.m * m; }
static inline mlc_sym mlc_sym_scale(mlc_sym s, int64_t k) { return (mlc_sym){s.c * k, s.n * k, s.m * k}; }
static inline bool mlc_sym_eq(mlc_sym a, mlc_sym b) { return a.c == b.c && a.n == b.n && a.m == b.m; }

typedef enum mlc_tkind {
  MLC_T_ACT = 0, /* activation: placed by the memory planner */
  MLC_T_WEIGHT,  /* model weight: points into the mapped file or a load-time buffer */
  MLC_T_INPUT,   /* bound per step by the runtime: ids, positions, page table ... */
  MLC_T_CONST,   /* small host-computed constant (rope inverse frequencies) */
  MLC_T_KV,      /* one layer's view of the paged KV cache */
  MLC_T_VIEW     /* rows/columns of another tensor */
} mlc_tkind;

/* Runtime inputs, bound per step. */
typedef enum mlc_input {
  MLC_IN_IDS = 0, /* [n] i32 token ids */
  MLC_IN_POS,     /* [n] i32 position of each token in its sequence */
  MLC_IN_SEQ,     /* [n] i32 sequence slot of each token (row of the page table) */
  MLC_IN_PAGES,   /* [n_seq, max_pages] i32 page table */
  MLC_IN_ROWS,    /* [m] i32 the rows of this step whose logits are wanted */
  MLC_IN_SAMPLE,  /* [m, MLC_SAMPLE_SLOTS] f32 per logits row, what MLC_OP_SAMPLE draws with (below) */
  MLC_IN_COUNT
} mlc_input;

/* The slots of a row of MLC_IN_SAMPLE: temperature (<= 0: greedy), top_p (off unless in (0, 1)),
 * top_k (off unless in [1, live tokens)), min_p (off unless in (0, 1]) and the uniform draw in
 * [0, 1) the host took from the request's seeded generator (docs/engine.md "Sampling on the device"). */
enum { MLC_SAMPLE_TEMP = 0, MLC_SAMPLE_TOP_P, MLC_SAMPLE_TOP_K, MLC_SAMPLE_MIN_P, MLC_SAMPLE_U, MLC_SAMPLE_SLOTS = 8 };

typedef struct mlc_tensor {
  char name[96];
  mlc_tkind kind;
  mlc_dtype dtype;
  mlc_sym rows;
  int64_t cols;
  /* views: element offset into src (may depend on n, m) and the source's row stride */
  int view_src;
  mlc_sym view_off;
  int64_t row_stride; /* elements between consecutive rows (cols unless a view) */
  /* weights / consts */
  const void *data;
  int scale_tensor; /* packed quantized weights (mlc_dtype_is_quant): the group scales, else -1 */
  int input;  /* MLC_T_INPUT: which */
  int layer;  /* MLC_T_KV: which layer */
  /* memory plan (MLC_T_ACT) */
  size_t offset, size_max;
  int first_def, last_use;
  bool is_output;
} mlc_tensor;

typedef enum mlc_opkind {
  MLC_OP_EMBED = 0,    /* in: ids [n,1] i32, table [V,H]; out [n,H]; fa0 scale */
  MLC_OP_RMSNORM,      /* in: x [R,C], w [D]; out [R,C]; groups of D; ia0 D, ia1 add_one; fa0 eps */
  MLC_OP_ADD,          /* in: a, b [R,C]; out a+b */
  MLC_OP_ADD_RMSNORM,  /* in: a, b [R,C], w [C]; out0 a+b, out1 rmsnorm(a+b); ia1 add_one; fa0 eps */
  MLC_OP_MATMUL,       /* in: x [R,K], W [N,K] (experts: [E*N,K]), bias [N] or -1, ids [R_out] or -1;
                          out [R_out,N]; ia0 N, ia1 experts in_div (0: dense); fa0 softcap (0: none) */
  MLC_OP_GATED_MATMUL, /* in: x, Wg, Wu, ids or -1; out act(x Wg^T) * (x Wu^T) [R_out,F];
                          ia0 F, ia1 in_div (0: dense), ia2 act, ia3 up row offset inside Wu */
  MLC_OP_ACT_MUL,      /* in: a [R,F], b [R,F] (views allowed); out act(a)*b; ia2 act */
  MLC_OP_SOFTCAP,      /* in: x; out tanh(x/c)*c; fa0 c */
  MLC_OP_DEQUANT,      /* in: W (stored type); out f32 copy [rows,cols] */
  MLC_OP_ROPE,         /* in: x [n,H*D] (view ok), pos, inv_freq [rot/2]; out [n,H*D]; ia0 H, ia1 D, ia2 rot;
                          fa0 cos/sin scale */
  MLC_OP_KV_APPEND,    /* in: k [n,Hkv*D], v [n,Hkv*D] (views ok), pos, seq, pages, kv; no out;
                          ia0 Hkv, ia1 D */
  MLC_OP_ROPE_KV,      /* fused ROPE(q) + ROPE(k) + KV_APPEND: in q, k, v, pos, seq, pages, inv_freq, kv;
                          out q_rot [n,Hq*D]; ia0 Hq, ia1 Hkv, ia2 D, ia3 rot; fa0 cos/sin scale */
  MLC_OP_ATTENTION,    /* in: q [n,Hq*D], pos, seq, pages, kv; out [n,Hq*D]; ia0 Hq, ia1 Hkv, ia2 D,
                          ia3 window (0: none), ia4 splits S (0/1: none; S > 1: out is [n, Hq*S*(D+2)], per
                          (token, head, split) the max score, the softmax denominator and the unnormalised
                          output of the split's positions, for MLC_OP_ATTN_COMBINE); fa0 scale, fa1 softcap */
  MLC_OP_MOE_ROUTE,    /* in: logits [n,E]; out0 weights [n*k,1] f32, out1 expert ids [n*k,1] i32;
                          ia0 E, ia1 k, ia2 renormalise */
  MLC_OP_MOE_COMBINE,  /* in: y [n*k,H], weights [n*k,1]; out [n,H] = sum_k w*y; ia0 k */
  MLC_OP_GATHER_ROWS,  /* in: x [n,C], rows [m] i32; out [m,C] = x[rows[i], :] */
  MLC_OP_ALLREDUCE,    /* tensor parallel: in x [R,C] (this rank's partial sum); out [R,C] = sum over ranks */
  MLC_OP_ALLGATHER,    /* tensor parallel: in x [R,C/N] (this rank's columns); out [R,C], rank r's at r*C/N */
  MLC_OP_ATTN_COMBINE, /* in: split attention partials [n, Hq*S*(D+2)]; out [n,Hq*D]; ia0 Hq, ia1 D, ia2 S */
  MLC_OP_SAMPLE,       /* in: logits [m,V], params [m, MLC_SAMPLE_SLOTS] (MLC_IN_SAMPLE); out tokens [m,1] i32: per
                          row greedy or a draw from the filtered softmax (lower.c rule_sample); added after the
                          logits by the runtime (model.c), launched only in steps that sample on the device */
  MLC_OP_COUNT
} mlc_opkind;

#define MLC_OP_MAX_IN 8
typedef struct mlc_op {
  mlc_opkind kind;
  int in[MLC_OP_MAX_IN];
  int nin;
  int out[2];
  int nout;
  int64_t ia[6];
  float fa[3];
  int layer;
  bool dead;
} mlc_op;

typedef struct mlc_graph {
  mlc_tensor *t;
  int nt, capt;
  mlc_op *ops;
  int nops, capops;
  int logits; /* the output tensor */
  int tokens; /* MLC_OP_SAMPLE's output (-1: none) */
  mlc_status status; /* first error while building (missing weight ...) */
  int64_t max_n;     /* upper bound of n used by the planner */
  size_t arena_size; /* after planning */
} mlc_graph;

void mlc_graph_init(mlc_graph *g);
void mlc_graph_free(mlc_graph *g);
const char *mlc_op_name(mlc_opkind k);

int mlc_g_tensor(mlc_graph *g, const char *name, mlc_tkind kind, mlc_dtype dt, mlc_sym rows, int64_t cols);
int mlc_g_act(mlc_graph *g, const char *name, mlc_sym rows, int64_t cols); /* f32 activation */
int mlc_g_view(mlc_graph *g, int src, const char *name, mlc_sym rows, int64_t cols, mlc_sym off);
/* Appends an op; returns its index. */
int mlc_g_op(mlc_graph *g, mlc_opkind kind, const int *in, int nin, const int *out, int nout);
/* The tensor a view ultimately refers to. */
int mlc_g_root(const mlc_graph *g, int t);

/* ---- passes (passes.c) ---- */
typedef struct mlc_pass_stats {
  int dequant_fused, add_norm_fused, gated_fused, softcap_fused, rope_kv_fused, dead_removed;
} mlc_pass_stats;
/* Runs every fusion pass and dead-op elimination. */
void mlc_passes_run(mlc_graph *g, mlc_pass_stats *st);
int mlc_pass_fuse_dequant(mlc_graph *g);
int mlc_pass_fuse_add_rmsnorm(mlc_graph *g);
int mlc_pass_fuse_gated(mlc_graph *g);
int mlc_pass_fuse_softcap(mlc_graph *g);
int mlc_pass_fuse_rope_kv(mlc_graph *g);
int mlc_pass_dce(mlc_graph *g);
/* Attention over S splits of the positions (flash decoding), each a partial softmax state,
 * merged by an MLC_OP_ATTN_COMBINE inserted after it: S times the parallelism of a decode step. */
int mlc_pass_split_attention(mlc_graph *g, int S);

/* ---- static memory planning (plan.c) ---- */
/* Places every activation in one arena, sized for n <= max_n (m <= n): tensors whose lifetimes
 * do not overlap share bytes. Nothing is allocated while decoding. */
mlc_status mlc_plan_memory(mlc_graph *g, int64_t max_n);

#endif
