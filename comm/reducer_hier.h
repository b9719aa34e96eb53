/* The reducer's hierarchical path (reducer.h), internal to the reducer:
 * node shared memory inside a node, a fixed-order algorithm (hier.h)
 * across nodes. MPI_THREAD_FUNNELED: the calling thread only. */
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

/* Every local segment is final -> every segment holds the sum over all
 * ranks. Collective over the world. @return 0, or COMM_EMPI with a message. */
int reducer_hier_reduce(reducer_hier *h, char *err, size_t cap);

/* The algorithm that runs across nodes. */
hier_algorithm reducer_hier_algorithm(const reducer_hier *h);

/* Bytes this rank sends to other nodes per reduction. */
double reducer_hier_internode_bytes(const reducer_hier *h);

/* Collective over the node. Accepts NULL. */
void reducer_hier_free(reducer_hier *h);

#endif
