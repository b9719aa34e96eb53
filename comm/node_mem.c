/* Node-shared memory (comm.h: comm_node_mem_alloc). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "comm.h"

struct comm_node_mem {
  comm_world *w; /* where comm_node_mem_barrier leaves its message */
  MPI_Comm node;
  MPI_Win win;
  int locked; /* in its MPI_Win_lock_all epoch */
};

/* MPI libraries back shared windows with files in /dev/shm (Open MPI's
 * osc_sm_backing_directory, MPICH's shm_open): on a tmpfs smaller than the
 * window, mapping succeeds and the first touch past its end is a SIGBUS.
 * Asked before allocating; where /dev/shm does not exist, yes. */
static int shm_has_room(size_t bytes) {
  struct statvfs s;
  if (statvfs("/dev/shm", &s) != 0) return 1;
  return (double)s.f_bavail * (double)s.f_frsize >= (double)bytes + (64.0 * 1048576.0);
}

static void release(comm_node_mem *m) {
  if (!m) return;
  if (m->locked) MPI_Win_unlock_all(m->win);
  if (m->win != MPI_WIN_NULL) MPI_Win_free(&m->win);
  if (m->node != MPI_COMM_NULL) MPI_Comm_free(&m->node);
  free(m);
}

int comm_node_mem_alloc(comm_world *w, size_t bytes, size_t zeroed, comm_node_mem **out,
                        void **base) {
  *out = NULL;
  *base = NULL;
  comm_node_mem *m = calloc(1, sizeof *m);
  int ok = m != NULL, all = 0, rc;
  if (m) m->win = MPI_WIN_NULL, m->node = MPI_COMM_NULL;
  /* Every rank takes part in every collective below, whatever failed. */
  MPI_Comm node = MPI_COMM_NULL;
  rc = MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) {
    free(m);
    snprintf(w->err, sizeof w->err, "MPI_Comm_split_type failed (code %d)", rc);
    return COMM_EMPI;
  }
  MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
  int first = 0;
  MPI_Comm_rank(node, &first);
  first = first == 0;
  /* The node's first rank decides whether there is room, for all of it. */
  int room = first ? shm_has_room(bytes) : 0;
  MPI_Bcast(&room, 1, MPI_INT, 0, node);
  ok = ok && room && bytes > 0;
  void *mine = NULL, *shared = NULL;
  MPI_Win win = MPI_WIN_NULL;
  if (room && bytes > 0) {
    rc = MPI_Win_allocate_shared(first ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL, node, &mine, &win);
    MPI_Aint size = 0;
    int disp = 0;
    ok = ok && rc == MPI_SUCCESS &&
         MPI_Win_shared_query(win, 0, &size, &disp, &shared) == MPI_SUCCESS &&
         (size_t)size >= bytes && shared;
  }
  rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, w->comm);
  if (rc != MPI_SUCCESS || !all) {
    if (win != MPI_WIN_NULL) MPI_Win_free(&win);
    MPI_Comm_free(&node);
    free(m);
    if (rc != MPI_SUCCESS) {
      snprintf(w->err, sizeof w->err, "MPI_Allreduce (node memory) failed (code %d)", rc);
      return COMM_EMPI;
    }
    return 0;
  }
  /* One passive-target epoch for the window's life (as the reducer's):
   * MPI_Win_sync orders the zeroing before the barrier and the other
   * ranks' first loads after it. */
  MPI_Win_lock_all(MPI_MODE_NOCHECK, win);
  if (first && zeroed) memset(shared, 0, zeroed < bytes ? zeroed : bytes);
  MPI_Win_sync(win);
  rc = MPI_Barrier(node);
  MPI_Win_sync(win);
  m->w = w;
  m->node = node;
  m->win = win;
  m->locked = 1;
  if (rc != MPI_SUCCESS) {
    release(m);
    snprintf(w->err, sizeof w->err, "MPI_Barrier (node memory) failed (code %d)", rc);
    return COMM_EMPI;
  }
  *out = m;
  *base = shared;
  return 0;
}

void comm_node_mem_free(comm_node_mem *m) { release(m); }

int comm_node_mem_barrier(comm_node_mem *m) {
  MPI_Win_sync(m->win);
  int rc = MPI_Barrier(m->node);
  MPI_Win_sync(m->win);
  if (rc == MPI_SUCCESS) return 0;
  snprintf(m->w->err, sizeof m->w->err, "MPI_Barrier (node memory) failed (code %d)", rc);
  return COMM_EMPI;
}

void comm_node_mem_fence(comm_node_mem *m) { MPI_Win_sync(m->win); }

/* Largest count of one MPI_Bcast (counts are int). */
#define BCAST_CHUNK ((size_t)1 << 30)

int comm_node_mem_bcast_f32(comm_node_mem *m, float *buf, size_t n) {
  comm_world *w = m->w;
  int local = 0;
  MPI_Comm_rank(m->node, &local);
  /* The node's first rank is the one with its lowest world rank (the
   * split's key), so world rank 0 is rank 0 of the leaders. */
  MPI_Comm leaders = MPI_COMM_NULL;
  int rc = MPI_Comm_split(w->comm, local == 0 ? 0 : MPI_UNDEFINED, w->rank, &leaders);
  for (size_t off = 0; rc == MPI_SUCCESS && leaders != MPI_COMM_NULL && off < n;
       off += BCAST_CHUNK) {
    size_t c = n - off < BCAST_CHUNK ? n - off : BCAST_CHUNK;
    rc = MPI_Bcast(buf + off, (int)c, MPI_FLOAT, 0, leaders);
  }
  if (leaders != MPI_COMM_NULL) MPI_Comm_free(&leaders);
  /* Every rank of the node takes part in the barrier, whatever failed. */
  int brc = comm_node_mem_barrier(m);
  if (rc != MPI_SUCCESS) {
    snprintf(w->err, sizeof w->err, "MPI_Bcast (node memory) failed (code %d)", rc);
    return COMM_EMPI;
  }
  return brc;
}
