/* test_ckpt — checkpoint files as a whole: the format written, the
 * metadata, atomic writes and their failures, the byte shuffle, and files
 * older code wrote (format version 1, a file written by main before the
 * code was split by layer). Each test gets its own temp dir (ckpt_fixture). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader, ZSTD_findDecompressedSize */
#include <zstd.h>
#include <xxhash.h>

#include "ckpt.h"
#include "hash.h"
#include "ms_error.h"
#include "ckpt_fixture.h"

/* ---- format ---------------------------------------------------------------- */

static void test_ckpt_roundtrip_three_tensors(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 42, 1);
  ckf_model src, dst;
  ckf_model_init(&src, 1);
  ckf_model_init(&dst, 2);
  /* Request in another order than written: the match is by name. */
  ckpt_tensor req[3] = {dst.t[2], dst.t[0], dst.t[1]};
  ckpt_meta m;
  int rc = ckpt_read(path, req, 3, 0x0123456789abcdefULL, &m);
  if (rc) fail_msg("%s", ms_error_msg());
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  assert_memory_equal(dst.b, src.b, sizeof src.b);
  assert_memory_equal(dst.m, src.m, sizeof src.m);
  assert_int_equal(m.step, 42);
  assert_int_equal(m.epoch, 2);
  assert_int_equal(m.step_in_epoch, 7);
  assert_int_equal(m.world_size, 4);
  assert_true(m.seed == 1234567890123ULL);
  assert_true(m.rng_state == 0xfedcba9876543210ULL);
  assert_true(m.layout_hash == 0x0123456789abcdefULL);
  assert_string_equal(m.config, "run:\n  seed: 1\n");
  ckpt_meta_free(&m);
  assert_null(m.config);
  ckpt_meta_free(NULL);
  free(path);
}

static void test_ckpt_read_meta_only(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 7, 1);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  assert_int_equal(m.step, 7);
  assert_int_equal(m.world_size, 4);
  assert_string_equal(m.config, "run:\n  seed: 1\n");
  ckpt_meta_free(&m);
  free(path);
}

static void test_ckpt_empty_and_scalar_tensors(void **state) {
  ckf_fixture *fx = *state;
  float scalar = 3.5f, got = 0;
  ckpt_tensor t[2] = {{"scalar", &scalar, 0, {0}}, {"empty", NULL, 2, {0, 5}}};
  ckpt_meta m = ckf_test_meta(1);
  m.config = NULL;
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, t, 2, &m, 1, &path), 0);
  ckpt_tensor r[2] = {{"empty", NULL, 2, {0, 5}}, {"scalar", &got, 0, {0}}};
  ckpt_meta rm;
  assert_int_equal(ckpt_read(path, r, 2, 0, &rm), 0);
  assert_true(got == 3.5f);
  assert_string_equal(rm.config, "");
  ckpt_meta_free(&rm);
  free(path);
}

static void test_ckpt_file_name(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 42, 1);
  char want[128];
  snprintf(want, sizeof want, "%s/step-00000042.safetensors.zst", fx->dir);
  assert_string_equal(path, want);
  struct stat st;
  assert_int_equal(stat(want, &st), 0);
  assert_int_equal(ckf_count_entries(fx->dir, NULL), 1);
  free(path);
}

static void test_ckpt_creates_nested_dir(void **state) {
  ckf_fixture *fx = *state;
  char dir[128];
  snprintf(dir, sizeof dir, "%s/a/b/c", fx->dir);
  char *path = ckf_write_step(dir, 3, 1);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  free(path);
}

static void test_ckpt_payload_is_safetensors(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 42, 1);
  size_t n;
  unsigned char *p = ckf_decompress_file(path, &n);
  uint64_t hlen = ckf_le64(p);
  assert_int_equal((8 + hlen) % 8, 0);
  assert_true(8 + hlen <= n);
  assert_int_equal(p[8], '{');
  json_error_t err;
  json_t *root = json_loadb((const char *)p + 8, hlen, JSON_REJECT_DUPLICATES, &err);
  assert_non_null(root);

  /* __metadata__ first, then the tensors in the order given. */
  ckf_model md;
  ckf_model_init(&md, 1);
  const char *order[4] = {"__metadata__", md.t[0].name, md.t[1].name, md.t[2].name};
  void *it = json_object_iter(root);
  for (int i = 0; i < 4; i++, it = json_object_iter_next(root, it)) {
    assert_non_null(it);
    assert_string_equal(json_object_iter_key(it), order[i]);
  }
  assert_null(it);

  json_t *meta = json_object_get(root, "__metadata__"), *v;
  const char *key;
  json_object_foreach(meta, key, v) assert_true(json_is_string(v));
  assert_string_equal(json_string_value(json_object_get(meta, "format")), "midscale-ckpt");
  assert_string_equal(json_string_value(json_object_get(meta, "format_version")), "2");
  assert_non_null(json_object_get(meta, "midscale_version"));
  assert_string_equal(json_string_value(json_object_get(meta, "step")), "42");
  assert_string_equal(json_string_value(json_object_get(meta, "seed")), "1234567890123");
  assert_string_equal(json_string_value(json_object_get(meta, "layout_hash")), "0123456789abcdef");

  /* Consecutive offsets, exact bytes, and the data hash over them. */
  const unsigned char *data = p + 8 + hlen;
  uint64_t off = 0;
  for (int i = 0; i < 3; i++) {
    json_t *e = json_object_get(root, md.t[i].name);
    assert_string_equal(json_string_value(json_object_get(e, "dtype")), "F32");
    json_t *offs = json_object_get(e, "data_offsets");
    uint64_t b = (uint64_t)json_integer_value(json_array_get(offs, 0));
    uint64_t en = (uint64_t)json_integer_value(json_array_get(offs, 1));
    json_t *shape = json_object_get(e, "shape");
    assert_int_equal(json_array_size(shape), (size_t)md.t[i].ndim);
    size_t count = 1;
    for (int d = 0; d < md.t[i].ndim; d++) {
      assert_int_equal(json_integer_value(json_array_get(shape, d)), md.t[i].shape[d]);
      count *= (size_t)md.t[i].shape[d];
    }
    assert_int_equal(b, off);
    assert_int_equal(en - b, count * sizeof(float));
    assert_memory_equal(data + b, md.t[i].data, en - b);
    off = en;
  }
  assert_int_equal(8 + hlen + off, n);
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64, ckf_data_hash_v2(data, off));
  assert_string_equal(json_string_value(json_object_get(meta, "data_hash")), hex);
  json_decref(root);
  free(p);
  free(path);
}

static void test_ckpt_frame_has_checksum_and_size(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  size_t csize, n;
  unsigned char *c = ckf_slurp(path, &csize);
  unsigned char *p = ckf_decompress_file(path, &n);
  ZSTD_frameHeader zfh;
  assert_int_equal(ZSTD_getFrameHeader(&zfh, c, csize), 0);
  assert_int_equal(zfh.frameType, ZSTD_frame);
  assert_int_equal(zfh.checksumFlag, 1);
  assert_int_equal(zfh.frameContentSize, n);
  assert_int_equal(ZSTD_findFrameCompressedSize(c, csize), csize);
  free(c);
  free(p);
  free(path);
}


/* ---- writing ------------------------------------------------------------------ */

static void test_ckpt_step_out_of_range_refused(void **state) {
  ckf_fixture *fx = *state;
  ckf_model md;
  ckf_model_init(&md, 1);
  ckpt_meta m = ckf_test_meta(100000000);
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &path), MS_ECKPT);
  assert_null(path);
  m.step = -1;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &path), MS_ECKPT);
  m.step = 99999999;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &path), 0);
  assert_non_null(strstr(path, "step-99999999.safetensors.zst"));
  free(path);
}

static void test_ckpt_invalid_cursor_refused(void **state) {
  ckf_fixture *fx = *state;
  ckf_model md;
  ckf_model_init(&md, 1);
  ckpt_meta m = ckf_test_meta(1);
  m.world_size = 0;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  m = ckf_test_meta(1);
  m.epoch = -1;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  m = ckf_test_meta(1);
  m.step_in_epoch = -1;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  assert_int_equal(ckf_count_entries(fx->dir, NULL), 0);
}

static void test_ckpt_duplicate_name_refused(void **state) {
  ckf_fixture *fx = *state;
  ckf_model md;
  ckf_model_init(&md, 1);
  md.t[2].name = md.t[0].name;
  ckpt_meta m = ckf_test_meta(1);
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  assert_non_null(strstr(ms_error_msg(), "given twice"));
  assert_int_equal(ckf_count_entries(fx->dir, NULL), 0);
}

static void test_ckpt_write_into_file_fails_cleanly(void **state) {
  ckf_fixture *fx = *state;
  char file[128], below[160];
  snprintf(file, sizeof file, "%s/plain", fx->dir);
  snprintf(below, sizeof below, "%s/sub", file);
  ckf_spit(file, "x", 1);
  ckf_model md;
  ckf_model_init(&md, 1);
  ckpt_meta m = ckf_test_meta(1);
  char *path = NULL;
  assert_int_equal(ckpt_write(file, md.t, 3, &m, 3, &path), MS_EIO);
  assert_null(path);
  assert_non_null(strstr(ms_error_msg(), "not a directory"));
  assert_int_equal(ckpt_write(below, md.t, 3, &m, 3, &path), MS_EIO);
  assert_null(path);
  assert_int_equal(ckf_count_entries(fx->dir, NULL), 1);
}

/* A file that cannot grow (as on a full disk) fails the write, removes the
 * temporary file and leaves the existing checkpoint as it was. */
static void test_ckpt_write_fails_when_file_cannot_grow(void **state) {
  ckf_fixture *fx = *state;
  char *old = ckf_write_step(fx->dir, 1, 1);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = 256;
    setrlimit(RLIMIT_FSIZE, &rl);
    ckf_model md;
    ckf_model_init(&md, 2);
    ckpt_meta m = ckf_test_meta(2);
    int rc = ckpt_write(fx->dir, md.t, 3, &m, 3, NULL);
    _exit(rc == MS_EIO && strstr(ms_error_msg(), "write failed") ? 0 : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(ckf_count_entries(fx->dir, NULL), 1);
  assert_int_equal(ckf_count_entries(fx->dir, ".tmp"), 0);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(old, &m), 0);
  assert_int_equal(m.step, 1);
  ckpt_meta_free(&m);
  free(old);
}

static void test_ckpt_write_same_step_replaces(void **state) {
  ckf_fixture *fx = *state;
  char *a = ckf_write_step(fx->dir, 5, 1);
  char *b = ckf_write_step(fx->dir, 5, 2);
  assert_string_equal(a, b);
  assert_int_equal(ckf_count_entries(fx->dir, NULL), 1);
  ckf_model src, dst;
  ckf_model_init(&src, 2);
  ckf_model_init(&dst, 3);
  ckpt_meta m;
  assert_int_equal(ckpt_read(b, dst.t, 3, 0, &m), 0);
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  ckpt_meta_free(&m);
  free(a);
  free(b);
}


/* ---- byte shuffle (checkpoint.shuffle) ------------------------------------- */

static void test_ckpt_shuffle_roundtrip(void **state) {
  ckf_fixture *fx = *state;
  ckf_model a, b;
  ckf_model_init(&a, 21);
  memset(&b, 0, sizeof b);
  ckf_model_init(&b, 99); /* same shapes, other values */
  ckpt_meta m = ckf_test_meta(5), back;
  m.byte_shuffle = 1;
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, a.t, 3, &m, 3, &path), 0);
  assert_int_equal(ckpt_read(path, b.t, 3, m.layout_hash, &back), 0);
  assert_memory_equal(a.w, b.w, sizeof a.w);
  assert_memory_equal(a.b, b.b, sizeof a.b);
  assert_memory_equal(a.m, b.m, sizeof a.m);
  assert_int_equal(back.byte_shuffle, 1);
  ckpt_meta_free(&back);
  /* read_meta verifies the data hash through the unshuffle path too */
  assert_int_equal(ckpt_read_meta(path, &back), 0);
  assert_int_equal(back.byte_shuffle, 1);
  ckpt_meta_free(&back);
  free(path);
}

static void test_ckpt_shuffle_stores_bytes_grouped(void **state) {
  ckf_fixture *fx = *state;
  ckf_model a;
  ckf_model_init(&a, 22);
  ckpt_contents plain;
  ckpt_meta m = ckf_test_meta(6);
  m.byte_shuffle = 1;
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, a.t, 3, &m, 3, &path), 0);
  /* export with the optimizer writes the same tensors plain, unshuffled */
  char out[256];
  snprintf(out, sizeof out, "%s/plain.safetensors", fx->dir);
  assert_int_equal(ckpt_export(path, out, NULL), 0);
  size_t n = 0;
  unsigned char *file = ckf_slurp(out, &n);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | file[i];
  /* the first tensor in the data section is layers.0.weight, plain */
  assert_memory_equal(file + 8 + hlen, a.w, sizeof a.w);
  assert_null(strstr((const char *)file + 8, "byte_shuffle"));
  free(file);
  assert_int_equal(ckpt_load(path, &plain), 0);
  assert_memory_equal(plain.tensors[0].data, a.w, sizeof a.w);
  ckpt_contents_free(&plain);
  free(path);
}

static void test_ckpt_shuffle_compresses_better(void **state) {
  ckf_fixture *fx = *state;
  enum { N = 1 << 16 };
  float *w = malloc(N * sizeof *w);
  assert_non_null(w);
  uint32_t x = 7;
  for (int i = 0; i < N; i++) { /* roughly normal: a sum of 4 uniforms, scaled */
    float v = 0;
    for (int k = 0; k < 4; k++) {
      x = x * 1664525u + 1013904223u;
      v += (float)(x >> 8) / 16777216.0f - 0.5f;
    }
    w[i] = 0.05f * v;
  }
  ckpt_tensor t = {"layers.0.weight", w, 2, {256, 256}};
  ckpt_meta m = ckf_test_meta(1);
  char *plain = NULL, *shuf = NULL;
  char d1[256], d2[256];
  snprintf(d1, sizeof d1, "%s/plain", fx->dir);
  snprintf(d2, sizeof d2, "%s/shuf", fx->dir);
  assert_int_equal(ckpt_write(d1, &t, 1, &m, 3, &plain), 0);
  m.byte_shuffle = 1;
  assert_int_equal(ckpt_write(d2, &t, 1, &m, 3, &shuf), 0);
  size_t np = 0, ns = 0;
  free(ckf_slurp(plain, &np));
  free(ckf_slurp(shuf, &ns));
  /* The sign/exponent bytes, grouped, compress: the file must shrink. */
  assert_true(ns < np);
  free(plain);
  free(shuf);
  free(w);
}


/* ---- format version 1 ------------------------------------------------------- */

static void test_ckpt_version1_still_verifies(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 9, 1);
  ckf_make_version1(path, 0);
  ckf_model src, dst;
  ckf_model_init(&src, 1);
  ckf_model_init(&dst, 2);
  ckpt_meta m;
  if (ckpt_read(path, dst.t, 3, 0x0123456789abcdefULL, &m)) fail_msg("%s", ms_error_msg());
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  assert_memory_equal(dst.m, src.m, sizeof src.m);
  assert_int_equal(m.step, 9);
  ckpt_meta_free(&m);
  /* Version 1's hash is checked as version 1's. */
  ckf_make_version1(path, 1);
  ckf_assert_refused(path, "data hash");
  free(path);
}


/* A checkpoint that main wrote before the checkpoint code was split by
 * layer and the hashes unified (tests/fixtures/, 350 bytes: two tensors,
 * byte-shuffled, two frames, format version 2): files already on disk must
 * keep resuming. */
static void test_ckpt_reads_a_file_main_wrote(void **state) {
  (void)state;
  float w[6], b[4];
  ckpt_tensor t[2] = {{"layers.0.weight", w, 2, {2, 3}}, {"layers.0.bias", b, 1, {4}}};
  const char *path = MS_SOURCE_DIR "/tests/fixtures/ckpt-main-v2-step-00000012.safetensors.zst";
  ckpt_meta m;
  if (ckpt_read(path, t, 2, 0x2598c763e8db4b57ULL, &m) != 0) fail_msg("%s", ms_error_msg());
  for (int i = 0; i < 6; i++) assert_true(w[i] == 0.5f * (float)i - 1.0f);
  for (int i = 0; i < 4; i++) assert_true(b[i] == -(float)i * 3.25f);
  assert_int_equal(m.step, 12);
  assert_int_equal(m.epoch, 1);
  assert_int_equal(m.step_in_epoch, 3);
  assert_int_equal(m.world_size, 2);
  assert_true(m.seed == 42 && m.rng_state == 7);
  assert_true(m.layout_hash == 0x2598c763e8db4b57ULL);
  assert_int_equal(m.byte_shuffle, 1);
  assert_string_equal(m.config, "model: {layers: [tiny]}\n");
  ckpt_meta_free(&m);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, ckf_setup, ckf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_ckpt_roundtrip_three_tensors),
      T(test_ckpt_read_meta_only),
      T(test_ckpt_empty_and_scalar_tensors),
      T(test_ckpt_file_name),
      T(test_ckpt_creates_nested_dir),
      T(test_ckpt_payload_is_safetensors),
      T(test_ckpt_frame_has_checksum_and_size),
      T(test_ckpt_step_out_of_range_refused),
      T(test_ckpt_invalid_cursor_refused),
      T(test_ckpt_duplicate_name_refused),
      T(test_ckpt_write_into_file_fails_cleanly),
      T(test_ckpt_write_fails_when_file_cannot_grow),
      T(test_ckpt_write_same_step_replaces),
      T(test_ckpt_shuffle_roundtrip),
      T(test_ckpt_shuffle_stores_bytes_grouped),
      T(test_ckpt_shuffle_compresses_better),
      T(test_ckpt_version1_still_verifies),
      T(test_ckpt_reads_a_file_main_wrote),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
