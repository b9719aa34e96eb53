/* bench_dense — one dense layer's step (forward, backward weights, backward
 * data) through the three kernels midscale has, interleaved in one run:
 * OpenBLAS sgemm (kernels.h), oneDNN matmul fp32 and oneDNN matmul bf16
 * (dnn.h). One thread. Run by scripts/bench/kernels.sh; prints one line per
 * shape: the median GFLOP/s of each kernel over --reps rounds, and the
 * ratios to OpenBLAS.
 *
 *   bench_dense [--reps R] [--threads T] [B C OC]...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "dnn.h"
#include "kernels.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

enum { KERNELS = 3, MAX_REPS = 201 };

typedef struct {
  int B, C, OC;
  float *x, *w, *b, *out, *dout, *dinp, *dw, *db;
} bufs;

/* One step of kernel k; returns its seconds. */
static double step(int k, bufs *u, dnn_dense *f32, dnn_dense *b16) {
  double t = now_s();
  if (k == 0) {
    dense_forward(u->out, u->x, u->w, u->b, u->B, u->C, u->OC);
    dense_backward(u->dinp, u->dw, u->db, u->dout, u->x, u->w, u->B, u->C, u->OC);
  } else {
    dnn_dense *d = k == 1 ? f32 : b16;
    if (dnn_dense_forward(d, u->out, u->x, u->w, u->b, u->B) ||
        dnn_dense_backward(d, u->dinp, u->dw, u->db, u->dout, u->x, u->w, u->B)) {
      fprintf(stderr, "bench_dense: oneDNN failed\n");
      exit(1);
    }
  }
  return now_s() - t;
}

static void bench(int B, int C, int OC, int reps) {
  bufs u = {.B = B, .C = C, .OC = OC};
  size_t n =
      (size_t)B * C + (size_t)OC * C * 2 + (size_t)OC * 2 + (size_t)B * OC * 2 + (size_t)B * C;
  float *mem = malloc(sizeof(float) * n);
  if (!mem) exit(1);
  for (size_t i = 0; i < n; i++) mem[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  u.x = mem, u.w = u.x + (size_t)B * C, u.dw = u.w + (size_t)OC * C, u.b = u.dw + (size_t)OC * C;
  u.db = u.b + OC, u.out = u.db + OC, u.dout = u.out + (size_t)B * OC;
  u.dinp = u.dout + (size_t)B * OC;
  dnn_dense *f32, *b16;
  if (dnn_dense_create(&f32, C, OC, B, DNN_FP32) || dnn_dense_create(&b16, C, OC, B, DNN_BF16))
    exit(1);
  double t[KERNELS][MAX_REPS];
  for (int k = 0; k < KERNELS; k++) step(k, &u, f32, b16); /* primitives made, caches warm */
  /* Each round times the three kernels back to back, so that a change of
   * machine load hits them alike. A round is several steps of >= ~5 ms. */
  double flops = 3 * 2.0 * B * C * OC;
  int inner = (int)(5e-3 / (flops / 100e9)) + 1;
  for (int r = 0; r < reps; r++)
    for (int k = 0; k < KERNELS; k++) {
      double s = 0;
      for (int i = 0; i < inner; i++) s += step(k, &u, f32, b16);
      t[k][r] = s / inner;
    }
  double med[KERNELS];
  for (int k = 0; k < KERNELS; k++) {
    qsort(t[k], (size_t)reps, sizeof(double), cmp);
    med[k] = t[k][reps / 2];
  }
  printf(
      "B=%d C=%d OC=%d openblas_gflops=%.1f onednn_fp32_gflops=%.1f onednn_bf16_gflops=%.1f "
      "fp32_vs_openblas=%.2f bf16_vs_openblas=%.2f impl_fp32=%s impl_bf16=%s\n",
      B, C, OC, flops / med[0] / 1e9, flops / med[1] / 1e9, flops / med[2] / 1e9, med[0] / med[1],
      med[0] / med[2], dnn_dense_impl(f32), dnn_dense_impl(b16));
  fflush(stdout);
  dnn_dense_free(f32), dnn_dense_free(b16);
  free(mem);
}

int main(int argc, char **argv) {
  int reps = 21, threads = 1, a = 1;
  for (; a + 1 < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
    if (strcmp(argv[a], "--reps") == 0)
      reps = atoi(argv[a + 1]);
    else if (strcmp(argv[a], "--threads") == 0)
      threads = atoi(argv[a + 1]);
  }
  if (reps < 1 || reps > MAX_REPS || threads < 1) {
    fprintf(stderr, "usage: bench_dense [--reps R<=%d] [--threads T] [B C OC]...\n", MAX_REPS);
    return 2;
  }
  blas_set_threads(threads);
  dnn_set_threads(threads);
  printf("# blas core %s, oneDNN ISA %s, bf16 native %d, threads %d, reps %d\n", blas_corename(),
         dnn_isa_name(), dnn_bf16_native(), threads, reps);
  if (a >= argc) {
    static const int shapes[][3] = {{64, 784, 256},   {64, 256, 256},    {64, 256, 10},
                                    {256, 784, 1024}, {256, 1024, 1024}, {256, 1024, 10}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      bench(shapes[s][0], shapes[s][1], shapes[s][2], reps);
  }
  for (; a + 2 < argc; a += 3) bench(atoi(argv[a]), atoi(argv[a + 1]), atoi(argv[a + 2]), reps);
  return 0;
}
