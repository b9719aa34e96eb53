/* Unit tests of trainer/config: defaults, good files, `--set` overrides,
 * validation, reading files. Errors of the text: test_config_errors.c;
 * layer items: test_config_layers.c; the schema and its writers:
 * test_config_schema.c. Serial. */
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

/* ---- defaults and good files ---------------------------------------------- */

static void test_config_defaults(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_string_equal(c.run.name, "run");
  assert_string_equal(c.run.dir, "runs/run");
  assert_true(c.run.seed == 0);
  assert_int_equal(c.run.threads, 0);
  assert_string_equal(c.data.path, "");
  assert_string_equal(c.data.train_x, "/train/images");
  assert_string_equal(c.data.train_y, "/train/labels");
  assert_string_equal(c.data.test_x, "/test/images");
  assert_string_equal(c.data.test_y, "/test/labels");
  assert_true(c.data.scale == 1.0);
  assert_int_equal(c.model.n_layers, 0);
  assert_int_equal(c.model.loss, MS_LOSS_XENT);
  assert_int_equal(c.optim.name, MS_OPTIM_SGD);
  assert_true(c.optim.lr == 0.01);
  assert_true(c.optim.momentum == 0.9);
  assert_true(c.optim.weight_decay == 0.0);
  assert_int_equal(c.optim.nesterov, 0);
  assert_int_equal(c.schedule.name, MS_SCHED_CONSTANT);
  assert_int_equal(c.schedule.warmup_steps, 0);
  assert_true(c.schedule.min_lr_ratio == 0.0);
  assert_int_equal(c.train.epochs, 1);
  assert_int_equal(c.train.batch_size, 64);
  assert_int_equal(c.train.eval_batch_size, 1000);
  assert_int_equal(c.train.max_steps, 0);
  assert_string_equal(c.checkpoint.dir, "");
  assert_int_equal(c.checkpoint.every_steps, 0);
  assert_int_equal(c.checkpoint.keep, 3);
  assert_int_equal(c.checkpoint.level, 3);
  assert_true(c.comm.timeout_s == 300.0);
  assert_int_equal(c.log.every_steps, 50);
  assert_int_equal(c.log.progress, 1);
  /* Keys of the layer kinds, losses, optimizers and schedules. */
  assert_true(c.model.label_smoothing == 0.0);
  assert_true(c.optim.beta1 == 0.9);
  assert_true(c.optim.beta2 == 0.999);
  assert_true(c.optim.eps == 1e-8);
  assert_int_equal(c.optim.decay_all, 0);
  assert_int_equal(c.schedule.step_size, 1000);
  assert_true(c.schedule.gamma == 0.1);
  assert_true(c.schedule.div_factor == 25.0);
  assert_true(c.schedule.final_div_factor == 1e4);
  assert_true(c.schedule.pct_start == 0.3);
  assert_int_equal(c.train.eval_top_k, 0);
}

static void test_config_defaults_of_layer_items(void **state) {
  (void)state;
  ms_config c;
  ms_layer_cfg want;
  cfg_layer_defaults(&want);
  assert_int_equal(want.type, MS_LAYER_DENSE);
  assert_int_equal(want.units, 0);
  assert_int_equal(want.filters, 0);
  assert_int_equal(want.kernel, 0);
  assert_int_equal(want.stride, 0);
  assert_int_equal(want.padding, 0);
  assert_int_equal(want.activation, MS_ACT_NONE);
  assert_true(want.alpha == 0.01);
  assert_true(want.rate == 0.0);
  assert_true(want.eps == 1e-5);
  assert_int_equal(want.init, MS_INIT_AUTO);
  /* A parsed item starts from them: only units is given here. */
  assert_int_equal(cfx_parse_text(&c, cfx_minimal), 0);
  want.units = 10;
  assert_memory_equal(&c.model.layers[0], &want, sizeof want);
  /* So does a layer that --set appends. */
  assert_int_equal(config_override(&c, "model.layers[1].type=dropout"), 0);
  cfg_layer_defaults(&want);
  want.type = MS_LAYER_DROPOUT;
  assert_memory_equal(&c.model.layers[1], &want, sizeof want);
}

static void test_config_defaults_need_data_path_and_layers(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "data.path is required");
  tu_assert_contains(ms_error_msg(), "model.layers is required");
}

static void test_config_parse_good_full(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  assert_string_equal(c.run.name, "fashion_mnist_mlp");
  assert_string_equal(c.run.dir, "runs/fashion_mnist_mlp");
  assert_true(c.run.seed == 42);
  assert_string_equal(c.data.path, "data-cache/fashion_mnist.h5");
  assert_string_equal(c.data.test_y, "/test/labels");
  assert_true(c.data.scale == 0.00392156862745098);
  assert_int_equal(c.model.n_layers, 3);
  assert_int_equal(c.model.layers[0].type, MS_LAYER_DENSE);
  assert_int_equal(c.model.layers[0].units, 256);
  assert_int_equal(c.model.layers[0].activation, MS_ACT_RELU);
  assert_int_equal(c.model.layers[1].units, 256);
  assert_int_equal(c.model.layers[2].units, 10);
  assert_int_equal(c.model.layers[2].activation, MS_ACT_NONE);
  assert_true(c.optim.lr == 0.05);
  assert_true(c.optim.momentum == 0.9);
  assert_int_equal(c.optim.nesterov, 0);
  assert_int_equal(c.schedule.name, MS_SCHED_COSINE);
  assert_int_equal(c.schedule.warmup_steps, 100);
  assert_int_equal(c.train.epochs, 15);
  assert_int_equal(c.train.batch_size, 128);
  assert_string_equal(c.checkpoint.dir, "");
  assert_true(c.comm.timeout_s == 300.0);
  assert_int_equal(c.log.progress, 1);
  assert_int_equal(config_validate(&c, 1), 0);
  assert_int_equal(config_validate(&c, 4), 0);
}

static void test_config_parse_omitted_keys_keep_defaults(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, "optim:\n  lr: 0.5\nlog:\ntrain: {epochs: 3}\n"), 0);
  assert_true(c.optim.lr == 0.5);
  assert_true(c.optim.momentum == 0.9);
  assert_int_equal(c.train.epochs, 3);
  assert_int_equal(c.train.batch_size, 64);
  assert_int_equal(c.log.every_steps, 50);
  assert_string_equal(c.run.name, "run");
}

static void test_config_parse_empty_test_x_means_no_eval(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(cfx_parse_text(&c,
                                  "data:\n  path: d.h5\n  test_x: \"\"\n  test_y:\n"
                                  "model:\n  layers: [{units: 3}]\n"),
                   0);
  assert_string_equal(c.data.test_x, "");
  assert_string_equal(c.data.test_y, "");
  assert_int_equal(config_validate(&c, 1), 0);
}

static void test_config_parse_text_need_not_be_nul_terminated(void **state) {
  (void)state;
  ms_config c;
  const char text[] = "train:\n  epochs: 7xyz";
  config_defaults(&c);
  assert_int_equal(config_parse(&c, text, strlen(text) - 3, "t.yaml"), 0);
  assert_int_equal(c.train.epochs, 7);
}

static void test_config_parse_layers_replace_previous(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  assert_int_equal(config_parse(&c, cfx_minimal, strlen(cfx_minimal), "t.yaml"), 0);
  assert_int_equal(c.model.n_layers, 1);
  assert_int_equal(c.model.layers[0].units, 10);
  assert_int_equal(c.model.layers[1].units, 0);
}

/* ---- overrides ---------------------------------------------------------------- */

static void test_config_override_scalar(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_override(&c, "optim.lr=0.1"), 0);
  assert_true(c.optim.lr == 0.1);
  assert_int_equal(config_override(&c, "train.batch_size=256"), 0);
  assert_int_equal(c.train.batch_size, 256);
  assert_int_equal(config_override(&c, "optim.nesterov=true"), 0);
  assert_int_equal(c.optim.nesterov, 1);
  assert_int_equal(config_override(&c, "run.seed=18446744073709551615"), 0);
  assert_true(c.run.seed == UINT64_MAX);
  assert_int_equal(config_override(&c, "schedule.name=cosine"), 0);
  assert_int_equal(c.schedule.name, MS_SCHED_COSINE);
}

static void test_config_override_quoted_string(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_override(&c, "run.name=\"my run: #2\""), 0);
  assert_string_equal(c.run.name, "my run: #2");
  assert_int_equal(config_override(&c, "data.test_x=''"), 0);
  assert_string_equal(c.data.test_x, "");
  assert_int_equal(config_override(&c, "data.path=a=b.h5"), 0);
  assert_string_equal(c.data.path, "a=b.h5");
}

static void test_config_override_layer_item(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[1].units=512"), 0);
  assert_int_equal(c.model.layers[1].units, 512);
  assert_int_equal(config_override(&c, "model.layers[0].activation=none"), 0);
  assert_int_equal(c.model.layers[0].activation, MS_ACT_NONE);
  assert_int_equal(c.model.n_layers, 3);
}

static void test_config_override_append_layer(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[2].activation=relu"), 0);
  assert_int_equal(config_override(&c, "model.layers[3].units=5"), 0);
  assert_int_equal(c.model.n_layers, 4);
  assert_int_equal(c.model.layers[3].units, 5);
  assert_int_equal(c.model.layers[3].activation, MS_ACT_NONE);
  assert_int_equal(c.model.layers[3].type, MS_LAYER_DENSE);
  assert_int_equal(config_validate(&c, 1), 0);
}

static void test_config_override_bad_value(void **state) {
  (void)state;
  ms_config c, before;
  config_defaults(&c);
  config_defaults(&before);
  assert_int_equal(config_override(&c, "optim.lr=abc"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "--set optim.lr=abc: expected a number, found 'abc'");
  assert_int_equal(config_override(&c, "optim.lr=20"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "--set optim.lr=20: expected a number in (0, 10], found 20");
  assert_int_equal(config_override(&c, "log.progress=yes"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "--set log.progress=yes: expected true or false, found 'yes'");
  assert_int_equal(config_override(&c, "train.epochs=[1, 2]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "--set train.epochs=[1, 2]: expected a single value, found a list");
  assert_int_equal(config_override(&c, "train.epochs='3"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "--set train.epochs='3: expected a YAML scalar value, found a syntax error");
  assert_int_equal(config_override(&c, "train.epochs="), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "--set train.epochs=: expected an integer, found nothing");
  assert_memory_equal(&c, &before, sizeof c);
}

static void test_config_override_unknown_key(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_override(&c, "optim.momentom=0.5"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "--set optim.momentom=0.5: unknown key 'optim.momentom', did you mean "
                     "'optim.momentum'?");
  assert_int_equal(config_override(&c, "lr=0.5"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "did you mean 'optim.lr'?");
  assert_int_equal(config_override(&c, "nothing.like.it=1"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "--set nothing.like.it=1: unknown key 'nothing.like.it'");
}

static void test_config_override_bad_layer_syntax(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[5].units=3"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "--set model.layers[5].units=3: expected a layer index in [0, 3] (3 layers; "
                     "index 3 appends one), found 5");
  assert_int_equal(config_override(&c, "model.layers[x].units=3"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "expected model.layers[INDEX].KEY=value");
  assert_int_equal(config_override(&c, "model.layers=3"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "expected model.layers[INDEX].KEY=value");
  assert_int_equal(config_override(&c, "model.layers[0].unit=3"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "did you mean 'model.layers[0].units'?");
  assert_int_equal(config_override(&c, "model.layers[0].activation=swish"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "expected one of none, relu, leaky_relu, gelu, tanh, sigmoid, softmax, found "
                     "'swish'");
  assert_int_equal(c.model.n_layers, 3);
}

static void test_config_override_missing_equals(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_override(&c, "optim.lr"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "--set optim.lr: expected section.key=value");
  assert_int_equal(config_override(&c, "=1"), MS_ECONFIG);
}

/* ---- validate ---------------------------------------------------------------- */

static void test_config_validate_minimal_ok(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, cfx_minimal), 0);
  assert_int_equal(config_validate(&c, 1), 0);
  assert_int_equal(config_validate(&c, 64), 0);
}

static void test_config_validate_batch_divisible_by_world(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, cfx_minimal), 0);
  c.train.batch_size = 100;
  assert_int_equal(config_validate(&c, 4), 0);
  assert_int_equal(config_validate(&c, 3), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "train.batch_size 100 is not divisible by the world size 3: the global batch "
                     "is split evenly across ranks");
  assert_int_equal(config_validate(&c, 0), MS_ECONFIG);
}

static void test_config_validate_last_layer_activation(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  c.model.layers[2].activation = MS_ACT_RELU;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "model.layers[2].activation: expected none on the last layer "
                     "(it produces the logits for softmax_cross_entropy), found relu");
}

static void test_config_validate_required_keys(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  c.data.path[0] = '\0';
  c.data.train_y[0] = '\0';
  c.data.test_y[0] = '\0';
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "data.path is required");
  tu_assert_contains(ms_error_msg(), "data.train_y is required");
  tu_assert_contains(ms_error_msg(), "data.test_y is required when data.test_x is set");
  c.model.n_layers = 0;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.layers is required: expected 1 to 32 layers, found 0");
}

static void test_config_validate_ranges(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  c.optim.lr = -1;
  c.checkpoint.level = 30;
  c.comm.timeout_s = 0;
  c.schedule.name = (ms_schedule_kind)7;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  const char *m = ms_error_msg();
  tu_assert_contains(m, "optim.lr: expected a number in (0, 10], found -1");
  tu_assert_contains(m, "checkpoint.level: expected an integer in [1, 19], found 30");
  tu_assert_contains(m, "comm.timeout_s: expected a number > 0, found 0");
  tu_assert_contains(m, "schedule.name: expected one of constant, cosine, step, onecycle, found 7");
}

static void test_config_validate_appended_layer_needs_units(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[3].activation=none"), 0);
  assert_int_equal(config_override(&c, "model.layers[2].activation=relu"), 0);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.layers[3].units: expected an integer >= 1, found 0");
}

static void test_config_validate_warmup_within_max_steps(void **state) {
  (void)state;
  ms_config c;
  cfx_load_good_full(&c);
  c.train.max_steps = 50;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "schedule.warmup_steps 100 is not less than train.max_steps 50");
  c.train.max_steps = 0;
  assert_int_equal(config_validate(&c, 1), 0);
}

static void test_config_validate_reports_all_problems(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  c.train.batch_size = 10;
  c.log.every_steps = 0;
  assert_int_equal(config_validate(&c, 3), MS_ECONFIG);
  const char *m = ms_error_msg();
  tu_assert_contains(m, "data.path is required");
  tu_assert_contains(m, "model.layers is required");
  tu_assert_contains(m, "log.every_steps: expected an integer >= 1, found 0");
  tu_assert_contains(m, "train.batch_size 10 is not divisible by the world size 3");
}

/* ---- files ------------------------------------------------------------------- */

static void test_config_read_file_missing(void **state) {
  (void)state;
  char *text = (char *)1;
  size_t len = 7;
  assert_int_equal(config_read_file("/nonexistent/x.yaml", &text, &len), MS_EUSAGE);
  assert_string_equal(ms_error_msg(),
                      "cannot read config '/nonexistent/x.yaml': No such file or directory");
  assert_null(text);
}

static void test_config_read_file_directory(void **state) {
  (void)state;
  char *text;
  size_t len;
  assert_int_equal(config_read_file(CFX_BAD_DIR, &text, &len), MS_EUSAGE);
  tu_assert_contains(ms_error_msg(), "cannot read config '");
}

static void test_config_read_file_whole(void **state) {
  (void)state;
  size_t len;
  char *text = cfx_read_all(CFX_GOOD_FULL, &len);
  assert_true(len > 500);
  assert_int_equal(strlen(text), len);
  assert_true(text[len - 1] == '\n');
  free(text);
}

/* A group of keys inside a section (train.early_stop) is a nested mapping
 * in the file, in --set paths and in the resolved config. */
static void test_config_parse_key_group(void **state) {
  (void)state;
  ms_config c;
  char text[512];
  snprintf(text, sizeof text,
           "%strain:\n  early_stop: {metric: acc, patience: 5}\n"
           "log: {trace_steps: [3, 7]}\n",
           cfx_minimal);
  assert_int_equal(cfx_parse_text(&c, text), 0);
  assert_int_equal(c.train.early_stop.metric, MS_ES_ACC);
  assert_int_equal(c.train.early_stop.mode, MS_ES_AUTO);
  assert_int_equal(c.train.early_stop.patience, 5);
  assert_int_equal(c.log.trace_steps.ndim, 2);
  assert_int_equal(c.log.trace_steps.dims[1], 7);
  assert_int_equal(config_override(&c, "train.early_stop.min_delta=0.25"), 0);
  assert_true(c.train.early_stop.min_delta == 0.25);
  assert_int_equal(config_validate(&c, 1), 0);
  cfx_assert_round_trip(&c);
  char *yaml = config_emit(&c);
  assert_non_null(yaml);
  tu_assert_contains(yaml, "\n  early_stop:\n    metric: acc ");
  tu_assert_contains(yaml, "\n    min_delta: 0.25 ");
  free(yaml);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_defaults_need_data_path_and_layers),
      cmocka_unit_test(test_config_parse_good_full),
      cmocka_unit_test(test_config_parse_omitted_keys_keep_defaults),
      cmocka_unit_test(test_config_parse_empty_test_x_means_no_eval),
      cmocka_unit_test(test_config_parse_text_need_not_be_nul_terminated),
      cmocka_unit_test(test_config_parse_layers_replace_previous),
      cmocka_unit_test(test_config_parse_key_group),
      cmocka_unit_test(test_config_override_scalar),
      cmocka_unit_test(test_config_override_quoted_string),
      cmocka_unit_test(test_config_override_layer_item),
      cmocka_unit_test(test_config_override_append_layer),
      cmocka_unit_test(test_config_override_bad_value),
      cmocka_unit_test(test_config_override_unknown_key),
      cmocka_unit_test(test_config_override_bad_layer_syntax),
      cmocka_unit_test(test_config_override_missing_equals),
      cmocka_unit_test(test_config_validate_minimal_ok),
      cmocka_unit_test(test_config_validate_batch_divisible_by_world),
      cmocka_unit_test(test_config_validate_last_layer_activation),
      cmocka_unit_test(test_config_validate_required_keys),
      cmocka_unit_test(test_config_validate_ranges),
      cmocka_unit_test(test_config_validate_appended_layer_needs_units),
      cmocka_unit_test(test_config_validate_warmup_within_max_steps),
      cmocka_unit_test(test_config_validate_reports_all_problems),
      cmocka_unit_test(test_config_read_file_missing),
      cmocka_unit_test(test_config_read_file_directory),
      cmocka_unit_test(test_config_read_file_whole),
      cmocka_unit_test(test_config_defaults_of_layer_items),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
