/* ckpt_internal — what ckpt.c (reading, directories) and ckpt_write.c
 * (writing) share. Not part of the module's interface: include only from
 * those two files. */
#ifndef MS_CKPT_INTERNAL_H
#define MS_CKPT_INTERNAL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ckpt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ckpt writes float bytes and hashes as they are in memory; safetensors is little-endian"
#endif

#define CKPT_FORMAT_NAME "midscale-ckpt"
#define CKPT_MAX_STEP    99999999LL
/* Refuse payloads and headers whose declared sizes no midscale model needs:
 * a corrupted size field must not turn into a huge allocation or a long read. */
#define CKPT_MAX_PAYLOAD (64ULL << 30)
#define CKPT_MAX_HEADER  (64ULL << 20)

/* Records the message and jumps to the function's cleanup label. */
#define FAIL(label, ...)            \
  do {                              \
    rc = ms_error_set(__VA_ARGS__); \
    goto label;                     \
  } while (0)

/* Byte size of a tensor of this shape, or -1 when a dimension is negative,
 * ndim is out of range, or the size does not fit the payload cap. */
static inline int64_t ckpt_tensor_bytes(int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > CKPT_MAX_DIMS) return -1;
  uint64_t n = sizeof(float);
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return -1;
    if (shape[d] != 0 && n > CKPT_MAX_PAYLOAD / (uint64_t)shape[d]) return -1;
    n *= (uint64_t)shape[d];
  }
  return (int64_t)n;
}

/* fmt with two string arguments, malloc'ed; NULL when out of memory. */
static inline char *ckpt_str2(const char *fmt, const char *a, const char *b) {
  int n = snprintf(NULL, 0, fmt, a, b);
  if (n < 0) return NULL;
  char *s = malloc((size_t)n + 1);
  if (s) snprintf(s, (size_t)n + 1, fmt, a, b);
  return s;
}

/* The data hash of a format version, fed the data section in order, in
 * pieces of any size. */
typedef struct {
  int version;      /* 1: FNV-1a; 2: XXH3 of chunk hashes */
  uint64_t fnv;
  void *chunk;      /* XXH3_state_t of the chunk being hashed */
  void *top;        /* XXH3_state_t over the chunk hashes */
  uint64_t in_chunk;
} ckpt_hasher;

/* @return 0, or MS_ENOMEM with a message naming `what`. */
int ckpt_hasher_init(ckpt_hasher *h, int version, const char *what);
void ckpt_hasher_update(ckpt_hasher *h, const void *data, size_t n);
uint64_t ckpt_hasher_final(ckpt_hasher *h);
void ckpt_hasher_free(ckpt_hasher *h);

/* ckpt_export's writer: a plain (uncompressed) safetensors file
 * dir/name, atomically. */
int ckpt_write_plain(const char *dir, const char *name, const ckpt_tensor *tensors,
                     int n_tensors, const ckpt_meta *meta, char **out_path);

#endif
