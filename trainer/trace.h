/* trace — a debug record of the samples each rank trains on, for tests that
 * check the data pipeline against an independent reader
 * (tests/tools/h5py_stream.py).
 *
 * Off unless the environment variable MIDSCALE_TRACE_SAMPLES names a
 * directory (which must exist). Then each rank R writes, per training step:
 *   DIR/rank<R>.txt   "step epoch idx idx ..." -- the global sample indices
 *                     of its slice, in the order they fill the batch;
 *   DIR/rank<R>.sum   "step fnv1a64" -- FNV-1a (64-bit, hex) of the bytes of
 *                     the float inputs it read for the step (after scale,
 *                     mean and std), row after row (FNV-1a because
 *                     h5py_stream.py recomputes it in Python; hash.h);
 *   DIR/rank<R>.f32   the raw floats themselves (native order) for the first
 *                     MIDSCALE_TRACE_FLOAT_STEPS steps (default 8).
 * Step numbers are global steps from 0. Files are truncated at the first
 * step of the process and flushed after every step.
 *
 * Not thread-safe; call from the training thread only. A directory that
 * cannot be written turns the trace off with one warning on stderr (it is a
 * debug aid: training goes on).
 */
#ifndef MS_TRACE_H
#define MS_TRACE_H

#include <stddef.h>
#include <stdint.h>

/* Records one step of rank `rank`: idx[0..n) and x (n rows of `elems`
 * floats). Does nothing when tracing is off. Closes its files at exit. */
void trace_samples(int rank, int64_t step, int64_t epoch, const uint64_t *idx, size_t n,
                   const float *x, size_t elems);

#endif
