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

#define GOOD_FULL MS_SOURCE_DIR "/tests/configs/good_full.yaml"
#define BAD_DIR MS_SOURCE_DIR "/tests/configs/bad"

/* The smallest config that validates. */
static const char minimal[] =
    "data:\n"
    "  path: d.h5\n"
    "model:\n"
    "  layers:\n"
    "    - {type: dense, units: 10}\n";

/* Fails with the whole message when `msg` lacks `sub`. */
#define assert_contains(msg, sub)                                                    \
  do {                                                                               \
    const char *m_ = (msg), *s_ = (sub);                                             \
    if (!strstr(m_, s_)) fail_msg("message:\n%s\n-- does not contain:\n%s", m_, s_); \
  } while (0)

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
    assert_contains(ms_error_msg(), (sub));                \
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
  assert_string_equal(c.model.loss, "softmax_cross_entropy");
  assert_string_equal(c.optim.name, "sgd");
  assert_true(c.optim.lr == 0.01);
  assert_true(c.optim.momentum == 0.9);
  assert_true(c.optim.weight_decay == 0.0);
  assert_int_equal(c.optim.nesterov, 0);
  assert_string_equal(c.schedule.name, "constant");
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
}

static void test_config_defaults_need_data_path_and_layers(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  assert_contains(ms_error_msg(), "data.path is required");
  assert_contains(ms_error_msg(), "model.layers is required");
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
  assert_string_equal(c.schedule.name, "cosine");
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
  c.model.layers[0] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 7, .activation = MS_ACT_RELU};
  c.model.layers[1] = (ms_layer_cfg){.type = MS_LAYER_DENSE, .units = 3, .activation = MS_ACT_NONE};
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
  assert_contains(text, "name: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
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
                                      "optim:\n",
                                      "  lr: 0.01",
                                      "  momentum: 0.9",
                                      "  weight_decay: 0",
                                      "  nesterov: false",
                                      "schedule:\n",
                                      "  name: constant",
                                      "  warmup_steps: 0",
                                      "  min_lr_ratio: 0",
                                      "train:\n",
                                      "  epochs: 1",
                                      "  batch_size: 64",
                                      "  eval_batch_size: 1000",
                                      "  max_steps: 0",
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
  assert_contains(text, "  layers:");
  assert_contains(text, "\n    - {type: dense, units: 256, activation: relu}\n");
  assert_contains(text, "\n    - {type: dense, units: 10, activation: none}\n");
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
  assert_contains(ms_error_msg(),
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
                     "t.yaml:2:9: schedule.name: expected one of constant, cosine, found 'linear'");
  assert_parse_error("optim:\n  name: adam\n", "optim.name: expected one of sgd, found 'adam'");
  assert_parse_error("model:\n  layers: [{units: 3, activation: tanh}]\n",
                     "model.layers[0].activation: expected one of none, relu, found 'tanh'");
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
      "(every layer needs units)");
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
      "  name: step\n" /* 7: enum */
      "train:\n"
      "  epochs: 2\n"
      "  epochs: 3\n" /* 10: duplicate */
      "model:\n"
      "  layers:\n"
      "    - {type: dense}\n" /* 13: missing units */
      "logs: {}\n";           /* 14: unknown section */
  assert_int_equal(parse_text(&c, text), MS_ECONFIG);
  const char *m = ms_error_msg();
  assert_contains(m, "t.yaml:2:3: run.nmae: unknown key, did you mean 'run.name'?\n");
  assert_contains(m, "t.yaml:4:7: optim.lr: expected a number, found 'abc'\n");
  assert_contains(m, "t.yaml:5:13: optim.momentum: expected a number in [0, 1), found 2\n");
  assert_contains(m, "t.yaml:7:9: schedule.name: expected one of constant, cosine, found 'step'\n");
  assert_contains(m, "t.yaml:10:3: train.epochs: duplicate key (first set at line 9)\n");
  assert_contains(m, "t.yaml:13:7: model.layers[0].units: expected an integer >= 1");
  assert_contains(m, "t.yaml:14:1: logs: unknown section, did you mean 'log'?");
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
  assert_string_equal(c.schedule.name, "cosine");
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
  assert_contains(ms_error_msg(), "--set optim.lr=abc: expected a number, found 'abc'");
  assert_int_equal(config_override(&c, "optim.lr=20"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "--set optim.lr=20: expected a number in (0, 10], found 20");
  assert_int_equal(config_override(&c, "log.progress=yes"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "--set log.progress=yes: expected true or false, found 'yes'");
  assert_int_equal(config_override(&c, "train.epochs=[1, 2]"), MS_ECONFIG);
  assert_contains(ms_error_msg(),
                  "--set train.epochs=[1, 2]: expected a single value, found a list");
  assert_int_equal(config_override(&c, "train.epochs='3"), MS_ECONFIG);
  assert_contains(ms_error_msg(),
                  "--set train.epochs='3: expected a YAML scalar value, found a syntax error");
  assert_int_equal(config_override(&c, "train.epochs="), MS_ECONFIG);
  assert_contains(ms_error_msg(), "--set train.epochs=: expected an integer, found nothing");
  assert_memory_equal(&c, &before, sizeof c);
}

static void test_config_override_unknown_key(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_override(&c, "optim.momentom=0.5"), MS_ECONFIG);
  assert_contains(ms_error_msg(),
                  "--set optim.momentom=0.5: unknown key 'optim.momentom', did you mean "
                  "'optim.momentum'?");
  assert_int_equal(config_override(&c, "lr=0.5"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "did you mean 'optim.lr'?");
  assert_int_equal(config_override(&c, "nothing.like.it=1"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "--set nothing.like.it=1: unknown key 'nothing.like.it'");
}

static void test_config_override_bad_layer_syntax(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[5].units=3"), MS_ECONFIG);
  assert_contains(ms_error_msg(),
                  "--set model.layers[5].units=3: expected a layer index in [0, 3] (3 layers; "
                  "index 3 appends one), found 5");
  assert_int_equal(config_override(&c, "model.layers[x].units=3"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "expected model.layers[INDEX].KEY=value");
  assert_int_equal(config_override(&c, "model.layers=3"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "expected model.layers[INDEX].KEY=value");
  assert_int_equal(config_override(&c, "model.layers[0].unit=3"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "did you mean 'model.layers[0].units'?");
  assert_int_equal(config_override(&c, "model.layers[0].activation=tanh"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "expected one of none, relu, found 'tanh'");
  assert_int_equal(c.model.n_layers, 3);
}

static void test_config_override_missing_equals(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_override(&c, "optim.lr"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "--set optim.lr: expected section.key=value");
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
  assert_contains(ms_error_msg(),
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
  assert_contains(ms_error_msg(),
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
  assert_contains(ms_error_msg(), "data.path is required");
  assert_contains(ms_error_msg(), "data.train_y is required");
  assert_contains(ms_error_msg(), "data.test_y is required when data.test_x is set");
  c.model.n_layers = 0;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  assert_contains(ms_error_msg(), "model.layers is required: expected 1 to 32 layers, found 0");
}

static void test_config_validate_ranges(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
  c.optim.lr = -1;
  c.checkpoint.level = 30;
  c.comm.timeout_s = 0;
  snprintf(c.schedule.name, sizeof c.schedule.name, "step");
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  const char *m = ms_error_msg();
  assert_contains(m, "optim.lr: expected a number in (0, 10], found -1");
  assert_contains(m, "checkpoint.level: expected an integer in [1, 19], found 30");
  assert_contains(m, "comm.timeout_s: expected a number > 0, found 0");
  assert_contains(m, "schedule.name: expected one of constant, cosine, found 'step'");
}

static void test_config_validate_appended_layer_needs_units(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
  assert_int_equal(config_override(&c, "model.layers[3].activation=none"), 0);
  assert_int_equal(config_override(&c, "model.layers[2].activation=relu"), 0);
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  assert_contains(ms_error_msg(), "model.layers[3].units: expected an integer >= 1, found 0");
}

static void test_config_validate_warmup_within_max_steps(void **state) {
  (void)state;
  ms_config c;
  load_good_full(&c);
  c.train.max_steps = 50;
  assert_int_equal(config_validate(&c, 1), MS_ECONFIG);
  assert_contains(ms_error_msg(), "schedule.warmup_steps 100 is not less than train.max_steps 50");
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
  assert_contains(m, "data.path is required");
  assert_contains(m, "model.layers is required");
  assert_contains(m, "log.every_steps: expected an integer >= 1, found 0");
  assert_contains(m, "train.batch_size 10 is not divisible by the world size 3");
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
  assert_contains(text, "\n  input: [28, 28] ");
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
  assert_contains(ms_error_msg(),
                  "--set model.input=[2, x]: item 1: expected an integer, found 'x'");
  assert_int_equal(config_override(&c, "model.input=[[2]]"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "item 0: expected an integer, found a list");
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
  assert_contains(text, "\n  mean: [0.1, 0.2, -3] ");
  assert_contains(text, "\n  std: [0.25] ");
  free(text);
  assert_round_trip(&c);
  assert_int_equal(config_override(&c, "data.std=[0.5, 2]"), 0);
  assert_int_equal(c.data.std.n, 2);
  assert_int_equal(config_override(&c, "data.mean=[]"), 0);
  assert_int_equal(c.data.mean.n, 0);
  assert_round_trip(&c);
  assert_int_equal(config_override(&c, "data.std=[1, 0]"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "--set data.std=[1, 0]: item 1: expected a number > 0, found 0");
  assert_int_equal(config_override(&c, "data.mean=[x]"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "item 0: expected a number, found 'x'");
  assert_int_equal(config_override(&c, "data.mean=[1e39]"), MS_ECONFIG);
  assert_contains(ms_error_msg(), "item 0: 1e+39 does not fit a float");
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
  assert_contains(ms_error_msg(),
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
  assert_contains(ms_error_msg(), "schedule.warmup_steps 30 is not less than the 30 steps");
  c.schedule.warmup_steps = 0;
  assert_int_equal(config_check_steps(&c, 1), 0);
}

static void test_config_resume_diff_names_every_pinned_key(void **state) {
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
  assert_int_equal(config_resume_diff(&a, &b, msg, sizeof msg), 0);
  assert_string_equal(msg, "");
  b.model.layers[0].units = 40;
  b.run.seed = 8;
  b.train.batch_size = 256;
  set_str(b.data.train_x, sizeof b.data.train_x, "/other");
  assert_int_equal(config_resume_diff(&a, &b, msg, sizeof msg), 4);
  assert_string_equal(msg,
                      "run.seed 42 → 8; data.train_x /train/images → /other; "
                      "model.layers[0].units 256 → 40; train.batch_size 128 → 256");
  b = a;
  b.model.n_layers = 2;
  b.model.layers[1].activation = MS_ACT_NONE;
  b.data.scale = 1;
  assert_int_equal(config_resume_diff(&a, &b, msg, sizeof msg), 3);
  assert_contains(msg,
                  "data.scale 0.00392156862745098 → 1; model.layers 3 layers → 2 layers; "
                  "model.layers[1].activation relu → none");
  /* A short buffer is cut, not overrun. */
  assert_int_equal(config_resume_diff(&a, &b, msg, 20), 3);
  assert_true(strlen(msg) < 20);
  assert_contains(msg, "...");
}

static void test_config_reference_lists_every_key(void **state) {
  (void)state;
  char *md = config_reference(), row[128];
  assert_non_null(md);
  for (size_t i = 0; i < cfg_n_keys; i++) {
    snprintf(row, sizeof row, "| `%s` | ", cfg_keys[i].path);
    assert_contains(md, row);
  }
  assert_contains(md, "| `model.layers[i].units` | integer | (none) | required, >= 1 | no |");
  assert_contains(md, "| `optim.lr` | number | `0.01` | (0, 10] | yes | peak learning rate |");
  assert_contains(md, "| `run.seed` | unsigned 64-bit integer | `0` |");
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
  assert_contains(ms_error_msg(), "cannot read config '");
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
      cmocka_unit_test(test_config_resume_diff_names_every_pinned_key),
      cmocka_unit_test(test_config_reference_lists_every_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
