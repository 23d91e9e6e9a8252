/* test_serve_unit.c: pieces of the server that a tiny model cannot exercise end to end: tool-call
 * parsing into OpenAI tool_calls (arguments as JSON strings, finish_reason tool_calls). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static int passed, failed;
static void check(bool ok, const char *what) {
  if (ok)
    passed++;
  else {
    failed++;
    printf("FAIL %s\n", what);
  }
}

static const char *arg_of(cJSON *calls, int i) {
  cJSON *fn = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, i), "function");
  cJSON *a = cJSON_GetObjectItem(fn, "arguments");
  return cJSON_IsString(a) ? a->valuestring : NULL;
}
static const char *name_of(cJSON *calls, int i) {
  cJSON *fn = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, i), "function");
  cJSON *a = cJSON_GetObjectItem(fn, "name");
  return cJSON_IsString(a) ? a->valuestring : NULL;
}

int main(void) {
  cJSON *tools = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{}}},"
                             "{\"type\":\"function\",\"function\":{\"name\":\"add\"}}]");
  char *rest = NULL;
  cJSON *c = mlc_server_parse_tool_calls(
      tools, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", &rest);
  check(c && cJSON_GetArraySize(c) == 1 && !strcmp(name_of(c, 0), "get_weather") &&
            !strcmp(arg_of(c, 0), "{\"city\":\"Paris\"}"),
        "hermes-style call, arguments as a JSON string");
  check(rest && !strcmp(rest, "Let me check.\n"), "text outside the call is kept");
  cJSON *id = cJSON_GetObjectItem(cJSON_GetArrayItem(c, 0), "id");
  check(cJSON_IsString(id) && !strncmp(id->valuestring, "call_", 5), "call id");
  cJSON_Delete(c);
  free(rest);
  c = mlc_server_parse_tool_calls(tools, " [{\"name\":\"add\",\"parameters\":{\"a\":1,\"b\":2}}, {\"name\":\"get_weather\",\"arguments\":\"{}\"}]", &rest);
  check(c && cJSON_GetArraySize(c) == 2 && !strcmp(arg_of(c, 0), "{\"a\":1,\"b\":2}") && !strcmp(arg_of(c, 1), "{}"),
        "a JSON list of calls; string arguments kept");
  check(!rest, "nothing else");
  cJSON_Delete(c);
  c = mlc_server_parse_tool_calls(tools, "{\"name\":\"rm_rf\",\"arguments\":{}}", &rest);
  check(!c, "an unknown tool name is plain text");
  c = mlc_server_parse_tool_calls(tools, "The weather is fine.", &rest);
  check(!c, "plain text has no calls");
  c = mlc_server_parse_tool_calls(tools, "<tool_call>{not json}</tool_call>", &rest);
  check(!c, "a broken call is plain text");
  cJSON_Delete(tools);
  printf("test_serve_unit: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
