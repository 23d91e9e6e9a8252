/* device.c: opening a device by name. */
#include <string.h>

#include "backend/device.h"

mlc_status mlc_device_open(const char *name, const mlc_device_opts *opt, mlc_device **out) {
  *out = NULL;
  mlc_device_opts def = {0};
  if (!opt)
    opt = &def;
  if (!name || !strcmp(name, "cpu"))
    return mlc_cpu_device_new(opt, out);
  return mlc_err(MLC_ERR_UNSUPPORTED, "device '%s' is not available in this build (available: cpu)", name);
}

void mlc_device_close(mlc_device *d) {
  if (d)
    d->vt->destroy(d);
}
