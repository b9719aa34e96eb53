/* Unit tests for trainer/trace: the checksum tests/tools/h5py_stream.py
 * recomputes, and the files a traced step writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "testutil.h"
#include "trace.h"

static void test_trace_writes_indices_sums_and_floats(void **state) {
  (void)state;
  char dir[96], path[160], line[256];
  assert_int_equal(tu_make_tmpdir(dir, sizeof dir, "trace"), 0);
  setenv("MIDSCALE_TRACE_SAMPLES", dir, 1);
  setenv("MIDSCALE_TRACE_FLOAT_STEPS", "1", 1);
  const uint64_t idx[2] = {7, 3};
  const float x[4] = {1.0f, 2.0f, -0.5f, 0.25f};
  trace_samples(2, 0, 0, idx, 2, x, 2);
  trace_samples(2, 1, 0, idx, 2, x, 2);

  snprintf(path, sizeof path, "%s/rank2.txt", dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof line, f));
  assert_string_equal(line, "0 0 7 3\n");
  fclose(f);
  snprintf(path, sizeof path, "%s/rank2.sum", dir);
  f = fopen(path, "r");
  assert_non_null(fgets(line, sizeof line, f));
  char want[64];
  snprintf(want, sizeof want, "0 %016llx\n",
           (unsigned long long)hash_fnv1a(HASH_FNV_OFFSET, x, sizeof x));
  assert_string_equal(line, want);
  fclose(f);
  snprintf(path, sizeof path, "%s/rank2.f32", dir);
  f = fopen(path, "rb");
  float got[8];
  assert_int_equal(fread(got, sizeof *got, 8, f), 4); /* the first step only */
  assert_memory_equal(got, x, sizeof x);
  fclose(f);
  assert_int_equal(tu_remove_tree(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trace_writes_indices_sums_and_floats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
