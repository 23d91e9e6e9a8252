/*
 * model.c: loading a model and running it. Load = read config and map weights, build the graph
 * (architecture file), run the passes, plan memory, lower each op to a kernel (specialised C
 * compiled at run time, or the generic kernels built into libmlc), allocate the arena, the
 * paged KV cache and the input buffers once. A forward step binds the inputs, evaluates the
 * symbolic sizes for this step and launches the kernels in order on the thread pool.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "format/convert.h"
#include "format/quant.h"

/* ---- launch records ---- */

static int64_t stride_of(const mlc_graph *g, int t) { return g->t[t].row_stride; }

void mlc_launch_fill(const mlc_model *m, int oi, mlc_launch *L) {
  const mlc_graph *g = &m->g;
  const mlc_op *o = &g->ops[oi];
  memset(L, 0, sizeof *L);
  L->op = oi;
  mlc_kdesc *d = &L->d;
  d->kind = o->kind;
  d->generic = m->opt.generic_kernels;
  int *b = L->buf;
  int nb = 0;
  const mlc_tensor *out = o->nout > 0 ? &g->t[o->out[0]] : NULL;
  mlc_sym rows = out ? out->rows : mlc_sym_c(0);
  switch (o->kind) {
  case MLC_OP_EMBED:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    d->var[0] = g->t[o->in[1]].dtype;
    d->size[0] = out->cols;
    d->fv[0] = o->fa[0];
    L->grid = rows;
    break;
  case MLC_OP_RMSNORM:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    d->var[0] = g->t[o->in[1]].dtype;
    d->var[1] = (int)o->ia[1];
    d->size[0] = out->cols;
    d->size[1] = o->ia[0];
    d->size[2] = stride_of(g, o->in[0]);
    d->fv[0] = o->fa[0];
    L->grid = mlc_sym_scale(rows, out->cols / o->ia[0]);
    break;
  case MLC_OP_ADD_RMSNORM:
    b[nb++] = o->out[0], b[nb++] = o->out[1], b[nb++] = o->in[0], b[nb++] = o->in[1], b[nb++] = o->in[2];
    d->var[0] = g->t[o->in[2]].dtype;
    d->var[1] = (int)o->ia[1];
    d->size[0] = out->cols;
    d->fv[0] = o->fa[0];
    L->grid = rows;
    break;
  case MLC_OP_ADD:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    d->size[0] = out->cols;
    L->grid = rows;
    break;
  case MLC_OP_MATMUL:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    if (o->in[2] >= 0)
      b[nb++] = o->in[2];
    if (o->in[3] >= 0)
      b[nb++] = o->in[3];
    d->var[0] = g->t[o->in[1]].dtype;
    d->var[1] = o->in[2] >= 0;
    d->var[2] = o->in[3] >= 0;
    d->var[3] = o->fa[0] != 0;
    d->size[0] = o->ia[0];
    d->size[1] = g->t[o->in[0]].cols;
    d->size[2] = o->ia[1] > 0 ? o->ia[1] : 1;
    d->size[3] = stride_of(g, o->in[0]);
    d->fv[0] = o->fa[0];
    L->dyn[0] = rows;
    L->grid = mlc_sym_c(o->ia[0]);
    break;
  case MLC_OP_GATED_MATMUL:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1], b[nb++] = o->in[2];
    if (o->in[3] >= 0)
      b[nb++] = o->in[3];
    d->var[0] = g->t[o->in[1]].dtype;
    d->var[1] = (int)o->ia[2];
    d->var[2] = o->in[3] >= 0;
    d->size[0] = o->ia[0];
    d->size[1] = g->t[o->in[0]].cols;
    d->size[2] = o->ia[1] > 0 ? o->ia[1] : 1;
    d->size[3] = o->ia[3];
    d->size[4] = o->ia[0] + o->ia[3]; /* weight rows per expert: F, or 2F for a fused gate_up */
    d->size[5] = stride_of(g, o->in[0]);
    L->dyn[0] = rows;
    L->grid = mlc_sym_c(o->ia[0]);
    break;
  case MLC_OP_ACT_MUL:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    d->var[0] = (int)o->ia[2];
    d->size[0] = out->cols;
    d->size[1] = stride_of(g, o->in[0]);
    d->size[2] = stride_of(g, o->in[1]);
    L->grid = rows;
    break;
  case MLC_OP_SOFTCAP:
    b[nb++] = o->out[0], b[nb++] = o->in[0];
    d->size[0] = out->cols;
    d->fv[0] = o->fa[0];
    L->grid = rows;
    break;
  case MLC_OP_DEQUANT:
    b[nb++] = o->out[0], b[nb++] = o->in[0];
    d->var[0] = g->t[o->in[0]].dtype;
    d->size[0] = out->cols;
    L->grid = rows;
    break;
  case MLC_OP_ROPE:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1], b[nb++] = o->in[2];
    d->size[0] = o->ia[0];
    d->size[1] = o->ia[1];
    d->size[2] = o->ia[2];
    d->size[3] = stride_of(g, o->in[0]);
    d->fv[0] = o->fa[0];
    L->grid = mlc_sym_scale(rows, o->ia[0]);
    break;
  case MLC_OP_KV_APPEND:
    b[nb++] = o->in[5], b[nb++] = o->in[0], b[nb++] = o->in[1], b[nb++] = o->in[2], b[nb++] = o->in[3],
    b[nb++] = o->in[4];
    d->size[0] = o->ia[0];
    d->size[1] = o->ia[1];
    d->size[2] = stride_of(g, o->in[0]);
    d->size[3] = stride_of(g, o->in[1]);
    d->size[4] = m->max_pages;
    L->grid = mlc_sym_scale(g->t[o->in[0]].rows, o->ia[0]);
    break;
  case MLC_OP_ROPE_KV:
    b[nb++] = o->out[0], b[nb++] = o->in[7];
    for (int i = 0; i < 7; i++)
      b[nb++] = o->in[i];
    d->size[0] = o->ia[0];
    d->size[1] = o->ia[1];
    d->size[2] = o->ia[2];
    d->size[3] = o->ia[3];
    d->size[4] = stride_of(g, o->in[0]);
    d->size[5] = stride_of(g, o->in[1]);
    d->size[6] = stride_of(g, o->in[2]);
    d->size[7] = m->max_pages;
    d->fv[0] = o->fa[0];
    L->grid = mlc_sym_scale(rows, o->ia[0] + o->ia[1]);
    break;
  case MLC_OP_ATTENTION:
    b[nb++] = o->out[0];
    for (int i = 0; i < 5; i++)
      b[nb++] = o->in[i];
    d->var[0] = o->fa[1] != 0;
    d->size[0] = o->ia[0];
    d->size[1] = o->ia[1];
    d->size[2] = o->ia[2];
    d->size[3] = o->ia[3];
    d->size[4] = m->max_pages;
    d->size[5] = stride_of(g, o->in[0]);
    d->size[6] = o->ia[4] > 1 ? o->ia[4] : 1; /* splits (partials for ATTN_COMBINE) */
    d->fv[0] = o->fa[0];
    d->fv[1] = o->fa[1];
    L->dyn[0] = rows; /* not read by the kernels: the device picks the long-step alternative by it */
    L->grid = mlc_sym_scale(rows, o->ia[0] * d->size[6]);
    break;
  case MLC_OP_ATTN_COMBINE:
    b[nb++] = o->out[0], b[nb++] = o->in[0];
    d->size[0] = o->ia[0];
    d->size[1] = o->ia[1];
    d->size[2] = o->ia[2];
    L->grid = mlc_sym_scale(rows, o->ia[0]);
    break;
  case MLC_OP_MOE_ROUTE:
    b[nb++] = o->out[0], b[nb++] = o->out[1], b[nb++] = o->in[0];
    d->var[0] = (int)o->ia[2];
    d->size[0] = o->ia[0];
    d->size[1] = o->ia[1];
    L->grid = g->t[o->in[0]].rows;
    break;
  case MLC_OP_MOE_COMBINE:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    d->size[0] = out->cols;
    d->size[1] = o->ia[0];
    L->grid = rows;
    break;
  case MLC_OP_GATHER_ROWS:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    d->size[0] = out->cols;
    d->size[1] = stride_of(g, o->in[0]);
    L->grid = rows;
    break;
  case MLC_OP_SAMPLE:
    b[nb++] = o->out[0], b[nb++] = o->in[0], b[nb++] = o->in[1];
    d->size[0] = g->t[o->in[0]].cols;
    d->size[1] = stride_of(g, o->in[0]);
    L->grid = rows;
    break;
  case MLC_OP_ALLREDUCE:
  case MLC_OP_ALLGATHER:
    /* no kernel: the runtime moves the data between ranks */
    b[nb++] = o->out[0], b[nb++] = o->in[0];
    L->grid = rows;
    break;
  default:
    mlc_abort(__FILE__, __LINE__, "op %d has no launch rule", o->kind);
  }
  nb = mlc_kdesc_quant(g, o, d, b, nb); /* packed weights: their scales (format/quant.h) */
  L->nbuf = nb;
  L->kidx = o->kind == MLC_OP_ALLREDUCE || o->kind == MLC_OP_ALLGATHER ? -1 : 0;
  memcpy(L->ip, d->size, sizeof d->size);
  memcpy(L->fp, d->fv, sizeof d->fv);
  /* name, as the lowering will call it */
  if (d->generic) {
    char key[64];
    mlc_kdesc_key(d, key, sizeof key);
    snprintf(L->name, sizeof L->name, "g_%s", key);
  } else {
    snprintf(L->name, sizeof L->name, "k_%s_%016llx", mlc_op_name(d->kind),
             (unsigned long long)mlc_hash64(d, sizeof *d, 0));
  }
}

/* ---- graph ---- */

mlc_status mlc_model_build_graph(mlc_model *m, bool run_passes) {
  const mlc_model_config *c = &m->cfg;
  const mlc_arch *arch = mlc_arch_find(c->arch);
  if (!arch)
    return mlc_err(MLC_ERR_UNSUPPORTED, "%s/config.json: model_type '%s' is not supported (supported: %s)", m->dir,
                   c->arch, mlc_arch_list());
  mlc_graph_init(&m->g);
  mlc_builder b = {.g = &m->g, .cfg = c, .st = m->st, .owned = &m->owned, .dir = m->dir, .max_pages = m->max_pages,
                   .tp_rank = m->tp_rank, .tp_n = m->tp_n};
  static const char *in_names[MLC_IN_COUNT] = {"ids", "pos", "seq", "pages", "rows", "sample"};
  for (int i = 0; i < MLC_IN_COUNT; i++) {
    mlc_sym rows = i == MLC_IN_PAGES ? mlc_sym_c(1) : i == MLC_IN_ROWS || i == MLC_IN_SAMPLE ? mlc_sym_m(1) : mlc_sym_n(1);
    bool smp = i == MLC_IN_SAMPLE;
    b.in[i] = mlc_g_tensor(&m->g, in_names[i], MLC_T_INPUT, smp ? MLC_F32 : MLC_I32, rows, smp ? MLC_SAMPLE_SLOTS : 1);
    m->g.t[b.in[i]].input = i;
  }
  int rot = (int)(c->head_dim * (c->partial_rotary_factor > 0 ? c->partial_rotary_factor : 1.0f));
  rot -= rot % 2;
  b.rot_dim = rot;
  float *inv = mlc_owned_alloc(&m->owned, sizeof(float) * (size_t)(rot / 2 + 1));
  if (!inv)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  MLC_TRY(mlc_rope_inv_freq(c, rot, inv, &b.rope_scale));
  b.inv_freq = mlc_g_tensor(&m->g, "inv_freq", MLC_T_CONST, MLC_F32, mlc_sym_c(1), rot / 2);
  m->g.t[b.inv_freq].data = inv;
  mlc_status st = arch->build(&b);
  if (st != MLC_OK)
    return st;
  if (m->g.logits < 0)
    return mlc_err(MLC_ERR_INTERNAL, "architecture %s built no logits", c->arch);
  if (run_passes)
    mlc_passes_run(&m->g, &m->passes);
  else
    mlc_pass_dce(&m->g);
  /* token selection on the device after the logits (lower.c rule_sample), launched only by the
   * steps that sample there (mlc_batch_forward) */
  int sin[2] = {m->g.logits, b.in[MLC_IN_SAMPLE]};
  m->g.tokens = mlc_g_tensor(&m->g, "tokens", MLC_T_ACT, MLC_I32, m->g.t[m->g.logits].rows, 1);
  mlc_g_op(&m->g, MLC_OP_SAMPLE, sin, 2, &m->g.tokens, 1);
  return MLC_OK;
}

bool mlc_model_device_sampling(const mlc_model *m) {
  const char *e = getenv("MLC_DEVICE_SAMPLING");
  if (e && *e)
    return strcmp(e, "0") != 0;
  return !m->dev->caps.host_memory; /* the CPU's logits are in host memory already */
}

/* ---- kernels ---- */

static bool seen_name(const mlc_launch *L, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(L[i].name, name) == 0)
      return true;
  return false;
}

mlc_status mlc_model_render(const mlc_model *m, kir_lang lang, bool generic, mlc_buf *out) {
  if (lang == KIR_LANG_C)
    mlc_buf_puts(out, kir_c_prelude());
  for (int i = 0; i < m->nlaunch; i++) {
    if (m->launch[i].kidx < 0 || seen_name(m->launch, i, m->launch[i].name))
      continue;
    mlc_kdesc d = m->launch[i].d;
    d.generic = generic;
    kir_kernel *k = mlc_lower(&d, mlc_tunables_for(lang));
    if (lang == KIR_LANG_GLSL)
      mlc_buf_printf(out, "// ---- %s\n", k->name);
    else
      mlc_buf_puts(out, "\n");
    kir_render(k, lang, out);
    kir_free(k);
  }
  return out->oom ? mlc_err(MLC_ERR_NOMEM, "out of memory rendering kernels") : MLC_OK;
}

/* Lowers every distinct kernel of the launch plan in the device's language and builds them into
 * one module; each launch gets its kernel's index. Specialised kernels need the device's
 * compiler; where that fails and the device has built-in generic kernels, those are used. */
static mlc_status bind_kernels(mlc_model *m) {
  int n = 0;
  const char **names = calloc((size_t)m->nlaunch + 1, sizeof *names);
  char **srcs = calloc((size_t)m->nlaunch + 1, sizeof *srcs);
  mlc_status st = names && srcs ? MLC_OK : mlc_err(MLC_ERR_NOMEM, "out of memory");
  const mlc_tunables tu = mlc_tunables_dev(m->dev->caps.lang, m->dev->caps.int8_dot);
  for (int pass = 0; pass < 2 && st == MLC_OK; pass++) {
    bool generic = m->opt.generic_kernels;
    n = 0;
    for (int i = 0; i < m->nlaunch; i++) {
      mlc_launch *L = &m->launch[i];
      if (L->kidx < 0)
        continue; /* a collective: no kernel */
      int k = 0;
      while (k < n && strcmp(names[k], L->name))
        k++;
      L->kidx = k;
      if (k < n)
        continue;
      names[n] = L->name;
      srcs[n] = NULL;
      if (!generic || !m->dev->caps.generic_kernels) {
        mlc_kdesc d = L->d;
        kir_kernel *kk = mlc_lower(&d, &tu);
        mlc_buf b = {0};
        kir_render(kk, m->dev->caps.lang, &b);
        kir_free(kk);
        srcs[n] = mlc_buf_take(&b);
      }
      n++;
    }
    double t0 = mlc_now();
    bool use_src = !generic || !m->dev->caps.generic_kernels;
    st = m->dev->vt->build(m->dev, names, use_src ? (const char *const *)srcs : NULL, n, m->opt.verbose, &m->mod);
    m->compile_s = mlc_now() - t0;
    for (int i = 0; i < n; i++) {
      free(srcs[i]);
      srcs[i] = NULL;
    }
    if (st == MLC_OK || generic || !m->dev->caps.generic_kernels)
      break;
    /* no working compiler: fall back to the kernels built into the library */
    if (m->opt.verbose)
      fprintf(stderr, "mlc: %s; using the generic kernels\n", mlc_last_error());
    m->opt.generic_kernels = 1;
    for (int i = 0; i < m->nlaunch; i++)
      mlc_launch_fill(m, m->launch[i].op, &m->launch[i]);
    st = MLC_OK;
  }
  free(names);
  free(srcs);
  return st;
}

/* ---- load ---- */

static void describe(mlc_model *m) {
  mlc_buf b = {0};
  const mlc_model_config *c = &m->cfg;
  mlc_buf_printf(&b, "model: %s (%s), %d layers, hidden %d, heads %d/%d, head_dim %d, ffn %d, vocab %d", m->dir,
                 c->arch, c->num_layers, c->hidden_size, c->num_heads, c->num_kv_heads, c->head_dim,
                 c->intermediate_size, c->vocab_size);
  if (c->num_experts)
    mlc_buf_printf(&b, ", %d experts (top %d)", c->num_experts, c->num_experts_per_tok);
  mlc_buf_printf(&b, "\npasses: fuse_dequant %d, fuse_softcap %d, fuse_gated %d, fuse_rope_kv %d, fuse_add_rmsnorm %d, dce %d\n",
                 m->passes.dequant_fused, m->passes.softcap_fused, m->passes.gated_fused, m->passes.rope_kv_fused,
                 m->passes.add_norm_fused, m->passes.dead_removed);
  mlc_buf_printf(&b, "memory plan: arena %.2f MiB for up to %d tokens per step, KV cache %.2f MiB (%d pages of %d tokens)\n",
                 m->g.arena_size / 1048576.0, m->max_n,
                 (double)m->kv_layer_elems * c->num_layers * sizeof(float) / 1048576.0, m->n_pages, MLC_KV_PAGE);
  mlc_buf_printf(&b, "kernels (%s): %d launches per step\n",
                 m->opt.generic_kernels ? "generic, built into libmlc" : "specialised, compiled at load", m->nlaunch);
  for (int i = 0; i < m->nlaunch; i++) {
    const mlc_launch *L = &m->launch[i];
    if (m->g.ops[L->op].layer > 0)
      continue; /* layer 0 stands for all layers */
    mlc_buf_printf(&b, "  %-16s %s\n", mlc_op_name(m->g.ops[L->op].kind), L->name);
  }
  free(m->describe);
  m->describe = mlc_buf_take(&b);
}

/* elements of the host staging array (and device buffer) of input i */
static size_t in_elems(const mlc_model *m, int i) {
  return i == MLC_IN_PAGES    ? (size_t)m->max_seqs * (size_t)m->max_pages
         : i == MLC_IN_SAMPLE ? (size_t)m->max_n * MLC_SAMPLE_SLOTS
                              : (size_t)m->max_n;
}

static mlc_status alloc_runtime(mlc_model *m) {
  const mlc_model_config *c = &m->cfg;
  mlc_device *d = m->dev;
  m->max_seqs = m->opt.max_batch > 0 ? m->opt.max_batch : 4;
  int total = m->opt.max_total_tokens > 0 ? m->opt.max_total_tokens : m->max_seq_len;
  m->n_pages = (total + MLC_KV_PAGE - 1) / MLC_KV_PAGE;
  m->kv_layer_elems = (size_t)m->n_pages * 2 * c->num_kv_heads * MLC_KV_PAGE * c->head_dim;
  m->free_pages = malloc(sizeof(int) * (size_t)m->n_pages);
  m->page_ref = calloc((size_t)m->n_pages, sizeof(int));
  m->slot_used = calloc((size_t)m->max_seqs, sizeof(bool));
  m->logits_host = malloc(sizeof(float) * (size_t)m->max_n * (size_t)c->vocab_size);
  m->tokens_host = malloc(sizeof(int32_t) * (size_t)m->max_n);
  m->tmem = calloc((size_t)m->g.nt, sizeof *m->tmem);
  for (int i = 0; i < MLC_IN_COUNT; i++)
    m->in[i] = calloc(in_elems(m, i), sizeof(int32_t));
  bool ok = m->free_pages && m->page_ref && m->slot_used && m->logits_host && m->tokens_host && m->tmem;
  for (int i = 0; i < MLC_IN_COUNT; i++)
    ok = ok && m->in[i];
  if (!ok)
    return mlc_err(MLC_ERR_NOMEM, "out of memory allocating the runtime");
  MLC_TRY(d->vt->alloc(d, m->g.arena_size ? m->g.arena_size : 64, &m->arena));
  mlc_status st = d->vt->alloc(d, m->kv_layer_elems * (size_t)c->num_layers * sizeof(float), &m->kv);
  if (st != MLC_OK)
    return mlc_err_context(st, "KV cache of %d pages", m->n_pages);
  for (int i = 0; i < MLC_IN_COUNT; i++) {
    size_t bytes = sizeof(int32_t) * in_elems(m, i);
    MLC_TRY(d->caps.host_memory ? d->vt->from_host(d, m->in[i], bytes, &m->in_mem[i]) : d->vt->alloc(d, bytes, &m->in_mem[i]));
  }
  /* weights and constants: once, for the life of the model; weights no live op reads (the parts
   * of a fused weight: builder.c fuse_adjacent) stay on the host */
  bool *read = calloc((size_t)m->g.nt + 1, sizeof *read);
  if (!read)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  for (int i = 0; i < m->g.nops; i++)
    for (int j = 0; j < m->g.ops[i].nin && !m->g.ops[i].dead; j++)
      if (m->g.ops[i].in[j] >= 0)
        read[mlc_g_root(&m->g, m->g.ops[i].in[j])] = true;
  for (int i = 0; i < m->g.nt; i++)
    if (read[i] && m->g.t[i].kind == MLC_T_WEIGHT && m->g.t[i].scale_tensor >= 0)
      read[m->g.t[i].scale_tensor] = true;
  for (int i = 0; i < m->g.nt; i++) {
    const mlc_tensor *t = &m->g.t[i];
    if ((t->kind != MLC_T_WEIGHT && t->kind != MLC_T_CONST) || (t->kind == MLC_T_WEIGHT && !read[i]))
      continue;
    size_t bytes = mlc_weight_bytes(t->dtype, mlc_sym_eval(t->rows, 0, 0), t->cols);
    mlc_status st2 = d->vt->from_host(d, t->data, bytes, &m->tmem[i]);
    if (st2 != MLC_OK) {
      free(read);
      return st2;
    }
  }
  free(read);
  for (int i = 0; i < m->n_pages; i++)
    m->free_pages[i] = m->n_pages - 1 - i;
  m->n_free = m->n_pages;
  return MLC_OK;
}

/*
 * Weight layouts for the device (docs/compiler.md "Vectors and tiles"): on the CPU with
 * specialised kernels, 4-bit weights whose rows are whole 128-element blocks are repacked once,
 * at load, into the interleaved layout the vector tiles read (format/quant.h); the launch records
 * then name the interleaved dtype. Weights that expert (MoE) matmuls read keep the plain layout.
 * $MLC_NO_REPACK=1 keeps every weight as stored (for comparisons).
 */
static mlc_status repack_weights(mlc_model *m) {
  if (m->dev->caps.lang != KIR_LANG_C || m->opt.generic_kernels || getenv("MLC_NO_REPACK"))
    return MLC_OK;
  if (mlc_tunables_for(KIR_LANG_C)->int8_act && !getenv("MLC_NO_INT8"))
    return MLC_OK; /* 8-bit activations read the plain layout (lower.c tile_dots_i8) */
  mlc_graph *g = &m->g;
  int changed = 0;
  for (int i = 0; i < g->nt; i++) {
    mlc_tensor *t = &g->t[i];
    const mlc_qscheme *s = t->kind == MLC_T_WEIGHT ? mlc_qscheme_of(t->dtype) : NULL;
    const mlc_qscheme *si = s ? mlc_q_interleaved_of(s, t->cols) : NULL;
    if (!si)
      continue;
    bool expert = false;
    for (int o = 0; o < g->nops && !expert; o++) {
      const mlc_op *op = &g->ops[o];
      bool uses = false;
      for (int j = 0; j < op->nin; j++)
        uses = uses || op->in[j] == i;
      expert = uses && (op->kind == MLC_OP_MATMUL || op->kind == MLC_OP_GATED_MATMUL) && op->in[3] >= 0;
    }
    if (expert)
      continue;
    int64_t rows = mlc_sym_eval(t->rows, 0, 0);
    uint32_t *dst = mlc_owned_alloc(&m->owned, mlc_weight_bytes(t->dtype, rows, t->cols));
    if (!dst)
      return mlc_err(MLC_ERR_NOMEM, "out of memory repacking %s", t->name);
    mlc_q_interleave(s, t->cols, 0, rows, t->data, dst);
    t->data = dst;
    t->dtype = si->dtype;
    changed++;
  }
  for (int i = 0; changed && i < m->nlaunch; i++)
    mlc_launch_fill(m, m->launch[i].op, &m->launch[i]);
  return MLC_OK;
}

static mlc_status load_rank(const char *path, const mlc_model_options *opt, int rank, int n, mlc_model **out) {
  *out = NULL;
  mlc_model *m = calloc(1, sizeof *m);
  if (!m)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  if (opt)
    m->opt = *opt;
  m->tp_rank = rank;
  m->tp_n = n;
  mlc_status st = MLC_OK;
  /* a Hugging Face directory, an MLC package or a GGUF file (format/convert.c) */
  mlc_model_config full;
  st = mlc_model_source(path, m->opt.quant, &m->dir, &full, &m->st);
  if (st == MLC_OK)
    st = mlc_tp_config(&full, n, &m->cfg);
  if (st == MLC_OK) {
    m->max_n = m->opt.prefill_chunk > 0 ? m->opt.prefill_chunk : 256;
    int ctx = m->cfg.max_position_embeddings > 0 ? m->cfg.max_position_embeddings : 4096;
    if (ctx > 4096)
      ctx = 4096;
    m->max_seq_len = m->opt.max_seq_len > 0 ? m->opt.max_seq_len : ctx;
    m->max_pages = (m->max_seq_len + MLC_KV_PAGE - 1) / MLC_KV_PAGE;
    if (m->opt.generic_kernels && m->cfg.head_dim > MLC_GENERIC_MAX_HEAD_DIM)
      st = mlc_err(MLC_ERR_UNSUPPORTED, "head_dim %d exceeds the generic kernels' limit %d; run with a C compiler",
                   m->cfg.head_dim, MLC_GENERIC_MAX_HEAD_DIM);
  }
  mlc_device_opts dopt = {.threads = m->opt.threads};
  if (st == MLC_OK)
    st = mlc_device_open(m->opt.device, &dopt, &m->dev);
  if (st == MLC_OK)
    st = mlc_model_build_graph(m, !getenv("MLC_NO_FUSION"));
  if (st == MLC_OK && !m->opt.generic_kernels) {
    /* attention split over the positions where the device runs it in lanes (GPUs: one (token,
     * head) alone would keep one SM busy); $MLC_ATTN_SPLITS=S sets S on any device (1: none) */
    int S = mlc_tunables_for(m->dev->caps.lang)->attn_splits;
    const char *fs = getenv("MLC_ATTN_SPLITS");
    if (fs && atoi(fs) >= 1 && atoi(fs) <= 64)
      S = atoi(fs);
    mlc_pass_split_attention(&m->g, S);
  }
  if (st == MLC_OK)
    st = mlc_plan_memory(&m->g, m->max_n);
  if (st == MLC_OK) {
    m->launch = calloc((size_t)m->g.nops, sizeof *m->launch);
    if (!m->launch)
      st = mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  if (st == MLC_OK) {
    m->nlaunch = m->g.nops;
    for (int i = 0; i < m->g.nops; i++)
      mlc_launch_fill(m, i, &m->launch[i]);
  }
  if (st == MLC_OK)
    st = repack_weights(m);
  if (st == MLC_OK)
    st = bind_kernels(m);
  if (st == MLC_OK)
    st = alloc_runtime(m);
  if (st != MLC_OK) {
    mlc_model_free(m);
    return st;
  }
  describe(m);
  *out = m;
  return MLC_OK;
}

mlc_status mlc_model_load(const char *path, const mlc_model_options *opt, mlc_model **out) {
  *out = NULL;
  int n = opt && opt->tensor_parallel_shards > 1 ? opt->tensor_parallel_shards : 1;
  if (n > 64)
    return mlc_err(MLC_ERR_INVALID_ARG, "tensor_parallel_shards %d: at most 64", n);
  mlc_model *m;
  MLC_TRY(load_rank(path, opt, 0, n, &m));
  if (n == 1) {
    *out = m;
    return MLC_OK;
  }
  m->peers = calloc((size_t)n - 1, sizeof *m->peers);
  /* collectives stage at most the largest activation of a step through host memory */
  size_t elems = (size_t)m->max_n * (size_t)(m->cfg.vocab_size > m->cfg.hidden_size ? m->cfg.vocab_size : m->cfg.hidden_size);
  m->tp_scratch_elems = elems;
  m->tp_scratch = malloc(sizeof(float) * elems * 2);
  mlc_status st = m->peers && m->tp_scratch ? MLC_OK : mlc_err(MLC_ERR_NOMEM, "out of memory");
  for (int r = 1; r < n && st == MLC_OK; r++) {
    st = load_rank(path, opt, r, n, &m->peers[r - 1]);
    if (st == MLC_OK && m->peers[r - 1]->nlaunch != m->nlaunch)
      st = mlc_err(MLC_ERR_INTERNAL, "rank %d built %d launches, rank 0 %d", r, m->peers[r - 1]->nlaunch, m->nlaunch);
  }
  if (st != MLC_OK) {
    mlc_model_free(m);
    return st;
  }
  *out = m;
  return MLC_OK;
}

void mlc_model_free(mlc_model *m) {
  if (!m)
    return;
  for (int r = 1; m->peers && r < m->tp_n; r++)
    mlc_model_free(m->peers[r - 1]);
  free(m->peers);
  free(m->tp_scratch);
  mlc_device *d = m->dev;
  if (d) {
    d->vt->module_free(d, m->mod);
    d->vt->free(d, m->arena);
    d->vt->free(d, m->kv);
    for (int i = 0; i < MLC_IN_COUNT; i++)
      d->vt->free(d, m->in_mem[i]);
    for (int i = 0; m->tmem && i < m->g.nt; i++)
      d->vt->free(d, m->tmem[i]);
    mlc_device_close(d);
  }
  free(m->tmem);
  free(m->logits_host);
  free(m->tokens_host);
  free(m->free_pages);
  free(m->page_ref);
  free(m->slot_used);
  for (int i = 0; i < MLC_IN_COUNT; i++)
    free(m->in[i]);
  free(m->launch);
  mlc_graph_free(&m->g);
  mlc_owned_free(&m->owned);
  mlc_st_close(m->st);
  free(m->dir);
  free(m->describe);
  free(m);
}

int mlc_model_vocab_size(const mlc_model *m) { return m->cfg.vocab_size; }
const char *mlc_model_describe(const mlc_model *m) { return m->describe ? m->describe : ""; }

/* ---- sequences ---- */

int mlc_model_step_tokens(const mlc_model *m) { return m->max_n; }
int mlc_model_context(const mlc_model *m) { return m->max_seq_len; }
void mlc_model_kv_pages(const mlc_model *m, int *used, int *total) {
  *used = m->n_pages - m->n_free;
  *total = m->n_pages;
}

static mlc_status seq_alloc(mlc_model *m, mlc_seq **out) {
  *out = NULL;
  int slot = -1;
  for (int i = 0; i < m->max_seqs; i++)
    if (!m->slot_used[i]) {
      slot = i;
      break;
    }
  if (slot < 0)
    return mlc_err(MLC_ERR_LIMIT, "all %d sequence slots are in use (raise max_batch)", m->max_seqs);
  mlc_seq *s = calloc(1, sizeof *s);
  if (!s)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  s->m = m;
  s->slot = slot;
  m->slot_used[slot] = true;
  *out = s;
  return MLC_OK;
}

mlc_status mlc_seq_new(mlc_model *m, mlc_seq **out) { return seq_alloc(m, out); }

static int32_t *page_row(const mlc_seq *s) { return s->m->in[MLC_IN_PAGES] + (size_t)s->slot * s->m->max_pages; }

static void page_release(mlc_model *m, int p) {
  if (--m->page_ref[p] == 0)
    m->free_pages[m->n_free++] = p;
}

mlc_status mlc_seq_fork(mlc_seq *src, int len, mlc_seq **out) {
  *out = NULL;
  if (len < 0 || len > src->len)
    return mlc_err(MLC_ERR_INVALID_ARG, "cannot fork %d tokens of a sequence of %d", len, src->len);
  mlc_seq *s;
  MLC_TRY(seq_alloc(src->m, &s));
  int np = (len + MLC_KV_PAGE - 1) / MLC_KV_PAGE;
  const int32_t *from = page_row(src);
  int32_t *to = page_row(s);
  for (int i = 0; i < np; i++) {
    to[i] = from[i];
    src->m->page_ref[from[i]]++;
  }
  s->npages = np;
  s->len = len;
  *out = s;
  return MLC_OK;
}

mlc_status mlc_seq_truncate(mlc_seq *s, int len) {
  if (len < 0 || len > s->len)
    return mlc_err(MLC_ERR_INVALID_ARG, "cannot truncate a sequence of %d tokens to %d", s->len, len);
  int keep = (len + MLC_KV_PAGE - 1) / MLC_KV_PAGE;
  int32_t *row = page_row(s);
  while (s->npages > keep)
    page_release(s->m, row[--s->npages]);
  s->len = len;
  return MLC_OK;
}

void mlc_seq_free(mlc_seq *s) {
  if (!s)
    return;
  mlc_seq_truncate(s, 0);
  s->m->slot_used[s->slot] = false;
  free(s);
}

int mlc_seq_len(const mlc_seq *s) { return s->len; }

/* The device memory and byte offset of tensor ti in a step of n tokens and mm logit rows. */
mlc_dmem *mlc_tensor_ref(const mlc_model *m, int ti, int64_t n, int64_t mm, size_t *off) {
  const mlc_tensor *t = &m->g.t[ti];
  switch (t->kind) {
  case MLC_T_ACT: *off = t->offset; return m->arena;
  case MLC_T_WEIGHT:
  case MLC_T_CONST: *off = 0; return m->tmem[ti];
  case MLC_T_INPUT: *off = 0; return m->in_mem[t->input];
  case MLC_T_KV: *off = m->kv_layer_elems * (size_t)t->layer * sizeof(float); return m->kv;
  case MLC_T_VIEW: {
    mlc_dmem *mem = mlc_tensor_ref(m, t->view_src, n, mm, off);
    *off += (size_t)(mlc_sym_eval(t->view_off, n, mm) * (int64_t)mlc_dtype_size(t->dtype));
    return mem;
  }
  }
  *off = 0;
  return NULL;
}

/* Pages a sequence needs to grow by n tokens: new pages, plus one if its partly filled last
 * page is shared with another sequence (it is copied before being written). */
static int pages_needed(const mlc_seq *s, int n) {
  mlc_model *m = s->m;
  int need = (s->len + n + MLC_KV_PAGE - 1) / MLC_KV_PAGE - s->npages;
  if (s->len % MLC_KV_PAGE && m->page_ref[page_row(s)[s->npages - 1]] > 1)
    need++;
  return need;
}

static void prepare_pages(mlc_seq *s, int n) {
  mlc_model *m = s->m;
  int32_t *row = page_row(s);
  if (s->len % MLC_KV_PAGE && m->page_ref[row[s->npages - 1]] > 1) {
    /* copy on write: this sequence is about to append into a page it shares */
    int old = row[s->npages - 1], p = m->free_pages[--m->n_free];
    for (int rk = 0; rk < (m->tp_n > 1 ? m->tp_n : 1); rk++) {
      mlc_model *rm = rk ? m->peers[rk - 1] : m;
      size_t per = rm->kv_layer_elems / (size_t)rm->n_pages * sizeof(float), layer = rm->kv_layer_elems * sizeof(float);
      for (int l = 0; l < rm->cfg.num_layers; l++)
        rm->dev->vt->copy(rm->dev, rm->kv, layer * (size_t)l + per * (size_t)p, rm->kv, layer * (size_t)l + per * (size_t)old,
                          per);
    }
    m->page_ref[p] = 1;
    page_release(m, old);
    row[s->npages - 1] = p;
  }
  int need = (s->len + n + MLC_KV_PAGE - 1) / MLC_KV_PAGE;
  while (s->npages < need) {
    int p = m->free_pages[--m->n_free];
    m->page_ref[p] = 1;
    row[s->npages++] = p;
  }
}

/* A collective between the ranks of a tensor-parallel model, through host memory: all-reduce
 * sums the ranks' partial results in rank order; all-gather places rank r's columns at r*C/N.
 * (On GPUs this is where NCCL goes.) */
static mlc_status collective(mlc_model *m, int li, int64_t total, int64_t mm) {
  const mlc_launch *L = &m->launch[li];
  const mlc_tensor *y = &m->g.t[L->buf[0]], *x = &m->g.t[L->buf[1]];
  int nr = m->tp_n;
  size_t rows = (size_t)mlc_sym_eval(x->rows, total, mm), xc = (size_t)x->cols, yc = (size_t)y->cols;
  if (rows * yc > m->tp_scratch_elems)
    return mlc_err(MLC_ERR_INTERNAL, "collective of %zu x %zu exceeds the staging buffer", rows, yc);
  float *acc = m->tp_scratch, *part = m->tp_scratch + m->tp_scratch_elems;
  bool reduce = m->g.ops[L->op].kind == MLC_OP_ALLREDUCE;
  for (int rk = 0; rk < nr; rk++) {
    mlc_model *rm = rk ? m->peers[rk - 1] : m;
    size_t xo;
    mlc_dmem *xm = mlc_tensor_ref(rm, rm->launch[li].buf[1], total, mm, &xo);
    MLC_TRY(rm->dev->vt->read(rm->dev, xm, xo, rk && reduce ? part : (reduce ? acc : part), sizeof(float) * rows * xc));
    if (reduce && rk)
      for (size_t i = 0; i < rows * xc; i++)
        acc[i] += part[i];
    if (!reduce)
      for (size_t i = 0; i < rows; i++)
        memcpy(acc + i * yc + (size_t)rk * xc, part + i * xc, sizeof(float) * xc);
  }
  for (int rk = 0; rk < nr; rk++) {
    mlc_model *rm = rk ? m->peers[rk - 1] : m;
    size_t yo;
    mlc_dmem *ym = mlc_tensor_ref(rm, rm->launch[li].buf[0], total, mm, &yo);
    MLC_TRY(rm->dev->vt->write(rm->dev, ym, yo, acc, sizeof(float) * rows * yc));
  }
  return MLC_OK;
}

mlc_status mlc_batch_forward(mlc_model *m, const mlc_batch_item *items, int n_items) {
  int total = 0, mm = 0, pages = 0;
  for (int i = 0; i < n_items; i++) {
    const mlc_batch_item *it = &items[i];
    if (!it->seq || it->seq->m != m || it->n <= 0 || it->n_logits < 0 || it->n_logits > it->n ||
        (it->n_logits && !it->logits && !it->sample))
      return mlc_err(MLC_ERR_INVALID_ARG, "batch item %d: needs a sequence of this model, n > 0 and 0 <= n_logits <= n", i);
    if (it->sample && (it->n_logits != 1 || !it->token))
      return mlc_err(MLC_ERR_INVALID_ARG, "batch item %d: sampling on the device takes n_logits = 1 and a token", i);
    for (int j = 0; j < n_items; j++)
      if (j != i && items[j].seq == it->seq)
        return mlc_err(MLC_ERR_INVALID_ARG, "batch items %d and %d are the same sequence", i, j);
    for (int j = 0; j < it->n; j++)
      if (it->ids[j] < 0 || it->ids[j] >= m->cfg.vocab_size)
        return mlc_err(MLC_ERR_INVALID_ARG, "token id %d at position %d is outside the vocabulary (0..%d)", it->ids[j], j,
                       m->cfg.vocab_size - 1);
    if (it->seq->len + it->n > m->max_seq_len)
      return mlc_err(MLC_ERR_LIMIT, "%d tokens exceed the context window of %d (already %d in the sequence)", it->n,
                     m->max_seq_len, it->seq->len);
    total += it->n;
    mm += it->n_logits;
    pages += pages_needed(it->seq, it->n);
  }
  if (total == 0)
    return mlc_err(MLC_ERR_INVALID_ARG, "no tokens to process");
  if (total > m->max_n)
    return mlc_err(MLC_ERR_LIMIT, "%d tokens in one step exceed the step size %d", total, m->max_n);
  if (pages > m->n_free)
    return mlc_err(MLC_ERR_LIMIT, "KV cache full: %d more pages needed, %d free", pages, m->n_free);
  int t = 0, r = 0;
  bool sampling = false, want_logits = false; /* device sampling: MLC_OP_SAMPLE runs, token ids come back */
  for (int i = 0; i < n_items; i++) {
    sampling |= items[i].sample != NULL;
    want_logits |= items[i].n_logits > 0 && items[i].logits != NULL;
  }
  for (int i = 0; i < n_items; i++) {
    const mlc_batch_item *it = &items[i];
    prepare_pages(it->seq, it->n);
    for (int j = 0; j < it->n; j++, t++) {
      m->in[MLC_IN_IDS][t] = it->ids[j];
      m->in[MLC_IN_POS][t] = it->seq->len + j;
      m->in[MLC_IN_SEQ][t] = it->seq->slot;
      if (j >= it->n - it->n_logits) {
        if (sampling) { /* the row's parameters (rows without: greedy, unread) */
          const mlc_sample_params *sp = it->sample;
          float row[MLC_SAMPLE_SLOTS] = {0};
          if (sp) {
            row[MLC_SAMPLE_TEMP] = sp->temperature;
            row[MLC_SAMPLE_TOP_P] = sp->top_p;
            row[MLC_SAMPLE_TOP_K] = (float)sp->top_k;
            row[MLC_SAMPLE_MIN_P] = sp->min_p;
            row[MLC_SAMPLE_U] = sp->uniform;
          }
          memcpy(m->in[MLC_IN_SAMPLE] + (size_t)r * MLC_SAMPLE_SLOTS, row, sizeof row);
        }
        m->in[MLC_IN_ROWS][r++] = t;
      }
    }
  }
  mlc_device *d = m->dev;
  mlc_status st = MLC_OK;
  int nr = m->tp_n > 1 ? m->tp_n : 1;
  for (int rk = 0; rk < nr && st == MLC_OK; rk++) {
    mlc_model *rm = rk ? m->peers[rk - 1] : m;
    for (int i = 0; i < MLC_IN_COUNT && st == MLC_OK; i++) {
      size_t bytes = sizeof(int32_t) * (i == MLC_IN_PAGES    ? (size_t)m->max_seqs * (size_t)m->max_pages
                                        : i == MLC_IN_ROWS   ? (size_t)mm
                                        : i == MLC_IN_SAMPLE ? (sampling ? (size_t)mm * MLC_SAMPLE_SLOTS : 0)
                                                             : (size_t)total);
      if (bytes)
        st = rm->dev->vt->write(rm->dev, rm->in_mem[i], 0, m->in[i], bytes);
    }
  }
  mlc_dmem *mem[KIR_MAX_BUFS];
  size_t off[KIR_MAX_BUFS];
  for (int rk = 0; rk < nr && st == MLC_OK; rk++) {
    mlc_model *rm = rk ? m->peers[rk - 1] : m;
    if (rm->dev->vt->step_begin)
      rm->dev->vt->step_begin(rm->dev);
  }
  for (int li = 0; li < m->nlaunch && st == MLC_OK; li++) {
    if (!sampling && m->g.ops[m->launch[li].op].kind == MLC_OP_SAMPLE)
      continue;
    if (m->launch[li].kidx < 0) {
      st = collective(m, li, total, mm);
      continue;
    }
    for (int rk = 0; rk < nr && st == MLC_OK; rk++) {
      mlc_model *rm = rk ? m->peers[rk - 1] : m;
      mlc_launch *L = &rm->launch[li];
      for (int b = 0; b < L->nbuf; b++)
        mem[b] = mlc_tensor_ref(rm, L->buf[b], total, mm, &off[b]);
      for (int j = 0; j < 4; j++)
        L->ip[MLC_KDYN + j] = mlc_sym_eval(L->dyn[j], total, mm);
      st = rm->dev->vt->launch(rm->dev, rm->mod, L->kidx, mem, off, L->nbuf, L->ip, L->fp, mlc_sym_eval(L->grid, total, mm));
    }
  }
  for (int rk = 0; rk < nr; rk++) {
    mlc_model *rm = rk ? m->peers[rk - 1] : m;
    if (rm->dev->vt->step_end) {
      mlc_status se = rm->dev->vt->step_end(rm->dev);
      if (st == MLC_OK)
        st = se;
    }
  }
  size_t loff, toff;
  mlc_dmem *lmem = mlc_tensor_ref(m, m->g.logits, total, mm, &loff);
  if (st == MLC_OK && mm > 0 && want_logits)
    st = d->vt->read(d, lmem, loff, m->logits_host, sizeof(float) * (size_t)mm * m->cfg.vocab_size);
  mlc_dmem *tmem = mlc_tensor_ref(m, m->g.tokens, total, mm, &toff);
  if (st == MLC_OK && mm > 0 && sampling) /* the token ids only: 4 bytes a row */
    st = d->vt->read(d, tmem, toff, m->tokens_host, sizeof(int32_t) * (size_t)mm);
  if (st != MLC_OK)
    return mlc_err_context(st, "forward step on %s", d->vt->describe(d));
  const float *lg = m->logits_host;
  size_t V = (size_t)m->cfg.vocab_size;
  r = 0;
  for (int i = 0; i < n_items; i++) {
    const mlc_batch_item *it = &items[i];
    if (it->n_logits && it->logits)
      memcpy(it->logits, lg + (size_t)r * V, sizeof(float) * (size_t)it->n_logits * V);
    if (it->sample)
      *it->token = m->tokens_host[r];
    r += it->n_logits;
    it->seq->len += it->n;
  }
  return MLC_OK;
}

mlc_status mlc_seq_forward_sample(mlc_seq *s, const int32_t *ids, int n, const mlc_sample_params *sp, int32_t *token) {
  mlc_model *m = s->m;
  if (n <= 0 || !sp || !token)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_seq_forward_sample: needs tokens, parameters and a token to write");
  if (s->len + n > m->max_seq_len)
    return mlc_err(MLC_ERR_LIMIT, "%d tokens exceed the context window of %d (already %d in the sequence)", n,
                   m->max_seq_len, s->len);
  for (int c0 = 0; c0 < n; c0 += m->max_n) { /* the prompt in steps; the last one samples */
    int cn = n - c0 < m->max_n ? n - c0 : m->max_n;
    bool last = c0 + cn == n;
    mlc_batch_item it = {.seq = s, .ids = ids + c0, .n = cn, .n_logits = last, .sample = last ? sp : NULL,
                         .token = last ? token : NULL};
    MLC_TRY(mlc_batch_forward(m, &it, 1));
  }
  return MLC_OK;
}

mlc_status mlc_seq_forward(mlc_seq *s, const int32_t *ids, int n, float *logits, int n_logits) {
  mlc_model *m = s->m;
  if (n <= 0)
    return mlc_err(MLC_ERR_INVALID_ARG, "no tokens to process");
  if (logits && (n_logits < 1 || n_logits > n))
    return mlc_err(MLC_ERR_INVALID_ARG, "n_logits %d must be in 1..%d", n_logits, n);
  if (s->len + n > m->max_seq_len)
    return mlc_err(MLC_ERR_LIMIT, "%d tokens exceed the context window of %d (already %d in the sequence)", n,
                   m->max_seq_len, s->len);
  int want_from = logits ? n - n_logits : n;
  size_t V = (size_t)m->cfg.vocab_size;
  for (int c0 = 0; c0 < n; c0 += m->max_n) {
    int cn = n - c0 < m->max_n ? n - c0 : m->max_n;
    int lo = want_from > c0 ? want_from : c0;
    int mm = c0 + cn > lo ? c0 + cn - lo : 0;
    mlc_batch_item it = {.seq = s, .ids = ids + c0, .n = cn, .n_logits = mm,
                         .logits = mm ? logits + (size_t)(lo - want_from) * V : NULL};
    MLC_TRY(mlc_batch_forward(m, &it, 1));
  }
  return MLC_OK;
}
