/* sampler — see sampler.h. Pure integer arithmetic: the same numbers on every
 * platform, every compiler and every world size. */
#include "sampler.h"

#include <stddef.h>

/* Domain-separation constants, so that the epoch key, the per-position draw
 * and the rejection redraws never feed the mixer the same words. */
#define SAMPLER_EPOCH_SALT 0xd1b54a32d192ed03ULL
#define SAMPLER_DRAW_SALT 0x8cb92ba72f3d8dd7ULL
#define SAMPLER_GOLDEN 0x9e3779b97f4a7c15ULL

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

void sampler_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t *perm) {
  uint64_t key = sampler_mix64(seed ^ sampler_mix64(epoch ^ SAMPLER_EPOCH_SALT));
  for (uint64_t i = 0; i < n; i++) perm[i] = i;
  for (uint64_t i = n; i > 1; i--) {
    uint64_t top = i - 1;
    uint64_t j = bounded_draw(key, top, i);
    uint64_t t = perm[top];
    perm[top] = perm[j];
    perm[j] = t;
  }
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
