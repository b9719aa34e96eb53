/* token_dump — what each MPI rank's loader serves from a token set, for
 * tests/tools/token_windows.py to check against h5py and a reimplementation
 * of the sampler. The training program's data path without a model (the
 * layers that read token windows are not part of this test): the same
 * data_open_tokens, the same loader over the same sampler, one rank per
 * MPI process.
 *
 * usage: mpiexec -n W token_dump FILE DATASET SEQ_LEN STRIDE BATCH SEED STEPS OUTDIR
 *                   [--shuffle global|block|none] [--block-size K] [--window N]
 *                   [--start STEP] [--prefetch P]
 *
 * Reads global steps [START, STEPS) (epoch = step / steps per epoch), as a
 * run resumed at START does, and writes in OUTDIR, for rank R:
 *   rankR.txt    one line per step: "step epoch idx..." (this rank's windows)
 *   rankR.x.f32  the inputs of every step, (BATCH / W, SEQ_LEN) float32 each
 *   rankR.y.i32  the labels, (BATCH / W, SEQ_LEN) int32 each
 * Exit status 0, or 1 with a message on stderr. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "loader.h"
#include "sampler.h"

static int usage(void) {
  fprintf(stderr,
          "usage: token_dump FILE DATASET SEQ_LEN STRIDE BATCH SEED STEPS OUTDIR "
          "[--shuffle global|block|none] [--block-size K] [--window N] [--start STEP] "
          "[--prefetch P]\n");
  return 1;
}

/* Serves steps [start, steps) of the loader into the three files. */
static int dump(data_loader *l, uint64_t spe, uint64_t start, uint64_t steps, FILE *txt, FILE *xf,
                FILE *yf, size_t seq) {
  char err[DATA_ERRLEN];
  for (uint64_t g = start; g < steps; g++) {
    loader_batch b;
    if (loader_next(l, g / spe, g % spe, &b, err, sizeof err) != 0) {
      fprintf(stderr, "token_dump: step %llu: %s\n", (unsigned long long)g, err);
      return 1;
    }
    fprintf(txt, "%llu %llu", (unsigned long long)g, (unsigned long long)b.epoch);
    for (size_t i = 0; i < b.n; i++) fprintf(txt, " %llu", (unsigned long long)b.idx[i]);
    fputc('\n', txt);
    if (fwrite(b.x, sizeof *b.x, b.n * seq, xf) != b.n * seq ||
        fwrite(b.y, sizeof *b.y, b.n * seq, yf) != b.n * seq) {
      fprintf(stderr, "token_dump: cannot write the dump\n");
      return 1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, world, rc = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (argc < 9) {
    MPI_Finalize();
    return usage();
  }
  data_token_opts to = {.seq_len = strtoull(argv[3], NULL, 10),
                        .stride = strtoull(argv[4], NULL, 10)};
  loader_opts o = {.norm = data_norm_identity(),
                   .order = {.shuffle = SAMPLER_GLOBAL, .block_size = 0, .window = 16},
                   .seed = strtoull(argv[6], NULL, 10),
                   .global_batch = strtoull(argv[5], NULL, 10),
                   .world = world,
                   .rank = rank,
                   .prefetch = 2,
                   .class_labels = 1};
  uint64_t steps = strtoull(argv[7], NULL, 10), start = 0;
  for (int i = 9; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (strcmp(k, "--shuffle") == 0)
      o.order.shuffle = strcmp(v, "block") == 0  ? SAMPLER_BLOCK
                        : strcmp(v, "none") == 0 ? SAMPLER_NONE
                                                 : SAMPLER_GLOBAL;
    else if (strcmp(k, "--block-size") == 0)
      o.order.block_size = strtoull(v, NULL, 10);
    else if (strcmp(k, "--window") == 0)
      o.order.window = strtoull(v, NULL, 10);
    else if (strcmp(k, "--start") == 0)
      start = strtoull(v, NULL, 10);
    else if (strcmp(k, "--prefetch") == 0)
      o.prefetch = atoi(v);
    else {
      MPI_Finalize();
      return usage();
    }
  }
  char err[DATA_ERRLEN], path[3][4096];
  data_set *ds = NULL;
  data_loader *l = NULL;
  FILE *f[3] = {NULL, NULL, NULL};
  static const char *const ext[3] = {"txt", "x.f32", "y.i32"};
  if (data_open_tokens(&ds, argv[1], argv[2], &to, (size_t)1 << 30, err, sizeof err) != 0) {
    fprintf(stderr, "token_dump: %s\n", err);
    goto out;
  }
  o.ds = ds;
  o.end_step = steps;
  if (loader_create(&l, &o, err, sizeof err) != 0) {
    fprintf(stderr, "token_dump: %s\n", err);
    goto out;
  }
  for (int i = 0; i < 3; i++) {
    snprintf(path[i], sizeof path[i], "%s/rank%d.%s", argv[8], rank, ext[i]);
    if (!(f[i] = fopen(path[i], "wb"))) {
      fprintf(stderr, "token_dump: cannot write %s\n", path[i]);
      goto out;
    }
  }
  uint64_t spe = sampler_steps_per_epoch(data_count(ds), o.global_batch);
  rc = dump(l, spe, start, steps, f[0], f[1], f[2], data_sample_elems(ds));
out:
  for (int i = 0; i < 3; i++)
    if (f[i] && fclose(f[i]) != 0) rc = 1;
  loader_free(l);
  data_close(ds);
  int all = rc;
  MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return all;
}
