#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "layers.h"
#include "layers_seq.h"
#include "ms_error.h"
#include "sampler.h"

struct evaluator {
  const ranks *rk;
  ms_model *model;
  loss_fn loss;
  data_set *test;
  const data_norm *norm;
  int64_t chunk;
  int top_k;
  uint64_t *idx; /* (chunk) */
  float *x;      /* (chunk, sample elems) */
  int32_t *y;    /* (chunk) */
  float *t;      /* (chunk, n_out) */
};

void loss_init(loss_fn *l, const ms_config *cfg, int n_out) {
  l->kind = cfg->model.loss;
  l->classifier = l->kind == MS_LOSS_XENT;
  l->n_out = n_out;
  l->smoothing = (float)cfg->model.label_smoothing;
  l->positions = 0;
}

void loss_init_model(loss_fn *l, const ms_config *cfg, const ms_model *m) {
  loss_init(l, cfg, (int)m->n_out);
  if (m->seq_T > 0 && l->kind == MS_LOSS_XENT) l->positions = m->seq_T;
}

double loss_compute(const loss_fn *l, float *grad, const float *out, const int32_t *y,
                    const float *t, int n, float scale, long *correct) {
  int K = l->n_out;
  switch (l->kind) {
    case MS_LOSS_BCE: return bce_logits_loss(grad, out, t, n, K, scale);
    case MS_LOSS_MSE: return mse_loss(grad, out, t, n, K, scale);
    case MS_LOSS_MAE: return mae_loss(grad, out, t, n, K, scale);
    case MS_LOSS_XENT: break;
  }
  if (l->positions > 0) {
    const int P = l->positions, V = K / P;
    if (l->smoothing > 0)
      return softmax_xent_smooth(grad, out, y, n * P, V, l->smoothing, scale / (float)P,
                                 correct) /
             P;
    return seq_xent(grad, out, y, n, P, V, scale, correct);
  }
  if (l->smoothing > 0) return softmax_xent_smooth(grad, out, y, n, K, l->smoothing, scale, correct);
  return softmax_xent(grad, out, y, n, K, scale, correct);
}

int eval_create(evaluator **out, const ranks *rk, ms_model *model, const loss_fn *loss,
                data_set *test, const data_norm *norm, int64_t chunk, int top_k) {
  *out = NULL;
  evaluator *e = calloc(1, sizeof *e);
  int rc = 0;
  if (e) {
    *e = (evaluator){.rk = rk, .model = model, .loss = *loss, .test = test, .norm = norm,
                     .chunk = chunk,
                     .top_k = loss->classifier && !loss->positions && top_k < loss->n_out ? top_k
                                                                                           : 0};
    size_t n = (size_t)chunk;
    e->idx = malloc(sizeof *e->idx * n);
    e->x = malloc(sizeof *e->x * n * data_sample_elems(test));
    e->y = malloc(sizeof *e->y * n * data_label_elems(test)); /* seq_len per token window */
    e->t = malloc(sizeof *e->t * n * (size_t)loss->n_out);
  }
  if (!e || !e->idx || !e->x || !e->y || !e->t)
    rc = ms_error_set(MS_ENOMEM, "out of memory for evaluation buffers");
  if ((rc = ranks_agree(rk, rc))) {
    eval_free(e);
    return rc;
  }
  *out = e;
  return 0;
}

void eval_free(evaluator *e) {
  if (!e) return;
  free(e->idx);
  free(e->x);
  free(e->y);
  free(e->t);
  free(e);
}

/* The row's top-1 class: the first largest output, as softmax_xent counts
 * a hit, so the confusion matrix's diagonal sums to the accuracy's hits. */
static int top1(const float *z, int K) {
  int best = 0;
  for (int k = 1; k < K; k++)
    if (z[k] > z[best]) best = k;
  return best;
}

/* The detail sums of n rows (eval_detail): a classifier's confusion counts
 * (K, K), or a regression's per-output sums of the target, its square and
 * the squared error, (3, K). Not for bce_with_logits, which has neither. */
static void add_detail(const evaluator *e, const float *out, int n, double *d) {
  const int K = e->loss.n_out;
  if (e->loss.classifier) {
    for (int i = 0; i < n; i++) d[(size_t)e->y[i] * K + top1(out + (size_t)i * K, K)] += 1;
    return;
  }
  for (int i = 0; i < n; i++)
    for (int k = 0; k < K; k++) {
      double t = e->t[(size_t)i * K + k], r = out[(size_t)i * K + k] - t;
      d[k] += t;
      d[K + k] += t * t;
      d[2 * K + k] += r * r;
    }
}

/* Sums of this rank's share: loss, correct, samples, top-k correct,
 * squared and absolute error; then, when detail is not NULL, add_detail's
 * sums. */
static int eval_slice(evaluator *e, double *s, double *detail) {
  const loss_fn *l = &e->loss;
  const int K = l->n_out;
  uint64_t begin, count;
  const comm_world *w = e->rk->w;
  sampler_eval_range(data_count(e->test), w->size, w->rank, &begin, &count);
  for (uint64_t off = 0; off < count; off += (uint64_t)e->chunk) {
    int n = (int)(count - off < (uint64_t)e->chunk ? count - off : (uint64_t)e->chunk);
    char err[MS_MSG_MAX] = "";
    for (int i = 0; i < n; i++) e->idx[i] = begin + off + (uint64_t)i;
    int rc = ms_from_data(
        data_read(e->test, e->idx, (size_t)n, e->norm, e->x, l->classifier ? e->y : NULL,
                  l->classifier ? NULL : e->t, err, sizeof err),
        err);
    if (rc) return rc;
    const float *out = model_forward(e->model, e->x, n, NULL);
    long correct = 0;
    s[0] += loss_compute(l, NULL, out, e->y, e->t, n, 1.0f, &correct);
    s[1] += (double)correct / (l->positions > 0 ? l->positions : 1);
    s[2] += n;
    if (e->top_k > 0) s[3] += (double)topk_correct(out, e->y, n, K, e->top_k);
    if (l->kind == MS_LOSS_BCE) {
      long hits = 0;
      for (long j = 0; j < (long)n * K; j++) hits += (out[j] > 0.0f) == (e->t[j] > 0.5f);
      s[1] += (double)hits / K;
    } else if (!l->classifier) {
      s[4] += mse_loss(NULL, out, e->t, n, K, 1.0f);
      s[5] += mae_loss(NULL, out, e->t, n, K, 1.0f);
    }
    if (detail) add_detail(e, out, n, detail);
  }
  return 0;
}

/* The means of the summed s (eval_slice) over the whole set. */
static ms_eval eval_means(const evaluator *e, const double *s) {
  return (ms_eval){.loss = s[0] / s[2],
                   .classifier = e->loss.classifier,
                   .binary = e->loss.kind == MS_LOSS_BCE,
                   .acc = s[1] / s[2],
                   .top_k = e->top_k,
                   .topk_acc = s[3] / s[2],
                   .mse = s[4] / s[2],
                   .mae = s[5] / s[2],
                   .n_samples = (long)s[2],
                   .sequence = e->loss.positions > 0};
}

int eval_run(evaluator *e, ms_eval *res) {
  double s[6] = {0, 0, 0, 0, 0, 0};
  int rc = ranks_agree(e->rk, eval_slice(e, s, NULL));
  if (rc) return rc;
  ranks_enter(e->rk, "evaluation sums", __func__);
  rc = ms_from_comm(comm_allreduce_sum_f64(e->rk->w, s, 6), comm_errmsg(e->rk->w));
  ranks_leave(e->rk);
  if (rc) return rc;
  *res = eval_means(e, s);
  return 0;
}

/* R^2 of each output from the (3, K) sums: 1 - SS_res / SS_tot, SS_tot the
 * targets' spread about their mean; an output whose targets do not vary
 * gets NaN (R^2 is undefined there), and the mean leaves it out. */
static void r2_of(eval_detail *d, const double *sums, double n) {
  const int K = d->n_out;
  double total = 0;
  int counted = 0;
  for (int k = 0; k < K; k++) {
    double mean = sums[k] / n, ss_tot = sums[K + k] - n * mean * mean;
    d->r2[k] = ss_tot > 0 ? 1.0 - sums[2 * K + k] / ss_tot : NAN;
    if (ss_tot > 0) total += d->r2[k], counted++;
  }
  d->r2_mean = counted ? total / counted : NAN;
}

int eval_run_detail(evaluator *e, ms_eval *res, eval_detail *d) {
  const int K = e->loss.n_out;
  /* A sequence model's confusion table would be (T x V) squared: its detail
   * is the per-position loss and accuracy of eval_means alone. */
  const int classifier = e->loss.classifier && e->loss.positions == 0;
  const int regression = !e->loss.classifier && e->loss.kind != MS_LOSS_BCE;
  *d = (eval_detail){.n_classes = classifier ? K : 0, .n_out = regression ? K : 0};
  size_t extra = classifier ? (size_t)K * K : regression ? 3 * (size_t)K : 0;
  double *s = calloc(6 + extra, sizeof *s);
  int rc = 0;
  if (classifier) d->confusion = calloc((size_t)K * K, sizeof *d->confusion);
  if (regression) d->r2 = calloc((size_t)K, sizeof *d->r2);
  if (!s || (classifier && !d->confusion) || (regression && !d->r2))
    rc = ms_error_set(MS_ENOMEM, "out of memory for the evaluation's tables");
  if (rc == 0) rc = eval_slice(e, s, extra ? s + 6 : NULL); /* bce: no detail */
  if ((rc = ranks_agree(e->rk, rc))) goto fail;
  ranks_enter(e->rk, "evaluation sums", __func__);
  rc = ms_from_comm(comm_allreduce_sum_f64(e->rk->w, s, 6 + extra), comm_errmsg(e->rk->w));
  ranks_leave(e->rk);
  if (rc) goto fail;
  *res = eval_means(e, s);
  if (classifier) memcpy(d->confusion, s + 6, extra * sizeof *s);
  if (regression) r2_of(d, s + 6, s[2]);
  free(s);
  return 0;
fail:
  free(s);
  eval_detail_free(d);
  return rc;
}

void eval_detail_free(eval_detail *d) {
  if (!d) return;
  free(d->confusion);
  free(d->r2);
  d->confusion = d->r2 = NULL;
}
