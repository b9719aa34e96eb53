/* test_model — the layer stack of trainer/nn/model.c: shapes and layout of
 * every layer type, a finite-difference check of the whole model's
 * gradients through conv2d, pooling, layer norm, dropout and dense layers,
 * initialisation, the weight-decay mask, the gradient-ready hook, and
 * dropout's independence from how a batch is split. */
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
#include "model.h"
#include "ms_error.h"
#include "testutil.h"

static ms_layer_cfg L(ms_layer_type t) {
  return (ms_layer_cfg){.type = t, .alpha = 0.01, .eps = 1e-5};
}
static ms_layer_cfg conv(int filters, int kernel, int stride, int pad, ms_activation a) {
  ms_layer_cfg l = L(MS_LAYER_CONV2D);
  l.filters = filters, l.kernel = kernel, l.stride = stride, l.padding = pad, l.activation = a;
  return l;
}
static ms_layer_cfg pool(ms_layer_type t, int kernel) {
  ms_layer_cfg l = L(t);
  l.kernel = kernel;
  return l;
}
static ms_layer_cfg dense(int units, ms_activation a) {
  ms_layer_cfg l = L(MS_LAYER_DENSE);
  l.units = units, l.activation = a;
  return l;
}

/* conv(3, 3x3 pad 1, tanh) -> maxpool 2 -> conv(4, 3x3 /2 pad 1, gelu) ->
 * layernorm -> flatten -> dropout 0.25 -> dense 5 sigmoid -> dense 3,
 * on (2, 6, 6) inputs. */
static void small_cnn(ms_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  ms_layer_cfg *l = cfg->model.layers;
  l[0] = conv(3, 3, 1, 1, MS_ACT_TANH);
  l[1] = pool(MS_LAYER_MAXPOOL2D, 2);
  l[2] = conv(4, 3, 2, 1, MS_ACT_GELU);
  l[3] = L(MS_LAYER_LAYERNORM);
  l[4] = L(MS_LAYER_FLATTEN);
  l[5] = L(MS_LAYER_DROPOUT);
  l[5].rate = 0.25;
  l[6] = dense(5, MS_ACT_SIGMOID);
  l[7] = dense(3, MS_ACT_NONE);
  cfg->model.n_layers = 8;
}

static void test_model_plan_shapes_and_layout(void **state) {
  (void)state;
  ms_config cfg;
  small_cnn(&cfg);
  ms_model m;
  int64_t in[3] = {2, 6, 6};
  assert_int_equal(model_plan(&m, &cfg, in, 3), 0);
  /* (2,6,6) -conv-> (3,6,6) -pool-> (3,3,3) -conv/2-> (4,2,2) -> ln -> (16) ... */
  assert_int_equal(m.layers[0].out_c, 3);
  assert_int_equal(m.layers[0].out_h, 6);
  assert_int_equal(m.layers[1].out_h, 3);
  assert_int_equal(m.layers[2].out_c, 4);
  assert_int_equal(m.layers[2].out_h, 2);
  assert_int_equal(m.layers[2].out_w, 2);
  assert_int_equal(m.layers[4].out_c, 16);
  assert_int_equal(m.layers[4].out_h, 1);
  assert_int_equal(m.n_out, 3);
  /* Parameters in layer order, weight before bias. */
  size_t expect = 3 * 2 * 9 + 3 + 4 * 3 * 9 + 4 + 16 + 16 + 5 * 16 + 5 + 3 * 5 + 3;
  assert_int_equal(m.n_params, expect);
  assert_int_equal(m.n_p, 10);
  size_t off = 0;
  for (int i = 0; i < m.n_p; i++) {
    assert_int_equal(m.p[i].off, off);
    off += m.p[i].len;
  }
  assert_string_equal(m.p[0].name, "layers.0.weight");
  assert_int_equal(m.p[0].ndim, 4);
  assert_int_equal(m.p[0].shape[1], 2);
  assert_string_equal(m.p[4].name, "layers.3.weight");
  assert_string_equal(m.p[9].name, "layers.7.bias");
  assert_true(fabs(model_flops_per_sample(&m) -
                   2.0 * (3 * 36 * 18 + 4 * 4 * 27 + 16 * 5 + 5 * 3)) < 1e-9);
}

static void test_model_plan_refuses_a_window_that_does_not_fit(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.model.layers[0] = conv(4, 5, 1, 0, MS_ACT_RELU);
  cfg.model.layers[1] = pool(MS_LAYER_MAXPOOL2D, 2);
  cfg.model.layers[2] = dense(2, MS_ACT_NONE);
  cfg.model.n_layers = 3;
  ms_model m;
  int64_t in[2] = {4, 4};
  assert_int_equal(model_plan(&m, &cfg, in, 2), MS_ECONFIG);
  assert_non_null(strstr(ms_error_msg(), "model.layers[0] (conv2d)"));
  assert_non_null(strstr(ms_error_msg(), "(1, 4, 4)"));
  int64_t ok[2] = {6, 6}; /* 5x5 -> 2x2 -> pool 1x1 */
  assert_int_equal(model_plan(&m, &cfg, ok, 2), 0);
  assert_int_equal(m.layers[1].out_h, 1);
  int64_t vec[1] = {36}; /* a vector is (36, 1, 1): no 5x5 window fits */
  assert_int_equal(model_plan(&m, &cfg, vec, 1), MS_ECONFIG);
}

static double loss_of(ms_model *m, const float *x, int B, const int32_t *y, const ms_pass *p) {
  return softmax_xent(NULL, model_forward(m, x, B, p), y, B, (int)m->n_out, 1.0f, NULL);
}

/* model_layout_hash is stored in every checkpoint and compared on resume,
 * so its value must not change: these are the values main computed before
 * the hashes were unified (the MLP's is in checkpoints of
 * configs/fashion_mnist_mlp.yaml). */
static void test_model_layout_hash_is_stable(void **state) {
  (void)state;
  ms_config cfg;
  small_cnn(&cfg);
  ms_model m;
  int64_t in[3] = {2, 6, 6};
  assert_int_equal(model_plan(&m, &cfg, in, 3), 0);
  assert_true(model_layout_hash(&m) == 0x45fbe8ba90ba2161ULL);
  memset(&cfg, 0, sizeof cfg);
  cfg.model.layers[0] = dense(256, MS_ACT_RELU);
  cfg.model.layers[1] = dense(256, MS_ACT_RELU);
  cfg.model.layers[2] = dense(10, MS_ACT_NONE);
  cfg.model.n_layers = 3;
  int64_t flat[1] = {784};
  assert_int_equal(model_plan(&m, &cfg, flat, 1), 0);
  assert_true(model_layout_hash(&m) == 0x2598c763e8db4b57ULL);
}

/* d(loss)/d(every parameter) against central differences, in a training
 * pass (dropout active with a fixed mask). Max pooling is piecewise linear:
 * where a +-eps step moves some window's maximum to another element, the
 * central difference straddles a kink and means nothing, so those
 * parameters are skipped (they must stay rare). */
static void test_model_cnn_gradcheck(void **state) {
  (void)state;
  ms_config cfg;
  small_cnn(&cfg);
  enum { B = 3 };
  int64_t in[3] = {2, 6, 6};
  ms_model *m = NULL;
  assert_int_equal(model_create(&m, &cfg, in, 3, B), 0);
  model_init(m, 5);
  for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.03f * (float)((int)(i % 7) - 3);
  float x[B * 72], dl[B * 3];
  int32_t y[B] = {0, 2, 1};
  uint64_t rows[B] = {11, 4, 907};
  ms_pass pass = {.seed = 9, .step = 3, .rows = rows};
  tu_fill(x, B * 72, 21);
  softmax_xent(dl, model_forward(m, x, B, &pass), y, B, 3, 1.0f, NULL);
  model_backward(m, dl, &pass, NULL, NULL);
  const ms_layer *pool = &m->layers[1];
  size_t n_arg = (size_t)B * (size_t)pool->out_elems;
  int32_t *arg = malloc(sizeof(int32_t) * n_arg);
  const float eps = 1e-3f;
  int skipped = 0;
  for (size_t i = 0; i < m->n_params; i++) {
    float keep = m->params[i];
    m->params[i] = keep + eps;
    double lp = loss_of(m, x, B, y, &pass);
    memcpy(arg, pool->argmax, sizeof(int32_t) * n_arg);
    m->params[i] = keep - eps;
    double lm = loss_of(m, x, B, y, &pass);
    m->params[i] = keep;
    if (memcmp(arg, pool->argmax, sizeof(int32_t) * n_arg) != 0) {
      assert_true(i < m->p[2].off); /* only layer 0 is upstream of the pooling */
      skipped++;
      continue;
    }
    tu_assert_close(m->grads[i], (lp - lm) / (2.0 * eps), 1e-2, 1e-3);
  }
  assert_true(skipped * 10 < (int)m->n_params); /* 11 of 304 here, all in layer 0 */
  free(arg);
  model_free(m);
}

typedef struct {
  size_t next_end; /* the end the next range must have */
  int calls;
  const float *grads, *ref; /* the arena, and its values after a backward without hook */
} ready_log;

/* Every range is adjacent to the previous one, and final when announced
 * (a dense layer announces before its input gradient's product). */
static void on_ready(void *ctx, size_t off, size_t len) {
  ready_log *r = ctx;
  assert_int_equal(off + len, r->next_end);
  assert_memory_equal(r->grads + off, r->ref + off, len * sizeof(float));
  r->next_end = off;
  r->calls++;
}

static void test_model_ready_ranges_cover_the_arena_backwards(void **state) {
  (void)state;
  ms_config cfg;
  small_cnn(&cfg);
  int64_t in[3] = {2, 6, 6};
  ms_model *m = NULL;
  assert_int_equal(model_create(&m, &cfg, in, 3, 2), 0);
  model_init(m, 1);
  float x[2 * 72], dl[2 * 3];
  tu_fill(x, 2 * 72, 3);
  model_forward(m, x, 2, NULL);
  tu_fill(dl, 6, 4);
  float *ref = malloc(sizeof(float) * m->n_params);
  assert_non_null(ref);
  model_backward(m, dl, NULL, NULL, NULL);
  memcpy(ref, m->grads, sizeof(float) * m->n_params);
  memset(m->grads, 0xff, sizeof(float) * m->n_params); /* NaNs until written */
  model_forward(m, x, 2, NULL);
  ready_log log = {.next_end = m->n_params, .grads = m->grads, .ref = ref};
  model_backward(m, dl, NULL, on_ready, &log);
  assert_int_equal(log.next_end, 0);
  assert_int_equal(log.calls, 5); /* two convs, layer norm, two dense */
  assert_memory_equal(m->grads, ref, sizeof(float) * m->n_params); /* the same bits */
  free(ref);
  model_free(m);
}

static void test_model_decay_mask_and_init(void **state) {
  (void)state;
  ms_config cfg;
  small_cnn(&cfg);
  cfg.model.layers[0].init = MS_INIT_HE_UNIFORM;
  cfg.model.layers[6].init = MS_INIT_XAVIER_UNIFORM;
  int64_t in[3] = {2, 6, 6};
  ms_model *m = NULL;
  assert_int_equal(model_create(&m, &cfg, in, 3, 1), 0);
  model_init(m, 77);
  uint8_t *mask = malloc(m->n_params);
  model_decay_mask(m, mask);
  for (int i = 0; i < m->n_p; i++) {
    const ms_param *p = &m->p[i];
    int weight = strstr(p->name, "weight") && strcmp(p->name, "layers.3.weight") != 0;
    for (size_t k = 0; k < p->len; k++) assert_int_equal(mask[p->off + k], weight);
  }
  free(mask);
  /* He uniform for conv 0: bound sqrt(6 / fan_in), fan_in = 2*3*3. */
  double bound = sqrt(6.0 / 18.0), mx = 0;
  for (size_t k = 0; k < m->p[0].len; k++) mx = fmax(mx, fabs(m->params[m->p[0].off + k]));
  assert_true(mx <= bound && mx > 0.8 * bound);
  /* Xavier uniform for dense 6: bound sqrt(6 / (16 + 5)). */
  bound = sqrt(6.0 / 21.0), mx = 0;
  for (size_t k = 0; k < m->p[6].len; k++) mx = fmax(mx, fabs(m->params[m->p[6].off + k]));
  assert_true(mx <= bound && mx > 0.7 * bound);
  /* Layer norm: gain one, bias zero; biases zero. */
  for (size_t k = 0; k < 16; k++) {
    assert_true(m->params[m->p[4].off + k] == 1.0f);
    assert_true(m->params[m->p[5].off + k] == 0.0f);
  }
  for (size_t k = 0; k < m->p[1].len; k++) assert_true(m->params[m->p[1].off + k] == 0.0f);
  model_free(m);
}

/* A batch computed whole or in two halves (as on two ranks, each passing
 * its samples' global indices) gives the same outputs, dropout included;
 * an inference pass skips dropout. */
static void test_model_dropout_independent_of_the_split(void **state) {
  (void)state;
  ms_config cfg;
  small_cnn(&cfg);
  cfg.model.layers[5].rate = 0.5;
  enum { B = 6 };
  int64_t in[3] = {2, 6, 6};
  ms_model *m = NULL;
  assert_int_equal(model_create(&m, &cfg, in, 3, B), 0);
  model_init(m, 2);
  float x[B * 72], whole[B * 3], parts[B * 3], infer[B * 3];
  uint8_t kept_whole[B * 16], kept_parts[B * 16];
  uint64_t rows[B] = {5, 1, 99, 12, 40, 7};
  tu_fill(x, B * 72, 8);
  ms_pass p = {.seed = 1, .step = 17, .rows = rows};
  memcpy(whole, model_forward(m, x, B, &p), sizeof whole);
  for (int k = 0; k < B * 16; k++) kept_whole[k] = m->layers[5].out[k] != 0.0f;
  for (int h = 0; h < 2; h++) {
    ms_pass ph = {.seed = 1, .step = 17, .rows = rows + 3 * h};
    memcpy(parts + 9 * h, model_forward(m, x + 3 * 72 * h, 3, &ph), sizeof(float) * 9);
    for (int k = 0; k < 3 * 16; k++) kept_parts[48 * h + k] = m->layers[5].out[k] != 0.0f;
  }
  /* The same elements dropped; the outputs equal up to the sgemm's rounding,
   * which may depend on how many samples share a call. */
  assert_memory_equal(kept_whole, kept_parts, sizeof kept_whole);
  int dropped = 0;
  for (int k = 0; k < B * 16; k++) dropped += !kept_whole[k];
  assert_true(dropped > 20 && dropped < 76); /* about half of 96 */
  for (int k = 0; k < B * 3; k++) tu_assert_close(whole[k], parts[k], 1e-5, 1e-6);
  memcpy(infer, model_forward(m, x, B, NULL), sizeof infer);
  assert_memory_not_equal(whole, infer, sizeof whole);
  p.step = 18; /* another step, another mask */
  assert_memory_not_equal(whole, model_forward(m, x, B, &p), sizeof whole);
  model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_plan_shapes_and_layout),
      cmocka_unit_test(test_model_plan_refuses_a_window_that_does_not_fit),
      cmocka_unit_test(test_model_layout_hash_is_stable),
      cmocka_unit_test(test_model_cnn_gradcheck),
      cmocka_unit_test(test_model_ready_ranges_cover_the_arena_backwards),
      cmocka_unit_test(test_model_decay_mask_and_init),
      cmocka_unit_test(test_model_dropout_independent_of_the_split),
  };
  return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
