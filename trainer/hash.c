/* hash — see hash.h. */
#include "hash.h"

uint64_t hash_xxh3(const void *data, size_t n, uint64_t seed) {
  return seed ? XXH3_64bits_withSeed(data, n, seed) : XXH3_64bits(data, n);
}

void hash_stream_reset(hash_stream *s) {
  XXH3_INITSTATE(&s->st);
  XXH3_64bits_reset(&s->st);
}

void hash_stream_update(hash_stream *s, const void *data, size_t n) {
  XXH3_64bits_update(&s->st, data, n);
}

uint64_t hash_stream_digest(const hash_stream *s) { return XXH3_64bits_digest(&s->st); }

uint64_t hash_fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}
