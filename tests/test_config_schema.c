/* Unit tests of the schema table (trainer/config/config_schema.c) and the writers
 * that walk it: every enum key is a C enum whose names map to the constants
 * of config.h and back, and no enum key is kept as a string; the resolved
 * config, the reference, the diff, model.input and the cross-field checks.
 * Serial. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_fixture.h"
#include "config_internal.h"
#include "ms_error.h"
#include "testutil.h"

/* Every name of every enum key with the C constant it must map to. A key
 * or a name added to the schema without a row here fails the walk. */
static const struct {
  const char *key, *name;
  int value;
} enum_values[] = {
    {"data.shuffle", "global", MS_SHUFFLE_GLOBAL},
    {"data.shuffle", "block", MS_SHUFFLE_BLOCK},
    {"data.shuffle", "none", MS_SHUFFLE_NONE},
    {"data.cache", "auto", MS_CACHE_AUTO},
    {"data.cache", "memory", MS_CACHE_MEMORY},
    {"data.cache", "stream", MS_CACHE_STREAM},
    {"model.precision", "fp32", MS_PRECISION_FP32},
    {"model.precision", "bf16", MS_PRECISION_BF16},
    {"model.precision", "auto", MS_PRECISION_AUTO},
    {"model.conv_kernel", "auto", MS_CONV_AUTO},
    {"model.conv_kernel", "im2col", MS_CONV_IM2COL},
    {"model.conv_kernel", "onednn", MS_CONV_ONEDNN},
    {"model.loss", "softmax_cross_entropy", MS_LOSS_XENT},
    {"model.loss", "bce_with_logits", MS_LOSS_BCE},
    {"model.loss", "mse", MS_LOSS_MSE},
    {"model.loss", "mae", MS_LOSS_MAE},
    {"optim.name", "sgd", MS_OPTIM_SGD},
    {"optim.name", "adam", MS_OPTIM_ADAM},
    {"optim.name", "adamw", MS_OPTIM_ADAMW},
    {"schedule.name", "constant", MS_SCHED_CONSTANT},
    {"schedule.name", "cosine", MS_SCHED_COSINE},
    {"schedule.name", "step", MS_SCHED_STEP},
    {"schedule.name", "onecycle", MS_SCHED_ONECYCLE},
    {"checkpoint.compress", "auto", MS_CKPT_COMPRESS_AUTO},
    {"checkpoint.compress", "sync", MS_CKPT_COMPRESS_SYNC},
    {"checkpoint.compress", "background", MS_CKPT_COMPRESS_BACKGROUND},
    {"checkpoint.write", "auto", MS_CKPT_WRITE_AUTO},
    {"checkpoint.write", "ranks", MS_CKPT_WRITE_RANKS},
    {"checkpoint.write", "gather", MS_CKPT_WRITE_GATHER},
    {"comm.algorithm", "auto", MS_ALGO_AUTO},
    {"comm.algorithm", "ring", MS_ALGO_RING},
    {"comm.algorithm", "halving_doubling", MS_ALGO_HALVING_DOUBLING},
    {"comm.algorithm", "mpi", MS_ALGO_MPI},
    {"comm.compress", "none", MS_WIRE_NONE},
    {"comm.compress", "fp16", MS_WIRE_FP16},
    {"comm.compress", "bf16", MS_WIRE_BF16},
    {"train.early_stop.metric", "none", MS_ES_NONE},
    {"train.early_stop.metric", "loss", MS_ES_LOSS},
    {"train.early_stop.metric", "acc", MS_ES_ACC},
    {"train.early_stop.metric", "topk_acc", MS_ES_TOPK_ACC},
    {"train.early_stop.metric", "binary_acc", MS_ES_BINARY_ACC},
    {"train.early_stop.metric", "mse", MS_ES_MSE},
    {"train.early_stop.metric", "mae", MS_ES_MAE},
    {"train.early_stop.mode", "auto", MS_ES_AUTO},
    {"train.early_stop.mode", "min", MS_ES_MIN},
    {"train.early_stop.mode", "max", MS_ES_MAX},
    {"model.layers[i].type", "dense", MS_LAYER_DENSE},
    {"model.layers[i].type", "conv2d", MS_LAYER_CONV2D},
    {"model.layers[i].type", "maxpool2d", MS_LAYER_MAXPOOL2D},
    {"model.layers[i].type", "avgpool2d", MS_LAYER_AVGPOOL2D},
    {"model.layers[i].type", "flatten", MS_LAYER_FLATTEN},
    {"model.layers[i].type", "dropout", MS_LAYER_DROPOUT},
    {"model.layers[i].type", "layernorm", MS_LAYER_LAYERNORM},
    {"model.layers[i].type", "activation", MS_LAYER_ACTIVATION},
    {"model.layers[i].type", "embedding", MS_LAYER_EMBEDDING},
    {"model.layers[i].type", "pos_embedding", MS_LAYER_POS_EMBEDDING},
    {"model.layers[i].type", "attention", MS_LAYER_ATTENTION},
    {"model.layers[i].type", "transformer_block", MS_LAYER_TRANSFORMER_BLOCK},
    {"model.layers[i].activation", "none", MS_ACT_NONE},
    {"model.layers[i].activation", "relu", MS_ACT_RELU},
    {"model.layers[i].activation", "leaky_relu", MS_ACT_LEAKY_RELU},
    {"model.layers[i].activation", "gelu", MS_ACT_GELU},
    {"model.layers[i].activation", "tanh", MS_ACT_TANH},
    {"model.layers[i].activation", "sigmoid", MS_ACT_SIGMOID},
    {"model.layers[i].activation", "softmax", MS_ACT_SOFTMAX},
    {"model.layers[i].init", "auto", MS_INIT_AUTO},
    {"model.layers[i].init", "he_normal", MS_INIT_HE_NORMAL},
    {"model.layers[i].init", "he_uniform", MS_INIT_HE_UNIFORM},
    {"model.layers[i].init", "xavier_normal", MS_INIT_XAVIER_NORMAL},
    {"model.layers[i].init", "xavier_uniform", MS_INIT_XAVIER_UNIFORM},
};
#define N_ENUM_VALUES (sizeof enum_values / sizeof enum_values[0])

/* The int value of row k in a config where `--set path=name` was applied
 * (layer rows: on an appended layer 0). */
static int set_and_read(const key_spec *k, int is_layer, const char *name) {
  ms_config *c = calloc(1, sizeof *c);
  char set[160];
  int v;
  assert_non_null(c);
  config_defaults(c);
  if (is_layer)
    snprintf(set, sizeof set, "model.layers[0].%s=%s", k->path, name);
  else
    snprintf(set, sizeof set, "%s=%s", k->path, name);
  if (config_override(c, set) != 0) fail_msg("--set %s: %s", set, ms_error_msg());
  memcpy(&v,
         (const char *)(is_layer ? (const void *)&c->model.layers[0] : (const void *)c) + k->off,
         sizeof v);
  free(c);
  return v;
}

/* One table of the schema: every row with names is an int-sized K_ENUM,
 * and each of its names goes name -> C value -> name. @return the number
 * of names checked. */
static size_t walk_table(const key_spec *table, size_t count, int is_layer) {
  size_t checked = 0;
  char key[96];
  for (size_t i = 0; i < count; i++) {
    const key_spec *k = &table[i];
    snprintf(key, sizeof key, "%s%s", is_layer ? "model.layers[i]." : "", k->path);
    if (k->allowed && k->type != K_ENUM) fail_msg("%s has names but is no K_ENUM", key);
    if (k->type != K_ENUM) continue;
    if (k->size != sizeof(int)) fail_msg("%s is not stored as an int-sized C enum", key);
    if (!k->allowed || !k->allowed[0]) fail_msg("%s: an enum without names", key);
    for (int v = 0; k->allowed[v]; v++) {
      const char *name = k->allowed[v];
      size_t r = 0;
      while (r < N_ENUM_VALUES &&
             (strcmp(enum_values[r].key, key) || strcmp(enum_values[r].name, name)))
        r++;
      if (r == N_ENUM_VALUES) fail_msg("%s: '%s' has no C constant in enum_values", key, name);
      if (enum_values[r].value != v)
        fail_msg("%s: '%s' is value %d in the schema, the constant is %d", key, name, v,
                 enum_values[r].value);
      assert_int_equal(set_and_read(k, is_layer, name), enum_values[r].value); /* name -> value */
      assert_string_equal(config_enum_name(key, enum_values[r].value), name);  /* value -> name */
      assert_true(cfg_enum_valid(k, v));
      checked++;
    }
    assert_false(cfg_enum_valid(k, -1));
    assert_string_equal(config_enum_name(key, -1), "invalid");
  }
  return checked;
}

static void test_config_schema_enum_keys_are_c_enums(void **state) {
  (void)state;
  size_t checked = walk_table(cfg_keys, cfg_n_keys, 0);
  checked += walk_table(cfg_layer_keys, cfg_n_layer_keys, 1);
  /* No row of enum_values is left over (a name removed from the schema). */
  assert_int_equal(checked, N_ENUM_VALUES);
  assert_string_equal(config_enum_name("optim.lr", 0), "invalid");
  assert_string_equal(config_enum_name("no.such", 0), "invalid");
}

/* The resolved config writes an enum key by its name and reads it back as
 * the same C value. */
static void test_config_schema_enum_emits_names(void **state) {
  (void)state;
  ms_config *c = calloc(2, sizeof *c);
  assert_non_null(c);
  config_defaults(&c[0]);
  assert_int_equal(config_override(&c[0], "model.layers[0].units=3"), 0);
  c[0].model.loss = MS_LOSS_MAE;
  c[0].data.cache = MS_CACHE_STREAM;
  c[0].comm.compress = MS_WIRE_BF16;
  char *text = config_emit(&c[0]);
  assert_non_null(text);
  assert_non_null(strstr(text, "  loss: mae "));
  assert_non_null(strstr(text, "  cache: stream "));
  assert_non_null(strstr(text, "  compress: bf16 "));
  config_defaults(&c[1]);
  assert_int_equal(config_parse(&c[1], text, strlen(text), "emitted.yaml"), 0);
  assert_int_equal(c[1].model.loss, MS_LOSS_MAE);
  assert_int_equal(c[1].data.cache, MS_CACHE_STREAM);
  assert_int_equal(c[1].comm.compress, MS_WIRE_BF16);
  free(text);
  free(c);
}

/* ---- emit ------------------------------------------------------------------- */

static void test_config_emit_round_trip_good_full(void **state) {
  (void)state;
  ms_config *c = calloc(1, sizeof *c);
  assert_non_null(c);
  cfx_load_good_full(c);
  cfx_assert_round_trip(c);
  free(c);
}

static void test_config_emit_round_trip_defaults(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  cfx_assert_round_trip(&c);
}

static void test_config_emit_round_trip_awkward_values(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  /* Parsing zero-fills a string field past its NUL; do the same here. */
  cfx_set_str(c.run.name, sizeof c.run.name, "a \"quoted\" name: with # and \\ and\ttab\nline");
  cfx_set_str(c.run.dir, sizeof c.run.dir, "null");
  cfx_set_str(c.data.path, sizeof c.data.path, "-dash/caf\xc3\xa9.h5");
  cfx_set_str(c.data.train_x, sizeof c.data.train_x, "true");
  cfx_set_str(c.data.train_y, sizeof c.data.train_y, "~");
  cfx_set_str(c.data.test_x, sizeof c.data.test_x, "123");
  cfx_set_str(c.data.test_y, sizeof c.data.test_y, "");
  cfx_set_str(c.checkpoint.dir, sizeof c.checkpoint.dir, "x\x01\x7f y");
  c.run.seed = UINT64_MAX;
  c.data.scale = 1.0 / 255.0;
  c.optim.lr = 0.1 + 0.2;
  c.optim.momentum = 0.99999999999999989;
  c.comm.timeout_s = 1e-300;
  c.optim.nesterov = 1;
  c.log.progress = 0;
  c.train.max_steps = INT_MAX;
  c.model.n_layers = 2;
  cfx_dense_layer(&c.model.layers[0], 7, MS_ACT_RELU);
  cfx_dense_layer(&c.model.layers[1], 3, MS_ACT_NONE);
  cfx_assert_round_trip(&c);
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
  assert_int_equal(cfx_parse_text(&c, fuzz_input), 0);
  cfx_assert_round_trip(&c);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    config_defaults(&c);
    cfx_set_str(c.run.name, sizeof c.run.name, names[i]);
    cfx_assert_round_trip(&c);
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
  cfx_load_good_full(&c);
  char *text = config_emit(&c);
  assert_non_null(text);
  tu_assert_contains(text, "  layers:");
  tu_assert_contains(text, "\n    - {type: dense, units: 256, activation: relu, init: auto}\n");
  tu_assert_contains(text, "\n    - {type: dense, units: 10, activation: none, init: auto}\n");
  free(text);
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
  assert_int_equal(cfx_parse_text(&c,
                                  "data: {path: d.h5}\nmodel:\n  input: [28, 28]\n  layers:\n"
                                  "    - {units: 10}\n"),
                   0);
  assert_int_equal(c.model.input.ndim, 2);
  assert_int_equal(c.model.input.dims[1], 28);
  assert_int_equal(config_input_features(&c), 784);
  text = config_emit(&c);
  tu_assert_contains(text, "\n  input: [28, 28] ");
  free(text);
  cfx_assert_round_trip(&c);
  assert_int_equal(config_override(&c, "model.input=[784]"), 0);
  assert_int_equal(c.model.input.ndim, 1);
  assert_int_equal(config_override(&c, "model.input=[]"), 0);
  assert_int_equal(c.model.input.ndim, 0);
  assert_int_equal(config_input_features(&c), 0);
  assert_int_equal(config_override(&c, "model.input=[3, 32, 32]"), 0);
  assert_int_equal(config_override(&c, "model.input="), 0);
  assert_int_equal(c.model.input.ndim, 0);
  cfx_assert_round_trip(&c);
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
  assert_int_equal(cfx_parse_text(&c,
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
  cfx_assert_round_trip(&c);
  assert_int_equal(config_override(&c, "data.std=[0.5, 2]"), 0);
  assert_int_equal(c.data.std.n, 2);
  assert_int_equal(config_override(&c, "data.mean=[]"), 0);
  assert_int_equal(c.data.mean.n, 0);
  cfx_assert_round_trip(&c);
  assert_int_equal(config_override(&c, "data.std=[1, 0]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                     "--set data.std=[1, 0]: item 1: expected a number > 0, found 0");
  assert_int_equal(config_override(&c, "data.mean=[x]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "item 0: expected a number, found 'x'");
  assert_int_equal(config_override(&c, "data.mean=[1e39]"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "item 0: 1e+39 does not fit a float");
  cfx_assert_parse_error("data: {path: d.h5, mean: 0.5}\n",
                         "data.mean: expected a list of numbers like [0.5] or [0.49, 0.48, 0.45], "
                         "found '0.5'");
  cfx_assert_parse_error("data: {path: d.h5, std: [nan]}\n", "data.std: item 0: expected a finite");
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
  cfx_load_good_full(&a);
  b = a;
  /* Resume-safe keys may change. */
  b.train.epochs = 99;
  b.optim.lr = 0.5;
  b.train.max_steps = 7;
  b.log.every_steps = 3;
  b.checkpoint.keep = 9;
  b.train.eval_batch_size = 10;
  cfx_set_str(b.run.dir, sizeof b.run.dir, "elsewhere");
  assert_int_equal(config_diff(&a, &b, CONFIG_DIFF_PINNED, msg, sizeof msg), 0);
  assert_string_equal(msg, "");
  b.model.layers[0].units = 40;
  b.run.seed = 8;
  b.train.batch_size = 256;
  cfx_set_str(b.data.train_x, sizeof b.data.train_x, "/other");
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

/* Every key, as the start-up check compares ranks: scalars by value, layer
 * items key by key, a missing layer by the count; in schema order. */
static void test_config_diff_all_names_each_key(void **state) {
  (void)state;
  ms_config *c = calloc(2, sizeof *c);
  char msg[512], small[24];
  assert_non_null(c);
  cfx_load_good_full(&c[0]);
  c[1] = c[0];
  assert_int_equal(config_diff(&c[0], &c[1], CONFIG_DIFF_ALL, msg, sizeof msg), 0);
  assert_string_equal(msg, "");
  assert_int_equal(config_override(&c[1], "optim.lr=0.2"), 0);
  assert_int_equal(config_override(&c[1], "train.batch_size=256"), 0);
  assert_int_equal(config_override(&c[1], "model.layers[0].units=48"), 0);
  assert_int_equal(config_override(&c[1], "comm.compress=fp16"), 0);
  assert_int_equal(config_diff(&c[0], &c[1], CONFIG_DIFF_ALL, msg, sizeof msg), 4);
  assert_string_equal(msg,
                      "model.layers[0].units 256 → 48; optim.lr 0.05 → 0.2; train.batch_size "
                      "128 → 256; comm.compress none → fp16");
  /* Only the pinned ones for a resume. */
  assert_int_equal(config_diff(&c[0], &c[1], CONFIG_DIFF_PINNED, msg, sizeof msg), 2);
  /* A cut message ends in "...". */
  assert_int_equal(config_diff(&c[0], &c[1], CONFIG_DIFF_ALL, small, sizeof small), 4);
  assert_int_equal(strlen(small), sizeof small - 1);
  assert_string_equal(small + sizeof small - 4, "...");
  c[1] = c[0];
  assert_int_equal(config_override(&c[1], "model.layers[3].units=10"), 0);
  assert_int_equal(config_diff(&c[0], &c[1], CONFIG_DIFF_ALL, msg, sizeof msg), 1);
  assert_string_equal(msg, "model.layers 3 layers → 4 layers");
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_schema_enum_keys_are_c_enums),
      cmocka_unit_test(test_config_schema_enum_emits_names),
      cmocka_unit_test(test_config_diff_all_names_each_key),
      cmocka_unit_test(test_config_emit_round_trip_good_full),
      cmocka_unit_test(test_config_emit_round_trip_defaults),
      cmocka_unit_test(test_config_emit_round_trip_awkward_values),
      cmocka_unit_test(test_config_emit_round_trip_non_printable_code_points),
      cmocka_unit_test(test_config_emit_lists_every_key),
      cmocka_unit_test(test_config_emit_layers_as_flow_mappings),
      cmocka_unit_test(test_config_schema_rows_have_descriptions),
      cmocka_unit_test(test_config_input_parse_emit_override),
      cmocka_unit_test(test_config_data_mean_std_lists),
      cmocka_unit_test(test_config_check_input_names_both_shapes),
      cmocka_unit_test(test_config_check_steps_warmup_within_run),
      cmocka_unit_test(test_config_diff_pinned_names_every_pinned_key),
      cmocka_unit_test(test_config_reference_lists_every_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
