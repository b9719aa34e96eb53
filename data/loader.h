/* loader — this rank's training batches, read ahead by a background thread.
 *
 * The loader serves the training stream of sampler.h: the batch of cursor
 * (epoch, step) is this rank's slice of global batch `step` of epoch
 * `epoch`'s order. With prefetch P >= 1 a thread reads the next P batches
 * (through data_read: sorted, runs merged into hyperslabs when streamed)
 * into a ring of P + 1 buffers -- P read ahead, one for the batch the
 * caller computes on -- while the caller computes. With P = 0 there is no
 * thread and loader_next reads on the caller's thread, as a plain data_read
 * would. The batches are the same, byte for byte, whatever P: the thread
 * only changes when they are read.
 *
 * The caller asks for a cursor (loader_next). If the thread has it (the
 * next one in order), it is handed over; otherwise -- the first call, a
 * resume, any jump -- the batches in flight are dropped and the thread
 * restarts at the cursor asked for. A read that fails is reported by the
 * loader_next of its own cursor, with data_read's message; the thread reads
 * nothing after it until asked for another cursor.
 *
 * Threads: one caller thread owns the loader (create, next, free). The
 * loader thread calls data_read on o->ds and nothing else of HDF5, under the
 * process-wide HDF5 lock (dataset.h); it makes no MPI call and runs with
 * every signal blocked, so signal handlers run on the caller's threads. On
 * Linux it runs under SCHED_BATCH: when the caller wakes it, it does not
 * preempt the caller's CPU, yet gets its fair share of CPU time.
 * While the loader lives, o->ds belongs to it: the caller may use its
 * getters (data_count, ...) but must not data_read or data_close it.
 * loader_free stops and joins the thread (after the read in progress, if
 * any): no thread outlives the loader.
 *
 * Errors: 0 or -1 with a one-line message in err (dataset.h, "Errors");
 * nothing is printed, nothing exits.
 */
#ifndef MS_LOADER_H
#define MS_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "sampler.h"

typedef struct data_loader data_loader;

typedef struct {
  data_set *ds;          /* the training set; owned by the loader thread while it lives */
  data_norm norm;        /* copied; its mean and std arrays must outlive the loader */
  sampler_order order;   /* BLOCK with block_size 0: see loader_block_size */
  uint64_t seed;         /* run.seed */
  uint64_t global_batch; /* a multiple of world, <= data_count(ds) */
  int world, rank;
  int prefetch;      /* batches read ahead, 0 .. LOADER_MAX_PREFETCH; 0 = no thread */
  int class_labels;  /* 1: labels into y (int32 classes); 0: into t (float targets) */
  uint64_t end_step; /* global steps of the run: nothing is read at or past it; 0 = none */
} loader_opts;

#define LOADER_MAX_PREFETCH 64

/* One batch: this rank's slice of a global batch. Pointers into the loader,
 * valid until the next loader_next or loader_free. */
typedef struct {
  uint64_t epoch, step; /* its cursor */
  size_t n;             /* samples: global_batch / world */
  const uint64_t *idx;  /* (n) dataset indices, in batch order */
  const float *x;       /* (n, data_sample_elems) inputs through norm */
  const int32_t *y;     /* (n, data_label_elems) class labels (one per sample; seq_len
                         * for a token set), or NULL (class_labels 0) */
  const float *t;       /* (n, data_label_elems) float targets, or NULL (class_labels 1) */
} loader_batch;

/* Allocates the ring and starts the thread (idle until the first
 * loader_next). Block shuffle with block_size 0 uses the inputs' HDF5 chunk
 * (data_chunk_samples), or about 1 MiB of stored samples when they are not
 * chunked. Errors: invalid options (a world that does not divide the
 * batch, a batch larger than the data, a prefetch out of range), out of
 * memory, a thread that cannot start. */
int loader_create(data_loader **out, const loader_opts *o, char *err, size_t errlen);

/* Waits for the batch of cursor (epoch, step) (step < the steps per epoch,
 * epoch * steps + step < end_step) and fills *b. The previous batch's
 * buffers are given back to the ring first. @return 0, or -1 when that
 * batch could not be read (err says why: data_read's message), or the
 * cursor is out of range. */
int loader_next(data_loader *l, uint64_t epoch, uint64_t step, loader_batch *b, char *err,
                size_t errlen);

/* The block size in use (block shuffle), after resolving 0; 0 in the other
 * modes. */
uint64_t loader_block_size(const data_loader *l);

/* Stops the thread, waits for it and frees everything; accepts NULL. */
void loader_free(data_loader *l);

#endif
