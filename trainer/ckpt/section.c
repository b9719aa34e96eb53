/* ckpt/section — see section.h. */
#include "section.h"

#include <string.h>

#include "ms_error.h"

int64_t ckpt_sec_tensor_bytes(int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > CKPT_MAX_DIMS) return -1;
  uint64_t n = sizeof(float);
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return -1;
    if (shape[d] != 0 && n > CKPT_MAX_PAYLOAD / (uint64_t)shape[d]) return -1;
    n *= (uint64_t)shape[d];
  }
  return (int64_t)n;
}

uint64_t ckpt_sec_bytes(const ckpt_tensor *t, int n) {
  uint64_t d = 0;
  for (int i = 0; i < n; i++) d += (uint64_t)ckpt_sec_tensor_bytes(t[i].ndim, t[i].shape);
  return d;
}

int ckpt_data_size(const char *what, const ckpt_tensor *t, int n, uint64_t *bytes) {
  if (n < 0 || (n > 0 && !t)) return ms_error_set(MS_ECKPT, "%s: invalid tensor list", what);
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (!t[i].name || !*t[i].name || strcmp(t[i].name, "__metadata__") == 0)
      return ms_error_set(MS_ECKPT, "%s: tensor %d has an invalid name", what, i);
    int64_t b = ckpt_sec_tensor_bytes(t[i].ndim, t[i].shape);
    if (b < 0)
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' has an invalid shape", what, t[i].name);
    if (b > 0 && !t[i].data)
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' has no data", what, t[i].name);
    total += (uint64_t)b;
    if (total > CKPT_MAX_PAYLOAD)
      return ms_error_set(MS_ECKPT, "%s: tensors exceed %llu bytes", what, CKPT_MAX_PAYLOAD);
  }
  *bytes = total;
  return 0;
}

void ckpt_slice(uint64_t bytes, int n, int r, uint64_t *begin, uint64_t *end, uint64_t *first_chunk,
                uint64_t *n_chunks) {
  uint64_t floats = bytes / sizeof(float), q = floats / (uint64_t)n, rem = floats % (uint64_t)n;
  uint64_t ur = (uint64_t)r;
  uint64_t b = q * ur + (ur < rem ? ur : rem);
  uint64_t e = b + q + (ur < rem ? 1 : 0);
  b *= sizeof(float), e *= sizeof(float);
  if (r == n - 1) e = bytes;
  if (begin) *begin = b;
  if (end) *end = e;
  uint64_t c0 = (b + CKPT_HASH_CHUNK - 1) / CKPT_HASH_CHUNK;
  uint64_t c1 = (e + CKPT_HASH_CHUNK - 1) / CKPT_HASH_CHUNK;
  if (first_chunk) *first_chunk = c0;
  if (n_chunks) *n_chunks = c1 - c0;
}

/* Emits stored bytes [s, e) of a byte-shuffled tensor of nf floats: stored
 * byte p is byte p / nf of float p % nf. */
static int emit_shuffled(const float *x, uint64_t nf, uint64_t s, uint64_t e, ckpt_emit_fn emit,
                         void *ctx) {
  const unsigned char *b = (const unsigned char *)x;
  unsigned char buf[1 << 14];
  while (s < e) {
    uint64_t k = s / nf, i = s % nf;
    uint64_t run = e - s < nf - i ? e - s : nf - i; /* within byte plane k */
    while (run) {
      size_t c = run < sizeof buf ? (size_t)run : sizeof buf;
      for (size_t j = 0; j < c; j++) buf[j] = b[(i + j) * sizeof(float) + k];
      int rc = emit(ctx, buf, c);
      if (rc) return rc;
      i += c, s += c, run -= c;
    }
  }
  return 0;
}

int ckpt_sec_emit(const ckpt_tensor *t, int n, int shuffle, uint64_t begin, uint64_t end,
                  ckpt_emit_fn emit, void *ctx) {
  uint64_t off = 0;
  for (int i = 0; i < n && off < end; i++) {
    uint64_t b = (uint64_t)ckpt_sec_tensor_bytes(t[i].ndim, t[i].shape);
    uint64_t lo = begin > off ? begin : off, hi = end < off + b ? end : off + b;
    if (lo < hi) {
      int rc = shuffle ? emit_shuffled(t[i].data, b / sizeof(float), lo - off, hi - off, emit, ctx)
                       : emit(ctx, (const unsigned char *)t[i].data + (lo - off), hi - lo);
      if (rc) return rc;
    }
    off += b;
  }
  return 0;
}

static int emit_copy(void *ctx, const void *p, size_t n) {
  unsigned char **dst = ctx;
  memcpy(*dst, p, n);
  *dst += n;
  return 0;
}

void ckpt_copy_stored(const ckpt_tensor *tensors, int n_tensors, int shuffle, uint64_t begin,
                      uint64_t end, void *dst) {
  unsigned char *p = dst;
  (void)ckpt_sec_emit(tensors, n_tensors, shuffle, begin, end, emit_copy, &p);
}

void ckpt_sec_unshuffle(float *x, size_t n, float *scratch) {
  const unsigned char *in = (const unsigned char *)x;
  unsigned char *out = (unsigned char *)scratch;
  /* Element-major: four sequential read streams, one sequential write. */
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < sizeof(float); k++) out[i * sizeof(float) + k] = in[k * n + i];
  memcpy(x, scratch, n * sizeof(float));
}
