#include "evaluate.h"

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

/* Sums of this rank's share: loss, correct, samples, top-k correct,
 * squared and absolute error. */
static int eval_slice(evaluator *e, double s[6]) {
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
  }
  return 0;
}

int eval_run(evaluator *e, ms_eval *res) {
  double s[6] = {0, 0, 0, 0, 0, 0};
  int rc = ranks_agree(e->rk, eval_slice(e, s));
  if (rc) return rc;
  ranks_enter(e->rk, "evaluation sums", __func__);
  rc = ms_from_comm(comm_allreduce_sum_f64(e->rk->w, s, 6), comm_errmsg(e->rk->w));
  ranks_leave(e->rk);
  if (rc) return rc;
  *res = (ms_eval){.loss = s[0] / s[2],
                   .classifier = e->loss.classifier,
                   .binary = e->loss.kind == MS_LOSS_BCE,
                   .acc = s[1] / s[2],
                   .top_k = e->top_k,
                   .topk_acc = s[3] / s[2],
                   .mse = s[4] / s[2],
                   .mae = s[5] / s[2],
                   .n_samples = (long)s[2],
                   .sequence = e->loss.positions > 0};
  return 0;
}
