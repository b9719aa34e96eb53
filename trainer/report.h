/* report — what a training run tells the user (through rank 0's metrics
 * sink, metrics.h): the start-up banner, the log line and progress bar of
 * the steps with the interval's time breakdown, the evaluation records,
 * and the summary at the end.
 *
 * Ownership: a report keeps pointers to what report_opts names (the
 * ranks, the setup and its config, model and metrics sink), which must
 * outlive it; it owns only its counters.
 *
 * Threads: the training thread.
 *
 * Collectives: report_begin and report_summary are collective over the
 * run's ranks (the slowest rank's times), and so is report_step at a log
 * line (the mean of the ranks' spans); the rest is rank-local and writes
 * nothing on ranks other than 0 (their metrics sink is NULL).
 *
 * Errors: none: a line that cannot be written is lost (metrics.h).
 */
#ifndef MS_REPORT_H
#define MS_REPORT_H

#include <stdint.h>

#include "metrics.h"
#include "ranks.h"
#include "startup.h"
#include "timing.h"

typedef struct report report;

/* @return 0 or MS_ENOMEM. */
int report_create(report **out, const ranks *rk, const train_setup *s);

/* Accepts NULL. */
void report_free(report *rp);

/* The banner: program and libraries, data, model, the run's length and
 * batches, the gradient sync, the loader and ckpt_desc (the checkpoint
 * policy, ckpt_sync_describe). */
void report_banner(report *rp, const char *ckpt_desc);

/* The run resumed from the checkpoint `from` at cursor (step, epoch
 * counted from 0, steps done in it); the line counts epochs from 1. */
void report_resumed(report *rp, const char *from, int64_t step, int64_t epoch,
                    int64_t step_in_epoch);

/* The step loop starts at `step`: rank 0 measures the single-core sgemm
 * peak and a memcpy's bandwidth, every rank times this model's kernels at
 * its micro-batch on a private copy (layer_probe.h; the cost model's
 * compute in the summary; what training computes does not depend on it),
 * and the first log interval starts. Collective (the table is the slowest
 * rank's). */
void report_begin(report *rp, int64_t step);

/* After each step: step (done), epoch (1-based, the epoch of that step),
 * the step's loss sum and correct count over the global batch, the parts'
 * seconds so far (mean over ranks, timing.h) and t_sync, this rank's clock
 * when the step's gradient sync wait began less the seconds its backward
 * hook spent in sync calls (the parts were sampled in the agreement after
 * that wait, which, like the hook's calls, counts from the next sample
 * on: each rank's parts of an interval are disjoint spans of its own
 * [t_sync, t_sync]). Draws the progress bar, or every log.every_steps
 * steps and at the last step (`last`) writes the log line with the
 * interval's breakdown: the parts over the mean of the ranks' spans (one
 * sum over ranks; the spans differ by how early each rank reached the
 * sync), so they add up to at most 100%. Collective at a log line. */
void report_step(report *rp, int64_t step, int64_t epoch, double loss_sum, double correct,
                 const double mean_t[T_PARTS], double t_sync, int last);

/* An evaluation after `step` in epoch `epoch` (1-based); kept for the
 * summary. */
void report_eval(report *rp, int64_t step, int64_t epoch, const ms_eval *e);

/* Early stopping ended the run at `step` (why: earlystop_describe); the
 * summary says so, with the best model's file name. */
void report_early_stop(report *rp, int64_t step, const char *why, const char *best_name);

/* The end of the run: this rank's wall seconds (from a start that every
 * rank left together), steps run by this invocation, the step reached and
 * this rank's seconds per part (timing.h). The fractions are the mean over
 * ranks of the parts over the mean of the walls: each rank's parts are
 * disjoint spans of its wall, so they add up to at most 100%; "done"
 * names rank 0's wall and the slowest rank's parts. `stopped`: the
 * run stops before its last step (a signal, --stop-at), so the last
 * evaluation is named as such rather than as the final one. Collective. */
void report_summary(report *rp, double wall, int64_t steps_run, int64_t step,
                    const double t[T_PARTS], int stopped);

#endif
