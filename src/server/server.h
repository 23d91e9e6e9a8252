/* server.h: the OpenAI-compatible HTTP server on the engine (docs/engine.md, "The server"). */
#ifndef MLC_SERVER_H
#define MLC_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "mlc.h"

typedef struct mlc_serve_options {
  const char *model_dir;
  const char *model_id;  /* the name clients use; NULL: the directory's base name */
  const char *host;      /* IPv4 address; NULL: 127.0.0.1 */
  int port;              /* 0: any free port (printed) */
  const char *api_key;   /* NULL: no auth */
  int timeout_s;         /* idle connection / slow body timeout; 0: 30 */
  size_t max_body;       /* bytes; 0: 1 MiB */
  int max_queue;         /* requests waiting for admission before new ones get 429; 0: 256 */
  mlc_engine_options engine;
} mlc_serve_options;

/* Loads the model, serves until *stop becomes nonzero, then shuts down. Prints
 * "mlc serve: listening on http://HOST:PORT" on stdout once ready. Returns 0 or 1. */
int mlc_serve_run(const mlc_serve_options *o, volatile sig_atomic_t *stop);

/* Tool calls in a model's reply: <tool_call>{json}</tool_call> blocks (Hermes / Qwen style), or the
 * whole reply being {"name", "arguments" | "parameters"} or a list of them; names must be among
 * `tools` (OpenAI tools array). Returns OpenAI tool_calls [{id, type, function: {name, arguments as
 * a JSON string}}] or NULL; *rest gets the text outside the calls (heap) or NULL. */
#include <cjson/cJSON.h>
cJSON *mlc_server_parse_tool_calls(const cJSON *tools, const char *text, char **rest);

#endif
