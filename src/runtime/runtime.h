/* runtime.h: internals of a loaded model shared by the runtime, the engine and the tests. */
#ifndef MLC_RUNTIME_H
#define MLC_RUNTIME_H

#include "backend/device.h"
#include "compiler/graph.h"
#include "kernel/lower.h"
#include "model/arch.h"

typedef struct mlc_launch {
  int op;                  /* index in the graph */
  mlc_kdesc d;
  int kidx;                /* kernel index in the device module */
  int nbuf;
  int buf[KIR_MAX_BUFS];   /* tensor bound to each buffer */
  int64_t ip[MLC_KIP];     /* sizes; dynamic slots filled per step */
  mlc_sym dyn[4];
  float fp[MLC_KFP];
  mlc_sym grid;
  char name[96];
} mlc_launch;

struct mlc_model {
  mlc_model_options opt;
  mlc_model_config cfg;
  char *dir;
  mlc_st_set *st;
  mlc_owned owned;
  mlc_graph g;
  mlc_pass_stats passes;
  mlc_launch *launch;
  int nlaunch;
  mlc_device *dev;
  mlc_dmodule *mod;
  mlc_dmem *arena;           /* activations, g.arena_size bytes */
  mlc_dmem *kv;              /* [layers, pages, 2, Hkv, 16, D] f32 */
  mlc_dmem **tmem;           /* [g.nt]: device memory of weights and constants */
  mlc_dmem *in_mem[MLC_IN_COUNT];
  float *logits_host;        /* [max_n, vocab] read back after a step */
  int32_t *tokens_host;      /* [max_n] token ids read back after a step that sampled on the device */
  size_t kv_layer_elems;
  int n_pages, max_pages;    /* pool size; page-table row length */
  int max_seqs;
  int32_t *in[MLC_IN_COUNT]; /* host staging: ids, pos, seq, rows [max_n]; pages [max_seqs, max_pages];
                              * sample [max_n, MLC_SAMPLE_SLOTS] (f32 values, stored by memcpy) */
  int *free_pages;
  int n_free;
  int *page_ref;             /* [n_pages] sequences holding each page */
  bool *slot_used;
  int max_n, max_seq_len;
  char *describe;
  double compile_s;
  /* tensor parallelism: rank 0 is the handle callers hold; it drives the other ranks in
   * lockstep and performs the collectives (all-reduce, all-gather) between them */
  int tp_rank, tp_n;
  mlc_model **peers;    /* ranks 1..tp_n-1 (on rank 0) */
  float *tp_scratch;    /* host staging for collectives */
  size_t tp_scratch_elems;
};

struct mlc_seq {
  mlc_model *m;
  int slot;
  int len;
  int npages;
};

/* Builds the graph of a loaded config + weights (no kernels yet). For tests of passes. */
mlc_status mlc_model_build_graph(mlc_model *m, bool run_passes);
/* Renders every distinct kernel of the model in a language (C or GLSL). For GLSL one shader per
 * kernel, separated by a line "// ---- NAME". */
mlc_status mlc_model_render(const mlc_model *m, kir_lang lang, bool generic, mlc_buf *out);
/* The device memory and byte offset of tensor ti in a step of n tokens and mm logit rows. */
mlc_dmem *mlc_tensor_ref(const mlc_model *m, int ti, int64_t n, int64_t mm, size_t *off);
/* Whether steps should pick tokens on the device (MLC_OP_SAMPLE) when a request allows it: by
 * default where logits would cross from device memory ($MLC_DEVICE_SAMPLING=0/1 overrides). */
bool mlc_model_device_sampling(const mlc_model *m);
/* Fills a launch record for op `op` of the graph (descriptor, buffers, params, grid). */
void mlc_launch_fill(const mlc_model *m, int op, mlc_launch *L);

#endif
