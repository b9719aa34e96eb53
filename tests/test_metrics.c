/* Tests for trainer/metrics: the JSON lines of metrics.jsonl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

/* Runs fill on a fresh sink and returns the lines it wrote to the JSONL
 * file, split in place into lines[0..*n). */
static char *records(void (*fill)(ms_metrics *), char **lines, int cap, int *n) {
  char path[] = "/tmp/ms_test_metrics_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  FILE *out = fopen("/dev/null", "w");
  assert_non_null(out);
  ms_metrics *m;
  assert_int_equal(metrics_open(&m, path, out, 0), 0);
  fill(m);
  metrics_close(m);
  fclose(out);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char buf[8192];
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  unlink(path);
  buf[got] = '\0';
  *n = 0;
  for (char *s = buf, *nl; *s && *n < cap; s = nl + 1) {
    nl = strchr(s, '\n');
    assert_non_null(nl); /* every record ends its line */
    *nl = '\0';
    lines[(*n)++] = s;
  }
  return buf;
}

static const char *const odd_path =
    "runs/a \"quoted\" dir\\back\nslash/step-00000007.safetensors.zst";

static void fill_checkpoint(ms_metrics *m) {
  metrics_ckpt c = {.step = 7,
                    .path = odd_path,
                    .bytes = 1234,
                    .raw_bytes = 5678,
                    .world = 2,
                    .background_compress = 1,
                    .ranks_write = 0,
                    .write_s = 0.25,
                    .stall_s = 0.001,
                    .compress_s = 0.1,
                    .gather_s = 0.05,
                    .file_s = 0.02};
  metrics_checkpoint(m, &c);
}

static void test_metrics_checkpoint_path_round_trips(void **state) {
  (void)state;
  char *lines[4];
  int n;
  records(fill_checkpoint, lines, 4, &n);
  assert_int_equal(n, 1); /* the newline in the path did not split the record */
  /* Compact, keys in order: tests/e2e/frames.sh greps this. */
  assert_non_null(strstr(lines[0], "{\"kind\":\"checkpoint\",\"step\":7,\"path\":"));
  assert_non_null(strstr(lines[0], "\"background_compress\":1,\"ranks_write\":0,"));
  json_error_t err;
  json_t *r = json_loads(lines[0], 0, &err);
  assert_non_null(r);
  assert_string_equal(json_string_value(json_object_get(r, "path")), odd_path);
  assert_int_equal(json_integer_value(json_object_get(r, "bytes")), 1234);
  assert_true(fabs(json_real_value(json_object_get(r, "write_s")) - 0.25) < 1e-12);
  json_decref(r);
}

static void fill_train(ms_metrics *m) {
  metrics_train(m, 3, 10, 0, 0.6931471805599453, 0.1234567, 0.01, 1234.56);
  metrics_train(m, 4, 10, 0, NAN, -1.0, 0.01, 1000.0);
  ms_eval e = {
      .loss = 0.5, .classifier = 1, .acc = 0.875, .top_k = 5, .topk_acc = 1.0, .n_samples = 64};
  metrics_eval(m, 4, 0, &e);
}

static void test_metrics_train_and_eval_records(void **state) {
  (void)state;
  char *lines[4];
  int n;
  records(fill_train, lines, 4, &n);
  assert_int_equal(n, 3);
  assert_non_null(strstr(lines[0], "{\"kind\":\"train\",\"step\":3,\"epoch\":0,\"loss\":"));
  json_error_t err;
  json_t *r = json_loads(lines[0], 0, &err);
  assert_non_null(r);
  assert_true(fabs(json_real_value(json_object_get(r, "loss")) - 0.693147181) < 1e-9);
  assert_true(json_real_value(json_object_get(r, "acc")) == 0.123457); /* 6 decimals */
  assert_true(json_real_value(json_object_get(r, "samples_per_s")) == 1234.6);
  json_decref(r);
  /* A diverged loss is null (JSON has no NaN); a regression model has no acc. */
  r = json_loads(lines[1], 0, &err);
  assert_non_null(r);
  assert_true(json_is_null(json_object_get(r, "loss")));
  assert_null(json_object_get(r, "acc"));
  json_decref(r);
  r = json_loads(lines[2], 0, &err);
  assert_non_null(r);
  assert_string_equal(json_string_value(json_object_get(r, "kind")), "eval");
  assert_int_equal(json_integer_value(json_object_get(r, "top_k")), 5);
  assert_int_equal(json_integer_value(json_object_get(r, "samples")), 64);
  json_decref(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_checkpoint_path_round_trips),
      cmocka_unit_test(test_metrics_train_and_eval_records),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
