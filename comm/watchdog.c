#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One rank's position, in the node-shared window. Lock-free atomics of
 * this size are address-free, so they work across processes. */
typedef struct {
  _Atomic int64_t seq;  /* watched collectives entered so far */
  _Atomic int64_t step; /* the step of the last one */
  _Atomic int inside;   /* 1 while waiting in it */
  int world_rank;
  char op[64]; /* its name, written before seq moves (a reader may see it torn) */
} slot;

struct watchdog {
  comm_world *w;
  MPI_Comm node;
  MPI_Win win;
  slot *mine;
  slot **peers; /* (local_size) */
  int local_size;
  double timeout, grace;
  char host[MPI_MAX_PROCESSOR_NAME]; /* this rank's node, for the report */
  watchdog_fn fn;
  void *ctx;
  /* The training thread's current wait, read by the watchdog thread. */
  _Atomic int64_t enter_ns; /* 0 = not waiting */
  _Atomic(const char *) op;
  _Atomic(const char *) where;
  _Atomic int64_t step;
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
};

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The report: this rank's wait and host, then the node's ranks behind it. */
static void report(watchdog *wd, double waited, char *out, size_t cap) {
  int64_t my_seq = atomic_load(&wd->mine->seq);
  size_t n = (size_t)snprintf(
      out, cap,
      "hang: rank %d waited %.1f s (comm.timeout_s %.6g) in %s (%s) at step %lld for the other "
      "ranks; ",
      wd->w->rank, waited, wd->timeout, atomic_load(&wd->op), atomic_load(&wd->where),
      (long long)atomic_load(&wd->step));
  int behind = 0;
  for (int i = 0; i < wd->local_size && n < cap; i++) {
    slot *p = wd->peers[i];
    if (p == wd->mine) continue;
    int64_t seq = atomic_load(&p->seq);
    if (seq >= my_seq) continue;
    char op[sizeof p->op];
    memcpy(op, p->op, sizeof op);
    op[sizeof op - 1] = '\0';
    n += (size_t)snprintf(out + n, cap - n, "%s rank %d %s %s at step %lld",
                          behind ? ";" : "not arrived (ranks of this node):", p->world_rank,
                          atomic_load(&p->inside) ? "is waiting in an earlier collective,"
                                                  : "has not reached it, last in",
                          seq > 0 ? op : "none", (long long)atomic_load(&p->step));
    behind++;
  }
  if (n < cap && !behind)
    n += (size_t)snprintf(out + n, cap - n, "every rank of this node has arrived");
  if (n < cap)
    snprintf(out + n, cap - n, "%s; rank %d runs on host %s; aborting the job",
             wd->local_size < wd->w->size ? "; ranks on other nodes: unknown" : "", wd->w->rank,
             wd->host);
}

static void *run(void *arg) {
  watchdog *wd = arg;
  double period = wd->timeout / 10 < 1.0 ? wd->timeout / 10 : 1.0;
  if (period < 0.02) period = 0.02;
  pthread_mutex_lock(&wd->mu);
  while (!wd->stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t ns = until.tv_nsec + (int64_t)(period * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    pthread_cond_timedwait(&wd->cv, &wd->mu, &until);
    if (wd->stop) break;
    int64_t t0 = atomic_load(&wd->enter_ns);
    if (!t0) continue;
    double waited = (double)(now_ns() - t0) / 1e9;
    if (waited < wd->timeout + wd->grace) continue;
    char text[2048];
    report(wd, waited, text, sizeof text);
    pthread_mutex_unlock(&wd->mu);
    wd->fn(wd->ctx, text); /* does not return */
    return NULL;
  }
  pthread_mutex_unlock(&wd->mu);
  return NULL;
}

static int fail(watchdog *wd, int mpi_rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(mpi_rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", mpi_rc);
  snprintf(wd->w->err, sizeof wd->w->err, "watchdog: %s failed: %s", what, msg);
  return COMM_EMPI;
}

int watchdog_create(watchdog **out, comm_world *w, double timeout_s, watchdog_fn on_timeout,
                    void *ctx) {
  *out = NULL;
  watchdog *wd = calloc(1, sizeof *wd);
  if (!wd) {
    snprintf(w->err, sizeof w->err, "watchdog: out of memory");
    return COMM_ENOMEM;
  }
  wd->w = w;
  wd->node = MPI_COMM_NULL;
  wd->win = MPI_WIN_NULL;
  wd->timeout = timeout_s;
  /* Rank 0 reports first; the others one second apart after it, so that a
   * single message normally precedes the abort. */
  wd->grace = w->rank == 0 ? 0.0 : 1.0 + (w->rank < 4 ? w->rank : 4);
  wd->fn = on_timeout;
  wd->ctx = ctx;
  /* Across nodes the report must say where the waiting rank runs; the
   * name is fetched now, since the watchdog thread makes no MPI call. */
  int host_len = 0;
  if (MPI_Get_processor_name(wd->host, &host_len) != MPI_SUCCESS || host_len <= 0)
    snprintf(wd->host, sizeof wd->host, "unknown");
  pthread_mutex_init(&wd->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&wd->cv, &ca);
  pthread_condattr_destroy(&ca);

  int rc = MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &wd->node);
  if (rc != MPI_SUCCESS) {
    fail(wd, rc, "MPI_Comm_split_type");
    goto error;
  }
  MPI_Comm_size(wd->node, &wd->local_size);
  rc = MPI_Win_allocate_shared((MPI_Aint)sizeof(slot), 1, MPI_INFO_NULL, wd->node, &wd->mine,
                               &wd->win);
  if (rc != MPI_SUCCESS) {
    fail(wd, rc, "MPI_Win_allocate_shared");
    goto error;
  }
  memset(wd->mine, 0, sizeof *wd->mine);
  wd->mine->world_rank = w->rank;
  wd->peers = calloc((size_t)wd->local_size, sizeof *wd->peers);
  if (!wd->peers) {
    snprintf(w->err, sizeof w->err, "watchdog: out of memory");
    goto error;
  }
  for (int i = 0; i < wd->local_size; i++) {
    MPI_Aint size;
    int disp;
    rc = MPI_Win_shared_query(wd->win, i, &size, &disp, &wd->peers[i]);
    if (rc != MPI_SUCCESS) {
      fail(wd, rc, "MPI_Win_shared_query");
      goto error;
    }
  }
  /* Every slot initialised before anyone reads it. */
  rc = MPI_Barrier(wd->node);
  if (rc != MPI_SUCCESS) {
    fail(wd, rc, "MPI_Barrier");
    goto error;
  }
  /* The thread inherits a mask with every signal blocked. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int prc = pthread_create(&wd->thread, NULL, run, wd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (prc != 0) {
    snprintf(w->err, sizeof w->err, "watchdog: cannot start its thread: %s", strerror(prc));
    goto error;
  }
  wd->started = 1;
  *out = wd;
  return 0;
error:
  watchdog_free(wd);
  return COMM_EMPI;
}

void watchdog_free(watchdog *wd) {
  if (!wd) return;
  if (wd->started) {
    pthread_mutex_lock(&wd->mu);
    wd->stop = 1;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
  }
  if (wd->win != MPI_WIN_NULL) MPI_Win_free(&wd->win);
  if (wd->node != MPI_COMM_NULL) MPI_Comm_free(&wd->node);
  pthread_cond_destroy(&wd->cv);
  pthread_mutex_destroy(&wd->mu);
  free(wd->peers);
  free(wd);
}

void watchdog_enter(watchdog *wd, const char *op, const char *where, int64_t step) {
  if (!wd) return;
  snprintf(wd->mine->op, sizeof wd->mine->op, "%s (%s)", op, where);
  atomic_store(&wd->mine->step, step);
  atomic_store(&wd->mine->inside, 1);
  atomic_fetch_add(&wd->mine->seq, 1);
  atomic_store(&wd->op, op);
  atomic_store(&wd->where, where);
  atomic_store(&wd->step, step);
  atomic_store(&wd->enter_ns, now_ns());
}

void watchdog_leave(watchdog *wd) {
  if (!wd) return;
  atomic_store(&wd->enter_ns, 0);
  atomic_store(&wd->mine->inside, 0);
}
