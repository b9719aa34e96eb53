/* ckpt/datahash — a checkpoint's data_hash (ckpt.h, "data_hash"), in the
 * form each format version defines:
 *   version 2: XXH3-64 of the XXH3-64 hashes of the data section's
 *              consecutive CKPT_HASH_CHUNK-byte chunks, so ranks can hash
 *              their slices in parallel (ckpt_hash_chunks) and rank 0
 *              combines them (ckpt_data_hash);
 *   version 1: FNV-1a 64 of the whole section (only read, never written).
 * Built on hash.h and section.h. Implements the public ckpt_hash_chunks and
 * ckpt_data_hash.
 *
 * A ckpt_hasher belongs to one thread. Errors: none (nothing allocates).
 */
#ifndef MS_CKPT_DATAHASH_H
#define MS_CKPT_DATAHASH_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"

/* The data hash of one format version, fed the data section's values in
 * order, in pieces of any size. */
typedef struct {
  int version; /* 1: FNV-1a; 2: XXH3 of chunk hashes */
  uint64_t fnv;
  hash_stream chunk; /* the chunk being hashed */
  hash_stream top;   /* over the chunk hashes */
  uint64_t in_chunk; /* bytes of the current chunk seen */
} ckpt_hasher;

void ckpt_hasher_init(ckpt_hasher *h, int version);
void ckpt_hasher_update(ckpt_hasher *h, const void *data, size_t n);
uint64_t ckpt_hasher_final(ckpt_hasher *h);

#endif
