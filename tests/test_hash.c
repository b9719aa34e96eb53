/* Tests for trainer/hash: the one FNV-1a and the one XXH3 wrapper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "hash.h"

static void test_hash_fnv1a_known_values(void **state) {
  (void)state;
  /* The published FNV-1a 64 test vectors: checkpoints and the trace store
   * these values, so they must never change. */
  assert_true(hash_fnv1a(HASH_FNV_OFFSET, "", 0) == 0xcbf29ce484222325ULL);
  assert_true(hash_fnv1a(HASH_FNV_OFFSET, "a", 1) == 0xaf63dc4c8601ec8cULL);
  assert_true(hash_fnv1a(HASH_FNV_OFFSET, "foobar", 6) == 0x85944171f73967e8ULL);
  /* Continuing from a previous hash equals hashing in one go. */
  assert_true(hash_fnv1a(hash_fnv1a(HASH_FNV_OFFSET, "foo", 3), "bar", 3) == 0x85944171f73967e8ULL);
}

static void test_hash_xxh3_known_value_and_seed(void **state) {
  (void)state;
  /* XXH3-64 of the empty input (xxHash's reference value). */
  assert_true(hash_xxh3("", 0, 0) == 0x2d06800538d394c2ULL);
  assert_true(hash_xxh3("foobar", 6, 0) != hash_xxh3("foobar", 6, 1));
  assert_true(hash_xxh3("foobar", 6, 7) == hash_xxh3("foobar", 6, 7));
}

static void test_hash_stream_equals_one_shot(void **state) {
  (void)state;
  unsigned char buf[5000];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 131u + 7u);
  hash_stream s;
  hash_stream_reset(&s);
  size_t pieces[] = {1, 63, 64, 1000, 3872};
  size_t off = 0;
  for (size_t k = 0; k < sizeof pieces / sizeof *pieces; k++) {
    hash_stream_update(&s, buf + off, pieces[k]);
    off += pieces[k];
  }
  assert_int_equal(off, sizeof buf);
  assert_true(hash_stream_digest(&s) == hash_xxh3(buf, sizeof buf, 0));
  hash_stream_reset(&s);
  assert_true(hash_stream_digest(&s) == hash_xxh3("", 0, 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hash_fnv1a_known_values),
      cmocka_unit_test(test_hash_xxh3_known_value_and_seed),
      cmocka_unit_test(test_hash_stream_equals_one_shot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
