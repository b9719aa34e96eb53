/* libFuzzer target for the checkpoint reader: every check a file passes
 * through on `inspect`, `export` and `--resume`.
 *
 * Input: one mode byte, then the rest. Mode bit 0 clear: the rest is the
 * plain safetensors payload, compressed here into one zstd frame (content
 * size and checksum on), so that mutations reach the header and tensor
 * checks instead of dying at the zstd checksum; set: the rest is the file
 * as it is (the frame walk and zstd). The file lives in a memfd, opened by
 * path like any checkpoint.
 *
 * Oracle: the sanitizers, plus: a file that loads must read back through
 * ckpt_read with its own tensors, and every failure is MS_ECKPT (a damaged
 * file is never "out of memory" nor an I/O error). A mismatch traps.
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
#include <zstd.h>

#include "ckpt.h"
#include "ms_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

static void put_file(const void *bytes, size_t n) {
  if (fd < 0) {
    fd = memfd_create("fuzz_ckpt", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || (n && pwrite(fd, bytes, n, 0) != (ssize_t)n)) abort();
}

static void check_code(int rc) {
  if (rc != 0 && rc != MS_ECKPT) {
    fprintf(stderr, "unexpected code %d: %s\n", rc, ms_error_msg());
    __builtin_trap();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *rest = data + 1;
  size_t n = size - 1;
  void *z = NULL;
  if (!(data[0] & 1)) {
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(n);
    z = malloc(cap ? cap : 1);
    if (!cc || !z) abort();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    size_t got = ZSTD_compress2(cc, z, cap, rest, n);
    ZSTD_freeCCtx(cc);
    if (ZSTD_isError(got)) abort();
    put_file(z, got);
  } else {
    put_file(rest, n);
  }
  ckpt_contents c;
  int rc = ckpt_load(path, &c);
  check_code(rc);
  if (rc == 0) {
    /* What loaded must read back into its own tensors. */
    ckpt_tensor *t = calloc((size_t)c.n_tensors + 1, sizeof *t);
    size_t bytes = 0;
    for (int i = 0; i < c.n_tensors; i++) {
      size_t e = 1;
      for (int d = 0; d < c.tensors[i].ndim; d++) e *= (size_t)c.tensors[i].shape[d];
      bytes += e * sizeof(float);
    }
    float *arena = malloc(bytes ? bytes : 1);
    if (!t || !arena) abort();
    size_t off = 0;
    for (int i = 0; i < c.n_tensors; i++) {
      t[i] = c.tensors[i];
      t[i].data = (float *)((char *)arena + off);
      size_t e = 1;
      for (int d = 0; d < t[i].ndim; d++) e *= (size_t)t[i].shape[d];
      off += e * sizeof(float);
    }
    ckpt_meta m;
    int r2 = ckpt_read(path, t, c.n_tensors, c.meta.layout_hash, &m);
    if (r2 != 0) {
      fprintf(stderr, "loaded but does not read back: %s\n", ms_error_msg());
      __builtin_trap();
    }
    ckpt_meta_free(&m);
    free(arena);
    free(t);
  }
  ckpt_contents_free(&c);
  free(z);
  return 0;
}
