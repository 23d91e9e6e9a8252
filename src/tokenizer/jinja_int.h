/* jinja_int.h: internals shared by jinja.c (lexer, parser, interpreter) and jinja_lib.c
 * (filters, tests, methods, globals). Not a public header. */
#ifndef MLC_JINJA_INT_H
#define MLC_JINJA_INT_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

#include "tokenizer/jinja.h"

/* ---- arena: everything of one parse or one render lives here; OOM longjmps to the entry ---- */
typedef struct jblock {
  struct jblock *next;
  size_t used, cap;
  _Alignas(16) char data[];
} jblock;
typedef struct jarena {
  jblock *head;
  jmp_buf *oom;
} jarena;
void *jar_alloc(jarena *a, size_t n);
void jar_free(jarena *a);

/* ---- values ---- */
typedef struct jstr {
  size_t len;
  char s[]; /* NUL-terminated */
} jstr;

enum { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_NS, JV_FUNC, JV_LOOP };

struct jlist;
struct jdict;
struct jfunc;
struct jloop;
typedef struct jv {
  int t;
  union {
    bool b;
    int64_t i;
    double f;
    jstr *s; /* JV_STR; for JV_UNDEF the error hint (may be NULL) */
    struct jlist *l;
    struct jdict *d; /* JV_DICT, JV_NS */
    struct jfunc *fn;
    struct jloop *lp;
  } u;
} jv;

typedef struct jlist {
  size_t n, cap;
  jv *v;
  bool tuple;
} jlist;
typedef struct jdict {
  size_t n, cap;
  jv *k, *v;
} jdict;

typedef struct jargs {
  int np, nk;
  jv *pos;
  jstr **kn;
  jv *kv;
} jargs;

struct jctx;
typedef mlc_status (*jbuiltin_fn)(struct jctx *c, int line, jv self, jargs *a, jv *out);
typedef mlc_status (*jtest_fn)(struct jctx *c, int line, jv v, jargs *a, bool *out);

struct jnode;
struct jframe;
typedef struct jfunc {
  const char *name;
  jbuiltin_fn fn;          /* builtin or bound method (self) */
  jv self;
  const struct jnode *macro; /* macro definition */
  struct jframe *closure;
  const struct jnode *caller_body; /* {% call %} body rendered by caller() */
  struct jframe *caller_frame;
} jfunc;

typedef struct jframe {
  struct jframe *parent;
  jdict vars;
} jframe;

/* string builder in the arena */
typedef struct jsb {
  jarena *ar;
  char *p;
  size_t len, cap;
} jsb;

typedef struct jctx {
  jarena *ar;
  jsb *out;
  int ctrl; /* 0, JC_BREAK, JC_CONTINUE */
  int depth;
  jframe *globals;
  jstr *loop_name; /* "loop", made once per render */
} jctx;

/* helpers (jinja.c) */
mlc_status jerr(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
jstr *jstr_new(jarena *a, const char *s, size_t n);
jv jv_str(jarena *a, const char *s, size_t n);
jv jv_cstr(jarena *a, const char *s);
jv jv_undef(jstr *hint);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_list(jarena *a, size_t cap);
jv jv_dict(jarena *a);
void jl_push(jarena *a, jlist *l, jv v);
void jd_set(jarena *a, jdict *d, jv k, jv v);
long jd_find_str(const jdict *d, const char *s, size_t n);
long jd_find(const jdict *d, jv k);
bool jv_truthy(jv v);
bool jv_eq(jv a, jv b);
mlc_status jv_cmp(int line, jv a, jv b, int *res);
const char *jv_typename(jv v);
void jv_to_str(jctx *c, jsb *b, jv v);   /* Python str() as Jinja renders it */
void jv_repr(jctx *c, jsb *b, jv v);     /* Python repr() */
jv jv_stringify(jctx *c, jv v);          /* str(v) as a JV_STR */
mlc_status jv_iter_list(jctx *c, int line, jv v, jlist **out);
mlc_status jv_getattr(jctx *c, int line, jv obj, const char *name, size_t n, jv *out);
mlc_status jv_getitem(jctx *c, int line, jv obj, jv key, jv *out);
mlc_status jv_call(jctx *c, int line, jv fn, jargs *a, jv *out);
void py_float_repr(double d, char *buf, size_t cap);

void sb_init(jsb *b, jarena *a);
void sb_add(jsb *b, const char *s, size_t n);
void sb_puts(jsb *b, const char *s);
void sb_printf(jsb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
jv sb_value(jsb *b);

/* utf-8 */
size_t u8_dec(const char *s, size_t n, uint32_t *cp);
size_t u8_enc(uint32_t cp, char *out);
size_t u8_count(const char *s, size_t n);
bool py_isspace(uint32_t cp);

/* jinja_lib.c */
bool jargs_get(jargs *a, int i, const char *name, jv *out);
jbuiltin_fn jlib_filter(const char *name);
jtest_fn jlib_test(const char *name);
jbuiltin_fn jlib_global(const char *name);
jbuiltin_fn jlib_method(jv obj, const char *name, size_t n, bool *unsafe);
mlc_status jlib_tojson(jctx *c, int line, jv v, bool ascii, const char *indent, const char *item_sep,
                       const char *key_sep, bool sort_keys, jsb *b);

#define JC_BREAK 1
#define JC_CONTINUE 2

#endif
