/* Unit tests for the hostile-input checks of data/ (h5guard.h, dataset.h
 * "Hostile input"): special files, declared sizes the storage cannot hold,
 * links, and a deflate bomb in the labels, through data_open and
 * data_info. tests/e2e/hostile_data.sh runs many more cases through the
 * binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "dataset.h"
#include "h5fixture.h"
#include "info.h"

static char g_err[DATA_ERRLEN];

static void err_has(const char *want) {
  if (!strstr(g_err, want)) fail_msg("message '%s' lacks '%s'", g_err, want);
}

static int try_open(const char *path) {
  data_set *ds = NULL;
  g_err[0] = '\0';
  int rc = data_open(&ds, path, "/x", "/y", (size_t)1 << 26, g_err, sizeof g_err);
  data_close(ds);
  return rc;
}

/* data_info with a histogram of /y (which reads it whole). */
static int try_info(const char *path) {
  FILE *null = fopen("/dev/null", "w");
  g_err[0] = '\0';
  const char *hist[] = {"/y"};
  int rc = data_info(path, hist, 1, null, g_err, sizeof g_err);
  fclose(null);
  return rc;
}

/* A good (16, 4) float32 set with int64 labels, written whole. */
static void put_good(hid_t f) {
  static float x[16 * 4];
  static int64_t y[16];
  hsize_t xd[2] = {16, 4}, yd[1] = {16};
  h5f_put(f, "/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
  h5f_put(f, "/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, y, 0);
}

/* A dataset created and never written: a declaration without storage. */
static void put_unwritten(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                          hsize_t chunk_rows) {
  hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk_rows) {
    hsize_t c[2] = {chunk_rows, rank > 1 ? dims[1] : 1};
    assert_true(H5Pset_chunk(dcpl, rank, c) >= 0);
  }
  hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  assert_true(d >= 0);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
}

static void test_h5guard_refuses_special_files(void **state) {
  (void)state;
  const char *fifo = h5f_tmp("pipe.h5");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(try_open(fifo), -1);
  err_has("is a FIFO (named pipe), not an HDF5 file");
  assert_int_equal(try_info(fifo), -1);
  err_has("is a FIFO (named pipe), not an HDF5 file");
  assert_int_equal(try_open("/dev/null"), -1);
  err_has("'/dev/null' is a character device, not an HDF5 file");
}

/* 1e8 samples declared in a file of a few KB: refused before the labels
 * (800 MB) are allocated. */
static void test_h5guard_refuses_declarations_without_storage(void **state) {
  (void)state;
  const char *p = h5f_tmp("declared.h5");
  hid_t f = h5f_create(p);
  hsize_t xd[2] = {100000000, 4}, yd[1] = {100000000};
  put_unwritten(f, "/x", H5T_IEEE_F32LE, 2, xd, 0);
  put_unwritten(f, "/y", H5T_STD_I64LE, 1, yd, 0);
  H5Fclose(f);
  assert_int_equal(try_open(p), -1);
  err_has("dataset '/x' in '");
  err_has("declares 1600000000 bytes but stores fewer");
  assert_int_equal(try_info(p), -1); /* the label histogram */
  err_has("dataset '/y' in '");
  err_has("declares 800000000 bytes but stores fewer");

  /* Chunked: only some of the chunks written. */
  p = h5f_tmp("chunks.h5");
  f = h5f_create(p);
  static float x[1000 * 4];
  static int64_t y[1000];
  hsize_t xd2[2] = {1000, 4}, yd2[1] = {1000};
  h5f_put(f, "/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd2, x, 100);
  put_unwritten(f, "/y", H5T_STD_I64LE, 1, yd2, 100);
  hid_t yset = H5Dopen2(f, "/y", H5P_DEFAULT);
  hid_t fs = H5Dget_space(yset), ms = H5Screate_simple(1, (hsize_t[]){100}, NULL);
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, (hsize_t[]){0}, NULL, (hsize_t[]){100}, NULL);
  assert_true(H5Dwrite(yset, H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, y) >= 0);
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(yset);
  H5Fclose(f);
  assert_int_equal(try_open(p), -1);
  err_has("dataset '/y' in '");
  err_has("stores 1 of its 10 chunks");
}

/* Labels whose one chunk (128 B declared) inflates to 16 MiB. */
static void test_h5guard_refuses_deflate_bomb_in_labels(void **state) {
  (void)state;
  const char *p = h5f_tmp("bomb.h5");
  hid_t f = h5f_create(p);
  static float x[16 * 4];
  hsize_t xd[2] = {16, 4}, yd[1] = {16}, chunk[1] = {16};
  h5f_put(f, "/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
  hid_t space = H5Screate_simple(1, yd, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, chunk);
  H5Pset_deflate(dcpl, 1);
  hid_t yset = H5Dcreate2(f, "/y", H5T_STD_I64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  size_t big = (size_t)16 << 20;
  unsigned char *zeros = calloc(1, big), *z = malloc(compressBound(big));
  uLongf zlen = compressBound(big);
  assert_int_equal(compress2(z, &zlen, zeros, big, 9), Z_OK);
  assert_true(H5Dwrite_chunk(yset, H5P_DEFAULT, 0, (hsize_t[]){0}, zlen, z) >= 0);
  free(zeros);
  free(z);
  H5Dclose(yset);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
  assert_int_equal(try_open(p), -1);
  err_has("cannot read '/y' in '");
  err_has("inflates to more than its 128 bytes (a deflate bomb?)");
  assert_int_equal(try_info(p), -1);
  err_has("inflates to more than its 128 bytes");
}

/* External links: refused by default, followed to a regular file of the
 * same directory when allowed. */
static void test_h5guard_external_links(void **state) {
  (void)state;
  char target[512];
  snprintf(target, sizeof target, "%s", h5f_tmp("target.h5"));
  hid_t f = h5f_create(target);
  put_good(f);
  H5Fclose(f);
  const char *p = h5f_tmp("linked.h5");
  f = h5f_create(p);
  assert_true(H5Lcreate_external("target.h5", "/x", f, "/x", H5P_DEFAULT, H5P_DEFAULT) >= 0);
  assert_true(H5Lcreate_external("target.h5", "/y", f, "/y", H5P_DEFAULT, H5P_DEFAULT) >= 0);
  assert_true(H5Lcreate_external("../elsewhere.h5", "/y", f, "/z", H5P_DEFAULT, H5P_DEFAULT) >= 0);
  H5Fclose(f);
  assert_int_equal(try_open(p), -1);
  err_has("cannot open '/x' in '");
  err_has("external link to '/x' in 'target.h5', refused (data.allow_links is false)");
  data_allow_links(1);
  assert_int_equal(try_open(p), 0);
  data_set *ds = NULL;
  assert_int_equal(data_open(&ds, p, "/x", "/z", 1 << 20, g_err, sizeof g_err), -1);
  err_has("refers to '../elsewhere.h5', outside the data file's directory");
  data_allow_links(0);
  assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_h5guard_refuses_special_files),
      cmocka_unit_test(test_h5guard_refuses_declarations_without_storage),
      cmocka_unit_test(test_h5guard_refuses_deflate_bomb_in_labels),
      cmocka_unit_test(test_h5guard_external_links),
  };
  return cmocka_run_group_tests(tests, h5f_make_dir, h5f_remove_dir);
}
