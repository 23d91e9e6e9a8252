/* server.c: `mlc serve`: OpenAI-compatible routes on libmicrohttpd (one thread per connection)
 * over the continuous-batching engine. Design: docs/engine.md. */
#include "server/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "engine/engine.h"
#include "engine/grammar.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

/* ---- server state and metrics ---- */

#define NBUCKET 12
static const double k_buckets[NBUCKET] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

typedef struct hist {
  uint64_t b[NBUCKET], count;
  double sum;
} hist;

/* One TCP connection (MHD_OPTION_NOTIFY_CONNECTION), for the header watchdog: a client that has not
 * finished sending a request's headers `timeout_s` after the connection opened (or after the
 * previous response) is answered 408 and shut down, even if it trickles bytes (libmicrohttpd's
 * own timeout only ends connections that send nothing at all). */
typedef struct conn_rec {
  int fd;
  double phase_t0; /* when the current request's headers began */
  bool in_request; /* headers complete: the handler owns the connection */
  bool killed;
  struct conn_rec *prev, *next;
} conn_rec;

typedef struct server {
  const mlc_serve_options *o;
  mlc_engine *e;
  const mlc_tokenizer *tok;
  char *model_id;
  int ctx;
  time_t started;
  pthread_mutex_t mu; /* metrics below */
  uint64_t http_by_code[6]; /* 2xx..5xx by hundreds: index code/100 */
  uint64_t http_codes[600];
  uint64_t req_chat, req_cmpl, disconnects;
  hist ttft, e2e, itl;
  uint64_t rejected_queue, header_timeouts;
  pthread_mutex_t qmu; /* serialises the queue-cap check with the submit that follows it */
  pthread_mutex_t cmu; /* the connection list */
  conn_rec *conns;
  pthread_t watchdog;
  volatile bool wd_quit;
} server;

static void hist_add(hist *h, double v) {
  for (int i = 0; i < NBUCKET; i++)
    if (v <= k_buckets[i])
      h->b[i]++;
  h->count++;
  h->sum += v;
}

/* ---- per-connection state ---- */

typedef struct conn_state {
  mlc_buf body;
  double t0;
  bool too_big, replied;
} conn_state;

/* ---- responses ---- */

static void add_cors(struct MHD_Response *r) {
  MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
  MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type, OpenAI-Organization, OpenAI-Project, X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Retry-Count, X-Stainless-Timeout");
  MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
}

static void count_code(server *S, unsigned code) {
  pthread_mutex_lock(&S->mu);
  if (code < 600)
    S->http_codes[code]++;
  pthread_mutex_unlock(&S->mu);
}

static enum MHD_Result reply(server *S, struct MHD_Connection *c, unsigned code, const char *ctype, char *body) {
  size_t n = body ? strlen(body) : 0;
  struct MHD_Response *r = MHD_create_response_from_buffer(n, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  if (ctype)
    MHD_add_response_header(r, "Content-Type", ctype);
  if (code == 429)
    MHD_add_response_header(r, "Retry-After", "1");
  add_cors(r);
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  count_code(S, code);
  return ret;
}

static enum MHD_Result reply_json(server *S, struct MHD_Connection *c, unsigned code, cJSON *j) {
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return reply(S, c, code, "application/json", s);
}

static const char *err_type(unsigned code) {
  switch (code) {
  case 401: return "authentication_error";
  case 404: return "invalid_request_error";
  case 408: return "timeout_error";
  case 413: return "invalid_request_error";
  case 429: return "rate_limit_error";
  case 503: return "server_error";
  default: return code >= 500 ? "server_error" : "invalid_request_error";
  }
}

static cJSON *error_json(unsigned code, const char *msg, const char *param, const char *ecode) {
  cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
  cJSON_AddStringToObject(e, "message", msg);
  cJSON_AddStringToObject(e, "type", err_type(code));
  if (param)
    cJSON_AddStringToObject(e, "param", param);
  else
    cJSON_AddNullToObject(e, "param");
  if (ecode)
    cJSON_AddStringToObject(e, "code", ecode);
  else
    cJSON_AddNullToObject(e, "code");
  return j;
}

static enum MHD_Result reply_error(server *S, struct MHD_Connection *c, unsigned code, const char *param,
                                   const char *ecode, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result reply_error(server *S, struct MHD_Connection *c, unsigned code, const char *param,
                                   const char *ecode, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return reply_json(S, c, code, error_json(code, msg, param, ecode));
}

/* An error written straight to a socket, for when libmicrohttpd cannot queue a response (mid-upload,
 * after its connection timeout, or inside the headers); the connection is then closed. */
static void raw_error_fd(server *S, int fd, unsigned code, const char *reason, const char *ecode, const char *msg) {
  cJSON *j = error_json(code, msg, NULL, ecode);
  char *body = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  mlc_buf b = {0};
  mlc_buf_printf(&b,
                 "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
                 "Access-Control-Allow-Origin: *\r\n\r\n%s",
                 code, reason, body ? strlen(body) : 0, body ? body : "");
  free(body);
  size_t off = 0;
  while (b.data && off < b.len) {
    ssize_t n = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  mlc_buf_free(&b);
  count_code(S, code);
}

static void raw_error(server *S, struct MHD_Connection *c, unsigned code, const char *reason, const char *ecode,
                      const char *msg) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (ci)
    raw_error_fd(S, ci->connect_fd, code, reason, ecode, msg);
}

/* ---- request parsing ---- */

typedef struct api_req {
  bool chat, stream, include_usage, echo, want_logprobs;
  int n, top_logprobs, max_tokens; /* max_tokens -1: unset */
  mlc_gen_params gp;
  char **stop;
  int nstop;
  int32_t *bias_ids, *stop_ids;
  float *bias_vals;
  int nbias, nstop_ids;
  int32_t **prompts;
  int *plens;
  int nprompts;
  char **prompt_texts; /* completions with echo */
  cJSON *tools;        /* owned copy */
  bool tools_on;
  char *schema;        /* response_format json_object / json_schema: the JSON Schema text */
} api_req;

static void api_req_free(api_req *q) {
  for (int i = 0; i < q->nstop; i++)
    free(q->stop[i]);
  free(q->stop);
  free(q->bias_ids);
  free(q->bias_vals);
  free(q->stop_ids);
  for (int i = 0; i < q->nprompts; i++) {
    free(q->prompts[i]);
    if (q->prompt_texts)
      free(q->prompt_texts[i]);
  }
  free(q->prompts);
  free(q->prompt_texts);
  free(q->plens);
  cJSON_Delete(q->tools);
  q->tools = NULL;
  free(q->schema);
  q->schema = NULL;
}

typedef struct perr {
  unsigned code;
  char param[64];
  char ecode[64];
  char msg[512];
} perr;

static bool fail(perr *e, unsigned code, const char *param, const char *ecode, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static bool fail(perr *e, unsigned code, const char *param, const char *ecode, const char *fmt, ...) {
  e->code = code;
  snprintf(e->param, sizeof e->param, "%s", param ? param : "");
  snprintf(e->ecode, sizeof e->ecode, "%s", ecode ? ecode : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return false;
}

static bool get_num(cJSON *body, const char *k, double lo, double hi, bool integer, double *out, perr *e) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(body, k);
  if (!v || cJSON_IsNull(v))
    return true;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
    return fail(e, 400, k, "invalid_type", "'%s' must be a number", k);
  double d = v->valuedouble;
  if (integer && d != floor(d))
    return fail(e, 400, k, "invalid_type", "'%s' must be an integer", k);
  if (d < lo || d > hi)
    return fail(e, 400, k, "invalid_value", "'%s' is %g; it must be between %g and %g", k, d, lo, hi);
  *out = d;
  return true;
}

static bool get_bool(cJSON *body, const char *k, bool *out, perr *e) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(body, k);
  if (!v || cJSON_IsNull(v))
    return true;
  if (!cJSON_IsBool(v))
    return fail(e, 400, k, "invalid_type", "'%s' must be a boolean", k);
  *out = cJSON_IsTrue(v);
  return true;
}

static bool tokenize(server *S, const char *text, bool add_special, int32_t **ids, int *n, perr *e) {
  if (mlc_tok_encode(S->tok, text, strlen(text), add_special, ids, n) != MLC_OK)
    return fail(e, 400, "prompt", NULL, "cannot tokenize the prompt: %s", mlc_last_error());
  return true;
}

static bool add_prompt(api_req *q, int32_t *ids, int n, char *text) {
  int32_t **np = realloc(q->prompts, sizeof *np * (size_t)(q->nprompts + 1));
  if (np)
    q->prompts = np;
  int *nl = realloc(q->plens, sizeof *nl * (size_t)(q->nprompts + 1));
  if (nl)
    q->plens = nl;
  char **nt = realloc(q->prompt_texts, sizeof *nt * (size_t)(q->nprompts + 1));
  if (nt)
    q->prompt_texts = nt;
  if (!np || !nl || !nt) {
    free(ids);
    free(text);
    return false;
  }
  q->prompts[q->nprompts] = ids;
  q->plens[q->nprompts] = n;
  q->prompt_texts[q->nprompts] = text;
  q->nprompts++;
  return true;
}

/* The text of a message's content: a string, null, or a list of text parts. */
static bool content_text(cJSON *content, int mi, mlc_buf *out, perr *e) {
  char param[48];
  snprintf(param, sizeof param, "messages[%d].content", mi);
  if (!content || cJSON_IsNull(content))
    return true;
  if (cJSON_IsString(content)) {
    mlc_buf_puts(out, content->valuestring);
    return true;
  }
  if (!cJSON_IsArray(content))
    return fail(e, 400, param, "invalid_type", "'%s' must be a string or an array of content parts", param);
  cJSON *part;
  cJSON_ArrayForEach(part, content) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "type");
    if (!cJSON_IsObject(part) || !cJSON_IsString(t))
      return fail(e, 400, param, "invalid_type", "each part of '%s' must be an object with a 'type'", param);
    if (strcmp(t->valuestring, "text"))
      return fail(e, 400, param, "unsupported_content", "content parts of type '%s' are not supported by this model (text only)",
                  t->valuestring);
    cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
    if (!cJSON_IsString(tx))
      return fail(e, 400, param, "invalid_type", "a text part of '%s' needs a string 'text'", param);
    mlc_buf_puts(out, tx->valuestring);
  }
  return true;
}

static const char *k_chat_fields[] = {"model", "messages", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
                                      "max_tokens", "max_completion_tokens", "n", "presence_penalty", "response_format",
                                      "seed", "stop", "stream", "stream_options", "temperature", "top_p", "tools",
                                      "tool_choice", "parallel_tool_calls", "user", "store", "metadata", "service_tier",
                                      "top_k", "min_p", "repetition_penalty", "ignore_eos", "stop_token_ids", NULL};
static const char *k_cmpl_fields[] = {"model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
                                      "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
                                      "suffix", "temperature", "top_p", "user", "top_k", "min_p", "repetition_penalty",
                                      "ignore_eos", "stop_token_ids", "response_format", NULL};

/* response_format: text, {"type": "json_object"}, or {"type": "json_schema", "json_schema": {"name",
 * "description", "schema", "strict"}}; the schema is compiled here so that an unsupported keyword
 * is a 400 naming it (the engine compiles it again from the text). */
static bool parse_response_format(cJSON *b, api_req *q, perr *e) {
  cJSON *rf = cJSON_GetObjectItemCaseSensitive(b, "response_format");
  if (!rf || cJSON_IsNull(rf))
    return true;
  cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
  if (!cJSON_IsObject(rf) || !cJSON_IsString(t))
    return fail(e, 400, "response_format", "invalid_type", "'response_format' must be an object with a 'type'");
  cJSON *it;
  cJSON_ArrayForEach(it, rf) {
    if (strcmp(it->string, "type") && strcmp(it->string, "json_schema"))
      return fail(e, 400, "response_format", "unknown_parameter", "Unrecognized response_format argument: %s", it->string);
  }
  if (!strcmp(t->valuestring, "text"))
    return true;
  if (!strcmp(t->valuestring, "json_object")) {
    q->schema = mlc_strdup("{\"type\":\"object\"}");
    return true;
  }
  if (strcmp(t->valuestring, "json_schema"))
    return fail(e, 400, "response_format.type", "invalid_value",
                "response_format type '%s' is not supported: use 'text', 'json_object' or 'json_schema'", t->valuestring);
  cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
  if (!cJSON_IsObject(js))
    return fail(e, 400, "response_format.json_schema", "missing_required_parameter",
                "response_format of type 'json_schema' needs a 'json_schema' object");
  cJSON_ArrayForEach(it, js) {
    const char *k = it->string;
    if (strcmp(k, "name") && strcmp(k, "description") && strcmp(k, "schema") && strcmp(k, "strict"))
      return fail(e, 400, "response_format.json_schema", "unknown_parameter", "Unrecognized json_schema argument: %s", k);
  }
  cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name"), *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
  if (name && !cJSON_IsString(name))
    return fail(e, 400, "response_format.json_schema.name", "invalid_type", "'json_schema.name' must be a string");
  if (strict && !cJSON_IsBool(strict) && !cJSON_IsNull(strict))
    return fail(e, 400, "response_format.json_schema.strict", "invalid_type", "'json_schema.strict' must be a boolean");
  cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
  cJSON *any = NULL;
  if (!schema || cJSON_IsNull(schema))
    schema = any = cJSON_CreateObject(); /* no schema: any JSON value */
  mlc_grammar *g = NULL;
  mlc_status st = mlc_grammar_compile_cjson(schema, &g);
  mlc_grammar_free(g);
  if (st != MLC_OK) {
    cJSON_Delete(any);
    return fail(e, 400, "response_format.json_schema.schema", st == MLC_ERR_UNSUPPORTED ? "unsupported_schema" : "invalid_schema",
                "%s", mlc_last_error());
  }
  q->schema = cJSON_PrintUnformatted(schema);
  cJSON_Delete(any);
  return true;
}

static bool parse_common(server *S, cJSON *b, api_req *q, perr *e) {
  const char **fields = q->chat ? k_chat_fields : k_cmpl_fields;
  cJSON *it;
  cJSON_ArrayForEach(it, b) {
    bool known = false;
    for (int i = 0; fields[i] && !known; i++)
      known = !strcmp(it->string, fields[i]);
    if (!known)
      return fail(e, 400, it->string, "unknown_parameter", "Unrecognized request argument supplied: %s", it->string);
  }
  cJSON *model = cJSON_GetObjectItemCaseSensitive(b, "model");
  if (!model)
    return fail(e, 400, "model", "missing_required_parameter", "you must provide a model parameter");
  if (!cJSON_IsString(model))
    return fail(e, 400, "model", "invalid_type", "'model' must be a string");
  if (strcmp(model->valuestring, S->model_id) && strcmp(model->valuestring, S->o->model_dir))
    return fail(e, 404, "model", "model_not_found", "The model '%s' does not exist (this server serves '%s')",
                model->valuestring, S->model_id);
  double d;
  mlc_gen_params *g = &q->gp;
  g->temperature = 1.0f;
  g->top_p = 1.0f;
  g->skip_special = 1;
  d = 1;
  if (!get_num(b, "temperature", 0, 2, false, &d, e))
    return false;
  g->temperature = (float)d;
  d = 1;
  if (!get_num(b, "top_p", 0, 1, false, &d, e))
    return false;
  if (d == 0)
    g->temperature = 0; /* top_p 0: only the top token */
  g->top_p = (float)d;
  d = 0;
  if (!get_num(b, "top_k", -1, 1e9, true, &d, e))
    return false;
  g->top_k = d < 0 ? 0 : (int)d;
  d = 0;
  if (!get_num(b, "min_p", 0, 1, false, &d, e))
    return false;
  g->min_p = (float)d;
  d = 0;
  if (!get_num(b, "presence_penalty", -2, 2, false, &d, e))
    return false;
  g->presence_penalty = (float)d;
  d = 0;
  if (!get_num(b, "frequency_penalty", -2, 2, false, &d, e))
    return false;
  g->frequency_penalty = (float)d;
  d = 1;
  if (!get_num(b, "repetition_penalty", 0.01, 10, false, &d, e))
    return false;
  g->repetition_penalty = (float)d;
  d = 1;
  if (!get_num(b, "n", 1, 16, true, &d, e))
    return false;
  q->n = (int)d;
  g->n = q->n;
  d = -1;
  if (!get_num(b, "seed", -9.2e18, 9.2e18, true, &d, e))
    return false;
  if (cJSON_GetObjectItemCaseSensitive(b, "seed") && !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(b, "seed"))) {
    g->has_seed = 1;
    g->seed = (uint64_t)(int64_t)d;
  }
  q->max_tokens = -1;
  const char *mt = q->chat && cJSON_GetObjectItemCaseSensitive(b, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  d = -1;
  if (!get_num(b, mt, 1, 1e9, true, &d, e))
    return false;
  q->max_tokens = (int)d;
  bool ign = false;
  if (!get_bool(b, "stream", &q->stream, e) || !get_bool(b, "ignore_eos", &ign, e))
    return false;
  g->ignore_eos = ign;
  cJSON *so = cJSON_GetObjectItemCaseSensitive(b, "stream_options");
  if (so && !cJSON_IsNull(so)) {
    if (!cJSON_IsObject(so))
      return fail(e, 400, "stream_options", "invalid_type", "'stream_options' must be an object");
    if (!q->stream)
      return fail(e, 400, "stream_options", "invalid_value", "'stream_options' is only allowed when 'stream' is true");
    cJSON_ArrayForEach(it, so) {
      if (strcmp(it->string, "include_usage"))
        return fail(e, 400, "stream_options", "unknown_parameter", "Unrecognized stream_options argument: %s", it->string);
    }
    if (!get_bool(so, "include_usage", &q->include_usage, e))
      return false;
  }
  /* stop: a string or up to 4 strings (we allow 16) */
  cJSON *stop = cJSON_GetObjectItemCaseSensitive(b, "stop");
  if (stop && !cJSON_IsNull(stop)) {
    if (cJSON_IsString(stop)) {
      q->stop = calloc(1, sizeof(char *));
      if (q->stop && *stop->valuestring)
        q->stop[q->nstop++] = mlc_strdup(stop->valuestring);
    } else if (cJSON_IsArray(stop) && cJSON_GetArraySize(stop) <= 16) {
      q->stop = calloc((size_t)cJSON_GetArraySize(stop) + 1, sizeof(char *));
      cJSON_ArrayForEach(it, stop) {
        if (!cJSON_IsString(it))
          return fail(e, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
        if (*it->valuestring && q->stop)
          q->stop[q->nstop++] = mlc_strdup(it->valuestring);
      }
    } else
      return fail(e, 400, "stop", "invalid_type", "'stop' must be a string or an array of at most 16 strings");
  }
  cJSON *sti = cJSON_GetObjectItemCaseSensitive(b, "stop_token_ids");
  if (sti && !cJSON_IsNull(sti)) {
    if (!cJSON_IsArray(sti))
      return fail(e, 400, "stop_token_ids", "invalid_type", "'stop_token_ids' must be an array of integers");
    q->stop_ids = calloc((size_t)cJSON_GetArraySize(sti) + 1, sizeof(int32_t));
    cJSON_ArrayForEach(it, sti) {
      if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
          it->valuedouble >= mlc_engine_vocab_size(S->e))
        return fail(e, 400, "stop_token_ids", "invalid_value", "'stop_token_ids' must hold token ids of this model");
      q->stop_ids[q->nstop_ids++] = (int32_t)it->valuedouble;
    }
  }
  cJSON *lb = cJSON_GetObjectItemCaseSensitive(b, "logit_bias");
  if (lb && !cJSON_IsNull(lb)) {
    if (!cJSON_IsObject(lb))
      return fail(e, 400, "logit_bias", "invalid_type", "'logit_bias' must be an object mapping token ids to numbers");
    int cnt = cJSON_GetArraySize(lb);
    q->bias_ids = calloc((size_t)cnt + 1, sizeof(int32_t));
    q->bias_vals = calloc((size_t)cnt + 1, sizeof(float));
    cJSON_ArrayForEach(it, lb) {
      char *end;
      long id = strtol(it->string, &end, 10);
      if (!*it->string || *end || id < 0 || id >= mlc_engine_vocab_size(S->e))
        return fail(e, 400, "logit_bias", "invalid_value", "logit_bias key '%s' is not a token id of this model (0..%d)",
                    it->string, mlc_engine_vocab_size(S->e) - 1);
      if (!cJSON_IsNumber(it) || !(it->valuedouble >= -100 && it->valuedouble <= 100))
        return fail(e, 400, "logit_bias", "invalid_value", "logit_bias values must be numbers in -100..100");
      q->bias_ids[q->nbias] = (int32_t)id;
      q->bias_vals[q->nbias++] = (float)it->valuedouble;
    }
  }
  cJSON *user = cJSON_GetObjectItemCaseSensitive(b, "user");
  if (user && !cJSON_IsNull(user) && !cJSON_IsString(user))
    return fail(e, 400, "user", "invalid_type", "'user' must be a string");
  return true;
}

static bool parse_chat(server *S, cJSON *b, api_req *q, perr *e) {
  q->chat = true;
  if (!parse_common(S, b, q, e))
    return false;
  bool lp = false;
  if (!get_bool(b, "logprobs", &lp, e))
    return false;
  q->want_logprobs = lp;
  double d = 0;
  if (!get_num(b, "top_logprobs", 0, 20, true, &d, e))
    return false;
  if (d > 0 && !lp)
    return fail(e, 400, "top_logprobs", "invalid_value", "'top_logprobs' needs 'logprobs' to be true");
  q->top_logprobs = (int)d;
  if (!parse_response_format(b, q, e))
    return false;
  cJSON *tools = cJSON_GetObjectItemCaseSensitive(b, "tools");
  if (tools && !cJSON_IsNull(tools)) {
    if (!cJSON_IsArray(tools))
      return fail(e, 400, "tools", "invalid_type", "'tools' must be an array");
    cJSON *t;
    cJSON_ArrayForEach(t, tools) {
      cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type"), *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
      if (!cJSON_IsObject(t) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !cJSON_IsObject(fn) ||
          !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name")))
        return fail(e, 400, "tools", "invalid_value", "each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if (cJSON_GetArraySize(tools) > 0) {
      q->tools = cJSON_Duplicate(tools, true);
      q->tools_on = true;
    }
  }
  cJSON *tc = cJSON_GetObjectItemCaseSensitive(b, "tool_choice");
  if (tc && !cJSON_IsNull(tc)) {
    if (cJSON_IsString(tc)) {
      if (!strcmp(tc->valuestring, "none"))
        q->tools_on = false;
      else if (strcmp(tc->valuestring, "auto") && strcmp(tc->valuestring, "required"))
        return fail(e, 400, "tool_choice", "invalid_value", "'tool_choice' must be none, auto, required or a function");
    } else if (!cJSON_IsObject(tc))
      return fail(e, 400, "tool_choice", "invalid_type", "'tool_choice' must be a string or an object");
    if (!q->tools && !(cJSON_IsString(tc) && !strcmp(tc->valuestring, "none")))
      return fail(e, 400, "tool_choice", "invalid_value", "'tool_choice' is only allowed when 'tools' are given");
  }
  cJSON *msgs = cJSON_GetObjectItemCaseSensitive(b, "messages");
  if (!msgs)
    return fail(e, 400, "messages", "missing_required_parameter", "you must provide a 'messages' parameter");
  if (!cJSON_IsArray(msgs))
    return fail(e, 400, "messages", "invalid_type", "'messages' must be an array");
  if (cJSON_GetArraySize(msgs) == 0)
    return fail(e, 400, "messages", "empty_array", "'messages' must hold at least one message");
  if (!S->tok)
    return fail(e, 400, "messages", NULL, "this model has no tokenizer: use /v1/completions with token ids");
  /* normalise for the template: content as a string, developer -> system, arguments as objects */
  cJSON *norm = cJSON_CreateArray();
  int mi = 0;
  cJSON *m;
  cJSON_ArrayForEach(m, msgs) {
    char param[48];
    snprintf(param, sizeof param, "messages[%d]", mi);
    cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
      cJSON_Delete(norm);
      return fail(e, 400, param, "invalid_type", "'%s' must be an object with a string 'role'", param);
    }
    const char *r = role->valuestring;
    if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
      cJSON_Delete(norm);
      return fail(e, 400, param, "invalid_value", "'%s.role' is '%s'; it must be system, developer, user, assistant or tool",
                  param, r);
    }
    cJSON *it;
    cJSON_ArrayForEach(it, m) {
      const char *k = it->string;
      if (strcmp(k, "role") && strcmp(k, "content") && strcmp(k, "name") && strcmp(k, "tool_calls") &&
          strcmp(k, "tool_call_id") && strcmp(k, "refusal")) {
        cJSON_Delete(norm);
        return fail(e, 400, param, "unknown_parameter", "Unrecognized argument in %s: %s", param, k);
      }
    }
    cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if ((!content || cJSON_IsNull(content)) && !(strcmp(r, "assistant") == 0 && calls)) {
      cJSON_Delete(norm);
      return fail(e, 400, param, "missing_required_parameter", "'%s' needs 'content'", param);
    }
    mlc_buf text = {0};
    if (!content_text(content, mi, &text, e)) {
      mlc_buf_free(&text);
      cJSON_Delete(norm);
      return false;
    }
    cJSON *nm = cJSON_CreateObject();
    cJSON_AddStringToObject(nm, "role", !strcmp(r, "developer") ? "system" : r);
    cJSON_AddStringToObject(nm, "content", text.data ? text.data : "");
    mlc_buf_free(&text);
    cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
    if (cJSON_IsString(name))
      cJSON_AddStringToObject(nm, "name", name->valuestring);
    cJSON *tcid = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
    if (cJSON_IsString(tcid))
      cJSON_AddStringToObject(nm, "tool_call_id", tcid->valuestring);
    if (cJSON_IsArray(calls)) {
      cJSON *nc = cJSON_Duplicate(calls, true), *call;
      cJSON_ArrayForEach(call, nc) {
        cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
        cJSON *args = fn ? cJSON_GetObjectItemCaseSensitive(fn, "arguments") : NULL;
        if (cJSON_IsString(args)) {
          cJSON *parsed = cJSON_Parse(args->valuestring);
          if (parsed)
            cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed);
        }
      }
      cJSON_AddItemToObject(nm, "tool_calls", nc);
    }
    cJSON_AddItemToArray(norm, nm);
    mi++;
  }
  char *prompt = NULL;
  mlc_status st = mlc_chat_render_dir(mlc_engine_model_dir(S->e), norm, q->tools_on ? q->tools : NULL, true, NULL, &prompt);
  cJSON_Delete(norm);
  if (st != MLC_OK)
    return fail(e, 400, "messages", NULL, "the chat template failed: %s", mlc_last_error());
  int32_t *ids;
  int n;
  bool ok = tokenize(S, prompt, false, &ids, &n, e);
  free(prompt);
  if (!ok)
    return false;
  if (!add_prompt(q, ids, n, NULL))
    return fail(e, 500, NULL, NULL, "out of memory");
  return true;
}

static bool parse_completions(server *S, cJSON *b, api_req *q, perr *e) {
  q->chat = false;
  if (!parse_common(S, b, q, e))
    return false;
  double d = -1;
  if (!get_num(b, "logprobs", 0, 5, true, &d, e))
    return false;
  if (d >= 0) {
    q->want_logprobs = true;
    q->top_logprobs = (int)d;
  }
  d = 1;
  if (!get_num(b, "best_of", 1, 1, true, &d, e))
    return false;
  if (!parse_response_format(b, q, e))
    return false;
  if (!get_bool(b, "echo", &q->echo, e))
    return false;
  cJSON *suffix = cJSON_GetObjectItemCaseSensitive(b, "suffix");
  if (suffix && !cJSON_IsNull(suffix) && !(cJSON_IsString(suffix) && !*suffix->valuestring))
    return fail(e, 400, "suffix", "unsupported_value", "'suffix' is not supported by this model");
  cJSON *p = cJSON_GetObjectItemCaseSensitive(b, "prompt");
  if (!p || cJSON_IsNull(p))
    return fail(e, 400, "prompt", "missing_required_parameter", "you must provide a 'prompt' parameter");
  int V = mlc_engine_vocab_size(S->e);
  /* string | [string] | [int] | [[int]] */
  cJSON *list = cJSON_IsArray(p) ? p : NULL;
  bool ints = list && cJSON_GetArraySize(list) > 0 && cJSON_IsNumber(cJSON_GetArrayItem(list, 0));
  if (cJSON_IsString(p) || ints) {
    list = NULL;
  } else if (!list || cJSON_GetArraySize(list) == 0)
    return fail(e, 400, "prompt", "invalid_type", "'prompt' must be a non-empty string, array of strings, array of token ids or array of arrays of token ids");
  if (list && cJSON_GetArraySize(list) > 16)
    return fail(e, 400, "prompt", "invalid_value", "at most 16 prompts per request");
  cJSON *one = list ? list->child : p;
  for (; one; one = list ? one->next : NULL) {
    int32_t *ids = NULL;
    int n = 0;
    char *text = NULL;
    if (cJSON_IsString(one)) {
      if (!S->tok)
        return fail(e, 400, "prompt", NULL, "this model has no tokenizer: send the prompt as token ids");
      if (!*one->valuestring)
        return fail(e, 400, "prompt", "invalid_value", "'prompt' must not be empty");
      if (!tokenize(S, one->valuestring, true, &ids, &n, e))
        return false;
      text = mlc_strdup(one->valuestring);
    } else if (cJSON_IsArray(one) && cJSON_GetArraySize(one) > 0) {
      n = cJSON_GetArraySize(one);
      ids = malloc(sizeof(int32_t) * (size_t)n);
      int k = 0;
      cJSON *t;
      cJSON_ArrayForEach(t, one) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 || t->valuedouble >= V) {
          free(ids);
          return fail(e, 400, "prompt", "invalid_value", "prompt token ids must be integers in 0..%d", V - 1);
        }
        ids[k++] = (int32_t)t->valuedouble;
      }
      if (q->echo && S->tok)
        mlc_tok_decode(S->tok, ids, n, false, &text);
    } else
      return fail(e, 400, "prompt", "invalid_type", "'prompt' must be a non-empty string, array of strings, array of token ids or array of arrays of token ids");
    if (n == 0) {
      free(ids);
      free(text);
      return fail(e, 400, "prompt", "invalid_value", "the prompt has no tokens");
    }
    if (!add_prompt(q, ids, n, text))
      return fail(e, 500, NULL, NULL, "out of memory");
    if (!list)
      break;
  }
  return true;
}

/* ---- running a request ---- */

typedef struct evq {
  int sub, index;
  int32_t token;
  float lp;
  int ntop;
  int32_t top_ids[20];
  float top_lps[20];
  char *text;
  mlc_finish fin;
  int prompt, completion, cached;
  char *err;
  struct evq *next;
} evq;

typedef struct choice_acc {
  mlc_buf text;
  cJSON *lp_content;                 /* chat logprobs.content */
  cJSON *tokens, *tlps, *tops, *offs; /* completions logprobs */
  int completion;
  mlc_finish fin;
  bool started;
  char *err;
} choice_acc;

typedef struct run_req run_req;
typedef struct sub_ctx {
  run_req *rr;
  int k;
  uint64_t id;
  bool done;
} sub_ctx;

struct run_req {
  server *S;
  struct MHD_Connection *conn;
  api_req q;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  evq *head, *tail;
  int subs, subs_done;
  sub_ctx *sc;
  double t0, t_first, t_last;
  int ntok_events;
  char id[40];
  time_t created;
  choice_acc *acc; /* [nprompts * n] */
  int prompt_tokens, cached_tokens;
  /* streaming */
  mlc_buf out;
  size_t out_pos;
  bool done_sent, cancelled, gone;
};

static void on_engine_event(void *user, const mlc_engine_event *ev) {
  sub_ctx *sc = user;
  run_req *rr = sc->rr;
  evq *x = calloc(1, sizeof *x);
  double now = mlc_now();
  pthread_mutex_lock(&rr->mu);
  if (x) {
    x->sub = sc->k;
    x->index = ev->index;
    x->token = ev->token;
    x->lp = ev->logprob;
    x->ntop = ev->n_top;
    memcpy(x->top_ids, ev->top_ids, sizeof(int32_t) * (size_t)ev->n_top);
    memcpy(x->top_lps, ev->top_logprobs, sizeof(float) * (size_t)ev->n_top);
    x->text = ev->text && *ev->text ? mlc_strdup(ev->text) : NULL;
    x->fin = ev->finish;
    x->prompt = ev->prompt_tokens;
    x->completion = ev->completion_tokens;
    x->cached = ev->cached_tokens;
    x->err = ev->error ? mlc_strdup(ev->error) : NULL;
    if (rr->tail)
      rr->tail->next = x;
    else
      rr->head = x;
    rr->tail = x;
  }
  if (ev->token >= 0) {
    if (!rr->t_first)
      rr->t_first = now;
    else {
      pthread_mutex_lock(&rr->S->mu);
      hist_add(&rr->S->itl, now - rr->t_last);
      pthread_mutex_unlock(&rr->S->mu);
    }
    rr->t_last = now;
  }
  if (ev->request_done) {
    sc->done = true;
    rr->subs_done++;
  }
  pthread_cond_broadcast(&rr->cv);
  pthread_mutex_unlock(&rr->mu);
}

static bool client_gone(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci)
    return false;
  char b;
  ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void cancel_all(run_req *rr) {
  for (int k = 0; k < rr->subs; k++)
    if (!rr->sc[k].done && rr->sc[k].id)
      mlc_engine_cancel(rr->S->e, rr->sc[k].id);
}

/* Waits until every submitted request of rr is done (after a cancel: within one step). */
static void wait_all_done(run_req *rr) {
  pthread_mutex_lock(&rr->mu);
  while (rr->subs_done < rr->subs)
    pthread_cond_wait(&rr->cv, &rr->mu);
  pthread_mutex_unlock(&rr->mu);
}

static void run_req_free(run_req *rr) {
  if (!rr)
    return;
  evq *x = rr->head;
  while (x) {
    evq *nx = x->next;
    free(x->text);
    free(x->err);
    free(x);
    x = nx;
  }
  int nc = rr->q.nprompts * rr->q.n;
  for (int i = 0; rr->acc && i < nc; i++) {
    mlc_buf_free(&rr->acc[i].text);
    cJSON_Delete(rr->acc[i].lp_content);
    cJSON_Delete(rr->acc[i].tokens);
    cJSON_Delete(rr->acc[i].tlps);
    cJSON_Delete(rr->acc[i].tops);
    cJSON_Delete(rr->acc[i].offs);
    free(rr->acc[i].err);
  }
  free(rr->acc);
  free(rr->sc);
  mlc_buf_free(&rr->out);
  api_req_free(&rr->q);
  pthread_mutex_destroy(&rr->mu);
  pthread_cond_destroy(&rr->cv);
  free(rr);
}

static void record_done(run_req *rr) {
  server *S = rr->S;
  pthread_mutex_lock(&S->mu);
  if (rr->t_first)
    hist_add(&S->ttft, rr->t_first - rr->t0);
  hist_add(&S->e2e, mlc_now() - rr->t0);
  pthread_mutex_unlock(&S->mu);
}

static const char *finish_str(mlc_finish f, bool tool) {
  switch (f) {
  case MLC_FINISH_STOP: return tool ? "tool_calls" : "stop";
  case MLC_FINISH_LENGTH: return "length";
  case MLC_FINISH_CANCELLED: return "abort";
  case MLC_FINISH_ERROR: return "error";
  default: return NULL;
  }
}

static char *token_str(server *S, int32_t id) {
  char *s = NULL;
  if (!S->tok || mlc_tok_decode(S->tok, &id, 1, false, &s) != MLC_OK)
    return mlc_strdup("");
  return s;
}

static cJSON *bytes_of(const char *s) {
  cJSON *a = cJSON_CreateArray();
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
  return a;
}

/* Chat logprobs entry for one token. */
static cJSON *chat_lp_entry(server *S, const evq *x) {
  cJSON *o = cJSON_CreateObject();
  char *t = token_str(S, x->token);
  cJSON_AddStringToObject(o, "token", t);
  cJSON_AddNumberToObject(o, "logprob", x->lp);
  cJSON_AddItemToObject(o, "bytes", bytes_of(t));
  free(t);
  cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
  for (int i = 0; i < x->ntop; i++) {
    cJSON *a = cJSON_CreateObject();
    char *u = token_str(S, x->top_ids[i]);
    cJSON_AddStringToObject(a, "token", u);
    cJSON_AddNumberToObject(a, "logprob", x->top_lps[i]);
    cJSON_AddItemToObject(a, "bytes", bytes_of(u));
    free(u);
    cJSON_AddItemToArray(tops, a);
  }
  return o;
}

/* Completions logprobs: appends one token to the four parallel arrays. */
static void cmpl_lp_add(server *S, choice_acc *a, const evq *x, int offset) {
  if (!a->tokens) {
    a->tokens = cJSON_CreateArray();
    a->tlps = cJSON_CreateArray();
    a->tops = cJSON_CreateArray();
    a->offs = cJSON_CreateArray();
  }
  char *t = token_str(S, x->token);
  cJSON_AddItemToArray(a->tokens, cJSON_CreateString(t));
  free(t);
  cJSON_AddItemToArray(a->tlps, cJSON_CreateNumber(x->lp));
  cJSON *m = cJSON_CreateObject();
  for (int i = 0; i < x->ntop; i++) {
    char *u = token_str(S, x->top_ids[i]);
    if (!cJSON_GetObjectItemCaseSensitive(m, u))
      cJSON_AddNumberToObject(m, u, x->top_lps[i]);
    free(u);
  }
  cJSON_AddItemToArray(a->tops, m);
  cJSON_AddItemToArray(a->offs, cJSON_CreateNumber(offset));
}

static cJSON *cmpl_lp_obj(choice_acc *a, bool detach) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "tokens", a->tokens ? a->tokens : cJSON_CreateArray());
  cJSON_AddItemToObject(o, "token_logprobs", a->tlps ? a->tlps : cJSON_CreateArray());
  cJSON_AddItemToObject(o, "top_logprobs", a->tops ? a->tops : cJSON_CreateArray());
  cJSON_AddItemToObject(o, "text_offset", a->offs ? a->offs : cJSON_CreateArray());
  if (detach)
    a->tokens = a->tlps = a->tops = a->offs = NULL;
  return o;
}

/* Tool calls in a reply: <tool_call>{json}</tool_call> blocks (Hermes / Qwen style) or the whole
 * reply being {"name", "arguments"|"parameters"} or a list of them. Names must be among the tools. */
cJSON *mlc_server_parse_tool_calls(const cJSON *tools, const char *text, char **rest) {
  *rest = NULL;
  cJSON *objs = cJSON_CreateArray();
  mlc_buf other = {0};
  const char *p = text;
  bool tagged = strstr(text, "<tool_call>") != NULL;
  if (tagged) {
    for (;;) {
      const char *a = strstr(p, "<tool_call>");
      if (!a) {
        mlc_buf_puts(&other, p);
        break;
      }
      mlc_buf_append(&other, p, (size_t)(a - p));
      a += strlen("<tool_call>");
      const char *z = strstr(a, "</tool_call>");
      size_t len = z ? (size_t)(z - a) : strlen(a);
      cJSON *j = cJSON_ParseWithLength(a, len);
      if (j)
        cJSON_AddItemToArray(objs, j);
      if (!z)
        break;
      p = z + strlen("</tool_call>");
    }
  } else {
    const char *s = text;
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
      s++;
    cJSON *j = (*s == '{' || *s == '[') ? cJSON_Parse(s) : NULL;
    if (cJSON_IsArray(j)) {
      cJSON *it;
      while ((it = cJSON_DetachItemFromArray(j, 0)))
        cJSON_AddItemToArray(objs, it);
      cJSON_Delete(j);
    } else if (j)
      cJSON_AddItemToArray(objs, j);
  }
  cJSON *calls = cJSON_CreateArray(), *o;
  cJSON_ArrayForEach(o, objs) {
    cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!args)
      args = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (!cJSON_IsString(name))
      continue;
    bool known = false;
    cJSON *t;
    cJSON_ArrayForEach(t, tools) {
      cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
      cJSON *n = cJSON_GetObjectItemCaseSensitive(fn, "name");
      known |= cJSON_IsString(n) && !strcmp(n->valuestring, name->valuestring);
    }
    if (!known)
      continue;
    cJSON *call = cJSON_CreateObject();
    char cid[32];
    snprintf(cid, sizeof cid, "call_%08x%08x", (unsigned)rand(), (unsigned)rand());
    cJSON_AddStringToObject(call, "id", cid);
    cJSON_AddStringToObject(call, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(call, "function");
    cJSON_AddStringToObject(fn, "name", name->valuestring);
    char *as = cJSON_IsString(args) ? mlc_strdup(args->valuestring) : args ? cJSON_PrintUnformatted(args) : mlc_strdup("{}");
    cJSON_AddStringToObject(fn, "arguments", as);
    free(as);
    cJSON_AddItemToArray(calls, call);
  }
  cJSON_Delete(objs);
  if (cJSON_GetArraySize(calls) == 0) {
    cJSON_Delete(calls);
    mlc_buf_free(&other);
    return NULL;
  }
  char *r = mlc_buf_take(&other);
  if (r) {
    char *s = r;
    while (*s == ' ' || *s == '\n')
      s++;
    if (*s)
      *rest = mlc_strdup(s);
    free(r);
  }
  return calls;
}

static cJSON *usage_json(run_req *rr) {
  int completion = 0, nc = rr->q.nprompts * rr->q.n;
  for (int i = 0; i < nc; i++)
    completion += rr->acc[i].completion;
  cJSON *u = cJSON_CreateObject();
  cJSON_AddNumberToObject(u, "prompt_tokens", rr->prompt_tokens);
  cJSON_AddNumberToObject(u, "completion_tokens", completion);
  cJSON_AddNumberToObject(u, "total_tokens", rr->prompt_tokens + completion);
  cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
  cJSON_AddNumberToObject(d, "cached_tokens", rr->cached_tokens);
  return u;
}

static cJSON *chunk_base(run_req *rr) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "id", rr->id);
  cJSON_AddStringToObject(j, "object", rr->q.chat ? "chat.completion.chunk" : "text_completion");
  cJSON_AddNumberToObject(j, "created", (double)rr->created);
  cJSON_AddStringToObject(j, "model", rr->S->model_id);
  cJSON_AddStringToObject(j, "system_fingerprint", "mlc-c");
  return j;
}

static void sse(run_req *rr, cJSON *j) {
  if (rr->q.include_usage && !cJSON_GetObjectItemCaseSensitive(j, "usage"))
    cJSON_AddNullToObject(j, "usage");
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  mlc_buf_puts(&rr->out, "data: ");
  mlc_buf_puts(&rr->out, s ? s : "{}");
  mlc_buf_puts(&rr->out, "\n\n");
  free(s);
}

/* Folds one event into the choice accumulators; when streaming, also writes SSE chunks. */
static void consume(run_req *rr, evq *x) {
  server *S = rr->S;
  api_req *q = &rr->q;
  int ci = x->sub * q->n + x->index;
  choice_acc *a = &rr->acc[ci];
  bool hold_text = q->chat && q->tools_on; /* tool calls are parsed from the whole reply */
  if (x->token >= 0) {
    a->completion = x->completion;
    if (q->want_logprobs) {
      if (q->chat) {
        if (!a->lp_content)
          a->lp_content = cJSON_CreateArray();
        cJSON_AddItemToArray(a->lp_content, chat_lp_entry(S, x));
      } else
        cmpl_lp_add(S, a, x, (int)a->text.len);
    }
  }
  if (x->fin) {
    a->completion = x->completion;
    if (x->index == 0)
      rr->cached_tokens += x->cached; /* once per submitted prompt */
  }
  size_t before = a->text.len;
  if (x->text)
    mlc_buf_puts(&a->text, x->text);
  if (x->fin) {
    a->fin = x->fin;
    if (x->err)
      a->err = mlc_strdup(x->err);
  }
  if (!q->stream)
    return;
  /* streaming output */
  if (q->chat) {
    if (!a->started) {
      a->started = true;
      cJSON *j = chunk_base(rr), *chs = cJSON_AddArrayToObject(j, "choices"), *c = cJSON_CreateObject();
      cJSON_AddNumberToObject(c, "index", ci);
      cJSON *d = cJSON_AddObjectToObject(c, "delta");
      cJSON_AddStringToObject(d, "role", "assistant");
      cJSON_AddStringToObject(d, "content", "");
      cJSON_AddNullToObject(c, "logprobs");
      cJSON_AddNullToObject(c, "finish_reason");
      cJSON_AddItemToArray(chs, c);
      sse(rr, j);
    }
    bool has_text = !hold_text && a->text.len > before;
    bool has_lp = q->want_logprobs && x->token >= 0 && a->lp_content && !hold_text;
    if (has_text || has_lp) {
      cJSON *j = chunk_base(rr), *chs = cJSON_AddArrayToObject(j, "choices"), *c = cJSON_CreateObject();
      cJSON_AddNumberToObject(c, "index", ci);
      cJSON *d = cJSON_AddObjectToObject(c, "delta");
      cJSON_AddStringToObject(d, "content", has_text ? a->text.data + before : "");
      if (has_lp) {
        cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
        cJSON_AddItemToObject(lp, "content", a->lp_content);
        a->lp_content = NULL;
      } else
        cJSON_AddNullToObject(c, "logprobs");
      cJSON_AddNullToObject(c, "finish_reason");
      cJSON_AddItemToArray(chs, c);
      sse(rr, j);
    }
    if (x->fin) {
      cJSON *j = chunk_base(rr), *chs = cJSON_AddArrayToObject(j, "choices"), *c = cJSON_CreateObject();
      cJSON_AddNumberToObject(c, "index", ci);
      cJSON *d = cJSON_AddObjectToObject(c, "delta");
      bool tool = false;
      if (hold_text) {
        char *rest = NULL;
        cJSON *calls = x->fin == MLC_FINISH_STOP || x->fin == MLC_FINISH_LENGTH
                           ? mlc_server_parse_tool_calls(q->tools, a->text.data ? a->text.data : "", &rest)
                           : NULL;
        if (calls) {
          tool = true;
          int k = 0;
          cJSON *call;
          cJSON_ArrayForEach(call, calls) cJSON_AddNumberToObject(call, "index", k++);
          cJSON_AddItemToObject(d, "tool_calls", calls);
          free(rest);
        } else if (a->text.len)
          cJSON_AddStringToObject(d, "content", a->text.data);
      }
      if (hold_text && q->want_logprobs && a->lp_content) {
        cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
        cJSON_AddItemToObject(lp, "content", a->lp_content);
        a->lp_content = NULL;
      } else
        cJSON_AddNullToObject(c, "logprobs");
      cJSON_AddStringToObject(c, "finish_reason", finish_str(x->fin, tool));
      cJSON_AddItemToArray(chs, c);
      sse(rr, j);
    }
  } else {
    bool has_text = a->text.len > before;
    if (has_text || x->fin || (q->want_logprobs && x->token >= 0)) {
      cJSON *j = chunk_base(rr), *chs = cJSON_AddArrayToObject(j, "choices"), *c = cJSON_CreateObject();
      cJSON_AddNumberToObject(c, "index", ci);
      cJSON_AddStringToObject(c, "text", has_text ? a->text.data + before : "");
      if (q->want_logprobs)
        cJSON_AddItemToObject(c, "logprobs", cmpl_lp_obj(a, true));
      else
        cJSON_AddNullToObject(c, "logprobs");
      if (x->fin)
        cJSON_AddStringToObject(c, "finish_reason", finish_str(x->fin, false));
      else
        cJSON_AddNullToObject(c, "finish_reason");
      cJSON_AddItemToArray(chs, c);
      sse(rr, j);
    }
  }
}

/* Pops all queued events (under rr->mu) and folds them in. Returns whether all are done. */
static bool drain(run_req *rr, bool block_ms100) {
  pthread_mutex_lock(&rr->mu);
  if (!rr->head && rr->subs_done < rr->subs && block_ms100) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&rr->cv, &rr->mu, &ts);
  }
  evq *x = rr->head;
  rr->head = rr->tail = NULL;
  bool done = rr->subs_done == rr->subs;
  pthread_mutex_unlock(&rr->mu);
  while (x) {
    evq *nx = x->next;
    consume(rr, x);
    free(x->text);
    free(x->err);
    free(x);
    x = nx;
  }
  return done;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  run_req *rr = cls;
  for (;;) {
    if (rr->out_pos < rr->out.len) {
      size_t n = rr->out.len - rr->out_pos;
      if (n > max)
        n = max;
      memcpy(buf, rr->out.data + rr->out_pos, n);
      rr->out_pos += n;
      if (rr->out_pos == rr->out.len) {
        rr->out.len = 0;
        rr->out_pos = 0;
      }
      return (ssize_t)n;
    }
    if (rr->done_sent)
      return MHD_CONTENT_READER_END_OF_STREAM;
    bool done = drain(rr, true);
    if (rr->out.len)
      continue;
    if (done) {
      /* errors, usage, [DONE] */
      int nc = rr->q.nprompts * rr->q.n;
      for (int i = 0; i < nc; i++)
        if (rr->acc[i].fin == MLC_FINISH_ERROR) {
          cJSON *j = error_json(500, rr->acc[i].err ? rr->acc[i].err : "generation failed", NULL, "engine_error");
          char *s = cJSON_PrintUnformatted(j);
          cJSON_Delete(j);
          mlc_buf_printf(&rr->out, "data: %s\n\n", s);
          free(s);
          break;
        }
      if (rr->q.include_usage) {
        cJSON *j = chunk_base(rr);
        cJSON_AddArrayToObject(j, "choices");
        cJSON_AddItemToObject(j, "usage", usage_json(rr));
        sse(rr, j);
      }
      mlc_buf_puts(&rr->out, "data: [DONE]\n\n");
      rr->done_sent = true;
      record_done(rr);
      continue;
    }
    if (client_gone(rr->conn)) {
      rr->gone = true;
      cancel_all(rr);
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
  }
}

static void stream_free(void *cls) {
  run_req *rr = cls;
  if (!rr->done_sent) {
    pthread_mutex_lock(&rr->S->mu);
    rr->S->disconnects++;
    pthread_mutex_unlock(&rr->S->mu);
  }
  cancel_all(rr);
  wait_all_done(rr);
  run_req_free(rr);
}

static enum MHD_Result handle_generate(server *S, struct MHD_Connection *c, api_req *q, double t0) {
  int ctx = S->ctx;
  for (int k = 0; k < q->nprompts; k++) {
    int n = q->plens[k];
    if (n + 1 > ctx) {
      api_req_free(q);
      return reply_error(S, c, 400, q->chat ? "messages" : "prompt", "context_length_exceeded",
                         "This model's maximum context length is %d tokens. However, your %s resulted in %d tokens. "
                         "Please reduce the length of the %s.",
                         ctx, q->chat ? "messages" : "prompt", n, q->chat ? "messages" : "prompt");
    }
    if (q->max_tokens > 0 && n + q->max_tokens > ctx) {
      api_req_free(q);
      return reply_error(S, c, 400, "max_tokens", "context_length_exceeded",
                         "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in "
                         "the %s, %d in the completion). Please reduce the length of the %s or completion.",
                         ctx, n + q->max_tokens, n, q->chat ? "messages" : "prompt", q->max_tokens,
                         q->chat ? "messages" : "prompt");
    }
  }
  run_req *rr = calloc(1, sizeof *rr);
  if (!rr) {
    api_req_free(q);
    return reply_error(S, c, 500, NULL, NULL, "out of memory");
  }
  rr->S = S;
  rr->conn = c;
  rr->q = *q;
  rr->t0 = t0;
  rr->created = time(NULL);
  snprintf(rr->id, sizeof rr->id, "%s-%08x%08x%08x", q->chat ? "chatcmpl" : "cmpl", (unsigned)rand(), (unsigned)rand(),
           (unsigned)rand());
  pthread_mutex_init(&rr->mu, NULL);
  pthread_cond_init(&rr->cv, NULL);
  int nc = q->nprompts * q->n;
  rr->acc = calloc((size_t)nc, sizeof *rr->acc);
  rr->sc = calloc((size_t)q->nprompts, sizeof *rr->sc);
  if (!rr->acc || !rr->sc) {
    run_req_free(rr);
    return reply_error(S, c, 500, NULL, NULL, "out of memory");
  }
  pthread_mutex_lock(&S->mu);
  if (q->chat)
    S->req_chat++;
  else
    S->req_cmpl++;
  pthread_mutex_unlock(&S->mu);
  mlc_gen_params gp = q->gp;
  gp.stop = (const char *const *)q->stop;
  gp.n_stop = q->nstop;
  gp.stop_ids = q->stop_ids;
  gp.n_stop_ids = q->nstop_ids;
  gp.bias_ids = q->bias_ids;
  gp.bias_values = q->bias_vals;
  gp.n_bias = q->nbias;
  gp.logprobs = q->want_logprobs;
  gp.top_logprobs = q->top_logprobs;
  gp.json_schema = q->schema;
  /* the queue cap: requests waiting for admission (the engine's count, exact at submit time) */
  pthread_mutex_lock(&S->qmu);
  mlc_engine_stats st0;
  mlc_engine_stats_get(S->e, &st0);
  if (st0.waiting >= S->o->max_queue) {
    pthread_mutex_unlock(&S->qmu);
    pthread_mutex_lock(&S->mu);
    S->rejected_queue++;
    pthread_mutex_unlock(&S->mu);
    run_req_free(rr);
    return reply_error(S, c, 429, NULL, "queue_full",
                       "The server is busy: %d requests are waiting (--max-queue %d). Please retry later.", st0.waiting,
                       S->o->max_queue);
  }
  for (int k = 0; k < q->nprompts; k++) {
    gp.max_tokens = q->max_tokens > 0 ? q->max_tokens : 0;
    rr->sc[k].rr = rr;
    rr->sc[k].k = k;
    rr->prompt_tokens += q->plens[k];
    if (q->echo && q->prompt_texts[k])
      for (int j = 0; j < q->n; j++)
        mlc_buf_puts(&rr->acc[k * q->n + j].text, q->prompt_texts[k]);
    mlc_status st = mlc_engine_submit(S->e, q->prompts[k], q->plens[k], &gp, on_engine_event, &rr->sc[k], &rr->sc[k].id);
    if (st != MLC_OK) {
      char msg[512];
      snprintf(msg, sizeof msg, "%s", mlc_last_error());
      pthread_mutex_unlock(&S->qmu);
      cancel_all(rr);
      wait_all_done(rr);
      run_req_free(rr);
      return reply_error(S, c, 400, NULL, st == MLC_ERR_LIMIT ? "context_length_exceeded" : NULL, "%s", msg);
    }
    pthread_mutex_lock(&rr->mu);
    rr->subs++;
    pthread_mutex_unlock(&rr->mu);
  }
  pthread_mutex_unlock(&S->qmu);
  if (q->stream) {
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, rr, stream_free);
    if (!r) {
      cancel_all(rr);
      wait_all_done(rr);
      run_req_free(rr);
      return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    add_cors(r);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    count_code(S, 200);
    return ret;
  }
  /* not streamed: wait here, watching the client */
  for (;;) {
    bool done = drain(rr, true);
    if (done) {
      drain(rr, false);
      break;
    }
    if (client_gone(c)) {
      cancel_all(rr);
      wait_all_done(rr);
      pthread_mutex_lock(&S->mu);
      S->disconnects++;
      pthread_mutex_unlock(&S->mu);
      run_req_free(rr);
      return MHD_NO;
    }
  }
  record_done(rr);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "id", rr->id);
  cJSON_AddStringToObject(j, "object", q->chat ? "chat.completion" : "text_completion");
  cJSON_AddNumberToObject(j, "created", (double)rr->created);
  cJSON_AddStringToObject(j, "model", S->model_id);
  cJSON_AddStringToObject(j, "system_fingerprint", "mlc-c");
  cJSON *chs = cJSON_AddArrayToObject(j, "choices");
  const char *err = NULL;
  for (int i = 0; i < nc; i++) {
    choice_acc *a = &rr->acc[i];
    if (a->fin == MLC_FINISH_ERROR)
      err = a->err ? a->err : "generation failed";
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", i);
    const char *text = a->text.data ? a->text.data : "";
    bool tool = false;
    if (q->chat) {
      cJSON *m = cJSON_AddObjectToObject(ch, "message");
      cJSON_AddStringToObject(m, "role", "assistant");
      char *rest = NULL;
      cJSON *calls = q->tools_on && (a->fin == MLC_FINISH_STOP || a->fin == MLC_FINISH_LENGTH) ? mlc_server_parse_tool_calls(q->tools, text, &rest) : NULL;
      if (calls) {
        tool = true;
        if (rest)
          cJSON_AddStringToObject(m, "content", rest);
        else
          cJSON_AddNullToObject(m, "content");
        cJSON_AddItemToObject(m, "tool_calls", calls);
        free(rest);
      } else
        cJSON_AddStringToObject(m, "content", text);
      cJSON_AddNullToObject(m, "refusal");
      if (q->want_logprobs) {
        cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
        cJSON_AddItemToObject(lp, "content", a->lp_content ? a->lp_content : cJSON_CreateArray());
        a->lp_content = NULL;
      } else
        cJSON_AddNullToObject(ch, "logprobs");
    } else {
      cJSON_AddStringToObject(ch, "text", text);
      if (q->want_logprobs)
        cJSON_AddItemToObject(ch, "logprobs", cmpl_lp_obj(a, true));
      else
        cJSON_AddNullToObject(ch, "logprobs");
    }
    cJSON_AddStringToObject(ch, "finish_reason", finish_str(a->fin, tool));
    cJSON_AddItemToArray(chs, ch);
  }
  cJSON_AddItemToObject(j, "usage", usage_json(rr));
  run_req_free(rr);
  if (err) {
    cJSON_Delete(j);
    return reply_error(S, c, 500, NULL, "engine_error", "%s", err);
  }
  return reply_json(S, c, 200, j);
}

/* ---- routes ---- */

static size_t current_rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
      res = 0;
    fclose(f);
  }
  return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static char *metrics_text(server *S) {
  mlc_engine_stats st;
  mlc_engine_stats_get(S->e, &st);
  mlc_buf b = {0};
#define COUNTER(name, help, v)                                                                   \
  mlc_buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)(v))
#define GAUGE(name, help, fmt, v) mlc_buf_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s " fmt "\n", name, help, name, name, v)
  mlc_buf_printf(&b, "# HELP mlc_requests_total Finished generation requests by finish reason.\n# TYPE mlc_requests_total counter\n");
  const char *names[5] = {"none", "stop", "length", "abort", "error"};
  for (int i = 1; i < 5; i++)
    mlc_buf_printf(&b, "mlc_requests_total{finish_reason=\"%s\"} %llu\n", names[i], (unsigned long long)st.requests_by_finish[i]);
  pthread_mutex_lock(&S->mu);
  mlc_buf_printf(&b, "# HELP mlc_http_requests_total HTTP responses by status code.\n# TYPE mlc_http_requests_total counter\n");
  for (int i = 100; i < 600; i++)
    if (S->http_codes[i])
      mlc_buf_printf(&b, "mlc_http_requests_total{code=\"%d\"} %llu\n", i, (unsigned long long)S->http_codes[i]);
  mlc_buf_printf(&b, "# HELP mlc_api_requests_total Generation requests by endpoint.\n# TYPE mlc_api_requests_total counter\n");
  mlc_buf_printf(&b, "mlc_api_requests_total{endpoint=\"chat\"} %llu\nmlc_api_requests_total{endpoint=\"completions\"} %llu\n",
                 (unsigned long long)S->req_chat, (unsigned long long)S->req_cmpl);
  COUNTER("mlc_client_disconnects_total", "Requests cancelled because the client went away.", S->disconnects);
  COUNTER("mlc_rejected_requests_total", "Requests refused with 429 because the queue was full (--max-queue).",
          S->rejected_queue);
  COUNTER("mlc_header_timeouts_total", "Connections closed because their headers did not arrive within --timeout.",
          S->header_timeouts);
  const struct {
    const char *name, *help;
    hist *h;
  } hs[3] = {{"mlc_time_to_first_token_seconds", "Time from request to first token.", &S->ttft},
             {"mlc_inter_token_latency_seconds", "Time between tokens of a request.", &S->itl},
             {"mlc_e2e_request_latency_seconds", "Time from request to the last token.", &S->e2e}};
  for (int k = 0; k < 3; k++) {
    mlc_buf_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hs[k].name, hs[k].help, hs[k].name);
    for (int i = 0; i < NBUCKET; i++)
      mlc_buf_printf(&b, "%s_bucket{le=\"%g\"} %llu\n", hs[k].name, k_buckets[i], (unsigned long long)hs[k].h->b[i]);
    mlc_buf_printf(&b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", hs[k].name,
                   (unsigned long long)hs[k].h->count, hs[k].name, hs[k].h->sum, hs[k].name,
                   (unsigned long long)hs[k].h->count);
  }
  pthread_mutex_unlock(&S->mu);
  COUNTER("mlc_prompt_tokens_total", "Prompt tokens of submitted requests.", st.prompt_tokens);
  COUNTER("mlc_generation_tokens_total", "Generated tokens.", st.generated_tokens);
  COUNTER("mlc_prefill_tokens_total", "Prompt tokens computed (not served from the prefix cache).", st.prefill_tokens);
  COUNTER("mlc_engine_steps_total", "Batched forward steps.", st.steps);
  COUNTER("mlc_device_sampled_tokens_total", "Generated tokens picked on the device (no logits read back).", st.device_sampled);
  COUNTER("mlc_preemptions_total", "Requests preempted when the KV cache ran out.", st.preemptions);
  COUNTER("mlc_prefix_cache_lookups_total", "Prefix cache lookups.", st.cache_lookups);
  COUNTER("mlc_prefix_cache_hits_total", "Prefix cache lookups that matched at least one page.", st.cache_hits);
  COUNTER("mlc_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.", st.cache_hit_tokens);
  GAUGE("mlc_prefix_cache_entries", "Cached prefixes.", "%d", st.cache_entries);
  GAUGE("mlc_prefix_cache_pages", "KV pages referenced by the prefix cache.", "%d", st.cache_pages);
  GAUGE("mlc_kv_cache_pages_used", "KV cache pages in use (16 tokens each).", "%d", st.kv_pages_used);
  GAUGE("mlc_kv_cache_pages_total", "KV cache pages.", "%d", st.kv_pages_total);
  GAUGE("mlc_kv_cache_usage_ratio", "Fraction of the KV cache in use.", "%.6f",
        st.kv_pages_total ? (double)st.kv_pages_used / st.kv_pages_total : 0.0);
  GAUGE("mlc_num_requests_running", "Requests being generated.", "%d", st.running);
  GAUGE("mlc_num_requests_waiting", "Requests waiting for admission.", "%d", st.waiting);
  GAUGE("mlc_generation_tokens_per_second", "Generated tokens per second over the last 8 s.", "%.3f", st.tokens_per_s);
  GAUGE("mlc_process_resident_memory_bytes", "Resident memory now.", "%zu", current_rss());
  GAUGE("mlc_process_peak_resident_memory_bytes", "Peak resident memory.", "%zu", mlc_peak_rss());
#undef COUNTER
#undef GAUGE
  return mlc_buf_take(&b);
}

static bool auth_ok(server *S, struct MHD_Connection *c) {
  if (!S->o->api_key || !*S->o->api_key)
    return true;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7))
    return false;
  h += 7;
  while (*h == ' ')
    h++;
  /* constant-time compare */
  size_t a = strlen(h), k = strlen(S->o->api_key);
  unsigned diff = (unsigned)(a ^ k);
  for (size_t i = 0; i < a && i < k; i++)
    diff |= (unsigned char)h[i] ^ (unsigned char)S->o->api_key[i];
  return diff == 0;
}

static enum MHD_Result route(server *S, struct MHD_Connection *c, const char *url, const char *method, conn_state *cs) {
  bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
  if (!strcmp(method, "OPTIONS"))
    return reply(S, c, 204, NULL, NULL);
  if (!strcmp(url, "/health") || !strcmp(url, "/v1/health")) {
    if (!get)
      return reply_error(S, c, 405, NULL, "method_not_allowed", "use GET for %s", url);
    return reply(S, c, 200, "application/json", mlc_strdup("{\"status\":\"ok\"}"));
  }
  if (!strcmp(url, "/metrics")) {
    if (!get)
      return reply_error(S, c, 405, NULL, "method_not_allowed", "use GET for %s", url);
    return reply(S, c, 200, "text/plain; version=0.0.4", metrics_text(S));
  }
  bool v1 = !strncmp(url, "/v1/", 4);
  if (!v1)
    return reply_error(S, c, 404, NULL, "not_found", "no route %s %s", method, url);
  if (!auth_ok(S, c))
    return reply_error(S, c, 401, NULL, "invalid_api_key",
                       "Incorrect API key provided. Send it as the header 'Authorization: Bearer KEY'.");
  if (!strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11)) {
    if (!get)
      return reply_error(S, c, 405, NULL, "method_not_allowed", "use GET for %s", url);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", S->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)S->started);
    cJSON_AddStringToObject(m, "owned_by", "mlc-c");
    cJSON_AddNumberToObject(m, "context_length", S->ctx);
    if (url[10] == '/') {
      if (strcmp(url + 11, S->model_id)) {
        cJSON_Delete(m);
        return reply_error(S, c, 404, "model", "model_not_found", "The model '%s' does not exist", url + 11);
      }
      return reply_json(S, c, 200, m);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(j, "data"), m);
    return reply_json(S, c, 200, j);
  }
  bool chat = !strcmp(url, "/v1/chat/completions"), cmpl = !strcmp(url, "/v1/completions");
  if (!chat && !cmpl)
    return reply_error(S, c, 404, NULL, "not_found", "no route %s %s", method, url);
  if (!post)
    return reply_error(S, c, 405, NULL, "method_not_allowed", "use POST for %s", url);
  if (!cs->body.len)
    return reply_error(S, c, 400, NULL, "invalid_json", "the request body is empty: send a JSON object");
  const char *end = NULL;
  cJSON *b = cJSON_ParseWithLengthOpts(cs->body.data, cs->body.len, &end, false);
  if (b && end) {
    while (end < cs->body.data + cs->body.len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
      end++;
    if (end != cs->body.data + cs->body.len) {
      cJSON_Delete(b);
      b = NULL;
    }
  }
  if (!b)
    return reply_error(S, c, 400, NULL, "invalid_json",
                       "We could not parse the JSON body of your request. The body must be a JSON object.");
  if (!cJSON_IsObject(b)) {
    cJSON_Delete(b);
    return reply_error(S, c, 400, NULL, "invalid_json", "the request body must be a JSON object");
  }
  api_req q = {0};
  perr e = {0};
  bool ok = chat ? parse_chat(S, b, &q, &e) : parse_completions(S, b, &q, &e);
  if (!ok) {
    api_req_free(&q);
    cJSON_Delete(b);
    return reply_json(S, c, e.code, error_json(e.code, e.msg, e.param[0] ? e.param : NULL, e.ecode[0] ? e.ecode : NULL));
  }
  cJSON_Delete(b);
  return handle_generate(S, c, &q, cs->t0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  server *S = cls;
  conn_state *cs = *con_cls;
  if (!cs) {
    cs = calloc(1, sizeof *cs);
    if (!cs)
      return MHD_NO;
    cs->t0 = mlc_now();
    *con_cls = cs;
    const union MHD_ConnectionInfo *sci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_rec *rec = sci ? sci->socket_context : NULL;
    if (rec) {
      pthread_mutex_lock(&S->cmu);
      rec->in_request = true;
      pthread_mutex_unlock(&S->cmu);
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > S->o->max_body) {
      cs->replied = true;
      return reply_error(S, c, 413, NULL, "request_too_large", "the request body (%s bytes) exceeds the limit of %zu bytes",
                         cl, S->o->max_body);
    }
    return MHD_YES;
  }
  if (cs->replied) {
    *upload_size = 0;
    return MHD_YES;
  }
  if (*upload_size) {
    char msg[160];
    if (cs->body.len + *upload_size > S->o->max_body) {
      cs->replied = true;
      snprintf(msg, sizeof msg, "the request body exceeds the limit of %zu bytes", S->o->max_body);
      raw_error(S, c, 413, "Payload Too Large", "request_too_large", msg);
      return MHD_NO;
    }
    if (mlc_now() - cs->t0 > S->o->timeout_s) {
      cs->replied = true;
      snprintf(msg, sizeof msg, "the request body took longer than %d s to arrive", S->o->timeout_s);
      raw_error(S, c, 408, "Request Timeout", "request_timeout", msg);
      return MHD_NO;
    }
    mlc_buf_append(&cs->body, upload, *upload_size);
    *upload_size = 0;
    return MHD_YES;
  }
  cs->replied = true;
  return route(S, c, url, method, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  server *S = cls;
  conn_state *cs = *con_cls;
  const union MHD_ConnectionInfo *sci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_rec *rec = sci ? sci->socket_context : NULL;
  if (rec) { /* the next request's headers start now (keep-alive) */
    pthread_mutex_lock(&S->cmu);
    rec->in_request = false;
    rec->phase_t0 = mlc_now();
    pthread_mutex_unlock(&S->cmu);
  }
  if (cs && !cs->replied && toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) {
    char msg[160];
    snprintf(msg, sizeof msg, "the request was not completed within %d s", ((server *)cls)->o->timeout_s);
    raw_error(cls, c, 408, "Request Timeout", "request_timeout", msg);
  }
  if (cs) {
    mlc_buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
  }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  server *S = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    conn_rec *rec = ci ? calloc(1, sizeof *rec) : NULL;
    *socket_context = rec;
    if (!rec)
      return;
    rec->fd = ci->connect_fd;
    rec->phase_t0 = mlc_now();
    pthread_mutex_lock(&S->cmu);
    rec->next = S->conns;
    if (S->conns)
      S->conns->prev = rec;
    S->conns = rec;
    pthread_mutex_unlock(&S->cmu);
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    /* libmicrohttpd calls this before it closes the socket, so the watchdog never touches a
     * reused descriptor */
    conn_rec *rec = *socket_context;
    if (!rec)
      return;
    pthread_mutex_lock(&S->cmu);
    if (rec->prev)
      rec->prev->next = rec->next;
    else
      S->conns = rec->next;
    if (rec->next)
      rec->next->prev = rec->prev;
    pthread_mutex_unlock(&S->cmu);
    free(rec);
    *socket_context = NULL;
  }
}

/* The header watchdog (see conn_rec). A connection that sends nothing is left to libmicrohttpd's
 * idle timeout, which fires first (the watchdog waits one more second). */
static void *watchdog_main(void *arg) {
  server *S = arg;
  while (!S->wd_quit) {
    usleep(200 * 1000);
    double now = mlc_now();
    pthread_mutex_lock(&S->cmu);
    for (conn_rec *r = S->conns; r; r = r->next)
      if (!r->in_request && !r->killed && now - r->phase_t0 > S->o->timeout_s + 1) {
        char msg[160];
        snprintf(msg, sizeof msg, "the request headers did not arrive within %d s", S->o->timeout_s);
        raw_error_fd(S, r->fd, 408, "Request Timeout", "request_timeout", msg);
        shutdown(r->fd, SHUT_RDWR); /* libmicrohttpd's connection thread sees EOF and closes it */
        r->killed = true;
        pthread_mutex_lock(&S->mu);
        S->header_timeouts++;
        pthread_mutex_unlock(&S->mu);
      }
    pthread_mutex_unlock(&S->cmu);
  }
  return NULL;
}

int mlc_serve_run(const mlc_serve_options *oin, volatile sig_atomic_t *stop) {
  mlc_serve_options o = *oin;
  if (!o.host)
    o.host = "127.0.0.1";
  if (!o.timeout_s)
    o.timeout_s = 30;
  if (!o.max_body)
    o.max_body = 1 << 20;
  if (!o.max_queue)
    o.max_queue = 256;
  server S = {.o = &o, .started = time(NULL)};
  pthread_mutex_init(&S.mu, NULL);
  pthread_mutex_init(&S.qmu, NULL);
  pthread_mutex_init(&S.cmu, NULL);
  srand((unsigned)(mlc_now() * 1e6) ^ (unsigned)getpid());
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
  const char *host = !strcmp(o.host, "localhost") ? "127.0.0.1" : o.host;
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "mlc serve: --host %s: not an IPv4 address\n", o.host);
    return 1;
  }
  if (mlc_engine_new(o.model_dir, &o.engine, &S.e) != MLC_OK) {
    fprintf(stderr, "mlc serve: %s\n", mlc_last_error());
    return 1;
  }
  S.tok = mlc_engine_tokenizer(S.e);
  S.ctx = mlc_engine_context(S.e);
  if (o.model_id)
    S.model_id = mlc_strdup(o.model_id);
  else {
    char *d = mlc_strdup(o.model_dir);
    size_t l = strlen(d);
    while (l > 1 && d[l - 1] == '/')
      d[--l] = 0;
    char *slash = strrchr(d, '/');
    S.model_id = mlc_strdup(slash ? slash + 1 : d);
    free(d);
  }
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, &S,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o.timeout_s,
      MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &S,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, &S,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "mlc serve: cannot listen on %s:%d (%s)\n", o.host, o.port, strerror(errno));
    mlc_engine_free(S.e);
    free(S.model_id);
    return 1;
  }
  bool wd = pthread_create(&S.watchdog, NULL, watchdog_main, &S) == 0;
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  int port = di ? di->port : o.port;
  printf("mlc serve: %s (context %d) listening on http://%s:%d\n", S.model_id, S.ctx, o.host, port);
  fflush(stdout);
  while (!*stop)
    usleep(100 * 1000);
  fprintf(stderr, "mlc serve: shutting down\n");
  S.wd_quit = true;
  if (wd)
    pthread_join(S.watchdog, NULL);
  MHD_stop_daemon(d);
  mlc_engine_free(S.e);
  free(S.model_id);
  pthread_mutex_destroy(&S.mu);
  pthread_mutex_destroy(&S.qmu);
  pthread_mutex_destroy(&S.cmu);
  return 0;
}
