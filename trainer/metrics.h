/* metrics — what rank 0 tells the user: log lines, a progress bar on a
 * terminal, and JSON lines in <run dir>/metrics.jsonl.
 *
 * JSON records are built with jansson, so strings (paths) are always
 * escaped, and written compact with their keys in a fixed order
 * ({"kind":"train","step":...}: tools may grep them). Reals carry 9
 * significant digits; accuracies, seconds and rates are first rounded to
 * the decimals they are measured to; a NaN or infinite value is written as
 * null. A record that cannot be built for lack of memory loses the keys
 * concerned, never the run: these calls have no error return.
 *
 * Only the rank that opened the sink writes; others pass NULL and every call
 * is a no-op. Not thread-safe: one thread (the training thread) calls them.
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
void metrics_train(ms_metrics *m, int64_t step, int64_t total_steps, int64_t epoch, double loss,
                   double acc, double lr, double samples_per_s);

/* What an evaluation measured over the whole test set. */
typedef struct {
  double loss; /* the training loss's mean over the samples */
  int classifier;
  int binary; /* bce_with_logits: acc is the fraction of outputs on the target's side of 0.5 */
  double acc; /* classifiers: top-1 accuracy; binary: see above */
  int top_k;  /* classifiers: k of topk_acc, 0 = not measured */
  double topk_acc;
  double mse, mae; /* regression: mean over all outputs */
  long n_samples;
  int sequence; /* a sequence loss: loss and acc are means over positions; loss in nats */
} ms_eval;

/* An evaluation record at the end of an epoch. */
void metrics_eval(ms_metrics *m, int64_t step, int64_t epoch, const ms_eval *e);

/* A checkpoint now in place, as the "checkpoint" record reports it. */
typedef struct {
  int64_t step;
  const char *path;        /* borrowed for the call; any bytes (escaped in JSON) */
  long long bytes;         /* file size */
  long long raw_bytes;     /* uncompressed payload */
  int world;               /* ranks of the run */
  int background_compress; /* 1: compressed off the training thread */
  int ranks_write;         /* 1: ranks wrote their frames into the file themselves */
  double write_s;          /* from the save's start until the file was in place */
  double stall_s;          /* training-thread time the save cost */
  double compress_s, gather_s, file_s;
} metrics_ckpt;

/* The "checkpoint" JSON record (keys in the order of metrics_ckpt, after
 * "kind"); nothing on the human-readable stream (metrics_say is for that). */
void metrics_checkpoint(ms_metrics *m, const metrics_ckpt *c);

/* Redraws the progress bar (when enabled and on a terminal). */
void metrics_progress(ms_metrics *m, int64_t step, int64_t total_steps, double loss);

/* Writes a free-form JSON object line (already serialised, no newline).
 * The caller must have escaped any string in it: prefer a typed record
 * (metrics_checkpoint) for anything holding a path. */
void metrics_json(ms_metrics *m, const char *json_object);

/* Prints a line for the user, clearing the progress bar first. */
void metrics_say(ms_metrics *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
