/* bench_overlap — can a gradient sync progress while backward computes,
 * across hosts (issue 15)? 2 ranks (one per host). For each size, the
 * median over REPS of:
 *   block     one blocking MPI_Allreduce alone (the cost to hide)
 *   seq       compute C ms, then the blocking MPI_Allreduce (overlap off)
 *   nb        MPI_Iallreduce, compute C ms in 1 ms slices with an MPI_Test
 *             between slices, MPI_Wait (overlap through MPI's progress)
 *   thread    a comm thread runs the blocking exchange the hierarchical
 *             path uses at 2 nodes (send half / receive half, add, send the
 *             sum back: point-to-point on its own communicator) while this
 *             thread computes C ms and makes no MPI call, then joins it
 * C is the median of block, so a perfect overlap gives seq / 2.
 * Prints one JSON line per size. Requested thread level: argv[3]
 * (multiple | serialized; default serialized), the one provided is printed.
 *   mpirun -np 2 bench_overlap [MB_LIST] [REPS] [LEVEL]
 */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { return MPI_Wtime(); }

static volatile float sink;

/* Busy arithmetic for ms milliseconds (what backward would do). */
static void compute(double ms) {
  static float a[4096];
  double end = now() + ms / 1e3;
  while (now() < end)
    for (int i = 0; i < 4096; i++) a[i] = a[i] * 0.999f + 1.0f;
  sink = a[7];
}

typedef struct {
  float *x, *tmp;
  size_t n;
  int peer, me;
  MPI_Comm c;
} job;

/* The 2-node ring: reduce-scatter of halves, then allgather. */
static void *ring2(void *p) {
  job *j = p;
  size_t h = j->n / 2;
  size_t mine = j->me == 0 ? 0 : h, mlen = j->me == 0 ? h : j->n - h;
  size_t other = j->me == 0 ? h : 0, olen = j->n - mlen;
  MPI_Sendrecv(j->x + other, (int)olen, MPI_FLOAT, j->peer, 0, j->tmp, (int)mlen, MPI_FLOAT,
               j->peer, 0, j->c, MPI_STATUS_IGNORE);
  for (size_t i = 0; i < mlen; i++) j->x[mine + i] += j->tmp[i];
  MPI_Sendrecv(j->x + mine, (int)mlen, MPI_FLOAT, j->peer, 1, j->x + other, (int)olen, MPI_FLOAT,
               j->peer, 1, j->c, MPI_STATUS_IGNORE);
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
  const char *list = argc > 1 ? argv[1] : "1,2,4,8";
  int reps = argc > 2 ? atoi(argv[2]) : 7;
  int want =
      argc > 3 && strcmp(argv[3], "multiple") == 0 ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED;
  int provided = 0, me, P;
  MPI_Init_thread(&argc, &argv, want, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  if (P != 2 || provided < MPI_THREAD_SERIALIZED || reps < 1) {
    if (me == 0) fprintf(stderr, "bench_overlap: 2 ranks, thread level >= serialized\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Comm tc;
  MPI_Comm_dup(MPI_COMM_WORLD, &tc);
  char *copy = strdup(list);
  for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
    double mb = atof(tok);
    size_t n = (size_t)(mb * 1048576.0 / sizeof(float));
    float *x = malloc(n * sizeof *x), *tmp = malloc(n * sizeof *tmp);
    double *t = malloc(sizeof *t * 4 * (size_t)reps);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); /* warm-up */
    for (int r = 0; r < reps; r++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = now();
      MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      t[r] = now() - t0;
    }
    double block = median(t, reps), c_ms = block * 1e3;
    for (int r = 0; r < reps; r++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = now();
      compute(c_ms);
      MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      t[reps + r] = now() - t0;

      MPI_Barrier(MPI_COMM_WORLD);
      t0 = now();
      MPI_Request req;
      MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
      for (double done = 0; done < c_ms; done += 1.0) {
        int flag;
        compute(c_ms - done < 1.0 ? c_ms - done : 1.0);
        MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
      }
      MPI_Wait(&req, MPI_STATUS_IGNORE);
      t[2 * reps + r] = now() - t0;

      MPI_Barrier(MPI_COMM_WORLD);
      t0 = now();
      job j = {x, tmp, n, 1 - me, me, tc};
      pthread_t th;
      pthread_create(&th, NULL, ring2, &j);
      compute(c_ms);
      pthread_join(th, NULL);
      t[3 * reps + r] = now() - t0;
    }
    if (me == 0)
      printf(
          "{\"bench\":\"overlap\",\"mb\":%.2f,\"reps\":%d,\"thread_level\":\"%s\","
          "\"block_ms\":%.2f,\"seq_ms\":%.2f,\"nb_ms\":%.2f,\"thread_ms\":%.2f}\n",
          mb, reps, provided == MPI_THREAD_MULTIPLE ? "multiple" : "serialized", block * 1e3,
          median(t + reps, reps) * 1e3, median(t + 2 * reps, reps) * 1e3,
          median(t + 3 * reps, reps) * 1e3);
    fflush(stdout);
    free(x), free(tmp), free(t);
  }
  free(copy);
  MPI_Comm_free(&tc);
  MPI_Finalize();
  return 0;
}
