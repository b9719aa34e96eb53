/* The oneDNN dense layer (trainer/nn/dnn.h): fp32 against the OpenBLAS kernels
 * of kernels.h within 1e-5, finite-difference gradient checks, bf16 against
 * an exact product of bf16-rounded operands, determinism, and the precision
 * choice. ctest runs it twice: as is, and with ONEDNN_MAX_CPU_ISA=AVX2 (no
 * native bf16: the emulated path). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dnn.h"
#include "config.h"
#include "kernels.h"
#include "layers.h"
#include "model.h"
#include "ms_error.h"
#include "testutil.h"

/* Round to nearest even bf16, returned as the float it represents. */
static float bf16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&f, &u, sizeof f);
  return f;
}

typedef struct {
  int B, C, OC;
  float *x, *w, *b, *out, *dout, *dinp, *dw, *db;
} dense_case;

static void case_init(dense_case *t, int B, int C, int OC, uint64_t seed) {
  t->B = B, t->C = C, t->OC = OC;
  t->x = malloc(sizeof(float) * (size_t)B * C);
  t->w = malloc(sizeof(float) * (size_t)OC * C);
  t->b = malloc(sizeof(float) * (size_t)OC);
  t->out = malloc(sizeof(float) * (size_t)B * OC);
  t->dout = malloc(sizeof(float) * (size_t)B * OC);
  t->dinp = malloc(sizeof(float) * (size_t)B * C);
  t->dw = malloc(sizeof(float) * (size_t)OC * C);
  t->db = malloc(sizeof(float) * (size_t)OC);
  assert_non_null(t->db);
  tu_fill(t->x, (long)B * C, seed), tu_fill(t->w, (long)OC * C, seed + 1);
  tu_fill(t->b, OC, seed + 2), tu_fill(t->dout, (long)B * OC, seed + 3);
}

static void case_free(dense_case *t) {
  free(t->x), free(t->w), free(t->b), free(t->out), free(t->dout), free(t->dinp), free(t->dw),
      free(t->db);
}

/* Runs forward and backward through d. */
static void case_run(dense_case *t, dnn_dense *d) {
  assert_int_equal(dnn_dense_forward(d, t->out, t->x, t->w, t->b, t->B), 0);
  assert_int_equal(dnn_dense_backward(d, t->dinp, t->dw, t->db, t->dout, t->x, t->w, t->B), 0);
}

/* Elementwise within rtol of the larger magnitude, or rtol * the largest
 * magnitude of want (sums of mixed signs cancel). */
static void assert_near(const float *got, const float *want, long n, double rtol) {
  double scale = 0;
  for (long i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (long i = 0; i < n; i++) tu_assert_close(got[i], want[i], rtol, rtol * scale);
}

/* ||got - want|| / ||want|| <= rtol: the relative error of a whole tensor,
 * which tolerates the single elements that bf16 rounding moves more (sums
 * that cancel, ReLU masks that flip near zero). */
static void assert_rel_norm(const float *got, const float *want, long n, double rtol) {
  double e = 0, w = 0;
  for (long i = 0; i < n; i++) {
    e += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
    w += (double)want[i] * want[i];
  }
  if (sqrt(e) > rtol * sqrt(w))
    fail_msg("relative error %.3g over %ld elements > %.3g", sqrt(e / (w > 0 ? w : 1)), n, rtol);
}

static void test_dnn_fp32_matches_openblas(void **state) {
  (void)state;
  static const int shapes[][3] = {{3, 5, 4}, {64, 784, 256}, {64, 256, 10}, {17, 33, 65}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
    dense_case t, r;
    case_init(&t, B, C, OC, 10 + s), case_init(&r, B, C, OC, 10 + s);
    dnn_dense *d;
    assert_int_equal(dnn_dense_create(&d, C, OC, B, DNN_FP32), 0);
    case_run(&t, d);
    dense_forward(r.out, r.x, r.w, r.b, B, C, OC);
    dense_backward(r.dinp, r.dw, r.db, r.dout, r.x, r.w, B, C, OC);
    assert_near(t.out, r.out, (long)B * OC, 1e-5);
    assert_near(t.dinp, r.dinp, (long)B * C, 1e-5);
    assert_near(t.dw, r.dw, (long)OC * C, 1e-5);
    assert_near(t.db, r.db, OC, 1e-5);
    dnn_dense_free(d);
    case_free(&t), case_free(&r);
  }
}

/* L = sum(r * out) is linear in each parameter: central differences are exact
 * up to fp32 rounding. */
static double dnn_loss(dnn_dense *d, dense_case *t) {
  assert_int_equal(dnn_dense_forward(d, t->out, t->x, t->w, t->b, t->B), 0);
  double l = 0;
  for (long i = 0; i < (long)t->B * t->OC; i++) l += (double)t->dout[i] * t->out[i];
  return l;
}

static void gradcheck(dnn_dense *d, dense_case *t, float *p, long n, const float *grad) {
  const float eps = 1e-2f;
  for (long i = 0; i < n; i++) {
    float keep = p[i];
    p[i] = keep + eps;
    double lp = dnn_loss(d, t);
    p[i] = keep - eps;
    double lm = dnn_loss(d, t);
    p[i] = keep;
    tu_assert_close(grad[i], (lp - lm) / (2.0 * eps), 1e-3, 1e-4);
  }
}

static void test_dnn_fp32_gradcheck(void **state) {
  (void)state;
  dense_case t;
  case_init(&t, 3, 5, 4, 20);
  dnn_dense *d;
  assert_int_equal(dnn_dense_create(&d, 5, 4, 3, DNN_FP32), 0);
  case_run(&t, d);
  float dinp[15], dw[20], db[4];
  memcpy(dinp, t.dinp, sizeof dinp), memcpy(dw, t.dw, sizeof dw), memcpy(db, t.db, sizeof db);
  gradcheck(d, &t, t.x, 15, dinp);
  gradcheck(d, &t, t.w, 20, dw);
  gradcheck(d, &t, t.b, 4, db);
  dnn_dense_free(d);
  case_free(&t);
}

/* bf16: every product is that of the rounded operands, accumulated in fp32;
 * the reference accumulates the same products in double. */
static void test_dnn_bf16_is_rounded_operands_fp32_sums(void **state) {
  (void)state;
  int B = 32, C = 300, OC = 70;
  dense_case t, r;
  case_init(&t, B, C, OC, 30), case_init(&r, B, C, OC, 30);
  dnn_dense *d;
  assert_int_equal(dnn_dense_create(&d, C, OC, B, DNN_BF16), 0);
  case_run(&t, d);
  for (long i = 0; i < (long)B * C; i++) r.x[i] = bf16_round(r.x[i]);
  for (long i = 0; i < (long)OC * C; i++) r.w[i] = bf16_round(r.w[i]);
  float *dq = malloc(sizeof(float) * (size_t)B * OC);
  for (long i = 0; i < (long)B * OC; i++) dq[i] = bf16_round(r.dout[i]);
  for (int i = 0; i < B; i++)
    for (int o = 0; o < OC; o++) {
      double s = r.b[o];
      for (int k = 0; k < C; k++) s += (double)r.x[i * C + k] * r.w[o * C + k];
      tu_assert_close(t.out[i * OC + o], s, 1e-5, 1e-5);
    }
  for (int o = 0; o < OC; o++)
    for (int k = 0; k < C; k++) {
      double s = 0;
      for (int i = 0; i < B; i++) s += (double)dq[i * OC + o] * r.x[i * C + k];
      tu_assert_close(t.dw[o * C + k], s, 1e-5, 1e-5);
    }
  for (int i = 0; i < B; i++)
    for (int k = 0; k < C; k++) {
      double s = 0;
      for (int o = 0; o < OC; o++) s += (double)dq[i * OC + o] * r.w[o * C + k];
      tu_assert_close(t.dinp[i * C + k], s, 1e-5, 1e-5);
    }
  for (int o = 0; o < OC; o++) {
    double s = 0;
    for (int i = 0; i < B; i++) s += r.dout[i * OC + o]; /* the bias gradient stays fp32 */
    tu_assert_close(t.db[o], s, 1e-5, 1e-6);
  }
  free(dq);
  dnn_dense_free(d);
  case_free(&t), case_free(&r);
}

/* bf16 against fp32 (the OpenBLAS kernels): within bf16's 8 bits. */
static void test_dnn_bf16_near_fp32(void **state) {
  (void)state;
  int B = 64, C = 784, OC = 256;
  dense_case t, r;
  case_init(&t, B, C, OC, 40), case_init(&r, B, C, OC, 40);
  dnn_dense *d;
  assert_int_equal(dnn_dense_create(&d, C, OC, B, DNN_BF16), 0);
  case_run(&t, d);
  dense_forward(r.out, r.x, r.w, r.b, B, C, OC);
  dense_backward(r.dinp, r.dw, r.db, r.dout, r.x, r.w, B, C, OC);
  assert_near(t.out, r.out, (long)B * OC, 2e-2);
  assert_near(t.dinp, r.dinp, (long)B * C, 2e-2);
  assert_near(t.dw, r.dw, (long)OC * C, 2e-2);
  dnn_dense_free(d);
  case_free(&t), case_free(&r);
}

/* The same inputs give the same bits, also after other batch sizes have
 * filled (and cycled) the primitive cache. */
static void test_dnn_deterministic_across_cache(void **state) {
  (void)state;
  for (int prec = DNN_FP32; prec <= DNN_BF16; prec++) {
    int C = 100, OC = 30;
    dense_case a, b;
    case_init(&a, 16, C, OC, 50), case_init(&b, 16, C, OC, 50);
    dnn_dense *d;
    assert_int_equal(dnn_dense_create(&d, C, OC, 16, (dnn_precision)prec), 0);
    case_run(&a, d);
    for (int B = 1; B <= DNN_CACHE + 2; B++) {
      b.B = B;
      case_run(&b, d);
    }
    b.B = 16;
    case_run(&b, d);
    assert_memory_equal(a.out, b.out, sizeof(float) * 16 * OC);
    assert_memory_equal(a.dinp, b.dinp, sizeof(float) * 16 * C);
    assert_memory_equal(a.dw, b.dw, sizeof(float) * OC * C);
    dnn_dense_free(d);
    case_free(&a), case_free(&b);
  }
}

/* dnn_bf16_convert rounds to nearest even (ties included), and a layer
 * that reads the caller's bf16 weights (dnn_dense_use_bf16) gives the bits
 * of the same layer converting its f32 weights itself (comm.shared_params'
 * node copy against each rank's own), for every batch size; also with
 * weights that round up, tie, overflow to inf or are subnormal. */
static void test_dnn_bf16_caller_weights(void **state) {
  (void)state;
  const uint32_t edge[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu,
                           0x00000001u, 0x807fffffu, 0x3c000001u, 0xbf7f8000u};
  float e[8];
  memcpy(e, edge, sizeof e);
  uint16_t h[8];
  assert_int_equal(dnn_bf16_convert(h, e, 8), 0);
  for (int i = 0; i < 8; i++) {
    if (fpclassify(e[i]) == FP_SUBNORMAL) continue; /* the ISA's choice: flushed or kept */
    float r = bf16_round(e[i]), got;
    uint32_t u = (uint32_t)h[i] << 16;
    memcpy(&got, &u, sizeof got);
    assert_memory_equal(&got, &r, sizeof r);
  }
  int C = 300, OC = 70;
  dense_case a, b;
  case_init(&a, 32, C, OC, 60), case_init(&b, 32, C, OC, 60);
  memcpy(a.w, e, sizeof e), memcpy(b.w, e, sizeof e);
  a.w[8] = b.w[8] = 1e-39f; /* subnormal: both paths must round it alike */
  dnn_dense *own, *ext;
  assert_int_equal(dnn_dense_create(&own, C, OC, 32, DNN_BF16), 0);
  assert_int_equal(dnn_dense_create(&ext, C, OC, 32, DNN_BF16), 0);
  uint16_t *w16 = malloc(sizeof(uint16_t) * (size_t)OC * C);
  assert_non_null(w16);
  assert_int_equal(dnn_bf16_convert(w16, b.w, (size_t)OC * C), 0);
  /* Only native bf16 reads them; emulated runs ignore the call. */
  assert_int_equal(dnn_dense_bf16_weights(ext), dnn_bf16_native());
  dnn_dense_use_bf16(ext, w16);
  /* Garbage in b.w: a layer that reads w16 must not look at it. */
  if (dnn_dense_bf16_weights(ext)) tu_fill(b.w, (long)OC * C, 99);
  for (int B = 32; B >= 1; B -= 13) {
    a.B = b.B = B;
    case_run(&a, own), case_run(&b, ext);
    assert_memory_equal(a.out, b.out, sizeof(float) * (size_t)B * OC);
    assert_memory_equal(a.dinp, b.dinp, sizeof(float) * (size_t)B * C);
    assert_memory_equal(a.dw, b.dw, sizeof(float) * (size_t)OC * C);
  }
  dnn_dense_free(own), dnn_dense_free(ext);
  free(w16);
  case_free(&a), case_free(&b);
}

static void test_dnn_precision_choice(void **state) {
  (void)state;
  char why[128];
  dnn_precision p;
  assert_int_equal(dnn_resolve_precision(MS_PRECISION_FP32, &p, why, sizeof why), 0);
  assert_int_equal(p, DNN_FP32);
  assert_int_equal(dnn_resolve_precision(MS_PRECISION_AUTO, &p, why, sizeof why), 0);
  assert_int_equal(p, dnn_bf16_fast() ? DNN_BF16 : DNN_FP32);
  assert_true(!dnn_bf16_fast() || dnn_bf16_native());
  assert_non_null(strstr(why, dnn_isa_name()));
  assert_int_equal(dnn_resolve_precision(MS_PRECISION_BF16, &p, why, sizeof why), 0);
  assert_int_equal(p, DNN_BF16);
  assert_int_equal(strncmp(why, "emulated", 8) == 0, !dnn_bf16_native());
  assert_int_equal(dnn_resolve_precision((ms_precision)99, &p, why, sizeof why), MS_ECONFIG);
  assert_true(dnn_matmul_peak(DNN_FP32) > 0 && dnn_matmul_peak(DNN_BF16) > 0);
  /* Under ONEDNN_MAX_CPU_ISA=AVX2 nothing is native, and a bf16 layer says
   * that it is emulated. */
  const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
  if (cap && strcmp(cap, "AVX2") == 0) assert_int_equal(dnn_bf16_native() + dnn_bf16_fast(), 0);
  dnn_dense *d;
  assert_int_equal(dnn_dense_create(&d, 8, 8, 4, DNN_BF16), 0);
  dense_case t;
  case_init(&t, 4, 8, 8, 60);
  case_run(&t, d);
  assert_int_equal(dnn_dense_emulated(d), !dnn_bf16_native());
  assert_true(strlen(dnn_dense_impl(d)) > 0);
  dnn_dense_free(d);
  case_free(&t);
}

/* An MLP 20-32-16-5 with ReLU in the given precision, initialised alike. */
static ms_model *mlp(ms_precision precision, int B) {
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.model.precision = precision;
  cfg.model.n_layers = 3;
  cfg.model.layers[0] =
      (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 32, .activation = MS_ACT_RELU};
  cfg.model.layers[1] =
      (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 16, .activation = MS_ACT_RELU};
  cfg.model.layers[2] =
      (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 5, .activation = MS_ACT_NONE};
  ms_model *m = NULL;
  int64_t in[1] = {20};
  assert_int_equal(model_create(&m, &cfg, in, 1, B), 0);
  model_init(m, 7);
  return m;
}

/* One forward and backward of the softmax cross-entropy; returns the loss. */
static double mlp_step(ms_model *m, const float *x, const int32_t *y, int B) {
  float dl[64 * 5];
  double loss = softmax_xent(dl, model_forward(m, x, B, NULL), y, B, 5, 1.0f / (float)B, NULL);
  model_backward(m, dl, NULL, NULL, NULL);
  assert_int_equal(model_kernel_status(m), 0);
  return loss;
}

/* bf16 through the model: the loss and each gradient tensor within a
 * relative error of 2e-2 of the fp32 model's, and the
 * same bits on a second model and a second step. */
static void test_dnn_model_bf16_near_fp32_and_deterministic(void **state) {
  (void)state;
  enum { B = 64 };
  float x[B * 20];
  int32_t y[B];
  tu_fill(x, B * 20, 70);
  for (int i = 0; i < B; i++) y[i] = i % 5;
  ms_model *f = mlp(MS_PRECISION_FP32, B), *h = mlp(MS_PRECISION_BF16, B), *h2 = mlp(MS_PRECISION_BF16, B);
  assert_int_equal(h->precision, DNN_BF16);
  double lf = mlp_step(f, x, y, B), lh = mlp_step(h, x, y, B);
  tu_assert_close(lh, lf, 2e-2, 0);
  for (int t = 0; t < f->n_p; t++) {
    const ms_param *p = &f->p[t];
    assert_rel_norm(h->grads + p->off, f->grads + p->off, (long)p->len, 2e-2);
  }
  mlp_step(h2, x, y, B);
  assert_memory_equal(h->grads, h2->grads, sizeof(float) * h->n_params);
  mlp_step(h2, x, y, B);
  assert_memory_equal(h->grads, h2->grads, sizeof(float) * h->n_params);
  model_free(f), model_free(h), model_free(h2);
}

/* The banner line names the precision, its reason and the libraries. */
static void test_dnn_model_kernels_desc(void **state) {
  (void)state;
  char buf[512];
  ms_model *f = mlp(MS_PRECISION_FP32, 4), *h = mlp(MS_PRECISION_BF16, 4), *a = mlp(MS_PRECISION_AUTO, 4);
  model_kernels_desc(f, buf, sizeof buf);
  assert_non_null(strstr(buf, "precision fp32 (fp32 as configured)"));
  assert_non_null(strstr(buf, "dense: OpenBLAS sgemm fp32"));
  model_kernels_desc(h, buf, sizeof buf);
  assert_non_null(strstr(buf, "precision bf16"));
  assert_non_null(strstr(buf, "dense: oneDNN matmul bf16 ["));
  assert_int_equal(strstr(buf, "emulated") != NULL, !dnn_bf16_native());
  model_kernels_desc(a, buf, sizeof buf);
  assert_non_null(strstr(buf, dnn_bf16_fast() ? "precision bf16 (auto" : "precision fp32 (auto"));
  model_free(f), model_free(h), model_free(a);
}

/* ---- conv2d ----------------------------------------------------------------------- */

typedef struct {
  ms_conv2d g;
  int B;
  long nx, nw, ny;
  float *x, *w, *b, *y, *dy, *dx, *dw, *db;
} conv_case;

static void conv_init(conv_case *t, ms_conv2d g, int B, uint64_t seed) {
  assert_int_equal(conv2d_geometry(&g), 0);
  t->g = g, t->B = B;
  t->nx = (long)B * g.C * g.H * g.W, t->nw = (long)g.OC * g.C * g.KH * g.KW;
  t->ny = (long)B * g.OC * g.OH * g.OW;
  t->x = malloc(sizeof(float) * (size_t)t->nx), t->dx = malloc(sizeof(float) * (size_t)t->nx);
  t->w = malloc(sizeof(float) * (size_t)t->nw), t->dw = malloc(sizeof(float) * (size_t)t->nw);
  t->y = malloc(sizeof(float) * (size_t)t->ny), t->dy = malloc(sizeof(float) * (size_t)t->ny);
  t->b = malloc(sizeof(float) * (size_t)g.OC), t->db = malloc(sizeof(float) * (size_t)g.OC);
  assert_non_null(t->db);
  tu_fill(t->x, t->nx, seed), tu_fill(t->w, t->nw, seed + 1), tu_fill(t->b, g.OC, seed + 2);
  tu_fill(t->dy, t->ny, seed + 3);
}

static void conv_free(conv_case *t) {
  free(t->x), free(t->dx), free(t->w), free(t->dw), free(t->y), free(t->dy), free(t->b),
      free(t->db);
}

/* The im2col + OpenBLAS kernels of layers.h on t. */
static void conv_reference(conv_case *t) {
  float *scratch = malloc(sizeof(float) * (size_t)conv2d_scratch_floats(&t->g, t->B));
  conv2d_forward(t->y, t->x, t->w, t->b, &t->g, t->B, scratch);
  conv2d_backward(t->dx, t->dw, t->db, t->dy, t->x, t->w, &t->g, t->B, scratch);
  free(scratch);
}

static void conv_dnn(conv_case *t, dnn_conv *c) {
  assert_int_equal(dnn_conv_forward(c, t->y, t->x, t->w, t->b, t->B), 0);
  assert_int_equal(dnn_conv_backward(c, t->dx, t->dw, t->db, t->dy, t->x, t->w, t->B), 0);
}

/* The CNN config's two convolutions, a strided one, and one whose last
 * input rows no window reaches. */
static const ms_conv2d conv_shapes[] = {
    {.C = 1, .H = 28, .W = 28, .OC = 16, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PH = 1, .PW = 1},
    {.C = 16, .H = 14, .W = 14, .OC = 32, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PH = 1, .PW = 1},
    {.C = 2, .H = 9, .W = 8, .OC = 3, .KH = 3, .KW = 3, .SH = 2, .SW = 2, .PH = 1, .PW = 1},
    {.C = 3, .H = 8, .W = 7, .OC = 5, .KH = 3, .KW = 2, .SH = 2, .SW = 2, .PH = 0, .PW = 0},
    /* model.conv_kernel auto puts fp32 layers of 8 or more input channels on oneDNN */
    {.C = 8, .H = 6, .W = 5, .OC = 4, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PH = 1, .PW = 1},
};

static void test_dnn_conv_fp32_matches_im2col(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof conv_shapes / sizeof conv_shapes[0]; i++) {
    conv_case t, r;
    conv_init(&t, conv_shapes[i], 8, 80 + i), conv_init(&r, conv_shapes[i], 8, 80 + i);
    dnn_conv *c;
    assert_int_equal(dnn_conv_create(&c, &t.g, 8, DNN_FP32), 0);
    conv_dnn(&t, c);
    conv_reference(&r);
    assert_near(t.y, r.y, t.ny, 1e-5);
    assert_near(t.dx, r.dx, t.nx, 1e-5);
    assert_near(t.dw, r.dw, t.nw, 1e-5);
    assert_near(t.db, r.db, t.g.OC, 1e-5);
    dnn_conv_free(c);
    conv_free(&t), conv_free(&r);
  }
}

/* L = sum(dy * conv(x)): linear in each parameter. */
static double conv_loss(dnn_conv *c, conv_case *t) {
  assert_int_equal(dnn_conv_forward(c, t->y, t->x, t->w, t->b, t->B), 0);
  double l = 0;
  for (long i = 0; i < t->ny; i++) l += (double)t->dy[i] * t->y[i];
  return l;
}

static void conv_gradcheck(dnn_conv *c, conv_case *t, float *p, long n, const float *grad) {
  const float eps = 1e-2f;
  for (long i = 0; i < n; i++) {
    float keep = p[i];
    p[i] = keep + eps;
    double lp = conv_loss(c, t);
    p[i] = keep - eps;
    double lm = conv_loss(c, t);
    p[i] = keep;
    tu_assert_close(grad[i], (lp - lm) / (2.0 * eps), 1e-3, 1e-4);
  }
}

/* Finite differences against the fp32 oneDNN gradients of shape g. */
static void conv_fp32_gradcheck(ms_conv2d g, uint64_t seed) {
  conv_case t;
  conv_init(&t, g, 2, seed);
  dnn_conv *c;
  assert_int_equal(dnn_conv_create(&c, &t.g, 2, DNN_FP32), 0);
  conv_dnn(&t, c);
  float *dx = malloc(sizeof(float) * (size_t)t.nx), *dw = malloc(sizeof(float) * (size_t)t.nw);
  float *db = malloc(sizeof(float) * (size_t)t.g.OC);
  memcpy(dx, t.dx, sizeof(float) * (size_t)t.nx), memcpy(dw, t.dw, sizeof(float) * (size_t)t.nw);
  memcpy(db, t.db, sizeof(float) * (size_t)t.g.OC);
  conv_gradcheck(c, &t, t.x, t.nx, dx);
  conv_gradcheck(c, &t, t.w, t.nw, dw);
  conv_gradcheck(c, &t, t.b, t.g.OC, db);
  free(dx), free(dw), free(db);
  dnn_conv_free(c);
  conv_free(&t);
}

/* The strided shape, and the one of 8 input channels that
 * model.conv_kernel auto runs on oneDNN in fp32 training. */
static void test_dnn_conv_fp32_gradcheck(void **state) {
  (void)state;
  conv_fp32_gradcheck(conv_shapes[2], 90);
  conv_fp32_gradcheck(conv_shapes[4], 91);
}

/* fp32 oneDNN convolutions on 2 threads (the backward-weights reduction
 * splits the batch across threads): the same bits from one call to the
 * next and from a second object, as training at fixed threads needs. */
static void test_dnn_conv_fp32_deterministic_threads(void **state) {
  (void)state;
  dnn_set_threads(2);
  const ms_conv2d g = conv_shapes[1];
  conv_case t, t2, t3;
  conv_init(&t, g, 64, 120), conv_init(&t2, g, 64, 120), conv_init(&t3, g, 64, 120);
  dnn_conv *c, *c2;
  assert_int_equal(dnn_conv_create(&c, &t.g, 64, DNN_FP32), 0);
  assert_int_equal(dnn_conv_create(&c2, &t.g, 64, DNN_FP32), 0);
  conv_dnn(&t, c), conv_dnn(&t2, c), conv_dnn(&t3, c2);
  conv_case *o[] = {&t2, &t3};
  for (int k = 0; k < 2; k++) {
    assert_memory_equal(t.y, o[k]->y, sizeof(float) * (size_t)t.ny);
    assert_memory_equal(t.dx, o[k]->dx, sizeof(float) * (size_t)t.nx);
    assert_memory_equal(t.dw, o[k]->dw, sizeof(float) * (size_t)t.nw);
    assert_memory_equal(t.db, o[k]->db, sizeof(float) * (size_t)t.g.OC);
  }
  dnn_conv_free(c), dnn_conv_free(c2);
  conv_free(&t), conv_free(&t2), conv_free(&t3);
  dnn_set_threads(1);
}

/* bf16: the products of the rounded operands, summed in fp32 (the
 * reference: im2col on the rounded operands), and the same bits twice. */
static void test_dnn_conv_bf16_is_rounded_operands(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof conv_shapes / sizeof conv_shapes[0]; i++) {
    conv_case t, r, t2;
    conv_init(&t, conv_shapes[i], 8, 100 + i), conv_init(&r, conv_shapes[i], 8, 100 + i);
    conv_init(&t2, conv_shapes[i], 8, 100 + i);
    dnn_conv *c;
    assert_int_equal(dnn_conv_create(&c, &t.g, 8, DNN_BF16), 0);
    assert_int_equal(dnn_conv_emulated(c), !dnn_bf16_native());
    conv_dnn(&t, c);
    conv_dnn(&t2, c);
    assert_memory_equal(t.dw, t2.dw, sizeof(float) * (size_t)t.nw);
    assert_memory_equal(t.dx, t2.dx, sizeof(float) * (size_t)t.nx);
    for (long k = 0; k < r.nx; k++) r.x[k] = bf16_round(r.x[k]);
    for (long k = 0; k < r.nw; k++) r.w[k] = bf16_round(r.w[k]);
    float *db = malloc(sizeof(float) * (size_t)r.g.OC);
    float *dy = malloc(sizeof(float) * (size_t)r.ny);
    memcpy(dy, r.dy, sizeof(float) * (size_t)r.ny);
    for (long k = 0; k < r.ny; k++) r.dy[k] = bf16_round(r.dy[k]);
    conv_reference(&r);
    assert_near(t.y, r.y, t.ny, 1e-4);
    assert_near(t.dx, r.dx, t.nx, 1e-4);
    assert_near(t.dw, r.dw, t.nw, 1e-4);
    /* The bias gradient sums the fp32 dout. */
    memcpy(r.dy, dy, sizeof(float) * (size_t)r.ny);
    conv_reference(&r);
    assert_near(t.db, r.db, t.g.OC, 1e-5);
    free(db), free(dy);
    dnn_conv_free(c);
    conv_free(&t), conv_free(&r), conv_free(&t2);
  }
}

/* A CNN (1, 12, 12) -> conv F 3x3 pad 1 relu -> maxpool 2 -> conv 6 3x3
 * relu -> dense 5, in the given precision and fp32 conv2d kernels. */
static ms_model *cnn_k(ms_precision precision, ms_conv_kernel kernel, int F, int B) {
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.model.precision = precision;
  cfg.model.conv_kernel = kernel;
  cfg.model.n_layers = 4;
  cfg.model.layers[0] = (ms_layer_cfg){
      .type = MS_LAYER_CONV2D, .filters = F, .kernel = 3, .padding = 1, .activation = MS_ACT_RELU};
  cfg.model.layers[1] = (ms_layer_cfg){.type = MS_LAYER_MAXPOOL2D, .kernel = 2};
  cfg.model.layers[2] =
      (ms_layer_cfg){.type = MS_LAYER_CONV2D, .filters = 6, .kernel = 3, .activation = MS_ACT_RELU};
  cfg.model.layers[3] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 5};
  ms_model *m = NULL;
  int64_t in[3] = {1, 12, 12};
  assert_int_equal(model_create(&m, &cfg, in, 3, B), 0);
  model_init(m, 9);
  return m;
}

/* The CNN of 4 filters first (both conv2d layers on the direct kernel in fp32
 * auto). */
static ms_model *cnn(ms_precision precision, int B) { return cnn_k(precision, MS_CONV_AUTO, 4, B); }

/* One step of the loss on m: @return the loss; m->grads holds the gradients. */
static double cnn_step(ms_model *m, const float *x, const int32_t *y, float *dl, int B) {
  double loss = softmax_xent(dl, model_forward(m, x, B, NULL), y, B, 5, 1.0f / B, NULL);
  model_backward(m, dl, NULL, NULL, NULL);
  assert_int_equal(model_kernel_status(m), 0);
  return loss;
}

/* fp32 conv2d kernels by model.conv_kernel, on a CNN whose second conv2d
 * has 8 input channels: auto runs it on oneDNN and the first (1 channel)
 * on the direct kernel (conv_direct.h), and the banner says so; auto and onednn match im2col within
 * 1e-5 relative (loss and every gradient tensor); on 2 threads the same
 * bits twice. */
static void test_dnn_model_cnn_fp32_conv_kernel(void **state) {
  (void)state;
  enum { B = 16 };
  float x[B * 144], dl[B * 5];
  int32_t y[B];
  tu_fill(x, B * 144, 76);
  for (int i = 0; i < B; i++) y[i] = i % 5;
  ms_model *r = cnn_k(MS_PRECISION_FP32, MS_CONV_IM2COL, 8, B);
  ms_model *a = cnn_k(MS_PRECISION_FP32, MS_CONV_AUTO, 8, B);
  ms_model *o = cnn_k(MS_PRECISION_FP32, MS_CONV_ONEDNN, 8, B);
  assert_null(r->layers[0].dconv), assert_null(r->layers[2].dconv);
  assert_null(a->layers[0].dconv), assert_non_null(a->layers[2].dconv);
  assert_true(a->layers[0].direct && !a->layers[2].direct);
  assert_false(r->layers[0].direct || r->layers[2].direct || o->layers[0].direct);
  assert_non_null(o->layers[0].dconv), assert_non_null(o->layers[2].dconv);
  double lr = cnn_step(r, x, y, dl, B);
  ms_model *ms[] = {a, o};
  for (int k = 0; k < 2; k++) {
    tu_assert_close(cnn_step(ms[k], x, y, dl, B), lr, 1e-5, 0);
    for (int t = 0; t < r->n_p; t++) {
      const ms_param *p = &r->p[t];
      assert_rel_norm(ms[k]->grads + p->off, r->grads + p->off, (long)p->len, 1e-5);
    }
  }
  char buf[768];
  model_kernels_desc(a, buf, sizeof buf);
  assert_non_null(strstr(buf, "model.conv_kernel auto"));
  assert_non_null(strstr(buf, "layer 0 (1 in-channels) direct convolution (C)"));
  assert_non_null(strstr(buf, "layer 2 (8 in-channels) oneDNN convolution ["));
  assert_non_null(strstr(buf, "dense: OpenBLAS sgemm fp32"));
  model_kernels_desc(r, buf, sizeof buf);
  assert_null(strstr(buf, "oneDNN"));
  dnn_set_threads(2);
  float *g1 = malloc(sizeof(float) * a->n_params);
  assert_non_null(g1);
  double l1 = cnn_step(a, x, y, dl, B);
  memcpy(g1, a->grads, sizeof(float) * a->n_params);
  assert_true(cnn_step(a, x, y, dl, B) == l1);
  assert_memory_equal(g1, a->grads, sizeof(float) * a->n_params);
  dnn_set_threads(1);
  free(g1);
  model_free(r), model_free(a), model_free(o);
}

/* The CNN in bf16 (oneDNN convolutions and matmul) against fp32 (the direct
 * convolution + OpenBLAS): the loss within 2e-2, the gradients within 4e-2 (measured:
 * 2.2e-2 on the first convolution's weights, whose gradient has been
 * through three bf16 products, the others below 2e-2); the same bits
 * twice. */
static void test_dnn_model_cnn_bf16_near_fp32(void **state) {
  (void)state;
  enum { B = 16 };
  float x[B * 144], dl[B * 5];
  int32_t y[B];
  tu_fill(x, B * 144, 75);
  for (int i = 0; i < B; i++) y[i] = i % 5;
  ms_model *f = cnn(MS_PRECISION_FP32, B), *h = cnn(MS_PRECISION_BF16, B), *h2 = cnn(MS_PRECISION_BF16, B);
  ms_model *ms[] = {f, h, h2};
  double loss[3];
  for (int k = 0; k < 3; k++) {
    loss[k] = softmax_xent(dl, model_forward(ms[k], x, B, NULL), y, B, 5, 1.0f / B, NULL);
    model_backward(ms[k], dl, NULL, NULL, NULL);
    assert_int_equal(model_kernel_status(ms[k]), 0);
  }
  tu_assert_close(loss[1], loss[0], 2e-2, 0);
  for (int t = 0; t < f->n_p; t++) {
    const ms_param *p = &f->p[t];
    assert_rel_norm(h->grads + p->off, f->grads + p->off, (long)p->len, 4e-2);
  }
  assert_memory_equal(h->grads, h2->grads, sizeof(float) * h->n_params);
  char buf[512];
  model_kernels_desc(h, buf, sizeof buf);
  assert_non_null(strstr(buf, "conv2d: oneDNN convolution bf16 ["));
  model_kernels_desc(f, buf, sizeof buf);
  assert_non_null(strstr(buf, "layer 0 (1 in-channels) direct convolution (C)"));
  model_free(f), model_free(h), model_free(h2);
}

int main(void) {
  dnn_set_threads(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dnn_fp32_matches_openblas),
      cmocka_unit_test(test_dnn_fp32_gradcheck),
      cmocka_unit_test(test_dnn_bf16_is_rounded_operands_fp32_sums),
      cmocka_unit_test(test_dnn_bf16_near_fp32),
      cmocka_unit_test(test_dnn_deterministic_across_cache),
      cmocka_unit_test(test_dnn_bf16_caller_weights),
      cmocka_unit_test(test_dnn_precision_choice),
      cmocka_unit_test(test_dnn_model_bf16_near_fp32_and_deterministic),
      cmocka_unit_test(test_dnn_model_kernels_desc),
      cmocka_unit_test(test_dnn_conv_fp32_matches_im2col),
      cmocka_unit_test(test_dnn_conv_fp32_gradcheck),
      cmocka_unit_test(test_dnn_conv_fp32_deterministic_threads),
      cmocka_unit_test(test_dnn_conv_bf16_is_rounded_operands),
      cmocka_unit_test(test_dnn_model_cnn_bf16_near_fp32),
      cmocka_unit_test(test_dnn_model_cnn_fp32_conv_kernel),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
