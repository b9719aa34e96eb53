#include "comm.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest count passed to one MPI call: counts are int. */
#define COMM_CHUNK ((size_t)1 << 30)

static int fail(comm_world *w, int mpi_rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(mpi_rc, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof msg, "code %d", mpi_rc);
  snprintf(w->err, sizeof w->err, "%s failed: %s", what, msg);
  return COMM_EMPI;
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

double comm_wtime(void) { return MPI_Wtime(); }
