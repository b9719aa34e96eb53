/* sync_opts — the comm.* keys of a config as the gradient reducer's options
 * (comm/reducer.h): one mapping, used by the run that creates the reducer
 * and by the cost model that predicts it, so the two never disagree.
 *
 * Pure: no MPI, no allocation, any thread.
 */
#ifndef MS_SYNC_OPTS_H
#define MS_SYNC_OPTS_H

#include "config.h"
#include "reducer.h"

/* The reducer options of cfg's comm section (bucket sizes, overlap, shared
 * memory, the algorithm across nodes, the wire format). */
reducer_opts sync_opts_of(const ms_config *cfg);

#endif
