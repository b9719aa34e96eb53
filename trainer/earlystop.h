/* earlystop — early stopping on an evaluation value (train.early_stop):
 * which value, whether it improved, how many evaluations are left before
 * the run stops, and the state a checkpoint keeps so that a resumed run
 * stops exactly where an uninterrupted one would.
 *
 * Contract: the loop calls earlystop_update after every evaluation (epoch
 * ends and train.eval_every_steps), with the same ms_eval on every rank,
 * so every rank takes the same decision without a collective. The state
 * string (earlystop_format / earlystop_parse) goes into every checkpoint's
 * metadata ("train_state", ckpt.h); it names the metric and mode it was
 * kept for, and a resumed run that changed either starts afresh.
 *
 * Ownership: plain data, no allocation. Threads: any (no shared state).
 * Collectives: none (pure). Errors: earlystop_parse returns MS_ECKPT for
 * a state it cannot read.
 */
#ifndef MS_EARLYSTOP_H
#define MS_EARLYSTOP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

typedef struct {
  ms_es_metric metric; /* MS_ES_NONE: off, and every call does nothing */
  int maximize;        /* higher is better (mode max, or auto on an accuracy) */
  int patience;
  double min_delta;
  int have_best;     /* an evaluation was seen */
  double best;       /* the best value so far */
  int64_t best_step; /* the step of the best value, -1 = none */
  int left;          /* evaluations without improvement still allowed */
  int64_t stop_step; /* the step the run stopped at, -1 = not stopped */
} earlystop;

/* From train.early_stop: the state of a run that has not evaluated yet. */
void earlystop_init(earlystop *es, const ms_config *cfg);

/* 1 when early stopping is on. */
int earlystop_on(const earlystop *es);

/* The metric's value in e (as metrics.jsonl logs it). */
double earlystop_value(const earlystop *es, const ms_eval *e);

/* After an evaluation at `step`: @return 1 when it is the best so far (the
 * caller keeps the model), else 0. Counts an evaluation without
 * improvement (a NaN never improves) and marks the run stopped at `step`
 * when patience runs out. */
int earlystop_update(earlystop *es, const ms_eval *e, int64_t step);

/* 1 once the run must stop (also after a resume from a stopped run). */
int earlystop_stopped(const earlystop *es);

/* The state as a checkpoint keeps it (fits CKPT_MAX_TRAIN_STATE), "" when
 * off; values are exact (hexadecimal floating point). */
void earlystop_format(const earlystop *es, char *buf, size_t n);

/* Restores the state a checkpoint kept (`what` names the file in
 * messages). "" or a state of another metric or mode leaves es as
 * earlystop_init made it (*reset = 1 for the latter). */
int earlystop_parse(earlystop *es, const char *state, const char *what, int *reset);

/* Why the run stopped, for the summary: e.g. "eval loss did not improve by
 * more than 0 for 3 evaluations; best 0.4213 at step 620". */
void earlystop_describe(const earlystop *es, char *buf, size_t n);

#endif
