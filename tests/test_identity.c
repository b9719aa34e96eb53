/* identity: the hashes ranks compare at start-up. Serial. */
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

/* The same config hashes the same; one key more changes the hash (the
 * keys that differ are named by config_diff, tests/test_config_schema.c). */
static void test_identity_same_config_same_hash(void **state) {
  (void)state;
  const char *sets[] = {"optim.lr=0.2"};
  char *a = emit_with(NULL, 0), *b = emit_with(NULL, 0), *c = emit_with(sets, 1);
  assert_true(identity_hash(a, strlen(a), IDENTITY_HASH_INIT) ==
              identity_hash(b, strlen(b), IDENTITY_HASH_INIT));
  assert_true(identity_hash(a, strlen(a), IDENTITY_HASH_INIT) !=
              identity_hash(c, strlen(c), IDENTITY_HASH_INIT));
  free(a);
  free(b);
  free(c);
}

static void test_identity_binary_hash_is_stable(void **state) {
  (void)state;
  uint64_t h = identity_binary_hash();
  assert_true(h != 0);
  assert_true(h == identity_binary_hash());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity_same_config_same_hash),
      cmocka_unit_test(test_identity_binary_hash_is_stable),
  };
  return cmocka_run_group_tests_name("identity", tests, NULL, NULL);
}
