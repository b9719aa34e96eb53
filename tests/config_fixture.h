/* config_fixture — what the config unit tests (tests/test_config*.c) share:
 * the smallest valid config, parsing a text, the good_full.yaml fixture,
 * layer items, and the emit/parse round trip. */
#ifndef MS_CONFIG_FIXTURE_H
#define MS_CONFIG_FIXTURE_H

#include <stddef.h>

#include "config.h"

#define CFX_GOOD_FULL MS_SOURCE_DIR "/tests/configs/good_full.yaml"
#define CFX_BAD_DIR MS_SOURCE_DIR "/tests/configs/bad"

/* The smallest config that validates. */
extern const char cfx_minimal[];

/* config_parse of a NUL-terminated text onto fresh defaults, as "t.yaml". */
int cfx_parse_text(ms_config *cfg, const char *text);

/* Asserts that parsing `text` fails with `sub` in the message. */
#define cfx_assert_parse_error(text, sub)                      \
  do {                                                         \
    ms_config c_;                                              \
    ms_error_clear();                                          \
    assert_int_equal(cfx_parse_text(&c_, (text)), MS_ECONFIG); \
    tu_assert_contains(ms_error_msg(), (sub));                 \
  } while (0)

/* config_read_file, failing the test on an error. Caller frees. */
char *cfx_read_all(const char *path, size_t *len);

/* tests/configs/good_full.yaml onto fresh defaults. */
void cfx_load_good_full(ms_config *cfg);

/* Emits cfg, parses the text back onto fresh defaults, compares bytewise. */
void cfx_assert_round_trip(const ms_config *cfg);

/* Fill *l with a layer of the given type and the item defaults, padding
 * bytes zeroed (round trips compare bytewise: a struct returned by value
 * need not keep its padding). */
void cfx_make_layer(ms_layer_cfg *l, ms_layer_type type);
void cfx_dense_layer(ms_layer_cfg *l, int units, ms_activation act);

/* Sets a string field, zeroing the rest of it. */
void cfx_set_str(char *field, size_t size, const char *value);

#endif
