/* cmd_devices.c: `mlc devices`: every device this build can open and what it supports. */
#include <stdio.h>
#include <string.h>

#include "backend/device.h"
#include "cli/cli.h"

int mlc_cmd_devices(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: mlc devices\n\nLists the devices --device accepts (cpu, cuda, vulkan:N, opencl:N) and what each\n"
             "supports. MLC_VULKAN_DEVICE / MLC_OPENCL_DEVICE pick the default device by index.\n");
      return 0;
    }
    fprintf(stderr, "mlc devices: unknown argument '%s'\n", argv[i]);
    return 1;
  }
  mlc_buf b = {0};
  mlc_device_list(&b);
  fputs(b.data ? b.data : "", stdout);
  mlc_buf_free(&b);
  return 0;
}
