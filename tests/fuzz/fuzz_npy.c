/* libFuzzer target for `prepare npy` (data/convert_npy.c): the .npy
 * header dict parser and the whole reader and converter.
 *
 * Input: one mode byte, then the rest. Mode bit 0 clear: the rest is a
 * header dict, given to convert_npy_parse_dict (no file, no HDF5: the
 * fast path for the grammar); set: the rest is a .npy file (in a memfd,
 * opened by path like any input), converted with convert_npy as both the
 * inputs and the labels (so shape[0] always agrees) into an HDF5 file on
 * tmpfs (/dev/shm), removed after every input.
 *
 * Oracle: the sanitizers, plus: a parsed dict has a shape of 0..32
 * dimensions whose product is `elems`; a conversion that fails says why.
 * A mismatch traps.
 *
 * Built only with -DMIDSCALE_FUZZ=ON (clang); see scripts/fuzz.sh.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "fuzz_file.h"
#include "convert_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_dict(const uint8_t *d, size_t n) {
  npy_header h;
  memset(&h, 0xA5, sizeof h); /* the parser must set what it reports */
  char err[512] = "";
  /* Exactly the input's bytes, in a buffer of their size (no NUL after). */
  char *copy = malloc(n ? n : 1);
  if (!copy) abort();
  if (n) memcpy(copy, d, n);
  int rc = convert_npy_parse_dict("fuzz.npy", copy, n, &h, err, sizeof err);
  if (rc == 0) {
    if (h.ndim < 0 || h.ndim > NPY_MAX_DIMS || memchr(h.descr, '\0', sizeof h.descr) == NULL) {
      fprintf(stderr, "parsed an impossible header\n");
      __builtin_trap();
    }
    uint64_t e = 1;
    for (int i = 0; i < h.ndim; i++) e *= h.dims[i];
    if (e != h.elems) {
      fprintf(stderr, "elems %llu is not the product of the shape\n", (unsigned long long)h.elems);
      __builtin_trap();
    }
  } else if (rc != -1 || !err[0]) {
    fprintf(stderr, "parse_dict returned %d with message '%s'\n", rc, err);
    __builtin_trap();
  }
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (!(data[0] & 1)) {
    check_dict(data + 1, size - 1);
    return 0;
  }
  fuzz_file_put("fuzz_npy", data + 1, size - 1);
  const char *path = fuzz_file_in(), *out = fuzz_file_out();
  char err[1024] = "";
  int rc = convert_npy(path, path, out, (data[0] & 2) ? "g/train" : NULL, err, sizeof err);
  if (rc != 0 && (rc != -1 || !err[0])) {
    fprintf(stderr, "convert_npy returned %d with message '%s'\n", rc, err);
    __builtin_trap();
  }
  unlink(out);
  return 0;
}
