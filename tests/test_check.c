/* Unit tests of trainer/check: the checkpoint-directory check and the resume
 * provenance check (the config saved in a checkpoint against this run's). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ckpt.h"
#include "config.h"
#include "ms_error.h"
#include "testutil.h"

#define TMP MS_BINARY_DIR "/tests/tmp/test_check"


static void make_tmp(void) {
  mkdir(MS_BINARY_DIR "/tests/tmp", 0777);
  mkdir(TMP, 0777);
}

static void test_check_ckpt_dir_existing_or_creatable(void **state) {
  (void)state;
  make_tmp();
  assert_int_equal(check_ckpt_dir(TMP), 0);
  assert_int_equal(check_ckpt_dir(TMP "/not/yet/there"), 0);
  assert_int_equal(check_ckpt_dir(TMP "/trailing/"), 0);
  assert_int_equal(check_ckpt_dir("relative-dir-that-does-not-exist"), 0);
}

static void test_check_ckpt_dir_under_a_file(void **state) {
  (void)state;
  make_tmp();
  FILE *f = fopen(TMP "/afile", "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(check_ckpt_dir(TMP "/afile/ckpt"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(),
                  "checkpoint directory '" TMP "/afile/ckpt' cannot be created: '" TMP
                  "/afile' is not a directory");
  assert_int_equal(check_ckpt_dir(TMP "/afile"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "cannot be written: '" TMP "/afile' is not a directory");
}

static void test_check_ckpt_dir_of(void **state) {
  (void)state;
  ms_config c;
  char dir[MS_PATH_MAX + 32];
  config_defaults(&c);
  check_ckpt_dir_of(&c, dir, sizeof dir);
  assert_string_equal(dir, "runs/run/checkpoints");
  assert_int_equal(config_override(&c, "checkpoint.dir=/x/y"), 0);
  check_ckpt_dir_of(&c, dir, sizeof dir);
  assert_string_equal(dir, "/x/y");
}

/* Writes a one-tensor checkpoint whose metadata holds cfg. */
static char *write_ckpt(const ms_config *cfg) {
  float w[4] = {1, 2, 3, 4};
  ckpt_tensor t = {.name = "layers.0.weight", .data = w, .ndim = 2, .shape = {2, 2}};
  ckpt_meta meta = {.step = 5, .world_size = 1, .seed = cfg->run.seed, .layout_hash = 1};
  char *path = NULL;
  meta.config = config_emit(cfg);
  assert_non_null(meta.config);
  make_tmp();
  if (ckpt_write(TMP "/ckpt", &t, 1, &meta, 1, &path)) fail_msg("%s", ms_error_msg());
  free(meta.config);
  return path;
}

static void minimal_config(ms_config *c) {
  config_defaults(c);
  assert_int_equal(config_override(c, "data.path=d.h5"), 0);
  assert_int_equal(config_override(c, "model.layers[0].units=48"), 0);
  assert_int_equal(config_override(c, "run.seed=7"), 0);
}

static void test_check_resume_config_same_or_safe_change(void **state) {
  (void)state;
  ms_config saved, now;
  minimal_config(&saved);
  char *path = write_ckpt(&saved);
  now = saved;
  assert_int_equal(check_resume_config(path, &now), 0);
  assert_int_equal(config_override(&now, "train.epochs=9"), 0);
  assert_int_equal(config_override(&now, "optim.lr=0.5"), 0);
  assert_int_equal(check_resume_config(path, &now), 0);
  free(path);
}

static void test_check_resume_config_lists_changed_keys(void **state) {
  (void)state;
  ms_config saved, now;
  char expect[1024];
  minimal_config(&saved);
  char *path = write_ckpt(&saved);
  now = saved;
  assert_int_equal(config_override(&now, "model.layers[0].units=40"), 0);
  assert_int_equal(config_override(&now, "run.seed=8"), 0);
  assert_int_equal(check_resume_config(path, &now), MS_ECKPT);
  snprintf(expect, sizeof expect,
           "%s: this checkpoint was made with a different config: run.seed 7 → 8; "
           "model.layers[0].units 48 → 40",
           path);
  assert_string_equal(ms_error_msg(), expect);
  free(path);
}

static void test_check_resume_config_missing_file(void **state) {
  (void)state;
  ms_config now;
  minimal_config(&now);
  assert_true(check_resume_config(TMP "/no-such.safetensors.zst", &now) < 0);
  tu_assert_contains(ms_error_msg(), "no-such.safetensors.zst");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_ckpt_dir_existing_or_creatable),
      cmocka_unit_test(test_check_ckpt_dir_under_a_file),
      cmocka_unit_test(test_check_ckpt_dir_of),
      cmocka_unit_test(test_check_resume_config_same_or_safe_change),
      cmocka_unit_test(test_check_resume_config_lists_changed_keys),
      cmocka_unit_test(test_check_resume_config_missing_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
