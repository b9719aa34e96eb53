/* fault — test-only fault injection: a rank that stalls before a
 * collective, as a rank stuck on a dead file system would, so that
 * tests/e2e/watchdog.sh can see the hang watchdog end the run.
 *
 * MIDSCALE_DEBUG_STALL=RANK:STEP:SECONDS makes rank RANK sleep SECONDS
 * before the gradient sync of step STEP. It stays an environment variable
 * on purpose: it is fault injection for the tests, not a setting of a run,
 * so it is not a config key and is never printed in the banner.
 *
 * Rank-local, no MPI; called from the training thread.
 */
#ifndef MS_FAULT_H
#define MS_FAULT_H

#include <stdint.h>

typedef struct {
  int rank;       /* -1 = off */
  int64_t step;
  double seconds;
} fault_stall;

/* Reads MIDSCALE_DEBUG_STALL (off when unset or malformed). */
void fault_stall_init(fault_stall *f);

/* Sleeps f->seconds when this is the rank and step it names. */
void fault_stall_at(const fault_stall *f, int rank, int64_t step);

#endif
