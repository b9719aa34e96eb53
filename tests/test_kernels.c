/* Gradient checks: every kernel's backward against central finite
 * differences of a scalar function of its forward, computed in double. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "kernels.h"
#include "model.h"
#include "optim.h"
#include "sampler.h"
#include "testutil.h"

enum { B = 3, C = 5, OC = 4 };

/* L = sum(r * dense_forward(x, w, b)) for a fixed random r. */
static double dense_loss(const float *x, const float *w, const float *b, const float *r) {
  float out[B * OC];
  dense_forward(out, x, w, b, B, C, OC);
  double l = 0;
  for (int i = 0; i < B * OC; i++) l += (double)r[i] * out[i];
  return l;
}

static void check_param(float *p, int n, const float *grad, const float *x, const float *w,
                        const float *b, const float *r) {
  const float eps = 1e-2f; /* L is linear in each parameter: no truncation error */
  for (int i = 0; i < n; i++) {
    float keep = p[i];
    p[i] = keep + eps;
    double lp = dense_loss(x, w, b, r);
    p[i] = keep - eps;
    double lm = dense_loss(x, w, b, r);
    p[i] = keep;
    tu_assert_close(grad[i], (lp - lm) / (2.0 * eps), 1e-3, 1e-4);
  }
}

static void test_kernels_dense_forward_matches_naive(void **state) {
  (void)state;
  float x[B * C], w[OC * C], b[OC], out[B * OC];
  tu_fill(x, B * C, 1), tu_fill(w, OC * C, 2), tu_fill(b, OC, 3);
  dense_forward(out, x, w, b, B, C, OC);
  for (int i = 0; i < B; i++)
    for (int o = 0; o < OC; o++) {
      double s = b[o];
      for (int k = 0; k < C; k++) s += (double)x[i * C + k] * w[o * C + k];
      tu_assert_close(out[i * OC + o], s, 1e-5, 1e-6);
    }
}

static void test_kernels_dense_backward_gradcheck(void **state) {
  (void)state;
  float x[B * C], w[OC * C], b[OC], r[B * OC];
  float dx[B * C], dw[OC * C], db[OC];
  tu_fill(x, B * C, 4), tu_fill(w, OC * C, 5), tu_fill(b, OC, 6), tu_fill(r, B * OC, 7);
  /* dL/dout = r */
  dense_backward(dx, dw, db, r, x, w, B, C, OC);
  check_param(w, OC * C, dw, x, w, b, r);
  check_param(b, OC, db, x, w, b, r);
  check_param(x, B * C, dx, x, w, b, r);
}

static void test_kernels_dense_backward_overwrites(void **state) {
  (void)state;
  float x[B * C], w[OC * C], r[B * OC], dw1[OC * C], db1[OC], dw2[OC * C], db2[OC];
  tu_fill(x, B * C, 8), tu_fill(w, OC * C, 9), tu_fill(r, B * OC, 10);
  dense_backward(NULL, dw1, db1, r, x, w, B, C, OC);
  for (int i = 0; i < OC * C; i++) dw2[i] = 123.0f;
  for (int i = 0; i < OC; i++) db2[i] = -5.0f;
  dense_backward(NULL, dw2, db2, r, x, w, B, C, OC);
  assert_memory_equal(dw1, dw2, sizeof dw1);
  assert_memory_equal(db1, db2, sizeof db1);
}

static void test_kernels_relu_gradcheck(void **state) {
  (void)state;
  enum { N = 16 };
  float x[N], r[N], y[N], dy[N];
  tu_fill(x, N, 11), tu_fill(r, N, 12);
  for (int i = 0; i < N; i++)
    if (fabsf(x[i]) < 0.05f) x[i] = 0.3f; /* keep away from the kink */
  memcpy(y, x, sizeof x);
  relu_forward(y, N);
  memcpy(dy, r, sizeof r);
  relu_backward(dy, y, N);
  const float eps = 1e-3f;
  for (int i = 0; i < N; i++) {
    float p = x[i] + eps, m = x[i] - eps;
    relu_forward(&p, 1), relu_forward(&m, 1);
    tu_assert_close(dy[i], r[i] * (p - m) / (2.0 * eps), 1e-3, 1e-4);
  }
}

static void test_kernels_softmax_xent_gradcheck(void **state) {
  (void)state;
  enum { K = 6, N = 4 };
  float z[N * K], dz[N * K];
  int32_t y[N] = {0, 5, 2, 2};
  tu_fill(z, N * K, 13);
  for (int i = 0; i < N * K; i++) z[i] *= 3.0f;
  const float scale = 0.25f;
  softmax_xent(dz, z, y, N, K, scale, NULL);
  const float eps = 1e-2f;
  for (int i = 0; i < N * K; i++) {
    float keep = z[i];
    z[i] = keep + eps;
    double lp = softmax_xent(NULL, z, y, N, K, 1.0f, NULL);
    z[i] = keep - eps;
    double lm = softmax_xent(NULL, z, y, N, K, 1.0f, NULL);
    z[i] = keep;
    tu_assert_close(dz[i], scale * (lp - lm) / (2.0 * eps), 5e-3, 1e-4);
  }
}

static void test_kernels_softmax_xent_value_and_accuracy(void **state) {
  (void)state;
  float z[2 * 3] = {1.0f, 2.0f, 3.0f, 1000.0f, 0.0f, -1000.0f};
  int32_t y[2] = {2, 1};
  long correct = 0;
  double loss = softmax_xent(NULL, z, y, 2, 3, 1.0f, &correct);
  double l0 = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3.0;
  double l1 = 1000.0; /* stable for huge logits: log-sum-exp ~ 1000, z_y = 0 */
  tu_assert_close(loss, l0 + l1, 1e-6, 1e-6);
  assert_int_equal(correct, 1);
}

/* The whole model: backward of the summed loss against finite differences
 * of every parameter, through two ReLU layers. */
static void test_kernels_model_gradcheck(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.model.n_layers = 3;
  cfg.model.layers[0] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 7, .activation = MS_ACT_RELU};
  cfg.model.layers[1] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 6, .activation = MS_ACT_RELU};
  cfg.model.layers[2] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 4, .activation = MS_ACT_NONE};
  enum { N = 5, IN = 8 };
  ms_model *m = NULL;
  int64_t in[1] = {IN};
  assert_int_equal(model_create(&m, &cfg, in, 1, N), 0);
  assert_int_equal(m->n_params, (size_t)(8 * 7 + 7 + 7 * 6 + 6 + 6 * 4 + 4));
  model_init(m, 42);
  for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f; /* non-zero biases */
  float x[N * IN], dl[N * 4];
  int32_t y[N] = {0, 1, 2, 3, 1};
  tu_fill(x, N * IN, 14);
  softmax_xent(dl, model_forward(m, x, N, NULL), y, N, 4, 1.0f, NULL);
  model_backward(m, dl, NULL, NULL, NULL);
  const float eps = 2e-3f;
  int checked = 0;
  for (size_t i = 0; i < m->n_params; i++) {
    float keep = m->params[i];
    m->params[i] = keep + eps;
    double lp = softmax_xent(NULL, model_forward(m, x, N, NULL), y, N, 4, 1.0f, NULL);
    m->params[i] = keep - eps;
    double lm = softmax_xent(NULL, model_forward(m, x, N, NULL), y, N, 4, 1.0f, NULL);
    m->params[i] = keep;
    tu_assert_close(m->grads[i], (lp - lm) / (2.0 * eps), 2e-2, 2e-3);
    checked++;
  }
  assert_int_equal(checked, (int)m->n_params);
  model_free(m);
}

static void test_kernels_model_init_deterministic_and_scaled(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.model.n_layers = 2;
  cfg.model.layers[0] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 256, .activation = MS_ACT_RELU};
  cfg.model.layers[1] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 10, .activation = MS_ACT_NONE};
  ms_model *a = NULL, *b = NULL;
  int64_t in[2] = {28, 28};
  assert_int_equal(model_create(&a, &cfg, in, 2, 1), 0);
  assert_int_equal(model_create(&b, &cfg, in, 2, 1), 0);
  model_init(a, 7), model_init(b, 7);
  assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
  model_init(b, 8);
  assert_true(model_params_hash(a) != model_params_hash(b));
  /* He normal: the first layer's weights have std close to sqrt(2/784). */
  double s2 = 0;
  size_t n = 784 * 256;
  for (size_t i = 0; i < n; i++) s2 += (double)a->params[i] * a->params[i];
  double std = sqrt(s2 / (double)n);
  assert_true(fabs(std - sqrt(2.0 / 784.0)) < 0.01 * sqrt(2.0 / 784.0));
  model_free(a);
  model_free(b);
}

static void test_kernels_sgd_momentum_matches_formula(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.optim.name = MS_OPTIM_SGD;
  cfg.optim.lr = 0.1, cfg.optim.momentum = 0.9, cfg.optim.weight_decay = 0.01;
  ms_optim *o = NULL;
  assert_int_equal(optim_create(&o, &cfg, 1), 0);
  float p = 1.0f, g = 0.5f;
  double v = 0, pd = 1.0;
  for (int t = 0; t < 3; t++) {
    optim_sgd_step(o, &p, &g, 0.1);
    double gd = 0.5 + 0.01 * pd;
    v = 0.9 * v + gd;
    pd -= 0.1 * v;
    tu_assert_close(p, pd, 1e-6, 1e-7);
  }
  optim_free(o);
}

static void test_kernels_schedule_warmup_and_cosine(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.optim.lr = 1.0;
  cfg.schedule.name = MS_SCHED_COSINE;
  cfg.schedule.warmup_steps = 10;
  cfg.schedule.min_lr_ratio = 0.1;
  tu_assert_close(schedule_lr(&cfg, 0, 110), 0.1, 1e-12, 0);
  tu_assert_close(schedule_lr(&cfg, 9, 110), 1.0, 1e-12, 0);
  tu_assert_close(schedule_lr(&cfg, 10, 110), 1.0, 1e-12, 0);
  tu_assert_close(schedule_lr(&cfg, 60, 110), 0.55, 1e-12, 0);
  tu_assert_close(schedule_lr(&cfg, 110, 110), 0.1, 1e-12, 0);
  cfg.schedule.name = MS_SCHED_CONSTANT;
  tu_assert_close(schedule_lr(&cfg, 60, 110), 1.0, 1e-12, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernels_dense_forward_matches_naive),
      cmocka_unit_test(test_kernels_dense_backward_gradcheck),
      cmocka_unit_test(test_kernels_dense_backward_overwrites),
      cmocka_unit_test(test_kernels_relu_gradcheck),
      cmocka_unit_test(test_kernels_softmax_xent_gradcheck),
      cmocka_unit_test(test_kernels_softmax_xent_value_and_accuracy),
      cmocka_unit_test(test_kernels_model_gradcheck),
      cmocka_unit_test(test_kernels_model_init_deterministic_and_scaled),
      cmocka_unit_test(test_kernels_sgd_momentum_matches_formula),
      cmocka_unit_test(test_kernels_schedule_warmup_and_cosine),
  };
  return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
