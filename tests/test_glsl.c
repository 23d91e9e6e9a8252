/* test_glsl.c: the kernel IR's GLSL renderer produces compute shaders that compile.
 *
 * For every fixture model (tests/fixtures/models/<each> and tests/fixtures/models-bf16/llama,
 * whose f16/bf16 weights render differently) it renders every distinct kernel as GLSL, both
 * specialised (sizes as constants) and generic (sizes as arguments), splits the output at the
 * "// ---- NAME" lines, drops identical shader texts, and compiles each with
 *   glslangValidator -V --target-env vulkan1.2 -S comp NAME.comp -o NAME.comp.spv
 * then, if spirv-val is installed, validates the SPIR-V. Two compilations run at a time.
 * A shader that fails to compile is a failure: the shader's name, the models that produced it
 * and the compiler's message are printed (MLC_GLSL_KEEP=1 keeps the shader files in /tmp).
 * argv[1] is the repo root. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "format/convert.h"
#include "kernel/lower.h"
#include "mlc.h"
#include "runtime/runtime.h"

static int passed, failed;
static char tmpdir[] = "/tmp/mlc_glsl_XXXXXX";
static bool have_spirv_val, keep;

typedef struct shader {
  char name[128];   /* kernel name */
  char file[192];   /* unique file stem in tmpdir */
  char *text;
  char origin[256]; /* "model (specialised)" of the first producer, + count of others */
  int nother;
} shader;

static shader *shaders;
static int nshaders, capshaders;

static bool in_path(const char *prog) {
  const char *p = getenv("PATH");
  if (!p)
    p = "/usr/local/bin:/usr/bin:/bin";
  char *dup = strdup(p), *save = NULL;
  bool found = false;
  for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", *d ? d : ".", prog);
    found = access(path, X_OK) == 0;
  }
  free(dup);
  return found;
}

static void add_shader(const char *name, size_t nlen, const char *text, size_t tlen, const char *origin) {
  for (int i = 0; i < nshaders; i++)
    if (strlen(shaders[i].text) == tlen && memcmp(shaders[i].text, text, tlen) == 0) {
      shaders[i].nother++;
      return;
    }
  if (nshaders == capshaders) {
    capshaders = capshaders ? capshaders * 2 : 64;
    shaders = realloc(shaders, sizeof(shader) * (size_t)capshaders);
    if (!shaders) {
      fprintf(stderr, "out of memory\n");
      exit(2);
    }
  }
  shader *s = &shaders[nshaders];
  memset(s, 0, sizeof *s);
  if (nlen >= sizeof s->name)
    nlen = sizeof s->name - 1;
  memcpy(s->name, name, nlen);
  /* file stem: the name made filesystem-safe, plus the index (names repeat across models) */
  char safe[128];
  size_t k = 0;
  for (size_t i = 0; i < nlen && k + 1 < sizeof safe; i++) {
    char c = name[i];
    safe[k++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ? c : '_';
  }
  safe[k] = 0;
  snprintf(s->file, sizeof s->file, "%03d_%s", nshaders, safe);
  s->text = malloc(tlen + 1);
  memcpy(s->text, text, tlen);
  s->text[tlen] = 0;
  snprintf(s->origin, sizeof s->origin, "%s", origin);
  nshaders++;
}

/* Real shapes the fixture models (hidden 64) do not reach: a workgroup of 256 per norm row
 * (tunables row_block) and decode attention over 8 warps (attn_warps: the warp sums, the
 * cross-warp reductions, the lane-dependent chunk loop made uniform) and the 4-bit GEMVs with
 * 8-bit activations (lower.c qgemv_i8: outputs per index, 64 lanes, KIR_DP4A). Each kernel is
 * compiled as rendered and as the Vulkan backend compiles it for a device without subgroup
 * arithmetic nor integer dot product (kir_glsl_for_device blanks their lines, which must then
 * leave no subgroup built-in behind). */
static void real_shape(const mlc_kdesc *d, const char *label, const char *const *want) {
  kir_kernel *k = mlc_lower(d, mlc_tunables_for(KIR_LANG_GLSL));
  mlc_buf b = {0};
  kir_render(k, KIR_LANG_GLSL, &b);
  char origin[160];
  snprintf(origin, sizeof origin, "real shape %s", label);
  bool ok = b.data != NULL;
  for (int i = 0; ok && want[i]; i++)
    if (!strstr(b.data, want[i])) {
      printf("FAIL %s: the GLSL has no \"%s\"\n", origin, want[i]);
      ok = false;
    }
  if (ok) {
    add_shader(k->name, strlen(k->name), b.data, b.len, origin);
    char *own = NULL;
    if (kir_glsl_for_device(b.data, false, false, &own) != MLC_OK || !own) {
      printf("FAIL %s: nothing blanked for a device without subgroups\n", origin);
      ok = false;
    } else if (strstr(own, "gl_Subgroup") || strstr(own, "subgroup")) {
      printf("FAIL %s: subgroup built-ins outside the one line the backend blanks\n", origin);
      ok = false;
    } else {
      char nm[128];
      snprintf(nm, sizeof nm, "%s_nosubgroups", k->name);
      snprintf(origin, sizeof origin, "real shape %s, no subgroups nor integer dot product", label);
      add_shader(nm, strlen(nm), own, strlen(own), origin);
    }
    free(own);
  }
  passed += ok;
  failed += !ok;
  mlc_buf_free(&b);
  kir_free(k);
}
static void render_real_shapes(void) {
  static const char *const block[] = {"mlc_lanes=256", "local_size_x = 256", "mlc_lane_sum(", NULL};
  static const char *const attn[] = {"mlc_lanes=256", "mlc_warp_sum(", "mlc_xwarp(", "mlc_wg_max(", "mlc_act", NULL};
  mlc_kdesc d;
  memset(&d, 0, sizeof d); /* the descriptor's bytes name the kernel */
  d.kind = MLC_OP_RMSNORM;
  d.var[0] = MLC_F16;
  d.size[0] = d.size[1] = d.size[2] = 4096;
  d.fv[0] = 1e-5f;
  real_shape(&d, "rmsnorm 4096", block);
  memset(&d, 0, sizeof d);
  d.kind = MLC_OP_ADD_RMSNORM;
  d.var[0] = MLC_BF16;
  d.var[1] = 1;
  d.size[0] = 4096;
  d.fv[0] = 1e-6f;
  real_shape(&d, "add_rmsnorm 4096", block);
  /* the 8B model's decode GEMVs: q/k/v-sized, gate and up, down (K 14336: two warps an index) */
  static const char *const i8[] = {"mlc_per=8", "mlc_lanes=32", "mlc_dp4a(", "MLC_INT_DOT", NULL};
  static const char *const i8w[] = {"mlc_per=8", "mlc_lanes=64", "local_size_x = 64", "mlc_dp4a(", NULL};
  memset(&d, 0, sizeof d);
  d.kind = MLC_OP_MATMUL;
  d.var[0] = MLC_Q4F16_1;
  int64_t mm[4] = {4096, 4096, 1, 4096};
  memcpy(d.size, mm, sizeof mm);
  real_shape(&d, "matmul q4f16_1 4096 x 4096", i8);
  int64_t down[4] = {4096, 14336, 1, 14336};
  memcpy(d.size, down, sizeof down);
  real_shape(&d, "matmul q4f16_1 4096 x 14336", i8w);
  memset(&d, 0, sizeof d);
  d.kind = MLC_OP_GATED_MATMUL;
  d.var[0] = MLC_Q4F16_1;
  int64_t gu[6] = {14336, 4096, 1, 0, 14336, 4096};
  memcpy(d.size, gu, sizeof gu);
  real_shape(&d, "gated_matmul q4f16_1 14336 x 4096", i8);
  for (int cap = 0; cap < 2; cap++) {
    memset(&d, 0, sizeof d);
    d.kind = MLC_OP_ATTENTION;
    d.var[0] = cap;
    int64_t sz[6] = {32, 8, 128, cap ? 4096 : 0, 64, 48 * 128};
    memcpy(d.size, sz, sizeof sz);
    d.fv[0] = 0.08838834764f;
    d.fv[1] = cap ? 50.0f : 0;
    real_shape(&d, cap ? "attention 32/8 x 128, window, softcap" : "attention 32/8 x 128", attn);
  }
}

/* Splits the rendered output at the "// ---- NAME" lines. Returns the number of shaders. */
static int split(const char *src, const char *origin) {
  static const char mark[] = "// ---- ";
  int n = 0;
  const char *p = strstr(src, mark);
  if (p != src && p) {
    /* text before the first marker would be lost: a renderer contract break */
    printf("FAIL %s: text before the first '// ---- NAME' line\n", origin);
    failed++;
  }
  while (p) {
    const char *name = p + sizeof mark - 1;
    const char *eol = strchr(name, '\n');
    if (!eol)
      break;
    const char *body = eol + 1;
    const char *next = body;
    for (;;) {
      next = strstr(next, mark);
      if (!next || next[-1] == '\n')
        break;
      next++;
    }
    size_t tlen = next ? (size_t)(next - body) : strlen(body);
    add_shader(name, (size_t)(eol - name), body, tlen, origin);
    n++;
    p = next;
  }
  return n;
}

static void render_model(const char *dir, const char *label) {
  mlc_model *m = NULL;
  if (mlc_model_load(dir, NULL, &m) != MLC_OK) {
    printf("FAIL load %s: %s\n", dir, mlc_last_error());
    failed++;
    return;
  }
  for (int generic = 0; generic < 2; generic++) {
    char origin[256];
    snprintf(origin, sizeof origin, "%s (%s)", label, generic ? "generic" : "specialised");
    mlc_buf b = {0};
    mlc_status st = mlc_model_render(m, KIR_LANG_GLSL, generic, &b);
    if (st != MLC_OK || !b.data) {
      printf("FAIL render %s: %s\n", origin, st != MLC_OK ? mlc_last_error() : "empty output");
      failed++;
    } else if (split(b.data, origin) == 0) {
      printf("FAIL render %s: no '// ---- NAME' shaders in the output\n", origin);
      failed++;
    }
    mlc_buf_free(&b);
  }
  mlc_model_free(m);
}

/* Runs argv with stdout+stderr to logpath; returns the pid. */
static pid_t spawn(char *const argv[], const char *logpath) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE *f = freopen(logpath, "w", stdout);
    if (!f)
      _exit(127);
    dup2(STDOUT_FILENO, STDERR_FILENO);
    execvp(argv[0], argv);
    _exit(127);
  }
  return pid;
}

/* Prints line `ln` (1-based) of text, indented. */
static void print_source_line(const char *text, int ln) {
  const char *p = text;
  for (int i = 1; i < ln && p; i++) {
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  if (!p || !*p)
    return;
  const char *e = strchr(p, '\n');
  printf("      line %d: %.*s\n", ln, (int)(e ? e - p : (long)strlen(p)), p);
}

/* Prints the compiler's log (non-blank lines, at most 20), and after each "ERROR: FILE:LINE:"
 * the shader's source line it points at. */
static void print_log(const char *path, const char *comp, const char *text) {
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  char line[1024], prefix[600];
  snprintf(prefix, sizeof prefix, "ERROR: %s:", comp);
  int n = 0;
  while (fgets(line, sizeof line, f) && n < 20) {
    if (line[strspn(line, " \t\r\n")] == 0)
      continue; /* blank */
    printf("    %s", line);
    n++;
    if (strncmp(line, prefix, strlen(prefix)) == 0)
      print_source_line(text, atoi(line + strlen(prefix)));
  }
  fclose(f);
}

typedef struct job {
  pid_t pid;
  int idx;
  int stage; /* 0: glslangValidator, 1: spirv-val */
} job;

static void start(job *j, int idx, int stage) {
  shader *s = &shaders[idx];
  char comp[512], spv[512], log[512];
  snprintf(comp, sizeof comp, "%s/%s.comp", tmpdir, s->file);
  snprintf(spv, sizeof spv, "%s/%s.comp.spv", tmpdir, s->file);
  snprintf(log, sizeof log, "%s/%s.log%d", tmpdir, s->file, stage);
  j->idx = idx;
  j->stage = stage;
  if (stage == 0) {
    char *argv[] = {"glslangValidator", "-V", "--target-env", "vulkan1.2", "-S", "comp", comp, "-o", spv, NULL};
    j->pid = spawn(argv, log);
  } else {
    char *argv[] = {"spirv-val", "--target-env", "vulkan1.2", spv, NULL};
    j->pid = spawn(argv, log);
  }
}

/* Handles a finished job; returns true if a spirv-val stage should follow. */
static bool finish(job *j, int status) {
  shader *s = &shaders[j->idx];
  char log[512], comp[512];
  snprintf(log, sizeof log, "%s/%s.log%d", tmpdir, s->file, j->stage);
  snprintf(comp, sizeof comp, "%s/%s.comp", tmpdir, s->file);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (ok && j->stage == 0 && have_spirv_val)
    return true;
  if (ok)
    passed++;
  else {
    failed++;
    char others[64] = "";
    if (s->nother)
      snprintf(others, sizeof others, " and %d identical render(s)", s->nother);
    printf("FAIL %s %s (from %s%s)%s%s:\n", j->stage == 0 ? "glslangValidator" : "spirv-val", s->name, s->origin,
           others, keep ? ", shader " : "", keep ? comp : "");
    print_log(log, comp, s->text);
  }
  return false;
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  if (!in_path("glslangValidator")) {
    printf("FAIL glslangValidator not found in PATH: it is a declared dependency (package glslang-tools); "
           "run scripts/deps.sh\n");
    printf("0 passed, 1 failed\n");
    return 1;
  }
  have_spirv_val = in_path("spirv-val");
  keep = getenv("MLC_GLSL_KEEP") && atoi(getenv("MLC_GLSL_KEEP")) > 0;
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 2;
  }

  /* render */
  char base[4096];
  snprintf(base, sizeof base, "%s/tests/fixtures/models", root);
  DIR *d = opendir(base);
  if (!d) {
    printf("FAIL cannot open %s\n", base);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  char *names[64];
  int nm = 0;
  for (struct dirent *e; (e = readdir(d)) && nm < 64;) {
    if (e->d_name[0] == '.')
      continue;
    char p[8192];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s/config.json", base, e->d_name);
    if (stat(p, &sb) == 0)
      names[nm++] = strdup(e->d_name);
  }
  closedir(d);
  for (int i = 0; i < nm; i++) /* deterministic order */
    for (int j = i + 1; j < nm; j++)
      if (strcmp(names[j], names[i]) < 0) {
        char *t = names[i];
        names[i] = names[j];
        names[j] = t;
      }
  if (nm == 0) {
    printf("FAIL no fixture models under %s\n", base);
    failed++;
  }
  for (int i = 0; i < nm; i++) {
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", base, names[i]);
    render_model(p, names[i]);
    free(names[i]);
  }
  {
    char p[8192];
    snprintf(p, sizeof p, "%s/tests/fixtures/models-bf16/llama", root);
    render_model(p, "models-bf16/llama");
  }
  /* packed quantized weights (MLC packages): the dequantizing matmul / gated / embed / dequant
   * kernels of every packed scheme, dense and MoE */
  static const char *qs[] = {"q4f16_1", "q4f32_1", "q3f16_1", "q4f16_0", "q8f16_1"};
  static const char *qm[] = {"llama", "qwen3-moe"};
  for (int a = 0; a < 2; a++)
    for (int q = 0; q < 5; q++) {
      char src[8192], out[1024], label[128];
      snprintf(src, sizeof src, "%s/tests/fixtures/models/%s", root, qm[a]);
      snprintf(out, sizeof out, "%s/pkg-%s-%s", tmpdir, qm[a], qs[q]);
      snprintf(label, sizeof label, "%s %s package", qm[a], qs[q]);
      mlc_convert_opts co = {.src = src, .out = out, .quant = qs[q], .threads = 1};
      mlc_convert_report rep;
      if (mlc_convert(&co, &rep) != MLC_OK) {
        printf("FAIL convert %s: %s\n", label, mlc_last_error());
        failed++;
        continue;
      }
      render_model(out, label);
    }

  render_real_shapes();

  /* write the distinct shaders */
  for (int i = 0; i < nshaders; i++) {
    char comp[512];
    snprintf(comp, sizeof comp, "%s/%s.comp", tmpdir, shaders[i].file);
    FILE *f = fopen(comp, "w");
    if (!f || fputs(shaders[i].text, f) < 0 || fclose(f) != 0) {
      printf("FAIL cannot write %s\n", comp);
      printf("%d passed, %d failed\n", passed, failed + 1);
      return 1;
    }
  }
  printf("%d distinct shaders to compile%s\n", nshaders, have_spirv_val ? " and validate" : "");
  fflush(stdout);

  /* compile, two at a time */
  enum { PAR = 2 };
  job jobs[PAR];
  int running = 0, next = 0;
  while (next < nshaders || running > 0) {
    while (running < PAR && next < nshaders)
      start(&jobs[running++], next++, 0);
    int status;
    pid_t pid = wait(&status);
    if (pid < 0)
      break;
    for (int i = 0; i < running; i++)
      if (jobs[i].pid == pid) {
        job j = jobs[i];
        if (finish(&j, status))
          start(&jobs[i], j.idx, 1);
        else
          jobs[i] = jobs[--running];
        break;
      }
    fflush(stdout);
  }

  /* MLC_GLSL_KEEP=1 keeps the shaders for a look */
  if (keep)
    printf("shaders kept in %s\n", tmpdir);
  else {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove %s\n", tmpdir);
    if (failed)
      printf("(set MLC_GLSL_KEEP=1 to keep the shaders)\n");
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
