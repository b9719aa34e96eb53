#include "layers_seq.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

/* ---- embeddings --------------------------------------------------------------- */

int embedding_id(float x, int V) {
  if (!(x >= 0.0f)) return 0; /* also NaN */
  if (x >= (float)V) return V - 1;
  return (int)x;
}

void embedding_forward(float *out, const float *ids, const float *w, long N, int D, int V) {
  for (long r = 0; r < N; r++)
    memcpy(out + r * D, w + (long)embedding_id(ids[r], V) * D, sizeof(float) * (size_t)D);
}

void embedding_backward(float *dw, const float *dout, const float *ids, long N, int D, int V,
                        int accumulate) {
  if (!accumulate) memset(dw, 0, sizeof(float) * (size_t)V * (size_t)D);
  for (long r = 0; r < N; r++) {
    float *row = dw + (long)embedding_id(ids[r], V) * D;
    const float *d = dout + r * D;
    for (int j = 0; j < D; j++) row[j] += d[j];
  }
}

void posemb_forward(float *out, const float *inp, const float *p, int B, int T, int D) {
  long n = (long)T * D;
  for (int b = 0; b < B; b++) {
    float *o = out + b * n;
    const float *x = inp + b * n;
    for (long i = 0; i < n; i++) o[i] = x[i] + p[i];
  }
}

void posemb_backward(float *dp, const float *dout, int B, int T, int D) {
  long n = (long)T * D;
  memset(dp, 0, sizeof(float) * (size_t)n);
  for (int b = 0; b < B; b++) {
    const float *d = dout + b * n;
    for (long i = 0; i < n; i++) dp[i] += d[i];
  }
}

/* ---- an inline exp ---------------------------------------------------------------- */

/* e^x for x <= 0 (clamped at -87): x = k ln2 + r, |r| <= ln2 / 2, e^r by
 * its Taylor polynomial of degree 6 (relative error below 2e-7), 2^k
 * through the exponent bits. Branch-free, so loops over it vectorise (this
 * file is compiled with -fno-trapping-math, which lets GCC turn the clamp's
 * comparison into a select: CMakeLists.txt). */
static inline float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  int k = (int)(x * 1.44269504f - 0.5f); /* round to nearest: x <= 0 */
  float r = x - (float)k * 0.693145752f - (float)k * 1.42860677e-6f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                                 r / 720)))));
  union {
    uint32_t u;
    float f;
  } two_k = {.u = (uint32_t)(k + 127) << 23};
  return p * two_k.f;
}

/* tanh(u) = sign(u) (1 - e^{-2|u|}) / (1 + e^{-2|u|}) */
static inline float tanh_fast(float u) {
  float t = exp_nonpos(-2.0f * fabsf(u));
  return copysignf((1.0f - t) / (1.0f + t), u);
}

/* ---- attention ------------------------------------------------------------------ */

/* In place over one (T, T) score matrix: the causal mask and the row
 * softmax in one pass per row. Masked entries become exactly 0, so the
 * backward needs no mask of its own. */
static void masked_softmax(float *s, int T, int causal) {
  for (int t = 0; t < T; t++) {
    float *row = s + (long)t * T;
    int n = causal ? t + 1 : T;
    float mx = row[0];
    for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    /* Two loops: the first vectorises (exp_nonpos), the sum keeps its order.
     * A score more than 30 below the row's maximum weighs less than e^-30 =
     * 9e-14 of it, below float's resolution of the sum: it becomes 0, so
     * that the products with P never run into denormal floats, which cost
     * the sgemm calls several times their time (seq.md). */
    for (int j = 0; j < n; j++) {
      float d = row[j] - mx;
      row[j] = d < -30.0f ? 0.0f : exp_nonpos(d);
    }
    for (int j = 0; j < n; j++) sum += row[j];
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) row[j] *= inv;
    for (int j = n; j < T; j++) row[j] = 0.0f;
  }
}

void attention_forward(float *y, float *att, const float *qkv, int B, int T, int D, int H,
                       int causal) {
  const int hd = D / H, ld = 3 * D;
  const float scale = 1.0f / sqrtf((float)hd);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const float *q = qkv + (long)b * T * ld + (long)h * hd;
      const float *k = q + D, *v = q + 2 * D;
      float *p = att + ((long)b * H + h) * T * T;
      /* S (T, T) = scale * q (T, hd) @ k^T (hd, T); rows of q and k are ld apart. */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f,
                  p, T);
      masked_softmax(p, T, causal);
      /* y[b, :, h*hd:] (T, hd) = P (T, T) @ v (T, hd) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, v, ld, 0.0f,
                  y + (long)b * T * D + (long)h * hd, D);
    }
}

void attention_backward(float *dqkv, const float *dy, const float *qkv, const float *att, int B,
                        int T, int D, int H, float *scratch) {
  const int hd = D / H, ld = 3 * D;
  const float scale = 1.0f / sqrtf((float)hd);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const long o = (long)b * T * ld + (long)h * hd;
      const float *q = qkv + o, *k = q + D, *v = q + 2 * D;
      float *dq = dqkv + o, *dk = dq + D, *dv = dq + 2 * D;
      const float *p = att + ((long)b * H + h) * T * T;
      const float *dyh = dy + (long)b * T * D + (long)h * hd;
      float *ds = scratch;
      /* dP (T, T) = dy (T, hd) @ v^T;  dv (T, hd) = P^T (T, T) @ dy (T, hd) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dyh, D, v, ld, 0.0f,
                  ds, T);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, dyh, D, 0.0f, dv,
                  ld);
      /* dS = P * (dP - rowsum(dP * P)) * scale; the softmax's backward, with
       * the score scale folded in. Masked P are 0, so their dS are too. */
      for (int t = 0; t < T; t++) {
        float *dr = ds + (long)t * T;
        const float *pr = p + (long)t * T;
        float dot = 0.0f;
        for (int j = 0; j < T; j++) dot += dr[j] * pr[j];
        for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
      }
      /* dq (T, hd) = dS (T, T) @ k (T, hd);  dk (T, hd) = dS^T @ q */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, ds, T, k, ld, 0.0f,
                  dq, ld);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, ds, T, q, ld, 0.0f, dk,
                  ld);
    }
}

/* ---- GELU of the transformer blocks --------------------------------------------- */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

void gelu_fast_forward(float *out, const float *inp, long n) {
  for (long i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanh_fast(GELU_K * (x + GELU_C * x * x * x)));
  }
}

void gelu_fast_backward(float *dinp, const float *dout, const float *inp, long n) {
  for (long i = 0; i < n; i++) {
    float x = inp[i];
    float t = tanh_fast(GELU_K * (x + GELU_C * x * x * x));
    float dudx = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
    dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dudx);
  }
}

/* ---- loss ------------------------------------------------------------------------ */

double seq_xent(float *dlogits, const float *logits, const int32_t *labels, int B, int T, int V,
                float scale, long *correct) {
  /* Every position is a row of softmax_xent; the 1 / T makes a sample's
   * loss the mean over its positions. */
  double sum = softmax_xent(dlogits, logits, labels, B * T, V, scale / (float)T, correct);
  return sum / T;
}
