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
#include "metrics.h"
#include "model.h"
#include "ms_error.h"
#include "optim.h"
#include "sampler.h"
#include "saver.h"
#include "version.h"

/* Each rank caches its datasets in memory up to this many bytes of inputs;
 * larger files are read on demand. */
#define DATA_MEM_BUDGET ((size_t)2 << 30)
#define ERRLEN 1024

/* Tensors per layer in a checkpoint: weight, bias, and their momentum. */
#define TENSORS_PER_LAYER 4

typedef struct {
  comm_world *w;
  ms_config cfg;
  char *cfg_text;
  size_t cfg_len;
  char ckpt_dir[MS_PATH_MAX + 32];
  data_set *train, *test;
  ms_model *model;
  ms_optim *opt;
  ms_metrics *metrics; /* rank 0 only */
  ckpt_tensor tensors[MS_MAX_LAYERS * TENSORS_PER_LAYER];
  char tensor_names[MS_MAX_LAYERS * TENSORS_PER_LAYER][64];
  int n_tensors;
  uint64_t layout_hash;
  int64_t global_batch, local_batch, eval_chunk;
  int64_t steps_per_epoch, total_steps;
  int64_t step, epoch, step_in_epoch; /* the cursor: steps done */
  int64_t last_ckpt_step;
  double t_last_ckpt;
  ms_saver *saver;              /* this rank's share of checkpoint writing */
  int save_background;          /* together: compress in the background */
  int saver_rc;                 /* a save failed outside a save ... */
  char saver_msg[ERRLEN];       /* ... with this message */
  double save_t0, save_stall_s; /* the save in flight: start, stall so far */
  double save_compress_s, save_gather_s;
  char last_ckpt_path[1100];    /* rank 0: the newest checkpoint written */
  const volatile sig_atomic_t *stop_signal; /* set by main's signal handler */
  int stop_signo;               /* agreed: the signal that stops the run */
  int time_ckpt_due;            /* agreed: checkpoint.every_minutes elapsed */
  uint64_t *perm;
  int64_t perm_epoch;
  uint64_t *idx;
  float *x, *dlogits;
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

static int open_data(run *r) {
  const ms_config *c = &r->cfg;
  char err[ERRLEN] = "";
  int rc = data_rc(data_open(&r->train, c->data.path, c->data.train_x, c->data.train_y,
                             DATA_MEM_BUDGET, err, sizeof err),
                   MS_EDATA, err);
  if (rc == 0 && c->data.test_x[0])
    rc = data_rc(data_open(&r->test, c->data.path, c->data.test_x, c->data.test_y, DATA_MEM_BUDGET,
                           err, sizeof err),
                 MS_EDATA, err);
  if (rc == 0 && r->test && data_sample_elems(r->test) != data_sample_elems(r->train))
    rc =
        ms_error_set(MS_EDATA, "'%s': test samples have %zu features but training samples have %zu",
                     c->data.path, data_sample_elems(r->test), data_sample_elems(r->train));
  return agree(r, rc);
}

static int check_labels(run *r) {
  char err[ERRLEN] = "";
  int classes = r->model->n_classes;
  int rc = data_rc(data_check_labels(r->train, classes, err, sizeof err), MS_EDATA, err);
  if (rc == 0 && r->test)
    rc = data_rc(data_check_labels(r->test, classes, err, sizeof err), MS_EDATA, err);
  if (rc) ms_error_prefix("the model has %d output units", classes);
  return agree(r, rc);
}

static int blas_threads(const comm_world *w, int configured) {
  if (configured > 0) return configured;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int per_rank = (int)(online > 0 ? online : 1) / (w->local_size > 0 ? w->local_size : 1);
  return per_rank > 0 ? per_rank : 1;
}

static int build_model(run *r) {
  const ms_config *c = &r->cfg;
  r->global_batch = c->train.batch_size;
  r->local_batch = r->global_batch / r->w->size;
  r->eval_chunk = c->train.eval_batch_size / r->w->size;
  if (r->eval_chunk < 1) r->eval_chunk = 1;
  int64_t max_batch = r->local_batch > r->eval_chunk ? r->local_batch : r->eval_chunk;
  size_t in = data_sample_elems(r->train);
  int rc = model_create(&r->model, c, (int)in, (int)max_batch);
  if (rc == 0) rc = optim_create(&r->opt, c, r->model->n_params);
  if (rc == 0) {
    r->perm = malloc(sizeof(uint64_t) * data_count(r->train));
    r->idx = malloc(sizeof(uint64_t) * (size_t)max_batch);
    r->x = malloc(sizeof(float) * (size_t)max_batch * in);
    r->y = malloc(sizeof(int32_t) * (size_t)max_batch);
    r->dlogits = malloc(sizeof(float) * (size_t)max_batch * (size_t)r->model->n_classes);
    if (!r->perm || !r->idx || !r->x || !r->y || !r->dlogits)
      rc = ms_error_set(MS_ENOMEM, "out of memory for batch buffers");
  }
  if ((rc = agree(r, rc))) return rc;
  if ((rc = check_labels(r))) return rc;

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

  /* Checkpoint tensors: views into the parameter and momentum arenas. */
  for (int i = 0; i < r->model->n_layers; i++) {
    const ms_dense *l = &r->model->layers[i];
    struct {
      const char *name;
      float *arena;
      size_t off;
      int ndim;
    } t[TENSORS_PER_LAYER] = {{l->w_name, r->model->params, l->w_off, 2},
                              {l->b_name, r->model->params, l->b_off, 1},
                              {l->w_name, r->opt->momentum, l->w_off, 2},
                              {l->b_name, r->opt->momentum, l->b_off, 1}};
    for (int k = 0; k < TENSORS_PER_LAYER; k++) {
      int j = i * TENSORS_PER_LAYER + k;
      snprintf(r->tensor_names[j], sizeof r->tensor_names[j], "%s%s",
               t[k].arena == r->opt->momentum ? "optim/momentum/" : "", t[k].name);
      ckpt_tensor *ct = &r->tensors[j];
      ct->name = r->tensor_names[j];
      ct->data = t[k].arena + t[k].off;
      ct->ndim = t[k].ndim;
      ct->shape[0] = l->out;
      ct->shape[1] = l->in;
    }
  }
  r->n_tensors = r->model->n_layers * TENSORS_PER_LAYER;
  return 0;
}

/* A save's failure found outside a save (rank 0's background write, or a
 * gather that every rank saw fail), kept until the ranks agree on it at the
 * next step. @return 0, or its code with its message set again. */
static int saver_failure(run *r) {
  return r->saver_rc < 0 ? ms_error_set(r->saver_rc, "%s", r->saver_msg) : 0;
}

static int keep_failure(run *r, int rc) {
  if (rc < 0 && r->saver_rc == 0) {
    r->saver_rc = rc;
    snprintf(r->saver_msg, sizeof r->saver_msg, "%s", ms_error_msg());
  }
  return rc;
}

/* Where a save with other ranks compresses. With every core training (the
 * ranks and their BLAS threads fill the node), compressing in the
 * background saves nothing: the ranks step in lockstep, so the CPU time the
 * compressing threads take comes back as stall, plus their cache and memory
 * traffic, and the frames wait for a later step boundary to be gathered.
 * So then each rank compresses its slice on the spot, in parallel (stall:
 * one slice's compression plus the gather). With a core to spare on the
 * node, the background threads use it and the stall is the snapshot copy.
 * Alone, a rank always saves in the background (saver_start): there is no
 * slice to share, and a synchronous write would stall for the whole file.
 * MIDSCALE_CKPT_COMPRESS=sync|background overrides (for the benchmark and
 * the tests). */
static int compress_in_background(const run *r) {
  const char *force = getenv("MIDSCALE_CKPT_COMPRESS");
  if (force && strcmp(force, "background") == 0) return 1;
  if (force && strcmp(force, "sync") == 0) return 0;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int local = r->w->local_size > 0 ? r->w->local_size : 1;
  return online > (long)local * blas_threads(r->w, r->cfg.run.threads);
}

/* Together: every rank's frame is ready; rank 0 gathers them and starts
 * writing the file in the background (sync: writes it now). Collective. */
static int gather_frames(run *r, int sync) {
  double t0 = comm_wtime();
  const void *frame = NULL;
  size_t len = 0;
  double compress_s = 0;
  int rc = agree(r, saver_frame(r->saver, &frame, &len, &compress_s));
  if (rc) return rc;
  char *all = NULL;
  size_t all_len = 0;
  rc = comm_rc(r, comm_gatherv_bytes(r->w, frame, len, 0, &all, &all_len, NULL));
  saver_frame_done(r->saver);
  if (rc) return rc;
  if (r->w->rank == 0) rc = saver_write(r->saver, all, all_len, sync);
  r->save_compress_s = compress_s;
  r->save_gather_s = comm_wtime() - t0;
  return agree(r, rc);
}

/* Completes what a save left in flight, on every rank: frames compressed in
 * the background are gathered once every rank's is ready (block: wait for
 * them); rank 0 reports a finished write (block: waits for it). A failure
 * is kept for the next step's agreement. @return saver_failure(r). */
static int collect_save(run *r, int block) {
  if (!r->saver) return saver_failure(r);
  if (saver_compressing(r->saver)) { /* the same on every rank */
    double t0 = comm_wtime();
    int ready = block || saver_frame_ready(r->saver);
    int all = comm_agree(r->w, ready ? 0 : -1);
    int rc = all == COMM_EMPI ? comm_rc(r, all) : all == 0 ? gather_frames(r, 0) : 0;
    if (all != -1) r->save_stall_s += comm_wtime() - t0;
    if (keep_failure(r, rc)) return rc;
  }
  if (r->w->rank != 0 || !saver_pending(r->saver) || (!block && !saver_finished(r->saver)))
    return saver_failure(r);
  saver_result res;
  int rc = saver_wait(r->saver, &res);
  if (rc < 0) return keep_failure(r, rc);
  snprintf(r->last_ckpt_path, sizeof r->last_ckpt_path, "%s", res.path);
  double mb = (double)res.file_bytes / 1e6, total = comm_wtime() - r->save_t0;
  metrics_say(r->metrics,
              "checkpoint %s (%.2f MB, ratio %.3f; in place after %.2f s, step stalled %.3f s)",
              res.path, mb, mb > 0 ? (double)res.raw_bytes / 1e6 / mb : 0.0, total,
              r->save_stall_s);
  char json[1400];
  snprintf(json, sizeof json,
           "{\"kind\":\"checkpoint\",\"step\":%lld,\"path\":\"%s\",\"bytes\":%lld,"
           "\"raw_bytes\":%lld,\"world\":%d,\"background_compress\":%d,\"write_s\":%.4f,"
           "\"stall_s\":%.5f,\"compress_s\":%.4f,\"gather_s\":%.4f,\"file_s\":%.4f}",
           (long long)res.step, res.path, res.file_bytes, res.raw_bytes, r->w->size,
           r->w->size == 1 || r->save_background, total, r->save_stall_s, r->save_compress_s,
           r->save_gather_s, res.write_seconds);
  metrics_json(r->metrics, json);
  return 0;
}

/* Together: hash the slices, rank 0 makes the header from the gathered
 * hashes, every rank compresses its slice (now, or in the background to be
 * gathered by a later collect_save). sync: everything now, the file in
 * place on return. Collective. */
static int save_together(run *r, const ckpt_meta *meta, int sync) {
  const uint64_t *hashes = NULL;
  size_t n_hashes = 0;
  int bg = r->save_background && !sync;
  int rc = agree(r, saver_hash(r->saver, r->cfg.checkpoint.shuffle, bg, &hashes, &n_hashes));
  if (rc) return rc;
  char *all = NULL;
  size_t all_len = 0;
  rc = comm_rc(r, comm_gatherv_bytes(r->w, hashes, n_hashes * sizeof *hashes, 0, &all, &all_len,
                                     NULL));
  if (rc) return rc;
  rc = saver_compress(r->saver, r->w->rank == 0 ? meta : NULL, (const uint64_t *)all,
                      all_len / sizeof(uint64_t));
  free(all);
  if ((rc = agree(r, rc))) return rc;
  return bg ? 0 : gather_frames(r, sync);
}

/* Saves the arenas at the current step. Alone, rank 0 snapshots them and a
 * background thread compresses and writes; together, every rank hashes and
 * compresses its slice and rank 0 gathers and writes in the background
 * (saver.h). sync (the end of a run, a stop signal): the file is in place
 * on return, all of the work done on the training threads, at their
 * priority, since they would only wait. */
static int save_checkpoint(run *r, int sync) {
  double t0 = comm_wtime();
  int rc = agree(r, collect_save(r, 1)); /* one save at a time */
  ckpt_meta meta = {0};
  if (rc == 0 && r->w->rank == 0) {
    const ms_config *c = &r->cfg;
    meta = (ckpt_meta){.step = r->step,
                       .epoch = r->epoch,
                       .step_in_epoch = r->step_in_epoch,
                       .world_size = r->w->size,
                       .seed = c->run.seed,
                       .rng_state = sampler_mix64(c->run.seed),
                       .layout_hash = r->layout_hash,
                       .config = config_emit(c),
                       .byte_shuffle = c->checkpoint.shuffle};
    if (!meta.config) rc = ms_error_set(MS_ENOMEM, "out of memory emitting the config");
  }
  if (rc == 0) {
    r->save_t0 = t0;
    r->save_compress_s = r->save_gather_s = 0;
    if (r->w->size == 1)
      rc = saver_start(r->saver, &meta, sync);
    else if ((rc = agree(r, rc)) == 0)
      rc = save_together(r, &meta, sync);
    r->save_stall_s = comm_wtime() - t0;
  }
  free(meta.config);
  if (rc == 0 && sync) rc = collect_save(r, 1);
  rc = agree(r, rc);
  r->t_ckpt += comm_wtime() - t0;
  if (rc == 0) r->last_ckpt_step = r->step, r->t_last_ckpt = comm_wtime();
  return rc;
}

static size_t tensor_elems(const ckpt_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

/* Asks whether a checkpoint's saved config allows resuming this run. */
static int resume_accept(void *ctx, const char *path, const ckpt_meta *meta) {
  return check_resume_meta(path, meta, ctx);
}

/* --resume: rank 0 finds, reads and verifies the checkpoint, decompressing
 * it once, then broadcasts the arenas and the cursor. The file is read into
 * scratch first: `--resume auto` may read a damaged newer file before a
 * good one, and if none is good the run starts from the initial arenas. */
static int resume(run *r, const char *what) {
  int rc = 0;
  char *path = NULL, *skipped = NULL;
  ckpt_meta meta = {0};
  int64_t cursor[4] = {0, 0, 0, 0}; /* found, step, epoch, step_in_epoch */
  ckpt_tensor *scratch = NULL;
  float *arena = NULL;
  if (r->w->rank == 0) {
    size_t n_floats = 0, off = 0;
    for (int i = 0; i < r->n_tensors; i++) n_floats += tensor_elems(&r->tensors[i]);
    scratch = malloc(sizeof *scratch * (r->n_tensors > 0 ? (size_t)r->n_tensors : 1));
    arena = malloc(sizeof(float) * (n_floats ? n_floats : 1));
    if (!scratch || !arena) rc = ms_error_set(MS_ENOMEM, "out of memory for resuming");
    for (int i = 0; rc == 0 && i < r->n_tensors; i++) {
      scratch[i] = r->tensors[i];
      scratch[i].data = arena + off;
      off += tensor_elems(&r->tensors[i]);
    }
    int is_auto = strcmp(what, "auto") == 0;
    /* The config is compared first (resume_accept), so that a changed model
     * is named by its keys rather than by the tensor shapes. */
    if (rc == 0)
      rc = ckpt_restore(is_auto ? r->ckpt_dir : NULL, is_auto ? NULL : what, scratch,
                        r->n_tensors, r->layout_hash, resume_accept, &r->cfg, &meta, &path,
                        &skipped);
    if (rc == 1) rc = 0; /* nothing to resume: a fresh start */
    else if (rc == 0) {
      for (int i = 0; i < r->n_tensors; i++)
        memcpy(r->tensors[i].data, scratch[i].data, tensor_elems(&r->tensors[i]) * sizeof(float));
      cursor[0] = 1, cursor[1] = meta.step, cursor[2] = meta.epoch, cursor[3] = meta.step_in_epoch;
    }
    free(arena);
    free(scratch);
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
  if ((rc = comm_rc(r, comm_bcast_f32(r->w, r->opt->momentum, r->opt->n, 0)))) goto done;
  r->step = cursor[1], r->epoch = cursor[2], r->step_in_epoch = cursor[3];
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
  char err[ERRLEN] = "";
  sampler_eval_range(data_count(r->test), r->w->size, r->w->rank, &begin, &count);
  double s[4] = {0, 0, 0, 0}; /* failed, loss sum, correct, samples */
  int rc = 0;
  for (uint64_t off = 0; off < count && rc == 0; off += (uint64_t)r->eval_chunk) {
    int n = (int)(count - off < (uint64_t)r->eval_chunk ? count - off : (uint64_t)r->eval_chunk);
    for (int i = 0; i < n; i++) r->idx[i] = begin + off + (uint64_t)i;
    rc = data_rc(data_read(r->test, r->idx, (size_t)n, (float)r->cfg.data.scale, r->x, r->y, err,
                           sizeof err),
                 MS_EDATA, err);
    if (rc) break;
    const float *logits = model_forward(r->model, r->x, n);
    long correct = 0;
    s[1] += softmax_xent(NULL, logits, r->y, n, r->model->n_classes, 1.0f, &correct);
    s[2] += (double)correct;
    s[3] += n;
  }
  if ((rc = agree(r, rc))) return rc;
  if ((rc = comm_rc(r, comm_allreduce_sum_f64(r->w, s + 1, 3)))) return rc;
  r->last_eval_loss = s[1] / s[3];
  r->last_eval_acc = s[2] / s[3];
  r->last_eval_step = r->step;
  r->t_eval += comm_wtime() - t0;
  metrics_eval(r->metrics, r->step, r->epoch, r->last_eval_loss, r->last_eval_acc, (long)s[3]);
  return 0;
}

/* One optimizer step on this rank's slice of the next global batch.
 * stats: loss sum, correct and samples of the global batch are added. */
static int train_step(run *r, double stats[3]) {
  char err[ERRLEN] = "";
  double t0 = comm_wtime();
  if (r->perm_epoch != r->epoch) {
    sampler_permutation(r->cfg.run.seed, (uint64_t)r->epoch, data_count(r->train), r->perm);
    r->perm_epoch = r->epoch;
  }
  uint64_t begin, count;
  sampler_rank_slice((uint64_t)r->global_batch, r->w->size, r->w->rank, &begin, &count);
  const uint64_t *idx = r->perm + r->step_in_epoch * r->global_batch + (int64_t)begin;
  int n = (int)count;
  /* Step scalars, reduced together before the gradients so that a rank
   * whose read failed, or that got a stop signal, stops every rank at the
   * same step without a hang: read failed, loss sum, correct, stop signal,
   * checkpoint time due (rank 0's clock), background save failed. */
  double s[6] = {0, 0, 0, 0, 0, 0};
  s[3] = r->stop_signal && *r->stop_signal ? 1 : 0;
  s[4] = r->w->rank == 0 && r->cfg.checkpoint.every_minutes > 0 &&
         comm_wtime() - r->t_last_ckpt >= 60.0 * r->cfg.checkpoint.every_minutes;
  s[5] = r->saver_rc < 0;
  int rc = data_rc(
      data_read(r->train, idx, (size_t)n, (float)r->cfg.data.scale, r->x, r->y, err, sizeof err),
      MS_EDATA, err);
  double t1 = comm_wtime();
  r->t_data += t1 - t0;
  if (rc == 0) {
    const float *logits = model_forward(r->model, r->x, n);
    long correct = 0;
    s[1] = softmax_xent(r->dlogits, logits, r->y, n, r->model->n_classes,
                        1.0f / (float)r->global_batch, &correct);
    s[2] = (double)correct;
    model_backward(r->model, r->dlogits);
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
  optim_sgd_step(r->opt, r->model->params, r->model->grads,
                 schedule_lr(&r->cfg, r->step, r->total_steps));
  r->t_compute += comm_wtime() - t3;
  stats[0] += s[1], stats[1] += s[2], stats[2] += (double)r->global_batch;
  r->step++;
  if (++r->step_in_epoch == r->steps_per_epoch) r->step_in_epoch = 0, r->epoch++;
  return 0;
}

static void say_start(run *r) {
  const ms_model *m = r->model;
  char shape[256];
  int off = snprintf(shape, sizeof shape, "%d", m->in_features);
  for (int i = 0; i < m->n_layers && off < (int)sizeof shape; i++)
    off += snprintf(shape + off, sizeof shape - (size_t)off, "-%d", m->layers[i].out);
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
  metrics_say(r->metrics, "model %s: %zu parameters, %.2f MFLOP/sample forward", shape, m->n_params,
              model_flops_per_sample(m) / 1e6);
  metrics_say(r->metrics,
              "train: %d epochs x %lld steps, global batch %lld (%lld per rank), run dir %s",
              r->cfg.train.epochs, (long long)r->steps_per_epoch, (long long)r->global_batch,
              (long long)r->local_batch, r->cfg.run.dir);
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
  r->save_background = compress_in_background(r);
  rc = saver_create(&r->saver, r->tensors, r->n_tensors, r->ckpt_dir, c->checkpoint.level,
                    c->checkpoint.workers, c->checkpoint.keep, r->w->rank, r->w->size,
                    r->save_background);
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
  r->perm_epoch = -1;
  r->last_ckpt_step = -1;
  r->last_eval_step = -1;
  say_start(r);
  if (a->resume && (rc = resume(r, a->resume))) return rc;
  return 0;
}

static void teardown(run *r) {
  saver_free(r->saver);
  metrics_close(r->metrics);
  optim_free(r->opt);
  model_free(r->model);
  data_close(r->train);
  data_close(r->test);
  free(r->cfg_text);
  free(r->perm);
  free(r->idx);
  free(r->x);
  free(r->y);
  free(r->dlogits);
}

static void say_summary(run *r, double wall, int64_t steps_run) {
  double t[5] = {r->t_compute, r->t_comm, r->t_data, r->t_ckpt, r->t_eval};
  /* The slowest rank's times are the ones the job waited for. */
  if (comm_allreduce_max_f64(r->w, t, 5) != 0) return;
  double sps = wall > 0 ? (double)steps_run * (double)r->global_batch / wall : 0.0;
  if (r->last_eval_step >= 0)
    metrics_say(r->metrics, "final test accuracy %.4f (loss %.4f)", r->last_eval_acc,
                r->last_eval_loss);
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
                    stats[1] / stats[2], schedule_lr(c, r.step - 1, r.total_steps),
                    (double)(r.step - log_from) * (double)r.global_batch / (now - t_log));
      t_log = now, log_from = r.step;
      stats[0] = stats[1] = stats[2] = 0;
    } else if (r.metrics && comm_wtime() - t_bar > 0.1) {
      metrics_progress(r.metrics, r.step, r.total_steps, stats[0] / stats[2]);
      t_bar = comm_wtime();
    }
    if (r.test && (r.epoch != epoch_before || last) && (rc = evaluate(&r))) goto out;
    if (r.stop_signo) break;
    (void)collect_save(&r, 0); /* a failure stops the next step */
    if (((c->checkpoint.every_steps > 0 && r.step % c->checkpoint.every_steps == 0) ||
         r.time_ckpt_due) &&
        !last && (rc = save_checkpoint(&r, 0)))
      goto out;
  }
  if (r.last_ckpt_step != r.step && (rc = save_checkpoint(&r, 1))) goto out;
  /* A save still in flight must be in place before the run reports. */
  if ((rc = agree(&r, collect_save(&r, 1)))) goto out;
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
