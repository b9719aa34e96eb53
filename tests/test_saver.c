/* test_saver — the saver's ways of saving, without MPI: three savers in one
 * process stand for three ranks, and the test does the gathers by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "testutil.h"
#include "ms_error.h"
#include "saver.h"

enum { ROWS = 600, COLS = 1000 }; /* over 2 MiB each: several hash chunks */

typedef struct {
  char dir[64];
  float *w, *b;
  ckpt_tensor t[2];
} fixture;

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  if (tu_make_tmpdir(fx->dir, sizeof fx->dir, "saver") != 0) return -1;
  fx->w = malloc(sizeof(float) * ROWS * COLS);
  fx->b = malloc(sizeof(float) * ROWS);
  if (!fx->w || !fx->b) return -1;
  uint32_t x = 12345;
  for (int i = 0; i < ROWS * COLS; i++) {
    x = x * 1664525u + 1013904223u;
    fx->w[i] = (float)((int32_t)x) / 2147483648.0f * 0.05f;
  }
  for (int i = 0; i < ROWS; i++) fx->b[i] = (float)i * 0.5f;
  fx->t[0] = (ckpt_tensor){"layers.0.weight", fx->w, 2, {ROWS, COLS}};
  fx->t[1] = (ckpt_tensor){"layers.0.bias", fx->b, 1, {ROWS}};
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  tu_remove_tree(fx->dir);
  free(fx->w);
  free(fx->b);
  free(fx);
  return 0;
}

static ckpt_meta meta_at(int64_t step, int world) {
  ckpt_meta m = {.step = step, .epoch = 0, .step_in_epoch = step, .world_size = world,
                 .seed = 1, .rng_state = 2, .layout_hash = 3, .config = "run: {seed: 1}\n"};
  return m;
}

/* Reads path back into fresh arrays and compares with the fixture's. */
static void assert_holds(const fixture *fx, const char *path, int64_t step) {
  float *w = calloc(ROWS * COLS, sizeof(float)), *b = calloc(ROWS, sizeof(float));
  ckpt_tensor t[2] = {fx->t[0], fx->t[1]};
  t[0].data = w, t[1].data = b;
  ckpt_meta m;
  if (ckpt_read(path, t, 2, 3, &m)) fail_msg("%s", ms_error_msg());
  assert_int_equal(m.step, step);
  assert_memory_equal(w, fx->w, sizeof(float) * ROWS * COLS);
  assert_memory_equal(b, fx->b, sizeof(float) * ROWS);
  ckpt_meta_free(&m);
  free(w);
  free(b);
}

static void test_saver_alone_in_background_and_sync(void **state) {
  fixture *fx = *state;
  ms_saver *s;
  assert_int_equal(saver_create(&s, fx->t, 2, fx->dir, 3, 0, 5, 0, 1, 0), 0);
  ckpt_meta m = meta_at(7, 1);
  assert_int_equal(saver_start(s, &m, 0), 0);
  assert_int_equal(saver_pending(s), 1);
  float keep = fx->w[0];
  fx->w[0] = 1e6f; /* training goes on: the snapshot is what is written */
  saver_result res;
  assert_int_equal(saver_wait(s, &res), 0);
  fx->w[0] = keep;
  assert_int_equal(res.step, 7);
  assert_true(res.file_bytes > 0);
  assert_holds(fx, res.path, 7);
  assert_int_equal(saver_wait(s, &res), 1); /* nothing left */
  m.step = 8;
  assert_int_equal(saver_start(s, &m, 1), 0);
  assert_int_equal(saver_finished(s), 1); /* sync: done on return */
  assert_int_equal(saver_wait(s, &res), 0);
  assert_holds(fx, res.path, 8);
  saver_free(s);
}

/* Three ranks' savers; background as given; the gathers done here. */
static void save_together(fixture *fx, int background, int64_t step, int sync_write) {
  enum { W = 3 };
  ms_saver *s[W];
  for (int r = 0; r < W; r++)
    assert_int_equal(saver_create(&s[r], fx->t, 2, fx->dir, 3, 0, 5, r, W, background), 0);
  uint64_t all[64];
  size_t n_all = 0;
  for (int r = 0; r < W; r++) {
    const uint64_t *h;
    size_t n;
    assert_int_equal(saver_hash(s[r], 0, background, &h, &n), 0);
    memcpy(all + n_all, h, n * sizeof *h);
    n_all += n;
  }
  ckpt_meta m = meta_at(step, W);
  for (int r = 0; r < W; r++)
    assert_int_equal(saver_compress(s[r], r ? NULL : &m, r ? NULL : all, r ? 0 : n_all), 0);
  /* Training goes on: in the background the snapshot is compressed, on the
   * spot compression is already done; either way the change is not saved. */
  float keep = fx->w[ROWS * COLS - 1];
  fx->w[ROWS * COLS - 1] = -1e6f; /* in the last rank's slice */
  unsigned char *file = NULL;
  size_t len = 0;
  for (int r = 0; r < W; r++) {
    assert_int_equal(saver_compressing(s[r]), 1);
    const void *f;
    size_t fl;
    assert_int_equal(saver_frame(s[r], &f, &fl, NULL), 0);
    assert_true(fl > 0);
    file = realloc(file, len + fl);
    memcpy(file + len, f, fl);
    len += fl;
    saver_frame_done(s[r]);
    assert_int_equal(saver_compressing(s[r]), 0);
  }
  fx->w[ROWS * COLS - 1] = keep;
  assert_int_equal(saver_write(s[0], file, len, sync_write), 0);
  saver_result res;
  assert_int_equal(saver_wait(s[0], &res), 0);
  assert_holds(fx, res.path, step);
  for (int r = 0; r < W; r++) saver_free(s[r]);
}

static void test_saver_together_on_the_spot(void **state) { save_together(*state, 0, 11, 0); }

static void test_saver_together_in_background(void **state) { save_together(*state, 1, 12, 1); }

static void test_saver_out_of_turn_refused(void **state) {
  fixture *fx = *state;
  ms_saver *alone, *two;
  assert_int_equal(saver_create(&alone, fx->t, 2, fx->dir, 3, 0, 5, 0, 1, 0), 0);
  assert_int_equal(saver_create(&two, fx->t, 2, fx->dir, 3, 0, 5, 1, 2, 0), 0);
  const uint64_t *h;
  size_t n;
  assert_int_equal(saver_hash(alone, 0, 0, &h, &n), MS_EINTERNAL);
  ckpt_meta m = meta_at(1, 2);
  assert_int_equal(saver_start(two, &m, 0), MS_EINTERNAL);
  const void *f;
  assert_int_equal(saver_frame(two, &f, &n, NULL), MS_EINTERNAL);
  assert_int_equal(saver_hash(two, 0, 0, &h, &n), 0);
  assert_int_equal(saver_compress(two, NULL, NULL, 0), 0);
  assert_int_equal(saver_hash(two, 0, 0, &h, &n), MS_EINTERNAL); /* frame not taken */
  void *bytes = malloc(4);
  assert_int_equal(saver_write(two, bytes, 4, 0), MS_EINTERNAL); /* not rank 0; freed */
  saver_free(alone);
  saver_free(two); /* with a frame never taken */
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_saver_alone_in_background_and_sync),
      T(test_saver_together_on_the_spot),
      T(test_saver_together_in_background),
      T(test_saver_out_of_turn_refused),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
