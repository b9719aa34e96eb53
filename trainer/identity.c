#include "identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t identity_hash(const void *p, size_t n, uint64_t h) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

uint64_t identity_binary_hash(void) {
  FILE *f = fopen("/proc/self/exe", "rb");
  if (!f) return 0;
  unsigned char buf[1 << 16];
  uint64_t h = IDENTITY_HASH_INIT;
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) h = identity_hash(buf, got, h);
  int bad = ferror(f);
  fclose(f);
  return bad ? 0 : h;
}
