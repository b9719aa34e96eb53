/* saver — writes checkpoints in a background thread, so training goes on
 * while zstd compresses.
 *
 * saver_start copies the live tensors into a snapshot (the only part that
 * stalls the caller: one memcpy of the arenas) and hands the snapshot to a
 * writer thread that calls ckpt_write_mt and ckpt_prune. One save runs at a
 * time: starting a save while one is running first waits for it.
 *
 * Rank-local, no MPI: the trainer decides which rank saves and agrees on
 * the results. The writer thread touches only the snapshot and the file
 * system (no MPI, no HDF5, no BLAS). Functions are called from one thread.
 */
#ifndef MS_SAVER_H
#define MS_SAVER_H

#include <stdint.h>

#include "ckpt.h"

typedef struct ms_saver ms_saver;

typedef struct {
  char path[1100];       /* the file written */
  int64_t step;
  double write_seconds;  /* compress + write + fsync, on the writer thread */
  double stall_seconds;  /* the snapshot copy, on the caller's thread */
  long long file_bytes;  /* compressed size */
  long long raw_bytes;   /* tensor bytes */
} saver_result;

/* tensors: the live tensors (names, shapes, data pointers), copied into the
 * saver; their data must stay valid while the saver exists. dir, level,
 * workers (zstd threads) and keep are those of ckpt_write_mt / ckpt_prune.
 * @return 0 or MS_ENOMEM. */
int saver_create(ms_saver **out, const ckpt_tensor *tensors, int n_tensors, const char *dir,
                 int level, int workers, int keep);

/* Waits for a running save, then frees everything; accepts NULL. */
void saver_free(ms_saver *s);

/* Snapshots the tensors and starts writing them with meta (copied,
 * including meta->config). If a save is running it is waited for first; its
 * failure is returned (with its message) and the new save is not started.
 * @return 0, or the code of the earlier save's failure, or MS_EINTERNAL if
 * the thread could not start. */
int saver_start(ms_saver *s, const ckpt_meta *meta);

/* @return 1 if a save was started and has finished but was not yet
 * collected with saver_wait, else 0. Never blocks. */
int saver_finished(const ms_saver *s);

/* @return 1 while a save is started and not yet collected. */
int saver_pending(const ms_saver *s);

/* Waits for the started save (if any) and collects it: 0 and *res filled
 * (res may be NULL), 1 if there was nothing to wait for, or the save's
 * error code with its message set on this thread. */
int saver_wait(ms_saver *s, saver_result *res);

#endif
