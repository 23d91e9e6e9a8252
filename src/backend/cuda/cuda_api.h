/*
 * cuda_api.h: the few CUDA driver API and NVRTC entry points the backend calls, declared here
 * (types and numeric constants as in cuda.h / nvrtc.h) so the build needs no CUDA toolkit; both
 * libraries are resolved with dlopen/dlsym at run time (cuda_load.c).
 */
#ifndef MLC_CUDA_API_H
#define MLC_CUDA_API_H

#include <stddef.h>

#include "base/base.h"

typedef int CUresult; /* 0: CUDA_SUCCESS */
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
typedef struct CUevent_st *CUevent;
/* cuLaunchKernelEx's config and attributes (cuda.h CUlaunchConfig, CUlaunchAttribute) */
typedef struct mlc_cu_launch_attr {
  int id; /* CU_LAUNCH_ATTRIBUTE_*: 6 = PROGRAMMATIC_STREAM_SERIALIZATION */
  char pad[4];
  union {
    char raw[64];
    int i;
  } value;
} mlc_cu_launch_attr;
typedef struct mlc_cu_launch_config {
  unsigned gx, gy, gz, bx, by, bz, shared;
  CUstream stream;
  mlc_cu_launch_attr *attrs;
  unsigned nattrs;
} mlc_cu_launch_config;

enum {
  MLC_CU_ATTR_MAX_THREADS_PER_BLOCK = 1,
  MLC_CU_ATTR_MAX_SHARED_PER_BLOCK = 8,
  MLC_CU_ATTR_WARP_SIZE = 10,
  MLC_CU_ATTR_CLOCK_RATE = 13,
  MLC_CU_ATTR_SM_COUNT = 16,
  MLC_CU_ATTR_MEMORY_CLOCK_RATE = 36,
  MLC_CU_ATTR_BUS_WIDTH = 37,
  MLC_CU_ATTR_CC_MAJOR = 75,
  MLC_CU_ATTR_CC_MINOR = 76,
  MLC_CU_FUNC_MAX_THREADS_PER_BLOCK = 0,
  MLC_CU_FUNC_SHARED_SIZE_BYTES = 1,
  MLC_CU_FUNC_LOCAL_SIZE_BYTES = 3,
  MLC_CU_FUNC_NUM_REGS = 4,
  MLC_CUDA_ERROR_PLACEHOLDER_LIBRARY = 34,
  MLC_CUDA_ERROR_NO_DEVICE = 100,
};

typedef struct mlc_cu_api {
  CUresult (*Init)(unsigned flags);
  CUresult (*DriverGetVersion)(int *v);
  CUresult (*DeviceGetCount)(int *n);
  CUresult (*DeviceGet)(CUdevice *d, int ordinal);
  CUresult (*DeviceGetName)(char *name, int len, CUdevice d);
  CUresult (*DeviceGetAttribute)(int *v, int attr, CUdevice d);
  CUresult (*DeviceTotalMem)(size_t *bytes, CUdevice d);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *c, CUdevice d);
  CUresult (*DevicePrimaryCtxRelease)(CUdevice d);
  CUresult (*CtxSetCurrent)(CUcontext c);
  CUresult (*CtxSynchronize)(void);
  CUresult (*MemAlloc)(CUdeviceptr *p, size_t bytes);
  CUresult (*MemFree)(CUdeviceptr p);
  CUresult (*MemsetD8)(CUdeviceptr p, unsigned char v, size_t n);
  CUresult (*MemcpyHtoD)(CUdeviceptr dst, const void *src, size_t n);
  CUresult (*MemcpyDtoH)(void *dst, CUdeviceptr src, size_t n);
  CUresult (*MemcpyDtoD)(CUdeviceptr dst, CUdeviceptr src, size_t n);
  CUresult (*ModuleLoadData)(CUmodule *m, const void *image);
  CUresult (*ModuleUnload)(CUmodule m);
  CUresult (*ModuleGetFunction)(CUfunction *f, CUmodule m, const char *name);
  CUresult (*FuncGetAttribute)(int *v, int attr, CUfunction f);
  CUresult (*LaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                           unsigned shared, CUstream s, void **params, void **extra);
  CUresult (*GetErrorName)(CUresult r, const char **s);
  CUresult (*GetErrorString)(CUresult r, const char **s);
  /* optional (NULL when the driver lacks one): streams and graphs, for step graphs */
  CUresult (*StreamCreate)(CUstream *s, unsigned flags);
  CUresult (*StreamDestroy)(CUstream s);
  CUresult (*StreamBeginCapture)(CUstream s, int mode); /* cuStreamBeginCapture_v2 */
  CUresult (*StreamEndCapture)(CUstream s, CUgraph *g);
  CUresult (*GraphInstantiateWithFlags)(CUgraphExec *e, CUgraph g, unsigned long long flags);
  CUresult (*GraphLaunch)(CUgraphExec e, CUstream s);
  CUresult (*GraphExecDestroy)(CUgraphExec e);
  CUresult (*GraphDestroy)(CUgraph g);
  CUresult (*LaunchKernelEx)(const mlc_cu_launch_config *cfg, CUfunction f, void **params, void **extra);
  /* optional: events, for $MLC_CUDA_PROFILE (per-kernel times) */
  CUresult (*EventCreate)(CUevent *e, unsigned flags);
  CUresult (*EventDestroy)(CUevent e); /* cuEventDestroy_v2 */
  CUresult (*EventRecord)(CUevent e, CUstream s);
  CUresult (*EventSynchronize)(CUevent e);
  CUresult (*EventElapsedTime)(float *ms, CUevent a, CUevent b);
} mlc_cu_api;

typedef int nvrtcResult; /* 0: NVRTC_SUCCESS */
typedef struct _nvrtcProgram *nvrtcProgram;

typedef struct mlc_nvrtc_api {
  nvrtcResult (*Version)(int *major, int *minor);
  nvrtcResult (*CreateProgram)(nvrtcProgram *p, const char *src, const char *name, int nheaders,
                               const char *const *headers, const char *const *include_names);
  nvrtcResult (*CompileProgram)(nvrtcProgram p, int nopts, const char *const *opts);
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram p, size_t *n);
  nvrtcResult (*GetProgramLog)(nvrtcProgram p, char *log);
  nvrtcResult (*GetPTXSize)(nvrtcProgram p, size_t *n);
  nvrtcResult (*GetPTX)(nvrtcProgram p, char *ptx);
  nvrtcResult (*GetCUBINSize)(nvrtcProgram p, size_t *n);
  nvrtcResult (*GetCUBIN)(nvrtcProgram p, char *cubin);
  nvrtcResult (*DestroyProgram)(nvrtcProgram *p);
  const char *(*GetErrorString)(nvrtcResult r);
  nvrtcResult (*GetNumSupportedArchs)(int *n);   /* optional (NVRTC >= 11.2) */
  nvrtcResult (*GetSupportedArchs)(int *archs);  /* optional */
} mlc_nvrtc_api;

/* Loaded once (thread-safe); NULL with the last error set when the library is missing. */
const mlc_cu_api *mlc_cu_load(void);
const mlc_nvrtc_api *mlc_nvrtc_api_load(void);
/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" */
const char *mlc_cu_errstr(CUresult r);

#endif
