/*
 * vk_device.c: Vulkan behind the device API (docs/backends.md).
 *
 * - libvulkan is opened with dlopen and every entry point is looked up through
 *   vkGetInstanceProcAddr / vkGetDeviceProcAddr, so the binary runs where Vulkan is missing.
 * - Device: MLC_VULKAN_DEVICE (or "vulkan:N") picks by index; else the first discrete GPU, then
 *   integrated, virtual, CPU (lavapipe). One compute queue.
 * - Memory: one VkBuffer + VkDeviceMemory per mlc_dmem, device-local where possible. Memory that
 *   is also host-visible (lavapipe, ReBAR) is mapped and read/written directly; else through a
 *   host-visible staging buffer with transfer commands.
 * - Kernels: GLSL rendered by render.c, SPIR-V through spirv.c (cached by content hash), one
 *   compute pipeline per kernel. Every kernel uses the same descriptor set layout: storage
 *   buffers at bindings 0..15 and the params block (ip[16], fp[4], g0, g1, bo[16]) at binding 16.
 * - Arguments: buffer i is bound at its offset rounded down to minStorageBufferOffsetAlignment,
 *   with range min(rest of the buffer, maxStorageBufferRange); the remainder in bytes goes to
 *   bo[i] and the shader adds it to every index (render.c index_of). A kernel argument may span at
 *   most maxStorageBufferRange bytes (caps.max_binding).
 * - Launches are collected as dispatch records and submitted as one step at sync/read/write/free:
 *   a step equal to the last one (each decode step of a shape) resubmits its recorded command
 *   buffer; else the step is recorded, with a memory barrier before each dispatch that touches a
 *   buffer range an earlier dispatch since the last barrier wrote, or writes one it read
 *   (MLC_VULKAN_ALL_BARRIERS=1: after every dispatch). Transfers go in a separate command buffer
 *   submitted first; staged writes are recorded there (not submitted), and a staged read of the
 *   pending step's results goes in a third one submitted after it, so a decode step is one
 *   submission. A fence waits for each submission.
 * - Kernels may take 8-bit integer dot products (shaderIntegerDotProduct, enabled where present:
 *   render.c's KIR_DP4A); MLC_VULKAN_INT_DOT=0 hides it, =emulate keeps the 8-bit GEMVs with
 *   the dot product emulated.
 * - MLC_VULKAN_PROFILE=1: timestamps around every dispatch, a table per kernel at destruction;
 *   MLC_VULKAN_STATS=1: dispatches, barriers, GPU and submit times per step.
 * - One VkInstance per process and one VkDevice per GPU, kept for the process (vk_shared).
 */
#include "backend/device.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/kprof.h"
#include "backend/vulkan/spirv.h"
#include "kernel/lower.h" /* MLC_KDYN: the step's row count in ip[], for the profile */

#if defined(__has_include)
#if __has_include(<vulkan/vulkan.h>)
#define MLC_HAVE_VULKAN_H 1
#endif
#endif

#ifndef MLC_HAVE_VULKAN_H
mlc_status mlc_vulkan_device_new(const mlc_device_opts *opt, int index, mlc_device **out) {
  *out = NULL;
  return mlc_err(MLC_ERR_UNSUPPORTED, "this build has no Vulkan headers (install libvulkan-dev and rebuild)");
}
void mlc_vulkan_list(mlc_buf *out) { mlc_buf_puts(out, "vulkan: not in this build (no Vulkan headers)\n"); }
#else

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#define PARAM_BINDING KIR_MAX_BUFS
#define NBINDINGS (KIR_MAX_BUFS + 1)
#define STEP_MAX 2048               /* dispatches per recorded step */
#define LOCAL_SIZE 64               /* render.c: layout(local_size_x = 64) */
#define STAGING_BYTES (16u << 20)

typedef struct vk_params {
  int32_t ip[16];
  float fp[4];
  int32_t g0, g1;
  int32_t bo[KIR_MAX_BUFS];
} vk_params;

/* One dispatch as launched: compared byte for byte with the recorded step (zero-filled). */
typedef struct vk_op {
  VkPipeline pipe;
  uint32_t nbuf, groups;
  uint32_t wmask;   /* bindings the kernel may write (not `readonly` in its GLSL) */
  uint32_t part;    /* 0, or the index of this piece of a launch split over several dispatches */
  int32_t lanes;    /* invocations per parallel index (profile) */
  const char *name; /* the kernel's name, owned by its module (profile) */
  VkDescriptorBufferInfo bi[KIR_MAX_BUFS];
  vk_params prm;
} vk_op;

/* A recorded step: its command buffer, descriptor sets and params slots, and the dispatches it
 * holds. A step whose dispatches equal the last one's (every decode step of one shape) submits
 * the recorded command buffer again instead of recording. */
typedef struct vk_step {
  VkCommandBuffer cb;
  VkDescriptorPool pool;
  VkQueryPool qpool; /* timestamps (MLC_VULKAN_PROFILE / MLC_VULKAN_STATS), else VK_NULL_HANDLE */
  mlc_dmem *params;  /* STEP_MAX slots */
  vk_op *ops;
  int n;
  int nbar;          /* barriers recorded (the one first and the one last included) */
  int nbar_ideal;    /* estimate: barriers were each argument's extent known (offset identity) */
} vk_step;

/* Buffer ranges accessed since the last barrier: one hull per buffer (a superset, so safe). */
#define TRACK_MAX 64
typedef struct vk_range {
  VkBuffer buf;
  VkDeviceSize lo, hi;
} vk_range;
typedef struct vk_track {
  vk_range rd[TRACK_MAX], wr[TRACK_MAX];
  int nrd, nwr;
} vk_track;


/* MLC_VULKAN_PROFILE / MLC_VULKAN_STATS: per step row count */
typedef struct vk_stepstat {
  long long rows, steps, replays, dispatches, barriers, barriers_ideal;
  double span_ms, kernel_ms, wall_ms; /* GPU first to last timestamp; dispatches' own; submit to fence */
} vk_stepstat;

/* ---- entry points ---- */
#define VK_INSTANCE_FNS(X)                                                                                            \
  X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)                               \
  X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceQueueFamilyProperties)      \
  X(vkGetPhysicalDeviceMemoryProperties) X(vkCreateDevice) X(vkGetDeviceProcAddr)                                    \
  X(vkEnumerateDeviceExtensionProperties)
#define VK_DEVICE_FNS(X)                                                                                              \
  X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements)        \
  X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory)                          \
  X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreateDescriptorSetLayout) X(vkDestroyDescriptorSetLayout)     \
  X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) X(vkCreateComputePipelines) X(vkDestroyPipeline)               \
  X(vkCreateDescriptorPool) X(vkDestroyDescriptorPool) X(vkResetDescriptorPool) X(vkAllocateDescriptorSets)           \
  X(vkUpdateDescriptorSets) X(vkCreateCommandPool) X(vkDestroyCommandPool) X(vkAllocateCommandBuffers)               \
  X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkResetCommandBuffer) X(vkCmdBindPipeline)                         \
  X(vkCmdBindDescriptorSets) X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer)           \
  X(vkQueueSubmit) X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences) X(vkDeviceWaitIdle)          \
  X(vkCreateQueryPool) X(vkDestroyQueryPool) X(vkCmdResetQueryPool) X(vkCmdWriteTimestamp) X(vkGetQueryPoolResults)

typedef struct vk_fns {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
  PFN_vkCreateInstance vkCreateInstance;
  PFN_vkEnumerateInstanceVersion vkEnumerateInstanceVersion;
#define DECL(f) PFN_##f f;
  VK_INSTANCE_FNS(DECL) VK_DEVICE_FNS(DECL)
#undef DECL
} vk_fns;

struct mlc_dmem {
  VkBuffer buf;
  VkDeviceMemory mem;
  size_t size;
  void *map; /* host-visible memory, mapped for the buffer's life */
};

struct mlc_dmodule {
  int n;
  VkPipeline *pipe; /* per kernel index (duplicates share: owned[i] says who frees) */
  bool *owned;
  int *lanes;       /* invocations per parallel index: a workgroup each when > 1 (render.c) */
  int *per;         /* outputs per parallel index ("mlc_per=P"): ceil(grid / P) indices are dispatched */
  uint32_t *wmask;  /* per kernel: bindings not declared `readonly` (render.c), i.e. possibly written */
  char **name;      /* per kernel (profile) */
};

typedef struct vk_info {
  VkPhysicalDeviceProperties props;
  uint32_t subgroup_size, subgroup_ops, subgroup_stages;
  bool fp16, int8, storage16, storage8, coop_matrix, api12;
  bool int_dot, int_dot_ext; /* shaderIntegerDotProduct; VK_KHR_shader_integer_dot_product listed */
  uint64_t heap_bytes, device_local_bytes;
} vk_info;

typedef struct vk_device {
  mlc_device base;
  vk_fns f;
  VkInstance inst;
  VkPhysicalDevice phys;
  VkDevice dev;
  VkQueue queue;
  uint32_t qfam;
  pthread_mutex_t *qlock; /* the shared queue's */
  vk_info info;
  VkPhysicalDeviceMemoryProperties memprops;
  VkDescriptorSetLayout dsl;
  VkPipelineLayout layout;
  VkCommandPool cpool;
  VkCommandBuffer cb; /* transfers (copies, fills, staging), submitted before the step */
  VkCommandBuffer cb_after; /* reads through staging of what the pending step writes: after it */
  bool recording_after;
  size_t stage_off;   /* staging bytes taken by the copies recorded since the last submission */
  VkFence fence;
  bool recording;
  vk_op *pend;        /* dispatches launched since the last submission (STEP_MAX) */
  int npend;
  vk_step step[2];    /* the recorded step and a spare to record the next one into */
  int cached;         /* index of the step that may be replayed, or -1 */
  bool no_replay;     /* MLC_VULKAN_NO_REPLAY=1: record every step */
  bool all_barriers;  /* MLC_VULKAN_ALL_BARRIERS=1: a barrier after every dispatch (no elision) */
  bool int8_dot;      /* caps.int8_dot: the compiler takes the 8-bit activation GEMVs */
  bool sdot;          /* KIR_DP4A by the SPIR-V integer dot product (else its emulation; render.c) */
  long replays;
  vk_track track, ideal; /* record_step's hazard tracking (ideal: the estimate, never used to elide) */
  /* MLC_VULKAN_PROFILE=1: timestamps around every dispatch; MLC_VULKAN_STATS=1: around every step */
  bool profile, stats;
  uint32_t nqueries;  /* per step's query pool: 0 (none), 2 (step), 2 + 2 * STEP_MAX (profile) */
  uint64_t ts_mask;   /* timestampValidBits */
  double ts_period;   /* ns per tick (timestampPeriod) */
  uint64_t *ts;       /* query results (2 + 2 * STEP_MAX); NULL: no timestamps */
  uint32_t ts_bits;
  mlc_kprof prof; /* MLC_VULKAN_PROFILE: GPU time per kernel, step rows and grid */
  vk_stepstat sstat[16];
  int nsstat;
  long long nsubmits;
  double submit_ms;   /* wall time of every submission, fence wait included */
  size_t param_slot;  /* bytes per slot (aligned) */
  mlc_dmem *staging;  /* host-visible, for memory that is not */
  bool no_map;        /* MLC_VULKAN_STAGING=1: device memory only through staging (as on a discrete GPU) */
  size_t align;       /* minStorageBufferOffsetAlignment */
  size_t max_range;   /* maxStorageBufferRange */
  uint32_t max_groups;
  char desc[384];
} vk_device;

static const char *vk_result_name(VkResult r) {
  switch (r) {
  case VK_SUCCESS: return "VK_SUCCESS";
  case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
  case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
  case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
  case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
  case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
  case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
  case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
  case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
  case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
  default: return "VkResult error";
  }
}
#define VKCHECK(call, what)                                                                                           \
  do {                                                                                                                \
    VkResult r_ = (call);                                                                                             \
    if (r_ != VK_SUCCESS)                                                                                             \
      return mlc_err(r_ == VK_ERROR_OUT_OF_DEVICE_MEMORY || r_ == VK_ERROR_OUT_OF_HOST_MEMORY ? MLC_ERR_NOMEM         \
                                                                                                : MLC_ERR_DEVICE,    \
                     "vulkan: %s failed: %s (%d)", what, vk_result_name(r_), (int)r_);                                \
  } while (0)

/* ---- loader ---- */
static mlc_status load_vulkan(void **dl_out, vk_fns *f) {
  const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
  void *dl = NULL;
  for (size_t i = 0; i < 2 && !dl; i++)
    dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!dl)
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: libvulkan.so.1 is not installed (%s)", dlerror());
  void *p = dlsym(dl, "vkGetInstanceProcAddr");
  if (!p) {
    dlclose(dl);
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: libvulkan has no vkGetInstanceProcAddr");
  }
  memcpy(&f->vkGetInstanceProcAddr, &p, sizeof p);
  f->vkCreateInstance = (PFN_vkCreateInstance)f->vkGetInstanceProcAddr(NULL, "vkCreateInstance");
  f->vkEnumerateInstanceVersion =
      (PFN_vkEnumerateInstanceVersion)f->vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
  if (!f->vkCreateInstance) {
    dlclose(dl);
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: no vkCreateInstance");
  }
  *dl_out = dl;
  return MLC_OK;
}

static mlc_status create_instance(vk_fns *f, VkInstance *inst) {
  uint32_t ver = VK_API_VERSION_1_0;
  if (f->vkEnumerateInstanceVersion)
    f->vkEnumerateInstanceVersion(&ver);
  if (ver < VK_API_VERSION_1_1)
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: the loader supports Vulkan %u.%u; 1.1 is needed", VK_VERSION_MAJOR(ver),
                   VK_VERSION_MINOR(ver));
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "mlc-c",
                           .pEngineName = "mlc-c", .apiVersion = ver >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : ver};
  VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
  VkResult r = f->vkCreateInstance(&ci, NULL, inst);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: no Vulkan driver found (install mesa-vulkan-drivers or the GPU vendor's "
                                        "driver; VK_DRIVER_FILES can name its ICD .json)");
  VKCHECK(r, "vkCreateInstance");
#define LOAD(fn)                                                                                                      \
  f->fn = (PFN_##fn)f->vkGetInstanceProcAddr(*inst, #fn);                                                             \
  if (!f->fn)                                                                                                         \
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: entry point %s missing", #fn);
  VK_INSTANCE_FNS(LOAD)
#undef LOAD
  return MLC_OK;
}

/* One instance per process, and one VkDevice per physical device, created on first use and kept
 * (drivers do not all survive many instance/device creations: NVIDIA's refused new instances
 * after a few dozen model loads in one process). Each mlc_device makes its own pools, command
 * buffers and fence on the shared VkDevice; submissions to the shared queue are serialised. */
typedef struct vk_shared {
  VkPhysicalDevice phys;
  VkDevice dev;
  uint32_t qfam;
  VkQueue queue;
  vk_fns f; /* instance and device entry points */
  pthread_mutex_t qlock;
} vk_shared;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static void *g_dl;
static vk_fns g_f;
static VkInstance g_inst;
static vk_shared g_dev[16];
static int g_ndev;

/* The process's instance (g_lock held). */
static mlc_status shared_instance(void) {
  if (g_inst)
    return MLC_OK;
  if (!g_dl)
    MLC_TRY(load_vulkan(&g_dl, &g_f));
  VkInstance inst = VK_NULL_HANDLE;
  mlc_status st = create_instance(&g_f, &inst);
  if (st != MLC_OK) {
    if (inst && g_f.vkDestroyInstance)
      g_f.vkDestroyInstance(inst, NULL);
    return st;
  }
  g_inst = inst;
  return MLC_OK;
}

static bool has_ext(const VkExtensionProperties *e, uint32_t n, const char *name) {
  for (uint32_t i = 0; i < n; i++)
    if (!strcmp(e[i].extensionName, name))
      return true;
  return false;
}

static void query_info(const vk_fns *f, VkPhysicalDevice pd, vk_info *in) {
  memset(in, 0, sizeof *in);
  VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
  f->vkGetPhysicalDeviceProperties2(pd, &p2);
  in->props = p2.properties;
  in->subgroup_size = sg.subgroupSize;
  in->subgroup_ops = sg.supportedOperations;
  in->subgroup_stages = sg.supportedStages;
  in->api12 = in->props.apiVersion >= VK_API_VERSION_1_2;
  uint32_t ne = 0;
  f->vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, NULL);
  VkExtensionProperties *ext = calloc(ne ? ne : 1, sizeof *ext);
  if (ext && f->vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, ext) == VK_SUCCESS) {
    in->int_dot_ext = has_ext(ext, ne, "VK_KHR_shader_integer_dot_product");
    in->coop_matrix = has_ext(ext, ne, "VK_KHR_cooperative_matrix") || has_ext(ext, ne, "VK_NV_cooperative_matrix");
  }
  free(ext);
  /* the integer dot product is a feature (core in 1.3, else the extension's): asked only where
   * the structure is known */
  VkPhysicalDeviceShaderIntegerDotProductFeatures dot = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
  VkPhysicalDevice16BitStorageFeatures s16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  if (in->props.apiVersion >= VK_API_VERSION_1_3 || in->int_dot_ext)
    s16.pNext = &dot;
  VkPhysicalDeviceVulkan12Features v12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &s16};
  VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = in->api12 ? (void *)&v12 : (void *)&s16};
  f->vkGetPhysicalDeviceFeatures2(pd, &f2);
  in->storage16 = s16.storageBuffer16BitAccess;
  in->int_dot = dot.shaderIntegerDotProduct;
  if (in->api12) {
    in->fp16 = v12.shaderFloat16;
    in->int8 = v12.shaderInt8;
    in->storage8 = v12.storageBuffer8BitAccess;
  }
  VkPhysicalDeviceMemoryProperties mp;
  f->vkGetPhysicalDeviceMemoryProperties(pd, &mp);
  for (uint32_t i = 0; i < mp.memoryHeapCount; i++) {
    in->heap_bytes += mp.memoryHeaps[i].size;
    if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      in->device_local_bytes += mp.memoryHeaps[i].size;
  }
}

static const char *type_name(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
  default: return "other";
  }
}

static void describe_info(const vk_info *in, mlc_buf *b) {
  const VkPhysicalDeviceLimits *l = &in->props.limits;
  bool arith = (in->subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) && (in->subgroup_stages & VK_SHADER_STAGE_COMPUTE_BIT);
  mlc_buf_printf(b, "%s (%s, Vulkan %u.%u.%u): subgroup %u%s, workgroup %u, shared %u KiB, binding %.0f MiB, fp16 %s, "
                 "int8 %s, 16-bit storage %s, 8-bit storage %s, int dot %s, coop matrix %s, memory %.1f GiB",
                 in->props.deviceName, type_name(in->props.deviceType), VK_VERSION_MAJOR(in->props.apiVersion),
                 VK_VERSION_MINOR(in->props.apiVersion), VK_VERSION_PATCH(in->props.apiVersion), in->subgroup_size,
                 arith ? " (arithmetic)" : "", l->maxComputeWorkGroupInvocations, l->maxComputeSharedMemorySize / 1024,
                 l->maxStorageBufferRange / 1048576.0, in->fp16 ? "yes" : "no", in->int8 ? "yes" : "no",
                 in->storage16 ? "yes" : "no", in->storage8 ? "yes" : "no", in->int_dot ? "yes" : "no",
                 in->coop_matrix ? "yes" : "no", (double)(in->device_local_bytes ? in->device_local_bytes : in->heap_bytes) / 1073741824.0);
}

static int rank(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
  default: return 4;
  }
}

/* ---- memory ---- */
static int find_memtype(const VkPhysicalDeviceMemoryProperties *mp, uint32_t bits, VkMemoryPropertyFlags want) {
  for (uint32_t i = 0; i < mp->memoryTypeCount; i++)
    if ((bits & (1u << i)) && (mp->memoryTypes[i].propertyFlags & want) == want)
      return (int)i;
  return -1;
}

static mlc_status buf_new(vk_device *v, size_t bytes, bool host, mlc_dmem **out) {
  *out = NULL;
  mlc_dmem *m = calloc(1, sizeof *m);
  if (!m)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  m->size = bytes;
  size_t sz = (bytes + 15) & ~(size_t)15;
  if (!sz)
    sz = 16;
  VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = sz,
                           .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                    VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                           .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
  VkResult r = v->f.vkCreateBuffer(v->dev, &bi, NULL, &m->buf);
  if (r != VK_SUCCESS) {
    free(m);
    return mlc_err(MLC_ERR_NOMEM, "vulkan: vkCreateBuffer of %zu bytes failed: %s", bytes, vk_result_name(r));
  }
  VkMemoryRequirements req;
  v->f.vkGetBufferMemoryRequirements(v->dev, m->buf, &req);
  const VkMemoryPropertyFlags HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  int t = -1;
  if (host) {
    t = find_memtype(&v->memprops, req.memoryTypeBits, HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (t < 0)
      t = find_memtype(&v->memprops, req.memoryTypeBits, HV);
  } else {
    /* device-local; mapped too when the device offers that (unified memory, lavapipe) */
    t = find_memtype(&v->memprops, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | HV);
    if (t >= 0 && (v->info.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU || v->no_map))
      t = -1; /* a discrete GPU's host-visible window (BAR) is small: keep it for staging */
    if (t < 0)
      t = find_memtype(&v->memprops, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (t < 0)
      t = find_memtype(&v->memprops, req.memoryTypeBits, HV);
  }
  if (t < 0) {
    v->f.vkDestroyBuffer(v->dev, m->buf, NULL);
    free(m);
    return mlc_err(MLC_ERR_DEVICE, "vulkan: no memory type for a buffer");
  }
  VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                             .memoryTypeIndex = (uint32_t)t};
  r = v->f.vkAllocateMemory(v->dev, &ai, NULL, &m->mem);
  if (r == VK_SUCCESS)
    r = v->f.vkBindBufferMemory(v->dev, m->buf, m->mem, 0);
  if (r == VK_SUCCESS && (v->memprops.memoryTypes[t].propertyFlags & HV) == HV && (host || !v->no_map))
    r = v->f.vkMapMemory(v->dev, m->mem, 0, VK_WHOLE_SIZE, 0, &m->map);
  if (r != VK_SUCCESS) {
    if (m->mem)
      v->f.vkFreeMemory(v->dev, m->mem, NULL);
    v->f.vkDestroyBuffer(v->dev, m->buf, NULL);
    free(m);
    return mlc_err(MLC_ERR_NOMEM, "vulkan: allocating %zu bytes of device memory failed: %s", bytes, vk_result_name(r));
  }
  *out = m;
  return MLC_OK;
}

static void buf_free(vk_device *v, mlc_dmem *m) {
  if (!m)
    return;
  if (m->map)
    v->f.vkUnmapMemory(v->dev, m->mem);
  v->f.vkDestroyBuffer(v->dev, m->buf, NULL);
  v->f.vkFreeMemory(v->dev, m->mem, NULL);
  free(m);
}

/* ---- command recording ---- */
static mlc_status flush(vk_device *v);

/* Starts (or continues) recording into cb. */
static mlc_status begin_cb(vk_device *v, VkCommandBuffer cb, bool *recording) {
  if (*recording)
    return MLC_OK;
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                 .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
  VKCHECK(v->f.vkBeginCommandBuffer(cb, &bi), "vkBeginCommandBuffer");
  *recording = true;
  return MLC_OK;
}
/* Starts (or continues) recording transfers; launches pending before them are submitted first. */
static mlc_status begin(vk_device *v) {
  if (v->npend)
    MLC_TRY(flush(v));
  return begin_cb(v, v->cb, &v->recording);
}
/* Staging bytes for one copy recorded into the next submission: [*at, *at + n), 16-byte aligned;
 * false when the buffer is full until that submission has run. */
static bool stage_take(vk_device *v, size_t n, size_t *at) {
  if (v->stage_off + n > STAGING_BYTES)
    return false;
  *at = v->stage_off;
  v->stage_off = (v->stage_off + n + 15) & ~(size_t)15;
  return true;
}

/* Every earlier compute or transfer write is visible to every later compute or transfer access. */
static void barrier_on(vk_device *v, VkCommandBuffer cb) {
  VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                                         VK_ACCESS_HOST_READ_BIT};
  VkPipelineStageFlags st = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  v->f.vkCmdPipelineBarrier(cb, st, st | VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
}
static void barrier(vk_device *v) { barrier_on(v, v->cb); }

/* ---- hazard tracking ----
 * A barrier goes before a dispatch only when it reads or writes a range written since the last
 * barrier (read/write after write) or writes a range read since then (write after read). Every
 * bound buffer counts as read; the ones its GLSL does not declare `readonly` (render.c:
 * kir_buf.write) as written too. The backend learns only where an argument starts, not how long
 * it is, so an argument's range is its whole binding: from its offset to the end of the buffer
 * (at most maxStorageBufferRange), which is what the shader can reach. Pieces of one launch split
 * over several dispatches (a grid over maxComputeWorkGroupCount) need none between them: they are
 * one kernel over disjoint indices. MLC_VULKAN_ALL_BARRIERS=1: one after every dispatch. */
static bool range_hit(const vk_range *set, int n, const vk_range *r) {
  for (int i = 0; i < n; i++)
    if (set[i].buf == r->buf && set[i].lo < r->hi && r->lo < set[i].hi)
      return true;
  return false;
}

/* adds r to the set, as the hull with the buffer's range there; false when the set is full */
static bool range_add(vk_range *set, int *n, const vk_range *r) {
  for (int i = 0; i < *n; i++)
    if (set[i].buf == r->buf) {
      if (r->lo < set[i].lo)
        set[i].lo = r->lo;
      if (r->hi > set[i].hi)
        set[i].hi = r->hi;
      return true;
    }
  if (*n == TRACK_MAX)
    return false;
  set[(*n)++] = *r;
  return true;
}

/* binding i of op: its whole bound range; or (point) one byte where the argument starts, the
 * optimistic estimate of what exact extents could give (reported, never used to drop a barrier) */
static vk_range op_range(const vk_op *op, int i, bool point) {
  const VkDescriptorBufferInfo *b = &op->bi[i];
  if (point)
    return (vk_range){b->buffer, b->offset + (VkDeviceSize)op->prm.bo[i], b->offset + (VkDeviceSize)op->prm.bo[i] + 1};
  return (vk_range){b->buffer, b->offset, b->offset + b->range};
}

/* Whether op must wait for the accesses since the last barrier; then (after that barrier, when
 * one is put) adds op's accesses. */
static bool track_need(const vk_track *t, const vk_op *op, bool point) {
  if (op->part)
    return false;
  if (t->nrd < 0) /* a set overflowed: unknown accesses */
    return true;
  for (uint32_t i = 0; i < op->nbuf; i++) {
    vk_range r = op_range(op, (int)i, point);
    if (range_hit(t->wr, t->nwr, &r) || ((op->wmask >> i & 1) && range_hit(t->rd, t->nrd, &r)))
      return true;
  }
  return false;
}
static void track_reset(vk_track *t) { t->nrd = t->nwr = 0; }
static void track_add(vk_track *t, const vk_op *op, bool point) {
  if (t->nrd < 0)
    return;
  for (uint32_t i = 0; i < op->nbuf; i++) {
    vk_range r = op_range(op, (int)i, point);
    if (!range_add(t->rd, &t->nrd, &r) || ((op->wmask >> i & 1) && !range_add(t->wr, &t->nwr, &r))) {
      t->nrd = -1; /* the next dispatch gets a barrier */
      return;
    }
  }
}

/* Records the pending dispatches into step s: a barrier first (earlier work in submission order
 * is complete and visible), one before each dispatch that depends on one since the last barrier
 * (above), one last (for the host and the next submission). With timestamps: query 0 (top of
 * pipe) and 1 (after the last barrier) bracket the step; with MLC_VULKAN_PROFILE, queries 2 + 2i
 * and 3 + 2i bracket dispatch i (bottom of pipe: after everything before is done). */
static mlc_status record_step(vk_device *v, int s) {
  vk_step *st = &v->step[s];
  st->n = 0;
  VKCHECK(v->f.vkResetCommandBuffer(st->cb, 0), "vkResetCommandBuffer");
  VKCHECK(v->f.vkResetDescriptorPool(v->dev, st->pool, 0), "vkResetDescriptorPool");
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  VKCHECK(v->f.vkBeginCommandBuffer(st->cb, &bi), "vkBeginCommandBuffer");
  if (st->qpool) {
    v->f.vkCmdResetQueryPool(st->cb, st->qpool, 0, v->nqueries);
    v->f.vkCmdWriteTimestamp(st->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, st->qpool, 0);
  }
  barrier_on(v, st->cb);
  st->nbar = st->nbar_ideal = 1;
  track_reset(&v->track);
  track_reset(&v->ideal);
  for (int i = 0; i < v->npend; i++) {
    const vk_op *op = &v->pend[i];
    size_t poff = (size_t)i * v->param_slot;
    memcpy((char *)st->params->map + poff, &op->prm, sizeof op->prm);
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = st->pool, .descriptorSetCount = 1, .pSetLayouts = &v->dsl};
    VkDescriptorSet set;
    VKCHECK(v->f.vkAllocateDescriptorSets(v->dev, &ai, &set), "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo pb = {.buffer = st->params->buf, .offset = poff, .range = sizeof op->prm};
    VkWriteDescriptorSet w[2] = {
        {.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set, .dstBinding = PARAM_BINDING,
         .descriptorCount = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &pb},
        {.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set, .dstBinding = 0, .descriptorCount = op->nbuf,
         .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = op->bi}};
    v->f.vkUpdateDescriptorSets(v->dev, op->nbuf ? 2 : 1, w, 0, NULL);
    bool need = v->all_barriers ? i > 0 : track_need(&v->track, op, false);
    if (need) {
      barrier_on(v, st->cb);
      st->nbar++;
      track_reset(&v->track);
    }
    track_add(&v->track, op, false);
    if (i > 0 && track_need(&v->ideal, op, true)) {
      st->nbar_ideal++;
      track_reset(&v->ideal);
    }
    track_add(&v->ideal, op, true);
    v->f.vkCmdBindPipeline(st->cb, VK_PIPELINE_BIND_POINT_COMPUTE, op->pipe);
    v->f.vkCmdBindDescriptorSets(st->cb, VK_PIPELINE_BIND_POINT_COMPUTE, v->layout, 0, 1, &set, 0, NULL);
    if (st->qpool && v->profile)
      v->f.vkCmdWriteTimestamp(st->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, st->qpool, 2 + 2 * (uint32_t)i);
    v->f.vkCmdDispatch(st->cb, op->groups, 1, 1);
    if (st->qpool && v->profile)
      v->f.vkCmdWriteTimestamp(st->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, st->qpool, 3 + 2 * (uint32_t)i);
  }
  barrier_on(v, st->cb);
  st->nbar++;
  st->nbar_ideal++;
  if (st->qpool)
    v->f.vkCmdWriteTimestamp(st->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, st->qpool, 1);
  VKCHECK(v->f.vkEndCommandBuffer(st->cb), "vkEndCommandBuffer");
  memcpy(st->ops, v->pend, sizeof *v->pend * (size_t)v->npend);
  st->n = v->npend;
  return MLC_OK;
}

/* ---- profile and step statistics ---- */
/* The step's statistics after its fence: counts, and its timestamps where there are some. */
static void step_done(vk_device *v, int s, bool replayed, double wall_ms) {
  const vk_step *st = &v->step[s];
  long long rows = 0; /* the step's row count: the largest dynamic size (ip[MLC_KDYN]) of its dispatches */
  for (int i = 0; i < st->n; i++)
    if (st->ops[i].prm.ip[MLC_KDYN] > rows)
      rows = st->ops[i].prm.ip[MLC_KDYN];
  int k = 0;
  while (k < v->nsstat && v->sstat[k].rows != rows)
    k++;
  if (k == v->nsstat) {
    if (k == (int)(sizeof v->sstat / sizeof v->sstat[0])) {
      k--; /* the last entry takes the rest: "steps of -1 rows" */
      v->sstat[k].rows = -1;
    } else {
      memset(&v->sstat[v->nsstat++], 0, sizeof v->sstat[0]);
      v->sstat[k].rows = rows;
    }
  }
  vk_stepstat *ss = &v->sstat[k];
  ss->steps++;
  ss->replays += replayed;
  ss->dispatches += st->n;
  ss->barriers += st->nbar;
  ss->barriers_ideal += st->nbar_ideal;
  ss->wall_ms += wall_ms;
  if (!st->qpool || !v->ts)
    return;
  uint32_t nq = v->profile ? 2 + 2 * (uint32_t)st->n : 2;
  if (v->f.vkGetQueryPoolResults(v->dev, st->qpool, 0, nq, sizeof *v->ts * nq, v->ts, sizeof *v->ts,
                                 VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
    return;
  double ms_per_tick = v->ts_period * 1e-6;
  ss->span_ms += (double)((v->ts[1] - v->ts[0]) & v->ts_mask) * ms_per_tick;
  if (!v->profile)
    return;
  for (int i = 0; i < st->n; i++) {
    double ms = (double)((v->ts[3 + 2 * i] - v->ts[2 + 2 * i]) & v->ts_mask) * ms_per_tick;
    ss->kernel_ms += ms;
    const char *name = st->ops[i].name ? st->ops[i].name : "?";
    mlc_kprof_add(&v->prof, name, name, rows, st->ops[i].prm.g1 - st->ops[i].prm.g0, st->ops[i].lanes, ms);
  }
}

static void stats_print(vk_device *v) {
  for (int k = 0; k < v->nsstat; k++) {
    const vk_stepstat *ss = &v->sstat[k];
    double n = (double)(ss->steps ? ss->steps : 1);
    fprintf(stderr, "mlc: vulkan steps of %lld rows: %lld steps (%lld replayed), per step %.1f dispatches, %.1f barriers "
            "(%s; estimate were argument extents known: %.1f), submit to fence %.3f ms", ss->rows, ss->steps, ss->replays,
            ss->dispatches / n, ss->barriers / n, v->all_barriers ? "MLC_VULKAN_ALL_BARRIERS" : "elided where independent",
            ss->barriers_ideal / n, ss->wall_ms / n);
    if (v->ts)
      fprintf(stderr, ", GPU %.3f ms (first to last timestamp)", ss->span_ms / n);
    if (v->profile && v->ts)
      fprintf(stderr, ", dispatches %.3f ms (%.1f%% of GPU; the rest: barriers, gaps)", ss->kernel_ms / n,
              ss->span_ms > 0 ? 100 * ss->kernel_ms / ss->span_ms : 0);
    fputc('\n', stderr);
  }
  long long nsteps = 0;
  double step_ms = 0;
  for (int k = 0; k < v->nsstat; k++)
    nsteps += v->sstat[k].steps, step_ms += v->sstat[k].wall_ms;
  fprintf(stderr, "mlc: vulkan: %lld submissions, %.3f ms from submit to fence in all; %lld of them transfers only "
          "(writes, reads, copies: each waits for its fence), %.3f ms", v->nsubmits, v->submit_ms, v->nsubmits - nsteps,
          v->submit_ms - step_ms);
  if (v->ts)
    fprintf(stderr, "; timestamps: %u valid bits, %.3f ns per tick", v->ts_bits, v->ts_period);
  fputc('\n', stderr);
  if ((v->profile || v->stats) && !v->ts)
    fprintf(stderr, "mlc: vulkan: this queue has no timestamps (timestampValidBits 0): counts only\n");
}

/* Submits the recorded transfers, then the pending dispatches (the recorded step again when they
 * equal it, else newly recorded), then the reads recorded after them (cb_after), and waits. */
static mlc_status flush(vk_device *v) {
  if (!v->recording && !v->npend && !v->recording_after)
    return MLC_OK;
  VkCommandBuffer cbs[3];
  uint32_t ncb = 0;
  bool had_cb = v->recording;
  if (v->recording) {
    v->recording = false;
    VKCHECK(v->f.vkEndCommandBuffer(v->cb), "vkEndCommandBuffer");
    cbs[ncb++] = v->cb;
  }
  int s = -1;
  bool replayed = false;
  if (v->npend) {
    const vk_step *c = v->cached >= 0 ? &v->step[v->cached] : NULL;
    if (c && !v->no_replay && c->n == v->npend && !memcmp(c->ops, v->pend, sizeof *v->pend * (size_t)v->npend)) {
      s = v->cached;
      v->replays++;
      replayed = true;
    } else {
      s = v->cached == 0 ? 1 : 0;
      v->cached = -1;
      mlc_status st = record_step(v, s);
      if (st != MLC_OK) {
        v->npend = 0;
        return st;
      }
    }
    cbs[ncb++] = v->step[s].cb;
    v->npend = 0;
  }
  bool had_after = v->recording_after;
  if (had_after) {
    v->recording_after = false;
    VKCHECK(v->f.vkEndCommandBuffer(v->cb_after), "vkEndCommandBuffer");
    cbs[ncb++] = v->cb_after;
  }
  VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = ncb, .pCommandBuffers = cbs};
  double t0 = mlc_now();
  pthread_mutex_lock(v->qlock);
  VkResult qr = v->f.vkQueueSubmit(v->queue, 1, &si, v->fence);
  pthread_mutex_unlock(v->qlock);
  VKCHECK(qr, "vkQueueSubmit");
  VKCHECK(v->f.vkWaitForFences(v->dev, 1, &v->fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
  double wall_ms = 1000 * (mlc_now() - t0);
  v->nsubmits++;
  v->submit_ms += wall_ms;
  VKCHECK(v->f.vkResetFences(v->dev, 1, &v->fence), "vkResetFences");
  if (had_cb)
    VKCHECK(v->f.vkResetCommandBuffer(v->cb, 0), "vkResetCommandBuffer");
  if (had_after)
    VKCHECK(v->f.vkResetCommandBuffer(v->cb_after, 0), "vkResetCommandBuffer");
  v->stage_off = 0; /* the recorded copies have run */
  if (s >= 0) {
    v->cached = s;
    step_done(v, s, replayed, wall_ms);
  }
  return MLC_OK;
}

static void copy_on(vk_device *v, VkCommandBuffer cb, VkBuffer dst, size_t doff, VkBuffer src, size_t soff, size_t n) {
  VkBufferCopy c = {.srcOffset = soff, .dstOffset = doff, .size = n};
  v->f.vkCmdCopyBuffer(cb, src, dst, 1, &c);
  barrier_on(v, cb);
}
static void copy_cmd(vk_device *v, VkBuffer dst, size_t doff, VkBuffer src, size_t soff, size_t n) {
  copy_on(v, v->cb, dst, doff, src, soff, n);
}

/* ---- the device API ---- */
static mlc_status vk_alloc(mlc_device *d, size_t bytes, mlc_dmem **out) {
  vk_device *v = (vk_device *)d;
  MLC_TRY(buf_new(v, bytes, false, out));
  if ((*out)->map) {
    memset((*out)->map, 0, bytes);
    return MLC_OK;
  }
  mlc_status st = begin(v);
  if (st == MLC_OK) {
    v->f.vkCmdFillBuffer(v->cb, (*out)->buf, 0, VK_WHOLE_SIZE, 0);
    barrier(v);
  }
  return st;
}

/* Writes through staging are recorded, not submitted: the copies of a step's inputs go in one
 * submission with the step (the transfers run first); pending dispatches, which may read the old
 * contents, are submitted before. */
static mlc_status vk_write(mlc_device *d, mlc_dmem *m, size_t off, const void *src, size_t n) {
  vk_device *v = (vk_device *)d;
  if (m->map) {
    MLC_TRY(flush(v)); /* recorded work may use the old contents */
    memcpy((char *)m->map + off, src, n);
    return MLC_OK;
  }
  for (size_t done = 0; done < n;) {
    size_t c = n - done < STAGING_BYTES ? n - done : STAGING_BYTES, at = 0;
    MLC_TRY(begin(v));
    if (!stage_take(v, c, &at)) {
      MLC_TRY(flush(v));
      MLC_TRY(begin(v));
      stage_take(v, c, &at);
    }
    memcpy((char *)v->staging->map + at, (const char *)src + done, c);
    copy_cmd(v, m->buf, off + done, v->staging->buf, at, c);
    done += c;
  }
  return MLC_OK;
}

static mlc_status vk_read(mlc_device *d, mlc_dmem *m, size_t off, void *dst, size_t n) {
  vk_device *v = (vk_device *)d;
  if (m->map) {
    MLC_TRY(flush(v));
    memcpy(dst, (const char *)m->map + off, n);
    return MLC_OK;
  }
  for (size_t done = 0; done < n;) {
    size_t c = n - done < STAGING_BYTES ? n - done : STAGING_BYTES, at = 0;
    if (v->npend && stage_take(v, c, &at)) {
      /* after the pending step, in its submission (a decode step: inputs, step and logits in one) */
      MLC_TRY(begin_cb(v, v->cb_after, &v->recording_after));
      copy_on(v, v->cb_after, v->staging->buf, at, m->buf, off + done, c);
    } else {
      MLC_TRY(begin(v));
      if (!stage_take(v, c, &at)) {
        MLC_TRY(flush(v));
        MLC_TRY(begin(v));
        stage_take(v, c, &at);
      }
      copy_cmd(v, v->staging->buf, at, m->buf, off + done, c);
    }
    MLC_TRY(flush(v));
    memcpy((char *)dst + done, (const char *)v->staging->map + at, c);
    done += c;
  }
  return MLC_OK;
}

static mlc_status vk_from_host(mlc_device *d, const void *p, size_t bytes, mlc_dmem **out) {
  vk_device *v = (vk_device *)d;
  if (bytes > v->max_range) /* a kernel binds a weight whole: it must fit one binding */
    return mlc_err(MLC_ERR_LIMIT, "vulkan: a weight of %.1f MiB exceeds this device's largest storage binding "
                   "(maxStorageBufferRange %.1f MiB)", bytes / 1048576.0, v->max_range / 1048576.0);
  MLC_TRY(buf_new(v, bytes, false, out));
  mlc_status st = vk_write(d, *out, 0, p, bytes);
  if (st != MLC_OK) {
    buf_free(v, *out);
    *out = NULL;
  }
  return st;
}

static void vk_free(mlc_device *d, mlc_dmem *m) {
  vk_device *v = (vk_device *)d;
  if (!m)
    return;
  flush(v); /* recorded work may still use it */
  v->cached = -1; /* nor may a replayed step name it (a new buffer can get its handle) */
  buf_free(v, m);
}

static mlc_status vk_copy(mlc_device *d, mlc_dmem *dst, size_t doff, mlc_dmem *src, size_t soff, size_t n) {
  vk_device *v = (vk_device *)d;
  if (!n)
    return MLC_OK;
  MLC_TRY(begin(v));
  copy_cmd(v, dst->buf, doff, src->buf, soff, n);
  return MLC_OK;
}

static void vk_module_free(mlc_device *d, mlc_dmodule *mod) {
  vk_device *v = (vk_device *)d;
  if (!mod)
    return;
  flush(v);
  v->cached = -1;
  for (int i = 0; i < mod->n; i++)
    if (mod->owned[i] && mod->pipe[i])
      v->f.vkDestroyPipeline(v->dev, mod->pipe[i], NULL);
  for (int i = 0; mod->name && i < mod->n; i++)
    free(mod->name[i]);
  free(mod->name);
  free(mod->wmask);
  free(mod->pipe);
  free(mod->owned);
  free(mod->lanes);
  free(mod->per);
  free(mod);
}

/* Bindings a kernel may write: render.c declares every buffer argument
 * `layout(std430, binding = B) [readonly ]buffer ...`, and a `readonly` one cannot be written
 * (the GLSL compiler refuses). A binding whose declaration is not found counts as written. */
static uint32_t write_mask(const char *src) {
  uint32_t m = 0;
  for (int b = 0; b < KIR_MAX_BUFS; b++) {
    char pat[48];
    snprintf(pat, sizeof pat, "binding = %d) ", b);
    const char *p = strstr(src, pat);
    if (!p || strncmp(p + strlen(pat), "readonly buffer", 15))
      m |= 1u << b;
  }
  return m;
}

static mlc_status make_pipeline(vk_device *v, const char *name, const char *src, int verbose, VkPipeline *out) {
  uint32_t *spv = NULL;
  size_t nb = 0;
  bool cached = false;
  double t0 = mlc_now();
  char *own = NULL;
  /* no subgroup arithmetic in compute: the lane sums keep their shared-memory paths; no (or no
   * wanted) integer dot product: KIR_DP4A's emulation */
  MLC_TRY(kir_glsl_for_device(src, v->base.caps.subgroup_size > 0, v->sdot, &own));
  if (own)
    src = own;
  mlc_status cst = mlc_glsl_to_spirv(src, name, &spv, &nb, &cached);
  free(own);
  MLC_TRY(cst);
  if (verbose > 1)
    fprintf(stderr, "mlc: vulkan: %s: SPIR-V %zu bytes%s in %.3f s\n", name, nb, cached ? " (cached)" : "", mlc_now() - t0);
  VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = nb, .pCode = spv};
  VkShaderModule sm;
  VkResult r = v->f.vkCreateShaderModule(v->dev, &mi, NULL, &sm);
  free(spv);
  if (r != VK_SUCCESS)
    return mlc_err(MLC_ERR_DEVICE, "vulkan: vkCreateShaderModule(%s) failed: %s", name, vk_result_name(r));
  VkComputePipelineCreateInfo ci = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = sm, .pName = "main"},
      .layout = v->layout};
  r = v->f.vkCreateComputePipelines(v->dev, VK_NULL_HANDLE, 1, &ci, NULL, out);
  v->f.vkDestroyShaderModule(v->dev, sm, NULL);
  if (r != VK_SUCCESS)
    return mlc_err(MLC_ERR_DEVICE, "vulkan: vkCreateComputePipelines(%s) failed: %s", name, vk_result_name(r));
  return MLC_OK;
}

static mlc_status vk_build(mlc_device *d, const char *const *names, const char *const *sources, int n, int verbose,
                           mlc_dmodule **out) {
  vk_device *v = (vk_device *)d;
  *out = NULL;
  if (!sources)
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: no built-in generic kernels (kernels are compiled from GLSL)");
  mlc_dmodule *mod = calloc(1, sizeof *mod);
  if (!mod || !(mod->pipe = calloc((size_t)(n ? n : 1), sizeof *mod->pipe)) ||
      !(mod->owned = calloc((size_t)(n ? n : 1), sizeof *mod->owned)) ||
      !(mod->lanes = calloc((size_t)(n ? n : 1), sizeof *mod->lanes)) ||
      !(mod->per = calloc((size_t)(n ? n : 1), sizeof *mod->per)) ||
      !(mod->wmask = calloc((size_t)(n ? n : 1), sizeof *mod->wmask)) ||
      !(mod->name = calloc((size_t)(n ? n : 1), sizeof *mod->name))) {
    if (mod) {
      free(mod->pipe);
      free(mod->owned);
      free(mod->lanes);
      free(mod->per);
      free(mod->wmask);
    }
    free(mod);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  mod->n = n;
  for (int i = 0; i < n; i++)
    if (!(mod->name[i] = mlc_strdup(names[i] ? names[i] : "?"))) {
      vk_module_free(d, mod);
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    }
  double t0 = mlc_now();
  mlc_status st = MLC_OK;
  for (int i = 0; i < n && st == MLC_OK; i++) {
    int j = 0;
    while (j < i && strcmp(names[i], names[j]))
      j++;
    if (j < i) {
      mod->pipe[i] = mod->pipe[j];
      mod->lanes[i] = mod->lanes[j];
      mod->per[i] = mod->per[j];
      mod->wmask[i] = mod->wmask[j];
      continue;
    }
    const char *ln = strstr(sources[i], "// mlc_lanes="), *pm = strstr(sources[i], "// mlc_per=");
    mod->lanes[i] = ln ? atoi(ln + 13) : 1;
    mod->per[i] = pm ? atoi(pm + 11) : 1;
    if (mod->per[i] < 1) {
      st = mlc_err(MLC_ERR_INTERNAL, "vulkan: kernel %s: bad outputs per index %d", names[i], mod->per[i]);
      break;
    }
    mod->wmask[i] = write_mask(sources[i]);
    st = make_pipeline(v, names[i], sources[i], verbose, &mod->pipe[i]);
    mod->owned[i] = st == MLC_OK;
  }
  if (st != MLC_OK) {
    vk_module_free(d, mod);
    return st;
  }
  if (verbose)
    fprintf(stderr, "mlc: vulkan: %d kernels ready in %.2f s (SPIR-V by %s)\n", n, mlc_now() - t0, mlc_spirv_compiler());
  *out = mod;
  return MLC_OK;
}

static mlc_status vk_launch(mlc_device *d, mlc_dmodule *mod, int k, mlc_dmem *const *mem, const size_t *off, int nbuf,
                            const int64_t *ip, const float *fp, int64_t grid) {
  vk_device *v = (vk_device *)d;
  if (grid <= 0)
    return MLC_OK;
  if (nbuf > KIR_MAX_BUFS)
    return mlc_err(MLC_ERR_INTERNAL, "vulkan: %d buffers in one launch", nbuf);
  if (grid > INT32_MAX)
    return mlc_err(MLC_ERR_LIMIT, "vulkan: a parallel range of %lld exceeds 32-bit indices", (long long)grid);
  grid = (grid + mod->per[k] - 1) / mod->per[k]; /* parallel indices of P outputs each (render.c mlc_per) */
  vk_op op;
  memset(&op, 0, sizeof op); /* compared byte for byte */
  op.pipe = mod->pipe[k];
  op.nbuf = (uint32_t)nbuf;
  op.wmask = mod->wmask[k];
  op.lanes = mod->lanes[k];
  op.name = mod->name[k];
  for (int i = 0; i < 16; i++)
    op.prm.ip[i] = (int32_t)ip[i];
  for (int i = 0; i < 4; i++)
    op.prm.fp[i] = fp[i];
  for (int i = 0; i < nbuf; i++) {
    size_t o = off[i], base = o / v->align * v->align;
    size_t rest = mem[i]->size > base ? mem[i]->size - base : 0;
    size_t range = (rest + 3) & ~(size_t)3;
    if (range > v->max_range)
      range = v->max_range / 4 * 4;
    if (base + range > ((mem[i]->size + 15) & ~(size_t)15))
      range = ((mem[i]->size + 15) & ~(size_t)15) - base;
    if (!range)
      range = 4;
    op.bi[i] = (VkDescriptorBufferInfo){.buffer = mem[i]->buf, .offset = base, .range = range};
    op.prm.bo[i] = (int32_t)(o - base);
  }
  /* indices per workgroup: LOCAL_SIZE, or one for kernels with lanes */
  int64_t ipg = mod->lanes[k] > 1 ? 1 : LOCAL_SIZE, per = (int64_t)v->max_groups * ipg;
  for (int64_t g0 = 0; g0 < grid; g0 += per) {
    if (v->npend == STEP_MAX)
      MLC_TRY(flush(v));
    int64_t g1 = g0 + per < grid ? g0 + per : grid;
    op.prm.g0 = (int32_t)g0;
    op.prm.g1 = (int32_t)g1;
    op.groups = (uint32_t)((g1 - g0 + ipg - 1) / ipg);
    op.part = (uint32_t)(g0 / per);
    if (op.part && v->npend == 0)
      op.part = 0; /* the earlier pieces went in another submission */
    v->pend[v->npend++] = op;
  }
  return MLC_OK;
}

static mlc_status vk_sync(mlc_device *d) { return flush((vk_device *)d); }
static const char *vk_describe(mlc_device *d) { return ((vk_device *)d)->desc; }

static void vk_destroy(mlc_device *d) {
  vk_device *v = (vk_device *)d;
  if (v->dev)
    flush(v);
  if (v->stats || v->profile) {
    fprintf(stderr, "mlc: vulkan: %ld steps replayed from their recorded command buffer\n", v->replays);
    stats_print(v);
    mlc_kprof_print(&v->prof, "vulkan", "dispatches", "GPU time");
  }
  mlc_kprof_free(&v->prof);
  free(v->ts);
  if (v->dev) {
    for (int i = 0; i < 2; i++) {
      buf_free(v, v->step[i].params);
      free(v->step[i].ops);
      if (v->step[i].pool)
        v->f.vkDestroyDescriptorPool(v->dev, v->step[i].pool, NULL);
      if (v->step[i].qpool)
        v->f.vkDestroyQueryPool(v->dev, v->step[i].qpool, NULL);
    }
    buf_free(v, v->staging);
    if (v->fence)
      v->f.vkDestroyFence(v->dev, v->fence, NULL);
    if (v->cpool)
      v->f.vkDestroyCommandPool(v->dev, v->cpool, NULL);
    if (v->layout)
      v->f.vkDestroyPipelineLayout(v->dev, v->layout, NULL);
    if (v->dsl)
      v->f.vkDestroyDescriptorSetLayout(v->dev, v->dsl, NULL);
  }
  /* the VkDevice, the instance and libvulkan stay for the process (vk_shared) */
  free(v->pend);
  free(v);
}

static const mlc_device_vt VK_VT = {
    .name = "vulkan", .destroy = vk_destroy, .alloc = vk_alloc, .from_host = vk_from_host, .free = vk_free,
    .write = vk_write, .read = vk_read, .copy = vk_copy, .build = vk_build, .module_free = vk_module_free,
    .launch = vk_launch, .sync = vk_sync, .describe = vk_describe,
};

/* Physical devices in preference order (or the one asked for). */
static mlc_status pick(vk_device *v, int index) {
  uint32_t n = 0;
  VKCHECK(v->f.vkEnumeratePhysicalDevices(v->inst, &n, NULL), "vkEnumeratePhysicalDevices");
  if (!n)
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: no devices (is a Vulkan driver such as mesa-vulkan-drivers installed?)");
  VkPhysicalDevice *pd = calloc(n, sizeof *pd);
  if (!pd)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  v->f.vkEnumeratePhysicalDevices(v->inst, &n, pd);
  const char *e = getenv("MLC_VULKAN_DEVICE");
  if (index < 0 && e && *e)
    index = atoi(e);
  int best = -1, best_rank = 99;
  for (uint32_t i = 0; i < n; i++) {
    VkPhysicalDeviceProperties p;
    v->f.vkGetPhysicalDeviceProperties(pd[i], &p);
    if (p.apiVersion < VK_API_VERSION_1_1)
      continue;
    if (index >= 0 ? (int)i == index : rank(p.deviceType) < best_rank) {
      best = (int)i;
      best_rank = rank(p.deviceType);
    }
  }
  if (best >= 0)
    v->phys = pd[best];
  free(pd);
  if (best < 0)
    return index >= 0 ? mlc_err(MLC_ERR_INVALID_ARG, "vulkan: no device %d with Vulkan 1.1 (%u devices)", index, n)
                      : mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: no device supports Vulkan 1.1");
  return MLC_OK;
}

/* The shared VkDevice of v->phys, created on first use (g_lock held). */
static mlc_status shared_device(vk_device *v, vk_shared **out) {
  for (int i = 0; i < g_ndev; i++)
    if (g_dev[i].phys == v->phys) {
      *out = &g_dev[i];
      return MLC_OK;
    }
  if (g_ndev == (int)(sizeof g_dev / sizeof g_dev[0]))
    return mlc_err(MLC_ERR_LIMIT, "vulkan: too many devices");
  vk_shared *sh = &g_dev[g_ndev];
  memset(sh, 0, sizeof *sh);
  sh->phys = v->phys;
  sh->f = g_f;
  uint32_t nq = 0;
  g_f.vkGetPhysicalDeviceQueueFamilyProperties(v->phys, &nq, NULL);
  VkQueueFamilyProperties qf[32];
  if (nq > 32)
    nq = 32;
  g_f.vkGetPhysicalDeviceQueueFamilyProperties(v->phys, &nq, qf);
  int q = -1;
  for (uint32_t i = 0; i < nq; i++) /* prefer a compute queue without graphics (async compute) */
    if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && (q < 0 || !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)))
      q = (int)i;
  if (q < 0)
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: %s has no compute queue", v->info.props.deviceName);
  sh->qfam = (uint32_t)q;
  float prio = 1.0f;
  VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = sh->qfam,
                                .queueCount = 1, .pQueuePriorities = &prio};
  VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &qi};
  /* the integer dot product (KIR_DP4A's OpSDot: render.c GLSL_DP4A), with its extension before 1.3 */
  VkPhysicalDeviceShaderIntegerDotProductFeatures dot = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES,
                                                         .shaderIntegerDotProduct = VK_TRUE};
  const char *dot_ext = "VK_KHR_shader_integer_dot_product";
  if (v->info.int_dot) {
    di.pNext = &dot;
    if (v->info.props.apiVersion < VK_API_VERSION_1_3) {
      di.enabledExtensionCount = 1;
      di.ppEnabledExtensionNames = &dot_ext;
    }
  }
  VKCHECK(g_f.vkCreateDevice(v->phys, &di, NULL, &sh->dev), "vkCreateDevice");
#define LOAD(fn)                                                                                                      \
  sh->f.fn = (PFN_##fn)g_f.vkGetDeviceProcAddr(sh->dev, #fn);                                                         \
  if (!sh->f.fn)                                                                                                      \
    return mlc_err(MLC_ERR_UNSUPPORTED, "vulkan: device entry point %s missing", #fn);
  VK_DEVICE_FNS(LOAD)
#undef LOAD
  sh->f.vkGetDeviceQueue(sh->dev, sh->qfam, 0, &sh->queue);
  pthread_mutex_init(&sh->qlock, NULL);
  g_ndev++;
  *out = sh;
  return MLC_OK;
}

static mlc_status init(vk_device *v, int index) {
  pthread_mutex_lock(&g_lock);
  mlc_status st = shared_instance();
  vk_shared *sh = NULL;
  if (st == MLC_OK) {
    v->f = g_f;
    v->inst = g_inst;
    st = pick(v, index);
  }
  if (st == MLC_OK) {
    query_info(&v->f, v->phys, &v->info);
    st = shared_device(v, &sh);
  }
  pthread_mutex_unlock(&g_lock);
  MLC_TRY(st);
  v->f = sh->f;
  v->dev = sh->dev;
  v->qfam = sh->qfam;
  v->queue = sh->queue;
  v->qlock = &sh->qlock;
  const char *nr = getenv("MLC_VULKAN_NO_REPLAY");
  v->no_replay = nr && *nr && strcmp(nr, "0");
  const char *stg = getenv("MLC_VULKAN_STAGING");
  v->no_map = stg && *stg && strcmp(stg, "0");
  const char *ab = getenv("MLC_VULKAN_ALL_BARRIERS");
  v->all_barriers = ab && *ab && strcmp(ab, "0");
  const char *pr = getenv("MLC_VULKAN_PROFILE"), *ss = getenv("MLC_VULKAN_STATS");
  v->profile = pr && *pr && strcmp(pr, "0");
  v->stats = ss && *ss && strcmp(ss, "0");
  v->f.vkGetPhysicalDeviceMemoryProperties(v->phys, &v->memprops);
  const VkPhysicalDeviceLimits *l = &v->info.props.limits;
  v->align = l->minStorageBufferOffsetAlignment ? l->minStorageBufferOffsetAlignment : 1;
  v->max_range = l->maxStorageBufferRange;
  v->max_groups = l->maxComputeWorkGroupCount[0];
  v->param_slot = (sizeof(vk_params) + v->align - 1) / v->align * v->align;
  if (v->profile || v->stats) {
    /* timestamps: where the queue family has valid bits (timestampComputeAndGraphics says all
     * compute queues do; a compute-only family may have them without it) */
    uint32_t nq = 0;
    VkQueueFamilyProperties qf[32];
    v->f.vkGetPhysicalDeviceQueueFamilyProperties(v->phys, &nq, NULL);
    if (nq > 32)
      nq = 32;
    v->f.vkGetPhysicalDeviceQueueFamilyProperties(v->phys, &nq, qf);
    uint32_t bits = v->qfam < nq ? qf[v->qfam].timestampValidBits : 0;
    if (bits && l->timestampPeriod > 0) {
      v->ts_mask = bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1;
      v->ts_period = l->timestampPeriod;
      v->nqueries = v->profile ? 2 + 2 * STEP_MAX : 2;
      if (!(v->ts = calloc(2 + 2 * STEP_MAX, sizeof *v->ts)))
        return mlc_err(MLC_ERR_NOMEM, "out of memory");
    }
    v->ts_bits = bits;
  }

  VkDescriptorSetLayoutBinding b[NBINDINGS];
  for (int i = 0; i < NBINDINGS; i++)
    b[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                          .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
  VkDescriptorSetLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                        .bindingCount = NBINDINGS, .pBindings = b};
  VKCHECK(v->f.vkCreateDescriptorSetLayout(v->dev, &li, NULL, &v->dsl), "vkCreateDescriptorSetLayout");
  VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1,
                                    .pSetLayouts = &v->dsl};
  VKCHECK(v->f.vkCreatePipelineLayout(v->dev, &pli, NULL, &v->layout), "vkCreatePipelineLayout");
  VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                 .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = v->qfam};
  VKCHECK(v->f.vkCreateCommandPool(v->dev, &cpi, NULL, &v->cpool), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = v->cpool,
                                     .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1};
  VKCHECK(v->f.vkAllocateCommandBuffers(v->dev, &cai, &v->cb), "vkAllocateCommandBuffers");
  VKCHECK(v->f.vkAllocateCommandBuffers(v->dev, &cai, &v->cb_after), "vkAllocateCommandBuffers");
  VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VKCHECK(v->f.vkCreateFence(v->dev, &fi, NULL, &v->fence), "vkCreateFence");
  MLC_TRY(buf_new(v, STAGING_BYTES, true, &v->staging));
  if (!v->staging->map)
    return mlc_err(MLC_ERR_DEVICE, "vulkan: host-visible memory cannot be mapped");
  v->cached = -1;
  v->pend = calloc(STEP_MAX, sizeof *v->pend);
  if (!v->pend)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = STEP_MAX * NBINDINGS};
  VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = STEP_MAX,
                                    .poolSizeCount = 1, .pPoolSizes = &ps};
  for (int i = 0; i < 2; i++) {
    vk_step *st = &v->step[i];
    VKCHECK(v->f.vkCreateDescriptorPool(v->dev, &dpi, NULL, &st->pool), "vkCreateDescriptorPool");
    VkCommandBufferAllocateInfo sai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = v->cpool,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1};
    VKCHECK(v->f.vkAllocateCommandBuffers(v->dev, &sai, &st->cb), "vkAllocateCommandBuffers");
    MLC_TRY(buf_new(v, v->param_slot * STEP_MAX, true, &st->params));
    if (!st->params->map)
      return mlc_err(MLC_ERR_DEVICE, "vulkan: host-visible memory cannot be mapped");
    if (!(st->ops = calloc(STEP_MAX, sizeof *st->ops)))
      return mlc_err(MLC_ERR_NOMEM, "out of memory");
    if (v->nqueries) {
      VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                  .queryCount = v->nqueries};
      VKCHECK(v->f.vkCreateQueryPool(v->dev, &qi, NULL, &st->qpool), "vkCreateQueryPool");
    }
  }

  const vk_info *in = &v->info;
  /* 8-bit activation GEMVs (lower.c qgemv_i8) on devices with the integer dot product;
   * $MLC_VULKAN_INT_DOT=0: as a device without (f32 GEMVs), =emulate: those GEMVs with the dot
   * products emulated (tests: the emulation's path on a device that has the instruction) */
  const char *idot = getenv("MLC_VULKAN_INT_DOT");
  v->int8_dot = in->int_dot && !(idot && !strcmp(idot, "0"));
  v->sdot = v->int8_dot && !(idot && !strcmp(idot, "emulate"));
  bool arith = (in->subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) && (in->subgroup_stages & VK_SHADER_STAGE_COMPUTE_BIT);
  const char *nosg = getenv("MLC_VULKAN_NO_SUBGROUPS"); /* tests: the path of devices without them */
  if (nosg && *nosg && strcmp(nosg, "0"))
    arith = false;
  v->base.vt = &VK_VT;
  v->base.caps = (mlc_device_caps){
      .lang = KIR_LANG_GLSL,
      .subgroup_size = arith ? (int)in->subgroup_size : 0,
      .max_workgroup = (int)l->maxComputeWorkGroupInvocations,
      .max_shared = l->maxComputeSharedMemorySize,
      .max_binding = v->max_range,
      .fp16 = in->fp16,
      .int8_dot = v->int8_dot,
  };
  mlc_buf b2 = {0};
  mlc_buf_puts(&b2, "vulkan: ");
  describe_info(in, &b2);
  /* what the kernels of this device take (MLC_VULKAN_INT_DOT may turn it off) */
  mlc_buf_printf(&b2, "; 4-bit GEMVs: %s", v->sdot ? "8-bit activations, integer dot product"
                                           : v->int8_dot ? "8-bit activations, dot product emulated" : "f32 activations");
  snprintf(v->desc, sizeof v->desc, "%s", b2.data ? b2.data : "vulkan");
  mlc_buf_free(&b2);
  return MLC_OK;
}

mlc_status mlc_vulkan_device_new(const mlc_device_opts *opt, int index, mlc_device **out) {
  *out = NULL;
  vk_device *v = calloc(1, sizeof *v);
  if (!v)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  mlc_status st = init(v, index);
  if (st != MLC_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mlc_last_error());
    vk_destroy(&v->base);
    return mlc_err(st, "%s", msg);
  }
  *out = &v->base;
  return MLC_OK;
}

void mlc_vulkan_list(mlc_buf *out) {
  pthread_mutex_lock(&g_lock);
  mlc_status st = shared_instance();
  vk_fns f = g_f;
  VkInstance inst = g_inst;
  pthread_mutex_unlock(&g_lock);
  if (st != MLC_OK) {
    mlc_buf_printf(out, "vulkan: not available (%s)\n", mlc_last_error());
    return;
  }
  uint32_t n = 0;
  f.vkEnumeratePhysicalDevices(inst, &n, NULL);
  VkPhysicalDevice *pd = calloc(n ? n : 1, sizeof *pd);
  if (pd)
    f.vkEnumeratePhysicalDevices(inst, &n, pd);
  if (!n)
    mlc_buf_puts(out, "vulkan: no devices\n");
  for (uint32_t i = 0; pd && i < n; i++) {
    vk_info in;
    query_info(&f, pd[i], &in);
    mlc_buf_printf(out, "vulkan:%u  ", i);
    describe_info(&in, out);
    mlc_buf_puts(out, "\n");
  }
  free(pd);
}
#endif
