/* costmodel — what a training step will cost on a given layout and link,
 * before the job runs (`midscale check --nodes K --link ...`) and next to
 * what a run measured (its summary).
 *
 * Compute, measured per layer (the form `midscale check` and a run's
 * summary use): a table of this model's own kernels timed on this machine
 * at the per-rank micro-batch (costmodel_layers, filled by layer_probe.h):
 * the forward, the loss, each layer's backward (from the gradient-ready
 * hook, so a layer without parameters is counted in the next layer below
 * it that has some: that is when their bucket is ready) and the optimizer
 * step over the arena. With train.accumulate K the step runs K forwards
 * and losses and K backwards; the first K - 1 backwards come before the
 * last one, whose layers make the buckets ready. The optimizer comes after
 * the sync; it runs over 1 / optim_shards of the arena per rank (the
 * node-shared parameters of comm.shared_params). Nothing is per case: the
 * table is the machine's answer for this model and batch.
 *
 * Compute from FLOPs (the fallback, no table, and the "at the run's rate"
 * line of a run's summary): each layer's forward takes flops x batch /
 * rate seconds (model.h's FLOPs: 2 x multiply-adds of dense and conv2d),
 * its backward twice that; layers without FLOPs, the loss and the
 * optimizer cost nothing.
 *
 * Communication: the alpha-beta model. A message of b bytes between two
 * nodes takes alpha + b x beta (alpha: per-step latency, beta: seconds per
 * byte of the link); the L ranks of a node share its link, so a step in
 * which each sends b bytes takes alpha + L x b x beta. The schedules are
 * the reducer's (reducer.h, hier.h):
 *  - hierarchical (more than one node, the node-shared window or one rank
 *    per node): each local rank sums its slice of n / L floats inside the
 *    node (reads the L segments' slices, writes them back: 2 x n x 4
 *    bytes per rank at the memory bandwidth; nothing with L = 1), then
 *    across N nodes the ring: 2 (N - 1) steps of n / (L N) floats;
 *    halving/doubling: 2 log2 N steps, n / (2 L), n / (4 L), ... floats;
 *    the algorithm hier_resolve picks from sizes alone;
 *  - flat (shared memory off with L > 1): each rank sends 2 (P - 1) / P of
 *    the bucket in 2 (P - 1) messages; what leaves for other nodes
 *    (2 (P - L) / P of it per rank, L ranks per link) crosses the link;
 *  - one node: the shared-memory sum (memory bandwidth only).
 * A 16-bit wire (comm.compress) halves the bytes on the link.
 *
 * Overlap (the ideal schedule): backward produces gradients from the last
 * layer to the first; each bucket (wire_plan_buckets on the layer
 * boundaries, as the reducer cuts them) is sent as soon as backward has
 * produced its last layer, one bucket at a time on the link. What ends
 * after backward is exposed. Without overlap the whole arena goes as one
 * reduction after backward. The schedule holds with or without a CPU
 * beyond the BLAS threads: the communication thread runs in short bursts
 * (a test of its messages between naps, one priority level above backward
 * under a real-time policy; reducer_hier.c), and the kernel moves the
 * bytes in between.
 *
 * What it leaves out (scripts/bench/results/cluster.md): the data part of
 * a step (the loader thread's wait; small when prefetched), the forward
 * per layer (only the whole forward is timed: nothing is sent during it),
 * other processes on the cores during the run (the table is measured at
 * start-up, when the load may differ), the CPU time the communication
 * thread and the kernel's TCP work take from backward on the same cores
 * (copies to and from the sockets; on emulated hosts the whole network
 * path), the 16-bit wire's conversions, waits for a slower rank beyond
 * the slowest rank's table, and a TCP exchange that overlaps its two
 * directions only some of the time.
 *
 * Pure arithmetic: no MPI, no allocation, any thread.
 */
#ifndef MS_COSTMODEL_H
#define MS_COSTMODEL_H

#include <stddef.h>
#include <stdio.h>

#include "hier.h"
#include "model.h"
#include "wire.h"

typedef struct {
  double alpha; /* seconds per message step */
  double beta;  /* seconds per byte */
} costmodel_link;

/* "1gbit", "10gbit", "100gbit" (alpha 50 us: a switched Ethernet hop), or
 * "RATE,LATENCY" with RATE a number and a unit kbit|mbit|gbit (per second)
 * and LATENCY a number and a unit us|ms|s ("2.5gbit,20us").
 * @return 0, or -1 when s does not parse. */
int costmodel_parse_link(const char *s, costmodel_link *l);

/* The gradient sync the reducer runs for this layout and options. */
typedef enum { COSTMODEL_NONE = 0, COSTMODEL_NODE_SHM, COSTMODEL_HIER, COSTMODEL_FLAT } costmodel_path;

/* Per-layer compute costs measured on this machine (layer_probe.h), in
 * seconds for `batch` rows (one micro-batch). valid 0: no table. */
typedef struct {
  int valid;
  int batch;
  double forward_s;                        /* model_forward */
  double loss_s;                           /* the loss and its gradient */
  double layer_backward_s[MS_MAX_LAYERS];  /* forward order; see above */
  double optim_s;                          /* the optimizer step, whole arena */
} costmodel_layers;

typedef struct {
  /* the model: per layer (forward order), forward FLOPs per sample and the
   * offset of its first parameter in the arena ((size_t)-1: none) */
  int n_layers;
  double layer_flops[MS_MAX_LAYERS];
  size_t layer_lo[MS_MAX_LAYERS];
  size_t n_params;       /* floats of the gradient arena */
  double batch;          /* samples per rank per step */
  double rate;           /* FLOP/s per rank, for the FLOP form (no table) */
  costmodel_layers layers; /* measured compute; valid 0: the FLOP form at rate */
  int accumulate;        /* train.accumulate (micro-batches per step; 0 counts as 1) */
  int optim_shards;      /* ranks sharing the optimizer step (comm.shared_params); 0 as 1 */
  /* the layout and the sync */
  int world, nodes;      /* P ranks on N nodes, L = P / N per node */
  int shared_memory;     /* comm.shared_memory */
  int overlap;           /* 1: the ideal overlap schedule; 0: one reduction after backward */
  hier_algorithm algorithm; /* comm.algorithm (resolved here as the reducer does) */
  wire_format wire;
  size_t first_bucket_bytes, bucket_bytes;
  costmodel_link link;   /* between nodes */
  double mem_bw;         /* bytes/s for the node's shared-memory sum; 0: free
                          * (`midscale check` measures a memcpy; a run's
                          * summary passes 0) */
} costmodel_in;

#define COSTMODEL_MAX_BUCKETS 64

typedef struct {
  costmodel_path path;
  hier_algorithm algorithm; /* across nodes (resolved), on the hierarchical path */
  double forward_s, backward_s; /* per step: with a table, forward_s holds the
                                 * forwards, losses and the backwards before the last */
  double optim_s;           /* the optimizer (table only; 0 in the FLOP form) */
  double compute_s;         /* forward + backward + optimizer */
  int overlap;              /* the schedule the path runs: in->overlap where it can (hier.h) */
  int n_buckets;
  double bucket_ready_s[COSTMODEL_MAX_BUCKETS]; /* from the start of backward */
  double bucket_sync_s[COSTMODEL_MAX_BUCKETS];
  double sync_s;            /* all buckets' reductions, back to back */
  double exposed_s;         /* what ends after backward */
  double step_s;            /* compute + exposed */
  double efficiency;        /* weak scaling vs one rank alone: compute / step */
  double link_bytes;        /* bytes per node per step on the inter-node link */
} costmodel_out;

/* Fills the sync part of in from the config's comm section (shared_memory,
 * overlap, algorithm, wire, bucket sizes); the layout and link are the
 * caller's. */
void costmodel_from_config(costmodel_in *in, const ms_config *c);

/* Fills the model part of in (n_layers, layer_flops, layer_lo, n_params)
 * from m. */
void costmodel_from_model(costmodel_in *in, const ms_model *m);

/* Seconds of one reduction of `floats` floats on in's layout (*link_bytes,
 * when not NULL, gets the bytes per node on the link). */
double costmodel_sync_s(const costmodel_in *in, size_t floats, double *link_bytes);

/* The prediction. @return 0, or -1 when the bucket plan needs more than
 * COSTMODEL_MAX_BUCKETS buckets, in is not a valid layout, or there is
 * neither a valid table nor a positive rate. */
int costmodel_predict(const costmodel_in *in, costmodel_out *out);

/* "hierarchical: 1 rank per node, ring across 2 nodes", "flat: 4 ranks on
 * 2 nodes", ... */
void costmodel_path_desc(const costmodel_out *o, int nodes, int world, char *buf, size_t n);

/* Writes the prediction as indented lines ("  compute: ...", "  sync: ...",
 * "  exposed comm: ...", "  step: ...") to out; `rate_what` says where
 * the compute costs come from (the table, or in->rate). The prediction
 * with the other overlap setting is added on its own line. */
void costmodel_print(FILE *out, const costmodel_in *in, const costmodel_out *o,
                     const char *rate_what);

#endif
