/* Unit tests for data/sampler: permutations, shuffle modes, rank slices,
 * the cursor, drop_last, evaluation ranges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataset.h"
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


/* ---- shuffle modes --------------------------------------------------------- */

static uint64_t *make_order(sampler_shuffle mode, uint64_t bs, uint64_t window, uint64_t seed,
                            uint64_t epoch, uint64_t n) {
  sampler_order o = {.shuffle = mode, .block_size = bs, .window = window};
  uint64_t *p = malloc((n ? n : 1) * sizeof *p);
  assert_non_null(p);
  assert_int_equal(sampler_epoch_order(&o, seed, epoch, n, p, NULL, 0), 0);
  return p;
}

static void test_sampler_every_mode_is_permutation(void **state) {
  (void)state;
  const uint64_t sizes[] = {1, 2, 7, 100, 1000, 1001, 60000};
  const uint64_t blocks[] = {1, 3, 37, 64, 5000, 100000};
  const uint64_t windows[] = {1, 2, 5, 1000};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
    for (uint64_t epoch = 0; epoch < 2; epoch++) {
      for (sampler_shuffle m = SAMPLER_GLOBAL; m <= SAMPLER_NONE; m++) {
        uint64_t *p = make_order(m, 64, 4, 9, epoch, sizes[s]);
        assert_is_permutation(p, sizes[s]);
        free(p);
      }
      for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++)
        for (size_t w = 0; w < sizeof windows / sizeof *windows; w++) {
          uint64_t *p = make_order(SAMPLER_BLOCK, blocks[b], windows[w], 9, epoch, sizes[s]);
          assert_is_permutation(p, sizes[s]);
          free(p);
        }
    }
}

static void test_sampler_global_mode_is_the_permutation(void **state) {
  (void)state;
  uint64_t *a = make_order(SAMPLER_GLOBAL, 0, 0, 42, 3, 5000);
  uint64_t *b = make_perm(42, 3, 5000);
  assert_memory_equal(a, b, 5000 * sizeof *a);
  free(a);
  free(b);
}

static void test_sampler_none_mode_is_sequential(void **state) {
  (void)state;
  for (uint64_t epoch = 0; epoch < 3; epoch++) {
    uint64_t *p = make_order(SAMPLER_NONE, 0, 0, 42, epoch, 1000);
    for (uint64_t i = 0; i < 1000; i++) assert_true(p[i] == i);
    free(p);
  }
}

static void test_sampler_block_mode_rejects_zero_sizes(void **state) {
  (void)state;
  uint64_t p[10];
  char err[DATA_ERRLEN] = "";
  sampler_order o = {.shuffle = SAMPLER_BLOCK, .block_size = 0, .window = 4};
  assert_int_equal(sampler_epoch_order(&o, 1, 3, 10, p, err, sizeof err), -1);
  assert_string_equal(err,
                      "cannot order epoch 3: a block shuffle needs a block size and a window of "
                      "at least 1");
  o.block_size = 4;
  o.window = 0;
  assert_int_equal(sampler_epoch_order(&o, 1, 0, 10, p, err, sizeof err), -1);
  o.shuffle = (sampler_shuffle)7;
  assert_int_equal(sampler_epoch_order(&o, 1, 0, 10, p, err, sizeof err), -1);
  assert_string_equal(err, "cannot order epoch 0: unknown shuffle mode");
}

/* With window 1 every block of the order is one stored block, whole: its
 * samples are contiguous in the file and come together. */
static void test_sampler_block_window_one_keeps_blocks_whole(void **state) {
  (void)state;
  const uint64_t n = 1000, bs = 37; /* 27 blocks, the last one of 1 sample */
  uint64_t *p = make_order(SAMPLER_BLOCK, bs, 1, 5, 2, n);
  uint64_t pos = 0, identity_blocks = 0;
  while (pos < n) {
    uint64_t b = p[pos] / bs, lo = b * bs, len = n - lo < bs ? n - lo : bs;
    uint64_t min = p[pos], max = p[pos];
    for (uint64_t i = pos; i < pos + len; i++) {
      assert_true(p[i] / bs == b);
      if (p[i] < min) min = p[i];
      if (p[i] > max) max = p[i];
    }
    assert_true(min == lo && max == lo + len - 1);
    identity_blocks += pos == lo;
    pos += len;
  }
  /* The blocks themselves are shuffled: few stay where they were. */
  assert_true(identity_blocks < 5);
  free(p);
}

/* Window w of the order holds exactly the samples of `window` blocks, and
 * they are shuffled across those blocks, not block by block. */
static void test_sampler_block_windows_mix_their_blocks(void **state) {
  (void)state;
  const uint64_t n = 6400, bs = 64, window = 10; /* 100 blocks, 10 windows */
  uint64_t *p = make_order(SAMPLER_BLOCK, bs, window, 5, 0, n);
  const uint64_t span = bs * window;
  for (uint64_t w = 0; w < n / span; w++) {
    unsigned char used[100] = {0};
    uint64_t distinct = 0, switches = 0;
    for (uint64_t i = w * span; i < (w + 1) * span; i++) {
      uint64_t b = p[i] / bs;
      distinct += !used[b];
      used[b] = 1;
      switches += i > w * span && p[i] / bs != p[i - 1] / bs;
    }
    assert_true(distinct == window);
    /* Shuffled across 10 blocks: about 90% of neighbours differ in block. */
    assert_true(switches > span / 2);
  }
  free(p);
}

/* A global batch of B positions touches at most window + 1 blocks of the
 * file when B fits a window (it may straddle two windows). */
static void test_sampler_block_batches_touch_few_blocks(void **state) {
  (void)state;
  const uint64_t n = 60000, bs = 1337, window = 4, batch = 128;
  uint64_t *p = make_order(SAMPLER_BLOCK, bs, window, 11, 1, n);
  for (uint64_t s = 0; s < n / batch; s++) {
    unsigned char used[64] = {0};
    uint64_t distinct = 0;
    for (uint64_t i = s * batch; i < (s + 1) * batch; i++) {
      distinct += !used[p[i] / bs];
      used[p[i] / bs] = 1;
    }
    assert_true(distinct <= 2 * window);
  }
  free(p);
}

static void test_sampler_block_mode_is_deterministic_and_varies(void **state) {
  (void)state;
  const uint64_t n = 5000;
  uint64_t *a = make_order(SAMPLER_BLOCK, 50, 4, 42, 1, n);
  uint64_t *b = make_order(SAMPLER_BLOCK, 50, 4, 42, 1, n);
  uint64_t *e = make_order(SAMPLER_BLOCK, 50, 4, 42, 2, n);
  uint64_t *s = make_order(SAMPLER_BLOCK, 50, 4, 43, 1, n);
  uint64_t *g = make_order(SAMPLER_GLOBAL, 50, 4, 42, 1, n);
  assert_memory_equal(a, b, n * sizeof *a);
  assert_true(count_diff(a, e, n) > n * 9 / 10);
  assert_true(count_diff(a, s, n) > n * 9 / 10);
  assert_true(count_diff(a, g, n) > n * 9 / 10);
  free(a);
  free(b);
  free(e);
  free(s);
  free(g);
}

/* Part of the resume contract, as the global permutation is. */
static void test_sampler_block_mode_is_pinned(void **state) {
  (void)state;
  /* Blocks {0,1,2} {3,4,5} {6,7,8} {9}; windows of two blocks. */
  static const uint64_t want[10] = {9, 6, 7, 8, 3, 5, 0, 1, 2, 4};
  uint64_t *p = make_order(SAMPLER_BLOCK, 3, 2, 42, 0, 10);
  assert_memory_equal(p, want, sizeof want);
  free(p);
}

/* ---- rank slices, the cursor, drop_last ---------------------------------- */

/* In every mode the rank batches of W ranks concatenate, in rank order, to
 * the global batch of one rank: the stream does not depend on W. */
static void test_sampler_rank_batches_are_world_invariant(void **state) {
  (void)state;
  const uint64_t n = 1003, batch = 24;
  const int worlds[] = {1, 2, 3, 4, 6, 8, 12, 24};
  const uint64_t steps = sampler_steps_per_epoch(n, batch);
  for (sampler_shuffle m = SAMPLER_GLOBAL; m <= SAMPLER_NONE; m++) {
    uint64_t *p = make_order(m, 10, 3, 77, 4, n);
    for (size_t w = 0; w < sizeof worlds / sizeof *worlds; w++)
      for (uint64_t s = 0; s < steps; s++) {
        uint64_t joined[24], filled = 0;
        for (int r = 0; r < worlds[w]; r++) {
          uint64_t count;
          const uint64_t *b = sampler_rank_batch(p, batch, worlds[w], r, s, &count);
          assert_true(count == batch / (uint64_t)worlds[w]);
          memcpy(joined + filled, b, count * sizeof *b);
          filled += count;
        }
        assert_true(filled == batch);
        assert_memory_equal(joined, p + s * batch, sizeof joined);
      }
    free(p);
  }
}

/* The batches from cursor (epoch, step) on, computed from scratch, are the
 * ones an uninterrupted stream reaches there: the order is a function of
 * (seed, epoch) and nothing that happened before. */
static void test_sampler_cursor_resumes_the_stream(void **state) {
  (void)state;
  const uint64_t n = 500, batch = 20, epochs = 3;
  const uint64_t steps = sampler_steps_per_epoch(n, batch);
  for (sampler_shuffle m = SAMPLER_GLOBAL; m <= SAMPLER_NONE; m++) {
    uint64_t *stream = malloc(epochs * steps * batch * sizeof *stream);
    assert_non_null(stream);
    for (uint64_t e = 0; e < epochs; e++) {
      uint64_t *p = make_order(m, 16, 2, 3, e, n);
      memcpy(stream + e * steps * batch, p, steps * batch * sizeof *p);
      free(p);
    }
    const uint64_t resume_at[] = {0, 1, steps - 1, steps, steps + 7, 2 * steps + 3};
    for (size_t k = 0; k < sizeof resume_at / sizeof *resume_at; k++) {
      uint64_t g = resume_at[k], epoch = g / steps, step = g % steps;
      uint64_t *p = make_order(m, 16, 2, 3, epoch, n);
      for (; g < epochs * steps; g++, step++) {
        if (step == steps) {
          free(p);
          p = make_order(m, 16, 2, 3, ++epoch, n);
          step = 0;
        }
        uint64_t count;
        const uint64_t *b = sampler_rank_batch(p, batch, 1, 0, step, &count);
        assert_memory_equal(b, stream + g * batch, batch * sizeof *b);
      }
      free(p);
    }
    free(stream);
  }
}

/* drop_last: an epoch trains on floor(N / B) * B positions of its order.
 * With shuffle none the same last N % B samples are never seen; with global
 * and block shuffle another tail is dropped each epoch. */
static void test_sampler_drop_last_per_mode(void **state) {
  (void)state;
  const uint64_t n = 1000, batch = 64;
  const uint64_t steps = sampler_steps_per_epoch(n, batch);
  assert_true(steps == 15);
  for (sampler_shuffle m = SAMPLER_GLOBAL; m <= SAMPLER_NONE; m++) {
    unsigned char ever[1000] = {0};
    for (uint64_t e = 0; e < 4; e++) {
      uint64_t *p = make_order(m, 10, 3, 8, e, n);
      unsigned char seen[1000] = {0};
      for (uint64_t s = 0; s < steps; s++) {
        uint64_t count;
        const uint64_t *b = sampler_rank_batch(p, batch, 2, 1, s, &count);
        const uint64_t *a = sampler_rank_batch(p, batch, 2, 0, s, &count);
        for (uint64_t i = 0; i < count; i++) seen[a[i]]++, seen[b[i]]++;
      }
      uint64_t covered = 0;
      for (uint64_t i = 0; i < n; i++) {
        assert_true(seen[i] <= 1);
        covered += seen[i];
        ever[i] |= seen[i];
        if (m == SAMPLER_NONE) assert_true(seen[i] == (i < steps * batch));
      }
      assert_true(covered == steps * batch);
      /* The dropped samples are the order's tail, in every mode. */
      for (uint64_t i = steps * batch; i < n; i++) assert_true(seen[p[i]] == 0);
      free(p);
    }
    uint64_t ever_seen = 0;
    for (uint64_t i = 0; i < n; i++) ever_seen += ever[i];
    if (m == SAMPLER_NONE)
      assert_true(ever_seen == steps * batch);
    else
      assert_true(ever_seen > steps * batch); /* other tails dropped in other epochs */
  }
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
      cmocka_unit_test(test_sampler_every_mode_is_permutation),
      cmocka_unit_test(test_sampler_global_mode_is_the_permutation),
      cmocka_unit_test(test_sampler_none_mode_is_sequential),
      cmocka_unit_test(test_sampler_block_mode_rejects_zero_sizes),
      cmocka_unit_test(test_sampler_block_window_one_keeps_blocks_whole),
      cmocka_unit_test(test_sampler_block_windows_mix_their_blocks),
      cmocka_unit_test(test_sampler_block_batches_touch_few_blocks),
      cmocka_unit_test(test_sampler_block_mode_is_deterministic_and_varies),
      cmocka_unit_test(test_sampler_block_mode_is_pinned),
      cmocka_unit_test(test_sampler_rank_batches_are_world_invariant),
      cmocka_unit_test(test_sampler_cursor_resumes_the_stream),
      cmocka_unit_test(test_sampler_drop_last_per_mode),
      cmocka_unit_test(test_sampler_eval_ranges_cover_every_sample_once),
      cmocka_unit_test(test_sampler_eval_ranges_fewer_samples_than_ranks),
      cmocka_unit_test(test_sampler_eval_ranges_large_n_do_not_overflow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
