/* Unit tests for token sets (data/dataset.h, "Token sets"): windows of a
 * stream and of fixed-length sequences at the default stride and others,
 * the vocabulary (attribute or max id + 1), every refusal (a float type,
 * ids negative, over the vocabulary or over int32, data shorter than one
 * window, a bad attribute, a shape, the budget, a norm), the model check,
 * and the loader over windows: (n, seq_len) labels, rank slices that make
 * up the global batch, and a restart at any cursor equal to the run that
 * got there; convert_text and the tokenizer it records (tokenizer.h). Fixtures are written with the
 * HDF5 C API. */
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
#include "loader.h"
#include "sampler.h"
#include "tokenizer.h"

#define BUDGET ((size_t)1 << 30)

static char g_err[DATA_ERRLEN];

/* id i of a stream of n: (i * 7 + 3) % mod, so a window names its place. */
static void fill_ids(int32_t *ids, size_t n, int mod) {
  for (size_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 7 + 3) % (size_t)mod);
}

static void put_vocab(hid_t f, const char *name, int64_t vocab) {
  hid_t set = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(set, "vocab_size", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(a >= 0);
  assert_true(H5Awrite(a, H5T_NATIVE_INT64, &vocab) >= 0);
  H5Aclose(a);
  H5Sclose(sp);
  H5Dclose(set);
}

/* A file with one token dataset /t of shape dims (rank 1 or 2) holding
 * ids (int32 in memory, ftype on disk); vocab > 0 adds the attribute. */
static const char *write_tokens(const char *file, hid_t ftype, int rank, const hsize_t *dims,
                                const int32_t *ids, int64_t vocab, hsize_t chunk_rows) {
  const char *p = h5f_tmp(file);
  hid_t f = h5f_create(p);
  h5f_put(f, "/t", ftype, H5T_NATIVE_INT32, rank, dims, ids, chunk_rows);
  if (vocab > 0) put_vocab(f, "/t", vocab);
  H5Fclose(f);
  return p;
}

static data_set *open_tok(const char *path, uint64_t seq, uint64_t stride) {
  data_set *ds = NULL;
  data_token_opts o = {.seq_len = seq, .stride = stride};
  if (data_open_tokens(&ds, path, "/t", &o, BUDGET, g_err, sizeof g_err) != 0)
    fail_msg("open: %s", g_err);
  return ds;
}

/* Opening must fail with a message containing `want`. */
static void expect_refused(const char *path, uint64_t seq, uint64_t stride, size_t budget,
                           const char *want) {
  data_set *ds = NULL;
  data_token_opts o = {.seq_len = seq, .stride = stride};
  g_err[0] = '\0';
  assert_int_equal(data_open_tokens(&ds, path, "/t", &o, budget, g_err, sizeof g_err), -1);
  assert_null(ds);
  if (!strstr(g_err, want)) fail_msg("message '%s' lacks '%s'", g_err, want);
}

/* Window w of ds (stream or sequences) read alone, against ids. */
static void check_window(data_set *ds, const int32_t *ids, uint64_t w, uint64_t first) {
  size_t L = data_sample_elems(ds);
  float x[64], t[64];
  int32_t y[64];
  assert_true(L <= 64);
  assert_int_equal(data_read(ds, &w, 1, NULL, x, y, t, g_err, sizeof g_err), 0);
  for (size_t k = 0; k < L; k++) {
    assert_true(x[k] == (float)ids[first + k]);
    assert_int_equal(y[k], ids[first + k + 1]);
    assert_true(t[k] == (float)ids[first + k + 1]);
  }
}

static void test_tokens_stream_windows(void **state) {
  (void)state;
  enum { T = 101 };
  int32_t ids[T];
  fill_ids(ids, T, 50);
  hsize_t d[1] = {T};
  const char *p = write_tokens("stream.h5", H5T_STD_U16LE, 1, d, ids, 60, 16);
  data_set *ds = open_tok(p, 10, 0);
  /* Windows of 11 tokens every 10: starts 0, 10, ..., 90. */
  assert_int_equal(data_count(ds), 10);
  assert_int_equal(data_sample_elems(ds), 10);
  assert_int_equal(data_label_elems(ds), 10);
  assert_int_equal(data_label_kind_of(ds), DATA_LABEL_CLASS);
  assert_int_equal(data_vocab_size(ds), 60);
  assert_int_equal(data_is_tokens(ds), 1);
  assert_int_equal(data_seq_len(ds), 10);
  assert_int_equal(data_stride(ds), 10);
  assert_int_equal(data_token_count(ds), T);
  assert_int_equal(data_input_dtype(ds), DATA_I32);
  uint64_t dims[2];
  assert_int_equal(data_sample_shape(ds, dims, 2), 1);
  assert_int_equal(dims[0], 10);
  assert_int_equal(data_label_shape(ds, dims, 2), 1);
  assert_int_equal(dims[0], 10);
  for (uint64_t w = 0; w < 10; w++) check_window(ds, ids, w, w * 10);
  uint64_t out = 10;
  float x[10];
  assert_int_equal(data_read(ds, &out, 1, NULL, x, NULL, NULL, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "out of range"));
  data_close(ds);
  /* seq_len 100: the one window of all 101 tokens. */
  assert_int_equal(data_vocab_size(ds = open_tok(p, 100, 0)), 60);
  assert_int_equal(data_count(ds), 1);
  data_close(ds);
}

static void test_tokens_stride(void **state) {
  (void)state;
  enum { T = 40 };
  int32_t ids[T];
  fill_ids(ids, T, 1000);
  hsize_t d[1] = {T};
  const char *p = write_tokens("stride.h5", H5T_STD_I32LE, 1, d, ids, 0, 0);
  data_set *ds = open_tok(p, 8, 3); /* (40 - 9) / 3 + 1 = 11 windows */
  assert_int_equal(data_count(ds), 11);
  assert_int_equal(data_vocab_size(ds), 276 + 1); /* the largest id, 7 * 39 + 3 = 276 */
  uint64_t idx[3] = {10, 0, 4};
  float x[24];
  int32_t y[24];
  assert_int_equal(data_read(ds, idx, 3, NULL, x, y, NULL, g_err, sizeof g_err), 0);
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 8; k++) {
      assert_true(x[i * 8 + k] == (float)ids[idx[i] * 3 + (uint64_t)k]);
      assert_int_equal(y[i * 8 + k], ids[idx[i] * 3 + (uint64_t)k + 1]);
    }
  data_close(ds);
  /* A stride longer than the window skips tokens. */
  ds = open_tok(p, 4, 9); /* (40 - 5) / 9 + 1 = 4 */
  assert_int_equal(data_count(ds), 4);
  for (uint64_t w = 0; w < 4; w++) check_window(ds, ids, w, w * 9);
  data_close(ds);
}

static void test_tokens_sequences(void **state) {
  (void)state;
  enum { N = 5, L = 13 };
  int32_t ids[N * L];
  fill_ids(ids, N * L, 200);
  hsize_t d[2] = {N, L};
  const char *p = write_tokens("seq.h5", H5T_STD_U8LE, 2, d, ids, 0, 2);
  /* seq 4, stride 4: windows at 0, 4, 8 of each row ((13 - 5) / 4 + 1 = 3). */
  data_set *ds = open_tok(p, 4, 4);
  assert_int_equal(data_count(ds), N * 3);
  for (uint64_t w = 0; w < N * 3; w++) check_window(ds, ids, w, (w / 3) * L + (w % 3) * 4);
  data_close(ds);
  /* The default stride with seq_len = L - 1: one window per sequence. */
  ds = open_tok(p, L - 1, 0);
  assert_int_equal(data_count(ds), N);
  for (uint64_t w = 0; w < N; w++) check_window(ds, ids, w, w * L);
  data_close(ds);
}

static void test_tokens_refused(void **state) {
  (void)state;
  enum { T = 30 };
  int32_t ids[T];
  fill_ids(ids, T, 20);
  hsize_t d[1] = {T};
  const char *p;

  /* A float type. */
  p = h5f_tmp("float.h5");
  hid_t f = h5f_create(p);
  float fl[T] = {0};
  h5f_put(f, "/t", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d, fl, 0);
  H5Fclose(f);
  expect_refused(p, 4, 0, BUDGET, "has type float32; token ids must be integers");

  /* An id at the vocabulary (the attribute says 19; ids reach 19). */
  p = write_tokens("vocab.h5", H5T_STD_U16LE, 1, d, ids, 19, 0);
  expect_refused(p, 4, 0, BUDGET, "token id 19 at token 8 of '/t'");
  expect_refused(p, 4, 0, BUDGET, "outside the vocabulary [0, 19)");

  /* A negative id, in a sequence. */
  int32_t neg[T];
  memcpy(neg, ids, sizeof neg);
  neg[17] = -2;
  hsize_t d2[2] = {3, 10};
  p = write_tokens("neg.h5", H5T_STD_I32LE, 2, d2, neg, 0, 0);
  expect_refused(p, 4, 0, BUDGET, "token id -2 at sequence 1, token 7 of '/t'");

  /* Over 2^24 - 1: not exact as a float input. */
  p = h5f_tmp("big.h5");
  f = h5f_create(p);
  int64_t big[T] = {0};
  big[3] = (int64_t)1 << 33;
  h5f_put(f, "/t", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, big, 0);
  H5Fclose(f);
  expect_refused(p, 4, 0, BUDGET, "token id 8589934592 at token 3 of '/t' in");
  big[3] = 1 << 24;
  f = h5f_create(p);
  h5f_put(f, "/t", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, big, 0);
  H5Fclose(f);
  expect_refused(p, 4, 0, BUDGET, "token id 16777216 at token 3 of '/t'");
  expect_refused(p, 4, 0, BUDGET, "is over 2^24 - 1, the largest id a float input holds exactly");
  big[3] = (1 << 24) - 1;
  f = h5f_create(p);
  h5f_put(f, "/t", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, big, 0);
  H5Fclose(f);
  data_set *ok = open_tok(p, 4, 0);
  assert_int_equal(data_vocab_size(ok), 1 << 24);
  data_close(ok);

  /* Shorter than one window. */
  p = write_tokens("short.h5", H5T_STD_U8LE, 1, d, ids, 0, 0);
  expect_refused(p, 30, 0, BUDGET,
                 "a stream of 30 tokens, shorter than one window of "
                 "data.seq_len + 1 = 31 tokens");
  p = write_tokens("shortseq.h5", H5T_STD_U8LE, 2, d2, ids, 0, 0);
  expect_refused(p, 10, 0, BUDGET, "sequences of 10 tokens, shorter than one window");
  expect_refused(p, 0, 0, BUDGET, "data.seq_len is 0");

  /* A bad attribute, a 3-D shape, the budget, a missing dataset. */
  p = write_tokens("badattr.h5", H5T_STD_U8LE, 1, d, ids, 0, 0);
  f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
  put_vocab(f, "/t", 0);
  H5Fclose(f);
  expect_refused(p, 4, 0, BUDGET, "the vocab_size attribute of '/t'");
  hsize_t d3[3] = {2, 3, 5};
  p = write_tokens("3d.h5", H5T_STD_U8LE, 3, d3, ids, 0, 0);
  expect_refused(p, 2, 0, BUDGET, "has shape (2, 3, 5); expected one stream (T,)");
  p = write_tokens("ok.h5", H5T_STD_U8LE, 1, d, ids, 0, 0);
  expect_refused(p, 4, 0, 20, "holds 30 tokens (0.0 MiB), more than the memory budget");
  data_set *ds = NULL;
  data_token_opts o = {.seq_len = 4};
  assert_int_equal(data_open_tokens(&ds, p, "/nope", &o, BUDGET, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "'/nope' not found"));
}

static void test_tokens_norm_and_model(void **state) {
  (void)state;
  enum { T = 30 };
  int32_t ids[T];
  fill_ids(ids, T, 20); /* ids 0..19 */
  hsize_t d[1] = {T};
  data_set *ds = open_tok(write_tokens("model.h5", H5T_STD_U8LE, 1, d, ids, 0, 0), 4, 0);
  data_norm nm = data_norm_identity();
  assert_int_equal(data_norm_check(ds, &nm, g_err, sizeof g_err), 0);
  nm.scale = 0.5f;
  assert_int_equal(data_norm_check(ds, &nm, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "is a token set: data.scale"));
  uint64_t w = 0;
  float x[4];
  assert_int_equal(data_read(ds, &w, 1, &nm, x, NULL, NULL, g_err, sizeof g_err), -1);
  assert_int_equal(data_check_labels(ds, 20, g_err, sizeof g_err), 0);
  assert_int_equal(data_check_labels(ds, 19, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "token id 19 at token 8 of '/t'"));
  assert_non_null(strstr(g_err, "outside the model's vocabulary [0, 19)"));
  assert_int_equal(data_check_finite(ds, 0, data_count(ds), NULL, g_err, sizeof g_err), 0);
  data_close(ds);
  /* A stated vocabulary larger than the model is refused even when the
   * ids fit. */
  ds = open_tok(write_tokens("model2.h5", H5T_STD_U8LE, 1, d, ids, 256, 0), 4, 0);
  assert_int_equal(data_check_labels(ds, 20, g_err, sizeof g_err), -1);
  assert_non_null(strstr(g_err, "has vocab_size 256, more than the model's 20 classes"));
  assert_int_equal(data_check_labels(ds, 256, g_err, sizeof g_err), 0);
  data_close(ds);
}

/* The loader's batches over windows: (n, seq_len) labels equal to direct
 * reads; the slices of 2 ranks are the batch of 1; a fresh loader asked
 * for a later cursor (a resume) gives what the running one gave. */
static void test_tokens_loader(void **state) {
  (void)state;
  enum { T = 4001, SEQ = 16, STRIDE = 10, BATCH = 8 };
  static int32_t ids[T];
  fill_ids(ids, T, 97);
  hsize_t d[1] = {T};
  const char *p = write_tokens("loader.h5", H5T_STD_U16LE, 1, d, ids, 97, 256);
  data_set *ds[3];
  for (int i = 0; i < 3; i++) ds[i] = open_tok(p, SEQ, STRIDE);
  uint64_t n = data_count(ds[0]); /* (4001 - 17) / 10 + 1 = 399 */
  assert_int_equal(n, 399);
  uint64_t spe = n / BATCH;
  data_loader *l[3] = {NULL, NULL, NULL};
  for (int i = 0; i < 3; i++) {
    loader_opts o = {.ds = ds[i],
                     .norm = data_norm_identity(),
                     .order = {.shuffle = SAMPLER_GLOBAL},
                     .seed = 5,
                     .global_batch = BATCH,
                     .world = i == 0 ? 1 : 2,
                     .rank = i == 0 ? 0 : i - 1,
                     .prefetch = i == 1 ? 2 : 0,
                     .class_labels = 1,
                     .end_step = 3 * spe};
    assert_int_equal(loader_create(&l[i], &o, g_err, sizeof g_err), 0);
  }
  for (uint64_t g = 0; g < 2 * spe + 5; g++) {
    uint64_t e = g / spe, s = g % spe;
    loader_batch b[3];
    for (int i = 0; i < 3; i++)
      if (loader_next(l[i], e, s, &b[i], g_err, sizeof g_err) != 0) fail_msg("%s", g_err);
    assert_int_equal(b[0].n, BATCH);
    assert_int_equal(b[1].n, BATCH / 2);
    for (size_t j = 0; j < BATCH; j++) {
      const loader_batch *r = j < BATCH / 2 ? &b[1] : &b[2];
      size_t jr = j % (BATCH / 2);
      assert_int_equal(b[0].idx[j], r->idx[jr]);
      const int32_t *src = ids + b[0].idx[j] * STRIDE;
      for (size_t k = 0; k < SEQ; k++) {
        assert_true(b[0].x[j * SEQ + k] == (float)src[k]);
        assert_int_equal(b[0].y[j * SEQ + k], src[k + 1]);
        assert_true(r->x[jr * SEQ + k] == (float)src[k]);
        assert_int_equal(r->y[jr * SEQ + k], src[k + 1]);
      }
    }
  }
  /* A resume: a new loader asked for epoch 1, step 7 first. */
  loader_free(l[0]);
  loader_opts o = {.ds = ds[0],
                   .norm = data_norm_identity(),
                   .order = {.shuffle = SAMPLER_GLOBAL},
                   .seed = 5,
                   .global_batch = BATCH,
                   .world = 1,
                   .rank = 0,
                   .prefetch = 1,
                   .class_labels = 1,
                   .end_step = 3 * spe};
  assert_int_equal(loader_create(&l[0], &o, g_err, sizeof g_err), 0);
  uint64_t *perm = malloc(n * sizeof *perm);
  assert_int_equal(sampler_epoch_order(&o.order, 5, 1, n, perm, g_err, sizeof g_err), 0);
  loader_batch b;
  assert_int_equal(loader_next(l[0], 1, 7, &b, g_err, sizeof g_err), 0);
  for (size_t j = 0; j < BATCH; j++) {
    assert_int_equal(b.idx[j], perm[7 * BATCH + j]);
    assert_int_equal(b.y[j * SEQ + SEQ - 1], ids[b.idx[j] * STRIDE + SEQ]);
  }
  free(perm);
  for (int i = 0; i < 3; i++) {
    loader_free(l[i]);
    data_close(ds[i]);
  }
}

/* The ids of /train/tokens or /test/tokens of path, and their count. */
static size_t read_split(const char *path, const char *name, int32_t *out, size_t cap) {
  data_set *ds = NULL;
  data_token_opts o = {.seq_len = 1};
  if (data_open_tokens(&ds, path, name, &o, BUDGET, g_err, sizeof g_err) != 0)
    fail_msg("open %s: %s", name, g_err);
  size_t n = (size_t)data_token_count(ds);
  assert_true(n <= cap);
  /* seq_len 1, stride 1: window w is ids w (input) and w + 1 (label). */
  for (uint64_t w = 0; w + 1 < n; w++) {
    float x;
    int32_t y;
    assert_int_equal(data_read(ds, &w, 1, NULL, &x, &y, NULL, g_err, sizeof g_err), 0);
    out[w] = (int32_t)x;
    out[w + 1] = y;
  }
  data_close(ds);
  return n;
}

/* prepare text, bytes: the files one after the other, each file's last
 * lines held out from a line start; vocab_size 256. */
static void test_tokens_convert_bytes(void **state) {
  (void)state;
  const char *a = h5f_tmp("a.txt"), *b = h5f_tmp("b.txt"), *out = h5f_tmp("text.h5");
  h5f_write_text(a, "first line\nsecond line\nthird\n");
  h5f_write_text(b, "x\ny\n");
  const char *files[2] = {a, b};
  convert_text_opts o = {.vocab = NULL, .test_fraction = 0.2};
  convert_text_stats st;
  assert_int_equal(convert_text(files, 2, out, &o, &st, g_err, sizeof g_err), 0);
  /* a: 29 bytes, 20% = 6 from the end: byte 23, then the next line start
   * (after "second line\n", 23) -> "third\n" held out. b: 4 bytes, 1 held
   * out from byte 3, the next line start is the end: nothing. */
  const char *train = "first line\nsecond line\nx\ny\n", *test = "third\n";
  int32_t ids[64];
  assert_int_equal(st.train_tokens, strlen(train));
  assert_int_equal(st.test_tokens, strlen(test));
  assert_int_equal(st.vocab_size, 256);
  assert_int_equal(read_split(out, "/train/tokens", ids, 64), strlen(train));
  for (size_t i = 0; i < strlen(train); i++) assert_int_equal(ids[i], (unsigned char)train[i]);
  assert_int_equal(read_split(out, "/test/tokens", ids, 64), strlen(test));
  for (size_t i = 0; i < strlen(test); i++) assert_int_equal(ids[i], (unsigned char)test[i]);
  data_set *ds = NULL;
  data_token_opts to = {.seq_len = 2};
  assert_int_equal(data_open_tokens(&ds, out, "/train/tokens", &to, BUDGET, g_err, sizeof g_err),
                   0);
  assert_int_equal(data_vocab_size(ds), 256);
  assert_int_equal(data_input_dtype(ds), DATA_I32);
  data_close(ds);
  data_tokenizer *tk = NULL;
  assert_int_equal(data_tokenizer_load(&tk, out, "/test/tokens", g_err, sizeof g_err), 0);
  assert_int_equal(data_tokenizer_is_bytes(tk), 1);
  assert_int_equal(data_tokenizer_size(tk), 256);
  char c[4];
  assert_int_equal(data_tokenizer_decode(tk, 0xE9, c), 1);
  assert_int_equal((unsigned char)c[0], 0xE9);
  assert_int_equal(data_tokenizer_decode(tk, 256, c), 0);
  data_tokenizer_free(tk);
}

/* prepare text with a vocabulary file: ids in line order, escapes, <unk>;
 * a character outside a vocabulary without <unk> is refused with its line. */
static void test_tokens_convert_vocab(void **state) {
  (void)state;
  const char *v = h5f_tmp("vocab.txt"), *t = h5f_tmp("t.txt"), *out = h5f_tmp("v.h5");
  h5f_write_text(v, "a\nb\n\\n\n\\s\n\xc3\xa9\n<unk>\n");
  h5f_write_text(t, "ab a\n\xc3\xa9z\n");
  const char *files[1] = {t};
  convert_text_opts o = {.vocab = v, .test_fraction = 0};
  convert_text_stats st;
  assert_int_equal(convert_text(files, 1, out, &o, &st, g_err, sizeof g_err), 0);
  assert_int_equal(st.vocab_size, 6);
  assert_int_equal(st.test_tokens, 0);
  /* a b ' ' a '\n' e-acute z '\n' -> 0 1 3 0 2 4 5 2 */
  const int32_t want[8] = {0, 1, 3, 0, 2, 4, 5, 2};
  int32_t ids[16];
  assert_int_equal(read_split(out, "/train/tokens", ids, 16), 8);
  for (int i = 0; i < 8; i++) assert_int_equal(ids[i], want[i]);

  /* The file's tokenizer: decode the ids back (z went to <unk>, which
   * decodes to nothing), encode a prompt. */
  data_tokenizer *tk = NULL;
  assert_int_equal(data_tokenizer_load(&tk, out, "/train/tokens", g_err, sizeof g_err), 0);
  assert_int_equal(data_tokenizer_size(tk), 6);
  assert_int_equal(data_tokenizer_is_bytes(tk), 0);
  char text[64];
  size_t len = 0;
  for (int i = 0; i < 8; i++) len += data_tokenizer_decode(tk, want[i], text + len);
  assert_int_equal(len, 8);
  assert_memory_equal(text, "ab a\n\xc3\xa9\n", 8);
  int32_t *enc = NULL;
  size_t n = 0, cap = 0;
  long line = 1;
  assert_int_equal(data_tokenizer_encode(tk, "\xc3\xa9q b", 5, "prompt", &line, &enc, &n, &cap,
                                         g_err, sizeof g_err),
                   0);
  const int32_t want_enc[4] = {4, 5, 3, 1};
  assert_int_equal(n, 4);
  assert_memory_equal(enc, want_enc, sizeof want_enc);
  free(enc);
  data_tokenizer_free(tk);
  /* A token set without the attribute. */
  enum { T = 8 };
  int32_t few[T] = {0};
  hsize_t d[1] = {T};
  const char *plain = write_tokens("plain.h5", H5T_STD_U8LE, 1, d, few, 0, 0);
  assert_int_equal(data_tokenizer_load(&tk, plain, "/t", g_err, sizeof g_err), -1);
  assert_null(tk);
  if (!strstr(g_err, "'/t' in '")) fail_msg("%s", g_err);
  if (!strstr(g_err, "has no tokenizer attribute")) fail_msg("%s", g_err);

  h5f_write_text(v, "a\nb\n\\n\n");
  assert_int_equal(convert_text(files, 1, out, &o, &st, g_err, sizeof g_err), -1);
  if (!strstr(g_err, "line 1: character U+0020 (' ') is not in the vocabulary"))
    fail_msg("%s", g_err);
  h5f_write_text(v, "ab\n");
  assert_int_equal(convert_text(files, 1, out, &o, &st, g_err, sizeof g_err), -1);
  if (!strstr(g_err, "line 1 of the vocabulary")) fail_msg("%s", g_err);
  h5f_write_text(v, "a\na\n");
  assert_int_equal(convert_text(files, 1, out, &o, &st, g_err, sizeof g_err), -1);
  if (!strstr(g_err, "lists U+0061 twice")) fail_msg("%s", g_err);
  h5f_write_text(t, "a");
  o.vocab = "bytes";
  assert_int_equal(convert_text(files, 1, out, &o, &st, g_err, sizeof g_err), -1);
  if (!strstr(g_err, "each split needs at least 2")) fail_msg("%s", g_err);
}

/* A chars token set whose path is longer than any fixed buffer (the
 * vocabulary beside it is found), and a vocabulary of thousands of
 * characters (the tables grow by doubling): every id keeps its character. */
static void test_tokens_long_name_and_big_vocab(void **state) {
  (void)state;
  const char *v = h5f_tmp("vocab.txt"), *t = h5f_tmp("t.txt"), *out = h5f_tmp("long.h5");
  h5f_write_text(v, "a\nb\n\\n\n");
  h5f_write_text(t, "ab\nba\nab\n");
  const char *files[1] = {t};
  convert_text_opts o = {.vocab = v, .test_fraction = 0};
  convert_text_stats st;
  assert_int_equal(convert_text(files, 1, out, &o, &st, g_err, sizeof g_err), 0);
  enum { LONG = 1500 };
  char *group = malloc(LONG + 2), *tokens = malloc(LONG + 16);
  assert_non_null(group);
  assert_non_null(tokens);
  group[0] = '/';
  memset(group + 1, 'g', LONG);
  group[LONG + 1] = '\0';
  snprintf(tokens, LONG + 16, "%s/tokens", group);
  hid_t f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  assert_true(H5Lmove(f, "/train", f, group, H5P_DEFAULT, H5P_DEFAULT) >= 0);
  H5Fclose(f);
  data_tokenizer *tk = NULL;
  assert_int_equal(data_tokenizer_load(&tk, out, tokens, g_err, sizeof g_err), 0);
  assert_int_equal(data_tokenizer_size(tk), 3);
  assert_int_equal(data_tokenizer_codepoint(tk, 1), 'b');
  data_tokenizer_free(tk);
  tokens[strlen(tokens) - 1] = 'x'; /* a missing set under the long path names it */
  assert_int_equal(data_tokenizer_load(&tk, out, tokens, g_err, sizeof g_err), -1);
  assert_null(tk);
  assert_true(strlen(g_err) > 0);
  free(group);
  free(tokens);

  /* 5000 characters U+0100.. (2 bytes each, then 3 from U+0800). */
  enum { N = 5000 };
  char *text = malloc(N * 4), *at = text;
  assert_non_null(text);
  for (uint32_t i = 0; i < N; i++) {
    uint32_t c = 0x100 + i;
    if (c < 0x800) {
      *at++ = (char)(0xC0 | (c >> 6));
    } else {
      *at++ = (char)(0xE0 | (c >> 12));
      *at++ = (char)(0x80 | ((c >> 6) & 0x3F));
    }
    *at++ = (char)(0x80 | (c & 0x3F));
    *at++ = '\n';
  }
  assert_int_equal(data_tokenizer_parse(&tk, text, (size_t)(at - text), "big", g_err, sizeof g_err),
                   0);
  assert_int_equal(data_tokenizer_size(tk), N);
  for (int32_t i = 0; i < N; i++) assert_int_equal(data_tokenizer_codepoint(tk, i), 0x100 + i);
  int32_t id;
  uint32_t cp;
  assert_int_equal(data_tokenizer_next(tk, "\xe0\xa0\x80", 3, &id, &cp), 3); /* U+0800 */
  assert_int_equal(id, 0x800 - 0x100);
  data_tokenizer_free(tk);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tokens_stream_windows),
      cmocka_unit_test(test_tokens_stride),
      cmocka_unit_test(test_tokens_sequences),
      cmocka_unit_test(test_tokens_refused),
      cmocka_unit_test(test_tokens_norm_and_model),
      cmocka_unit_test(test_tokens_loader),
      cmocka_unit_test(test_tokens_convert_bytes),
      cmocka_unit_test(test_tokens_convert_vocab),
      cmocka_unit_test(test_tokens_long_name_and_big_vocab),
  };
  return cmocka_run_group_tests(tests, h5f_make_dir, h5f_remove_dir);
}
