/* bench_allreduce — the time of one gradient sync of N floats, outside
 * training: MPI_Allreduce (in place, sum) and the reducer (comm/reducer.h,
 * overlap off: one collective over the whole arena, as the trainer's
 * comm.overlap false; with 2 ranks that is MPI's allreduce too, with more
 * the rank-ordered reduce-scatter + allgather).
 *
 *   mpiexec -n 2 bench_allreduce N [REPS] [WIRE] [GAP_MS]
 *
 * WIRE (f32, the default, or bf16/fp16) is the reducer's comm.compress;
 * MPI_Allreduce then moves the same bytes (N / 2 floats). GAP_MS of busy
 * compute before each repetition lets the link go idle between syncs as
 * it does in training.
 *
 * Prints one JSON line (rank 0): {"floats": N, "ranks": P, "allreduce_ms":
 * median, "reducer_ms": median, "allreduce_min_ms": ..., "gbytes_per_s": ...}.
 * Each repetition starts after a barrier; the time is the slowest rank's.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "reducer.h"

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median (and minimum) over reps of the slowest rank's time of op. */
static void busy(double ms) {
  double t0 = MPI_Wtime();
  volatile double x = 0;
  while ((MPI_Wtime() - t0) * 1e3 < ms) x += 1.0;
}

static void time_op(comm_world *w, int reps, float *g, size_t n, reducer *r, double gap_ms,
                    double *median, double *min) {
  double *t = malloc(sizeof(double) * (size_t)reps);
  for (int k = -3; k < reps; k++) { /* three warm-up rounds */
    for (size_t i = 0; i < n; i++) g[i] = 1e-3f * (float)(i % 1000);
    MPI_Barrier(w->comm);
    busy(gap_ms);
    double t0 = MPI_Wtime();
    if (r) {
      reducer_begin(r);
      reducer_finish(r);
    } else {
      MPI_Allreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, w->comm);
    }
    double dt = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, w->comm);
    if (k >= 0) t[k] = dt;
  }
  qsort(t, (size_t)reps, sizeof *t, cmp);
  *median = t[reps / 2];
  *min = t[0];
  free(t);
}

int main(int argc, char **argv) {
  comm_world w;
  if (comm_init(&w, &argc, &argv) != 0) {
    fprintf(stderr, "bench_allreduce: %s\n", comm_errmsg(&w));
    return 1;
  }
  if (argc < 2) {
    if (w.rank == 0) fprintf(stderr, "usage: mpiexec -n P bench_allreduce N [REPS]\n");
    comm_finalize(&w);
    return 2;
  }
  size_t n = (size_t)strtoull(argv[1], NULL, 10);
  int reps = argc > 2 ? atoi(argv[2]) : 50;
  if (reps < 1) reps = 1;
  const char *wname = argc > 3 ? argv[3] : "f32";
  wire_format wire = !strcmp(wname, "bf16")   ? WIRE_BF16
                     : !strcmp(wname, "fp16") ? WIRE_FP16
                                              : WIRE_F32;
  double gap_ms = argc > 4 ? atof(argv[4]) : 0.0;
  size_t n_raw = wire == WIRE_F32 ? n : n / 2; /* the same bytes */
  float *g = malloc(sizeof(float) * (n ? n : 1));
  reducer *r = NULL;
  reducer_opts o = {.overlap = 0, .wire = wire};
  if (!g || reducer_create(&r, &w, g, n, NULL, 0, &o) != 0) {
    fprintf(stderr, "bench_allreduce: out of memory or %s\n", comm_errmsg(&w));
    return 1;
  }
  double ar, ar_min, red, red_min;
  time_op(&w, reps, g, n_raw, NULL, gap_ms, &ar, &ar_min);
  time_op(&w, reps, reducer_arena(r), n, r, gap_ms, &red, &red_min);
  if (w.rank == 0)
    printf(
        "{\"floats\": %zu, \"ranks\": %d, \"allreduce_ms\": %.4f, \"allreduce_min_ms\": %.4f, "
        "\"reducer_ms\": %.4f, \"reducer_min_ms\": %.4f, \"reducer\": \"%s\", "
        "\"gbytes_per_s\": %.3f, \"wire\": \"%s\", \"raw_floats\": %zu}\n",
        n, w.size, ar * 1e3, ar_min * 1e3, red * 1e3, red_min * 1e3, reducer_method(r),
        ar > 0 ? 4.0 * (double)n_raw / ar / 1e9 : 0.0, wname, n_raw);
  reducer_free(r);
  free(g);
  comm_finalize(&w);
  return 0;
}
