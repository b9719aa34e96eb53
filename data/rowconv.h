/* rowconv — stored input rows to the floats data_read returns: the dtype
 * conversion, the scale and the mean/std of a data_norm (dataset.h), and
 * the prefetch of scattered rows. Private to data/.
 *
 * Inputs are kept (in memory, in the chunk cache, or per streamed run) in
 * their stored width with native byte order, so that a uint8 dataset costs
 * one byte per value in memory; rows become floats only here, one at a
 * time, as data_read copies them out.
 *
 * The conversion loops are compiled twice on x86-64, for AVX2 and for the
 * baseline, and the loader picks one when the program starts (function
 * multiversioning): one binary, no -march, and both give the same floats
 * (scripts/bench/results/loader.md for the speed).
 *
 * Pure functions on plain memory: no HDF5 call, no lock, any thread. The
 * prefix is rowconv_ because convert_ belongs to the file converters
 * (convert.h).
 */
#ifndef MS_ROWCONV_H
#define MS_ROWCONV_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/* A data_norm checked against one set's inputs. */
typedef struct {
  data_dtype dtype;
  size_t elems;     /* values per row */
  size_t row_bytes; /* stored bytes per row */
  data_norm norm;   /* the caller's arrays: they must outlive the plan */
  size_t inner_m;   /* element k uses mean[k / inner_m] */
  size_t inner_s;   /* and std[k / inner_s] */
} rowconv;

/* Checks norm (NULL = data_norm_identity()) against ds's inputs (the
 * counts of mean and std: 1, C or E; finite values, std > 0, a finite
 * scale) and fills *rc. -1 and err when it does not fit. */
int rowconv_plan(rowconv *rc, const data_set *ds, const data_norm *norm, char *err,
                 size_t errlen);

/* One stored row to rc->elems floats through the plan. */
void rowconv_row(const rowconv *rc, const unsigned char *src, float *dst);

/* Where row i of a set is (NULL: not at hand, nothing to prefetch). */
typedef const unsigned char *(*rowconv_row_at)(const void *ctx, uint64_t i);

/* Rows idx[0..n) (every one at hand: at never returns NULL for them) to
 * floats, row j into x + j * rc->elems, prefetching the rows ahead. */
void rowconv_gather(const rowconv *rc, rowconv_row_at at, const void *ctx, const uint64_t *idx,
                    size_t n, float *x);

/* The rows of a shuffled batch are scattered over the set, and converting
 * one would wait on memory for its first cache lines: the rows this many
 * rows ahead (a few KiB of rows, 1 to 16) are requested while one
 * converts. */
size_t rowconv_prefetch_distance(size_t row_bytes);

/* Requests the first cache lines of a row (the hardware prefetcher follows
 * a longer one). */
void rowconv_prefetch(const unsigned char *row, size_t row_bytes);

#endif
