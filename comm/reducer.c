#include "reducer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "reducer_hier.h"

/* A bucket goes IDLE -> PHASE1 -> (rank-ordered path: REDUCED -> PHASE2 ->)
 * DONE. PHASE1 is the native allreduce, or the all-to-all of the
 * rank-ordered path; PHASE2 its allgather. */
enum { B_IDLE = 0, B_PHASE1, B_REDUCED, B_PHASE2, B_DONE };

typedef struct {
  size_t lo, hi; /* floats of the arena */
  int state;
  MPI_Request req;
  /* Rank-ordered path, per rank j (in MPI datatype units): all-to-all send
   * and receive counts and displacements, allgather counts and
   * displacements. They must stay unchanged while a collective is in flight. */
  int *sc, *sd, *rc, *rd, *ac, *ad;
  size_t me_lo, me_n; /* this rank's range of the bucket: the sum it computes */
  size_t s32;         /* offset of its received fp32 pieces in scratch */
  size_t w16;         /* offset of its 16-bit words (sent, then gathered) in buf16 */
  size_t r16;         /* offset of its received 16-bit pieces in recv16 */
  double t_start, t_done; /* with timing on: its collective started, this rank saw it done */
} bucket;

struct reducer {
  comm_world *w;
  MPI_Comm c1, c2; /* phase 1 and phase 2: each sees its collectives in bucket order */
  float *g;
  size_t n;
  int P, me;
  int overlap, ordered;
  /* 1 on the native path: the last bucket (the first layer, final only when
   * backward is) goes as one blocking allreduce in reducer_finish, which is
   * markedly faster than a non-blocking one on shared memory; the buckets in
   * flight progress inside it. Fixed at creation, so that every rank issues
   * the same kind of collective for every bucket (a blocking collective
   * never matches a non-blocking one). */
  int last_blocking;
  wire_format wire;
  int nb;
  bucket *b;
  int *counts;
  float *scratch;  /* fp32 pieces received (P * me_n per bucket) */
  uint16_t *buf16; /* per bucket: every rank's range, WIRE_HEADER words in front */
  uint16_t *recv16;
  float *res_send; /* (n) error feedback of this rank's contribution */
  float *res_own;  /* (n) error feedback of the sums this rank owns */
  size_t ready_lo; /* [ready_lo, n) is final */
  int next_start;  /* buckets [0, next_start) have started */
  int next_phase2; /* buckets [0, next_phase2) have started phase 2 */
  int failed;      /* an MPI call failed inside reducer_ready/progress */
  int timed;       /* reducer_set_timing: stamp each bucket (reads the clock) */
  double wire_bytes;
  /* Node shared memory: the window, every rank's segment (seg[me] is g),
   * and the range [own_lo, own_hi) whose sum this rank computes. */
  MPI_Win win;
  float **seg;
  size_t own_lo, own_hi;
  /* More than one node: the layout (node_of is NULL on one node), the
   * hierarchical path when it runs, and what this rank sends off its node. */
  comm_topo topo;
  reducer_hier *hier;
  double internode_bytes;
  int hier_overlap; /* the hierarchical path's comm thread runs the buckets */
  int hier_shard;   /* reducer_set_sharded on the hierarchical path */
  char method[192];
  char overlap_desc[192];
};

static int fail(reducer *r, int mpi_rc, const char *what) {
  if (!r->failed) comm_mpi_fail(mpi_rc, "reducer", what, r->w->err, sizeof r->w->err);
  r->failed = 1;
  return COMM_EMPI;
}

static size_t range_start(size_t m, int j, int P) {
  return (size_t)((uint64_t)m * (uint64_t)j / (uint64_t)P);
}

/* ---- node shared memory ------------------------------------------------------ */

/* Range boundaries on 64-byte lines: two ranks never write one line. */
static size_t line_start(size_t n, int j, int P) {
  return j >= P ? n : range_start(n, j, P) & ~(size_t)15;
}

/* Puts the arena in a node-shared window when every rank is on this node.
 * Leaves r->win MPI_WIN_NULL (the MPI path) when they are not, or when
 * some rank could not allocate its segment (e.g. a small /dev/shm): every
 * rank decides the same. @return 0, or COMM_EMPI / COMM_ENOMEM. */
static int shm_create(reducer *r, const float *grads) {
  MPI_Comm node = MPI_COMM_NULL;
  int rc = MPI_Comm_split_type(r->c1, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return fail(r, rc, "MPI_Comm_split_type");
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  if (node_size != r->P) { /* the same answer on every rank */
    MPI_Comm_free(&node);
    return 0;
  }
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each segment on its own pages */
  float *base = NULL;
  rc = MPI_Win_allocate_shared((MPI_Aint)(sizeof(float) * (r->n ? r->n : 1)), sizeof(float), info,
                               node, &base, &r->win);
  MPI_Info_free(&info);
  MPI_Comm_free(&node);
  int ok = rc == MPI_SUCCESS, all = 0;
  r->seg = ok ? calloc((size_t)r->P, sizeof *r->seg) : NULL;
  ok = ok && r->seg;
  for (int k = 0; ok && k < r->P; k++) {
    MPI_Aint size;
    int disp;
    ok = MPI_Win_shared_query(r->win, k, &size, &disp, &r->seg[k]) == MPI_SUCCESS;
  }
  rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, r->c1);
  if (rc != MPI_SUCCESS) return fail(r, rc, "MPI_Allreduce");
  if (!all) {
    if (r->win != MPI_WIN_NULL) MPI_Win_free(&r->win);
    free(r->seg);
    r->seg = NULL;
    return 0;
  }
  /* One passive-target epoch for the window's life: MPI_Win_sync orders
   * the loads and stores around each barrier. */
  MPI_Win_lock_all(MPI_MODE_NOCHECK, r->win);
  memcpy(base, grads, sizeof(float) * r->n);
  r->g = base;
  r->own_lo = line_start(r->n, r->me, r->P);
  r->own_hi = line_start(r->n, r->me + 1, r->P);
  r->wire_bytes = 2.0 * sizeof(float) * (double)(r->n - (r->own_hi - r->own_lo));
  return 0;
}

/* The sum of elements [lo, lo + n) over every rank's segment, in rank
 * order: ((g0 + g1) + g2) + ... */
static void shard_sum(const reducer *r, size_t lo, size_t n, float *restrict acc) {
  memcpy(acc, r->seg[0] + lo, n * sizeof *acc);
  for (int k = 1; k < r->P; k++) {
    const float *restrict src = r->seg[k] + lo;
    for (size_t j = 0; j < n; j++) acc[j] += src[j];
  }
}

/* Every rank's own segment is final -> every segment holds the sum (all),
 * or this rank's own segment holds the sum of [own_lo, own_hi) (the
 * sharded update, reducer_finish_shard: no write-back, no second barrier).
 * The order of the sum is the same either way. */
static int shm_reduce(reducer *r, int all) {
  MPI_Win_sync(r->win);
  int rc = MPI_Barrier(r->c1);
  if (rc != MPI_SUCCESS) return fail(r, rc, "MPI_Barrier");
  MPI_Win_sync(r->win);
  enum { CHUNK = 1024 }; /* acc stays in L1 */
  float acc[CHUNK];
  const int P = r->P;
  for (size_t i = r->own_lo; i < r->own_hi; i += CHUNK) {
    size_t m = r->own_hi - i < CHUNK ? r->own_hi - i : CHUNK;
    shard_sum(r, i, m, acc);
    if (all)
      for (int k = 0; k < P; k++) memcpy(r->seg[k] + i, acc, m * sizeof *acc);
    else
      memcpy(r->seg[r->me] + i, acc, m * sizeof *acc);
  }
  MPI_Win_sync(r->win);
  if (!all) return 0;
  rc = MPI_Barrier(r->c1); /* no segment is read or written by another rank after it */
  if (rc != MPI_SUCCESS) return fail(r, rc, "MPI_Barrier");
  MPI_Win_sync(r->win);
  return 0;
}

/* Counts, displacements and buffer offsets of the rank-ordered path. */
static void layout_bucket(reducer *r, bucket *b, size_t *s32, size_t *w16, size_t *r16) {
  int P = r->P, H = r->wire == WIRE_F32 ? 0 : WIRE_HEADER;
  size_t m = b->hi - b->lo;
  b->me_lo = b->lo + range_start(m, r->me, P);
  b->me_n = range_start(m, r->me + 1, P) - range_start(m, r->me, P);
  for (int j = 0; j < P; j++) {
    int cj = (int)(range_start(m, j + 1, P) - range_start(m, j, P));
    int off = (int)range_start(m, j, P) + j * H;
    /* Nothing is sent to oneself: the own range is read in place. */
    b->sc[j] = j == r->me ? 0 : cj + H;
    b->sd[j] = off;
    b->rc[j] = j == r->me ? 0 : (int)b->me_n + H;
    b->rd[j] = j * ((int)b->me_n + H);
    b->ac[j] = cj + H;
    b->ad[j] = off;
  }
  b->s32 = *s32;
  b->w16 = *w16;
  b->r16 = *r16;
  *s32 += (size_t)P * b->me_n;
  *w16 += m + (size_t)P * (size_t)H;
  *r16 += (size_t)P * (b->me_n + (size_t)H);
  double unit = H ? 2.0 : 4.0;
  for (int j = 0; j < P; j++) {
    double sent = unit * (b->sc[j] + (j == r->me ? 0 : b->ac[r->me]));
    r->wire_bytes += sent;
    if (r->topo.node_of && r->topo.node_of[j] != r->topo.node_of[r->me]) r->internode_bytes += sent;
  }
}

/* More than one node: the hierarchical path when the layout allows it
 * (r->hier set, r->g its arena); otherwise the reason for the flat path
 * goes into why. Every rank decides the same. @return 0, or an error. */
static int hier_create(reducer *r, float *grads, const reducer_opts *o, char *why, size_t cap) {
  const comm_topo *t = &r->topo;
  if (!t->even)
    snprintf(why, cap, "uneven nodes of %d to %d ranks", t->min_local, t->max_local);
  else if (t->local_size > 1 && !o->shared_memory)
    snprintf(why, cap, "node shared memory off");
  if (why[0]) return 0;
  hier_algorithm a =
      hier_resolve(o->algorithm, t->n_nodes, sizeof(float) * r->n / (size_t)t->local_size);
  int mpi_fp32 = a == HIER_MPI && r->wire != WIRE_F32; /* MPI sums floats only */
  if (mpi_fp32) a = HIER_RING;
  float *arena = NULL;
  int rc = reducer_hier_create(&r->hier, r->w, t, grads, r->n, a, r->wire, &arena, r->w->err,
                               sizeof r->w->err);
  if (rc) return rc;
  if (!r->hier) {
    snprintf(why, cap, "a node could not allocate its shared window");
    return 0;
  }
  r->g = arena;
  r->internode_bytes = r->wire_bytes = reducer_hier_internode_bytes(r->hier);
  char inside[64], note[96] = "";
  if (t->local_size > 1)
    snprintf(inside, sizeof inside, "node shared memory (%d ranks)", t->local_size);
  else
    snprintf(inside, sizeof inside, "one rank per node");
  if (o->algorithm == HIER_AUTO)
    snprintf(note, sizeof note, " (auto)");
  else if (mpi_fp32)
    snprintf(note, sizeof note, " (mpi sums fp32 only)");
  else if (a != o->algorithm)
    snprintf(note, sizeof note, " (%s needs %s)", hier_algorithm_name(o->algorithm),
             o->algorithm == HIER_MPI ? "2 nodes to be bitwise fixed" : "2^k nodes");
  snprintf(r->method, sizeof r->method, "hierarchical: %s + %s across %d nodes%s%s", inside,
           hier_algorithm_name(a), t->n_nodes, note,
           r->wire == WIRE_FP16   ? ", fp16 between nodes"
           : r->wire == WIRE_BF16 ? ", bf16 between nodes"
                                  : "");
  return 0;
}

/* The bucket boundaries (wire_plan_buckets) into *bounds (nb + 1 entries,
 * malloc'd), and r->b with nb buckets. @return 0 or COMM_ENOMEM. */
static int plan(reducer *r, const size_t *starts, int n_starts, size_t first, size_t cap,
                size_t **bounds) {
  int max = 16;
  *bounds = NULL;
  for (;;) {
    size_t *nbounds = realloc(*bounds, sizeof **bounds * (size_t)(max + 1));
    if (!nbounds) return COMM_ENOMEM;
    *bounds = nbounds;
    r->nb = wire_plan_buckets(r->n, starts, n_starts, first, cap, *bounds, max);
    if (r->nb >= 0) break;
    max *= 4;
  }
  r->b = calloc((size_t)(r->nb ? r->nb : 1), sizeof *r->b);
  if (!r->b) return COMM_ENOMEM;
  for (int i = 0; i < r->nb; i++) {
    r->b[i].lo = (*bounds)[i + 1];
    r->b[i].hi = (*bounds)[i];
    r->b[i].req = MPI_REQUEST_NULL;
  }
  return 0;
}

/* The hierarchical path's buckets: with comm.overlap, the comm thread's
 * (reducer_hier_overlap) when it can run and there is more than one
 * bucket; otherwise the whole arena in reducer_finish, and overlap_desc
 * says why. Every rank decides the same. */
static int hier_buckets(reducer *r, const size_t *starts, int n_starts, const reducer_opts *o) {
  size_t *bounds = NULL;
  char why[96] = "";
  size_t first = hier_first_bucket(r->n, o->first_bucket_bytes / sizeof(float));
  int rc = o->overlap ? plan(r, starts, n_starts, first, o->bucket_bytes / sizeof(float), &bounds)
                      : plan(r, NULL, 0, r->n, r->n, &bounds);
  if (rc) goto out;
  if (!o->overlap)
    snprintf(why, sizeof why, "comm.overlap false");
  else if (!hier_can_overlap(r->wire != WIRE_F32, 2)) /* hier.h: who rounds a chunk */
    snprintf(why, sizeof why, "a 16-bit wire between nodes rounds per whole-slice chunk");
  else if (r->w->thread_level < MPI_THREAD_SERIALIZED)
    snprintf(why, sizeof why, "MPI does not provide MPI_THREAD_SERIALIZED");
  else if (r->nb < 2)
    snprintf(why, sizeof why, "the gradients fit one bucket");
  else if (!hier_can_overlap(0, r->topo.n_nodes) && !o->overlap_any_nodes) /* reducer.h */
    snprintf(why, sizeof why, "buckets would cross more than 2 nodes unevenly");
  else
    rc = reducer_hier_overlap(r->hier, r->w, bounds, r->nb, why, sizeof why, r->w->err,
                              sizeof r->w->err);
  if (rc) goto out;
  r->hier_overlap = why[0] == 0;
  if (r->hier_overlap) {
    snprintf(r->overlap_desc, sizeof r->overlap_desc,
             "overlap: the inter-node %s in a comm thread during backward (%d buckets)",
             hier_algorithm_name(reducer_hier_algorithm(r->hier)), r->nb);
  } else {
    snprintf(r->overlap_desc, sizeof r->overlap_desc,
             "overlap off: the whole arena after backward (%s)", why);
    free(r->b);
    r->b = NULL;
    free(bounds);
    rc = plan(r, NULL, 0, r->n, r->n, &bounds);
  }
out:
  free(bounds);
  return rc;
}

/* The flat paths' method and overlap, for the banner. */
static void describe_flat(reducer *r, const reducer_opts *o, const char *why) {
  snprintf(r->method, sizeof r->method, "%s%s%s%s",
           r->P == 1    ? "none (one rank)"
           : r->ordered ? "rank-ordered reduce-scatter + allgather"
                        : "MPI allreduce (2 ranks)",
           why[0] ? " (flat: " : "", why, why[0] ? ")" : "");
  if (!r->overlap_desc[0])
    snprintf(r->overlap_desc, sizeof r->overlap_desc, "%s",
             r->P == 1     ? "overlap off: one rank"
             : !o->overlap ? "overlap off: comm.overlap false"
             : r->nb < 2   ? "overlap off: the gradients fit one bucket"
             : r->last_blocking
                 ? "overlap: non-blocking collectives per bucket during backward, the last "
                   "bucket blocking after it"
                 : "overlap: non-blocking collectives per bucket during backward");
}

int reducer_create(reducer **out, comm_world *w, float *grads, size_t n, const size_t *starts,
                   int n_starts, const reducer_opts *o) {
  *out = NULL;
  reducer_opts o_flat;
  reducer *r = calloc(1, sizeof *r);
  if (!r) goto oom;
  r->w = w;
  r->c1 = r->c2 = MPI_COMM_NULL;
  r->win = MPI_WIN_NULL;
  r->topo.node = r->topo.cross = MPI_COMM_NULL;
  r->g = grads;
  r->n = n;
  r->P = w->size;
  r->me = w->rank;
  r->overlap = o->overlap;
  r->wire = r->P > 1 ? o->wire : WIRE_F32;
  r->ordered = r->P > 2 || r->wire != WIRE_F32;
  r->last_blocking = !r->ordered;
  int rc = MPI_Comm_dup(w->comm, &r->c1);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(w->comm, &r->c2);
  if (rc != MPI_SUCCESS) {
    fail(r, rc, "MPI_Comm_dup");
    reducer_free(r);
    return COMM_EMPI;
  }
  char why[96] = "";
  if (r->P > 1) {
    rc = o->ranks_per_node > 0 ? comm_topo_emulate(w, o->ranks_per_node, &r->topo)
                               : comm_topo_detect(w, &r->topo);
    if (rc == 0 && r->topo.n_nodes == 1) comm_topo_free(&r->topo); /* node_of NULL: one node */
    if (rc == 0 && r->topo.n_nodes > 1) rc = hier_create(r, grads, o, why, sizeof why);
    if (rc) {
      reducer_free(r);
      return rc;
    }
  }
  if (r->hier) { /* by the comm thread or in reducer_finish (reducer.h) */
    r->ordered = r->last_blocking = r->overlap = 0;
    if ((rc = hier_buckets(r, starts, n_starts, o)) != 0) {
      if (rc == COMM_ENOMEM) goto oom;
      reducer_free(r);
      return rc;
    }
    reducer_begin(r);
    *out = r;
    return 0;
  }
  if (o->shared_memory && r->P > 1 && r->wire == WIRE_F32 && !r->topo.node_of) {
    if ((rc = shm_create(r, grads)) != 0) {
      reducer_free(r);
      return rc;
    }
    if (r->win != MPI_WIN_NULL) {
      snprintf(r->method, sizeof r->method, "node shared memory");
      snprintf(r->overlap_desc, sizeof r->overlap_desc,
               "overlap off: the node's shared-memory sum after backward (it needs the cores "
               "backward uses)");
      r->ordered = r->last_blocking = 0;
      r->overlap = 0;
      r->nb = 1;
      r->b = calloc(1, sizeof *r->b);
      if (!r->b) goto oom;
      r->b[0].lo = 0, r->b[0].hi = n;
      reducer_begin(r);
      *out = r;
      return 0;
    }
  }

  /* Across nodes, a non-blocking collective over TCP is much slower than
   * a blocking one and moves data only inside MPI calls
   * (scripts/bench/results/overlap.md): the flat path there goes blocking
   * after backward. */
  if (o->overlap && r->topo.node_of) {
    o_flat = *o;
    o_flat.overlap = 0;
    o = &o_flat;
    r->overlap = 0;
    snprintf(r->overlap_desc, sizeof r->overlap_desc,
             "overlap off: blocking collectives after backward (non-blocking ones across "
             "nodes are slower)");
  }
  /* Overlap off: one collective over the whole arena (cut only at 2^30). */
  size_t *bounds = NULL;
  rc = o->overlap ? plan(r, starts, n_starts, o->first_bucket_bytes / sizeof(float),
                         o->bucket_bytes / sizeof(float), &bounds)
                  : plan(r, NULL, 0, n, n, &bounds);
  free(bounds);
  if (rc) goto oom;
  r->counts = calloc((size_t)(r->nb ? r->nb : 1) * 6 * (size_t)r->P, sizeof *r->counts);
  if (!r->counts) goto oom;
  size_t s32 = 0, w16 = 0, r16 = 0;
  for (int i = 0; i < r->nb; i++) {
    bucket *b = &r->b[i];
    int *c = r->counts + (size_t)i * 6 * (size_t)r->P;
    b->sc = c, b->sd = c + r->P, b->rc = c + 2 * r->P, b->rd = c + 3 * r->P;
    b->ac = c + 4 * r->P, b->ad = c + 5 * r->P;
    if (r->ordered)
      layout_bucket(r, b, &s32, &w16, &r16);
    else if (r->P == 2)
      r->wire_bytes += 4.0 * (double)(b->hi - b->lo); /* half out in each of two phases */
  }
  if (!r->ordered && r->P == 2 && r->topo.node_of && r->topo.node_of[0] != r->topo.node_of[1])
    r->internode_bytes = r->wire_bytes;
  describe_flat(r, o, why);
  if (r->ordered && r->wire == WIRE_F32) {
    r->scratch = malloc(sizeof(float) * (s32 ? s32 : 1));
    if (!r->scratch) goto oom;
  }
  if (r->ordered && r->wire != WIRE_F32) {
    r->buf16 = malloc(sizeof(uint16_t) * (w16 ? w16 : 1));
    r->recv16 = malloc(sizeof(uint16_t) * (r16 ? r16 : 1));
    r->res_send = calloc(n ? n : 1, sizeof(float));
    r->res_own = calloc(n ? n : 1, sizeof(float));
    if (!r->buf16 || !r->recv16 || !r->res_send || !r->res_own) goto oom;
  }
  reducer_begin(r);
  *out = r;
  return 0;
oom:
  snprintf(w->err, sizeof w->err, "reducer: out of memory for the buckets of %zu floats", n);
  reducer_free(r);
  return COMM_ENOMEM;
}

void reducer_free(reducer *r) {
  if (!r) return;
  if (r->win != MPI_WIN_NULL) {
    MPI_Win_unlock_all(r->win);
    MPI_Win_free(&r->win);
  }
  free(r->seg);
  reducer_hier_free(r->hier);
  comm_topo_free(&r->topo);
  if (r->c1 != MPI_COMM_NULL) MPI_Comm_free(&r->c1);
  if (r->c2 != MPI_COMM_NULL) MPI_Comm_free(&r->c2);
  free(r->b);
  free(r->counts);
  free(r->scratch);
  free(r->buf16);
  free(r->recv16);
  free(r->res_send);
  free(r->res_own);
  free(r);
}

void reducer_begin(reducer *r) {
  if (r->hier_overlap) reducer_hier_begin(r->hier);
  for (int i = 0; i < r->nb; i++) r->b[i].state = B_IDLE;
  r->ready_lo = r->n;
  r->next_start = r->next_phase2 = 0;
  r->failed = 0;
}

/* ---- the two phases ---------------------------------------------------------- */

static int phase1(reducer *r, bucket *b, int blocking) {
  int rc;
  b->state = B_PHASE1;
  if (r->timed) b->t_start = comm_wtime(), b->t_done = 0;
  if (!r->ordered) {
    float *p = r->g + b->lo;
    int m = (int)(b->hi - b->lo);
    rc = blocking ? MPI_Allreduce(MPI_IN_PLACE, p, m, MPI_FLOAT, MPI_SUM, r->c1)
                  : MPI_Iallreduce(MPI_IN_PLACE, p, m, MPI_FLOAT, MPI_SUM, r->c1, &b->req);
    return rc == MPI_SUCCESS ? 0 : fail(r, rc, blocking ? "MPI_Allreduce" : "MPI_Iallreduce");
  }
  void *send, *recv;
  MPI_Datatype t;
  if (r->wire == WIRE_F32) {
    send = r->g + b->lo, recv = r->scratch + b->s32, t = MPI_FLOAT;
  } else {
    /* Every range in 16 bits, the own one too: its rounding is part of the
     * sum like everyone else's. */
    size_t m = b->hi - b->lo;
    for (int j = 0; j < r->P; j++) {
      size_t off = range_start(m, j, r->P), len = range_start(m, j + 1, r->P) - off;
      wire_encode(r->wire, r->g + b->lo + off, r->res_send + b->lo + off, len,
                  r->buf16 + b->w16 + b->ad[j]);
    }
    send = r->buf16 + b->w16, recv = r->recv16 + b->r16, t = MPI_UINT16_T;
  }
  rc = blocking ? MPI_Alltoallv(send, b->sc, b->sd, t, recv, b->rc, b->rd, t, r->c1)
                : MPI_Ialltoallv(send, b->sc, b->sd, t, recv, b->rc, b->rd, t, r->c1, &b->req);
  return rc == MPI_SUCCESS ? 0 : fail(r, rc, blocking ? "MPI_Alltoallv" : "MPI_Ialltoallv");
}

/* Phase 1 is complete: the owner sums its range in rank order. */
static void reduce_own(reducer *r, bucket *b) {
  if (!r->ordered) {
    b->state = B_DONE;
    if (r->timed) b->t_done = comm_wtime();
    return;
  }
  float *out = r->g + b->me_lo;
  size_t k = b->me_n;
  if (r->wire == WIRE_F32) {
    float *own = r->scratch + b->s32 + (size_t)r->me * k;
    memcpy(own, out, k * sizeof *out);
    const float *p0 = r->scratch + b->s32;
    memcpy(out, p0, k * sizeof *out);
    for (int j = 1; j < r->P; j++) {
      const float *pj = r->scratch + b->s32 + (size_t)j * k;
      for (size_t i = 0; i < k; i++) out[i] += pj[i];
    }
  } else {
    for (int j = 0; j < r->P; j++) {
      const uint16_t *pj =
          j == r->me ? r->buf16 + b->w16 + b->ad[j] : r->recv16 + b->r16 + (size_t)b->rd[j];
      if (j == 0)
        wire_decode(r->wire, pj, k, out);
      else
        wire_decode_add(r->wire, pj, k, out);
    }
    /* The sum goes back in 16 bits; its rounding is this rank's to feed back. */
    wire_encode(r->wire, out, r->res_own + b->me_lo, k, r->buf16 + b->w16 + b->ad[r->me]);
  }
  b->state = B_REDUCED;
}

static int phase2(reducer *r, bucket *b, int blocking) {
  int rc;
  b->state = B_PHASE2;
  if (r->wire == WIRE_F32) {
    float *p = r->g + b->lo;
    rc = blocking ? MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, p, b->ac, b->ad, MPI_FLOAT, r->c2)
                  : MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, p, b->ac, b->ad, MPI_FLOAT, r->c2,
                                    &b->req);
  } else {
    uint16_t *p = r->buf16 + b->w16;
    rc = blocking
             ? MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_UINT16_T, p, b->ac, b->ad, MPI_UINT16_T, r->c2)
             : MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_UINT16_T, p, b->ac, b->ad, MPI_UINT16_T, r->c2,
                               &b->req);
  }
  return rc == MPI_SUCCESS ? 0 : fail(r, rc, blocking ? "MPI_Allgatherv" : "MPI_Iallgatherv");
}

/* Phase 2 is complete: every rank decodes every range. */
static void gathered(reducer *r, bucket *b) {
  if (r->wire != WIRE_F32) {
    size_t m = b->hi - b->lo;
    for (int j = 0; j < r->P; j++) {
      size_t off = range_start(m, j, r->P), len = range_start(m, j + 1, r->P) - off;
      wire_decode(r->wire, r->buf16 + b->w16 + b->ad[j], len, r->g + b->lo + off);
    }
  }
  b->state = B_DONE;
  if (r->timed) b->t_done = comm_wtime();
}

/* Phase 2 starts in bucket order on every rank, whatever order phase 1
 * completed in: collectives on one communicator must be issued in the same
 * order everywhere. */
static int start_phase2_in_order(reducer *r) {
  while (r->next_phase2 < r->next_start && r->b[r->next_phase2].state == B_REDUCED)
    if (phase2(r, &r->b[r->next_phase2++], 0)) return COMM_EMPI;
  return 0;
}

static int test_one(reducer *r, bucket *b, int wait) {
  int done = 1, rc;
  if (b->state != B_PHASE1 && b->state != B_PHASE2) return 0;
  rc = wait ? MPI_Wait(&b->req, MPI_STATUS_IGNORE) : MPI_Test(&b->req, &done, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS) return fail(r, rc, wait ? "MPI_Wait" : "MPI_Test");
  if (!done) return 0;
  if (b->state == B_PHASE1)
    reduce_own(r, b);
  else
    gathered(r, b);
  return 0;
}

void reducer_progress(reducer *r) {
  if (!r || r->P == 1 || r->failed || !r->overlap) return;
  for (int i = 0; i < r->next_start; i++)
    if (test_one(r, &r->b[i], 0)) return;
  start_phase2_in_order(r);
}

void reducer_ready(void *ctx, size_t off, size_t len) {
  reducer *r = ctx;
  (void)len;
  if (off < r->ready_lo) r->ready_lo = off;
  if (r->hier_overlap) {
    reducer_hier_ready(r->hier, r->ready_lo);
    return;
  }
  if (r->P == 1 || r->failed || !r->overlap) return;
  while (r->next_start < r->nb - r->last_blocking && r->b[r->next_start].lo >= r->ready_lo)
    if (phase1(r, &r->b[r->next_start++], 0)) return;
  reducer_progress(r);
}

int reducer_finish(reducer *r) {
  if (r->P == 1) return 0;
  if (r->failed) return COMM_EMPI;
  if (r->win != MPI_WIN_NULL) return shm_reduce(r, 1);
  if (r->hier_shard) { /* the other segments never got the sums (reducer_set_sharded) */
    snprintf(r->w->err, sizeof r->w->err, "reducer: sharded: reducer_finish_shard ends a reduction");
    return COMM_EMPI;
  }
  if (r->hier) return reducer_hier_reduce(r->hier, r->w->err, sizeof r->w->err);
  if (!r->overlap) {
    /* One blocking collective (two on the rank-ordered path) per bucket. */
    for (int i = 0; i < r->nb; i++) {
      bucket *b = &r->b[i];
      if (phase1(r, b, 1)) return COMM_EMPI;
      reduce_own(r, b);
      if (b->state == B_REDUCED) {
        if (phase2(r, b, 1)) return COMM_EMPI;
        gathered(r, b);
      }
    }
    return 0;
  }
  r->ready_lo = 0;
  while (r->next_start < r->nb - r->last_blocking)
    if (phase1(r, &r->b[r->next_start++], 0)) return COMM_EMPI;
  if (r->last_blocking) {
    bucket *b = &r->b[r->next_start++];
    if (phase1(r, b, 1)) return COMM_EMPI;
    reduce_own(r, b);
  }
  for (int i = 0; i < r->nb; i++) {
    if (r->b[i].state == B_PHASE1 && test_one(r, &r->b[i], 1)) return COMM_EMPI;
    if (start_phase2_in_order(r)) return COMM_EMPI;
  }
  for (int i = 0; i < r->nb; i++)
    if (test_one(r, &r->b[i], 1)) return COMM_EMPI;
  return 0;
}

int reducer_set_sharded(reducer *r) {
  if (r->win != MPI_WIN_NULL) return 0; /* reducer_finish_shard chooses per call */
  size_t lo = 0, hi = 0;
  if (r->hier && reducer_hier_slice(r->hier, 0, &lo, &hi, NULL) > 1) {
    reducer_hier_set_shard(r->hier);
    r->hier_shard = 1;
    return 0;
  }
  snprintf(r->w->err, sizeof r->w->err,
           "reducer: a sharded update needs node shared memory with more than one rank a node");
  return COMM_EMPI;
}

int reducer_shard_self(const reducer *r) {
  return r->hier ? reducer_hier_local_rank(r->hier) : r->me;
}

int reducer_finish_shard(reducer *r) {
  if (r->hier_shard)
    return r->failed ? COMM_EMPI : reducer_hier_reduce(r->hier, r->w->err, sizeof r->w->err);
  if (r->win == MPI_WIN_NULL) {
    snprintf(r->w->err, sizeof r->w->err, "reducer: a sharded update needs the node-shared path");
    return COMM_EMPI;
  }
  return r->failed ? COMM_EMPI : shm_reduce(r, 0);
}

int reducer_shard_publish(reducer *r) {
  if (r->win == MPI_WIN_NULL) {
    snprintf(r->w->err, sizeof r->w->err, "reducer: a sharded update needs the node-shared path");
    return COMM_EMPI;
  }
  if (r->failed) return COMM_EMPI;
  MPI_Win_sync(r->win);
  return 0;
}

const float *const *reducer_shard_segments(const reducer *r) {
  return (const float *const *)r->seg;
}

int reducer_shard(const reducer *r, int k, size_t *lo, size_t *hi, const float **seg) {
  if (r->hier) return reducer_hier_slice(r->hier, k, lo, hi, seg);
  if (r->win == MPI_WIN_NULL) return 0;
  if (k >= 0 && k < r->P) {
    *lo = line_start(r->n, k, r->P), *hi = line_start(r->n, k + 1, r->P);
    if (seg) *seg = r->seg[k];
  }
  return r->P;
}

void reducer_fence(reducer *r) {
  if (r->hier_shard) reducer_hier_fence(r->hier);
  if (r->win != MPI_WIN_NULL) MPI_Win_sync(r->win);
}

int reducer_buckets(const reducer *r, int b, size_t *lo, size_t *hi) {
  if (b >= 0 && b < r->nb) *lo = r->b[b].lo, *hi = r->b[b].hi;
  return r->nb;
}

float *reducer_arena(const reducer *r) { return r->g; }

void reducer_set_timing(reducer *r, int on) {
  r->timed = on;
  for (int i = 0; r->b && i < r->nb; i++) r->b[i].t_start = r->b[i].t_done = 0;
}

int reducer_bucket_times(const reducer *r, int b, double *start, double *done) {
  *start = *done = 0;
  if (r->b && b >= 0 && b < r->nb) *start = r->b[b].t_start, *done = r->b[b].t_done;
  return r->nb;
}

int reducer_shared(const reducer *r) { return r->win != MPI_WIN_NULL; }

double reducer_wire_bytes(const reducer *r) { return r->P > 1 ? r->wire_bytes : 0.0; }

double reducer_internode_bytes(const reducer *r) { return r->P > 1 ? r->internode_bytes : 0.0; }

int reducer_hierarchical(const reducer *r) { return r->hier != NULL; }

const char *reducer_method(const reducer *r) { return r->method; }

const char *reducer_overlap_desc(const reducer *r) { return r->overlap_desc; }
