/* reducer — sums a flat float arena (the gradients) over the ranks, in
 * buckets that start while backward is still running.
 *
 * Backward produces gradients from the end of the arena towards its start
 * (model.h, ms_grad_ready). The arena is cut into buckets (wire.h,
 * wire_plan_buckets: whole layers from the end, a small first bucket); the
 * hook calls reducer_ready() with each finished range, which starts every
 * bucket that is now complete with a non-blocking collective and tests the
 * ones in flight (Open MPI moves data only inside MPI calls, so this is
 * where the overlap happens). reducer_finish() starts what is left, waits,
 * and leaves the sum over ranks in the arena. On the native path (below)
 * the last bucket, final only when backward is, always goes as a blocking
 * allreduce in reducer_finish: Open MPI's blocking allreduce is about twice
 * as fast as its non-blocking one on shared memory, and there is nothing
 * left to overlap. (Every rank makes the same choice for every bucket: a
 * blocking collective never matches a non-blocking one.)
 *
 * The sum. Every element is summed in rank order, ((g0 + g1) + g2) + ...,
 * in fp32, whatever the bucket size, the overlap, the MPI library or its
 * choice of algorithm: so overlap on or off and any bucket size give
 * bitwise-identical results. MPI_Allreduce does not promise that: with 3 or
 * more ranks its summation order depends on the algorithm, which Open MPI
 * picks by message size. So with more than 2 ranks (or a 16-bit wire) a
 * bucket is reduced in two collectives: an all-to-all sends element range j
 * of the bucket to rank j (a reduce-scatter whose sum the reducer does
 * itself, in rank order), then an allgather returns every range to every
 * rank; each rank sends and receives 2 (P - 1) / P of the bucket, as a ring
 * allreduce does. With 2 ranks each element is one addition g0 + g1, which
 * is commutative, so MPI's own (I)allreduce gives the same bits and is used.
 *
 * 16-bit wire (WIRE_FP16, WIRE_BF16): each rank sends its ranges as 16-bit
 * values (wire.h: a power-of-two scale per range for fp16), keeping what
 * rounding lost in a per-element residual that is added to the next call's
 * gradient (error feedback); the owner of a range sums the P decoded
 * contributions in fp32 and sends the sum back in 16 bits, with a residual of
 * its own for that rounding. All ranks decode the same words, so they hold
 * identical sums. Half the bytes of fp32 on the wire.
 *
 * Node shared memory (opts.shared_memory, fp32 wire, every rank on one
 * node): the reducer allocates the arena itself, one segment per rank of an
 * MPI-3 shared window (MPI_Win_allocate_shared), and the caller computes
 * its gradients into it (reducer_arena; the model's grads point there).
 * reducer_finish then waits for every rank (a barrier), each rank sums its
 * own 1/P of the arena straight from the P segments, in rank order, and
 * writes the sum into all P segments, and a second barrier ends the step:
 * each rank reads the arena once and writes it once, with no message
 * copies. No overlap on this path: the sum needs the cores that compute
 * backward, and it is several times faster than MPI's allreduce over
 * shared memory (scripts/bench/ddp.sh). Same bits as the other paths. A
 * window that cannot be allocated leaves the MPI paths above.
 *
 * Hierarchical (ranks on more than one node, the same number L of ranks on
 * every node, consecutive or not; comm.h: comm_topo). Inside a node, the
 * arena lives in a node-shared window as above, and local rank j
 * sums slice j of it (hier.h: 1/L of the arena on 64-byte lines) over the
 * node's L segments in local-rank order. Across the N nodes, the ranks with
 * local rank j (one per node) reduce their slices together with an
 * algorithm whose every addition is fixed by the layout (hier.h): a ring
 * (reduce-scatter then allgather of point-to-point messages, any N),
 * recursive halving/doubling (N a power of two; otherwise the ring), or
 * MPI_Allreduce (only N = 2, where one addition commutes; otherwise the
 * ring); opts.algorithm chooses, HIER_AUTO from the layout and the slice
 * size (never a timing). Each rank writes the result into its slice of all
 * L segments. So every node sends each byte over its links once, shared by
 * all its ranks, instead of every rank exchanging with every other rank:
 * at 2 nodes x 2 ranks half the bytes of the flat path leave each rank for
 * the other node (reducer_internode_bytes; measured on emulated hosts in
 * scripts/bench/results/hier.md). One rank per node needs no
 * window: the arena stays grads.
 *   The order of the sum therefore differs from the flat paths': element i
 * is ((node sums in local-rank order) combined in the algorithm's order),
 * e.g. for the ring ((x[c+1] + x[c+2]) + ...) + x[c] for the chunk c
 * holding i, x[k] = node k's sum. It depends only on the layout (nodes,
 * ranks per node, arena size) and the algorithm that runs: identical run to
 * run, on every rank, whatever the bucket sizes or the overlap, but not
 * bitwise equal to a run with another layout.
 *   Overlap (opts.overlap, fp32 wire, more than one bucket, and MPI gives
 * MPI_THREAD_SERIALIZED): a comm thread per rank runs the path bucket by
 * bucket while backward computes, as Horovod's background thread does.
 * reducer_ready posts the buckets it completes (with L > 1, by counting
 * itself in the bucket's counter in a node-shared window: no MPI call);
 * the thread takes them in order, waits until every local rank has posted
 * one, sums the bucket's part of this rank's slice over the node, runs the
 * cross-node algorithm on it with blocking point-to-point messages on the
 * cross-node communicator, and writes it back to the node's segments.
 * Slices and chunks stay those of the whole arena: a bucket reduces its
 * intersection with each chunk in that chunk's order, so every element is
 * summed exactly as without buckets (overlap on/off and any bucket sizes:
 * the same bits). With 2 nodes, where each element's sum is one addition
 * (commutative), a bucket is cut in its own halves instead, so that both
 * directions of the link carry half of every bucket. With more nodes a
 * bucket's parts of the fixed chunks are uneven (a bucket inside one chunk
 * goes round the ring whole, N - 1 times each way: up to N times the time
 * of its share of a whole-arena ring), so across more than 2 nodes the
 * path runs the whole arena after backward and says so. reducer_finish waits for the last bucket
 * and every local rank's write-back. Measured across emulated hosts, a blocking exchange on a
 * thread hides behind compute where MPI's non-blocking collectives over TCP are slower than not
 * overlapping at all (scripts/bench/results/overlap.md): so the flat paths across nodes run
 * blocking after backward, and reducer_overlap_desc says what overlaps.
 *   A 16-bit wire compresses only the messages between nodes (the node's
 * sum stays fp32 in memory): every chunk a rank sends in the
 * reduce-scatter, and the chunk it owns before the allgather, is rounded
 * once, with error feedback as above (one residual per element of its
 * slice); the allgather forwards the owner's words unchanged, so every rank
 * decodes the same bits. mpi becomes the ring there (MPI sums floats only).
 *   An uneven layout, shared memory off with L > 1, or a window some node
 * cannot allocate take the flat paths across all ranks, and reducer_method
 * says why.
 *
 * One world of 1 rank: nothing to send; the arena is left as it is.
 *
 * Collective: reducer_create, reducer_finish and the sequence of buckets
 * started are collective over the world's ranks (every rank must call
 * reducer_finish once per reducer_begin, with any pattern of
 * reducer_ready calls in between). The reducer works on two duplicates of
 * the world's communicator and, across nodes, on node and cross-node
 * communicators of its own (comm_topo), so collectives on w->comm in
 * between do not interfere. Threads: the calling thread only, plus the
 * comm thread above, which makes MPI calls between reducer_begin and the
 * return of reducer_finish: the caller makes none in between
 * (MPI_THREAD_SERIALIZED; comm_init asks for it).
 * Errors: COMM_EMPI (MPI failure), COMM_ENOMEM; the message is in w->err.
 */
#ifndef MS_REDUCER_H
#define MS_REDUCER_H

#include <stddef.h>

#include "comm.h"
#include "hier.h"
#include "wire.h"

typedef struct reducer reducer;

typedef struct {
  size_t first_bucket_bytes; /* the first bucket (the last layers); DDP's is 1 MiB */
  size_t bucket_bytes;       /* the others (DDP's 25 MiB) */
  int overlap;               /* 1: start buckets from reducer_ready (where that wins,
                              * see above); 0: one blocking collective over the
                              * whole arena in reducer_finish */
  wire_format wire;          /* WIRE_F32, or a 16-bit format with error feedback */
  int shared_memory;         /* 1: sum in a node-shared window when all ranks are on
                              * one node and the wire is WIRE_F32 (see above); with
                              * more nodes, the hierarchical path's window */
  hier_algorithm algorithm;  /* across nodes (hier.h); 0 = HIER_AUTO */
  int ranks_per_node;        /* tests only: emulate nodes of this many consecutive
                              * ranks (comm_topo_emulate); 0 = the hardware's nodes */
  int overlap_any_nodes;     /* tests only: the hierarchical comm thread also across
                              * more than 2 nodes, where it does not pay (above) */
} reducer_opts;

/* A reducer for the arena grads (n floats, not owned, must outlive it).
 * starts: the offsets where parameter units (layers) begin, ascending, so
 * that buckets end on layer boundaries (NULL: byte-count buckets).
 * Collective (duplicates the communicator twice). */
int reducer_create(reducer **out, comm_world *w, float *grads, size_t n, const size_t *starts,
                   int n_starts, const reducer_opts *opts);

/* The arena the reducer sums: grads, or on the shared-memory path its own
 * node-shared segment (n floats, a copy of grads at creation), which the
 * caller must compute into from then on and not use after reducer_free. */
float *reducer_arena(const reducer *r);

/* Frees the communicators and buffers; accepts NULL. Collective when
 * non-NULL. Must not be called with collectives in flight. */
void reducer_free(reducer *r);

/* Starts a new reduction: nothing of the arena is final yet. */
void reducer_begin(reducer *r);

/* Gradients [off, off + len) are final (ranges arrive from the end of the
 * arena towards its start). Starts the buckets this completes and tests the
 * ones in flight. Never blocks; an MPI failure is reported by
 * reducer_finish. Matches ms_grad_ready (model.h) with ctx = the reducer. */
void reducer_ready(void *r, size_t off, size_t len);

/* Tests the non-blocking collectives in flight on the flat path and starts
 * the second phase of those that finished. reducer_ready calls it after
 * every range, so a caller needs it only to make progress where backward
 * produces no gradients for a long time; a no-op on the other paths. */
void reducer_progress(reducer *r);

/* Treats the whole arena as final, starts what is left, waits for every
 * bucket. Afterwards the arena holds the sum over ranks (identical bits on
 * every rank). Collective. @return 0, COMM_EMPI. */
int reducer_finish(reducer *r);

/* The sharded update (ZeRO stage 1 inside a node; on the node-shared
 * path, reducer_shared, or the hierarchical path after
 * reducer_set_sharded): like reducer_finish, the first barrier and each
 * rank's sum of its range in the same order (the same bits; across nodes
 * the slice's cross-node reduction too), but the sum stays in this rank's
 * own segment: no write-back and no second barrier. The
 * caller then updates its own range of the parameters from it, and every
 * rank synchronises again (a barrier of the caller's: the parameters are
 * complete) before any rank's next backward writes its segment. Another
 * rank's sum may be read (reducer_shard) after a collective over the world
 * that follows this call on every rank, with reducer_fence after it.
 * Collective. @return 0, COMM_EMPI (also off the node-shared path). */
int reducer_finish_shard(reducer *r);

/* The sharded update with the sum fused into it (no clipping: nothing
 * needs the whole sum before the update). reducer_shard_publish: this
 * rank's gradients are final (a memory fence; no barrier of its own: the
 * caller's next collective over every rank of the node, the step
 * agreement, is the "gradients complete" synchronisation, with
 * reducer_fence after it). Then reducer_shard_segments gives every rank's
 * segment in rank order (reducer_shard's count of them, each in the
 * arena's layout): the sum of element i in rank order is reducer_finish's
 * bits (optim_step_range_sum reads it so). Nothing is written to the
 * window. The caller's barrier after its update (the parameters are
 * complete) also ends the reads. publish: 0, or COMM_EMPI off the one-node
 * node-shared path (reducer_shared: the hierarchical path sums across nodes
 * first, reducer_finish_shard) or after a failure. */
int reducer_shard_publish(reducer *r);
const float *const *reducer_shard_segments(const reducer *r);

/* Makes the reducer ready for reducer_finish_shard, on every rank before
 * the first reduction: nothing to do on the one-node node-shared path; on
 * the hierarchical path with more than one rank a node, every reduction
 * from now on leaves each rank's slice summed over all ranks of all nodes
 * (the same bits as reducer_finish) in its own segment only, and the
 * arena's other floats as backward left them: only reducer_finish_shard
 * may end a reduction then (reducer_finish returns COMM_EMPI, on every
 * rank, before any collective). @return 0, or COMM_EMPI (another path; nothing
 * changed) with a message. */
int reducer_set_sharded(reducer *r);

/* Shard k's range [*lo, *hi) of the arena on the node-shared path or the
 * hierarchical path (on 64-byte lines; the ranges of shards 0, 1, ...
 * cover the arena in order; one shard per rank of this node, shard k for
 * the node's k-th rank), and in *seg (may be NULL) shard k's segment,
 * which holds the sum of that range after reducer_finish_shard. @return
 * the number of shards (the ranks on this node), or 0 off those paths
 * (nothing set). */
int reducer_shard(const reducer *r, int k, size_t *lo, size_t *hi, const float **seg);

/* This rank's shard for reducer_shard: its rank on one node, its rank
 * among its node's on the hierarchical path. */
int reducer_shard_self(const reducer *r);

/* This rank's memory fence on the node-shared window (MPI_Win_sync); a
 * no-op off that path. */
void reducer_fence(reducer *r);

/* What reducer_create planned: the number of buckets, and bucket b's float
 * range [lo, hi) when b is in range. */
int reducer_buckets(const reducer *r, int b, size_t *lo, size_t *hi);

/* Timing for a timeline (trainer/timeline.h), off at creation: on, each
 * bucket of the flat paths is stamped (comm_wtime) when its collective
 * starts and when this rank sees it complete. Off, no clock is read. */
void reducer_set_timing(reducer *r, int on);

/* With timing on, after reducer_finish: bucket b's stamps (seconds; 0 when
 * not measured: one rank, node shared memory or the hierarchical path,
 * whose sums are not per bucket on this thread). @return the number of
 * buckets. */
int reducer_bucket_times(const reducer *r, int b, double *start, double *done);

/* Bytes this rank sends per reduction (0 for one rank). */
double reducer_wire_bytes(const reducer *r);

/* Bytes this rank sends to ranks on other nodes per reduction (0 on one
 * node): exact on the hierarchical path (its own messages); with the mpi
 * algorithm, and on the flat paths, a lower bound (MPI may forward pieces
 * through other ranks: scripts/bench/results/hier.md). */
double reducer_internode_bytes(const reducer *r);

/* 1 on the one-node node-shared-memory path. */
int reducer_shared(const reducer *r);

/* 1 on the hierarchical path. */
int reducer_hierarchical(const reducer *r);

/* "MPI allreduce (2 ranks)", "rank-ordered reduce-scatter + allgather",
 * "node shared memory", "none (one rank)", or on more than one node
 * "hierarchical: node shared memory (2 ranks) + ring across 2 nodes (auto)"
 * or a flat method followed by "(flat: <why not hierarchical>)". Valid
 * while r lives. */
const char *reducer_method(const reducer *r);

/* What overlaps backward, for the banner: "overlap: the inter-node ring in
 * a comm thread during backward (3 buckets)", "overlap: non-blocking
 * collectives per bucket during backward", or "overlap off: ... (why)".
 * Valid while r lives. */
const char *reducer_overlap_desc(const reducer *r);

#endif
