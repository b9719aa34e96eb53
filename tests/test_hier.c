/* hier: the arithmetic of the reducer's hierarchical path, without MPI:
 * slice and chunk boundaries, the ring's schedule and the order of its
 * sums, halving/doubling's byte counts, and which algorithm runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "hier.h"

static void test_hier_slices_cover_the_arena_on_lines(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, 5, 16, 37, 1000, 90130, 1 << 20};
  for (int s = 0; s < 8; s++)
    for (int L = 1; L <= 8; L++) {
      size_t n = sizes[s];
      assert_int_equal(hier_slice_start(n, 0, L), 0);
      assert_int_equal(hier_slice_start(n, L, L), n);
      for (int j = 0; j < L; j++) {
        size_t a = hier_slice_start(n, j, L), b = hier_slice_start(n, j + 1, L);
        assert_true(a <= b);
        assert_int_equal(a % 16, 0);
        /* Balanced up to a line. */
        assert_true(b - a <= n / (size_t)L + 32);
      }
    }
}

static void test_hier_chunks_partition_a_slice(void **state) {
  (void)state;
  for (int N = 1; N <= 9; N++)
    for (size_t m = 0; m < 40; m++) {
      size_t total = 0;
      for (int c = 0; c < N; c++) {
        size_t len = hier_chunk_start(m, c + 1, N) - hier_chunk_start(m, c, N);
        assert_true(len == m / (size_t)N || len == m / (size_t)N + 1);
        total += len;
      }
      assert_int_equal(total, m);
      assert_int_equal(hier_chunk_start(m, N, N), m);
    }
}

/* Simulates the ring on N nodes with every partial sum written as the
 * sequence of nodes it added, in order (a base-16 number, oldest digit
 * first): after the reduce-scatter node c holds chunk c summed as
 * c+1, c+2, ..., c; after the allgather every node holds every chunk. */
static void test_hier_ring_schedule_fixes_the_order(void **state) {
  (void)state;
  enum { MAXN = 9 };
  for (int N = 1; N <= MAXN; N++) {
    uint64_t part[MAXN][MAXN]; /* [node][chunk] */
    for (int k = 0; k < N; k++)
      for (int c = 0; c < N; c++) part[k][c] = (uint64_t)k + 1;
    for (int s = 0; s < N - 1; s++) {
      uint64_t sent[MAXN];
      for (int k = 0; k < N; k++) sent[k] = part[k][hier_ring_send(k, s, N)];
      for (int k = 0; k < N; k++) {
        int from = (k + N - 1) % N, c = hier_ring_send(from, s, N);
        assert_int_equal(c, hier_ring_send(k - 1, s, N));
        part[k][c] = sent[from] * 16 + (uint64_t)k + 1; /* received, then own */
      }
    }
    for (int c = 0; c < N; c++) {
      uint64_t want = 0;
      for (int t = 1; t <= N; t++) want = want * 16 + (uint64_t)((c + t) % N) + 1;
      assert_true(part[c][c] == want);
    }
    /* Allgather: node k starts with chunk k only. */
    int have[MAXN][MAXN] = {{0}};
    for (int k = 0; k < N; k++) have[k][k] = 1;
    for (int s = 0; s < N - 1; s++) {
      int c_sent[MAXN];
      for (int k = 0; k < N; k++) {
        c_sent[k] = hier_ring_gather(k, s, N);
        assert_true(have[k][c_sent[k]]); /* only what it holds */
      }
      for (int k = 0; k < N; k++) have[k][c_sent[(k + N - 1) % N]] = 1;
    }
    for (int k = 0; k < N; k++)
      for (int c = 0; c < N; c++) assert_true(have[k][c]);
  }
}

static void test_hier_bytes_sent(void **state) {
  (void)state;
  /* Ring and halving/doubling both send 2 (N - 1) / N of the slice. */
  for (int N = 2; N <= 8; N *= 2)
    for (int k = 0; k < N; k++) {
      assert_int_equal(hier_sent_floats(HIER_RING, 64000, k, N), 2 * 64000 / N * (N - 1));
      assert_int_equal(hier_sent_floats(HIER_HALVING_DOUBLING, 64000, k, N),
                       2 * 64000 / N * (N - 1));
    }
  assert_int_equal(hier_sent_floats(HIER_RING, 1000, 0, 1), 0);
  assert_int_equal(hier_sent_floats(HIER_RING, 10, 0, 3), (10 - 3) + (10 - 3));
  assert_int_equal(hier_sent_floats(HIER_RING, 10, 2, 3), (10 - 4) + (10 - 3));
}

static void test_hier_resolve_never_breaks_the_fixed_order(void **state) {
  (void)state;
  assert_int_equal(hier_resolve(HIER_MPI, 2, 1000), HIER_MPI);
  assert_int_equal(hier_resolve(HIER_MPI, 3, 1000), HIER_RING);
  assert_int_equal(hier_resolve(HIER_HALVING_DOUBLING, 4, 1000), HIER_HALVING_DOUBLING);
  assert_int_equal(hier_resolve(HIER_HALVING_DOUBLING, 6, 1000), HIER_RING);
  assert_int_equal(hier_resolve(HIER_RING, 4, 1000), HIER_RING);
  assert_int_equal(hier_resolve(HIER_AUTO, 2, 1000), HIER_RING);
  assert_int_equal(hier_resolve(HIER_AUTO, 3, 1000), HIER_RING);
  assert_int_equal(hier_resolve(HIER_AUTO, 4, 1000), HIER_HALVING_DOUBLING);
  assert_int_equal(hier_resolve(HIER_AUTO, 4, 4 * HIER_AUTO_HD_BYTES), HIER_RING);
  /* The banner names the algorithm with comm/hier's names and the config
   * with its own: the two enums name the same algorithms in the same order. */
  for (int a = HIER_AUTO; a <= HIER_MPI; a++)
    assert_string_equal(hier_algorithm_name((hier_algorithm)a),
                        config_enum_name("comm.algorithm", a));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hier_slices_cover_the_arena_on_lines),
      cmocka_unit_test(test_hier_chunks_partition_a_slice),
      cmocka_unit_test(test_hier_ring_schedule_fixes_the_order),
      cmocka_unit_test(test_hier_bytes_sent),
      cmocka_unit_test(test_hier_resolve_never_breaks_the_fixed_order),
  };
  return cmocka_run_group_tests_name("hier", tests, NULL, NULL);
}
