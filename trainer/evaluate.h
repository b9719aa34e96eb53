/* evaluate — the run's loss (model.loss, model.label_smoothing) and the
 * evaluation of the model on the test set.
 *
 * Ownership: loss_fn is plain data. An evaluator owns its batch buffers
 * and keeps pointers to the ranks, model, test set and norm it was given,
 * which must outlive it; it reads the test set only inside eval_run.
 *
 * Threads: the training thread.
 *
 * Collectives: eval_create and eval_run are collective over the run's
 * ranks (every rank evaluates its own slice of the test set, then the sums
 * are reduced). loss_* are rank-local.
 *
 * Errors: 0 or a negative MS_E* code, the same on every rank (ranks.h):
 * MS_ENOMEM, MS_EDATA (a test sample could not be read), MS_ECOMM.
 */
#ifndef MS_EVALUATE_H
#define MS_EVALUATE_H

#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "ranks.h"

typedef struct {
  ms_loss kind;    /* model.loss */
  int classifier;  /* takes class labels (y), else float targets (t) */
  int n_out;       /* outputs per sample */
  float smoothing; /* model.label_smoothing (softmax cross-entropy only) */
  int positions;   /* sequence loss: labels per sample, n_out / positions logits each; 0 = none */
} loss_fn;

/* The loss cfg asks for, on a model with n_out outputs. */
void loss_init(loss_fn *l, const ms_config *cfg, int n_out);

/* loss_init for model m: a model whose output is a sequence (m->seq_T > 0)
 * gets the sequence loss, softmax cross-entropy at each of its positions
 * (layers_seq.h seq_xent; labels (n, positions), next-token ids). */
void loss_init_model(loss_fn *l, const ms_config *cfg, const ms_model *m);

/* The loss of n rows of outputs out (n, n_out) against the labels y (n)
 * of a classifier or the targets t (n, n_out), summed over the rows (each
 * row's loss a mean over its outputs for the float losses). grad (may be
 * NULL) receives scale * d(sum)/d(out); *correct counts top-1 hits of a
 * classifier. With the sequence loss, y is (n, positions), a row's loss is
 * the mean over its positions, and *correct counts POSITIONS (divide by
 * positions for a per-sample figure). */
double loss_compute(const loss_fn *l, float *grad, const float *out, const int32_t *y,
                    const float *t, int n, float scale, long *correct);

typedef struct evaluator evaluator;

/* chunk: test samples per forward pass on each rank; top_k: also count
 * top-k hits (classifiers, k < outputs; 0 = off). Collective. */
int eval_create(evaluator **out, const ranks *rk, ms_model *model, const loss_fn *loss,
                data_set *test, const data_norm *norm, int64_t chunk, int top_k);

/* Evaluates every test sample exactly once across ranks; *res gets the
 * means over the whole test set, the same on every rank. Collective. */
int eval_run(evaluator *e, ms_eval *res);

/* What `midscale eval` prints beyond ms_eval, over the whole set. */
typedef struct {
  int n_classes;     /* classifiers (softmax cross-entropy): K; else 0 */
  double *confusion; /* (K, K) counts: row = true class, column = the top-1
                      * prediction (first largest output); NULL unless K */
  int n_out;         /* regression (mse, mae): outputs; else 0 (bce: neither) */
  double *r2;        /* (n_out) R^2 per output (NaN: constant targets); NULL unless n_out */
  double r2_mean;    /* their mean over the outputs where defined (NaN: none) */
} eval_detail;

/* eval_run, and fills *d (its arrays malloc'ed: eval_detail_free) with
 * the confusion matrix of a classifier or the R^2 of a regression. The
 * same sums as eval_run, reduced in the same call. Collective. On an
 * error *d holds nothing to free. */
int eval_run_detail(evaluator *e, ms_eval *res, eval_detail *d);

/* Frees d's arrays (not d); accepts NULL. */
void eval_detail_free(eval_detail *d);

/* Accepts NULL. */
void eval_free(evaluator *e);

#endif
