/* `midscale predict`: the model's outputs for every sample of an HDF5
 * dataset, in the input's order, into a new HDF5 file. Each rank computes
 * the contiguous range of rows evaluation gives it (sampler_eval_range)
 * and, with a parallel HDF5, writes them into the shared file itself;
 * with a serial HDF5 rank 0 gathers and writes every row. The file is
 * written under a temporary name and renamed once complete, so OUT.h5 is
 * either the old file or the whole new one. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cmd.h"
#include "h5write.h"
#include "infer.h"
#include "ms_error.h"
#include "sampler.h"

const char cmd_predict_usage[] =
    "usage: [mpirun -np N] midscale predict CONFIG CHECKPOINT INPUT.h5:DATASET OUT.h5\n"
    "                                      [--force] [--probs] [--set KEY=VALUE]...\n"
    "\n"
    "Runs the model CONFIG describes, with the parameters of CHECKPOINT, on every\n"
    "sample of DATASET (inputs only: no labels needed; normalised by data.scale,\n"
    "data.mean and data.std as in training) and writes its outputs to OUT.h5, row\n"
    "i for sample i:\n"
    "\n"
    "  softmax_cross_entropy  /logits (N, K) float32, or /probabilities with\n"
    "                         --probs (the softmax), and /argmax (N,) int32\n"
    "  bce_with_logits        /logits (N, K), or /probabilities (the sigmoid)\n"
    "  mse, mae               /outputs (N, K) (--probs is refused)\n"
    "\n"
    "The root group's attribute 'source' names the checkpoint, its step and the\n"
    "input. The ranks share the rows and, with a parallel HDF5 (this build: see\n"
    "'midscale --version'), write them into one file through MPI-IO; with a\n"
    "serial HDF5 rank 0 writes them all. The file is written as OUT.h5.tmp and\n"
    "renamed when complete; an existing OUT.h5 is refused unless --force.\n"
    "--set KEY=VALUE overrides a config key, as for train (repeatable).\n"
    "\n"
    "exit codes: 0 done, 2 usage or config error (OUT.h5 exists, OUT.h5 is the\n"
    "            input), 3 data error (a missing dataset, a feature count that\n"
    "            is not the model's), 4 checkpoint error (damaged, or made for\n"
    "            another model), 1 the output could not be written\n";

typedef struct {
  const char *config, *ckpt, *input, *out;
  int force, probs;
  const char *overrides[CMD_MAX_OVERRIDES];
  int n_overrides;
} predict_args;

/* What the file holds for this model. */
typedef struct {
  h5write_set sets[2];
  int n_sets;  /* 1, or 2 with argmax */
  int softmax; /* --probs of a softmax classifier */
  int sigmoid; /* --probs of bce_with_logits */
  int K;       /* outputs per sample */
} out_plan;

static int parse_args(int argc, char **argv, predict_args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    int set = cmd_take_set(argc, argv, &i, a->overrides, &a->n_overrides);
    if (set < 0) return set;
    if (set) continue;
    if (strcmp(s, "--force") == 0)
      a->force = 1;
    else if (strcmp(s, "--probs") == 0)
      a->probs = 1;
    else if (s[0] == '-' && s[1])
      return ms_error_set(MS_EUSAGE, "predict: unknown option '%s' (see 'midscale help predict')",
                          s);
    else if (!a->config)
      a->config = s;
    else if (!a->ckpt)
      a->ckpt = s;
    else if (!a->input)
      a->input = s;
    else if (!a->out)
      a->out = s;
    else
      return ms_error_set(MS_EUSAGE, "predict: unexpected argument '%s'", s);
  }
  if (!a->out)
    return ms_error_set(MS_EUSAGE,
                        "predict needs CONFIG, CHECKPOINT, INPUT.h5:DATASET and "
                        "OUT.h5 (see 'midscale help predict')");
  return 0;
}

/* Rank 0, before any work: OUT must not exist (unless --force) and must
 * not be the input file. */
static int check_out(const predict_args *a, const char *in_path) {
  struct stat so, si;
  if (stat(a->out, &so) != 0) return 0;
  if (stat(in_path, &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
    return ms_error_set(MS_EUSAGE, "'%s' is the input file: write the predictions elsewhere",
                        a->out);
  if (!a->force) return ms_error_set(MS_EUSAGE, "'%s' exists: pass --force to replace it", a->out);
  if (!S_ISREG(so.st_mode))
    return ms_error_set(MS_EUSAGE, "'%s' exists and is not a regular file", a->out);
  return 0;
}

static int plan_output(const ms_config *c, const ms_model *m, int probs, out_plan *p) {
  *p = (out_plan){.K = (int)m->n_out};
  const int classifier = c->model.loss == MS_LOSS_XENT, bce = c->model.loss == MS_LOSS_BCE;
  if (probs && !classifier && !bce)
    return ms_error_set(MS_EUSAGE,
                        "--probs needs a classifier (model.loss "
                        "softmax_cross_entropy or bce_with_logits); this one is %s",
                        config_enum_name("model.loss", (int)c->model.loss));
  p->softmax = probs && classifier;
  p->sigmoid = probs && bce;
  p->sets[0] =
      (h5write_set){.name = classifier || bce ? (probs ? "/probabilities" : "/logits") : "/outputs",
                    .cols = (uint64_t)p->K};
  p->n_sets = 1;
  if (classifier) p->sets[p->n_sets++] = (h5write_set){.name = "/argmax", .cols = 0};
  return 0;
}

/* An h5write failure: the output could not be written (MS_EIO, exit 1),
 * not a data error. */
static int out_error(int rc, const char *err) { return rc ? ms_error_set(MS_EIO, "%s", err) : 0; }

/* Rows of outputs as the file stores them: probabilities in place, and
 * each row's first largest output (as evaluation counts a hit). */
static void finish_rows(const out_plan *p, float *z, int n, int32_t *argmax) {
  const int K = p->K;
  for (int i = 0; i < n; i++) {
    float *r = z + (size_t)i * K;
    int best = 0;
    for (int k = 1; k < K; k++)
      if (r[k] > r[best]) best = k;
    if (argmax) argmax[i] = best;
    if (p->softmax) {
      double sum = 0, top = r[best];
      for (int k = 0; k < K; k++) sum += exp((double)r[k] - top);
      for (int k = 0; k < K; k++) r[k] = (float)(exp((double)r[k] - top) / sum);
    } else if (p->sigmoid) {
      for (int k = 0; k < K; k++) r[k] = (float)(1.0 / (1.0 + exp(-(double)r[k])));
    }
  }
}

/* This rank's rows [begin, begin + count): forward passes of im->chunk
 * rows; each pass's rows go to the file (parallel: h) or to buf (serial:
 * count * K floats then count int32, for rank 0). Rank-local. */
static int compute_rows(infer_model *im, data_set *ds, const out_plan *p, h5write *h,
                        uint64_t begin, uint64_t count, char *buf) {
  const int K = p->K;
  const size_t chunk = (size_t)im->chunk;
  char err[DATA_ERRLEN] = "";
  uint64_t *idx = malloc(chunk * sizeof *idx);
  float *x = malloc(chunk * data_sample_elems(ds) * sizeof *x);
  float *z = malloc(chunk * (size_t)K * sizeof *z);
  int32_t *am = malloc(chunk * sizeof *am);
  int rc = idx && x && z && am ? 0 : ms_error_set(MS_ENOMEM, "out of memory for predictions");
  for (uint64_t off = 0; rc == 0 && off < count; off += chunk) {
    size_t n = count - off < chunk ? (size_t)(count - off) : chunk;
    for (size_t i = 0; i < n; i++) idx[i] = begin + off + i;
    rc = ms_from_data(data_read(ds, idx, n, &im->norm, x, NULL, NULL, err, sizeof err), err);
    if (rc) break;
    memcpy(z, model_forward(im->model, x, (int)n, NULL), n * (size_t)K * sizeof *z);
    finish_rows(p, z, (int)n, am);
    if (h) {
      rc = h5write_rows(h, 0, begin + off, n, z, err, sizeof err);
      if (rc == 0 && p->n_sets > 1) rc = h5write_rows(h, 1, begin + off, n, am, err, sizeof err);
      rc = out_error(rc, err);
    } else {
      memcpy(buf + off * (size_t)K * sizeof *z, z, n * (size_t)K * sizeof *z);
      memcpy(buf + count * (size_t)K * sizeof *z + off * sizeof *am, am, n * sizeof *am);
    }
  }
  free(idx);
  free(x);
  free(z);
  free(am);
  return rc;
}

/* Serial HDF5: every rank's rows to rank 0, which writes the file. Each
 * rank's bytes are its outputs then its argmax (compute_rows). */
static int gather_and_write(const ranks *rk, const out_plan *p, uint64_t rows, const char *tmp,
                            const char *source, const char *mine, size_t len) {
  comm_world *w = rk->w;
  char *all = NULL, err[DATA_ERRLEN] = "";
  size_t total = 0;
  int rc = ms_from_comm(comm_gatherv_bytes(w, mine, len, 0, &all, &total, NULL), comm_errmsg(w));
  if (rc || w->rank != 0) return rc;
  h5write *h = NULL;
  rc = h5write_create(&h, MPI_COMM_SELF, tmp, rows, p->sets, p->n_sets, source, err, sizeof err);
  /* h5write_close below closes h whether or not it was created whole. */
  size_t at = 0;
  for (int r = 0; rc == 0 && r < w->size; r++) {
    uint64_t begin, count;
    sampler_eval_range(rows, w->size, r, &begin, &count);
    rc = h5write_rows(h, 0, begin, count, all + at, err, sizeof err);
    at += count * (size_t)p->K * sizeof(float);
    if (rc == 0 && p->n_sets > 1) rc = h5write_rows(h, 1, begin, count, all + at, err, sizeof err);
    at += count * sizeof(int32_t);
  }
  if (h5write_close(h, rc ? NULL : err, sizeof err) != 0) rc = -1;
  free(all);
  return out_error(rc, err);
}

/* Computes and writes every row into tmp. Collective. */
static int write_predictions(const ranks *rk, infer_model *im, data_set *ds, const out_plan *p,
                             const char *tmp, const char *source) {
  comm_world *w = rk->w;
  const uint64_t rows = data_count(ds);
  uint64_t begin, count;
  char err[DATA_ERRLEN] = "";
  sampler_eval_range(rows, w->size, w->rank, &begin, &count);
  if (!h5write_parallel()) {
    size_t len = (size_t)count * ((size_t)p->K * sizeof(float) + sizeof(int32_t));
    char *buf = malloc(len ? len : 1);
    int rc = buf ? 0
                 : ms_error_set(MS_ENOMEM, "out of memory for %llu predictions",
                                (unsigned long long)count);
    if (rc == 0) rc = compute_rows(im, ds, p, NULL, begin, count, buf);
    if ((rc = ranks_agree(rk, rc)) == 0) rc = gather_and_write(rk, p, rows, tmp, source, buf, len);
    free(buf);
    return ranks_agree(rk, rc);
  }
  h5write *h = NULL;
  int rc = out_error(
      h5write_create(&h, w->comm, tmp, rows, p->sets, p->n_sets, source, err, sizeof err), err);
  if ((rc = ranks_agree(rk, rc))) {
    h5write_close(h, NULL, 0); /* on every rank, failed or not (h5write.h) */
    return rc;
  }
  rc = compute_rows(im, ds, p, h, begin, count, NULL);
  /* Every rank closes (collective) whatever happened to its rows. */
  int closed = out_error(h5write_close(h, err, sizeof err), err);
  return ranks_agree(rk, rc ? rc : closed);
}

int cmd_predict(comm_world *w, int argc, char **argv, FILE *out) {
  ranks rk = {.w = w, .wd = NULL, .step = NULL};
  predict_args a;
  infer_model im;
  data_set *ds = NULL;
  out_plan p;
  char path[MS_PATH_MAX], name[MS_NAME_MAX], tmp[MS_PATH_MAX + 8], source[3 * MS_PATH_MAX];
  memset(&im, 0, sizeof im);
  int rc = parse_args(argc, argv, &a);
  if (rc == 0) rc = cmd_split_target(a.input, path, sizeof path, name, sizeof name);
  if (rc == 0 && snprintf(tmp, sizeof tmp, "%s.tmp", a.out) >= (int)sizeof tmp)
    rc = ms_error_set(MS_EUSAGE, "'%s' is too long", a.out);
  if (rc == 0 && w->rank == 0) rc = check_out(&a, path);
  if ((rc = ranks_agree(&rk, rc))) goto done;
  if ((rc = infer_config(&im, &rk, a.config, a.overrides, a.n_overrides))) goto done;
  if ((rc = ranks_agree(&rk, infer_open_set(&im, path, name, NULL, &ds)))) goto done;
  if ((rc = infer_load(&im, &rk, a.ckpt, ds))) goto done;
  if ((rc = ranks_agree(&rk, plan_output(&im.cfg, im.model, a.probs, &p)))) goto done;
  snprintf(source, sizeof source, "midscale predict: checkpoint %s (step %lld), input %s:%s",
           a.ckpt, (long long)im.step, path, name);
  rc = write_predictions(&rk, &im, ds, &p, tmp, source);
  if (rc == 0 && w->rank == 0 && rename(tmp, a.out) != 0)
    rc = ms_error_set(MS_EIO, "cannot rename '%s' to '%s': %s", tmp, a.out, strerror(errno));
  if (rc && w->rank == 0) unlink(tmp); /* ours: write_predictions created it */
  if ((rc = ranks_agree(&rk, rc))) goto done;
  if (w->rank == 0)
    fprintf(out, "wrote %s: %llu rows of %s%s (step %lld of %s), %d rank%s%s\n", a.out,
            (unsigned long long)data_count(ds), p.sets[0].name + 1,
            p.n_sets > 1 ? " and argmax" : "", (long long)im.step, a.ckpt, w->size,
            w->size == 1 ? "" : "s", h5write_parallel() ? ", parallel HDF5" : "");
done:
  infer_close(&im);
  data_close(ds);
  return rc;
}
