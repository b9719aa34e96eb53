/* layers — activations, dropout, layer norm, losses and metrics; see layers.h.
 * Convolution and pooling are in layers_conv.c. */
#include "layers.h"

#include <math.h>
#include <string.h>

#include "sampler.h"

/* ---- activations ------------------------------------------------------------- */

void leaky_relu_forward(float *out, const float *inp, long n, float alpha) {
  for (long i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : alpha * inp[i];
}

void leaky_relu_backward(float *dinp, const float *dout, const float *inp, long n, float alpha) {
  for (long i = 0; i < n; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : alpha * dout[i];
}

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

void gelu_forward(float *out, const float *inp, long n) {
  for (long i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
  }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, long n) {
  for (long i = 0; i < n; i++) {
    float x = inp[i];
    float t = tanhf(GELU_K * (x + GELU_C * x * x * x));
    float dudx = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
    dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dudx);
  }
}

void tanh_forward(float *out, const float *inp, long n) {
  for (long i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void tanh_backward(float *dinp, const float *dout, const float *out, long n) {
  for (long i = 0; i < n; i++) dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

/* Never exponentiates a large positive number: for x < 0 it uses
 * e^x / (1 + e^x). */
static float sigmoidf(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

void sigmoid_forward(float *out, const float *inp, long n) {
  for (long i = 0; i < n; i++) out[i] = sigmoidf(inp[i]);
}

void sigmoid_backward(float *dinp, const float *dout, const float *out, long n) {
  for (long i = 0; i < n; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

void softmax_forward(float *out, const float *inp, int B, int K) {
  for (int i = 0; i < B; i++) {
    const float *z = inp + (long)i * K;
    float *y = out + (long)i * K;
    float zmax = z[0];
    for (int k = 1; k < K; k++) zmax = z[k] > zmax ? z[k] : zmax;
    double sum = 0.0;
    for (int k = 0; k < K; k++) {
      y[k] = expf(z[k] - zmax);
      sum += y[k];
    }
    float inv = (float)(1.0 / sum);
    for (int k = 0; k < K; k++) y[k] *= inv;
  }
}

void softmax_backward(float *dinp, const float *dout, const float *out, int B, int K) {
  for (int i = 0; i < B; i++) {
    const float *dy = dout + (long)i * K, *y = out + (long)i * K;
    float *dx = dinp + (long)i * K;
    double dot = 0.0;
    for (int k = 0; k < K; k++) dot += (double)dy[k] * y[k];
    for (int k = 0; k < K; k++) dx[k] = y[k] * (dy[k] - (float)dot);
  }
}

/* ---- dropout ----------------------------------------------------------------- */

/* A salt so that dropout draws differ from the init and sampler streams
 * that use the same run seed. */
#define DROPOUT_SALT 0xD1B54A32D192ED03ULL

static uint64_t dropout_row_key(uint64_t seed, uint64_t step, uint64_t row) {
  uint64_t h = sampler_mix64(seed ^ DROPOUT_SALT);
  h = sampler_mix64(h ^ step);
  return sampler_mix64(h ^ row);
}

/* The draw is a 53-bit uniform in [0, 1), compared in double. */
static int keep_from_key(uint64_t key, uint64_t elem, double p) {
  return (double)(sampler_mix64(key ^ elem) >> 11) * 0x1.0p-53 >= p;
}

int dropout_keep(uint64_t seed, uint64_t step, uint64_t row, uint64_t elem, float p) {
  return keep_from_key(dropout_row_key(seed, step, row), elem, (double)p);
}

/* out = inp * mask / (1 - p); the backward is the same map applied to dout. */
static void dropout_apply(float *out, const float *inp, int B, int D, float p, uint64_t seed,
                          uint64_t step, const uint64_t *rows) {
  if (p <= 0.0f) {
    if (out != inp) memcpy(out, inp, sizeof(float) * (size_t)B * (size_t)D);
    return;
  }
  const float s = 1.0f / (1.0f - p);
  for (int i = 0; i < B; i++) {
    uint64_t key = dropout_row_key(seed, step, rows[i]);
    const float *x = inp + (long)i * D;
    float *y = out + (long)i * D;
    for (int j = 0; j < D; j++) y[j] = keep_from_key(key, (uint64_t)j, (double)p) ? x[j] * s : 0.0f;
  }
}

void dropout_forward(float *out, const float *inp, int B, int D, float p, uint64_t seed,
                     uint64_t step, const uint64_t *rows) {
  dropout_apply(out, inp, B, D, p, seed, step, rows);
}

void dropout_backward(float *dinp, const float *dout, int B, int D, float p, uint64_t seed,
                      uint64_t step, const uint64_t *rows) {
  dropout_apply(dinp, dout, B, D, p, seed, step, rows);
}

/* ---- layer normalisation ----------------------------------------------------- */

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                       const float *beta, int B, int D, float eps) {
  for (int i = 0; i < B; i++) {
    const float *x = inp + (long)i * D;
    float *y = out + (long)i * D;
    /* Two passes in double: the mean first, then the centred variance. */
    double m = 0.0;
    for (int j = 0; j < D; j++) m += x[j];
    m /= D;
    double v = 0.0;
    for (int j = 0; j < D; j++) v += ((double)x[j] - m) * ((double)x[j] - m);
    v /= D;
    float mf = (float)m, rs = (float)(1.0 / sqrt(v + (double)eps));
    for (int j = 0; j < D; j++) y[j] = (x[j] - mf) * rs * gamma[j] + beta[j];
    mean[i] = mf;
    rstd[i] = rs;
  }
}

void layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *rstd, const float *gamma,
                        int B, int D) {
  for (int j = 0; j < D; j++) dgamma[j] = 0.0f, dbeta[j] = 0.0f;
  for (int i = 0; i < B; i++) {
    const float *x = inp + (long)i * D, *dy = dout + (long)i * D;
    const float m = mean[i], rs = rstd[i];
    double gmean = 0.0, gxmean = 0.0;
    for (int j = 0; j < D; j++) {
      float xhat = (x[j] - m) * rs;
      float g = dy[j] * gamma[j];
      dbeta[j] += dy[j];
      dgamma[j] += dy[j] * xhat;
      gmean += g;
      gxmean += (double)g * xhat;
    }
    if (!dinp) continue;
    gmean /= D;
    gxmean /= D;
    float *dx = dinp + (long)i * D;
    for (int j = 0; j < D; j++) {
      float xhat = (x[j] - m) * rs;
      float g = dy[j] * gamma[j];
      dx[j] = rs * (g - (float)gmean - xhat * (float)gxmean);
    }
  }
}

/* ---- losses ------------------------------------------------------------------ */

double softmax_xent_smooth(float *dlogits, const float *logits, const int32_t *labels, int B, int K,
                           float epsilon, float scale, long *correct) {
  const double eps = epsilon, off = eps / K, on = 1.0 - eps + off;
  double loss = 0.0;
  long hits = 0;
  for (int i = 0; i < B; i++) {
    const float *z = logits + (long)i * K;
    int y = labels[i], argmax = 0;
    float zmax = z[0];
    for (int k = 1; k < K; k++)
      if (z[k] > zmax) zmax = z[k], argmax = k;
    double sum = 0.0, shifted_sum = 0.0;
    for (int k = 0; k < K; k++) {
      double s = (double)(z[k] - zmax);
      sum += exp(s);
      shifted_sum += s;
    }
    double logsum = log(sum);
    /* -sum_k q_k log p_k with log p_k = s_k - logsum and sum_k q_k = 1. */
    loss += logsum - (1.0 - eps) * (double)(z[y] - zmax) - off * shifted_sum;
    hits += (argmax == y);
    if (dlogits) {
      float *d = dlogits + (long)i * K;
      for (int k = 0; k < K; k++) {
        double p = exp((double)(z[k] - zmax) - logsum);
        d[k] = (float)(scale * (p - (k == y ? on : off)));
      }
    }
  }
  if (correct) *correct += hits;
  return loss;
}

double bce_logits_loss(float *dlogits, const float *logits, const float *targets, int B, int K,
                       float scale) {
  const long n = (long)B * K;
  const double g = (double)scale / K;
  double loss = 0.0;
  for (long i = 0; i < n; i++) {
    double z = logits[i], t = targets[i];
    loss += (z > 0.0 ? z : 0.0) - z * t + log1p(exp(-fabs(z)));
    if (dlogits) {
      double s = z >= 0.0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
      dlogits[i] = (float)(g * (s - t));
    }
  }
  return loss / K;
}

double mse_loss(float *dpred, const float *pred, const float *targets, int B, int K, float scale) {
  const long n = (long)B * K;
  const double g = 2.0 * (double)scale / K;
  double loss = 0.0;
  for (long i = 0; i < n; i++) {
    double d = (double)pred[i] - (double)targets[i];
    loss += d * d;
    if (dpred) dpred[i] = (float)(g * d);
  }
  return loss / K;
}

double mae_loss(float *dpred, const float *pred, const float *targets, int B, int K, float scale) {
  const long n = (long)B * K;
  const float g = (float)((double)scale / K);
  double loss = 0.0;
  for (long i = 0; i < n; i++) {
    double d = (double)pred[i] - (double)targets[i];
    loss += fabs(d);
    if (dpred) dpred[i] = d > 0.0 ? g : d < 0.0 ? -g : 0.0f;
  }
  return loss / K;
}

/* ---- metrics ------------------------------------------------------------------ */

long topk_correct(const float *logits, const int32_t *labels, int B, int K, int k) {
  long hits = 0;
  for (int i = 0; i < B; i++) {
    const float *z = logits + (long)i * K;
    float zy = z[labels[i]];
    int above = 0;
    for (int j = 0; j < K; j++) above += z[j] > zy;
    hits += above < k;
  }
  return hits;
}
