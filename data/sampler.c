/* sampler — see sampler.h. Pure integer arithmetic: the same numbers on every
 * platform, every compiler and every world size. */
#include "sampler.h"

#include <inttypes.h>
#include <stdio.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Domain-separation constants, so that the epoch key, the per-position draw
 * and the rejection redraws never feed the mixer the same words. */
#define SAMPLER_EPOCH_SALT 0xd1b54a32d192ed03ULL
#define SAMPLER_DRAW_SALT 0x8cb92ba72f3d8dd7ULL
#define SAMPLER_GOLDEN 0x9e3779b97f4a7c15ULL
/* Block mode: the block order's key and the windows' keys. */
#define SAMPLER_BLOCK_SALT 0x5bd1e9955bd1e995ULL
#define SAMPLER_WINDOW_SALT 0xc2b2ae3d27d4eb4fULL

uint64_t sampler_mix64(uint64_t x) {
  x += SAMPLER_GOLDEN;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* Full 64x64 -> 128-bit product split into halves, written out by hand so the
 * code stays ISO C (no __int128) and pedantic-clean. */
static void mul64x64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
  uint64_t a_lo = a & 0xffffffffULL, a_hi = a >> 32;
  uint64_t b_lo = b & 0xffffffffULL, b_hi = b >> 32;
  uint64_t ll = a_lo * b_lo;
  uint64_t lh = a_lo * b_hi;
  uint64_t hl = a_hi * b_lo;
  uint64_t hh = a_hi * b_hi;
  uint64_t mid = (ll >> 32) + (lh & 0xffffffffULL) + (hl & 0xffffffffULL);
  *lo = (mid << 32) | (ll & 0xffffffffULL);
  *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* The k-th 64-bit word of the stream for position i under `key`. */
static uint64_t draw_word(uint64_t key, uint64_t i, uint64_t k) {
  return sampler_mix64(key ^ sampler_mix64(i + k * SAMPLER_DRAW_SALT));
}

/* Uniform integer in [0, range) for position i (range >= 1): Lemire's
 * multiply-shift, rejecting the few low products that would bias it and
 * redrawing from the next word of the same counter-based stream. */
static uint64_t bounded_draw(uint64_t key, uint64_t i, uint64_t range) {
  uint64_t hi, lo;
  uint64_t k = 0;
  mul64x64(draw_word(key, i, k), range, &hi, &lo);
  if (lo < range) {
    uint64_t threshold = (0 - range) % range;
    while (lo < threshold) {
      k++;
      mul64x64(draw_word(key, i, k), range, &hi, &lo);
    }
  }
  return hi;
}

/* Fisher-Yates over a[0..n), position i drawing from the stream of (key, i). */
static void shuffle_keyed(uint64_t key, uint64_t *a, uint64_t n) {
  for (uint64_t i = n; i > 1; i--) {
    uint64_t top = i - 1;
    uint64_t j = bounded_draw(key, top, i);
    uint64_t t = a[top];
    a[top] = a[j];
    a[j] = t;
  }
}

void sampler_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t *perm) {
  uint64_t key = sampler_mix64(seed ^ sampler_mix64(epoch ^ SAMPLER_EPOCH_SALT));
  for (uint64_t i = 0; i < n; i++) perm[i] = i;
  shuffle_keyed(key, perm, n);
}

/* Block mode: the block order is a keyed shuffle of [0, nb); the windows
 * are filled in that order, each shuffled under its own key. */
static int block_order(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t bs, uint64_t window,
                       uint64_t *perm) {
  uint64_t nb = n / bs + (n % bs != 0);
  uint64_t *blocks = malloc((nb ? nb : 1) * sizeof *blocks);
  if (!blocks) return -1;
  uint64_t key = sampler_mix64(seed ^ sampler_mix64(epoch ^ SAMPLER_BLOCK_SALT));
  for (uint64_t b = 0; b < nb; b++) blocks[b] = b;
  shuffle_keyed(key, blocks, nb);
  uint64_t pos = 0;
  for (uint64_t w = 0, first = 0, last; first < nb; w++, first = last) {
    last = nb - first < window ? nb : first + window;
    uint64_t start = pos;
    for (uint64_t k = first; k < last; k++) {
      uint64_t lo = blocks[k] * bs, hi = n - lo < bs ? n : lo + bs;
      for (uint64_t i = lo; i < hi; i++) perm[pos++] = i;
    }
    shuffle_keyed(sampler_mix64(key ^ sampler_mix64(w ^ SAMPLER_WINDOW_SALT)), perm + start,
                  pos - start);
  }
  free(blocks);
  return 0;
}

int sampler_epoch_order(const sampler_order *o, uint64_t seed, uint64_t epoch, uint64_t n,
                        uint64_t *perm, char *err, size_t errlen) {
  const char *why = NULL;
  switch (o->shuffle) {
    case SAMPLER_GLOBAL: sampler_permutation(seed, epoch, n, perm); return 0;
    case SAMPLER_NONE:
      for (uint64_t i = 0; i < n; i++) perm[i] = i;
      return 0;
    case SAMPLER_BLOCK:
      if (o->block_size == 0 || o->window == 0)
        why = "a block shuffle needs a block size and a window of at least 1";
      else if (block_order(seed, epoch, n, o->block_size, o->window, perm) < 0)
        why = "out of memory";
      break;
    default: why = "unknown shuffle mode"; break;
  }
  if (!why) return 0;
  if (err && errlen) snprintf(err, errlen, "cannot order epoch %" PRIu64 ": %s", epoch, why);
  return -1;
}

const uint64_t *sampler_rank_batch(const uint64_t *perm, uint64_t global_batch, int world, int rank,
                                   uint64_t step, uint64_t *count) {
  uint64_t begin;
  sampler_rank_slice(global_batch, world, rank, &begin, count);
  return perm + step * global_batch + begin;
}

uint64_t sampler_steps_per_epoch(uint64_t n, uint64_t global_batch) {
  if (global_batch == 0) return 0;
  return n / global_batch;
}

void sampler_rank_slice(uint64_t global_batch, int world, int rank,
                        uint64_t *begin, uint64_t *count) {
  if (world <= 0 || rank < 0 || rank >= world) {
    *begin = 0;
    *count = 0;
    return;
  }
  uint64_t per_rank = global_batch / (uint64_t)world;
  *begin = (uint64_t)rank * per_rank;
  *count = per_rank;
}

/* floor(n * r / w) without overflow: n = q*w + m, so n*r/w = q*r + m*r/w,
 * and m*r < w*w fits 64 bits because w is an int. */
static uint64_t scaled_floor(uint64_t n, uint64_t r, uint64_t w) {
  uint64_t q = n / w, m = n % w;
  return q * r + (m * r) / w;
}

void sampler_eval_range(uint64_t n, int world, int rank, uint64_t *begin,
                        uint64_t *count) {
  if (world <= 0 || rank < 0 || rank >= world) {
    *begin = 0;
    *count = 0;
    return;
  }
  uint64_t w = (uint64_t)world, r = (uint64_t)rank;
  uint64_t b = scaled_floor(n, r, w);
  uint64_t e = scaled_floor(n, r + 1, w);
  *begin = b;
  *count = e - b;
}
