/* The direct convolution of trainer/nn/conv_direct.h: its forward against the
 * definition and against im2col (conv2d_forward) within 1e-5 relative, its
 * backward against finite differences and against im2col's, and the rest of
 * its contract (overwrites, deterministic, the shape rule). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conv_direct.h"
#include "layers.h"
#include "testutil.h"

enum { NB = 3, MAXF = 65536 };
static ms_conv2d g;
static float x[MAXF], w[MAXF], b[64], r[MAXF], y[MAXF], yref[MAXF];
static float scratch[2 * MAXF], iscratch[2 * MAXF];
static double def[MAXF]; /* the definition's outputs (tu_conv2d_naive) */

static long in_n(void) { return (long)NB * g.C * g.H * g.W; }
static long out_n(void) { return (long)NB * g.OC * g.OH * g.OW; }
static long w_n(void) { return (long)g.OC * g.C * g.KH * g.KW; }

static void setup(int C, int H, int W, int OC, int KH, int KW, int PH, int PW) {
  g = (ms_conv2d){.C = C, .H = H, .W = W, .OC = OC, .KH = KH, .KW = KW, .SH = 1, .SW = 1,
                  .PH = PH, .PW = PW};
  assert_int_equal(conv2d_geometry(&g), 0);
  assert_true(conv_direct_supported(&g));
  assert_true(conv_direct_scratch_floats(&g) <= 2 * MAXF);
  assert_true(conv2d_scratch_floats(&g, NB) <= 2 * MAXF);
  assert_true(in_n() <= MAXF && out_n() <= MAXF && w_n() <= MAXF && OC <= 64);
  tu_fill(x, in_n(), 41), tu_fill(w, w_n(), 42), tu_fill(b, OC, 43), tu_fill(r, out_n(), 44);
}

/* The geometries every test runs: the first conv2d of the CNN configs (1
 * channel, 3x3, pad 1), RGB input, no padding, a wide pad, unequal window
 * sides and a plane narrower than the window's padding. */
static const int cases[][8] = {
    /* C, H, W, OC, KH, KW, PH, PW */
    {1, 28, 28, 16, 3, 3, 1, 1}, {3, 9, 11, 4, 3, 3, 1, 1}, {2, 7, 6, 3, 3, 2, 0, 0},
    {1, 6, 5, 2, 5, 5, 2, 2},    {7, 5, 9, 3, 2, 4, 1, 2},  {1, 1, 3, 2, 3, 3, 1, 1},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void setup_case(size_t i) {
  const int *c = cases[i];
  setup(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
}

static double loss(void) {
  conv_direct_forward(y, x, w, b, &g, NB, scratch);
  double s = 0;
  for (long i = 0; i < out_n(); i++) s += (double)r[i] * y[i];
  return s;
}

static void test_conv_direct_forward_matches_definition_and_im2col(void **state) {
  (void)state;
  for (size_t t = 0; t < N_CASES; t++) {
    setup_case(t);
    conv_direct_forward(y, x, w, b, &g, NB, scratch);
    conv2d_forward(yref, x, w, b, &g, NB, iscratch);
    tu_conv2d_naive(&g, NB, x, w, b, def);
    for (long i = 0; i < out_n(); i++) {
      tu_assert_close(y[i], def[i], 1e-5, 1e-6);
      tu_assert_close(y[i], yref[i], 1e-5, 1e-6);
    }
  }
}

static void test_conv_direct_backward_gradcheck(void **state) {
  (void)state;
  static float dx[MAXF], dw[MAXF], db[64];
  for (size_t t = 0; t < N_CASES; t++) {
    setup_case(t);
    conv_direct_backward(dx, dw, db, r, x, w, &g, NB, scratch);
    /* The loss is linear in each argument: central differences are exact
     * but for rounding. */
    const float eps = 0.25f; /* exact for a linear loss; a small one drowns in rounding */
    float *args[] = {x, w, b}, *grads[] = {dx, dw, db};
    long ns[] = {in_n(), w_n(), g.OC};
    for (int a = 0; a < 3; a++)
      for (long i = 0; i < ns[a]; i++) {
        float keep = args[a][i];
        args[a][i] = keep + eps;
        double lp = loss();
        args[a][i] = keep - eps;
        double lm = loss();
        args[a][i] = keep;
        tu_assert_close(grads[a][i], (lp - lm) / (2.0 * eps), 1e-3, 1e-4);
      }
  }
}

/* max |u - v| / max |v| over n floats: the error of u against v relative to
 * v's scale. Sums of thousands of products of mixed signs cancel, so an
 * entry can be far smaller than its terms; elementwise relative error would
 * measure the cancellation, not the kernel. */
static double normwise(const float *u, const float *v, long n) {
  double d = 0, m = 0;
  for (long i = 0; i < n; i++) {
    d = fmax(d, fabs((double)u[i] - v[i]));
    m = fmax(m, fabs((double)v[i]));
  }
  return d / m;
}

/* dx, dw and db against im2col's (conv2d_backward), within 1e-5 relative. */
static void test_conv_direct_backward_matches_im2col(void **state) {
  (void)state;
  static float dx[MAXF], dw[MAXF], db[64], dx2[MAXF], dw2[MAXF], db2[64];
  for (size_t t = 0; t < N_CASES; t++) {
    setup_case(t);
    conv_direct_backward(dx, dw, db, r, x, w, &g, NB, scratch);
    conv2d_backward(dx2, dw2, db2, r, x, w, &g, NB, iscratch);
    assert_true(normwise(dx, dx2, in_n()) <= 1e-5);
    assert_true(normwise(dw, dw2, w_n()) <= 1e-5);
    assert_true(normwise(db, db2, g.OC) <= 1e-5);
  }
}

/* Garbage in the outputs and the scratch changes nothing, a second call
 * gives the same bits, and dinp NULL leaves dw and db as they were. */
static void test_conv_direct_overwrites_and_repeats(void **state) {
  (void)state;
  static float dx[MAXF], dw[MAXF], db[64], dx2[MAXF], dw2[MAXF], db2[64], y2[MAXF];
  setup_case(1);
  conv_direct_forward(y, x, w, b, &g, NB, scratch);
  conv_direct_backward(dx, dw, db, r, x, w, &g, NB, scratch);
  for (long i = 0; i < 2 * MAXF; i++) scratch[i] = NAN;
  for (long i = 0; i < MAXF; i++) dx2[i] = dw2[i] = y2[i] = NAN;
  for (int i = 0; i < 64; i++) db2[i] = NAN;
  conv_direct_forward(y2, x, w, b, &g, NB, scratch);
  assert_memory_equal(y, y2, sizeof(float) * (size_t)out_n());
  conv_direct_backward(dx2, dw2, db2, r, x, w, &g, NB, scratch);
  assert_memory_equal(dx, dx2, sizeof(float) * (size_t)in_n());
  assert_memory_equal(dw, dw2, sizeof(float) * (size_t)w_n());
  assert_memory_equal(db, db2, sizeof(float) * (size_t)g.OC);
  for (long i = 0; i < MAXF; i++) dw2[i] = NAN;
  for (int i = 0; i < 64; i++) db2[i] = NAN;
  conv_direct_backward(NULL, dw2, db2, r, x, w, &g, NB, scratch);
  assert_memory_equal(dw, dw2, sizeof(float) * (size_t)w_n());
  assert_memory_equal(db, db2, sizeof(float) * (size_t)g.OC);
}

/* A batch of 0 gives zero gradients, as im2col's does. */
static void test_conv_direct_empty_batch(void **state) {
  (void)state;
  static float dw[MAXF], db[64];
  setup_case(0);
  for (long i = 0; i < w_n(); i++) dw[i] = NAN;
  conv_direct_backward(NULL, dw, db, r, x, w, &g, 0, scratch);
  for (long i = 0; i < w_n(); i++) assert_true(dw[i] == 0.0f);
  for (int i = 0; i < g.OC; i++) assert_true(db[i] == 0.0f);
}

static void test_conv_direct_supported_by_shape(void **state) {
  (void)state;
  ms_conv2d s = {.C = 1, .H = 28, .W = 28, .OC = 16, .KH = 3, .KW = 3, .SH = 1, .SW = 1,
                 .PH = 1, .PW = 1};
  assert_true(conv_direct_supported(&s));
  s.C = CONV_DIRECT_MAX_C - 1;
  assert_true(conv_direct_supported(&s));
  s.C = CONV_DIRECT_MAX_C; /* oneDNN's from here */
  assert_false(conv_direct_supported(&s));
  s.C = 1, s.SH = 2; /* strided: im2col */
  assert_false(conv_direct_supported(&s));
  s.SH = 1, s.SW = 2;
  assert_false(conv_direct_supported(&s));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_direct_forward_matches_definition_and_im2col),
      cmocka_unit_test(test_conv_direct_backward_gradcheck),
      cmocka_unit_test(test_conv_direct_backward_matches_im2col),
      cmocka_unit_test(test_conv_direct_overwrites_and_repeats),
      cmocka_unit_test(test_conv_direct_empty_batch),
      cmocka_unit_test(test_conv_direct_supported_by_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
