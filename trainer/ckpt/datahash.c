/* ckpt/datahash — see datahash.h. */
#include "datahash.h"

#include <string.h>

#include "ckpt.h"
#include "section.h"

void ckpt_hasher_init(ckpt_hasher *h, int version) {
  memset(h, 0, sizeof *h);
  h->version = version;
  h->fnv = HASH_FNV_OFFSET;
  hash_stream_reset(&h->chunk);
  hash_stream_reset(&h->top);
}

void ckpt_hasher_update(ckpt_hasher *h, const void *data, size_t n) {
  if (h->version < 2) {
    h->fnv = hash_fnv1a(h->fnv, data, n);
    return;
  }
  const unsigned char *p = data;
  while (n) {
    size_t take = CKPT_HASH_CHUNK - h->in_chunk < n ? (size_t)(CKPT_HASH_CHUNK - h->in_chunk) : n;
    hash_stream_update(&h->chunk, p, take);
    h->in_chunk += take, p += take, n -= take;
    if (h->in_chunk == CKPT_HASH_CHUNK) {
      uint64_t d = hash_stream_digest(&h->chunk);
      hash_stream_update(&h->top, &d, sizeof d);
      hash_stream_reset(&h->chunk);
      h->in_chunk = 0;
    }
  }
}

uint64_t ckpt_hasher_final(ckpt_hasher *h) {
  if (h->version < 2) return h->fnv;
  if (h->in_chunk) {
    uint64_t d = hash_stream_digest(&h->chunk);
    hash_stream_update(&h->top, &d, sizeof d);
    h->in_chunk = 0;
  }
  return hash_stream_digest(&h->top);
}

uint64_t ckpt_data_hash(const uint64_t *chunk_hashes, uint64_t n_chunks) {
  return hash_xxh3(chunk_hashes, (size_t)n_chunks * sizeof *chunk_hashes, 0);
}

static int emit_hash(void *ctx, const void *p, size_t n) {
  hash_stream_update(ctx, p, n);
  return 0;
}

void ckpt_hash_chunks(const ckpt_tensor *tensors, int n_tensors, uint64_t first_chunk,
                      uint64_t n_chunks, uint64_t *out) {
  hash_stream st;
  uint64_t d = ckpt_sec_bytes(tensors, n_tensors);
  for (uint64_t c = 0; c < n_chunks; c++) {
    uint64_t lo = (first_chunk + c) * CKPT_HASH_CHUNK;
    uint64_t hi = lo + CKPT_HASH_CHUNK < d ? lo + CKPT_HASH_CHUNK : d;
    hash_stream_reset(&st);
    (void)ckpt_sec_emit(tensors, n_tensors, 0, lo, hi, emit_hash, &st);
    out[c] = hash_stream_digest(&st);
  }
}
