/* Unit tests of trainer/config: defaults, parsing, errors, overrides,
 * validation, emission, and the corpus of bad configs in tests/configs/bad. */
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
#include "config_internal.h"
#include "ms_error.h"
#include "testutil.h"

#define GOOD_FULL MS_SOURCE_DIR "/tests/configs/good_full.yaml"
#define BAD_DIR MS_SOURCE_DIR "/tests/configs/bad"

/* The smallest config that validates. */
static const char minimal[] =
    "data:\n"
    "  path: d.h5\n"
    "model:\n"
    "  layers:\n"
    "    - {type: dense, units: 10}\n";


static int parse_text(ms_config *cfg, const char *text) {
  config_defaults(cfg);
  return config_parse(cfg, text, strlen(text), "t.yaml");
}

/* Asserts that parsing `text` fails with `sub` in the message. */
#define assert_parse_error(text, sub)                      \
  do {                                                     \
    ms_config c_;                                          \
    ms_error_clear();                                      \
    assert_int_equal(parse_text(&c_, (text)), MS_ECONFIG); \
    tu_assert_contains(ms_error_msg(), (sub));                \
  } while (0)

static char *read_all(const char *path, size_t *len) {
  char *text = NULL;
  int rc = config_read_file(path, &text, len);
  if (rc) fail_msg("%s", ms_error_msg());
  return text;
}

static void load_good_full(ms_config *cfg) {
  size_t len;
  char *text = read_all(GOOD_FULL, &len);
  config_defaults(cfg);
  assert_int_equal(config_parse(cfg, text, len, "good_full.yaml"), 0);
  free(text);
}

/* Emits cfg, parses the text back onto fresh defaults, compares bytewise. */
static void assert_round_trip(const ms_config *cfg) {
  ms_config *back = calloc(1, sizeof *back);
  char *text = config_emit(cfg);
  assert_non_null(back);
  assert_non_null(text);
  config_defaults(back);
  if (config_parse(back, text, strlen(text), "emitted.yaml"))
    fail_msg("emitted text does not parse:\n%s\n--\n%s", ms_error_msg(), text);
  assert_memory_equal(cfg, back, sizeof *cfg);
  free(text);
  free(back);
}

/* A layer of the given type with the item defaults, padding bytes zeroed
 * (round trips compare bytewise). */
static ms_layer_cfg make_layer(ms_layer_type type) {
  ms_layer_cfg l;
  cfg_layer_defaults(&l);
  l.type = type;
  return l;
}

static ms_layer_cfg dense_layer(int units, ms_activation act) {
  ms_layer_cfg l = make_layer(MS_LAYER_DENSE);
  l.units = units;
  l.activation = act;
  return l;
}

static void set_str(char *field, size_t size, const char *value) {
  memset(field, 0, size);
  snprintf(field, size, "%s", value);
}

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
  assert_int_equal(parse_text(&c, minimal), 0);
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
  load_good_full(&c);
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
  assert_int_equal(parse_text(&c, "optim:\n  lr: 0.5\nlog:\ntrain: {epochs: 3}\n"), 0);
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
  assert_int_equal(parse_text(&c,
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
  load_good_full(&c);
  assert_int_equal(config_parse(&c, minimal, strlen(minimal), "t.yaml"), 0);
  assert_int_equal(c.model.n_layers, 1);
  assert_int_equal(c.model.layers[0].units, 10);
  assert_int_equal(c.model.layers[1].units, 0);
}

/* ---- emit ------------------------------------------------------------------- */

static void test_config_emit_round_trip_good_full(void **state) {
  (void)state;
  ms_config *c = calloc(1, sizeof *c);
  assert_non_null(c);
  load_good_full(c);
  assert_round_trip(c);
  free(c);
}

static void test_config_emit_round_trip_defaults(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_round_trip(&c);
}

static void test_config_emit_round_trip_awkward_values(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  /* Parsing zero-fills a string field past its NUL; do the same here. */
  set_str(c.run.name, sizeof c.run.name, "a \"quoted\" name: with # and \\ and\ttab\nline");
  set_str(c.run.dir, sizeof c.run.dir, "null");
  set_str(c.data.path, sizeof c.data.path, "-dash/caf\xc3\xa9.h5");
  set_str(c.data.train_x, sizeof c.data.train_x, "true");
  set_str(c.data.train_y, sizeof c.data.train_y, "~");
  set_str(c.data.test_x, sizeof c.data.test_x, "123");
  set_str(c.data.test_y, sizeof c.data.test_y, "");
  set_str(c.checkpoint.dir, sizeof c.checkpoint.dir, "x\x01\x7f y");
  c.run.seed = UINT64_MAX;
  c.data.scale = 1.0 / 255.0;
  c.optim.lr = 0.1 + 0.2;
  c.optim.momentum = 0.99999999999999989;
  c.comm.timeout_s = 1e-300;
  c.optim.nesterov = 1;
  c.log.progress = 0;
  c.train.max_steps = INT_MAX;
  c.model.n_layers = 2;
  c.model.layers[0] = dense_layer(7, MS_ACT_RELU);
  c.model.layers[1] = dense_layer(3, MS_ACT_NONE);
  assert_round_trip(&c);
}

/* Found by tests/fuzz/fuzz_config.c: a C1 control character (here U+008A,
 * from the escape \x8a) was written raw into the emitted double-quoted
 * string, which libyaml then refused, so the resolved config did not parse
 * back. Every non-printable code point must be escaped. */
static void test_config_emit_round_trip_non_printable_code_points(void **state) {
  (void)state;
  static const char fuzz_input[] =
      "run: {name: \"a\\tb\\x8atio: 0.0\n\n  a2r00\n\n  falset60\", seed: 1800}\nmodel:";
  static const char *const names[] = {
      "\xc2\x8a", /* U+008A */
      "\xc2\x85", /* U+0085 NEL, a line break to YAML */
      "\xc2\x80-\xc2\x9f",
      "x\xe2\x80\xa8y",                            /* U+2028 */
      "\xe2\x80\xa9",                              /* U+2029 */
      "\xef\xbb\xbf",                              /* U+FEFF */
      "\xef\xbf\xbe\xef\xbf\xbf",                  /* U+FFFE U+FFFF */
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", /* printable: stays raw */
  };
  ms_config c;
  assert_int_equal(parse_text(&c, fuzz_input), 0);
  assert_round_trip(&c);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    config_defaults(&c);
    set_str(c.run.name, sizeof c.run.name, names[i]);
    assert_round_trip(&c);
  }
  char *text = config_emit(&c);
  tu_assert_contains(text, "name: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  free(text);
}

static void test_config_emit_lists_every_key(void **state) {
  (void)state;
  ms_config c;
  static const char *const lines[] = {"run:\n",
                                      "  name: run",
                                      "  dir: runs/run",
                                      "  seed: 0",
                                      "  threads: 0",
                                      "data:\n",
                                      "  path: \"\"",
                                      "  train_x: /train/images",
                                      "  scale: 1",
                                      "model:\n",
                                      "  layers: []",
                                      "  loss: softmax_cross_entropy",
                                      "  label_smoothing: 0",
                                      "optim:\n",
                                      "  lr: 0.01",
                                      "  momentum: 0.9",
                                      "  weight_decay: 0",
                                      "  nesterov: false",
                                      "  beta1: 0.9",
                                      "  beta2: 0.999",
                                      "  eps: 1e-08",
                                      "  decay_all: false",
                                      "schedule:\n",
                                      "  name: constant",
                                      "  warmup_steps: 0",
                                      "  min_lr_ratio: 0",
                                      "  step_size: 1000",
                                      "  gamma: 0.1",
                                      "  div_factor: 25",
                                      "  final_div_factor: 10000",
                                      "  pct_start: 0.3",
                                      "train:\n",
                                      "  epochs: 1",
                                      "  batch_size: 64",
                                      "  eval_batch_size: 1000",
                                      "  max_steps: 0",
                                      "  eval_top_k: 0",
                                      "checkpoint:\n",
                                      "  dir: \"\"",
                                      "  every_steps: 0",
                                      "  keep: 3",
                                      "  level: 3",
                                      "comm:\n",
                                      "  timeout_s: 300",
                                      "log:\n",
                                      "  every_steps: 50",
                                      "  progress: true"};
  config_defaults(&c);
  char *text = config_emit(&c);
  assert_non_null(text);
  const char *at = text;
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
    const char *hit = strstr(at, lines[i]);
    if (!hit) fail_msg("'%s' missing or out of order in:\n%s", lines[i], text);
    at = hit;
  }
  free(text);
}

static void test_config_emit_layers_as_flow_mappings(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
  char *text = config_emit(&c);
  assert_non_null(text);
  tu_assert_contains(text, "  layers:");
  tu_assert_contains(text, "\n    - {type: dense, units: 256, activation: relu, init: auto}\n");
  tu_assert_contains(text, "\n    - {type: dense, units: 10, activation: none, init: auto}\n");
  free(text);
}

/* ---- errors: one kind per test ---------------------------------------------- */

static void test_config_error_syntax(void **state) {
  (void)state;
  assert_parse_error("data:\n  path: d.h5\n  scale: [1.0\nmodel:\n",
                     "t.yaml:4:6: YAML syntax error: did not find expected ',' or ']' "
                     "(while parsing a flow sequence at line 3)");
}

static void test_config_error_empty_file(void **state) {
  (void)state;
  assert_parse_error("", "t.yaml:1:1: expected a mapping of sections");
  assert_parse_error("# only a comment\n\n", "found an empty document");
}

static void test_config_error_top_level_not_mapping(void **state) {
  (void)state;
  assert_parse_error("just text\n",
                     "t.yaml:1:1: expected a mapping of sections (run, data, "
                     "model, optim, ...) at the top level, found 'just text'");
  assert_parse_error("- run\n", "at the top level, found a list");
}

static void test_config_error_section_not_mapping(void **state) {
  (void)state;
  assert_parse_error("optim: fast\n",
                     "t.yaml:1:8: optim: expected a mapping of keys, found 'fast'");
}

static void test_config_error_unknown_key_suggests_nearest(void **state) {
  (void)state;
  assert_parse_error("optim:\n  lr: 0.1\n  momentom: 0.5\n",
                     "t.yaml:3:3: optim.momentom: unknown key, did you mean 'optim.momentum'?");
}

static void test_config_error_unknown_key_in_wrong_section(void **state) {
  (void)state;
  assert_parse_error("train:\n  lr: 0.1\n",
                     "t.yaml:2:3: train.lr: unknown key, did you mean 'optim.lr'?");
}

static void test_config_error_unknown_key_far_from_all(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(parse_text(&c, "log:\n  colour_scheme: dark\n"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                  "t.yaml:2:3: log.colour_scheme: unknown key (log has: every_steps, progress)");
  assert_null(strstr(ms_error_msg(), "did you mean"));
}

static void test_config_error_unknown_section_suggests_nearest(void **state) {
  (void)state;
  assert_parse_error("optimizer:\n  lr: 0.1\n",
                     "t.yaml:1:1: optimizer: unknown section, did you mean 'optim'?");
  assert_parse_error("lr: 0.1\n", "t.yaml:1:1: lr: unknown section, did you mean 'optim.lr'?");
  assert_parse_error("zzzzzzzz: 1\n", "zzzzzzzz: unknown section (expected one of run, data");
}

static void test_config_error_duplicate_key(void **state) {
  (void)state;
  assert_parse_error("optim:\n  lr: 0.1\n  lr: 0.2\n",
                     "t.yaml:3:3: optim.lr: duplicate key (first set at line 2)");
  assert_parse_error("log: {}\nlog: {}\n", "t.yaml:2:1: log: duplicate section (first at line 1)");
  assert_parse_error("model:\n  layers: [{units: 1, units: 2}]\n",
                     "t.yaml:2:23: model.layers[0].units: duplicate key (first set at line 2)");
}

static void test_config_error_string_where_int_expected(void **state) {
  (void)state;
  assert_parse_error("train:\n  epochs: ten\n",
                     "t.yaml:2:11: train.epochs: expected an integer, found 'ten'");
}

static void test_config_error_fraction_where_int_expected(void **state) {
  (void)state;
  assert_parse_error("train:\n  epochs: 1.5\n",
                     "t.yaml:2:11: train.epochs: expected an integer, found '1.5'");
  assert_parse_error("train:\n  epochs: 1e3\n", "expected an integer, found '1e3'");
}

static void test_config_error_quoted_number(void **state) {
  (void)state;
  assert_parse_error("optim:\n  lr: '0.1'\n",
                     "optim.lr: expected a number, found the quoted string '0.1'");
}

static void test_config_error_missing_value(void **state) {
  (void)state;
  assert_parse_error("optim:\n  lr:\n", "t.yaml:2:6: optim.lr: expected a number, found nothing");
}

static void test_config_error_list_where_scalar_expected(void **state) {
  (void)state;
  assert_parse_error("optim:\n  lr: [0.1]\n",
                     "t.yaml:2:7: optim.lr: expected a single value, found a list");
}

static void test_config_error_bool_rejects_yes(void **state) {
  (void)state;
  assert_parse_error("log:\n  progress: yes\n",
                     "t.yaml:2:13: log.progress: expected true or false, found 'yes'");
  assert_parse_error("optim:\n  nesterov: 1\n", "expected true or false, found '1'");
  assert_parse_error("optim:\n  nesterov: True\n", "expected true or false, found 'True'");
}

static void test_config_error_out_of_range(void **state) {
  (void)state;
  assert_parse_error("optim:\n  lr: 0\n",
                     "t.yaml:2:7: optim.lr: expected a number in (0, 10], found 0");
  assert_parse_error("optim:\n  momentum: 1.0\n",
                     "optim.momentum: expected a number in [0, 1), found 1.0");
  assert_parse_error("train:\n  batch_size: 0\n",
                     "train.batch_size: expected an integer in [1, 16777216], found 0");
  assert_parse_error("log:\n  every_steps: -5\n",
                     "log.every_steps: expected an integer >= 1, found -5");
  assert_parse_error("data:\n  scale: -1\n", "data.scale: expected a number > 0, found -1");
}

static void test_config_error_integer_overflow(void **state) {
  (void)state;
  assert_parse_error(
      "train:\n  epochs: 99999999999999999999\n",
      "train.epochs: expected an integer in [1, 100000], found 99999999999999999999");
  assert_parse_error("run:\n  seed: 18446744073709551616\n",
                     "run.seed: expected an integer in [0, 18446744073709551615], found "
                     "18446744073709551616");
  assert_parse_error("run:\n  seed: -1\n", "run.seed: expected an unsigned integer, found '-1'");
}

static void test_config_error_double_rejects_nan_inf(void **state) {
  (void)state;
  assert_parse_error("optim:\n  lr: nan\n", "optim.lr: expected a finite number, found 'nan'");
  assert_parse_error("optim:\n  lr: 1e999\n", "optim.lr: expected a finite number, found '1e999'");
  assert_parse_error("optim:\n  lr: -inf\n", "optim.lr: expected a finite number, found '-inf'");
  assert_parse_error("optim:\n  lr: .inf\n", "optim.lr: expected a number, found '.inf'");
  assert_parse_error("optim:\n  lr: 1e-400\n", "which is too small for a double");
}

static void test_config_error_enum_not_allowed(void **state) {
  (void)state;
  assert_parse_error("schedule:\n  name: linear\n",
                     "t.yaml:2:9: schedule.name: expected one of constant, cosine, step, onecycle, "
                     "found 'linear'");
  assert_parse_error("optim:\n  name: rmsprop\n",
                     "optim.name: expected one of sgd, adam, adamw, found 'rmsprop'");
  assert_parse_error("model:\n  layers: [{units: 3, activation: swish}]\n",
                     "model.layers[0].activation: expected one of none, relu, leaky_relu, gelu, "
                     "tanh, sigmoid, softmax, found 'swish'");
  ms_config c;
  assert_int_equal(parse_text(&c, "schedule:\n  name: linear\n"), MS_ECONFIG);
  assert_null(strstr(ms_error_msg(), "did you mean")); /* nothing close to suggest */
}

static void test_config_error_string_too_long(void **state) {
  (void)state;
  char text[600];
  int n = snprintf(text, sizeof text, "run:\n  name: ");
  memset(text + n, 'x', 256);
  strcpy(text + n + 256, "\n");
  assert_parse_error(text,
                     "t.yaml:2:9: run.name: expected a string of at most 255 bytes, "
                     "found 256 bytes");
  memset(text + n, 'x', 255);
  strcpy(text + n + 255, "\n");
  ms_config c;
  assert_int_equal(parse_text(&c, text), 0);
  assert_int_equal(strlen(c.run.name), 255);
}

static void test_config_error_layers_not_a_list(void **state) {
  (void)state;
  assert_parse_error("model:\n  layers: 3\n",
                     "t.yaml:2:11: model.layers: expected a list of layers, found '3'");
}

static void test_config_error_layer_not_mapping(void **state) {
  (void)state;
  assert_parse_error("model:\n  layers:\n    - dense\n",
                     "t.yaml:3:7: model.layers[0]: expected a mapping like {type: dense, units: "
                     "10, activation: relu}, found 'dense'");
}

static void test_config_error_layer_missing_units(void **state) {
  (void)state;
  assert_parse_error(
      "model:\n  layers:\n    - {units: 4, activation: relu}\n"
      "    - {type: dense}\n",
      "t.yaml:4:7: model.layers[1].units: expected an integer >= 1, found nothing "
      "(every dense layer needs units)");
}

static void test_config_error_layer_unknown_key(void **state) {
  (void)state;
  assert_parse_error("model:\n  layers: [{unit: 3}]\n",
                     "t.yaml:2:13: model.layers[0].unit: unknown key, did you mean "
                     "'model.layers[0].units'?");
}

static void test_config_error_too_many_layers(void **state) {
  (void)state;
  char text[1024];
  size_t n = (size_t)snprintf(text, sizeof text, "model:\n  layers: [");
  for (int i = 0; i < MS_MAX_LAYERS + 1; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "{units: 1},");
  snprintf(text + n, sizeof text - n, "]\n");
  assert_parse_error(text, "model.layers: expected at most 32 layers, found 33");
}

static void test_config_error_non_utf8(void **state) {
  (void)state;
  assert_parse_error("run:\n  name: caf\xe9\n",
                     "t.yaml:2:12: expected UTF-8 text, found bytes that are not valid UTF-8");
  assert_parse_error("run:\n  name: \xff\xfe\n", "save the file as UTF-8");
}

static void test_config_error_second_document(void **state) {
  (void)state;
  assert_parse_error("log: {}\n---\nrun: {}\n",
                     "t.yaml:3:1: expected one YAML document, found a second one");
}

static void test_config_error_reports_all_problems(void **state) {
  (void)state;
  ms_config c;
  static const char text[] =
      "run:\n"
      "  nmae: x\n" /* 2: unknown key */
      "optim:\n"
      "  lr: abc\n"     /* 4: wrong type */
      "  momentum: 2\n" /* 5: range */
      "schedule:\n"
      "  name: linear\n" /* 7: enum */
      "train:\n"
      "  epochs: 2\n"
      "  epochs: 3\n" /* 10: duplicate */
      "model:\n"
      "  layers:\n"
      "    - {type: dense}\n" /* 13: missing units */
      "logs: {}\n";           /* 14: unknown section */
  assert_int_equal(parse_text(&c, text), MS_ECONFIG);
  const char *m = ms_error_msg();
  tu_assert_contains(m, "t.yaml:2:3: run.nmae: unknown key, did you mean 'run.name'?\n");
  tu_assert_contains(m, "t.yaml:4:7: optim.lr: expected a number, found 'abc'\n");
  tu_assert_contains(m, "t.yaml:5:13: optim.momentum: expected a number in [0, 1), found 2\n");
  tu_assert_contains(m,
                  "t.yaml:7:9: schedule.name: expected one of constant, cosine, step, onecycle, "
                  "found 'linear'\n");
  tu_assert_contains(m, "t.yaml:10:3: train.epochs: duplicate key (first set at line 9)\n");
  tu_assert_contains(m, "t.yaml:13:7: model.layers[0].units: expected an integer >= 1");
  tu_assert_contains(m, "t.yaml:14:1: logs: unknown section, did you mean 'log'?");
  /* One problem per line, no trailing newline. */
  int lines = 1;
  for (const char *p = m; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 7);
}

static void test_config_error_leaves_config_unchanged(void **state) {
  (void)state;
  ms_config before, after;
  config_defaults(&before);
  config_defaults(&after);
  const char text[] = "optim:\n  lr: 0.5\ntrain:\n  epochs: zero\n";
  assert_int_equal(config_parse(&after, text, strlen(text), "t.yaml"), MS_ECONFIG);
  assert_memory_equal(&before, &after, sizeof before);
}

static void test_config_error_many_problems_are_capped(void **state) {
  (void)state;
  char text[4096];
  size_t n = (size_t)snprintf(text, sizeof text, "optim:\n");
  for (int i = 0; i < 40; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "  bogus%d: 1\n", i);
  assert_parse_error(text, "(20 more problems not shown)");
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
  load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[1].units=512"), 0);
  assert_int_equal(c.model.layers[1].units, 512);
  assert_int_equal(config_override(&c, "model.layers[0].activation=none"), 0);
  assert_int_equal(c.model.layers[0].activation, MS_ACT_NONE);
  assert_int_equal(c.model.n_layers, 3);
}

static void test_config_override_append_layer(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
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
  load_good_full(&c);
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
  assert_int_equal(parse_text(&c, minimal), 0);
  assert_int_equal(config_validate(&c, 1), 0);
  assert_int_equal(config_validate(&c, 64), 0);
}

static void test_config_validate_batch_divisible_by_world(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(parse_text(&c, minimal), 0);
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
  load_good_full(&c);
  c.model.layers[2].activation = MS_ACT_RELU;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                  "model.layers[2].activation: expected none on the last layer "
                  "(it produces the logits for softmax_cross_entropy), found relu");
}

static void test_config_validate_required_keys(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
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
  load_good_full(&c);
  c.optim.lr = -1;
  c.checkpoint.level = 30;
  c.comm.timeout_s = 0;
  c.schedule.name = (ms_schedule_kind)7;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  const char *m = ms_error_msg();
  tu_assert_contains(m, "optim.lr: expected a number in (0, 10], found -1");
  tu_assert_contains(m, "checkpoint.level: expected an integer in [1, 19], found 30");
  tu_assert_contains(m, "comm.timeout_s: expected a number > 0, found 0");
  tu_assert_contains(
      m, "schedule.name: expected one of constant, cosine, step, onecycle, found 7");
}

static void test_config_validate_appended_layer_needs_units(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[3].activation=none"), 0);
  assert_int_equal(config_override(&c, "model.layers[2].activation=relu"), 0);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.layers[3].units: expected an integer >= 1, found 0");
}

static void test_config_validate_warmup_within_max_steps(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
  c.train.max_steps = 50;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "schedule.warmup_steps 100 is not less than train.max_steps 50");
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

/* ---- schema, model.input, cross-field checks, resume diff, reference -------- */

static void test_config_schema_rows_have_descriptions(void **state) {
  (void)state;
  for (size_t i = 0; i < cfg_n_keys; i++)
    if (!cfg_keys[i].doc || !cfg_keys[i].doc[0])
      fail_msg("%s has no description", cfg_keys[i].path);
  for (size_t i = 0; i < cfg_n_layer_keys; i++)
    if (!cfg_layer_keys[i].doc || !cfg_layer_keys[i].doc[0])
      fail_msg("model.layers[i].%s has no description", cfg_layer_keys[i].path);
}

static void test_config_input_parse_emit_override(void **state) {
  (void)state;
  ms_config c;
  char *text;
  assert_int_equal(parse_text(&c,
                              "data: {path: d.h5}\nmodel:\n  input: [28, 28]\n  layers:\n"
                              "    - {units: 10}\n"),
                   0);
  assert_int_equal(c.model.input.ndim, 2);
  assert_int_equal(c.model.input.dims[1], 28);
  assert_int_equal(config_input_features(&c), 784);
  text = config_emit(&c);
  tu_assert_contains(text, "\n  input: [28, 28] ");
  free(text);
  assert_round_trip(&c);
  assert_int_equal(config_override(&c, "model.input=[784]"), 0);
  assert_int_equal(c.model.input.ndim, 1);
  assert_int_equal(config_override(&c, "model.input=[]"), 0);
  assert_int_equal(c.model.input.ndim, 0);
  assert_int_equal(config_input_features(&c), 0);
  assert_int_equal(config_override(&c, "model.input=[3, 32, 32]"), 0);
  assert_int_equal(config_override(&c, "model.input="), 0);
  assert_int_equal(c.model.input.ndim, 0);
  assert_round_trip(&c);
  assert_int_equal(config_override(&c, "model.input=[2, x]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                  "--set model.input=[2, x]: item 1: expected an integer, found 'x'");
  assert_int_equal(config_override(&c, "model.input=[[2]]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "item 0: expected an integer, found a list");
}

static void test_config_data_mean_std_lists(void **state) {
  (void)state;
  ms_config c;
  char *text;
  assert_int_equal(parse_text(&c,
                              "data: {path: d.h5, mean: [0.1, 0.2, -3], std: [0.25],\n"
                              "       check_finite: true}\n"
                              "model:\n  layers:\n    - {units: 10}\n"),
                   0);
  assert_int_equal(c.data.mean.n, 3);
  assert_true(c.data.mean.v[0] == 0.1f && c.data.mean.v[2] == -3.0f);
  assert_int_equal(c.data.std.n, 1);
  assert_true(c.data.std.v[0] == 0.25f);
  assert_int_equal(c.data.check_finite, 1);
  text = config_emit(&c);
  tu_assert_contains(text, "\n  mean: [0.1, 0.2, -3] ");
  tu_assert_contains(text, "\n  std: [0.25] ");
  free(text);
  assert_round_trip(&c);
  assert_int_equal(config_override(&c, "data.std=[0.5, 2]"), 0);
  assert_int_equal(c.data.std.n, 2);
  assert_int_equal(config_override(&c, "data.mean=[]"), 0);
  assert_int_equal(c.data.mean.n, 0);
  assert_round_trip(&c);
  assert_int_equal(config_override(&c, "data.std=[1, 0]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "--set data.std=[1, 0]: item 1: expected a number > 0, found 0");
  assert_int_equal(config_override(&c, "data.mean=[x]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "item 0: expected a number, found 'x'");
  assert_int_equal(config_override(&c, "data.mean=[1e39]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "item 0: 1e+39 does not fit a float");
  assert_parse_error("data: {path: d.h5, mean: 0.5}\n",
                     "data.mean: expected a list of numbers like [0.5] or [0.49, 0.48, 0.45], "
                     "found '0.5'");
  assert_parse_error("data: {path: d.h5, std: [nan]}\n", "data.std: item 0: expected a finite");
}

static void test_config_check_input_names_both_shapes(void **state) {
  (void)state;
  ms_config c;
  uint64_t shape[2] = {28, 28}, flat[1] = {784}, other[1] = {32};
  config_defaults(&c);
  assert_int_equal(config_check_input(&c, other, 1, "'d.h5' /x"), 0); /* [] takes the data's */
  assert_int_equal(config_override(&c, "model.input=[28, 28]"), 0);
  assert_int_equal(config_check_input(&c, shape, 2, "'d.h5' /x"), 0);
  assert_int_equal(config_check_input(&c, flat, 1, "'d.h5' /x"), 0); /* flattened sizes agree */
  assert_int_equal(config_check_input(&c, other, 1, "'d.h5' /x"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                  "model.input [28, 28] (784 features) does not match the samples "
                  "of 'd.h5' /x, of shape [32] (32 features)");
}

static void test_config_check_steps_warmup_within_run(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  c.schedule.warmup_steps = 30;
  assert_int_equal(config_check_steps(&c, 31), 0);
  assert_int_equal(config_check_steps(&c, 30), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "schedule.warmup_steps 30 is not less than the 30 steps");
  c.schedule.warmup_steps = 0;
  assert_int_equal(config_check_steps(&c, 1), 0);
}

static void test_config_diff_pinned_names_every_pinned_key(void **state) {
  (void)state;
  ms_config a, b;
  char msg[512];
  load_good_full(&a);
  b = a;
  /* Resume-safe keys may change. */
  b.train.epochs = 99;
  b.optim.lr = 0.5;
  b.train.max_steps = 7;
  b.log.every_steps = 3;
  b.checkpoint.keep = 9;
  b.train.eval_batch_size = 10;
  set_str(b.run.dir, sizeof b.run.dir, "elsewhere");
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, sizeof msg), 0);
  assert_string_equal(msg, "");
  b.model.layers[0].units = 40;
  b.run.seed = 8;
  b.train.batch_size = 256;
  set_str(b.data.train_x, sizeof b.data.train_x, "/other");
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, sizeof msg), 4);
  assert_string_equal(msg,
                      "run.seed 42 → 8; data.train_x /train/images → /other; "
                      "model.layers[0].units 256 → 40; train.batch_size 128 → 256");
  b = a;
  b.model.n_layers = 2;
  b.model.layers[1].activation = MS_ACT_NONE;
  b.data.scale = 1;
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, sizeof msg), 3);
  tu_assert_contains(msg,
                  "data.scale 0.00392156862745098 → 1; model.layers 3 layers → 2 layers; "
                  "model.layers[1].activation relu → none");
  /* A short buffer is cut, not overrun. */
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, 20), 3);
  assert_true(strlen(msg) < 20);
  tu_assert_contains(msg, "...");
}

static void test_config_reference_lists_every_key(void **state) {
  (void)state;
  char *md = config_reference(), row[128];
  assert_non_null(md);
  for (size_t i = 0; i < cfg_n_keys; i++) {
    snprintf(row, sizeof row, "| `%s` | ", cfg_keys[i].path);
    tu_assert_contains(md, row);
  }
  tu_assert_contains(md, "| `model.layers[i].units` | integer | (none) | required, >= 1 | no |");
  tu_assert_contains(md, "| `optim.lr` | number | `0.01` | (0, 10] | yes | peak learning rate |");
  tu_assert_contains(md, "| `run.seed` | unsigned 64-bit integer | `0` |");
  free(md);
}

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
  assert_int_equal(parse_text(&c, every_layer), 0);
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
  assert_int_equal(parse_text(c, every_layer), 0);
  assert_round_trip(c);
  /* Type first, then the keys of the type and nothing else; alpha only with
   * leaky_relu. */
  char *text = config_emit(c);
  assert_non_null(text);
  tu_assert_contains(text,
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
    assert_round_trip(c);
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
  c.model.layers[0] = dense_layer(4, MS_ACT_RELU);
  c.model.layers[0].kernel = 3;
  c.model.layers[0].alpha = 0.5; /* not leaky_relu */
  c.model.layers[1] = make_layer(MS_LAYER_MAXPOOL2D);
  c.model.layers[1].kernel = 2;
  c.model.layers[1].rate = -0.0;
  c.model.layers[2] = make_layer(MS_LAYER_FLATTEN);
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
  assert_parse_error("model:\n  layers:\n    - {type: conv2d, kernel: 3}\n",
                     "t.yaml:3:7: model.layers[0].filters: expected an integer >= 1, found "
                     "nothing (every conv2d layer needs filters)");
  assert_parse_error("model:\n  layers:\n    - {type: conv2d, filters: 3}\n",
                     "t.yaml:3:7: model.layers[0].kernel: expected an integer in [1, 65536], "
                     "found nothing (every conv2d layer needs kernel)");
  assert_parse_error("model:\n  layers:\n    - {type: avgpool2d}\n",
                     "model.layers[0].kernel: expected an integer in [1, 65536], found nothing "
                     "(every avgpool2d layer needs kernel)");
  assert_parse_error("model:\n  layers:\n    - {type: maxpool2d, kernel: 0}\n",
                     "t.yaml:3:33: model.layers[0].kernel: expected an integer in [1, 65536], "
                     "found 0");
  assert_parse_error("model:\n  layers:\n    - type: activation\n",
                     "t.yaml:3:7: model.layers[0].activation: expected one of relu, leaky_relu, "
                     "gelu, tanh, sigmoid, softmax on an activation layer (it only applies its "
                     "activation), found none");
  assert_parse_error("model:\n  layers: [{type: activation, activation: none}]\n",
                     "t.yaml:2:31: model.layers[0].activation: expected one of relu");
  /* Flatten and dropout need nothing. */
  ms_config c;
  assert_int_equal(parse_text(&c, "model:\n  layers: [{type: flatten}, {type: dropout}]\n"), 0);
  assert_true(c.model.layers[1].rate == 0.0);
}

static void test_config_error_key_of_another_layer_type(void **state) {
  (void)state;
  assert_parse_error("model:\n  layers:\n    - {type: maxpool2d, kernel: 2, units: 4}\n",
                     "t.yaml:3:36: model.layers[0].units: not a key of a maxpool2d layer (it "
                     "keeps the channels); its keys: kernel, stride");
  assert_parse_error("model:\n  layers:\n    - {units: 4, filters: 3, kernel: 2}\n",
                     "model.layers[0].filters: not a key of a dense layer (it is fully "
                     "connected); its keys: units, activation, alpha, init");
  assert_parse_error("model:\n  layers:\n    - {units: 4, kernel: 2}\n",
                     "t.yaml:3:18: model.layers[0].kernel: not a key of a dense layer");
  assert_parse_error("model:\n  layers:\n    - {type: avgpool2d, kernel: 2, padding: 1}\n",
                     "model.layers[0].padding: not a key of a avgpool2d layer");
  assert_parse_error("model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: 2, rate: 0.1}\n",
                     "model.layers[0].rate: not a key of a conv2d layer (it is a 2-D convolution)");
  assert_parse_error("model:\n  layers:\n    - {units: 4, eps: 0.001}\n",
                     "model.layers[0].eps: not a key of a dense layer");
  assert_parse_error("model:\n  layers:\n    - {type: maxpool2d, kernel: 2, init: he_normal}\n",
                     "model.layers[0].init: not a key of a maxpool2d layer");
  assert_parse_error("model:\n  layers:\n    - {type: flatten, stride: 1}\n",
                     "model.layers[0].stride: not a key of a flatten layer (it only reshapes); it "
                     "has no keys besides type");
  assert_parse_error("model:\n  layers:\n    - {type: dropout, rate: 0.5, activation: relu}\n",
                     "model.layers[0].activation: not a key of a dropout layer (it keeps the "
                     "shape); its keys: rate; add a layer {type: activation, activation: ...} "
                     "after it");
  assert_parse_error("model:\n  layers:\n    - {units: 4, activation: relu, alpha: 0.1}\n",
                     "t.yaml:3:36: model.layers[0].alpha: only used with activation leaky_relu "
                     "(its slope below 0), found activation relu");
  /* A key of another type that holds its default is no error. */
  ms_config c;
  assert_int_equal(parse_text(&c,
                              "model:\n  layers: [{units: 4, stride: 0, alpha: 0.01, "
                              "eps: 1e-5, rate: 0}]\n"),
                   0);
}

static void test_config_error_layer_ranges(void **state) {
  (void)state;
  assert_parse_error("model:\n  layers: [{type: dropout, rate: 1}]\n",
                     "t.yaml:2:34: model.layers[0].rate: expected a number in [0, 1), found 1");
  assert_parse_error("model:\n  layers: [{type: dropout, rate: -0.1}]\n",
                     "model.layers[0].rate: expected a number in [0, 1), found -0.1");
  assert_parse_error("model:\n  layers: [{type: layernorm, eps: 0}]\n",
                     "model.layers[0].eps: expected a number > 0, found 0");
  assert_parse_error("model:\n  layers: [{units: 2, activation: leaky_relu, alpha: -1}]\n",
                     "model.layers[0].alpha: expected a number >= 0, found -1");
  assert_parse_error("model:\n  layers: [{type: conv2d, filters: 1, kernel: 1, stride: -1}]\n",
                     "model.layers[0].stride: expected an integer in [0, 65536], found -1");
  assert_parse_error("model:\n  layers: [{type: conv2d, filters: 1, kernel: 1, padding: -1}]\n",
                     "model.layers[0].padding: expected an integer in [0, 65536], found -1");
  assert_parse_error("model:\n  layers: [{type: conv2d, filters: 0, kernel: 1}]\n",
                     "model.layers[0].filters: expected an integer >= 1, found 0");
  assert_parse_error("model:\n  layers: [{units: 2, init: glorot}]\n",
                     "model.layers[0].init: expected one of auto, he_normal, he_uniform, "
                     "xavier_normal, xavier_uniform, found 'glorot'");
  assert_parse_error("model:\n  label_smoothing: 1\n",
                     "model.label_smoothing: expected a number in [0, 1), found 1");
  assert_parse_error("optim:\n  beta2: 1\n", "optim.beta2: expected a number in [0, 1), found 1");
  assert_parse_error("optim:\n  eps: 0\n", "optim.eps: expected a number > 0, found 0");
  assert_parse_error("optim:\n  decay_all: 1\n", "optim.decay_all: expected true or false");
  assert_parse_error("schedule:\n  step_size: 0\n",
                     "schedule.step_size: expected an integer >= 1, found 0");
  assert_parse_error("schedule:\n  gamma: 0\n", "schedule.gamma: expected a number in (0, 1]");
  assert_parse_error("schedule:\n  div_factor: 0.5\n",
                     "schedule.div_factor: expected a number >= 1, found 0.5");
  assert_parse_error("schedule:\n  pct_start: 1\n",
                     "schedule.pct_start: expected a number in (0, 1), found 1");
  assert_parse_error("train:\n  eval_top_k: -1\n",
                     "train.eval_top_k: expected an integer >= 0, found -1");
}

/* An unknown type leaves the other keys of the item unjudged: one message. */
static void test_config_error_unknown_layer_type(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(parse_text(&c, "model:\n  layers: [{type: maxpoll2d, kernel: 2}]\n"),
                   MS_ECONFIG);
  assert_string_equal(ms_error_msg(),
                      "t.yaml:2:19: model.layers[0].type: expected one of dense, conv2d, "
                      "maxpool2d, avgpool2d, flatten, dropout, layernorm, activation, found "
                      "'maxpoll2d', did you mean 'maxpool2d'?");
}

static void test_config_error_enum_suggests_nearest_value(void **state) {
  (void)state;
  ms_config c;
  assert_parse_error("optim:\n  name: adamm\n",
                     "t.yaml:2:9: optim.name: expected one of sgd, adam, adamw, found 'adamm', "
                     "did you mean 'adam'?");
  assert_parse_error("optim:\n  name: SGD\n", "found 'SGD', did you mean 'sgd'?");
  assert_parse_error("model:\n  loss: cross_entropy\n", "found 'cross_entropy'");
  assert_parse_error("model:\n  layers: [{units: 2, activation: Relu}]\n",
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
  assert_parse_error(
      "model:\n  layers: [{type: conv2d, filter: 3, kernel: 3}]\n",
      "model.layers[0].filter: unknown key, did you mean 'model.layers[0].filters'?");
  assert_parse_error("model:\n  layers: [{type: conv2d, filters: 3, kernal: 3}]\n",
                     "did you mean 'model.layers[0].kernel'?");
  assert_parse_error(
      "model:\n  layers: [{type: dropout, probability: 0.5}]\n",
      "model.layers[0].probability: unknown key (model.layers[0] has: type, units, filters, "
      "kernel, stride, padding, rate, eps, activation, alpha, init)");
  load_good_full(&c);
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
  set_str(c.data.path, sizeof c.data.path, "d.h5");
  c.model.n_layers = 8;
  c.model.layers[0] = make_layer(MS_LAYER_CONV2D);
  c.model.layers[0].units = 5;
  c.model.layers[1] = make_layer(MS_LAYER_MAXPOOL2D);
  c.model.layers[1].stride = 2;
  c.model.layers[2] = make_layer(MS_LAYER_DROPOUT);
  c.model.layers[2].rate = 1.0;
  c.model.layers[3] = make_layer(MS_LAYER_LAYERNORM);
  c.model.layers[3].eps = 0;
  c.model.layers[4] = make_layer(MS_LAYER_ACTIVATION);
  c.model.layers[5] = dense_layer(0, MS_ACT_RELU);
  c.model.layers[5].alpha = 0.2;
  c.model.layers[6] = dense_layer(3, MS_ACT_NONE);
  c.model.layers[6].init = (ms_init)9;
  c.model.layers[7] = make_layer((ms_layer_type)8);
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
                  "avgpool2d, flatten, dropout, layernorm, activation, found 8");
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
  load_good_full(&c);
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
  load_good_full(&c);
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
  assert_int_equal(parse_text(&c, every_layer), 0);
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
  assert_round_trip(&c);
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
  assert_int_equal(parse_text(&c,
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
  assert_round_trip(&c);
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
  load_good_full(&c);
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
  assert_round_trip(&c);
}

static void test_config_diff_pinned_layer_items(void **state) {
  (void)state;
  ms_config a, b;
  char msg[512];
  assert_int_equal(parse_text(&a, every_layer), 0);
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
  assert_int_equal(config_read_file(BAD_DIR, &text, &len), MS_EUSAGE);
  tu_assert_contains(ms_error_msg(), "cannot read config '");
}

static void test_config_read_file_whole(void **state) {
  (void)state;
  size_t len;
  char *text = read_all(GOOD_FULL, &len);
  assert_true(len > 500);
  assert_int_equal(strlen(text), len);
  assert_true(text[len - 1] == '\n');
  free(text);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file tests/configs/bad/NAME.yaml starts with header comments:
 *   # expect: <substring of the message>     (required, first line)
 *   # set: section.key=value                  (any number: --set, in order)
 *   # world: N                                (ranks to validate for; 1)
 *   # exit: N                                 (midscale check's exit; 2)
 * Parsing, the overrides, validation and the checkpoint-directory check (as
 * `midscale check` makes them, without data) must fail with that substring.
 * tests/e2e/check.sh runs the same files through the binary. */
static void test_config_bad_corpus(void **state) {
  (void)state;
  char *names[256];
  int n = 0, failed = 0;
  DIR *dir = opendir(BAD_DIR);
  assert_non_null(dir);
  for (struct dirent *de; (de = readdir(dir)) != NULL;) {
    size_t len = strlen(de->d_name);
    if (len > 5 && !strcmp(de->d_name + len - 5, ".yaml") && n < 256)
      names[n++] = strdup(de->d_name);
  }
  closedir(dir);
  qsort(names, (size_t)n, sizeof names[0], by_name);
  assert_true(n >= 30);
  for (int i = 0; i < n; i++) {
    char path[2048], expect[1024] = "", ckdir[MS_PATH_MAX + 32];
    size_t len;
    int world = 1, code = 2;
    snprintf(path, sizeof path, "%s/%s", BAD_DIR, names[i]);
    char *text = read_all(path, &len);
    size_t eol = strcspn(text, "\n");
    assert_true(eol > 10 && eol < len && !strncmp(text, "# expect: ", 10));
    snprintf(expect, sizeof expect, "%.*s", (int)(eol - 10), text + 10);
    ms_config c;
    config_defaults(&c);
    int rc = config_parse(&c, text, len, names[i]);
    /* The header lines after the first. */
    for (const char *line = text + eol + 1; rc == 0 && !strncmp(line, "# ", 2);
         line += strcspn(line, "\n") + 1) {
      char value[512];
      size_t vl = strcspn(line, "\n");
      if (!strncmp(line, "# set: ", 7)) {
        snprintf(value, sizeof value, "%.*s", (int)(vl - 7), line + 7);
        rc = config_override(&c, value);
      } else if (!strncmp(line, "# world: ", 9)) {
        world = atoi(line + 9);
      } else if (!strncmp(line, "# exit: ", 8)) {
        code = atoi(line + 8);
      }
      if (!line[vl]) break;
    }
    if (rc == 0) rc = config_validate(&c, world);
    if (rc == 0) check_ckpt_dir_of(&c, ckdir, sizeof ckdir), rc = check_ckpt_dir(ckdir);
    if (ms_exit_code(rc) != code || !strstr(ms_error_msg(), expect)) {
      print_error("%s: rc %d, message:\n%s\n-- expected to contain:\n%s\n", names[i], rc,
                  ms_error_msg(), expect);
      failed++;
    }
    free(text);
    free(names[i]);
  }
  assert_int_equal(failed, 0);
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
      cmocka_unit_test(test_config_emit_round_trip_good_full),
      cmocka_unit_test(test_config_emit_round_trip_defaults),
      cmocka_unit_test(test_config_emit_round_trip_awkward_values),
      cmocka_unit_test(test_config_emit_round_trip_non_printable_code_points),
      cmocka_unit_test(test_config_emit_lists_every_key),
      cmocka_unit_test(test_config_emit_layers_as_flow_mappings),
      cmocka_unit_test(test_config_error_syntax),
      cmocka_unit_test(test_config_error_empty_file),
      cmocka_unit_test(test_config_error_top_level_not_mapping),
      cmocka_unit_test(test_config_error_section_not_mapping),
      cmocka_unit_test(test_config_error_unknown_key_suggests_nearest),
      cmocka_unit_test(test_config_error_unknown_key_in_wrong_section),
      cmocka_unit_test(test_config_error_unknown_key_far_from_all),
      cmocka_unit_test(test_config_error_unknown_section_suggests_nearest),
      cmocka_unit_test(test_config_error_duplicate_key),
      cmocka_unit_test(test_config_error_string_where_int_expected),
      cmocka_unit_test(test_config_error_fraction_where_int_expected),
      cmocka_unit_test(test_config_error_quoted_number),
      cmocka_unit_test(test_config_error_missing_value),
      cmocka_unit_test(test_config_error_list_where_scalar_expected),
      cmocka_unit_test(test_config_error_bool_rejects_yes),
      cmocka_unit_test(test_config_error_out_of_range),
      cmocka_unit_test(test_config_error_integer_overflow),
      cmocka_unit_test(test_config_error_double_rejects_nan_inf),
      cmocka_unit_test(test_config_error_enum_not_allowed),
      cmocka_unit_test(test_config_error_string_too_long),
      cmocka_unit_test(test_config_error_layers_not_a_list),
      cmocka_unit_test(test_config_error_layer_not_mapping),
      cmocka_unit_test(test_config_error_layer_missing_units),
      cmocka_unit_test(test_config_error_layer_unknown_key),
      cmocka_unit_test(test_config_error_too_many_layers),
      cmocka_unit_test(test_config_error_non_utf8),
      cmocka_unit_test(test_config_error_second_document),
      cmocka_unit_test(test_config_error_reports_all_problems),
      cmocka_unit_test(test_config_error_leaves_config_unchanged),
      cmocka_unit_test(test_config_error_many_problems_are_capped),
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
      cmocka_unit_test(test_config_bad_corpus),
      cmocka_unit_test(test_config_schema_rows_have_descriptions),
      cmocka_unit_test(test_config_input_parse_emit_override),
      cmocka_unit_test(test_config_data_mean_std_lists),
      cmocka_unit_test(test_config_check_input_names_both_shapes),
      cmocka_unit_test(test_config_check_steps_warmup_within_run),
      cmocka_unit_test(test_config_diff_pinned_names_every_pinned_key),
      cmocka_unit_test(test_config_reference_lists_every_key),
      cmocka_unit_test(test_config_defaults_of_layer_items),
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
