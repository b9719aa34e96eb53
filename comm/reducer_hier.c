/* The reducer's hierarchical path (reducer_hier.h; the contract is in
 * reducer.h, the schedules in hier.h). */
#include "reducer_hier.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm_internal.h"

struct reducer_hier {
  MPI_Comm node, cross; /* not owned */
  int L, me;            /* ranks on this node, this rank among them */
  int N, k;             /* nodes, this node */
  size_t n;             /* floats per segment */
  size_t lo, hi;        /* this rank's slice of the arena */
  hier_algorithm algo;
  wire_format wire; /* of the cross-node messages */
  MPI_Win win;      /* MPI_WIN_NULL with one rank per node */
  float **seg;      /* (L) every local rank's segment; seg[me] is the arena */
  float *scratch;   /* the largest piece received in a reduce-scatter step */
  /* 16-bit wire: chunk c of the slice as words at chunk(c) + c WIRE_HEADER,
   * sent (and gathered) in w16, received in r16; res is the error feedback
   * of the one rounding of each element of the slice this rank makes. */
  uint16_t *w16, *r16;
  float *res;
  MPI_Request *req; /* a pipelined step's messages */
  double bytes;
  /* The window of the slice being reduced, [wlo, whi) in slice floats:
   * the whole slice, or its part in one bucket. Chunks are clamped to it,
   * so a bucket reduces exactly its elements of the whole-slice chunks. */
  size_t wlo, whi;
  /* Overlapped schedule (reducer_hier_overlap): the buckets, the comm
   * thread and, with L > 1, the node's counters: ctr[b] counts the local
   * ranks whose bucket b is final, ctr[nb] those whose comm thread has
   * written back every bucket; both grow by L per step. */
  int nb;
  size_t *bounds;
  int thread_on;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int posted, done, quit; /* under mu: buckets final here, buckets reduced */
  int thread_rc;
  char thread_err[256];
  atomic_int finishing; /* 1 while the caller waits in reducer_hier_reduce */
  size_t ready_lo;
  uint64_t step; /* reductions finished */
  MPI_Win cwin;
  _Atomic uint64_t *ctr;
  /* reducer_hier_set_shard: the sum of the slice stays in this rank's own
   * segment (no write-back to the other segments, no closing barrier). */
  int shard;
  /* The comm thread's real-time priority (comm_thread_boost): its policy
   * (SCHED_OTHER: nothing to do), the job's level, and whether it runs
   * one above. Only the comm thread touches them. */
  int rt_policy, rt_base, rt_up;
  long nap_ns; /* wait_napping's nap (comm thread only) */
};

/* Largest count of one message (counts are int), and most pieces a
 * message may be cut into. */
#define PIECE ((size_t)1 << 30)
#define MAX_PIECES 16

/* A chunk goes as up to COMM_PIPE_MAX messages of at least
 * COMM_PIPE_BYTES (comm_internal.h; and at most PIECE elements), so the
 * first are on the wire while the next are encoded (16-bit wire), and the
 * received ones are decoded and added while the last are still coming. */

/* The comm thread's nap between tests of its messages, ns (see
 * wait_napping): where it starts, and the range it adapts in. */
#ifndef NAP_NS
#define NAP_NS 100000
#endif
#define NAP_MIN_NS 10000
#define NAP_MAX_NS 100000

static int mpi_fail(int rc, const char *what, char *err, size_t cap) {
  return comm_mpi_fail(rc, "reducer (hierarchical)", what, err, cap);
}

/* Chunk c of the window. Across more than 2 nodes the whole slice's chunk
 * clamped to the window, which keeps each element's order (hier.h). With 2
 * nodes an element's sum is one addition, which commutes: the window's own
 * halves give the same bits and keep both directions of the link equally
 * busy for every bucket (equal to the slice's chunks for the whole slice). */
static size_t chunk(const reducer_hier *h, int c) {
  if (h->N == 2) return h->wlo + hier_chunk_start(h->whi - h->wlo, c, 2);
  size_t at = hier_chunk_start(h->hi - h->lo, c, h->N);
  return at < h->wlo ? h->wlo : at > h->whi ? h->whi : at;
}

int reducer_hier_create(reducer_hier **out, comm_world *w, const comm_topo *t, float *grads,
                        size_t n, hier_algorithm algo, wire_format wire, float **arena, char *err,
                        size_t cap) {
  *out = NULL;
  reducer_hier *h = calloc(1, sizeof *h);
  int ok = h != NULL, all = 0, rc = MPI_SUCCESS;
  float *base = grads;
  if (h) {
    h->node = t->node, h->cross = t->cross;
    h->L = t->local_size, h->me = t->local_rank;
    h->N = t->n_nodes, h->k = t->node_index;
    h->n = n;
    h->lo = hier_slice_start(n, h->me, h->L);
    h->hi = hier_slice_start(n, h->me + 1, h->L);
    h->algo = algo;
    h->win = h->cwin = MPI_WIN_NULL;
    size_t m = h->hi - h->lo;
    h->wlo = 0, h->whi = m;
    h->seg = calloc((size_t)h->L, sizeof *h->seg);
    h->scratch = malloc(sizeof(float) * (m / 2 + m / (size_t)h->N + 2));
    ok = h->seg && h->scratch && (n + PIECE - 1) / PIECE <= MAX_PIECES;
    h->wire = wire;
    h->req = malloc(sizeof(MPI_Request) * 2 * (size_t)h->N * COMM_PIPE_MAX);
    ok = ok && h->req;
    if (wire != WIRE_F32) {
      size_t words = m + (size_t)h->N * WIRE_HEADER;
      h->w16 = malloc(sizeof(uint16_t) * words);
      h->r16 = malloc(sizeof(uint16_t) * words);
      h->res = calloc(m ? m : 1, sizeof(float));
      ok = ok && h->w16 && h->r16 && h->res;
    }
  }
  if (h && h->L > 1) { /* every rank of the node takes part, whatever failed */
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each segment on its own pages */
    rc = MPI_Win_allocate_shared((MPI_Aint)(sizeof(float) * (n ? n : 1)), sizeof(float), info,
                                 h->node, &base, &h->win);
    MPI_Info_free(&info);
    ok = ok && rc == MPI_SUCCESS;
    for (int j = 0; ok && j < h->L; j++) {
      MPI_Aint size;
      int disp;
      ok = MPI_Win_shared_query(h->win, j, &size, &disp, &h->seg[j]) == MPI_SUCCESS;
    }
  } else if (h && h->seg) {
    h->seg[0] = grads;
  }
  rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, w->comm);
  if (rc != MPI_SUCCESS || !all) {
    reducer_hier_free(h);
    return rc != MPI_SUCCESS ? mpi_fail(rc, "MPI_Allreduce", err, cap) : 0;
  }
  if (h->win != MPI_WIN_NULL) {
    /* One passive-target epoch for the window's life, as on the one-node
     * path: MPI_Win_sync orders the loads and stores around each barrier. */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, h->win);
    memcpy(base, grads, sizeof(float) * n);
  }
  double floats = (double)hier_sent_floats(algo, h->hi - h->lo, h->k, h->N);
  /* 16 bits: each of the 2 (N - 1) chunks sent carries its header. */
  h->bytes = wire == WIRE_F32 ? sizeof(float) * floats
                              : sizeof(uint16_t) * (floats + 2.0 * (h->N - 1) * WIRE_HEADER);
  *arena = base;
  *out = h;
  return 0;
}

static void *comm_thread(void *arg);

static void stop_thread(reducer_hier *h) {
  if (!h->thread_on) return;
  pthread_mutex_lock(&h->mu);
  h->quit = 1;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->thread, NULL);
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
  h->thread_on = 0;
}

/* Frees what reducer_hier_overlap made (collective over the node). */
static void overlap_free(reducer_hier *h) {
  stop_thread(h);
  if (h->cwin != MPI_WIN_NULL) MPI_Win_free(&h->cwin);
  h->ctr = NULL;
  free(h->bounds);
  h->bounds = NULL;
  h->nb = 0;
}

int reducer_hier_overlap(reducer_hier *h, comm_world *w, const size_t *bounds, int nb, char *why,
                         size_t why_cap, char *err, size_t cap) {
  int ok = 1, all = 0, rc = MPI_SUCCESS;
  h->bounds = malloc(sizeof *h->bounds * (size_t)(nb + 1));
  ok = h->bounds != NULL;
  if (ok) memcpy(h->bounds, bounds, sizeof *h->bounds * (size_t)(nb + 1));
  h->nb = nb;
  if (h->L > 1) { /* every local rank takes part, whatever failed */
    void *base = NULL;
    MPI_Aint bytes = h->me == 0 ? (MPI_Aint)(sizeof(uint64_t) * (size_t)(nb + 1)) : 0;
    rc = MPI_Win_allocate_shared(bytes, sizeof(uint64_t), MPI_INFO_NULL, h->node, &base, &h->cwin);
    MPI_Aint size;
    int disp;
    void *c0 = NULL;
    if (rc == MPI_SUCCESS) rc = MPI_Win_shared_query(h->cwin, 0, &size, &disp, &c0);
    ok = ok && rc == MPI_SUCCESS;
    h->ctr = ok ? c0 : NULL;
    if (ok && h->me == 0)
      for (int b = 0; b <= nb; b++) atomic_init(&h->ctr[b], 0);
  }
  h->nap_ns = NAP_NS;
  if (ok) {
    ok = pthread_mutex_init(&h->mu, NULL) == 0;
    if (ok && pthread_cond_init(&h->cv, NULL) != 0) {
      pthread_mutex_destroy(&h->mu);
      ok = 0;
    }
    if (ok && pthread_create(&h->thread, NULL, comm_thread, h) != 0) {
      pthread_cond_destroy(&h->cv);
      pthread_mutex_destroy(&h->mu);
      ok = 0;
    }
    h->thread_on = ok;
  }
  h->ready_lo = h->n;
  rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, w->comm);
  /* The counters are zero before any rank counts (the allreduce orders it). */
  if (rc == MPI_SUCCESS && all) return 0;
  overlap_free(h);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce", err, cap);
  snprintf(why, why_cap, "a rank could not start its comm thread");
  return 0;
}

void reducer_hier_free(reducer_hier *h) {
  if (!h) return;
  overlap_free(h);
  if (h->win != MPI_WIN_NULL) {
    MPI_Win_unlock_all(h->win);
    MPI_Win_free(&h->win);
  }
  free(h->seg);
  free(h->scratch);
  free(h->w16);
  free(h->r16);
  free(h->res);
  free(h->req);
  free(h);
}

hier_algorithm reducer_hier_algorithm(const reducer_hier *h) { return h->algo; }

double reducer_hier_internode_bytes(const reducer_hier *h) { return h->bytes; }

/* On the comm thread: while backward computes, MPI_Waitall would poll
 * (Open MPI's TCP progress spins) on the cores backward needs; testing with
 * short naps in between keeps the socket buffers fed at a fraction of the
 * CPU. Once the caller waits in reducer_finish there is nothing left to
 * protect, and a nap only delays the wire: wait in MPI
 * (scripts/bench/results/overlap.md). */
static void comm_thread_boost(reducer_hier *h, int up);

static int wait_napping(reducer_hier *h, int q, MPI_Request *req) {
  for (int spin = 0;; spin++) {
    if (atomic_load_explicit(&h->finishing, memory_order_relaxed)) {
      comm_thread_boost(h, 0); /* it polls in MPI now: never above the ranks */
      return MPI_Waitall(q, req, MPI_STATUSES_IGNORE);
    }
    int done = 0, rc = MPI_Testall(q, req, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS || done) {
      /* The nap follows the link: one nap per message is right (the
       * bytes moved meanwhile, in the kernel); a message that needed
       * three or more naps means short naps that only cost wake-ups
       * (a slow link: 32 KiB take 0.26 ms at 1 Gbit/s), one that needed
       * a single nap may have waited for the nap's end (a fast link:
       * 26 us at 10 Gbit/s, where 0.1 ms naps left it idle). */
      int naps = spin - 3;
      if (naps >= 3 && h->nap_ns < NAP_MAX_NS) h->nap_ns += h->nap_ns / 4;
      if (naps == 1 && h->nap_ns > NAP_MIN_NS) h->nap_ns -= h->nap_ns / 4;
      return rc;
    }
    struct timespec nap = {0, spin < 4 ? 0 : h->nap_ns};
    if (spin < 4)
      sched_yield();
    else
      nanosleep(&nap, NULL);
  }
}

/* 16-bit wire: where chunk c's words start (each chunk has its header). */
static size_t word_at(const reducer_hier *h, int c) {
  return chunk(h, c) + (size_t)c * WIRE_HEADER;
}

/* Where chunk c starts in what goes on the wire: floats of the slice, or
 * 16-bit words with a header in front of each chunk. */
static size_t unit_at(const reducer_hier *h, int c) {
  return h->wire == WIRE_F32 ? chunk(h, c) : word_at(h, c);
}

/* Chunk c as pieces on the wire: how many, and where piece i starts (i ==
 * pieces: the chunk's end). Sender and receiver cut alike, from the
 * layout only. */
static int pieces(const reducer_hier *h, int c) {
  size_t w = unit_at(h, c + 1) - unit_at(h, c);
  size_t p = w / (COMM_PIPE_BYTES / (h->wire == WIRE_F32 ? sizeof(float) : sizeof(uint16_t)));
  size_t least = (w + PIECE - 1) / PIECE;
  p = p > COMM_PIPE_MAX ? COMM_PIPE_MAX : p;
  return (int)(p > least ? p : least ? least : 1);
}
static size_t piece_at(const reducer_hier *h, int c, int i, int np) {
  size_t w0 = unit_at(h, c), w = unit_at(h, c + 1) - w0;
  return w0 + (size_t)((uint64_t)w * (uint64_t)i / (uint64_t)np);
}

/* Chunk c's elements in units [p0, p1) of a piece: the first one's index
 * in the chunk, and how many (a 16-bit header is not an element). */
static size_t piece_elems(const reducer_hier *h, int c, size_t p0, size_t p1, size_t *first) {
  size_t e0 = unit_at(h, c) + (h->wire == WIRE_F32 ? 0 : WIRE_HEADER);
  size_t a = p0 > e0 ? p0 : e0;
  *first = a - e0;
  return p1 > a ? p1 - a : 0;
}

/* Waits for one message (napping on the comm thread, as wait_napping). */
static int wait_one(reducer_hier *h, MPI_Request *r) {
  return h->thread_on ? wait_napping(h, 1, r) : MPI_Wait(r, MPI_STATUS_IGNORE);
}

/* Adds a received partial sum p into a: p + a (p_left) or a + p. */
static void add_piece(float *restrict a, const float *restrict p, size_t n, int p_left) {
  if (p_left)
    for (size_t i = 0; i < n; i++) a[i] = p[i] + a[i];
  else
    for (size_t i = 0; i < n; i++) a[i] = a[i] + p[i];
}

/* One step of a cross-node algorithm, pipelined: chunks [sa, sb) of the
 * slice x go to `to` and chunks [ra, rb) come from `from`, each chunk as
 * pieces, every receive posted first. On a 16-bit wire the chunks sent are
 * the words of w16, encoded here from x piece by piece (the loss into res)
 * when `encode` is set, and the pieces received land in rbuf. Each piece
 * received (decoded, on a 16-bit wire) goes to y at its chunk's offset
 * less y_base, and, when acc is set, is added into acc (the slice) in the
 * order p_left says as soon as it has arrived. Same words, same additions
 * as whole chunks: only when they happen changes. */
typedef struct {
  int sa, sb, to, ra, rb, from;
  int encode;     /* 16-bit: encode chunks [sa, sb) from x first */
  uint16_t *rbuf; /* 16-bit: where the words received land */
  float *y;       /* the values received, at chunk offset - y_base */
  size_t y_base;
  float *acc; /* reduce-scatter: the slice the partial sums add into */
  int p_left; /* acc = received + acc (1) or acc + received (0) */
} step;

static int xchg_pipe(reducer_hier *h, const float *x, const step *st, char *err, size_t cap) {
  const int f32 = h->wire == WIRE_F32;
  const MPI_Datatype t = f32 ? MPI_FLOAT : MPI_UINT16_T;
  MPI_Request *req = h->req;
  int q = 0, rc = MPI_SUCCESS;
  for (int c = st->ra; c < st->rb && rc == MPI_SUCCESS; c++)
    for (int i = 0, np = pieces(h, c); i < np && rc == MPI_SUCCESS; i++) {
      size_t p0 = piece_at(h, c, i, np), p1 = piece_at(h, c, i + 1, np);
      void *into = f32 ? (void *)(st->y + (p0 - st->y_base)) : (void *)(st->rbuf + p0);
      rc = MPI_Irecv(into, (int)(p1 - p0), t, st->from, 0, h->cross, &req[q++]);
    }
  int nr = q;
  for (int c = st->sa; c < st->sb && rc == MPI_SUCCESS; c++) {
    size_t at = chunk(h, c), len = chunk(h, c + 1) - at;
    int e = 0;
    if (!f32 && st->encode) {
      e = wire_block_exponent(h->wire, x + at, h->res + at, len);
      wire_put_exponent(h->w16 + word_at(h, c), e);
    }
    for (int i = 0, np = pieces(h, c); i < np && rc == MPI_SUCCESS; i++) {
      size_t p0 = piece_at(h, c, i, np), p1 = piece_at(h, c, i + 1, np), f;
      size_t ne = piece_elems(h, c, p0, p1, &f);
      if (!f32 && st->encode)
        wire_encode_words(h->wire, e, x + at + f, h->res + at + f, ne,
                          h->w16 + word_at(h, c) + WIRE_HEADER + f);
      const void *src = f32 ? (const void *)(x + p0) : (const void *)(h->w16 + p0);
      rc = MPI_Isend(src, (int)(p1 - p0), t, st->to, 0, h->cross, &req[q++]);
    }
  }
  for (int c = st->ra, j = 0; c < st->rb && rc == MPI_SUCCESS; c++) {
    int e = 0;
    float *yc = st->y + (chunk(h, c) - st->y_base);
    for (int i = 0, np = pieces(h, c); i < np && rc == MPI_SUCCESS; i++, j++) {
      size_t p0 = piece_at(h, c, i, np), p1 = piece_at(h, c, i + 1, np), f;
      if ((rc = wait_one(h, &req[j])) != MPI_SUCCESS) break;
      size_t ne = piece_elems(h, c, p0, p1, &f);
      if (!f32) {
        if (i == 0) e = wire_get_exponent(st->rbuf + word_at(h, c));
        wire_decode_words(h->wire, e, st->rbuf + word_at(h, c) + WIRE_HEADER + f, ne, yc + f, 0);
      }
      if (st->acc) add_piece(st->acc + chunk(h, c) + f, yc + f, ne, st->p_left);
    }
  }
  if (rc == MPI_SUCCESS && q > nr)
    rc = h->thread_on ? wait_napping(h, q - nr, req + nr)
                      : MPI_Waitall(q - nr, req + nr, MPI_STATUSES_IGNORE);
  return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "a cross-node exchange", err, cap);
}

/* A reduce-scatter step: sends chunks [sa, sb) of x to `to`, receives the
 * partial sum of chunks [ra, rb) from `from` (into scratch) and adds it
 * into x, received + x (p_left) or x + received. On a 16-bit wire each
 * chunk sent is rounded once, its loss kept in res. */
static int rs_step(reducer_hier *h, float *x, int sa, int sb, int to, int ra, int rb, int from,
                   int p_left, char *err, size_t cap) {
  step st = {sa, sb, to, ra, rb, from, 1, h->r16, h->scratch, chunk(h, ra), x, p_left};
  return xchg_pipe(h, x, &st, err, cap);
}

/* An allgather step: sends the finished chunks [sa, sb) to `to`, receives
 * [ra, rb) from `from` into x. On a 16-bit wire the words go on as they
 * came (no second rounding), and every rank decodes the same words. */
static int ag_step(reducer_hier *h, float *x, int sa, int sb, int to, int ra, int rb, int from,
                   char *err, size_t cap) {
  step st = {sa, sb, to, ra, rb, from, 0, h->w16, x, 0, NULL, 0};
  return xchg_pipe(h, x, &st, err, cap);
}

/* After the reduce-scatter: on a 16-bit wire the owner rounds its chunk
 * once (the loss into res) and keeps the decoded value, as everyone else
 * will. */
static void own_chunk_to_wire(reducer_hier *h, float *x) {
  if (h->wire == WIRE_F32) return;
  int c = h->k;
  size_t len = chunk(h, c + 1) - chunk(h, c);
  wire_encode(h->wire, x + chunk(h, c), h->res + chunk(h, c), len, h->w16 + word_at(h, c));
  wire_decode(h->wire, h->w16 + word_at(h, c), len, x + chunk(h, c));
}

/* Ring (hier.h): chunk c summed from node c + 1 round to node c, then
 * passed on round the ring. x is this rank's slice. */
static int ring(reducer_hier *h, float *x, char *err, size_t cap) {
  const int N = h->N, k = h->k, right = (k + 1) % N, left = (k + N - 1) % N;
  for (int s = 0; s < N - 1; s++) {
    int sc = hier_ring_send(k, s, N), rc = hier_ring_send(k - 1, s, N);
    /* The partial from the left holds the nodes before this one. */
    if (rs_step(h, x, sc, sc + 1, right, rc, rc + 1, left, 1, err, cap)) return COMM_EMPI;
  }
  own_chunk_to_wire(h, x);
  for (int s = 0; s < N - 1; s++) {
    int sc = hier_ring_gather(k, s, N), rc = hier_ring_gather(k - 1, s, N);
    if (ag_step(h, x, sc, sc + 1, right, rc, rc + 1, left, err, cap)) return COMM_EMPI;
  }
  return 0;
}

/* Recursive halving, then doubling (hier.h); N is a power of two. */
static int halving_doubling(reducer_hier *h, float *x, char *err, size_t cap) {
  const int N = h->N, k = h->k;
  int lo = 0, hi = N;
  for (int d = N / 2; d >= 1; d /= 2) {
    int p = k ^ d, mid = (lo + hi) / 2, up = (k & d) != 0;
    int keep_lo = up ? mid : lo, keep_hi = up ? hi : mid;
    int give_lo = up ? lo : mid, give_hi = up ? mid : hi;
    /* The lower node's partial on the left. */
    if (rs_step(h, x, give_lo, give_hi, p, keep_lo, keep_hi, p, k > p, err, cap)) return COMM_EMPI;
    lo = keep_lo, hi = keep_hi;
  }
  own_chunk_to_wire(h, x);
  for (int d = 1; d < N; d *= 2) {
    int p = k ^ d, wd = hi - lo, plo = (p / wd) * wd;
    if (ag_step(h, x, lo, hi, p, plo, plo + wd, p, err, cap)) return COMM_EMPI;
    lo = lo < plo ? lo : plo;
    hi = lo + 2 * wd;
  }
  return 0;
}

/* Two nodes: one addition per element, which commutes, so MPI's order is
 * as fixed as ours. */
static int mpi_allreduce(reducer_hier *h, float *x, char *err, size_t cap) {
  for (size_t off = h->wlo; off < h->whi; off += PIECE) {
    int rc =
        MPI_Allreduce(MPI_IN_PLACE, x + off, (int)(h->whi - off < PIECE ? h->whi - off : PIECE),
                      MPI_FLOAT, MPI_SUM, h->cross);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce (cross-node)", err, cap);
  }
  return 0;
}

static int node_barrier(reducer_hier *h, char *err, size_t cap) {
  if (h->win == MPI_WIN_NULL) return 0;
  MPI_Win_sync(h->win);
  int rc = MPI_Barrier(h->node);
  MPI_Win_sync(h->win);
  return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Barrier (node)", err, cap);
}

/* The window [wlo, whi) of this rank's slice, every local segment final
 * there -> every segment holds the sum over all ranks there. */
static int reduce_window(reducer_hier *h, char *err, size_t cap) {
  float *x = h->seg[h->me] + h->lo;
  /* The node's sum in local-rank order, into this rank's own segment (no
   * other rank reads this slice of it). */
  enum { CHUNK = 1024 };
  float acc[CHUNK];
  for (size_t i = h->wlo; h->L > 1 && i < h->whi; i += CHUNK) {
    size_t c = h->whi - i < CHUNK ? h->whi - i : CHUNK;
    memcpy(acc, h->seg[0] + h->lo + i, c * sizeof *acc);
    for (int j = 1; j < h->L; j++) {
      const float *restrict src = h->seg[j] + h->lo + i;
      for (size_t e = 0; e < c; e++) acc[e] += src[e];
    }
    memcpy(x + i, acc, c * sizeof *acc);
  }
  int rc = h->algo == HIER_HALVING_DOUBLING ? halving_doubling(h, x, err, cap)
           : h->algo == HIER_MPI            ? mpi_allreduce(h, x, err, cap)
                                            : ring(h, x, err, cap);
  if (rc || h->shard) return rc;
  for (int j = 0; j < h->L; j++)
    if (j != h->me) memcpy(h->seg[j] + h->lo + h->wlo, x + h->wlo, (h->whi - h->wlo) * sizeof *x);
  return 0;
}

static int overlapped_finish(reducer_hier *h, char *err, size_t cap);

int reducer_hier_reduce(reducer_hier *h, char *err, size_t cap) {
  if (h->thread_on) {
    int rc = overlapped_finish(h, err, cap);
    if (rc == 0 && h->shard) reducer_hier_fence(h); /* the comm thread's sums, for the others */
    return rc;
  }
  if (node_barrier(h, err, cap)) return COMM_EMPI;
  h->wlo = 0, h->whi = h->hi - h->lo;
  if (reduce_window(h, err, cap)) return COMM_EMPI;
  if (h->shard) { /* the caller's parameter barrier ends the step (reducer_hier.h) */
    reducer_hier_fence(h);
    return 0;
  }
  return node_barrier(h, err, cap); /* no segment is touched by another rank after it */
}

void reducer_hier_set_shard(reducer_hier *h) { h->shard = 1; }

int reducer_hier_slice(const reducer_hier *h, int j, size_t *lo, size_t *hi, const float **seg) {
  if (j >= 0 && j < h->L) {
    *lo = hier_slice_start(h->n, j, h->L), *hi = hier_slice_start(h->n, j + 1, h->L);
    if (seg) *seg = h->seg[j];
  }
  return h->L;
}

int reducer_hier_local_rank(const reducer_hier *h) { return h->me; }

void reducer_hier_fence(reducer_hier *h) {
  if (h->win != MPI_WIN_NULL) MPI_Win_sync(h->win);
}

/* ---- the overlapped schedule: a comm thread, bucket by bucket ---------------- */

/* Until the node counter c reaches want: yields the core first (ranks and
 * their threads share cores), then sleeps in short naps. No MPI call. */
static void wait_counter(_Atomic uint64_t *c, uint64_t want) {
  for (int spin = 0; atomic_load_explicit(c, memory_order_acquire) < want; spin++) {
    if (spin < 64) {
      sched_yield();
    } else {
      struct timespec nap = {0, 20000};
      nanosleep(&nap, NULL);
    }
  }
}

/* Bucket b on the comm thread: once every local rank has finished it, this
 * rank's part of it (the bucket's elements of this rank's slice) is summed
 * over the node and across nodes, as the whole-arena reduction would. */
static int reduce_bucket(reducer_hier *h, int b) {
  size_t m = h->hi - h->lo, a = h->bounds[b + 1], e = h->bounds[b];
  h->wlo = a <= h->lo ? 0 : a - h->lo < m ? a - h->lo : m;
  h->whi = e <= h->lo ? 0 : e - h->lo < m ? e - h->lo : m;
  if (h->ctr) wait_counter(&h->ctr[b], (h->step + 1) * (uint64_t)h->L);
  /* Every rank with this local rank has the same slice, so an empty
   * window is empty on all of them: nothing to exchange. */
  if (h->wlo == h->whi) return 0;
  return reduce_window(h, h->thread_err, sizeof h->thread_err);
}

/* Under a real-time policy (SCHED_FIFO or SCHED_RR, as `chrt` sets it for
 * a whole job), a thread woken from its nap waits behind a running thread
 * of its own priority until that one blocks: the comm thread would then
 * run only after backward, and nothing would overlap on a rank without a
 * spare CPU. One level above the compute threads it preempts them for the
 * few microseconds a test of its messages takes, as an interrupt would,
 * but only while it naps between tests or waits for a bucket. Once the
 * caller waits in reducer_finish it polls in MPI (wait_napping), and one
 * level up that polling would starve a rank of the same node that shares
 * its core (2 emulated hosts x 2 ranks on 2 cores hung so): it goes back
 * to the job's level first, and up again before it blocks for the next
 * step's buckets (at the job's level the wake-up would wait for the end of
 * backward). Under the normal policy the scheduler already
 * runs a thread that wakes from a sleep: nothing to do. */
static void comm_thread_priority_init(reducer_hier *h) {
  struct sched_param sp;
  int policy;
  h->rt_policy = SCHED_OTHER;
  if (pthread_getschedparam(pthread_self(), &policy, &sp) != 0) return;
  if ((policy != SCHED_FIFO && policy != SCHED_RR) ||
      sp.sched_priority >= sched_get_priority_max(policy))
    return;
  h->rt_policy = policy, h->rt_base = sp.sched_priority, h->rt_up = 0;
}

static void comm_thread_boost(reducer_hier *h, int up) {
  if (h->rt_policy == SCHED_OTHER || h->rt_up == up) return;
  struct sched_param sp = {.sched_priority = h->rt_base + (up ? 1 : 0)};
  if (pthread_setschedparam(pthread_self(), h->rt_policy, &sp) == 0) h->rt_up = up;
}

static void *comm_thread(void *arg) {
  reducer_hier *h = arg;
  comm_thread_priority_init(h);
  pthread_mutex_lock(&h->mu);
  for (;;) {
    while (!h->quit && h->done >= h->posted) {
      /* Up before it blocks: the next step's first bucket must wake it
       * during backward, ahead of the compute thread that posts it. */
      comm_thread_boost(h, 1);
      pthread_cond_wait(&h->cv, &h->mu);
    }
    if (h->quit) break;
    int b = h->done;
    pthread_mutex_unlock(&h->mu);
    comm_thread_boost(h, !atomic_load_explicit(&h->finishing, memory_order_relaxed));
    int rc = h->thread_rc ? h->thread_rc : reduce_bucket(h, b);
    if (b == h->nb - 1 && h->ctr) /* this rank's write-backs are done */
      atomic_fetch_add_explicit(&h->ctr[h->nb], 1, memory_order_release);
    pthread_mutex_lock(&h->mu);
    h->thread_rc = rc;
    h->done = b + 1;
    pthread_cond_broadcast(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

void reducer_hier_begin(reducer_hier *h) {
  if (!h || !h->thread_on) return;
  pthread_mutex_lock(&h->mu);
  h->posted = h->done = 0;
  h->thread_rc = 0;
  pthread_mutex_unlock(&h->mu);
  h->ready_lo = h->n;
}

void reducer_hier_ready(reducer_hier *h, size_t off) {
  if (!h->thread_on || off >= h->ready_lo) return;
  h->ready_lo = off;
  int posted = h->posted; /* only this thread writes it */
  int p = posted;
  while (p < h->nb && h->bounds[p + 1] >= off) p++;
  if (p == posted) return;
  for (int b = posted; h->ctr && b < p; b++) /* after this rank's stores to bucket b */
    atomic_fetch_add_explicit(&h->ctr[b], 1, memory_order_release);
  pthread_mutex_lock(&h->mu);
  h->posted = p;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

static int overlapped_finish(reducer_hier *h, char *err, size_t cap) {
  atomic_store_explicit(&h->finishing, 1, memory_order_relaxed);
  reducer_hier_ready(h, 0);
  pthread_mutex_lock(&h->mu);
  while (h->done < h->nb) pthread_cond_wait(&h->cv, &h->mu);
  int rc = h->thread_rc;
  pthread_mutex_unlock(&h->mu);
  atomic_store_explicit(&h->finishing, 0, memory_order_relaxed);
  /* No other local rank touches this rank's segment after its comm thread
   * has counted itself done. */
  if (h->ctr) wait_counter(&h->ctr[h->nb], (h->step + 1) * (uint64_t)h->L);
  h->step++;
  pthread_mutex_lock(&h->mu);
  h->posted = h->done = 0;
  pthread_mutex_unlock(&h->mu);
  h->ready_lo = h->n;
  if (rc) snprintf(err, cap, "%s", h->thread_err);
  return rc;
}
