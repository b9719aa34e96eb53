/* identity: the config diff that names the keys two ranks disagree on, and
 * the hashes. Serial. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "identity.h"

static const char base[] =
    "run: {name: t, dir: runs/t, seed: 3}\n"
    "data: {path: d.h5}\n"
    "model:\n"
    "  layers:\n"
    "    - {type: dense, units: 32, activation: relu}\n"
    "    - {type: dense, units: 10}\n"
    "optim: {lr: 0.1}\n"
    "train: {batch_size: 64}\n";

static char *emit_with(const char *const *sets, int n) {
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_parse(&c, base, strlen(base), "t.yaml"), 0);
  for (int i = 0; i < n; i++) assert_int_equal(config_override(&c, sets[i]), 0);
  char *text = config_emit(&c);
  assert_non_null(text);
  return text;
}

static void test_identity_same_config_no_diff(void **state) {
  (void)state;
  char *a = emit_with(NULL, 0), *b = emit_with(NULL, 0), msg[256];
  assert_int_equal(identity_config_diff(a, b, msg, sizeof msg), 0);
  assert_string_equal(msg, "");
  assert_true(identity_hash(a, strlen(a), IDENTITY_HASH_INIT) ==
              identity_hash(b, strlen(b), IDENTITY_HASH_INIT));
  free(a);
  free(b);
}

static void test_identity_diff_names_each_key(void **state) {
  (void)state;
  const char *sets[] = {"optim.lr=0.2", "train.batch_size=128", "model.layers[0].units=48"};
  char *a = emit_with(NULL, 0), *b = emit_with(sets, 3), msg[512];
  assert_int_equal(identity_config_diff(a, b, msg, sizeof msg), 3);
  /* In file order; a layer item is compared as a whole. */
  assert_true(strncmp(msg, "model.layers[0] {type: dense, units: 32, ", 41) == 0);
  assert_non_null(strstr(msg, "} → {type: dense, units: 48, "));
  const char *tail = "}; optim.lr 0.1 → 0.2; train.batch_size 64 → 128";
  assert_string_equal(msg + strlen(msg) - strlen(tail), tail);
  /* A cut message ends in "...". */
  char small[24];
  assert_int_equal(identity_config_diff(a, b, small, sizeof small), 3);
  assert_int_equal(strlen(small), sizeof small - 1);
  assert_string_equal(small + sizeof small - 4, "...");
  free(a);
  free(b);
}

static void test_identity_diff_extra_layer(void **state) {
  (void)state;
  const char *sets[] = {"model.layers[2].units=10", "model.layers[1].units=16",
                        "model.layers[1].activation=relu"};
  char *a = emit_with(NULL, 0), *b = emit_with(sets, 3), msg[512];
  assert_int_equal(identity_config_diff(a, b, msg, sizeof msg), 2);
  assert_non_null(strstr(msg, "model.layers[2] (none) → {type: dense, units: 10"));
  free(a);
  free(b);
}

static void test_identity_binary_hash_is_stable(void **state) {
  (void)state;
  uint64_t h = identity_binary_hash();
  assert_true(h != 0);
  assert_true(h == identity_binary_hash());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity_same_config_no_diff),
      cmocka_unit_test(test_identity_diff_names_each_key),
      cmocka_unit_test(test_identity_diff_extra_layer),
      cmocka_unit_test(test_identity_binary_hash_is_stable),
  };
  return cmocka_run_group_tests_name("identity", tests, NULL, NULL);
}
