/* runlog — a run's metrics.jsonl read back (metrics.h writes it): the
 * training, evaluation and summary records as series over steps, for
 * `midscale plot` and `midscale sweep-report`.
 *
 * A resumed run appends to the same file, starting again from its
 * checkpoint's step, so the steps between that checkpoint and the stop are
 * logged twice. The reader keeps the history the parameters really went
 * through: a record whose step is not after the previous one of its series
 * drops the earlier records from that step on.
 *
 * Budgets (hostile input): the file must be a regular file of at most
 * RUNLOG_MAX_BYTES, a line at most RUNLOG_MAX_LINE bytes; lines that are
 * not a JSON object, or records of other kinds, are skipped (a line cut by
 * a crash is not an error). A value that is null (a diverged loss) or
 * missing is NaN.
 *
 * Ownership: runlog_read allocates the series; runlog_free releases them
 * (accepts NULL). Threads: any; no MPI. Errors: 0 or MS_EIO / MS_EUSAGE
 * (missing file) / MS_ENOMEM with a message naming the file.
 */
#ifndef MS_RUNLOG_H
#define MS_RUNLOG_H

#include <stddef.h>
#include <stdint.h>

#define RUNLOG_MAX_BYTES (1024u * 1024u * 1024u)
#define RUNLOG_MAX_LINE (64u * 1024u)

/* One series: n points (step, value), steps strictly increasing. */
typedef struct {
  size_t n, cap;
  int64_t *step;
  double *v;
} runlog_series;

/* The series of one run. Train: "train" records; eval: "eval" records. */
typedef enum {
  RUNLOG_TRAIN_LOSS = 0,
  RUNLOG_TRAIN_ACC,
  RUNLOG_LR,
  RUNLOG_EVAL_LOSS,
  RUNLOG_EVAL_ACC, /* acc, or binary_acc for bce_with_logits */
  RUNLOG_EVAL_TOPK_ACC,
  RUNLOG_EVAL_MSE,
  RUNLOG_EVAL_MAE,
  RUNLOG_N_SERIES
} runlog_which;

typedef struct {
  runlog_series s[RUNLOG_N_SERIES];
  int has_summary;      /* a "summary" record was read (the last one counts) */
  int64_t summary_step; /* its "steps": the step the run reached */
  double seconds;       /* its wall seconds */
  double samples_per_s;
  int64_t last_step;    /* the highest step of any train record, 0 if none */
} runlog;

/* The metric names of the series ("train_loss", "eval_acc", ...), as
 * sweep-report's --metric takes them. */
const char *runlog_name(runlog_which w);

/* Reads path into log (zeroed first). @return 0 or an MS_E* code. */
int runlog_read(const char *path, runlog *log);

/* @return the last value of series w, NaN when it is empty. */
double runlog_last(const runlog *log, runlog_which w);

/* Releases the series; accepts NULL. */
void runlog_free(runlog *log);

#endif
