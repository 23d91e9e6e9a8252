/* jinja.h: a Jinja2 interpreter for chat templates.
 *
 * Behaves like the environment Hugging Face transformers renders chat templates in:
 * ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
 * with the loopcontrols extension ({% break %}, {% continue %}), the {% generation %} tag, and the
 * globals raise_exception(msg) and strftime_now(fmt) plus HF's tojson filter (ensure_ascii=False,
 * key order kept, `indent`/`separators`/`sort_keys` arguments).
 * Undefined values follow jinja2's default Undefined: they render as "" and are falsy; attribute
 * access on them, or arithmetic with them, is an error.
 * Errors (syntax, runtime, raise_exception) come back as MLC_ERR_FORMAT with a message that names
 * the template line: "template line N: ...".
 */
#ifndef MLC_JINJA_H
#define MLC_JINJA_H

#include <cjson/cJSON.h>

#include "base/base.h"

typedef struct mlc_jinja_template mlc_jinja_template;

/* Parses template source (a NUL-terminated UTF-8 string). */
mlc_status mlc_jinja_parse(const char *src, mlc_jinja_template **out);
void mlc_jinja_free(mlc_jinja_template *t);

/* Renders with the members of the cJSON object `vars` as the template's variables (may be NULL).
 * JSON null is Python None; JSON numbers with an integral value are ints, others floats.
 * out: a heap string the caller frees. */
mlc_status mlc_jinja_render(const mlc_jinja_template *t, const cJSON *vars, char **out);

/* Convenience: parse + render + free. */
mlc_status mlc_jinja_render_string(const char *src, const cJSON *vars, char **out);

#endif
