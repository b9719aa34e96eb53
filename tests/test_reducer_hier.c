/* The reducer's hierarchical path under mpiexec, on nodes emulated on one
 * machine (reducer_opts.ranks_per_node): 4 ranks as 2 nodes x 2 and 4 x 1,
 * 3 ranks as 3 x 1. Every algorithm gives, bitwise, the sum computed here
 * in the order the layout fixes (hier.h), whatever the buckets and the
 * overlap; a 16-bit wire between nodes agrees on every rank and feeds its
 * rounding back; uneven layouts take the flat path and say so; the bytes
 * that leave a node halve at 2 x 2; the sharded reduction (comm.shared_params)
 * leaves each slice's same sum in its own segment. Assertions are agreed on
 * by every rank. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "comm.h"
#include "hier.h"
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

/* The sum in the order the layout fixes: consecutive nodes of L ranks;
 * node sums in local-rank order; across nodes the algorithm's order for
 * the chunk of the slice that holds element i. */
static void reference(const float *g, size_t n, int L, hier_algorithm a, float *out) {
  const int P = W.size, N = P / L;
  float *all = malloc(sizeof(float) * n * (size_t)P), x[64];
  MPI_Allgather(g, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, W.comm);
  for (int j = 0; j < L; j++) {
    size_t lo = hier_slice_start(n, j, L), hi = hier_slice_start(n, j + 1, L), m = hi - lo;
    for (int c = 0; c < N; c++)
      for (size_t i = lo + hier_chunk_start(m, c, N); i < lo + hier_chunk_start(m, c + 1, N); i++) {
        for (int k = 0; k < N; k++) {
          x[k] = all[(size_t)(k * L) * n + i];
          for (int t = 1; t < L; t++) x[k] += all[(size_t)(k * L + t) * n + i];
        }
        float acc;
        if (a == HIER_HALVING_DOUBLING) {
          for (int h = N / 2; h >= 1; h /= 2)
            for (int q = 0; q < h; q++) x[q] = x[q] + x[q + h];
          acc = x[0];
        } else { /* ring; mpi only with N = 2, where any order is this one */
          acc = x[(c + 1) % N];
          for (int t = 2; t <= N; t++) acc += x[(c + t) % N];
        }
        out[i] = acc;
      }
  }
  free(all);
}

static const size_t starts[] = {1000, 1100, 50000, 50010, 90000};
enum { N_STARTS = 5, N = 90130 };

/* Backward as the trainer runs it: the arena a starts as garbage and
 * each layer's gradients (from src) are written just before they are
 * posted, at rank-dependent moments, while the comm thread (overlapped
 * schedule) reduces the buckets already posted. */
static int backward_then(reducer *r, size_t n, float *a, const float *src, int shard) {
  reducer_begin(r);
  for (size_t i = 0; i < n; i++) a[i] = -1e30f;
  size_t hi = n;
  for (int k = N_STARTS - 1; k >= -1; k--) {
    size_t lo = k >= 0 && starts[k] < n ? starts[k] : 0;
    if (lo > hi) continue;
    memcpy(a + lo, src + lo, sizeof(float) * (hi - lo));
    if ((W.rank + k) % 3 == 0) {
      struct timespec nap = {0, 200000};
      nanosleep(&nap, NULL);
    }
    reducer_ready(r, lo, hi - lo);
    reducer_progress(r);
    hi = lo;
  }
  return shard ? reducer_finish_shard(r) : reducer_finish(r);
}

static int reduce_like_backward(reducer *r, size_t n, float *a, const float *src) {
  return backward_then(r, n, a, src, 0);
}

/* One layout, one algorithm: every schedule and arena size, two steps;
 * any: the comm thread across more than 2 nodes too (tests only). */
static void check_layout(int L, hier_algorithm asked, int any) {
  const int nodes = W.size / L;
  const struct {
    size_t first, bytes;
    int overlap;
  } sched[] = {
      {0, 0, 0},       {4, 4, 1}, {4096, 12345 * 4, 1}, {1 << 20, 25 << 20, 1}, {4096, 4096, 1},
      {400, 40000, 1}, {4, 4, 0}};
  const size_t sizes[] = {5, 37, 1000, N};
  for (int z = 0; z < 4; z++)
    for (int s = 0; s < 7; s++) {
      size_t n = sizes[z];
      float *g = calloc(n, sizeof(float)), *want = malloc(sizeof(float) * n);
      float *src = malloc(sizeof(float) * n);
      reducer *r = NULL;
      reducer_opts o = {.first_bucket_bytes = sched[s].first,
                        .bucket_bytes = sched[s].bytes,
                        .overlap = sched[s].overlap,
                        .wire = WIRE_F32,
                        .shared_memory = 1,
                        .algorithm = asked,
                        .ranks_per_node = L,
                        .overlap_any_nodes = any};
      assert_int_equal(reducer_create(&r, &W, g, n, starts, n == N ? N_STARTS : 0, &o), 0);
      hier_algorithm runs = hier_resolve(asked, nodes, sizeof(float) * n / (size_t)L);
      char part[96];
      snprintf(part, sizeof part, "+ %s across %d nodes", hier_algorithm_name(runs), nodes);
      const char *m = reducer_method(r);
      assert_all_true(reducer_hierarchical(r) && strstr(m, "hierarchical") && strstr(m, part));
      float *a = reducer_arena(r);
      assert_all_true(L > 1 ? a != g : a == g);
      /* The comm thread runs the buckets when there are several. */
      size_t lo, hi;
      int threaded =
          sched[s].overlap && reducer_buckets(r, -1, &lo, &hi) > 1 && (nodes == 2 || any);
      const char *od = reducer_overlap_desc(r);
      assert_all_true(threaded ? strstr(od, "comm thread") != NULL
                               : strncmp(od, "overlap off", 11) == 0);
      for (int round = 0; round < 2; round++) {
        fill(src, n, W.rank, round + s);
        reference(src, n, L, runs, want);
        assert_int_equal(reduce_like_backward(r, n, a, src), 0);
        assert_all_true(memcmp(a, want, sizeof(float) * n) == 0);
      }
      reducer_free(r);
      free(g);
      free(src);
      free(want);
    }
}

static void test_reducer_hier_every_algorithm_is_bitwise_fixed(void **state) {
  (void)state;
  const hier_algorithm algos[] = {HIER_RING, HIER_HALVING_DOUBLING, HIER_MPI, HIER_AUTO};
  for (int i = 0; i < 4; i++) {
    for (int any = 0; any < 2; any++) {
      check_layout(1, algos[i], any); /* W.size nodes x 1 */
      if (W.size % 2 == 0) check_layout(2, algos[i], any);
    }
  }
}

static uint64_t fnv(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

/* 16-bit wire between nodes: every rank ends with the same bits, within a
 * few roundings of the exact sum, the same with overlap on and off, and
 * error feedback makes the mean over many steps exact. */
static void check_16bit(int L, hier_algorithm asked, wire_format fmt) {
  const double rel = fmt == WIRE_BF16 ? 0x1p-8 : 0x1p-11; /* half an ulp */
  float *g = calloc(N, sizeof(float)), *g2 = calloc(N, sizeof(float));
  float *x = malloc(sizeof(float) * N), *exact = malloc(sizeof(float) * N);
  double *mean = calloc(N, sizeof(double)), *mag = malloc(sizeof(double) * N);
  reducer *r = NULL, *r2 = NULL;
  reducer_opts o = {.first_bucket_bytes = 4096,
                    .bucket_bytes = 100000,
                    .overlap = 1,
                    .wire = fmt,
                    .shared_memory = 1,
                    .algorithm = asked,
                    .ranks_per_node = L};
  assert_int_equal(reducer_create(&r, &W, g, N, starts, N_STARTS, &o), 0);
  o.overlap = 0;
  assert_int_equal(reducer_create(&r2, &W, g2, N, NULL, 0, &o), 0);
  const char *m = reducer_method(r);
  assert_all_true(reducer_hierarchical(r) && strstr(m, fmt == WIRE_BF16 ? "bf16" : "fp16") &&
                  (asked != HIER_MPI || strstr(m, "ring")));
  float *a = reducer_arena(r), *a2 = reducer_arena(r2);
  fill(x, N, W.rank, 11);
  /* The exact sum (in double), and the largest partial sum an element
   * can have on its way: the sum of the magnitudes. */
  for (size_t i = 0; i < N; i++) mag[i] = fabs((double)x[i]), mean[i] = x[i];
  MPI_Allreduce(MPI_IN_PLACE, mag, N, MPI_DOUBLE, MPI_SUM, W.comm);
  MPI_Allreduce(MPI_IN_PLACE, mean, N, MPI_DOUBLE, MPI_SUM, W.comm);
  double big = 0;
  for (size_t i = 0; i < N; i++) big = fmax(big, mag[i]), exact[i] = (float)mean[i], mean[i] = 0;
  enum { T = 24 };
  int close = 1;
  for (int t = 0; t < T; t++) {
    memcpy(a2, x, sizeof(float) * N);
    assert_int_equal(reduce_like_backward(r, N, a, x), 0);
    assert_int_equal(reducer_finish((reducer_begin(r2), r2)), 0);
    assert_all_true(memcmp(a, a2, sizeof(float) * N) == 0);
    assert_all_true(comm_all_equal_u64(&W, fnv(a, sizeof(float) * N)) == 1);
    for (size_t i = 0; i < N; i++) {
      if (fabs((double)a[i] - (double)exact[i]) > 2.0 * (W.size + 1) * rel * big) close = 0;
      mean[i] += a[i];
    }
  }
  for (size_t i = 0; i < N; i++)
    if (fabs(mean[i] / T - (double)exact[i]) > 4.0 * (W.size + 1) * rel * big / T + 1e-9 * big)
      close = 0;
  assert_all_true(close);
  reducer_free(r);
  reducer_free(r2);
  free(g), free(g2), free(x), free(exact), free(mean), free(mag);
}

/* The sharded update's reduction (reducer_set_sharded; 2 x 2 on 4 ranks):
 * after reducer_finish_shard and a collective over the world, shard k of
 * the node (reducer_shard) holds in its segment the sum reducer_finish
 * gives, bit for bit, for the whole arena and for the comm thread's
 * buckets; the rest of this rank's segment is its own gradients (no
 * write-back). With one rank a node (3 x 1, 4 x 1) there is nothing to
 * shard and it says so. */
static void test_reducer_hier_sharded_keeps_each_slice_in_its_segment(void **state) {
  (void)state;
  const int L = W.size % 2 == 0 ? 2 : 1;
  for (int s = 0; s < 2; s++) {
    float *g = calloc(N, sizeof(float)), *want = malloc(sizeof(float) * N);
    float *src = malloc(sizeof(float) * N);
    reducer *r = NULL;
    reducer_opts o = {.first_bucket_bytes = 4096,
                      .bucket_bytes = 40000,
                      .overlap = s,
                      .wire = WIRE_F32,
                      .shared_memory = 1,
                      .algorithm = HIER_RING,
                      .ranks_per_node = L};
    assert_int_equal(reducer_create(&r, &W, g, N, starts, N_STARTS, &o), 0);
    if (L == 1) {
      assert_all_true(reducer_set_sharded(r) == COMM_EMPI && strstr(W.err, "more than one rank"));
      reducer_free(r);
      free(g), free(want), free(src);
      return;
    }
    assert_all_true(reducer_set_sharded(r) == 0 && reducer_shard_self(r) == W.rank % L);
    assert_all_true(s == 0 || strstr(reducer_overlap_desc(r), "comm thread") != NULL);
    float *a = reducer_arena(r);
    for (int round = 0; round < 3; round++) {
      fill(src, N, W.rank, round + 5 * s);
      reference(src, N, L, HIER_RING, want);
      assert_int_equal(backward_then(r, N, a, src, 1), 0);
      MPI_Barrier(W.comm); /* the step agreement */
      reducer_fence(r);
      size_t next = 0, lo = 0, hi = 0;
      int ok = 1;
      for (int k = 0; k < L; k++) {
        const float *seg = NULL;
        assert_int_equal(reducer_shard(r, k, &lo, &hi, &seg), L);
        ok = ok && lo == next && memcmp(seg + lo, want + lo, sizeof(float) * (hi - lo)) == 0;
        next = hi;
      }
      reducer_shard(r, reducer_shard_self(r), &lo, &hi, NULL);
      ok = ok && memcmp(a, src, sizeof(float) * lo) == 0 &&
           memcmp(a + hi, src + hi, sizeof(float) * (N - hi)) == 0;
      assert_all_true(ok && next == N);
      MPI_Barrier(W.comm); /* the parameter barrier: nobody reads a segment the next round writes */
    }
    assert_all_true(reducer_finish(r) == COMM_EMPI && strstr(W.err, "reducer_finish_shard"));
    reducer_free(r);
    free(g), free(want), free(src);
  }
}

/* 2 x 2 on 4 ranks, 3 x 1 on 3. */
static void test_reducer_hier_16bit_between_nodes(void **state) {
  (void)state;
  const hier_algorithm algos[] = {HIER_RING, HIER_HALVING_DOUBLING, HIER_MPI};
  for (int f = 0; f < 2; f++)
    for (int i = 0; i < 3; i++) {
      check_16bit(W.size % 2 == 0 ? 2 : 1, algos[i], f ? WIRE_BF16 : WIRE_FP16);
    }
}

/* Uneven nodes (2 + 1 ranks of 3, 3 + 1 of 4): the flat rank-ordered path,
 * which says why, with its sum in world-rank order. */
static void test_reducer_hier_uneven_layout_falls_back_to_flat(void **state) {
  (void)state;
  float *g = malloc(sizeof(float) * N), *want = malloc(sizeof(float) * N);
  float *all = malloc(sizeof(float) * N * (size_t)W.size);
  reducer *r = NULL;
  reducer_opts o = {.first_bucket_bytes = 4096,
                    .bucket_bytes = 65536,
                    .overlap = 1,
                    .wire = WIRE_F32,
                    .shared_memory = 1,
                    .algorithm = HIER_RING,
                    .ranks_per_node = W.size - 1};
  assert_int_equal(reducer_create(&r, &W, g, N, starts, N_STARTS, &o), 0);
  const char *m = reducer_method(r);
  assert_all_true(!reducer_hierarchical(r) && !reducer_shared(r) && reducer_arena(r) == g);
  assert_all_true(strstr(m, "flat: uneven nodes of 1 to") != NULL && !strstr(m, "hierarchical"));
  fill(g, N, W.rank, 7);
  MPI_Allgather(g, N, MPI_FLOAT, all, N, MPI_FLOAT, W.comm);
  for (size_t i = 0; i < N; i++) {
    float s = all[i];
    for (int j = 1; j < W.size; j++) s += all[(size_t)j * N + i];
    want[i] = s;
  }
  float *src = malloc(sizeof(float) * N);
  memcpy(src, g, sizeof(float) * N);
  assert_int_equal(reduce_like_backward(r, N, g, src), 0);
  assert_all_true(memcmp(g, want, sizeof(float) * N) == 0);
  reducer_free(r);
  free(g), free(want), free(all), free(src);
}

/* 2 nodes x 2: each rank's share of the node's traffic is half of what it
 * sends off the node on the flat path (exactly, on an arena of whole
 * lines per quarter). */
static void test_reducer_hier_halves_internode_bytes(void **state) {
  (void)state;
  if (W.size != 4) skip();
  enum { M = 64000 };
  float *g = calloc(M, sizeof(float));
  reducer *flat = NULL, *hier = NULL;
  reducer_opts o = {.overlap = 0, .wire = WIRE_F32, .shared_memory = 0, .ranks_per_node = 2};
  assert_int_equal(reducer_create(&flat, &W, g, M, NULL, 0, &o), 0);
  assert_all_true(!reducer_hierarchical(flat) && strstr(reducer_method(flat), "shared memory off"));
  o.shared_memory = 1;
  assert_int_equal(reducer_create(&hier, &W, g, M, NULL, 0, &o), 0);
  assert_all_true(reducer_hierarchical(hier));
  double fb = reducer_internode_bytes(flat), hb = reducer_internode_bytes(hier);
  /* Flat: a quarter to each of the 2 ranks of the other node, and the own
   * quarter back to each: M floats. Hierarchical: half of a half slice
   * each way. */
  assert_all_true(fb == 4.0 * M && hb == 2.0 * M);
  assert_all_true(reducer_wire_bytes(flat) == 4.0 * 1.5 * M);
  reducer_free(hier);
  reducer_free(flat);
  /* One node: nothing leaves it. */
  o.ranks_per_node = 0;
  assert_int_equal(reducer_create(&flat, &W, g, M, NULL, 0, &o), 0);
  assert_all_true(reducer_internode_bytes(flat) == 0.0);
  reducer_free(flat);
  free(g);
}

int main(int argc, char **argv) {
  if (comm_init(&W, &argc, &argv) != 0) {
    fprintf(stderr, "%s\n", comm_errmsg(&W));
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reducer_hier_every_algorithm_is_bitwise_fixed),
      cmocka_unit_test(test_reducer_hier_16bit_between_nodes),
      cmocka_unit_test(test_reducer_hier_sharded_keeps_each_slice_in_its_segment),
      cmocka_unit_test(test_reducer_hier_uneven_layout_falls_back_to_flat),
      cmocka_unit_test(test_reducer_hier_halves_internode_bytes),
  };
  if (W.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
  int failed = cmocka_run_group_tests_name("reducer_hier", tests, NULL, NULL);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, W.comm);
  comm_finalize(&W);
  return any ? 1 : 0;
}
