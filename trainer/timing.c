#include "timing.h"

#include <stdio.h>

void timing_breakdown(const ms_interval *iv, ms_breakdown *b) {
  double sum = 0;
  for (int i = 0; i < T_PARTS; i++) {
    b->frac[i] = iv->wall > 0 ? iv->t[i] / iv->wall : 0.0;
    sum += b->frac[i];
  }
  b->other = sum < 1.0 ? 1.0 - sum : 0.0;
  b->samples_per_s = iv->wall > 0 ? iv->samples / iv->wall : 0.0;
  b->flops_per_rank =
      iv->world > 0 ? 3.0 * iv->flops_per_sample * b->samples_per_s / iv->world : 0.0;
  double peak = iv->peak * (iv->threads > 0 ? iv->threads : 1);
  b->peak_frac = peak > 0 ? b->flops_per_rank / peak : 0.0;
}

void timing_format(const ms_breakdown *b, char *text, size_t tn, char *json, size_t jn) {
  snprintf(text, tn,
           "compute %.1f%% | comm %.1f%% | data %.1f%% | checkpoint %.1f%% | eval %.1f%% | "
           "other %.1f%%",
           100 * b->frac[T_COMPUTE], 100 * b->frac[T_COMM], 100 * b->frac[T_DATA],
           100 * b->frac[T_CKPT], 100 * b->frac[T_EVAL], 100 * b->other);
  snprintf(json, jn,
           "\"compute\":%.4f,\"comm\":%.4f,\"data\":%.4f,\"checkpoint\":%.4f,\"eval\":%.4f,"
           "\"other\":%.4f,\"samples_per_s\":%.1f,\"gflops_per_rank\":%.3f,\"peak_frac\":%.4f",
           b->frac[T_COMPUTE], b->frac[T_COMM], b->frac[T_DATA], b->frac[T_CKPT], b->frac[T_EVAL],
           b->other, b->samples_per_s, b->flops_per_rank / 1e9, b->peak_frac);
}
