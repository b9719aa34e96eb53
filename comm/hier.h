/* hier — the arithmetic of the reducer's hierarchical path (reducer.h):
 * which part of the arena each rank of a node sums, and the schedules of
 * the cross-node algorithms that fix the order of every addition. Pure: no
 * MPI, no allocation, any thread.
 *
 * A node of L ranks cuts the arena of n floats into L slices (slice j for
 * local rank j, on 64-byte lines). Across N nodes, the ranks with local
 * rank j reduce slice j, cut into N chunks (chunk c for node c).
 *
 * Ring (any N): reduce-scatter in N - 1 steps, then allgather in N - 1
 * steps, each step a message to the next node and one from the previous.
 * At reduce-scatter step s node k sends its partial sum of chunk
 * hier_ring_send(k, s, N) and adds the one it receives to its own:
 * chunk c is summed as ((x[c+1] + x[c+2]) + ...) + x[c] (node indices mod
 * N; x[k] is node k's sum) and ends on node c, which owns it.
 *
 * Halving/doubling (N a power of two): at distance d = N/2, N/4, ..., 1
 * node k and node k ^ d exchange halves of what they hold (the lower node
 * keeps the lower half); then the ranges double back. Every chunk is summed
 * as the same tree: fold the upper half of the nodes onto the lower half,
 * x[i] + x[i + h] for h = N/2, ..., 1 (lower node's partial on the left).
 *
 * The reducer's overlapped schedule reduces a bucket at a time: with
 * N > 2 each bucket's part of each chunk, in the chunk's order; with N = 2
 * (one commutative addition per element) the bucket's own halves.
 *
 * MPI: MPI_Allreduce over the N nodes; its order is MPI's, so only N = 2
 * (one commutative addition) is bitwise fixed; other N take the ring.
 */
#ifndef MS_HIER_H
#define MS_HIER_H

#include <stddef.h>

typedef enum { HIER_AUTO = 0, HIER_RING, HIER_HALVING_DOUBLING, HIER_MPI } hier_algorithm;

/* "auto", "ring", "halving_doubling", "mpi". */
const char *hier_algorithm_name(hier_algorithm a);

/* Slice j (of L) of n floats starts here; on 64-byte lines (16 floats), so
 * two ranks never write one line; j >= L gives n. */
size_t hier_slice_start(size_t n, int j, int L);

/* Chunk c (of N) of m floats starts here; c >= N gives m. */
size_t hier_chunk_start(size_t m, int c, int N);

/* The chunk node k sends at ring reduce-scatter step s (0 .. N - 2); it
 * receives hier_ring_send(k - 1, s, N). */
int hier_ring_send(int k, int s, int N);

/* The chunk node k sends at ring allgather step s (0 .. N - 2): its own at
 * step 0, then the one it received last. */
int hier_ring_gather(int k, int s, int N);

/* The algorithm that runs for the one asked across N nodes, when each
 * node's rank reduces a slice of slice_bytes: auto takes halving/doubling
 * for a power-of-two N of at least 4 when the first message (half a slice)
 * is small (latency-bound: log2 N steps each way instead of N - 1), and the
 * ring otherwise (only neighbours talk: on a real network each link carries
 * one stream); with N = 2 the two are the same single exchange. A
 * halving/doubling that cannot run (N not a power of two) and mpi with N
 * other than 2 become the ring. Decided from sizes alone, never timed, so
 * every rank decides the same. */
hier_algorithm hier_resolve(hier_algorithm asked, int N, size_t slice_bytes);

/* The first bucket of the hierarchical path's overlapped schedule, floats,
 * for an arena of n and a first_bucket_bytes of `first` floats: at most a
 * quarter of the arena (whole layers until it reaches that), so a model
 * smaller than the cap still sends its last layers while the first
 * layers' backward runs, also when the first layer holds most of the
 * parameters, as an MLP on images does (784-256-256-10: 2 buckets, not 1;
 * scripts/bench/results/cluster.md). Bits do not depend on the buckets. */
size_t hier_first_bucket(size_t n, size_t first);

/* Whether the hierarchical path can reduce bucket by bucket during
 * backward (reducer.h): only on an fp32 wire and across 2 nodes (buckets
 * meet the fixed chunks of more nodes unevenly). On a 16-bit wire the
 * node that owns a chunk rounds the sum once more than the other node's
 * part, so the bits depend on which node owns an element: a bucket cut in
 * its own halves (as fp32 does with 2 nodes, to keep both directions of
 * the link busy) would move ownership (test_reducer_hier's 16-bit case
 * fails with it). */
int hier_can_overlap(int wire_16bit, int n_nodes);

/* auto's threshold on half a slice, bytes. */
#define HIER_AUTO_HD_BYTES ((size_t)1 << 20)

/* Floats node k sends to other nodes per reduction of a slice of m floats
 * (the ring's count for mpi, a lower bound of what MPI sends). */
size_t hier_sent_floats(hier_algorithm a, size_t m, int k, int N);

#endif
