/* Tests for trainer/sweep (the SWEEP.yaml parser and the trials) and
 * trainer/runlog (metrics.jsonl read back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_error.h"
#include "runlog.h"
#include "sweep.h"
#include "testutil.h"

static char dir[512];

static int setup(void **state) {
  (void)state;
  return tu_make_tmpdir(dir, sizeof dir, "sweep");
}

static int teardown(void **state) {
  (void)state;
  return tu_remove_tree(dir);
}

/* Writes text to dir/name and returns its path (static buffer). */
static const char *put(const char *name, const char *text) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static sweep_spec *parse_ok(const char *text) {
  sweep_spec *s = NULL;
  int rc = sweep_parse_file(put("s.yaml", text), &s);
  if (rc) fail_msg("%s", ms_error_msg());
  return s;
}

static void test_sweep_grid_order_last_key_fastest(void **state) {
  (void)state;
  sweep_spec *s = parse_ok("base: b.yaml\ngrid:\n  optim.lr: [0.1, 0.2]\n"
                           "  train.batch_size: [32, 64, 128]\n");
  char v[SWEEP_MAX_KEYS][SWEEP_VALUE_MAX];
  assert_int_equal(sweep_n_trials(s), 6);
  assert_string_equal(s->name, "s");
  assert_int_equal(s->ranks, 2);
  const char *want[6][2] = {{"0.1", "32"}, {"0.1", "64"}, {"0.1", "128"},
                            {"0.2", "32"}, {"0.2", "64"}, {"0.2", "128"}};
  for (int i = 0; i < 6; i++) {
    sweep_trial_values(s, i, v);
    assert_string_equal(v[0], want[i][0]);
    assert_string_equal(v[1], want[i][1]);
  }
  free(s);
}

/* Trial i's draws depend on (seed, i) alone: more trials leave the draws
 * of trial i unchanged, another seed changes them; every draw is in its
 * range and already rounded as trials.tsv shows it. */
static void test_sweep_random_draws_depend_on_seed_and_trial(void **state) {
  (void)state;
  const char *fmt = "base: b.yaml\nrandom:\n  trials: %d\n  seed: %d\n  params:\n"
                    "    optim.lr: {log_uniform: [0.0001, 0.1]}\n"
                    "    optim.momentum: {uniform: [0.5, 0.9]}\n"
                    "    model.layers[0].units: {int_uniform: [8, 12]}\n"
                    "    model.loss: {choice: [mse, mae]}\n";
  char text[512], a[SWEEP_MAX_KEYS][SWEEP_VALUE_MAX], b[SWEEP_MAX_KEYS][SWEEP_VALUE_MAX];
  snprintf(text, sizeof text, fmt, 8, 5);
  sweep_spec *s8 = parse_ok(text);
  snprintf(text, sizeof text, fmt, 20, 5);
  sweep_spec *s20 = parse_ok(text);
  snprintf(text, sizeof text, fmt, 8, 6);
  sweep_spec *other = parse_ok(text);
  int differs = 0;
  for (int i = 0; i < 8; i++) {
    sweep_trial_values(s8, i, a);
    sweep_trial_values(s20, i, b);
    for (int k = 0; k < 4; k++) assert_string_equal(a[k], b[k]);
    double lr = atof(a[0]), mom = atof(a[1]);
    long units = strtol(a[2], NULL, 10);
    assert_true(lr >= 0.0001 && lr <= 0.1);
    assert_true(mom >= 0.5 && mom < 0.9);
    assert_true(units >= 8 && units <= 12 && strchr(a[2], '.') == NULL);
    assert_true(!strcmp(a[3], "mse") || !strcmp(a[3], "mae"));
    /* Rounded to 6 significant digits: printing it again changes nothing. */
    char again[64];
    snprintf(again, sizeof again, "%.6g", lr);
    assert_string_equal(again, a[0]);
    sweep_trial_values(other, i, b);
    differs += strcmp(a[0], b[0]) != 0;
  }
  assert_true(differs > 0);
  free(s8);
  free(s20);
  free(other);
}

static void test_sweep_grid_times_random(void **state) {
  (void)state;
  sweep_spec *s = parse_ok("base: b.yaml\nset: {train.epochs: 3, run.seed: '7'}\n"
                           "grid: {optim.lr: [0.1, 0.2, 0.3]}\n"
                           "random: {trials: 4, params: {optim.momentum: {uniform: [0, 1]}}}\n"
                           "slurm: {max_parallel: 3, time: '00:05:00', partition: gpu}\n"
                           "local: {mpirun: mpiexec --oversubscribe}\nranks: 4\nname: lr\n");
  char v[SWEEP_MAX_KEYS][SWEEP_VALUE_MAX];
  assert_int_equal(sweep_n_trials(s), 12);
  assert_int_equal(s->n_set, 2);
  assert_string_equal(s->set[0], "train.epochs=3");
  assert_string_equal(s->set[1], "run.seed='7'"); /* quoted stays quoted */
  sweep_trial_values(s, 5, v);                     /* grid point 1, draw 1 */
  assert_string_equal(v[0], "0.2");
  assert_int_equal(s->max_parallel, 3);
  assert_int_equal(s->ranks, 4);
  assert_string_equal(s->time, "00:05:00");
  assert_string_equal(s->partition, "gpu");
  assert_string_equal(s->mpirun, "mpiexec --oversubscribe");
  assert_string_equal(s->name, "lr");
  free(s);
}

/* Each bad file: MS_ECONFIG, no spec, and a message with file:line. */
static void test_sweep_bad_files_name_their_line(void **state) {
  (void)state;
  static const struct {
    const char *text, *msg;
  } cases[] = {
      {"base: b.yaml\ngrid: {optim.lr: 0.1}\n", "s.yaml:2:18: grid.optim.lr: expected a non-empty list"},
      {"base: b.yaml\ngrid: {a: [1], a: [2]}\n", "'a' is swept twice"},
      {"base: b.yaml\ngrid: {a: [1]}\nrandom: {trials: 0, params: {b: {uniform: [0, 1]}}}\n",
       "s.yaml:3:18: random.trials: expected an integer in [1, 1000], found '0'"},
      {"base: b.yaml\nrandom: {trials: 2, params: {b: {uniform: [1, 1]}}}\n",
       "uniform expects lo < hi"},
      {"base: b.yaml\nrandom: {trials: 2, params: {b: {int_uniform: [1.5, 3]}}}\n",
       "int_uniform expects lo < hi, integers"},
      {"base: b.yaml\ngrid: {a: [1]}\nslurm: {max_parallel: x}\n", "slurm.max_parallel"},
      {"base: b.yaml\ngrid: {a: [1]}\nslurm: {nodes: 2}\n", "slurm: unknown key 'nodes'"},
      {"base: b.yaml\ngrid: {a: [\"x\\ty\"]}\n", "without control characters"},
      {"- base\n", "s.yaml:1:1: expected a mapping"},
      {"", "found nothing"},
      {"base: b.yaml\nbase: c.yaml\ngrid: {a: [1]}\n", "'base' is given twice"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    sweep_spec *s = (sweep_spec *)1;
    int rc = sweep_parse_file(put("s.yaml", cases[i].text), &s);
    assert_int_equal(rc, MS_ECONFIG);
    assert_null(s);
    tu_assert_contains(ms_error_msg(), cases[i].msg);
  }
}

static void test_sweep_missing_file_is_usage_error(void **state) {
  (void)state;
  sweep_spec *s = NULL;
  assert_int_equal(sweep_parse_file("/nonexistent/s.yaml", &s), MS_EUSAGE);
  tu_assert_contains(ms_error_msg(), "cannot read config '/nonexistent/s.yaml'");
}

/* A resumed run logs the steps after its checkpoint again: the reader
 * keeps the second history; null losses are NaN; the last summary counts. */
static void test_runlog_resumed_steps_count_once(void **state) {
  (void)state;
  const char *path = put("metrics.jsonl",
                         "{\"kind\":\"train\",\"step\":2,\"epoch\":1,\"loss\":2.0,\"acc\":0.1,\"lr\":0.5}\n"
                         "{\"kind\":\"train\",\"step\":4,\"epoch\":1,\"loss\":1.5,\"acc\":0.2,\"lr\":0.5}\n"
                         "{\"kind\":\"train\",\"step\":6,\"epoch\":1,\"loss\":1.2,\"acc\":0.3,\"lr\":0.5}\n"
                         "{\"kind\":\"summary\",\"steps\":6,\"seconds\":1.0}\n"
                         "not json\n"
                         "{\"kind\":\"train\",\"step\":4,\"epoch\":1,\"loss\":1.4,\"acc\":0.2,\"lr\":0.5}\n"
                         "{\"kind\":\"eval\",\"step\":4,\"epoch\":1,\"loss\":1.6,\"acc\":0.25}\n"
                         "{\"kind\":\"train\",\"step\":8,\"epoch\":2,\"loss\":null,\"lr\":0.25}\n"
                         "{\"kind\":\"summary\",\"steps\":8,\"seconds\":2.5}\n");
  runlog log;
  assert_int_equal(runlog_read(path, &log), 0);
  const runlog_series *loss = &log.s[RUNLOG_TRAIN_LOSS];
  assert_int_equal(loss->n, 3);
  assert_int_equal(loss->step[0], 2);
  assert_int_equal(loss->step[1], 4);
  assert_true(loss->v[1] == 1.4);
  assert_int_equal(loss->step[2], 8);
  assert_true(isnan(loss->v[2]));
  assert_int_equal(log.s[RUNLOG_TRAIN_ACC].n, 2); /* step 8 has no acc */
  assert_true(runlog_last(&log, RUNLOG_LR) == 0.25);
  assert_true(runlog_last(&log, RUNLOG_EVAL_LOSS) == 1.6);
  assert_true(runlog_last(&log, RUNLOG_EVAL_ACC) == 0.25);
  assert_true(isnan(runlog_last(&log, RUNLOG_EVAL_MSE)));
  assert_int_equal(log.has_summary, 1);
  assert_int_equal(log.summary_step, 8);
  assert_int_equal(log.last_step, 8);
  assert_string_equal(runlog_name(RUNLOG_EVAL_TOPK_ACC), "eval_topk_acc");
  runlog_free(&log);
  runlog_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sweep_grid_order_last_key_fastest),
      cmocka_unit_test(test_sweep_random_draws_depend_on_seed_and_trial),
      cmocka_unit_test(test_sweep_grid_times_random),
      cmocka_unit_test(test_sweep_bad_files_name_their_line),
      cmocka_unit_test(test_sweep_missing_file_is_usage_error),
      cmocka_unit_test(test_runlog_resumed_steps_count_once),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
