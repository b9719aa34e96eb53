/* reducer under mpiexec (np 2 and 3): every schedule (overlap on or off,
 * any bucket size, any pattern of ready ranges) and the node-shared-memory
 * path give the same bits as one reduction in rank order; 16-bit wires stay close and feed their rounding
 * back. Assertions are agreed on by every rank. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm.h"
#include "hash.h"
#include "reducer.h"

static comm_world W;

static void assert_all_true(int cond) {
  int all = 0;
  MPI_Allreduce(&cond, &all, 1, MPI_INT, MPI_LAND, W.comm);
  assert_true(all);
}

/* Gradient-like values of mixed magnitudes, different on every rank, so
 * that the summation order shows in the last bits. */
static void fill(float *g, size_t n, int rank, int round) {
  uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(rank + 1) + (uint64_t)round * 7919;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    double u = (double)(s >> 11) / 9007199254740992.0 - 0.5;
    g[i] = (float)(u * pow(10.0, (double)(int)(s % 7) - 6.0));
  }
}

/* The reference: every rank's gradients gathered, summed in rank order. */
static void reference_sum(const float *g, size_t n, float *out) {
  float *all = malloc(sizeof(float) * n * (size_t)W.size);
  MPI_Allgather(g, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, W.comm);
  for (size_t i = 0; i < n; i++) {
    float a = all[i];
    for (int j = 1; j < W.size; j++) a += all[(size_t)j * n + i];
    out[i] = a;
  }
  free(all);
}

/* A model-like layout: layer starts (ascending) of an arena of n floats. */
static const size_t starts[] = {1000, 1100, 50000, 50010, 90000};
enum { N_STARTS = 5, N = 90130 };

/* Runs one reduction of g, reporting ranges the way model_backward does:
 * layer by layer from the end. */
static int reduce_like_backward(reducer *r, float *g, size_t n) {
  reducer_begin(r);
  size_t hi = n;
  for (int k = N_STARTS - 1; k >= -1; k--) {
    size_t lo = k >= 0 ? starts[k] : 0;
    reducer_ready(r, lo, hi - lo);
    reducer_progress(r);
    hi = lo;
  }
  (void)g;
  return reducer_finish(r);
}

static void check_schedule(size_t first_bytes, size_t bytes, int overlap, int layered) {
  float *g = malloc(sizeof(float) * N), *want = malloc(sizeof(float) * N);
  fill(g, N, W.rank, 0);
  reference_sum(g, N, want);
  reducer *r = NULL;
  reducer_opts o = {.first_bucket_bytes = first_bytes, .bucket_bytes = bytes, .overlap = overlap,
                    .wire = WIRE_F32};
  assert_int_equal(reducer_create(&r, &W, g, N, layered ? starts : NULL, layered ? N_STARTS : 0, &o),
                   0);
  assert_int_equal(reduce_like_backward(r, g, N), 0);
  assert_all_true(memcmp(g, want, sizeof(float) * N) == 0);
  /* Again on the same reducer: a second step starts from a clean state. */
  fill(g, N, W.rank, 1);
  reference_sum(g, N, want);
  assert_int_equal(reduce_like_backward(r, g, N), 0);
  assert_all_true(memcmp(g, want, sizeof(float) * N) == 0);
  reducer_free(r);
  free(g);
  free(want);
}

static void test_reducer_one_blocking_collective_is_rank_ordered(void **state) {
  (void)state;
  check_schedule(0, 0, 0, 1);
}

static void test_reducer_layer_buckets_with_overlap_are_bitwise_equal(void **state) {
  (void)state;
  check_schedule(4, 4, 1, 1);                 /* one bucket per layer */
  check_schedule(1 << 20, 25 << 20, 1, 1);    /* DDP's defaults: one bucket (blocking) */
  check_schedule(40000, 100000, 1, 1);        /* mixed */
}

static void test_reducer_byte_buckets_with_overlap_are_bitwise_equal(void **state) {
  (void)state;
  check_schedule(4096, 12345 * 4, 1, 0);
  check_schedule(4, 4 * 7, 0, 0); /* overlap off ignores the bucket size */
}

/* With 2 ranks the reducer uses MPI's allreduce, which the rank-ordered
 * reference must equal: one addition per element commutes. */
static void test_reducer_matches_mpi_allreduce_on_two_ranks(void **state) {
  (void)state;
  float *g = malloc(sizeof(float) * N), *want = malloc(sizeof(float) * N);
  fill(g, N, W.rank, 3);
  memcpy(want, g, sizeof(float) * N);
  MPI_Allreduce(MPI_IN_PLACE, want, N, MPI_FLOAT, MPI_SUM, W.comm);
  reducer *r = NULL;
  reducer_opts o = {.first_bucket_bytes = 1024, .bucket_bytes = 65536, .overlap = 1,
                    .wire = WIRE_F32};
  assert_int_equal(reducer_create(&r, &W, g, N, starts, N_STARTS, &o), 0);
  assert_int_equal(reduce_like_backward(r, g, N), 0);
  if (W.size <= 2) assert_all_true(memcmp(g, want, sizeof(float) * N) == 0);
  reducer_free(r);
  free(g);
  free(want);
}

/* A rank may report nothing (its read failed: zero gradients, no
 * backward); the collectives still match and nobody hangs. */
static void test_reducer_rank_without_ready_calls_does_not_hang(void **state) {
  (void)state;
  float *g = malloc(sizeof(float) * N), *want = malloc(sizeof(float) * N);
  reducer *r = NULL;
  reducer_opts o = {.first_bucket_bytes = 64, .bucket_bytes = 4096, .overlap = 1, .wire = WIRE_F32};
  assert_int_equal(reducer_create(&r, &W, g, N, NULL, 0, &o), 0);
  /* Twice: the second time another rank is the silent one. */
  for (int round = 0; round < 2; round++) {
    int silent = round == 0 ? W.size - 1 : 0;
    fill(g, N, W.rank, 4 + round);
    if (W.rank == silent) memset(g, 0, sizeof(float) * N);
    reference_sum(g, N, want);
    reducer_begin(r);
    if (W.rank != silent)
      for (size_t hi = N; hi > 0; hi = hi > 1000 ? hi - 1000 : 0)
        reducer_ready(r, hi > 1000 ? hi - 1000 : 0, hi > 1000 ? 1000 : hi);
    assert_int_equal(reducer_finish(r), 0);
    assert_all_true(memcmp(g, want, sizeof(float) * N) == 0);
  }
  reducer_free(r);
  free(g);
  free(want);
}

/* Node shared memory: the arena is the reducer's window segment; every
 * arena size (smaller than a cache line per rank, odd, model-like) gives
 * the rank-ordered sum, step after step, also with a silent rank. */
static void test_reducer_shared_memory_is_bitwise_equal(void **state) {
  (void)state;
  const size_t sizes[] = {5, 37, 1000, N};
  for (int s = 0; s < 4; s++) {
    size_t n = sizes[s];
    float *g = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
    fill(g, n, W.rank, 9);
    reducer *r = NULL;
    reducer_opts o = {.first_bucket_bytes = 1 << 20, .bucket_bytes = 25 << 20, .overlap = 1,
                      .wire = WIRE_F32, .shared_memory = 1};
    assert_int_equal(
        reducer_create(&r, &W, g, n, n == N ? starts : NULL, n == N ? N_STARTS : 0, &o), 0);
    /* mpiexec on one machine: every rank is on this node. */
    assert_all_true(reducer_shared(r) == 1);
    float *a = reducer_arena(r);
    assert_all_true(a != g && memcmp(a, g, sizeof(float) * n) == 0); /* a copy of grads */
    for (int round = 0; round < 3; round++) {
      fill(a, n, W.rank, 10 + round);
      if (round == 2 && W.rank == 0) memset(a, 0, sizeof(float) * n); /* a silent rank */
      reference_sum(a, n, want);
      if (n == N && !(round == 2 && W.rank == 0)) {
        assert_int_equal(reduce_like_backward(r, a, n), 0);
      } else {
        reducer_begin(r);
        assert_int_equal(reducer_finish(r), 0);
      }
      assert_all_true(memcmp(a, want, sizeof(float) * n) == 0);
    }
    reducer_free(r);
    free(g);
    free(want);
  }
}

/* Shared memory off, or a 16-bit wire: the MPI paths, in the caller's arena. */
static void test_reducer_shared_memory_only_when_asked_and_fp32(void **state) {
  (void)state;
  float *g = calloc(N, sizeof(float));
  reducer *r = NULL;
  reducer_opts o = {.first_bucket_bytes = 1 << 20, .bucket_bytes = 25 << 20, .overlap = 1,
                    .wire = WIRE_F32, .shared_memory = 0};
  assert_int_equal(reducer_create(&r, &W, g, N, NULL, 0, &o), 0);
  assert_all_true(!reducer_shared(r) && reducer_arena(r) == g);
  reducer_free(r);
  o.shared_memory = 1, o.wire = WIRE_BF16;
  assert_int_equal(reducer_create(&r, &W, g, N, NULL, 0, &o), 0);
  assert_all_true(!reducer_shared(r) && reducer_arena(r) == g);
  reducer_free(r);
  free(g);
}

/* 16-bit wires: every rank decodes the same sum; it is within a few
 * roundings of the exact one; overlap and buckets do not change the bits;
 * and over many steps error feedback makes the mean exact. */
static void test_reducer_16bit_wire_with_error_feedback(void **state) {
  (void)state;
  for (int f = 0; f < 2; f++) {
    wire_format fmt = f ? WIRE_BF16 : WIRE_FP16;
    double rel = f ? 0x1p-8 : 0x1p-11; /* half an ulp of the format */
    float *g = malloc(sizeof(float) * N), *g2 = malloc(sizeof(float) * N);
    float *exact = malloc(sizeof(float) * N), *x = malloc(sizeof(float) * N);
    double *mean = calloc(N, sizeof(double));
    reducer *r = NULL, *r2 = NULL;
    reducer_opts o = {.first_bucket_bytes = 4096, .bucket_bytes = 100000, .overlap = 1,
                      .wire = fmt};
    reducer_opts o2 = {.overlap = 0, .wire = fmt};
    assert_int_equal(reducer_create(&r, &W, g, N, starts, N_STARTS, &o), 0);
    assert_int_equal(reducer_create(&r2, &W, g2, N, NULL, 0, &o2), 0);
    fill(x, N, W.rank, 5);
    reference_sum(x, N, exact);
    /* Errors are relative to the largest magnitude of a block, bounded by
     * the arena's: the contributions' and the sum's. */
    double big = 0;
    for (size_t i = 0; i < N; i++) big = fmax(big, fmax(fabs((double)exact[i]), fabs((double)x[i])));
    MPI_Allreduce(MPI_IN_PLACE, &big, 1, MPI_DOUBLE, MPI_MAX, W.comm);
    enum { T = 64 };
    int close = 1;
    for (int t = 0; t < T; t++) {
      memcpy(g, x, sizeof(float) * N);
      memcpy(g2, x, sizeof(float) * N);
      assert_int_equal(reduce_like_backward(r, g, N), 0);
      assert_int_equal(reducer_finish((reducer_begin(r2), r2)), 0);
      /* bf16 rounds element by element: overlap on and off agree bitwise.
       * fp16's scale is per range of a bucket, so its bits depend on the
       * bucket layout (and stay within the bound below). */
      if (fmt == WIRE_BF16) assert_all_true(memcmp(g, g2, sizeof(float) * N) == 0);
      assert_all_true(comm_all_equal_u64(&W, hash_xxh3(g, sizeof(float) * N, 0)) == 1);
      /* Each contribution and the sum are rounded once, with the last
       * step's residual added: a few roundings of the largest magnitude. */
      for (size_t i = 0; i < N; i++) {
        if (fabs((double)g[i] - (double)exact[i]) > 3.0 * (W.size + 1) * rel * big) close = 0;
        mean[i] += g[i];
      }
    }
    for (size_t i = 0; i < N; i++) {
      double err = fabs(mean[i] / T - (double)exact[i]);
      /* Error feedback: the mean over T steps is off by the residuals only. */
      if (err > 4.0 * (W.size + 1) * rel * big / T + 1e-12) close = 0;
    }
    assert_all_true(close);
    reducer_free(r);
    reducer_free(r2);
    free(g), free(g2), free(exact), free(x), free(mean);
  }
}

/* The sharded update: reducer_finish_shard leaves rank k's range of the
 * rank-ordered sum in rank k's segment (no write-back); the ranges cover
 * the arena in rank order on 64-byte lines; every rank reads every range's
 * sum after a collective and a fence; off the shared path it refuses. */
static void test_reducer_finish_shard_keeps_each_range_in_its_segment(void **state) {
  (void)state;
  const size_t sizes[] = {5, 1000, N};
  for (int s = 0; s < 3; s++) {
    size_t n = sizes[s];
    float *g = calloc(n, sizeof(float)), *want = malloc(sizeof(float) * n);
    reducer *r = NULL;
    reducer_opts o = {.first_bucket_bytes = 1 << 20, .bucket_bytes = 25 << 20, .overlap = 1,
                      .wire = WIRE_F32, .shared_memory = 1};
    assert_int_equal(reducer_create(&r, &W, g, n, NULL, 0, &o), 0);
    assert_all_true(reducer_shard(r, -1, NULL, NULL, NULL) == W.size);
    float *a = reducer_arena(r);
    for (int round = 0; round < 2; round++) {
      fill(a, n, W.rank, 20 + round);
      reference_sum(a, n, want);
      float *mine = malloc(sizeof(float) * n);
      memcpy(mine, a, sizeof(float) * n);
      reducer_begin(r);
      assert_int_equal(reducer_finish_shard(r), 0);
      MPI_Barrier(W.comm);
      reducer_fence(r);
      size_t next = 0;
      int ok = 1;
      for (int k = 0; k < W.size; k++) {
        size_t lo = 1, hi = 0;
        const float *seg = NULL;
        reducer_shard(r, k, &lo, &hi, &seg);
        ok = ok && lo == next && lo % 16 == 0 && hi >= lo && seg != NULL;
        ok = ok && memcmp(seg + lo, want + lo, sizeof(float) * (hi - lo)) == 0;
        if (k == W.rank) /* the rest of this rank's own segment: its own gradients */
          ok = ok && memcmp(a, mine, sizeof(float) * lo) == 0 &&
               memcmp(a + hi, mine + hi, sizeof(float) * (n - hi)) == 0;
        next = hi;
      }
      assert_all_true(ok && next == n);
      MPI_Barrier(W.comm); /* nobody reads a segment once the next round writes it */
      free(mine);
    }
    reducer_free(r);
    free(g);
    free(want);
  }
  float *g = calloc(N, sizeof(float));
  reducer *r = NULL;
  reducer_opts o = {.first_bucket_bytes = 1 << 20, .bucket_bytes = 25 << 20, .overlap = 1,
                    .wire = WIRE_F32, .shared_memory = 0};
  assert_int_equal(reducer_create(&r, &W, g, N, NULL, 0, &o), 0);
  assert_all_true(reducer_shard(r, 0, NULL, NULL, NULL) == 0);
  assert_all_true(reducer_finish_shard(r) == COMM_EMPI);
  reducer_free(r);
  free(g);
}

int main(int argc, char **argv) {
  if (comm_init(&W, &argc, &argv) != 0) {
    fprintf(stderr, "%s\n", comm_errmsg(&W));
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reducer_one_blocking_collective_is_rank_ordered),
      cmocka_unit_test(test_reducer_layer_buckets_with_overlap_are_bitwise_equal),
      cmocka_unit_test(test_reducer_byte_buckets_with_overlap_are_bitwise_equal),
      cmocka_unit_test(test_reducer_matches_mpi_allreduce_on_two_ranks),
      cmocka_unit_test(test_reducer_rank_without_ready_calls_does_not_hang),
      cmocka_unit_test(test_reducer_16bit_wire_with_error_feedback),
      cmocka_unit_test(test_reducer_shared_memory_is_bitwise_equal),
      cmocka_unit_test(test_reducer_shared_memory_only_when_asked_and_fp32),
      cmocka_unit_test(test_reducer_finish_shard_keeps_each_range_in_its_segment),
  };
  if (W.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
  int failed = cmocka_run_group_tests_name("reducer", tests, NULL, NULL);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, W.comm);
  comm_finalize(&W);
  return any ? 1 : 0;
}
