/* sampler — which samples go where: pure arithmetic, no MPI, no HDF5.
 *
 * The order of samples in an epoch (sampler_epoch_order) is a permutation of
 * [0, N) that depends on (seed, epoch) and the shuffle options alone, never
 * on the world size. Three shuffle modes:
 *   global  an exact uniform permutation (sampler_permutation);
 *   block   the samples cut into contiguous blocks of block_size (the last
 *           one shorter when block_size does not divide N); the order of the
 *           blocks shuffled; then the blocks taken `window` at a time in that
 *           order and the samples of each window shuffled together. A batch
 *           then touches at most a window's blocks (e.g. HDF5 chunks) instead
 *           of up to B of them, for file systems where random reads are slow;
 *   none    sequential: position i holds sample i, every epoch.
 *
 * The cursor (epoch, step) names a step: step s of epoch e uses positions
 * [s*B, (s+1)*B) of epoch e's order (B = global batch); rank r of W takes
 * the r-th contiguous slice of B/W positions (sampler_rank_batch). Global
 * step g is epoch g / S, step g % S (S = sampler_steps_per_epoch). A run
 * that resumes at a cursor gets the batches an uninterrupted run gets there.
 *
 * drop_last: an epoch has floor(N / B) steps; the last N % B positions of
 * each epoch's order are not trained on in that epoch. Every step then has
 * exactly B samples, and the same config visits the same samples in the
 * same steps on any world size. What is dropped differs by mode: global
 * drops a fresh random N % B samples each epoch; block drops the tail of
 * the last window; none drops the same N % B samples (the file's last) in
 * every epoch, so they are never trained on.
 *
 * Evaluation splits [0, N) into W contiguous ranges whose sizes differ by at
 * most one; every sample is seen exactly once, with no padding.
 */
#ifndef MS_SAMPLER_H
#define MS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

/* Counter-based 64-bit mixer (splitmix64 finaliser): the one RNG primitive.
 * Same input, same output, on every platform. */
uint64_t sampler_mix64(uint64_t x);

/* Writes a permutation of [0, n) for (seed, epoch) into perm (n entries):
 * Fisher-Yates driven by sampler_mix64 of (seed, epoch, i). */
void sampler_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t *perm);

typedef enum {
  SAMPLER_GLOBAL = 0, /* an exact permutation */
  SAMPLER_BLOCK = 1,  /* shuffled blocks, shuffled within windows of blocks */
  SAMPLER_NONE = 2    /* sequential */
} sampler_shuffle;

/* How an epoch is ordered. block_size and window are read in BLOCK mode
 * only, where both must be >= 1. */
typedef struct {
  sampler_shuffle shuffle;
  uint64_t block_size; /* samples per block */
  uint64_t window;     /* blocks shuffled together */
} sampler_order;

/* Writes the order of epoch `epoch` (n entries, a permutation of [0, n))
 * into perm. GLOBAL is sampler_permutation(seed, epoch, ...). BLOCK
 * allocates ceil(n / block_size) words of scratch.
 * @return 0, or -1 when that allocation fails or o is invalid (a BLOCK
 * block_size or window of 0, an unknown mode): err says which ("cannot
 * order epoch E: ..."), perm is then unspecified. */
int sampler_epoch_order(const sampler_order *o, uint64_t seed, uint64_t epoch, uint64_t n,
                        uint64_t *perm, char *err, size_t errlen);

/* Rank r's samples of step `step` of an epoch ordered by perm (as written by
 * sampler_epoch_order): *count indices starting at the returned pointer into
 * perm. Requires global_batch % world == 0 and step < the steps per epoch. */
const uint64_t *sampler_rank_batch(const uint64_t *perm, uint64_t global_batch, int world, int rank,
                                   uint64_t step, uint64_t *count);

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
