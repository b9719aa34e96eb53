#include "comm.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm_internal.h"

/* Largest count passed to one MPI call: counts are int. */
#define COMM_CHUNK ((size_t)1 << 30)

int comm_mpi_fail(int mpi_rc, const char *who, const char *what, char *err, size_t cap) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(mpi_rc, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof msg, "code %d", mpi_rc);
  snprintf(err, cap, "%s%s%s failed: %s", who, *who ? ": " : "", what, msg);
  return COMM_EMPI;
}

static int fail(comm_world *w, int mpi_rc, const char *what) {
  return comm_mpi_fail(mpi_rc, "", what, w->err, sizeof w->err);
}

static void detect_launcher(comm_world *w) {
  if (getenv("SLURM_JOB_ID") && getenv("SLURM_PROCID"))
    snprintf(w->launcher, sizeof w->launcher, "slurm");
  else if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK"))
    snprintf(w->launcher, sizeof w->launcher, "mpirun");
  else
    snprintf(w->launcher, sizeof w->launcher, "singleton");
}

int comm_init(comm_world *w, int *argc, char ***argv) {
  int inited = 0, rc;
  memset(w, 0, sizeof *w);
  w->comm = MPI_COMM_NULL;
  /* Before MPI_Init: a singleton's MPI_Init sets launcher variables itself. */
  detect_launcher(w);
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    /* Serialized: the reducer's comm thread (reducer.h) drives the
     * cross-node exchange during backward. A library that gives less
     * leaves it off (the reducer says so); funnelled is what the rest needs. */
    rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
      snprintf(w->err, sizeof w->err, "MPI_Init_thread failed (code %d)", rc);
      return COMM_EMPI;
    }
    w->owns_mpi = 1;
  }
  MPI_Query_thread(&w->thread_level);
  rc = MPI_Comm_dup(MPI_COMM_WORLD, &w->comm);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Comm_dup");
  MPI_Comm_set_errhandler(w->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(w->comm, &w->rank);
  MPI_Comm_size(w->comm, &w->size);

  MPI_Comm node;
  rc = MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Comm_split_type");
  MPI_Comm_rank(node, &w->local_rank);
  MPI_Comm_size(node, &w->local_size);
  MPI_Comm_free(&node);
  return 0;
}

void comm_finalize(comm_world *w) {
  if (!w) return;
  if (w->comm != MPI_COMM_NULL) MPI_Comm_free(&w->comm);
  if (w->owns_mpi) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    w->owns_mpi = 0;
  }
}

const char *comm_errmsg(const comm_world *w) { return w->err; }

int comm_agree(comm_world *w, int local_code) {
  int worst = 0;
  int rc = MPI_Allreduce(&local_code, &worst, 1, MPI_INT, MPI_MIN, w->comm);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Allreduce (agreement)");
  return worst < 0 ? worst : 0;
}

int comm_all_ready(comm_world *w, int ready) {
  int mine = ready != 0, all = 0;
  int rc = MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, w->comm);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Allreduce (readiness vote)");
  return all;
}

int comm_agree_msg(comm_world *w, int local_code, char *msg, size_t cap) {
  int me = local_code < 0 ? w->rank : w->size, who = w->size;
  int rc = MPI_Allreduce(&me, &who, 1, MPI_INT, MPI_MIN, w->comm);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Allreduce (agreement)");
  if (who == w->size) return 0;
  /* Only on failure: a second round carries the code and the message. */
  struct {
    int code;
    char text[1024];
  } pack = {0, {0}};
  if (w->rank == who) {
    pack.code = local_code;
    snprintf(pack.text, sizeof pack.text, "%s", msg ? msg : "");
  }
  rc = MPI_Bcast(&pack, (int)sizeof pack, MPI_BYTE, who, w->comm);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Bcast (agreement)");
  if (msg && cap) snprintf(msg, cap, "%s", pack.text);
  return pack.code;
}

int comm_all_equal_u64(comm_world *w, uint64_t value) {
  /* min and max in one reduction: max of (v, -v) on unsigned via two slots. */
  unsigned long long in[2] = {value, ~value}, out[2];
  int rc = MPI_Allreduce(in, out, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, w->comm);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Allreduce (hash agreement)");
  /* max(v) == v and max(~v) == ~v means min(v) == v: all equal. */
  return out[0] == value && out[1] == (unsigned long long)~value;
}

int comm_bcast_bytes(comm_world *w, char **buf, size_t *len, int root) {
  unsigned long long n = (w->rank == root) ? (unsigned long long)*len : 0;
  int rc = MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, w->comm);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Bcast (length)");
  if (w->rank != root) {
    *buf = malloc((size_t)n + 1);
    if (!*buf) {
      snprintf(w->err, sizeof w->err, "out of memory receiving %llu bytes", n);
      return COMM_EMPI;
    }
    (*buf)[n] = '\0';
    *len = (size_t)n;
  }
  for (size_t off = 0; off < (size_t)n; off += COMM_CHUNK) {
    size_t c = (size_t)n - off < COMM_CHUNK ? (size_t)n - off : COMM_CHUNK;
    rc = MPI_Bcast(*buf + off, (int)c, MPI_BYTE, root, w->comm);
    if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Bcast (bytes)");
  }
  return 0;
}

int comm_allgather_bytes(comm_world *w, const void *mine, size_t len, void *all) {
  if (len > INT_MAX) {
    snprintf(w->err, sizeof w->err, "comm_allgather_bytes: %zu bytes is too many", len);
    return COMM_EMPI;
  }
  int rc = MPI_Allgather(mine, (int)len, MPI_BYTE, all, (int)len, MPI_BYTE, w->comm);
  return rc == MPI_SUCCESS ? 0 : fail(w, rc, "MPI_Allgather");
}

/* Tag of comm_gatherv_bytes' point-to-point pieces (no other code sends
 * point-to-point on w->comm). */
#define COMM_TAG_GATHER 0x6d73

int comm_gatherv_bytes(comm_world *w, const void *buf, size_t len, int root, char **out,
                       size_t *out_len, size_t *lens) {
  *out = NULL;
  *out_len = 0;
  unsigned long long mine = len, *all = NULL;
  int ok = 1, rc;
  if (w->rank == root && !(all = malloc(sizeof *all * (size_t)w->size))) ok = 0;
  /* A failed allocation on root still takes part in the collectives, so
   * that the ranks leave this function together. */
  unsigned long long dummy[1];
  rc = MPI_Gather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all ? all : dummy, 1, MPI_UNSIGNED_LONG_LONG,
                  root, w->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return fail(w, rc, "MPI_Gather (lengths)");
  }
  unsigned long long total = 0;
  char *dst = NULL;
  if (w->rank == root && ok) {
    for (int r = 0; r < w->size; r++) total += all[r];
    if (!(dst = malloc(total ? (size_t)total : 1))) ok = 0;
  }
  rc = MPI_Bcast(&ok, 1, MPI_INT, root, w->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    free(dst);
    return fail(w, rc, "MPI_Bcast (gather)");
  }
  if (!ok) {
    free(all);
    snprintf(w->err, sizeof w->err, "out of memory on rank %d gathering %llu bytes", root, total);
    return COMM_EMPI;
  }
  if (w->rank != root) {
    const char *p = buf;
    for (size_t off = 0; off < len; off += COMM_CHUNK) {
      size_t c = len - off < COMM_CHUNK ? len - off : COMM_CHUNK;
      rc = MPI_Send(p + off, (int)c, MPI_BYTE, root, COMM_TAG_GATHER, w->comm);
      if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Send (gather)");
    }
    return 0;
  }
  /* Root: every piece of every rank is posted at once, so ranks send in
   * parallel; its own bytes are copied meanwhile. */
  size_t n_req = 0, k = 0, at = 0;
  for (int r = 0; r < w->size; r++)
    if (r != root) n_req += ((size_t)all[r] + COMM_CHUNK - 1) / COMM_CHUNK;
  MPI_Request *req = malloc(sizeof *req * (n_req ? n_req : 1));
  if (!req) {
    /* The others are already sending: receive piece by piece instead. */
    n_req = 0;
  }
  rc = MPI_SUCCESS;
  for (int r = 0; r < w->size && rc == MPI_SUCCESS; r++) {
    if (lens) lens[r] = (size_t)all[r];
    if (r == root) {
      if (len) memcpy(dst + at, buf, len);
    } else {
      for (size_t off = 0; off < (size_t)all[r] && rc == MPI_SUCCESS; off += COMM_CHUNK) {
        size_t c = (size_t)all[r] - off < COMM_CHUNK ? (size_t)all[r] - off : COMM_CHUNK;
        if (req)
          rc = MPI_Irecv(dst + at + off, (int)c, MPI_BYTE, r, COMM_TAG_GATHER, w->comm, &req[k++]);
        else
          rc = MPI_Recv(dst + at + off, (int)c, MPI_BYTE, r, COMM_TAG_GATHER, w->comm,
                        MPI_STATUS_IGNORE);
      }
    }
    at += (size_t)all[r];
  }
  if (rc == MPI_SUCCESS && k) rc = MPI_Waitall((int)k, req, MPI_STATUSES_IGNORE);
  free(req);
  free(all);
  if (rc != MPI_SUCCESS) {
    free(dst);
    return fail(w, rc, "MPI_Recv (gather)");
  }
  *out = dst;
  *out_len = (size_t)total;
  return 0;
}

int comm_bcast_f32(comm_world *w, float *buf, size_t n, int root) {
  for (size_t off = 0; off < n; off += COMM_CHUNK) {
    size_t c = n - off < COMM_CHUNK ? n - off : COMM_CHUNK;
    int rc = MPI_Bcast(buf + off, (int)c, MPI_FLOAT, root, w->comm);
    if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Bcast (floats)");
  }
  return 0;
}

static int allreduce(comm_world *w, void *buf, size_t n, size_t elem, MPI_Datatype t, MPI_Op op) {
  char *p = buf;
  for (size_t off = 0; off < n; off += COMM_CHUNK) {
    size_t c = n - off < COMM_CHUNK ? n - off : COMM_CHUNK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, p + off * elem, (int)c, t, op, w->comm);
    if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Allreduce");
  }
  return 0;
}

int comm_allreduce_sum_f32(comm_world *w, float *buf, size_t n) {
  return allreduce(w, buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM);
}

int comm_allreduce_sum_f64(comm_world *w, double *buf, size_t n) {
  return allreduce(w, buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM);
}

int comm_allreduce_max_f64(comm_world *w, double *buf, size_t n) {
  return allreduce(w, buf, n, sizeof *buf, MPI_DOUBLE, MPI_MAX);
}

int comm_barrier(comm_world *w) {
  int rc = MPI_Barrier(w->comm);
  return rc == MPI_SUCCESS ? 0 : fail(w, rc, "MPI_Barrier");
}

/* A clock read, not MPI_Wtime: the training thread times its parts while
 * the reducer's comm thread may be inside MPI (MPI_THREAD_SERIALIZED
 * allows one thread in MPI at a time), and only intervals on one rank are
 * ever taken from it. */
double comm_wtime(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One exchange as the gradient sync makes it (comm/reducer_hier.c,
 * xchg_pipe): `bytes` to the next node and as many from the previous, cut
 * into pieces of COMM_PIPE_BYTES (at most COMM_PIPE_MAX of them;
 * comm_internal.h), every receive posted before the first send. One
 * MPI_Sendrecv of the whole message instead measured the emulated 1 Gbit
 * link at half its rate in 1 to 5 of 21 start-ups (with and without an
 * untimed exchange first), while the sync's pieces never ran at that rate
 * (scripts/bench/results/cluster.md); in pieces, none of 42. */
static int probe_once(MPI_Comm cross, int k, int N, char *buf, size_t bytes) {
  MPI_Request req[2 * COMM_PIPE_MAX];
  size_t np = bytes / COMM_PIPE_BYTES;
  np = np < 1 ? 1 : np > COMM_PIPE_MAX ? COMM_PIPE_MAX : np;
  int q = 0, rc = MPI_SUCCESS;
  for (size_t i = 0; i < np && rc == MPI_SUCCESS; i++) {
    size_t a = bytes * i / np, b = bytes * (i + 1) / np;
    rc = MPI_Irecv(buf + bytes + a, (int)(b - a), MPI_BYTE, (k + N - 1) % N, 77, cross, &req[q]);
    q += rc == MPI_SUCCESS;
  }
  for (size_t i = 0; i < np && rc == MPI_SUCCESS; i++) {
    size_t a = bytes * i / np, b = bytes * (i + 1) / np;
    rc = MPI_Isend(buf + a, (int)(b - a), MPI_BYTE, (k + 1) % N, 77, cross, &req[q]);
    q += rc == MPI_SUCCESS;
  }
  /* The requests posted are completed even after a failed post: buf is
   * freed after the probe, and a pending receive may still write into it. */
  int wrc = q ? MPI_Waitall(q, req, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
  return rc != MPI_SUCCESS ? rc : wrc;
}

/* The slowest node's lower quartile of the times of `reps` (<=
 * COMM_PROBE_MAX_REPS) exchanges of `bytes` on cross, after one that is
 * not timed (it opens the connection or grows its window, which a sync in
 * training has long done). In pieces the times have one mode, but an
 * exchange on the emulated hosts sometimes stalls for 60-170 ms (once 4 of
 * 7 in 21 start-ups, which moved the median fourfold); the lower quartile
 * skips up to 3 of 4 stalled and one exchange that was fast by chance. */
static int probe_exchange(MPI_Comm cross, int k, int N, char *buf, size_t bytes, int reps,
                          double *out) {
  double t[COMM_PROBE_MAX_REPS];
  int rc = probe_once(cross, k, N, buf, bytes), n = 0;
  for (; n < reps && n < COMM_PROBE_MAX_REPS && rc == MPI_SUCCESS; n++) {
    rc = MPI_Barrier(cross);
    double t0 = MPI_Wtime();
    if (rc == MPI_SUCCESS) rc = probe_once(cross, k, N, buf, bytes);
    t[n] = MPI_Wtime() - t0;
  }
  qsort(t, (size_t)n, sizeof t[0], cmp_double);
  double quartile = n ? t[n / 4] : 0.0;
  if (rc == MPI_SUCCESS) rc = MPI_Allreduce(&quartile, out, 1, MPI_DOUBLE, MPI_MAX, cross);
  return rc;
}

int comm_probe_link(comm_world *w, comm_link_probe *p) {
  comm_topo t;
  double v[3] = {0, 0, 0}, start = MPI_Wtime();
  memset(p, 0, sizeof *p);
  p->nodes = 1;
  int rc = comm_topo_detect(w, &t), mrc = MPI_SUCCESS, lrc = 0;
  if (rc) return rc;
  p->nodes = t.n_nodes;
  if (t.n_nodes > 1 && t.local_rank == 0) {
    char *buf = malloc(2 * COMM_PROBE_LARGE);
    if (!buf) lrc = COMM_ENOMEM;
    if (buf) memset(buf, 0, 2 * COMM_PROBE_LARGE);
    const int k = t.node_index, N = t.n_nodes;
    /* Every rank of `cross` allocated or none goes on. */
    int ok = buf != NULL, all = 0;
    mrc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, t.cross);
    if (mrc == MPI_SUCCESS && all) {
      mrc = probe_exchange(t.cross, k, N, buf, 8, 11, &v[0]);
      if (mrc == MPI_SUCCESS)
        mrc = probe_exchange(t.cross, k, N, buf, COMM_PROBE_SMALL, COMM_PROBE_REPS, &v[1]);
      if (mrc == MPI_SUCCESS)
        mrc = probe_exchange(t.cross, k, N, buf, COMM_PROBE_LARGE, COMM_PROBE_REPS, &v[2]);
    } else if (mrc == MPI_SUCCESS) {
      lrc = COMM_ENOMEM;
    }
    free(buf);
  }
  comm_topo_free(&t);
  if (mrc != MPI_SUCCESS) lrc = fail(w, mrc, "the link probe");
  /* Rank 0 is local rank 0 of node 0: its numbers go to every rank. */
  if ((rc = comm_agree(w, lrc))) {
    if (rc == COMM_ENOMEM)
      snprintf(w->err, sizeof w->err, "out of memory for the link probe");
    else if (lrc == 0)
      snprintf(w->err, sizeof w->err, "the link probe failed on another rank");
    return rc;
  }
  mrc = MPI_Bcast(v, 3, MPI_DOUBLE, 0, w->comm);
  if (mrc != MPI_SUCCESS) return fail(w, mrc, "the link probe's broadcast");
  if (p->nodes > 1) {
    p->alpha = v[0];
    p->beta = (v[2] - v[1]) / (double)(COMM_PROBE_LARGE - COMM_PROBE_SMALL);
    if (!(p->beta > 0)) p->beta = v[2] / (double)COMM_PROBE_LARGE; /* noise: the mean rate */
  }
  p->seconds = MPI_Wtime() - start;
  return 0;
}
