/* test_ckpt_read — what the reader refuses and why, the directory scans
 * (find_latest, prune) and restore (--resume). Each test gets its own
 * temp dir (ckpt_fixture). */
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

/* ---- refusals ---------------------------------------------------------------- */

static void test_ckpt_missing_file_refused(void **state) {
  ckf_fixture *fx = *state;
  char path[128];
  snprintf(path, sizeof path, "%s/step-00000001.safetensors.zst", fx->dir);
  ckf_assert_refused(path, "cannot open");
}

static void test_ckpt_not_zstd_refused(void **state) {
  ckf_fixture *fx = *state;
  char path[128];
  snprintf(path, sizeof path, "%s/step-00000001.safetensors.zst", fx->dir);
  ckf_spit(path, "hello, this is not a checkpoint", 31);
  ckf_assert_refused(path, "zstd");
}

static void test_ckpt_truncated_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  size_t n;
  unsigned char *c = ckf_slurp(path, &n);
  size_t fhs = ZSTD_frameHeaderSize(c, n);
  assert_false(ZSTD_isError(fhs));
  size_t lens[] = {0, 1, 4, fhs, fhs + 3, n / 3, n / 2, n - 5, n - 4, n - 1};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    ckf_spit(path, c, lens[i]);
    ckf_assert_refused(path, NULL);
  }
  free(c);
  free(path);
}

static void test_ckpt_flipped_byte_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  size_t n;
  unsigned char *c = ckf_slurp(path, &n);
  size_t fhs = ZSTD_frameHeaderSize(c, n);
  assert_true(n > fhs + 400);
  /* The first block header, inside the first block (the JSON header's
   * bytes), through the tensor data, and the checksum at the end. */
  size_t pos[] = {0, fhs, fhs + 4, fhs + 40, fhs + 200, n / 2, 2 * n / 3, n - 40, n - 5, n - 1};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
    c[pos[i]] ^= 0x01;
    ckf_spit(path, c, n);
    ckf_assert_refused(path, NULL);
    c[pos[i]] ^= 0x01;
  }
  ckf_spit(path, c, n);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  free(c);
  free(path);
}

static void test_ckpt_trailing_garbage_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  size_t n;
  unsigned char *c = ckf_slurp(path, &n);
  unsigned char *big = malloc(2 * n);
  assert_non_null(big);
  memcpy(big, c, n);
  big[n] = 0;
  ckf_spit(path, big, n + 1);
  ckf_assert_refused(path, "after the zstd frame");
  memcpy(big + n, "garbage", 7);
  ckf_spit(path, big, n + 7);
  ckf_assert_refused(path, "after the zstd frame");
  memcpy(big + n, c, n); /* a second, valid frame */
  ckf_spit(path, big, 2 * n);
  ckf_assert_refused(path, "after the zstd frame");
  free(big);
  free(c);
  free(path);
}

static void test_ckpt_data_hash_mismatch_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_rewrite(path, NULL, -1); /* the rewrite alone keeps the file valid */
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  ckf_rewrite(path, NULL, 100);
  ckf_assert_refused(path, "data hash");
  free(path);
}

static void set_future_version(json_t *root) {
  json_object_set_new(json_object_get(root, "__metadata__"), "format_version", json_string("3"));
}

static void test_ckpt_future_format_version_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_rewrite(path, set_future_version, -1);
  ckf_assert_refused(path, "made by a newer midscale (format version 3; this build reads 2)");
  free(path);
}

static void set_wrong_format(json_t *root) {
  json_object_set_new(json_object_get(root, "__metadata__"), "format", json_string("other"));
}

static void test_ckpt_wrong_format_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_rewrite(path, set_wrong_format, -1);
  ckf_assert_refused(path, "not a midscale checkpoint");
  free(path);
}

static void set_overlapping_offsets(json_t *root) {
  json_t *offs = json_object_get(json_object_get(root, "layers.0.bias"), "data_offsets");
  int64_t b = json_integer_value(json_array_get(offs, 0));
  json_array_set_new(offs, 0, json_integer(b - 4));
  json_array_set_new(offs, 1, json_integer(b - 4 + 16 * 4));
}

static void test_ckpt_bad_offsets_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_rewrite(path, set_overlapping_offsets, -1);
  ckf_assert_refused(path, "layers.0.bias");
  free(path);
}

static void test_ckpt_wrong_shape_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_model md;
  ckf_model_init(&md, 2);
  md.t[0].shape[0] = 8;
  md.t[0].shape[1] = 16;
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 3, 0, &m), MS_ECKPT);
  ckf_assert_msg_has(path, "tensor 'layers.0.weight' has shape [16, 8] in the file but the model "
                       "expects [8, 16]: this checkpoint was made for another model");
  free(path);
}

static void test_ckpt_missing_tensor_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_model md;
  ckf_model_init(&md, 2);
  ckpt_tensor req[4] = {md.t[0], md.t[1], md.t[2], {"layers.1.bias", md.b, 1, {16}}};
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, req, 4, 0, &m), MS_ECKPT);
  ckf_assert_msg_has(path, "'layers.1.bias' is missing");
  free(path);
}

static void test_ckpt_extra_tensor_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_model md;
  ckf_model_init(&md, 2);
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 2, 0, &m), MS_ECKPT);
  ckf_assert_msg_has(path, "'optim/momentum/layers.0.weight' that the model does not have");
  free(path);
}

static void test_ckpt_layout_hash_mismatch_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_model md;
  ckf_model_init(&md, 2);
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 3, 0x1111111111111111ULL, &m), MS_ECKPT);
  ckf_assert_msg_has(path, "layout hash 0123456789abcdef");
  /* 0 means "do not check". */
  assert_int_equal(ckpt_read(path, md.t, 3, 0, &m), 0);
  ckpt_meta_free(&m);
  free(path);
}


/* ---- directory scans ------------------------------------------------------------ */

static void test_ckpt_find_latest_returns_newest(void **state) {
  ckf_fixture *fx = *state;
  char *p[3] = {ckf_write_step(fx->dir, 20, 1), ckf_write_step(fx->dir, 30, 1), ckf_write_step(fx->dir, 10, 1)};
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 0);
  assert_string_equal(found, p[1]);
  assert_null(skipped);
  free(found);
  for (int i = 0; i < 3; i++) free(p[i]);
}

static void test_ckpt_find_latest_skips_corrupted(void **state) {
  ckf_fixture *fx = *state;
  char *p20 = ckf_write_step(fx->dir, 20, 1), *p30 = ckf_write_step(fx->dir, 30, 1);
  size_t n;
  unsigned char *c = ckf_slurp(p30, &n);
  ckf_spit(p30, c, n / 2);
  free(c);
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 0);
  assert_string_equal(found, p20);
  assert_non_null(skipped);
  assert_int_equal(strncmp(skipped, p30, strlen(p30)), 0);
  assert_non_null(strstr(skipped, "truncated"));
  free(found);
  free(skipped);
  free(p20);
  free(p30);
}

static void test_ckpt_find_latest_ignores_other_names(void **state) {
  ckf_fixture *fx = *state;
  char *p = ckf_write_step(fx->dir, 20, 1);
  size_t n;
  unsigned char *c = ckf_slurp(p, &n);
  const char *others[] = {".step-00000099.safetensors.zst.tmp.123", "step-00000099.safetensors.zst.tmp",
                          "step-123.safetensors.zst", "step-000000099.safetensors.zst",
                          "step-0000009x.safetensors.zst", "notes.txt"};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fx->dir, others[i]);
    ckf_spit(path, c, n);
  }
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 0);
  assert_string_equal(found, p);
  assert_null(skipped);
  free(found);
  free(c);
  free(p);
}

static void test_ckpt_find_latest_none(void **state) {
  ckf_fixture *fx = *state;
  char *found = (char *)"x", *skipped = (char *)"x", missing[128];
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 1);
  assert_null(found);
  assert_null(skipped);
  snprintf(missing, sizeof missing, "%s/does-not-exist", fx->dir);
  assert_int_equal(ckpt_find_latest(missing, &found, NULL), 1);
  assert_null(found);
}

static void test_ckpt_find_latest_all_damaged(void **state) {
  ckf_fixture *fx = *state;
  char *p = ckf_write_step(fx->dir, 20, 1);
  ckf_spit(p, "junk", 4);
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 1);
  assert_null(found);
  assert_non_null(skipped);
  assert_non_null(strstr(skipped, p));
  free(skipped);
  free(p);
}

static void test_ckpt_prune_keeps_newest(void **state) {
  ckf_fixture *fx = *state;
  for (int s = 1; s <= 5; s++) free(ckf_write_step(fx->dir, s * 10, 1));
  char other[128];
  snprintf(other, sizeof other, "%s/notes.txt", fx->dir);
  ckf_spit(other, "keep me", 7);
  assert_int_equal(ckpt_prune(fx->dir, 2), 0);
  assert_int_equal(ckf_count_entries(fx->dir, NULL), 3);
  assert_int_equal(ckf_count_entries(fx->dir, "step-00000050"), 1);
  assert_int_equal(ckf_count_entries(fx->dir, "step-00000040"), 1);
  assert_int_equal(ckf_count_entries(fx->dir, "notes.txt"), 1);
  /* Never the newest, whatever keep says. */
  assert_int_equal(ckpt_prune(fx->dir, 0), 0);
  assert_int_equal(ckf_count_entries(fx->dir, "step-"), 1);
  assert_int_equal(ckf_count_entries(fx->dir, "step-00000050"), 1);
  char missing[128];
  snprintf(missing, sizeof missing, "%s/nope", fx->dir);
  assert_int_equal(ckpt_prune(missing, 2), 0);
}


/* ---- restore (--resume) ------------------------------------------------------ */

typedef struct {
  int64_t refuse_step; /* refuse the file of this step */
  int calls;
  char config[64];
} accept_ctx;

static int accept_step(void *ctx, const char *path, const ckpt_meta *meta) {
  accept_ctx *a = ctx;
  a->calls++;
  snprintf(a->config, sizeof a->config, "%s", meta->config ? meta->config : "(none)");
  if (meta->step == a->refuse_step)
    return ms_error_set(MS_ECKPT, "%s: made with a different config", path);
  return 0;
}

static void test_ckpt_restore_reads_newest_good_file(void **state) {
  ckf_fixture *fx = *state;
  char *p10 = ckf_write_step(fx->dir, 10, 1), *p20 = ckf_write_step(fx->dir, 20, 2);
  ckf_model src, dst;
  ckf_model_init(&src, 2);
  ckf_model_init(&dst, 3);
  accept_ctx a = {-1, 0, ""};
  ckpt_meta m;
  char *got = NULL, *skipped = NULL;
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0x0123456789abcdefULL, accept_step, &a,
                                &m, &got, &skipped), 0);
  assert_string_equal(got, p20);
  assert_null(skipped);
  assert_int_equal(m.step, 20);
  assert_int_equal(a.calls, 1);
  assert_string_equal(a.config, "run:\n  seed: 1\n");
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  ckpt_meta_free(&m);
  free(got);
  /* By path, the same file. */
  assert_int_equal(ckpt_restore(NULL, p10, dst.t, 3, 0, NULL, NULL, &m, &got, NULL), 0);
  assert_string_equal(got, p10);
  assert_int_equal(m.step, 10);
  ckpt_meta_free(&m);
  free(got);
  free(p10);
  free(p20);
}

static void test_ckpt_restore_skips_damaged_files(void **state) {
  ckf_fixture *fx = *state;
  char *p10 = ckf_write_step(fx->dir, 10, 1), *p20 = ckf_write_step(fx->dir, 20, 2);
  char *p30 = ckf_write_step(fx->dir, 30, 3);
  size_t n;
  unsigned char *c = ckf_slurp(p30, &n);
  ckf_spit(p30, c, n / 2);
  free(c);
  /* Step 20 is damaged and would not fit either: damage is what counts. */
  ckf_rewrite(p20, NULL, 100);
  ckf_model src, dst;
  ckf_model_init(&src, 1);
  ckf_model_init(&dst, 3);
  accept_ctx a = {20, 0, ""};
  ckpt_meta m;
  char *got = NULL, *skipped = NULL;
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, accept_step, &a, &m, &got, &skipped), 0);
  assert_string_equal(got, p10);
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  assert_non_null(skipped);
  assert_non_null(strstr(skipped, "step-00000030.safetensors.zst: "));
  assert_non_null(strstr(skipped, "step-00000020.safetensors.zst: corrupted (data hash"));
  ckpt_meta_free(&m);
  free(got);
  free(skipped);
  /* By path, a damaged file is an error. */
  ms_error_clear();
  assert_int_equal(ckpt_restore(NULL, p30, dst.t, 3, 0, NULL, NULL, &m, &got, NULL), MS_ECKPT);
  assert_null(got);
  ckf_assert_msg_has(p30, "");
  free(p10);
  free(p20);
  free(p30);
}

static void test_ckpt_restore_refuses_a_good_file_that_does_not_fit(void **state) {
  ckf_fixture *fx = *state;
  char *p10 = ckf_write_step(fx->dir, 10, 1), *p20 = ckf_write_step(fx->dir, 20, 2);
  ckf_model dst;
  ckf_model_init(&dst, 3);
  accept_ctx a = {20, 0, ""};
  ckpt_meta m;
  char *got = NULL, *skipped = NULL;
  /* Not a skip to step 10: the newest good file belongs to another run. */
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, accept_step, &a, &m, &got, &skipped),
                   MS_ECKPT);
  ckf_assert_msg_has(p20, "made with a different config");
  assert_null(got);
  assert_null(skipped);
  assert_null(m.config);
  /* Another model's shapes, likewise. */
  dst.t[0].shape[0] = 8, dst.t[0].shape[1] = 16;
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, NULL, NULL, &m, &got, &skipped),
                   MS_ECKPT);
  ckf_assert_msg_has(p20, "this checkpoint was made for another model");
  free(p10);
  free(p20);
}

static void test_ckpt_restore_nothing(void **state) {
  ckf_fixture *fx = *state;
  ckf_model dst;
  ckf_model_init(&dst, 3);
  ckpt_meta m;
  char *got = (char *)"x", *skipped = (char *)"x";
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, NULL, NULL, &m, &got, &skipped), 1);
  assert_null(got);
  assert_null(skipped);
  char *p = ckf_write_step(fx->dir, 20, 1);
  ckf_spit(p, "junk", 4);
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, NULL, NULL, &m, &got, &skipped), 1);
  assert_non_null(skipped);
  free(skipped);
  free(p);
}

/* A damaged file of another model is reported as damaged. */
static void test_ckpt_damage_reported_before_shape(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 1, 1);
  ckf_rewrite(path, NULL, 100);
  ckf_model md;
  ckf_model_init(&md, 2);
  md.t[0].shape[0] = 8, md.t[0].shape[1] = 16;
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 3, 0, &m), MS_ECKPT);
  ckf_assert_msg_has(path, "data hash");
  free(path);
}


int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, ckf_setup, ckf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_ckpt_missing_file_refused),
      T(test_ckpt_not_zstd_refused),
      T(test_ckpt_truncated_refused),
      T(test_ckpt_flipped_byte_refused),
      T(test_ckpt_trailing_garbage_refused),
      T(test_ckpt_data_hash_mismatch_refused),
      T(test_ckpt_future_format_version_refused),
      T(test_ckpt_wrong_format_refused),
      T(test_ckpt_bad_offsets_refused),
      T(test_ckpt_wrong_shape_refused),
      T(test_ckpt_missing_tensor_refused),
      T(test_ckpt_extra_tensor_refused),
      T(test_ckpt_layout_hash_mismatch_refused),
      T(test_ckpt_find_latest_returns_newest),
      T(test_ckpt_find_latest_skips_corrupted),
      T(test_ckpt_find_latest_ignores_other_names),
      T(test_ckpt_find_latest_none),
      T(test_ckpt_find_latest_all_damaged),
      T(test_ckpt_prune_keeps_newest),
      T(test_ckpt_restore_reads_newest_good_file),
      T(test_ckpt_restore_skips_damaged_files),
      T(test_ckpt_restore_refuses_a_good_file_that_does_not_fit),
      T(test_ckpt_restore_nothing),
      T(test_ckpt_damage_reported_before_shape),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
