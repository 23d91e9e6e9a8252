/* grammar.h: grammar-constrained decoding for JSON (docs/engine.md, "Structured output").
 *
 * A JSON Schema (the subset below) is compiled into a character-level pushdown automaton over
 * bytes: mlc_grammar (immutable, shared by the choices of a request) and mlc_grammar_state (one per
 * choice: a small set of parse stacks, more than one only while anyOf alternatives are still
 * ambiguous). mlc_grammar_vocab holds every token's byte string in a byte trie; mlc_grammar_mask
 * walks the trie with copies of the state, so a token is tested in the time of the bytes it does
 * not share with its trie neighbours, and whole subtrees are cut at the first rejected byte.
 *
 * Schema subset: type (a name or a list of names: object, array, string, number, integer, boolean,
 * null), properties, required, additionalProperties (true, false or a schema; absent: any value),
 * items, minItems, maxItems, minLength, maxLength, enum, const, anyOf (nested freely). Annotations
 * (title, description, default, examples, $schema, $id, $comment, deprecated, readOnly, writeOnly)
 * are ignored; any other keyword is refused with an error naming it.
 *
 * Output form: no whitespace after the value; elsewhere whitespace runs of at most 12 bytes with
 * at most one newline and no carriage return;
 * numbers of at most 32 bytes; enum / const values exactly as cJSON prints them unformatted;
 * object keys as cJSON prints them (a key spelled otherwise is an additional property); nesting
 * at most MLC_GRAMMAR_DEPTH levels. */
#ifndef MLC_GRAMMAR_H
#define MLC_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mlc.h"
#include "tokenizer/tokenizer.h"

#define MLC_GRAMMAR_DEPTH 32 /* nesting levels of one parse stack */
#define MLC_GRAMMAR_CONFS 8  /* parse stacks alive at once (ambiguous anyOf branches) */

typedef struct mlc_grammar mlc_grammar;
typedef struct mlc_grammar_state mlc_grammar_state;
typedef struct mlc_grammar_vocab mlc_grammar_vocab;

/* Compiles a JSON Schema (a JSON text, or a cJSON tree). Errors: MLC_ERR_FORMAT (not JSON, or a
 * keyword with a value of the wrong form), MLC_ERR_UNSUPPORTED (a keyword outside the subset);
 * the message names the keyword and its path, e.g. "properties.age.minimum". */
mlc_status mlc_grammar_compile(const char *schema_json, mlc_grammar **out);
mlc_status mlc_grammar_compile_cjson(const cJSON *schema, mlc_grammar **out);
/* response_format {"type": "json_object"}: any JSON object. */
mlc_status mlc_grammar_json_object(mlc_grammar **out);
void mlc_grammar_free(mlc_grammar *g);

/* A parser at the start of the text. */
mlc_status mlc_grammar_state_new(const mlc_grammar *g, mlc_grammar_state **out);
void mlc_grammar_state_free(mlc_grammar_state *s);
void mlc_grammar_state_reset(mlc_grammar_state *s);
/* Feeds bytes; on rejection returns false and leaves the state unchanged. */
bool mlc_grammar_feed(mlc_grammar_state *s, const void *bytes, size_t n);
/* The text so far is a complete value of the schema (the end may come now). */
bool mlc_grammar_accepting(const mlc_grammar_state *s);
/* Complete, and no byte may follow: generation is over. */
bool mlc_grammar_finished(const mlc_grammar_state *s);
/* Convenience: does the whole text match? */
bool mlc_grammar_matches(const mlc_grammar *g, const char *text, size_t n);

/* The vocabulary: token i is the byte string bytes[i] (lens[i] bytes); a token of length 0 (special
 * tokens, unused ids) is never allowed by the grammar. */
mlc_status mlc_grammar_vocab_new(const char *const *bytes, const size_t *lens, int n, mlc_grammar_vocab **out);
/* Each token's bytes from a tokenizer, for a model vocabulary of V ids (ids past the tokenizer's
 * are empty): what the token adds to the decoded text in the middle of a sequence (a leading
 * Metaspace space kept), with byte-level (GPT-2) and <0xNN> byte-fallback tokens as raw bytes.
 * Special tokens are empty. */
mlc_status mlc_grammar_vocab_from_tokenizer(const mlc_tokenizer *t, int V, mlc_grammar_vocab **out);
void mlc_grammar_vocab_free(mlc_grammar_vocab *v);
int mlc_grammar_vocab_size(const mlc_grammar_vocab *v);
/* Token i's bytes (NULL for an empty token). */
const char *mlc_grammar_vocab_token(const mlc_grammar_vocab *v, int32_t id, size_t *len);

/* allowed[i] = 1 for every token whose bytes the state accepts (0 otherwise; [V] bytes); returns
 * how many. End-of-sequence tokens are the caller's (allowed when mlc_grammar_accepting). Uses
 * scratch memory inside v: one call at a time per vocabulary. */
int mlc_grammar_mask(mlc_grammar_vocab *v, const mlc_grammar_state *s, uint8_t *allowed);
/* Feeds token id's bytes (false: rejected or empty; the state is then unchanged). */
bool mlc_grammar_feed_token(const mlc_grammar_vocab *v, mlc_grammar_state *s, int32_t id);

#endif
