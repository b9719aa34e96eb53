/* bench_ckpt — checkpoint write and read throughput and compression ratio
 * at several zstd levels, for a model of N parameters plus SGD momentum.
 * Driven by scripts/bench/ckpt.sh, which sets these figures beside the
 * zstd command line on the same bytes.
 *
 *   bench_ckpt DIR [N_PARAMS] [LEVEL...]
 *
 * Prints one JSON line per level and layout (plain, then byte-shuffled):
 * level, shuffle, raw and file bytes, ratio, write and read MB/s (of raw
 * tensor bytes). Also leaves DIR/plain.safetensors
 * (the uncompressed payload) for the command-line comparison. Values are
 * He-normal weights and small momentum, like a model in training: random
 * mantissas, so only the sign/exponent bytes compress.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"
#include "ms_error.h"
#include "sampler.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float normal(uint64_t key, uint64_t i) {
  uint64_t a = sampler_mix64(key ^ sampler_mix64(2 * i)), b = sampler_mix64(key ^ sampler_mix64(2 * i + 1));
  double u1 = ((a >> 11) + 1.0) * 0x1.0p-53, u2 = (b >> 11) * 0x1.0p-53;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_ckpt DIR [N_PARAMS] [LEVEL...]\n");
    return 2;
  }
  const char *dir = argv[1];
  long long n = argc > 2 ? atoll(argv[2]) : 50000000LL;
  int levels[16] = {1, 3, 9}, n_levels = 3;
  if (argc > 3) {
    n_levels = 0;
    for (int i = 3; i < argc && n_levels < 16; i++) levels[n_levels++] = atoi(argv[i]);
  }
  /* Square-ish layers of 4096 x 4096 until n parameters are placed. */
  enum { MAXT = 64 };
  ckpt_tensor t[2 * MAXT];
  char names[2 * MAXT][64];
  float *arena = malloc(sizeof(float) * 2 * (size_t)n);
  if (!arena) return 1;
  int nt = 0;
  long long off = 0;
  for (int layer = 0; off < n && layer < MAXT; layer++) {
    long long rows = 4096, cols = (n - off) / rows < 4096 ? (n - off) / rows : 4096;
    if (cols < 1) break;
    for (int k = 0; k < 2; k++) {
      ckpt_tensor *x = &t[nt];
      snprintf(names[nt], sizeof names[nt], "%slayers.%d.weight", k ? "optim/momentum/" : "", layer);
      x->name = names[nt];
      x->ndim = 2;
      x->shape[0] = rows, x->shape[1] = cols;
      x->data = arena + (k ? n : 0) + off;
      double std = k ? 1e-3 : sqrt(2.0 / (double)cols);
      for (long long i = 0; i < rows * cols; i++)
        x->data[i] = (float)std * normal((uint64_t)(layer * 2 + k + 1), (uint64_t)i);
      nt++;
    }
    off += rows * cols;
  }
  double raw = 2.0 * (double)off * sizeof(float);
  ckpt_meta meta = {.step = 1, .epoch = 0, .step_in_epoch = 1, .world_size = 1, .seed = 1,
                    .rng_state = 1, .layout_hash = 1, .config = "bench: true\n"};
  char *path = NULL;
  for (int run = 0; run < 2 * n_levels; run++) {
    int li = run / 2, shuffle = run % 2;
    meta.step = 2 * levels[li] + shuffle;
    meta.byte_shuffle = shuffle;
    double t0 = now_s();
    if (ckpt_write(dir, t, nt, &meta, levels[li], &path) != 0) {
      fprintf(stderr, "bench_ckpt: %s\n", ms_error_msg());
      return 1;
    }
    double tw = now_s() - t0;
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long long bytes = ftell(f);
    fclose(f);
    ckpt_meta back;
    t0 = now_s();
    if (ckpt_read(path, t, nt, 1, &back) != 0) {
      fprintf(stderr, "bench_ckpt: %s\n", ms_error_msg());
      return 1;
    }
    double tr = now_s() - t0;
    ckpt_meta_free(&back);
    printf("{\"level\":%d,\"shuffle\":%d,\"params\":%lld,\"raw_bytes\":%.0f,\"file_bytes\":%lld,\"ratio\":%.4f,"
           "\"write_MBps\":%.1f,\"read_MBps\":%.1f}\n",
           levels[li], shuffle, off, raw, bytes, raw / (double)bytes, raw / 1e6 / tw, raw / 1e6 / tr);
    fflush(stdout);
    if (run == 2 * n_levels - 1) {
      char plain[2048];
      snprintf(plain, sizeof plain, "%s/plain.safetensors", dir);
      if (ckpt_export(path, plain, NULL) != 0) {
        fprintf(stderr, "bench_ckpt: %s\n", ms_error_msg());
        return 1;
      }
    }
    remove(path);
    free(path);
    path = NULL;
  }
  free(arena);
  return 0;
}
