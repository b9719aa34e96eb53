/* Unit tests of trainer/config: the items of model.layers (every type and
 * key, their rules, overrides, the diff of layer keys), losses, optimizers
 * and schedules. Serial. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "config_fixture.h"
#include "config_internal.h"
#include "ms_error.h"
#include "testutil.h"

/* ---- layer kinds, losses, optimizers, schedules ------------------------------ */

/* Every layer type and every new key, each set away from its default where
 * the type allows it. */
static const char every_layer[] =
    "data: {path: d.h5}\n"
    "model:\n"
    "  input: [1, 28, 28]\n"
    "  label_smoothing: 0.1\n"
    "  layers:\n"
    "    - {type: conv2d, filters: 8, kernel: 5, stride: 2, padding: 2, activation: leaky_relu,"
    " alpha: 0.2, init: he_uniform}\n"
    "    - {type: maxpool2d, kernel: 2}\n"
    "    - {type: avgpool2d, kernel: 3, stride: 1}\n"
    "    - {type: layernorm, eps: 1e-6, activation: gelu}\n"
    "    - {type: flatten}\n"
    "    - {type: dropout, rate: 0.25}\n"
    "    - {type: dense, units: 32, activation: tanh, init: xavier_uniform}\n"
    "    - {activation: softmax, type: activation}\n" /* type need not come first */
    "    - type: dense\n"
    "      units: 10\n"
    "      init: he_normal\n"
    "optim: {name: adamw, beta1: 0.8, beta2: 0.99, eps: 1e-7, decay_all: true}\n"
    "schedule: {name: onecycle, step_size: 50, gamma: 0.5, div_factor: 10,\n"
    "           final_div_factor: 100, pct_start: 0.25}\n"
    "train: {eval_top_k: 5}\n";

static void test_config_parse_every_layer_type_and_key(void **state) {
  (void)state;
  ms_config c;
  const ms_layer_cfg *l = c.model.layers;
  assert_int_equal(cfx_parse_text(&c, every_layer), 0);
  assert_int_equal(config_validate(&c, 1), 0);
  assert_int_equal(c.model.n_layers, 9);
  assert_int_equal(l[0].type, MS_LAYER_CONV2D);
  assert_int_equal(l[0].filters, 8);
  assert_int_equal(l[0].kernel, 5);
  assert_int_equal(l[0].stride, 2);
  assert_int_equal(l[0].padding, 2);
  assert_int_equal(l[0].activation, MS_ACT_LEAKY_RELU);
  assert_true(l[0].alpha == 0.2);
  assert_int_equal(l[0].init, MS_INIT_HE_UNIFORM);
  assert_int_equal(l[1].type, MS_LAYER_MAXPOOL2D);
  assert_int_equal(l[1].kernel, 2);
  assert_int_equal(l[1].stride, 0);
  assert_int_equal(l[2].type, MS_LAYER_AVGPOOL2D);
  assert_int_equal(l[2].stride, 1);
  assert_int_equal(l[3].type, MS_LAYER_LAYERNORM);
  assert_true(l[3].eps == 1e-6);
  assert_int_equal(l[3].activation, MS_ACT_GELU);
  assert_int_equal(l[4].type, MS_LAYER_FLATTEN);
  assert_int_equal(l[5].type, MS_LAYER_DROPOUT);
  assert_true(l[5].rate == 0.25);
  assert_int_equal(l[6].activation, MS_ACT_TANH);
  assert_int_equal(l[6].init, MS_INIT_XAVIER_UNIFORM);
  assert_int_equal(l[7].type, MS_LAYER_ACTIVATION);
  assert_int_equal(l[7].activation, MS_ACT_SOFTMAX);
  assert_int_equal(l[8].init, MS_INIT_HE_NORMAL);
  assert_true(l[8].alpha == 0.01);
  assert_true(l[8].eps == 1e-5);
  assert_true(c.model.label_smoothing == 0.1);
  assert_int_equal(c.optim.name, MS_OPTIM_ADAMW);
  assert_true(c.optim.beta1 == 0.8);
  assert_true(c.optim.beta2 == 0.99);
  assert_true(c.optim.eps == 1e-7);
  assert_int_equal(c.optim.decay_all, 1);
  assert_int_equal(c.schedule.name, MS_SCHED_ONECYCLE);
  assert_int_equal(c.schedule.step_size, 50);
  assert_true(c.schedule.gamma == 0.5);
  assert_true(c.schedule.div_factor == 10);
  assert_true(c.schedule.final_div_factor == 100);
  assert_true(c.schedule.pct_start == 0.25);
  assert_int_equal(c.train.eval_top_k, 5);
}

static void test_config_emit_round_trip_every_layer_type(void **state) {
  (void)state;
  ms_config *c = calloc(1, sizeof *c);
  assert_non_null(c);
  assert_int_equal(cfx_parse_text(c, every_layer), 0);
  cfx_assert_round_trip(c);
  /* Type first, then the keys of the type and nothing else; alpha only with
   * leaky_relu. */
  char *text = config_emit(c);
  assert_non_null(text);
  tu_assert_contains(
      text,
      "  layers:                             # the layer stack, input to logits\n"
      "    - {type: conv2d, filters: 8, kernel: 5, stride: 2, padding: 2, activation: "
      "leaky_relu, alpha: 0.2, init: he_uniform}\n"
      "    - {type: maxpool2d, kernel: 2, stride: 0}\n"
      "    - {type: avgpool2d, kernel: 3, stride: 1}\n"
      "    - {type: layernorm, eps: 1e-06, activation: gelu}\n"
      "    - {type: flatten}\n"
      "    - {type: dropout, rate: 0.25}\n"
      "    - {type: dense, units: 32, activation: tanh, init: xavier_uniform}\n"
      "    - {type: activation, activation: softmax}\n"
      "    - {type: dense, units: 10, activation: none, init: he_normal}\n"
      "  loss: softmax_cross_entropy ");
  tu_assert_contains(text, "\n  label_smoothing: 0.1 ");
  tu_assert_contains(text, "\n  name: adamw ");
  tu_assert_contains(text, "\n  beta2: 0.99 ");
  tu_assert_contains(text, "\n  eps: 1e-07 ");
  tu_assert_contains(text, "\n  decay_all: true ");
  tu_assert_contains(text, "\n  name: onecycle ");
  tu_assert_contains(text, "\n  final_div_factor: 100 ");
  tu_assert_contains(text, "\n  pct_start: 0.25 ");
  tu_assert_contains(text, "\n  eval_top_k: 5 ");
  free(text);
  /* Every loss, optimizer and schedule name reads back. */
  static const char *const sets[] = {"model.loss=bce_with_logits",
                                     "model.loss=mse",
                                     "model.loss=mae",
                                     "optim.name=adam",
                                     "optim.name=sgd",
                                     "schedule.name=step",
                                     "schedule.name=cosine",
                                     "schedule.name=constant"};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
    assert_int_equal(config_override(c, sets[i]), 0);
    cfx_assert_round_trip(c);
  }
  free(c);
}

/* The emitter writes a key that does not belong to the layer when it holds
 * something other than its default, so even an invalid layer reads back as
 * itself (validation then names the key). -0 is not the default 0. */
static void test_config_emit_round_trip_keys_of_another_type(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  c.model.n_layers = 3;
  cfx_dense_layer(&c.model.layers[0], 4, MS_ACT_RELU);
  c.model.layers[0].kernel = 3;
  c.model.layers[0].alpha = 0.5; /* not leaky_relu */
  cfx_make_layer(&c.model.layers[1], MS_LAYER_MAXPOOL2D);
  c.model.layers[1].kernel = 2;
  c.model.layers[1].rate = -0.0;
  cfx_make_layer(&c.model.layers[2], MS_LAYER_FLATTEN);
  c.model.layers[2].activation = MS_ACT_RELU;
  c.model.layers[2].eps = 1e-5; /* the default: not written */
  char *text = config_emit(&c);
  assert_non_null(text);
  tu_assert_contains(text,
                     "    - {type: dense, units: 4, kernel: 3, activation: relu, alpha: 0.5, "
                     "init: auto}\n");
  tu_assert_contains(text, "    - {type: maxpool2d, kernel: 2, stride: 0, rate: -0}\n");
  tu_assert_contains(text, "    - {type: flatten, activation: relu}\n");
  free(text);
  /* The file says what is wrong, at the key. */
  text = config_emit(&c);
  config_defaults(&c);
  assert_int_equal(config_parse(&c, text, strlen(text), "e.yaml"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.layers[0].kernel: not a key of a dense layer");
  tu_assert_contains(ms_error_msg(), "model.layers[1].rate: not a key of a maxpool2d layer");
  free(text);
}

static void test_config_error_layer_needs_its_keys(void **state) {
  (void)state;
  cfx_assert_parse_error("model:\n  layers:\n    - {type: conv2d, kernel: 3}\n",
                         "t.yaml:3:7: model.layers[0].filters: expected an integer >= 1, found "
                         "nothing (every conv2d layer needs filters)");
  cfx_assert_parse_error("model:\n  layers:\n    - {type: conv2d, filters: 3}\n",
                         "t.yaml:3:7: model.layers[0].kernel: expected an integer in [1, 65536], "
                         "found nothing (every conv2d layer needs kernel)");
  cfx_assert_parse_error("model:\n  layers:\n    - {type: avgpool2d}\n",
                         "model.layers[0].kernel: expected an integer in [1, 65536], found nothing "
                         "(every avgpool2d layer needs kernel)");
  cfx_assert_parse_error("model:\n  layers:\n    - {type: maxpool2d, kernel: 0}\n",
                         "t.yaml:3:33: model.layers[0].kernel: expected an integer in [1, 65536], "
                         "found 0");
  cfx_assert_parse_error(
      "model:\n  layers:\n    - type: activation\n",
      "t.yaml:3:7: model.layers[0].activation: expected one of relu, leaky_relu, "
      "gelu, tanh, sigmoid, softmax on an activation layer (it only applies its "
      "activation), found none");
  cfx_assert_parse_error("model:\n  layers: [{type: activation, activation: none}]\n",
                         "t.yaml:2:31: model.layers[0].activation: expected one of relu");
  /* Flatten and dropout need nothing. */
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, "model:\n  layers: [{type: flatten}, {type: dropout}]\n"), 0);
  assert_true(c.model.layers[1].rate == 0.0);
}

static void test_config_error_key_of_another_layer_type(void **state) {
  (void)state;
  cfx_assert_parse_error("model:\n  layers:\n    - {type: maxpool2d, kernel: 2, units: 4}\n",
                         "t.yaml:3:36: model.layers[0].units: not a key of a maxpool2d layer (it "
                         "keeps the channels); its keys: kernel, stride");
  cfx_assert_parse_error("model:\n  layers:\n    - {units: 4, filters: 3, kernel: 2}\n",
                         "model.layers[0].filters: not a key of a dense layer (it is fully "
                         "connected); its keys: units, activation, alpha, init");
  cfx_assert_parse_error("model:\n  layers:\n    - {units: 4, kernel: 2}\n",
                         "t.yaml:3:18: model.layers[0].kernel: not a key of a dense layer");
  cfx_assert_parse_error("model:\n  layers:\n    - {type: avgpool2d, kernel: 2, padding: 1}\n",
                         "model.layers[0].padding: not a key of a avgpool2d layer");
  cfx_assert_parse_error(
      "model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: 2, rate: 0.1}\n",
      "model.layers[0].rate: not a key of a conv2d layer (it is a 2-D convolution)");
  cfx_assert_parse_error("model:\n  layers:\n    - {units: 4, eps: 0.001}\n",
                         "model.layers[0].eps: not a key of a dense layer");
  cfx_assert_parse_error("model:\n  layers:\n    - {type: maxpool2d, kernel: 2, init: he_normal}\n",
                         "model.layers[0].init: not a key of a maxpool2d layer");
  cfx_assert_parse_error(
      "model:\n  layers:\n    - {type: flatten, stride: 1}\n",
      "model.layers[0].stride: not a key of a flatten layer (it only reshapes); it "
      "has no keys besides type");
  cfx_assert_parse_error("model:\n  layers:\n    - {type: dropout, rate: 0.5, activation: relu}\n",
                         "model.layers[0].activation: not a key of a dropout layer (it keeps the "
                         "shape); its keys: rate; add a layer {type: activation, activation: ...} "
                         "after it");
  cfx_assert_parse_error("model:\n  layers:\n    - {units: 4, activation: relu, alpha: 0.1}\n",
                         "t.yaml:3:36: model.layers[0].alpha: only used with activation leaky_relu "
                         "(its slope below 0), found activation relu");
  /* A key of another type that holds its default is no error. */
  ms_config c;
  assert_int_equal(cfx_parse_text(&c,
                                  "model:\n  layers: [{units: 4, stride: 0, alpha: 0.01, "
                                  "eps: 1e-5, rate: 0}]\n"),
                   0);
}

static void test_config_error_layer_ranges(void **state) {
  (void)state;
  cfx_assert_parse_error("model:\n  layers: [{type: dropout, rate: 1}]\n",
                         "t.yaml:2:34: model.layers[0].rate: expected a number in [0, 1), found 1");
  cfx_assert_parse_error("model:\n  layers: [{type: dropout, rate: -0.1}]\n",
                         "model.layers[0].rate: expected a number in [0, 1), found -0.1");
  cfx_assert_parse_error("model:\n  layers: [{type: layernorm, eps: 0}]\n",
                         "model.layers[0].eps: expected a number > 0, found 0");
  cfx_assert_parse_error("model:\n  layers: [{units: 2, activation: leaky_relu, alpha: -1}]\n",
                         "model.layers[0].alpha: expected a number >= 0, found -1");
  cfx_assert_parse_error("model:\n  layers: [{type: conv2d, filters: 1, kernel: 1, stride: -1}]\n",
                         "model.layers[0].stride: expected an integer in [0, 65536], found -1");
  cfx_assert_parse_error("model:\n  layers: [{type: conv2d, filters: 1, kernel: 1, padding: -1}]\n",
                         "model.layers[0].padding: expected an integer in [0, 65536], found -1");
  cfx_assert_parse_error("model:\n  layers: [{type: conv2d, filters: 0, kernel: 1}]\n",
                         "model.layers[0].filters: expected an integer >= 1, found 0");
  cfx_assert_parse_error("model:\n  layers: [{units: 2, init: glorot}]\n",
                         "model.layers[0].init: expected one of auto, he_normal, he_uniform, "
                         "xavier_normal, xavier_uniform, found 'glorot'");
  cfx_assert_parse_error("model:\n  label_smoothing: 1\n",
                         "model.label_smoothing: expected a number in [0, 1), found 1");
  cfx_assert_parse_error("optim:\n  beta2: 1\n",
                         "optim.beta2: expected a number in [0, 1), found 1");
  cfx_assert_parse_error("optim:\n  eps: 0\n", "optim.eps: expected a number > 0, found 0");
  cfx_assert_parse_error("optim:\n  decay_all: 1\n", "optim.decay_all: expected true or false");
  cfx_assert_parse_error("schedule:\n  step_size: 0\n",
                         "schedule.step_size: expected an integer >= 1, found 0");
  cfx_assert_parse_error("schedule:\n  gamma: 0\n", "schedule.gamma: expected a number in (0, 1]");
  cfx_assert_parse_error("schedule:\n  div_factor: 0.5\n",
                         "schedule.div_factor: expected a number >= 1, found 0.5");
  cfx_assert_parse_error("schedule:\n  pct_start: 1\n",
                         "schedule.pct_start: expected a number in (0, 1), found 1");
  cfx_assert_parse_error("train:\n  eval_top_k: -1\n",
                         "train.eval_top_k: expected an integer >= 0, found -1");
}

/* An unknown type leaves the other keys of the item unjudged: one message. */
static void test_config_error_unknown_layer_type(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, "model:\n  layers: [{type: maxpoll2d, kernel: 2}]\n"),
                   MS_ECONFIG);
  assert_string_equal(ms_error_msg(),
                      "t.yaml:2:19: model.layers[0].type: expected one of dense, conv2d, "
                      "maxpool2d, avgpool2d, flatten, dropout, layernorm, activation, embedding, "
                      "pos_embedding, attention, transformer_block, found 'maxpoll2d', did you "
                      "mean 'maxpool2d'?");
}

static void test_config_error_enum_suggests_nearest_value(void **state) {
  (void)state;
  ms_config c;
  cfx_assert_parse_error("optim:\n  name: adamm\n",
                         "t.yaml:2:9: optim.name: expected one of sgd, adam, adamw, found 'adamm', "
                         "did you mean 'adam'?");
  cfx_assert_parse_error("optim:\n  name: SGD\n", "found 'SGD', did you mean 'sgd'?");
  cfx_assert_parse_error("model:\n  loss: cross_entropy\n", "found 'cross_entropy'");
  cfx_assert_parse_error("model:\n  layers: [{units: 2, activation: Relu}]\n",
                         "found 'Relu', did you mean 'relu'?");
  config_defaults(&c);
  assert_int_equal(config_override(&c, "schedule.name=one_cycle"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "--set schedule.name=one_cycle: expected one of constant, "
                     "cosine, step, onecycle, found 'one_cycle', did you mean "
                     "'onecycle'?");
}

static void test_config_error_layer_unknown_key_suggests_new_keys(void **state) {
  (void)state;
  ms_config c;
  cfx_assert_parse_error(
      "model:\n  layers: [{type: conv2d, filter: 3, kernel: 3}]\n",
      "model.layers[0].filter: unknown key, did you mean 'model.layers[0].filters'?");
  cfx_assert_parse_error("model:\n  layers: [{type: conv2d, filters: 3, kernal: 3}]\n",
                         "did you mean 'model.layers[0].kernel'?");
  cfx_assert_parse_error(
      "model:\n  layers: [{type: dropout, probability: 0.5}]\n",
      "model.layers[0].probability: unknown key (model.layers[0] has: type, units, filters, "
      "kernel, stride, padding, rate, eps, activation, alpha, init, vocab, dim, heads, causal, "
      "hidden)");
  cfx_load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[0].strides=2"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "did you mean 'model.layers[0].stride'?");
  assert_int_equal(config_override(&c, "model.layers[0].initialisation=auto"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "did you mean 'model.layers[0].init'?");
}

/* The same rules in config_validate(), for what --set or code made: no
 * location, "found 0" for a needed key. */
static void test_config_validate_layer_rules(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  cfx_set_str(c.data.path, sizeof c.data.path, "d.h5");
  c.model.n_layers = 8;
  cfx_make_layer(&c.model.layers[0], MS_LAYER_CONV2D);
  c.model.layers[0].units = 5;
  cfx_make_layer(&c.model.layers[1], MS_LAYER_MAXPOOL2D);
  c.model.layers[1].stride = 2;
  cfx_make_layer(&c.model.layers[2], MS_LAYER_DROPOUT);
  c.model.layers[2].rate = 1.0;
  cfx_make_layer(&c.model.layers[3], MS_LAYER_LAYERNORM);
  c.model.layers[3].eps = 0;
  cfx_make_layer(&c.model.layers[4], MS_LAYER_ACTIVATION);
  cfx_dense_layer(&c.model.layers[5], 0, MS_ACT_RELU);
  c.model.layers[5].alpha = 0.2;
  cfx_dense_layer(&c.model.layers[6], 3, MS_ACT_NONE);
  c.model.layers[6].init = (ms_init)9;
  cfx_make_layer(&c.model.layers[7], (ms_layer_type)12);
  c.model.layers[7].units = 3;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  const char *m = ms_error_msg();
  tu_assert_contains(m,
                     "model.layers[0].units: not a key of a conv2d layer (it is a 2-D "
                     "convolution); its keys: filters, kernel, stride, padding, activation, "
                     "alpha, init\n");
  tu_assert_contains(m,
                     "model.layers[0].filters: expected an integer >= 1, found 0 (every conv2d "
                     "layer needs filters)\n");
  tu_assert_contains(m,
                     "model.layers[0].kernel: expected an integer in [1, 65536], found 0 "
                     "(every conv2d layer needs kernel)\n");
  tu_assert_contains(m,
                     "model.layers[1].kernel: expected an integer in [1, 65536], found 0 "
                     "(every maxpool2d layer needs kernel)\n");
  tu_assert_contains(m, "model.layers[2].rate: expected a number in [0, 1), found 1\n");
  tu_assert_contains(m, "model.layers[3].eps: expected a number > 0, found 0\n");
  tu_assert_contains(m,
                     "model.layers[4].activation: expected one of relu, leaky_relu, gelu, tanh, "
                     "sigmoid, softmax on an activation layer");
  tu_assert_contains(m,
                     "model.layers[5].units: expected an integer >= 1, found 0 (every dense "
                     "layer needs units)\n");
  tu_assert_contains(m,
                     "model.layers[5].alpha: only used with activation leaky_relu (its slope "
                     "below 0), found activation relu\n");
  tu_assert_contains(m,
                     "model.layers[6].init: expected one of auto, he_normal, he_uniform, "
                     "xavier_normal, xavier_uniform, found 9\n");
  tu_assert_contains(m,
                     "model.layers[7].type: expected one of dense, conv2d, maxpool2d, "
                     "avgpool2d, flatten, dropout, layernorm, activation, embedding, "
                     "pos_embedding, attention, transformer_block, found 12");
  assert_null(strstr(m, "model.layers[7].units")); /* an invalid type: nothing more to judge */
  int lines = 1;
  for (const char *p = m; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 11);
}

/* Losses that take logits refuse an activation on the last layer; mse and
 * mae take the outputs as they are. */
static void test_config_validate_last_activation_by_loss(void **state) {
  (void)state;
  static const struct {
    const char *loss;
    int ok;
  } cases[] = {{"softmax_cross_entropy", 0}, {"bce_with_logits", 0}, {"mse", 1}, {"mae", 1}};
  ms_config c;
  char set[64];
  cfx_load_good_full(&c);
  c.model.layers[2].activation = MS_ACT_SIGMOID;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(set, sizeof set, "model.loss=%s", cases[i].loss);
    assert_int_equal(config_override(&c, set), 0);
    assert_int_equal(config_validate(&c, 1), cases[i].ok ? 0 : MS_ECONFIG);
    if (!cases[i].ok) {
      snprintf(set, sizeof set, "(it produces the logits for %s), found sigmoid", cases[i].loss);
      tu_assert_contains(ms_error_msg(), set);
    }
  }
  /* The last layer may be of any type. */
  assert_int_equal(config_override(&c, "model.layers[3].type=dropout"), 0);
  assert_int_equal(config_validate(&c, 1), 0);
  assert_int_equal(config_override(&c, "model.layers[4].type=activation"), 0);
  assert_int_equal(config_override(&c, "model.layers[4].activation=softmax"), 0);
  assert_int_equal(config_validate(&c, 1), 0);
  assert_int_equal(config_override(&c, "model.loss=softmax_cross_entropy"), 0);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.layers[4].activation: expected none on the last layer");
}

static void test_config_validate_loss_options(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  c.model.label_smoothing = 0.1;
  c.train.eval_top_k = 10; /* the 10 classes of the last layer: fine */
  assert_int_equal(config_validate(&c, 1), 0);
  c.train.eval_top_k = 11;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "train.eval_top_k 11 is more than the 10 classes of the last "
                     "layer (model.layers[2].units)");
  c.train.eval_top_k = 3;
  assert_int_equal(config_override(&c, "model.loss=mse"), 0);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "model.label_smoothing: only softmax_cross_entropy smooths its "
                     "labels, found model.loss mse");
  tu_assert_contains(ms_error_msg(),
                     "train.eval_top_k: top-k accuracy needs classes (model.loss "
                     "softmax_cross_entropy), found model.loss mse");
  c.model.label_smoothing = 0;
  c.train.eval_top_k = 0;
  assert_int_equal(config_validate(&c, 1), 0);
}

static void test_config_override_layer_item_keys(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, every_layer), 0);
  assert_int_equal(config_override(&c, "model.layers[0].kernel=3"), 0);
  assert_int_equal(config_override(&c, "model.layers[0].stride=1"), 0);
  assert_int_equal(config_override(&c, "model.layers[0].padding=1"), 0);
  assert_int_equal(config_override(&c, "model.layers[0].filters=16"), 0);
  assert_int_equal(config_override(&c, "model.layers[0].alpha=0.1"), 0);
  assert_int_equal(config_override(&c, "model.layers[0].init=xavier_normal"), 0);
  assert_int_equal(config_override(&c, "model.layers[3].eps=0.001"), 0);
  assert_int_equal(config_override(&c, "model.layers[5].rate=0.5"), 0);
  assert_int_equal(config_override(&c, "optim.beta1=0.95"), 0);
  assert_int_equal(config_override(&c, "optim.decay_all=false"), 0);
  assert_int_equal(config_override(&c, "schedule.pct_start=0.1"), 0);
  assert_int_equal(config_override(&c, "train.eval_top_k=1"), 0);
  assert_int_equal(config_override(&c, "model.label_smoothing=0"), 0);
  const ms_layer_cfg *l = c.model.layers;
  assert_int_equal(l[0].kernel, 3);
  assert_int_equal(l[0].stride, 1);
  assert_int_equal(l[0].padding, 1);
  assert_int_equal(l[0].filters, 16);
  assert_true(l[0].alpha == 0.1);
  assert_int_equal(l[0].init, MS_INIT_XAVIER_NORMAL);
  assert_true(l[3].eps == 0.001);
  assert_true(l[5].rate == 0.5);
  assert_true(c.optim.beta1 == 0.95);
  assert_int_equal(c.optim.decay_all, 0);
  assert_true(c.schedule.pct_start == 0.1);
  assert_int_equal(c.train.eval_top_k, 1);
  assert_int_equal(config_validate(&c, 1), 0);
  cfx_assert_round_trip(&c);
  /* Values are checked as in the file; a failed --set changes nothing. */
  assert_int_equal(config_override(&c, "model.layers[5].rate=1"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "--set model.layers[5].rate=1: expected a number in [0, 1), found 1");
  assert_int_equal(config_override(&c, "model.layers[0].kernel=0"), MS_ECONFIG);
  assert_int_equal(config_override(&c, "model.layers[1].type=maxpool"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "found 'maxpool', did you mean 'maxpool2d'?");
  assert_int_equal(l[0].kernel, 3);
  assert_true(l[5].rate == 0.5);
  assert_int_equal(l[1].type, MS_LAYER_MAXPOOL2D);
}

/* Appending a conv layer: index n appends one from the item defaults, the
 * next --set edit it, and validation holds it to the rules of its type. */
static void test_config_override_append_conv_layer(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(
      cfx_parse_text(&c,
                     "data: {path: d.h5}\nmodel:\n  input: [1, 8, 8]\n  layers:\n"
                     "    - {type: conv2d, filters: 4, kernel: 3, activation: relu}\n"),
      0);
  assert_int_equal(config_override(&c, "model.layers[1].type=conv2d"), 0);
  assert_int_equal(c.model.n_layers, 2);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "model.layers[1].filters: expected an integer >= 1, found 0 "
                     "(every conv2d layer needs filters)");
  assert_int_equal(config_override(&c, "model.layers[1].filters=2"), 0);
  assert_int_equal(config_override(&c, "model.layers[1].kernel=5"), 0);
  assert_int_equal(config_override(&c, "model.layers[1].padding=2"), 0);
  assert_int_equal(c.model.n_layers, 2);
  assert_int_equal(config_override(&c, "model.layers[2].type=flatten"), 0);
  assert_int_equal(config_override(&c, "model.layers[3].units=10"), 0);
  assert_int_equal(c.model.n_layers, 4);
  assert_int_equal(config_validate(&c, 1), 0);
  ms_layer_cfg want;
  cfg_layer_defaults(&want);
  want.type = MS_LAYER_CONV2D;
  want.filters = 2;
  want.kernel = 5;
  want.padding = 2;
  assert_memory_equal(&c.model.layers[1], &want, sizeof want);
  assert_int_equal(c.model.layers[2].type, MS_LAYER_FLATTEN);
  assert_int_equal(c.model.layers[3].type, MS_LAYER_DENSE);
  cfx_assert_round_trip(&c);
  char *text = config_emit(&c);
  tu_assert_contains(text,
                     "    - {type: conv2d, filters: 2, kernel: 5, stride: 0, padding: 2, "
                     "activation: none, init: auto}\n    - {type: flatten}\n");
  free(text);
  /* Setting a key of another type on the appended layer is refused by
   * validation, not silently kept. */
  assert_int_equal(config_override(&c, "model.layers[4].kernel=5"), 0);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.layers[4].kernel: not a key of a dense layer");
}

/* A --set after which a key no longer belongs to the layer resets it. */
static void test_config_override_resets_keys_that_stop_applying(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[1].init=he_uniform"), 0);
  assert_int_equal(config_override(&c, "model.layers[1].type=maxpool2d"), 0);
  assert_int_equal(c.model.layers[1].units, 0);
  assert_int_equal(c.model.layers[1].activation, MS_ACT_NONE);
  assert_int_equal(c.model.layers[1].init, MS_INIT_AUTO);
  assert_int_equal(config_override(&c, "model.layers[1].kernel=2"), 0);
  assert_int_equal(config_validate(&c, 1), 0);
  /* Keys of both types stay. */
  assert_int_equal(config_override(&c, "model.layers[0].activation=leaky_relu"), 0);
  assert_int_equal(config_override(&c, "model.layers[0].alpha=0.3"), 0);
  assert_int_equal(config_override(&c, "model.layers[0].type=layernorm"), 0);
  assert_int_equal(c.model.layers[0].activation, MS_ACT_LEAKY_RELU);
  assert_true(c.model.layers[0].alpha == 0.3);
  assert_int_equal(c.model.layers[0].units, 0);
  /* alpha goes with leaky_relu. */
  assert_int_equal(config_override(&c, "model.layers[0].activation=relu"), 0);
  assert_true(c.model.layers[0].alpha == 0.01);
  assert_int_equal(config_validate(&c, 1), 0);
  cfx_assert_round_trip(&c);
}

static void test_config_diff_pinned_layer_items(void **state) {
  (void)state;
  ms_config a, b;
  char msg[512];
  assert_int_equal(cfx_parse_text(&a, every_layer), 0);
  b = a;
  /* The optimizer's coefficients, the schedule, smoothing and top-k may change. */
  b.optim.beta1 = 0.5;
  b.optim.beta2 = 0.9;
  b.optim.eps = 1e-6;
  b.optim.decay_all = 0;
  b.schedule.name = MS_SCHED_STEP;
  b.schedule.step_size = 7;
  b.schedule.gamma = 0.9;
  b.schedule.div_factor = 2;
  b.schedule.final_div_factor = 3;
  b.schedule.pct_start = 0.5;
  b.model.label_smoothing = 0;
  b.train.eval_top_k = 0;
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, sizeof msg), 0);
  assert_string_equal(msg, "");
  /* Every layer key is pinned, and so are the loss and the optimizer. */
  assert_int_equal(config_override(&b, "model.layers[0].kernel=3"), 0);
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, sizeof msg), 1);
  assert_string_equal(msg, "model.layers[0].kernel 5 → 3");
  b.model.layers[0].alpha = 0.3;
  b.model.layers[0].init = MS_INIT_AUTO;
  b.model.layers[1].type = MS_LAYER_AVGPOOL2D;
  b.model.layers[2].stride = 0;
  b.model.layers[3].eps = 1e-5;
  b.model.layers[5].rate = 0.5;
  b.model.loss = MS_LOSS_MSE;
  b.optim.name = MS_OPTIM_ADAM;
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, sizeof msg), 9);
  assert_string_equal(msg,
                      "model.layers[0].kernel 5 → 3; model.layers[0].alpha 0.2 → 0.3; "
                      "model.layers[0].init he_uniform → auto; model.layers[1].type maxpool2d → "
                      "avgpool2d; model.layers[2].stride 1 → 0; model.layers[3].eps 1e-06 → "
                      "1e-05; model.layers[5].rate 0.25 → 0.5; model.loss softmax_cross_entropy "
                      "→ mse; optim.name adamw → adam");
}

/* The rows of the layer table agree with themselves and with config.h. */
static void test_config_schema_layer_rows(void **state) {
  (void)state;
  ms_layer_cfg d;
  cfg_layer_defaults(&d);
  for (size_t j = 0; j < cfg_n_layer_keys; j++) {
    const key_spec *k = &cfg_layer_keys[j];
    assert_string_equal(cfg_layer_key_names[j], k->path);
    assert_int_equal(k->resume_safe, 0);
    if (!k->uses) fail_msg("model.layers[i].%s belongs to no layer type", k->path);
    if (k->needs & ~k->uses) fail_msg("model.layers[i].%s is needed where it is no key", k->path);
    /* A needed key has no usable default: that is how "missing" is told. */
    int needed = k->needs != 0, in_range = 1;
    if (k->type == K_INT) in_range = cfg_in_range(k, *(const int *)((const char *)&d + k->off));
    if (needed == in_range) fail_msg("model.layers[i].%s: default vs needs", k->path);
  }
  assert_int_equal(cfg_layer_keys[LAYER_UNITS].off, offsetof(ms_layer_cfg, units));
  assert_int_equal(cfg_layer_keys[LAYER_INIT].off, offsetof(ms_layer_cfg, init));
  assert_int_equal(cfg_layer_keys[LAYER_ALPHA].off, offsetof(ms_layer_cfg, alpha));
  char keys[160];
  cfg_layer_type_keys(MS_LAYER_LAYERNORM, keys, sizeof keys);
  assert_string_equal(keys, "eps, activation, alpha");
  cfg_layer_type_keys(MS_LAYER_FLATTEN, keys, sizeof keys);
  assert_string_equal(keys, "");
}

static void test_config_reference_documents_layer_items(void **state) {
  (void)state;
  char *md = config_reference();
  assert_non_null(md);
  tu_assert_contains(md,
                     "| `model.layers[i].kernel` | integer | (none) | required, [1, 65536] | no "
                     "| side of the square window; layer types: conv2d, maxpool2d, avgpool2d |");
  tu_assert_contains(md, "| `model.layers[i].alpha` | number | `0.01` | >= 0 | no |");
  tu_assert_contains(md, "| `model.layers[i].eps` | number | `1e-05` | > 0 | no |");
  tu_assert_contains(md,
                     "| `model.layers[i].init` | enum | `auto` | `auto`, `he_normal`, "
                     "`he_uniform`, `xavier_normal`, `xavier_uniform` | no |");
  tu_assert_contains(md, "### Layer types");
  tu_assert_contains(md,
                     "| `conv2d` | `filters` (required), `kernel` (required), `stride`, "
                     "`padding`, `activation`, `alpha`, `init` | 2-D convolution");
  tu_assert_contains(md, "| `maxpool2d` | `kernel` (required), `stride` | maximum of each");
  tu_assert_contains(md, "| `flatten` | (none) |");
  tu_assert_contains(md, "| `optim.name` | enum | `sgd` | `sgd`, `adam`, `adamw` | no |");
  tu_assert_contains(md, "| `optim.beta1` | number | `0.9` | [0, 1) | yes |");
  tu_assert_contains(md,
                     "| `optim.decay_all` | bool | `false` | `true`, `false` | yes | also apply "
                     "weight decay to biases and normalisation parameters; by default they are "
                     "excluded |");
  tu_assert_contains(md, "| `schedule.pct_start` | number | `0.3` | (0, 1) | yes |");
  tu_assert_contains(md, "| `schedule.gamma` | number | `0.1` | (0, 1] | yes |");
  tu_assert_contains(md,
                     "| `model.loss` | enum | `softmax_cross_entropy` | `softmax_cross_entropy`, "
                     "`bce_with_logits`, `mse`, `mae` | no |");
  tu_assert_contains(md, "| `model.label_smoothing` | number | `0` | [0, 1) | yes |");
  tu_assert_contains(md, "| `train.eval_top_k` | integer | `0` | >= 0 | yes |");
  free(md);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_parse_every_layer_type_and_key),
      cmocka_unit_test(test_config_emit_round_trip_every_layer_type),
      cmocka_unit_test(test_config_emit_round_trip_keys_of_another_type),
      cmocka_unit_test(test_config_error_layer_needs_its_keys),
      cmocka_unit_test(test_config_error_key_of_another_layer_type),
      cmocka_unit_test(test_config_error_layer_ranges),
      cmocka_unit_test(test_config_error_unknown_layer_type),
      cmocka_unit_test(test_config_error_enum_suggests_nearest_value),
      cmocka_unit_test(test_config_error_layer_unknown_key_suggests_new_keys),
      cmocka_unit_test(test_config_validate_layer_rules),
      cmocka_unit_test(test_config_validate_last_activation_by_loss),
      cmocka_unit_test(test_config_validate_loss_options),
      cmocka_unit_test(test_config_override_layer_item_keys),
      cmocka_unit_test(test_config_override_append_conv_layer),
      cmocka_unit_test(test_config_override_resets_keys_that_stop_applying),
      cmocka_unit_test(test_config_diff_pinned_layer_items),
      cmocka_unit_test(test_config_schema_layer_rows),
      cmocka_unit_test(test_config_reference_documents_layer_items),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
