/*
 * device.h: the device API. One vtable per backend (cpu today; vulkan, opencl, cuda next), plus
 * the capabilities the compiler reads to choose a kernel language and schedules. The runtime
 * (src/runtime/model.c) does all its memory and launches through it; see docs/device.md.
 *
 * Memory is opaque (mlc_dmem); kernel arguments are (mem, byte offset) pairs. A module is a set
 * of compiled kernels, launched by index. Launch order is execution order on a device: the
 * runtime issues a whole step and calls sync only when it reads results back.
 */
#ifndef MLC_DEVICE_H
#define MLC_DEVICE_H

#include "kernel/kir.h"

typedef struct mlc_device mlc_device;
typedef struct mlc_dmem mlc_dmem;
typedef struct mlc_dmodule mlc_dmodule;

typedef struct mlc_device_caps {
  kir_lang lang;        /* the language kernels are rendered in for this device */
  int subgroup_size;    /* 0: no subgroup operations */
  int max_workgroup;    /* invocations per workgroup */
  size_t max_shared;    /* bytes of workgroup-shared memory */
  size_t max_binding;   /* largest range one kernel argument may span; 0: unlimited */
  bool fp16;            /* 16-bit float arithmetic */
  bool int8_dot;        /* 8-bit integer dot products */
  bool host_memory;     /* buffers are host memory: mapped weights are used in place */
  bool generic_kernels; /* kernels with sizes as parameters exist built in (no compiler needed) */
} mlc_device_caps;

typedef struct mlc_device_vt {
  const char *name;
  void (*destroy)(mlc_device *d);
  mlc_status (*alloc)(mlc_device *d, size_t bytes, mlc_dmem **out); /* zero-filled */
  /* Host memory that outlives the model (mapped weights): wrapped where the device can read it,
   * else copied once. */
  mlc_status (*from_host)(mlc_device *d, const void *p, size_t bytes, mlc_dmem **out);
  void (*free)(mlc_device *d, mlc_dmem *m);
  mlc_status (*write)(mlc_device *d, mlc_dmem *m, size_t off, const void *src, size_t n);
  mlc_status (*read)(mlc_device *d, mlc_dmem *m, size_t off, void *dst, size_t n);
  mlc_status (*copy)(mlc_device *d, mlc_dmem *dst, size_t doff, mlc_dmem *src, size_t soff, size_t n);
  /* Compiles kernels (sources in caps.lang, one per kernel, same order as names); with
   * sources == NULL, binds the built-in generic kernels of these names instead. */
  mlc_status (*build)(mlc_device *d, const char *const *names, const char *const *sources, int n, int verbose,
                      mlc_dmodule **out);
  void (*module_free)(mlc_device *d, mlc_dmodule *mod);
  /* Runs kernel `k` of mod over the parallel range [0, grid). */
  mlc_status (*launch)(mlc_device *d, mlc_dmodule *mod, int k, mlc_dmem *const *mem, const size_t *off, int nbuf,
                       const int64_t *ip, const float *fp, int64_t grid);
  mlc_status (*sync)(mlc_device *d);
  /* One line describing the device (name, threads or adapter). */
  const char *(*describe)(mlc_device *d);
  /* Optional (NULL: nothing to do). Bracket the launches of one forward step: in between, the
   * device may hold launches back and issue the sequence as one unit (CUDA: a graph, kept per
   * exact launch sequence, so a step of the same shape and buffers replays it; docs/device.md).
   * Any other call in between issues what was held first. step_end issues the rest and returns
   * the first launch error. */
  void (*step_begin)(mlc_device *d);
  mlc_status (*step_end)(mlc_device *d);
} mlc_device_vt;

struct mlc_device {
  const mlc_device_vt *vt;
  mlc_device_caps caps;
};

typedef struct mlc_device_opts {
  int threads; /* cpu: worker threads; 0: all cores */
} mlc_device_opts;

/* Opens a device by name ("cpu", "vulkan", "vulkan:1", "opencl", "opencl:0"); errors list the
 * devices this build has. */
mlc_status mlc_device_open(const char *name, const mlc_device_opts *opt, mlc_device **out);
void mlc_device_close(mlc_device *d);

/* Appends one line per device this build can open, with what it supports (`mlc devices`). */
void mlc_device_list(mlc_buf *out);

/* GPU backends (src/backend/vulkan, src/backend/opencl): index < 0 picks the default device
 * (MLC_VULKAN_DEVICE / MLC_OPENCL_DEVICE, else the first GPU); "vulkan:N" passes N. */
mlc_status mlc_vulkan_device_new(const mlc_device_opts *opt, int index, mlc_device **out);
void mlc_vulkan_list(mlc_buf *out);
mlc_status mlc_opencl_device_new(const mlc_device_opts *opt, int index, mlc_device **out);
void mlc_opencl_list(mlc_buf *out);

/* The CPU backend's constructor (src/backend/cpu/cpu_device.c). */
mlc_status mlc_cpu_device_new(const mlc_device_opts *opt, mlc_device **out);
int mlc_cpu_device_threads(const mlc_device *d);

#endif
