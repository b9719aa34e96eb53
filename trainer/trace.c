/* trace — see trace.h. */
#include "trace.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define DEFAULT_FLOAT_STEPS 8

static struct {
  int state; /* 0 not looked at yet, 1 on, -1 off */
  FILE *txt, *sum, *f32;
  long float_steps;
} g;

static void close_all(void) {
  if (g.txt) fclose(g.txt);
  if (g.sum) fclose(g.sum);
  if (g.f32) fclose(g.f32);
  g.txt = g.sum = g.f32 = NULL;
}

static FILE *open_one(const char *dir, int rank, const char *ext, const char *mode) {
  char path[4096];
  snprintf(path, sizeof path, "%s/rank%d.%s", dir, rank, ext);
  return fopen(path, mode);
}

static void start(int rank) {
  const char *dir = getenv("MIDSCALE_TRACE_SAMPLES");
  g.state = -1;
  if (!dir || !*dir) return;
  const char *steps = getenv("MIDSCALE_TRACE_FLOAT_STEPS");
  g.float_steps = steps && *steps ? strtol(steps, NULL, 10) : DEFAULT_FLOAT_STEPS;
  g.txt = open_one(dir, rank, "txt", "w");
  g.sum = open_one(dir, rank, "sum", "w");
  g.f32 = open_one(dir, rank, "f32", "wb");
  if (!g.txt || !g.sum || !g.f32) {
    fprintf(stderr, "midscale: warning: MIDSCALE_TRACE_SAMPLES: cannot write in '%s'; no trace\n",
            dir);
    close_all();
    return;
  }
  atexit(close_all);
  g.state = 1;
}

void trace_samples(int rank, int64_t step, int64_t epoch, const uint64_t *idx, size_t n,
                   const float *x, size_t elems) {
  if (g.state == 0) start(rank);
  if (g.state < 0) return;
  fprintf(g.txt, "%lld %lld", (long long)step, (long long)epoch);
  for (size_t i = 0; i < n; i++) fprintf(g.txt, " %" PRIu64, idx[i]);
  fputc('\n', g.txt);
  fprintf(g.sum, "%lld %016" PRIx64 "\n", (long long)step,
          hash_fnv1a(HASH_FNV_OFFSET, x, n * elems * sizeof *x));
  if (step < g.float_steps) fwrite(x, sizeof *x, n * elems, g.f32);
  fflush(g.txt);
  fflush(g.sum);
  fflush(g.f32);
}
