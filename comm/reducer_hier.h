/* The reducer's hierarchical path (reducer.h), internal to the reducer:
 * node shared memory inside a node, a fixed-order algorithm (hier.h)
 * across nodes. The calling thread only, except that with the overlapped
 * schedule a comm thread of the reducer's own makes MPI calls on the node
 * and cross-node communicators between reducer_hier_begin's first ready
 * bucket and reducer_hier_reduce's return: the caller must make no MPI call
 * then (MPI_THREAD_SERIALIZED). */
#ifndef MS_REDUCER_HIER_H
#define MS_REDUCER_HIER_H

#include "comm.h"
#include "hier.h"
#include "wire.h"

typedef struct reducer_hier reducer_hier;

/* For the even layout t (not owned; its communicators must outlive h and
 * carry nothing else while h works): a node-shared window of n floats per
 * local rank (none with one rank per node: the arena is grads), holding a
 * copy of grads; *arena is this rank's segment. algo is resolved (hier.h),
 * and not HIER_MPI on a 16-bit wire: cross-node messages then carry each
 * chunk once in 16 bits (wire.h) with error feedback, every element
 * rounded once per rank and step (reducer.h).
 * When some node cannot allocate its window, every rank gets *out = NULL
 * and returns 0 (the caller takes another path). Collective over the
 * world. @return 0, COMM_EMPI or COMM_ENOMEM, with a message in err. */
int reducer_hier_create(reducer_hier **out, comm_world *w, const comm_topo *t, float *grads,
                        size_t n, hier_algorithm algo, wire_format wire, float **arena, char *err,
                        size_t cap);

/* The overlapped schedule (reducer.h): bucket b is the arena's floats
 * [bounds[b + 1], bounds[b]) (bounds: nb + 1 entries, copied), reduced on a
 * comm thread as soon as every rank of the node has posted it
 * (reducer_hier_ready), in bucket order, each element summed exactly as
 * the whole-arena reduction sums it. Needs MPI_THREAD_SERIALIZED and a
 * WIRE_F32 wire (checked by the caller). When some rank cannot start it,
 * every rank stays on the whole-arena schedule and gets the reason in why.
 * Collective over the world. @return 0, or COMM_EMPI with a message. */
int reducer_hier_overlap(reducer_hier *h, comm_world *w, const size_t *bounds, int nb, char *why,
                         size_t why_cap, char *err, size_t cap);

/* A new reduction (overlapped schedule; nothing otherwise). */
void reducer_hier_begin(reducer_hier *h);

/* Overlapped schedule: the arena from off to its end is final here; posts
 * the buckets that completes. Never blocks, no MPI call. */
void reducer_hier_ready(reducer_hier *h, size_t off);

/* Every local segment is final -> every segment holds the sum over all
 * ranks (overlapped: waits for the comm thread's last bucket and for every
 * local rank's write-back). Sharded (reducer_hier_set_shard): only this
 * rank's slice of its own segment gets the sum. Collective over the world.
 * @return 0, or COMM_EMPI with a message. */
int reducer_hier_reduce(reducer_hier *h, char *err, size_t cap);

/* The sharded update (reducer.h, reducer_finish_shard), from now on for
 * every reduction: each rank's sum of its slice (over the node, then
 * across nodes, in the same order) stays in its own segment; no write-back
 * to the node's other segments and no closing node barrier. The caller
 * must synchronise the node (its parameter barrier) before any local
 * rank's next backward writes its segment. Before the first reduction, on
 * every rank. */
void reducer_hier_set_shard(reducer_hier *h);

/* Local rank j's slice [*lo, *hi) of the arena and its segment (*seg may
 * be NULL; with one rank per node the arena itself). @return the ranks on
 * this node. */
int reducer_hier_slice(const reducer_hier *h, int j, size_t *lo, size_t *hi, const float **seg);

/* This rank among its node's. */
int reducer_hier_local_rank(const reducer_hier *h);

/* This rank's memory fence on the node window (a no-op with one rank per
 * node). */
void reducer_hier_fence(reducer_hier *h);

/* The algorithm that runs across nodes. */
hier_algorithm reducer_hier_algorithm(const reducer_hier *h);

/* Bytes this rank sends to other nodes per reduction. */
double reducer_hier_internode_bytes(const reducer_hier *h);

/* Collective over the node. Accepts NULL. */
void reducer_hier_free(reducer_hier *h);

#endif
