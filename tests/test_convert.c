/* Unit tests for the CSV and .npy converters (data/convert_csv.c,
 * data/convert_npy.c): fixtures are written by hand in a temporary
 * directory and the output is read back with data/dataset and the HDF5 C
 * API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "convert_internal.h"
#include "dataset.h"
#include "h5fixture.h"
#include "testutil.h"

#define BIG_BUDGET ((size_t)1 << 30)

static char g_err[DATA_ERRLEN];


static data_set *open_ok(const char *path, const char *x, const char *y) {
  data_set *ds = NULL;
  if (data_open(&ds, path, x, y, BIG_BUDGET, g_err, sizeof g_err) != 0) fail_msg("%s", g_err);
  return ds;
}

/* Reads every sample of ds: x (n, elems), y (n) or t (n, label elems). */
static void read_all(data_set *ds, float *x, int32_t *y, float *t) {
  uint64_t n = data_count(ds);
  uint64_t *idx = malloc(n * sizeof *idx);
  for (uint64_t i = 0; i < n; i++) idx[i] = i;
  assert_int_equal(data_read(ds, idx, n, NULL, x, y, t, g_err, sizeof g_err), 0);
  free(idx);
}

/* Layout and filters of a dataset: chunked along dimension 0 only, deflate
 * level 1, after shuffle when `shuffle` (-1: with or without). */
static void assert_filters(const char *path, const char *name, int rank, int shuffle) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  assert_true(d >= 0);
  hid_t dcpl = H5Dget_create_plist(d), space = H5Dget_space(d);
  hsize_t dims[8], chunk[8];
  assert_int_equal(H5Sget_simple_extent_dims(space, dims, NULL), rank);
  assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
  assert_int_equal(H5Pget_chunk(dcpl, 8, chunk), rank);
  for (int i = 1; i < rank; i++) assert_true(chunk[i] == dims[i]);
  int nf = H5Pget_nfilters(dcpl);
  if (shuffle < 0) shuffle = nf == 2;
  assert_int_equal(nf, shuffle ? 2 : 1);
  unsigned flags, cd[4];
  size_t ncd = 4;
  if (shuffle)
    assert_int_equal(H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, 0, NULL, NULL), H5Z_FILTER_SHUFFLE);
  ncd = 4;
  assert_int_equal(H5Pget_filter2(dcpl, shuffle ? 1 : 0, &flags, &ncd, cd, 0, NULL, NULL),
                   H5Z_FILTER_DEFLATE);
  assert_int_equal(cd[0], 1);
  H5Sclose(space);
  H5Pclose(dcpl);
  H5Dclose(d);
  H5Fclose(f);
}

/* ---- CSV ---------------------------------------------------------------------- */

static int csv(const char *text, const char *label, double test_fraction, const char **out) {
  const char *in = h5f_tmp("in.csv");
  *out = h5f_tmp("csv.h5");
  remove(*out);
  h5f_write_text(in, text);
  convert_csv_opts o = {.label = label, .test_fraction = test_fraction, .seed = 3};
  g_err[0] = '\0';
  return convert_csv(in, *out, &o, g_err, sizeof g_err);
}

static void assert_layout(const char *path, const char *name, int rank) {
  assert_filters(path, name, rank, -1);
}

static void test_convert_csv_integer_labels_are_classes(void **state) {
  (void)state;
  const char *out;
  assert_int_equal(csv("a, b ,label,c\n1,2,0,3\n\"4\",5e0,2,-6\r\n\n7,8,1,9\n", "label", 0, &out),
                   0);
  data_set *ds = open_ok(out, "/train/images", "/train/labels");
  assert_int_equal(data_count(ds), 3);
  assert_int_equal(data_sample_elems(ds), 3);
  assert_int_equal(data_label_kind_of(ds), DATA_LABEL_CLASS);
  float x[9];
  int32_t y[3];
  read_all(ds, x, y, NULL);
  const float want[9] = {1, 2, 3, 4, 5, -6, 7, 8, 9};
  assert_memory_equal(x, want, sizeof want);
  assert_int_equal(y[0], 0);
  assert_int_equal(y[1], 2);
  assert_int_equal(y[2], 1);
  data_close(ds);
  assert_layout(out, "/train/images", 2);
  assert_layout(out, "/train/labels", 1);
}

static void test_convert_csv_float_labels_are_targets(void **state) {
  (void)state;
  const char *out;
  assert_int_equal(csv("y,x\n0.5,1\n2,2\n-1.25,3\n", "y", 0, &out), 0);
  data_set *ds = open_ok(out, "/train/images", "/train/labels");
  assert_int_equal(data_label_kind_of(ds), DATA_LABEL_FLOAT);
  float x[3], t[3];
  read_all(ds, x, NULL, t);
  assert_true(t[0] == 0.5f && t[1] == 2.0f && t[2] == -1.25f);
  assert_true(x[0] == 1 && x[1] == 2 && x[2] == 3);
  data_close(ds);
}

static void test_convert_csv_test_fraction_splits_rows(void **state) {
  (void)state;
  enum { N = 40 };
  char text[4096];
  size_t used = (size_t)snprintf(text, sizeof text, "id,label\n");
  for (int i = 0; i < N; i++)
    used += (size_t)snprintf(text + used, sizeof text - used, "%d,%d\n", i, i % 4);
  const char *out;
  assert_int_equal(csv(text, "label", 0.25, &out), 0);
  data_set *tr = open_ok(out, "/train/images", "/train/labels");
  data_set *te = open_ok(out, "/test/images", "/test/labels");
  assert_int_equal(data_count(tr), 30);
  assert_int_equal(data_count(te), 10);
  float xa[30], xb[10];
  int32_t ya[30], yb[10];
  read_all(tr, xa, ya, NULL);
  read_all(te, xb, yb, NULL);
  int seen[N] = {0};
  for (int i = 0; i < 30; i++) {
    seen[(int)xa[i]]++;
    assert_int_equal(ya[i], (int)xa[i] % 4);
    if (i) assert_true(xa[i] > xa[i - 1]); /* the file's order */
  }
  for (int i = 0; i < 10; i++) {
    seen[(int)xb[i]]++;
    if (i) assert_true(xb[i] > xb[i - 1]);
  }
  for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
  data_close(tr);
  data_close(te);
  /* Too small a share for the row count. */
  assert_int_equal(csv("a,l\n1,0\n2,1\n", "l", 0.1, &out), -1);
  tu_assert_contains(g_err, "leaves 0 test and 2 training rows");
}

static void test_convert_csv_errors_name_line_and_column(void **state) {
  (void)state;
  const char *out;
  assert_int_equal(csv("a,b,c\n1,2,3\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "in.csv:1: no column named 'label' in the header; columns: 'a', 'b', 'c'");
  assert_int_equal(csv("a,label\n1,2\n3\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "in.csv:3: 1 fields, but the header has 2");
  assert_int_equal(csv("a,label\n1,2\n\n\nx1,0\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "in.csv:5: column 'a': 'x1' is not a number");
  assert_int_equal(csv("a,label\n1,\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "in.csv:2: column 'label' is empty (missing values");
  assert_int_equal(csv("a,label\n1,nan\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "in.csv:2: column 'label': 'nan' is not a finite float32");
  assert_int_equal(csv("a,label\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "has a header but no data rows");
  assert_int_equal(csv("a,label\n\"1,0\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "in.csv:2: a quoted field is not closed");
  assert_int_equal(csv("label\n1\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "the header has only the label column 'label'; no features");
  assert_int_equal(csv("", "label", 0, &out), -1);
  tu_assert_contains(g_err, "is empty: expected a header row");
}

/* A UTF-8 byte order mark (as Excel writes) is not part of the first
 * column's name. */
static void test_convert_csv_strips_bom(void **state) {
  (void)state;
  const char *out;
  assert_int_equal(csv("\xEF\xBB\xBFlabel,a\n1,2\n0,3\n", "label", 0, &out), 0);
  data_set *ds = open_ok(out, "/train/images", "/train/labels");
  float x[2];
  int32_t y[2];
  read_all(ds, x, y, NULL);
  assert_true(y[0] == 1 && y[1] == 0 && x[0] == 2 && x[1] == 3);
  data_close(ds);
  /* Only at the very start: a BOM elsewhere is part of the text. */
  assert_int_equal(csv("a,label\n1,\xEF\xBB\xBF" "2\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "in.csv:2: column 'label'");
}

/* An integer label outside int64 would be rounded as a float: refused. */
static void test_convert_csv_refuses_int64_overflow(void **state) {
  (void)state;
  const char *out;
  assert_int_equal(csv("label,a\n1,2\n18446744073709551615,3\n", "label", 0, &out), -1);
  tu_assert_contains(
      g_err, "in.csv:3: label 18446744073709551615 in column 'label' is an integer outside the int64 "
      "range");
  assert_int_equal(csv("label,a\n-9223372036854775809,2\n", "label", 0, &out), -1);
  tu_assert_contains(g_err, "is an integer outside the int64 range");
  assert_int_equal(csv("label,a\n9223372036854775807,2\n", "label", 0, &out), 0);
}

/* ---- .npy ---------------------------------------------------------------------- */

/* Writes a .npy file: version 1 header for descr/fortran/shape, then
 * `bytes` bytes of data (which may differ from what the shape needs). */
static void write_npy(const char *path, int version, const char *descr, int fortran,
                      const char *shape, const void *data, size_t bytes) {
  char dict[256];
  int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                   fortran ? "True" : "False", shape);
  size_t pre = version == 1 ? 10 : 12, total = pre + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64, hlen = (size_t)n + pad + 1;
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  unsigned char head[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)version, 0};
  head[8] = (unsigned char)hlen;
  head[9] = (unsigned char)(hlen >> 8);
  fwrite(head, 1, pre, f);
  fwrite(dict, 1, (size_t)n, f);
  for (size_t i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  if (bytes) fwrite(data, 1, bytes, f);
  fclose(f);
}

static const int64_t g_y6[6] = {0, 1, 2, 0, 1, 2};

/* "<tmpdir>/x.npy" in a buffer of its own. */
static const char *xpath(void) {
  static char b[512];
  snprintf(b, sizeof b, "%s", h5f_tmp("x.npy"));
  return b;
}

/* Converts x_path with six int64 labels into npy.h5. (Own buffers: the
 * rotating ones of h5f_tmp would overwrite the caller's x_path.) */
static int npy(const char *x_path, const char **out) {
  static char y[512], o[512];
  snprintf(y, sizeof y, "%s", h5f_tmp("y.npy"));
  snprintf(o, sizeof o, "%s", h5f_tmp("npy.h5"));
  write_npy(y, 1, "<i8", 0, "(6,)", g_y6, sizeof g_y6);
  *out = o;
  g_err[0] = '\0';
  return convert_npy(x_path, y, *out, "train", g_err, sizeof g_err);
}

static void test_convert_npy_c_and_fortran_order(void **state) {
  (void)state;
  float c[6 * 2 * 3], fo[6 * 2 * 3];
  for (int i = 0; i < 36; i++) c[i] = (float)i * 0.5f;
  /* The same array in Fortran order: element (i, j, k) at i + 6 j + 12 k. */
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 3; k++) fo[i + 6 * j + 12 * k] = c[i * 6 + j * 3 + k];
  const char *out;
  for (int fortran = 0; fortran < 2; fortran++) {
    const char *x = xpath();
    write_npy(x, fortran ? 2 : 1, "<f4", fortran, "(6, 2, 3)", fortran ? fo : c, sizeof c);
    assert_int_equal(npy(x, &out), 0);
    data_set *ds = open_ok(out, "/train/images", "/train/labels");
    uint64_t shape[4];
    assert_int_equal(data_sample_shape(ds, shape, 4), 2);
    assert_true(shape[0] == 2 && shape[1] == 3);
    assert_int_equal(data_input_dtype(ds), DATA_F32);
    float got[36];
    int32_t y[6];
    read_all(ds, got, y, NULL);
    assert_memory_equal(got, c, sizeof c);
    for (int i = 0; i < 6; i++) assert_int_equal(y[i], g_y6[i]);
    data_close(ds);
    assert_layout(out, "/train/images", 3);
  }
}

static void test_convert_npy_keeps_or_widens_types(void **state) {
  (void)state;
  const uint8_t be16[12] = {0xff, 0xfe, 0, 1, 0, 2, 0x01, 0x00, 0, 0, 0x80, 0x00}; /* >i2 */
  const int16_t be_want[6] = {-2, 1, 2, 256, 0, -32768};
  const uint16_t half[6] = {0x3c00, 0xc000, 0x3800, 0, 0x7bff, 0x0001}; /* <f2 */
  const float half_want[6] = {1, -2, 0.5f, 0, 65504, 0x1p-24f};
  const int64_t big[6] = {1, -2, 3, 16777216, -5, 6}; /* <i8 inputs: float32 */
  const char *x = xpath(), *out;
  float got[6];
  int32_t y[6];

  write_npy(x, 1, ">i2", 0, "(6,)", be16, sizeof be16);
  assert_int_equal(npy(x, &out), 0);
  data_set *ds = open_ok(out, "/train/images", "/train/labels");
  assert_int_equal(data_input_dtype(ds), DATA_I16);
  read_all(ds, got, y, NULL);
  for (int i = 0; i < 6; i++) assert_true(got[i] == (float)be_want[i]);
  data_close(ds);

  write_npy(x, 1, "<f2", 0, "(6, 1)", half, sizeof half);
  assert_int_equal(npy(x, &out), 0);
  ds = open_ok(out, "/train/images", "/train/labels");
  assert_int_equal(data_input_dtype(ds), DATA_F16);
  read_all(ds, got, y, NULL);
  assert_memory_equal(got, half_want, sizeof half_want);
  data_close(ds);

  write_npy(x, 1, "<i8", 0, "(6,)", big, sizeof big);
  assert_int_equal(npy(x, &out), 0);
  ds = open_ok(out, "/train/images", "/train/labels");
  assert_int_equal(data_input_dtype(ds), DATA_F32);
  read_all(ds, got, y, NULL);
  for (int i = 0; i < 6; i++) assert_true(got[i] == (float)big[i]);
  data_close(ds);
}

static void test_convert_npy_refuses_bad_files(void **state) {
  (void)state;
  const float v[6] = {0};
  const char *x = xpath(), *out;
  write_npy(x, 1, "<f4", 0, "(6,)", v, sizeof v - 4);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "is truncated: its header promises 24 bytes of data, the file has 20");
  write_npy(x, 1, "<f4", 0, "(5,)", v, sizeof v);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "has 4 bytes after the data its header promises");
  write_npy(x, 1, "<c8", 0, "(3,)", v, sizeof v);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "has dtype '<c8'; midscale converts bool");
  write_npy(x, 1, "<f4", 0, "()", v, 4);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "holds a scalar (shape ())");
  write_npy(x, 1, "<f4", 0, "(3, 2)", v, sizeof v);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "has 3 samples (shape[0]) but");
  h5f_write_text(x, "not numpy at all\n");
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "is not a .npy file (no \\x93NUMPY magic)");
  /* Structured dtypes: the descr is a list. */
  FILE *f = fopen(x, "wb");
  const char hdr[] =
      "\x93NUMPY\x01\x00\x36\x00{'descr': [('a', '<i4')], 'fortran_order': False, "
      "'shape': (6,), }\n";
  fwrite(hdr, 1, sizeof hdr - 1, f);
  fclose(f);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "holds a structured dtype");
}

/* The header dict parser: what NumPy writes (and reads) is accepted, in any
 * key order, either quote, with or without a trailing comma; anything that
 * is not exactly the three keys with literal values is refused. */
static void test_convert_npy_header_parser(void **state) {
  (void)state;
  static const struct {
    const char *dict;
    int ndim;
    uint64_t d0;
  } good[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (10, 2), }          \n", 2, 10},
      {"{\"shape\": (7,), \"descr\": \"|u1\", \"fortran_order\": True}", 1, 7},
      {"{'descr':'<i8','fortran_order':False,'shape':()}", 0, 0},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 4L), }", 2, 3},
      {"{'descr': '<f2', 'fortran_order': False, 'shape': (0, 5,), }", 2, 0},
  };
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    npy_header h;
    memset(&h, 0, sizeof h);
    if (convert_npy_parse_dict("t.npy", good[i].dict, strlen(good[i].dict), &h, g_err,
                               sizeof g_err) != 0)
      fail_msg("refused %s: %s", good[i].dict, g_err);
    assert_int_equal(h.ndim, good[i].ndim);
    if (h.ndim) assert_true(h.dims[0] == good[i].d0);
  }
  static const struct {
    const char *dict, *why;
  } bad[] = {
      {"{'descr': '<f4', 'fortran_order': False}", "lacks 'descr', 'fortran_order' or 'shape'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", "a key other than"},
      {"{'descr': '<f4', 'fortran_order': False, 'shpe': (1,), 'y': \"'shape': (9,)\"}",
       "a key other than"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "a key twice"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2*3,)}", "'shape' is not a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", "'shape' is not a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (,)}", "'shape' is not a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "'shape' is not a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", "'shape' is not a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
       "a dimension in 'shape' is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2)}",
       "the shape is impossibly large"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", "'fortran_order' is not True"},
      {"{'descr': '<f4', 'fortran_order': Trueish, 'shape': (1,)}", "'fortran_order' is not"},
      {"{'descr': '<f4', 'fortran_order': 'False', 'shape': (1,)}", "'fortran_order' is not"},
      {"{'descr': <f4, 'fortran_order': False, 'shape': (1,)}", "'descr' is not a string"},
      {"{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,)}", "'descr' is not a string"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", "text after its dict"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "not closed"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", "not closed"},
      {"{descr: '<f4', 'fortran_order': False, 'shape': (1,)}", "not a dict of quoted keys"},
      {"'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "not a dict"},
      {"", "not a dict"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    npy_header h;
    memset(&h, 0, sizeof h);
    g_err[0] = '\0';
    if (convert_npy_parse_dict("t.npy", bad[i].dict, strlen(bad[i].dict), &h, g_err,
                               sizeof g_err) == 0)
      fail_msg("accepted %s", bad[i].dict);
    tu_assert_contains(g_err, "'t.npy': bad .npy header: ");
    tu_assert_contains(g_err, bad[i].why);
  }
  /* A NUL byte inside the header is not the end of it. */
  const char nul[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\0junk";
  npy_header h;
  assert_int_equal(convert_npy_parse_dict("t.npy", nul, sizeof nul - 1, &h, g_err, sizeof g_err),
                   -1);
  tu_assert_contains(g_err, "text after its dict");
}

/* The preamble: version x.0 only, a header length inside the file; and
 * no zero-size dimension in a sample. */
static void test_convert_npy_refuses_bad_preamble(void **state) {
  (void)state;
  const float v[6] = {0};
  const char *x = xpath(), *out;
  write_npy(x, 1, "<f4", 0, "(6, 0)", v, 0);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "has a zero-size dimension 1 in its shape");
  FILE *f = fopen(x, "wb");
  fwrite("\x93NUMPY\x01\x05\x10\x00{}              \n", 1, 26, f);
  fclose(f);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "has .npy format version 1.5");
  f = fopen(x, "wb");
  fwrite("\x93NUMPY\x02\x00\xf0\xff\xff\xff{}", 1, 14, f);
  fclose(f);
  assert_int_equal(npy(x, &out), -1);
  tu_assert_contains(g_err, "its .npy header of 4294967280 bytes ends past the file");
}

/* Conversions write a staged group and leave none behind; other groups of
 * the output survive a replacement. */
static void test_convert_replaces_group_last(void **state) {
  (void)state;
  const float v[6] = {1, 2, 3, 4, 5, 6};
  const char *x = xpath(), *out;
  write_npy(x, 1, "<f4", 0, "(6,)", v, sizeof v);
  assert_int_equal(npy(x, &out), 0);
  assert_int_equal(convert_npy(x, x, out, "other", g_err, sizeof g_err), 0);
  assert_int_equal(npy(x, &out), 0);
  hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  assert_true(H5Lexists(f, "train", H5P_DEFAULT) > 0);
  assert_true(H5Lexists(f, "other", H5P_DEFAULT) > 0);
  assert_int_equal(H5Lexists(f, "train.midscale-partial", H5P_DEFAULT), 0);
  H5Fclose(f);
  /* A refused input leaves the group. */
  write_npy(x, 1, "<f4", 0, "(6, 0)", v, 0);
  assert_int_equal(npy(x, &out), -1);
  data_set *ds = open_ok(out, "/train/images", "/train/labels");
  assert_int_equal(data_count(ds), 6);
  data_close(ds);
}

/* A failed conversion leaves an existing output as it was. */
static void test_convert_npy_keeps_output_on_error(void **state) {
  (void)state;
  const char *out = h5f_tmp("keep.txt");
  h5f_write_text(out, "my notes\n");
  const char *x = h5f_tmp("x.npy"), *y = h5f_tmp("y.npy");
  const float v[6] = {0};
  write_npy(x, 1, "<f4", 0, "(6,)", v, sizeof v);
  write_npy(y, 1, "<i8", 0, "(6,)", g_y6, sizeof g_y6);
  assert_int_equal(convert_npy(x, y, out, "train", g_err, sizeof g_err), -1);
  tu_assert_contains(g_err, "exists and is not an HDF5 file; not overwriting it");
  FILE *f = fopen(out, "r");
  char line[32] = "";
  assert_non_null(fgets(line, sizeof line, f));
  fclose(f);
  assert_string_equal(line, "my notes\n");
  assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* Which filter the trial picks: quantised values with long zero runs (as
 * pixels / 255) compress better plain, a smooth continuous signal better
 * shuffled. */
static void test_convert_npy_picks_shuffle_by_trial(void **state) {
  (void)state;
  enum { N = 400, F = 64 };
  static float quant[N * F], smooth[N * F];
  for (int i = 0; i < N * F; i++) {
    int k = (i * 7919) % 97;
    quant[i] = (i % F) < 24 || k > 80 ? 0.0f : (float)(k % 17) / 255.0f;
    smooth[i] = 40.0f * sinf(0.05f * (float)(i % F) + 0.37f * (float)(i / F)) + 0.001f * (float)k;
  }
  /* x doubles as the labels: only the inputs' filters matter here. */
  const char *x = xpath();
  char out[512];
  snprintf(out, sizeof out, "%s", h5f_tmp("pick.h5"));
  write_npy(x, 1, "<f4", 0, "(400, 64)", quant, sizeof quant);
  assert_int_equal(convert_npy(x, x, out, "q", g_err, sizeof g_err), 0);
  assert_filters(out, "/q/images", 2, 0);
  write_npy(x, 1, "<f4", 0, "(400, 64)", smooth, sizeof smooth);
  assert_int_equal(convert_npy(x, x, out, "s", g_err, sizeof g_err), 0);
  assert_filters(out, "/s/images", 2, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_convert_csv_integer_labels_are_classes),
      cmocka_unit_test(test_convert_csv_float_labels_are_targets),
      cmocka_unit_test(test_convert_csv_test_fraction_splits_rows),
      cmocka_unit_test(test_convert_csv_errors_name_line_and_column),
      cmocka_unit_test(test_convert_npy_c_and_fortran_order),
      cmocka_unit_test(test_convert_npy_keeps_or_widens_types),
      cmocka_unit_test(test_convert_npy_refuses_bad_files),
      cmocka_unit_test(test_convert_npy_keeps_output_on_error),
      cmocka_unit_test(test_convert_npy_picks_shuffle_by_trial),
      cmocka_unit_test(test_convert_csv_strips_bom),
      cmocka_unit_test(test_convert_csv_refuses_int64_overflow),
      cmocka_unit_test(test_convert_npy_header_parser),
      cmocka_unit_test(test_convert_npy_refuses_bad_preamble),
      cmocka_unit_test(test_convert_replaces_group_last),
  };
  return cmocka_run_group_tests(tests, h5f_make_dir, h5f_remove_dir);
}
