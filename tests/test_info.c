/* Unit tests for data/info (`midscale data-info`): the report on fixtures
 * written with the HDF5 C API, captured with open_memstream. */
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
#include <unistd.h>

#include "dataset.h"
#include "h5fixture.h"
#include "h5util.h"
#include "testutil.h"
#include "info.h"

static char g_err[DATA_ERRLEN];
static char *g_out;

/* Runs data_info into g_out (freed by the next call). */
static int info(const char *path, const char *const *hist, int n_hist) {
  size_t len;
  free(g_out);
  g_out = NULL;
  FILE *f = open_memstream(&g_out, &len);
  assert_non_null(f);
  g_err[0] = '\0';
  int rc = data_info(path, hist, n_hist, f, g_err, sizeof g_err);
  fclose(f);
  return rc;
}



/* /exp/run1/x: float32 BE (100, 4, 5) chunked 8 rows, gzip; /exp/run1/y_labels
 * int16 with a known histogram; /plain contiguous float64 (3,); /scalar. */
static const char *write_fixture(void) {
  const char *p = h5f_tmp("info.h5");
  float x[100 * 20] = {0};
  int16_t y[100];
  double plain[3] = {1, 2, 3};
  uint8_t scalar = 7;
  for (int i = 0; i < 100; i++) y[i] = (int16_t)(i < 70 ? 0 : i < 90 ? 1 : -2);
  hid_t f = h5f_create(p);
  hsize_t xd[3] = {100, 4, 5}, yd[1] = {100}, pd[1] = {3};
  h5f_put(f, "/exp/run1/x", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 3, xd, x, 8);
  h5f_put(f, "/exp/run1/y_labels", H5T_STD_I16LE, H5T_NATIVE_INT16, 1, yd, y, 0);
  h5f_put(f, "/plain", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, pd, plain, 0);
  h5f_put(f, "/scalar", H5T_STD_U8LE, H5T_NATIVE_UINT8, 0, NULL, &scalar, 0);
  H5Fclose(f);
  return p;
}

/* The one lister of data/ (data_info, data_open's "not found"): every
 * dataset under every group, full paths, in name order. */
static void test_info_lister_finds_nested_datasets_in_order(void **state) {
  (void)state;
  const char *p = write_fixture();
  static const char *const want[] = {"/exp/run1/x", "/exp/run1/y_labels", "/plain", "/scalar"};
  hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  char **names = NULL;
  size_t count = 0;
  h5util_guard q;
  h5util_enter(&q);
  int rc = h5util_list_datasets(f, p, &names, &count, g_err, sizeof g_err);
  h5util_leave(&q);
  H5Fclose(f);
  assert_int_equal(rc, 0);
  assert_int_equal(count, 4);
  for (size_t i = 0; i < count; i++) assert_string_equal(names[i], want[i]);
  h5util_free_names(names, count);
}

static void test_info_describes_every_dataset(void **state) {
  (void)state;
  const char *p = write_fixture();
  assert_int_equal(info(p, NULL, 0), 0);
  tu_assert_contains(g_out, ": HDF5, ");
  tu_assert_contains(g_out, ", 4 datasets\n");
  tu_assert_contains(g_out, 
      "\n/exp/run1/x\n  dtype    float32 BE\n  shape    (100, 4, 5): 100 samples\n"
      "  layout   chunked (8, 4, 5), 640 B per chunk\n  filters  gzip 1\n"
      "  storage  ");
  tu_assert_contains(g_out, "for 8.0 KB of data (ratio ");
  tu_assert_contains(g_out, 
      "\n/plain\n  dtype    float64\n  shape    (3,): 3 samples\n  layout   contiguous\n"
      "  filters  none\n  storage  24 B on disk for 24 B of data (ratio 1.00)\n");
  tu_assert_contains(g_out, "\n/scalar\n  dtype    uint8\n  shape    () (a scalar: no sample axis)\n");
  /* The labels: automatic histogram, sorted by value, negatives flagged. */
  tu_assert_contains(g_out, 
      "label histogram of /exp/run1/y_labels: 100 values, 3 distinct, min -2, max 1 "
      "(negative labels: not class indices)\n"
      "        -2         10  10.00%  ######\n"
      "         0         70  70.00%  ########################################\n"
      "         1         20  20.00%  ###########\n");
  /* Datasets appear in name order. */
  assert_true(strstr(g_out, "/exp/run1/x\n") < strstr(g_out, "/plain\n"));
}

static void test_info_histogram_on_request(void **state) {
  (void)state;
  const char *p = write_fixture();
  const char *want[1] = {"scalar"};
  assert_int_equal(info(p, want, 1), 0);
  tu_assert_contains(g_out, "label histogram of /scalar: 1 values, 1 distinct, min 7, max 7\n");
  const char *flt[1] = {"/plain"};
  assert_int_equal(info(p, flt, 1), -1);
  tu_assert_contains(g_err, "--histogram: '/plain' in '");
  tu_assert_contains(g_err, "has type float64; histograms are of integer labels");
  const char *missing[1] = {"/nope"};
  assert_int_equal(info(p, missing, 1), -1);
  tu_assert_contains(g_err, "--histogram: dataset '/nope' not found in '");
  assert_string_equal(g_out, ""); /* refused before printing */
}

static void test_info_refuses_what_is_not_hdf5(void **state) {
  (void)state;
  assert_int_equal(info(h5f_tmp("missing.h5"), NULL, 0), -1);
  tu_assert_contains(g_err, "missing.h5': No such file or directory");
  const char *d = h5f_tmp("dir.h5");
  mkdir(d, 0700);
  assert_int_equal(info(d, NULL, 0), -1);
  tu_assert_contains(g_err, "is a directory, not an HDF5 file");
  const char *t = h5f_tmp("text.h5");
  h5f_write_text(t, "hello\n");
  assert_int_equal(info(t, NULL, 0), -1);
  tu_assert_contains(g_err, "is not an HDF5 file (6 bytes, no HDF5 signature)");
  const char *p = write_fixture();
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(truncate(p, st.st_size / 2), 0);
  assert_int_equal(info(p, NULL, 0), -1);
  tu_assert_contains(g_err, "truncated");
  assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

static int teardown(void **state) {
  free(g_out);
  g_out = NULL;
  return h5f_remove_dir(state);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_info_lister_finds_nested_datasets_in_order),
      cmocka_unit_test(test_info_describes_every_dataset),
      cmocka_unit_test(test_info_histogram_on_request),
      cmocka_unit_test(test_info_refuses_what_is_not_hdf5),
  };
  return cmocka_run_group_tests(tests, h5f_make_dir, teardown);
}
