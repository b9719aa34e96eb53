/* Unit tests for data/loader: the batches equal direct reads in every
 * shuffle mode, prefetch depth, world size and cache mode; restarts at any
 * cursor; a read failure reported at its own step; clean stops; and HDF5
 * calls on the main thread beside the loader thread (the process-wide lock
 * of dataset.h). Fixtures are written with the HDF5 C API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "dataset.h"
#include "h5fixture.h"
#include "info.h"
#include "loader.h"
#include "sampler.h"

enum { N = 600, E = 6, CHUNK = 20, BATCH = 24 }; /* 25 steps per epoch */
#define BUDGET ((size_t)1 << 30)

static char g_err[DATA_ERRLEN];

/* Element k of sample i is i * E + k: a row names its sample. Labels i % 7. */
static const char *write_file(const char *name, hsize_t chunk_rows) {
  static float x[N * E];
  static int64_t y[N];
  for (int i = 0; i < N; i++) {
    for (int k = 0; k < E; k++) x[i * E + k] = (float)(i * E + k);
    y[i] = i % 7;
  }
  const char *p = h5f_tmp(name);
  hid_t f = h5f_create(p);
  hsize_t xd[2] = {N, E}, yd[1] = {N};
  h5f_put(f, "/train/images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, chunk_rows);
  h5f_put(f, "/train/labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, y, 0);
  H5Fclose(f);
  return p;
}

static data_set *open_set(const char *path, data_cache cache) {
  data_set *ds = NULL;
  if (data_open_cached(&ds, path, "/train/images", "/train/labels", BUDGET, cache, g_err,
                       sizeof g_err) != 0)
    fail_msg("open: %s", g_err);
  return ds;
}

static loader_opts opts_for(data_set *ds, sampler_shuffle mode, int prefetch, int world, int rank) {
  loader_opts o = {.ds = ds,
                   .norm = data_norm_identity(),
                   .order = {.shuffle = mode, .block_size = 0, .window = 3},
                   .seed = 99,
                   .global_batch = BATCH,
                   .world = world,
                   .rank = rank,
                   .prefetch = prefetch,
                   .class_labels = 1,
                   .end_step = 0};
  return o;
}

static data_loader *make_loader(const loader_opts *o) {
  data_loader *l = NULL;
  if (loader_create(&l, o, g_err, sizeof g_err) != 0) fail_msg("loader: %s", g_err);
  return l;
}

/* Checks batch b against what sampler_epoch_order + data_read give for its
 * cursor (through `ref`, a separately opened copy of the set). */
static void check_batch(const loader_batch *b, const loader_opts *o, uint64_t block_size,
                        data_set *ref, uint64_t epoch, uint64_t step) {
  static uint64_t perm[N];
  static float x[BATCH * E];
  static int32_t y[BATCH];
  assert_true(b->epoch == epoch && b->step == step);
  sampler_order order = o->order;
  order.block_size = block_size;
  assert_int_equal(sampler_epoch_order(&order, o->seed, epoch, N, perm, NULL, 0), 0);
  uint64_t count;
  const uint64_t *want = sampler_rank_batch(perm, BATCH, o->world, o->rank, step, &count);
  assert_true(b->n == count);
  assert_memory_equal(b->idx, want, count * sizeof *want);
  assert_int_equal(data_read(ref, want, count, NULL, x, y, NULL, g_err, sizeof g_err), 0);
  assert_memory_equal(b->x, x, count * E * sizeof *x);
  assert_memory_equal(b->y, y, count * sizeof *y);
  assert_null(b->t);
  for (size_t i = 0; i < count; i++) assert_true(b->x[i * E] == (float)(want[i] * E));
}

/* ---- the stream ------------------------------------------------------------------ */

static void test_loader_batches_equal_direct_reads(void **state) {
  (void)state;
  const char *path = write_file("stream.h5", CHUNK);
  data_set *ref = open_set(path, DATA_CACHE_MEMORY);
  const int prefetch[] = {0, 1, 3};
  const int worlds[][2] = {{1, 0}, {3, 2}, {4, 1}};
  for (int cache = DATA_CACHE_MEMORY; cache <= DATA_CACHE_STREAM; cache++) {
    data_set *ds = open_set(path, (data_cache)cache);
    assert_int_equal(data_in_memory(ds), cache == DATA_CACHE_MEMORY);
    for (sampler_shuffle m = SAMPLER_GLOBAL; m <= SAMPLER_NONE; m++)
      for (size_t p = 0; p < sizeof prefetch / sizeof *prefetch; p++)
        for (size_t w = 0; w < sizeof worlds / sizeof *worlds; w++) {
          loader_opts o = opts_for(ds, m, prefetch[p], worlds[w][0], worlds[w][1]);
          data_loader *l = make_loader(&o);
          loader_batch b;
          /* Two and a half epochs: the epoch boundaries are crossed ahead. */
          for (uint64_t g = 0; g < 62; g++) {
            uint64_t epoch = g / 25, step = g % 25;
            assert_int_equal(loader_next(l, epoch, step, &b, g_err, sizeof g_err), 0);
            check_batch(&b, &o, loader_block_size(l), ref, epoch, step);
          }
          loader_free(l);
        }
    data_close(ds);
  }
  data_close(ref);
}

static void test_loader_restarts_at_any_cursor(void **state) {
  (void)state;
  const char *path = write_file("restart.h5", CHUNK);
  data_set *ref = open_set(path, DATA_CACHE_MEMORY);
  data_set *ds = open_set(path, DATA_CACHE_STREAM);
  loader_opts o = opts_for(ds, SAMPLER_BLOCK, 3, 2, 1);
  data_loader *l = make_loader(&o);
  /* A resume (first call at (2, 5)), a run of steps, jumps back and ahead,
   * a repeat of the current step. */
  const uint64_t cursor[][2] = {{2, 5}, {2, 6}, {2, 7}, {0, 3}, {0, 4}, {4, 24},
                                {5, 0}, {5, 0}, {1, 1}, {1, 2}, {1, 3}, {1, 4}};
  loader_batch b;
  for (size_t i = 0; i < sizeof cursor / sizeof *cursor; i++) {
    assert_int_equal(loader_next(l, cursor[i][0], cursor[i][1], &b, g_err, sizeof g_err), 0);
    check_batch(&b, &o, loader_block_size(l), ref, cursor[i][0], cursor[i][1]);
  }
  loader_free(l);
  data_close(ds);
  data_close(ref);
}

static void test_loader_block_size_defaults_to_the_chunk(void **state) {
  (void)state;
  data_set *chunked = open_set(write_file("chunked.h5", 37), DATA_CACHE_AUTO);
  data_set *plain = open_set(write_file("plain.h5", 0), DATA_CACHE_AUTO);
  assert_true(data_chunk_samples(chunked) == 37);
  assert_true(data_chunk_samples(plain) == 0);
  loader_opts o = opts_for(chunked, SAMPLER_BLOCK, 0, 1, 0);
  data_loader *l = make_loader(&o);
  assert_true(loader_block_size(l) == 37);
  loader_free(l);
  /* Not chunked: about 1 MiB of stored rows (6 float32 = 24 bytes each). */
  o = opts_for(plain, SAMPLER_BLOCK, 0, 1, 0);
  l = make_loader(&o);
  assert_true(loader_block_size(l) == (1u << 20) / 24);
  loader_free(l);
  o.order.block_size = 5;
  l = make_loader(&o);
  assert_true(loader_block_size(l) == 5);
  loader_free(l);
  o = opts_for(plain, SAMPLER_GLOBAL, 0, 1, 0);
  l = make_loader(&o);
  assert_true(loader_block_size(l) == 0);
  loader_free(l);
  data_close(chunked);
  data_close(plain);
}

/* ---- errors and stops -------------------------------------------------------------- */

/* Overwrites the compressed bytes of chunk `k` of the inputs. */
static void damage_chunk(const char *path, hsize_t k) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t set = H5Dopen2(f, "/train/images", H5P_DEFAULT);
  hid_t space = H5Dget_space(set);
  hsize_t offset[2];
  unsigned mask;
  haddr_t addr;
  hsize_t size;
  assert_true(H5Dget_chunk_info(set, space, k, offset, &mask, &addr, &size) >= 0);
  assert_true(offset[0] == k * CHUNK);
  H5Sclose(space);
  H5Dclose(set);
  H5Fclose(f);
  FILE *fp = fopen(path, "r+b");
  assert_non_null(fp);
  assert_int_equal(fseek(fp, (long)addr + 2, SEEK_SET), 0);
  for (hsize_t i = 0; i + 4 < size; i++) fputc(0xff, fp);
  fclose(fp);
}

/* Sequential order, batch 24: step s reads samples [24 s, 24 s + 24). Chunk
 * 10 holds samples 200..219: steps 8 and 9 fail, the others read. The
 * thread reads ahead into step 8 while steps 5..7 are handed out. */
static void test_loader_reports_a_failure_at_its_step(void **state) {
  (void)state;
  const char *path = write_file("damaged.h5", CHUNK);
  damage_chunk(path, 10);
  data_set *ds = open_set(path, DATA_CACHE_STREAM);
  for (int prefetch = 0; prefetch <= 4; prefetch += 4) {
    loader_opts o = opts_for(ds, SAMPLER_NONE, prefetch, 1, 0);
    data_loader *l = make_loader(&o);
    loader_batch b;
    for (uint64_t s = 0; s < 8; s++)
      assert_int_equal(loader_next(l, 0, s, &b, g_err, sizeof g_err), 0);
    g_err[0] = '\0';
    assert_int_equal(loader_next(l, 0, 8, &b, g_err, sizeof g_err), -1);
    /* Streamed reads go a whole chunk at a time: the message names the
     * damaged chunk's samples. */
    if (!strstr(g_err, "cannot read samples 200..219"))
      fail_msg("message '%s' does not name the samples of the damaged chunk", g_err);
    assert_int_equal(loader_next(l, 0, 9, &b, g_err, sizeof g_err), -1);
    /* After the damaged chunk the stream reads again. */
    assert_int_equal(loader_next(l, 0, 10, &b, g_err, sizeof g_err), 0);
    assert_true(b.idx[0] == 240);
    assert_int_equal(loader_next(l, 1, 0, &b, g_err, sizeof g_err), 0);
    loader_free(l);
  }
  data_close(ds);
}

static void test_loader_refuses_cursors_outside_the_run(void **state) {
  (void)state;
  data_set *ds = open_set(write_file("end.h5", CHUNK), DATA_CACHE_STREAM);
  loader_opts o = opts_for(ds, SAMPLER_GLOBAL, 2, 1, 0);
  o.end_step = 30; /* epoch 1, step 5 */
  data_loader *l = make_loader(&o);
  loader_batch b;
  assert_int_equal(loader_next(l, 1, 4, &b, g_err, sizeof g_err), 0);
  assert_int_equal(loader_next(l, 1, 5, &b, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "outside the run"));
  assert_int_equal(loader_next(l, 0, 25, &b, g_err, sizeof g_err), -1);
  assert_int_equal(loader_next(l, 0, 0, &b, g_err, sizeof g_err), 0);
  loader_free(l);
  data_close(ds);
}

static void test_loader_refuses_bad_options(void **state) {
  (void)state;
  data_set *ds = open_set(write_file("opts.h5", CHUNK), DATA_CACHE_AUTO);
  data_loader *l = (data_loader *)1;
  loader_opts o = opts_for(ds, SAMPLER_GLOBAL, 2, 5, 0);
  assert_int_equal(loader_create(&l, &o, g_err, sizeof g_err), -1);
  assert_null(l);
  assert_non_null(strstr(g_err, "does not split over 5 ranks"));
  o = opts_for(ds, SAMPLER_GLOBAL, 2, 1, 0);
  o.global_batch = N + 1;
  assert_int_equal(loader_create(&l, &o, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "larger than the 600 samples"));
  o = opts_for(ds, SAMPLER_GLOBAL, LOADER_MAX_PREFETCH + 1, 1, 0);
  assert_int_equal(loader_create(&l, &o, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "prefetch"));
  o = opts_for(ds, SAMPLER_BLOCK, 2, 1, 0);
  o.order.window = 0;
  assert_int_equal(loader_create(&l, &o, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "window"));
  data_close(ds);
}

/* Frees at every point of a loader's life: never used, idle, with reads in
 * flight, after a failure. ASan / TSan builds check that nothing is left. */
static void test_loader_stops_cleanly(void **state) {
  (void)state;
  const char *path = write_file("stop.h5", CHUNK);
  damage_chunk(path, 1);
  data_set *ds = open_set(path, DATA_CACHE_STREAM);
  loader_opts o = opts_for(ds, SAMPLER_GLOBAL, 4, 1, 0);
  loader_free(make_loader(&o));
  loader_free(NULL);
  loader_batch b;
  for (int i = 0; i < 20; i++) {
    data_loader *l = make_loader(&o);
    /* Global order: almost every batch touches the damaged chunk. */
    (void)loader_next(l, (uint64_t)i, 3, &b, g_err, sizeof g_err);
    loader_free(l);
  }
  o = opts_for(ds, SAMPLER_NONE, 4, 1, 0);
  data_loader *l = make_loader(&o);
  assert_int_equal(loader_next(l, 0, 0, &b, g_err, sizeof g_err), -1); /* chunk 1: step 0 */
  loader_free(l);
  data_close(ds);
}

/* ---- the HDF5 lock -------------------------------------------------------------- */

/* While a loader thread streams the training set, the main thread calls
 * every kind of HDF5-using entry point of data/ on other files and sets.
 * Without the process-wide lock this corrupts HDF5's state (or crashes);
 * with it every value is right. */
static void test_loader_beside_main_thread_hdf5(void **state) {
  (void)state;
  const char *path = write_file("busy.h5", CHUNK);
  const char *other = write_file("other.h5", 7);
  char synth[512];
  snprintf(synth, sizeof synth, "%s", h5f_tmp("synth.h5"));
  data_set *ds = open_set(path, DATA_CACHE_STREAM);
  data_set *ref = open_set(path, DATA_CACHE_MEMORY);
  loader_opts o = opts_for(ds, SAMPLER_GLOBAL, 3, 1, 0);
  data_loader *l = make_loader(&o);
  FILE *devnull = fopen("/dev/null", "w");
  assert_non_null(devnull);
  loader_batch b;
  float x[10 * E];
  for (uint64_t g = 0; g < 100; g++) {
    assert_int_equal(loader_next(l, g / 25, g % 25, &b, g_err, sizeof g_err), 0);
    check_batch(&b, &o, 0, ref, g / 25, g % 25);
    data_set *t = open_set(other, DATA_CACHE_STREAM);
    uint64_t idx[10];
    for (int i = 0; i < 10; i++) idx[i] = (g * 37 + (uint64_t)i * 53) % N;
    assert_int_equal(data_read(t, idx, 10, NULL, x, NULL, NULL, g_err, sizeof g_err), 0);
    for (int i = 0; i < 10; i++) assert_true(x[i * E + 1] == (float)(idx[i] * E + 1));
    assert_int_equal(data_check_finite(t, 0, N, NULL, g_err, sizeof g_err), 0);
    data_close(t);
    if (g % 10 == 0) {
      assert_int_equal(data_info(other, NULL, 0, devnull, g_err, sizeof g_err), 0);
      assert_int_equal(convert_synthetic(synth, 50, 10, 4, 3, 1, g, g_err, sizeof g_err), 0);
    }
  }
  fclose(devnull);
  loader_free(l);
  data_close(ref);
  data_close(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loader_batches_equal_direct_reads),
      cmocka_unit_test(test_loader_restarts_at_any_cursor),
      cmocka_unit_test(test_loader_block_size_defaults_to_the_chunk),
      cmocka_unit_test(test_loader_reports_a_failure_at_its_step),
      cmocka_unit_test(test_loader_refuses_cursors_outside_the_run),
      cmocka_unit_test(test_loader_refuses_bad_options),
      cmocka_unit_test(test_loader_stops_cleanly),
      cmocka_unit_test(test_loader_beside_main_thread_hdf5),
  };
  return cmocka_run_group_tests(tests, h5f_make_dir, h5f_remove_dir);
}
