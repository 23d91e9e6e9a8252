/* sampler.h: choosing the next token from logits: greedy (temperature 0), or temperature with
 * top-k and top-p filtering, from a seeded generator so runs are reproducible. */
#ifndef MLC_SAMPLER_H
#define MLC_SAMPLER_H

#include "base/base.h"

typedef struct mlc_sampling {
  float temperature; /* 0: greedy */
  float top_p;       /* 1: off */
  int top_k;         /* 0: off */
  uint64_t seed;
  float min_p;       /* 0: off; keep tokens with prob >= min_p * the top prob */
} mlc_sampling;

typedef struct mlc_sampler {
  mlc_sampling p;
  uint64_t state;
  int vocab;
  float *prob;  /* [vocab] scratch */
  int32_t *idx; /* [vocab] scratch */
} mlc_sampler;

mlc_status mlc_sampler_init(mlc_sampler *s, int vocab, const mlc_sampling *p);
void mlc_sampler_free(mlc_sampler *s);
int32_t mlc_sampler_sample(mlc_sampler *s, const float *logits);
/* One draw from logits with parameters p and generator state *state (advanced); prob/idx are
 * [V] scratch. Used by the engine, which keeps one state per choice. */
int32_t mlc_sample_logits(const mlc_sampling *p, uint64_t *state, const float *logits, int V, float *prob,
                          int32_t *idx);
/* The host's filter: prob[0..V) the softmax of logits at p->temperature (> 0), idx[0..n) the tokens
 * min_p, top_k and top_p keep, most likely first (ties: lower id first); returns n. The draw
 * picks idx[i] with probability prob[idx[i]] / (sum of the kept probs). */
int mlc_sample_filter(const mlc_sampling *p, const float *logits, int V, float *prob, int32_t *idx);
/* One uniform draw in [0, 1) from the generator (splitmix64), advancing it. */
double mlc_sample_uniform(uint64_t *state);
/* The parameters of a draw on the device (mlc_sample_params, MLC_OP_SAMPLE) for sampling p,
 * taking the uniform from *state when p samples (temperature > 0), as mlc_sample_logits does. */
void mlc_sample_device_params(const mlc_sampling *p, uint64_t *state, mlc_sample_params *out);
/* Index of the largest value (the first on ties). */
int32_t mlc_argmax(const float *x, int n);

#endif
