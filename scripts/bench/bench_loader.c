/* bench_loader — samples/s of data/loader alone (no model, no MPI): one
 * rank's loader over an HDF5 file, the consumer taking batches as fast as
 * they come. Run by scripts/bench/loader.sh; prints one line of key=value
 * pairs.
 *
 *   bench_loader FILE [--x DATASET] [--y DATASET] [--shuffle global|block|none]
 *                [--cache auto|memory|stream] [--batch B] [--prefetch P]
 *                [--block-size K] [--window W] [--budget BYTES] [--seconds T]
 *                [--max-steps S] [--seed N] [--compute-ms C]
 *
 * It opens the set (timed: in memory mode this is the load), then calls
 * loader_next for consecutive steps from (epoch 0, step 0) until T seconds
 * or S steps have passed, and reports the samples per second of that loop.
 * Streamed, the HDF5 chunk cache is --budget bytes (the trainer uses its
 * 2 GiB per-rank budget), and it starts empty. --compute-ms C makes the
 * consumer spin C ms per batch, as a training step would compute; wait_s is
 * then the time spent in loader_next (the trainer's data time), and
 * first_wait_s the part of it spent on the first batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "loader.h"
#include "sampler.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The benchmark's own option names (the trainer reads them from the config:
 * data.shuffle, data.cache), in the order of sampler_shuffle and data_cache. */
static const char *const shuffle_names[] = {"global", "block", "none", NULL};
static const char *const cache_names[] = {"auto", "memory", "stream", NULL};

static int name_index(const char *name, const char *const *names, int *out) {
  for (int i = 0; names[i]; i++)
    if (strcmp(name, names[i]) == 0) return *out = i, 0;
  return -1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: bench_loader FILE [--x DATASET] [--y DATASET] [--shuffle global|block|none]\n"
          "       [--cache auto|memory|stream] [--batch B] [--prefetch P] [--block-size K]\n"
          "       [--window W] [--budget BYTES] [--seconds T] [--max-steps S] [--seed N]\n"
          "       [--compute-ms C]\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *path = argv[1], *xn = "/train/images", *yn = "/train/labels";
  const char *shuffle = "global", *cache = "stream";
  long long batch = 128, prefetch = 2, block = 0, window = 16, max_steps = 0;
  unsigned long long seed = 42;
  double budget = 2.0 * 1024 * 1024 * 1024, seconds = 10, compute_ms = 0;
  for (int i = 2; i < argc; i++) {
    if (i + 1 >= argc) return usage();
    const char *k = argv[i], *v = argv[++i];
    if (!strcmp(k, "--x"))
      xn = v;
    else if (!strcmp(k, "--y"))
      yn = v;
    else if (!strcmp(k, "--shuffle"))
      shuffle = v;
    else if (!strcmp(k, "--cache"))
      cache = v;
    else if (!strcmp(k, "--batch"))
      batch = atoll(v);
    else if (!strcmp(k, "--prefetch"))
      prefetch = atoll(v);
    else if (!strcmp(k, "--block-size"))
      block = atoll(v);
    else if (!strcmp(k, "--window"))
      window = atoll(v);
    else if (!strcmp(k, "--budget"))
      budget = atof(v);
    else if (!strcmp(k, "--seconds"))
      seconds = atof(v);
    else if (!strcmp(k, "--max-steps"))
      max_steps = atoll(v);
    else if (!strcmp(k, "--seed"))
      seed = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--compute-ms"))
      compute_ms = atof(v);
    else
      return usage();
  }
  loader_opts o = {.norm = data_norm_identity(),
                   .order = {.block_size = (uint64_t)block, .window = (uint64_t)window},
                   .seed = seed,
                   .global_batch = (uint64_t)batch,
                   .world = 1,
                   .rank = 0,
                   .prefetch = (int)prefetch,
                   .class_labels = 1};
  data_cache mode;
  int i_shuffle = 0, i_cache = 0;
  if (name_index(shuffle, shuffle_names, &i_shuffle) < 0 ||
      name_index(cache, cache_names, &i_cache) < 0)
    return usage();
  o.order.shuffle = (sampler_shuffle)i_shuffle;
  mode = (data_cache)i_cache;
  o.norm.scale = 1.0f / 255.0f;
  char err[1024];
  double t0 = now_s();
  if (data_open_cached(&o.ds, path, xn, yn, (size_t)budget, mode, err, sizeof err) < 0) {
    fprintf(stderr, "bench_loader: %s\n", err);
    return 3;
  }
  double t_open = now_s() - t0;
  data_loader *l = NULL;
  if (loader_create(&l, &o, err, sizeof err) < 0) {
    fprintf(stderr, "bench_loader: %s\n", err);
    data_close(o.ds);
    return 3;
  }
  uint64_t spe = sampler_steps_per_epoch(data_count(o.ds), (uint64_t)batch);
  loader_batch b;
  double sink = 0, wait = 0, first_wait = 0;
  long long steps = 0;
  t0 = now_s();
  double t = t0;
  while ((max_steps == 0 || steps < max_steps) && t - t0 < seconds) {
    double w0 = now_s();
    if (loader_next(l, (uint64_t)steps / spe, (uint64_t)steps % spe, &b, err, sizeof err) < 0) {
      fprintf(stderr, "bench_loader: %s\n", err);
      loader_free(l);
      data_close(o.ds);
      return 3;
    }
    double w1 = now_s();
    wait += w1 - w0;
    if (steps == 0) first_wait = w1 - w0;
    sink += b.x[0] + b.x[b.n * data_sample_elems(o.ds) - 1]; /* touch the batch */
    while (now_s() - w1 < compute_ms * 1e-3) sink += 1e-9;
    steps++;
    t = now_s();
  }
  double dt = t - t0;
  printf(
      "shuffle=%s cache=%s in_memory=%d prefetch=%lld batch=%lld block=%llu window=%lld "
      "open_s=%.3f steps=%lld seconds=%.3f samples_per_s=%.0f wait_s=%.3f first_wait_s=%.3f "
      "sink=%g\n",
      shuffle, cache, data_in_memory(o.ds), prefetch, batch,
      (unsigned long long)loader_block_size(l), window, t_open, steps, dt,
      dt > 0 ? (double)steps * (double)batch / dt : 0.0, wait, first_wait, sink);
  loader_free(l);
  data_close(o.ds);
  return 0;
}
