/* comm — MPI and nothing else: the world, agreement, and collectives on
 * flat float arenas.
 *
 * Every function named "collective" must be called by all ranks of the
 * world in the same order. Functions return 0 or a negative MPI-derived
 * code (COMM_EMPI) and write a message into the world's err buffer
 * (comm_errmsg); they never print and never exit. The world's communicator
 * is set to MPI_ERRORS_RETURN so a failed call comes back here.
 *
 * Threading: MPI is initialised with MPI_THREAD_SERIALIZED when the
 * library gives it (thread_level says what it gave): only the thread that
 * called comm_init may call these functions; the reducer's comm thread
 * (reducer.h) makes its MPI calls only while that thread makes none.
 */
#ifndef MS_COMM_H
#define MS_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#define COMM_EMPI (-7)
#define COMM_ENOMEM (-6)

typedef struct {
  MPI_Comm comm;      /* a duplicate of MPI_COMM_WORLD */
  int rank, size;     /* in comm */
  int local_rank;     /* among ranks on the same node */
  int local_size;
  int owns_mpi;       /* 1 if comm_init called MPI_Init_thread */
  int thread_level;   /* MPI_THREAD_* the library provides */
  char launcher[32];  /* "slurm", "mpirun", "singleton" */
  char err[512];
} comm_world;

/* Initialises MPI (unless already initialised) and fills w. Collective.
 * @return 0 or COMM_EMPI. */
int comm_init(comm_world *w, int *argc, char ***argv);

/* Frees the communicator and finalises MPI if comm_init initialised it. */
void comm_finalize(comm_world *w);

/* @return the message of the last failure on w. */
const char *comm_errmsg(const comm_world *w);

/* Agreement before any branch that could split the ranks' paths. Collective.
 * @return the most negative of the ranks' local codes (0 if all are 0); a
 * failure of the agreement itself returns COMM_EMPI. */
int comm_agree(comm_world *w, int local_code);

/* A readiness vote (not an error agreement: nothing failed when a rank is
 * not ready). Collective.
 * @return 1 when every rank passed ready != 0, 0 when some rank passed 0,
 * or COMM_EMPI when the vote itself failed. */
int comm_all_ready(comm_world *w, int ready);

/* Agreement that also carries the reason: like comm_agree, but the code and
 * message are those of the lowest-numbered failing rank, copied into code
 * and msg (cap bytes) on every rank, so rank 0 can report a failure that
 * happened elsewhere. msg is read only on a failing rank. Collective.
 * @return that code (0 if no rank failed), or COMM_EMPI. */
int comm_agree_msg(comm_world *w, int local_code, char *msg, size_t cap);

/* @return 1 if every rank passed the same value, 0 if not, <0 on failure.
 * Collective. */
int comm_all_equal_u64(comm_world *w, uint64_t value);

/* Broadcasts a byte buffer from root: on root *buf and *len are inputs; on other
 * ranks *buf is malloc'ed (NUL-terminated) and *len set. Collective. */
int comm_bcast_bytes(comm_world *w, char **buf, size_t *len, int root);

/* Gathers len bytes (len <= INT_MAX) from every rank into all (size * len
 * bytes, rank r's at r * len) on every rank. Collective. */
int comm_allgather_bytes(comm_world *w, const void *mine, size_t len, void *all);

/* Gathers a different number of bytes from every rank onto root, in rank
 * order. On root, *out gets a malloc'ed buffer holding the concatenation
 * (*out_len bytes; the caller frees it) and lens, when not NULL, gets each
 * rank's byte count (w->size entries). On other ranks *out = NULL and
 * *out_len = 0. Any sizes (sent in pieces under INT_MAX). If root cannot
 * allocate the buffer, no bytes move and every rank returns COMM_EMPI with
 * the same message. Collective. */
int comm_gatherv_bytes(comm_world *w, const void *buf, size_t len, int root, char **out,
                       size_t *out_len, size_t *lens);

/* Broadcasts n floats (any n, chunked under INT_MAX) from root. Collective. */
int comm_bcast_f32(comm_world *w, float *buf, size_t n, int root);

/* In-place sum over ranks of n floats (any n). Collective. */
int comm_allreduce_sum_f32(comm_world *w, float *buf, size_t n);

/* In-place sum over ranks of n doubles. Collective. */
int comm_allreduce_sum_f64(comm_world *w, double *buf, size_t n);

/* In-place max over ranks of n doubles. Collective. */
int comm_allreduce_max_f64(comm_world *w, double *buf, size_t n);

/* Blocks until all ranks arrive. Collective. */
int comm_barrier(comm_world *w);

/* Memory shared by the ranks of each node (an MPI-3 shared window that the
 * node's first rank allocates), for data every rank of a node would
 * otherwise hold and compute a copy of. */
typedef struct comm_node_mem comm_node_mem;

/* Collective. Every rank passes the same bytes (> 0); on each node the
 * first `zeroed` bytes are set to zero before any rank returns. When every
 * node could allocate it, *out is the handle and *base the node's memory
 * (page aligned, the same bytes on every rank of the node, valid until
 * comm_node_mem_free). When some node could not (e.g. /dev/shm, where MPI
 * libraries keep the pages, has less room than bytes), every rank gets
 * *out = NULL and *base = NULL, and returns 0: the caller goes without.
 * @return 0, or COMM_EMPI. */
int comm_node_mem_alloc(comm_world *w, size_t bytes, size_t zeroed, comm_node_mem **out,
                        void **base);

/* Frees it; collective over the ranks of the node. Accepts NULL. */
void comm_node_mem_free(comm_node_mem *m);

/* A barrier over the ranks of m's node that also orders memory: every store
 * a rank made to the node's memory before it is seen by every rank of the
 * node after it (MPI_Win_sync on both sides of an MPI_Barrier; Open MPI's
 * and MPICH's MPI_Win_sync is a full fence, so it orders the stores to other
 * node-shared windows of the rank too). Collective over the node's ranks.
 * @return 0, or COMM_EMPI. */
int comm_node_mem_barrier(comm_node_mem *m);

/* This rank's fence on m's memory (MPI_Win_sync), for a caller that
 * synchronises through another collective (an allreduce over the world is
 * a barrier too): a fence before it and one after it order the stores as
 * comm_node_mem_barrier does. */
void comm_node_mem_fence(comm_node_mem *m);

/* World rank 0's node copy of n floats at buf (a pointer into m's memory,
 * at the same offset on every rank) into every other node's copy, then
 * comm_node_mem_barrier: every rank of every node sees rank 0's values.
 * Only the first rank of each node receives (one message per node, never
 * into memory another rank of the node is sending from). Collective over
 * the world. @return 0, or COMM_EMPI. */
int comm_node_mem_bcast_f32(comm_node_mem *m, float *buf, size_t n);

/* The nodes of the world, for algorithms that keep traffic inside a node.
 * Nodes are numbered by their lowest world rank; local ranks follow world
 * rank order within a node. Any layout is described (MPI may place ranks of
 * a node consecutively, round robin, or unevenly). */
typedef struct {
  MPI_Comm node;    /* the ranks of this node (owned) */
  MPI_Comm cross;   /* the ranks with this local rank, one per node, ranked by
                     * node index (owned; on an uneven layout some nodes have
                     * no rank of a given local rank) */
  int n_nodes;
  int node_index;   /* this rank's node, 0 .. n_nodes - 1 (= its rank in cross) */
  int local_rank, local_size;
  int even;         /* 1: every node has local_size ranks */
  int consecutive;  /* 1: even, and node k holds world ranks [k L, (k + 1) L) */
  int min_local, max_local; /* the fewest and most ranks on a node */
  int *node_of;     /* (world size) node index of every world rank (owned) */
} comm_topo;

/* The hardware's nodes (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)).
 * Collective. @return 0, COMM_EMPI or COMM_ENOMEM; on failure t holds
 * nothing to free. */
int comm_topo_detect(comm_world *w, comm_topo *t);

/* The same description for emulated nodes of ranks_per_node consecutive
 * world ranks (the last node takes the rest, so a size that does not
 * divide gives an uneven layout). For tests on one machine: the emulated
 * node communicator is an ordinary subset of ranks that really share the
 * machine, so node shared memory works on it. Collective. @return as
 * comm_topo_detect. */
int comm_topo_emulate(comm_world *w, int ranks_per_node, comm_topo *t);

/* Frees the communicators and the map; accepts a zeroed or freed t.
 * Collective over the world (communicator frees). */
void comm_topo_free(comm_topo *t);

/* CPUs this rank may use for threads: the CPUs of its affinity mask
 * (sched_getaffinity) divided among the ranks of its node whose mask is
 * the same one (a launcher that binds each rank to its own cores gives each
 * rank its whole mask; an unbound launch shares the machine's CPUs among
 * the node's ranks). At least 1. Collective (the masks are gathered within
 * the node). @return the count, or COMM_EMPI / COMM_ENOMEM. */
int comm_cpus_per_rank(comm_world *w);

/* The link between nodes, measured: what the cost model (trainer/
 * costmodel.h) needs, never a choice of algorithm. */
typedef struct {
  int nodes;       /* the hardware's nodes (comm_topo_detect) */
  double alpha;    /* seconds of a tiny exchange with the ring neighbours */
  double beta;     /* seconds per byte of a large one (the slope between
                    * COMM_PROBE_SMALL and COMM_PROBE_LARGE bytes, so a
                    * shaper's burst and alpha cancel) */
  double seconds;  /* the probe's own wall time */
} comm_link_probe;

#define COMM_PROBE_SMALL ((size_t)512 << 10)
#define COMM_PROBE_LARGE ((size_t)2 << 20)
#define COMM_PROBE_REPS 7
#define COMM_PROBE_MAX_REPS 16

/* A short alpha-beta probe between the ranks of local rank 0, one per
 * node: exchanges of 8 bytes, 512 KiB and 2 MiB (11, COMM_PROBE_REPS and
 * COMM_PROBE_REPS times, each after one untimed), each rank sending to the
 * next node and receiving from the previous as a ring step does, in the
 * sync's pieces with every receive posted first (1 Gbit takes about 0.2 s).
 * Each time is the lower quartile of its repetitions and the slowest over
 * nodes; the result is broadcast to every rank. One node: nodes = 1, alpha
 * = beta = 0, nothing sent. Collective. @return 0, COMM_EMPI or
 * COMM_ENOMEM. */
int comm_probe_link(comm_world *w, comm_link_probe *p);

/* Seconds on a monotonic clock (for intervals on one rank; makes no MPI
 * call, so any thread may use it while another is inside MPI). */
double comm_wtime(void);

#endif
