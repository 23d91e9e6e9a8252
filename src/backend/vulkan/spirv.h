/* spirv.h: GLSL compute shaders to SPIR-V at run time, cached by content hash in the kernel cache
 * directory (spv-<hash>.spv). Compiled with libshaderc where the build found it (MLC_HAVE_SHADERC),
 * else by running glslangValidator. */
#ifndef MLC_SPIRV_H
#define MLC_SPIRV_H

#include "base/base.h"

/* *words: heap SPIR-V (free it), *nbytes its size. *cached: it came from the cache. */
mlc_status mlc_glsl_to_spirv(const char *glsl, const char *name, uint32_t **words, size_t *nbytes, bool *cached);
/* "libshaderc" or "glslangValidator". */
const char *mlc_spirv_compiler(void);

#endif
