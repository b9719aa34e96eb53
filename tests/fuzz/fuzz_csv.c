/* libFuzzer target for `prepare csv` (data/convert_csv.c): the CSV reader
 * and the conversion, on arbitrary bytes.
 *
 * Input: one mode byte, then the rest: the CSV file (in a memfd, opened by
 * path like any input). Mode bit 0 picks the label column's name ("label"
 * or "y"), bit 1 a test fraction (0 or 0.25, a second group and the seeded
 * split). The output is an HDF5 file on tmpfs (/dev/shm), removed after
 * every input: the converter reads and checks the whole file before it
 * creates any output, so only inputs that parse pay for HDF5.
 *
 * Oracle: the sanitizers, plus: a failure says why. A mismatch traps.
 *
 * Built only with -DMIDSCALE_FUZZ=ON (clang); see scripts/fuzz.sh.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  fuzz_file_put("fuzz_csv", data + 1, size - 1);
  const char *path = fuzz_file_in(), *out = fuzz_file_out();
  convert_csv_opts o = {0};
  o.label = (data[0] & 1) ? "y" : "label";
  o.test_fraction = (data[0] & 2) ? 0.25 : 0;
  o.seed = 7;
  char err[1024] = "";
  int rc = convert_csv(path, out, &o, err, sizeof err);
  if (rc != 0 && (rc != -1 || !err[0])) {
    fprintf(stderr, "convert_csv returned %d with message '%s'\n", rc, err);
    __builtin_trap();
  }
  unlink(out);
  return 0;
}
