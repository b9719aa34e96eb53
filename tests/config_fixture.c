#include "config_fixture.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "ms_error.h"

/* The smallest config that validates. */
const char cfx_minimal[] =
    "data:\n"
    "  path: d.h5\n"
    "model:\n"
    "  layers:\n"
    "    - {type: dense, units: 10}\n";

int cfx_parse_text(ms_config *cfg, const char *text) {
  config_defaults(cfg);
  return config_parse(cfg, text, strlen(text), "t.yaml");
}

char *cfx_read_all(const char *path, size_t *len) {
  char *text = NULL;
  int rc = config_read_file(path, &text, len);
  if (rc) fail_msg("%s", ms_error_msg());
  return text;
}

void cfx_load_good_full(ms_config *cfg) {
  size_t len;
  char *text = cfx_read_all(CFX_GOOD_FULL, &len);
  config_defaults(cfg);
  assert_int_equal(config_parse(cfg, text, len, "good_full.yaml"), 0);
  free(text);
}

/* Emits cfg, parses the text back onto fresh defaults, compares bytewise. */
void cfx_assert_round_trip(const ms_config *cfg) {
  ms_config *back = calloc(1, sizeof *back);
  char *text = config_emit(cfg);
  assert_non_null(back);
  assert_non_null(text);
  config_defaults(back);
  if (config_parse(back, text, strlen(text), "emitted.yaml"))
    fail_msg("emitted text does not parse:\n%s\n--\n%s", ms_error_msg(), text);
  assert_memory_equal(cfg, back, sizeof *cfg);
  free(text);
  free(back);
}

void cfx_make_layer(ms_layer_cfg *l, ms_layer_type type) {
  cfg_layer_defaults(l);
  l->type = type;
}

void cfx_dense_layer(ms_layer_cfg *l, int units, ms_activation act) {
  cfx_make_layer(l, MS_LAYER_DENSE);
  l->units = units;
  l->activation = act;
}

void cfx_set_str(char *field, size_t size, const char *value) {
  memset(field, 0, size);
  snprintf(field, size, "%s", value);
}
