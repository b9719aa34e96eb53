/* Unit tests for the input types, label kinds, normalisation and finite
 * check of data/dataset (dataset_read.c), and the open errors added with
 * them. Fixtures are written with the HDF5 C API (tests/h5fixture.c). */
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
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "h5fixture.h"
#include "testutil.h"

#define BIG_BUDGET ((size_t)1 << 30)

static char g_err[DATA_ERRLEN];

static data_set *open_ok(const char *path, const char *x, const char *y, size_t budget) {
  data_set *ds = NULL;
  if (data_open(&ds, path, x, y, budget, g_err, sizeof g_err) != 0) fail_msg("open: %s", g_err);
  return ds;
}

static const char *open_fails(const char *path, const char *x, const char *y) {
  data_set *ds = (data_set *)1;
  g_err[0] = '\0';
  assert_int_equal(data_open(&ds, path, x, y, BIG_BUDGET, g_err, sizeof g_err), -1);
  assert_null(ds);
  assert_null(strchr(g_err, '\n'));
  return g_err;
}


/* ---- input types ---------------------------------------------------------------- */

enum { TN = 50, TE = 6 }; /* samples, features (2, 3) */

/* The value of element k of sample i: small integers, exact in every type
 * (negative ones for signed types). */
static double type_value(int i, int k, int is_signed) {
  int v = (i * TE + k * 7) % 100;
  return is_signed ? v - 50 : v;
}

/* chunk: samples per chunk, or 0 for a contiguous set. */
static void write_typed_chunks(const char *path, hid_t ftype, int is_signed, int chunk) {
  double xs[TN * TE];
  int64_t ys[TN];
  for (int i = 0; i < TN; i++) {
    ys[i] = i % 3;
    for (int k = 0; k < TE; k++) xs[i * TE + k] = type_value(i, k, is_signed);
  }
  hid_t f = h5f_create(path);
  hsize_t xd[3] = {TN, 2, 3}, yd[1] = {TN};
  /* HDF5 converts the doubles to the stored type (chunked: streaming reads
   * go through the chunk cache). */
  h5f_put(f, "/x", ftype, H5T_NATIVE_DOUBLE, 3, xd, xs, chunk);
  h5f_put(f, "/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, ys, 0);
  H5Fclose(f);
}

static void write_typed(const char *path, hid_t ftype, int is_signed) {
  write_typed_chunks(path, ftype, is_signed, 8);
}

static void test_dataset_read_every_input_type(void **state) {
  (void)state;
  hid_t half_le = h5f_half_type(0), half_be = h5f_half_type(1);
  const struct {
    hid_t ftype;
    data_dtype want;
    int is_signed;
  } cases[] = {{H5T_STD_U8LE, DATA_U8, 0},    {H5T_STD_I8LE, DATA_I8, 1},
               {H5T_STD_U16BE, DATA_U16, 0},  {H5T_STD_I16LE, DATA_I16, 1},
               {half_le, DATA_F16, 1},        {half_be, DATA_F16, 1},
               {H5T_IEEE_F32BE, DATA_F32, 1}, {H5T_IEEE_F64LE, DATA_F64, 1}};
  const char *p = h5f_tmp("typed.h5");
  const uint64_t idx[5] = {49, 0, 17, 18, 17};
  data_norm norm = data_norm_identity();
  norm.scale = 0.5f;
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    write_typed(p, cases[c].ftype, cases[c].is_signed);
    for (int mode = 0; mode < 2; mode++) {
      data_set *ds = open_ok(p, "/x", "/y", mode ? 0 : BIG_BUDGET);
      assert_int_equal(data_input_dtype(ds), cases[c].want);
      assert_int_equal(data_in_memory(ds), !mode);
      assert_int_equal(data_sample_elems(ds), TE);
      float x[5 * TE];
      int32_t y[5];
      assert_int_equal(data_read(ds, idx, 5, &norm, x, y, NULL, g_err, sizeof g_err), 0);
      for (int i = 0; i < 5; i++) {
        assert_int_equal(y[i], (int32_t)(idx[i] % 3));
        for (int k = 0; k < TE; k++) {
          float want = (float)type_value((int)idx[i], k, cases[c].is_signed) * 0.5f;
          if (x[i * TE + k] != want)
            fail_msg("%s (case %zu, mode %d): sample %d element %d: %g, expected %g",
                     data_dtype_name(cases[c].want), c, mode, (int)idx[i], k, (double)x[i * TE + k],
                     (double)want);
        }
      }
      data_close(ds);
    }
  }
  H5Tclose(half_le);
  H5Tclose(half_be);
}

/* Random batches (repeats, the last sample, whole chunks) of the set in
 * p read the same values in memory as HDF5's own H5Dread (to float), and
 * streamed, with room for 2 chunks or for all, as in memory. direct: the
 * streamed sets' data_direct_chunks. */
static void check_stream_matches_memory(const char *p, int chunk, int direct, const char *what) {
  float ref[TN * TE];
  hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), set = H5Dopen2(f, "/x", H5P_DEFAULT);
  assert_true(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ref) >= 0);
  H5Dclose(set);
  H5Fclose(f);
  data_set *mem = NULL, *few = NULL, *all = NULL;
  if (data_open_cached(&mem, p, "/x", "/y", BIG_BUDGET, DATA_CACHE_MEMORY, g_err, sizeof g_err) ||
      data_open_cached(&few, p, "/x", "/y", 0, DATA_CACHE_STREAM, g_err, sizeof g_err) ||
      data_open_cached(&all, p, "/x", "/y", BIG_BUDGET, DATA_CACHE_STREAM, g_err, sizeof g_err))
    fail_msg("%s: open: %s", what, g_err);
  assert_true(data_chunk_samples(few) == (uint64_t)chunk);
  if (data_direct_chunks(few) != direct || data_direct_chunks(all) != direct)
    fail_msg("%s: direct chunk reads %d, expected %d", what, data_direct_chunks(few), direct);
  uint64_t rng = 12345, idx[17];
  float want[17 * TE], got[17 * TE];
  for (int b = 0; b < 300; b++) {
    size_t n = 1 + (size_t)(b % 17);
    for (size_t i = 0; i < n; i++) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      idx[i] = b % 5 == 0 ? (uint64_t)(TN - 1 - i) : (rng >> 33) % TN;
    }
    assert_int_equal(data_read(mem, idx, n, NULL, want, NULL, NULL, g_err, sizeof g_err), 0);
    for (size_t i = 0; i < n; i++)
      if (memcmp(want + i * TE, ref + idx[i] * TE, sizeof ref[0] * TE) != 0)
        fail_msg("%s: sample %llu in memory differs from H5Dread's", what,
                 (unsigned long long)idx[i]);
    for (int k = 0; k < 2; k++) {
      memset(got, 0xff, sizeof got);
      if (data_read(k ? all : few, idx, n, NULL, got, NULL, NULL, g_err, sizeof g_err) != 0)
        fail_msg("%s: read: %s", what, g_err);
      if (memcmp(want, got, n * TE * sizeof *got) != 0)
        fail_msg("%s, batch %d (%s budget): streamed values differ from memory", what, b,
                 k ? "big" : "zero");
    }
  }
  data_close(mem);
  data_close(few);
  data_close(all);
}

/* Streamed, chunks of 8 samples (the last one of 2): with a zero budget
 * the cache holds 2 of the 7 chunks and evicts all the time, with room for
 * all none is evicted; contiguous, the set is cached in one block when it
 * fits the budget and read a run at a time when it does not. Either way
 * the values are those read in memory. */
static void test_dataset_stream_chunk_cache_matches_memory(void **state) {
  (void)state;
  const char *p = h5f_tmp("chunkcache.h5");
  for (int chunk = 8; chunk >= 0; chunk -= 8) {
    write_typed_chunks(p, H5T_STD_I16LE, 1, chunk);
    check_stream_matches_memory(p, chunk, chunk > 0, chunk ? "chunks of 8" : "contiguous");
  }
}

/* Direct chunk reads (the stored bytes decoded by midscale) for the
 * pipelines they handle: deflate, the shuffle filter, both, none, and a
 * chunk whose deflate was skipped at write time (an optional filter that
 * did not pay); HDF5 reads the others (Fletcher32, big-endian data). Each
 * reads what HDF5 reads in memory mode. */
static void test_dataset_stream_direct_chunks(void **state) {
  (void)state;
  const struct {
    hid_t ftype;
    int filters, direct;
    const char *what;
  } cases[] = {
      {H5T_STD_I16LE, FX_DEFLATE, 1, "int16, deflate"},
      {H5T_STD_I16LE, FX_SHUFFLE | FX_DEFLATE, 1, "int16, shuffle + deflate"},
      {H5T_IEEE_F64LE, FX_SHUFFLE | FX_DEFLATE, 1, "float64, shuffle + deflate"},
      {H5T_STD_U8LE, FX_SHUFFLE | FX_DEFLATE, 1, "uint8, shuffle + deflate"},
      {H5T_STD_I16LE, FX_SHUFFLE, 1, "int16, shuffle"},
      {H5T_STD_I16LE, 0, 1, "int16, no filter"},
      {H5T_STD_I16LE, FX_DEFLATE | FX_FLETCHER32, 0, "int16, deflate + fletcher32"},
      {H5T_STD_I16BE, FX_DEFLATE, 0, "big-endian int16, deflate"},
  };
  const char *p = h5f_tmp("direct.h5");
  double xs[TN * TE];
  int64_t ys[TN];
  for (int i = 0; i < TN; i++) {
    ys[i] = i % 3;
    for (int k = 0; k < TE; k++) xs[i * TE + k] = type_value(i, k, 1);
  }
  hsize_t xd[3] = {TN, 2, 3}, yd[1] = {TN};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    hid_t f = h5f_create(p);
    h5f_put_filtered(f, "/x", cases[c].ftype, H5T_NATIVE_DOUBLE, 3, xd, xs, 8, cases[c].filters);
    h5f_put(f, "/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, ys, 0);
    H5Fclose(f);
    check_stream_matches_memory(p, 8, cases[c].direct, cases[c].what);
  }
  /* Chunk 2 (samples 16..23) rewritten as stored bytes with deflate
   * skipped (filter mask bit 0), holding other values. */
  hid_t f = h5f_create(p);
  h5f_put_filtered(f, "/x", H5T_STD_I16LE, H5T_NATIVE_DOUBLE, 3, xd, xs, 8, FX_DEFLATE);
  h5f_put(f, "/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, ys, 0);
  hid_t set = H5Dopen2(f, "/x", H5P_DEFAULT);
  int16_t raw[8 * TE];
  for (int i = 0; i < 8 * TE; i++) raw[i] = (int16_t)(1000 + i);
  hsize_t off[3] = {16, 0, 0};
  assert_true(H5Dwrite_chunk(set, H5P_DEFAULT, 1u, off, sizeof raw, raw) >= 0);
  H5Dclose(set);
  H5Fclose(f);
  check_stream_matches_memory(p, 8, 1, "int16, deflate skipped in chunk 2");
  data_set *ds = open_ok(p, "/x", "/y", 0);
  const uint64_t idx[1] = {17};
  float x[TE];
  assert_int_equal(data_read(ds, idx, 1, NULL, x, NULL, NULL, g_err, sizeof g_err), 0);
  assert_true(x[0] == 1000.0f + TE && x[TE - 1] == 1000.0f + 2 * TE - 1);
  data_close(ds);
}

/* Half floats whose conversion is easy to get wrong, stored bit for bit;
 * data_read must agree with HDF5's own conversion to float. */
/* data.cache: memory refuses inputs over the budget (naming both sizes),
 * stream streams however small they are, auto follows the budget; the
 * values read are the same in every mode. */
static void test_dataset_open_cached_modes(void **state) {
  (void)state;
  const char *p = h5f_tmp("cached.h5");
  write_typed(p, H5T_STD_U16LE, 0); /* 50 samples x 6 x 2 bytes = 600 bytes, chunks of 8 */
  data_set *ds = NULL;
  const uint64_t idx[4] = {3, 49, 3, 20};
  float x[3][4 * TE];
  const data_cache modes[3] = {DATA_CACHE_AUTO, DATA_CACHE_MEMORY, DATA_CACHE_STREAM};
  for (int m = 0; m < 3; m++) {
    if (data_open_cached(&ds, p, "/x", "/y", 600, modes[m], g_err, sizeof g_err) != 0)
      fail_msg("open: %s", g_err);
    assert_int_equal(data_in_memory(ds), modes[m] != DATA_CACHE_STREAM);
    assert_true(data_chunk_samples(ds) == 8);
    assert_int_equal(data_read(ds, idx, 4, NULL, x[m], NULL, NULL, g_err, sizeof g_err), 0);
    data_close(ds);
  }
  assert_memory_equal(x[0], x[1], sizeof x[0]);
  assert_memory_equal(x[0], x[2], sizeof x[0]);
  /* One byte short of the inputs: auto streams, memory refuses. */
  assert_int_equal(data_open_cached(&ds, p, "/x", "/y", 599, DATA_CACHE_AUTO, g_err, sizeof g_err),
                   0);
  assert_int_equal(data_in_memory(ds), 0);
  data_close(ds);
  ds = (data_set *)1;
  assert_int_equal(
      data_open_cached(&ds, p, "/x", "/y", 599, DATA_CACHE_MEMORY, g_err, sizeof g_err), -1);
  assert_null(ds);
  tu_assert_contains(g_err, "data.cache is memory but the inputs '/x'");
  tu_assert_contains(g_err, "take 600 B, more than the memory budget of 599 B per rank");
}

static void test_dataset_read_half_special_values(void **state) {
  (void)state;
  const uint16_t bits[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xc000,
                           0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x3555, 0x8001};
  const float want[] = {0.0f,     -0.0f,    0x1p-24f,  0x3ffp-24f, 0x1p-14f,    1.0f,     -2.0f,
                        65504.0f, INFINITY, -INFINITY, NAN,        0x1.554p-2f, -0x1p-24f};
  enum { NB = sizeof bits / sizeof *bits };
  uint8_t y[NB] = {0};
  const char *p = h5f_tmp("half.h5");
  hid_t half = h5f_half_type(0);
  hid_t f = h5f_create(p);
  hsize_t xd[1] = {NB};
  h5f_put(f, "/x", half, half, 1, xd, bits, 0);
  h5f_put(f, "/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, xd, y, 0);
  H5Fclose(f);

  /* HDF5's soft conversion, the reference. */
  float ref[NB];
  f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t set = H5Dopen2(f, "/x", H5P_DEFAULT);
  assert_true(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ref) >= 0);
  H5Dclose(set);
  H5Fclose(f);

  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  assert_int_equal(data_input_dtype(ds), DATA_F16);
  uint64_t idx[NB];
  float x[NB];
  for (int i = 0; i < NB; i++) idx[i] = (uint64_t)i;
  assert_int_equal(data_read(ds, idx, NB, NULL, x, NULL, NULL, g_err, sizeof g_err), 0);
  for (int i = 0; i < NB; i++) {
    if (isnan(want[i])) {
      assert_true(isnan(x[i]) && isnan(ref[i]));
      continue;
    }
    if (memcmp(&x[i], &want[i], sizeof(float)) != 0 || memcmp(&x[i], &ref[i], sizeof(float)))
      fail_msg("half 0x%04x: read %a, expected %a, HDF5 gives %a", bits[i], (double)x[i],
               (double)want[i], (double)ref[i]);
  }
  data_close(ds);
  H5Tclose(half);
}

/* ---- labels ------------------------------------------------------------------- */

static void test_dataset_read_float_labels_are_targets(void **state) {
  (void)state;
  enum { N = 7 };
  const char *p = h5f_tmp("targets.h5");
  float xs[N * 2], ts[N * 2 * 3];
  for (int i = 0; i < N * 2; i++) xs[i] = (float)i;
  for (int i = 0; i < N * 6; i++) ts[i] = (float)i * 0.125f - 1.0f;
  hid_t f = h5f_create(p);
  hsize_t xd[2] = {N, 2}, td[3] = {N, 2, 3};
  h5f_put(f, "/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, xs, 0);
  h5f_put(f, "/t", H5T_IEEE_F64BE, H5T_NATIVE_FLOAT, 3, td, ts, 0);
  hid_t half = h5f_half_type(0);
  h5f_put(f, "/t16", half, H5T_NATIVE_FLOAT, 1, td, ts, 0);
  H5Tclose(half);
  H5Fclose(f);

  data_set *ds = open_ok(p, "/x", "/t", 0);
  assert_int_equal(data_label_kind_of(ds), DATA_LABEL_FLOAT);
  assert_int_equal(data_label_elems(ds), 6);
  uint64_t shape[4];
  assert_int_equal(data_label_shape(ds, shape, 4), 2);
  assert_true(shape[0] == 2 && shape[1] == 3);
  const uint64_t idx[3] = {6, 0, 3};
  float x[3 * 2], t[3 * 6];
  int32_t y[3] = {-7, -7, -7};
  assert_int_equal(data_read(ds, idx, 3, NULL, x, y, t, g_err, sizeof g_err), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(y[i], -7); /* untouched: the labels are not classes */
    assert_memory_equal(t + i * 6, ts + idx[i] * 6, 6 * sizeof(float));
    assert_memory_equal(x + i * 2, xs + idx[i] * 2, 2 * sizeof(float));
  }
  /* t may be NULL. */
  assert_int_equal(data_read(ds, idx, 3, NULL, x, NULL, NULL, g_err, sizeof g_err), 0);
  assert_int_equal(data_check_targets(ds, 6, g_err, sizeof g_err), 0);
  assert_int_equal(data_check_targets(ds, 5, g_err, sizeof g_err), -1);
  tu_assert_contains(g_err, "have shape (7, 2, 3): 6 target values per sample, but the model has 5 outputs");
  data_close(ds);

  /* float16 targets of shape (N,): HDF5 converts them to float. */
  ds = open_ok(p, "/x", "/t16", BIG_BUDGET);
  assert_int_equal(data_label_kind_of(ds), DATA_LABEL_FLOAT);
  assert_int_equal(data_label_elems(ds), 1);
  assert_int_equal(data_label_shape(ds, shape, 4), 0);
  assert_int_equal(data_read(ds, idx, 3, NULL, x, NULL, t, g_err, sizeof g_err), 0);
  for (int i = 0; i < 3; i++) assert_true(t[i] == ts[idx[i]]);
  data_close(ds);
}

static void write_class_file(const char *path, const int64_t *labels, hsize_t n) {
  uint8_t *x = calloc(n, 1);
  hid_t f = h5f_create(path);
  h5f_put(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, x, 0);
  h5f_put(f, "/y", H5T_STD_I32LE, H5T_NATIVE_INT64, 1, &n, labels, 0);
  H5Fclose(f);
  free(x);
}

static void test_dataset_read_class_labels_fill_targets(void **state) {
  (void)state;
  const int64_t labels[4] = {3, 0, 2, 1};
  const char *p = h5f_tmp("classes.h5");
  write_class_file(p, labels, 4);
  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  assert_int_equal(data_label_kind_of(ds), DATA_LABEL_CLASS);
  assert_int_equal(data_label_elems(ds), 1);
  const uint64_t idx[2] = {0, 2};
  float x[2], t[2];
  int32_t y[2];
  assert_int_equal(data_read(ds, idx, 2, NULL, x, y, t, g_err, sizeof g_err), 0);
  assert_int_equal(y[0], 3);
  assert_int_equal(y[1], 2);
  assert_true(t[0] == 3.0f && t[1] == 2.0f);
  assert_int_equal(data_check_targets(ds, 1, g_err, sizeof g_err), 0);
  data_close(ds);
}

/* y_name NULL (predict): the inputs alone, in a file that has no labels;
 * data_read fills x and leaves y and t as they were. */
static void test_dataset_open_inputs_alone(void **state) {
  (void)state;
  const char *p = h5f_tmp("inputs_only.h5");
  const uint8_t xs[3] = {7, 8, 9};
  hsize_t n = 3;
  hid_t f = h5f_create(p);
  h5f_put(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, xs, 0);
  H5Fclose(f);
  open_fails(p, "/x", "/y");
  data_set *ds = open_ok(p, "/x", NULL, BIG_BUDGET);
  assert_null(data_y_name(ds));
  assert_int_equal(data_count(ds), 3);
  const uint64_t idx[2] = {2, 0};
  float x[2], t[2] = {-1, -1};
  int32_t y[2] = {-1, -1};
  assert_int_equal(data_read(ds, idx, 2, NULL, x, y, t, g_err, sizeof g_err), 0);
  assert_true(x[0] == 9.0f && x[1] == 7.0f);
  assert_true(y[0] == -1 && y[1] == -1 && t[0] == -1.0f && t[1] == -1.0f);
  data_close(ds);
}

static void test_dataset_check_labels_refuses_float_labels(void **state) {
  (void)state;
  const char *p = h5f_tmp("reg.h5");
  float xs[3] = {1, 2, 3};
  double ys[3] = {0.5, 1.5, 2.5};
  hsize_t n = 3;
  hid_t f = h5f_create(p);
  h5f_put(f, "/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n, xs, 0);
  h5f_put(f, "/y", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, ys, 0);
  H5Fclose(f);
  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  assert_int_equal(data_check_labels(ds, 10, g_err, sizeof g_err), -1);
  char want[700];
  snprintf(want, sizeof want,
           "labels '/y' in '%s' are float64 regression targets, but the model is a classifier "
           "(10 classes): classification needs integer class indices",
           p);
  assert_string_equal(g_err, want);
  data_close(ds);
}

static void test_dataset_check_labels_names_negative_label(void **state) {
  (void)state;
  const int64_t labels[5] = {0, 1, -3, 1, 0};
  const char *p = h5f_tmp("negative.h5");
  write_class_file(p, labels, 5);
  data_set *ds = open_ok(p, "/x", "/y", BIG_BUDGET);
  assert_int_equal(data_check_labels(ds, 2, g_err, sizeof g_err), -1);
  char want[700];
  snprintf(want, sizeof want,
           "label -3 of sample 2 in '/y' of '%s' is negative; class labels are indices in [0, 2)",
           p);
  assert_string_equal(g_err, want);
  data_close(ds);
}

/* ---- normalisation ------------------------------------------------------------ */

/* u8 inputs (4, 2, 3) with value 10*i + k: two channels of three. */
static data_set *open_norm_file(void) {
  uint8_t xs[4 * 6];
  uint8_t ys[4] = {0};
  for (int i = 0; i < 24; i++) xs[i] = (uint8_t)(10 * (i / 6) + i % 6);
  const char *p = h5f_tmp("norm.h5");
  hid_t f = h5f_create(p);
  hsize_t xd[3] = {4, 2, 3}, yd[1] = {4};
  h5f_put(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, xd, xs, 0);
  h5f_put(f, "/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yd, ys, 0);
  H5Fclose(f);
  return open_ok(p, "/x", "/y", BIG_BUDGET);
}

/* Reads sample 2 with norm and checks it against the formula, with mean
 * index m(k) and std index s(k) from the given divisors. */
static void check_norm(data_set *ds, const data_norm *nm, size_t inner_m, size_t inner_s) {
  const uint64_t idx[1] = {2};
  float x[6];
  assert_int_equal(data_norm_check(ds, nm, g_err, sizeof g_err), 0);
  assert_int_equal(data_read(ds, idx, 1, nm, x, NULL, NULL, g_err, sizeof g_err), 0);
  for (size_t k = 0; k < 6; k++) {
    float v = (float)(20 + k) * nm->scale;
    if (nm->n_mean) v = v - nm->mean[k / inner_m];
    if (nm->n_std) v = v / nm->std[k / inner_s];
    if (x[k] != v) fail_msg("element %zu: %g, expected %g", k, (double)x[k], (double)v);
  }
}

static void test_dataset_norm_one_channel_feature(void **state) {
  (void)state;
  data_set *ds = open_norm_file();
  const float one_m[1] = {0.25f}, one_s[1] = {0.5f};
  const float ch_m[2] = {0.1f, 0.2f}, ch_s[2] = {0.3f, 0.7f};
  const float ft_m[6] = {1, 2, 3, 4, 5, 6}, ft_s[6] = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f};
  data_norm nm = {.scale = 1.0f / 255.0f, .n_mean = 1, .mean = one_m, .n_std = 1, .std = one_s};
  check_norm(ds, &nm, 6, 6);
  nm.n_mean = 2, nm.mean = ch_m, nm.n_std = 2, nm.std = ch_s;
  check_norm(ds, &nm, 3, 3);
  nm.n_mean = 6, nm.mean = ft_m, nm.n_std = 6, nm.std = ft_s;
  check_norm(ds, &nm, 1, 1);
  /* Mixed: a mean per channel, one std; a mean without std and the reverse. */
  nm.n_mean = 2, nm.mean = ch_m, nm.n_std = 1, nm.std = one_s;
  check_norm(ds, &nm, 3, 6);
  nm.n_std = 0, nm.std = NULL;
  check_norm(ds, &nm, 3, 1);
  nm.n_mean = 0, nm.mean = NULL, nm.n_std = 6, nm.std = ft_s;
  check_norm(ds, &nm, 1, 1);
  data_close(ds);
}

static void test_dataset_norm_rejects_bad_values(void **state) {
  (void)state;
  data_set *ds = open_norm_file();
  const float four[4] = {1, 2, 3, 4}, zero_std[2] = {1.0f, 0.0f};
  data_norm nm = {.scale = 1.0f, .n_mean = 4, .mean = four};
  const uint64_t idx[1] = {0};
  float x[6];
  assert_int_equal(data_norm_check(ds, &nm, g_err, sizeof g_err), -1);
  tu_assert_contains(g_err, "data.mean has 4 values; '/x' in '");
  tu_assert_contains(g_err, 
      "has shape (4, 2, 3): expected 1 value, 2 (one per channel, dimension 1) or 6 (one "
      "per feature)");
  /* data_read refuses it too, rather than reading past the array. */
  assert_int_equal(data_read(ds, idx, 1, &nm, x, NULL, NULL, g_err, sizeof g_err), -1);
  tu_assert_contains(g_err, "data.mean has 4 values");
  nm.n_mean = 0, nm.mean = NULL, nm.n_std = 2, nm.std = zero_std;
  assert_int_equal(data_norm_check(ds, &nm, g_err, sizeof g_err), -1);
  tu_assert_contains(g_err, "data.std[1] is 0; expected a finite number > 0");
  data_close(ds);
}

/* ---- the finite check ---------------------------------------------------------- */

static void test_dataset_check_finite_names_the_sample(void **state) {
  (void)state;
  enum { N = 40 };
  float xs[N * 3];
  double big[N * 3];
  float ts[N];
  for (int i = 0; i < N * 3; i++) xs[i] = (float)i, big[i] = i;
  for (int i = 0; i < N; i++) ts[i] = (float)i;
  xs[7 * 3 + 2] = NAN;
  big[30 * 3 + 1] = 1e300; /* finite in the file, inf as a float */
  ts[12] = -INFINITY;
  const char *p = h5f_tmp("finite.h5");
  hid_t f = h5f_create(p);
  hsize_t xd[2] = {N, 3}, yd[1] = {N};
  h5f_put(f, "/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, xs, 4);
  h5f_put(f, "/big", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, xd, big, 0);
  h5f_put(f, "/y", H5T_STD_U8LE, H5T_NATIVE_FLOAT, 1, yd, ts, 0);
  h5f_put(f, "/t", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, yd, ts, 0);
  H5Fclose(f);
  char want[700];
  for (int mode = 0; mode < 2; mode++) {
    size_t budget = mode ? 0 : BIG_BUDGET;
    data_set *ds = open_ok(p, "/x", "/y", budget);
    assert_int_equal(data_check_finite(ds, 0, N, NULL, g_err, sizeof g_err), -1);
    snprintf(want, sizeof want,
             "sample 7 of '/x' in '%s' has a non-finite value (nan) at element 2 "
             "(data.check_finite)",
             p);
    assert_string_equal(g_err, want);
    /* Each rank checks its share: samples 8.. are clean. */
    assert_int_equal(data_check_finite(ds, 8, N - 8, NULL, g_err, sizeof g_err), 0);
    assert_int_equal(data_check_finite(ds, 8, N, NULL, g_err, sizeof g_err), -1);
    tu_assert_contains(g_err, "out of range");
    data_close(ds);

    ds = open_ok(p, "/big", "/y", budget);
    assert_int_equal(data_check_finite(ds, 0, N, NULL, g_err, sizeof g_err), -1);
    tu_assert_contains(g_err, "sample 30 of '/big'");
    tu_assert_contains(g_err, "(inf) at element 1");
    data_close(ds);

    ds = open_ok(p, "/big", "/t", budget);
    assert_int_equal(data_check_finite(ds, 0, 20, NULL, g_err, sizeof g_err), -1);
    tu_assert_contains(g_err, "sample 12 of '/t'");
    tu_assert_contains(g_err, "(-inf) at element 0");
    data_close(ds);
  }
}

/* ---- open errors -------------------------------------------------------------- */

static void write_small_pair(const char *path) {
  uint8_t x[6] = {1, 2, 3, 4, 5, 6}, y[3] = {0, 1, 2};
  hid_t f = h5f_create(path);
  hsize_t xd[2] = {3, 2}, yd[1] = {3};
  h5f_put(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, xd, x, 0);
  h5f_put(f, "/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yd, y, 0);
  H5Fclose(f);
}

static void test_dataset_open_directory(void **state) {
  (void)state;
  const char *d = h5f_tmp("adir.h5");
  assert_int_equal(mkdir(d, 0700), 0);
  char want[600];
  snprintf(want, sizeof want, "'%s' is a directory, not an HDF5 file", d);
  assert_string_equal(open_fails(d, "/x", "/y"), want);
}

/* The chunk cache (chunk_cache.h) keeps as many chunks as the budget
 * holds and gives way to the least recently used: 4 chunks of 10 samples
 * (40 bytes each) through a budget of 2. */
static void test_dataset_read_chunk_cache_evicts_least_recent(void **state) {
  (void)state;
  enum { N = 40, E = 4, ROWS = 10 };
  const char *p = h5f_tmp("lru.h5");
  uint8_t xs[N * E];
  int64_t ys[N];
  for (int i = 0; i < N; i++) {
    ys[i] = i % 3;
    for (int k = 0; k < E; k++) xs[i * E + k] = (uint8_t)(i + k);
  }
  hid_t f = h5f_create(p);
  hsize_t xd[2] = {N, E}, yd[1] = {N};
  h5f_put(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, xd, xs, ROWS);
  h5f_put(f, "/y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, yd, ys, 0);
  H5Fclose(f);
  data_set *ds = NULL;
  if (data_open_cached(&ds, p, "/x", "/y", 2 * ROWS * E, DATA_CACHE_STREAM, g_err,
                       sizeof g_err) != 0)
    fail_msg("open: %s", g_err);
  assert_int_equal(data_in_memory(ds), 0);
  assert_int_equal(data_chunk_samples(ds), ROWS);
  /* Sample read -> chunks read so far: chunk 0, 1, a hit on 0, 2 (evicts
   * 1, the least recent), a hit on 0, 1 again (evicts 2). */
  static const uint64_t order[] = {0, 10, 5, 20, 1, 15};
  static const uint64_t reads[] = {1, 2, 2, 3, 3, 4};
  for (size_t j = 0; j < sizeof order / sizeof *order; j++) {
    float x[E];
    int32_t y;
    if (data_read(ds, &order[j], 1, NULL, x, &y, NULL, g_err, sizeof g_err) != 0)
      fail_msg("read: %s", g_err);
    for (int k = 0; k < E; k++) assert_true(x[k] == (float)(order[j] + (uint64_t)k));
    assert_int_equal(y, (int32_t)(order[j] % 3));
    if (data_chunks_read(ds) != reads[j])
      fail_msg("after sample %llu: %llu chunks read, expected %llu",
               (unsigned long long)order[j], (unsigned long long)data_chunks_read(ds),
               (unsigned long long)reads[j]);
  }
  data_close(ds);
}

static void test_dataset_open_truncated_file(void **state) {
  (void)state;
  const char *p = h5f_tmp("cut.h5");
  write_small_pair(p);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(truncate(p, st.st_size / 2), 0);
  open_fails(p, "/x", "/y");
  tu_assert_contains(g_err, "truncated");
  tu_assert_contains(g_err, p);
}

static void test_dataset_open_scalar_inputs(void **state) {
  (void)state;
  const char *p = h5f_tmp("scalar.h5");
  uint8_t v = 3, y[1] = {0};
  hsize_t yd[1] = {1};
  hid_t f = h5f_create(p);
  h5f_put(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 0, NULL, &v, 0);
  h5f_put(f, "/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yd, y, 0);
  H5Fclose(f);
  open_fails(p, "/x", "/y");
  tu_assert_contains(g_err, "dataset '/x' in '");
  tu_assert_contains(g_err, "is a scalar (shape ()); inputs need a sample axis");
}

static void test_dataset_open_compound_inputs(void **state) {
  (void)state;
  typedef struct {
    int a;
    float b;
  } pair;
  const char *p = h5f_tmp("compound.h5");
  pair x[2] = {{1, 2.0f}, {3, 4.0f}};
  uint8_t y[2] = {0, 1};
  hsize_t d[1] = {2};
  hid_t ct = H5Tcreate(H5T_COMPOUND, sizeof(pair));
  H5Tinsert(ct, "a", offsetof(pair, a), H5T_NATIVE_INT);
  H5Tinsert(ct, "b", offsetof(pair, b), H5T_NATIVE_FLOAT);
  hid_t f = h5f_create(p);
  h5f_put(f, "/x", ct, ct, 1, d, x, 0);
  h5f_put(f, "/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, d, y, 0);
  H5Fclose(f);
  H5Tclose(ct);
  open_fails(p, "/x", "/y");
  tu_assert_contains(g_err, "has type compound; supported input types are uint8");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dataset_read_every_input_type),
      cmocka_unit_test(test_dataset_stream_chunk_cache_matches_memory),
      cmocka_unit_test(test_dataset_stream_direct_chunks),
      cmocka_unit_test(test_dataset_read_half_special_values),
      cmocka_unit_test(test_dataset_read_float_labels_are_targets),
      cmocka_unit_test(test_dataset_read_class_labels_fill_targets),
      cmocka_unit_test(test_dataset_open_inputs_alone),
      cmocka_unit_test(test_dataset_check_labels_refuses_float_labels),
      cmocka_unit_test(test_dataset_check_labels_names_negative_label),
      cmocka_unit_test(test_dataset_norm_one_channel_feature),
      cmocka_unit_test(test_dataset_norm_rejects_bad_values),
      cmocka_unit_test(test_dataset_check_finite_names_the_sample),
      cmocka_unit_test(test_dataset_open_directory),
      cmocka_unit_test(test_dataset_open_truncated_file),
      cmocka_unit_test(test_dataset_open_cached_modes),
      cmocka_unit_test(test_dataset_read_chunk_cache_evicts_least_recent),
      cmocka_unit_test(test_dataset_open_scalar_inputs),
      cmocka_unit_test(test_dataset_open_compound_inputs),
  };
  return cmocka_run_group_tests(tests, h5f_make_dir, h5f_remove_dir);
}
