/* timing: fractions, throughput and the peak fraction of an interval. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "timing.h"

static void test_timing_fractions_and_flops(void **state) {
  (void)state;
  ms_interval iv = {.wall = 10.0,
                    .t = {6.0, 1.5, 0.5, 0.25, 0.75},
                    .samples = 1e6,
                    .flops_per_sample = 1e6,
                    .world = 2,
                    .threads = 1,
                    .peak = 100e9};
  ms_breakdown b;
  timing_breakdown(&iv, &b);
  assert_true(fabs(b.frac[T_COMPUTE] - 0.6) < 1e-12 && fabs(b.frac[T_COMM] - 0.15) < 1e-12);
  assert_true(fabs(b.other - 0.1) < 1e-12);
  assert_true(b.samples_per_s == 1e5);
  /* 3 x 1 MFLOP x 1e5 samples/s over 2 ranks = 150 GFLOP/s per rank. */
  assert_true(fabs(b.flops_per_rank - 150e9) < 1.0);
  assert_true(fabs(b.peak_frac - 1.5) < 1e-12);
  char text[200], json[300];
  timing_format(&b, text, sizeof text, json, sizeof json);
  assert_string_equal(text,
                      "compute 60.0% | comm 15.0% | data 5.0% | checkpoint 2.5% | eval 7.5% | "
                      "other 10.0%");
  assert_non_null(strstr(json, "\"compute\":0.6000,\"comm\":0.1500,"));
  assert_non_null(strstr(json, "\"gflops_per_rank\":150.000,\"peak_frac\":1.5000"));
}

static void test_timing_degenerate_intervals(void **state) {
  (void)state;
  /* Parts that exceed the wall (clock skew between ranks): other is 0. */
  ms_interval iv = {.wall = 1.0, .t = {0.9, 0.2, 0, 0, 0}, .samples = 10, .world = 1};
  ms_breakdown b;
  timing_breakdown(&iv, &b);
  assert_true(b.other == 0.0 && b.peak_frac == 0.0);
  ms_interval zero = {0};
  timing_breakdown(&zero, &b);
  assert_true(b.samples_per_s == 0.0 && b.flops_per_rank == 0.0 && b.frac[T_COMPUTE] == 0.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timing_fractions_and_flops),
      cmocka_unit_test(test_timing_degenerate_intervals),
  };
  return cmocka_run_group_tests_name("timing", tests, NULL, NULL);
}
