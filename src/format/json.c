/* json.c: cJSON parsing with error messages that name the file, line, column and byte offset. */
#include "format/format.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Describes where `pos` lies in text[0..len): line, column and a short excerpt. */
static mlc_status json_error(const char *text, size_t len, size_t pos, const char *filename) {
  if (pos > len)
    pos = len;
  int line = 1, col = 1;
  for (size_t i = 0; i < pos; i++) {
    if (text[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  char near[32];
  size_t k = 0;
  for (size_t i = pos; i < len && k < 20; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '\n' || c == '\r')
      break;
    near[k++] = (char)(isprint(c) ? c : '?');
  }
  near[k] = 0;
  if (len == 0)
    return mlc_err(MLC_ERR_FORMAT, "%s: invalid JSON: empty input", filename);
  if (pos >= len)
    return mlc_err(MLC_ERR_FORMAT,
                   "%s: invalid JSON at line %d, column %d (byte %zu): unexpected end of input",
                   filename, line, col, pos);
  return mlc_err(MLC_ERR_FORMAT, "%s: invalid JSON at line %d, column %d (byte %zu), near '%s'",
                 filename, line, col, pos, near);
}

mlc_status mlc_json_parse_len(const char *text, size_t len, const char *filename, cJSON **out) {
  *out = NULL;
  if (!filename)
    filename = "<json>";
  if (!text)
    return mlc_err(MLC_ERR_INVALID_ARG, "%s: no JSON text given", filename);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
  if (!root) {
    size_t pos = len;
    if (end && end >= text && end <= text + len)
      pos = (size_t)(end - text);
    return json_error(text, len, pos, filename);
  }
  /* Only whitespace (or trailing NULs) may follow the value. */
  size_t pos = end ? (size_t)(end - text) : len;
  for (size_t i = pos; i < len; i++) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0)
      continue;
    cJSON_Delete(root);
    return mlc_err(MLC_ERR_FORMAT,
                   "%s: invalid JSON: unexpected data after the end of the value at byte %zu",
                   filename, i);
  }
  *out = root;
  return MLC_OK;
}

mlc_status mlc_json_parse(const char *text, const char *filename, cJSON **out) {
  *out = NULL;
  if (!text)
    return mlc_err(MLC_ERR_INVALID_ARG, "%s: no JSON text given", filename ? filename : "<json>");
  return mlc_json_parse_len(text, strlen(text), filename, out);
}

mlc_status mlc_json_load(const char *path, cJSON **out) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  MLC_TRY(mlc_read_file(path, &text, &len));
  mlc_status st = mlc_json_parse_len(text, len, path, out);
  free(text);
  return st;
}

/* Renders a JSON value briefly for error messages: "four", 12, true, null, an array, an object. */
void mlc_json_describe(const cJSON *v, char *buf, size_t n) {
  if (!n)
    return;
  if (!v) {
    snprintf(buf, n, "nothing");
  } else if (cJSON_IsString(v)) {
    const char *s = v->valuestring ? v->valuestring : "";
    if (strlen(s) > 40)
      snprintf(buf, n, "\"%.40s...\"", s);
    else
      snprintf(buf, n, "\"%s\"", s);
  } else if (cJSON_IsNumber(v)) {
    snprintf(buf, n, "%.17g", v->valuedouble);
  } else if (cJSON_IsTrue(v)) {
    snprintf(buf, n, "true");
  } else if (cJSON_IsFalse(v)) {
    snprintf(buf, n, "false");
  } else if (cJSON_IsNull(v)) {
    snprintf(buf, n, "null");
  } else if (cJSON_IsArray(v)) {
    snprintf(buf, n, "an array");
  } else if (cJSON_IsObject(v)) {
    snprintf(buf, n, "an object");
  } else {
    snprintf(buf, n, "an invalid value");
  }
}
