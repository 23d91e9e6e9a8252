/* sampler.c: greedy and stochastic token selection. */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>

int32_t mlc_argmax(const float *x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best])
      best = i;
  return best;
}

/* splitmix64: a well-mixed 64-bit generator from any seed */
static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

mlc_status mlc_sampler_init(mlc_sampler *s, int vocab, const mlc_sampling *p) {
  s->p = *p;
  s->state = p->seed;
  s->vocab = vocab;
  s->prob = malloc(sizeof(float) * (size_t)vocab);
  s->idx = malloc(sizeof(int32_t) * (size_t)vocab);
  if (!s->prob || !s->idx) {
    mlc_sampler_free(s);
    return mlc_err(MLC_ERR_NOMEM, "out of memory for the sampler");
  }
  if (p->temperature < 0 || p->top_p <= 0 || p->top_p > 1 || p->top_k < 0)
    return mlc_err(MLC_ERR_INVALID_ARG, "invalid sampling parameters: temperature %g (>= 0), top_p %g (in (0, 1]), top_k %d (>= 0)",
                   p->temperature, p->top_p, p->top_k);
  return MLC_OK;
}

void mlc_sampler_free(mlc_sampler *s) {
  free(s->prob);
  free(s->idx);
  s->prob = NULL;
  s->idx = NULL;
}

static int cmp_prob_desc(const void *a, const void *b, void *ctx) {
  const float *p = ctx;
  float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
  if (x != y)
    return x < y ? 1 : -1;
  return *(const int32_t *)a - *(const int32_t *)b;
}

int mlc_sample_filter(const mlc_sampling *p, const float *logits, int V, float *prob, int32_t *idx) {
  float mx = logits[mlc_argmax(logits, V)];
  double sum = 0;
  for (int i = 0; i < V; i++) {
    prob[i] = expf((logits[i] - mx) / p->temperature);
    sum += prob[i];
  }
  for (int i = 0; i < V; i++) {
    prob[i] = (float)(prob[i] / sum);
    idx[i] = i;
  }
  int n = V;
  bool min_p = p->min_p > 0 && p->min_p <= 1;
  if (min_p) {
    /* the top token has prob exp(0)/sum: keep only tokens >= min_p of it (cheap: no sort) */
    float cut = (float)(p->min_p / sum);
    int k = 0;
    for (int i = 0; i < V; i++)
      if (prob[i] >= cut)
        idx[k++] = i;
    n = k;
  }
  bool filter = (p->top_k > 0 && p->top_k < n) || (p->top_p > 0 && p->top_p < 1.0f);
  if (filter) {
    /* Sort only the likely tokens: those with prob >= a threshold, lowered until they hold top_p
     * of the mass and at least top_k tokens. Every token left out is less likely than every token
     * kept, so the sorted prefix, and the draw, are those of a full sort (a large vocabulary is
     * not sorted for every token). */
    float pmax = (float)(1.0 / sum);
    for (float thr = pmax * 0.0625f; thr > 1e-30f; thr *= 0.0625f) {
      int k = 0;
      double mass = 0;
      for (int i = 0; i < n; i++)
        if (prob[idx[i]] >= thr) {
          mass += prob[idx[i]];
          k++;
        }
      bool enough = (p->top_p > 0 && p->top_p < 1.0f ? mass >= p->top_p : true) &&
                    (p->top_k > 0 && p->top_k < n ? k >= p->top_k : true);
      if (!enough)
        continue;
      int w = 0;
      for (int i = 0; i < n; i++)
        if (prob[idx[i]] >= thr)
          idx[w++] = idx[i];
      n = w;
      break;
    }
    qsort_r(idx, (size_t)n, sizeof(int32_t), cmp_prob_desc, prob);
    if (p->top_k > 0 && p->top_k < n)
      n = p->top_k;
    if (p->top_p > 0 && p->top_p < 1.0f) {
      double cum = 0;
      for (int i = 0; i < n; i++) {
        cum += prob[idx[i]];
        if (cum >= p->top_p) {
          n = i + 1;
          break;
        }
      }
    }
  }
  return n;
}

int32_t mlc_sample_logits(const mlc_sampling *p, uint64_t *state, const float *logits, int V, float *prob,
                          int32_t *idx) {
  if (p->temperature <= 0)
    return mlc_argmax(logits, V);
  int n = mlc_sample_filter(p, logits, V, prob, idx);
  double total = 0;
  for (int i = 0; i < n; i++)
    total += prob[idx[i]];
  double r = next_unit(state) * total, acc = 0;
  for (int i = 0; i < n; i++) {
    acc += prob[idx[i]];
    if (r < acc)
      return idx[i];
  }
  return idx[n - 1];
}

double mlc_sample_uniform(uint64_t *state) { return next_unit(state); }

void mlc_sample_device_params(const mlc_sampling *p, uint64_t *state, mlc_sample_params *out) {
  *out = (mlc_sample_params){.temperature = p->temperature, .top_p = p->top_p, .top_k = p->top_k, .min_p = p->min_p};
  if (p->temperature <= 0) /* greedy draws nothing, as on the host */
    return;
  float u = (float)next_unit(state);
  out->uniform = u < 1.0f ? u : 0x1.fffffep-1f; /* [0, 1) after rounding to f32 */
}

int32_t mlc_sampler_sample(mlc_sampler *s, const float *logits) {
  return mlc_sample_logits(&s->p, &s->state, logits, s->vocab, s->prob, s->idx);
}
