/* bench_dense — one dense layer's step (forward, backward weights, backward
 * data) through the three kernels midscale has, interleaved in one run:
 * OpenBLAS sgemm (kernels.h), oneDNN matmul fp32 and oneDNN matmul bf16
 * (dnn.h); then the same for the conv2d layers of
 * configs/fashion_mnist_cnn.yaml and two of 4 and 8 input channels (im2col + OpenBLAS sgemm, layers.h, against
 * oneDNN convolutions). One thread. Run by scripts/bench/kernels.sh; prints
 * one line per shape: the median GFLOP/s of each kernel over --reps rounds,
 * and the ratios to OpenBLAS.
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
#include "layers.h"

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
  if (inner > 1000) inner = 1000;
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

/* ---- conv2d ---------------------------------------------------------------------- */

typedef struct {
  ms_conv2d g;
  int B;
  float *x, *w, *b, *y, *dy, *dx, *dw, *db, *scratch;
} cbufs;

static double cstep(int k, cbufs *u, dnn_conv *f32, dnn_conv *b16) {
  double t = now_s();
  if (k == 0) {
    conv2d_forward(u->y, u->x, u->w, u->b, &u->g, u->B, u->scratch);
    conv2d_backward(u->dx, u->dw, u->db, u->dy, u->x, u->w, &u->g, u->B, u->scratch);
  } else {
    dnn_conv *c = k == 1 ? f32 : b16;
    if (dnn_conv_forward(c, u->y, u->x, u->w, u->b, u->B) ||
        dnn_conv_backward(c, u->dx, u->dw, u->db, u->dy, u->x, u->w, u->B)) {
      fprintf(stderr, "bench_dense: oneDNN failed\n");
      exit(1);
    }
  }
  return now_s() - t;
}

static float *filled(long n) {
  float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!p) exit(1);
  for (long i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  return p;
}

static void bench_conv(ms_conv2d g, int B, int reps) {
  if (conv2d_geometry(&g)) exit(1);
  cbufs u = {.g = g, .B = B};
  long nx = (long)B * g.C * g.H * g.W, nw = (long)g.OC * g.C * g.KH * g.KW;
  long ny = (long)B * g.OC * g.OH * g.OW;
  u.x = filled(nx), u.dx = filled(nx), u.w = filled(nw), u.dw = filled(nw), u.y = filled(ny);
  u.dy = filled(ny), u.b = filled(g.OC), u.db = filled(g.OC);
  u.scratch = filled(conv2d_scratch_floats(&g, B));
  dnn_conv *f32, *b16;
  if (dnn_conv_create(&f32, &g, B, DNN_FP32) || dnn_conv_create(&b16, &g, B, DNN_BF16)) exit(1);
  double t[KERNELS][MAX_REPS];
  for (int k = 0; k < KERNELS; k++) cstep(k, &u, f32, b16);
  double flops = 3 * 2.0 * (double)ny * g.C * g.KH * g.KW;
  int inner = (int)(5e-3 / (flops / 50e9)) + 1;
  if (inner > 1000) inner = 1000;
  for (int r = 0; r < reps; r++)
    for (int k = 0; k < KERNELS; k++) {
      double s = 0;
      for (int i = 0; i < inner; i++) s += cstep(k, &u, f32, b16);
      t[k][r] = s / inner;
    }
  double med[KERNELS];
  for (int k = 0; k < KERNELS; k++) {
    qsort(t[k], (size_t)reps, sizeof(double), cmp);
    med[k] = t[k][reps / 2];
  }
  printf(
      "conv B=%d C=%d HxW=%dx%d OC=%d K=%dx%d openblas_gflops=%.1f onednn_fp32_gflops=%.1f "
      "onednn_bf16_gflops=%.1f fp32_vs_openblas=%.2f bf16_vs_openblas=%.2f impl_fp32=%s "
      "impl_bf16=%s\n",
      B, g.C, g.H, g.W, g.OC, g.KH, g.KW, flops / med[0] / 1e9, flops / med[1] / 1e9,
      flops / med[2] / 1e9, med[0] / med[1], med[0] / med[2], dnn_conv_impl(f32),
      dnn_conv_impl(b16));
  fflush(stdout);
  dnn_conv_free(f32), dnn_conv_free(b16);
  free(u.x), free(u.dx), free(u.w), free(u.dw), free(u.y), free(u.dy), free(u.b), free(u.db);
  free(u.scratch);
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
    /* The CNN's two conv2d layers, then 4 and 8 input channels at the
     * second one's size: the neighbourhood of model.conv_kernel auto's
     * threshold (oneDNN from 8 input channels, model.c). */
    static const int convs[][4] = {{1, 28, 16}, {16, 14, 32}, {4, 14, 32}, {8, 14, 32}};
    for (size_t s = 0; s < sizeof convs / sizeof convs[0]; s++)
      bench_conv((ms_conv2d){.C = convs[s][0], .H = convs[s][1], .W = convs[s][1],
                             .OC = convs[s][2], .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PH = 1,
                             .PW = 1},
                 64, reps);
  }
  for (; a + 2 < argc; a += 3) bench(atoi(argv[a]), atoi(argv[a + 1]), atoi(argv[a + 2]), reps);
  return 0;
}
