/*
 * render.c: one C-like emitter for every kernel language, driven by a per-language table
 * (type names, literals, math functions, load/store forms, the kernel header). C is the CPU
 * language; GLSL compute proves the IR is not shaped around C (compiled by glslangValidator in
 * the tests, and the start of the Vulkan backend).
 */
#include "kernel/kir.h"

#include <math.h>
#include <string.h>

typedef struct lang_table {
  const char *t_f32, *t_i64, *t_bool;
  const char *exp, *log, *sqrt, *tanh, *fabs, *erf, *cos, *sin, *fmax, *fmin;
  const char *imax, *imin;
  const char *tof, *toi; /* printf formats with one %s */
  const char *unroll;    /* pragma line or NULL */
  bool f_suffix;         /* float literals end in 'f' */
} lang_table;

static const lang_table LANGS[] = {
    [KIR_LANG_C] = {"float", "int64_t", "int", "expf", "logf", "sqrtf", "tanhf", "fabsf", "erff",
                    "cosf", "sinf", "fmaxf", "fminf", "MLC_IMAX", "MLC_IMIN", "(float)(%s)", "(int64_t)(%s)",
                    "#pragma GCC unroll 16", true},
    [KIR_LANG_GLSL] = {"float", "int", "bool", "exp", "log", "sqrt", "tanh", "abs", "mlc_erf",
                       "cos", "sin", "max", "min", "max", "min", "float(%s)", "int(%s)", NULL, false},
};

static const char *C_PRELUDE =
    "#include <stdint.h>\n"
    "#include <string.h>\n"
    "#include <math.h>\n"
    "#define MLC_IMAX(a, b) ((a) > (b) ? (a) : (b))\n"
    "#define MLC_IMIN(a, b) ((a) < (b) ? (a) : (b))\n"
    "/* branchless, so loops over f16 weights vectorise: normals and subnormals by one exact scale,\n"
    "   inf/nan by forcing the exponent */\n"
    "static inline float mlc_h2f(uint16_t h) {\n"
    "  uint32_t o = (uint32_t)(h & 0x7fffu) << 13, u;\n"
    "  float f; memcpy(&f, &o, 4); f *= 0x1p112f; memcpy(&u, &f, 4);\n"
    "  u |= ((h & 0x7c00u) == 0x7c00u) ? 0x7f800000u : 0u;\n"
    "  u |= (uint32_t)(h & 0x8000u) << 16;\n"
    "  memcpy(&f, &u, 4); return f;\n"
    "}\n"
    "static inline float mlc_bf2f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }\n";

const char *kir_c_prelude(void) { return C_PRELUDE; }

typedef struct rctx {
  const kir_kernel *k;
  const lang_table *L;
  kir_lang lang;
  mlc_buf *out;
  int indent;
} rctx;

/* GLSL reserves words like `out`: buffers are prefixed there. */
static const char *bname(const rctx *r, const kir_buf *b) {
  static _Thread_local char nm[40];
  if (r->lang == KIR_LANG_C)
    return b->name;
  snprintf(nm, sizeof nm, "b_%s", b->name);
  return nm;
}

static void ind(rctx *r) {
  for (int i = 0; i < r->indent; i++)
    mlc_buf_puts(r->out, "  ");
}

static const char *type_name(rctx *r, kir_type t) {
  return t == KIR_F32 ? r->L->t_f32 : t == KIR_I64 ? r->L->t_i64 : r->L->t_bool;
}

static void expr(rctx *r, const kir_node *n);

static void fconst(rctx *r, double v) {
  if (isinf(v)) {
    if (r->lang == KIR_LANG_C)
      mlc_buf_puts(r->out, v > 0 ? "INFINITY" : "(-INFINITY)");
    else
      mlc_buf_puts(r->out, v > 0 ? "uintBitsToFloat(0x7f800000u)" : "uintBitsToFloat(0xff800000u)");
    return;
  }
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.9g", v);
  if (!strpbrk(tmp, ".eEn"))
    strcat(tmp, ".0");
  mlc_buf_puts(r->out, v < 0 ? "(" : "");
  mlc_buf_puts(r->out, tmp);
  if (r->L->f_suffix)
    mlc_buf_puts(r->out, "f");
  mlc_buf_puts(r->out, v < 0 ? ")" : "");
}

static void load(rctx *r, const kir_node *n) {
  const kir_buf *b = &r->k->bufs[n->a];
  mlc_buf *o = r->out;
  if (b->local || b->dtype == MLC_F32 || r->lang == KIR_LANG_C) {
    if (!b->local && b->dtype == MLC_F16)
      mlc_buf_puts(o, "mlc_h2f(");
    else if (!b->local && b->dtype == MLC_BF16)
      mlc_buf_puts(o, "mlc_bf2f(");
    else if (b->dtype != MLC_F32)
      mlc_buf_printf(o, "(%s)(", r->L->t_i64);
    else
      mlc_buf_puts(o, "(");
    mlc_buf_printf(o, "%s[", bname(r, b));
    expr(r, n->src[0]);
    mlc_buf_puts(o, "])");
    return;
  }
  /* GLSL: 16-bit types are stored packed in uint words */
  switch (b->dtype) {
  case MLC_F16:
    mlc_buf_printf(o, "unpackHalf2x16(%s[(", bname(r, b));
    expr(r, n->src[0]);
    mlc_buf_puts(o, ") >> 1])[(");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ") & 1]");
    break;
  case MLC_BF16:
    mlc_buf_printf(o, "uintBitsToFloat(((%s[(", bname(r, b));
    expr(r, n->src[0]);
    mlc_buf_puts(o, ") >> 1] >> (((");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ") & 1) * 16)) & 0xffffu) << 16)");
    break;
  default:
    mlc_buf_printf(o, "int(%s[", bname(r, b));
    expr(r, n->src[0]);
    mlc_buf_puts(o, "])");
    break;
  }
}

static void expr(rctx *r, const kir_node *n) {
  mlc_buf *o = r->out;
  const lang_table *L = r->L;
  switch (n->op) {
  case KIR_CONST:
    if (n->type == KIR_F32)
      fconst(r, n->f);
    else if (r->lang == KIR_LANG_C)
      mlc_buf_printf(o, "INT64_C(%lld)", (long long)n->i);
    else
      mlc_buf_printf(o, "%lld", (long long)n->i);
    return;
  case KIR_IPARAM:
    mlc_buf_printf(o, "ip[%d]", n->a);
    return;
  case KIR_FPARAM:
    mlc_buf_printf(o, "fp[%d]", n->a);
    return;
  case KIR_VAR:
    mlc_buf_printf(o, "%s_%d", r->k->var_name[n->a], n->a);
    return;
  case KIR_LOAD:
    load(r, n);
    return;
  default:
    break;
  }
  static const char *binop[KIR_OP_COUNT] = {
      [KIR_ADD] = "+", [KIR_SUB] = "-", [KIR_MUL] = "*", [KIR_DIV] = "/", [KIR_MOD] = "%",
      [KIR_LT] = "<",  [KIR_LE] = "<=", [KIR_EQ] = "==", [KIR_NE] = "!=", [KIR_AND] = "&&",
      [KIR_OR] = "||"};
  if (binop[n->op]) {
    mlc_buf_puts(o, "(");
    expr(r, n->src[0]);
    mlc_buf_printf(o, " %s ", binop[n->op]);
    expr(r, n->src[1]);
    mlc_buf_puts(o, ")");
    return;
  }
  const char *fn = NULL;
  bool isf = n->type == KIR_F32;
  switch (n->op) {
  case KIR_MAX: fn = isf ? L->fmax : L->imax; break;
  case KIR_MIN: fn = isf ? L->fmin : L->imin; break;
  case KIR_EXP: fn = L->exp; break;
  case KIR_LOG: fn = L->log; break;
  case KIR_SQRT: fn = L->sqrt; break;
  case KIR_TANH: fn = L->tanh; break;
  case KIR_ERF: fn = L->erf; break;
  case KIR_COS: fn = L->cos; break;
  case KIR_SIN: fn = L->sin; break;
  case KIR_ABS: fn = isf ? L->fabs : "abs"; break;
  default: break;
  }
  if (fn) {
    mlc_buf_printf(o, "%s(", fn);
    expr(r, n->src[0]);
    if (n->op == KIR_MAX || n->op == KIR_MIN) {
      mlc_buf_puts(o, ", ");
      expr(r, n->src[1]);
    }
    mlc_buf_puts(o, ")");
    return;
  }
  switch (n->op) {
  case KIR_NEG:
    mlc_buf_puts(o, "(-");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  case KIR_NOT:
    mlc_buf_puts(o, "(!");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ")");
    return;
  case KIR_TOF:
  case KIR_TOI: {
    mlc_buf inner = {0};
    rctx r2 = *r;
    r2.out = &inner;
    expr(&r2, n->src[0]);
    mlc_buf_printf(o, n->op == KIR_TOF ? L->tof : L->toi, inner.data ? inner.data : "");
    mlc_buf_free(&inner);
    return;
  }
  case KIR_SELECT:
    mlc_buf_puts(o, "(");
    expr(r, n->src[0]);
    mlc_buf_puts(o, " ? ");
    expr(r, n->src[1]);
    mlc_buf_puts(o, " : ");
    expr(r, n->src[2]);
    mlc_buf_puts(o, ")");
    return;
  default:
    mlc_abort(__FILE__, __LINE__, "kir: cannot render op %d as an expression", n->op);
  }
}

static void stmt(rctx *r, const kir_node *n) {
  mlc_buf *o = r->out;
  const kir_kernel *k = r->k;
  switch (n->op) {
  case KIR_SEQ:
    for (int i = 0; i < n->nlist; i++)
      stmt(r, n->list[i]);
    return;
  case KIR_FOR: {
    const char *vn = k->var_name[n->a];
    if (n->i == KIR_LOOP_UNROLL && r->L->unroll) {
      ind(r);
      mlc_buf_printf(o, "%s\n", r->L->unroll);
    }
    ind(r);
    mlc_buf_printf(o, "for (%s %s_%d = ", type_name(r, KIR_I64), vn, n->a);
    expr(r, n->src[0]);
    mlc_buf_printf(o, "; %s_%d < ", vn, n->a);
    expr(r, n->src[1]);
    mlc_buf_printf(o, "; %s_%d++) {\n", vn, n->a);
    r->indent++;
    stmt(r, n->src[2]);
    r->indent--;
    ind(r);
    mlc_buf_puts(o, "}\n");
    return;
  }
  case KIR_LOCAL:
    ind(r);
    mlc_buf_printf(o, "%s %s_%d = ", type_name(r, k->var_type[n->a]), k->var_name[n->a], n->a);
    expr(r, n->src[0]);
    mlc_buf_puts(o, ";\n");
    return;
  case KIR_ASSIGN:
    ind(r);
    mlc_buf_printf(o, "%s_%d = ", k->var_name[n->a], n->a);
    expr(r, n->src[0]);
    mlc_buf_puts(o, ";\n");
    return;
  case KIR_STORE: {
    const kir_buf *b = &k->bufs[n->a];
    MLC_ASSERT(b->local || b->dtype == MLC_F32 || b->dtype == MLC_I32);
    ind(r);
    mlc_buf_printf(o, "%s[", bname(r, b));
    expr(r, n->src[0]);
    mlc_buf_puts(o, "] = ");
    if (b->dtype == MLC_I32)
      mlc_buf_puts(o, r->lang == KIR_LANG_C ? "(int32_t)" : "int");
    mlc_buf_puts(o, "(");
    expr(r, n->src[1]);
    mlc_buf_puts(o, ");\n");
    return;
  }
  case KIR_IF:
    ind(r);
    mlc_buf_puts(o, "if (");
    expr(r, n->src[0]);
    mlc_buf_puts(o, ") {\n");
    r->indent++;
    stmt(r, n->src[1]);
    r->indent--;
    if (n->src[2]) {
      ind(r);
      mlc_buf_puts(o, "} else {\n");
      r->indent++;
      stmt(r, n->src[2]);
      r->indent--;
    }
    ind(r);
    mlc_buf_puts(o, "}\n");
    return;
  default:
    mlc_abort(__FILE__, __LINE__, "kir: op %d is not a statement", n->op);
  }
}

static const char *c_elem(mlc_dtype dt) {
  switch (dt) {
  case MLC_F32: return "float";
  case MLC_F16:
  case MLC_BF16: return "uint16_t";
  case MLC_I32: return "int32_t";
  case MLC_U32: return "uint32_t";
  case MLC_I8: return "int8_t";
  case MLC_U8: return "uint8_t";
  case MLC_I64: return "int64_t";
  default: return "void";
  }
}

static void render_c(rctx *r) {
  const kir_kernel *k = r->k;
  mlc_buf *o = r->out;
  mlc_buf_printf(o,
                 "void %s(void *const *bufs, const int64_t *restrict ip, const float *restrict fp, "
                 "int64_t g0, int64_t g1) {\n",
                 k->name);
  int ext = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      continue;
    mlc_buf_printf(o, "  %s%s *restrict %s = (%s%s *)bufs[%d];\n", b->write ? "" : "const ",
                   c_elem(b->dtype), b->name, b->write ? "" : "const ", c_elem(b->dtype), ext++);
  }
  mlc_buf_puts(o, "  (void)ip; (void)fp;\n");
  mlc_buf_printf(o, "  for (int64_t %s_0 = g0; %s_0 < g1; %s_0++) {\n", k->var_name[0],
                 k->var_name[0], k->var_name[0]);
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      mlc_buf_printf(o, "    %s %s[%lld];\n", c_elem(b->dtype), b->name, (long long)b->local_len);
  }
  r->indent = 2;
  stmt(r, k->body);
  mlc_buf_puts(o, "  }\n}\n");
}

static const char *GLSL_ERF =
    "float mlc_erf(float x) {\n"
    "  float s = sign(x), a = abs(x);\n"
    "  float t = 1.0 / (1.0 + 0.3275911 * a);\n"
    "  float y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);\n"
    "  return s * y;\n"
    "}\n";

static void render_glsl(rctx *r) {
  const kir_kernel *k = r->k;
  mlc_buf *o = r->out;
  mlc_buf_printf(o, "#version 450\n// kernel %s\nlayout(local_size_x = 64) in;\n", k->name);
  int binding = 0;
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      continue;
    const char *et = b->dtype == MLC_F32 ? "float" : (b->dtype == MLC_F16 || b->dtype == MLC_BF16) ? "uint" : "int";
    mlc_buf_printf(o, "layout(std430, binding = %d) %sbuffer Buf%d { %s %s[]; };\n", binding, b->write ? "" : "readonly ",
                   binding, et, bname(r, b));
    binding++;
  }
  mlc_buf_printf(o, "layout(std430, binding = %d) readonly buffer IParams { int ip[]; };\n", binding);
  mlc_buf_printf(o, "layout(std430, binding = %d) readonly buffer FParams { float fp[]; };\n", binding + 1);
  mlc_buf_puts(o, "layout(push_constant) uniform Range { int g0; int g1; } range;\n");
  mlc_buf_puts(o, GLSL_ERF);
  mlc_buf_puts(o, "void main() {\n");
  mlc_buf_printf(o, "  int %s_0 = range.g0 + int(gl_GlobalInvocationID.x);\n", k->var_name[0]);
  mlc_buf_printf(o, "  if (%s_0 >= range.g1) return;\n", k->var_name[0]);
  for (int i = 0; i < k->nbuf; i++) {
    const kir_buf *b = &k->bufs[i];
    if (b->local)
      mlc_buf_printf(o, "  %s %s[%lld];\n", b->dtype == MLC_F32 ? "float" : "int", bname(r, b),
                     (long long)b->local_len);
  }
  r->indent = 1;
  stmt(r, k->body);
  mlc_buf_puts(o, "}\n");
}

void kir_render(const kir_kernel *k, kir_lang lang, mlc_buf *out) {
  rctx r = {.k = k, .L = &LANGS[lang], .lang = lang, .out = out};
  if (lang == KIR_LANG_C)
    render_c(&r);
  else
    render_glsl(&r);
}
