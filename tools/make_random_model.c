/*
 * make_random_model.c: writes a random-weight Llama-architecture Hugging Face directory
 * (config.json + model.safetensors) of a given shape, for benchmarks at real model sizes.
 * Weights are N(0, 0.02) from a seeded generator (a table of 2^16 samples), norms are 1.
 *
 *   mlc-random-model --preset llama-1b --dtype f16 -o /tmp/llama-1b
 *   mlc-random-model --hidden 512 --layers 4 --heads 8 --kv-heads 2 --ffn 1536 --vocab 8000 -o DIR
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

typedef struct shape {
  long hidden, layers, heads, kv_heads, ffn, vocab, ctx;
  int tied;
} shape;

static uint64_t rng = 0x12345678;
static double unit(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return ((rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float gauss(void) { return (float)(sqrt(-2 * log(unit())) * cos(2 * M_PI * unit())); }

typedef struct tensor {
  char name[96];
  long rows, cols; /* cols 0: 1-D */
  int ones;
} tensor;

static size_t esize(const char *dt) { return !strcmp(dt, "F32") ? 4 : 2; }

int main(int argc, char **argv) {
  shape s = {2048, 16, 32, 8, 8192, 32000, 4096, 1};
  const char *out = NULL, *dtype = "f16";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help")) {
      printf("usage: mlc-random-model [--preset llama-1b|llama-8b|tiny] [--hidden H --layers L --heads A --kv-heads K "
             "--ffn F --vocab V --ctx C --tied 0|1] [--dtype f32|f16|bf16] [--seed S] -o DIR\n");
      return 0;
    }
    if (!v) {
      fprintf(stderr, "mlc-random-model: %s needs a value\n", a);
      return 1;
    }
    i++;
    if (!strcmp(a, "-o"))
      out = v;
    else if (!strcmp(a, "--dtype"))
      dtype = v;
    else if (!strcmp(a, "--seed"))
      rng = strtoull(v, NULL, 10) * 2654435761u + 1;
    else if (!strcmp(a, "--preset")) {
      if (!strcmp(v, "llama-1b"))
        s = (shape){2048, 16, 32, 8, 8192, 32000, 4096, 1};
      else if (!strcmp(v, "llama-8b"))
        s = (shape){4096, 32, 32, 8, 14336, 128256, 8192, 0};
      else if (!strcmp(v, "tiny"))
        s = (shape){256, 4, 4, 2, 768, 2048, 1024, 1};
      else {
        fprintf(stderr, "mlc-random-model: unknown preset '%s'\n", v);
        return 1;
      }
    } else {
      long x = strtol(v, NULL, 10);
      long *f = !strcmp(a, "--hidden") ? &s.hidden : !strcmp(a, "--layers") ? &s.layers : !strcmp(a, "--heads") ? &s.heads
              : !strcmp(a, "--kv-heads") ? &s.kv_heads : !strcmp(a, "--ffn") ? &s.ffn : !strcmp(a, "--vocab") ? &s.vocab
              : !strcmp(a, "--ctx") ? &s.ctx : NULL;
      if (!strcmp(a, "--tied"))
        s.tied = (int)x;
      else if (!f || x <= 0) {
        fprintf(stderr, "mlc-random-model: bad option %s %s\n", a, v);
        return 1;
      } else
        *f = x;
    }
  }
  const char *st_dt = !strcmp(dtype, "f32") ? "F32" : !strcmp(dtype, "bf16") ? "BF16" : !strcmp(dtype, "f16") ? "F16" : NULL;
  if (!out || !st_dt || s.hidden % s.heads || s.heads % s.kv_heads) {
    fprintf(stderr, "mlc-random-model: need -o DIR, --dtype f32|f16|bf16, heads dividing hidden and kv_heads dividing heads\n");
    return 1;
  }
  long D = s.hidden / s.heads;
  tensor *t = calloc((size_t)(s.layers * 9 + 3), sizeof *t);
  int nt = 0;
  snprintf(t[nt].name, 96, "model.embed_tokens.weight"), t[nt].rows = s.vocab, t[nt++].cols = s.hidden;
  for (long l = 0; l < s.layers; l++) {
    struct { const char *n; long r, c; int ones; } w[] = {
        {"self_attn.q_proj.weight", s.heads * D, s.hidden, 0}, {"self_attn.k_proj.weight", s.kv_heads * D, s.hidden, 0},
        {"self_attn.v_proj.weight", s.kv_heads * D, s.hidden, 0}, {"self_attn.o_proj.weight", s.hidden, s.heads * D, 0},
        {"mlp.gate_proj.weight", s.ffn, s.hidden, 0}, {"mlp.up_proj.weight", s.ffn, s.hidden, 0},
        {"mlp.down_proj.weight", s.hidden, s.ffn, 0}, {"input_layernorm.weight", s.hidden, 0, 1},
        {"post_attention_layernorm.weight", s.hidden, 0, 1}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
      snprintf(t[nt].name, 96, "model.layers.%ld.%s", l, w[i].n);
      t[nt].rows = w[i].r, t[nt].cols = w[i].c, t[nt++].ones = w[i].ones;
    }
  }
  snprintf(t[nt].name, 96, "model.norm.weight"), t[nt].rows = s.hidden, t[nt].cols = 0, t[nt++].ones = 1;
  if (!s.tied)
    snprintf(t[nt].name, 96, "lm_head.weight"), t[nt].rows = s.vocab, t[nt++].cols = s.hidden;

  mkdir(out, 0755);
  mlc_buf hdr = {0}, cfg = {0};
  mlc_buf_puts(&hdr, "{");
  size_t off = 0;
  for (int i = 0; i < nt; i++) {
    size_t n = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1) * esize(st_dt);
    if (t[i].cols)
      mlc_buf_printf(&hdr, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%ld,%ld],\"data_offsets\":[%zu,%zu]}", i ? "," : "",
                     t[i].name, st_dt, t[i].rows, t[i].cols, off, off + n);
    else
      mlc_buf_printf(&hdr, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%ld],\"data_offsets\":[%zu,%zu]}", i ? "," : "",
                     t[i].name, st_dt, t[i].rows, off, off + n);
    off += n;
  }
  mlc_buf_puts(&hdr, "}");
  while (hdr.len % 8)
    mlc_buf_puts(&hdr, " ");
  char *path = mlc_path_join(out, "model.safetensors"), tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    fprintf(stderr, "mlc-random-model: %s: %s\n", tmp, strerror(errno));
    return 1;
  }
  uint64_t hl = hdr.len;
  fwrite(&hl, 8, 1, f);
  fwrite(hdr.data, 1, hdr.len, f);
  size_t chunk = 1 << 20, es = esize(st_dt);
  unsigned char *buf = malloc(chunk * 4);
  /* N(0, 0.02) values drawn from a table of 2^16 samples already in the stored type, indexed by the
   * generator: a few ns per element (8B parameters in seconds, not minutes) */
  enum { TAB = 1 << 16 };
  unsigned char *tab = malloc((size_t)TAB * 4), one[4];
  for (int j = 0; j <= TAB; j++) {
    float x = j == TAB ? 1.0f : 0.02f * gauss();
    unsigned char *dst = j == TAB ? one : tab + (size_t)j * es;
    if (es == 4)
      memcpy(dst, &x, 4);
    else {
      uint16_t h = !strcmp(st_dt, "F16") ? mlc_f32_to_f16(x) : mlc_f32_to_bf16(x);
      memcpy(dst, &h, 2);
    }
  }
  for (int i = 0; i < nt; i++) {
    size_t n = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1);
    for (size_t done = 0; done < n;) {
      size_t c = n - done < chunk ? n - done : chunk;
      if (es == 2) {
        uint16_t *o = (uint16_t *)buf;
        const uint16_t *tb = (const uint16_t *)tab;
        uint16_t o1;
        memcpy(&o1, one, 2);
        for (size_t j = 0; j < c; j++) {
          rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
          o[j] = t[i].ones ? o1 : tb[rng >> 48];
        }
      } else {
        for (size_t j = 0; j < c; j++) {
          rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
          memcpy(buf + 4 * j, t[i].ones ? one : tab + 4 * (rng >> 48), 4);
        }
      }
      if (fwrite(buf, esize(st_dt), c, f) != c) {
        fprintf(stderr, "mlc-random-model: write failed: %s\n", strerror(errno));
        return 1;
      }
      done += c;
    }
  }
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    fprintf(stderr, "mlc-random-model: %s: %s\n", path, strerror(errno));
    return 1;
  }
  mlc_buf_printf(&cfg,
                 "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": %ld,\n"
                 "  \"num_hidden_layers\": %ld,\n  \"num_attention_heads\": %ld,\n  \"num_key_value_heads\": %ld,\n"
                 "  \"intermediate_size\": %ld,\n  \"vocab_size\": %ld,\n  \"max_position_embeddings\": %ld,\n"
                 "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 500000.0,\n  \"hidden_act\": \"silu\",\n"
                 "  \"tie_word_embeddings\": %s,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"torch_dtype\": \"%s\"\n}\n",
                 s.hidden, s.layers, s.heads, s.kv_heads, s.ffn, s.vocab, s.ctx, s.tied ? "true" : "false",
                 !strcmp(st_dt, "F32") ? "float32" : !strcmp(st_dt, "F16") ? "float16" : "bfloat16");
  char *cp = mlc_path_join(out, "config.json");
  if (mlc_write_file_atomic(cp, cfg.data, cfg.len) != MLC_OK) {
    fprintf(stderr, "mlc-random-model: %s\n", mlc_last_error());
    return 1;
  }
  printf("wrote %s: %d tensors, %.2f GB (%s)\n", out, nt, (double)off / 1e9, dtype);
  return 0;
}
