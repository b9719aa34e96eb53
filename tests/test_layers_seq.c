/* The kernels of trainer/nn/layers_seq.h: every backward against central
 * finite differences of a scalar function of its forward (summed in double),
 * attention against a naive loop, the causal mask, and the sequence loss
 * against softmax_xent. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"
#include "layers.h"
#include "layers_seq.h"
#include "testutil.h"

/* Central differences of f() in x[i] against grad[i], for every stride-th
 * i (1: every one). */
static void gradcheck_every(float *x, long n, long stride, const float *grad, double (*f)(void),
                            float eps, double rtol, double atol) {
  for (long i = 0; i < n; i += stride) {
    float keep = x[i];
    x[i] = keep + eps;
    double lp = f();
    x[i] = keep - eps;
    double lm = f();
    x[i] = keep;
    tu_assert_close(grad[i], (lp - lm) / (2.0 * (double)eps), rtol, atol);
  }
}

static void gradcheck(float *x, long n, const float *grad, double (*f)(void), float eps,
                      double rtol, double atol) {
  gradcheck_every(x, n, 1, grad, f, eps, rtol, atol);
}

static double dot(const float *r, const float *y, long n) {
  double s = 0;
  for (long i = 0; i < n; i++) s += (double)r[i] * y[i];
  return s;
}

/* ---- embeddings ------------------------------------------------------------------- */

enum { EB = 2, ET = 5, ED = 3, EV = 4 };
static float eids[EB * ET] = {0, 3, 3, 1, 2, 2, 0, 3, 3, 3};
static float ew[EV * ED], ep[ET * ED], ex[EB * ET * ED], er[EB * ET * ED], ey[EB * ET * ED];

static double emb_loss(void) {
  embedding_forward(ey, eids, ew, EB * ET, ED, EV);
  return dot(er, ey, EB * ET * ED);
}
static double pos_loss(void) {
  posemb_forward(ey, ex, ep, EB, ET, ED);
  return dot(er, ey, EB * ET * ED);
}

static void test_layers_seq_embedding_looks_up_rows(void **state) {
  (void)state;
  tu_fill(ew, EV * ED, 1);
  emb_loss();
  for (int r = 0; r < EB * ET; r++)
    assert_memory_equal(ey + r * ED, ew + (int)eids[r] * ED, sizeof(float) * ED);
  /* Out-of-range ids are clamped, never read outside the table. */
  assert_int_equal(embedding_id(-3.0f, EV), 0);
  assert_int_equal(embedding_id(NAN, EV), 0);
  assert_int_equal(embedding_id(7.0f, EV), EV - 1);
  assert_int_equal(embedding_id(2.0f, EV), 2);
}

static void test_layers_seq_embedding_gradcheck(void **state) {
  (void)state;
  tu_fill(ew, EV * ED, 1), tu_fill(er, EB * ET * ED, 2);
  float dw[EV * ED];
  embedding_backward(dw, er, eids, EB * ET, ED, EV, 0);
  gradcheck(ew, EV * ED, dw, emb_loss, 1e-2f, 1e-3, 1e-4);
  /* accumulate adds onto what is there. */
  float acc[EV * ED];
  for (int i = 0; i < EV * ED; i++) acc[i] = 1.0f;
  embedding_backward(acc, er, eids, EB * ET, ED, EV, 1);
  for (int i = 0; i < EV * ED; i++) tu_assert_close(acc[i], dw[i] + 1.0, 1e-6, 1e-6);
}

static void test_layers_seq_posemb_gradcheck(void **state) {
  (void)state;
  tu_fill(ep, ET * ED, 3), tu_fill(ex, EB * ET * ED, 4), tu_fill(er, EB * ET * ED, 5);
  float dp[ET * ED];
  posemb_backward(dp, er, EB, ET, ED);
  gradcheck(ep, ET * ED, dp, pos_loss, 1e-2f, 1e-3, 1e-4);
  /* The input's gradient is dout itself. */
  gradcheck(ex, EB * ET * ED, er, pos_loss, 1e-2f, 1e-3, 1e-4);
}

/* ---- attention ---------------------------------------------------------------------- */

enum { AB = 2, AT = 5, AD = 6, AH = 2 };
static float aqkv[AB * AT * 3 * AD], ar[AB * AT * AD], ay[AB * AT * AD], aatt[AB * AH * AT * AT];
static int acausal;
static float ascratch[3 * AT * AD + 4 * AT];

static double attn_loss(void) {
  attention_forward(ay, aatt, aqkv, AB, AT, AD, AH, acausal, ascratch);
  return dot(ar, ay, AB * AT * AD);
}

/* The definition, one output at a time, in double. */
static void attn_naive(double *out, int causal) {
  const int hd = AD / AH;
  for (int b = 0; b < AB; b++)
    for (int h = 0; h < AH; h++)
      for (int t = 0; t < AT; t++) {
        const float *q = aqkv + ((long)b * AT + t) * 3 * AD + h * hd;
        double s[AT], mx = -INFINITY, sum = 0;
        int n = causal ? t + 1 : AT;
        for (int j = 0; j < n; j++) {
          const float *k = aqkv + ((long)b * AT + j) * 3 * AD + AD + h * hd;
          s[j] = 0;
          for (int c = 0; c < hd; c++) s[j] += (double)q[c] * k[c];
          s[j] /= sqrt((double)hd);
          mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < n; j++) sum += (s[j] = exp(s[j] - mx));
        for (int c = 0; c < hd; c++) {
          double y = 0;
          for (int j = 0; j < n; j++)
            y += s[j] / sum * aqkv[((long)b * AT + j) * 3 * AD + 2 * AD + h * hd + c];
          out[((long)b * AT + t) * AD + h * hd + c] = y;
        }
      }
}

static void test_layers_seq_attention_matches_naive(void **state) {
  (void)state;
  tu_fill(aqkv, AB * AT * 3 * AD, 11);
  for (acausal = 0; acausal < 2; acausal++) {
    double want[AB * AT * AD];
    attn_loss();
    attn_naive(want, acausal);
    for (int i = 0; i < AB * AT * AD; i++) tu_assert_close(ay[i], want[i], 1e-5, 1e-6);
  }
}

static void test_layers_seq_attention_causal_ignores_the_future(void **state) {
  (void)state;
  tu_fill(aqkv, AB * AT * 3 * AD, 12);
  acausal = 1;
  attn_loss();
  float before[AB * AT * AD];
  memcpy(before, ay, sizeof before);
  /* Change everything of the last position: earlier outputs stay the same. */
  for (int c = 0; c < 3 * AD; c++) aqkv[(AT - 1) * 3 * AD + c] += 1.0f;
  attn_loss();
  assert_memory_equal(ay, before, sizeof(float) * (AT - 1) * AD);
  for (int t = 0; t < AT; t++)
    for (int j = t + 1; j < AT; j++) assert_true(aatt[t * AT + j] == 0.0f);
}

/* Probabilities below e^-30 of the row's largest become exactly 0 (no
 * denormal products later); the others still sum to 1. */
static void test_layers_seq_attention_peaked_scores(void **state) {
  (void)state;
  tu_fill(aqkv, AB * AT * 3 * AD, 15);
  for (int i = 0; i < AB * AT * 3 * AD; i++) aqkv[i] *= 40.0f;
  acausal = 0;
  attn_loss();
  int zeros = 0;
  for (int r = 0; r < AB * AH * AT; r++) {
    double sum = 0;
    for (int j = 0; j < AT; j++) {
      float p = aatt[r * AT + j];
      assert_true(p == 0.0f || p > 9e-14f);
      zeros += p == 0.0f;
      sum += p;
    }
    tu_assert_close(sum, 1.0, 1e-6, 0);
  }
  assert_true(zeros > 0);
}

static void test_layers_seq_attention_gradcheck(void **state) {
  (void)state;
  float dqkv[AB * AT * 3 * AD];
  for (acausal = 0; acausal < 2; acausal++) {
    tu_fill(aqkv, AB * AT * 3 * AD, 13), tu_fill(ar, AB * AT * AD, 14);
    attn_loss();
    attention_backward(dqkv, ar, aqkv, aatt, AB, AT, AD, AH, acausal, ascratch);
    gradcheck(aqkv, AB * AT * 3 * AD, dqkv, attn_loss, 1e-2f, 1e-2, 3e-4);
  }
}

/* The same at the shapes of the kernels' vector paths: head dims of whole
 * vectors (32), of a vector and a remainder (20), and of two vectors, one
 * and a remainder (50), T not a multiple of the vector width nor of the
 * rows a pass takes, causal and not. */
enum { LB = 2, LT_MAX = 37, LD_MAX = 100 };
static float lqkv[LB * LT_MAX * 3 * LD_MAX], lr[LB * LT_MAX * LD_MAX], ly[LB * LT_MAX * LD_MAX];
static float latt[LB * 2 * LT_MAX * LT_MAX], lscratch[3 * LT_MAX * LD_MAX + 4 * LT_MAX];
static int lT, lD, lcausal;

static double attn_large_loss(void) {
  attention_forward(ly, latt, lqkv, LB, lT, lD, 2, lcausal, lscratch);
  return dot(lr, ly, (long)LB * lT * lD);
}

static void attn_large_naive(double *out) {
  const int hd = lD / 2, ld = 3 * lD;
  for (int b = 0; b < LB; b++)
    for (int h = 0; h < 2; h++)
      for (int t = 0; t < lT; t++) {
        const float *q = lqkv + ((long)b * lT + t) * ld + h * hd;
        double s[LT_MAX], mx = -INFINITY, sum = 0;
        int n = lcausal ? t + 1 : lT;
        for (int j = 0; j < n; j++) {
          const float *k = lqkv + ((long)b * lT + j) * ld + lD + h * hd;
          s[j] = 0;
          for (int c = 0; c < hd; c++) s[j] += (double)q[c] * k[c];
          s[j] /= sqrt((double)hd);
          mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < n; j++) sum += (s[j] = exp(s[j] - mx));
        for (int c = 0; c < hd; c++) {
          double y = 0;
          for (int j = 0; j < n; j++)
            y += s[j] / sum * lqkv[((long)b * lT + j) * ld + 2 * lD + h * hd + c];
          out[((long)b * lT + t) * lD + h * hd + c] = y;
        }
      }
}

static void test_layers_seq_attention_vector_shapes(void **state) {
  (void)state;
  const int shapes[3][2] = {{37, 64}, {19, 40}, {9, 100}};
  static double want[LB * LT_MAX * LD_MAX];
  static float dqkv[LB * LT_MAX * 3 * LD_MAX];
  assert_true(attention_scratch(LT_MAX, LD_MAX, 2) <= (long)(sizeof lscratch / sizeof(float)));
  for (int sh = 0; sh < 3; sh++)
    for (lcausal = 0; lcausal < 2; lcausal++) {
      lT = shapes[sh][0], lD = shapes[sh][1];
      const long nq = (long)LB * lT * 3 * lD, ny = (long)LB * lT * lD;
      tu_fill(lqkv, nq, 21 + sh), tu_fill(lr, ny, 23 + sh);
      attn_large_loss();
      attn_large_naive(want);
      for (long i = 0; i < ny; i++) tu_assert_close(ly[i], want[i], 1e-5, 1e-6);
      for (int r = 0; r < LB * 2 * lT; r++)
        for (int j = lcausal ? r % lT + 1 : lT; j < lT; j++) assert_true(latt[r * lT + j] == 0.0f);
      attention_backward(dqkv, lr, lqkv, latt, LB, lT, lD, 2, lcausal, lscratch);
      /* every 17th input (prime to the shapes: q, k and v of every head
       * and position in turn), so that the Debug + ASan build, where each
       * lane's FMA is a call, stays within the unit tests' timeout */
      gradcheck_every(lqkv, nq, 17, dqkv, attn_large_loss, 1e-2f, 1e-2, 3e-4);
    }
}

/* ---- layer norm ------------------------------------------------------------------------ */

/* D = 40: two whole vectors and a remainder. */
enum { NB = 3, ND = 40 };
static float nx[NB * ND], ng[ND], nbeta[ND], nr[NB * ND], ny[NB * ND], nmean[NB], nrstd[NB];

static double layernorm_seq_loss(void) {
  layernorm_seq_forward(ny, nmean, nrstd, nx, ng, nbeta, NB, ND, 1e-5f);
  return dot(nr, ny, NB * ND);
}

static void test_layers_seq_layernorm_matches_layers(void **state) {
  (void)state;
  tu_fill(nx, NB * ND, 71), tu_fill(ng, ND, 72), tu_fill(nbeta, ND, 73), tu_fill(nr, NB * ND, 74);
  for (int i = 0; i < NB * ND; i++) nx[i] = 2.0f * nx[i] + 0.5f;
  float y[NB * ND], m[NB], rs[NB], dx[NB * ND], dg[ND], db[ND], dx2[NB * ND], dg2[ND], db2[ND];
  layernorm_forward(y, m, rs, nx, ng, nbeta, NB, ND, 1e-5f);
  layernorm_seq_loss();
  for (int i = 0; i < NB * ND; i++) tu_assert_close(ny[i], y[i], 1e-5, 1e-6);
  for (int i = 0; i < NB; i++) tu_assert_close(nmean[i], m[i], 1e-5, 1e-6);
  layernorm_backward(dx, dg, db, nr, nx, m, rs, ng, NB, ND);
  layernorm_seq_backward(dx2, dg2, db2, nr, nx, nmean, nrstd, ng, NB, ND);
  for (int i = 0; i < NB * ND; i++) tu_assert_close(dx2[i], dx[i], 1e-4, 1e-5);
  for (int j = 0; j < ND; j++) {
    tu_assert_close(dg2[j], dg[j], 1e-4, 1e-5);
    tu_assert_close(db2[j], db[j], 1e-5, 1e-6);
  }
}

static void test_layers_seq_layernorm_gradcheck(void **state) {
  (void)state;
  tu_fill(nx, NB * ND, 75), tu_fill(ng, ND, 76), tu_fill(nbeta, ND, 77), tu_fill(nr, NB * ND, 78);
  float dx[NB * ND], dg[ND], db[ND];
  layernorm_seq_loss();
  layernorm_seq_backward(dx, dg, db, nr, nx, nmean, nrstd, ng, NB, ND);
  gradcheck(nx, NB * ND, dx, layernorm_seq_loss, 1e-2f, 1e-2, 3e-4);
  gradcheck(ng, ND, dg, layernorm_seq_loss, 1e-2f, 1e-2, 3e-4);
  gradcheck(nbeta, ND, db, layernorm_seq_loss, 1e-2f, 1e-2, 3e-4);
}

/* ---- GELU ------------------------------------------------------------------------------ */

static void test_layers_seq_gelu_fast_matches_libm(void **state) {
  (void)state;
  enum { N = 20001 };
  static float x[N], a[N], b[N], d[N], da[N], db[N];
  for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1), d[i] = 1.0f;
  x[N / 2] = 0.0f;
  gelu_forward(a, x, N), gelu_fast_forward(b, x, N);
  gelu_backward(da, d, x, N), gelu_fast_backward(db, d, x, N);
  double worst = 0, worst_d = 0;
  for (int i = 0; i < N; i++) {
    worst = fmax(worst, fabs((double)a[i] - b[i]) / (1.0 + fabs((double)x[i])));
    worst_d = fmax(worst_d, fabs((double)da[i] - db[i]) / (1.0 + fabs((double)x[i])));
  }
  assert_true(worst < 5e-7);
  assert_true(worst_d < 5e-7);
  assert_true(b[N / 2] == 0.0f);
}

static float gx[64], gr[64], gy[64];
static double gelu_loss(void) {
  gelu_fast_forward(gy, gx, 64);
  return dot(gr, gy, 64);
}

static void test_layers_seq_gelu_fast_gradcheck(void **state) {
  (void)state;
  tu_fill(gx, 64, 31), tu_fill(gr, 64, 32);
  for (int i = 0; i < 64; i++) gx[i] *= 4.0f;
  float dx[64];
  gelu_fast_backward(dx, gr, gx, 64);
  gradcheck(gx, 64, dx, gelu_loss, 1e-3f, 1e-2, 3e-4);
}

/* The forward that keeps the slope and the backward from it give
 * gelu_fast_forward's and gelu_fast_backward's bits, also in place and
 * on a length with a scalar remainder. */
static void test_layers_seq_gelu_fast_saved_grad_is_bitwise(void **state) {
  (void)state;
  enum { N = 1000 + 7 };
  static float x[N], d[N], a[N], b[N], da[N], g[N], db[N];
  tu_fill(x, N, 33), tu_fill(d, N, 34);
  for (int i = 0; i < N; i++) x[i] *= 6.0f;
  gelu_fast_forward(a, x, N), gelu_fast_backward(da, d, x, N);
  memcpy(g, x, sizeof g);
  gelu_fast_forward_grad(b, g, g, N);
  memcpy(db, d, sizeof db);
  gelu_fast_backward_grad(db, db, g, N);
  assert_memory_equal(a, b, sizeof a);
  assert_memory_equal(da, db, sizeof da);
}

/* ---- loss ------------------------------------------------------------------------------- */

enum { SB = 2, ST = 3, SV = 5 };
static float sz[SB * ST * SV];
static int32_t sy[SB * ST] = {0, 4, 2, 1, 1, 3};

static double seq_loss(void) { return seq_xent(NULL, sz, sy, SB, ST, SV, 1.0f, NULL); }

static void test_layers_seq_xent_is_mean_over_positions(void **state) {
  (void)state;
  tu_fill(sz, SB * ST * SV, 21);
  long c1 = 0, c2 = 0;
  double per_row = softmax_xent(NULL, sz, sy, SB * ST, SV, 1.0f, &c1);
  tu_assert_close(seq_xent(NULL, sz, sy, SB, ST, SV, 1.0f, &c2), per_row / ST, 1e-6, 0);
  assert_int_equal(c1, c2); /* positions, not samples */
}

/* The vector paths (a vocabulary of two vectors and a remainder, logits
 * spread wider than the inline exp's range) against softmax_xent; a NaN
 * logit makes the loss NaN. */
static void test_layers_seq_xent_matches_softmax_xent(void **state) {
  (void)state;
  enum { R = 6, V = 37 };
  static float z[R * V], da[R * V], db[R * V];
  int32_t y[R] = {0, 36, 5, 16, 31, 32};
  tu_fill(z, R * V, 24);
  for (int i = 0; i < R * V; i++) z[i] *= i < V ? 200.0f : 8.0f; /* row 0: exps below e^-87 */
  z[2 * V + 7] = z[2 * V + 9] = 40.0f; /* a tie: the first is the argmax */
  long ca = 0, cb = 0;
  double a = softmax_xent(da, z, y, R, V, 0.5f / 3, &ca);
  double b = seq_xent(db, z, y, R / 3, 3, V, 0.5f, &cb);
  tu_assert_close(b, a / 3, 1e-6, 0);
  assert_int_equal(ca, cb);
  for (int i = 0; i < R * V; i++) tu_assert_close(db[i], da[i], 1e-5, 1e-9);
  z[3 * V + 4] = NAN;
  assert_true(isnan(seq_xent(db, z, y, R / 3, 3, V, 0.5f, NULL)));
}

static void test_layers_seq_xent_gradcheck(void **state) {
  (void)state;
  tu_fill(sz, SB * ST * SV, 22);
  float d[SB * ST * SV];
  seq_xent(d, sz, sy, SB, ST, SV, 1.0f, NULL);
  gradcheck(sz, SB * ST * SV, d, seq_loss, 1e-2f, 1e-3, 1e-4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layers_seq_embedding_looks_up_rows),
      cmocka_unit_test(test_layers_seq_embedding_gradcheck),
      cmocka_unit_test(test_layers_seq_posemb_gradcheck),
      cmocka_unit_test(test_layers_seq_attention_matches_naive),
      cmocka_unit_test(test_layers_seq_attention_causal_ignores_the_future),
      cmocka_unit_test(test_layers_seq_attention_peaked_scores),
      cmocka_unit_test(test_layers_seq_attention_gradcheck),
      cmocka_unit_test(test_layers_seq_attention_vector_shapes),
      cmocka_unit_test(test_layers_seq_layernorm_matches_layers),
      cmocka_unit_test(test_layers_seq_layernorm_gradcheck),
      cmocka_unit_test(test_layers_seq_gelu_fast_matches_libm),
      cmocka_unit_test(test_layers_seq_gelu_fast_gradcheck),
      cmocka_unit_test(test_layers_seq_gelu_fast_saved_grad_is_bitwise),
      cmocka_unit_test(test_layers_seq_xent_is_mean_over_positions),
      cmocka_unit_test(test_layers_seq_xent_gradcheck),
      cmocka_unit_test(test_layers_seq_xent_matches_softmax_xent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
