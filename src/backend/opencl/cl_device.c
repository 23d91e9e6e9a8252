/*
 * cl_device.c: OpenCL behind the device API (docs/backends.md).
 *
 * - libOpenCL (the ICD loader) is opened with dlopen, so the binary runs where it is missing.
 * - Device: MLC_OPENCL_DEVICE (or "opencl:N") indexes the devices of all platforms in order;
 *   default: the first GPU, else the first device. One in-order queue, so launches need no
 *   barriers.
 * - Memory: one cl_mem per mlc_dmem; write/read are blocking transfers, copy a queued copy.
 * - Kernels: OpenCL C 1.2 rendered by render.c, all kernels of a module in one program; the
 *   program binary is cached by content hash (and device, driver) in the kernel cache directory.
 * - Arguments: each buffer is a (cl_mem, byte offset) pair, so views need no aligned sub-buffers;
 *   then ip[16] (long), fp[4] (float), and the range g0, g1. Work-groups of 64 (or the kernel's
 *   limit), the global size rounded up; the kernel returns past g1.
 */
#include "backend/device.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "backend/kcache.h"

#if defined(__has_include)
#if __has_include(<CL/cl.h>)
#define MLC_HAVE_CL_H 1
#endif
#endif

#ifndef MLC_HAVE_CL_H
mlc_status mlc_opencl_device_new(const mlc_device_opts *opt, int index, mlc_device **out) {
  *out = NULL;
  return mlc_err(MLC_ERR_UNSUPPORTED, "this build has no OpenCL headers (install opencl-c-headers and rebuild)");
}
void mlc_opencl_list(mlc_buf *out) { mlc_buf_puts(out, "opencl: not in this build (no OpenCL headers)\n"); }
#else

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#define CL_FNS(X)                                                                                                    \
  X(clGetPlatformIDs) X(clGetPlatformInfo) X(clGetDeviceIDs) X(clGetDeviceInfo) X(clCreateContext)                  \
  X(clReleaseContext) X(clCreateCommandQueue) X(clReleaseCommandQueue) X(clCreateBuffer) X(clReleaseMemObject)       \
  X(clEnqueueWriteBuffer) X(clEnqueueReadBuffer) X(clEnqueueCopyBuffer) X(clEnqueueFillBuffer)                      \
  X(clCreateProgramWithSource) X(clCreateProgramWithBinary) X(clBuildProgram) X(clGetProgramBuildInfo)               \
  X(clGetProgramInfo) X(clReleaseProgram) X(clCreateKernel) X(clReleaseKernel) X(clSetKernelArg)                     \
  X(clGetKernelWorkGroupInfo) X(clEnqueueNDRangeKernel) X(clFinish)

typedef struct cl_fns {
#define DECL(f) __typeof__(&f) f;
  CL_FNS(DECL)
#undef DECL
} cl_fns;

struct mlc_dmem {
  cl_mem m;
  size_t size;
};

struct mlc_dmodule {
  cl_program prog;
  int n;
  cl_kernel *k;   /* per kernel index; duplicates share (owned[i] says who releases) */
  bool *owned;
  size_t *local;  /* work-group size per kernel */
};

typedef struct cl_device {
  mlc_device base;
  void *dl;
  cl_fns f;
  cl_device_id dev;
  cl_context ctx;
  cl_command_queue q;
  char name[128], version[128], driver[128];
  char desc[512];
} cl_device;

#define CLCHECK(call, what)                                                                                          \
  do {                                                                                                               \
    cl_int e_ = (call);                                                                                              \
    if (e_ != CL_SUCCESS)                                                                                            \
      return mlc_err(e_ == CL_MEM_OBJECT_ALLOCATION_FAILURE || e_ == CL_OUT_OF_RESOURCES || e_ == CL_OUT_OF_HOST_MEMORY \
                         ? MLC_ERR_NOMEM                                                                             \
                         : MLC_ERR_DEVICE,                                                                           \
                     "opencl: %s failed (error %d)", what, (int)e_);                                                 \
  } while (0)

static mlc_status load_cl(void **dl_out, cl_fns *f) {
  const char *names[] = {"libOpenCL.so.1", "libOpenCL.so"};
  void *dl = NULL;
  for (size_t i = 0; i < 2 && !dl; i++)
    dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!dl)
    return mlc_err(MLC_ERR_UNSUPPORTED, "opencl: libOpenCL.so.1 (the ICD loader) is not installed (%s)", dlerror());
#define LOAD(fn)                                                                                                     \
  {                                                                                                                  \
    void *p = dlsym(dl, #fn);                                                                                        \
    if (!p) {                                                                                                        \
      dlclose(dl);                                                                                                   \
      return mlc_err(MLC_ERR_UNSUPPORTED, "opencl: libOpenCL has no %s", #fn);                                       \
    }                                                                                                                \
    memcpy(&f->fn, &p, sizeof p);                                                                                    \
  }
  CL_FNS(LOAD)
#undef LOAD
  *dl_out = dl;
  return MLC_OK;
}

/* All devices of all platforms, in order. *n = 0 when there are none. */
static cl_device_id *all_devices(const cl_fns *f, cl_uint *n) {
  *n = 0;
  cl_uint np = 0;
  if (f->clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || !np)
    return NULL;
  cl_platform_id *pl = calloc(np, sizeof *pl);
  cl_device_id *out = NULL;
  if (!pl || f->clGetPlatformIDs(np, pl, NULL) != CL_SUCCESS) {
    free(pl);
    return NULL;
  }
  for (cl_uint i = 0; i < np; i++) {
    cl_uint nd = 0;
    if (f->clGetDeviceIDs(pl[i], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || !nd)
      continue;
    cl_device_id *grow = realloc(out, sizeof *out * (*n + nd));
    if (!grow)
      break;
    out = grow;
    if (f->clGetDeviceIDs(pl[i], CL_DEVICE_TYPE_ALL, nd, out + *n, NULL) == CL_SUCCESS)
      *n += nd;
  }
  free(pl);
  return out;
}

typedef struct cl_info {
  char name[128], version[128], cversion[128], driver[128];
  cl_device_type type;
  cl_ulong mem, max_alloc, local_mem;
  size_t max_wg;
  cl_uint cus;
  bool fp16, subgroups, int_dot;
} cl_info;

static void query(const cl_fns *f, cl_device_id d, cl_info *in) {
  memset(in, 0, sizeof *in);
  f->clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof in->name - 1, in->name, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_VERSION, sizeof in->version - 1, in->version, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_OPENCL_C_VERSION, sizeof in->cversion - 1, in->cversion, NULL);
  f->clGetDeviceInfo(d, CL_DRIVER_VERSION, sizeof in->driver - 1, in->driver, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof in->type, &in->type, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof in->mem, &in->mem, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof in->max_alloc, &in->max_alloc, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof in->local_mem, &in->local_mem, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof in->max_wg, &in->max_wg, NULL);
  f->clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof in->cus, &in->cus, NULL);
  size_t n = 0;
  if (f->clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &n) == CL_SUCCESS && n) {
    char *e = malloc(n + 1);
    if (e && f->clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, n, e, NULL) == CL_SUCCESS) {
      e[n] = 0;
      in->fp16 = strstr(e, "cl_khr_fp16") != NULL;
      in->subgroups = strstr(e, "cl_khr_subgroups") != NULL || strstr(e, "cl_intel_subgroups") != NULL;
      in->int_dot = strstr(e, "cl_khr_integer_dot_product") != NULL;
    }
    free(e);
  }
}

static void describe_info(const cl_info *in, mlc_buf *b) {
  const char *t = (in->type & CL_DEVICE_TYPE_GPU) ? "GPU" : (in->type & CL_DEVICE_TYPE_CPU) ? "CPU"
                  : (in->type & CL_DEVICE_TYPE_ACCELERATOR) ? "accelerator" : "other";
  mlc_buf_printf(b, "%s (%s, %s, %s, driver %s): %u compute units, workgroup %zu, local %llu KiB, largest buffer %.0f MiB, "
                 "fp16 %s, subgroups %s, int dot %s, memory %.1f GiB",
                 in->name, t, in->version, in->cversion, in->driver, in->cus, in->max_wg,
                 (unsigned long long)(in->local_mem / 1024), in->max_alloc / 1048576.0, in->fp16 ? "yes" : "no",
                 in->subgroups ? "yes" : "no", in->int_dot ? "yes" : "no", in->mem / 1073741824.0);
}

/* ---- the device API ---- */
static mlc_status cl_alloc(mlc_device *d, size_t bytes, mlc_dmem **out) {
  cl_device *c = (cl_device *)d;
  *out = NULL;
  mlc_dmem *m = calloc(1, sizeof *m);
  if (!m)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  size_t sz = (bytes + 15) & ~(size_t)15;
  if (!sz)
    sz = 16;
  cl_int e = 0;
  m->m = c->f.clCreateBuffer(c->ctx, CL_MEM_READ_WRITE, sz, NULL, &e);
  m->size = bytes;
  if (e != CL_SUCCESS) {
    free(m);
    return mlc_err(MLC_ERR_NOMEM, "opencl: allocating %zu bytes failed (error %d)", bytes, (int)e);
  }
  cl_uchar zero = 0;
  e = c->f.clEnqueueFillBuffer(c->q, m->m, &zero, 1, 0, sz, 0, NULL, NULL);
  if (e != CL_SUCCESS) {
    c->f.clReleaseMemObject(m->m);
    free(m);
    return mlc_err(MLC_ERR_DEVICE, "opencl: clEnqueueFillBuffer failed (error %d)", (int)e);
  }
  *out = m;
  return MLC_OK;
}

static mlc_status cl_write(mlc_device *d, mlc_dmem *m, size_t off, const void *src, size_t n) {
  cl_device *c = (cl_device *)d;
  if (!n)
    return MLC_OK;
  CLCHECK(c->f.clEnqueueWriteBuffer(c->q, m->m, CL_TRUE, off, n, src, 0, NULL, NULL), "clEnqueueWriteBuffer");
  return MLC_OK;
}

static mlc_status cl_read(mlc_device *d, mlc_dmem *m, size_t off, void *dst, size_t n) {
  cl_device *c = (cl_device *)d;
  if (!n)
    return MLC_OK;
  CLCHECK(c->f.clEnqueueReadBuffer(c->q, m->m, CL_TRUE, off, n, dst, 0, NULL, NULL), "clEnqueueReadBuffer");
  return MLC_OK;
}

static void cl_free(mlc_device *d, mlc_dmem *m) {
  cl_device *c = (cl_device *)d;
  if (!m)
    return;
  c->f.clReleaseMemObject(m->m); /* the runtime keeps it alive until queued work is done */
  free(m);
}

static mlc_status cl_from_host(mlc_device *d, const void *p, size_t bytes, mlc_dmem **out) {
  MLC_TRY(cl_alloc(d, bytes, out));
  mlc_status st = cl_write(d, *out, 0, p, bytes);
  if (st != MLC_OK) {
    cl_free(d, *out);
    *out = NULL;
  }
  return st;
}

static mlc_status cl_copy(mlc_device *d, mlc_dmem *dst, size_t doff, mlc_dmem *src, size_t soff, size_t n) {
  cl_device *c = (cl_device *)d;
  if (!n)
    return MLC_OK;
  CLCHECK(c->f.clEnqueueCopyBuffer(c->q, src->m, dst->m, soff, doff, n, 0, NULL, NULL), "clEnqueueCopyBuffer");
  return MLC_OK;
}

static void cl_module_free(mlc_device *d, mlc_dmodule *mod) {
  cl_device *c = (cl_device *)d;
  if (!mod)
    return;
  c->f.clFinish(c->q);
  for (int i = 0; i < mod->n; i++)
    if (mod->owned[i] && mod->k[i])
      c->f.clReleaseKernel(mod->k[i]);
  if (mod->prog)
    c->f.clReleaseProgram(mod->prog);
  free(mod->k);
  free(mod->owned);
  free(mod->local);
  free(mod);
}

static char *build_log(cl_device *c, cl_program p) {
  size_t n = 0;
  c->f.clGetProgramBuildInfo(p, c->dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
  char *s = malloc(n + 1);
  if (s) {
    s[0] = 0;
    c->f.clGetProgramBuildInfo(p, c->dev, CL_PROGRAM_BUILD_LOG, n, s, NULL);
    s[n] = 0;
  }
  return s;
}

static const char *BUILD_OPTS = "-cl-std=CL1.2";

/* The program from the cached binary, else from source (and the binary cached). */
static mlc_status make_program(cl_device *c, const char *src, int verbose, cl_program *out) {
  uint64_t h = mlc_hash64(src, strlen(src), 0);
  h = mlc_hash64(c->name, strlen(c->name), h);
  h = mlc_hash64(c->driver, strlen(c->driver), h);
  h = mlc_hash64(c->version, strlen(c->version), h);
  h = mlc_hash64(BUILD_OPTS, strlen(BUILD_OPTS), h);
  char *path = mlc_kcache_path("opencl-", h, ".bin");
  double t0 = mlc_now();
  cl_int e = 0;
  if (path && mlc_file_exists(path)) {
    char *bin = NULL;
    size_t n = 0;
    if (mlc_read_file(path, &bin, &n) == MLC_OK && n) {
      const unsigned char *bp = (const unsigned char *)bin;
      cl_int bst = 0;
      cl_program p = c->f.clCreateProgramWithBinary(c->ctx, 1, &c->dev, &n, &bp, &bst, &e);
      if (e == CL_SUCCESS && bst == CL_SUCCESS && c->f.clBuildProgram(p, 1, &c->dev, BUILD_OPTS, NULL, NULL) == CL_SUCCESS) {
        free(bin);
        free(path);
        if (verbose)
          fprintf(stderr, "mlc: opencl: program loaded from the cache in %.2f s\n", mlc_now() - t0);
        *out = p;
        return MLC_OK;
      }
      if (e == CL_SUCCESS)
        c->f.clReleaseProgram(p);
    }
    free(bin);
  }
  size_t len = strlen(src);
  cl_program p = c->f.clCreateProgramWithSource(c->ctx, 1, &src, &len, &e);
  if (e != CL_SUCCESS) {
    free(path);
    return mlc_err(MLC_ERR_DEVICE, "opencl: clCreateProgramWithSource failed (error %d)", (int)e);
  }
  e = c->f.clBuildProgram(p, 1, &c->dev, BUILD_OPTS, NULL, NULL);
  if (e != CL_SUCCESS) {
    char *log = build_log(c, p);
    mlc_status st = mlc_err(MLC_ERR_DEVICE, "opencl: building the kernels failed (error %d): %.2000s", (int)e, log ? log : "");
    free(log);
    free(path);
    c->f.clReleaseProgram(p);
    return st;
  }
  if (verbose)
    fprintf(stderr, "mlc: opencl: program built in %.2f s\n", mlc_now() - t0);
  size_t bsz = 0;
  if (path && c->f.clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof bsz, &bsz, NULL) == CL_SUCCESS && bsz) {
    unsigned char *bin = malloc(bsz);
    if (bin && c->f.clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS)
      mlc_write_file_atomic(path, bin, bsz); /* a cache that cannot be written is no error */
    free(bin);
  }
  free(path);
  *out = p;
  return MLC_OK;
}

static mlc_status cl_build(mlc_device *d, const char *const *names, const char *const *sources, int n, int verbose,
                           mlc_dmodule **out) {
  cl_device *c = (cl_device *)d;
  *out = NULL;
  if (!sources)
    return mlc_err(MLC_ERR_UNSUPPORTED, "opencl: no built-in generic kernels (kernels are compiled from OpenCL C)");
  mlc_dmodule *mod = calloc(1, sizeof *mod);
  if (!mod)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  mod->n = n;
  mod->k = calloc((size_t)(n ? n : 1), sizeof *mod->k);
  mod->owned = calloc((size_t)(n ? n : 1), sizeof *mod->owned);
  mod->local = calloc((size_t)(n ? n : 1), sizeof *mod->local);
  mlc_buf src = {0};
  mlc_buf_puts(&src, kir_opencl_prelude());
  for (int i = 0; i < n; i++) {
    bool dup = false;
    for (int j = 0; j < i && !dup; j++)
      dup = !strcmp(names[i], names[j]);
    if (!dup) {
      mlc_buf_puts(&src, "\n");
      mlc_buf_puts(&src, sources[i]);
    }
  }
  mlc_status st = !mod->k || !mod->owned || !mod->local || src.oom ? mlc_err(MLC_ERR_NOMEM, "out of memory") : MLC_OK;
  if (st == MLC_OK)
    st = make_program(c, src.data ? src.data : "", verbose, &mod->prog);
  mlc_buf_free(&src);
  for (int i = 0; st == MLC_OK && i < n; i++) {
    int j = 0;
    while (j < i && strcmp(names[i], names[j]))
      j++;
    if (j < i) {
      mod->k[i] = mod->k[j];
      mod->local[i] = mod->local[j];
      continue;
    }
    cl_int e = 0;
    mod->k[i] = c->f.clCreateKernel(mod->prog, names[i], &e);
    if (e != CL_SUCCESS) {
      mod->k[i] = NULL;
      st = mlc_err(MLC_ERR_DEVICE, "opencl: kernel %s not found in the program (error %d)", names[i], (int)e);
      break;
    }
    mod->owned[i] = true;
    size_t wg = 0;
    c->f.clGetKernelWorkGroupInfo(mod->k[i], c->dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    mod->local[i] = wg >= 64 || wg == 0 ? 64 : wg;
  }
  if (st != MLC_OK) {
    cl_module_free(d, mod);
    return st;
  }
  *out = mod;
  return MLC_OK;
}

static mlc_status cl_launch(mlc_device *d, mlc_dmodule *mod, int k, mlc_dmem *const *mem, const size_t *off, int nbuf,
                            const int64_t *ip, const float *fp, int64_t grid) {
  cl_device *c = (cl_device *)d;
  if (grid <= 0)
    return MLC_OK;
  cl_kernel kk = mod->k[k];
  cl_uint a = 0;
  for (int i = 0; i < nbuf; i++) {
    cl_long o = (cl_long)off[i];
    CLCHECK(c->f.clSetKernelArg(kk, a++, sizeof(cl_mem), &mem[i]->m), "clSetKernelArg (buffer)");
    CLCHECK(c->f.clSetKernelArg(kk, a++, sizeof o, &o), "clSetKernelArg (offset)");
  }
  for (int i = 0; i < 16; i++) {
    cl_long v = (cl_long)ip[i];
    CLCHECK(c->f.clSetKernelArg(kk, a++, sizeof v, &v), "clSetKernelArg (ip)");
  }
  for (int i = 0; i < 4; i++) {
    cl_float v = fp[i];
    CLCHECK(c->f.clSetKernelArg(kk, a++, sizeof v, &v), "clSetKernelArg (fp)");
  }
  cl_long g0 = 0, g1 = grid;
  CLCHECK(c->f.clSetKernelArg(kk, a++, sizeof g0, &g0), "clSetKernelArg (g0)");
  CLCHECK(c->f.clSetKernelArg(kk, a++, sizeof g1, &g1), "clSetKernelArg (g1)");
  size_t local = mod->local[k], global = ((size_t)grid + local - 1) / local * local;
  CLCHECK(c->f.clEnqueueNDRangeKernel(c->q, kk, 1, NULL, &global, &local, 0, NULL, NULL), "clEnqueueNDRangeKernel");
  return MLC_OK;
}

static mlc_status cl_sync(mlc_device *d) {
  cl_device *c = (cl_device *)d;
  CLCHECK(c->f.clFinish(c->q), "clFinish");
  return MLC_OK;
}
static const char *cl_describe(mlc_device *d) { return ((cl_device *)d)->desc; }

static void cl_destroy(mlc_device *d) {
  cl_device *c = (cl_device *)d;
  if (c->q) {
    c->f.clFinish(c->q);
    c->f.clReleaseCommandQueue(c->q);
  }
  if (c->ctx)
    c->f.clReleaseContext(c->ctx);
  /* libOpenCL stays loaded (as the ICD loader keeps its drivers) */
  free(c);
}

static const mlc_device_vt CL_VT = {
    .name = "opencl", .destroy = cl_destroy, .alloc = cl_alloc, .from_host = cl_from_host, .free = cl_free,
    .write = cl_write, .read = cl_read, .copy = cl_copy, .build = cl_build, .module_free = cl_module_free,
    .launch = cl_launch, .sync = cl_sync, .describe = cl_describe,
};

static mlc_status init(cl_device *c, int index) {
  MLC_TRY(load_cl(&c->dl, &c->f));
  cl_uint n = 0;
  cl_device_id *devs = all_devices(&c->f, &n);
  if (!n) {
    free(devs);
    return mlc_err(MLC_ERR_UNSUPPORTED, "opencl: no devices (is an OpenCL driver such as pocl-opencl-icd installed?)");
  }
  const char *e = getenv("MLC_OPENCL_DEVICE");
  if (index < 0 && e && *e)
    index = atoi(e);
  if (index >= (int)n) {
    free(devs);
    return mlc_err(MLC_ERR_INVALID_ARG, "opencl: no device %d (%u devices)", index, n);
  }
  if (index < 0) {
    index = 0;
    for (cl_uint i = 0; i < n; i++) {
      cl_device_type t = 0;
      c->f.clGetDeviceInfo(devs[i], CL_DEVICE_TYPE, sizeof t, &t, NULL);
      if (t & CL_DEVICE_TYPE_GPU) {
        index = (int)i;
        break;
      }
    }
  }
  c->dev = devs[index];
  free(devs);
  cl_info in;
  query(&c->f, c->dev, &in);
  snprintf(c->name, sizeof c->name, "%s", in.name);
  snprintf(c->version, sizeof c->version, "%s", in.version);
  snprintf(c->driver, sizeof c->driver, "%s", in.driver);
  cl_int err = 0;
  c->ctx = c->f.clCreateContext(NULL, 1, &c->dev, NULL, NULL, &err);
  if (err != CL_SUCCESS)
    return mlc_err(MLC_ERR_DEVICE, "opencl: clCreateContext failed (error %d)", (int)err);
  c->q = c->f.clCreateCommandQueue(c->ctx, c->dev, 0, &err);
  if (err != CL_SUCCESS)
    return mlc_err(MLC_ERR_DEVICE, "opencl: clCreateCommandQueue failed (error %d)", (int)err);
  c->base.vt = &CL_VT;
  c->base.caps = (mlc_device_caps){
      .lang = KIR_LANG_OPENCL,
      .subgroup_size = 0, /* OpenCL C 1.2: no subgroup operations in the kernels */
      .max_workgroup = (int)in.max_wg,
      .max_shared = in.local_mem,
      .max_binding = in.max_alloc,
      .fp16 = in.fp16,
      .int8_dot = in.int_dot,
  };
  mlc_buf b = {0};
  mlc_buf_puts(&b, "opencl: ");
  describe_info(&in, &b);
  snprintf(c->desc, sizeof c->desc, "%s", b.data ? b.data : "opencl");
  mlc_buf_free(&b);
  return MLC_OK;
}

mlc_status mlc_opencl_device_new(const mlc_device_opts *opt, int index, mlc_device **out) {
  *out = NULL;
  cl_device *c = calloc(1, sizeof *c);
  if (!c)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  mlc_status st = init(c, index);
  if (st != MLC_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mlc_last_error());
    cl_destroy(&c->base);
    return mlc_err(st, "%s", msg);
  }
  *out = &c->base;
  return MLC_OK;
}

void mlc_opencl_list(mlc_buf *out) {
  cl_fns f;
  void *dl = NULL;
  if (load_cl(&dl, &f) != MLC_OK) {
    mlc_buf_printf(out, "opencl: not available (%s)\n", mlc_last_error());
    return;
  }
  cl_uint n = 0;
  cl_device_id *devs = all_devices(&f, &n);
  if (!n)
    mlc_buf_puts(out, "opencl: no devices\n");
  for (cl_uint i = 0; i < n; i++) {
    cl_info in;
    query(&f, devs[i], &in);
    mlc_buf_printf(out, "opencl:%u  ", i);
    describe_info(&in, out);
    mlc_buf_puts(out, "\n");
  }
  free(devs);
}
#endif
