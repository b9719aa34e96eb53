/* The nodes of the world (comm.h: comm_topo_detect, comm_topo_emulate) and
 * the CPUs a rank may use (comm_cpus_per_rank). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "comm_internal.h"

static int fail(comm_world *w, int mpi_rc, const char *what) {
  return comm_mpi_fail(mpi_rc, "topology", what, w->err, sizeof w->err);
}

/* Fills t from this rank's node communicator (taken over by t). Every rank
 * takes part in every collective, whatever failed locally. */
static int describe(comm_world *w, MPI_Comm node, comm_topo *t) {
  const int P = w->size;
  memset(t, 0, sizeof *t);
  t->node = node;
  t->cross = MPI_COMM_NULL;
  MPI_Comm_rank(node, &t->local_rank);
  MPI_Comm_size(node, &t->local_size);
  int *lead = malloc(sizeof(int) * (size_t)P * 2);
  t->node_of = malloc(sizeof(int) * (size_t)P);
  int ok = lead && t->node_of, all = 0;
  int rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, w->comm);
  if (rc != MPI_SUCCESS || !all) {
    free(lead);
    comm_topo_free(t);
    if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Allreduce");
    snprintf(w->err, sizeof w->err, "topology: out of memory for %d ranks", P);
    return COMM_ENOMEM;
  }
  /* A node is named by its lowest world rank (its local rank 0: the node
   * communicators are ordered by world rank). */
  int mine = w->rank;
  rc = MPI_Bcast(&mine, 1, MPI_INT, 0, node);
  if (rc == MPI_SUCCESS) rc = MPI_Allgather(&mine, 1, MPI_INT, lead, 1, MPI_INT, w->comm);
  if (rc != MPI_SUCCESS) {
    free(lead);
    comm_topo_free(t);
    return fail(w, rc, "MPI_Allgather (nodes)");
  }
  /* index[r]: leaders among ranks below r, i.e. the index of r's node when
   * r leads one. */
  int *index = lead + P;
  for (int r = 0, k = 0; r < P; r++) {
    index[r] = k;
    k += lead[r] == r;
    t->n_nodes = k;
  }
  for (int r = 0; r < P; r++) t->node_of[r] = index[lead[r]];
  t->node_index = t->node_of[w->rank];
  t->min_local = P, t->max_local = 0;
  for (int k = 0; k < t->n_nodes; k++) {
    int c = 0;
    for (int r = 0; r < P; r++) c += t->node_of[r] == k;
    if (c < t->min_local) t->min_local = c;
    if (c > t->max_local) t->max_local = c;
  }
  t->even = t->min_local == t->max_local;
  t->consecutive = t->even;
  for (int r = 0; r < P && t->consecutive; r++) t->consecutive = t->node_of[r] == r / t->local_size;
  free(lead);
  rc = MPI_Comm_split(w->comm, t->local_rank, t->node_index, &t->cross);
  if (rc != MPI_SUCCESS) {
    comm_topo_free(t);
    return fail(w, rc, "MPI_Comm_split (cross-node)");
  }
  return 0;
}

int comm_topo_detect(comm_world *w, comm_topo *t) {
  MPI_Comm node = MPI_COMM_NULL;
  memset(t, 0, sizeof *t);
  t->node = t->cross = MPI_COMM_NULL;
  int rc = MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Comm_split_type");
  return describe(w, node, t);
}

int comm_topo_emulate(comm_world *w, int ranks_per_node, comm_topo *t) {
  MPI_Comm node = MPI_COMM_NULL;
  memset(t, 0, sizeof *t);
  t->node = t->cross = MPI_COMM_NULL;
  int per = ranks_per_node > 0 ? ranks_per_node : 1;
  int rc = MPI_Comm_split(w->comm, w->rank / per, w->rank, &node);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Comm_split (emulated node)");
  return describe(w, node, t);
}

void comm_topo_free(comm_topo *t) {
  if (!t) return;
  if (t->node != MPI_COMM_NULL) MPI_Comm_free(&t->node);
  if (t->cross != MPI_COMM_NULL) MPI_Comm_free(&t->cross);
  free(t->node_of);
  t->node_of = NULL;
}

int comm_cpus_per_rank(comm_world *w) {
  cpu_set_t mine;
  CPU_ZERO(&mine);
  int cpus;
  if (sched_getaffinity(0, sizeof mine, &mine) == 0) {
    cpus = CPU_COUNT(&mine);
  } else {
    /* No mask to read: every such rank shares the machine's CPUs (an
     * all-zero mask in the comparison below). */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpus = online > 0 ? (int)online : 1;
    CPU_ZERO(&mine);
  }
  MPI_Comm node = MPI_COMM_NULL;
  int rc = MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Comm_split_type");
  int L = 1;
  MPI_Comm_size(node, &L);
  cpu_set_t *masks = malloc(sizeof *masks * (size_t)L);
  int ok = masks != NULL, all = 0;
  rc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, node);
  if (rc == MPI_SUCCESS && all)
    rc = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, masks, (int)sizeof mine, MPI_BYTE, node);
  int sharing = 0;
  for (int k = 0; rc == MPI_SUCCESS && all && k < L; k++)
    sharing += memcmp(&masks[k], &mine, sizeof mine) == 0;
  free(masks);
  MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS) return fail(w, rc, "MPI_Allgather (affinity masks)");
  if (!all) {
    snprintf(w->err, sizeof w->err, "topology: out of memory for %d affinity masks", L);
    return COMM_ENOMEM;
  }
  int per = cpus / (sharing > 0 ? sharing : 1);
  return per > 0 ? per : 1;
}
