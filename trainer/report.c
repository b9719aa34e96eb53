#include "report.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "dnn.h"
#include "check.h"
#include "costmodel.h"
#include "layer_probe.h"
#include "ms_error.h"
#include "version.h"

struct report {
  const ranks *rk;
  const train_setup *s;
  ms_metrics *m;
  double peak;             /* rank 0: single-core FLOP/s of the precision that runs */
  const char *peak_name;   /* "sgemm" (fp32) or "bf16 matmul" */
  costmodel_layers layers; /* this model's kernels timed at start-up, slowest rank's */
  double mem_bw;           /* rank 0: memcpy bytes/s (the node's shared-memory sum) */
  double log_t[T_PARTS];   /* the parts' mean seconds at the last log line */
  double t_log, t_bar;     /* the last log line, the last progress bar */
  double t_sync_log;       /* report_step's t_sync at the last log line */
  int64_t log_from;        /* the step of the last log line */
  double stats[3];         /* loss sum, correct, samples since the last log line */
  ms_eval last_eval;
  int64_t last_eval_step, last_eval_epoch; /* -1: none yet */
  int64_t stop_step;                       /* early stopping ended the run here; -1: it did not */
  char stop_why[400], best_name[64];
};

int report_create(report **out, const ranks *rk, const train_setup *s) {
  report *rp = calloc(1, sizeof *rp);
  *out = rp;
  if (!rp) return ms_error_set(MS_ENOMEM, "out of memory for the report");
  rp->rk = rk, rp->s = s, rp->m = s->metrics;
  rp->last_eval_step = rp->last_eval_epoch = -1;
  rp->stop_step = -1;
  return 0;
}

void report_free(report *rp) { free(rp); }

/* "(1x28x28) -> dense(128) (128) -> ..." */
static void model_desc(const ms_model *m, char *shape, size_t n) {
  char part[128];
  model_shape_desc(m->in_c, m->in_h, m->in_w, shape, n);
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    char desc[64], out[48];
    model_layer_desc(l, desc, sizeof desc);
    model_shape_desc(l->out_c, l->out_h, l->out_w, out, sizeof out);
    snprintf(part, sizeof part, " -> %s %s", desc, out);
    if (strlen(shape) + strlen(part) < n) strcat(shape, part);
  }
}

static void say_comm(const report *rp) {
  const train_setup *s = rp->s;
  const reducer *red = s->red;
  if (red && s->shared_params && !reducer_hierarchical(red)) {
    metrics_say(rp->m,
                "comm: node shared memory (every rank on this node): each rank sums its part of "
                "the %.3g MB of gradients from all ranks' segments after backward (no overlap) "
                "and updates that part of the shared parameters (no write-back of the sum)",
                (double)s->model->n_params * sizeof(float) / 1e6);
  } else if (red && reducer_shared(red)) {
    metrics_say(rp->m,
                "comm: node shared memory (every rank on this node): each rank sums its part of "
                "the %.3g MB of gradients from all ranks' segments after backward (no overlap), "
                "%.3g MB of other ranks' memory read and written per rank per step",
                (double)s->model->n_params * sizeof(float) / 1e6, reducer_wire_bytes(red) / 1e6);
  } else if (red) {
    char sizes[160] = "";
    size_t lo = 0, hi = 0;
    int nb = reducer_buckets(red, -1, &lo, &hi);
    for (int b = 0; b < nb && b < 6; b++) {
      reducer_buckets(red, b, &lo, &hi);
      snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), "%s%.3g", b ? " + " : "",
               (double)(hi - lo) * sizeof(float) / 1e6);
    }
    if (nb > 6) snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), " + ...");
    const char *wire = config_enum_name("comm.compress", (int)s->cfg.comm.compress);
    int raw = s->cfg.comm.compress == MS_WIRE_NONE;
    metrics_say(rp->m,
                "comm: %s, %d bucket%s (%s MB), %s, %s on the wire%s, %.3g MB sent per "
                "rank per step",
                reducer_method(red), nb, nb == 1 ? "" : "s", sizes, reducer_overlap_desc(red),
                raw ? "fp32" : wire, raw ? "" : " with error feedback", reducer_wire_bytes(red) / 1e6);
  } else {
    metrics_say(rp->m,
                "comm: NO gradient sync (comm.sync false, a benchmark setting: every rank trains "
                "its own model)");
  }
}

void report_banner(report *rp, const char *ckpt_desc) {
  if (!rp->m) return;
  const train_setup *s = rp->s;
  const ms_config *c = &s->cfg;
  const ms_model *m = s->model;
  char shape[1024];
  model_desc(m, shape, sizeof shape);
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  metrics_say(rp->m,
              "midscale %s | world %d (%s) | BLAS OpenBLAS %s, %d thread(s)/rank | HDF5 %u.%u.%u",
              MS_VERSION_STRING, rp->rk->w->size, rp->rk->w->launcher, blas_corename(),
              s->blas_threads, maj, min, rel);
  metrics_say(rp->m, "data %s: %llu train%s, %llu test samples, %zu features", c->data.path,
              (unsigned long long)data_count(s->train),
              data_in_memory(s->train) ? " (in memory)" : " (streamed)",
              s->test ? (unsigned long long)data_count(s->test) : 0ULL,
              data_sample_elems(s->train));
  metrics_say(rp->m, "model %s: %zu parameters, %.2f MFLOP/sample forward, loss %s, %s", shape,
              m->n_params, model_flops_per_sample(m) / 1e6,
              config_enum_name("model.loss", (int)c->model.loss),
              config_enum_name("optim.name", (int)c->optim.name));
  char kernels[1024]; /* one entry per fp32 conv2d layer (model_kernels_desc) */
  model_kernels_desc(m, kernels, sizeof kernels);
  metrics_say(rp->m, "kernels: %s", kernels);
  if (m->precision == DNN_BF16 && strncmp(m->precision_why, "emulated", 8) == 0)
    metrics_say(rp->m, "warning: model.precision: %s", m->precision_why);
  char per_rank[96];
  if (s->accumulate > 1)
    snprintf(per_rank, sizeof per_rank, "%lld per rank in %d micro-batches of %lld",
             (long long)s->local_batch, s->accumulate, (long long)s->micro_batch);
  else
    snprintf(per_rank, sizeof per_rank, "%lld per rank", (long long)s->local_batch);
  char length[200];
  check_length_desc(c, &s->len, length, sizeof length);
  metrics_say(rp->m, "train: %s, global batch %lld (%s), run dir %s", length,
              (long long)s->global_batch, per_rank, c->run.dir);
  say_comm(rp);
  metrics_say(rp->m, "params: %s", s->params_desc);
  char mem[512];
  const comm_world *w = rp->rk->w;
  check_memory_desc(c, m, w->size, w->size / (w->local_size > 0 ? w->local_size : 1),
                    s->shared_params != NULL, mem, sizeof mem);
  metrics_say(rp->m, "%s", mem);
  if (s->link.nodes > 1)
    metrics_say(rp->m,
                "link probe: %d nodes, alpha %.3g us, %.3g Gbit/s (%.0f ms; feeds the cost "
                "model in the summary, never the choice of algorithm)",
                s->link.nodes, 1e6 * s->link.alpha, 8e-9 / s->link.beta, 1e3 * s->link.seconds);
  metrics_say(rp->m, "%s", s->loader_desc);
  metrics_say(rp->m, "checkpoint: %s, to %s", ckpt_desc, s->ckpt_dir);
}

void report_resumed(report *rp, const char *from, int64_t step, int64_t epoch,
                    int64_t step_in_epoch) {
  metrics_say(rp->m, "resumed from %s at step %lld (epoch %lld, %lld of its %lld steps done)",
              from, (long long)step, (long long)epoch + 1, (long long)step_in_epoch,
              (long long)rp->s->len.steps_per_epoch);
}

/* Every rank times the model's kernels at its micro-batch (layer_probe.h);
 * the table is the slowest rank's per part (the step waits for it). The
 * reduction is also the barrier that keeps the probe out of the first
 * step's comm time. Collective. */
static void probe_layers(report *rp) {
  const train_setup *s = rp->s;
  enum { N = MS_MAX_LAYERS + 5 };
  double v[N] = {0};
  costmodel_layers *c = &rp->layers;
  int64_t shape[MS_MAX_DIMS];
  int nd = check_input_shape(&s->cfg, s->train, shape);
  if (layer_probe_run(&s->cfg, shape, nd, (int)s->micro_batch, c) || !c->valid) {
    ms_error_clear();
    v[0] = 1.0; /* failed here: no table anywhere */
  }
  v[1] = c->forward_s, v[2] = c->loss_s, v[3] = c->optim_s, v[4] = (double)c->batch;
  for (int i = 0; i < MS_MAX_LAYERS; i++) v[5 + i] = c->layer_backward_s[i];
  ranks_enter(rp->rk, "layer probe", __func__);
  int crc = comm_allreduce_max_f64(rp->rk->w, v, N);
  ranks_leave(rp->rk);
  c->valid = crc == 0 && v[0] == 0.0;
  c->forward_s = v[1], c->loss_s = v[2], c->optim_s = v[3], c->batch = (int)v[4];
  for (int i = 0; i < MS_MAX_LAYERS; i++) c->layer_backward_s[i] = v[5 + i];
}

void report_begin(report *rp, int64_t step) {
  /* The peak of the precision the layers run in, so the fraction of peak
   * compares like with like. */
  int bf16 = rp->s->model->precision == DNN_BF16;
  rp->peak_name = bf16 ? "bf16 matmul" : "sgemm";
  if (rp->rk->w->rank == 0) {
    rp->peak = bf16 ? dnn_matmul_peak(DNN_BF16) : blas_sgemm_peak();
    rp->mem_bw = rp->rk->w->size > 1 ? layer_probe_memory_bandwidth() : 0.0;
  }
  probe_layers(rp);
  rp->t_log = rp->t_sync_log = comm_wtime();
  rp->log_from = step;
}

/* The breakdown of an interval: its wall time, the mean seconds per part
 * over ranks, the samples trained. */
static void breakdown(const report *rp, double wall, const double *t, double samples,
                      ms_breakdown *b) {
  ms_interval iv = {.wall = wall,
                    .samples = samples,
                    .flops_per_sample = model_flops_per_sample(rp->s->model),
                    .world = rp->rk->w->size,
                    .threads = rp->s->blas_threads,
                    .peak = rp->peak};
  memcpy(iv.t, t, sizeof iv.t);
  timing_breakdown(&iv, b);
}

/* Rank 0, at a log line: where the interval's time went. */
static void say_interval(report *rp, int64_t step, double wall, double samples,
                         const double mean_t[T_PARTS]) {
  double t[T_PARTS];
  for (int i = 0; i < T_PARTS; i++) t[i] = mean_t[i] - rp->log_t[i];
  memcpy(rp->log_t, mean_t, sizeof rp->log_t);
  ms_breakdown b;
  breakdown(rp, wall, t, samples, &b);
  char text[256], json[512], line[700];
  timing_format(&b, text, sizeof text, json, sizeof json);
  metrics_say(rp->m, "        time: %s | %.3g GFLOP/s per rank, %.0f%% of %s peak", text,
              b.flops_per_rank / 1e9, 100 * b.peak_frac, rp->peak_name);
  snprintf(line, sizeof line, "{\"kind\":\"time\",\"step\":%lld,%s}", (long long)step, json);
  metrics_json(rp->m, line);
}

void report_step(report *rp, int64_t step, int64_t epoch, double loss_sum, double correct,
                 const double mean_t[T_PARTS], double t_sync, int last) {
  const train_setup *s = rp->s;
  double *st = rp->stats;
  const int64_t total = s->len.total_steps;
  if (step % s->cfg.log.every_steps == 0 || last) {
    /* Each rank's parts of the interval are disjoint spans of its own
     * [t_sync at the last line, t_sync now]; those differ between ranks by
     * how early each reached the sync (its compute, a stall), so the
     * fractions are of the mean of the ranks' spans: at most 100%. */
    double span = t_sync - rp->t_sync_log;
    rp->t_sync_log = t_sync;
    ranks_enter(rp->rk, "log interval", __func__);
    int crc = comm_allreduce_sum_f64(rp->rk->w, &span, 1);
    ranks_leave(rp->rk);
    if (!rp->m) return;
    st[0] += loss_sum, st[1] += correct, st[2] += (double)s->global_batch;
    double now = comm_wtime(), samples = (double)(step - rp->log_from) * (double)s->global_batch;
    metrics_train(rp->m, step, total, epoch, st[0] / st[2],
                  check_is_classifier(&s->cfg) ? st[1] / st[2] : -1.0,
                  schedule_lr(&s->cfg, step - 1, total), samples / (now - rp->t_log));
    /* A failed sum leaves the line without its breakdown (the next
     * collective reports the failure). */
    if (crc == 0) say_interval(rp, step, span / rp->rk->w->size, samples, mean_t);
    rp->t_log = now, rp->log_from = step;
    st[0] = st[1] = st[2] = 0;
    return;
  }
  if (!rp->m) return;
  st[0] += loss_sum, st[1] += correct, st[2] += (double)s->global_batch;
  if (comm_wtime() - rp->t_bar > 0.1) {
    metrics_progress(rp->m, step, total, st[0] / st[2]);
    rp->t_bar = comm_wtime();
  }
}

void report_eval(report *rp, int64_t step, int64_t epoch, const ms_eval *e) {
  rp->last_eval = *e;
  rp->last_eval_step = step;
  rp->last_eval_epoch = epoch;
  metrics_eval(rp->m, step, epoch, e);
}

/* The last evaluation's line: the final one, or (stopped) the last before
 * the stop. */
static void say_last_eval(const report *rp, int stopped) {
  const ms_eval *e = &rp->last_eval;
  char what[96];
  if (stopped)
    snprintf(what, sizeof what, "last evaluation (epoch %lld, step %lld):",
             (long long)rp->last_eval_epoch, (long long)rp->last_eval_step);
  else
    snprintf(what, sizeof what, "final test");
  if (e->classifier)
    metrics_say(rp->m, "%s accuracy %.4f (loss %.4f)", what, e->acc, e->loss);
  else
    metrics_say(rp->m, "%s loss %.6g (%s)", what, e->loss,
                config_enum_name("model.loss", (int)rp->s->cfg.model.loss));
}

/* The cost model's input for this run: the model, the config's sync, the
 * layout and the probed link; compute from the layers measured at start-up
 * (layers 1) or from FLOPs at `rate` per rank. The reducer's own plan
 * decides the overlap: one bucket is one reduction after backward. */
static void model_input(const report *rp, int layers, double rate, costmodel_in *in) {
  const train_setup *s = rp->s;
  memset(in, 0, sizeof *in);
  costmodel_from_model(in, s->model);
  costmodel_from_config(in, &s->cfg);
  in->world = rp->rk->w->size;
  in->nodes = s->link.nodes > 0 && in->world % s->link.nodes == 0 ? s->link.nodes : 1;
  in->link.alpha = s->link.alpha, in->link.beta = s->link.beta;
  in->batch = (double)s->local_batch;
  in->rate = rate;
  in->mem_bw = rp->mem_bw;
  in->accumulate = s->accumulate;
  in->optim_shards = s->shared_params ? in->world / in->nodes : 1;
  if (layers) in->layers = rp->layers;
  size_t lo, hi;
  if (s->red && reducer_buckets(s->red, -1, &lo, &hi) == 1) in->overlap = 0;
}

/* Rank 0: the cost model's step next to the measured one (step_s: wall
 * time less checkpoints and evaluations per step; comm_s, compute_s:
 * seconds per step, the slowest rank's), from the layers
 * measured at start-up, and for comparison from FLOPs at the sgemm peak
 * and at the compute rate this run reached; into json (members, no
 * braces). */
static void say_prediction(const report *rp, double step_s, double comm_s, double compute_s,
                           char *json, size_t jn) {
  const train_setup *s = rp->s;
  const double flops = 3.0 * model_flops_per_sample(s->model) * (double)s->local_batch;
  costmodel_in in;
  costmodel_out at_layers, at_peak, at_run;
  json[0] = '\0';
  if ((!s->red && rp->rk->w->size > 1) || !rp->layers.valid || !(compute_s > 0)) return;
  model_input(rp, 1, 0.0, &in);
  if (costmodel_predict(&in, &at_layers)) return;
  model_input(rp, 0, rp->peak * s->blas_threads, &in);
  if (!(rp->peak > 0) || costmodel_predict(&in, &at_peak)) memset(&at_peak, 0, sizeof at_peak);
  model_input(rp, 0, flops / compute_s, &in);
  if (costmodel_predict(&in, &at_run)) return;
  metrics_say(rp->m,
              "cost model (%s, %s): measured step %.3f ms (without checkpoints and evaluations; "
              "compute %.3f, exposed comm %.3f) | "
              "predicted from this model's layers timed at start-up: step %.3f ms (compute "
              "%.3f, exposed comm %.3f), %.2fx the measured | from FLOPs at the sgemm peak: "
              "step %.3f ms | at this run's compute rate (%.3g GFLOP/s): step %.3f ms",
              in.world == 1 ? "no sync"
              : !in.overlap ? "one reduction after backward"
                            : "ideal overlap schedule",
              in.nodes > 1 ? "link from the start-up probe"
              : in.world > 1 ? "one node"
                             : "one rank",
              1e3 * step_s,
              1e3 * compute_s, 1e3 * comm_s, 1e3 * at_layers.step_s, 1e3 * at_layers.compute_s,
              1e3 * at_layers.exposed_s, at_layers.step_s / step_s, 1e3 * at_peak.step_s,
              flops / compute_s / 1e9, 1e3 * at_run.step_s);
  if (at_layers.exposed_s > at_layers.compute_s && in.wire == WIRE_F32)
    metrics_say(rp->m,
                "hint: the link is the limit (predicted exposed comm %.0f%% of the step); "
                "comm.compress bf16 halves the bytes on it",
                100 * at_layers.exposed_s / at_layers.step_s);
  snprintf(json, jn,
           ",\"predicted\":{\"compute_from\":\"layers\",\"link_alpha_us\":%.2f,"
           "\"link_gbit_s\":%.4g,\"nodes\":%d,\"overlap\":%d,\"measured_step_ms\":%.4f,"
           "\"measured_comm_ms\":%.4f,\"measured_compute_ms\":%.4f,\"step_ms\":%.4f,"
           "\"exposed_ms\":%.4f,\"compute_ms\":%.4f,\"sync_ms\":%.4f,\"efficiency\":%.4f,"
           "\"step_ms_peak\":%.4f,\"compute_ms_peak\":%.4f,\"step_ms_run_rate\":%.4f,"
           "\"exposed_ms_run_rate\":%.4f,\"efficiency_run_rate\":%.4f}",
           in.link.beta > 0 ? 1e6 * in.link.alpha : 0.0,
           in.link.beta > 0 ? 8e-9 / in.link.beta : 0.0, in.nodes, in.overlap, 1e3 * step_s,
           1e3 * comm_s, 1e3 * compute_s, 1e3 * at_layers.step_s, 1e3 * at_layers.exposed_s,
           1e3 * at_layers.compute_s, 1e3 * at_layers.sync_s, at_layers.efficiency,
           1e3 * at_peak.step_s, 1e3 * at_peak.compute_s, 1e3 * at_run.step_s,
           1e3 * at_run.exposed_s, at_run.efficiency);
}

void report_early_stop(report *rp, int64_t step, const char *why, const char *best_name) {
  rp->stop_step = step;
  snprintf(rp->stop_why, sizeof rp->stop_why, "%s", why);
  snprintf(rp->best_name, sizeof rp->best_name, "%s", best_name);
}

void report_summary(report *rp, double wall, int64_t steps_run, int64_t step,
                    const double t_rank[T_PARTS], int stopped) {
  const train_setup *s = rp->s;
  double t[T_PARTS], mean[T_PARTS + 1];
  memcpy(t, t_rank, sizeof t);
  memcpy(mean, t_rank, sizeof t);
  mean[T_PARTS] = wall;
  /* The slowest rank's times are the ones the job waited for; the mean
   * gives the fractions, of the mean of the ranks' own walls: each rank's
   * parts are disjoint spans of its own wall, so they add up to at most
   * 100% (rank 0's wall alone could be shorter than another rank's). */
  ranks_enter(rp->rk, "summary", __func__);
  int crc = comm_allreduce_max_f64(rp->rk->w, t, T_PARTS);
  if (crc == 0) crc = comm_allreduce_sum_f64(rp->rk->w, mean, T_PARTS + 1);
  ranks_leave(rp->rk);
  if (crc != 0 || !rp->m) return;
  const int world = rp->rk->w->size, threads = s->blas_threads;
  for (int i = 0; i <= T_PARTS; i++) mean[i] /= world;
  double sps = wall > 0 ? (double)steps_run * (double)s->global_batch / wall : 0.0;
  if (rp->last_eval_step >= 0) say_last_eval(rp, stopped);
  if (rp->stop_step >= 0)
    metrics_say(rp->m, "early stop at step %lld of %lld: %s (kept as %s in %s)",
                (long long)rp->stop_step, (long long)s->len.total_steps, rp->stop_why,
                rp->best_name, s->ckpt_dir);
  metrics_say(rp->m,
              "done: %lld steps in %.2f s, %.0f samples/s; time per part (max over ranks): "
              "compute %.2f s, comm %.2f s, data %.2f s, checkpoint %.2f s, eval %.2f s",
              (long long)steps_run, wall, sps, t[0], t[1], t[2], t[3], t[4]);
  ms_breakdown b;
  breakdown(rp, mean[T_PARTS], mean, (double)steps_run * (double)s->global_batch, &b);
  char text[256], bjson[512];
  timing_format(&b, text, sizeof text, bjson, sizeof bjson);
  metrics_say(rp->m, "time (mean over ranks): %s", text);
  metrics_say(rp->m,
              "speed: %.0f samples/s; model %.3g GFLOP/s per rank (3x the %.3g MFLOP/sample "
              "forward), %.1f%% of %d x %.3g GFLOP/s (single-core %s peak measured at "
              "start-up, %d BLAS thread%s per rank)",
              b.samples_per_s, b.flops_per_rank / 1e9, model_flops_per_sample(s->model) / 1e6,
              100 * b.peak_frac, threads, rp->peak / 1e9, rp->peak_name, threads,
              threads == 1 ? "" : "s");
  char pjson[900] = "";
  /* A step is what the loop repeats: checkpoints and evaluations are parts
   * of their own (a short run's final checkpoint is not a step's cost). */
  double loop = wall - t[T_CKPT] - t[T_EVAL];
  if (steps_run > 0)
    say_prediction(rp, (loop > 0 ? loop : wall) / (double)steps_run,
                   t[T_COMM] / (double)steps_run, t[T_COMPUTE] / (double)steps_run, pjson,
                   sizeof pjson);
  double acc = -1.0;
  if (rp->last_eval_step >= 0 && (rp->last_eval.classifier || rp->last_eval.binary))
    acc = rp->last_eval.acc;
  char json[2400], stop[600] = "";
  /* The reason is made of key names and numbers: nothing to escape. */
  if (rp->stop_step >= 0)
    snprintf(stop, sizeof stop, ",\"early_stop\":{\"step\":%lld,\"reason\":\"%s\"}",
             (long long)rp->stop_step, rp->stop_why);
  snprintf(json, sizeof json,
           "{\"kind\":\"summary\",\"steps\":%lld,\"seconds\":%.3f,\"samples_per_s\":%.1f,"
           "\"test_acc\":%.6f,\"compute_s\":%.3f,\"comm_s\":%.3f,\"data_s\":%.3f,"
           "\"checkpoint_s\":%.3f,\"eval_s\":%.3f,\"world\":%d,\"sgemm_peak_gflops\":%.2f,"
           "\"fractions\":{%s}%s%s}",
           (long long)step, wall, sps, acc, t[0], t[1], t[2], t[3], t[4], world, rp->peak / 1e9,
           bjson, pjson, stop);
  metrics_json(rp->m, json);
}
