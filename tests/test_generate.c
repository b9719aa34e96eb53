/* test_generate — the sampling rule of `midscale generate` (generate.h):
 * greedy, top-k, temperature, and a draw that depends on (seed, index) only. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "generate.h"

enum { V = 6 };
static const float z[V] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};

static void test_generate_greedy_takes_the_first_maximum(void **state) {
  (void)state;
  int order[V];
  assert_int_equal(generate_pick(z, V, 0.0, 0, 0.99, order), 1);
  /* top-k 1 is greedy at any temperature and draw */
  assert_int_equal(generate_pick(z, V, 5.0, 1, 0.99, order), 1);
  assert_int_equal(order[0], 1);
  assert_int_equal(order[1], 3); /* ties by lower id */
  assert_int_equal(order[V - 1], 2);
}

static void test_generate_top_k_keeps_the_k_largest(void **state) {
  (void)state;
  int order[V], seen[V] = {0};
  for (int i = 0; i < 2000; i++)
    seen[generate_pick(z, V, 1.0, 3, generate_uniform(9, (uint64_t)i), order)]++;
  assert_true(seen[1] > 0 && seen[3] > 0 && seen[4] > 0);
  assert_int_equal(seen[0] + seen[2] + seen[5], 0);
  /* ids 1 and 3 tie: each about e^2 / (2 e^2 + e) of the draws */
  double p = exp(2.0) / (2 * exp(2.0) + exp(1.0));
  assert_true(fabs(seen[1] / 2000.0 - p) < 0.05 && fabs(seen[3] / 2000.0 - p) < 0.05);
}

static void test_generate_temperature_sharpens(void **state) {
  (void)state;
  int order[V], cold = 0, hot = 0;
  for (int i = 0; i < 2000; i++) {
    double u = generate_uniform(4, (uint64_t)i);
    cold += generate_pick(z, V, 0.1, 0, u, order) == 2;
    hot += generate_pick(z, V, 10.0, 0, u, order) == 2;
  }
  assert_int_equal(cold, 0);
  assert_true(hot > 200); /* near uniform: about 1/6 */
}

static void test_generate_uniform_is_a_function_of_seed_and_index(void **state) {
  (void)state;
  assert_true(generate_uniform(1, 5) == generate_uniform(1, 5));
  assert_true(generate_uniform(1, 5) != generate_uniform(2, 5));
  assert_true(generate_uniform(1, 5) != generate_uniform(1, 6));
  for (uint64_t i = 0; i < 1000; i++) {
    double u = generate_uniform(3, i);
    assert_true(u >= 0.0 && u < 1.0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_generate_greedy_takes_the_first_maximum),
      cmocka_unit_test(test_generate_top_k_keeps_the_k_largest),
      cmocka_unit_test(test_generate_temperature_sharpens),
      cmocka_unit_test(test_generate_uniform_is_a_function_of_seed_and_index),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
