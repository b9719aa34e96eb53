/* ranks — what every part of a training run shares to keep its ranks on
 * one path: the agreement before a branch. (The bridges that turn a comm
 * or data error code into an MS_E* code with its message are ms_from_comm
 * and ms_from_data, ms_error.h.)
 *
 * Ownership: train.c owns the one ranks value of a run (rank, world, the
 * hang watchdog once the step loop starts, the step it reports); the other
 * trainer files (startup, ckpt_sync, evaluate, report) keep a pointer to
 * it and never change it.
 *
 * Collectives: ranks_agree_at is collective over r->w.
 *
 * Errors: ranks_agree_at returns the code of the lowest failing rank (0 if
 * none) with its message in ms_error_msg() on every rank; a failure of the
 * agreement itself is MS_ECOMM.
 */
#ifndef MS_RANKS_H
#define MS_RANKS_H

#include <stdint.h>

#include "comm.h"
#include "watchdog.h"

typedef struct {
  comm_world *w;
  watchdog *wd; /* during the step loop; NULL before and after (no-op) */
  const int64_t *step; /* the training step the watchdog names (NULL: 0) */
} ranks;

/* A wait on the other ranks that the hang watchdog times; pair with
 * ranks_leave. */
void ranks_enter(const ranks *r, const char *op, const char *where);
void ranks_leave(const ranks *r);

/* The agreement every branch goes through (see the header comment). where
 * names the caller to the watchdog. Collective. */
int ranks_agree_at(const ranks *r, int rc, const char *where);
#define ranks_agree(r, rc) ranks_agree_at((r), (rc), __func__)

#endif
