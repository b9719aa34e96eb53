/* comm under mpiexec: agreement, collectives and broadcast, asserted on
 * every rank and agreed on; the nodes (real: one here; emulated) and the
 * CPUs per rank (a failure on any rank fails the test). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <mpi.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm.h"

static comm_world W;

/* Every rank must see cond true. */
static void assert_all_true(int cond) {
  int all = 0;
  MPI_Allreduce(&cond, &all, 1, MPI_INT, MPI_LAND, W.comm);
  assert_true(all);
}

static void test_comm_world_is_sane(void **state) {
  (void)state;
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  assert_int_equal(W.size, size);
  assert_all_true(W.rank >= 0 && W.rank < W.size);
  assert_all_true(W.local_size >= 1 && W.local_rank < W.local_size);
  assert_all_true(strcmp(W.launcher, "mpirun") == 0 || strcmp(W.launcher, "slurm") == 0);
}

static void test_comm_agree_all_ok(void **state) {
  (void)state;
  assert_all_true(comm_agree(&W, 0) == 0);
}

static void test_comm_agree_one_rank_fails(void **state) {
  (void)state;
  int last = W.size - 1;
  int code = comm_agree(&W, W.rank == last ? -3 : 0);
  assert_all_true(code == -3);
  /* The most negative code wins when several ranks fail. */
  code = comm_agree(&W, W.rank == 0 ? -2 : -4);
  assert_all_true(code == (W.size > 1 ? -4 : -2));
}

/* The readiness vote: 1 only when every rank is ready. */
static void test_comm_all_ready(void **state) {
  (void)state;
  assert_all_true(comm_all_ready(&W, 1) == 1);
  assert_all_true(comm_all_ready(&W, 7) == 1); /* any nonzero is ready */
  assert_all_true(comm_all_ready(&W, W.rank != W.size - 1) == 0);
  assert_all_true(comm_all_ready(&W, 0) == 0);
}

static void test_comm_agree_msg_carries_lowest_failing_rank(void **state) {
  (void)state;
  char msg[128];
  int failing = W.size > 1 ? 1 : 0;
  snprintf(msg, sizeof msg, "rank %d broke", W.rank);
  int code = comm_agree_msg(&W, W.rank >= failing ? -(10 + W.rank) : 0, msg, sizeof msg);
  char want[128];
  snprintf(want, sizeof want, "rank %d broke", failing);
  assert_all_true(code == -(10 + failing));
  assert_all_true(strcmp(msg, want) == 0);
  assert_all_true(comm_agree_msg(&W, 0, msg, sizeof msg) == 0);
}

static void test_comm_all_equal(void **state) {
  (void)state;
  assert_all_true(comm_all_equal_u64(&W, 0xdeadbeefULL) == 1);
  int r = comm_all_equal_u64(&W, W.rank == 0 ? 1ULL : 2ULL);
  assert_all_true(r == (W.size > 1 ? 0 : 1));
  assert_all_true(comm_all_equal_u64(&W, UINT64_MAX) == 1);
}

static void test_comm_allreduce_sum(void **state) {
  (void)state;
  enum { N = 1000 };
  float *f = malloc(N * sizeof *f);
  double d[3] = {W.rank, 1.0, 0.5 * W.rank};
  for (int i = 0; i < N; i++) f[i] = (float)(i + W.rank);
  assert_int_equal(comm_allreduce_sum_f32(&W, f, N), 0);
  assert_int_equal(comm_allreduce_sum_f64(&W, d, 3), 0);
  int ok = 1;
  double ranks = W.size * (W.size - 1) / 2.0;
  for (int i = 0; i < N; i++) ok &= f[i] == (float)(W.size * i + ranks);
  ok &= d[0] == ranks && d[1] == W.size && d[2] == 0.5 * ranks;
  assert_all_true(ok);
  double m[2] = {W.rank, -W.rank};
  assert_int_equal(comm_allreduce_max_f64(&W, m, 2), 0);
  assert_all_true(m[0] == W.size - 1 && m[1] == 0);
  free(f);
}

static void test_comm_bcast_bytes_and_floats(void **state) {
  (void)state;
  const char text[] = "model:\n  layers: []\n";
  char *buf = W.rank == 0 ? (char *)text : NULL;
  size_t len = W.rank == 0 ? sizeof text - 1 : 0;
  assert_int_equal(comm_bcast_bytes(&W, &buf, &len, 0), 0);
  assert_all_true(len == sizeof text - 1 && memcmp(buf, text, len) == 0 && buf[len] == '\0');
  if (W.rank != 0) free(buf);
  float v[5] = {0};
  if (W.rank == W.size - 1)
    for (int i = 0; i < 5; i++) v[i] = 1.5f * (float)i;
  assert_int_equal(comm_bcast_f32(&W, v, 5, W.size - 1), 0);
  assert_all_true(v[4] == 6.0f && v[1] == 1.5f);
}

/* Rank r sends 1000*r + 3 bytes (rank 1 sends none), each byte a function
 * of its rank and position; root gets them in rank order. */
static void test_comm_gatherv_bytes(void **state) {
  (void)state;
  size_t len = W.rank == 1 ? 0 : 1000 * (size_t)W.rank + 3;
  unsigned char *mine = malloc(len + 1);
  for (size_t i = 0; i < len; i++) mine[i] = (unsigned char)(W.rank * 31 + i * 7);
  int root = W.size - 1;
  size_t *lens = calloc((size_t)W.size, sizeof *lens);
  char *out = (char *)"untouched";
  size_t out_len = 99;
  assert_int_equal(comm_gatherv_bytes(&W, mine, len, root, &out, &out_len, lens), 0);
  int ok = 1;
  if (W.rank == root) {
    size_t at = 0;
    for (int r = 0; r < W.size; r++) {
      size_t want = r == 1 ? 0 : 1000 * (size_t)r + 3;
      ok &= lens[r] == want;
      for (size_t i = 0; i < want && ok; i++)
        ok &= (unsigned char)out[at + i] == (unsigned char)(r * 31 + i * 7);
      at += want;
    }
    ok &= out_len == at;
    free(out);
  } else {
    ok &= out == NULL && out_len == 0;
  }
  assert_all_true(ok);
  /* Nothing from anyone: root still gets a buffer (of 0 bytes). */
  assert_int_equal(comm_gatherv_bytes(&W, NULL, 0, 0, &out, &out_len, NULL), 0);
  assert_all_true(out_len == 0 && (W.rank == 0) == (out != NULL));
  free(out);
  free(lens);
  free(mine);
}

static void test_comm_topology(void **state) {
  (void)state;
  comm_topo t;
  /* mpiexec on one machine: one node of every rank. */
  assert_int_equal(comm_topo_detect(&W, &t), 0);
  assert_all_true(t.n_nodes == 1 && t.node_index == 0 && t.local_size == W.size &&
                  t.local_rank == W.rank && t.even && t.consecutive);
  comm_topo_free(&t);
  assert_int_equal(comm_topo_emulate(&W, 2, &t), 0);
  int cross = 0;
  MPI_Comm_size(t.cross, &cross);
  int nodes = (W.size + 1) / 2, ok = t.n_nodes == nodes && t.node_index == W.rank / 2 &&
                                     t.local_rank == W.rank % 2 && cross == (W.rank % 2 ? W.size / 2 : nodes);
  for (int r = 0; r < W.size; r++) ok = ok && t.node_of[r] == r / 2;
  assert_all_true(ok && t.even == (W.size % 2 == 0) && t.consecutive == t.even &&
                  t.min_local == (W.size % 2 ? 1 : 2) && t.max_local == 2);
  comm_topo_free(&t);
}

/* The CPUs of this rank's mask, shared among the ranks (all on this
 * machine) whose mask is the same. */
static void test_comm_cpus_per_rank(void **state) {
  (void)state;
  int per = comm_cpus_per_rank(&W);
  cpu_set_t mine;
  CPU_ZERO(&mine);
  assert_int_equal(sched_getaffinity(0, sizeof mine, &mine), 0);
  int cpus = CPU_COUNT(&mine), sharing = 0;
  cpu_set_t *masks = malloc(sizeof mine * (size_t)W.size);
  MPI_Allgather(&mine, sizeof mine, MPI_BYTE, masks, sizeof mine, MPI_BYTE, W.comm);
  for (int r = 0; r < W.size; r++) sharing += !memcmp(&masks[r], &mine, sizeof mine);
  free(masks);
  int want = cpus / sharing > 0 ? cpus / sharing : 1;
  assert_all_true(per == want);
}

int main(int argc, char **argv) {
  if (comm_init(&W, &argc, &argv) != 0) {
    fprintf(stderr, "%s\n", comm_errmsg(&W));
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_comm_world_is_sane),
      cmocka_unit_test(test_comm_agree_all_ok),
      cmocka_unit_test(test_comm_agree_one_rank_fails),
      cmocka_unit_test(test_comm_all_ready),
      cmocka_unit_test(test_comm_agree_msg_carries_lowest_failing_rank),
      cmocka_unit_test(test_comm_all_equal),
      cmocka_unit_test(test_comm_allreduce_sum),
      cmocka_unit_test(test_comm_bcast_bytes_and_floats),
      cmocka_unit_test(test_comm_gatherv_bytes),
      cmocka_unit_test(test_comm_topology),
      cmocka_unit_test(test_comm_cpus_per_rank),
  };
  /* Only rank 0 reports, so ctest's log has one copy of the results; every
   * assertion is agreed on, so rank 0 fails whenever any rank does. */
  if (W.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
  int failed = cmocka_run_group_tests_name("comm", tests, NULL, NULL);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, W.comm);
  comm_finalize(&W);
  return any ? 1 : 0;
}
