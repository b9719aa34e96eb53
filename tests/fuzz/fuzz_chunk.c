/* libFuzzer target for the direct chunk decoder (data/chunk_cache.c,
 * chunk_decode): the stored bytes of one chunk, inflated with libdeflate
 * and/or unshuffled, into a chunk of declared size.
 *
 * Input: a mode byte, two bytes of declared chunk size (little-endian, so
 * at most 64 KiB), then the rest. Mode bit 0: deflated; bit 1: shuffled,
 * with an element size of 2, 3, 4 or 8 bytes from bits 2-3; bit 4: the
 * rest is the chunk's content, stored here the way HDF5 would (shuffled,
 * then zlib-compressed by libdeflate) so that inputs reach the unshuffle
 * step and the size checks; clear: the rest is the stored bytes as they
 * are (a damaged or hostile stream).
 *
 * Oracle: the sanitizers, plus: a decode that succeeds gives exactly the
 * declared size (the buffers have no slack, so ASan sees any write past
 * it), unshuffling is undone by shuffling again, and a chunk stored here
 * from content of the declared size decodes back to that content; every
 * failure says why. A mismatch traps.
 *
 * Built only with -DMIDSCALE_FUZZ=ON (clang); see scripts/fuzz.sh.
 */
#include <libdeflate.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t elem_sizes[4] = {2, 3, 4, 8};

static void shuffle(const unsigned char *src, size_t bytes, size_t esz, unsigned char *dst) {
  size_t n = bytes / esz;
  for (size_t b = 0; b < esz; b++)
    for (size_t i = 0; i < n; i++) dst[b * n + i] = src[i * esz + b];
  memcpy(dst + n * esz, src + n * esz, bytes - n * esz);
}

static struct libdeflate_decompressor *inflater;
static struct libdeflate_compressor *deflater;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  if (!inflater && !(inflater = libdeflate_alloc_decompressor())) abort();
  if (!deflater && !(deflater = libdeflate_alloc_compressor(1))) abort();
  int deflated = data[0] & 1;
  size_t esz = data[0] & 2 ? elem_sizes[(data[0] >> 2) & 3] : 1;
  int store_here = (data[0] >> 4) & 1;
  size_t chunk_bytes = (size_t)data[1] | (size_t)data[2] << 8;
  const unsigned char *rest = data + 3;
  size_t n = size - 3;

  unsigned char *stored = NULL, *shuf = NULL;
  size_t stored_bytes = n;
  if (store_here) {
    shuf = malloc(n ? n : 1);
    if (!shuf) abort();
    if (esz > 1)
      shuffle(rest, n, esz, shuf);
    else if (n)
      memcpy(shuf, rest, n);
    if (deflated) {
      size_t cap = libdeflate_zlib_compress_bound(deflater, n);
      stored = malloc(cap);
      if (!stored) abort();
      stored_bytes = libdeflate_zlib_compress(deflater, shuf, n, stored, cap);
      if (!stored_bytes) abort();
    } else {
      stored = shuf, shuf = NULL;
    }
  } else {
    /* Exactly the input's bytes, in a buffer of their size (no slack). */
    stored = malloc(n ? n : 1);
    if (!stored) abort();
    if (n) memcpy(stored, rest, n);
  }
  unsigned char *dst = malloc(chunk_bytes ? chunk_bytes : 1);
  unsigned char *scratch = malloc(chunk_bytes ? chunk_bytes : 1);
  if (!dst || !scratch) abort();
  char why[160] = "";
  int rc = chunk_decode(inflater, stored, stored_bytes, deflated, esz, scratch, dst, chunk_bytes,
                        why);
  if (rc < 0 && !why[0]) {
    fprintf(stderr, "failed without a reason\n");
    __builtin_trap();
  }
  if (rc == 0 && esz > 1) {
    /* scratch holds the decoded, still shuffled chunk: shuffling dst again
     * must give it back. */
    unsigned char *again = malloc(chunk_bytes ? chunk_bytes : 1);
    if (!again) abort();
    shuffle(dst, chunk_bytes, esz, again);
    if (memcmp(again, scratch, chunk_bytes) != 0) {
      fprintf(stderr, "unshuffle is not the inverse of shuffle\n");
      __builtin_trap();
    }
    free(again);
  }
  if (store_here && chunk_bytes == n && (rc != 0 || memcmp(dst, rest, n) != 0)) {
    fprintf(stderr, "a chunk stored as HDF5 would does not decode back: %s\n", why);
    __builtin_trap();
  }
  if (store_here && chunk_bytes != n && rc == 0) {
    fprintf(stderr, "a chunk of %zu bytes decoded as one of %zu\n", n, chunk_bytes);
    __builtin_trap();
  }
  free(dst);
  free(scratch);
  free(stored);
  free(shuf);
  return 0;
}
