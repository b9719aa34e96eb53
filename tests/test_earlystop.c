/* earlystop (train.early_stop) and the checkpoint's train_state and
 * best.safetensors.zst that keep it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "config.h"
#include "earlystop.h"
#include "file.h"
#include "ms_error.h"
#include "testutil.h"

static void init(earlystop *es, ms_es_metric m, ms_es_mode mode, int patience, double delta) {
  ms_config c;
  config_defaults(&c);
  c.train.early_stop.metric = m;
  c.train.early_stop.mode = mode;
  c.train.early_stop.patience = patience;
  c.train.early_stop.min_delta = delta;
  earlystop_init(es, &c);
}

static ms_eval loss_eval(double loss) { return (ms_eval){.loss = loss, .classifier = 1}; }

static void test_earlystop_off_does_nothing(void **state) {
  (void)state;
  earlystop es;
  init(&es, MS_ES_NONE, MS_ES_AUTO, 1, 0);
  ms_eval e = loss_eval(1);
  for (int i = 0; i < 5; i++) assert_int_equal(earlystop_update(&es, &e, i), 0);
  assert_false(earlystop_stopped(&es));
  char buf[CKPT_MAX_TRAIN_STATE];
  earlystop_format(&es, buf, sizeof buf);
  assert_string_equal(buf, "");
}

static void test_earlystop_stops_after_patience(void **state) {
  (void)state;
  earlystop es;
  init(&es, MS_ES_LOSS, MS_ES_AUTO, 2, 0.1);
  const double losses[] = {1.0, 0.8, 0.75, 0.85, NAN};
  const int best[] = {1, 1, 0, 0, 0};
  for (int i = 0; i < 4; i++) {
    ms_eval e = loss_eval(losses[i]);
    assert_int_equal(earlystop_update(&es, &e, 10 * (i + 1)), best[i]);
  }
  /* 0.75 is not better than 0.8 by more than min_delta: two evaluations
   * without improvement. */
  assert_true(earlystop_stopped(&es));
  assert_int_equal(es.stop_step, 40);
  assert_int_equal(es.best_step, 20);
  assert_true(es.best == 0.8);
  char why[256];
  earlystop_describe(&es, why, sizeof why);
  assert_string_equal(why,
                      "eval loss did not improve by more than 0.1 for 2 evaluations; best "
                      "0.8 at step 20");
}

static void test_earlystop_accuracy_is_maximised_and_nan_never_improves(void **state) {
  (void)state;
  earlystop es;
  init(&es, MS_ES_ACC, MS_ES_AUTO, 3, 0);
  assert_int_equal(es.maximize, 1);
  ms_eval e = {.acc = 0.5, .classifier = 1};
  assert_int_equal(earlystop_update(&es, &e, 1), 1);
  e.acc = NAN;
  assert_int_equal(earlystop_update(&es, &e, 2), 0);
  e.acc = 0.6;
  assert_int_equal(earlystop_update(&es, &e, 3), 1);
  assert_int_equal(es.left, 3);
  init(&es, MS_ES_ACC, MS_ES_MIN, 3, 0);
  assert_int_equal(es.maximize, 0);
}

/* The state a checkpoint keeps gives back the exact best value, so a
 * resumed run decides as the uninterrupted one would. */
static void test_earlystop_state_round_trip(void **state) {
  (void)state;
  earlystop a, b;
  init(&a, MS_ES_LOSS, MS_ES_MIN, 4, 0);
  ms_eval e = loss_eval(0.1 + 1e-17 * 3);
  earlystop_update(&a, &e, 7);
  e = loss_eval(0.2);
  earlystop_update(&a, &e, 8);
  char buf[CKPT_MAX_TRAIN_STATE];
  earlystop_format(&a, buf, sizeof buf);
  init(&b, MS_ES_LOSS, MS_ES_MIN, 4, 0);
  int reset = -1;
  assert_int_equal(earlystop_parse(&b, buf, "f", &reset), 0);
  assert_int_equal(reset, 0);
  assert_memory_equal(&a, &b, sizeof a);
  /* Another metric: start afresh; garbage: an error naming the file. */
  init(&b, MS_ES_ACC, MS_ES_AUTO, 4, 0);
  assert_int_equal(earlystop_parse(&b, buf, "f", &reset), 0);
  assert_int_equal(reset, 1);
  assert_false(b.have_best);
  init(&b, MS_ES_LOSS, MS_ES_MIN, 4, 0);
  assert_int_equal(earlystop_parse(&b, "early_stop metric=loss", "f.zst", &reset), MS_ECKPT);
  tu_assert_contains(ms_error_msg(), "f.zst: cannot read the early-stopping state");
}

/* train_state travels in the metadata; best.safetensors.zst is never listed
 * with the rolling checkpoints (so never pruned nor resumed by auto). */
static void test_earlystop_ckpt_state_and_best_file(void **state) {
  (void)state;
  char dir[512];
  assert_int_equal(tu_make_tmpdir(dir, sizeof dir, "earlystop"), 0);
  float w[6] = {1, 2, 3, 4, 5, 6};
  ckpt_tensor t = {.name = "w", .data = w, .ndim = 2, .shape = {2, 3}};
  ckpt_meta m = {.step = 5, .world_size = 1, .config = "x: 1\n"};
  snprintf(m.train_state, sizeof m.train_state, "early_stop metric=loss");
  char *path = NULL;
  assert_int_equal(ckpt_write_named(dir, "best.safetensors.zst", &t, 1, &m, 3, 0, &path), 0);
  ckpt_meta r;
  assert_int_equal(ckpt_read_meta(path, &r), 0);
  assert_string_equal(r.train_state, "early_stop metric=loss");
  ckpt_meta_free(&r);
  free(path);
  m.train_state[0] = '\0';
  assert_int_equal(ckpt_write(dir, &t, 1, &m, 3, &path), 0);
  assert_int_equal(ckpt_read_meta(path, &r), 0);
  assert_string_equal(r.train_state, "");
  ckpt_meta_free(&r);
  free(path);
  ckpt_found *found = NULL;
  size_t n = 0;
  assert_int_equal(ckpt_file_list(dir, &found, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(found[0].name, "step-00000005.safetensors.zst");
  free(found);
  assert_int_equal(ckpt_write_named(dir, "step-00000001.safetensors.zst", &t, 1, &m, 3, 0, NULL),
                   MS_ECKPT);
  tu_remove_tree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_earlystop_off_does_nothing),
      cmocka_unit_test(test_earlystop_stops_after_patience),
      cmocka_unit_test(test_earlystop_accuracy_is_maximised_and_nan_never_improves),
      cmocka_unit_test(test_earlystop_state_round_trip),
      cmocka_unit_test(test_earlystop_ckpt_state_and_best_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
