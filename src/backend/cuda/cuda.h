/*
 * cuda.h: the CUDA backend (src/backend/cuda/). The driver API (libcuda.so.1) and NVRTC
 * (libnvrtc.so.*) are loaded with dlopen on first use, so one binary runs where neither exists;
 * nothing here needs the CUDA toolkit at build time (cuda_api.h declares the few entry points we
 * call). Kernels are rendered in KIR_LANG_CUDA, compiled at run time by NVRTC for the device's
 * compute capability (cubin; PTX for the driver to finish when NVRTC does not know the chip) and
 * cached by content hash in the kernel cache directory, next to the CPU backend's objects.
 */
#ifndef MLC_CUDA_H
#define MLC_CUDA_H

#include "backend/device.h"

/* The first CUDA device ("cuda", or "cuda:N" for device N). Fails with a clear message when the
 * driver is missing (MLC_ERR_UNSUPPORTED), is only the toolkit's link-time placeholder library, or finds no GPU. */
mlc_status mlc_cuda_device_new(const char *name, const mlc_device_opts *opt, mlc_device **out);

/* ---- NVRTC (usable without a GPU) ---- */
/* Loads NVRTC ($MLC_NVRTC, else libnvrtc.so[.13/.12/.11.2] on the loader path, $CUDA_HOME/lib64,
 * /usr/local/cuda*\/lib64). MLC_ERR_UNSUPPORTED with the places tried when it is absent. */
mlc_status mlc_nvrtc_load(void);
/* "NVRTC 13.0" once loaded. */
const char *mlc_nvrtc_describe(void);
/* The module source of a set of kernels, as the device builds it: the CUDA prelude once, then
 * each distinct kernel (by name) once, in order. */
mlc_status mlc_cuda_module_source(const char *const *names, const char *const *sources, int n, mlc_buf *out);
/* Compiles a module source for `arch` ("sm_90": a cubin; "compute_90": PTX) with the backend's
 * options, through the kernel cache: *path is the cached file (heap), *data its bytes (heap,
 * NUL-terminated). *cached tells whether NVRTC ran. */
mlc_status mlc_cuda_compile(const char *src, const char *arch, int verbose, char **path, char **data, size_t *len,
                            bool *cached);
/* The same compile written to dir instead of the cache (file named as in the cache, so pointing
 * MLC_CACHE_DIR at dir lets the runtime load it without NVRTC). */
mlc_status mlc_cuda_compile_to(const char *src, const char *arch, const char *dir, char **path, size_t *len);

#endif
