/* Unit tests of trainer/config: the errors of a config text, one kind per
 * test, and the corpus of bad configs in tests/configs/bad. Serial. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "config_fixture.h"
#include "config_internal.h"
#include "ms_error.h"
#include "testutil.h"

/* ---- errors: one kind per test ---------------------------------------------- */

/* Deep flow nesting is stopped at CONFIG_MAX_DEPTH while parsing: libyaml
 * would take minutes on the whole text. */
static void test_config_error_too_deep(void **state) {
  (void)state;
  size_t n = 2000000;
  char *t = malloc(n + 8);
  assert_non_null(t);
  memcpy(t, "run: ", 5);
  memset(t + 5, '[', n - 5);
  t[n] = '\0';
  cfx_assert_parse_error(t, "t.yaml:1:1: expected a config of at most 1048576 bytes");
  t[1000000] = '\0';
  cfx_assert_parse_error(t, "t.yaml:1:37: expected lists and mappings nested at most 32 deep");
  free(t);
  cfx_assert_parse_error("run: {a: {b: {c: 1}}}\n", "run.a: unknown key");
}

static void test_config_error_nul_in_section(void **state) {
  (void)state;
  cfx_assert_parse_error("\"run\\0x\": {seed: 1}\n", "found a key with a NUL character");
}

static void test_config_override_second_document(void **state) {
  (void)state;
  ms_config c;
  config_defaults(&c);
  assert_int_equal(config_override(&c, "optim.lr=0.1\n---\n0.2"), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "found more than one document");
  assert_int_equal(config_override(&c, "optim.lr=0.1\n"), 0);
}

static void test_config_error_syntax(void **state) {
  (void)state;
  cfx_assert_parse_error("data:\n  path: d.h5\n  scale: [1.0\nmodel:\n",
                         "t.yaml:4:6: YAML syntax error: did not find expected ',' or ']' "
                         "(while parsing a flow sequence at line 3)");
}

static void test_config_error_empty_file(void **state) {
  (void)state;
  cfx_assert_parse_error("", "t.yaml:1:1: expected a mapping of sections");
  cfx_assert_parse_error("# only a comment\n\n", "found an empty document");
}

static void test_config_error_top_level_not_mapping(void **state) {
  (void)state;
  cfx_assert_parse_error("just text\n",
                         "t.yaml:1:1: expected a mapping of sections (run, data, "
                         "model, optim, ...) at the top level, found 'just text'");
  cfx_assert_parse_error("- run\n", "at the top level, found a list");
}

static void test_config_error_section_not_mapping(void **state) {
  (void)state;
  cfx_assert_parse_error("optim: fast\n",
                         "t.yaml:1:8: optim: expected a mapping of keys, found 'fast'");
}

static void test_config_error_unknown_key_suggests_nearest(void **state) {
  (void)state;
  cfx_assert_parse_error("optim:\n  lr: 0.1\n  momentom: 0.5\n",
                         "t.yaml:3:3: optim.momentom: unknown key, did you mean 'optim.momentum'?");
}

static void test_config_error_unknown_key_in_wrong_section(void **state) {
  (void)state;
  cfx_assert_parse_error("train:\n  lr: 0.1\n",
                         "t.yaml:2:3: train.lr: unknown key, did you mean 'optim.lr'?");
}

static void test_config_error_unknown_key_far_from_all(void **state) {
  (void)state;
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, "log:\n  colour_scheme: dark\n"), MS_ECONFIG);
  tu_assert_contains(
      ms_error_msg(),
      "t.yaml:2:3: log.colour_scheme: unknown key (log has: every_steps, progress, trace_steps)");
  assert_null(strstr(ms_error_msg(), "did you mean"));
}

static void test_config_error_unknown_section_suggests_nearest(void **state) {
  (void)state;
  cfx_assert_parse_error("optimizer:\n  lr: 0.1\n",
                         "t.yaml:1:1: optimizer: unknown section, did you mean 'optim'?");
  cfx_assert_parse_error("lr: 0.1\n", "t.yaml:1:1: lr: unknown section, did you mean 'optim.lr'?");
  cfx_assert_parse_error("zzzzzzzz: 1\n", "zzzzzzzz: unknown section (expected one of run, data");
}

static void test_config_error_duplicate_key(void **state) {
  (void)state;
  cfx_assert_parse_error("optim:\n  lr: 0.1\n  lr: 0.2\n",
                         "t.yaml:3:3: optim.lr: duplicate key (first set at line 2)");
  cfx_assert_parse_error("log: {}\nlog: {}\n",
                         "t.yaml:2:1: log: duplicate section (first at line 1)");
  cfx_assert_parse_error("model:\n  layers: [{units: 1, units: 2}]\n",
                         "t.yaml:2:23: model.layers[0].units: duplicate key (first set at line 2)");
}

static void test_config_error_string_where_int_expected(void **state) {
  (void)state;
  cfx_assert_parse_error("train:\n  epochs: ten\n",
                         "t.yaml:2:11: train.epochs: expected an integer, found 'ten'");
}

static void test_config_error_fraction_where_int_expected(void **state) {
  (void)state;
  cfx_assert_parse_error("train:\n  epochs: 1.5\n",
                         "t.yaml:2:11: train.epochs: expected an integer, found '1.5'");
  cfx_assert_parse_error("train:\n  epochs: 1e3\n", "expected an integer, found '1e3'");
}

static void test_config_error_quoted_number(void **state) {
  (void)state;
  cfx_assert_parse_error("optim:\n  lr: '0.1'\n",
                         "optim.lr: expected a number, found the quoted string '0.1'");
}

static void test_config_error_missing_value(void **state) {
  (void)state;
  cfx_assert_parse_error("optim:\n  lr:\n",
                         "t.yaml:2:6: optim.lr: expected a number, found nothing");
}

static void test_config_error_list_where_scalar_expected(void **state) {
  (void)state;
  cfx_assert_parse_error("optim:\n  lr: [0.1]\n",
                         "t.yaml:2:7: optim.lr: expected a single value, found a list");
}

static void test_config_error_bool_rejects_yes(void **state) {
  (void)state;
  cfx_assert_parse_error("log:\n  progress: yes\n",
                         "t.yaml:2:13: log.progress: expected true or false, found 'yes'");
  cfx_assert_parse_error("optim:\n  nesterov: 1\n", "expected true or false, found '1'");
  cfx_assert_parse_error("optim:\n  nesterov: True\n", "expected true or false, found 'True'");
}

static void test_config_error_out_of_range(void **state) {
  (void)state;
  cfx_assert_parse_error("optim:\n  lr: 0\n",
                         "t.yaml:2:7: optim.lr: expected a number in (0, 10], found 0");
  cfx_assert_parse_error("optim:\n  momentum: 1.0\n",
                         "optim.momentum: expected a number in [0, 1), found 1.0");
  cfx_assert_parse_error("train:\n  batch_size: 0\n",
                         "train.batch_size: expected an integer in [1, 16777216], found 0");
  cfx_assert_parse_error("log:\n  every_steps: -5\n",
                         "log.every_steps: expected an integer >= 1, found -5");
  cfx_assert_parse_error("data:\n  scale: -1\n", "data.scale: expected a number > 0, found -1");
}

static void test_config_error_integer_overflow(void **state) {
  (void)state;
  cfx_assert_parse_error(
      "train:\n  epochs: 99999999999999999999\n",
      "train.epochs: expected an integer in [1, 100000], found 99999999999999999999");
  cfx_assert_parse_error("run:\n  seed: 18446744073709551616\n",
                         "run.seed: expected an integer in [0, 18446744073709551615], found "
                         "18446744073709551616");
  cfx_assert_parse_error("run:\n  seed: -1\n",
                         "run.seed: expected an unsigned integer, found '-1'");
}

static void test_config_error_double_rejects_nan_inf(void **state) {
  (void)state;
  cfx_assert_parse_error("optim:\n  lr: nan\n", "optim.lr: expected a finite number, found 'nan'");
  cfx_assert_parse_error("optim:\n  lr: 1e999\n",
                         "optim.lr: expected a finite number, found '1e999'");
  cfx_assert_parse_error("optim:\n  lr: -inf\n",
                         "optim.lr: expected a finite number, found '-inf'");
  cfx_assert_parse_error("optim:\n  lr: .inf\n", "optim.lr: expected a number, found '.inf'");
  cfx_assert_parse_error("optim:\n  lr: 1e-400\n", "which is too small for a double");
}

static void test_config_error_enum_not_allowed(void **state) {
  (void)state;
  cfx_assert_parse_error(
      "schedule:\n  name: linear\n",
      "t.yaml:2:9: schedule.name: expected one of constant, cosine, step, onecycle, "
      "found 'linear'");
  cfx_assert_parse_error("optim:\n  name: rmsprop\n",
                         "optim.name: expected one of sgd, adam, adamw, found 'rmsprop'");
  cfx_assert_parse_error(
      "model:\n  layers: [{units: 3, activation: swish}]\n",
      "model.layers[0].activation: expected one of none, relu, leaky_relu, gelu, "
      "tanh, sigmoid, softmax, found 'swish'");
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, "schedule:\n  name: linear\n"), MS_ECONFIG);
  assert_null(strstr(ms_error_msg(), "did you mean")); /* nothing close to suggest */
}

static void test_config_error_string_too_long(void **state) {
  (void)state;
  char text[600];
  int n = snprintf(text, sizeof text, "run:\n  name: ");
  memset(text + n, 'x', 256);
  strcpy(text + n + 256, "\n");
  cfx_assert_parse_error(text,
                         "t.yaml:2:9: run.name: expected a string of at most 255 bytes, "
                         "found 256 bytes");
  memset(text + n, 'x', 255);
  strcpy(text + n + 255, "\n");
  ms_config c;
  assert_int_equal(cfx_parse_text(&c, text), 0);
  assert_int_equal(strlen(c.run.name), 255);
}

static void test_config_error_layers_not_a_list(void **state) {
  (void)state;
  cfx_assert_parse_error("model:\n  layers: 3\n",
                         "t.yaml:2:11: model.layers: expected a list of layers, found '3'");
}

static void test_config_error_layer_not_mapping(void **state) {
  (void)state;
  cfx_assert_parse_error(
      "model:\n  layers:\n    - dense\n",
      "t.yaml:3:7: model.layers[0]: expected a mapping like {type: dense, units: "
      "10, activation: relu}, found 'dense'");
}

static void test_config_error_layer_missing_units(void **state) {
  (void)state;
  cfx_assert_parse_error(
      "model:\n  layers:\n    - {units: 4, activation: relu}\n"
      "    - {type: dense}\n",
      "t.yaml:4:7: model.layers[1].units: expected an integer >= 1, found nothing "
      "(every dense layer needs units)");
}

static void test_config_error_layer_unknown_key(void **state) {
  (void)state;
  cfx_assert_parse_error("model:\n  layers: [{unit: 3}]\n",
                         "t.yaml:2:13: model.layers[0].unit: unknown key, did you mean "
                         "'model.layers[0].units'?");
}

static void test_config_error_too_many_layers(void **state) {
  (void)state;
  char text[1024];
  size_t n = (size_t)snprintf(text, sizeof text, "model:\n  layers: [");
  for (int i = 0; i < MS_MAX_LAYERS + 1; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "{units: 1},");
  snprintf(text + n, sizeof text - n, "]\n");
  cfx_assert_parse_error(text, "model.layers: expected at most 32 layers, found 33");
}

static void test_config_error_non_utf8(void **state) {
  (void)state;
  cfx_assert_parse_error("run:\n  name: caf\xe9\n",
                         "t.yaml:2:12: expected UTF-8 text, found bytes that are not valid UTF-8");
  cfx_assert_parse_error("run:\n  name: \xff\xfe\n", "save the file as UTF-8");
}

static void test_config_error_second_document(void **state) {
  (void)state;
  cfx_assert_parse_error("log: {}\n---\nrun: {}\n",
                         "t.yaml:3:1: expected one YAML document, found a second one");
}

static void test_config_error_reports_all_problems(void **state) {
  (void)state;
  ms_config c;
  static const char text[] =
      "run:\n"
      "  nmae: x\n" /* 2: unknown key */
      "optim:\n"
      "  lr: abc\n"     /* 4: wrong type */
      "  momentum: 2\n" /* 5: range */
      "schedule:\n"
      "  name: linear\n" /* 7: enum */
      "train:\n"
      "  epochs: 2\n"
      "  epochs: 3\n" /* 10: duplicate */
      "model:\n"
      "  layers:\n"
      "    - {type: dense}\n" /* 13: missing units */
      "logs: {}\n";           /* 14: unknown section */
  assert_int_equal(cfx_parse_text(&c, text), MS_ECONFIG);
  const char *m = ms_error_msg();
  tu_assert_contains(m, "t.yaml:2:3: run.nmae: unknown key, did you mean 'run.name'?\n");
  tu_assert_contains(m, "t.yaml:4:7: optim.lr: expected a number, found 'abc'\n");
  tu_assert_contains(m, "t.yaml:5:13: optim.momentum: expected a number in [0, 1), found 2\n");
  tu_assert_contains(m,
                     "t.yaml:7:9: schedule.name: expected one of constant, cosine, step, onecycle, "
                     "found 'linear'\n");
  tu_assert_contains(m, "t.yaml:10:3: train.epochs: duplicate key (first set at line 9)\n");
  tu_assert_contains(m, "t.yaml:13:7: model.layers[0].units: expected an integer >= 1");
  tu_assert_contains(m, "t.yaml:14:1: logs: unknown section, did you mean 'log'?");
  /* One problem per line, no trailing newline. */
  int lines = 1;
  for (const char *p = m; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 7);
}

static void test_config_error_leaves_config_unchanged(void **state) {
  (void)state;
  ms_config before, after;
  config_defaults(&before);
  config_defaults(&after);
  const char text[] = "optim:\n  lr: 0.5\ntrain:\n  epochs: zero\n";
  assert_int_equal(config_parse(&after, text, strlen(text), "t.yaml"), MS_ECONFIG);
  assert_memory_equal(&before, &after, sizeof before);
}

static void test_config_error_many_problems_are_capped(void **state) {
  (void)state;
  char text[4096];
  size_t n = (size_t)snprintf(text, sizeof text, "optim:\n");
  for (int i = 0; i < 40; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "  bogus%d: 1\n", i);
  cfx_assert_parse_error(text, "(20 more problems not shown)");
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file tests/configs/bad/NAME.yaml starts with header comments:
 *   # expect: <substring of the message>     (required, first line)
 *   # set: section.key=value                  (any number: --set, in order)
 *   # world: N                                (ranks to validate for; 1)
 *   # exit: N                                 (midscale check's exit; 2)
 * Parsing, the overrides, validation and the checkpoint-directory check (as
 * `midscale check` makes them, without data) must fail with that substring.
 * tests/e2e/check.sh runs the same files through the binary. */
static void test_config_bad_corpus(void **state) {
  (void)state;
  char *names[256];
  int n = 0, failed = 0;
  DIR *dir = opendir(CFX_BAD_DIR);
  assert_non_null(dir);
  for (struct dirent *de; (de = readdir(dir)) != NULL;) {
    size_t len = strlen(de->d_name);
    if (len > 5 && !strcmp(de->d_name + len - 5, ".yaml") && n < 256)
      names[n++] = strdup(de->d_name);
  }
  closedir(dir);
  qsort(names, (size_t)n, sizeof names[0], by_name);
  assert_true(n >= 30);
  for (int i = 0; i < n; i++) {
    char path[2048], expect[1024] = "", ckdir[MS_PATH_MAX + 32];
    size_t len;
    int world = 1, code = 2;
    snprintf(path, sizeof path, "%s/%s", CFX_BAD_DIR, names[i]);
    char *text = cfx_read_all(path, &len);
    size_t eol = strcspn(text, "\n");
    assert_true(eol > 10 && eol < len && !strncmp(text, "# expect: ", 10));
    snprintf(expect, sizeof expect, "%.*s", (int)(eol - 10), text + 10);
    ms_config c;
    config_defaults(&c);
    int rc = config_parse(&c, text, len, names[i]);
    /* The header lines after the first. */
    for (const char *line = text + eol + 1; rc == 0 && !strncmp(line, "# ", 2);
         line += strcspn(line, "\n") + 1) {
      char value[512];
      size_t vl = strcspn(line, "\n");
      if (!strncmp(line, "# set: ", 7)) {
        snprintf(value, sizeof value, "%.*s", (int)(vl - 7), line + 7);
        rc = config_override(&c, value);
      } else if (!strncmp(line, "# world: ", 9)) {
        world = atoi(line + 9);
      } else if (!strncmp(line, "# exit: ", 8)) {
        code = atoi(line + 8);
      }
      if (!line[vl]) break;
    }
    if (rc == 0) rc = config_validate(&c, world);
    if (rc == 0) check_ckpt_dir_of(&c, ckdir, sizeof ckdir), rc = check_ckpt_dir(ckdir);
    if (ms_exit_code(rc) != code || !strstr(ms_error_msg(), expect)) {
      print_error("%s: rc %d, message:\n%s\n-- expected to contain:\n%s\n", names[i], rc,
                  ms_error_msg(), expect);
      failed++;
    }
    free(text);
    free(names[i]);
  }
  assert_int_equal(failed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_error_syntax),
      cmocka_unit_test(test_config_error_too_deep),
      cmocka_unit_test(test_config_error_nul_in_section),
      cmocka_unit_test(test_config_override_second_document),
      cmocka_unit_test(test_config_error_empty_file),
      cmocka_unit_test(test_config_error_top_level_not_mapping),
      cmocka_unit_test(test_config_error_section_not_mapping),
      cmocka_unit_test(test_config_error_unknown_key_suggests_nearest),
      cmocka_unit_test(test_config_error_unknown_key_in_wrong_section),
      cmocka_unit_test(test_config_error_unknown_key_far_from_all),
      cmocka_unit_test(test_config_error_unknown_section_suggests_nearest),
      cmocka_unit_test(test_config_error_duplicate_key),
      cmocka_unit_test(test_config_error_string_where_int_expected),
      cmocka_unit_test(test_config_error_fraction_where_int_expected),
      cmocka_unit_test(test_config_error_quoted_number),
      cmocka_unit_test(test_config_error_missing_value),
      cmocka_unit_test(test_config_error_list_where_scalar_expected),
      cmocka_unit_test(test_config_error_bool_rejects_yes),
      cmocka_unit_test(test_config_error_out_of_range),
      cmocka_unit_test(test_config_error_integer_overflow),
      cmocka_unit_test(test_config_error_double_rejects_nan_inf),
      cmocka_unit_test(test_config_error_enum_not_allowed),
      cmocka_unit_test(test_config_error_string_too_long),
      cmocka_unit_test(test_config_error_layers_not_a_list),
      cmocka_unit_test(test_config_error_layer_not_mapping),
      cmocka_unit_test(test_config_error_layer_missing_units),
      cmocka_unit_test(test_config_error_layer_unknown_key),
      cmocka_unit_test(test_config_error_too_many_layers),
      cmocka_unit_test(test_config_error_non_utf8),
      cmocka_unit_test(test_config_error_second_document),
      cmocka_unit_test(test_config_error_reports_all_problems),
      cmocka_unit_test(test_config_error_leaves_config_unchanged),
      cmocka_unit_test(test_config_error_many_problems_are_capped),
      cmocka_unit_test(test_config_bad_corpus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
