/* test_grammar.c: the JSON / JSON-Schema pushdown automaton (src/engine/grammar.c): accepted and
 * rejected texts for every schema feature, schema errors naming the keyword, token masks over a
 * byte trie equal to testing every token alone (a synthetic vocabulary and the 128k llama3
 * vocabulary, with its mask time), and random walks through the masks ending in valid JSON. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "engine/grammar.h"
#include "tokenizer/tokenizer.h"

static int passed, failed;
static void check(bool ok, const char *fmt, const char *what) {
  if (ok)
    passed++;
  else {
    failed++;
    printf("FAIL ");
    printf(fmt, what);
    printf("\n");
  }
}

static mlc_grammar *compile(const char *schema) {
  mlc_grammar *g = NULL;
  if (mlc_grammar_compile(schema, &g) != MLC_OK) {
    failed++;
    printf("FAIL compile %s: %s\n", schema, mlc_last_error());
  }
  return g;
}

/* every text in ok[] matches, every text in bad[] does not */
static void cases(const char *schema, const char *const *ok, const char *const *bad) {
  mlc_grammar *g = compile(schema);
  if (!g)
    return;
  for (int i = 0; ok[i]; i++) {
    char what[512];
    snprintf(what, sizeof what, "%s should accept %s", schema, ok[i]);
    check(mlc_grammar_matches(g, ok[i], strlen(ok[i])), "%s", what);
  }
  for (int i = 0; bad[i]; i++) {
    char what[512];
    snprintf(what, sizeof what, "%s should reject %s", schema, bad[i]);
    check(!mlc_grammar_matches(g, bad[i], strlen(bad[i])), "%s", what);
  }
  mlc_grammar_free(g);
}

/* a schema that must be refused, with a message containing `word` */
static void refuse(const char *schema, const char *word) {
  mlc_grammar *g = NULL;
  mlc_status st = mlc_grammar_compile(schema, &g);
  char what[512];
  snprintf(what, sizeof what, "%s refused naming '%s' (got: %s)", schema, word, st ? mlc_last_error() : "accepted");
  check(st != MLC_OK && strstr(mlc_last_error(), word), "%s", what);
  mlc_grammar_free(g);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_texts(void) {
  /* json_object: any object */
  mlc_grammar *g;
  if (mlc_grammar_json_object(&g) == MLC_OK) {
    const char *ok[] = {"{}", "{\"a\":1}", "{ \"a\" : [1, 2.5e-3, -0, true, false, null, \"x\\n\\u00e9\"] , \"b\":{}}",
                        "\n{\"k\":{\"n\":{\"m\":[[]]}}}", "{\"\xc3\xa9\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}", NULL};
    const char *bad[] = {"[]", "1", "\"s\"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "{\"a\":01}",
                         "{\"a\":1.}", "{\"a\":.5}", "{\"a\":tru}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}",
                         "{\"a\":\"\\u12g4\"}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xc0\xaf\"}",
                         "{} ", "{}{}", "{\"a\":1 2}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":[1,]}", NULL};
    for (int i = 0; ok[i]; i++)
      check(mlc_grammar_matches(g, ok[i], strlen(ok[i])), "json_object should accept %s", ok[i]);
    for (int i = 0; bad[i]; i++)
      check(!mlc_grammar_matches(g, bad[i], strlen(bad[i])), "json_object should reject %s", bad[i]);
    /* whitespace is bounded: no endless runs of spaces or blank lines */
    check(!mlc_grammar_matches(g, "{             }", 15), "%s", "13 spaces in a row are refused");
    check(mlc_grammar_matches(g, "{\n          \"a\":\n 1 }", 21), "%s", "a newline and indentation are accepted");
    check(!mlc_grammar_matches(g, "{\n\n}", 4), "%s", "two newlines in a row are refused");
    check(!mlc_grammar_matches(g, "{\r\n}", 4), "%s", "carriage returns are refused");
    mlc_grammar_free(g);
  }
  cases("{}", L("1", "\"x\"", "[1,{\"a\":null}]", "true", "null", "-12.5E+3"), L("", "nul", "[", "01"));
  cases("{\"type\":\"string\"}", L("\"\"", "\"abc\"", "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u0041\""),
        L("1", "\"abc", "abc", "\"a\"b\""));
  cases("{\"type\":\"integer\"}", L("0", "-7", "123456"), L("1.5", "1e3", "-", "00", "+1", "\"1\""));
  cases("{\"type\":\"number\"}", L("0", "-7", "1.5", "1e3", "1E-3", "-0.25e+10"), L("1.", ".5", "1e", "--1", "0x1"));
  cases("{\"type\":\"boolean\"}", L("true", "false"), L("null", "1", "\"true\"", "truee", "t"));
  cases("{\"type\":\"null\"}", L("null"), L("false", "nul", "\"null\""));
  cases("{\"type\":[\"string\",\"null\"]}", L("\"a\"", "null"), L("1", "true"));
  /* properties, required, additionalProperties */
  cases("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}},"
        "\"required\":[\"name\"],\"additionalProperties\":false}",
        L("{\"name\":\"x\"}", "{\"age\":3,\"name\":\"x\"}", "{ \"name\" : \"x\" , \"age\" : -1 }"),
        L("{}", "{\"age\":3}", "{\"name\":1}", "{\"name\":\"x\",\"age\":1.5}", "{\"name\":\"x\",\"other\":1}",
          "{\"name\":\"x\",\"name\":\"y\"}", "{\"nam\":\"x\"}", "{\"names\":\"x\"}", "{\"name\":\"x\",}"));
  cases("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"}}}",
        L("{}", "{\"a\":true}", "{\"b\":[1]}", "{\"ab\":\"x\",\"a\":false}"), L("{\"a\":1}"));
  cases("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}", L("{}", "{\"x\":1,\"y\":2}"),
        L("{\"x\":\"1\"}"));
  cases("{\"required\":[\"id\"],\"additionalProperties\":false}", L("{\"id\":[1]}", "{\"id\":{}}"),
        L("{}", "{\"id\":1,\"x\":2}", "[]"));
  /* enum, const */
  cases("{\"enum\":[\"red\",\"green\",1,12,null,{\"a\":[true]}]}",
        L("\"red\"", "\"green\"", "1", "12", "null", "{\"a\":[true]}"),
        L("\"blue\"", "\"re\"", "2", "123", "{\"a\":[ true]}", "\"red\" "));
  cases("{\"const\":\"yes\"}", L("\"yes\""), L("\"no\"", "\"yess\""));
  cases("{\"type\":\"object\",\"properties\":{\"c\":{\"enum\":[\"a\",\"b\"]}},\"required\":[\"c\"],"
        "\"additionalProperties\":false}",
        L("{\"c\":\"a\"}", "{\"c\":\"b\" }"), L("{\"c\":\"c\"}", "{\"c\":\"ab\"}"));
  /* items, minItems, maxItems */
  cases("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}",
        L("[1]", "[1,2,3]", "[ 1 , 2 ]"), L("[]", "[1,2,3,4]", "[1.5]", "[\"1\"]"));
  cases("{\"type\":\"array\"}", L("[]", "[1,\"a\",[{}]]"), L("[1,]", "{}"));
  /* strings with lengths (code points) */
  cases("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", L("\"ab\"", "\"abc\"", "\"\xc3\xa9\xc3\xa9\"", "\"\\n\\u0041\""),
        L("\"a\"", "\"abcd\"", "\"\""));
  /* anyOf, nested; alternatives ambiguous for a while */
  const char *any = "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},"
                    "\"r\":{\"type\":\"number\"}},\"required\":[\"kind\",\"r\"],\"additionalProperties\":false},"
                    "{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"rect\"},\"w\":{\"type\":\"number\"},"
                    "\"h\":{\"type\":\"number\"}},\"required\":[\"kind\",\"w\",\"h\"],\"additionalProperties\":false},"
                    "{\"type\":\"null\"},{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}]}]}";
  cases(any, L("{\"kind\":\"circle\",\"r\":1}", "{\"kind\":\"rect\",\"w\":1,\"h\":2}", "null", "5", "\"x\"", "{\"r\":2,\"kind\":\"circle\"}"),
        L("{\"kind\":\"circle\",\"w\":1}", "{\"kind\":\"rect\",\"w\":1}", "{\"kind\":\"square\"}", "1.5", "\"xy\"", "{}"));
  cases("{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
        "\"properties\":{\"id\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]}}},"
        "\"required\":[\"id\"],\"additionalProperties\":false}}},\"required\":[\"items\"],\"additionalProperties\":false}",
        L("{\"items\":[]}", "{\"items\":[{\"id\":1,\"tags\":[\"a\",\"b\"]},{\"id\":2}]}"),
        L("{\"items\":[{\"tags\":[]}]}", "{\"items\":[{\"id\":1,\"tags\":[\"c\"]}]}", "{\"items\":{}}"));
  /* a property name that needs escaping must be written as cJSON prints it */
  cases("{\"type\":\"object\",\"properties\":{\"a\\\"b\":{\"type\":\"null\"}},\"required\":[\"a\\\"b\"],"
        "\"additionalProperties\":false}",
        L("{\"a\\\"b\":null}"), L("{\"ab\":null}"));
  /* annotations are ignored */
  cases("{\"title\":\"T\",\"description\":\"d\",\"$schema\":\"x\",\"type\":\"boolean\",\"default\":true}", L("true"), L("1"));
}

static void test_refusals(void) {
  refuse("{\"type\":\"string\",\"pattern\":\"^a\"}", "pattern");
  refuse("{\"type\":\"number\",\"minimum\":0}", "minimum");
  refuse("{\"type\":\"object\",\"properties\":{\"a\":{\"format\":\"date\"}}}", "format");
  refuse("{\"type\":\"object\",\"properties\":{\"a\":{\"format\":\"date\"}}}", "properties.a.format");
  refuse("{\"oneOf\":[{}]}", "oneOf");
  refuse("{\"allOf\":[{}]}", "allOf");
  refuse("{\"$ref\":\"#/$defs/x\"}", "$ref");
  refuse("{\"type\":\"array\",\"items\":[{}]}", "items");
  refuse("{\"type\":\"strin\"}", "type");
  refuse("{\"enum\":[]}", "enum");
  refuse("{\"anyOf\":[]}", "anyOf");
  refuse("{\"type\":\"string\",\"anyOf\":[{}]}", "anyOf");
  refuse("{\"minItems\":3,\"maxItems\":1}", "maximum");
  refuse("[1]", "schema");
  refuse("{\"type\":", "JSON");
}

/* ---- masks ---- */

/* the prefix the state was fed, so that copies can be made by replaying it */
static bool mask_matches_brute(mlc_grammar_vocab *v, const mlc_grammar *g, const char *prefix, int *count) {
  int V = mlc_grammar_vocab_size(v);
  uint8_t *m = malloc((size_t)V), *b = malloc((size_t)V);
  mlc_grammar_state *s, *t;
  mlc_grammar_state_new(g, &s);
  mlc_grammar_state_new(g, &t);
  bool ok = mlc_grammar_feed(s, prefix, strlen(prefix));
  int n = ok ? mlc_grammar_mask(v, s, m) : -1, nb = 0;
  for (int i = 0; ok && i < V; i++) {
    mlc_grammar_state_reset(t);
    mlc_grammar_feed(t, prefix, strlen(prefix));
    b[i] = mlc_grammar_feed_token(v, t, i);
    nb += b[i];
    if (b[i] != m[i]) {
      size_t len;
      const char *tb = mlc_grammar_vocab_token(v, i, &len);
      printf("  mask differs at token %d (%.*s): trie %d, alone %d, after '%s'\n", i, (int)len, tb ? tb : "", m[i], b[i], prefix);
      ok = false;
    }
  }
  ok = ok && n == nb;
  *count = n;
  free(m);
  free(b);
  mlc_grammar_state_free(s);
  mlc_grammar_state_free(t);
  return ok;
}

static const char *k_schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"},"
                              "\"ok\":{\"type\":\"boolean\"},\"color\":{\"enum\":[\"red\",\"green\"]},"
                              "\"list\":{\"type\":\"array\",\"items\":{\"type\":\"number\"}},"
                              "\"any\":{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"object\"}]}},"
                              "\"required\":[\"name\",\"color\"],\"additionalProperties\":false}";
static const char *k_prefixes[] = {"", " ", "{", "{\"", "{\"na", "{\"name\"", "{\"name\":", "{\"name\":\"ab",
                                   "{\"name\":\"a\\", "{\"name\":\"a\xe2\x82", "{\"name\":\"x\",", "{\"n\":12",
                                   "{\"n\":-", "{\"list\":[1.5e", "{\"color\":\"gr", "{\"any\":{\"k\":[",
                                   "{\"color\":\"red\",\"name\":\"q\"", NULL};

static void test_masks_synthetic(void) {
  /* every byte alone, plus multi-byte pieces typical of BPE vocabularies */
  const char *pieces[] = {"{\"", "\":", "\",", "\"}", "name", "\"name\":", " \"", "true", "false", "null", "12", "3.5",
                          "e+", "red", "\"red\"", "gre", "en\"", "\\n", "\\u00", "\xe2\x82\xac", "\xe2", "\x82\xac",
                          "},", "}]", "],", "[{", "  ", "\n", "abc", "\":\"", "\"n\":", "-0", "0.", "\"color\":\"",
                          "\xf0\x9f\x98\x80", NULL};
  int np = 0;
  while (pieces[np])
    np++;
  int V = 256 + np + 2;
  const char **bytes = calloc((size_t)V, sizeof(char *));
  size_t *lens = calloc((size_t)V, sizeof(size_t));
  char *single = malloc(256);
  for (int i = 0; i < 256; i++) {
    single[i] = (char)i;
    bytes[i] = single + i;
    lens[i] = 1;
  }
  for (int i = 0; i < np; i++) {
    bytes[256 + i] = pieces[i];
    lens[256 + i] = strlen(pieces[i]);
  }
  bytes[256 + np] = "{\""; /* a duplicate string */
  lens[256 + np] = 2;
  /* last id: empty (a special token) */
  mlc_grammar_vocab *v;
  if (mlc_grammar_vocab_new(bytes, lens, V, &v) != MLC_OK) {
    failed++;
    printf("FAIL vocab: %s\n", mlc_last_error());
    return;
  }
  mlc_grammar *g = compile(k_schema);
  mlc_grammar *jo;
  mlc_grammar_json_object(&jo);
  for (int i = 0; g && k_prefixes[i]; i++) {
    int n;
    check(mask_matches_brute(v, g, k_prefixes[i], &n), "synthetic mask after '%s' equals testing each token", k_prefixes[i]);
    check(mask_matches_brute(v, jo, k_prefixes[i], &n) || !mlc_grammar_matches(jo, "{}", 2), "json_object mask after '%s'",
          k_prefixes[i]);
  }
  mlc_grammar_free(g);
  mlc_grammar_free(jo);
  mlc_grammar_vocab_free(v);
  free(single);
  free(bytes);
  free(lens);
}

/* Random walks: sample uniformly among the allowed tokens (EOS when accepting, 1 in 4) until the
 * grammar finishes; the text must then match and parse as JSON. Returns the walks that ended. */
static int random_walks(mlc_grammar_vocab *v, const mlc_grammar *g, int walks, int max_tokens, uint64_t seed,
                        const char *what) {
  int V = mlc_grammar_vocab_size(v), ended = 0;
  uint8_t *m = malloc((size_t)V);
  int32_t *cand = malloc(sizeof(int32_t) * (size_t)V);
  mlc_grammar_state *s;
  mlc_grammar_state_new(g, &s);
  for (int w = 0; w < walks; w++) {
    mlc_grammar_state_reset(s);
    mlc_buf text = {0};
    bool done = false;
    for (int t = 0; t < max_tokens && !done; t++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      if (mlc_grammar_accepting(s) && (mlc_grammar_finished(s) || (seed >> 60) < 4)) {
        done = true;
        break;
      }
      int n = mlc_grammar_mask(v, s, m), k = 0;
      if (!n) {
        failed++;
        printf("FAIL %s: no token allowed after '%s'\n", what, text.data ? text.data : "");
        break;
      }
      for (int i = 0; i < V; i++)
        if (m[i])
          cand[k++] = i;
      int32_t tok = cand[(seed >> 33) % (uint64_t)k];
      size_t len;
      const char *b = mlc_grammar_vocab_token(v, tok, &len);
      mlc_buf_append(&text, b, len);
      if (!mlc_grammar_feed_token(v, s, tok)) {
        failed++;
        printf("FAIL %s: an allowed token was refused\n", what);
        break;
      }
    }
    if (done) {
      ended++;
      const char *tx = text.data ? text.data : "";
      cJSON *j = cJSON_ParseWithLength(tx, text.len);
      check(j && mlc_grammar_matches(g, tx, text.len), "random walk output is valid: %s", tx);
      cJSON_Delete(j);
    }
    mlc_buf_free(&text);
  }
  mlc_grammar_state_free(s);
  free(m);
  free(cand);
  return ended;
}

static void test_llama3(const char *src) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/fixtures/tokenizers/llama3", src);
  mlc_tokenizer *t;
  if (mlc_tok_load(path, &t) != MLC_OK) {
    failed++;
    printf("FAIL load %s: %s\n", path, mlc_last_error());
    return;
  }
  double t0 = mlc_now();
  mlc_grammar_vocab *v;
  int V = mlc_tok_vocab_size(t);
  if (mlc_grammar_vocab_from_tokenizer(t, V, &v) != MLC_OK) {
    failed++;
    printf("FAIL vocab from llama3: %s\n", mlc_last_error());
    mlc_tok_free(t);
    return;
  }
  double t_vocab = mlc_now() - t0;
  /* token bytes: a space-prefixed piece, a newline, a byte-level piece of a UTF-8 character */
  int32_t sp = mlc_tok_token_to_id(t, "\xc4\xa0{"), part = mlc_tok_token_to_id(t, "\xc3\xa2\xc4\xa2");
  size_t len;
  const char *b = mlc_grammar_vocab_token(v, sp, &len);
  check(b && len == 2 && !memcmp(b, " {", 2), "%s", "llama3 'Ġ{' is the bytes ' {'");
  b = mlc_grammar_vocab_token(v, part, &len);
  check(b && len == 2 && (uint8_t)b[0] == 0xE2 && (uint8_t)b[1] == 0x80, "%s", "llama3 'âĢ' is the bytes E2 80");
  check(!mlc_grammar_vocab_token(v, mlc_tok_token_to_id(t, "<|eot_id|>"), &len), "%s", "special tokens are empty");
  mlc_grammar *g = compile(k_schema);
  if (g) {
    const char *few[] = {"", "{\"name\":\"ab", "{\"n\":12", "{\"color\":\"gr", NULL};
    for (int i = 0; few[i]; i++) {
      int n;
      check(mask_matches_brute(v, g, few[i], &n), "llama3 mask after '%s' equals testing each token", few[i]);
    }
    /* time: the mask at each prefix (a string body allows most of the vocabulary) */
    uint8_t *m = malloc((size_t)V);
    mlc_grammar_state *s;
    mlc_grammar_state_new(g, &s);
    double worst = 0, total = 0;
    int nt = 0;
    for (int i = 0; k_prefixes[i]; i++) {
      mlc_grammar_state_reset(s);
      mlc_grammar_feed(s, k_prefixes[i], strlen(k_prefixes[i]));
      double a = mlc_now();
      int n = mlc_grammar_mask(v, s, m);
      double dt = mlc_now() - a;
      total += dt;
      nt++;
      if (dt > worst)
        worst = dt;
      (void)n;
    }
    printf("test_grammar: llama3 (%d tokens): vocabulary %.0f ms, mask mean %.2f ms, worst %.2f ms\n", V,
           t_vocab * 1e3, total / nt * 1e3, worst * 1e3);
    check(worst < 0.25, "%s", "a 128k-token mask takes under 250 ms even on a loaded machine");
    mlc_grammar_state_free(s);
    free(m);
    mlc_grammar_free(g);
    /* random walks over the whole vocabulary with a bounded schema */
    g = compile("{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},\"color\":{\"enum\":"
                "[\"red\",\"green\"]},\"n\":{\"type\":\"null\"}},\"required\":[\"ok\",\"color\",\"n\"],"
                "\"additionalProperties\":false}");
    if (g) {
      int ended = random_walks(v, g, 4, 200, 7, "llama3 walk");
      check(ended >= 3, "%s", "llama3 random walks with a bounded schema end");
      mlc_grammar_free(g);
    }
  }
  mlc_grammar_vocab_free(v);
  mlc_tok_free(t);
}

static void test_walks_synthetic(void) {
  /* a small vocabulary of single bytes and pieces; bounded schemas must always end */
  const char *pieces[] = {"{", "}", "[", "]", ",", ":", "\"", " ", "a", "b", "1", "0", "-", ".", "e", "t", "r", "u",
                          "f", "l", "s", "n", "\"kind\"", "\"circle\"", "\"rect\"", "true", "null", "\"r\":", "\"w\":",
                          "\"h\":", "12", NULL};
  int np = 0;
  while (pieces[np])
    np++;
  /* plus every printable ASCII byte alone, so that no text is out of reach */
  int V = np + 95;
  const char **toks = calloc((size_t)V, sizeof(char *));
  size_t *lens = calloc((size_t)V, sizeof(size_t));
  char ascii[95];
  for (int i = 0; i < np; i++) {
    toks[i] = pieces[i];
    lens[i] = strlen(pieces[i]);
  }
  for (int i = 0; i < 95; i++) {
    ascii[i] = (char)(0x20 + i);
    toks[np + i] = ascii + i;
    lens[np + i] = 1;
  }
  mlc_grammar_vocab *v;
  mlc_status vst = mlc_grammar_vocab_new(toks, lens, V, &v);
  free(toks);
  if (vst != MLC_OK) {
    free(lens);
    return;
  }
  const char *schemas[] = {
      "{\"enum\":[\"circle\",\"rect\",12,true]}",
      "{\"type\":\"boolean\"}",
      "{\"type\":\"object\",\"properties\":{\"kind\":{\"enum\":[\"circle\",\"rect\"]},\"r\":{\"type\":\"boolean\"}},"
      "\"required\":[\"kind\",\"r\"],\"additionalProperties\":false}",
      "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},\"r\":{\"type\":\"null\"}},"
      "\"required\":[\"kind\",\"r\"],\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"kind\":"
      "{\"const\":\"rect\"},\"w\":{\"type\":\"boolean\"},\"h\":{\"type\":\"boolean\"}},\"required\":[\"kind\",\"w\",\"h\"],"
      "\"additionalProperties\":false}]}",
      "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":3}",
      NULL};
  for (int i = 0; schemas[i]; i++) {
    mlc_grammar *g = compile(schemas[i]);
    if (!g)
      continue;
    int ended = random_walks(v, g, 40, 400, 1234 + (uint64_t)i, schemas[i]);
    check(ended >= 30, "most random walks end for %s", schemas[i]);
    mlc_grammar_free(g);
  }
  mlc_grammar_vocab_free(v);
  free(lens);
}

int main(int argc, char **argv) {
  const char *src = argc > 1 ? argv[1] : ".";
  test_texts();
  test_refusals();
  test_masks_synthetic();
  test_walks_synthetic();
  test_llama3(src);
  printf("test_grammar: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
