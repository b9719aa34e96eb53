/* ckpt_sync — the multi-rank checkpoint protocol of a training run: saving
 * the parameter and optimizer arenas at a step (alone, or together with
 * every rank compressing its slice), completing a save in flight at later
 * steps, and resuming from a checkpoint.
 *
 * Contract: a run creates one coordinator after its model and optimizer
 * exist, saves with ckpt_sync_save, lets a save in flight progress with
 * ckpt_sync_poll once per step, completes it with ckpt_sync_finish before
 * reporting, and frees it. The coordinator owns its saver (saver.h), the
 * save in flight and the choice of where ranks compress and who writes
 * the file; nothing outside it calls saver_* or ckpt_* for the run.
 *
 * Where the work happens (checkpoint.compress and checkpoint.write,
 * resolved once at create and printed by ckpt_sync_describe):
 *  - compress: alone, a rank always compresses and writes in the
 *    background (there is no slice to share, and a synchronous write would
 *    stall for the whole file). With other ranks, `auto` compresses in the
 *    background only when the rank may run on more CPUs (its share of its
 *    affinity mask, comm_cpus_per_rank) than its BLAS threads use: with every core training, the ranks step in
 *    lockstep, so the CPU time low-priority compressing threads take comes
 *    back as stall, and the save lands much later
 *    (scripts/bench/results/ckpt.md); then each rank compresses its slice on
 *    the spot, in parallel.
 *  - write: `auto` lets the ranks of one node write their own frames into
 *    the file (one file system, and rank 0 need not receive the others'
 *    frames); across nodes rank 0 gathers the frames and writes the file.
 *    `ranks` lets every rank write its frame on any number of nodes (the
 *    directory must then be on a file system every rank sees).
 *
 * Ownership: the coordinator keeps pointers to opts' model, optimizer,
 * config, metrics and ranks, which must outlive it; it copies dir.
 *
 * Threads: the training thread only (the saver's own thread is internal).
 *
 * Collectives: every function but the accessors is collective over the
 * run's ranks and must be called by every rank in the same order.
 *
 * Errors: 0 or a negative MS_E* code, the same on every rank, with the
 * message of the lowest failing rank (ranks.h). A save's failure found
 * outside a save (a background write, a gather every rank saw fail) is
 * kept: ckpt_sync_failed says so, ckpt_sync_failure returns it, and the
 * next step's agreement stops the run with it.
 */
#ifndef MS_CKPT_SYNC_H
#define MS_CKPT_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "ranks.h"
#include "timeline.h"

typedef struct ckpt_sync ckpt_sync;

/* Where a training run is: steps done, and the epoch (from 0) and steps
 * done in it. */
typedef struct {
  int64_t step, epoch, step_in_epoch;
} ckpt_cursor;

typedef struct {
  const ranks *rk;
  ms_metrics *metrics;   /* rank 0's (checkpoint lines and records), else NULL */
  const ms_config *cfg;  /* checkpoint.*, run.seed; the config saved in a file */
  const char *dir;       /* the checkpoint directory (check_ckpt_dir_of) */
  ms_model *model;       /* its parameter arena is saved and restored */
  ms_optim *opt;         /* and each of its state arenas */
  /* Non-NULL: those arenas are one copy per node in it (comm.shared_params):
   * a resume that rank 0 restores goes only to the other nodes' copies. */
  comm_node_mem *shared_arenas;
  int blas_threads;      /* per rank, for compress auto */
  int cpus_per_rank;     /* CPUs this rank may use (comm_cpus_per_rank), for compress auto */
  int64_t steps_per_epoch; /* the run's (check_run_length): a resumed cursor
                              must fit it (check_resume_cursor); 0 = unchecked */
} ckpt_sync_opts;

/* Lists the tensors, resolves where saves compress and write, and creates
 * the saver (its snapshot too: the first save pays no allocation in the
 * middle of training). Collective. */
int ckpt_sync_create(ckpt_sync **out, const ckpt_sync_opts *o);

/* Frees everything, waiting for background work first; accepts NULL. */
void ckpt_sync_free(ckpt_sync *cs);

/* The resolved policy for the banner, e.g. "compress sync (auto), write
 * ranks (auto) (each rank writes its frame into the file)"; "(auto)" marks
 * a value the rule chose. Rank-local. */
void ckpt_sync_describe(const ckpt_sync *cs, char *buf, size_t n);

/* --resume `what` ("auto": the newest good checkpoint in dir, else a file):
 * rank 0 finds, reads and verifies it (its config must allow resuming:
 * check_resume_meta; its cursor must fit the run: check_resume_cursor), then every rank receives the arenas and *cur, and
 * rank 0 the file's path in from (cap bytes; other ranks "checkpoint"). With
 * nothing to resume (auto, empty dir) *cur is left as it is and from is
 * "" (a note says so). A damaged newer file is skipped with a note.
 * Collective. */
int ckpt_sync_resume(ckpt_sync *cs, const char *what, ckpt_cursor *cur, char *from, size_t cap);

/* Saves the arenas at *cur, after completing any save in flight (one at a
 * time). sync (the end of a run, a stop signal): the file is in place on
 * return, all of the work done on the training threads. Otherwise the save
 * may go on in the background; ckpt_sync_poll and ckpt_sync_finish
 * complete it. Collective. */
int ckpt_sync_save(ckpt_sync *cs, const ckpt_cursor *cur, int sync);

/* Lets a save in flight progress without waiting: gathers frames every rank
 * has compressed, renames a file every rank has written its part of, and
 * reports a finished write (rank 0). A failure is kept (see Errors).
 * Collective. @return the kept failure, or 0. */
int ckpt_sync_poll(ckpt_sync *cs);

/* Completes a save in flight, waiting for it; ranks agree on the result.
 * Collective. */
int ckpt_sync_finish(ckpt_sync *cs);

/* The file name of the best model of early stopping, in the checkpoint
 * directory: never listed with the rolling checkpoints, never pruned,
 * never taken by `--resume auto` (ckpt_write_named). */
#define CKPT_BEST_NAME "best.safetensors.zst"

/* Rank-local: the loop's own state (earlystop.h), at most
 * CKPT_MAX_TRAIN_STATE - 1 bytes, saved with every later checkpoint;
 * ckpt_sync_state gives it back, after ckpt_sync_resume the resumed file's
 * ("" if it kept none) on every rank. */
void ckpt_sync_set_state(ckpt_sync *cs, const char *state);
const char *ckpt_sync_state(const ckpt_sync *cs);

/* Writes the arenas at *cur as CKPT_BEST_NAME in the checkpoint directory
 * (rank 0, synchronously, replacing the older one atomically); a save in
 * flight goes on. `why` is said with the path (rank 0's line). Collective. */
int ckpt_sync_save_best(ckpt_sync *cs, const ckpt_cursor *cur, const char *why);

/* Rank-local: the run's trace (timeline.h; NULL = none), which gets the
 * phases of saves made on the training thread. */
void ckpt_sync_set_timeline(ckpt_sync *cs, timeline *tl);

/* Rank-local accessors. failed: 1 if a failure is kept; failure: its code
 * with its message set again (0 if none). */
int ckpt_sync_failed(const ckpt_sync *cs);
int ckpt_sync_failure(const ckpt_sync *cs);

/* Rank-local: 1 when checkpoint.every_minutes have passed at `now`
 * (comm_wtime) since the last save or ckpt_sync_start_clock. */
int ckpt_sync_minutes_due(const ckpt_sync *cs, double now);
void ckpt_sync_start_clock(ckpt_sync *cs, double now);

/* The step of the last save (or of the resumed checkpoint), -1 if none. */
int64_t ckpt_sync_last_step(const ckpt_sync *cs);

/* Rank 0: the newest checkpoint written ("" if none). */
const char *ckpt_sync_last_path(const ckpt_sync *cs);

/* Seconds this rank has spent in ckpt_sync_save. */
double ckpt_sync_seconds(const ckpt_sync *cs);

#endif
