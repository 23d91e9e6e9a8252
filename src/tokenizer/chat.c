/* chat.c: chat prompts from HF chat templates (through jinja.c) and from MLC conversation
 * templates. */
#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja.h"

#define NO_TEMPLATE_MSG                                                                            \
  "Cannot use chat template functions because tokenizer.chat_template is not set and no template " \
  "argument was passed! For information about writing templates and setting the "                 \
  "tokenizer.chat_template attribute, please see the documentation at "                           \
  "https://huggingface.co/docs/transformers/main/en/chat_templating"

/* Adds `item` to `obj` under `name` without copying it (the caller keeps ownership). */
static bool add_ref(cJSON *obj, const char *name, const cJSON *item) {
  return cJSON_AddItemReferenceToObject(obj, name, (cJSON *)item) != 0;
}

/* vars: messages, tools, documents, add_generation_prompt, then `specials` members, then extra. */
static mlc_status render_with(const char *src, const cJSON *messages, const cJSON *tools,
                              bool add_generation_prompt, const cJSON *specials, const cJSON *extra,
                              char **out) {
  *out = NULL;
  if (!src)
    return mlc_err(MLC_ERR_INVALID_ARG, "chat template: no template source");
  if (messages && !cJSON_IsArray(messages))
    return mlc_err(MLC_ERR_INVALID_ARG, "chat template: messages must be a JSON array");
  if (tools && !cJSON_IsArray(tools) && !cJSON_IsNull(tools))
    return mlc_err(MLC_ERR_INVALID_ARG, "chat template: tools must be a JSON array");
  if (extra && !cJSON_IsObject(extra))
    return mlc_err(MLC_ERR_INVALID_ARG, "chat template: extra variables must be a JSON object");
  cJSON *vars = cJSON_CreateObject();
  if (!vars)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  bool ok = true;
  if (messages)
    ok = ok && add_ref(vars, "messages", messages);
  else
    ok = ok && cJSON_AddArrayToObject(vars, "messages") != NULL;
  if (tools && !cJSON_IsNull(tools))
    ok = ok && add_ref(vars, "tools", tools);
  else
    ok = ok && cJSON_AddNullToObject(vars, "tools") != NULL;
  ok = ok && cJSON_AddNullToObject(vars, "documents") != NULL;
  ok = ok && cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt) != NULL;
  if (specials)
    for (const cJSON *e = specials->child; e && ok; e = e->next)
      ok = add_ref(vars, e->string, e);
  if (extra)
    for (const cJSON *e = extra->child; e && ok; e = e->next)
      ok = add_ref(vars, e->string, e);
  if (!ok) {
    cJSON_Delete(vars);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  mlc_jinja_template *t = NULL;
  mlc_status st = mlc_jinja_parse(src, &t);
  if (st == MLC_OK)
    st = mlc_jinja_render(t, vars, out);
  mlc_jinja_free(t);
  cJSON_Delete(vars);
  return st;
}

mlc_status mlc_chat_render(const char *template_src, const cJSON *messages, const cJSON *tools,
                           bool add_generation_prompt, const char *bos_token, const char *eos_token,
                           const cJSON *extra, char **out) {
  cJSON *sp = cJSON_CreateObject();
  if (!sp || !cJSON_AddStringToObject(sp, "bos_token", bos_token ? bos_token : "") ||
      !cJSON_AddStringToObject(sp, "eos_token", eos_token ? eos_token : "")) {
    cJSON_Delete(sp);
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  }
  mlc_status st = render_with(template_src, messages, tools, add_generation_prompt, sp, extra, out);
  cJSON_Delete(sp);
  if (st != MLC_OK && st != MLC_ERR_NOMEM)
    mlc_err_context(st, "chat template");
  return st;
}

static mlc_status read_json(const char *path, cJSON **out) {
  char *text;
  size_t n;
  *out = NULL;
  MLC_TRY(mlc_read_file(path, &text, &n));
  cJSON *j = cJSON_ParseWithLength(text, n);
  free(text);
  if (!j)
    return mlc_err(MLC_ERR_FORMAT, "%s: not valid JSON", path);
  *out = j;
  return MLC_OK;
}

static mlc_status pick_template(const char *where, const cJSON *ct, bool with_tools, char **out) {
  if (cJSON_IsString(ct)) {
    *out = mlc_strdup(ct->valuestring);
    return *out ? MLC_OK : MLC_ERR_NOMEM;
  }
  if (cJSON_IsArray(ct)) {
    const char *def = NULL, *tool = NULL;
    for (const cJSON *e = ct->child; e; e = e->next) {
      const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
      const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
      if (!cJSON_IsString(nm) || !cJSON_IsString(tp))
        return mlc_err(MLC_ERR_FORMAT, "%s: chat_template: each entry needs string \"name\" and \"template\"", where);
      if (strcmp(nm->valuestring, "default") == 0)
        def = tp->valuestring;
      else if (strcmp(nm->valuestring, "tool_use") == 0)
        tool = tp->valuestring;
    }
    const char *pick = (with_tools && tool) ? tool : def;
    if (!pick)
      return mlc_err(MLC_ERR_FORMAT,
                     "%s: chat_template: This model has multiple chat templates with no default specified!", where);
    *out = mlc_strdup(pick);
    return *out ? MLC_OK : MLC_ERR_NOMEM;
  }
  if (!ct || cJSON_IsNull(ct))
    return mlc_err(MLC_ERR_FORMAT, "%s: chat_template: " NO_TEMPLATE_MSG, where);
  return mlc_err(MLC_ERR_FORMAT, "%s: chat_template: expected a string or a list of {name, template}", where);
}

mlc_status mlc_chat_template_load(const char *dir, bool with_tools, char **out) {
  *out = NULL;
  char *jinja = mlc_path_join(dir, "chat_template.jinja");
  if (!jinja)
    return MLC_ERR_NOMEM;
  if (mlc_file_exists(jinja)) {
    size_t n;
    mlc_status st = mlc_read_file(jinja, out, &n);
    free(jinja);
    return st;
  }
  free(jinja);
  char *cfg = mlc_path_join(dir, "tokenizer_config.json");
  if (!cfg)
    return MLC_ERR_NOMEM;
  cJSON *j = NULL;
  mlc_status st = MLC_OK;
  const cJSON *ct = NULL;
  if (mlc_file_exists(cfg)) {
    st = read_json(cfg, &j);
    if (st == MLC_OK)
      ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
  }
  if (st == MLC_OK && (!ct || cJSON_IsNull(ct))) {
    /* processors keep it in chat_template.json */
    char *cj = mlc_path_join(dir, "chat_template.json");
    if (cj && mlc_file_exists(cj)) {
      cJSON *j2 = NULL;
      st = read_json(cj, &j2);
      if (st == MLC_OK) {
        const cJSON *ct2 = cJSON_GetObjectItemCaseSensitive(j2, "chat_template");
        if (ct2 && !cJSON_IsNull(ct2)) {
          st = pick_template(cj, ct2, with_tools, out);
          cJSON_Delete(j2);
          cJSON_Delete(j);
          free(cj);
          free(cfg);
          return st;
        }
      }
      cJSON_Delete(j2);
    }
    free(cj);
  }
  if (st == MLC_OK) {
    if (!j && !mlc_file_exists(cfg))
      st = mlc_err(MLC_ERR_IO, "%s: no such file (and no chat_template.jinja in %s)", cfg, dir);
    else
      st = pick_template(cfg, ct, with_tools, out);
  }
  cJSON_Delete(j);
  free(cfg);
  return st;
}

/* special_tokens_map as transformers builds it: tokens that are set, as strings */
static mlc_status load_specials(const char *dir, cJSON **out) {
  static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                     "pad_token", "cls_token", "mask_token", NULL};
  *out = cJSON_CreateObject();
  if (!*out)
    return MLC_ERR_NOMEM;
  const char *files[] = {"tokenizer_config.json", "special_tokens_map.json"};
  for (int f = 0; f < 2; f++) {
    char *p = mlc_path_join(dir, files[f]);
    if (!p)
      return MLC_ERR_NOMEM;
    cJSON *j = NULL;
    if (mlc_file_exists(p) && read_json(p, &j) != MLC_OK) {
      free(p);
      return MLC_ERR_FORMAT;
    }
    free(p);
    if (!j)
      continue;
    for (int k = 0; keys[k]; k++) {
      if (cJSON_GetObjectItemCaseSensitive(*out, keys[k]))
        continue;
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
      if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
      if (cJSON_IsString(v))
        cJSON_AddStringToObject(*out, keys[k], v->valuestring);
    }
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(j, "additional_special_tokens");
    if (cJSON_IsArray(add) && !cJSON_GetObjectItemCaseSensitive(*out, "additional_special_tokens")) {
      cJSON *arr = cJSON_AddArrayToObject(*out, "additional_special_tokens");
      for (const cJSON *e = add ? add->child : NULL; e && arr; e = e->next) {
        const cJSON *v = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "content") : e;
        if (cJSON_IsString(v))
          cJSON_AddItemToArray(arr, cJSON_CreateString(v->valuestring));
      }
    }
    cJSON_Delete(j);
  }
  return MLC_OK;
}

mlc_status mlc_chat_render_dir(const char *dir, const cJSON *messages, const cJSON *tools,
                               bool add_generation_prompt, const cJSON *extra, char **out) {
  *out = NULL;
  char *src = NULL;
  bool with_tools = tools && cJSON_IsArray(tools);
  MLC_TRY(mlc_chat_template_load(dir, with_tools, &src));
  cJSON *sp = NULL;
  mlc_status st = load_specials(dir, &sp);
  if (st == MLC_OK) {
    st = render_with(src, messages, tools, add_generation_prompt, sp, extra, out);
    if (st != MLC_OK && st != MLC_ERR_NOMEM)
      mlc_err_context(st, "%s: chat_template", dir);
  }
  cJSON_Delete(sp);
  free(src);
  return st;
}

/* ============================================================================================ */
/* MLC conversation templates                                                                   */
/* ============================================================================================ */

static const char *conv_str(const cJSON *conv, const char *key, const char *def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(conv, key);
  return cJSON_IsString(v) ? v->valuestring : def;
}

/* appends s with every occurrence of ph replaced by val */
static void append_replaced(mlc_buf *b, const char *s, const char *ph, const char *val) {
  size_t pn = strlen(ph);
  for (;;) {
    const char *h = strstr(s, ph);
    if (!h) {
      mlc_buf_puts(b, s);
      return;
    }
    mlc_buf_append(b, s, (size_t)(h - s));
    mlc_buf_puts(b, val);
    s = h + pn;
  }
}

typedef struct conv_msg {
  const char *role;
  const cJSON *content; /* string, array of parts, or NULL/null for "no content" */
  bool owned_text;      /* content_text is heap-allocated */
  char *content_text;
} conv_msg;

static mlc_status conv_role_template(const cJSON *conv, const char *role, const char **tmpl, const char **ph) {
  static const char *const defs[][2] = {{"user", "{user_message}"},
                                        {"assistant", "{assistant_message}"},
                                        {"tool", "{tool_message}"}};
  *ph = NULL;
  for (int i = 0; i < 3; i++)
    if (strcmp(role, defs[i][0]) == 0) {
      *ph = defs[i][1];
      *tmpl = defs[i][1];
    }
  if (!*ph)
    return mlc_err(MLC_ERR_FORMAT, "conv_template: role \"%s\" has no message placeholder", role);
  const cJSON *rt = cJSON_GetObjectItemCaseSensitive(conv, "role_templates");
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(rt, role);
  if (cJSON_IsString(t))
    *tmpl = t->valuestring;
  return MLC_OK;
}

/* strip_reasoning_in_history: drop "<think>...</think>" from an earlier assistant turn */
static const char *strip_reasoning(const char *s) {
  const char *last = NULL, *p = s;
  while ((p = strstr(p, "</think>")) != NULL) {
    last = p;
    p += 8;
  }
  if (!last)
    return s;
  last += 8;
  while (*last == '\n' || *last == ' ' || *last == '\t' || *last == '\r')
    last++;
  return last;
}

mlc_status mlc_chat_render_conv(const cJSON *conv, const cJSON *messages, bool add_generation_prompt, char **out) {
  *out = NULL;
  if (!cJSON_IsObject(conv))
    return mlc_err(MLC_ERR_INVALID_ARG, "conv_template: expected a JSON object");
  if (messages && !cJSON_IsArray(messages))
    return mlc_err(MLC_ERR_INVALID_ARG, "conv_template: messages must be a JSON array");
  const cJSON *roles = cJSON_GetObjectItemCaseSensitive(conv, "roles");
  const cJSON *seps = cJSON_GetObjectItemCaseSensitive(conv, "seps");
  if (!cJSON_IsObject(roles))
    return mlc_err(MLC_ERR_FORMAT, "conv_template: field \"roles\" must be an object");
  int nseps = cJSON_IsArray(seps) ? cJSON_GetArraySize(seps) : 0;
  if (nseps < 1 || nseps > 2)
    return mlc_err(MLC_ERR_FORMAT, "conv_template: field \"seps\" should have size 1 or 2");
  const cJSON *s0 = cJSON_GetArrayItem(seps, 0), *s1 = cJSON_GetArrayItem(seps, nseps - 1);
  if (!cJSON_IsString(s0) || !cJSON_IsString(s1))
    return mlc_err(MLC_ERR_FORMAT, "conv_template: field \"seps\" must hold strings");
  const char *sep_user = s0->valuestring, *sep_asst = s1->valuestring;
  const char *system_template = conv_str(conv, "system_template", "{system_message}");
  const char *system_message = conv_str(conv, "system_message", "");
  const char *role_content_sep = conv_str(conv, "role_content_sep", "");
  const char *role_empty_sep = conv_str(conv, "role_empty_sep", "");
  const char *function_string = conv_str(conv, "function_string", "");
  const cJSON *arsm = cJSON_GetObjectItemCaseSensitive(conv, "add_role_after_system_message");
  bool add_role_after_system = !cJSON_IsBool(arsm) || cJSON_IsTrue(arsm);
  bool strip_hist = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(conv, "strip_reasoning_in_history"));

  /* collect (role, content): the template's own history, then the request's messages */
  int cap = (messages ? cJSON_GetArraySize(messages) : 0) + 2;
  const cJSON *hist = cJSON_GetObjectItemCaseSensitive(conv, "messages");
  if (cJSON_IsArray(hist))
    cap += cJSON_GetArraySize(hist);
  conv_msg *ms = calloc((size_t)cap, sizeof *ms);
  if (!ms)
    return mlc_err(MLC_ERR_NOMEM, "out of memory");
  int n = 0;
  mlc_status st = MLC_OK;
  for (const cJSON *h = cJSON_IsArray(hist) ? hist->child : NULL; h; h = h->next) {
    const cJSON *r = cJSON_GetArrayItem(h, 0);
    if (!cJSON_IsArray(h) || !cJSON_IsString(r)) {
      st = mlc_err(MLC_ERR_FORMAT, "conv_template: field \"messages\" must hold [role, content] pairs");
      goto done;
    }
    ms[n].role = r->valuestring;
    ms[n].content = cJSON_GetArrayItem(h, 1);
    n++;
  }
  int idx = 0;
  for (const cJSON *m = messages ? messages->child : NULL; m; m = m->next, idx++) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsString(r)) {
      st = mlc_err(MLC_ERR_INVALID_ARG, "messages[%d]: field \"role\" must be a string", idx);
      goto done;
    }
    if (strcmp(r->valuestring, "system") == 0) {
      if (c && !cJSON_IsString(c) && !cJSON_IsNull(c)) {
        st = mlc_err(MLC_ERR_INVALID_ARG, "messages[%d]: a system message's content must be a string", idx);
        goto done;
      }
      system_message = cJSON_IsString(c) ? c->valuestring : "";
      continue;
    }
    ms[n].role = r->valuestring;
    ms[n].content = c;
    n++;
  }
  if (add_generation_prompt) {
    ms[n].role = "assistant";
    ms[n].content = NULL;
    n++;
  }

  mlc_buf b = {0};
  mlc_buf sys = {0};
  append_replaced(&sys, system_template, "{system_message}", system_message);
  bool has_system = sys.len > 0;
  if (has_system)
    mlc_buf_append(&b, sys.data, sys.len);
  mlc_buf_free(&sys);
  /* strip_reasoning_in_history: assistant turns before the last user message lose their
   * "<think>...</think>"; a trailing assistant turn keeps it */
  int last_user = -1;
  for (int i = 0; i < n; i++)
    if (strcmp(ms[i].role, "user") == 0)
      last_user = i;
  for (int i = 0; i < n && st == MLC_OK; i++) {
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(roles, ms[i].role);
    if (!cJSON_IsString(rv)) {
      st = mlc_err(MLC_ERR_FORMAT, "conv_template: Role \"%s\" is not a supported role in \"roles\"", ms[i].role);
      break;
    }
    const char *sep = strcmp(ms[i].role, "assistant") == 0 ? sep_asst : sep_user;
    const cJSON *c = ms[i].content;
    if (!c || cJSON_IsNull(c)) {
      mlc_buf_puts(&b, rv->valuestring);
      mlc_buf_puts(&b, role_empty_sep);
      continue;
    }
    bool prefix = add_role_after_system || !has_system || i != 0;
    if (prefix) {
      mlc_buf_puts(&b, rv->valuestring);
      mlc_buf_puts(&b, role_content_sep);
    }
    const char *tmpl, *ph;
    st = conv_role_template(conv, ms[i].role, &tmpl, &ph);
    if (st != MLC_OK)
      break;
    if (cJSON_IsString(c)) {
      const char *text = c->valuestring;
      if (strip_hist && strcmp(ms[i].role, "assistant") == 0 && i < last_user)
        text = strip_reasoning(text);
      append_replaced(&b, tmpl, ph, text);
    } else if (cJSON_IsArray(c)) {
      for (const cJSON *part = c->child; part; part = part->next) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(ty)) {
          st = mlc_err(MLC_ERR_INVALID_ARG, "conv_template: a content part needs a string \"type\"");
          break;
        }
        if (strcmp(ty->valuestring, "text") == 0 && cJSON_IsString(tx))
          append_replaced(&b, tmpl, ph, tx->valuestring);
        else {
          st = mlc_err(MLC_ERR_UNSUPPORTED, "conv_template: unsupported content type: %s", ty->valuestring);
          break;
        }
      }
    } else {
      st = mlc_err(MLC_ERR_INVALID_ARG, "conv_template: content must be a string, null or a list of parts");
      break;
    }
    mlc_buf_puts(&b, sep);
  }
  if (st == MLC_OK && b.oom)
    st = mlc_err(MLC_ERR_NOMEM, "out of memory");
  if (st == MLC_OK) {
    /* last "{function_string}" gets the function string, the others are dropped */
    char *s = mlc_buf_take(&b);
    if (!s) {
      st = mlc_err(MLC_ERR_NOMEM, "out of memory");
      goto done;
    }
    const char *ph = "{function_string}";
    char *last = NULL;
    for (char *p = strstr(s, ph); p; p = strstr(p + 1, ph))
      last = p;
    mlc_buf r = {0};
    if (!last)
      mlc_buf_puts(&r, s);
    else {
      *last = 0;
      append_replaced(&r, s, ph, "");
      mlc_buf_puts(&r, function_string);
      append_replaced(&r, last + strlen(ph), ph, "");
    }
    free(s);
    if (r.oom) {
      mlc_buf_free(&r);
      st = mlc_err(MLC_ERR_NOMEM, "out of memory");
    } else
      *out = mlc_buf_take(&r);
  } else
    mlc_buf_free(&b);
done:
  free(ms);
  return st;
}
