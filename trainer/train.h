/* train — one training run, start to finish: config, data, model, the step
 * loop, evaluation, checkpoints and resume.
 *
 * Collective: every rank of w calls train_run with the same arguments. Ranks
 * agree before every branch that could split their paths, so a failure on
 * any rank ends all of them with the same code; ms_error_msg() then holds the
 * message of the lowest failing rank on every rank (rank 0 prints it).
 * Stdout (progress, summary) is written by rank 0 only.
 */
#ifndef MS_TRAIN_H
#define MS_TRAIN_H

#include <signal.h>

#include "comm.h"

typedef struct {
  const char *config_path;
  const char *resume;                /* NULL, "auto", or a checkpoint path */
  const char *const *overrides;      /* "section.key=value" */
  int n_overrides;
  long long stop_at;                 /* > 0: stop after this global step, with a
                                        checkpoint, as a preemption would; the
                                        schedule still plans the whole run */
  const volatile sig_atomic_t *stop_signal; /* non-zero (the signal number) asks
                                        the run to stop at the next step with a
                                        checkpoint and return MS_ESTOP; NULL = none */
  void (*on_hang)(void *ctx, const char *report); /* the hang watchdog's end
                                        (comm/watchdog.h): called on the watchdog's
                                        thread when a rank has waited comm.timeout_s
                                        in a collective; must end the process.
                                        NULL = no watchdog */
} train_args;

/* @return 0, or a negative MS_E* code (same on every rank). */
int train_run(comm_world *w, const train_args *args);

#endif
