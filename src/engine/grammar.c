/* grammar.c: JSON Schema -> a byte-level pushdown automaton, and token masks over a vocabulary trie
 * (grammar.h; docs/engine.md, "Structured output"). */
#include "engine/grammar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tokenizer/tok_internal.h"

/* ---- compiled schema ---- */

enum { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOL = 32, T_NULL = 64, T_ALL = 127 };

typedef struct gnode {
  int types; /* T_* (ignored when the node has literals or alternatives) */
  /* object */
  int nprops;
  char **pname; /* JSON-escaped, without quotes */
  int *plen, *pnode;
  uint64_t required;
  int addl; /* node of additional properties; -1: none allowed */
  /* array */
  int items, min_items, max_items; /* max -1: unbounded */
  /* string */
  int min_len, max_len;
  /* enum / const: the values as printed JSON */
  int nlits;
  char **lits;
  int *litlen;
  /* anyOf */
  int nalts;
  int *alts;
} gnode;

struct mlc_grammar {
  gnode *n;
  int nn, cap;
  int root;
};

#define ANY_NODE 0
#define MAX_NODES 4096
#define MAX_PROPS 64
#define MAX_LITS 64
#define MAX_TEXT 60000 /* bytes of an enum / const value or a property name (16-bit positions) */
#define WS_MAX 12 /* whitespace bytes in a row (one newline at most): room for indentation */
#define NUM_MAX 32

static const char *const k_builtin[3] = {"true", "false", "null"};
static const int k_builtin_len[3] = {4, 5, 4};

void mlc_grammar_free(mlc_grammar *g) {
  if (!g)
    return;
  for (int i = 0; i < g->nn; i++) {
    gnode *n = &g->n[i];
    for (int k = 0; k < n->nprops; k++)
      free(n->pname[k]);
    free(n->pname);
    free(n->plen);
    free(n->pnode);
    for (int k = 0; k < n->nlits; k++)
      free(n->lits[k]);
    free(n->lits);
    free(n->litlen);
    free(n->alts);
  }
  free(g->n);
  free(g);
}

static int new_node(mlc_grammar *g) {
  if (g->nn >= MAX_NODES)
    return -1;
  if (g->nn == g->cap) {
    int c = g->cap ? g->cap * 2 : 16;
    gnode *nn = realloc(g->n, sizeof *nn * (size_t)c);
    if (!nn)
      return -1;
    g->n = nn;
    g->cap = c;
  }
  gnode *n = &g->n[g->nn];
  memset(n, 0, sizeof *n);
  n->types = T_ALL;
  n->addl = ANY_NODE;
  n->items = ANY_NODE;
  n->max_items = -1;
  n->max_len = -1;
  return g->nn++;
}

static const char *const k_annotations[] = {"title", "description", "default", "examples", "$schema", "$id",
                                            "$comment", "deprecated", "readOnly", "writeOnly", NULL};
static const char *const k_keywords[] = {"type", "properties", "required", "additionalProperties", "items",
                                         "minItems", "maxItems", "minLength", "maxLength", "enum", "const", "anyOf",
                                         NULL};

static bool in_list(const char *s, const char *const *l) {
  for (int i = 0; l[i]; i++)
    if (!strcmp(s, l[i]))
      return true;
  return false;
}

/* paths for messages (truncated if very deep) */
static void sub_path(char *dst, size_t n, const char *path, const char *key) {
  if (snprintf(dst, n, "%s%s%s", path, *path ? "." : "", key) >= (int)n)
    dst[n - 1] = 0;
}
static void sub_index(char *dst, size_t n, const char *path, int k) {
  if (snprintf(dst, n, "%s[%d]", path, k) >= (int)n)
    dst[n - 1] = 0;
}

static char *json_string_body(const char *s, int *len) {
  cJSON *j = cJSON_CreateString(s);
  char *p = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  if (!p)
    return NULL;
  size_t l = strlen(p); /* "...": strip the quotes */
  memmove(p, p + 1, l - 2);
  p[l - 2] = 0;
  *len = (int)(l - 2);
  return p;
}

static bool get_count(const cJSON *v, const char *path, int *out, mlc_status *st) {
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 || v->valuedouble != (double)(int)v->valuedouble) {
    *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must be a non-negative integer", path);
    return false;
  }
  *out = (int)v->valuedouble;
  return true;
}

static int add_literal(mlc_grammar *g, int node, const cJSON *v, const char *path, mlc_status *st) {
  gnode *n = &g->n[node];
  if (n->nlits >= MAX_LITS) {
    *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: '%s' has more than %d values", path, MAX_LITS);
    return -1;
  }
  char *s = cJSON_PrintUnformatted(v);
  if (s && strlen(s) > MAX_TEXT) {
    free(s);
    *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: a value of '%s' is longer than %d bytes", path, MAX_TEXT);
    return -1;
  }
  char **nl = realloc(n->lits, sizeof *nl * (size_t)(n->nlits + 1));
  if (nl)
    n->lits = nl;
  int *ll = realloc(n->litlen, sizeof *ll * (size_t)(n->nlits + 1));
  if (ll)
    n->litlen = ll;
  if (!s || !nl || !ll) {
    free(s);
    *st = mlc_err(MLC_ERR_NOMEM, "out of memory compiling a JSON schema");
    return -1;
  }
  for (int i = 0; i < n->nlits; i++)
    if (!strcmp(n->lits[i], s)) { /* a repeated value */
      free(s);
      return 0;
    }
  n->lits[n->nlits] = s;
  n->litlen[n->nlits] = (int)strlen(s);
  n->nlits++;
  return 0;
}

static int compile_node(mlc_grammar *g, const cJSON *s, const char *path, int depth, mlc_status *st);

static int compile_object_parts(mlc_grammar *g, int node, const cJSON *s, const char *path, int depth, mlc_status *st) {
  char sp[256];
  const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
  if (props) {
    sub_path(sp, sizeof sp, path, "properties");
    if (!cJSON_IsObject(props)) {
      *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must be an object", sp);
      return -1;
    }
    int np = cJSON_GetArraySize(props);
    if (np > MAX_PROPS) {
      *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: '%s' has %d properties (at most %d)", sp, np, MAX_PROPS);
      return -1;
    }
    gnode *n = &g->n[node];
    n->pname = calloc((size_t)np + 1, sizeof(char *));
    n->plen = calloc((size_t)np + 1, sizeof(int));
    n->pnode = calloc((size_t)np + 1, sizeof(int));
    if (!n->pname || !n->plen || !n->pnode) {
      *st = mlc_err(MLC_ERR_NOMEM, "out of memory compiling a JSON schema");
      return -1;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, props) {
      char pp[256];
      sub_path(pp, sizeof pp, sp, p->string);
      int child = compile_node(g, p, pp, depth + 1, st);
      if (child < 0)
        return -1;
      n = &g->n[node]; /* compile_node may move the nodes */
      int len;
      char *name = json_string_body(p->string, &len);
      if (!name) {
        *st = mlc_err(MLC_ERR_NOMEM, "out of memory compiling a JSON schema");
        return -1;
      }
      if (len > MAX_TEXT) {
        free(name);
        *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: a property name in '%s' is longer than %d bytes", sp, MAX_TEXT);
        return -1;
      }
      n->pname[n->nprops] = name;
      n->plen[n->nprops] = len;
      n->pnode[n->nprops] = child;
      n->nprops++;
    }
  }
  const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
  if (req) {
    sub_path(sp, sizeof sp, path, "required");
    if (!cJSON_IsArray(req)) {
      *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must be an array of property names", sp);
      return -1;
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, req) {
      if (!cJSON_IsString(r)) {
        *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must be an array of property names", sp);
        return -1;
      }
      gnode *n = &g->n[node];
      int len, k = -1;
      char *name = json_string_body(r->valuestring, &len);
      if (!name) {
        *st = mlc_err(MLC_ERR_NOMEM, "out of memory compiling a JSON schema");
        return -1;
      }
      if (len > MAX_TEXT) {
        free(name);
        *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: a name in '%s' is longer than %d bytes", sp, MAX_TEXT);
        return -1;
      }
      for (int i = 0; i < n->nprops && k < 0; i++)
        if (!strcmp(n->pname[i], name))
          k = i;
      if (k < 0) { /* required but not described: any value */
        if (n->nprops >= MAX_PROPS) {
          free(name);
          *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: '%s' names more than %d properties", sp, MAX_PROPS);
          return -1;
        }
        char **pn = realloc(n->pname, sizeof *pn * (size_t)(n->nprops + 1));
        if (pn)
          n->pname = pn;
        int *pl = realloc(n->plen, sizeof *pl * (size_t)(n->nprops + 1));
        if (pl)
          n->plen = pl;
        int *pd = realloc(n->pnode, sizeof *pd * (size_t)(n->nprops + 1));
        if (pd)
          n->pnode = pd;
        if (!pn || !pl || !pd) {
          free(name);
          *st = mlc_err(MLC_ERR_NOMEM, "out of memory compiling a JSON schema");
          return -1;
        }
        k = n->nprops++;
        n->pname[k] = name;
        n->plen[k] = len;
        n->pnode[k] = ANY_NODE;
      } else
        free(name);
      n->required |= 1ull << k;
    }
  }
  const cJSON *ap = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
  if (ap) {
    sub_path(sp, sizeof sp, path, "additionalProperties");
    int a;
    if (cJSON_IsFalse(ap))
      a = -1;
    else if (cJSON_IsTrue(ap))
      a = ANY_NODE;
    else if ((a = compile_node(g, ap, sp, depth + 1, st)) < 0)
      return -1;
    g->n[node].addl = a;
  }
  return 0;
}

static int compile_node(mlc_grammar *g, const cJSON *s, const char *path, int depth, mlc_status *st) {
  const char *where = *path ? path : "(root)";
  if (depth > MLC_GRAMMAR_DEPTH) {
    *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: '%s' is nested deeper than %d levels", where, MLC_GRAMMAR_DEPTH);
    return -1;
  }
  if (cJSON_IsTrue(s))
    return ANY_NODE;
  if (!cJSON_IsObject(s)) {
    *st = mlc_err(cJSON_IsFalse(s) ? MLC_ERR_UNSUPPORTED : MLC_ERR_FORMAT,
                  "JSON schema: '%s' must be a schema object%s", where, cJSON_IsFalse(s) ? " (false matches nothing)" : "");
    return -1;
  }
  const cJSON *it;
  bool any_kw = false;
  cJSON_ArrayForEach(it, s) {
    if (in_list(it->string, k_annotations))
      continue;
    if (!in_list(it->string, k_keywords)) {
      char kp[256];
      sub_path(kp, sizeof kp, path, it->string);
      *st = mlc_err(MLC_ERR_UNSUPPORTED,
                    "JSON schema keyword '%s' (at '%s') is not supported; supported: type, properties, required, "
                    "additionalProperties, items, minItems, maxItems, minLength, maxLength, enum, const, anyOf",
                    it->string, kp);
      return -1;
    }
    any_kw = true;
  }
  if (!any_kw && depth > 0)
    return ANY_NODE;
  int node = new_node(g);
  if (node < 0) {
    *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: more than %d sub-schemas", MAX_NODES);
    return -1;
  }
  char sp[256];
  /* anyOf: alternatives; other constraints beside it are not supported */
  const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
  if (any) {
    sub_path(sp, sizeof sp, path, "anyOf");
    if (!cJSON_IsArray(any) || cJSON_GetArraySize(any) == 0) {
      *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must be a non-empty array of schemas", sp);
      return -1;
    }
    cJSON_ArrayForEach(it, s) {
      if (strcmp(it->string, "anyOf") && !in_list(it->string, k_annotations)) {
        *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: '%s' beside 'anyOf' (at '%s') is not supported: move it into each alternative",
                      it->string, where);
        return -1;
      }
    }
    int na = cJSON_GetArraySize(any);
    int *alts = calloc((size_t)na, sizeof(int));
    if (!alts) {
      *st = mlc_err(MLC_ERR_NOMEM, "out of memory compiling a JSON schema");
      return -1;
    }
    int k = 0;
    cJSON_ArrayForEach(it, any) {
      char ap[256];
      sub_index(ap, sizeof ap, sp, k);
      int a = compile_node(g, it, ap, depth + 1, st);
      if (a < 0) {
        free(alts);
        return -1;
      }
      alts[k++] = a;
    }
    g->n[node].alts = alts;
    g->n[node].nalts = na;
    return node;
  }
  /* enum / const */
  const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum"), *cn = cJSON_GetObjectItemCaseSensitive(s, "const");
  if (en) {
    sub_path(sp, sizeof sp, path, "enum");
    if (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0) {
      *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must be a non-empty array", sp);
      return -1;
    }
    cJSON_ArrayForEach(it, en) {
      if (add_literal(g, node, it, sp, st) < 0)
        return -1;
    }
  }
  if (cn) {
    sub_path(sp, sizeof sp, path, "const");
    if (en) { /* both: the enum values equal to the const */
      char *c = cJSON_PrintUnformatted(cn);
      gnode *n = &g->n[node];
      int w = 0;
      for (int i = 0; i < n->nlits; i++)
        if (c && !strcmp(n->lits[i], c)) {
          n->lits[w] = n->lits[i];
          n->litlen[w++] = n->litlen[i];
        } else
          free(n->lits[i]);
      n->nlits = w;
      free(c);
      if (!w) {
        *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' is not among the 'enum' values (nothing matches)", sp);
        return -1;
      }
    } else if (add_literal(g, node, cn, sp, st) < 0)
      return -1;
  }
  /* type */
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(s, "type");
  int types = 0;
  if (ty) {
    sub_path(sp, sizeof sp, path, "type");
    const cJSON *one = cJSON_IsArray(ty) ? ty->child : ty;
    if (cJSON_IsArray(ty) && !one) {
      *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must not be empty", sp);
      return -1;
    }
    for (; one; one = cJSON_IsArray(ty) ? one->next : NULL) {
      static const char *const names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
      int t = -1;
      for (int i = 0; i < 7 && t < 0; i++)
        if (cJSON_IsString(one) && !strcmp(one->valuestring, names[i]))
          t = i;
      if (t < 0) {
        *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' must be object, array, string, number, integer, boolean or "
                                      "null (or a list of them)", sp);
        return -1;
      }
      types |= 1 << t;
      if (!cJSON_IsArray(ty))
        break;
    }
  } else {
    /* no type: the types the constraints describe (an object for "properties"), else any */
    static const char *const obj_kw[] = {"properties", "required", "additionalProperties", NULL};
    static const char *const arr_kw[] = {"items", "minItems", "maxItems", NULL};
    static const char *const str_kw[] = {"minLength", "maxLength", NULL};
    cJSON_ArrayForEach(it, s) {
      types |= in_list(it->string, obj_kw) ? T_OBJECT : in_list(it->string, arr_kw) ? T_ARRAY
               : in_list(it->string, str_kw) ? T_STRING : 0;
    }
    if (!types)
      types = T_ALL;
  }
  g->n[node].types = types;
  if (compile_object_parts(g, node, s, path, depth, st) < 0)
    return -1;
  const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
  if (items) {
    sub_path(sp, sizeof sp, path, "items");
    if (cJSON_IsArray(items)) {
      *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: '%s' as an array (tuples) is not supported", sp);
      return -1;
    }
    int c = compile_node(g, items, sp, depth + 1, st);
    if (c < 0)
      return -1;
    g->n[node].items = c;
  }
  static const char *const counts[] = {"minItems", "maxItems", "minLength", "maxLength"};
  for (int i = 0; i < 4; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, counts[i]);
    if (!v)
      continue;
    sub_path(sp, sizeof sp, path, counts[i]);
    int x;
    if (!get_count(v, sp, &x, st))
      return -1;
    gnode *n = &g->n[node];
    if (i == 0)
      n->min_items = x;
    else if (i == 1)
      n->max_items = x;
    else if (i == 2)
      n->min_len = x;
    else
      n->max_len = x;
  }
  gnode *n = &g->n[node];
  if ((n->max_items >= 0 && n->max_items < n->min_items) || (n->max_len >= 0 && n->max_len < n->min_len)) {
    *st = mlc_err(MLC_ERR_FORMAT, "JSON schema: '%s' has a maximum below its minimum (nothing matches)", where);
    return -1;
  }
  if (n->min_len > 0xFFF0 || n->max_len > 0xFFF0 || n->min_items > 0xFFF0 || n->max_items > 0xFFF0) {
    *st = mlc_err(MLC_ERR_UNSUPPORTED, "JSON schema: '%s': lengths and item counts are limited to 65520", where);
    return -1;
  }
  return node;
}

mlc_status mlc_grammar_compile_cjson(const cJSON *schema, mlc_grammar **out) {
  *out = NULL;
  mlc_grammar *g = calloc(1, sizeof *g);
  if (!g || new_node(g) != ANY_NODE) {
    mlc_grammar_free(g);
    return mlc_err(MLC_ERR_NOMEM, "out of memory compiling a JSON schema");
  }
  mlc_status st = MLC_OK;
  int root = compile_node(g, schema, "", 0, &st);
  if (root < 0) {
    mlc_grammar_free(g);
    return st != MLC_OK ? st : mlc_err(MLC_ERR_INTERNAL, "JSON schema: compilation failed");
  }
  g->root = root;
  *out = g;
  return MLC_OK;
}

mlc_status mlc_grammar_compile(const char *schema_json, mlc_grammar **out) {
  *out = NULL;
  cJSON *j = schema_json ? cJSON_Parse(schema_json) : NULL;
  if (!j)
    return mlc_err(MLC_ERR_FORMAT, "JSON schema: not valid JSON");
  mlc_status st = mlc_grammar_compile_cjson(j, out);
  cJSON_Delete(j);
  return st;
}

mlc_status mlc_grammar_json_object(mlc_grammar **out) { return mlc_grammar_compile("{\"type\":\"object\"}", out); }

/* ---- the automaton ---- */

enum { F_VALUE, F_OBJ, F_ARR, F_STR, F_KEY, F_NUM, F_LIT };
enum { O_START, O_KEY, O_AFTER, O_COMMA };
enum { A_START, A_AFTER, A_COMMA };
enum { S_NORMAL, S_ESC, S_U1, S_U2, S_U3, S_U4 };
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
#define DEAD 0xFF
#define NO_PROP 0xFFFF

/* One level of a parse stack (16 bytes, no padding: states are compared with memcmp). */
typedef struct gframe {
  uint64_t bits;  /* F_LIT: candidate values; F_OBJ: properties seen; F_KEY: properties still matching */
  uint16_t node;  /* schema node (F_KEY: the object's) */
  uint16_t pos;   /* F_LIT, F_KEY: bytes matched; F_OBJ: the property being read; F_ARR: items; F_STR: chars; F_NUM: bytes */
  uint16_t aux;   /* F_STR, F_KEY: UTF-8 continuation state; F_NUM: 1 = integer only; F_LIT: 1 = true/false/null */
  uint8_t kind, phase;
} gframe;

typedef struct gconf {
  uint8_t depth, ws; /* ws: the whitespace run before this byte (ws_ok) */
  gframe f[MLC_GRAMMAR_DEPTH];
} gconf;

struct mlc_grammar_state {
  const mlc_grammar *g;
  int n;
  gconf c[MLC_GRAMMAR_CONFS];
};

static inline void conf_copy(gconf *d, const gconf *s) {
  d->depth = s->depth;
  d->ws = s->ws;
  memcpy(d->f, s->f, sizeof(gframe) * s->depth);
}

static void state_copy(mlc_grammar_state *d, const mlc_grammar_state *s) {
  d->g = s->g;
  d->n = s->n;
  for (int i = 0; i < s->n; i++)
    conf_copy(&d->c[i], &s->c[i]);
}

static inline bool is_ws(uint8_t b) { return b == ' ' || b == '\n' || b == '\t' || b == '\r'; }
static inline bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
static inline bool is_hex(uint8_t b) { return is_digit(b) || ((b | 0x20) >= 'a' && (b | 0x20) <= 'f'); }

static inline bool push(gconf *c, int kind, int node) {
  if (c->depth >= MLC_GRAMMAR_DEPTH)
    return false;
  gframe *f = &c->f[c->depth++];
  memset(f, 0, sizeof *f);
  f->kind = (uint8_t)kind;
  f->node = (uint16_t)node;
  return true;
}

/* ws: bits 0-6 whitespace bytes in this run, bit 7 a newline seen in it. No '\r': a model that
 * likes blank lines gets one newline, not a page of them. */
static inline bool ws_ok(gconf *c, uint8_t b) {
  if (b == '\r' || (b == '\n' && (c->ws & 0x80)) || (c->ws & 0x7F) >= WS_MAX)
    return false;
  c->ws = (uint8_t)((c->ws + 1) | (b == '\n' ? 0x80 : 0));
  return true;
}

/* One byte of a string body (after the opening quote): 1 closes the string, 0 continues, -1 rejects.
 * aux: bits 0-1 UTF-8 continuation bytes still due, bits 2-4 the range of the next one. */
static inline int str_byte(gframe *f, uint8_t b) {
  int ph = f->phase;
  if (ph == S_ESC) {
    if (b == '"' || b == '\\' || b == '/' || b == 'b' || b == 'f' || b == 'n' || b == 'r' || b == 't') {
      f->phase = S_NORMAL;
      return 0;
    }
    if (b == 'u') {
      f->phase = S_U1;
      return 0;
    }
    return -1;
  }
  if (ph >= S_U1) {
    if (!is_hex(b))
      return -1;
    f->phase = ph == S_U4 ? S_NORMAL : (uint8_t)(ph + 1);
    return 0;
  }
  int rem = f->aux & 3;
  if (rem) {
    int lo = 0x80, hi = 0xBF;
    switch ((f->aux >> 2) & 7) {
    case 1: lo = 0xA0; break; /* after E0: no overlong forms */
    case 2: hi = 0x9F; break; /* after ED: no surrogates */
    case 3: lo = 0x90; break; /* after F0 */
    case 4: hi = 0x8F; break; /* after F4: up to U+10FFFF */
    }
    if (b < lo || b > hi)
      return -1;
    f->aux = (uint16_t)(rem - 1);
    return 0;
  }
  if (b == '"')
    return 1;
  if (b < 0x20)
    return -1;
  if (b == '\\') {
    f->phase = S_ESC;
    return 0;
  }
  if (b < 0x80)
    return 0;
  if (b >= 0xC2 && b <= 0xDF)
    f->aux = 1;
  else if (b >= 0xE0 && b <= 0xEF)
    f->aux = (uint16_t)(2 | (b == 0xE0 ? 1 << 2 : b == 0xED ? 2 << 2 : 0));
  else if (b >= 0xF0 && b <= 0xF4)
    f->aux = (uint16_t)(3 | (b == 0xF0 ? 3 << 2 : b == 0xF4 ? 4 << 2 : 0));
  else
    return -1;
  return 0;
}

static inline uint64_t prop_mask(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

static inline bool num_terminal(int ph) { return ph == N_ZERO || ph == N_INT || ph == N_FRAC || ph == N_EXP; }

static inline bool lit_complete(const mlc_grammar *g, const gframe *f) {
  const int *ll = f->aux ? k_builtin_len : g->n[f->node].litlen;
  for (uint64_t b = f->bits; b; b &= b - 1)
    if (ll[__builtin_ctzll(b)] == f->pos)
      return true;
  return false;
}

static bool conf_byte(const mlc_grammar *g, gconf *c, uint8_t b, mlc_grammar_state *out);

/* Applies byte b to *c (false: rejected). An anyOf value start continues in *c with the first
 * alternative and appends a copy per further alternative to out (already given b). */
static bool conf_byte(const mlc_grammar *g, gconf *c, uint8_t b, mlc_grammar_state *out) {
  for (;;) {
    if (!c->depth)
      return false; /* the value is complete: nothing may follow */
    gframe *f = &c->f[c->depth - 1];
    const gnode *nd = &g->n[f->node];
    switch (f->kind) {
    case F_VALUE:
      if (is_ws(b))
        return ws_ok(c, b);
      if (nd->nalts) {
        for (int i = 1; i < nd->nalts && out->n < MLC_GRAMMAR_CONFS; i++) {
          gconf *k = &out->c[out->n++];
          conf_copy(k, c);
          k->f[k->depth - 1].node = (uint16_t)nd->alts[i];
          if (!conf_byte(g, k, b, out))
            k->depth = DEAD;
        }
        f->node = (uint16_t)nd->alts[0];
        continue;
      }
      c->ws = 0;
      if (nd->nlits) {
        f->kind = F_LIT;
        f->aux = 0;
        f->pos = 0;
        f->bits = prop_mask(nd->nlits);
        continue;
      }
      if (b == '{' || b == '[') {
        /* room for a child level, so that the container can always be filled and closed */
        if (!(nd->types & (b == '{' ? T_OBJECT : T_ARRAY)) || c->depth >= MLC_GRAMMAR_DEPTH)
          return false;
        f->kind = b == '{' ? F_OBJ : F_ARR;
        f->phase = b == '{' ? O_START : A_START;
        f->bits = 0;
        f->pos = 0;
        return true;
      }
      if (b == '"') {
        if (!(nd->types & T_STRING))
          return false;
        f->kind = F_STR;
        f->phase = S_NORMAL;
        f->aux = 0;
        f->pos = 0;
        return true;
      }
      if (b == 't' || b == 'f' || b == 'n') {
        uint64_t bits = (nd->types & T_BOOL ? 3u : 0u) | (nd->types & T_NULL ? 4u : 0u);
        if (!bits)
          return false;
        f->kind = F_LIT;
        f->aux = 1;
        f->pos = 0;
        f->bits = bits;
        continue;
      }
      if (b == '-' || is_digit(b)) {
        if (!(nd->types & (T_NUMBER | T_INTEGER)))
          return false;
        f->kind = F_NUM;
        f->phase = N_START;
        f->pos = 0;
        f->aux = nd->types & T_NUMBER ? 0 : 1;
        continue;
      }
      return false;
    case F_LIT: {
      const char *const *L = f->aux ? k_builtin : (const char *const *)nd->lits;
      const int *LL = f->aux ? k_builtin_len : nd->litlen;
      uint64_t nb = 0;
      bool done = false;
      for (uint64_t m = f->bits; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (LL[i] > f->pos && (uint8_t)L[i][f->pos] == b)
          nb |= 1ull << i;
        else if (LL[i] == f->pos)
          done = true;
      }
      if (nb) {
        f->bits = nb;
        f->pos++;
        c->ws = 0;
        return true;
      }
      if (!done)
        return false;
      c->depth--; /* the value ended before b: b belongs to the parent */
      continue;
    }
    case F_NUM: {
      int ph = f->phase, np = -1;
      bool intonly = f->aux & 1, dg = is_digit(b), e = (b | 0x20) == 'e';
      switch (ph) {
      case N_START: np = b == '-' ? N_MINUS : b == '0' ? N_ZERO : dg ? N_INT : -1; break;
      case N_MINUS: np = b == '0' ? N_ZERO : dg ? N_INT : -1; break;
      case N_ZERO: np = intonly ? -1 : b == '.' ? N_DOT : e ? N_E : -1; break;
      case N_INT: np = dg ? N_INT : intonly ? -1 : b == '.' ? N_DOT : e ? N_E : -1; break;
      case N_DOT: np = dg ? N_FRAC : -1; break;
      case N_FRAC: np = dg ? N_FRAC : e ? N_E : -1; break;
      case N_E: np = b == '+' || b == '-' ? N_ESIGN : dg ? N_EXP : -1; break;
      case N_ESIGN:
      case N_EXP: np = dg ? N_EXP : -1; break;
      }
      /* bounded length; near the bound only bytes that end in a complete number */
      if (np >= 0 && (f->pos + 2 < NUM_MAX || (f->pos < NUM_MAX && num_terminal(np)))) {
        f->phase = (uint8_t)np;
        f->pos++;
        c->ws = 0;
        return true;
      }
      if (!num_terminal(ph))
        return false;
      c->depth--;
      continue;
    }
    case F_STR: {
      bool plain = f->phase == S_NORMAL && !(f->aux & 3);
      bool starts = plain && b != '"';
      if (starts && nd->max_len >= 0 && f->pos >= nd->max_len)
        return false;
      if (plain && b == '"' && f->pos < nd->min_len)
        return false;
      int r = str_byte(f, b);
      if (r < 0)
        return false;
      if (starts && f->pos < 0xFFFF)
        f->pos++;
      c->ws = 0;
      if (r == 1)
        c->depth--;
      return true;
    }
    case F_KEY: {
      c->ws = 0;
      if (b == '"' && f->phase == S_NORMAL && !(f->aux & 3)) {
        int match = -1;
        for (uint64_t m = f->bits; m && match < 0; m &= m - 1)
          if (nd->plen[__builtin_ctzll(m)] == f->pos)
            match = __builtin_ctzll(m);
        if (match < 0 && nd->addl < 0)
          return false;
        c->depth--;
        gframe *o = &c->f[c->depth - 1];
        o->phase = O_KEY;
        o->pos = match < 0 ? NO_PROP : (uint16_t)match;
        if (match >= 0)
          o->bits |= 1ull << match;
        return true;
      }
      if (str_byte(f, b) < 0)
        return false;
      uint64_t nb = 0;
      for (uint64_t m = f->bits; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (nd->plen[i] > f->pos && (uint8_t)nd->pname[i][f->pos] == b)
          nb |= 1ull << i;
      }
      if (!nb && nd->addl < 0)
        return false;
      f->bits = nb;
      if (f->pos < 0xFFFE)
        f->pos++;
      return true;
    }
    case F_OBJ: {
      if (is_ws(b))
        return ws_ok(c, b);
      c->ws = 0;
      uint64_t unseen = prop_mask(nd->nprops) & ~f->bits;
      bool more = nd->addl >= 0 || unseen;
      bool can_close = !(nd->required & ~f->bits);
      switch (f->phase) {
      case O_START:
      case O_COMMA:
        if (b == '"' && more) {
          if (!push(c, F_KEY, f->node))
            return false;
          c->f[c->depth - 1].bits = unseen;
          return true;
        }
        if (b == '}' && f->phase == O_START && can_close) {
          c->depth--;
          return true;
        }
        return false;
      case O_KEY:
        if (b != ':')
          return false;
        f->phase = O_AFTER;
        return push(c, F_VALUE, f->pos == NO_PROP ? nd->addl : nd->pnode[f->pos]);
      default: /* O_AFTER */
        if (b == ',' && more) {
          f->phase = O_COMMA;
          return true;
        }
        if (b == '}' && can_close) {
          c->depth--;
          return true;
        }
        return false;
      }
    }
    case F_ARR:
      if (is_ws(b))
        return ws_ok(c, b);
      if (f->phase == A_AFTER) {
        c->ws = 0;
        if (b == ',' && (nd->max_items < 0 || f->pos < nd->max_items)) {
          f->phase = A_COMMA;
          return true;
        }
        if (b == ']' && f->pos >= nd->min_items) {
          c->depth--;
          return true;
        }
        return false;
      }
      if (f->phase == A_START && b == ']') {
        if (f->pos < nd->min_items)
          return false;
        c->ws = 0;
        c->depth--;
        return true;
      }
      if (nd->max_items == 0)
        return false;
      /* an item starts with b */
      f->phase = A_AFTER;
      if (f->pos < 0xFFFE)
        f->pos++;
      if (!push(c, F_VALUE, nd->items))
        return false;
      continue;
    }
    return false;
  }
}

static inline bool conf_equal(const gconf *a, const gconf *b) {
  return a->depth == b->depth && a->ws == b->ws && !memcmp(a->f, b->f, sizeof(gframe) * a->depth);
}

/* out = in after byte b; false if every stack rejected it. */
static bool state_byte(const mlc_grammar *g, const mlc_grammar_state *in, uint8_t b, mlc_grammar_state *out) {
  out->g = g;
  out->n = 0;
  for (int i = 0; i < in->n && out->n < MLC_GRAMMAR_CONFS; i++) {
    gconf *k = &out->c[out->n++];
    conf_copy(k, &in->c[i]);
    if (!conf_byte(g, k, b, out))
      k->depth = DEAD;
  }
  if (out->n == 1)
    return out->c[0].depth != DEAD;
  int w = 0;
  for (int i = 0; i < out->n; i++) {
    if (out->c[i].depth == DEAD)
      continue;
    bool dup = false;
    for (int j = 0; j < w && !dup; j++)
      dup = conf_equal(&out->c[j], &out->c[i]);
    if (dup)
      continue;
    if (w != i)
      conf_copy(&out->c[w], &out->c[i]);
    w++;
  }
  out->n = w;
  return w > 0;
}

static bool conf_accepting(const mlc_grammar *g, const gconf *c) {
  if (c->depth == 0)
    return true;
  if (c->depth != 1)
    return false;
  const gframe *f = &c->f[0];
  return (f->kind == F_NUM && num_terminal(f->phase)) || (f->kind == F_LIT && lit_complete(g, f));
}

mlc_status mlc_grammar_state_new(const mlc_grammar *g, mlc_grammar_state **out) {
  *out = NULL;
  mlc_grammar_state *s = malloc(sizeof *s);
  if (!s)
    return mlc_err(MLC_ERR_NOMEM, "out of memory for a grammar state");
  s->g = g;
  mlc_grammar_state_reset(s);
  *out = s;
  return MLC_OK;
}

void mlc_grammar_state_reset(mlc_grammar_state *s) {
  s->n = 1;
  s->c[0].depth = 0;
  s->c[0].ws = 0;
  push(&s->c[0], F_VALUE, s->g->root);
}

void mlc_grammar_state_free(mlc_grammar_state *s) { free(s); }

bool mlc_grammar_feed(mlc_grammar_state *s, const void *bytes, size_t n) {
  if (!n)
    return true;
  mlc_grammar_state *t = malloc(sizeof *t * 2);
  if (!t)
    return false;
  const uint8_t *p = bytes;
  const mlc_grammar_state *cur = s;
  bool ok = true;
  for (size_t i = 0; i < n && ok; i++) {
    mlc_grammar_state *nx = &t[i & 1];
    ok = state_byte(s->g, cur, p[i], nx);
    cur = nx;
  }
  if (ok)
    state_copy(s, cur);
  free(t);
  return ok;
}

bool mlc_grammar_accepting(const mlc_grammar_state *s) {
  for (int i = 0; i < s->n; i++)
    if (conf_accepting(s->g, &s->c[i]))
      return true;
  return false;
}

bool mlc_grammar_finished(const mlc_grammar_state *s) {
  if (!mlc_grammar_accepting(s))
    return false;
  bool all_closed = true;
  for (int i = 0; i < s->n; i++)
    all_closed &= s->c[i].depth == 0;
  if (all_closed)
    return true;
  mlc_grammar_state *t = malloc(sizeof *t);
  if (!t)
    return true;
  bool more = false;
  for (int b = 0; b < 256 && !more; b++)
    more = state_byte(s->g, s, (uint8_t)b, t);
  free(t);
  return !more;
}

bool mlc_grammar_matches(const mlc_grammar *g, const char *text, size_t n) {
  mlc_grammar_state *s;
  if (mlc_grammar_state_new(g, &s) != MLC_OK)
    return false;
  bool ok = mlc_grammar_feed(s, text, n) && mlc_grammar_accepting(s);
  mlc_grammar_state_free(s);
  return ok;
}

/* ---- the vocabulary trie ---- */

/* A byte trie of token strings, nodes in preorder. */
typedef struct gtrie {
  int nn;
  uint8_t *nbyte;
  uint16_t *ndepth;
  int32_t *nend;  /* the index after the node's subtree */
  int32_t *ntok0; /* its tokens: order[ntok0 .. ntok0 + ntokn) */
  int32_t *ntokn;
  int32_t *order; /* the trie's token ids sorted by bytes */
  int ntok;
} gtrie;

struct mlc_grammar_vocab {
  int V, maxd;
  char *data;
  size_t *off;
  uint32_t *len;
  gtrie all;      /* every non-empty token */
  gtrie rest;     /* the tokens that are not plain string text */
  int32_t *plain; /* tokens of plain string text: complete UTF-8, no control byte, quote or backslash */
  int nplain;
  mlc_grammar_state *scratch; /* [maxd + 1] */
};

static void trie_free(gtrie *t) {
  free(t->nbyte);
  free(t->ndepth);
  free(t->nend);
  free(t->ntok0);
  free(t->ntokn);
  free(t->order);
}

void mlc_grammar_vocab_free(mlc_grammar_vocab *v) {
  if (!v)
    return;
  free(v->data);
  free(v->off);
  free(v->len);
  trie_free(&v->all);
  trie_free(&v->rest);
  free(v->plain);
  free(v->scratch);
  free(v);
}

int mlc_grammar_vocab_size(const mlc_grammar_vocab *v) { return v->V; }

const char *mlc_grammar_vocab_token(const mlc_grammar_vocab *v, int32_t id, size_t *len) {
  if (id < 0 || id >= v->V || !v->len[id]) {
    *len = 0;
    return NULL;
  }
  *len = v->len[id];
  return v->data + v->off[id];
}

static int cmp_tok(const void *a, const void *b, void *ctx) {
  const mlc_grammar_vocab *v = ctx;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint32_t lx = v->len[x], ly = v->len[y];
  int c = memcmp(v->data + v->off[x], v->data + v->off[y], lx < ly ? lx : ly);
  if (c)
    return c;
  if (lx != ly)
    return lx < ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

/* Builds the trie of the tokens ids[0..n) (taken over). */
static bool trie_build(const mlc_grammar_vocab *v, gtrie *t, int32_t *ids, int n) {
  t->order = ids;
  t->ntok = n;
  size_t total = 0;
  for (int i = 0; i < n; i++)
    total += v->len[ids[i]];
  /* at most one node per byte */
  t->nbyte = malloc(total + 1);
  t->ndepth = malloc(sizeof *t->ndepth * (total + 1));
  t->nend = malloc(sizeof *t->nend * (total + 1));
  t->ntok0 = malloc(sizeof *t->ntok0 * (total + 1));
  t->ntokn = malloc(sizeof *t->ntokn * (total + 1));
  int32_t *stk = malloc(sizeof *stk * ((size_t)v->maxd + 2));
  if (!t->nbyte || !t->ndepth || !t->nend || !t->ntok0 || !t->ntokn || !stk) {
    free(stk);
    return false;
  }
  qsort_r(ids, (size_t)n, sizeof *ids, cmp_tok, (void *)v);
  int cur = 0; /* depth of the current path */
  const uint8_t *prev = NULL;
  uint32_t prevlen = 0;
  for (int k = 0; k < n; k++) {
    int32_t id = ids[k];
    const uint8_t *s = (const uint8_t *)v->data + v->off[id];
    uint32_t L = v->len[id], common = 0;
    while (prev && common < L && common < prevlen && prev[common] == s[common])
      common++;
    while (cur > (int)common)
      t->nend[stk[cur--]] = t->nn;
    /* sorted: a string's prefixes come before it, so its last node is new unless it repeats */
    for (uint32_t d = common + 1; d <= L; d++) {
      int x = t->nn++;
      t->nbyte[x] = s[d - 1];
      t->ndepth[x] = (uint16_t)d;
      t->ntok0[x] = -1;
      t->ntokn[x] = 0;
      stk[d] = x;
      cur = (int)d;
    }
    int node = stk[L];
    if (!t->ntokn[node])
      t->ntok0[node] = k;
    t->ntokn[node]++;
    prev = s;
    prevlen = L;
  }
  while (cur > 0)
    t->nend[stk[cur--]] = t->nn;
  free(stk);
  return true;
}

/* Plain string text: accepted by a string body in any state between characters, whatever follows. */
static bool plain_text(const uint8_t *s, uint32_t n) {
  for (uint32_t i = 0; i < n;) {
    uint8_t b = s[i];
    int more;
    if (b < 0x20 || b == '"' || b == '\\')
      return false;
    if (b < 0x80)
      more = 0;
    else if (b >= 0xC2 && b <= 0xDF)
      more = 1;
    else if (b >= 0xE0 && b <= 0xEF)
      more = 2;
    else if (b >= 0xF0 && b <= 0xF4)
      more = 3;
    else
      return false;
    if (i + 1 + (uint32_t)more > n)
      return false;
    for (int k = 1; k <= more; k++) {
      uint8_t c = s[i + (uint32_t)k], lo = 0x80, hi = 0xBF;
      if (k == 1) {
        if (b == 0xE0)
          lo = 0xA0;
        else if (b == 0xED)
          hi = 0x9F;
        else if (b == 0xF0)
          lo = 0x90;
        else if (b == 0xF4)
          hi = 0x8F;
      }
      if (c < lo || c > hi)
        return false;
    }
    i += 1 + (uint32_t)more;
  }
  return true;
}

mlc_status mlc_grammar_vocab_new(const char *const *bytes, const size_t *lens, int n, mlc_grammar_vocab **out) {
  *out = NULL;
  mlc_grammar_vocab *v = calloc(1, sizeof *v);
  if (!v)
    return mlc_err(MLC_ERR_NOMEM, "out of memory for the grammar vocabulary");
  v->V = n;
  size_t total = 0;
  for (int i = 0; i < n; i++)
    total += bytes[i] && lens[i] < 65536 ? lens[i] : 0;
  v->data = malloc(total + 1);
  v->off = calloc((size_t)n + 1, sizeof *v->off);
  v->len = calloc((size_t)n + 1, sizeof *v->len);
  int32_t *all = malloc(sizeof *all * ((size_t)n + 1)), *rest = malloc(sizeof *rest * ((size_t)n + 1));
  v->plain = malloc(sizeof *v->plain * ((size_t)n + 1));
  if (!v->data || !v->off || !v->len || !all || !rest || !v->plain) {
    free(all);
    free(rest);
    mlc_grammar_vocab_free(v);
    return mlc_err(MLC_ERR_NOMEM, "out of memory for the grammar vocabulary");
  }
  size_t o = 0;
  int nall = 0, nrest = 0;
  for (int i = 0; i < n; i++) {
    v->off[i] = o;
    if (!bytes[i] || !lens[i] || lens[i] >= 65536)
      continue;
    memcpy(v->data + o, bytes[i], lens[i]);
    v->len[i] = (uint32_t)lens[i];
    o += lens[i];
    all[nall++] = i;
    if (plain_text((const uint8_t *)bytes[i], (uint32_t)lens[i]))
      v->plain[v->nplain++] = i;
    else
      rest[nrest++] = i;
    if ((int)lens[i] > v->maxd)
      v->maxd = (int)lens[i];
  }
  bool ok = trie_build(v, &v->all, all, nall);
  if (!ok)
    free(rest);
  ok = ok && trie_build(v, &v->rest, rest, nrest);
  v->scratch = ok ? malloc(sizeof *v->scratch * ((size_t)v->maxd + 1)) : NULL;
  if (!v->scratch) {
    mlc_grammar_vocab_free(v);
    return mlc_err(MLC_ERR_NOMEM, "out of memory for the grammar vocabulary");
  }
  *out = v;
  return MLC_OK;
}

/* GPT-2 byte-level alphabet: the code point standing for each byte, inverted. */
static int bytelevel_byte(uint32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
    return (int)cp;
  if (cp < 256)
    return -1;
  int n = 0;
  for (int b = 0; b < 256; b++) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
      continue;
    if ((uint32_t)(256 + n) == cp)
      return b;
    n++;
  }
  return -1;
}

/* The raw bytes a token string stands for, when it is a <0xNN> byte-fallback token or written in
 * the byte-level alphabet; false otherwise. */
static bool raw_token_bytes(const char *tok, mlc_buf *out) {
  unsigned x;
  char tail;
  if (strlen(tok) == 6 && sscanf(tok, "<0x%2X%c", &x, &tail) == 2 && tail == '>') {
    char c = (char)x;
    mlc_buf_append(out, &c, 1);
    return true;
  }
  const uint8_t *p = (const uint8_t *)tok;
  while (*p) {
    uint32_t cp;
    int n;
    if (*p < 0x80) {
      cp = *p;
      n = 1;
    } else if ((*p & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
      cp = (uint32_t)(*p & 0x1F) << 6 | (p[1] & 0x3F);
      n = 2;
    } else
      return false;
    int b = bytelevel_byte(cp);
    if (b < 0)
      return false;
    char c = (char)b;
    mlc_buf_append(out, &c, 1);
    p += n;
  }
  return out->len > 0;
}

mlc_status mlc_grammar_vocab_from_tokenizer(const mlc_tokenizer *t, int V, mlc_grammar_vocab **out) {
  *out = NULL;
  int TV = mlc_tok_vocab_size(t);
  int32_t *ids = NULL;
  int nids = 0;
  int32_t ref = -1;
  if (mlc_tok_encode(t, "a", 1, false, &ids, &nids) == MLC_OK && nids > 0)
    ref = ids[nids - 1];
  free(ids);
  mlc_buf rb = {0};
  if (ref >= 0 && mlc_tok_decode_raw(t, &ref, 1, false, &rb) != MLC_OK)
    ref = -1;
  char **bytes = calloc((size_t)V + 1, sizeof(char *));
  size_t *lens = calloc((size_t)V + 1, sizeof(size_t));
  if (!bytes || !lens) {
    free(bytes);
    free(lens);
    mlc_buf_free(&rb);
    return mlc_err(MLC_ERR_NOMEM, "out of memory for the grammar vocabulary");
  }
  mlc_status st = MLC_OK;
  for (int id = 0; id < V && id < TV && st == MLC_OK; id++) {
    if (mlc_tok_is_special(t, id))
      continue;
    mlc_buf b = {0};
    size_t skip = 0;
    if (ref >= 0) {
      int32_t two[2] = {ref, id};
      st = mlc_tok_decode_raw(t, two, 2, false, &b);
      if (st == MLC_OK && b.len >= rb.len && !memcmp(b.data, rb.data, rb.len))
        skip = rb.len;
      else {
        b.len = 0;
        st = mlc_tok_decode_raw(t, &id, 1, false, &b);
      }
    } else
      st = mlc_tok_decode_raw(t, &id, 1, false, &b);
    if (st != MLC_OK) {
      mlc_buf_free(&b);
      break;
    }
    /* a lone piece of a UTF-8 character decodes to U+FFFD; the grammar needs the byte itself */
    if (b.len > skip && memmem(b.data + skip, b.len - skip, "\xEF\xBF\xBD", 3)) {
      const char *ts = mlc_tok_id_to_token(t, id);
      mlc_buf raw = {0};
      if (ts && raw_token_bytes(ts, &raw) && !memmem(raw.data, raw.len, "\xEF\xBF\xBD", 3)) {
        /* keep a Metaspace-style leading space the decoder added */
        mlc_buf_free(&b);
        b = raw;
        skip = 0;
      } else
        mlc_buf_free(&raw);
    }
    if (b.len > skip) {
      lens[id] = b.len - skip;
      bytes[id] = malloc(lens[id]);
      if (bytes[id])
        memcpy(bytes[id], b.data + skip, lens[id]);
      else
        lens[id] = 0;
    }
    mlc_buf_free(&b);
  }
  mlc_buf_free(&rb);
  if (st == MLC_OK)
    st = mlc_grammar_vocab_new((const char *const *)bytes, lens, V, out);
  for (int i = 0; i < V; i++)
    free(bytes[i]);
  free(bytes);
  free(lens);
  return st;
}

/* The tokens of trie t the state accepts. */
static int trie_walk(mlc_grammar_vocab *v, const gtrie *t, const mlc_grammar_state *s, uint8_t *allowed) {
  mlc_grammar_state *st = v->scratch;
  state_copy(&st[0], s);
  const mlc_grammar *g = s->g;
  int count = 0;
  for (int i = 0; i < t->nn;) {
    int d = t->ndepth[i];
    if (!state_byte(g, &st[d - 1], t->nbyte[i], &st[d])) {
      i = t->nend[i];
      continue;
    }
    for (int k = 0; k < t->ntokn[i]; k++)
      allowed[t->order[t->ntok0[i] + k]] = 1;
    count += t->ntokn[i];
    i++;
  }
  return count;
}

int mlc_grammar_mask(mlc_grammar_vocab *v, const mlc_grammar_state *s, uint8_t *allowed) {
  memset(allowed, 0, (size_t)v->V);
  /* Inside a string body, between characters, with no length bound (and, for a key, any key
   * allowed): every plain-text token is accepted whatever the stack holds, so only the other
   * tokens (quotes, escapes, partial characters) need the trie. Most of a large vocabulary is
   * plain text. */
  if (s->n == 1 && s->c[0].depth) {
    const gframe *f = &s->c[0].f[s->c[0].depth - 1];
    const gnode *nd = &s->g->n[f->node];
    if ((f->kind == F_STR || f->kind == F_KEY) && f->phase == S_NORMAL && !(f->aux & 3) &&
        (f->kind == F_STR ? nd->max_len < 0 : nd->addl >= 0)) {
      for (int i = 0; i < v->nplain; i++)
        allowed[v->plain[i]] = 1;
      return v->nplain + trie_walk(v, &v->rest, s, allowed);
    }
  }
  return trie_walk(v, &v->all, s, allowed);
}

bool mlc_grammar_feed_token(const mlc_grammar_vocab *v, mlc_grammar_state *s, int32_t id) {
  size_t n;
  const char *b = mlc_grammar_vocab_token(v, id, &n);
  return b && mlc_grammar_feed(s, b, n);
}
