/* chat.h: chat prompts from a model's chat template (HF Jinja `chat_template`) or from MLC's
 * conversation-template JSON (`conv_template` in mlc-chat-config.json). */
#ifndef MLC_CHAT_H
#define MLC_CHAT_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "base/base.h"

/* Renders a chat template as transformers' apply_chat_template(..., tokenize=False) does.
 * messages/tools: cJSON arrays (tools may be NULL: the template sees tools=None); extra: a cJSON
 * object of extra variables (may be NULL, e.g. {"enable_thinking": false}); bos_token/eos_token
 * (NULL -> ""). out: heap string the caller frees. Errors name the template line. */
mlc_status mlc_chat_render(const char *template_src, const cJSON *messages, const cJSON *tools,
                           bool add_generation_prompt, const char *bos_token, const char *eos_token,
                           const cJSON *extra, char **out);

/* Convenience: dir holds tokenizer_config.json (chat_template as a string, or a list of
 * {name, template}: "tool_use" when tools are given and it exists, else "default"); a
 * chat_template.jinja file in dir overrides it (as newer transformers do), then chat_template.json.
 * The special tokens of tokenizer_config.json (bos_token, eos_token, unk_token, pad_token, ...: a
 * string or an {"content": ...} object) are variables; a token that is null or absent is undefined. */
mlc_status mlc_chat_render_dir(const char *dir, const cJSON *messages, const cJSON *tools,
                               bool add_generation_prompt, const cJSON *extra, char **out);

/* Loads the chat template source of dir as mlc_chat_render_dir chooses it (heap string). */
mlc_status mlc_chat_template_load(const char *dir, bool with_tools, char **out);

/* Renders MLC's Conversation template (mlc_llm/protocol/conversation_protocol.py as_prompt):
 * system messages in `messages` replace system_message; the others (OpenAI-style
 * {"role","content"} objects, content a string, null or a list of {"type":"text","text"} parts)
 * follow the template's own `messages`; add_generation_prompt appends the empty assistant turn
 * (roles.assistant + role_empty_sep). With strip_reasoning_in_history, assistant turns before the
 * last user message keep only the text after their last "</think>" (leading whitespace dropped).
 * The last "{function_string}" gets function_string, other occurrences are removed. */
mlc_status mlc_chat_render_conv(const cJSON *conv_template, const cJSON *messages,
                                bool add_generation_prompt, char **out);

#endif
