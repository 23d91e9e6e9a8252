/* cuda_device.c: a CUDA GPU behind the device API (docs/device.md). Memory is device memory
 * (weights are copied once), kernels are KIR_LANG_CUDA modules built by NVRTC (nvrtc.c), launches
 * go in order on the context's default stream; write/read are synchronous copies ordered with
 * the launches, so a step needs no other synchronisation. $MLC_CUDA_SYNC=1 synchronises after
 * every launch and names the kernel that faulted.
 * Step graphs (docs/device.md): between step_begin and step_end the launches are recorded, not
 * issued; the recorded sequence is then replayed as a CUDA graph when an identical sequence (same
 * kernels, arguments, grids: compared exactly) was seen before, else issued one by one. Graphs
 * are captured on a blocking stream of ours (ordered with the default stream's copies) and kept
 * for the last few sequences. $MLC_CUDA_GRAPHS=0 turns them off.
 * $MLC_CUDA_PROFILE=1: per-kernel GPU times (an event pair around every launch, graphs off), printed
 * when the device closes, grouped by the step's row count (ip[12]: prefill vs decode). */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/kprof.h"
#include "backend/cuda/cuda_api.h"
#include "kernel/lower.h"

_Static_assert(KIR_MAX_BUFS == 16 && MLC_KIP == 16 && MLC_KFP == 4, "mlc_kargs in kir_cuda_prelude");

/* the kernel argument struct, as the CUDA prelude declares it */
typedef struct mlc_kargs {
  unsigned long long b[16];
  long long ip[16];
  float fp[4];
  long long g0, g1;
} mlc_kargs;

struct mlc_dmem {
  CUdeviceptr p;
  size_t bytes;
};

/* one kernel function of a module and how it is launched (the renderer's markers, render.c) */
typedef struct cuda_fn {
  CUfunction fn;
  int block;
  int lanes; /* threads per parallel index ("mlc_lanes=N") */
  int per;   /* outputs per parallel index ("mlc_per=N"): ceil(grid / per) indices are launched */
  int rtile; /* "mlc_rtile=N": times ceil(rows / N) tiles of the step's rows (ip[MLC_KDYN]) */
  int64_t scratch[2]; /* "mlc_scratch=A,B": two scratch arguments of rows * A and rows * B bytes */
  char *name;
} cuda_fn;

struct mlc_dmodule {
  CUmodule mod;
  cuda_fn *k;
  cuda_fn *alt;  /* "mlc_alt rows=N": a second function launched in k's place for steps of >= alt_rows rows */
  cuda_fn *pre;  /* "mlc_pre": the alternative's preparation, launched right before it (fn NULL: none) */
  int *alt_rows; /* 0: none */
  int n;
};

/* one recorded launch */
typedef struct cuda_rec {
  CUfunction fn;
  unsigned blocks, bs;
  mlc_kargs a;
} cuda_rec;

#define CUDA_GRAPHS 4 /* graphs kept (least recently used goes) */
#define CUDA_SEEN 8   /* sequences remembered: captured when one comes again */
typedef struct cuda_graph {
  uint64_t key, used;
  int n;
  cuda_rec *recs;
  CUgraphExec exec;
} cuda_graph;

typedef struct cuda_device {
  mlc_device base;
  const mlc_cu_api *cu;
  CUdevice dev;
  CUcontext ctx;
  int cc_major, cc_minor, sms;
  char arch[24]; /* what NVRTC targets: sm_XY, or compute_XY (PTX) when NVRTC predates the chip */
  bool sync_each;
  char desc[256];
  /* step graphs */
  bool graphs;    /* supported and enabled */
  bool pdl;       /* step graphs with programmatic dependent launch (sm_90+; $MLC_CUDA_PDL=1: on): a kernel
                   * starts while its predecessor finishes and waits for it (render.c griddepcontrol) */
  bool deferring; /* inside step_begin .. step_end */
  CUstream stream;
  cuda_rec *rec;
  int nrec, caprec;
  cuda_graph graph[CUDA_GRAPHS];
  uint64_t seen[CUDA_SEEN], tick;
  int nseen;
  long long n_captured, n_replayed, n_direct;
  /* $MLC_CUDA_PROFILE */
  CUevent ev[2];
  mlc_kprof prof; /* per kernel, step rows and grid */
  /* kernel scratch (scratch_at_least) and the outgrown buffers, freed when the device closes */
  CUdeviceptr scratch, *old_scratch;
  size_t scratch_bytes;
  int nold;
} cuda_device;

static mlc_status cuerr(CUresult r, const char *what) {
  return mlc_err(MLC_ERR_DEVICE, "cuda: %s: %s", what, mlc_cu_errstr(r));
}
#define CU_TRY(call, what)          \
  do {                              \
    CUresult r_ = (call);           \
    if (r_ != 0)                    \
      return cuerr(r_, what);       \
  } while (0)

static const mlc_cu_api *bind_ctx(mlc_device *d) {
  cuda_device *c = (cuda_device *)d;
  c->cu->CtxSetCurrent(c->ctx);
  return c->cu;
}

static mlc_status flush_steps(cuda_device *c);
static void drop_graphs(cuda_device *c) {
  for (int i = 0; i < CUDA_GRAPHS; i++) {
    if (c->graph[i].exec)
      c->cu->GraphExecDestroy(c->graph[i].exec);
    free(c->graph[i].recs);
    memset(&c->graph[i], 0, sizeof c->graph[i]);
  }
  c->nseen = 0;
}

static void cuda_destroy(mlc_device *d) {
  cuda_device *c = (cuda_device *)d;
  c->cu->CtxSetCurrent(c->ctx);
  flush_steps(c);
  c->cu->CtxSynchronize();
  const char *gs = getenv("MLC_CUDA_GRAPH_STATS");
  if (gs && *gs && strcmp(gs, "0"))
    fprintf(stderr, "mlc: cuda step graphs: %lld captured, %lld replayed, %lld sequences launched one by one%s\n",
            c->n_captured, c->n_replayed, c->n_direct, c->pdl ? " (programmatic dependent launch)" : "");
  mlc_kprof_print(&c->prof, "cuda", "launches", "kernels");
  mlc_kprof_free(&c->prof);
  for (int i = 0; i < 2; i++)
    if (c->ev[i])
      c->cu->EventDestroy(c->ev[i]);
  drop_graphs(c);
  free(c->rec);
  for (int i = 0; i < c->nold; i++)
    c->cu->MemFree(c->old_scratch[i]);
  free(c->old_scratch);
  if (c->scratch)
    c->cu->MemFree(c->scratch);
  if (c->stream)
    c->cu->StreamDestroy(c->stream);
  c->cu->DevicePrimaryCtxRelease(c->dev);
  free(c);
}

static mlc_status cuda_alloc(mlc_device *d, size_t bytes, mlc_dmem **out) {
  const mlc_cu_api *cu = bind_ctx(d);
  *out = NULL;
  mlc_dmem *m = calloc(1, sizeof *m);
  if (!m)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  size_t n = bytes ? (bytes + 255) & ~(size_t)255 : 256;
  CUresult r = cu->MemAlloc(&m->p, n);
  if (r == 0)
    r = cu->MemsetD8(m->p, 0, n);
  if (r != 0) {
    if (m->p)
      cu->MemFree(m->p);
    free(m);
    return mlc_err(r == 2 ? MLC_ERR_NOMEM : MLC_ERR_DEVICE, "cuda: allocating %zu bytes: %s", bytes, mlc_cu_errstr(r));
  }
  m->bytes = bytes;
  *out = m;
  return MLC_OK;
}

static void cuda_free(mlc_device *d, mlc_dmem *m) {
  if (!m)
    return;
  flush_steps((cuda_device *)d);
  bind_ctx(d)->MemFree(m->p);
  free(m);
}

static mlc_status cuda_write(mlc_device *d, mlc_dmem *m, size_t off, const void *src, size_t n) {
  if (!n)
    return MLC_OK;
  MLC_TRY(flush_steps((cuda_device *)d));
  CU_TRY(bind_ctx(d)->MemcpyHtoD(m->p + off, src, n), "copy to the device");
  return MLC_OK;
}

static mlc_status cuda_from_host(mlc_device *d, const void *p, size_t bytes, mlc_dmem **out) {
  MLC_TRY(cuda_alloc(d, bytes, out));
  mlc_status st = cuda_write(d, *out, 0, p, bytes);
  if (st != MLC_OK) {
    cuda_free(d, *out);
    *out = NULL;
  }
  return st;
}

static mlc_status cuda_read(mlc_device *d, mlc_dmem *m, size_t off, void *dst, size_t n) {
  if (!n)
    return MLC_OK;
  MLC_TRY(flush_steps((cuda_device *)d));
  CU_TRY(bind_ctx(d)->MemcpyDtoH(dst, m->p + off, n), "copy from the device (or an earlier kernel faulted)");
  return MLC_OK;
}

static mlc_status cuda_copy(mlc_device *d, mlc_dmem *dst, size_t doff, mlc_dmem *src, size_t soff, size_t n) {
  if (!n)
    return MLC_OK;
  MLC_TRY(flush_steps((cuda_device *)d));
  CU_TRY(bind_ctx(d)->MemcpyDtoD(dst->p + doff, src->p + soff, n), "device-to-device copy");
  return MLC_OK;
}

static void cuda_module_free(mlc_device *d, mlc_dmodule *mod) {
  if (!mod)
    return;
  const mlc_cu_api *cu = bind_ctx(d);
  flush_steps((cuda_device *)d);
  drop_graphs((cuda_device *)d); /* they name this module's functions */
  if (mod->mod)
    cu->ModuleUnload(mod->mod);
  for (int i = 0; i < mod->n; i++) {
    if (mod->k)
      free(mod->k[i].name);
    if (mod->alt)
      free(mod->alt[i].name);
    if (mod->pre)
      free(mod->pre[i].name);
  }
  free(mod->k);
  free(mod->alt);
  free(mod->pre);
  free(mod->alt_rows);
  free(mod);
}

/* the integer after `key` in src [from, to), or dflt */
static int marker(const char *from, const char *to, const char *key, int dflt) {
  const char *p = strstr(from, key);
  return p && p < to ? atoi(p + strlen(key)) : dflt;
}
/* looks up function `name` of the module and reads its launch markers from src [from, to) */
static mlc_status load_fn(cuda_device *c, mlc_dmodule *mod, const char *name, const char *from, const char *to, int verbose,
                          cuda_fn *f) {
  const mlc_cu_api *cu = c->cu;
  CUresult r = cu->ModuleGetFunction(&f->fn, mod->mod, name);
  if (r != 0)
    return mlc_err(MLC_ERR_INTERNAL, "cuda: kernel %s not found in its module: %s", name, mlc_cu_errstr(r));
  int bs = 0;
  cu->FuncGetAttribute(&bs, MLC_CU_FUNC_MAX_THREADS_PER_BLOCK, f->fn);
  f->block = bs > 0 ? bs : 64;
  f->lanes = marker(from, to, "/* mlc_lanes=", 1);
  f->per = marker(from, to, "/* mlc_per=", 1);
  f->rtile = marker(from, to, "/* mlc_rtile=", 0);
  const char *sm = strstr(from, "/* mlc_scratch=");
  if (sm && sm < to) {
    long long s0 = 0, s1 = 0;
    if (sscanf(sm + 15, "%lld,%lld", &s0, &s1) != 2 || s0 <= 0 || s1 < 0)
      return mlc_err(MLC_ERR_INTERNAL, "cuda: kernel %s: bad scratch marker", name);
    f->scratch[0] = s0, f->scratch[1] = s1;
  }
  if (f->per < 1 || f->rtile < 0)
    return mlc_err(MLC_ERR_INTERNAL, "cuda: kernel %s: bad outputs per index %d or row tile %d", name, f->per, f->rtile);
  if (f->lanes < 1 || f->block % f->lanes)
    return mlc_err(MLC_ERR_INTERNAL, "cuda: kernel %s: %d lanes do not divide its block of %d", name, f->lanes, f->block);
  if (!(f->name = mlc_strdup(name)))
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  if (verbose > 1) {
    int regs = 0, local = 0, shared = 0;
    cu->FuncGetAttribute(&regs, MLC_CU_FUNC_NUM_REGS, f->fn);
    cu->FuncGetAttribute(&local, MLC_CU_FUNC_LOCAL_SIZE_BYTES, f->fn);
    cu->FuncGetAttribute(&shared, MLC_CU_FUNC_SHARED_SIZE_BYTES, f->fn);
    fprintf(stderr, "mlc: cuda kernel %s: block %d, %d registers, %d bytes local, %d bytes shared\n", name, f->block, regs,
            local, shared);
  }
  return MLC_OK;
}

static mlc_status cuda_build(mlc_device *d, const char *const *names, const char *const *sources, int n, int verbose,
                             mlc_dmodule **out) {
  cuda_device *c = (cuda_device *)d;
  const mlc_cu_api *cu = bind_ctx(d);
  *out = NULL;
  if (!sources)
    return mlc_err(MLC_ERR_UNSUPPORTED, "cuda: no built-in generic kernels (kernels are compiled by NVRTC)");
  mlc_dmodule *mod = calloc(1, sizeof *mod);
  size_t cnt = (size_t)(n ? n : 1);
  if (!mod || !(mod->k = calloc(cnt, sizeof *mod->k)) || !(mod->alt = calloc(cnt, sizeof *mod->alt)) ||
      !(mod->pre = calloc(cnt, sizeof *mod->pre)) ||
      !(mod->alt_rows = calloc(cnt, sizeof(int)))) {
    cuda_module_free(d, mod);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  mod->n = n;
  mlc_buf src = {0};
  mlc_status st = mlc_cuda_module_source(names, sources, n, &src);
  char *path = NULL, *image = NULL;
  size_t len = 0;
  bool cached = false;
  if (st == MLC_OK)
    st = mlc_cuda_compile(src.data, c->arch, verbose, &path, &image, &len, &cached);
  mlc_buf_free(&src);
  if (st == MLC_OK) {
    CUresult r = cu->ModuleLoadData(&mod->mod, image);
    if (r != 0)
      st = mlc_err(MLC_ERR_DEVICE, "cuda: loading the module %s: %s", path, mlc_cu_errstr(r));
  }
  for (int i = 0; st == MLC_OK && i < n; i++) {
    /* the markers after "mlc_alt" describe the alternative function NAME_mm */
    const char *alt = strstr(sources[i], "/* mlc_alt rows=");
    st = load_fn(c, mod, names[i], sources[i], alt ? alt : sources[i] + strlen(sources[i]), verbose, &mod->k[i]);
    if (st == MLC_OK && alt) {
      char nm[160];
      snprintf(nm, sizeof nm, "%s_mm", names[i]);
      mod->alt_rows[i] = atoi(alt + 16);
      const char *pre = strstr(alt, "/* mlc_pre */"), *end = alt + strlen(alt);
      st = load_fn(c, mod, nm, alt, pre ? pre : end, verbose, &mod->alt[i]);
      if (st == MLC_OK && pre) {
        snprintf(nm, sizeof nm, "%s_mq", names[i]);
        st = load_fn(c, mod, nm, pre, end, verbose, &mod->pre[i]);
      }
      if (st == MLC_OK && mod->alt_rows[i] < 1)
        st = mlc_err(MLC_ERR_INTERNAL, "cuda: kernel %s: bad row threshold %d", nm, mod->alt_rows[i]);
      /* its tensor-core code needs sm_80 (render.c KIR_MMA_S8) */
      if (c->cc_major < 8)
        mod->alt_rows[i] = 0;
    }
  }
  free(path);
  free(image);
  if (st != MLC_OK) {
    cuda_module_free(d, mod);
    return st;
  }
  *out = mod;
  return MLC_OK;
}

/* Device scratch of at least `bytes` for kernels that take it (kir_kernel.scratch): grown as
 * needed; an outgrown buffer is kept until the device closes, since recorded launches and kept
 * graphs may still name it. */
static mlc_status scratch_at_least(cuda_device *c, size_t bytes, CUdeviceptr *out) {
  if (bytes > c->scratch_bytes) {
    CUdeviceptr *old = realloc(c->old_scratch, sizeof *old * (size_t)(c->nold + 1));
    if (!old)
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    c->old_scratch = old;
    size_t n = bytes < (1u << 20) ? (size_t)1 << 20 : bytes + bytes / 2;
    CUdeviceptr p = 0;
    CU_TRY(c->cu->MemAlloc(&p, n), "allocating kernel scratch memory");
    if (c->scratch)
      c->old_scratch[c->nold++] = c->scratch;
    c->scratch = p;
    c->scratch_bytes = n;
  }
  *out = c->scratch;
  return MLC_OK;
}

/* Issues one function over the parallel range [0, grid) with arguments a (recorded for a step
 * graph, timed for the profile, or launched). */
static mlc_status issue(cuda_device *c, const cuda_fn *f, mlc_kargs a, const int64_t *ip, int64_t grid) {
  const mlc_cu_api *cu = c->cu;
  int64_t bs = f->block;
  int64_t idx = (grid + f->per - 1) / f->per; /* parallel indices */
  if (f->rtile > 0)
    idx *= (ip[MLC_KDYN] + f->rtile - 1) / f->rtile;
  int64_t blocks = (idx * f->lanes + bs - 1) / bs;
  if (blocks > 0x7fffffff)
    return mlc_err(MLC_ERR_LIMIT, "cuda: kernel %s: parallel range %lld too large", f->name, (long long)grid);
  if (blocks <= 0)
    return MLC_OK;
  if (c->deferring) {
    if (c->nrec == c->caprec) {
      int cap = c->caprec ? 2 * c->caprec : 256;
      cuda_rec *nr = realloc(c->rec, sizeof *nr * (size_t)cap);
      if (!nr)
        return mlc_err(MLC_ERR_NOMEM, "out of memory");
      c->rec = nr;
      c->caprec = cap;
    }
    cuda_rec *rc = &c->rec[c->nrec++];
    memset(rc, 0, sizeof *rc);
    rc->fn = f->fn;
    rc->blocks = (unsigned)blocks;
    rc->bs = (unsigned)bs;
    rc->a = a;
    return MLC_OK;
  }
  void *params[] = {&a};
  if (c->ev[1]) {
    float ms = 0;
    CUresult r = cu->EventRecord(c->ev[0], NULL);
    if (r == 0)
      r = cu->LaunchKernel(f->fn, (unsigned)blocks, 1, 1, (unsigned)bs, 1, 1, 0, NULL, params, NULL);
    if (r == 0)
      r = cu->EventRecord(c->ev[1], NULL);
    if (r == 0)
      r = cu->EventSynchronize(c->ev[1]);
    if (r == 0)
      r = cu->EventElapsedTime(&ms, c->ev[0], c->ev[1]);
    if (r != 0)
      return mlc_err(MLC_ERR_DEVICE, "cuda: kernel %s (grid %lld): %s", f->name, (long long)grid, mlc_cu_errstr(r));
    mlc_kprof_add(&c->prof, f->fn, f->name, ip[MLC_KDYN], grid, f->lanes, ms);
    return MLC_OK;
  }
  CUresult r = cu->LaunchKernel(f->fn, (unsigned)blocks, 1, 1, (unsigned)bs, 1, 1, 0, NULL, params, NULL);
  if (r == 0 && c->sync_each)
    r = cu->CtxSynchronize();
  if (r != 0)
    return mlc_err(MLC_ERR_DEVICE, "cuda: kernel %s (grid %lld): %s", f->name, (long long)grid, mlc_cu_errstr(r));
  return MLC_OK;
}

static mlc_status cuda_launch(mlc_device *d, mlc_dmodule *mod, int k, mlc_dmem *const *mem, const size_t *off, int nbuf,
                              const int64_t *ip, const float *fp, int64_t grid) {
  cuda_device *c = (cuda_device *)d;
  bind_ctx(d);
  if (grid <= 0)
    return MLC_OK;
  mlc_kargs a;
  memset(&a, 0, sizeof a);
  for (int i = 0; i < nbuf; i++)
    a.b[i] = mem[i]->p + off[i];
  for (int i = 0; i < MLC_KIP; i++)
    a.ip[i] = ip[i];
  for (int i = 0; i < MLC_KFP; i++)
    a.fp[i] = fp[i];
  a.g0 = 0;
  a.g1 = grid;
  /* the alternative for long steps (the prefill GEMM), after its preparation */
  bool alt = mod->alt_rows[k] > 0 && ip[MLC_KDYN] >= mod->alt_rows[k];
  const cuda_fn *f = alt ? &mod->alt[k] : &mod->k[k];
  if (f->scratch[0] > 0) { /* two scratch arguments after the op's */
    if (nbuf + 2 > KIR_MAX_BUFS)
      return mlc_err(MLC_ERR_INTERNAL, "cuda: kernel %s: no room for its scratch arguments", f->name);
    size_t rows = (size_t)(ip[MLC_KDYN] > 0 ? ip[MLC_KDYN] : 1);
    size_t b0 = (rows * (size_t)f->scratch[0] + 255) / 256 * 256;
    CUdeviceptr p = 0;
    MLC_TRY(scratch_at_least(c, b0 + rows * (size_t)f->scratch[1], &p));
    a.b[nbuf] = p;
    a.b[nbuf + 1] = p + b0;
  }
  if (alt && mod->pre[k].fn)
    MLC_TRY(issue(c, &mod->pre[k], a, ip, grid));
  return issue(c, f, a, ip, grid);
}

/* Captures recs[0..n) into a graph on our stream and keeps it; NULL when capture fails. */
static cuda_graph *capture(cuda_device *c, uint64_t key, const cuda_rec *recs, int n) {
  const mlc_cu_api *cu = c->cu;
  CUgraph g = NULL;
  CUgraphExec e = NULL;
  CUresult r = cu->StreamBeginCapture(c->stream, 1 /* CU_STREAM_CAPTURE_MODE_THREAD_LOCAL */);
  if (r != 0)
    return NULL;
  for (int i = 0; i < n && r == 0; i++) {
    mlc_kargs a = recs[i].a;
    void *params[] = {&a};
    if (c->pdl && i > 0) {
      mlc_cu_launch_attr at = {.id = 6 /* CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION */};
      at.value.i = 1;
      mlc_cu_launch_config cfg = {.gx = recs[i].blocks, .gy = 1, .gz = 1, .bx = recs[i].bs, .by = 1, .bz = 1,
                                  .stream = c->stream, .attrs = &at, .nattrs = 1};
      r = cu->LaunchKernelEx(&cfg, recs[i].fn, params, NULL);
    } else {
      r = cu->LaunchKernel(recs[i].fn, recs[i].blocks, 1, 1, recs[i].bs, 1, 1, 0, c->stream, params, NULL);
    }
  }
  CUresult r2 = cu->StreamEndCapture(c->stream, &g);
  if (r == 0)
    r = r2;
  if (r == 0)
    r = cu->GraphInstantiateWithFlags(&e, g, 0);
  if (g)
    cu->GraphDestroy(g);
  cuda_rec *copy = r == 0 ? malloc(sizeof *copy * (size_t)n) : NULL;
  if (!copy) {
    if (e)
      cu->GraphExecDestroy(e);
    return NULL;
  }
  memcpy(copy, recs, sizeof *copy * (size_t)n);
  cuda_graph *slot = &c->graph[0];
  for (int i = 1; i < CUDA_GRAPHS; i++)
    if (c->graph[i].used < slot->used)
      slot = &c->graph[i];
  if (slot->exec)
    cu->GraphExecDestroy(slot->exec);
  free(slot->recs);
  *slot = (cuda_graph){.key = key, .n = n, .recs = copy, .exec = e};
  c->n_captured++;
  return slot;
}

/* Issues the recorded launches: as a kept graph, a new one (the second time a sequence comes),
 * or one by one. */
static mlc_status flush_steps(cuda_device *c) {
  if (!c->nrec)
    return MLC_OK;
  const mlc_cu_api *cu = c->cu;
  int n = c->nrec;
  c->nrec = 0;
  size_t bytes = sizeof *c->rec * (size_t)n;
  uint64_t key = mlc_hash64(c->rec, bytes, (uint64_t)n);
  cuda_graph *g = NULL;
  for (int i = 0; i < CUDA_GRAPHS && !g; i++)
    if (c->graph[i].exec && c->graph[i].key == key && c->graph[i].n == n && !memcmp(c->graph[i].recs, c->rec, bytes))
      g = &c->graph[i];
  if (!g && n > 1) {
    bool seen = false;
    for (int i = 0; i < c->nseen && !seen; i++)
      seen = c->seen[i] == key;
    if (seen && !(g = capture(c, key, c->rec, n)))
      c->graphs = false; /* capture does not work here: launch one by one from now on */
    else
      c->seen[c->nseen < CUDA_SEEN ? c->nseen++ : (int)(c->tick % CUDA_SEEN)] = key;
  }
  if (g) {
    g->used = ++c->tick;
    CUresult r = cu->GraphLaunch(g->exec, c->stream);
    if (r != 0)
      return mlc_err(MLC_ERR_DEVICE, "cuda: launching a step graph of %d kernels: %s", n, mlc_cu_errstr(r));
    c->n_replayed++;
    return MLC_OK;
  }
  c->tick++;
  c->n_direct++;
  for (int i = 0; i < n; i++) {
    void *params[] = {&c->rec[i].a};
    CUresult r = cu->LaunchKernel(c->rec[i].fn, c->rec[i].blocks, 1, 1, c->rec[i].bs, 1, 1, 0, NULL, params, NULL);
    if (r != 0)
      return mlc_err(MLC_ERR_DEVICE, "cuda: launch %d of a step: %s", i, mlc_cu_errstr(r));
  }
  return MLC_OK;
}

static void cuda_step_begin(mlc_device *d) {
  cuda_device *c = (cuda_device *)d;
  c->deferring = c->graphs;
}

static mlc_status cuda_step_end(mlc_device *d) {
  cuda_device *c = (cuda_device *)d;
  bind_ctx(d);
  mlc_status st = flush_steps(c);
  c->deferring = false;
  return st;
}

static mlc_status cuda_sync(mlc_device *d) {
  MLC_TRY(flush_steps((cuda_device *)d));
  CU_TRY(bind_ctx(d)->CtxSynchronize(), "synchronize");
  return MLC_OK;
}

static const char *cuda_describe(mlc_device *d) { return ((cuda_device *)d)->desc; }

static const mlc_device_vt CUDA_VT = {
    .name = "cuda", .destroy = cuda_destroy, .alloc = cuda_alloc, .from_host = cuda_from_host, .free = cuda_free,
    .write = cuda_write, .read = cuda_read, .copy = cuda_copy, .build = cuda_build, .module_free = cuda_module_free,
    .launch = cuda_launch, .sync = cuda_sync, .describe = cuda_describe, .step_begin = cuda_step_begin,
    .step_end = cuda_step_end,
};

/* NVRTC's target for compute capability cc (major*10+minor): sm_<cc> when NVRTC knows it, else
 * PTX for the newest virtual architecture below it (the driver compiles that for the chip). */
static mlc_status pick_arch(int cc, char *arch, size_t n) {
  const mlc_nvrtc_api *nv = mlc_nvrtc_api_load();
  if (!nv)
    return mlc_err_context(MLC_ERR_UNSUPPORTED, "cuda: kernels are compiled at run time");
  int na = 0, best = 0;
  int archs[128];
  if (nv->GetNumSupportedArchs && nv->GetSupportedArchs && nv->GetNumSupportedArchs(&na) == 0 && na > 0 && na <= 128 &&
      nv->GetSupportedArchs(archs) == 0) {
    for (int i = 0; i < na; i++)
      if (archs[i] <= cc && archs[i] > best)
        best = archs[i];
  } else {
    best = cc;
  }
  if (best == 0)
    return mlc_err(MLC_ERR_UNSUPPORTED, "cuda: %s cannot target compute capability %d.%d", mlc_nvrtc_describe(), cc / 10,
                   cc % 10);
  snprintf(arch, n, best == cc ? "sm_%d" : "compute_%d", best);
  return MLC_OK;
}

mlc_status mlc_cuda_device_new(const char *name, const mlc_device_opts *opt, mlc_device **out) {
  *out = NULL;
  int ordinal = 0;
  if (name && !strncmp(name, "cuda:", 5))
    ordinal = atoi(name + 5);
  const mlc_cu_api *cu = mlc_cu_load();
  if (!cu)
    return mlc_err_context(MLC_ERR_UNSUPPORTED, "device 'cuda'");
  CUresult r = cu->Init(0);
  if (r == MLC_CUDA_ERROR_PLACEHOLDER_LIBRARY)
    return mlc_err(MLC_ERR_UNSUPPORTED, "device 'cuda': libcuda.so.1 is the CUDA toolkit's link-time placeholder, not a driver (no GPU here)");
  if (r == MLC_CUDA_ERROR_NO_DEVICE)
    return mlc_err(MLC_ERR_UNSUPPORTED, "device 'cuda': the CUDA driver found no GPU");
  if (r != 0)
    return mlc_err(MLC_ERR_UNSUPPORTED, "device 'cuda': cuInit failed: %s", mlc_cu_errstr(r));
  int count = 0;
  r = cu->DeviceGetCount(&count);
  if (r != 0 || count == 0)
    return mlc_err(MLC_ERR_UNSUPPORTED, "device 'cuda': no CUDA GPU found");
  if (ordinal < 0 || ordinal >= count)
    return mlc_err(MLC_ERR_INVALID_ARG, "device '%s': there are %d CUDA GPUs (cuda:0..cuda:%d)", name, count, count - 1);
  cuda_device *c = calloc(1, sizeof *c);
  if (!c)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  c->cu = cu;
  mlc_status st = MLC_OK;
  int warp = 32, maxwg = 1024, shmem = 48 * 1024, drv = 0;
  char dname[128] = "?";
  size_t mem = 0;
  if ((r = cu->DeviceGet(&c->dev, ordinal)) != 0 || (r = cu->DevicePrimaryCtxRetain(&c->ctx, c->dev)) != 0 ||
      (r = cu->CtxSetCurrent(c->ctx)) != 0) {
    free(c);
    return mlc_err(MLC_ERR_DEVICE, "device 'cuda': creating the context: %s", mlc_cu_errstr(r));
  }
  cu->DeviceGetName(dname, sizeof dname, c->dev);
  cu->DeviceGetAttribute(&c->cc_major, MLC_CU_ATTR_CC_MAJOR, c->dev);
  cu->DeviceGetAttribute(&c->cc_minor, MLC_CU_ATTR_CC_MINOR, c->dev);
  cu->DeviceGetAttribute(&c->sms, MLC_CU_ATTR_SM_COUNT, c->dev);
  cu->DeviceGetAttribute(&warp, MLC_CU_ATTR_WARP_SIZE, c->dev);
  cu->DeviceGetAttribute(&maxwg, MLC_CU_ATTR_MAX_THREADS_PER_BLOCK, c->dev);
  cu->DeviceGetAttribute(&shmem, MLC_CU_ATTR_MAX_SHARED_PER_BLOCK, c->dev);
  cu->DeviceTotalMem(&mem, c->dev);
  cu->DriverGetVersion(&drv);
  st = pick_arch(c->cc_major * 10 + c->cc_minor, c->arch, sizeof c->arch);
  if (st != MLC_OK) {
    cu->DevicePrimaryCtxRelease(c->dev);
    free(c);
    return st;
  }
  const char *se = getenv("MLC_CUDA_SYNC");
  c->sync_each = se && *se && strcmp(se, "0");
  const char *pe = getenv("MLC_CUDA_PROFILE");
  if (pe && *pe && strcmp(pe, "0") && cu->EventCreate && cu->EventRecord && cu->EventSynchronize &&
      cu->EventElapsedTime && cu->EventDestroy &&
      (cu->EventCreate(&c->ev[0], 0) != 0 || cu->EventCreate(&c->ev[1], 0) != 0))
    c->ev[0] = c->ev[1] = NULL;
  const char *ge = getenv("MLC_CUDA_GRAPHS");
  c->graphs = !c->sync_each && !c->ev[1] && !(ge && !strcmp(ge, "0")) && cu->StreamCreate && cu->StreamDestroy &&
              cu->StreamBeginCapture && cu->StreamEndCapture && cu->GraphInstantiateWithFlags && cu->GraphLaunch &&
              cu->GraphExecDestroy && cu->GraphDestroy && cu->StreamCreate(&c->stream, 0) == 0;
  const char *pd = getenv("MLC_CUDA_PDL");
  /* off unless asked for: on the H100 it was neutral for the 8B q4f16_1 decode and cost 30 % on
   * the 1B f16 one (bench/RESULTS.md) */
  c->pdl = c->graphs && cu->LaunchKernelEx && c->cc_major >= 9 && pd && *pd && strcmp(pd, "0");
  c->base.vt = &CUDA_VT;
  c->base.caps = (mlc_device_caps){.lang = KIR_LANG_CUDA, .subgroup_size = warp, .max_workgroup = maxwg,
                                   .max_shared = (size_t)shmem, .fp16 = true, .int8_dot = c->cc_major * 10 + c->cc_minor >= 61};
  snprintf(c->desc, sizeof c->desc, "cuda:%d %s (sm_%d%d, %d SMs, %.1f GiB, driver %d.%d, %s -> %s)", ordinal, dname,
           c->cc_major, c->cc_minor, c->sms, mem / 1073741824.0, drv / 1000, drv % 1000 / 10, mlc_nvrtc_describe(),
           c->arch);
  (void)opt;
  *out = &c->base;
  return MLC_OK;
}
