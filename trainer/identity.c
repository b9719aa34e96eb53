#include "identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

uint64_t identity_hash(const void *p, size_t n, uint64_t h) {
  return hash_xxh3(p, n, h);
}

uint64_t identity_binary_hash(void) {
  FILE *f = fopen("/proc/self/exe", "rb");
  if (!f) return 0;
  unsigned char buf[1 << 16];
  hash_stream st;
  hash_stream_reset(&st);
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) hash_stream_update(&st, buf, got);
  int bad = ferror(f);
  fclose(f);
  return bad ? 0 : hash_stream_digest(&st);
}
