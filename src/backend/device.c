/* device.c: opening a device by name, and listing them. */
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "backend/cuda/cuda.h"

/* "vulkan" -> -1, "vulkan:2" -> 2; false if name is not this backend's */
static bool match(const char *name, const char *backend, int *index) {
  size_t n = strlen(backend);
  if (strncmp(name, backend, n) != 0 || (name[n] != 0 && name[n] != ':'))
    return false;
  *index = name[n] == ':' ? atoi(name + n + 1) : -1;
  return true;
}

mlc_status mlc_device_open(const char *name, const mlc_device_opts *opt, mlc_device **out) {
  *out = NULL;
  mlc_device_opts def = {0};
  if (!opt)
    opt = &def;
  int index = -1;
  if (!name || !strcmp(name, "cpu"))
    return mlc_cpu_device_new(opt, out);
  if (match(name, "cuda", &index))
    return mlc_cuda_device_new(name, opt, out);
  if (match(name, "vulkan", &index))
    return mlc_vulkan_device_new(opt, index, out);
  if (match(name, "opencl", &index))
    return mlc_opencl_device_new(opt, index, out);
  return mlc_err(MLC_ERR_UNSUPPORTED, "device '%s' is not available in this build (available: cpu, cuda[:N], vulkan[:N], opencl[:N])",
                 name);
}

void mlc_device_close(mlc_device *d) {
  if (d)
    d->vt->destroy(d);
}

void mlc_device_list(mlc_buf *out) {
  mlc_device *d = NULL;
  if (mlc_cpu_device_new(NULL, &d) == MLC_OK) {
    mlc_buf_printf(out, "cpu       %s: C kernels compiled at run time, built-in generic kernels\n", d->vt->describe(d));
    mlc_device_close(d);
  }
  mlc_vulkan_list(out);
  mlc_opencl_list(out);
}
