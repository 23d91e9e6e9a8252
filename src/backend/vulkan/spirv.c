/* spirv.c: GLSL -> SPIR-V for the Vulkan backend (see spirv.h). This is the only file that
 * names libshaderc. */
#include "backend/vulkan/spirv.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/kcache.h"

#ifdef MLC_HAVE_SHADERC
#include <pthread.h>
#include <shaderc/shaderc.h>
#endif

#define SPV_TARGET "vulkan1.1"

const char *mlc_spirv_compiler(void) {
#ifdef MLC_HAVE_SHADERC
  return "libshaderc";
#else
  return "glslangValidator";
#endif
}

#ifdef MLC_HAVE_SHADERC
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static shaderc_compiler_t compiler;

static mlc_status compile(const char *glsl, const char *name, uint32_t **words, size_t *nbytes) {
  pthread_mutex_lock(&lock);
  if (!compiler)
    compiler = shaderc_compiler_initialize();
  mlc_status st = MLC_OK;
  shaderc_compile_options_t o = compiler ? shaderc_compile_options_initialize() : NULL;
  if (!o) {
    pthread_mutex_unlock(&lock);
    return mlc_err(MLC_ERR_DEVICE, "libshaderc failed to initialise");
  }
  shaderc_compile_options_set_target_env(o, shaderc_target_env_vulkan, shaderc_env_version_vulkan_1_1);
  shaderc_compile_options_set_optimization_level(o, shaderc_optimization_level_zero);
  shaderc_compilation_result_t r =
      shaderc_compile_into_spv(compiler, glsl, strlen(glsl), shaderc_compute_shader, name, "main", o);
  if (shaderc_result_get_compilation_status(r) != shaderc_compilation_status_success) {
    st = mlc_err(MLC_ERR_DEVICE, "GLSL kernel %s does not compile: %s", name, shaderc_result_get_error_message(r));
  } else {
    *nbytes = shaderc_result_get_length(r);
    *words = malloc(*nbytes);
    if (!*words)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory");
    else
      memcpy(*words, shaderc_result_get_bytes(r), *nbytes);
  }
  shaderc_result_release(r);
  shaderc_compile_options_release(o);
  pthread_mutex_unlock(&lock);
  return st;
}
#else
extern char **environ;
/* glslangValidator -V --target-env vulkan1.1 -S comp -o OUT IN (its messages go to a .log) */
static mlc_status compile(const char *glsl, const char *name, uint32_t **words, size_t *nbytes) {
  char in[] = "/tmp/mlc-glsl-XXXXXX";
  int fd = mkstemp(in);
  if (fd < 0)
    return mlc_err(MLC_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
  size_t len = strlen(glsl);
  bool ok = write(fd, glsl, len) == (ssize_t)len;
  close(fd);
  mlc_buf out = {0}, log = {0};
  mlc_buf_printf(&out, "%s.spv", in);
  mlc_buf_printf(&log, "%s.log", in);
  const char *argv[] = {"glslangValidator", "-V", "--target-env", SPV_TARGET, "-S", "comp", "-o", out.data, in, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.data, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, log.data, O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid;
  int status = -1;
  if (ok && posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) == 0)
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
  posix_spawn_file_actions_destroy(&fa);
  mlc_status st = MLC_OK;
  char *data = NULL;
  size_t n = 0;
  if (!ok || status != 0 || mlc_read_file(out.data, &data, &n) != MLC_OK) {
    char *msg = NULL;
    size_t ml = 0;
    mlc_read_file(log.data, &msg, &ml);
    st = mlc_err(MLC_ERR_DEVICE, "glslangValidator failed on kernel %s: %s", name, msg ? msg : "could not run");
    free(msg);
  } else {
    *words = (uint32_t *)data;
    *nbytes = n;
  }
  unlink(in);
  unlink(out.data);
  unlink(log.data);
  mlc_buf_free(&out);
  mlc_buf_free(&log);
  return st;
}
#endif

mlc_status mlc_glsl_to_spirv(const char *glsl, const char *name, uint32_t **words, size_t *nbytes, bool *cached) {
  *words = NULL;
  *nbytes = 0;
  *cached = false;
  uint64_t h = mlc_hash64(glsl, strlen(glsl), 0);
  h = mlc_hash64(SPV_TARGET, strlen(SPV_TARGET), h);
  char *path = mlc_kcache_path("spv-", h, ".spv");
  if (path && mlc_file_exists(path)) {
    char *data = NULL;
    size_t n = 0;
    if (mlc_read_file(path, &data, &n) == MLC_OK && n >= 20 && n % 4 == 0 && ((uint32_t *)data)[0] == 0x07230203u) {
      *words = (uint32_t *)data;
      *nbytes = n;
      *cached = true;
      free(path);
      return MLC_OK;
    }
    free(data);
  }
  mlc_status st = compile(glsl, name, words, nbytes);
  if (st == MLC_OK && path)
    mlc_write_file_atomic(path, *words, *nbytes); /* a cache that cannot be written is no error */
  free(path);
  return st;
}
