/* config.c: Hugging Face config.json into mlc_model_config.
 *
 * Reads both the transformers-5 form (rope_parameters) and the older one (top-level rope_theta,
 * rope_scaling, partial_rotary_factor). Defaults for absent fields follow transformers' config
 * classes per model_type; a field present in the file always wins. Every type error names the
 * file, the field and the offending value. */
#include "format/format.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum family {
  FAM_LLAMA,
  FAM_MISTRAL,
  FAM_QWEN2,
  FAM_QWEN3,
  FAM_PHI3,
  FAM_GEMMA,
  FAM_GEMMA2,
  FAM_MIXTRAL,
  FAM_QWEN3_MOE
} family;

static const struct {
  const char *name;
  family fam;
  bool tie;            /* tie_word_embeddings default */
  float eps;           /* rms_norm_eps default */
  int max_pos;         /* max_position_embeddings default */
  float theta;         /* rope_theta default */
} g_families[] = {
    {"llama", FAM_LLAMA, false, 1e-6f, 2048, 10000.0f},
    {"mistral", FAM_MISTRAL, false, 1e-6f, 4096 * 32, 10000.0f},
    {"qwen2", FAM_QWEN2, false, 1e-6f, 32768, 10000.0f},
    {"qwen3", FAM_QWEN3, false, 1e-6f, 32768, 10000.0f},
    {"phi3", FAM_PHI3, false, 1e-5f, 4096, 10000.0f},
    {"gemma", FAM_GEMMA, true, 1e-6f, 8192, 10000.0f},
    {"gemma2", FAM_GEMMA2, true, 1e-6f, 8192, 10000.0f},
    {"mixtral", FAM_MIXTRAL, false, 1e-5f, 4096 * 32, 1e6f},
    {"qwen3_moe", FAM_QWEN3_MOE, false, 1e-6f, 32768, 10000.0f},
};
#define N_FAMILIES (int)(sizeof g_families / sizeof g_families[0])

typedef struct cfg {
  const char *file;
} cfg;

static const cJSON *item(const cJSON *obj, const char *key) {
  return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

static mlc_status type_err(const cfg *c, const char *pfx, const char *key, const char *expected,
                           const cJSON *v) {
  char got[80];
  mlc_json_describe(v, got, sizeof got);
  return mlc_err(MLC_ERR_FORMAT, "%s: field '%s%s': expected %s, got %s", c->file, pfx, key,
                 expected, got);
}
static mlc_status missing(const cfg *c, const char *pfx, const char *key) {
  return mlc_err(MLC_ERR_FORMAT, "%s: missing field '%s%s'", c->file, pfx, key);
}
static mlc_status bad_value(const cfg *c, const char *pfx, const char *key, const char *why) {
  return mlc_err(MLC_ERR_FORMAT, "%s: field '%s%s': %s", c->file, pfx, key, why);
}

static bool as_int(const cJSON *v, int *out) {
  if (!cJSON_IsNumber(v))
    return false;
  double d = v->valuedouble;
  if (!(d >= INT_MIN && d <= INT_MAX) || d != floor(d))
    return false;
  *out = (int)d;
  return true;
}

/* An integer field: absent → def_absent, null → def_null (or an error if required). */
static mlc_status get_int(const cfg *c, const cJSON *obj, const char *pfx, const char *key,
                          bool required, int def_absent, int def_null, int *out) {
  const cJSON *v = item(obj, key);
  if (!v) {
    if (required)
      return missing(c, pfx, key);
    *out = def_absent;
    return MLC_OK;
  }
  if (cJSON_IsNull(v) && !required) {
    *out = def_null;
    return MLC_OK;
  }
  if (!as_int(v, out))
    return type_err(c, pfx, key, "an integer", v);
  return MLC_OK;
}
static mlc_status req_pos_int(const cfg *c, const cJSON *obj, const char *key, int *out) {
  MLC_TRY(get_int(c, obj, "", key, true, 0, 0, out));
  if (*out <= 0) {
    char why[64];
    snprintf(why, sizeof why, "must be positive, got %d", *out);
    return bad_value(c, "", key, why);
  }
  return MLC_OK;
}

/* A number field: absent → def_absent, null → def_null. */
static mlc_status get_num(const cfg *c, const cJSON *obj, const char *pfx, const char *key,
                          bool required, double def_absent, double def_null, double *out) {
  const cJSON *v = item(obj, key);
  if (!v) {
    if (required)
      return missing(c, pfx, key);
    *out = def_absent;
    return MLC_OK;
  }
  if (cJSON_IsNull(v) && !required) {
    *out = def_null;
    return MLC_OK;
  }
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
    return type_err(c, pfx, key, "a number", v);
  *out = v->valuedouble;
  return MLC_OK;
}
static mlc_status get_f(const cfg *c, const cJSON *obj, const char *pfx, const char *key,
                        bool required, double def_absent, double def_null, float *out) {
  double d;
  MLC_TRY(get_num(c, obj, pfx, key, required, def_absent, def_null, &d));
  *out = (float)d;
  return MLC_OK;
}

/* A boolean field: absent or null → def. */
static mlc_status get_bool(const cfg *c, const cJSON *obj, const char *key, bool def, bool *out) {
  const cJSON *v = item(obj, key);
  if (!v || cJSON_IsNull(v)) {
    *out = def;
    return MLC_OK;
  }
  if (!cJSON_IsBool(v))
    return type_err(c, "", key, "a boolean", v);
  *out = cJSON_IsTrue(v);
  return MLC_OK;
}

/* A string field: absent or null → NULL. */
static mlc_status get_str(const cfg *c, const cJSON *obj, const char *pfx, const char *key,
                          const char **out) {
  const cJSON *v = item(obj, key);
  *out = NULL;
  if (!v || cJSON_IsNull(v))
    return MLC_OK;
  if (!cJSON_IsString(v) || !v->valuestring)
    return type_err(c, pfx, key, "a string", v);
  *out = v->valuestring;
  return MLC_OK;
}

static mlc_status parse_act(const cfg *c, const char *key, const char *s, mlc_act *out) {
  if (!strcmp(s, "silu") || !strcmp(s, "swish"))
    *out = MLC_ACT_SILU;
  else if (!strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_new") || !strcmp(s, "gelu_fast"))
    *out = MLC_ACT_GELU_TANH;
  else if (!strcmp(s, "gelu"))
    *out = MLC_ACT_GELU;
  else
    return mlc_err(MLC_ERR_UNSUPPORTED,
                   "%s: field '%s': activation \"%s\" is not supported (supported: silu, "
                   "gelu_pytorch_tanh, gelu)",
                   c->file, key, s);
  return MLC_OK;
}

/* layer_types: a list of num_layers strings; sets sliding[i] for "sliding_attention". */
static mlc_status parse_layer_types(const cfg *c, const cJSON *root, int nl, bool *sliding,
                                    bool *present) {
  const cJSON *lt = item(root, "layer_types");
  *present = false;
  if (!lt || cJSON_IsNull(lt))
    return MLC_OK;
  if (!cJSON_IsArray(lt))
    return type_err(c, "", "layer_types", "a list of strings", lt);
  int n = cJSON_GetArraySize(lt);
  if (n != nl) {
    char why[96];
    snprintf(why, sizeof why, "has %d entries but num_hidden_layers is %d", n, nl);
    return bad_value(c, "", "layer_types", why);
  }
  int i = 0;
  for (const cJSON *x = lt->child; x; x = x->next, i++) {
    if (!cJSON_IsString(x) || !x->valuestring)
      return type_err(c, "", "layer_types", "a list of strings", x);
    if (!strcmp(x->valuestring, "sliding_attention"))
      sliding[i] = true;
    else if (!strcmp(x->valuestring, "full_attention"))
      sliding[i] = false;
    else
      return mlc_err(MLC_ERR_UNSUPPORTED,
                     "%s: field 'layer_types': layer %d: attention type \"%s\" is not supported",
                     c->file, i, x->valuestring);
  }
  *present = true;
  return MLC_OK;
}

/* A list of floats (longrope factors). */
static mlc_status get_factor_list(const cfg *c, const cJSON *obj, const char *pfx,
                                  const char *key, int want, float *out) {
  const cJSON *v = item(obj, key);
  if (!v)
    return missing(c, pfx, key);
  if (!cJSON_IsArray(v))
    return type_err(c, pfx, key, "a list of numbers", v);
  int n = cJSON_GetArraySize(v);
  if (n != want) {
    char why[96];
    snprintf(why, sizeof why, "has %d entries, expected %d (rotary dimensions / 2)", n, want);
    return bad_value(c, pfx, key, why);
  }
  int i = 0;
  for (const cJSON *x = v->child; x; x = x->next, i++) {
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
      return type_err(c, pfx, key, "a list of numbers", x);
    out[i] = (float)x->valuedouble;
  }
  return MLC_OK;
}

/* Rope: rope_parameters (transformers 5) or rope_theta + rope_scaling (older). */
static mlc_status parse_rope(const cfg *c, const cJSON *root, float def_theta,
                             mlc_model_config *m) {
  const cJSON *rp = item(root, "rope_parameters");
  const char *pfx;
  const cJSON *params; /* where type/factor/... live; may be NULL (default rope) */
  if (rp && !cJSON_IsNull(rp)) {
    if (!cJSON_IsObject(rp))
      return type_err(c, "", "rope_parameters", "an object", rp);
    if (!item(rp, "rope_type") && !item(rp, "type") && !item(rp, "rope_theta")) {
      for (const cJSON *x = rp->child; x; x = x->next)
        if (cJSON_IsObject(x))
          return mlc_err(MLC_ERR_UNSUPPORTED,
                         "%s: field 'rope_parameters': per-layer-type rope parameters ('%s', "
                         "...) are not supported",
                         c->file, x->string);
    }
    params = rp;
    pfx = "rope_parameters.";
  } else {
    const cJSON *rs = item(root, "rope_scaling");
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsObject(rs))
      return type_err(c, "", "rope_scaling", "an object or null", rs);
    params = (rs && cJSON_IsObject(rs)) ? rs : NULL;
    pfx = "rope_scaling.";
  }

  /* theta: in rope_parameters, else top level, else the model_type default */
  double theta;
  if (params == rp && rp && item(rp, "rope_theta"))
    MLC_TRY(get_num(c, rp, pfx, "rope_theta", false, def_theta, def_theta, &theta));
  else
    MLC_TRY(get_num(c, root, "", "rope_theta", false, def_theta, def_theta, &theta));
  if (!(theta > 0))
    return bad_value(c, params == rp && rp && item(rp, "rope_theta") ? pfx : "", "rope_theta",
                     "must be positive");
  m->rope_theta = (float)theta;

  /* partial_rotary_factor: in rope_parameters, else top level, else 1 */
  const char *prf_pfx = "";
  const cJSON *prf_obj = root;
  if (params && item(params, "partial_rotary_factor")) {
    prf_obj = params;
    prf_pfx = pfx;
  }
  MLC_TRY(get_f(c, prf_obj, prf_pfx, "partial_rotary_factor", false, 1.0, 1.0,
                &m->partial_rotary_factor));
  if (!(m->partial_rotary_factor > 0 && m->partial_rotary_factor <= 1))
    return bad_value(c, prf_pfx, "partial_rotary_factor", "must be in (0, 1]");
  int rot = (int)(m->head_dim * m->partial_rotary_factor);
  if (rot <= 0 || rot % 2) {
    char why[96];
    snprintf(why, sizeof why, "gives %d rotary dimensions of head_dim %d (must be even)", rot,
             m->head_dim);
    return bad_value(c, prf_pfx, "partial_rotary_factor", why);
  }

  const char *type = NULL, *tkey = "rope_type";
  if (params) {
    MLC_TRY(get_str(c, params, pfx, "rope_type", &type));
    if (!type) {
      tkey = "type";
      MLC_TRY(get_str(c, params, pfx, "type", &type));
    }
  }
  if (!type)
    type = "default";

  int top_orig = 0;
  MLC_TRY(get_int(c, root, "", "original_max_position_embeddings", false, 0, 0, &top_orig));
  m->rope_factor = 1.0f;
  m->rope_original_max_pos = top_orig > 0 ? top_orig : m->max_position_embeddings;

  if (!strcmp(type, "default")) {
    m->rope_type = MLC_ROPE_DEFAULT;
    return MLC_OK;
  }
  bool need_factor = true;
  if (!strcmp(type, "linear"))
    m->rope_type = MLC_ROPE_LINEAR;
  else if (!strcmp(type, "llama3"))
    m->rope_type = MLC_ROPE_LLAMA3;
  else if (!strcmp(type, "dynamic"))
    m->rope_type = MLC_ROPE_DYNAMIC;
  else if (!strcmp(type, "yarn"))
    m->rope_type = MLC_ROPE_YARN;
  else if (!strcmp(type, "longrope") || !strcmp(type, "su")) {
    m->rope_type = MLC_ROPE_LONGROPE;
    need_factor = false;
  } else
    return mlc_err(MLC_ERR_UNSUPPORTED,
                   "%s: field '%s%s': rope type \"%s\" is not supported (supported: default, "
                   "linear, llama3, dynamic, yarn, longrope)",
                   c->file, pfx, tkey, type);

  MLC_TRY(get_f(c, params, pfx, "factor", need_factor, 1.0, 1.0, &m->rope_factor));
  if (!(m->rope_factor > 0))
    return bad_value(c, pfx, "factor", "must be positive");
  int orig;
  bool need_orig = m->rope_type == MLC_ROPE_LLAMA3;
  MLC_TRY(get_int(c, params, pfx, "original_max_position_embeddings", need_orig,
                  m->rope_original_max_pos, m->rope_original_max_pos, &orig));
  if (orig <= 0)
    return bad_value(c, pfx, "original_max_position_embeddings", "must be positive");
  m->rope_original_max_pos = orig;

  switch (m->rope_type) {
  case MLC_ROPE_LLAMA3:
    MLC_TRY(get_f(c, params, pfx, "low_freq_factor", true, 0, 0, &m->rope_low_freq_factor));
    MLC_TRY(get_f(c, params, pfx, "high_freq_factor", true, 0, 0, &m->rope_high_freq_factor));
    if (!(m->rope_low_freq_factor > 0) || !(m->rope_high_freq_factor > m->rope_low_freq_factor))
      return bad_value(c, pfx, "high_freq_factor",
                       "must exceed low_freq_factor, and both must be positive");
    break;
  case MLC_ROPE_YARN: {
    MLC_TRY(get_f(c, params, pfx, "beta_fast", false, 32.0, 32.0, &m->yarn_beta_fast));
    MLC_TRY(get_f(c, params, pfx, "beta_slow", false, 1.0, 1.0, &m->yarn_beta_slow));
    double def = m->rope_factor <= 1 ? 1.0 : 0.1 * log(m->rope_factor) + 1.0;
    MLC_TRY(get_f(c, params, pfx, "attention_factor", false, def, def, &m->yarn_attn_factor));
    break;
  }
  case MLC_ROPE_LONGROPE: {
    int n = rot / 2;
    if (n > (int)(sizeof m->rope_short_factor / sizeof m->rope_short_factor[0]))
      return mlc_err(MLC_ERR_UNSUPPORTED, "%s: longrope with %d rotary dimensions is too large",
                     c->file, rot);
    m->rope_n_factors = n;
    MLC_TRY(get_factor_list(c, params, pfx, "short_factor", n, m->rope_short_factor));
    MLC_TRY(get_factor_list(c, params, pfx, "long_factor", n, m->rope_long_factor));
    /* transformers: with a top-level original_max_position_embeddings (phi3) the scaling
     * factor is max_position_embeddings / original_max_position_embeddings. */
    if (top_orig > 0)
      m->rope_factor = (float)m->max_position_embeddings / (float)top_orig;
    double f = m->rope_factor;
    double def = f <= 1 ? 1.0 : sqrt(1 + log(f) / log((double)m->rope_original_max_pos));
    MLC_TRY(get_f(c, params, pfx, "attention_factor", false, def, def, &m->yarn_attn_factor));
    break;
  }
  default:
    break;
  }
  return MLC_OK;
}

static mlc_status parse_eos(const cfg *c, const cJSON *root, mlc_model_config *m) {
  const cJSON *v = item(root, "eos_token_id");
  m->eos_token_id = -1;
  m->n_eos = 0;
  if (!v || cJSON_IsNull(v))
    return MLC_OK;
  if (cJSON_IsNumber(v)) {
    int id;
    if (!as_int(v, &id) || id < 0)
      return type_err(c, "", "eos_token_id", "a non-negative integer or a list of them", v);
    m->eos_ids[m->n_eos++] = id;
  } else if (cJSON_IsArray(v)) {
    for (const cJSON *x = v->child; x; x = x->next) {
      int id;
      if (!as_int(x, &id) || id < 0)
        return type_err(c, "", "eos_token_id", "a non-negative integer or a list of them", x);
      if (m->n_eos == (int)(sizeof m->eos_ids / sizeof m->eos_ids[0]))
        return mlc_err(MLC_ERR_UNSUPPORTED, "%s: field 'eos_token_id': more than %d ids",
                       c->file, (int)(sizeof m->eos_ids / sizeof m->eos_ids[0]));
      m->eos_ids[m->n_eos++] = id;
    }
  } else {
    return type_err(c, "", "eos_token_id", "a non-negative integer or a list of them", v);
  }
  if (m->n_eos)
    m->eos_token_id = m->eos_ids[0];
  return MLC_OK;
}

/* cJSON finds the first of duplicated keys, Python's json the last: refuse duplicates. */
static mlc_status check_dups(const cfg *c, const cJSON *obj, const char *pfx) {
  if (!cJSON_IsObject(obj))
    return MLC_OK;
  for (const cJSON *a = obj->child; a; a = a->next)
    for (const cJSON *b = a->next; b; b = b->next)
      if (a->string && b->string && !strcmp(a->string, b->string))
        return mlc_err(MLC_ERR_FORMAT, "%s: field '%s%s' appears twice", c->file, pfx, a->string);
  return MLC_OK;
}

static mlc_status parse_config(const cfg *c, const cJSON *root, mlc_model_config *m) {
  if (!cJSON_IsObject(root)) {
    char got[80];
    mlc_json_describe(root, got, sizeof got);
    return mlc_err(MLC_ERR_FORMAT, "%s: expected a JSON object, got %s", c->file, got);
  }
  MLC_TRY(check_dups(c, root, ""));
  MLC_TRY(check_dups(c, item(root, "rope_parameters"), "rope_parameters."));
  MLC_TRY(check_dups(c, item(root, "rope_scaling"), "rope_scaling."));
  const char *mt;
  MLC_TRY(get_str(c, root, "", "model_type", &mt));
  if (!mt)
    return missing(c, "", "model_type");
  int fi = -1;
  for (int i = 0; i < N_FAMILIES; i++)
    if (!strcmp(mt, g_families[i].name))
      fi = i;
  if (fi < 0)
    return mlc_err(MLC_ERR_UNSUPPORTED,
                   "%s: model_type '%.60s' is not supported (supported: llama, mistral, qwen2, "
                   "qwen3, phi3, gemma, gemma2, mixtral, qwen3_moe)",
                   c->file, mt);
  family fam = g_families[fi].fam;
  snprintf(m->arch, sizeof m->arch, "%s", mt);
  bool gemma = fam == FAM_GEMMA || fam == FAM_GEMMA2;

  /* sizes */
  MLC_TRY(req_pos_int(c, root, "vocab_size", &m->vocab_size));
  MLC_TRY(req_pos_int(c, root, "hidden_size", &m->hidden_size));
  MLC_TRY(req_pos_int(c, root, "intermediate_size", &m->intermediate_size));
  MLC_TRY(req_pos_int(c, root, "num_hidden_layers", &m->num_layers));
  MLC_TRY(req_pos_int(c, root, "num_attention_heads", &m->num_heads));
  if (m->num_layers > 256)
    return mlc_err(MLC_ERR_UNSUPPORTED,
                   "%s: field 'num_hidden_layers': %d layers exceed the supported maximum of 256",
                   c->file, m->num_layers);
  MLC_TRY(get_int(c, root, "", "num_key_value_heads", false, m->num_heads, m->num_heads,
                  &m->num_kv_heads));
  if (m->num_kv_heads <= 0)
    return bad_value(c, "", "num_key_value_heads", "must be positive");
  if (m->num_heads % m->num_kv_heads) {
    char why[128];
    snprintf(why, sizeof why, "%d does not divide num_attention_heads %d", m->num_kv_heads,
             m->num_heads);
    return bad_value(c, "", "num_key_value_heads", why);
  }
  /* head_dim: explicit, else transformers' default for the type (gemma 256, qwen3 128), else
   * hidden / heads. null means hidden / heads. */
  int def_hd = 0;
  if (gemma)
    def_hd = 256;
  else if (fam == FAM_QWEN3 || fam == FAM_QWEN3_MOE)
    def_hd = 128;
  const cJSON *hd = item(root, "head_dim");
  bool hd_given = hd && !cJSON_IsNull(hd);
  MLC_TRY(get_int(c, root, "", "head_dim", false, def_hd, 0, &m->head_dim));
  if (hd_given && m->head_dim <= 0)
    return bad_value(c, "", "head_dim", "must be positive");
  if (m->head_dim == 0) {
    if (m->hidden_size % m->num_heads) {
      char why[128];
      snprintf(why, sizeof why, "%d is not divisible by num_attention_heads %d (and no head_dim)",
               m->hidden_size, m->num_heads);
      return bad_value(c, "", "hidden_size", why);
    }
    m->head_dim = m->hidden_size / m->num_heads;
  }
  MLC_TRY(get_int(c, root, "", "max_position_embeddings", false, g_families[fi].max_pos,
                  g_families[fi].max_pos, &m->max_position_embeddings));
  if (m->max_position_embeddings <= 0)
    return bad_value(c, "", "max_position_embeddings", "must be positive");
  MLC_TRY(get_f(c, root, "", "rms_norm_eps", false, g_families[fi].eps, g_families[fi].eps,
                &m->rms_norm_eps));
  if (!(m->rms_norm_eps > 0))
    return bad_value(c, "", "rms_norm_eps", "must be positive");
  MLC_TRY(get_bool(c, root, "tie_word_embeddings", g_families[fi].tie, &m->tie_word_embeddings));

  /* biases */
  bool ab = false;
  MLC_TRY(get_bool(c, root, "attention_bias", false, &ab));
  switch (fam) {
  case FAM_QWEN2:
    m->attention_bias = true; /* q/k/v always, o never */
    m->o_bias = false;
    break;
  case FAM_LLAMA:
  case FAM_QWEN3:
  case FAM_QWEN3_MOE:
  case FAM_GEMMA:
  case FAM_GEMMA2:
    m->attention_bias = m->o_bias = ab; /* q, k, v and o */
    break;
  default:
    m->attention_bias = m->o_bias = false; /* mistral, mixtral, phi3: no attention biases */
    break;
  }
  if (fam == FAM_LLAMA)
    MLC_TRY(get_bool(c, root, "mlp_bias", false, &m->mlp_bias));

  /* activation */
  const char *act = NULL, *act_key = "hidden_act";
  if (gemma) {
    act_key = "hidden_activation";
    MLC_TRY(get_str(c, root, "", "hidden_activation", &act));
    if (!act)
      act = "gelu_pytorch_tanh";
  } else {
    MLC_TRY(get_str(c, root, "", "hidden_act", &act));
    if (!act)
      act = "silu";
  }
  MLC_TRY(parse_act(c, act_key, act, &m->act));

  /* special tokens */
  MLC_TRY(get_int(c, root, "", "bos_token_id", false, -1, -1, &m->bos_token_id));
  if (m->bos_token_id < -1)
    return bad_value(c, "", "bos_token_id", "must be a non-negative integer or null");
  MLC_TRY(parse_eos(c, root, m));

  MLC_TRY(parse_rope(c, root, g_families[fi].theta, m));

  /* sliding window */
  int nl = m->num_layers;
  bool lt_present = false;
  switch (fam) {
  case FAM_MISTRAL:
  case FAM_MIXTRAL:
  case FAM_PHI3:
    MLC_TRY(get_int(c, root, "", "sliding_window", false, fam == FAM_MISTRAL ? 4096 : 0, 0,
                    &m->sliding_window));
    for (int i = 0; i < nl; i++)
      m->layer_sliding[i] = true;
    break;
  case FAM_QWEN2:
  case FAM_QWEN3:
  case FAM_QWEN3_MOE: {
    bool use = false;
    MLC_TRY(get_bool(c, root, "use_sliding_window", false, &use));
    int mwl;
    MLC_TRY(get_int(c, root, "", "max_window_layers", false, 28, 28, &mwl));
    if (use) {
      MLC_TRY(get_int(c, root, "", "sliding_window", false, 4096, 0, &m->sliding_window));
      MLC_TRY(parse_layer_types(c, root, nl, m->layer_sliding, &lt_present));
      if (!lt_present)
        for (int i = 0; i < nl; i++)
          m->layer_sliding[i] = i >= mwl;
    }
    break;
  }
  case FAM_GEMMA:
  case FAM_GEMMA2:
    MLC_TRY(get_int(c, root, "", "sliding_window", false, fam == FAM_GEMMA2 ? 4096 : 0, 0,
                    &m->sliding_window));
    MLC_TRY(parse_layer_types(c, root, nl, m->layer_sliding, &lt_present));
    if (!lt_present && fam == FAM_GEMMA2)
      for (int i = 0; i < nl; i++)
        m->layer_sliding[i] = i % 2 == 0;
    {
      bool g2 = fam == FAM_GEMMA2;
      MLC_TRY(get_f(c, root, "", "attn_logit_softcapping", false, g2 ? 50.0 : 0, 0,
                    &m->attn_softcap));
      MLC_TRY(get_f(c, root, "", "final_logit_softcapping", false, g2 ? 30.0 : 0, 0,
                    &m->final_softcap));
      MLC_TRY(get_f(c, root, "", "query_pre_attn_scalar", false, g2 ? 256.0 : 0, 0,
                    &m->query_pre_attn_scalar));
      if (m->attn_softcap < 0 || m->final_softcap < 0 || m->query_pre_attn_scalar < 0)
        return mlc_err(MLC_ERR_FORMAT,
                       "%s: fields 'attn_logit_softcapping', 'final_logit_softcapping' and "
                       "'query_pre_attn_scalar' must not be negative",
                       c->file);
    }
    break;
  case FAM_LLAMA:
    break;
  }
  if (m->sliding_window < 0)
    return bad_value(c, "", "sliding_window", "must not be negative");
  if (m->sliding_window == 0)
    memset(m->layer_sliding, 0, sizeof m->layer_sliding);

  /* MoE */
  if (fam == FAM_MIXTRAL) {
    MLC_TRY(get_int(c, root, "", "num_local_experts", false, 8, 8, &m->num_experts));
    MLC_TRY(get_int(c, root, "", "num_experts_per_tok", false, 2, 2, &m->num_experts_per_tok));
    m->moe_intermediate_size = m->intermediate_size;
    m->norm_topk_prob = true; /* top-k softmax, renormalised */
    m->decoder_sparse_step = 1;
  } else if (fam == FAM_QWEN3_MOE) {
    const char *ek = item(root, "num_experts") ? "num_experts" : "num_local_experts";
    MLC_TRY(get_int(c, root, "", ek, false, 128, 0, &m->num_experts));
    MLC_TRY(get_int(c, root, "", "num_experts_per_tok", false, 8, 8, &m->num_experts_per_tok));
    MLC_TRY(get_int(c, root, "", "moe_intermediate_size", false, 768, 768,
                    &m->moe_intermediate_size));
    MLC_TRY(get_bool(c, root, "norm_topk_prob", false, &m->norm_topk_prob));
    MLC_TRY(get_int(c, root, "", "decoder_sparse_step", false, 1, 1, &m->decoder_sparse_step));
    if (m->decoder_sparse_step <= 0)
      return bad_value(c, "", "decoder_sparse_step", "must be positive");
    if (m->num_experts < 0)
      return bad_value(c, "", ek, "must not be negative");
  }
  if (m->num_experts > 0) {
    if (m->num_experts_per_tok <= 0 || m->num_experts_per_tok > m->num_experts) {
      char why[96];
      snprintf(why, sizeof why, "must be in 1..%d (the number of experts), got %d",
               m->num_experts, m->num_experts_per_tok);
      return bad_value(c, "", "num_experts_per_tok", why);
    }
    if (m->moe_intermediate_size <= 0)
      return bad_value(c, "", "moe_intermediate_size", "must be positive");
    for (int i = 0; i < nl; i++)
      m->layer_dense[i] = (i + 1) % m->decoder_sparse_step != 0;
    const cJSON *mol = item(root, "mlp_only_layers");
    if (fam == FAM_QWEN3_MOE && mol && !cJSON_IsNull(mol)) {
      if (!cJSON_IsArray(mol))
        return type_err(c, "", "mlp_only_layers", "a list of layer indices", mol);
      for (const cJSON *x = mol->child; x; x = x->next) {
        int li;
        if (!as_int(x, &li))
          return type_err(c, "", "mlp_only_layers", "a list of layer indices", x);
        if (li < 0 || li >= nl) {
          char why[96];
          snprintf(why, sizeof why, "layer %d is out of range (0..%d)", li, nl - 1);
          return bad_value(c, "", "mlp_only_layers", why);
        }
        m->layer_dense[li] = true;
      }
    }
  } else {
    m->num_experts = m->num_experts_per_tok = m->moe_intermediate_size = 0;
    m->norm_topk_prob = false;
    m->decoder_sparse_step = 0;
    for (int i = 0; i < nl; i++)
      m->layer_dense[i] = true;
  }
  return MLC_OK;
}

mlc_status mlc_config_parse(const char *json_text, const char *filename, mlc_model_config *out) {
  if (!filename)
    filename = "config.json";
  if (!out)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_config_parse: no output given");
  cJSON *root = NULL;
  MLC_TRY(mlc_json_parse(json_text, filename, &root));
  mlc_model_config *m = mlc_calloc(1, sizeof *m);
  if (!m) {
    cJSON_Delete(root);
    return MLC_ERR_NOMEM;
  }
  cfg c = {filename};
  mlc_status st = parse_config(&c, root, m);
  cJSON_Delete(root);
  if (st == MLC_OK) {
    memcpy(out, m, sizeof *out); /* padding included: m is zeroed, so memcmp works */
  }
  free(m);
  return st;
}

mlc_status mlc_config_load(const char *dir, mlc_model_config *out) {
  if (!dir || !out)
    return mlc_err(MLC_ERR_INVALID_ARG, "mlc_config_load: no directory or output given");
  char *path = mlc_path_join(dir, "config.json");
  if (!path)
    return MLC_ERR_NOMEM;
  char *text = NULL;
  size_t len = 0;
  mlc_status st = mlc_read_file(path, &text, &len);
  if (st == MLC_OK) {
    if (strlen(text) != len)
      st = mlc_err(MLC_ERR_FORMAT, "%s: contains a NUL byte", path);
    else
      st = mlc_config_parse(text, path, out);
  }
  free(text);
  free(path);
  return st;
}
