/* bench_hier — bytes that leave each host per gradient sync, flat vs
 * hierarchical (comm/reducer.h), measured on the host's network device
 * and compared with reducer_internode_bytes.
 *
 *   mpirun ... bench_hier N [REPS] [DEV]      (scripts/bench/hier.sh runs it
 *                                             on emulated hosts)
 *
 * For each method (flat: shared memory off; hierarchical ring; hierarchical
 * mpi) it runs REPS reductions of N floats (overlap off) and prints one
 * JSON line (rank 0): the method, the bytes the first rank of host 0 saw
 * leave DEV (/sys/class/net/DEV/statistics/tx_bytes, the whole host's
 * traffic), the bytes the reducer counts for that host's ranks, seconds
 * per reduction (the slowest rank's; only honest on real hosts), and
 * whether every rank holds the same bits.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "reducer.h"

static double tx_bytes(const char *dev) {
  char path[256];
  snprintf(path, sizeof path, "/sys/class/net/%s/statistics/tx_bytes", dev);
  FILE *f = fopen(path, "r");
  long long v = -1;
  if (f) {
    if (fscanf(f, "%lld", &v) != 1) v = -1;
    fclose(f);
  }
  return (double)v;
}

static uint64_t fnv(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

int main(int argc, char **argv) {
  comm_world w;
  if (comm_init(&w, &argc, &argv) != 0) {
    fprintf(stderr, "%s\n", comm_errmsg(&w));
    return 1;
  }
  size_t n = argc > 1 ? (size_t)atoll(argv[1]) : 4000000;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  const char *dev = argc > 3 ? argv[3] : "eth0";
  comm_topo t;
  if (comm_topo_detect(&w, &t) != 0) {
    fprintf(stderr, "%s\n", comm_errmsg(&w));
    return 1;
  }
  int on_host0 = t.node_index == 0, first_of_host0 = on_host0 && t.local_rank == 0;
  for (int mode = 0; mode < 3; mode++) {
    float *g = calloc(n, sizeof(float));
    reducer *r = NULL;
    reducer_opts o = {.overlap = 0, .wire = WIRE_F32, .shared_memory = mode > 0,
                      .algorithm = mode == 2 ? HIER_MPI : HIER_RING};
    if (!g || reducer_create(&r, &w, g, n, NULL, 0, &o) != 0) {
      fprintf(stderr, "bench_hier: %s\n", comm_errmsg(&w));
      return 1;
    }
    float *a = reducer_arena(r);
    for (size_t i = 0; i < n; i++) a[i] = (float)((i * 7 + (size_t)w.rank * 13) % 101) * 1e-3f;
    MPI_Barrier(w.comm);
    double b0 = first_of_host0 ? tx_bytes(dev) : 0, t0 = MPI_Wtime();
    for (int k = 0; k < reps; k++) {
      reducer_begin(r);
      if (reducer_finish(r) != 0) {
        fprintf(stderr, "bench_hier: %s\n", comm_errmsg(&w));
        return 1;
      }
    }
    double dt = MPI_Wtime() - t0;
    MPI_Barrier(w.comm);
    double b1 = first_of_host0 ? tx_bytes(dev) : 0;
    double mine = on_host0 ? reducer_internode_bytes(r) * reps : 0, host0 = 0;
    MPI_Allreduce(&mine, &host0, 1, MPI_DOUBLE, MPI_SUM, w.comm);
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, w.comm);
    int same = comm_all_equal_u64(&w, fnv(a, sizeof(float) * n));
    if (w.rank == 0)
      printf("{\"method\": \"%s\", \"hosts\": %d, \"ranks\": %d, \"floats\": %zu, \"reps\": %d, "
             "\"host0_tx_bytes\": %.0f, \"host0_counted_bytes\": %.0f, \"s_per_reduction\": %.4f, "
             "\"ranks_agree\": %d}\n",
             reducer_method(r), t.n_nodes, w.size, n, reps, b1 - b0, host0, dt / reps, same);
    fflush(stdout);
    reducer_free(r);
    free(g);
  }
  comm_topo_free(&t);
  comm_finalize(&w);
  return 0;
}
