/* tokenizer.h: Hugging Face compatible tokenizers (tokenizer.json / .json.gz), encode, decode and
 * streaming detokenization. Results match the `tokenizers` library (as used by transformers). */
#ifndef MLC_TOKENIZER_H
#define MLC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mlc.h"

typedef struct mlc_tokenizer mlc_tokenizer;

/* path: a tokenizer.json (or .json.gz) or SentencePiece *.model file, or a directory holding
 * tokenizer.json(.gz) (else tokenizer.model) and optionally tokenizer_config.json (added_tokens_decoder, bos/eos/pad/unk token names,
 * add_bos_token/add_eos_token where tokenizer.json's post_processor does not say,
 * clean_up_tokenization_spaces, and chat_template kept as a string). */
mlc_status mlc_tok_load(const char *path, mlc_tokenizer **out);
/* Loads from an in-memory tokenizer.json text (config_json may be NULL). `name` is used in
 * error messages. */
mlc_status mlc_tok_load_json(const char *json, size_t len, const char *config_json, const char *name,
                             mlc_tokenizer **out);
/* Loads a SentencePiece tokenizer.model (protobuf ModelProto bytes; BPE or Unigram). It encodes
 * like transformers' LlamaTokenizerFast (BPE) / the converted fast tokenizer (Unigram), i.e. like
 * sentencepiece with the model's normalizer flags, control/unknown pieces as special added
 * tokens and user-defined pieces as added tokens. add_special adds BOS for BPE models unless
 * config_json (tokenizer_config.json text, may be NULL) says otherwise. */
mlc_status mlc_tok_load_spm(const char *data, size_t len, const char *config_json, const char *name,
                            mlc_tokenizer **out);
void mlc_tok_free(mlc_tokenizer *t);

int mlc_tok_vocab_size(const mlc_tokenizer *t);           /* including added tokens */
int32_t mlc_tok_bos_id(const mlc_tokenizer *t);           /* -1 if none */
int32_t mlc_tok_eos_id(const mlc_tokenizer *t);           /* -1 if none; the tokenizer_config eos_token */
const char *mlc_tok_chat_template(const mlc_tokenizer *t); /* NULL if none */
/* "bos_token","eos_token","pad_token","unk_token" strings from tokenizer_config, or NULL */
const char *mlc_tok_special_token(const mlc_tokenizer *t, const char *which);
int32_t mlc_tok_token_to_id(const mlc_tokenizer *t, const char *token); /* -1 if unknown */
const char *mlc_tok_id_to_token(const mlc_tokenizer *t, int32_t id);    /* NULL if out of range */
bool mlc_tok_is_special(const mlc_tokenizer *t, int32_t id);

/* ids: heap array the caller frees. add_special = HF add_special_tokens (post-processor
 * BOS/EOS/templates). */
mlc_status mlc_tok_encode(const mlc_tokenizer *t, const char *text, size_t len, bool add_special,
                          int32_t **ids, int *n);
/* out: heap NUL-terminated string. skip_special=false keeps special tokens, like HF decode(). */
mlc_status mlc_tok_decode(const mlc_tokenizer *t, const int32_t *ids, int n, bool skip_special,
                          char **out);

/* Streaming detokenizer: put() appends to *text (heap, caller frees; may be "") only complete,
 * valid UTF-8; the concatenation of all put() outputs plus flush() equals decode() of all ids. */
typedef struct mlc_tok_stream mlc_tok_stream;
mlc_status mlc_tok_stream_new(const mlc_tokenizer *t, bool skip_special, mlc_tok_stream **out);
mlc_status mlc_tok_stream_put(mlc_tok_stream *s, int32_t id, char **text);
mlc_status mlc_tok_stream_flush(mlc_tok_stream *s, char **text);
void mlc_tok_stream_free(mlc_tok_stream *s);

#endif
