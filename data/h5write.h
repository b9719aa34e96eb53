/* h5write — a new HDF5 file of row-aligned datasets, written by rows:
 * `midscale predict`'s output. Every dataset has the same number of rows
 * (dimension 0); each is float32 (rows, cols), or int32 (rows,) when cols
 * is 0. Contiguous, uncompressed: rows written by different processes
 * need no collective filter pipeline.
 *
 * Parallel and serial. With a parallel HDF5 (h5write_parallel() == 1)
 * every process of comm opens the file together (MPI-IO) and writes its own
 * rows with independent I/O, in any number of calls; h5write_create and
 * h5write_close are then collective over comm (every process with the same
 * path and datasets). With a serial HDF5 one process creates, writes and
 * closes the file alone and comm is not used: the caller gathers the rows.
 * The file is created (truncated) at the path given; making it appear
 * under its final name (a rename) is the caller's.
 *
 * Ownership: an h5write owns its HDF5 handles until h5write_close, which
 * frees it whatever happens (and accepts NULL). Threads: as all of data/,
 * behind the process-wide HDF5 lock. Errors: dataset.h's convention.
 */
#ifndef MS_H5WRITE_H
#define MS_H5WRITE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct h5write h5write;

/* One dataset of the file. */
typedef struct {
  const char *name; /* "/logits" */
  uint64_t cols;    /* float32 (rows, cols); 0: int32 (rows,) */
} h5write_set;

/* 1 when this HDF5 library writes one file from several processes. */
int h5write_parallel(void);

/* Creates `path` (truncating a file there) with n_sets datasets of `rows`
 * rows, and a string attribute "source" on the root group (may be NULL).
 * Collective over comm when parallel. Whatever it returns, *out (when not
 * NULL) must be closed with h5write_close: a process whose create failed
 * still holds the file, which every process of comm closes together. */
int h5write_create(h5write **out, MPI_Comm comm, const char *path, uint64_t rows,
                   const h5write_set *sets, int n_sets, const char *source, char *err,
                   size_t errlen);

/* Writes rows [row0, row0 + n) of dataset `set` (an index into the sets
 * given at create) from data: n * cols floats, or n int32. Independent. */
int h5write_rows(h5write *h, int set, uint64_t row0, uint64_t n, const void *data, char *err,
                 size_t errlen);

/* Flushes and closes the file, then frees h. Collective when parallel.
 * A failure here means the file is not complete. */
int h5write_close(h5write *h, char *err, size_t errlen);

#endif
