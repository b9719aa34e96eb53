#include "train.h"

#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "check.h"
#include "ckpt.h"
#include "config.h"
#include "dataset.h"
#include "kernels.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"
#include "ms_error.h"
#include "optim.h"
#include "sampler.h"
#include "saver.h"
#include "trace.h"
#include "version.h"

/* Each rank caches its datasets in memory up to this many bytes of inputs;
 * larger files are read on demand. */
#define DATA_MEM_BUDGET ((size_t)2 << 30)
#define ERRLEN 1024

/* Checkpoint tensors: every parameter tensor, and its view in each of the
 * optimizer's state arenas (at most two: Adam's moments). */
#define MAX_TENSORS (2 * MS_MAX_LAYERS * 3)

typedef enum { LOSS_XENT = 0, LOSS_BCE, LOSS_MSE, LOSS_MAE } loss_kind;

typedef struct {
  comm_world *w;
  ms_config cfg;
  char *cfg_text;
  size_t cfg_len;
  char ckpt_dir[MS_PATH_MAX + 32];
  data_set *train, *test;
  data_norm norm; /* data.scale/mean/std, views into cfg; set by open_data */
  ms_model *model;
  ms_optim *opt;
  ms_metrics *metrics; /* rank 0 only */
  loss_kind loss;
  int classifier;               /* the loss takes class labels (y), else float targets (t) */
  ckpt_tensor tensors[MAX_TENSORS];
  char tensor_names[MAX_TENSORS][80];
  int n_tensors;
  uint64_t layout_hash;
  int64_t global_batch, local_batch, eval_chunk;
  int64_t steps_per_epoch, total_steps;
  int64_t step, epoch, step_in_epoch; /* the cursor: steps done */
  int64_t last_ckpt_step;
  double t_last_ckpt;
  ms_saver *saver;              /* rank 0 only: the background writer */
  int saver_rc;                 /* rank 0: a background save failed ... */
  char saver_msg[ERRLEN];       /* ... with this message */
  char last_ckpt_path[1100];    /* rank 0: the newest checkpoint written */
  const volatile sig_atomic_t *stop_signal; /* set by main's signal handler */
  int stop_signo;               /* agreed: the signal that stops the run */
  int time_ckpt_due;            /* agreed: checkpoint.every_minutes elapsed */
  data_loader *loader;          /* this rank's training batches (data.prefetch ahead) */
  uint64_t *idx;
  float *x, *dlogits, *t;
  int32_t *y;
  double last_eval_acc, last_eval_loss;
  int64_t last_eval_step;
  /* seconds spent per part of the step, on this rank */
  double t_data, t_compute, t_comm, t_ckpt, t_eval;
} run;

/* The agreement every branch goes through: returns the code of the lowest
 * failing rank (0 if none) and leaves its message in ms_error_msg() on
 * every rank. */
static int agree(run *r, int rc) {
  char msg[ERRLEN];
  if (rc < 0) {
    if (r->w->size > 1 && r->w->rank != 0)
      snprintf(msg, sizeof msg, "rank %d: %s", r->w->rank, ms_error_msg());
    else
      snprintf(msg, sizeof msg, "%s", ms_error_msg());
  } else {
    msg[0] = '\0';
  }
  r->w->err[0] = '\0';
  int code = comm_agree_msg(r->w, rc, msg, sizeof msg);
  if (code == 0) return 0;
  if (code == COMM_EMPI && r->w->err[0]) return ms_error_set(MS_ECOMM, "%s", r->w->err);
  return ms_error_set(code, "%s", msg);
}

static int comm_rc(run *r, int rc) {
  return rc < 0 ? ms_error_set(MS_ECOMM, "%s", comm_errmsg(r->w)) : 0;
}

static int mkdir_p(const char *path) {
  char buf[MS_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return ms_error_set(MS_EIO, "cannot create directory '%s': %s", buf, strerror(errno));
      if (c == '\0') break;
      *p = c;
    }
  }
  return 0;
}

/* Rank 0 reads the file and broadcasts its bytes; every rank parses the same
 * bytes and applies the same overrides. */
static int load_config(run *r, const train_args *a) {
  int rc = 0;
  if (r->w->rank == 0) rc = config_read_file(a->config_path, &r->cfg_text, &r->cfg_len);
  if ((rc = agree(r, rc))) return rc;
  if ((rc = comm_rc(r, comm_bcast_bytes(r->w, &r->cfg_text, &r->cfg_len, 0)))) return rc;
  config_defaults(&r->cfg);
  rc = config_parse(&r->cfg, r->cfg_text, r->cfg_len, a->config_path);
  for (int i = 0; rc == 0 && i < a->n_overrides; i++)
    rc = config_override(&r->cfg, a->overrides[i]);
  if (rc == 0) rc = config_validate(&r->cfg, r->w->size);
  return agree(r, rc);
}

static int data_rc(int rc, int code, const char *err) {
  return rc < 0 ? ms_error_set(code, "%s", err) : 0;
}

/* Opens the datasets and checks what needs no model: the test set against
 * the training set, the normalisation, one global batch of samples, and
 * (data.check_finite) the values, each rank a 1/world share of them. */
static int open_data(run *r) {
  const ms_config *c = &r->cfg;
  char err[ERRLEN] = "";
  r->norm = check_data_norm(c);
  data_cache cache = DATA_CACHE_AUTO;
  (void)data_cache_parse(c->data.cache, &cache); /* the schema allows only the three names */
  int rc = data_rc(data_open_cached(&r->train, c->data.path, c->data.train_x, c->data.train_y,
                                    DATA_MEM_BUDGET, cache, err, sizeof err),
                   MS_EDATA, err);
  if (rc == 0 && c->data.test_x[0])
    rc = data_rc(data_open_cached(&r->test, c->data.path, c->data.test_x, c->data.test_y,
                                  DATA_MEM_BUDGET, cache, err, sizeof err),
                 MS_EDATA, err);
  if (rc == 0) rc = check_data_sets(c, r->train, r->test, &r->norm);
  for (int i = 0; rc == 0 && c->data.check_finite && i < 2; i++) {
    data_set *ds = i ? r->test : r->train;
    uint64_t begin, count;
    if (!ds) continue;
    sampler_eval_range(data_count(ds), r->w->size, r->w->rank, &begin, &count);
    rc = data_rc(data_check_finite(ds, begin, count, &r->norm, err, sizeof err), MS_EDATA, err);
  }
  return agree(r, rc);
}

/* Every rank checks the labels against the model's outputs. */
static int check_data_labels(run *r) {
  int rc = check_labels(&r->cfg, r->model->n_out, r->train);
  if (rc == 0 && r->test) rc = check_labels(&r->cfg, r->model->n_out, r->test);
  return agree(r, rc);
}

static loss_kind loss_parse(const char *name) {
  if (!strcmp(name, "bce_with_logits")) return LOSS_BCE;
  if (!strcmp(name, "mse")) return LOSS_MSE;
  if (!strcmp(name, "mae")) return LOSS_MAE;
  return LOSS_XENT;
}

/* The configured loss of n rows of outputs out (n, n_out) against r->y or
 * r->t, summed over the rows (each row's loss a mean over its outputs for
 * the float losses). grad (may be NULL) receives scale * d(sum)/d(out).
 * *correct counts top-1 hits of a classifier. */
static double compute_loss(run *r, float *grad, const float *out, int n, float scale,
                           long *correct) {
  int K = (int)r->model->n_out;
  switch (r->loss) {
    case LOSS_BCE: return bce_logits_loss(grad, out, r->t, n, K, scale);
    case LOSS_MSE: return mse_loss(grad, out, r->t, n, K, scale);
    case LOSS_MAE: return mae_loss(grad, out, r->t, n, K, scale);
    case LOSS_XENT: break;
  }
  float eps = (float)r->cfg.model.label_smoothing;
  if (eps > 0) return softmax_xent_smooth(grad, out, r->y, n, K, eps, scale, correct);
  return softmax_xent(grad, out, r->y, n, K, scale, correct);
}

/* Reads samples idx[0..n) of ds into r->x and r->y (classifiers) or r->t. */
static int read_batch(run *r, data_set *ds, const uint64_t *idx, int n) {
  char err[ERRLEN] = "";
  return data_rc(data_read(ds, idx, (size_t)n, &r->norm, r->x, r->classifier ? r->y : NULL,
                           r->classifier ? NULL : r->t, err, sizeof err),
                 MS_EDATA, err);
}

static int blas_threads(const comm_world *w, int configured) {
  if (configured > 0) return configured;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int per_rank = (int)(online > 0 ? online : 1) / (w->local_size > 0 ? w->local_size : 1);
  return per_rank > 0 ? per_rank : 1;
}

/* Checkpoint tensors: views of every parameter tensor in the parameter
 * arena and in each optimizer state arena ("optim/<state>/<name>"). */
static void list_tensors(run *r) {
  float *arenas[3] = {r->model->params};
  const char *names[3] = {""};
  int n_arenas = 1 + optim_state(r->opt, arenas + 1, names + 1, 2);
  r->n_tensors = 0;
  for (int a = 0; a < n_arenas; a++)
    for (int i = 0; i < r->model->n_p; i++) {
      const ms_param *p = &r->model->p[i];
      int j = r->n_tensors++;
      snprintf(r->tensor_names[j], sizeof r->tensor_names[j], "%s%s%s%s", a ? "optim/" : "",
               names[a], a ? "/" : "", p->name);
      ckpt_tensor *ct = &r->tensors[j];
      ct->name = r->tensor_names[j];
      ct->data = arenas[a] + p->off;
      ct->ndim = p->ndim;
      for (int d = 0; d < p->ndim; d++) ct->shape[d] = p->shape[d];
    }
}

static int build_model(run *r) {
  const ms_config *c = &r->cfg;
  r->global_batch = c->train.batch_size;
  r->local_batch = r->global_batch / r->w->size;
  r->eval_chunk = c->train.eval_batch_size / r->w->size;
  if (r->eval_chunk < 1) r->eval_chunk = 1;
  r->loss = loss_parse(c->model.loss);
  r->classifier = check_is_classifier(c);
  int64_t max_batch = r->local_batch > r->eval_chunk ? r->local_batch : r->eval_chunk;
  size_t in = data_sample_elems(r->train);
  int64_t shape[MS_MAX_DIMS];
  int nd = check_input_shape(c, r->train, shape);
  int rc = model_create(&r->model, c, shape, nd, (int)max_batch);
  if (rc == 0) rc = optim_create(&r->opt, c, r->model->n_params);
  if (rc == 0 && !c->optim.decay_all) {
    uint8_t *mask = malloc(r->model->n_params ? r->model->n_params : 1);
    if (!mask) rc = ms_error_set(MS_ENOMEM, "out of memory for the weight-decay mask");
    if (mask) model_decay_mask(r->model, mask);
    if (rc == 0) rc = optim_set_decay_mask(r->opt, mask);
    free(mask);
  }
  if (rc == 0) {
    size_t outs = (size_t)max_batch * (size_t)r->model->n_out;
    r->idx = malloc(sizeof(uint64_t) * (size_t)max_batch);
    r->x = malloc(sizeof(float) * (size_t)max_batch * in);
    r->y = malloc(sizeof(int32_t) * (size_t)max_batch);
    r->t = malloc(sizeof(float) * outs);
    r->dlogits = malloc(sizeof(float) * outs);
    if (!r->idx || !r->x || !r->y || !r->t || !r->dlogits)
      rc = ms_error_set(MS_ENOMEM, "out of memory for batch buffers");
  }
  if ((rc = agree(r, rc))) return rc;
  if ((rc = check_data_labels(r))) return rc;

  /* Every rank initialises from the seed; the hash check proves they agree
   * (a different libm could break that, so rank 0's copy then wins). */
  model_init(r->model, c->run.seed);
  int same = comm_all_equal_u64(r->w, model_params_hash(r->model));
  if (same < 0) return comm_rc(r, same);
  if (!same && (rc = comm_rc(r, comm_bcast_f32(r->w, r->model->params, r->model->n_params, 0))))
    return rc;
  if (!same)
    metrics_say(r->metrics, "note: initial parameters differed across ranks; using rank 0's");
  r->layout_hash = model_layout_hash(r->model);
  list_tensors(r);
  return 0;
}

/* Rank 0: a background save's failure, kept until the ranks agree on it.
 * @return 0, or its code with its message set again on this thread. */
static int saver_failure(run *r) {
  return r->saver_rc < 0 ? ms_error_set(r->saver_rc, "%s", r->saver_msg) : 0;
}

/* Rank 0: reports a finished background save, or keeps its failure for the
 * next step's agreement. block: wait for a save in flight.
 * @return saver_failure(r). */
static int collect_save(run *r, int block) {
  if (!r->saver || !saver_pending(r->saver) || (!block && !saver_finished(r->saver)))
    return saver_failure(r);
  saver_result res;
  int rc = saver_wait(r->saver, &res);
  if (rc < 0) {
    r->saver_rc = rc;
    snprintf(r->saver_msg, sizeof r->saver_msg, "%s", ms_error_msg());
    return rc;
  }
  snprintf(r->last_ckpt_path, sizeof r->last_ckpt_path, "%s", res.path);
  double mb = (double)res.file_bytes / 1e6;
  metrics_say(r->metrics, "checkpoint %s (%.2f MB, ratio %.3f; written in %.2f s, step stalled %.3f s)",
              res.path, mb, mb > 0 ? (double)res.raw_bytes / 1e6 / mb : 0.0, res.write_seconds,
              res.stall_seconds);
  char json[1400];
  snprintf(json, sizeof json,
           "{\"kind\":\"checkpoint\",\"step\":%lld,\"path\":\"%s\",\"bytes\":%lld,"
           "\"raw_bytes\":%lld,\"write_s\":%.4f,\"stall_s\":%.5f}",
           (long long)res.step, res.path, res.file_bytes, res.raw_bytes, res.write_seconds,
           res.stall_seconds);
  metrics_json(r->metrics, json);
  return 0;
}

/* Saves the arenas at the current step: rank 0 snapshots them and a
 * background thread compresses and writes, while training goes on. sync:
 * wait until the file is in place (the end of a run, a stop signal). */
static int save_checkpoint(run *r, int sync) {
  double t0 = comm_wtime();
  int rc = 0;
  if (r->w->rank == 0) {
    const ms_config *c = &r->cfg;
    rc = collect_save(r, 1);
    ckpt_meta meta = {.step = r->step,
                      .epoch = r->epoch,
                      .step_in_epoch = r->step_in_epoch,
                      .world_size = r->w->size,
                      .seed = c->run.seed,
                      .rng_state = sampler_mix64(c->run.seed),
                      .layout_hash = r->layout_hash,
                      .config = NULL,
                      .byte_shuffle = c->checkpoint.shuffle};
    if (rc == 0 && !(meta.config = config_emit(c)))
      rc = ms_error_set(MS_ENOMEM, "out of memory emitting the config");
    if (rc == 0) rc = saver_start(r->saver, &meta);
    free(meta.config);
    if (rc == 0 && sync) rc = collect_save(r, 1);
  }
  rc = agree(r, rc);
  r->t_ckpt += comm_wtime() - t0;
  if (rc == 0) r->last_ckpt_step = r->step, r->t_last_ckpt = comm_wtime();
  return rc;
}

/* --resume: rank 0 finds and reads the checkpoint, then broadcasts the
 * arenas and the cursor. */
static int resume(run *r, const char *what) {
  int rc = 0;
  char *path = NULL, *skipped = NULL;
  ckpt_meta meta = {0};
  int64_t cursor[4] = {0, 0, 0, 0}; /* found, step, epoch, step_in_epoch */
  if (r->w->rank == 0) {
    if (strcmp(what, "auto") == 0) {
      rc = ckpt_find_latest(r->ckpt_dir, &path, &skipped);
      if (rc == 1) rc = 0; /* nothing to resume: a fresh start */
    } else {
      path = strdup(what);
      if (!path) rc = ms_error_set(MS_ENOMEM, "out of memory");
    }
    /* The config diff first, so that a changed model is named by its keys
     * rather than by the tensor shapes ckpt_read would refuse. */
    if (rc == 0 && path) rc = check_resume_config(path, &r->cfg);
    if (rc == 0 && path) rc = ckpt_read(path, r->tensors, r->n_tensors, r->layout_hash, &meta);
    if (rc == 0 && path)
      cursor[0] = 1, cursor[1] = meta.step, cursor[2] = meta.epoch, cursor[3] = meta.step_in_epoch;
  }
  if ((rc = agree(r, rc))) goto done;
  if (skipped) metrics_say(r->metrics, "resume: skipped damaged checkpoints:\n%s", skipped);
  char *buf = (char *)cursor;
  size_t len = sizeof cursor;
  if ((rc = comm_rc(r, comm_bcast_bytes(r->w, &buf, &len, 0)))) goto done;
  if (r->w->rank != 0) {
    memcpy(cursor, buf, sizeof cursor);
    free(buf);
  }
  if (!cursor[0]) {
    metrics_say(r->metrics, "resume: no checkpoint in %s, starting from step 0", r->ckpt_dir);
    goto done;
  }
  if ((rc = comm_rc(r, comm_bcast_f32(r->w, r->model->params, r->model->n_params, 0)))) goto done;
  float *state[2];
  const char *names[2];
  for (int a = 0, n = optim_state(r->opt, state, names, 2); a < n; a++)
    if ((rc = comm_rc(r, comm_bcast_f32(r->w, state[a], r->opt->n, 0)))) goto done;
  r->step = cursor[1], r->epoch = cursor[2], r->step_in_epoch = cursor[3];
  r->opt->t = r->step; /* one optimizer step per training step (Adam's bias correction) */
  r->last_ckpt_step = r->step;
  metrics_say(r->metrics, "resumed from %s at step %lld (epoch %lld, step %lld of the epoch)",
              path ? path : "checkpoint", (long long)r->step, (long long)r->epoch,
              (long long)r->step_in_epoch);
done:
  ckpt_meta_free(&meta);
  free(path);
  free(skipped);
  return rc;
}

/* Evaluates every test sample exactly once across ranks. */
static int evaluate(run *r) {
  double t0 = comm_wtime();
  uint64_t begin, count;
  sampler_eval_range(data_count(r->test), r->w->size, r->w->rank, &begin, &count);
  int K = (int)r->model->n_out, k = r->cfg.train.eval_top_k;
  if (!r->classifier || k >= K) k = 0;
  /* failed, loss sum, correct, samples, top-k correct, squared and absolute error sums */
  double s[7] = {0, 0, 0, 0, 0, 0, 0};
  int rc = 0;
  for (uint64_t off = 0; off < count && rc == 0; off += (uint64_t)r->eval_chunk) {
    int n = (int)(count - off < (uint64_t)r->eval_chunk ? count - off : (uint64_t)r->eval_chunk);
    for (int i = 0; i < n; i++) r->idx[i] = begin + off + (uint64_t)i;
    if ((rc = read_batch(r, r->test, r->idx, n))) break;
    const float *out = model_forward(r->model, r->x, n, NULL);
    long correct = 0;
    s[1] += compute_loss(r, NULL, out, n, 1.0f, &correct);
    s[2] += (double)correct;
    s[3] += n;
    if (k > 0) s[4] += (double)topk_correct(out, r->y, n, K, k);
    if (r->loss == LOSS_BCE) {
      long hits = 0;
      for (long j = 0; j < (long)n * K; j++) hits += (out[j] > 0.0f) == (r->t[j] > 0.5f);
      s[2] += (double)hits / K;
    } else if (!r->classifier) {
      s[5] += mse_loss(NULL, out, r->t, n, K, 1.0f);
      s[6] += mae_loss(NULL, out, r->t, n, K, 1.0f);
    }
  }
  if ((rc = agree(r, rc))) return rc;
  if ((rc = comm_rc(r, comm_allreduce_sum_f64(r->w, s + 1, 6)))) return rc;
  ms_eval e = {.loss = s[1] / s[3],
               .classifier = r->classifier,
               .binary = r->loss == LOSS_BCE,
               .acc = s[2] / s[3],
               .top_k = k,
               .topk_acc = s[4] / s[3],
               .mse = s[5] / s[3],
               .mae = s[6] / s[3],
               .n_samples = (long)s[3]};
  r->last_eval_loss = e.loss;
  r->last_eval_acc = r->classifier || e.binary ? e.acc : -1.0;
  r->last_eval_step = r->step;
  r->t_eval += comm_wtime() - t0;
  metrics_eval(r->metrics, r->step, r->epoch, &e);
  return 0;
}

/* The batch of the current cursor from the loader; its labels are copied
 * into r->y (classifiers) or r->t, where compute_loss reads them. */
static int next_batch(run *r, loader_batch *b) {
  char err[ERRLEN] = "";
  if (loader_next(r->loader, (uint64_t)r->epoch, (uint64_t)r->step_in_epoch, b, err,
                  sizeof err) < 0)
    return ms_error_set(MS_EDATA, "step %lld (epoch %lld, step %lld of the epoch): %s",
                        (long long)r->step, (long long)r->epoch, (long long)r->step_in_epoch, err);
  if (b->y) memcpy(r->y, b->y, b->n * sizeof *r->y);
  if (b->t) memcpy(r->t, b->t, b->n * data_label_elems(r->train) * sizeof *r->t);
  return 0;
}

/* One optimizer step on this rank's slice of the next global batch.
 * stats: loss sum, correct and samples of the global batch are added. */
static int train_step(run *r, double stats[3]) {
  double t0 = comm_wtime();
  int n = (int)r->local_batch;
  /* Step scalars, reduced together before the gradients so that a rank
   * whose read failed, or that got a stop signal, stops every rank at the
   * same step without a hang: read failed, loss sum, correct, stop signal,
   * checkpoint time due (rank 0's clock), background save failed. */
  double s[6] = {0, 0, 0, 0, 0, 0};
  s[3] = r->stop_signal && *r->stop_signal ? 1 : 0;
  s[4] = r->w->rank == 0 && r->cfg.checkpoint.every_minutes > 0 &&
         comm_wtime() - r->t_last_ckpt >= 60.0 * r->cfg.checkpoint.every_minutes;
  s[5] = r->saver_rc < 0;
  /* The loader thread has usually read this batch already: the wait, or
   * the read itself with data.prefetch 0, is the step's data time. */
  loader_batch b = {0};
  const uint64_t *idx = NULL;
  int rc = next_batch(r, &b);
  if (rc == 0) {
    idx = b.idx;
    trace_samples(r->w->rank, r->step, r->epoch, idx, (size_t)n, b.x,
                  data_sample_elems(r->train));
  }
  double t1 = comm_wtime();
  r->t_data += t1 - t0;
  if (rc == 0) {
    /* Dropout masks follow the samples' dataset indices: world-size invariant. */
    ms_pass pass = {.seed = r->cfg.run.seed, .step = (uint64_t)r->step, .rows = idx};
    const float *out = model_forward(r->model, b.x, n, &pass);
    long correct = 0;
    s[1] = compute_loss(r, r->dlogits, out, n, 1.0f / (float)r->global_batch, &correct);
    s[2] = (double)correct;
    model_backward(r->model, r->dlogits, &pass, NULL, NULL);
  } else {
    s[0] = 1;
  }
  double t2 = comm_wtime();
  r->t_compute += t2 - t1;
  int crc = comm_allreduce_sum_f64(r->w, s, 6);
  if (crc == 0 && (s[0] > 0 || s[5] > 0)) {
    if (rc == 0) rc = saver_failure(r);
    return agree(r, rc);
  }
  if (crc == 0 && s[3] > 0) {
    /* Which signal: the largest number any rank got (one more collective,
     * on this path only). */
    double sig = r->stop_signal ? (double)*r->stop_signal : 0.0;
    crc = comm_allreduce_max_f64(r->w, &sig, 1);
    r->stop_signo = (int)sig;
  }
  r->time_ckpt_due = s[4] > 0;
  if (crc == 0) crc = comm_allreduce_sum_f32(r->w, r->model->grads, r->model->n_params);
  if (crc) return comm_rc(r, crc);
  double t3 = comm_wtime();
  r->t_comm += t3 - t2;
  optim_step(r->opt, r->model->params, r->model->grads,
             schedule_lr(&r->cfg, r->step, r->total_steps));
  r->t_compute += comm_wtime() - t3;
  stats[0] += s[1], stats[1] += s[2], stats[2] += (double)r->global_batch;
  r->step++;
  if (++r->step_in_epoch == r->steps_per_epoch) r->step_in_epoch = 0, r->epoch++;
  return 0;
}

static void say_start(run *r) {
  const ms_model *m = r->model;
  char shape[1024], part[128];
  model_shape_desc(m->in_c, m->in_h, m->in_w, shape, sizeof shape);
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    char desc[64], out[48];
    model_layer_desc(l, desc, sizeof desc);
    model_shape_desc(l->out_c, l->out_h, l->out_w, out, sizeof out);
    snprintf(part, sizeof part, " -> %s %s", desc, out);
    if (strlen(shape) + strlen(part) < sizeof shape) strcat(shape, part);
  }
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  metrics_say(r->metrics,
              "midscale %s | world %d (%s) | BLAS OpenBLAS %s, %d thread(s)/rank | HDF5 %u.%u.%u",
              MS_VERSION_STRING, r->w->size, r->w->launcher, blas_corename(),
              blas_threads(r->w, r->cfg.run.threads), maj, min, rel);
  metrics_say(r->metrics, "data %s: %llu train%s, %llu test samples, %zu features",
              r->cfg.data.path, (unsigned long long)data_count(r->train),
              data_in_memory(r->train) ? " (in memory)" : " (streamed)",
              r->test ? (unsigned long long)data_count(r->test) : 0ULL,
              data_sample_elems(r->train));
  metrics_say(r->metrics, "model %s: %zu parameters, %.2f MFLOP/sample forward, loss %s, %s",
              shape, m->n_params, model_flops_per_sample(m) / 1e6, r->cfg.model.loss,
              r->cfg.optim.name);
  metrics_say(r->metrics,
              "train: %d epochs x %lld steps, global batch %lld (%lld per rank), run dir %s",
              r->cfg.train.epochs, (long long)r->steps_per_epoch, (long long)r->global_batch,
              (long long)r->local_batch, r->cfg.run.dir);
}

/* The loader thread over the training set: from here on only it reads
 * r->train. It stops at the run's last step (or --stop-at). */
static int start_loader(run *r, const train_args *a) {
  const ms_config *c = &r->cfg;
  char err[ERRLEN] = "";
  loader_opts o = {.ds = r->train,
                   .norm = r->norm,
                   .order = {.shuffle = SAMPLER_GLOBAL,
                             .block_size = (uint64_t)c->data.block_size,
                             .window = (uint64_t)c->data.shuffle_window},
                   .seed = c->run.seed,
                   .global_batch = (uint64_t)r->global_batch,
                   .world = r->w->size,
                   .rank = r->w->rank,
                   .prefetch = c->data.prefetch,
                   .class_labels = r->classifier,
                   .end_step = (uint64_t)r->total_steps};
  (void)sampler_shuffle_parse(c->data.shuffle, &o.order.shuffle); /* checked by the schema */
  if (a->stop_at > 0 && a->stop_at < r->total_steps) o.end_step = (uint64_t)a->stop_at;
  int rc = data_rc(loader_create(&r->loader, &o, err, sizeof err), MS_EDATA, err);
  if ((rc = agree(r, rc))) return rc;
  char order[96] = "";
  if (o.order.shuffle == SAMPLER_BLOCK)
    snprintf(order, sizeof order, " (blocks of %llu samples, %llu per window)",
             (unsigned long long)loader_block_size(r->loader),
             (unsigned long long)o.order.window);
  metrics_say(r->metrics, "loader: shuffle %s%s, prefetch %d batch%s, cache %s", c->data.shuffle,
              order, c->data.prefetch, c->data.prefetch == 1 ? "" : "es", c->data.cache);
  return 0;
}

static int setup(run *r, const train_args *a) {
  int rc = load_config(r, a);
  if (rc) return rc;
  const ms_config *c = &r->cfg;
  blas_set_threads(blas_threads(r->w, c->run.threads));
  if (c->checkpoint.dir[0])
    snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s", c->checkpoint.dir);
  else
    snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s/checkpoints", c->run.dir);
  if (r->w->rank == 0) {
    char path[MS_PATH_MAX + 64];
    rc = mkdir_p(c->run.dir);
    if (rc == 0) rc = check_ckpt_dir(r->ckpt_dir);
    if (rc == 0) {
      snprintf(path, sizeof path, "%s/config.resolved.yaml", c->run.dir);
      char *text = config_emit(c);
      FILE *f = text ? fopen(path, "w") : NULL;
      if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        rc = ms_error_set(MS_EIO, "cannot write '%s': %s", path, strerror(errno));
      free(text);
    }
    if (rc == 0) {
      snprintf(path, sizeof path, "%s/metrics.jsonl", c->run.dir);
      rc = metrics_open(&r->metrics, path, stdout, c->log.progress);
    }
  }
  if ((rc = agree(r, rc))) return rc;
  if ((rc = open_data(r))) return rc;
  if ((rc = agree(r, check_model_input(c, r->train)))) return rc;
  if ((rc = build_model(r))) return rc;
  /* The checkpoint writer and its snapshot exist from the start, so the
   * first checkpoint pays no allocation in the middle of training. */
  if (r->w->rank == 0)
    rc = saver_create(&r->saver, r->tensors, r->n_tensors, r->ckpt_dir, c->checkpoint.level,
                      c->checkpoint.workers, c->checkpoint.keep);
  if ((rc = agree(r, rc))) return rc;
  r->steps_per_epoch =
      (int64_t)sampler_steps_per_epoch(data_count(r->train), (uint64_t)r->global_batch);
  if (r->steps_per_epoch == 0)
    return ms_error_set(MS_ECONFIG, "train.batch_size %lld is larger than the %llu samples of '%s'",
                        (long long)r->global_batch, (unsigned long long)data_count(r->train),
                        c->data.train_x);
  r->total_steps = (int64_t)c->train.epochs * r->steps_per_epoch;
  if (c->train.max_steps > 0 && c->train.max_steps < r->total_steps)
    r->total_steps = c->train.max_steps;
  if ((rc = agree(r, config_check_steps(c, r->total_steps)))) return rc;
  r->last_ckpt_step = -1;
  r->last_eval_step = -1;
  say_start(r);
  if ((rc = start_loader(r, a))) return rc;
  if (a->resume && (rc = resume(r, a->resume))) return rc;
  return 0;
}

static void teardown(run *r) {
  loader_free(r->loader); /* joins the thread before its data set closes */
  saver_free(r->saver);
  metrics_close(r->metrics);
  optim_free(r->opt);
  model_free(r->model);
  data_close(r->train);
  data_close(r->test);
  free(r->cfg_text);
  free(r->idx);
  free(r->x);
  free(r->y);
  free(r->t);
  free(r->dlogits);
}

static void say_summary(run *r, double wall, int64_t steps_run) {
  double t[5] = {r->t_compute, r->t_comm, r->t_data, r->t_ckpt, r->t_eval};
  /* The slowest rank's times are the ones the job waited for. */
  if (comm_allreduce_max_f64(r->w, t, 5) != 0) return;
  double sps = wall > 0 ? (double)steps_run * (double)r->global_batch / wall : 0.0;
  if (r->last_eval_step >= 0 && r->classifier)
    metrics_say(r->metrics, "final test accuracy %.4f (loss %.4f)", r->last_eval_acc,
                r->last_eval_loss);
  else if (r->last_eval_step >= 0)
    metrics_say(r->metrics, "final test loss %.6g (%s)", r->last_eval_loss, r->cfg.model.loss);
  metrics_say(r->metrics,
              "done: %lld steps in %.2f s, %.0f samples/s; time per part (max over ranks): "
              "compute %.2f s, comm %.2f s, data %.2f s, checkpoint %.2f s, eval %.2f s",
              (long long)steps_run, wall, sps, t[0], t[1], t[2], t[3], t[4]);
  char json[512];
  snprintf(json, sizeof json,
           "{\"kind\":\"summary\",\"steps\":%lld,\"seconds\":%.3f,\"samples_per_s\":%.1f,"
           "\"test_acc\":%.6f,\"compute_s\":%.3f,\"comm_s\":%.3f,\"data_s\":%.3f,"
           "\"checkpoint_s\":%.3f,\"eval_s\":%.3f,\"world\":%d}",
           (long long)r->step, wall, sps, r->last_eval_step >= 0 ? r->last_eval_acc : -1.0, t[0],
           t[1], t[2], t[3], t[4], r->w->size);
  metrics_json(r->metrics, json);
}

int train_run(comm_world *w, const train_args *a) {
  run r;
  memset(&r, 0, sizeof r);
  r.w = w;
  r.stop_signal = a->stop_signal;
  ms_error_clear();
  int rc = setup(&r, a);
  if (rc) goto out;

  const ms_config *c = &r.cfg;
  double t_start = comm_wtime(), t_log = t_start, t_bar = 0;
  r.t_last_ckpt = t_start; /* checkpoint.every_minutes counts from here */
  int64_t first_step = r.step, log_from = r.step;
  double stats[3] = {0, 0, 0}; /* loss sum, correct, samples since the last log */
  while (r.step < r.total_steps && !(a->stop_at > 0 && r.step >= a->stop_at)) {
    int64_t epoch_before = r.epoch;
    if ((rc = train_step(&r, stats))) goto out;
    int last = r.step == r.total_steps;
    if (r.step % c->log.every_steps == 0 || last) {
      double now = comm_wtime();
      metrics_train(r.metrics, r.step, r.total_steps, epoch_before + 1, stats[0] / stats[2],
                    r.classifier ? stats[1] / stats[2] : -1.0, schedule_lr(c, r.step - 1, r.total_steps),
                    (double)(r.step - log_from) * (double)r.global_batch / (now - t_log));
      t_log = now, log_from = r.step;
      stats[0] = stats[1] = stats[2] = 0;
    } else if (r.metrics && comm_wtime() - t_bar > 0.1) {
      metrics_progress(r.metrics, r.step, r.total_steps, stats[0] / stats[2]);
      t_bar = comm_wtime();
    }
    if (r.test && (r.epoch != epoch_before || last) && (rc = evaluate(&r))) goto out;
    if (r.stop_signo) break;
    if (r.w->rank == 0) (void)collect_save(&r, 0); /* a failure stops the next step */
    if (((c->checkpoint.every_steps > 0 && r.step % c->checkpoint.every_steps == 0) ||
         r.time_ckpt_due) &&
        !last && (rc = save_checkpoint(&r, 0)))
      goto out;
  }
  if (r.last_ckpt_step != r.step && (rc = save_checkpoint(&r, 1))) goto out;
  /* A save still in flight must be in place before the run reports. */
  if ((rc = agree(&r, r.w->rank == 0 ? collect_save(&r, 1) : 0))) goto out;
  say_summary(&r, comm_wtime() - t_start, r.step - first_step);
  if (r.stop_signo) {
    rc = ms_error_set(MS_ESTOP,
                      "signal %d (%s) at step %lld of %lld; wrote %s; "
                      "continue with --resume auto",
                      r.stop_signo, strsignal(r.stop_signo), (long long)r.step,
                      (long long)r.total_steps, r.last_ckpt_path);
    goto out;
  }
  if (r.step < r.total_steps)
    metrics_say(r.metrics, "stopped at step %lld of %lld (--stop-at); continue with --resume auto",
                (long long)r.step, (long long)r.total_steps);
out:
  teardown(&r);
  return rc;
}
