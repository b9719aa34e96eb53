#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "clones.h"

void dense_forward(float *out, const float *inp, const float *w, const float *b,
                   int B, int C, int OC) {
  /* Seed every row with the bias, then accumulate the product on top. */
  for (int i = 0; i < B; i++) memcpy(out + (long)i * OC, b, sizeof(float) * (size_t)OC);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OC, C, 1.0f, inp, C, w, C,
              1.0f, out, OC);
}

void dense_backward(float *dinp, float *dw, float *db, const float *dout,
                    const float *inp, const float *w, int B, int C, int OC) {
  /* dw (OC, C) = dout^T (OC, B) @ inp (B, C) */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, B, 1.0f, dout, OC, inp, C,
              0.0f, dw, C);
  for (int o = 0; o < OC; o++) db[o] = 0.0f;
  for (int i = 0; i < B; i++) {
    const float *row = dout + (long)i * OC;
    for (int o = 0; o < OC; o++) db[o] += row[o];
  }
  if (dinp) dense_backward_data(dinp, dout, w, B, C, OC);
}

void dense_backward_data(float *dinp, const float *dout, const float *w, int B, int C, int OC) {
  /* dinp (B, C) = dout (B, OC) @ w (OC, C) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, OC, 1.0f, dout, OC, w, C, 0.0f,
              dinp, C);
}

/* NaN stays NaN (as in PyTorch), so that a NaN input or weight reaches the
 * loss, where train.c stops the run, instead of vanishing into zeros. */
MS_CLONES void relu_forward(float *x, long n) {
  for (long i = 0; i < n; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i];
}

MS_CLONES void relu_backward(float *dx, const float *out, long n) {
  for (long i = 0; i < n; i++) dx[i] = out[i] > 0.0f ? dx[i] : 0.0f;
}

double softmax_xent(float *dlogits, const float *logits, const int32_t *labels,
                    int B, int K, float scale, long *correct) {
  double loss = 0.0;
  long hits = 0;
  for (int i = 0; i < B; i++) {
    const float *z = logits + (long)i * K;
    int y = labels[i];
    int argmax = 0;
    float zmax = z[0];
    for (int k = 1; k < K; k++)
      if (z[k] > zmax) zmax = z[k], argmax = k;
    /* Shift by the max so exp never overflows; sum in double for a stable
     * log-sum-exp on wide outputs. */
    double sum = 0.0;
    for (int k = 0; k < K; k++) sum += exp((double)(z[k] - zmax));
    double logsum = log(sum);
    loss += logsum - (double)(z[y] - zmax);
    hits += (argmax == y);
    if (dlogits) {
      float *d = dlogits + (long)i * K;
      for (int k = 0; k < K; k++) {
        double p = exp((double)(z[k] - zmax) - logsum);
        d[k] = (float)(scale * (p - (k == y ? 1.0 : 0.0)));
      }
    }
  }
  if (correct) *correct += hits;
  return loss;
}
