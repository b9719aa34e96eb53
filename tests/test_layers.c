/* The kernels of trainer/nn/layers.h: every backward against central finite
 * differences of a scalar function of its forward (summed in double), the
 * convolution against a naive loop, and dropout's world-size invariance. */
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
#include "sampler.h"
#include "testutil.h"

/* Central differences of f() in each x[i] against grad[i] * gscale. */
static void gradcheck(float *x, long n, const float *grad, double gscale, double (*f)(void),
                      float eps, double rtol, double atol) {
  for (long i = 0; i < n; i++) {
    float keep = x[i];
    x[i] = keep + eps;
    double lp = f();
    x[i] = keep - eps;
    double lm = f();
    x[i] = keep;
    tu_assert_close(grad[i], gscale * (lp - lm) / (2.0 * (double)eps), rtol, atol);
  }
}

/* sum r * y in double */
static double dot(const float *r, const float *y, long n) {
  double s = 0;
  for (long i = 0; i < n; i++) s += (double)r[i] * y[i];
  return s;
}

/* ---- convolution --------------------------------------------------------------- */

enum { CB = 2, MAXF = 4096 };
static ms_conv2d cg;
static float cx[MAXF], cw[MAXF], cb[64], cr[MAXF], cy[MAXF], cscratch[MAXF];

static double conv_loss(void) {
  conv2d_forward(cy, cx, cw, cb, &cg, CB, cscratch);
  return dot(cr, cy, (long)CB * cg.OC * cg.OH * cg.OW);
}

static void conv_setup(int C, int H, int W, int OC, int KH, int KW, int SH, int SW, int PH,
                       int PW) {
  cg = (ms_conv2d){
      .C = C, .H = H, .W = W, .OC = OC, .KH = KH, .KW = KW, .SH = SH, .SW = SW, .PH = PH, .PW = PW};
  assert_int_equal(conv2d_geometry(&cg), 0);
  assert_true(conv2d_scratch_floats(&cg, CB) <= MAXF);
  assert_true((long)CB * C * H * W <= MAXF && (long)CB * OC * cg.OH * cg.OW <= MAXF);
  tu_fill(cx, (long)CB * C * H * W, 21), tu_fill(cw, (long)OC * C * KH * KW, 22);
  tu_fill(cb, OC, 23), tu_fill(cr, (long)CB * OC * cg.OH * cg.OW, 24);
}


static void conv_check_forward(void) {
  static double ref[MAXF];
  tu_conv2d_naive(&cg, CB, cx, cw, cb, ref);
  conv2d_forward(cy, cx, cw, cb, &cg, CB, cscratch);
  for (long i = 0; i < (long)CB * cg.OC * cg.OH * cg.OW; i++)
    tu_assert_close(cy[i], ref[i], 1e-5, 1e-5);
}

static void conv_check_backward(void) {
  static float dx[MAXF], dw[MAXF], db[64];
  conv2d_backward(dx, dw, db, cr, cx, cw, &cg, CB, cscratch);
  /* The loss is linear in each argument: no truncation error. */
  gradcheck(cx, (long)CB * cg.C * cg.H * cg.W, dx, 1.0, conv_loss, 1e-2f, 1e-3, 1e-4);
  gradcheck(cw, (long)cg.OC * cg.C * cg.KH * cg.KW, dw, 1.0, conv_loss, 1e-2f, 1e-3, 1e-4);
  gradcheck(cb, cg.OC, db, 1.0, conv_loss, 1e-2f, 1e-3, 1e-4);
}

static void test_layers_conv2d_geometry(void **state) {
  (void)state;
  ms_conv2d g = {
      .C = 1, .H = 28, .W = 28, .OC = 32, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PH = 1, .PW = 1};
  assert_int_equal(conv2d_geometry(&g), 0);
  assert_int_equal(g.OH, 28);
  assert_int_equal(g.OW, 28);
  g = (ms_conv2d){
      .C = 3, .H = 7, .W = 6, .OC = 4, .KH = 3, .KW = 3, .SH = 2, .SW = 2, .PH = 1, .PW = 1};
  assert_int_equal(conv2d_geometry(&g), 0);
  assert_int_equal(g.OH, 4);
  assert_int_equal(g.OW, 3);
  assert_int_equal(conv2d_scratch_floats(&g, 1), (3 * 9 + 4) * 4 * 3);
  assert_int_equal(conv2d_group(&g, 5), 5);
  assert_int_equal(conv2d_scratch_floats(&g, 5), (3 * 9 + 4) * 4 * 3 * 5);
  g.KH = 10; /* larger than the padded input */
  assert_int_equal(conv2d_geometry(&g), -1);
}

static void test_layers_conv2d_forward_matches_naive(void **state) {
  (void)state;
  conv_setup(3, 7, 6, 4, 3, 3, 2, 2, 1, 1);
  conv_check_forward();
  conv_setup(2, 5, 8, 3, 3, 2, 1, 2, 0, 1);
  conv_check_forward();
}

static void test_layers_conv2d_backward_gradcheck_stride2_pad1(void **state) {
  (void)state;
  conv_setup(3, 7, 6, 4, 3, 3, 2, 2, 1, 1);
  conv_check_backward();
}

static void test_layers_conv2d_backward_gradcheck_per_axis_geometry(void **state) {
  (void)state;
  conv_setup(2, 5, 8, 3, 3, 2, 1, 2, 0, 1);
  conv_check_backward();
}

static void test_layers_conv2d_backward_overwrites(void **state) {
  (void)state;
  conv_setup(3, 7, 6, 4, 3, 3, 2, 2, 1, 1);
  static float dx1[MAXF], dw1[MAXF], db1[64], dx2[MAXF], dw2[MAXF], db2[64];
  conv2d_backward(dx1, dw1, db1, cr, cx, cw, &cg, CB, cscratch);
  for (int i = 0; i < MAXF; i++) dx2[i] = 7.0f, dw2[i] = -3.0f;
  for (int i = 0; i < 64; i++) db2[i] = 11.0f;
  conv2d_backward(dx2, dw2, db2, cr, cx, cw, &cg, CB, cscratch);
  assert_memory_equal(dx1, dx2, sizeof(float) * (size_t)(CB * 3 * 7 * 6));
  assert_memory_equal(dw1, dw2, sizeof(float) * (size_t)(4 * 3 * 9));
  assert_memory_equal(db1, db2, sizeof(float) * 4);
  /* NULL dinp: the same weight gradients. */
  conv2d_backward(NULL, dw2, db2, cr, cx, cw, &cg, CB, cscratch);
  assert_memory_equal(dw1, dw2, sizeof(float) * (size_t)(4 * 3 * 9));
}

/* ---- pooling ------------------------------------------------------------------- */

static ms_conv2d pg;
static float px[MAXF], pr[MAXF], py[MAXF];
static int32_t pam[MAXF];

static void pool_setup(int C, int H, int W, int K, int S) {
  pg = (ms_conv2d){.C = C, .H = H, .W = W, .OC = C, .KH = K, .KW = K, .SH = S, .SW = S};
  assert_int_equal(conv2d_geometry(&pg), 0);
  long n = (long)CB * C * H * W;
  /* Distinct values at least 0.01 apart (a shuffled ramp), so that a
   * finite-difference step of 1e-3 never changes a window's argmax. */
  for (long i = 0; i < n; i++) px[i] = 0.01f * (float)((i * 37) % n) - 0.5f;
  tu_fill(pr, (long)CB * C * pg.OH * pg.OW, 31);
}

static double maxpool_loss(void) {
  maxpool2d_forward(py, pam, px, &pg, CB);
  return dot(pr, py, (long)CB * pg.C * pg.OH * pg.OW);
}

static double avgpool_loss(void) {
  avgpool2d_forward(py, px, &pg, CB);
  return dot(pr, py, (long)CB * pg.C * pg.OH * pg.OW);
}

/* A batch larger than one group (conv2d_group) gives what the samples give
 * one at a time: outputs, input gradients, and dw / db summed. */
static void test_layers_conv2d_groups_match_single_samples(void **state) {
  (void)state;
  ms_conv2d g = {.C = 16, .H = 32, .W = 32, .OC = 16, .KH = 3, .KW = 3, .SH = 1, .SW = 1,
                 .PH = 1, .PW = 1};
  assert_int_equal(conv2d_geometry(&g), 0);
  enum { NB = 13 };
  int G = conv2d_group(&g, NB);
  assert_true(G > 1 && G < NB); /* several groups, the last one partial */
  const long in = 16L * 32 * 32, out = 16L * 32 * 32, nw = 16L * 16 * 9;
  float *x = malloc(sizeof(float) * NB * in), *dy = malloc(sizeof(float) * NB * out);
  float *y = malloc(sizeof(float) * NB * out), *y1 = malloc(sizeof(float) * out);
  float *dx = malloc(sizeof(float) * NB * in), *dx1 = malloc(sizeof(float) * in);
  float *w = malloc(sizeof(float) * nw), *dw = malloc(sizeof(float) * nw);
  float *dw1 = malloc(sizeof(float) * nw), *dws = calloc((size_t)nw, sizeof(float));
  float b[16], db[16], db1[16], dbs[16] = {0};
  float *scratch = malloc(sizeof(float) * (size_t)conv2d_scratch_floats(&g, NB));
  tu_fill(x, NB * in, 31), tu_fill(dy, NB * out, 32), tu_fill(w, nw, 33), tu_fill(b, 16, 34);
  conv2d_forward(y, x, w, b, &g, NB, scratch);
  conv2d_backward(dx, dw, db, dy, x, w, &g, NB, scratch);
  for (int i = 0; i < NB; i++) {
    conv2d_forward(y1, x + i * in, w, b, &g, 1, scratch);
    for (long k = 0; k < out; k++) tu_assert_close(y[i * out + k], y1[k], 1e-5, 1e-5);
    conv2d_backward(dx1, dw1, db1, dy + i * out, x + i * in, w, &g, 1, scratch);
    for (long k = 0; k < in; k++) tu_assert_close(dx[i * in + k], dx1[k], 1e-5, 1e-5);
    for (long k = 0; k < nw; k++) dws[k] += dw1[k];
    for (int k = 0; k < 16; k++) dbs[k] += db1[k];
  }
  for (long k = 0; k < nw; k++) tu_assert_close(dw[k], dws[k], 1e-4, 1e-3);
  for (int k = 0; k < 16; k++) tu_assert_close(db[k], dbs[k], 1e-4, 1e-3);
  free(x), free(dy), free(y), free(y1), free(dx), free(dx1), free(w), free(dw), free(dw1);
  free(dws), free(scratch);
}

static void test_layers_maxpool2d_forward_and_argmax(void **state) {
  (void)state;
  /* One 4x4 plane, 2x2 windows, stride 2. */
  pg = (ms_conv2d){.C = 1, .H = 4, .W = 4, .OC = 1, .KH = 2, .KW = 2, .SH = 2, .SW = 2};
  assert_int_equal(conv2d_geometry(&pg), 0);
  float x[16] = {1, 5, 2, 0, 3, 4, 9, 9, -1, -2, 0, 0, -4, -3, 0, 7};
  float y[4];
  int32_t am[4];
  maxpool2d_forward(y, am, x, &pg, 1);
  const float want[4] = {5, 9, -1, 7};
  const int32_t want_am[4] = {1, 6, 8, 15}; /* first maximum on the 9-9 tie */
  assert_memory_equal(y, want, sizeof want);
  assert_memory_equal(am, want_am, sizeof want_am);
}

/* Finite differences of max pooling's backward on C planes of H x W,
 * windows k at stride s; dx starts as NaN, so every element must be
 * written (those no window reaches as zero). */
static void maxpool_gradcheck(int C, int H, int W, int k, int s) {
  pool_setup(C, H, W, k, s);
  static float dx[MAXF];
  for (long i = 0; i < MAXF; i++) dx[i] = NAN;
  maxpool_loss();
  maxpool2d_backward(dx, pr, pam, &pg, CB);
  gradcheck(px, (long)CB * C * H * W, dx, 1.0, maxpool_loss, 1e-3f, 1e-3, 1e-4);
}

static void test_layers_maxpool2d_gradcheck(void **state) {
  (void)state;
  maxpool_gradcheck(3, 7, 6, 3, 2); /* overlapping windows, non-square input */
}

/* 2x2 windows at stride 2 take a forward loop of their own (layers_conv.c):
 * gradients on a plane of odd sides, whose last row and column no window
 * reaches. */
static void test_layers_maxpool2d_2x2_gradcheck_odd_plane(void **state) {
  (void)state;
  maxpool_gradcheck(3, 7, 5, 2, 2);
}

/* The 2x2 loop gives the bits of the definition (maxpool2d_forward's
 * contract, written out here as the generic loop computes it): the first
 * maximum in row-major order on ties, a NaN in the first position kept, a
 * later NaN never chosen; and the backward dinp = 0 + dout at the argmax. */
static void test_layers_maxpool2d_2x2_matches_definition(void **state) {
  (void)state;
  pool_setup(2, 6, 8, 2, 2);
  const long n = (long)CB * 2 * 6 * 8;
  for (long i = 0; i < n; i++) px[i] = (float)((i * 7) % 5) - 2.0f; /* many ties */
  px[0] = NAN, px[10] = NAN, px[17] = -0.0f, px[16] = 0.0f;
  pr[0] = -0.0f, pr[3] = -0.0f;
  static float y[MAXF], dx[MAXF], want_dx[MAXF];
  static int32_t am[MAXF];
  maxpool2d_forward(y, am, px, &pg, CB);
  memset(want_dx, 0, sizeof(float) * (size_t)n);
  for (long pl = 0; pl < (long)CB * 2; pl++)
    for (int oh = 0; oh < pg.OH; oh++)
      for (int ow = 0; ow < pg.OW; ow++) {
        const float *x = px + pl * 48;
        int best = 2 * oh * 8 + 2 * ow;
        float v = x[best];
        for (int kh = 0; kh < 2; kh++)
          for (int kw = 0; kw < 2; kw++) {
            int idx = (2 * oh + kh) * 8 + 2 * ow + kw;
            if (x[idx] > v) v = x[idx], best = idx;
          }
        long o = pl * pg.OH * pg.OW + oh * pg.OW + ow;
        assert_memory_equal(&y[o], &v, sizeof v);
        assert_int_equal(am[o], best);
        want_dx[pl * 48 + best] += pr[o];
      }
  maxpool2d_backward(dx, pr, am, &pg, CB);
  assert_memory_equal(dx, want_dx, sizeof(float) * (size_t)n);
}

static void test_layers_avgpool2d_gradcheck(void **state) {
  (void)state;
  pool_setup(3, 7, 6, 3, 2);
  static float dx[MAXF];
  avgpool2d_backward(dx, pr, &pg, CB);
  gradcheck(px, (long)CB * 3 * 7 * 6, dx, 1.0, avgpool_loss, 1e-2f, 1e-3, 1e-4);
  /* And the forward value of one window by hand. */
  avgpool2d_forward(py, px, &pg, CB);
  double s = 0;
  for (int kh = 0; kh < 3; kh++)
    for (int kw = 0; kw < 3; kw++) s += px[(2 + kh) * 6 + 2 + kw];
  tu_assert_close(py[1 * pg.OW + 1], s / 9.0, 1e-6, 1e-7);
}

/* ---- activations --------------------------------------------------------------- */

enum { AN = 40 };
static float ax[AN], ar[AN], ay[AN];
static void (*act_fwd)(float *, const float *, long);

static double act_loss(void) {
  act_fwd(ay, ax, AN);
  return dot(ar, ay, AN);
}

static void lrelu_fwd(float *y, const float *x, long n) { leaky_relu_forward(y, x, n, 0.1f); }

static void act_setup(void (*fwd)(float *, const float *, long), float spread) {
  act_fwd = fwd;
  tu_fill(ax, AN, 41), tu_fill(ar, AN, 42);
  for (int i = 0; i < AN; i++) {
    ax[i] *= spread;
    if (fabsf(ax[i]) < 0.05f) ax[i] = 0.3f; /* keep away from kinks */
  }
}

static void test_layers_leaky_relu_gradcheck(void **state) {
  (void)state;
  act_setup(lrelu_fwd, 2.0f);
  float dx[AN];
  leaky_relu_backward(dx, ar, ax, AN, 0.1f);
  gradcheck(ax, AN, dx, 1.0, act_loss, 1e-3f, 1e-3, 1e-4);
}

static void test_layers_gelu_gradcheck(void **state) {
  (void)state;
  act_setup(gelu_forward, 3.0f);
  float dx[AN];
  gelu_backward(dx, ar, ax, AN);
  gradcheck(ax, AN, dx, 1.0, act_loss, 1e-3f, 5e-3, 2e-4);
  float one = 1.0f, y;
  gelu_forward(&y, &one, 1);
  tu_assert_close(y, 0.8411919906082768, 1e-6, 0); /* torch gelu(1, approximate='tanh') */
}

static void test_layers_tanh_gradcheck(void **state) {
  (void)state;
  act_setup(tanh_forward, 2.0f);
  float dx[AN];
  tanh_forward(ay, ax, AN);
  tanh_backward(dx, ar, ay, AN);
  gradcheck(ax, AN, dx, 1.0, act_loss, 1e-3f, 5e-3, 2e-4);
}

static void test_layers_sigmoid_gradcheck(void **state) {
  (void)state;
  act_setup(sigmoid_forward, 4.0f);
  float dx[AN];
  sigmoid_forward(ay, ax, AN);
  sigmoid_backward(dx, ar, ay, AN);
  gradcheck(ax, AN, dx, 1.0, act_loss, 1e-3f, 5e-3, 2e-4);
  float big[2] = {100.0f, -100.0f}, out[2];
  sigmoid_forward(out, big, 2);
  assert_true(out[0] == 1.0f && out[1] >= 0.0f && out[1] < 1e-40f);
}

enum { SB = 4, SK = 7 };
static double softmax_loss(void) {
  softmax_forward(ay, ax, SB, SK);
  return dot(ar, ay, SB * SK);
}

static void test_layers_softmax_gradcheck(void **state) {
  (void)state;
  tu_fill(ax, SB * SK, 43), tu_fill(ar, SB * SK, 44);
  for (int i = 0; i < SB * SK; i++) ax[i] *= 3.0f;
  float dx[SB * SK];
  softmax_forward(ay, ax, SB, SK);
  for (int i = 0; i < SB; i++) {
    double s = 0;
    for (int k = 0; k < SK; k++) s += ay[i * SK + k];
    tu_assert_close(s, 1.0, 1e-6, 0);
  }
  softmax_backward(dx, ar, ay, SB, SK);
  gradcheck(ax, SB * SK, dx, 1.0, softmax_loss, 1e-3f, 5e-3, 2e-4);
}

/* ---- dropout ------------------------------------------------------------------- */

enum { DB = 8, DD = 50 };
static float dxin[DB * DD], dr[DB * DD], dyo[DB * DD];
static uint64_t drows[DB];
static const float DP = 0.3f;

static double dropout_loss(void) {
  dropout_forward(dyo, dxin, DB, DD, DP, 5, 17, drows);
  return dot(dr, dyo, DB * DD);
}

static void test_layers_dropout_gradcheck(void **state) {
  (void)state;
  tu_fill(dxin, DB * DD, 51), tu_fill(dr, DB * DD, 52);
  for (int i = 0; i < DB; i++) drows[i] = 1000 + 3 * (uint64_t)i;
  float dx[DB * DD];
  dropout_backward(dx, dr, DB, DD, DP, 5, 17, drows);
  gradcheck(dxin, DB * DD, dx, 1.0, dropout_loss, 1e-2f, 1e-3, 1e-4);
}

static void test_layers_dropout_keep_rate_and_scale(void **state) {
  (void)state;
  enum { R = 64, D = 256 };
  static float x[R * D], y[R * D];
  uint64_t rows[R];
  for (int i = 0; i < R; i++) rows[i] = (uint64_t)i;
  for (int i = 0; i < R * D; i++) x[i] = 1.0f;
  dropout_forward(y, x, R, D, 0.25f, 9, 0, rows);
  long kept = 0;
  for (int i = 0; i < R * D; i++) {
    assert_true(y[i] == 0.0f || fabsf(y[i] - 1.0f / 0.75f) < 1e-6f);
    kept += y[i] != 0.0f;
    assert_int_equal(y[i] != 0.0f, dropout_keep(9, 0, (uint64_t)(i / D), (uint64_t)(i % D), 0.25f));
  }
  /* 16384 Bernoulli(0.75) draws: mean 12288, sd 55. */
  assert_true(labs(kept - 12288) < 300);
  /* p = 0 is the identity. */
  dropout_forward(y, x, R, D, 0.0f, 9, 0, rows);
  assert_memory_equal(x, y, sizeof x);
}

static void test_layers_dropout_mask_changes_with_seed_step_and_row(void **state) {
  (void)state;
  int diff_seed = 0, diff_step = 0, diff_row = 0;
  for (uint64_t j = 0; j < 256; j++) {
    int k = dropout_keep(1, 2, 3, j, 0.5f);
    diff_seed += k != dropout_keep(2, 2, 3, j, 0.5f);
    diff_step += k != dropout_keep(1, 3, 3, j, 0.5f);
    diff_row += k != dropout_keep(1, 2, 4, j, 0.5f);
  }
  /* Independent masks differ in about half of 256 places. */
  assert_true(diff_seed > 80 && diff_step > 80 && diff_row > 80);
}

/* Rows 0..7 at once, or 0..3 and 4..7 on two "ranks" with their global
 * indices: the same output, bit for bit. */
static void test_layers_dropout_rows_split_identical(void **state) {
  (void)state;
  float x[DB * DD], all[DB * DD], split[DB * DD], dall[DB * DD], dsplit[DB * DD];
  uint64_t rows[DB];
  tu_fill(x, DB * DD, 53);
  for (int i = 0; i < DB; i++) rows[i] = 64 * 11 + (uint64_t)i; /* step 11, batch 64 */
  dropout_forward(all, x, DB, DD, 0.4f, 123, 11, rows);
  dropout_forward(split, x, DB / 2, DD, 0.4f, 123, 11, rows);
  dropout_forward(split + DB / 2 * DD, x + DB / 2 * DD, DB / 2, DD, 0.4f, 123, 11, rows + DB / 2);
  assert_memory_equal(all, split, sizeof all);
  dropout_backward(dall, x, DB, DD, 0.4f, 123, 11, rows);
  dropout_backward(dsplit, x, DB / 2, DD, 0.4f, 123, 11, rows);
  dropout_backward(dsplit + DB / 2 * DD, x + DB / 2 * DD, DB / 2, DD, 0.4f, 123, 11, rows + DB / 2);
  assert_memory_equal(dall, dsplit, sizeof dall);
}

/* ---- layer norm ---------------------------------------------------------------- */

enum { LB = 3, LD = 9 };
static float lx[LB * LD], lg[LD], lbeta[LD], lr[LB * LD], ly[LB * LD], lmean[LB], lrstd[LB];

static double layernorm_loss(void) {
  layernorm_forward(ly, lmean, lrstd, lx, lg, lbeta, LB, LD, 1e-5f);
  return dot(lr, ly, LB * LD);
}

static void layernorm_setup(void) {
  tu_fill(lx, LB * LD, 61), tu_fill(lg, LD, 62), tu_fill(lbeta, LD, 63), tu_fill(lr, LB * LD, 64);
  for (int i = 0; i < LB * LD; i++) lx[i] = 2.0f * lx[i] + 0.5f;
  for (int j = 0; j < LD; j++) lg[j] += 1.0f;
}

static void test_layers_layernorm_forward_normalises(void **state) {
  (void)state;
  layernorm_setup();
  float ones[LD], zeros[LD];
  for (int j = 0; j < LD; j++) ones[j] = 1.0f, zeros[j] = 0.0f;
  layernorm_forward(ly, lmean, lrstd, lx, ones, zeros, LB, LD, 1e-5f);
  for (int i = 0; i < LB; i++) {
    double m = 0, v = 0;
    for (int j = 0; j < LD; j++) m += ly[i * LD + j];
    m /= LD;
    for (int j = 0; j < LD; j++) v += (ly[i * LD + j] - m) * (ly[i * LD + j] - m);
    v /= LD;
    tu_assert_close(m, 0.0, 0, 1e-6);
    tu_assert_close(v, 1.0, 1e-4, 0);
  }
}

static void test_layers_layernorm_gradcheck(void **state) {
  (void)state;
  layernorm_setup();
  float dx[LB * LD], dg[LD], dbeta[LD];
  layernorm_loss();
  layernorm_backward(dx, dg, dbeta, lr, lx, lmean, lrstd, lg, LB, LD);
  gradcheck(lx, LB * LD, dx, 1.0, layernorm_loss, 1e-3f, 1e-2, 3e-4);
  gradcheck(lg, LD, dg, 1.0, layernorm_loss, 1e-2f, 1e-3, 1e-4);
  gradcheck(lbeta, LD, dbeta, 1.0, layernorm_loss, 1e-2f, 1e-3, 1e-4);
}

/* ---- losses -------------------------------------------------------------------- */

enum { QB = 4, QK = 6 };
static float qz[QB * QK], qt[QB * QK];
static int32_t qy[QB] = {0, 5, 2, 2};
static const float QSCALE = 0.25f;

static double xent_smooth_loss(void) {
  return softmax_xent_smooth(NULL, qz, qy, QB, QK, 0.1f, 1.0f, NULL);
}
static double bce_loss(void) { return bce_logits_loss(NULL, qz, qt, QB, QK, 1.0f); }
static double mse_l(void) { return mse_loss(NULL, qz, qt, QB, QK, 1.0f); }
static double mae_l(void) { return mae_loss(NULL, qz, qt, QB, QK, 1.0f); }

static void loss_setup(float spread) {
  tu_fill(qz, QB * QK, 71), tu_fill(qt, QB * QK, 72);
  for (int i = 0; i < QB * QK; i++) {
    qz[i] *= spread;
    qt[i] = 0.5f * (qt[i] + 1.0f); /* targets in [0, 1) */
  }
}

static void test_layers_softmax_xent_smooth_gradcheck(void **state) {
  (void)state;
  loss_setup(3.0f);
  float dz[QB * QK];
  softmax_xent_smooth(dz, qz, qy, QB, QK, 0.1f, QSCALE, NULL);
  gradcheck(qz, QB * QK, dz, QSCALE, xent_smooth_loss, 1e-3f, 5e-3, 1e-4);
}

static void test_layers_softmax_xent_smooth_zero_is_softmax_xent(void **state) {
  (void)state;
  loss_setup(3.0f);
  float d1[QB * QK], d2[QB * QK];
  long c1 = 0, c2 = 0;
  double l1 = softmax_xent(d1, qz, qy, QB, QK, QSCALE, &c1);
  double l2 = softmax_xent_smooth(d2, qz, qy, QB, QK, 0.0f, QSCALE, &c2);
  tu_assert_close(l1, l2, 1e-12, 1e-12);
  assert_int_equal(c1, c2);
  for (int i = 0; i < QB * QK; i++) tu_assert_close(d1[i], d2[i], 1e-6, 1e-8);
  /* Uniform logits with smoothing: the loss is log K whatever the labels. */
  float flat[QK] = {0};
  int32_t y = 3;
  tu_assert_close(softmax_xent_smooth(NULL, flat, &y, 1, QK, 0.2f, 1.0f, NULL), log((double)QK), 1e-12,
               0);
}

static void test_layers_bce_logits_gradcheck(void **state) {
  (void)state;
  loss_setup(4.0f);
  float dz[QB * QK];
  bce_logits_loss(dz, qz, qt, QB, QK, QSCALE);
  gradcheck(qz, QB * QK, dz, QSCALE, bce_loss, 1e-3f, 5e-3, 1e-5);
}

static void test_layers_bce_logits_stable_for_large_logits(void **state) {
  (void)state;
  float z[2] = {200.0f, -200.0f}, t[2] = {0.0f, 0.0f}, d[2];
  double l = bce_logits_loss(d, z, t, 1, 2, 1.0f);
  tu_assert_close(l, 100.0, 1e-12, 0); /* (200 + 0) / 2 */
  tu_assert_close(d[0], 0.5, 1e-7, 0);
  tu_assert_close(d[1], 0.0, 0, 1e-30);
}

static void test_layers_mse_gradcheck(void **state) {
  (void)state;
  loss_setup(2.0f);
  float dz[QB * QK];
  mse_loss(dz, qz, qt, QB, QK, QSCALE);
  gradcheck(qz, QB * QK, dz, QSCALE, mse_l, 1e-2f, 1e-3, 1e-5);
  float p = 3.0f, t = 1.0f;
  tu_assert_close(mse_loss(NULL, &p, &t, 1, 1, 1.0f), 4.0, 1e-12, 0);
}

static void test_layers_mae_gradcheck(void **state) {
  (void)state;
  loss_setup(2.0f);
  for (int i = 0; i < QB * QK; i++)
    if (fabsf(qz[i] - qt[i]) < 0.05f) qz[i] += 0.2f; /* away from the kink */
  float dz[QB * QK];
  mae_loss(dz, qz, qt, QB, QK, QSCALE);
  gradcheck(qz, QB * QK, dz, QSCALE, mae_l, 1e-2f, 1e-3, 1e-5);
}

static void test_layers_mae_subgradient_zero_at_zero(void **state) {
  (void)state;
  float p[3] = {1.0f, 2.0f, 0.0f}, t[3] = {1.0f, 1.0f, 1.0f}, d[3];
  tu_assert_close(mae_loss(d, p, t, 1, 3, 1.0f), 2.0 / 3.0, 1e-12, 0);
  assert_true(d[0] == 0.0f);
  tu_assert_close(d[1], 1.0 / 3.0, 1e-7, 0);
  tu_assert_close(d[2], -1.0 / 3.0, 1e-7, 0);
}

/* ---- metrics ------------------------------------------------------------------- */

static void test_layers_topk_correct_counts(void **state) {
  (void)state;
  const float z[3 * 4] = {0.1f, 0.9f, 0.5f, 0.3f,  /* the label second */
                          1.0f, 1.0f, 0.0f, -1.0f, /* a tie at the top */
                          0.0f, 0.2f, 0.4f, 0.6f}; /* the label last */
  const int32_t y[3] = {2, 1, 0};
  assert_int_equal(topk_correct(z, y, 3, 4, 1), 1); /* row 1: tie counts for the label */
  assert_int_equal(topk_correct(z, y, 3, 4, 2), 2);
  assert_int_equal(topk_correct(z, y, 3, 4, 3), 2);
  assert_int_equal(topk_correct(z, y, 3, 4, 4), 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layers_conv2d_geometry),
      cmocka_unit_test(test_layers_conv2d_forward_matches_naive),
      cmocka_unit_test(test_layers_conv2d_backward_gradcheck_stride2_pad1),
      cmocka_unit_test(test_layers_conv2d_backward_gradcheck_per_axis_geometry),
      cmocka_unit_test(test_layers_conv2d_backward_overwrites),
      cmocka_unit_test(test_layers_conv2d_groups_match_single_samples),
      cmocka_unit_test(test_layers_maxpool2d_forward_and_argmax),
      cmocka_unit_test(test_layers_maxpool2d_gradcheck),
      cmocka_unit_test(test_layers_maxpool2d_2x2_gradcheck_odd_plane),
      cmocka_unit_test(test_layers_maxpool2d_2x2_matches_definition),
      cmocka_unit_test(test_layers_avgpool2d_gradcheck),
      cmocka_unit_test(test_layers_leaky_relu_gradcheck),
      cmocka_unit_test(test_layers_gelu_gradcheck),
      cmocka_unit_test(test_layers_tanh_gradcheck),
      cmocka_unit_test(test_layers_sigmoid_gradcheck),
      cmocka_unit_test(test_layers_softmax_gradcheck),
      cmocka_unit_test(test_layers_dropout_gradcheck),
      cmocka_unit_test(test_layers_dropout_keep_rate_and_scale),
      cmocka_unit_test(test_layers_dropout_mask_changes_with_seed_step_and_row),
      cmocka_unit_test(test_layers_dropout_rows_split_identical),
      cmocka_unit_test(test_layers_layernorm_forward_normalises),
      cmocka_unit_test(test_layers_layernorm_gradcheck),
      cmocka_unit_test(test_layers_softmax_xent_smooth_gradcheck),
      cmocka_unit_test(test_layers_softmax_xent_smooth_zero_is_softmax_xent),
      cmocka_unit_test(test_layers_bce_logits_gradcheck),
      cmocka_unit_test(test_layers_bce_logits_stable_for_large_logits),
      cmocka_unit_test(test_layers_mse_gradcheck),
      cmocka_unit_test(test_layers_mae_gradcheck),
      cmocka_unit_test(test_layers_mae_subgradient_zero_at_zero),
      cmocka_unit_test(test_layers_topk_correct_counts),
  };
  return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
