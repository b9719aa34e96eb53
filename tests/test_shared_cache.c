/* A streamed set's chunk cache shared by the ranks of a node (data_share_cache
 * in node memory from comm_node_mem_alloc), under mpiexec: every rank reads
 * every sample at once, in its own order, and gets the values of the set
 * loaded in memory; each chunk is read and decoded once per node. Asserted
 * on every rank and agreed on. */
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "comm.h"
#include "dataset.h"
#include "h5fixture.h"

static comm_world W;
static char g_path[256], g_bad[280];

enum { N = 1000, E = 12, CHUNK = 37, N_CHUNKS = (N + CHUNK - 1) / CHUNK };

static void assert_all_true(int cond) {
  int all = 0;
  MPI_Allreduce(&cond, &all, 1, MPI_INT, MPI_LAND, W.comm);
  assert_true(all);
}

/* Rank 0 writes int16 inputs, shuffled and deflated in chunks of CHUNK
 * samples (a partial last chunk), into a file every rank then opens. */
static int make_file(void **state) {
  (void)state;
  if (W.rank == 0) {
    snprintf(g_path, sizeof g_path, "/tmp/ms_test_shared_cache_%ld.h5", (long)getpid());
    static double xs[N * E];
    static int64_t ys[N];
    for (int i = 0; i < N; i++) {
      ys[i] = i % 7;
      for (int k = 0; k < E; k++) xs[i * E + k] = (double)((i * 131 + k * 17) % 4001 - 2000);
    }
    hsize_t xd[2] = {N, E}, yd[1] = {N};
    hid_t f = h5f_create(g_path);
    h5f_put_filtered(f, "/x", H5T_STD_I16LE, H5T_NATIVE_DOUBLE, 2, xd, xs, CHUNK,
                     FX_SHUFFLE | FX_DEFLATE);
    h5f_put(f, "/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, ys, 0);
    H5Fclose(f);
    /* The same with chunk 3 (samples 111..147) not a deflate stream. */
    snprintf(g_bad, sizeof g_bad, "%s.bad.h5", g_path);
    f = h5f_create(g_bad);
    h5f_put_filtered(f, "/x", H5T_STD_I16LE, H5T_NATIVE_DOUBLE, 2, xd, xs, CHUNK,
                     FX_SHUFFLE | FX_DEFLATE);
    h5f_put(f, "/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, ys, 0);
    hid_t set = H5Dopen2(f, "/x", H5P_DEFAULT);
    unsigned char junk[64];
    memset(junk, 0xA5, sizeof junk);
    hsize_t off[2] = {3 * CHUNK, 0};
    assert_true(H5Dwrite_chunk(set, H5P_DEFAULT, 0u, off, sizeof junk, junk) >= 0);
    H5Dclose(set);
    H5Fclose(f);
  }
  MPI_Bcast(g_bad, sizeof g_bad, MPI_CHAR, 0, W.comm);
  MPI_Bcast(g_path, sizeof g_path, MPI_CHAR, 0, W.comm);
  return 0;
}

static int remove_file(void **state) {
  (void)state;
  MPI_Barrier(W.comm);
  if (W.rank == 0) remove(g_path), remove(g_bad);
  return 0;
}

/* Opens path streamed and shares its chunk cache in node memory (*m). */
static data_set *open_shared(const char *path, comm_node_mem **m) {
  char err[DATA_ERRLEN] = "";
  data_set *ds = NULL;
  assert_int_equal(
      data_open_cached(&ds, path, "/x", "/y", 1 << 20, DATA_CACHE_STREAM, err, sizeof err), 0);
  size_t bytes = data_shared_cache_bytes(ds);
  assert_all_true(bytes >= (size_t)N * E * 2);
  void *base = NULL;
  assert_int_equal(comm_node_mem_alloc(&W, bytes, data_shared_cache_zeroed(ds), m, &base), 0);
  assert_all_true(*m != NULL && base != NULL);
  data_share_cache(ds, base);
  return ds;
}

static void test_shared_cache_reads_every_chunk_once_per_node(void **state) {
  (void)state;
  char err[DATA_ERRLEN] = "";
  data_set *mem = NULL;
  assert_int_equal(
      data_open_cached(&mem, g_path, "/x", "/y", 1 << 20, DATA_CACHE_MEMORY, err, sizeof err), 0);
  comm_node_mem *m = NULL;
  data_set *ds = open_shared(g_path, &m);
  assert_all_true(data_direct_chunks(ds));
  assert_all_true(data_shared_cache_bytes(ds) == 0); /* shared once */

  /* Every rank: all samples, batches of 16 in an order of its own (a
   * stride coprime to N), all ranks at once. */
  uint64_t idx[16];
  float got[16 * E], want[16 * E];
  int32_t y[16];
  int ok = 1;
  MPI_Barrier(W.comm);
  for (uint64_t at = 0; at < N; at += 16) {
    size_t n = N - at < 16 ? (size_t)(N - at) : 16;
    for (size_t i = 0; i < n; i++) idx[i] = ((at + i) * (uint64_t)(7 + 6 * W.rank) + 3) % N;
    ok &= data_read(ds, idx, n, NULL, got, y, NULL, err, sizeof err) == 0;
    ok &= data_read(mem, idx, n, NULL, want, NULL, NULL, err, sizeof err) == 0;
    ok &= memcmp(got, want, n * E * sizeof *got) == 0;
    for (size_t i = 0; i < n; i++) ok &= y[i] == (int32_t)(idx[i] % 7);
  }
  assert_all_true(ok);
  /* Each chunk read by exactly one rank of the node (here every rank is
   * on one node). */
  double read = (double)data_chunks_read(ds);
  MPI_Allreduce(MPI_IN_PLACE, &read, 1, MPI_DOUBLE, MPI_SUM, W.comm);
  if (W.local_size == W.size) assert_all_true(read == N_CHUNKS);
  /* A second pass reads nothing. */
  uint64_t before = data_chunks_read(ds);
  for (uint64_t at = 0; at + 16 <= N; at += 16) {
    for (size_t i = 0; i < 16; i++) idx[i] = (at + i * 61) % N;
    ok &= data_read(ds, idx, 16, NULL, got, NULL, NULL, err, sizeof err) == 0;
  }
  assert_all_true(ok && data_chunks_read(ds) == before);
  data_close(ds);
  data_close(mem);
  comm_node_mem_free(m);
}

/* A chunk that does not decode fails on every rank that needs it, all at
 * once (a failed read leaves it for the next rank to try, which fails
 * too, rather than waiting for it forever); the other chunks still read. */
static void test_shared_cache_damaged_chunk_fails_on_every_rank(void **state) {
  (void)state;
  char err[DATA_ERRLEN] = "";
  comm_node_mem *m = NULL;
  data_set *ds = open_shared(g_bad, &m);
  uint64_t idx[4] = {3 * CHUNK + 1, 3 * CHUNK + 5, 3 * CHUNK + 9, 3 * CHUNK + 30};
  float got[4 * E];
  int ok = 1;
  MPI_Barrier(W.comm);
  for (int round = 0; round < 3; round++) {
    err[0] = '\0';
    ok &= data_read(ds, idx, 4, NULL, got, NULL, NULL, err, sizeof err) < 0;
    ok &= strstr(err, "cannot read samples 111..147") != NULL;
  }
  uint64_t good[2] = {0, N - 1};
  ok &= data_read(ds, good, 2, NULL, got, NULL, NULL, err, sizeof err) == 0;
  assert_all_true(ok);
  data_close(ds);
  comm_node_mem_free(m);
}

/* Without sharing, every rank reads every chunk itself: the count above
 * could fail. */
static void test_private_caches_read_every_chunk_on_every_rank(void **state) {
  (void)state;
  char err[DATA_ERRLEN] = "";
  data_set *ds = NULL;
  assert_int_equal(
      data_open_cached(&ds, g_path, "/x", "/y", 1 << 20, DATA_CACHE_STREAM, err, sizeof err), 0);
  uint64_t idx[16];
  float got[16 * E];
  int ok = 1;
  for (uint64_t at = 0; at < N; at += 16) {
    size_t n = N - at < 16 ? (size_t)(N - at) : 16;
    for (size_t i = 0; i < n; i++) idx[i] = at + i;
    ok &= data_read(ds, idx, n, NULL, got, NULL, NULL, err, sizeof err) == 0;
  }
  assert_all_true(ok && data_chunks_read(ds) == N_CHUNKS);
  data_close(ds);
}

int main(int argc, char **argv) {
  if (comm_init(&W, &argc, &argv) != 0) {
    fprintf(stderr, "%s\n", comm_errmsg(&W));
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_cache_reads_every_chunk_once_per_node),
      cmocka_unit_test(test_shared_cache_damaged_chunk_fails_on_every_rank),
      cmocka_unit_test(test_private_caches_read_every_chunk_on_every_rank),
  };
  if (W.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
  int failed = cmocka_run_group_tests_name("shared_cache", tests, make_file, remove_file);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, W.comm);
  comm_finalize(&W);
  return any ? 1 : 0;
}
