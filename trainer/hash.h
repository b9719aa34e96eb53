/* hash — the project's two 64-bit hashes, one implementation of each.
 *
 * hash_xxh3*: XXH3-64 (libxxhash). Every hash that is only compared within
 * one build (ranks comparing their configs, binaries and parameters, the
 * chunk hashes of a checkpoint's data section) uses it.
 *
 * hash_fnv1a: FNV-1a 64. Kept only where a value is already stored in files
 * or recomputed by another tool, because changing it would make those
 * disagree:
 *   - data_hash of format version 1 checkpoints (still read);
 *   - layout_hash in every checkpoint's __metadata__ (model_layout_hash):
 *     a resume compares the file's value with the model's, so a new hash
 *     would refuse every checkpoint written so far;
 *   - the trace's rank<R>.sum (trace.h), which tests/tools/h5py_stream.py
 *     recomputes in Python, where no xxhash module is installed.
 *
 * Pure functions of their arguments: thread-safe. A hash_stream belongs to
 * one thread at a time. No errors: nothing here allocates.
 */
#ifndef MS_HASH_H
#define MS_HASH_H

#include <stddef.h>
#include <stdint.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t by value: a stream needs no allocation */
#include <xxhash.h>

/* XXH3-64 of n bytes, seeded with `seed` (0 for the plain XXH3-64). A
 * previous result as seed chains calls over pieces; the chain is its own
 * hash, not the XXH3 of the concatenation. */
uint64_t hash_xxh3(const void *data, size_t n, uint64_t seed);

/* XXH3-64 of bytes fed in pieces of any size: equal to hash_xxh3(all, n, 0)
 * of their concatenation. Reset before first use; reset again to reuse. */
typedef struct {
  XXH3_state_t st;
} hash_stream;

void hash_stream_reset(hash_stream *s);
void hash_stream_update(hash_stream *s, const void *data, size_t n);
uint64_t hash_stream_digest(const hash_stream *s);

/* FNV-1a 64 over n bytes, continuing from h (start with HASH_FNV_OFFSET);
 * feeding pieces in order equals hashing their concatenation. See above for
 * where it is still allowed. */
#define HASH_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t hash_fnv1a(uint64_t h, const void *data, size_t n);

#endif
