/* rope.c: rotary embedding frequency tables for the rope types of HF configs. */
#include <math.h>

#include "model/arch.h"

mlc_status mlc_rope_inv_freq(const mlc_model_config *cfg, int rot, float *inv, float *scale) {
  double base = cfg->rope_theta > 0 ? cfg->rope_theta : 10000.0;
  int half = rot / 2;
  *scale = 1.0f;
  for (int i = 0; i < half; i++)
    inv[i] = (float)(1.0 / pow(base, (double)(2 * i) / (double)rot));
  switch (cfg->rope_type) {
  case MLC_ROPE_DEFAULT:
    return MLC_OK;
  case MLC_ROPE_LINEAR:
    for (int i = 0; i < half; i++)
      inv[i] = inv[i] / cfg->rope_factor;
    return MLC_OK;
  case MLC_ROPE_LLAMA3: {
    double factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
    double old = cfg->rope_original_max_pos;
    if (factor <= 0 || lo <= 0 || hi <= lo || old <= 0)
      return mlc_err(MLC_ERR_FORMAT, "config.json: rope llama3 parameters invalid (factor %g, low %g, high %g, original %g)",
                     factor, lo, hi, old);
    double lo_wl = old / lo, hi_wl = old / hi;
    for (int i = 0; i < half; i++) {
      double f = inv[i], wl = 2 * M_PI / f;
      double scaled = wl > lo_wl ? f / factor : f;
      double smooth = (old / wl - lo) / (hi - lo);
      double smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      bool medium = !(wl < hi_wl) && !(wl > lo_wl);
      inv[i] = (float)(medium ? smoothed : scaled);
    }
    return MLC_OK;
  }
  case MLC_ROPE_YARN: {
    double factor = cfg->rope_factor, old = cfg->rope_original_max_pos > 0 ? cfg->rope_original_max_pos
                                                                             : cfg->max_position_embeddings;
    double bf = cfg->yarn_beta_fast > 0 ? cfg->yarn_beta_fast : 32, bs = cfg->yarn_beta_slow > 0 ? cfg->yarn_beta_slow : 1;
    if (factor <= 0)
      return mlc_err(MLC_ERR_FORMAT, "config.json: rope yarn factor %g invalid", factor);
    /* dims whose wavelength completes between beta_fast and beta_slow turns over `old` tokens
       blend interpolation and extrapolation linearly */
    double lo = floor(rot * log(old / (bf * 2 * M_PI)) / (2 * log(base)));
    double hi = ceil(rot * log(old / (bs * 2 * M_PI)) / (2 * log(base)));
    if (lo < 0) lo = 0;
    if (hi > rot - 1) hi = rot - 1;
    if (hi == lo) hi += 0.001;
    for (int i = 0; i < half; i++) {
      double ramp = (i - lo) / (hi - lo);
      if (ramp < 0) ramp = 0;
      if (ramp > 1) ramp = 1;
      double extrap_w = 1 - ramp;
      double f = inv[i];
      inv[i] = (float)(f / factor * (1 - extrap_w) + f * extrap_w);
    }
    *scale = cfg->yarn_attn_factor > 0 ? cfg->yarn_attn_factor : (float)(0.1 * log(factor) + 1.0);
    return MLC_OK;
  }
  case MLC_ROPE_DYNAMIC:
    return mlc_err(MLC_ERR_UNSUPPORTED, "config.json: rope_type 'dynamic' (NTK scaling that changes with the sequence length) is not supported");
  case MLC_ROPE_LONGROPE:
    return mlc_err(MLC_ERR_UNSUPPORTED, "config.json: rope_type 'longrope' is not supported");
  }
  return MLC_OK;
}
