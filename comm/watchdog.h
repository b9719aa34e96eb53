/* watchdog — ends a job whose ranks wait in a collective for too long,
 * instead of letting it hang until the wall-time limit.
 *
 * The training thread brackets every wait on other ranks with
 * watchdog_enter(op, where, step) / watchdog_leave(). A thread of the
 * watchdog's own wakes every timeout / 10 (at most every second); when one
 * wait has lasted timeout_s (plus a grace of 1 + min(rank, 4) seconds on
 * ranks other than 0, so that one rank, normally rank 0, reports before the
 * job ends), it writes a report and calls
 * on_timeout, which must end the process (trainer/main.c prints it and
 * calls MPI_Abort). The report names this rank and its host, the
 * operation, the step and the time waited, and the ranks of this node that have not arrived: each
 * rank publishes its position (how many watched collectives it has
 * entered, the last one's name and step, whether it is inside one) in a
 * node-shared MPI window, which the thread reads with plain atomic loads.
 * Ranks on other nodes cannot be seen without an MPI call; the report says
 * so.
 *
 * Threads and MPI: the watchdog thread makes no MPI call. on_timeout runs
 * on it; MPI_Abort there is outside the letter of MPI_THREAD_SERIALIZED, but
 * Open MPI (4.x and later, also MPICH) implements it through its runtime
 * (PMIx), safe from any thread: it was tested to end the job with the given
 * code. Should it return, on_timeout falls back to _exit, which mpirun and
 * srun treat as a failed job. MPI_THREAD_MULTIPLE is not needed, and would
 * put a lock around every MPI call of the step.
 *
 * Collective: watchdog_create and watchdog_free (they allocate and free the
 * window). enter/leave: the thread that called comm_init only, never
 * blocking, a few atomic stores each.
 */
#ifndef MS_WATCHDOG_H
#define MS_WATCHDOG_H

#include <stdint.h>

#include "comm.h"

typedef struct watchdog watchdog;

/* Called on the watchdog thread with the report (no trailing newline). */
typedef void (*watchdog_fn)(void *ctx, const char *report);

/* Starts the watchdog thread. Signals are blocked on it (they go to the
 * training thread). Collective. @return 0, COMM_EMPI or COMM_ENOMEM
 * (message in w->err). */
int watchdog_create(watchdog **out, comm_world *w, double timeout_s, watchdog_fn on_timeout,
                    void *ctx);

/* Stops and joins the thread, frees the window. Accepts NULL; collective
 * otherwise. */
void watchdog_free(watchdog *wd);

/* This rank starts waiting on the others: op and where are static strings
 * ("gradient allreduce", "train_step"); step is the training step. Accepts
 * NULL (no watchdog). */
void watchdog_enter(watchdog *wd, const char *op, const char *where, int64_t step);

/* The wait is over. Accepts NULL. */
void watchdog_leave(watchdog *wd);

#endif
