/* cuda_load.c: finding and binding libcuda.so.1 and NVRTC at run time (dlopen/dlsym). */
#include <dlfcn.h>
#include <glob.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_api.h"

/* ---- driver ---- */

static mlc_cu_api CU;
static const mlc_cu_api *cu_ok;
static char cu_why[512];
static pthread_once_t cu_once = PTHREAD_ONCE_INIT;

static bool bind(void *dl, void *slot, const char *sym, char *why, size_t nwhy, const char *lib) {
  void *p = dlsym(dl, sym);
  if (!p) {
    snprintf(why, nwhy, "%s has no symbol %s (driver too old?)", lib, sym);
    return false;
  }
  memcpy(slot, &p, sizeof p);
  return true;
}

static void cu_load_once(void) {
  void *dl = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *e = dlerror();
    snprintf(cu_why, sizeof cu_why, "cannot load the CUDA driver (libcuda.so.1): %s", e ? e : "not found");
    return;
  }
#define B(field, sym)                                                      \
  if (!bind(dl, &CU.field, sym, cu_why, sizeof cu_why, "libcuda.so.1")) \
    return;
  B(Init, "cuInit");
  B(DriverGetVersion, "cuDriverGetVersion");
  B(DeviceGetCount, "cuDeviceGetCount");
  B(DeviceGet, "cuDeviceGet");
  B(DeviceGetName, "cuDeviceGetName");
  B(DeviceGetAttribute, "cuDeviceGetAttribute");
  B(DeviceTotalMem, "cuDeviceTotalMem_v2");
  B(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  B(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  B(CtxSetCurrent, "cuCtxSetCurrent");
  B(CtxSynchronize, "cuCtxSynchronize");
  B(MemAlloc, "cuMemAlloc_v2");
  B(MemFree, "cuMemFree_v2");
  B(MemsetD8, "cuMemsetD8_v2");
  B(MemcpyHtoD, "cuMemcpyHtoD_v2");
  B(MemcpyDtoH, "cuMemcpyDtoH_v2");
  B(MemcpyDtoD, "cuMemcpyDtoD_v2");
  B(ModuleLoadData, "cuModuleLoadData");
  B(ModuleUnload, "cuModuleUnload");
  B(ModuleGetFunction, "cuModuleGetFunction");
  B(FuncGetAttribute, "cuFuncGetAttribute");
  B(LaunchKernel, "cuLaunchKernel");
  B(GetErrorName, "cuGetErrorName");
  B(GetErrorString, "cuGetErrorString");
#undef B
  /* optional: step graphs are off without them */
  static const char *const opt_syms[14] = {"cuLaunchKernelEx", "cuStreamCreate", "cuStreamDestroy_v2", "cuStreamBeginCapture_v2",
                                           "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
                                           "cuGraphExecDestroy", "cuGraphDestroy", "cuEventCreate", "cuEventDestroy_v2",
                                           "cuEventRecord", "cuEventSynchronize", "cuEventElapsedTime"};
  void **opt_slots[14] = {(void **)&CU.LaunchKernelEx, (void **)&CU.StreamCreate, (void **)&CU.StreamDestroy, (void **)&CU.StreamBeginCapture,
                          (void **)&CU.StreamEndCapture, (void **)&CU.GraphInstantiateWithFlags,
                          (void **)&CU.GraphLaunch, (void **)&CU.GraphExecDestroy, (void **)&CU.GraphDestroy,
                          (void **)&CU.EventCreate, (void **)&CU.EventDestroy, (void **)&CU.EventRecord,
                          (void **)&CU.EventSynchronize, (void **)&CU.EventElapsedTime};
  for (int i = 0; i < 14; i++) {
    void *p = dlsym(dl, opt_syms[i]);
    memcpy(opt_slots[i], &p, sizeof p);
  }
  cu_ok = &CU;
}

const mlc_cu_api *mlc_cu_load(void) {
  pthread_once(&cu_once, cu_load_once);
  if (!cu_ok)
    mlc_err(MLC_ERR_UNSUPPORTED, "%s", cu_why);
  return cu_ok;
}

const char *mlc_cu_errstr(CUresult r) {
  static _Thread_local char s[160];
  const char *name = NULL, *desc = NULL;
  if (cu_ok) {
    CU.GetErrorName(r, &name);
    CU.GetErrorString(r, &desc);
  }
  snprintf(s, sizeof s, "%s (%s)", name ? name : "CUDA error", desc ? desc : "unknown");
  if (!name)
    snprintf(s, sizeof s, "CUDA error %d", r);
  return s;
}

/* ---- NVRTC ---- */

static mlc_nvrtc_api NV;
static const mlc_nvrtc_api *nv_ok;
static char nv_why[1024];
static pthread_once_t nv_once = PTHREAD_ONCE_INIT;

static const char *NV_NAMES[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"};
enum { NNV = sizeof NV_NAMES / sizeof NV_NAMES[0] };

static void *try_dir(const char *dir) {
  for (int i = 0; i < NNV; i++) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, NV_NAMES[i]);
    void *dl = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    if (dl)
      return dl;
  }
  return NULL;
}

static void *nv_open(void) {
  const char *e = getenv("MLC_NVRTC");
  if (e && *e)
    return dlopen(e, RTLD_NOW | RTLD_LOCAL);
  for (int i = 0; i < NNV; i++) {
    void *dl = dlopen(NV_NAMES[i], RTLD_NOW | RTLD_LOCAL);
    if (dl)
      return dl;
  }
  const char *envs[] = {"CUDA_HOME", "CUDA_PATH"};
  for (int i = 0; i < 2; i++) {
    const char *h = getenv(envs[i]);
    if (h && *h) {
      char d[900];
      snprintf(d, sizeof d, "%s/lib64", h);
      void *dl = try_dir(d);
      if (dl)
        return dl;
    }
  }
  static const char *DIRS[] = {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                               "/usr/lib/x86_64-linux-gnu", "/usr/lib64"};
  for (size_t i = 0; i < sizeof DIRS / sizeof DIRS[0]; i++) {
    void *dl = try_dir(DIRS[i]);
    if (dl)
      return dl;
  }
  /* versioned toolkits (newest name last in glob order: try from the end) */
  glob_t g;
  void *dl = NULL;
  if (glob("/usr/local/cuda-*/lib64/libnvrtc.so.*", 0, NULL, &g) == 0) {
    for (size_t i = g.gl_pathc; i-- > 0 && !dl;)
      if (!strstr(g.gl_pathv[i], "builtins") && !strstr(g.gl_pathv[i], "alt"))
        dl = dlopen(g.gl_pathv[i], RTLD_NOW | RTLD_LOCAL);
    globfree(&g);
  }
  return dl;
}

static void nv_load_once(void) {
  void *dl = nv_open();
  if (!dl) {
    snprintf(nv_why, sizeof nv_why,
             "NVRTC not found (tried $MLC_NVRTC, libnvrtc.so{,.13,.12,.11.2} on the loader path, $CUDA_HOME/lib64, "
             "/usr/local/cuda/lib64, /usr/local/cuda-*/lib64); install the CUDA toolkit's NVRTC or set MLC_NVRTC");
    return;
  }
#define B(field, sym)                                              \
  if (!bind(dl, &NV.field, sym, nv_why, sizeof nv_why, "NVRTC")) \
    return;
  B(Version, "nvrtcVersion");
  B(CreateProgram, "nvrtcCreateProgram");
  B(CompileProgram, "nvrtcCompileProgram");
  B(GetProgramLogSize, "nvrtcGetProgramLogSize");
  B(GetProgramLog, "nvrtcGetProgramLog");
  B(GetPTXSize, "nvrtcGetPTXSize");
  B(GetPTX, "nvrtcGetPTX");
  B(GetCUBINSize, "nvrtcGetCUBINSize");
  B(GetCUBIN, "nvrtcGetCUBIN");
  B(DestroyProgram, "nvrtcDestroyProgram");
  B(GetErrorString, "nvrtcGetErrorString");
#undef B
  void *p = dlsym(dl, "nvrtcGetNumSupportedArchs");
  memcpy(&NV.GetNumSupportedArchs, &p, sizeof p);
  p = dlsym(dl, "nvrtcGetSupportedArchs");
  memcpy(&NV.GetSupportedArchs, &p, sizeof p);
  nv_ok = &NV;
}

const mlc_nvrtc_api *mlc_nvrtc_api_load(void) {
  pthread_once(&nv_once, nv_load_once);
  if (!nv_ok)
    mlc_err(MLC_ERR_UNSUPPORTED, "%s", nv_why);
  return nv_ok;
}
