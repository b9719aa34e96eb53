/* bench_seq — where a transformer step goes: times a whole forward +
 * backward of a language model (by default configs/char_lm.yaml's: 4
 * blocks, width 128, 4 heads, context 128, vocab 256, tied head) and each
 * kernel of one block at the same shapes, on one thread.
 *
 * Times are the CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID),
 * best of REPEATS: BLAS runs on that thread, and on a machine shared with
 * other jobs the wall clock mostly measures them. Run with the
 * OPENBLAS_CORETYPE that `midscale train` prints (it sets it itself; this
 * driver does not).
 *
 * usage: bench_seq [BATCH [REPEATS]]     (defaults 16, 5)
 * Prints one JSON object per line: {"what": ..., "ms": ..., "gflops": ...}
 * (gflops where the part has products). Results: scripts/bench/results/seq.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "kernels.h"
#include "layers.h"
#include "layers_seq.h"
#include "model.h"

enum { T = 128, D = 128, H = 4, V = 256, BLOCKS = 4 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void report(const char *what, double s, double flops) {
  printf("{\"what\": \"%s\", \"ms\": %.3f", what, 1e3 * s);
  if (flops > 0) printf(", \"gflops\": %.2f", flops / s / 1e9);
  printf("}\n");
}

static float *buf(long n) {
  float *p = malloc(sizeof(float) * (size_t)n);
  if (!p) {
    fprintf(stderr, "bench_seq: out of memory\n");
    exit(1);
  }
  for (long i = 0; i < n; i++) p[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  return p;
}

/* The whole model, forward + backward with the sequence loss. */
static void bench_model(int B, int reps) {
  static ms_config cfg;
  ms_layer_cfg *l = cfg.model.layers;
  for (int i = 0; i < BLOCKS + 4; i++) l[i] = (ms_layer_cfg){.eps = 1e-5, .causal = 1};
  l[0].type = MS_LAYER_EMBEDDING, l[0].vocab = V, l[0].dim = D;
  l[1].type = MS_LAYER_POS_EMBEDDING;
  for (int i = 2; i < 2 + BLOCKS; i++) l[i].type = MS_LAYER_TRANSFORMER_BLOCK, l[i].heads = H;
  l[2 + BLOCKS].type = MS_LAYER_LAYERNORM;
  l[3 + BLOCKS].type = MS_LAYER_DENSE, l[3 + BLOCKS].units = V;
  cfg.model.n_layers = BLOCKS + 4;
  cfg.model.tie_embeddings = 1;
  int64_t in[1] = {T};
  ms_model *m = NULL;
  if (model_create(&m, &cfg, in, 1, B)) exit(1);
  model_init(m, 1);
  float *x = buf((long)B * T), *dl = buf((long)B * T * V);
  int32_t *y = malloc(sizeof(int32_t) * (size_t)B * T);
  for (long i = 0; i < (long)B * T; i++) x[i] = (float)(i * 31 % V), y[i] = (int32_t)(i * 17 % V);
  double best_f = 1e30, best_b = 1e30, best_l = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    const float *out = model_forward(m, x, B, NULL);
    double t1 = now();
    seq_xent(dl, out, y, B, T, V, 1.0f / B, NULL);
    double t2 = now();
    model_backward(m, dl, NULL, NULL, NULL);
    double t3 = now();
    best_f = t1 - t0 < best_f ? t1 - t0 : best_f;
    best_b = t3 - t2 < best_b ? t3 - t2 : best_b;
    best_l = t2 - t1 < best_l ? t2 - t1 : best_l;
  }
  double f = model_flops_per_sample(m) * B;
  report("model forward", best_f, f);
  report("model backward", best_b, 2 * f);
  report("model step (forward + backward)", best_f + best_b, 3 * f);
  report("sequence loss, value and gradient (not in the step)", best_l, 0);
  printf("{\"what\": \"tokens/s\", \"value\": %.0f}\n", (double)B * T / (best_f + best_b));
  model_free(m);
  free(x), free(dl), free(y);
}

/* One block's kernels at the model's shapes: the best of reps runs each. */
static void bench_kernels(int B, int reps) {
  const long BT = (long)B * T, Hd = 4 * D;
  float *x = buf(BT * D), *h = buf(BT * D), *qkv = buf(BT * 3 * D), *att = buf((long)B * H * T * T);
  float *y = buf(BT * D), *f = buf(BT * Hd), *g = buf(BT * Hd), *wq = buf(3 * D * D);
  float *bq = buf(3 * D), *wf = buf(Hd * D), *bf = buf(Hd), *mean = buf(BT), *rstd = buf(BT);
  float *gam = buf(D), *bet = buf(D), *dq = buf(BT * 3 * D), *dwq = buf(3 * D * D);
  float *dbq = buf(3 * D), *dwf = buf(Hd * D), *dbf = buf(Hd), *dx = buf(BT * D);
  float *tt = buf(attention_scratch(T, D, H));
#define TIME(name, flops, stmt)                              \
  do {                                                       \
    double best = 1e30;                                      \
    for (int r = 0; r < reps; r++) {                         \
      double t0 = now();                                     \
      stmt;                                                  \
      double dt = now() - t0;                                \
      best = dt < best ? dt : best;                          \
    }                                                        \
    report(name, best, flops);                               \
  } while (0)
  TIME("layernorm (layers.h) forward", 0,
       layernorm_forward(h, mean, rstd, x, gam, bet, (int)BT, D, 1e-5f));
  TIME("layernorm (layers.h) backward", 0,
       layernorm_backward(dx, gam, bet, y, x, mean, rstd, gam, (int)BT, D));
  TIME("layernorm_seq forward", 0,
       layernorm_seq_forward(h, mean, rstd, x, gam, bet, (int)BT, D, 1e-5f));
  TIME("layernorm_seq backward", 0,
       layernorm_seq_backward(dx, gam, bet, y, x, mean, rstd, gam, (int)BT, D));
  TIME("qkv dense forward", 2.0 * BT * D * 3 * D, dense_forward(qkv, h, wq, bq, (int)BT, D, 3 * D));
  TIME("qkv dense backward", 4.0 * BT * D * 3 * D,
       dense_backward(dx, dwq, dbq, dq, h, wq, (int)BT, D, 3 * D));
  /* Attention on inputs of its own: the products above leave values in qkv
   * whose softmax runs into denormals, which no trained model feeds it. */
  float *aq = buf(BT * 3 * D), *ay = buf(BT * D);
  TIME("attention forward (causal)", 4.0 * B * T * T * D,
       attention_forward(ay, att, aq, B, T, D, H, 1, tt));
  TIME("attention backward", 8.0 * B * T * T * D,
       attention_backward(dq, ay, aq, att, B, T, D, H, 1, tt));
  TIME("attention forward (full)", 4.0 * B * T * T * D,
       attention_forward(ay, att, aq, B, T, D, H, 0, tt));
  TIME("attention backward (full)", 8.0 * B * T * T * D,
       attention_backward(dq, ay, aq, att, B, T, D, H, 0, tt));
  for (long i = 0; i < BT * 3 * D; i++) aq[i] *= 40.0f; /* peaked: scores far apart */
  TIME("attention forward (causal), peaked scores", 4.0 * B * T * T * D,
       attention_forward(ay, att, aq, B, T, D, H, 1, tt));
  TIME("attention backward, peaked scores", 8.0 * B * T * T * D,
       attention_backward(dq, ay, aq, att, B, T, D, H, 1, tt));
  free(aq), free(ay);
  TIME("mlp fc dense forward", 2.0 * BT * D * Hd, dense_forward(f, h, wf, bf, (int)BT, D, (int)Hd));
  TIME("mlp fc dense backward", 4.0 * BT * D * Hd,
       dense_backward(dx, dwf, dbf, g, h, wf, (int)BT, D, (int)Hd));
  TIME("gelu libm forward", 0, gelu_forward(g, f, BT * Hd));
  TIME("gelu libm backward", 0, gelu_backward(g, g, f, BT * Hd));
  TIME("gelu fast forward", 0, gelu_fast_forward(g, f, BT * Hd));
  TIME("gelu fast backward", 0, gelu_fast_backward(g, g, f, BT * Hd));
  float *sl = buf(BT * Hd);
  TIME("gelu fast forward keeping the slope", 0, gelu_fast_forward_grad(g, sl, f, BT * Hd));
  TIME("gelu fast backward from the slope", 0, gelu_fast_backward_grad(g, g, sl, BT * Hd));
  free(sl);
#undef TIME
  float *all[] = {x, h, qkv, att, y, f, g, wq, bq, wf, bf, mean, rstd, gam, bet, dq, dwq, dbq,
                  dwf, dbf, tt, dx};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

int main(int argc, char **argv) {
  int B = argc > 1 ? atoi(argv[1]) : 16, reps = argc > 2 ? atoi(argv[2]) : 5;
  if (B < 1 || reps < 1) {
    fprintf(stderr, "usage: bench_seq [BATCH [REPEATS]]\n");
    return 1;
  }
  blas_set_threads(1);
  printf("{\"what\": \"config\", \"batch\": %d, \"T\": %d, \"D\": %d, \"heads\": %d, "
         "\"blocks\": %d, \"vocab\": %d, \"sgemm_peak_gflops\": %.1f}\n",
         B, T, D, H, BLOCKS, V, blas_sgemm_peak() / 1e9);
  bench_model(B, reps);
  bench_kernels(B, reps);
  return 0;
}
