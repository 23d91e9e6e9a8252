/* jit.c: specialised CPU kernels compiled at run time by the system C compiler, cached by the
 * content hash of (compiler, flags, source) so a model compiles once per machine. */
#include "backend/cpu/cpu.h"
#include "backend/kcache.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct mlc_cpu_lib {
  void *dl;
  char *path;
  bool cached;
};

static const char *BASE_CFLAGS[] = {"-O3", "-fno-math-errno", "-ffp-contract=fast", "-std=c11", "-shared", "-fPIC", "-w"};
enum { NBASE = sizeof BASE_CFLAGS / sizeof BASE_CFLAGS[0], MAX_EXTRA = 32, MAX_CFLAGS = NBASE + 1 + MAX_EXTRA };

/* The flag that targets the CPU this process runs on. x86-64: -march=native. aarch64: an -march
 * built from the kernel's hardware capabilities rather than -mcpu=native, so it is right also when
 * the compiler is a cross compiler (MLC_CC=aarch64-linux-gnu-gcc for a process under qemu-user)
 * and the cache hash names the features the code was built for: armv8.2-a+fp16+dotprod where the
 * CPU has half-precision arithmetic and sdot/udot (Apple M-series, Cortex-A55/A76 and later),
 * else plain armv8-a (Advanced SIMD is always there). Elsewhere: no target flag. */
static const char *target_flag(void) {
#if defined(__x86_64__) || defined(__i386__)
  return "-march=native";
#elif defined(__aarch64__)
  unsigned long hw = getauxval(AT_HWCAP);
  /* HWCAP_FPHP (1 << 9), HWCAP_ASIMDHP (1 << 10), HWCAP_ASIMDDP (1 << 20); spelled out for old headers */
  const unsigned long fp16 = (1UL << 9) | (1UL << 10), dot = 1UL << 20;
  if ((hw & fp16) == fp16 && (hw & dot))
    return "-march=armv8.2-a+fp16+dotprod";
  if ((hw & fp16) == fp16)
    return "-march=armv8.2-a+fp16";
  return "-march=armv8-a";
#else
  return NULL;
#endif
}

/* The compiler flags: the fixed ones, the target flag, then the words of $MLC_CFLAGS (split on
 * blanks, no quoting). Built once; the strings live for the process. */
static const char *CFLAGS[MAX_CFLAGS];
static int NCFLAGS;
static pthread_once_t cflags_once = PTHREAD_ONCE_INIT;

static void cflags_init(void) {
  int n = 0;
  for (int i = 0; i < NBASE; i++)
    CFLAGS[n++] = BASE_CFLAGS[i];
  const char *t = target_flag();
  if (t)
    CFLAGS[n++] = t;
  const char *e = getenv("MLC_CFLAGS");
  char *extra = e && *e ? mlc_strdup(e) : NULL;
  if (extra) {
    char *save = NULL;
    for (char *w = strtok_r(extra, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
      if (n == MAX_CFLAGS) {
        fprintf(stderr, "mlc: MLC_CFLAGS: more than %d words, the rest ignored\n", MAX_EXTRA);
        break;
      }
      CFLAGS[n++] = w; /* points into extra, which is kept */
    }
  }
  NCFLAGS = n;
}

static int cflags(const char ***out) {
  pthread_once(&cflags_once, cflags_init);
  *out = CFLAGS;
  return NCFLAGS;
}

static const char *compiler(void) {
  const char *cc = getenv("MLC_CC");
  return cc && *cc ? cc : "cc";
}

/* Runs cc; stderr goes to log. Returns the exit status (or -1). */
static int run_cc(const char *src, const char *out, const char *log) {
  const char **fl;
  int nfl = cflags(&fl);
  const char *argv[MAX_CFLAGS + 8];
  int n = 0;
  argv[n++] = compiler();
  for (int i = 0; i < nfl; i++)
    argv[n++] = fl[i];
  argv[n++] = "-o";
  argv[n++] = out;
  argv[n++] = src;
  argv[n++] = "-lm";
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

mlc_status mlc_cpu_lib_build(const char *source, int verbose, mlc_cpu_lib **out) {
  *out = NULL;
  uint64_t h = mlc_hash64(source, strlen(source), 0);
  h = mlc_hash64(compiler(), strlen(compiler()), h);
  const char **fl;
  int nfl = cflags(&fl);
  for (int i = 0; i < nfl; i++)
    h = mlc_hash64(fl[i], strlen(fl[i]) + 1, h); /* with the NUL: "-a" "-b" differs from "-a-b" */
  char *dir = NULL;
  mlc_status st = mlc_kcache_dir(&dir);
  if (st != MLC_OK)
    return st;
  mlc_buf so = {0}, src = {0}, tmp = {0}, log = {0};
  mlc_buf_printf(&so, "%s/kernels-%016llx.so", dir, (unsigned long long)h);
  mlc_buf_printf(&src, "%s/kernels-%016llx.c", dir, (unsigned long long)h);
  mlc_buf_printf(&tmp, "%s/kernels-%016llx.so.tmp.%ld", dir, (unsigned long long)h, (long)getpid());
  mlc_buf_printf(&log, "%s/kernels-%016llx.log", dir, (unsigned long long)h);
  free(dir);
  bool cached = mlc_file_exists(so.data);
  if (!cached) {
    st = mlc_write_file_atomic(src.data, source, strlen(source));
    if (st == MLC_OK) {
      double t0 = mlc_now();
      int rc = run_cc(src.data, tmp.data, log.data);
      if (rc != 0) {
        unlink(tmp.data);
        st = mlc_err(MLC_ERR_DEVICE, "the C compiler '%s' failed (%s %d) building %s; see %s", compiler(),
                     rc < 0 ? "could not run, status" : "exit status", rc, src.data, log.data);
      } else if (rename(tmp.data, so.data) != 0) {
        st = mlc_err(MLC_ERR_IO, "%s: cannot rename into place: %s", so.data, strerror(errno));
      } else if (verbose) {
        fprintf(stderr, "mlc: compiled kernels in %.2f s -> %s\n", mlc_now() - t0, so.data);
      }
    }
  }
  mlc_cpu_lib *lib = NULL;
  if (st == MLC_OK) {
    void *dl = dlopen(so.data, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
      st = mlc_err(MLC_ERR_DEVICE, "%s: cannot load kernel library: %s", so.data, dlerror());
    } else {
      lib = calloc(1, sizeof *lib);
      if (!lib) {
        dlclose(dl);
        st = mlc_err(MLC_ERR_NOMEM, "out of memory");
      } else {
        lib->dl = dl;
        lib->path = mlc_buf_take(&so);
        lib->cached = cached;
      }
    }
  }
  mlc_buf_free(&so);
  mlc_buf_free(&src);
  mlc_buf_free(&tmp);
  mlc_buf_free(&log);
  *out = lib;
  return st;
}

mlc_kfn mlc_cpu_lib_sym(mlc_cpu_lib *lib, const char *name) {
  void *p = dlsym(lib->dl, name);
  mlc_kfn fn;
  memcpy(&fn, &p, sizeof fn);
  return fn;
}
const char *mlc_cpu_lib_path(const mlc_cpu_lib *lib) { return lib->path; }
bool mlc_cpu_lib_was_cached(const mlc_cpu_lib *lib) { return lib->cached; }
void mlc_cpu_lib_free(mlc_cpu_lib *lib) {
  if (!lib)
    return;
  dlclose(lib->dl);
  free(lib->path);
  free(lib);
}

mlc_kfn mlc_generic_find(const char *name) {
  int n = 0;
  const mlc_generic_entry *e = mlc_generic_kernels(&n);
  for (int i = 0; i < n; i++)
    if (strcmp(e[i].name, name) == 0)
      return e[i].fn;
  return NULL;
}
