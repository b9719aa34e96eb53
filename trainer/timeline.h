/* timeline — a per-rank record of where the time of chosen steps goes
 * (log.trace_steps: [from, to]), written at the end of the run as one
 * Chrome trace-event JSON file (<run.dir>/trace.json) that Perfetto or a
 * browser's trace viewer opens: one process per rank, the training thread
 * as thread 0 (each step, its data wait, forward, backward per layer, the
 * gradient sync's wait, the optimizer, evaluation and checkpoint phases as
 * nested spans) and one thread per gradient bucket (its communication,
 * from the start of its collective to its completion as this rank saw it).
 * Not the sample trace of trace.h, which records what ranks read.
 *
 * Off (log.trace_steps []), timeline_create gives NULL and every call
 * returns at once, reading no clock: a run without a trace computes and
 * times exactly as before. On, only the steps in [from, to] are recorded
 * (what follows a step, its evaluation and checkpoint, counts as that
 * step's); events live in memory until timeline_write.
 *
 * Times: comm_wtime seconds; timeline_start_clock gives each rank its zero
 * right after a collective, so ranks line up to within its exit skew.
 * Spans are stored in whole nanoseconds and written in microseconds with 3
 * decimals, so a child never pokes out of its parent by rounding.
 *
 * Ownership: a timeline owns its events; names are copied (at most 47
 * bytes). Threads: the training thread only. Collectives: timeline_write
 * (a gather to rank 0); the rest is rank-local. Errors: timeline_create
 * MS_ENOMEM; a span that cannot be stored for lack of memory is dropped
 * and counted (the file says how many); timeline_write MS_EIO / MS_ENOMEM
 * / MS_ECOMM, the same on every rank.
 */
#ifndef MS_TIMELINE_H
#define MS_TIMELINE_H

#include <stdint.h>

#include "config.h"
#include "ranks.h"

typedef struct timeline timeline;

/* Thread ids in the file: the training thread, and bucket b's track. */
#define TIMELINE_TID_TRAIN 0
#define TIMELINE_TID_BUCKET(b) (10 + (b))

/* *out = NULL when cfg's log.trace_steps is empty (off). @return 0 or
 * MS_ENOMEM. */
int timeline_create(timeline **out, const ms_config *cfg, int rank);

/* Accepts NULL. */
void timeline_free(timeline *tl);

/* This rank's zero (comm_wtime seconds). */
void timeline_start_clock(timeline *tl, double t0);

/* The global step (1-based) the loop is about to run: recording is on
 * while it lies in [from, to]. */
void timeline_step(timeline *tl, int64_t step);

/* 1 while recording (the clock is read only then). NULL: 0. */
int timeline_on(const timeline *tl);

/* A span on the training thread, nested: begin at now, end at now (the
 * innermost open span). Up to 16 deep. */
void timeline_begin(timeline *tl, const char *name);
void timeline_end(timeline *tl);

/* A finished span on thread tid, [t0, t1] in comm_wtime seconds. */
void timeline_span(timeline *tl, int tid, const char *name, double t0, double t1);

/* Backward per layer: called from the gradient hook when the gradients of
 * the layer whose weight tensor is `name` are final; the span runs from
 * the previous mark (timeline_mark) to now. */
void timeline_layer_done(timeline *tl, const char *name);
void timeline_mark(timeline *tl);

/* The name of thread tid of this rank in the file. */
void timeline_thread_name(timeline *tl, int tid, const char *name);

/* Gathers every rank's events to rank 0, which writes them as one JSON
 * object {"traceEvents": [...]} to path (a temporary name, then renamed).
 * Collective. */
int timeline_write(timeline *tl, const ranks *rk, const char *path);

#endif
