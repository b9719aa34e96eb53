/* identity — what every rank must share before training starts: the same
 * program, the same resolved config, the same parameter layout and the
 * same initial parameters. startup.c gathers one ms_identity from every rank
 * in one collective and names the first rank and key that differ (the keys
 * of two configs with config_diff, config.h), so that
 * "ranks silently train different models" and "mismatched collectives
 * hang" become an immediate error at start-up.
 *
 * Pure logic and file reading: no MPI. Not thread-safe (no state).
 */
#ifndef MS_IDENTITY_H
#define MS_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char version[48]; /* MS_VERSION_STRING */
  uint64_t binary;  /* identity_binary_hash(): 0 when unreadable */
  uint64_t config;  /* identity_hash of the resolved config (config_emit) */
  uint64_t layout;  /* model_layout_hash */
  uint64_t params;  /* model_params_hash after initialisation */
} ms_identity;

/* A hash of n bytes continuing from h (start with IDENTITY_HASH_INIT):
 * hash_xxh3 seeded with h. Only compared between ranks of one run. */
#define IDENTITY_HASH_INIT 1469598103934665603ULL
uint64_t identity_hash(const void *p, size_t n, uint64_t h);

/* XXH3-64 of this process's executable (/proc/self/exe).
 * @return the hash, or 0 when the file cannot be read (not Linux). */
uint64_t identity_binary_hash(void);

#endif
