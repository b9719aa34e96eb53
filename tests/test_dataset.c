/* Unit tests for data/dataset and data/convert: fixtures are written with the
 * HDF5 C API (and idx files by hand) in a fresh temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "convert.h"
#include "dataset.h"
#include "testutil.h"
#include "sampler.h"

#define BIG_BUDGET ((size_t)1 << 30)

/* A data_norm that only scales. */
#define SCALE(s) (&(data_norm){.scale = (s), .n_mean = 0, .mean = NULL, .n_std = 0, .std = NULL})

static char g_dir[256];
static char g_err[DATA_ERRLEN];

/* ---- fixtures -------------------------------------------------------------- */

static int make_dir(void **state) {
  (void)state;
  return tu_make_tmpdir(g_dir, sizeof g_dir, "dataset");
}

static int remove_dir(void **state) {
  (void)state;
  return tu_remove_tree(g_dir);
}

/* "<tmpdir>/name", in one of eight rotating buffers (a test needs fewer). */
static const char *tmp(const char *name) {
  static char bufs[8][512];
  static unsigned next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
  return b;
}

/* Writes dataset `name` (intermediate groups created) of the given shape;
 * chunk_rows > 0 makes it chunked and gzip-compressed. */
static void put(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank,
                const hsize_t *dims, const void *data, hsize_t chunk_rows) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk_rows) {
    hsize_t chunk[H5S_MAX_RANK];
    chunk[0] = chunk_rows;
    for (int i = 1; i < rank; i++) chunk[i] = dims[i];
    assert_true(H5Pset_chunk(dcpl, rank, chunk) >= 0);
    assert_true(H5Pset_deflate(dcpl, 1) >= 0);
  }
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t set = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
  assert_true(set >= 0);
  assert_true(H5Dwrite(set, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  H5Dclose(set);
  H5Sclose(space);
  H5Pclose(dcpl);
  H5Pclose(lcpl);
}

static hid_t create_file(const char *path) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  return f;
}

/* One dataset of a fixture: file and memory types, shape, data. */
typedef struct {
  hid_t ftype, mtype;
  int rank;
  hsize_t dims[3];
  const void *data;
} column;

/* A fixture file holding datasets /x and /y (contiguous). */
static void write_xy(const char *path, column x, column y) {
  hid_t f = create_file(path);
  put(f, "/x", x.ftype, x.mtype, x.rank, x.dims, x.data, 0);
  put(f, "/y", y.ftype, y.mtype, y.rank, y.dims, y.data, 0);
  H5Fclose(f);
}

/* A file with /x = uint8 (n, 2, 3) (value (i*6 + k) % 251) and /y = int64
 * labels i % 10. */
static void write_u8_pair(const char *path, hsize_t n) {
  unsigned char *x = malloc(n * 6);
  int64_t *y = malloc(n * sizeof *y);
  for (hsize_t i = 0; i < n * 6; i++) x[i] = (unsigned char)(i % 251);
  for (hsize_t i = 0; i < n; i++) y[i] = (int64_t)(i % 10);
  write_xy(path, (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, {n, 2, 3}, x},
           (column){H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {n}, y});
  free(x);
  free(y);
}

/* Opens and expects failure; returns the message. */
static const char *open_fails(const char *path, const char *x, const char *y) {
  data_set *ds = (data_set *)1;
  g_err[0] = '\0';
  assert_int_equal(data_open(&ds, path, x, y, BIG_BUDGET, g_err, sizeof g_err), -1);
  assert_null(ds);
  assert_true(strlen(g_err) > 0);
  assert_null(strchr(g_err, '\n'));
  return g_err;
}

/* Opens and expects exactly the message want_fmt, whose one %s is the path. */
static void open_fails_with(const char *path, const char *x, const char *y,
                            const char *want_fmt) {
  char want[1024];
  snprintf(want, sizeof want, want_fmt, path);
  assert_string_equal(open_fails(path, x, y), want);
}

static data_set *open_ok(const char *path, const char *x, const char *y, size_t budget) {
  data_set *ds = NULL;
  int rc = data_open(&ds, path, x, y, budget, g_err, sizeof g_err);
  if (rc != 0) fail_msg("data_open: %s", g_err);
  assert_non_null(ds);
  return ds;
}

/* ---- reading ----------------------------------------------------------------- */

static void test_dataset_reads_uint8_scaled(void **state) {
  (void)state;
  const char *p = tmp("u8.h5");
  write_u8_pair(p, 4);
  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  assert_int_equal(data_count(ds), 4);
  assert_int_equal(data_sample_elems(ds), 6);
  assert_int_equal(data_input_dtype(ds), DATA_U8);
  assert_true(data_in_memory(ds));

  const uint64_t idx[3] = {3, 0, 2};
  float x[18];
  int32_t y[3];
  assert_int_equal(data_read(ds, idx, 3, SCALE(0.5f), x, y, NULL, g_err, sizeof g_err), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(y[i], (int32_t)idx[i]);
    for (int k = 0; k < 6; k++) assert_true(x[i * 6 + k] == 0.5f * (float)(idx[i] * 6 + k));
  }
  data_close(ds);
}

static void test_dataset_reads_float32_scaled(void **state) {
  (void)state;
  const char *p = tmp("f32.h5");
  float xs[5 * 6];
  int64_t ys[5] = {4, 3, 2, 1, 0};
  for (int i = 0; i < 30; i++) xs[i] = (float)i * 0.25f - 3.0f;
  write_xy(p, (column){H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, {5, 2, 3}, xs},
           (column){H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {5}, ys});
  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  assert_int_equal(data_input_dtype(ds), DATA_F32);
  assert_int_equal(data_sample_elems(ds), 6);
  const uint64_t idx[2] = {4, 1};
  float x[12];
  int32_t y[2];
  /* No norm: the values as stored. */
  assert_int_equal(data_read(ds, idx, 2, NULL, x, y, NULL, g_err, sizeof g_err), 0);
  assert_memory_equal(x, xs + 4 * 6, 6 * sizeof(float));
  assert_memory_equal(x + 6, xs + 1 * 6, 6 * sizeof(float));
  assert_int_equal(y[0], 0);
  assert_int_equal(y[1], 3);
  /* The scale applies to float inputs too. */
  assert_int_equal(data_read(ds, idx, 2, SCALE(3.0f), x, y, NULL, g_err, sizeof g_err), 0);
  for (int k = 0; k < 6; k++) {
    assert_true(x[k] == xs[4 * 6 + k] * 3.0f);
    assert_true(x[6 + k] == xs[1 * 6 + k] * 3.0f);
  }
  data_close(ds);
}

static void test_dataset_reads_integer_label_types(void **state) {
  (void)state;
  const struct {
    hid_t type;
    int rank;
  } cases[] = {{H5T_STD_U8LE, 1}, {H5T_STD_I16LE, 1}, {H5T_STD_I64LE, 1},
               {H5T_STD_I32BE, 1}, {H5T_STD_U16LE, 2}};
  const int64_t labels[4] = {7, 0, 255, 3};
  const unsigned char xs[4] = {1, 2, 3, 4};
  const char *p = tmp("labels.h5");
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    write_xy(p, (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {4}, xs},
             (column){cases[c].type, H5T_NATIVE_INT64, cases[c].rank, {4, 1}, labels});
    data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
    assert_int_equal(data_sample_elems(ds), 1);
    const uint64_t idx[4] = {0, 1, 2, 3};
    float x[4];
    int32_t y[4];
    assert_int_equal(data_read(ds, idx, 4, SCALE(1.0f), x, y, NULL, g_err, sizeof g_err), 0);
    for (int i = 0; i < 4; i++) {
      assert_int_equal(y[i], labels[i]);
      assert_true(x[i] == (float)xs[i]);
    }
    data_close(ds);
  }
}

/* Reads the same shuffled, repeating index list in memory and streaming
 * and checks both against the source. */
static void check_modes_agree(const char *path, hsize_t n, data_dtype dtype) {
  data_set *mem = open_ok(path, "/x", "/y", BIG_BUDGET);
  data_set *str = open_ok(path, "/x", "/y", 0);
  assert_true(data_in_memory(mem));
  assert_false(data_in_memory(str));
  assert_int_equal(data_input_dtype(str), dtype);
  assert_int_equal(data_sample_elems(str), 15);

  /* A shuffle of all rows, a consecutive run, repeats, and the last row. */
  enum { M = 260 };
  uint64_t idx[M];
  uint64_t *perm = malloc(n * sizeof *perm);
  sampler_permutation(3, 0, n, perm);
  size_t m = 0;
  for (hsize_t i = 0; i < n; i++) idx[m++] = perm[i];
  for (uint64_t i = 50; i < 80; i++) idx[m++] = i;
  for (int i = 0; i < 29; i++) idx[m++] = (uint64_t)(i % 3) * 40 + 7;
  idx[m++] = n - 1;
  assert_int_equal(m, M);
  free(perm);

  float *xa = malloc(M * 15 * sizeof *xa), *xb = malloc(M * 15 * sizeof *xb);
  int32_t ya[M], yb[M];
  for (int pass = 0; pass < 2; pass++) {
    /* The second pass reads a prefix, reusing the streaming scratch space. */
    size_t count = pass ? 37 : M;
    memset(xb, 0xff, M * 15 * sizeof *xb);
    assert_int_equal(data_read(mem, idx, count, SCALE(0.25f), xa, ya, NULL, g_err, sizeof g_err), 0);
    assert_int_equal(data_read(str, idx, count, SCALE(0.25f), xb, yb, NULL, g_err, sizeof g_err), 0);
    assert_memory_equal(xa, xb, count * 15 * sizeof *xa);
    assert_memory_equal(ya, yb, count * sizeof *ya);
    for (size_t i = 0; i < count; i++) {
      assert_int_equal(ya[i], (int32_t)(idx[i] % 7));
      for (int k = 0; k < 15; k++) {
        double v = (double)((idx[i] * 15 + (uint64_t)k) % 251);
        double want = 0.25 * (dtype == DATA_U8 ? v : v - 100.0);
        assert_true(xa[i * 15 + (size_t)k] == (float)want);
      }
    }
  }
  free(xa);
  free(xb);
  data_close(mem);
  data_close(str);
}

static void write_modes_file(const char *path, hsize_t n, data_dtype dtype) {
  unsigned char *xu = malloc(n * 15);
  float *xf = malloc(n * 15 * sizeof *xf);
  int16_t *y = malloc(n * sizeof *y);
  for (hsize_t i = 0; i < n * 15; i++) {
    xu[i] = (unsigned char)(i % 251);
    xf[i] = (float)(i % 251) - 100.0f;
  }
  for (hsize_t i = 0; i < n; i++) y[i] = (int16_t)(i % 7);
  hid_t f = create_file(path);
  hsize_t xd[3] = {n, 3, 5}, yd[1] = {n};
  if (dtype == DATA_U8)
    put(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, xd, xu, 7);
  else
    put(f, "/x", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 3, xd, xf, 7);
  put(f, "/y", H5T_STD_I16LE, H5T_NATIVE_INT16, 1, yd, y, 0);
  H5Fclose(f);
  free(xu);
  free(xf);
  free(y);
}

static void test_dataset_streaming_matches_memory(void **state) {
  (void)state;
  const char *p = tmp("modes.h5");
  /* float32 is stored big-endian: HDF5 converts on read in both modes. */
  for (int d = DATA_U8; d <= DATA_F32; d++) {
    write_modes_file(p, 200, (data_dtype)d);
    check_modes_agree(p, 200, (data_dtype)d);
  }
}

static void test_dataset_mem_budget_decides_mode(void **state) {
  (void)state;
  const char *p = tmp("budget.h5");
  write_u8_pair(p, 10); /* 60 bytes of inputs */
  data_set *exact = open_ok(p, "/x", "/y", 60);
  data_set *under = open_ok(p, "/x", "/y", 59);
  assert_true(data_in_memory(exact));
  assert_false(data_in_memory(under));
  data_close(exact);
  data_close(under);
}

static void test_dataset_read_rejects_index_out_of_range(void **state) {
  (void)state;
  const char *p = tmp("range.h5");
  write_u8_pair(p, 4);
  const size_t budgets[2] = {BIG_BUDGET, 0};
  for (int b = 0; b < 2; b++) {
    data_set *ds = open_ok(p, "/x", "/y", budgets[b]);
    const uint64_t idx[2] = {1, 4};
    float x[12];
    int32_t y[2];
    g_err[0] = '\0';
    assert_int_equal(data_read(ds, idx, 2, SCALE(1.0f), x, y, NULL, g_err, sizeof g_err), -1);
    assert_non_null(strstr(g_err, "sample index 4 is out of range"));
    assert_non_null(strstr(g_err, p));
    data_close(ds);
  }
}

static void test_dataset_close_accepts_null(void **state) {
  (void)state;
  data_close(NULL);
}

/* ---- open errors ------------------------------------------------------------- */

static void test_dataset_open_missing_file(void **state) {
  (void)state;
  const char *p = tmp("does_not_exist.h5");
  open_fails_with(p, "/x", "/y", "cannot open '%s': No such file or directory");
}

static void test_dataset_open_not_hdf5(void **state) {
  (void)state;
  const char *p = tmp("text.h5");
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs("this is not HDF5\n", f);
  fclose(f);
  open_fails_with(p, "/x", "/y", "'%s' is not an HDF5 file (17 bytes, no HDF5 signature)");
}

static void write_split_file(const char *path) {
  unsigned char x[6] = {0};
  unsigned char y[6] = {0};
  hsize_t xd[2] = {6, 1}, yd[1] = {6};
  hid_t f = create_file(path);
  put(f, "/train/images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, xd, x, 0);
  put(f, "/train/labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yd, y, 0);
  yd[0] = 5;
  put(f, "/test/labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yd, y, 0);
  put(f, "/test/images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, xd, x, 0);
  hid_t g = H5Gcreate2(f, "/empty_group", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
  H5Fclose(f);
}

static void test_dataset_open_missing_dataset_lists_existing(void **state) {
  (void)state;
  const char *p = tmp("split.h5");
  write_split_file(p);
  open_fails_with(p, "/train/imagez", "/train/labels",
                  "dataset '/train/imagez' not found in '%s'; datasets in the file: "
                  "/test/images, /test/labels, /train/images, /train/labels");
  /* A missing group on the way is the same error. */
  assert_non_null(strstr(open_fails(p, "/train/images", "/val/labels"),
                         "dataset '/val/labels' not found"));
}

static void test_dataset_open_group_is_not_a_dataset(void **state) {
  (void)state;
  const char *p = tmp("split.h5");
  write_split_file(p);
  open_fails_with(p, "/train", "/train/labels", "'/train' in '%s' is not a dataset");
}

static void test_dataset_open_mismatched_counts(void **state) {
  (void)state;
  const char *p = tmp("split.h5");
  write_split_file(p);
  const char *msg = open_fails(p, "/test/images", "/test/labels");
  assert_non_null(strstr(msg, "'/test/images' has 6 samples but '/test/labels' has 5"));
  assert_non_null(strstr(msg, p));
}

static void test_dataset_open_rejects_int32_inputs(void **state) {
  (void)state;
  const char *p = tmp("int32.h5");
  int32_t x[3] = {1, 2, 3};
  uint8_t y[3] = {0, 1, 0};
  write_xy(p, (column){H5T_STD_I32LE, H5T_NATIVE_INT32, 1, {3}, x},
           (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {3}, y});
  open_fails_with(p, "/x", "/y",
                  "dataset '/x' in '%s' has type int32; supported input types are uint8, int8, "
                  "uint16, int16, float16, float32 and float64");
}

static void test_dataset_open_rejects_string_labels(void **state) {
  (void)state;
  const char *p = tmp("slabels.h5");
  uint8_t x[3] = {1, 2, 3};
  char y[3][4] = {"cat", "dog", "cat"};
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, 4);
  write_xy(p, (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {3}, x}, (column){st, st, 1, {3}, y});
  H5Tclose(st);
  open_fails_with(p, "/x", "/y",
                  "dataset '/y' in '%s' has type string; labels must be integers (class "
                  "indices) or floats (regression targets)");
}

static void test_dataset_open_rejects_label_matrix(void **state) {
  (void)state;
  const char *p = tmp("lmatrix.h5");
  uint8_t x[3] = {1, 2, 3}, y[6] = {0};
  write_xy(p, (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {3}, x},
           (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {3, 2}, y});
  assert_non_null(strstr(open_fails(p, "/x", "/y"), "have shape (3, 2); integer labels are class indices of shape (N,) or (N, 1)"));
}

static void test_dataset_open_rejects_empty_dataset(void **state) {
  (void)state;
  const char *p = tmp("empty.h5");
  uint8_t dummy = 0;
  write_xy(p, (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {0, 4}, &dummy},
           (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {0}, &dummy});
  assert_non_null(strstr(open_fails(p, "/x", "/y"), "has no samples"));
}

static void test_dataset_errors_print_nothing(void **state) {
  (void)state;
  const char *p = tmp("split.h5"), *log = tmp("stderr.log");
  write_split_file(p);
  fflush(stderr);
  int saved = dup(2);
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  data_set *ds = NULL;
  int rc = data_open(&ds, p, "/nope", "/train/labels", 0, g_err, sizeof g_err);
  int rc2 = data_open(&ds, p, "/train", "/train/labels", 0, g_err, sizeof g_err);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  assert_int_equal(rc, -1);
  assert_int_equal(rc2, -1);
  struct stat st;
  assert_int_equal(stat(log, &st), 0);
  assert_int_equal(st.st_size, 0);
}

/* ---- labels ---------------------------------------------------------------- */

static void write_labels_file(const char *path, const int16_t *y, hsize_t n) {
  uint8_t *x = calloc(n, 1);
  write_xy(path, (column){H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {n}, x},
           (column){H5T_STD_I16LE, H5T_NATIVE_INT16, 1, {n}, y});
  free(x);
}

static void test_dataset_check_labels_accepts_valid(void **state) {
  (void)state;
  const char *p = tmp("good_labels.h5");
  int16_t y[60];
  for (int i = 0; i < 60; i++) y[i] = (int16_t)(i % 10);
  write_labels_file(p, y, 60);
  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  assert_int_equal(data_check_labels(ds, 10, g_err, sizeof g_err), 0);
  data_close(ds);
}

static void test_dataset_check_labels_names_first_bad_sample(void **state) {
  (void)state;
  char want[700];
  const char *p = tmp("bad_labels.h5");
  int16_t y[60];
  for (int i = 0; i < 60; i++) y[i] = (int16_t)(i % 10);
  y[57] = 11;
  y[59] = -1;
  write_labels_file(p, y, 60);
  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  g_err[0] = '\0';
  assert_int_equal(data_check_labels(ds, 10, g_err, sizeof g_err), -1);
  snprintf(want, sizeof want,
           "label 11 of sample 57 in '/y' of '%s' is outside [0, 10)", p);
  assert_string_equal(g_err, want);
  /* With room for 11, the negative label is the first bad one. */
  assert_int_equal(data_check_labels(ds, 12, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "label -1 of sample 59"));
  data_close(ds);
}

/* ---- convert_idx ------------------------------------------------------------- */

enum { IDX_N = 5, IDX_ROWS = 3, IDX_COLS = 4 };

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Writes an idx file: magic, dims (big-endian), then payload_len bytes of
 * payload; gzip-compressed when gz. */
static void write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims,
                      int ndims, const unsigned char *payload, size_t payload_len) {
  unsigned char hdr[16];
  put_be32(hdr, magic);
  for (int i = 0; i < ndims; i++) put_be32(hdr + 4 + 4 * i, dims[i]);
  size_t hdr_len = 4 + 4 * (size_t)ndims;
  if (gz) {
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, hdr, (unsigned)hdr_len), (int)hdr_len);
    if (payload_len) assert_int_equal(gzwrite(g, payload, (unsigned)payload_len), (int)payload_len);
    assert_int_equal(gzclose(g), Z_OK);
  } else {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(hdr, 1, hdr_len, f), hdr_len);
    assert_int_equal(fwrite(payload, 1, payload_len, f), payload_len);
    fclose(f);
  }
}

static unsigned char g_pixels[IDX_N * IDX_ROWS * IDX_COLS];
static const unsigned char g_digits[IDX_N] = {3, 1, 4, 1, 5};

typedef struct {
  const char *img, *lab, *out;
} idx_paths;

/* Writes <stem>-images.idx and <stem>-labels.idx (image payload cut short by
 * `missing` bytes, padded by `extra`) and names the output <stem>.h5. */
static idx_paths write_idx_pair(const char *stem, int gz, size_t missing, size_t extra) {
  idx_paths f;
  char name[128];
  unsigned char buf[sizeof g_pixels + 8] = {0};
  for (size_t i = 0; i < sizeof g_pixels; i++) g_pixels[i] = (unsigned char)(i * 37 + 11);
  memcpy(buf, g_pixels, sizeof g_pixels);
  const uint32_t idims[3] = {IDX_N, IDX_ROWS, IDX_COLS}, ldims[1] = {IDX_N};
  snprintf(name, sizeof name, "%s-images.idx%s", stem, gz ? ".gz" : "");
  f.img = tmp(name);
  write_idx(f.img, gz, 0x803, idims, 3, buf, sizeof g_pixels - missing + extra);
  snprintf(name, sizeof name, "%s-labels.idx%s", stem, gz ? ".gz" : "");
  f.lab = tmp(name);
  write_idx(f.lab, gz, 0x801, ldims, 1, g_digits, IDX_N);
  snprintf(name, sizeof name, "%s.h5", stem);
  f.out = tmp(name);
  return f;
}

/* Checks group `group` of `path` holds the idx fixture, byte for byte. */
static void check_idx_group(const char *path, const char *group) {
  char xn[64], yn[64];
  snprintf(xn, sizeof xn, "%s/images", group);
  snprintf(yn, sizeof yn, "%s/labels", group);

  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t x = H5Dopen2(f, xn, H5P_DEFAULT);
  assert_true(x >= 0);
  hid_t space = H5Dget_space(x), type = H5Dget_type(x), dcpl = H5Dget_create_plist(x);
  hsize_t dims[3];
  assert_int_equal(H5Sget_simple_extent_dims(space, dims, NULL), 3);
  assert_true(dims[0] == IDX_N && dims[1] == IDX_ROWS && dims[2] == IDX_COLS);
  assert_true(H5Tequal(type, H5T_STD_U8LE) > 0);
  assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
  assert_true(H5Pget_nfilters(dcpl) >= 1);
  H5Pclose(dcpl);
  H5Tclose(type);
  H5Sclose(space);
  H5Dclose(x);
  H5Fclose(f);

  data_set *ds = open_ok(path, xn, yn, BIG_BUDGET);
  assert_int_equal(data_count(ds), IDX_N);
  assert_int_equal(data_sample_elems(ds), IDX_ROWS * IDX_COLS);
  assert_int_equal(data_input_dtype(ds), DATA_U8);
  const uint64_t idx[IDX_N] = {0, 1, 2, 3, 4};
  float xs[IDX_N * IDX_ROWS * IDX_COLS];
  int32_t ys[IDX_N];
  assert_int_equal(data_read(ds, idx, IDX_N, SCALE(1.0f), xs, ys, NULL, g_err, sizeof g_err), 0);
  for (size_t i = 0; i < sizeof g_pixels; i++) assert_true(xs[i] == (float)g_pixels[i]);
  for (int i = 0; i < IDX_N; i++) assert_int_equal(ys[i], g_digits[i]);
  data_close(ds);
}

static void test_dataset_convert_idx_roundtrip_gzip(void **state) {
  (void)state;
  idx_paths f = write_idx_pair("gz", 1, 0, 0);
  if (convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err)) fail_msg("%s", g_err);
  check_idx_group(f.out, "/train");
}

static void test_dataset_convert_idx_roundtrip_plain(void **state) {
  (void)state;
  idx_paths f = write_idx_pair("plain", 0, 0, 0);
  if (convert_idx(f.img, f.lab, f.out, "/test", g_err, sizeof g_err)) fail_msg("%s", g_err);
  check_idx_group(f.out, "/test");
}

static void test_dataset_convert_idx_replaces_group(void **state) {
  (void)state;
  idx_paths f = write_idx_pair("full", 0, 0, 0);
  /* First a different, smaller /train, then the fixture over it. */
  const uint32_t idims[3] = {2, 1, 1}, ldims[1] = {2};
  const unsigned char two[2] = {9, 9};
  const char *img2 = tmp("two-images.idx"), *lab2 = tmp("two-labels.idx");
  write_idx(img2, 0, 0x803, idims, 3, two, 2);
  write_idx(lab2, 0, 0x801, ldims, 1, two, 2);
  assert_int_equal(convert_idx(img2, lab2, f.out, "/train", g_err, sizeof g_err), 0);
  assert_int_equal(convert_idx(f.img, f.lab, f.out, "/test", g_err, sizeof g_err), 0);
  assert_int_equal(convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err), 0);
  check_idx_group(f.out, "/train");
  check_idx_group(f.out, "/test");
}

static void test_dataset_convert_idx_rejects_truncated(void **state) {
  (void)state;
  for (int gz = 0; gz < 2; gz++) {
    idx_paths f = write_idx_pair("short", gz, 3, 0);
    g_err[0] = '\0';
    assert_int_equal(convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err), -1);
    assert_non_null(strstr(g_err, f.img));
    assert_non_null(strstr(g_err, "truncated"));
    assert_non_null(strstr(g_err, "3 bytes missing"));
    /* Nothing was written. */
    assert_int_equal(access(f.out, F_OK), -1);
  }
}

static void test_dataset_convert_idx_rejects_trailing_bytes(void **state) {
  (void)state;
  idx_paths f = write_idx_pair("long", 1, 0, 2);
  assert_int_equal(convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, f.img));
  assert_non_null(strstr(g_err, "bytes after"));
}

static void test_dataset_convert_idx_rejects_bad_magic(void **state) {
  (void)state;
  idx_paths f = write_idx_pair("magic", 1, 0, 0);
  /* Arguments swapped: the label file is not an image file. */
  assert_int_equal(convert_idx(f.lab, f.img, f.out, "/train", g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, f.lab));
  assert_non_null(strstr(g_err, "magic 0x00000801, expected 0x00000803"));
}

static void test_dataset_convert_idx_rejects_count_mismatch(void **state) {
  (void)state;
  idx_paths f = write_idx_pair("count", 0, 0, 0);
  const uint32_t ldims[1] = {IDX_N - 1};
  write_idx(f.lab, 0, 0x801, ldims, 1, g_digits, IDX_N - 1);
  assert_int_equal(convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "has 5 images but"));
  assert_non_null(strstr(g_err, "has 4 labels"));
}

static void test_dataset_convert_idx_keeps_non_hdf5_output(void **state) {
  (void)state;
  idx_paths f = write_idx_pair("keep", 0, 0, 0);
  /* Say, the image file given as the output by mistake: left untouched. */
  assert_int_equal(convert_idx(f.img, f.lab, f.img, "/train", g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "is not an HDF5 file"));
  /* Still a valid idx file. */
  assert_int_equal(convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err), 0);
}

/* ---- convert_synthetic --------------------------------------------------------- */

/* Reads a whole split; caller frees *x and *y. */
static uint64_t read_all(const char *path, const char *split, float **x, int32_t **y,
                         size_t *elems) {
  char xn[64], yn[64];
  snprintf(xn, sizeof xn, "/%s/images", split);
  snprintf(yn, sizeof yn, "/%s/labels", split);
  data_set *ds = open_ok(path, xn, yn, BIG_BUDGET);
  uint64_t n = data_count(ds);
  *elems = data_sample_elems(ds);
  uint64_t *idx = malloc(n * sizeof *idx);
  for (uint64_t i = 0; i < n; i++) idx[i] = i;
  *x = malloc(n * *elems * sizeof **x);
  *y = malloc(n * sizeof **y);
  assert_int_equal(data_read(ds, idx, n, NULL, *x, *y, NULL, g_err, sizeof g_err), 0);
  free(idx);
  data_close(ds);
  return n;
}

/* 1 if both files hold the same samples in `split`, 0 if not. */
static int same_split(const char *a, const char *b, const char *split) {
  float *xa, *xb;
  int32_t *ya, *yb;
  size_t ea, eb;
  uint64_t na = read_all(a, split, &xa, &ya, &ea);
  uint64_t nb = read_all(b, split, &xb, &yb, &eb);
  int same = na == nb && ea == eb && memcmp(xa, xb, na * ea * sizeof *xa) == 0 &&
             memcmp(ya, yb, na * sizeof *ya) == 0;
  free(xa);
  free(xb);
  free(ya);
  free(yb);
  return same;
}

static void test_dataset_convert_synthetic_is_deterministic(void **state) {
  (void)state;
  const char *a = tmp("syn_a.h5"), *b = tmp("syn_b.h5"), *c = tmp("syn_c.h5");
  for (int u8 = 0; u8 < 2; u8++) {
    assert_int_equal(convert_synthetic(a, 300, 50, 20, 5, u8, 11, g_err, sizeof g_err), 0);
    assert_int_equal(convert_synthetic(b, 300, 50, 20, 5, u8, 11, g_err, sizeof g_err), 0);
    assert_int_equal(convert_synthetic(c, 300, 50, 20, 5, u8, 12, g_err, sizeof g_err), 0);
    assert_true(same_split(a, b, "train"));
    assert_true(same_split(a, b, "test"));
    assert_false(same_split(a, c, "train"));
    assert_false(same_split(a, c, "test"));
  }
}

static void test_dataset_convert_synthetic_covers_all_classes(void **state) {
  (void)state;
  const char *p = tmp("syn_classes.h5");
  assert_int_equal(convert_synthetic(p, 2000, 100, 8, 10, 1, 1, g_err, sizeof g_err), 0);
  data_set *ds = open_ok(p, "/train/images", "/train/labels", BIG_BUDGET);
  assert_int_equal(data_input_dtype(ds), DATA_U8);
  assert_int_equal(data_check_labels(ds, 10, g_err, sizeof g_err), 0);
  data_close(ds);
  float *x;
  int32_t *y;
  size_t elems;
  uint64_t n = read_all(p, "train", &x, &y, &elems);
  unsigned seen[10] = {0};
  for (uint64_t i = 0; i < n; i++) seen[y[i]]++;
  /* About 200 each; a fair draw stays well inside [120, 280]. */
  for (int c = 0; c < 10; c++) assert_in_range(seen[c], 120, 280);
  free(x);
  free(y);
}

/* Nearest class mean (means from /train) scored on /test: the data is
 * learnable but not trivially separable. */
static void test_dataset_convert_synthetic_is_learnable_not_trivial(void **state) {
  (void)state;
  enum { F = 32, K = 10 };
  const char *p = tmp("syn_learn.h5");
  assert_int_equal(convert_synthetic(p, 4000, 1000, F, K, 0, 5, g_err, sizeof g_err), 0);
  float *x, *tx;
  int32_t *y, *ty;
  size_t elems;
  uint64_t n = read_all(p, "train", &x, &y, &elems), tn = read_all(p, "test", &tx, &ty, &elems);
  double mu[K][F] = {{0}}, cnt[K] = {0};
  for (uint64_t i = 0; i < n; i++) {
    cnt[y[i]] += 1.0;
    for (int k = 0; k < F; k++) mu[y[i]][k] += x[i * F + (uint64_t)k];
  }
  uint64_t right = 0;
  for (uint64_t i = 0; i < tn; i++) {
    int best = 0;
    double best_d = HUGE_VAL;
    for (int c = 0; c < K; c++) {
      double d = 0;
      for (int k = 0; k < F; k++) d += pow(tx[i * F + (uint64_t)k] - mu[c][k] / cnt[c], 2);
      best = d < best_d ? c : best;
      best_d = d < best_d ? d : best_d;
    }
    right += best == ty[i];
  }
  double acc = (double)right / (double)tn;
  assert_true(acc > 0.75 && acc < 0.98);
  free(x);
  free(y);
  free(tx);
  free(ty);
}

static void test_dataset_convert_synthetic_rejects_too_many_classes(void **state) {
  (void)state;
  const char *p = tmp("syn_bad.h5");
  assert_int_equal(convert_synthetic(p, 10, 10, 4, 257, 1, 1, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "classes"));
}

/* Every path through data_open, data_read and the converters closes what it
 * opened: afterwards no HDF5 file, group or dataset is left open. */
static void test_dataset_leaves_no_hdf5_objects_open(void **state) {
  (void)state;
  const char *p = tmp("split.h5"), *q = tmp("modes_u8.h5");
  write_split_file(p);
  write_modes_file(q, 200, DATA_U8);
  idx_paths f = write_idx_pair("handles", 1, 0, 0);
  assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);

  open_fails(p, "/train/imagez", "/train/labels");
  open_fails(p, "/train", "/train/labels");
  open_fails(p, "/test/images", "/test/labels");
  for (int b = 0; b < 2; b++) {
    data_set *ds = open_ok(q, "/x", "/y", b ? 0 : BIG_BUDGET);
    const uint64_t idx[3] = {5, 6, 199};
    float x[45];
    int32_t y[3];
    assert_int_equal(data_read(ds, idx, 3, SCALE(1.0f), x, y, NULL, g_err, sizeof g_err), 0);
    data_close(ds);
  }
  assert_int_equal(convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err), 0);
  assert_int_equal(convert_idx(f.img, f.lab, f.out, "/train", g_err, sizeof g_err), 0);
  assert_int_equal(convert_idx(f.lab, f.img, f.out, "/train", g_err, sizeof g_err), -1);
  assert_int_equal(convert_synthetic(f.out, 10, 10, 3, 2, 0, 1, g_err, sizeof g_err), 0);
  assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dataset_reads_uint8_scaled),
      cmocka_unit_test(test_dataset_reads_float32_scaled),
      cmocka_unit_test(test_dataset_reads_integer_label_types),
      cmocka_unit_test(test_dataset_streaming_matches_memory),
      cmocka_unit_test(test_dataset_mem_budget_decides_mode),
      cmocka_unit_test(test_dataset_read_rejects_index_out_of_range),
      cmocka_unit_test(test_dataset_close_accepts_null),
      cmocka_unit_test(test_dataset_open_missing_file),
      cmocka_unit_test(test_dataset_open_not_hdf5),
      cmocka_unit_test(test_dataset_open_missing_dataset_lists_existing),
      cmocka_unit_test(test_dataset_open_group_is_not_a_dataset),
      cmocka_unit_test(test_dataset_open_mismatched_counts),
      cmocka_unit_test(test_dataset_open_rejects_int32_inputs),
      cmocka_unit_test(test_dataset_open_rejects_string_labels),
      cmocka_unit_test(test_dataset_open_rejects_label_matrix),
      cmocka_unit_test(test_dataset_open_rejects_empty_dataset),
      cmocka_unit_test(test_dataset_errors_print_nothing),
      cmocka_unit_test(test_dataset_check_labels_accepts_valid),
      cmocka_unit_test(test_dataset_check_labels_names_first_bad_sample),
      cmocka_unit_test(test_dataset_convert_idx_roundtrip_gzip),
      cmocka_unit_test(test_dataset_convert_idx_roundtrip_plain),
      cmocka_unit_test(test_dataset_convert_idx_replaces_group),
      cmocka_unit_test(test_dataset_convert_idx_rejects_truncated),
      cmocka_unit_test(test_dataset_convert_idx_rejects_trailing_bytes),
      cmocka_unit_test(test_dataset_convert_idx_rejects_bad_magic),
      cmocka_unit_test(test_dataset_convert_idx_rejects_count_mismatch),
      cmocka_unit_test(test_dataset_convert_idx_keeps_non_hdf5_output),
      cmocka_unit_test(test_dataset_convert_synthetic_is_deterministic),
      cmocka_unit_test(test_dataset_convert_synthetic_covers_all_classes),
      cmocka_unit_test(test_dataset_convert_synthetic_is_learnable_not_trivial),
      cmocka_unit_test(test_dataset_convert_synthetic_rejects_too_many_classes),
      cmocka_unit_test(test_dataset_leaves_no_hdf5_objects_open),
  };
  return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
