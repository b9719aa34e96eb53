/* The step loop and the step. What a run holds from start to end is made
 * by startup.c; the checkpoint protocol is ckpt_sync.c's, the losses and
 * the evaluation evaluate.c's, what the user reads report.c's. */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ckpt_sync.h"
#include "earlystop.h"
#include "evaluate.h"
#include "fault.h"
#include "ms_error.h"
#include "ranks.h"
#include "report.h"
#include "startup.h"
#include "timeline.h"
#include "timing.h"
#include "trace.h"

/* What the ranks agree on after each step, in one sum over ranks: each
 * field is this rank's contribution. The stop and failure fields are
 * non-zero on any rank that asks to stop or failed. */
typedef struct {
  double step_failed;    /* this rank could not read or compute its batch */
  double loss_sum;       /* the loss summed over this rank's samples */
  double correct;        /* top-1 hits (classifiers) */
  double stop_requested; /* a stop signal arrived */
  double ckpt_due;       /* rank 0's clock: checkpoint.every_minutes elapsed */
  double save_failed;    /* a background save failed (ckpt_sync_failed) */
  double seconds[T_PARTS]; /* this rank's seconds so far per part (timing.h) */
} step_agreement;

#define STEP_AGREEMENT_N (sizeof(step_agreement) / sizeof(double))
_Static_assert(sizeof(step_agreement) == (6 + T_PARTS) * sizeof(double),
               "step_agreement is reduced as an array of doubles");

typedef struct {
  ranks rk;
  train_setup s;
  ckpt_sync *ck;
  evaluator *ev;               /* NULL without a test set */
  report *rep;
  loss_fn loss;
  fault_stall stall;
  ckpt_cursor cur;             /* steps done, epoch (from 0) and steps done in it */
  float *dlogits;              /* (micro_batch, n_out) */
  float *acc;                  /* (n_params) gradients of the earlier micro-batches, K > 1 */
  /* seconds spent per part of the step, on this rank */
  double t_data, t_compute, t_comm, t_eval;
  double t_hook;               /* seconds inside the backward hook's comm calls */
  double mean_t[T_PARTS];      /* the parts' seconds so far, mean over ranks (as of the
                                * last step agreement) */
  double t_sync;               /* when this rank's last gradient sync wait began, less
                                * the step's hook seconds (report_step) */
  const volatile sig_atomic_t *stop_signal; /* set by main's signal handler */
  int stop_signo;              /* agreed: the signal that stops the run */
  int ckpt_due;                /* agreed: checkpoint.every_minutes elapsed */
  earlystop es;                /* train.early_stop; the same on every rank */
  timeline *tl;                /* log.trace_steps; NULL when off */
} run;

#define agree(r, rc) ranks_agree_at(&(r)->rk, (rc), __func__)

/* The batch of the current cursor from the loader. */
static int next_batch(run *r, loader_batch *b) {
  char err[MS_MSG_MAX] = "";
  const ckpt_cursor *c = &r->cur;
  int rc = ms_from_data(
      loader_next(r->s.loader, (uint64_t)c->epoch, (uint64_t)c->step_in_epoch, b, err, sizeof err),
      err);
  if (rc)
    ms_error_prefix("step %lld (epoch %lld, step %lld of the epoch)", (long long)c->step + 1,
                    (long long)c->epoch + 1, (long long)c->step_in_epoch + 1);
  return rc;
}

/* model_backward's hook on a step's last micro-batch: a range of gradients
 * is final; add the earlier micro-batches' and hand it to the reducer,
 * which starts the buckets it completes. */
static void on_grad_ready(void *ctx, size_t off, size_t len) {
  run *r = ctx;
  if (timeline_on(r->tl)) {
    const ms_model *m = r->s.model;
    for (int i = 0; i < m->n_p; i++)
      if (m->p[i].off == off) timeline_layer_done(r->tl, m->p[i].name);
  }
  if (r->acc) {
    float *g = r->s.model->grads + off;
    const float *a = r->acc + off;
    for (size_t i = 0; i < len; i++) g[i] += a[i];
  }
  if (!r->s.red) return;
  timeline_begin(r->tl, "reducer_ready");
  double t = comm_wtime();
  reducer_ready(r->s.red, off, len);
  r->t_hook += comm_wtime() - t;
  timeline_end(r->tl);
  timeline_mark(r->tl);
}

/* Forward and backward over the batch's train.accumulate micro-batches,
 * whose gradients add up (the loss is scaled by 1 / global batch on each,
 * so the sum is the global-batch mean: K only trades memory for time). The
 * last micro-batch's backward hands the gradients to the reducer. */
static void forward_backward(run *r, const loader_batch *b, step_agreement *sa) {
  const train_setup *s = &r->s;
  ms_model *m = s->model;
  const int K = s->accumulate, n = (int)s->micro_batch;
  const size_t elems = data_sample_elems(s->train), n_out = (size_t)m->n_out;
  for (int k = 0; k < K; k++) {
    const size_t row0 = (size_t)k * (size_t)n;
    double t1 = comm_wtime();
    /* Dropout masks follow the samples' dataset indices: world-size invariant. */
    ms_pass pass = {.seed = s->cfg.run.seed, .step = (uint64_t)r->cur.step, .rows = b->idx + row0};
    timeline_begin(r->tl, "forward");
    const float *out = model_forward(m, b->x + row0 * elems, n, &pass);
    timeline_end(r->tl);
    long correct = 0;
    /* A sequence loss has one label per position (evaluate.h). */
    const size_t labels = r->loss.positions > 0 ? (size_t)r->loss.positions : 1;
    timeline_begin(r->tl, "loss");
    sa->loss_sum += loss_compute(&r->loss, r->dlogits, out, b->y ? b->y + row0 * labels : NULL,
                                 b->t ? b->t + row0 * n_out : NULL, n,
                                 1.0f / (float)s->global_batch, &correct);
    timeline_end(r->tl);
    sa->correct += (double)correct / (double)labels;
    int last = k == K - 1;
    timeline_begin(r->tl, "backward");
    timeline_mark(r->tl);
    /* With a trace on, the hook also times the layers (one rank too). */
    model_backward(m, r->dlogits, &pass,
                   last && (s->red || r->acc || timeline_on(r->tl)) ? on_grad_ready : NULL, r);
    timeline_end(r->tl);
    if (!last) {
      float *g = m->grads, *a = r->acc;
      if (k == 0)
        memcpy(a, g, sizeof(float) * m->n_params);
      else
        for (size_t i = 0; i < m->n_params; i++) a[i] += g[i];
    }
    r->t_compute += comm_wtime() - t1;
  }
}

/* With a trace on: each bucket's collective, on its own track. */
static void trace_buckets(run *r) {
  double t0, t1;
  for (int b = 0, nb = reducer_bucket_times(r->s.red, 0, &t0, &t1); b < nb; b++) {
    char name[48];
    reducer_bucket_times(r->s.red, b, &t0, &t1);
    snprintf(name, sizeof name, "allreduce bucket %d", b);
    if (t0 > 0 && t1 >= t0) timeline_span(r->tl, TIMELINE_TID_BUCKET(b), name, t0, t1);
  }
}

/* The sharded update sums its range of the gradients inside the update
 * (optim_step_range_sum over reducer_shard_segments) on one node's shared
 * window when nothing needs the whole sum first, i.e. without clipping:
 * then the step agreement is the only synchronisation between the
 * gradients and the update. Across nodes the slice's sum crosses the
 * network first (reducer_finish_shard). Every rank decides the same (the
 * config and the layout). */
static int fused_shard_sum(const run *r) {
  return reducer_shared(r->s.red) && !(r->s.cfg.optim.clip_norm > 0);
}

/* The gradient sync's end and the step agreement (one sum over ranks of
 * sa, then, on a stop, which signal). Sets r->mean_t, r->stop_signo and
 * r->ckpt_due. @return 0, or the agreed failure of a rank's read or of a
 * background save, or MS_ECOMM. Collective. */
static int agree_step(run *r, step_agreement *sa, int rc) {
  ranks_enter(&r->rk, "gradient allreduce", "train_step");
  timeline_begin(r->tl, "gradient sync wait");
  int crc = !r->s.red            ? 0
            : r->s.shared_params ? (fused_shard_sum(r) ? reducer_shard_publish(r->s.red)
                                                       : reducer_finish_shard(r->s.red))
                                 : reducer_finish(r->s.red);
  timeline_end(r->tl);
  ranks_leave(&r->rk);
  if (crc) return ms_from_comm(crc, comm_errmsg(r->rk.w));
  if (timeline_on(r->tl) && r->s.red) trace_buckets(r);
  /* (This step's sync is counted from the next step's agreement on.) */
  double parts[T_PARTS] = {r->t_compute, r->t_comm, r->t_data, ckpt_sync_seconds(r->ck),
                           r->t_eval};
  memcpy(sa->seconds, parts, sizeof parts);
  ranks_enter(&r->rk, "step agreement", "train_step");
  timeline_begin(r->tl, "step agreement");
  crc = comm_allreduce_sum_f64(r->rk.w, (double *)sa, STEP_AGREEMENT_N);
  timeline_end(r->tl);
  ranks_leave(&r->rk);
  for (int i = 0; i < T_PARTS; i++) r->mean_t[i] = sa->seconds[i] / r->rk.w->size;
  if (crc == 0 && (sa->step_failed > 0 || sa->save_failed > 0)) {
    if (rc == 0) rc = ckpt_sync_failure(r->ck);
    return agree(r, rc);
  }
  if (crc == 0 && sa->stop_requested > 0) {
    /* Which signal: the largest number any rank got (one more collective,
     * on this path only). */
    double sig = r->stop_signal ? (double)*r->stop_signal : 0.0;
    ranks_enter(&r->rk, "stop-signal agreement", "train_step");
    crc = comm_allreduce_max_f64(r->rk.w, &sig, 1);
    ranks_leave(&r->rk);
    r->stop_signo = (int)sig;
  }
  r->ckpt_due = sa->ckpt_due > 0;
  return crc ? ms_from_comm(crc, comm_errmsg(r->rk.w)) : 0;
}

/* The end of a change of the node's shared parameters: the node's bf16
 * weights (bf16 layers), each rank rounding the range [lo, hi) it has
 * just written, then the barrier that publishes both. Collective over the
 * node; fn names the caller for the watchdog. @return 0, or the
 * conversion's or the barrier's error. */
static int publish_params(run *r, size_t lo, size_t hi, const char *fn) {
  int crc = model_bf16_update(r->s.model, lo, hi);
  ranks_enter(&r->rk, "parameter barrier", fn);
  int rc = comm_node_mem_barrier(r->s.shared_params);
  ranks_leave(&r->rk);
  return rc ? ms_from_comm(rc, comm_errmsg(r->rk.w)) : crc;
}

/* The sharded update (comm.shared_params; reducer.h): each rank updates
 * its range of the node-shared parameters with its range of the
 * node-shared optimizer state, and a barrier over the node ends the step
 * with the parameters complete. Collective.
 * - No clipping (fused_shard_sum): the update reads each gradient as
 *   its sum over every rank's segment (in rank order, the bits of
 *   reducer_finish), in the same pass; the summed gradients are never
 *   written. The step agreement before it (a collective over every
 *   rank, after reducer_shard_publish) was the "gradients complete"
 *   synchronisation.
 * - Clipping: reducer_finish_shard left this rank's sums in its own
 *   segment, and the step agreement came after every rank's sum, so the
 *   other ranks' sums are readable here: the clipping norm sums every range
 *   in rank order, which is the arena in index order, the same double
 *   additions as optim_clip_grad_norm over the whole arena (bit for bit).
 *   The factor goes into the update, not into the sums: the other ranks may
 *   still be reading them for their norm. */
static int sharded_update(run *r, double lr) {
  train_setup *s = &r->s;
  ms_model *m = s->model;
  size_t lo = 0, hi = 0;
  reducer_fence(s->red);
  const int P = reducer_shard(s->red, reducer_shard_self(s->red), &lo, &hi, NULL);
  if (fused_shard_sum(r)) {
    optim_step_range_sum(s->opt, m->params, reducer_shard_segments(s->red), P, 1.0f, lr, lo, hi);
  } else {
    double ss = 0.0, norm;
    for (int k = 0; k < P; k++) {
      size_t a = 0, b = 0;
      const float *seg = NULL;
      reducer_shard(s->red, k, &a, &b, &seg);
      ss = optim_sum_squares(seg + a, b - a, ss);
    }
    float f = optim_clip_factor(ss, s->cfg.optim.clip_norm, &norm);
    optim_step_range(s->opt, m->params, m->grads, f, lr, lo, hi);
  }
  return publish_params(r, lo, hi, "train_step");
}

/* After a resume wrote the node's shared parameters: their bf16 copy
 * (model_use_bf16) from them, each rank its range, before the first
 * forward. Collective over every rank when the parameters are shared. */
static int refresh_bf16(run *r) {
  train_setup *s = &r->s;
  if (!s->shared_params || !s->model->bf16) return 0;
  size_t lo = 0, hi = 0;
  reducer_shard(s->red, reducer_shard_self(s->red), &lo, &hi, NULL);
  return agree(r, publish_params(r, lo, hi, "setup"));
}

/* One optimizer step on this rank's slice of the next global batch. sa
 * gets the agreed loss sum and correct count of the global batch.
 *
 * Order of the collectives. The gradient buckets start during the last
 * micro-batch's backward, so they come before the step agreement; every
 * rank issues exactly the same collectives in the same order whatever
 * happened locally: a rank whose read failed contributes zero gradients
 * (its buckets all start in reducer_finish), and the agreement, reduced
 * right after the gradients and before the optimizer, makes every rank
 * abandon the step together. Agreeing first instead would put a blocking
 * collective (and a wait for the slowest rank's data) in front of every
 * step's compute. */
static int train_step(run *r, step_agreement *sa) {
  train_setup *s = &r->s;
  ms_model *m = s->model;
  memset(sa, 0, sizeof *sa);
  sa->stop_requested = r->stop_signal && *r->stop_signal ? 1 : 0;
  sa->ckpt_due = r->rk.w->rank == 0 && ckpt_sync_minutes_due(r->ck, comm_wtime());
  sa->save_failed = ckpt_sync_failed(r->ck);
  /* The loader thread has usually read this step's slice already: the
   * wait, or the read itself with data.prefetch 0, is the step's data time;
   * micro-batches (train.accumulate) are consecutive parts of the slice. */
  loader_batch b = {0};
  timeline_step(r->tl, r->cur.step + 1);
  if (r->tl && s->red) reducer_set_timing(s->red, timeline_on(r->tl));
  timeline_begin(r->tl, "step");
  timeline_begin(r->tl, "data wait");
  double t0 = comm_wtime();
  int rc = next_batch(r, &b);
  timeline_end(r->tl);
  if (rc == 0)
    trace_samples(r->rk.w->rank, r->cur.step, r->cur.epoch, b.idx, b.n, b.x,
                  data_sample_elems(s->train));
  r->t_data += comm_wtime() - t0;
  r->t_hook = 0;
  if (s->red) reducer_begin(s->red);
  if (rc == 0) forward_backward(r, &b, sa);
  /* A oneDNN primitive that could not be made (a new batch size, no
   * memory) fails the step on every rank, with its message. */
  if (rc == 0) rc = model_kernel_status(m);
  if (rc) {
    sa->step_failed = 1;
    memset(m->grads, 0, sizeof(float) * m->n_params);
  }
  r->t_compute -= r->t_hook;
  fault_stall_at(&r->stall, r->rk.w->rank, r->cur.step);
  double t2 = comm_wtime();
  r->t_sync = t2 - r->t_hook; /* the hook's sync calls count from the next agreement on */
  if ((rc = agree_step(r, sa, rc))) return rc;
  /* The reduced loss is the same number on every rank: no agreement needed. */
  if (!isfinite(sa->loss_sum))
    return ms_error_set(MS_EDATA,
                        "the training loss is not finite (%g) at step %lld (epoch %lld, step %lld "
                        "of the epoch): the inputs may hold NaN or Inf (data.check_finite: true "
                        "finds the sample) or training diverged (lower optim.lr or set "
                        "optim.clip_norm); parameters were not updated",
                        sa->loss_sum, (long long)r->cur.step + 1, (long long)r->cur.epoch + 1,
                        (long long)r->cur.step_in_epoch + 1);
  double t3 = comm_wtime();
  r->t_comm += t3 - t2 + r->t_hook;
  timeline_begin(r->tl, "optimizer");
  double lr = schedule_lr(&s->cfg, r->cur.step, s->len.total_steps);
  if (s->shared_params) {
    rc = sharded_update(r, lr);
  } else {
    /* Clipping sees the synced gradients: the same norm on every rank. */
    if (s->cfg.optim.clip_norm > 0)
      (void)optim_clip_grad_norm(m->grads, m->n_params, s->cfg.optim.clip_norm);
    optim_step(s->opt, m->params, m->grads, lr);
  }
  r->t_compute += comm_wtime() - t3;
  timeline_end(r->tl);
  if (rc) return rc;
  timeline_end(r->tl); /* the step */
  r->cur.step++;
  if (++r->cur.step_in_epoch == s->len.steps_per_epoch) r->cur.step_in_epoch = 0, r->cur.epoch++;
  return 0;
}

/* train.early_stop, with the state the resumed checkpoint kept (the same
 * string on every rank, so the same result). */
static int early_stop_setup(run *r, const char *from) {
  earlystop_init(&r->es, &r->s.cfg);
  int reset = 0;
  int rc = earlystop_parse(&r->es, ckpt_sync_state(r->ck), from[0] ? from : "checkpoint", &reset);
  if (rc) return agree(r, rc);
  if (reset)
    metrics_say(r->s.metrics,
                "early stopping: the checkpoint kept its state for another metric or mode; "
                "starting afresh");
  char st[CKPT_MAX_TRAIN_STATE];
  earlystop_format(&r->es, st, sizeof st);
  ckpt_sync_set_state(r->ck, st);
  return 0;
}

/* The step's buffers, the checkpoint coordinator, the evaluator and the
 * report, then --resume. Collective. */
static int setup(run *r, const train_args *a) {
  fault_stall_init(&r->stall);
  int rc = startup_open(&r->s, &r->rk, a);
  if (rc) return rc;
  train_setup *s = &r->s;
  ms_model *m = s->model;
  loss_init_model(&r->loss, &s->cfg, m);
  r->dlogits = malloc(sizeof(float) * (size_t)s->micro_batch * (size_t)m->n_out);
  if (s->accumulate > 1) r->acc = malloc(sizeof(float) * (m->n_params + 1));
  rc = !r->dlogits || (s->accumulate > 1 && !r->acc)
           ? ms_error_set(MS_ENOMEM, "out of memory for batch buffers")
           : report_create(&r->rep, &r->rk, s);
  if ((rc = agree(r, rc))) return rc;
  ckpt_sync_opts co = {.rk = &r->rk,
                       .metrics = s->metrics,
                       .cfg = &s->cfg,
                       .dir = s->ckpt_dir,
                       .model = m,
                       .opt = s->opt,
                       .shared_arenas = s->shared_params,
                       .blas_threads = s->blas_threads,
                       .cpus_per_rank = s->cpus_per_rank,
                       .steps_per_epoch = s->len.steps_per_epoch};
  if ((rc = ckpt_sync_create(&r->ck, &co))) return rc;
  if ((rc = agree(r, timeline_create(&r->tl, &s->cfg, r->rk.w->rank)))) return rc;
  ckpt_sync_set_timeline(r->ck, r->tl);
  size_t lo = 0, hi = 0;
  for (int b = 0, nb = s->red && r->tl ? reducer_buckets(s->red, 0, &lo, &hi) : 0; b < nb; b++) {
    char name[48];
    reducer_buckets(s->red, b, &lo, &hi);
    snprintf(name, sizeof name, "bucket %d (floats %zu-%zu)", b, lo, hi);
    timeline_thread_name(r->tl, TIMELINE_TID_BUCKET(b), name);
  }
  if (s->test && (rc = eval_create(&r->ev, &r->rk, m, &r->loss, s->test, &s->norm, s->eval_chunk,
                                   s->cfg.train.eval_top_k)))
    return rc;
  char ckpt_desc[256];
  ckpt_sync_describe(r->ck, ckpt_desc, sizeof ckpt_desc);
  report_banner(r->rep, ckpt_desc);
  char from[1100] = "";
  if (a->resume && (rc = ckpt_sync_resume(r->ck, a->resume, &r->cur, from, sizeof from)))
    return rc;
  if (from[0])
    report_resumed(r->rep, from, r->cur.step, r->cur.epoch, r->cur.step_in_epoch);
  if (from[0] && (rc = refresh_bf16(r))) return rc;
  if ((rc = early_stop_setup(r, from))) return rc;
  /* One optimizer step per training step (Adam's bias correction). */
  s->opt->t = r->cur.step;
  return 0;
}

static void teardown(run *r) {
  watchdog_free(r->rk.wd);
  r->rk.wd = NULL;
  ckpt_sync_free(r->ck);
  eval_free(r->ev);
  report_free(r->rep);
  timeline_free(r->tl);
  startup_close(&r->s);
  free(r->dlogits);
  free(r->acc);
}

/* After a step that ended an epoch (or the run), or every
 * train.eval_every_steps (mid_epoch): every test sample once; then early
 * stopping, which keeps a new best model apart (ckpt_sync_save_best) and
 * hands its state to the checkpoints that follow. */
static int evaluate(run *r, int64_t epoch, int mid_epoch) {
  double t0 = comm_wtime();
  ms_eval e;
  timeline_begin(r->tl, "eval");
  int rc = eval_run(r->ev, &e);
  timeline_end(r->tl);
  if (rc) return rc;
  r->t_eval += comm_wtime() - t0;
  e.mid_epoch = mid_epoch;
  report_eval(r->rep, r->cur.step, epoch, &e);
  if (!earlystop_on(&r->es)) return 0;
  int best = earlystop_update(&r->es, &e, r->cur.step);
  char st[CKPT_MAX_TRAIN_STATE];
  earlystop_format(&r->es, st, sizeof st);
  ckpt_sync_set_state(r->ck, st);
  if (!best) return 0;
  char why[160];
  snprintf(why, sizeof why, "eval %s %.6g at step %lld",
           config_enum_name("train.early_stop.metric", (int)r->es.metric), r->es.best,
           (long long)r->cur.step);
  return ckpt_sync_save_best(r->ck, &r->cur, why);
}

/* The step loop: steps, log lines, evaluations (at the end of each epoch,
 * every train.eval_every_steps), checkpoints (checkpoint.every_steps,
 * checkpoint.every_minutes, a stop signal, the end), until the run's last
 * step, --stop-at, a signal or early stopping. */
static int loop(run *r, const train_args *a) {
  const ms_config *c = &r->s.cfg;
  const int64_t total = r->s.len.total_steps;
  int rc = 0;
  step_agreement sa;
  const int64_t every = c->train.eval_every_steps;
  while (r->cur.step < total && !(a->stop_at > 0 && r->cur.step >= a->stop_at) &&
         !earlystop_stopped(&r->es)) {
    int64_t epoch_before = r->cur.epoch;
    if ((rc = train_step(r, &sa))) return rc;
    int last = r->cur.step == total, epoch_end = r->cur.epoch != epoch_before || last;
    report_step(r->rep, r->cur.step, epoch_before + 1, sa.loss_sum, sa.correct, r->mean_t,
                r->t_sync, last);
    if (r->ev && (epoch_end || (every > 0 && r->cur.step % every == 0)) &&
        (rc = evaluate(r, epoch_before + 1, !epoch_end)))
      return rc;
    if (r->stop_signo || earlystop_stopped(&r->es)) break;
    (void)ckpt_sync_poll(r->ck); /* a failure stops the next step */
    if (((c->checkpoint.every_steps > 0 && r->cur.step % c->checkpoint.every_steps == 0) ||
         r->ckpt_due) &&
        !last && (rc = ckpt_sync_save(r->ck, &r->cur, 0)))
      return rc;
  }
  if (ckpt_sync_last_step(r->ck) != r->cur.step && (rc = ckpt_sync_save(r->ck, &r->cur, 1)))
    return rc;
  /* A save still in flight must be in place before the run reports. */
  return ckpt_sync_finish(r->ck);
}

/* log.trace_steps: every rank's timeline into <run.dir>/trace.json.
 * Collective. */
static int write_trace(run *r) {
  char path[MS_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/trace.json", r->s.cfg.run.dir);
  int rc = timeline_write(r->tl, &r->rk, path);
  if (rc == 0)
    metrics_say(r->s.metrics, "trace of steps %d-%d (Chrome trace events, for Perfetto): %s",
                r->s.cfg.log.trace_steps.dims[0], r->s.cfg.log.trace_steps.dims[1], path);
  return rc;
}

int train_run(comm_world *w, const train_args *a) {
  run r;
  memset(&r, 0, sizeof r);
  r.rk.w = w;
  r.rk.step = &r.cur.step;
  r.stop_signal = a->stop_signal;
  ms_error_clear();
  int rc = setup(&r, a);
  if (rc) goto out;
  /* The watchdog times the step loop's collectives only: at start-up a rank
   * may rightly spend minutes loading data while the others wait. */
  if (a->on_hang) {
    rc = watchdog_create(&r.rk.wd, w, r.s.cfg.comm.timeout_s, a->on_hang, NULL);
    rc = ms_from_comm(rc, comm_errmsg(w));
    if ((rc = agree(&r, rc))) goto out;
  }
  report_begin(r.rep, r.cur.step);
  /* Every rank's clock starts here, right after a collective: a rank that
   * started before rank 0's peak measurement (report_begin) ended would
   * count its wait for rank 0 as comm, outside rank 0's wall, and the
   * summary's parts would add up to more than the run. The trace's zero. */
  if ((rc = agree(&r, 0))) goto out;
  double t_start = comm_wtime();
  ckpt_sync_start_clock(r.ck, t_start); /* checkpoint.every_minutes counts from here */
  if (r.tl) timeline_start_clock(r.tl, t_start);
  int64_t first_step = r.cur.step, total = r.s.len.total_steps;
  if ((rc = loop(&r, a))) goto out;
  if (r.tl && (rc = write_trace(&r))) goto out;
  double parts[T_PARTS] = {r.t_compute, r.t_comm, r.t_data, ckpt_sync_seconds(r.ck), r.t_eval};
  if (earlystop_stopped(&r.es)) {
    char why[400];
    earlystop_describe(&r.es, why, sizeof why);
    report_early_stop(r.rep, r.es.stop_step, why, CKPT_BEST_NAME);
  }
  report_summary(r.rep, comm_wtime() - t_start, r.cur.step - first_step, r.cur.step, parts,
                 r.cur.step < total);
  if (r.stop_signo) {
    rc = ms_error_set(MS_ESTOP,
                      "signal %d (%s) at step %lld of %lld; wrote %s; "
                      "continue with --resume auto",
                      r.stop_signo, strsignal(r.stop_signo), (long long)r.cur.step,
                      (long long)total, ckpt_sync_last_path(r.ck));
    goto out;
  }
  if (r.cur.step < total && !earlystop_stopped(&r.es))
    metrics_say(r.s.metrics,
                "stopped at step %lld of %lld (--stop-at); continue with --resume auto",
                (long long)r.cur.step, (long long)total);
out:
  teardown(&r);
  return rc;
}
