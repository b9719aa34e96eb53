/* sampler — which samples go where: pure arithmetic, no MPI, no HDF5.
 *
 * The order of samples in an epoch is a permutation that depends on
 * (seed, epoch) alone, never on the world size. Step s of an epoch uses
 * positions [s*B, (s+1)*B) of the permutation (B = global batch); rank r of
 * W takes the r-th contiguous slice of B/W positions. A final partial global
 * batch is dropped (drop_last), so every step has exactly B samples and the
 * same config visits the same samples in the same steps on any world size.
 *
 * Evaluation splits [0, N) into W contiguous ranges whose sizes differ by at
 * most one; every sample is seen exactly once, with no padding.
 */
#ifndef MS_SAMPLER_H
#define MS_SAMPLER_H

#include <stdint.h>

/* Counter-based 64-bit mixer (splitmix64 finaliser): the one RNG primitive.
 * Same input, same output, on every platform. */
uint64_t sampler_mix64(uint64_t x);

/* Writes a permutation of [0, n) for (seed, epoch) into perm (n entries):
 * Fisher-Yates driven by sampler_mix64 of (seed, epoch, i). */
void sampler_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t *perm);

/* Steps per epoch with drop_last: floor(n / global_batch). */
uint64_t sampler_steps_per_epoch(uint64_t n, uint64_t global_batch);

/* Rank r's slice of a global batch: positions [*begin, *begin + *count)
 * relative to the batch start. Requires global_batch % world == 0. */
void sampler_rank_slice(uint64_t global_batch, int world, int rank,
                        uint64_t *begin, uint64_t *count);

/* Rank r's evaluation range [*begin, *begin + *count) of [0, n). */
void sampler_eval_range(uint64_t n, int world, int rank, uint64_t *begin,
                        uint64_t *count);

#endif
