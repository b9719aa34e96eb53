/* Unit tests that walk the schema table of trainer/config_schema.c: every
 * enum key is a C enum whose names map to the constants of config.h and
 * back, and no enum key is kept as a string. Serial. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_internal.h"
#include "ms_error.h"

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
    {"comm.compress", "none", MS_WIRE_NONE},
    {"comm.compress", "fp16", MS_WIRE_FP16},
    {"comm.compress", "bf16", MS_WIRE_BF16},
    {"model.layers[i].type", "dense", MS_LAYER_DENSE},
    {"model.layers[i].type", "conv2d", MS_LAYER_CONV2D},
    {"model.layers[i].type", "maxpool2d", MS_LAYER_MAXPOOL2D},
    {"model.layers[i].type", "avgpool2d", MS_LAYER_AVGPOOL2D},
    {"model.layers[i].type", "flatten", MS_LAYER_FLATTEN},
    {"model.layers[i].type", "dropout", MS_LAYER_DROPOUT},
    {"model.layers[i].type", "layernorm", MS_LAYER_LAYERNORM},
    {"model.layers[i].type", "activation", MS_LAYER_ACTIVATION},
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_schema_enum_keys_are_c_enums),
      cmocka_unit_test(test_config_schema_enum_emits_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
