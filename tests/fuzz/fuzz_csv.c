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
#include <sys/mman.h>
#include <unistd.h>

#include "convert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64], out[96];

static void put_file(const void *bytes, size_t n) {
  if (fd < 0) {
    fd = memfd_create("fuzz_csv", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    snprintf(out, sizeof out, "/dev/shm/midscale_fuzz_csv_%ld.h5", (long)getpid());
  }
  if (ftruncate(fd, 0) != 0 || (n && pwrite(fd, bytes, n, 0) != (ssize_t)n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  put_file(data + 1, size - 1);
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
