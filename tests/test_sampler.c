/* Unit tests for data/sampler: permutations, rank slices, evaluation ranges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler.h"

/* Asserts that perm holds every value of [0, n) exactly once. */
static void assert_is_permutation(const uint64_t *perm, uint64_t n) {
  unsigned char *seen = calloc(n ? n : 1, 1);
  assert_non_null(seen);
  for (uint64_t i = 0; i < n; i++) {
    assert_true(perm[i] < n);
    assert_int_equal(seen[perm[i]], 0);
    seen[perm[i]] = 1;
  }
  free(seen);
}

static uint64_t *make_perm(uint64_t seed, uint64_t epoch, uint64_t n) {
  uint64_t *p = malloc((n ? n : 1) * sizeof *p);
  assert_non_null(p);
  sampler_permutation(seed, epoch, n, p);
  return p;
}

static void test_sampler_mix64_matches_splitmix64(void **state) {
  (void)state;
  /* The first two outputs of the reference splitmix64 seeded with 0. */
  assert_true(sampler_mix64(0) == 0xe220a8397b1dcdafULL);
  assert_true(sampler_mix64(0x9e3779b97f4a7c15ULL) == 0x6e789e6aa1b965f4ULL);
}

static void test_sampler_permutation_is_permutation(void **state) {
  (void)state;
  const uint64_t sizes[] = {1, 2, 3, 1000, 60000};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
      uint64_t *p = make_perm(1234, epoch, sizes[s]);
      assert_is_permutation(p, sizes[s]);
      free(p);
    }
  }
}

static void test_sampler_permutation_of_zero_is_empty(void **state) {
  (void)state;
  uint64_t sentinel = 77;
  sampler_permutation(1, 2, 0, &sentinel);
  assert_true(sentinel == 77);
}

static void test_sampler_permutation_is_deterministic(void **state) {
  (void)state;
  uint64_t *a = make_perm(42, 7, 1000);
  uint64_t *b = make_perm(42, 7, 1000);
  assert_memory_equal(a, b, 1000 * sizeof *a);
  free(a);
  free(b);
}

/* The order is part of the resume contract: pin it so that a change to the
 * generator cannot pass unnoticed. */
static void test_sampler_permutation_is_pinned(void **state) {
  (void)state;
  static const uint64_t want[10] = {4, 0, 9, 1, 5, 8, 2, 6, 7, 3};
  uint64_t *p = make_perm(42, 0, 10);
  assert_memory_equal(p, want, sizeof want);
  free(p);
}

/* Number of positions where two permutations differ. */
static uint64_t count_diff(const uint64_t *a, const uint64_t *b, uint64_t n) {
  uint64_t d = 0;
  for (uint64_t i = 0; i < n; i++) d += a[i] != b[i];
  return d;
}

static void test_sampler_permutation_differs_across_epochs(void **state) {
  (void)state;
  const uint64_t n = 1000;
  uint64_t *e0 = make_perm(42, 0, n);
  uint64_t *e1 = make_perm(42, 1, n);
  /* Two independent permutations agree on about one position. */
  assert_true(count_diff(e0, e1, n) > n * 9 / 10);
  free(e0);
  free(e1);
}

static void test_sampler_permutation_differs_across_seeds(void **state) {
  (void)state;
  const uint64_t n = 1000;
  uint64_t *s0 = make_perm(1, 0, n);
  uint64_t *s1 = make_perm(2, 0, n);
  assert_true(count_diff(s0, s1, n) > n * 9 / 10);
  /* Seed and epoch are not interchangeable. */
  uint64_t *swapped = make_perm(0, 1, n);
  assert_true(count_diff(s0, swapped, n) > n * 9 / 10);
  free(s0);
  free(s1);
  free(swapped);
}

/* Pearson's chi-square statistic of observed counts against a flat expectation. */
static double chi_square(const unsigned *counts, int cells, double expected) {
  double chi = 0.0;
  for (int i = 0; i < cells; i++) {
    double d = counts[i] - expected;
    chi += d * d / expected;
  }
  return chi;
}

static void test_sampler_permutation_first_position_uniform(void **state) {
  (void)state;
  enum { N = 10, TRIALS = 20000 };
  unsigned first[N] = {0}, last[N] = {0};
  uint64_t p[N];
  for (uint64_t t = 0; t < TRIALS; t++) {
    sampler_permutation(t, t % 5, N, p);
    first[p[0]]++;
    last[p[N - 1]]++;
  }
  /* 9 degrees of freedom: P(chi2 > 40) is about 7e-6 for a fair sampler. The
   * seeds are fixed, so this either always passes or always fails. */
  assert_true(chi_square(first, N, TRIALS / (double)N) < 40.0);
  assert_true(chi_square(last, N, TRIALS / (double)N) < 40.0);
}

static void test_sampler_permutation_all_orders_equally_likely(void **state) {
  (void)state;
  /* The six orders of three items, indexed by p[0] * 2 + (p[1] > other).
   * A classic Fisher-Yates slip (j drawn from [0, n) instead of [0, i])
   * fails this badly. */
  enum { TRIALS = 60000 };
  unsigned counts[6] = {0};
  uint64_t p[3];
  for (uint64_t t = 0; t < TRIALS; t++) {
    sampler_permutation(99, t, 3, p);
    uint64_t rest_low = p[0] == 0 ? 1 : 0;
    counts[p[0] * 2 + (p[1] != rest_low)]++;
  }
  /* 5 degrees of freedom: P(chi2 > 35) is about 1.5e-6. */
  assert_true(chi_square(counts, 6, TRIALS / 6.0) < 35.0);
}

static void test_sampler_steps_per_epoch_drops_partial_batch(void **state) {
  (void)state;
  assert_true(sampler_steps_per_epoch(1000, 64) == 15);
  assert_true(sampler_steps_per_epoch(960, 64) == 15);
  assert_true(sampler_steps_per_epoch(1023, 64) == 15);
  assert_true(sampler_steps_per_epoch(1024, 64) == 16);
  assert_true(sampler_steps_per_epoch(63, 64) == 0);
  assert_true(sampler_steps_per_epoch(60000, 1) == 60000);
  assert_true(sampler_steps_per_epoch(100, 0) == 0);
}

static void test_sampler_rank_slices_concatenate_to_global_batch(void **state) {
  (void)state;
  const int worlds[] = {1, 2, 3, 4, 8};
  const uint64_t n = 1000, batch = 24;
  uint64_t *perm = make_perm(5, 3, n);
  uint64_t steps = sampler_steps_per_epoch(n, batch);
  assert_true(steps == 41);
  uint64_t joined[24];
  for (size_t w = 0; w < sizeof worlds / sizeof *worlds; w++) {
    int world = worlds[w];
    for (uint64_t s = 0; s < steps; s++) {
      const uint64_t *global = perm + s * batch;
      uint64_t filled = 0;
      for (int r = 0; r < world; r++) {
        uint64_t begin, count;
        sampler_rank_slice(batch, world, r, &begin, &count);
        assert_true(count == batch / (uint64_t)world);
        assert_true(begin == filled);
        memcpy(joined + filled, global + begin, count * sizeof *joined);
        filled += count;
      }
      assert_true(filled == batch);
      assert_memory_equal(joined, global, sizeof joined);
    }
  }
  free(perm);
}

/* Checks that the W ranges tile [0, n) in rank order with sizes within one. */
static void check_eval_tiling(uint64_t n, int world) {
  uint64_t next = 0, min = UINT64_MAX, max = 0;
  for (int r = 0; r < world; r++) {
    uint64_t begin, count;
    sampler_eval_range(n, world, r, &begin, &count);
    assert_true(begin == next);
    next = begin + count;
    if (count < min) min = count;
    if (count > max) max = count;
  }
  assert_true(next == n);
  assert_true(max - min <= 1);
}

static void test_sampler_eval_ranges_cover_every_sample_once(void **state) {
  (void)state;
  const int worlds[] = {1, 2, 3, 7};
  const uint64_t sizes[] = {0, 1, 2, 5, 6, 7, 8, 100, 1001, 10000};
  for (size_t w = 0; w < sizeof worlds / sizeof *worlds; w++)
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
      check_eval_tiling(sizes[s], worlds[w]);
}

static void test_sampler_eval_ranges_fewer_samples_than_ranks(void **state) {
  (void)state;
  /* n = 3 on 7 ranks: three ranks get one sample, four get none. */
  uint64_t total = 0, empty = 0;
  for (int r = 0; r < 7; r++) {
    uint64_t begin, count;
    sampler_eval_range(3, 7, r, &begin, &count);
    assert_true(count <= 1);
    total += count;
    empty += count == 0;
  }
  assert_true(total == 3);
  assert_true(empty == 4);
}

static void test_sampler_eval_ranges_large_n_do_not_overflow(void **state) {
  (void)state;
  check_eval_tiling(UINT64_MAX, 7);
  check_eval_tiling(UINT64_MAX - 1, 3);
  check_eval_tiling((uint64_t)1 << 63, 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sampler_mix64_matches_splitmix64),
      cmocka_unit_test(test_sampler_permutation_is_permutation),
      cmocka_unit_test(test_sampler_permutation_of_zero_is_empty),
      cmocka_unit_test(test_sampler_permutation_is_deterministic),
      cmocka_unit_test(test_sampler_permutation_is_pinned),
      cmocka_unit_test(test_sampler_permutation_differs_across_epochs),
      cmocka_unit_test(test_sampler_permutation_differs_across_seeds),
      cmocka_unit_test(test_sampler_permutation_first_position_uniform),
      cmocka_unit_test(test_sampler_permutation_all_orders_equally_likely),
      cmocka_unit_test(test_sampler_steps_per_epoch_drops_partial_batch),
      cmocka_unit_test(test_sampler_rank_slices_concatenate_to_global_batch),
      cmocka_unit_test(test_sampler_eval_ranges_cover_every_sample_once),
      cmocka_unit_test(test_sampler_eval_ranges_fewer_samples_than_ranks),
      cmocka_unit_test(test_sampler_eval_ranges_large_n_do_not_overflow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
