/* metrics — what rank 0 tells the user: log lines, a progress bar on a
 * terminal, and JSON lines in <run dir>/metrics.jsonl.
 *
 * Only the rank that opened the sink writes; others pass NULL and every call
 * is a no-op. Not thread-safe.
 */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include <stdint.h>
#include <stdio.h>

typedef struct ms_metrics ms_metrics;

/* Opens (appends to) path for JSON lines; out is the human-readable stream
 * (stdout). progress: draw a bar when out is a terminal.
 * @return 0 or MS_EIO. */
int metrics_open(ms_metrics **m, const char *jsonl_path, FILE *out, int progress);

/* Flushes and closes; accepts NULL. */
void metrics_close(ms_metrics *m);

/* A training log record: one line for the user and one JSON line. acc < 0
 * (a regression model) leaves the accuracy out. */
void metrics_train(ms_metrics *m, int64_t step, int64_t total_steps, int64_t epoch,
                   double loss, double acc, double lr, double samples_per_s);

/* What an evaluation measured over the whole test set. */
typedef struct {
  double loss;   /* the training loss's mean over the samples */
  int classifier;
  int binary;    /* bce_with_logits: acc is the fraction of outputs on the target's side of 0.5 */
  double acc;    /* classifiers: top-1 accuracy; binary: see above */
  int top_k;     /* classifiers: k of topk_acc, 0 = not measured */
  double topk_acc;
  double mse, mae; /* regression: mean over all outputs */
  long n_samples;
} ms_eval;

/* An evaluation record at the end of an epoch. */
void metrics_eval(ms_metrics *m, int64_t step, int64_t epoch, const ms_eval *e);

/* Redraws the progress bar (when enabled and on a terminal). */
void metrics_progress(ms_metrics *m, int64_t step, int64_t total_steps, double loss);

/* Writes a free-form JSON object line (already serialised, no newline). */
void metrics_json(ms_metrics *m, const char *json_object);

/* Prints a line for the user, clearing the progress bar first. */
void metrics_say(ms_metrics *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
