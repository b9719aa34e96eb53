/* saver — one rank's share of writing checkpoints, kept off the training
 * thread where that pays.
 *
 * Two ways to save; the trainer picks (ckpt_sync.c, ckpt_sync_save):
 *
 *  - Alone (a world of one rank): saver_start copies the tensors into a
 *    snapshot (the only stall) and a background thread hashes, compresses
 *    and writes the file as one zstd frame, then prunes (ckpt_write_mt,
 *    ckpt_prune).
 *
 *  - Together (world > 1), in three steps: saver_hash hashes this rank's
 *    chunks of the data section (ckpt_slice); the trainer gathers the
 *    hashes on rank 0, whose saver_compress puts data_hash into the header;
 *    saver_compress compresses this rank's slice into one zstd frame; the
 *    trainer gathers the frames on rank 0 and hands their concatenation to
 *    saver_write, whose background thread writes the file and prunes.
 *    Compression runs on the caller's thread, or (`background` at create)
 *    on the background thread from a snapshot of the slice taken by
 *    saver_hash. Ranks of one node skip the gather: rank 0 creates the
 *    temporary file (ckpt_part_create), each rank's saver_write_part
 *    writes its frame at its offset from the background thread, and once
 *    all have, rank 0's saver_commit renames the file into place and
 *    prunes.
 *
 * Rank-local, no MPI. The background thread touches only the snapshot, the
 * saver's own buffers and the file system (no MPI, no HDF5, no BLAS); it
 * runs at a low CPU priority (nice 19 to compress, 10 to only write a
 * file) and may use any core the process may (not only the one a launcher
 * bound the rank to), so that an idle core takes the work; when the caller
 * has to wait for it, it gets the caller's priority (best effort).
 * Functions are called from one thread. One save at a time: starting one
 * while another is in flight first waits for it.
 */
#ifndef MS_SAVER_H
#define MS_SAVER_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

typedef struct ms_saver ms_saver;

typedef struct {
  char path[1100];       /* the file written */
  int64_t step;
  double write_seconds;  /* on the background thread: hash + compress + write
                            + fsync when alone, write + fsync when together */
  long long file_bytes;  /* compressed size */
  long long raw_bytes;   /* tensor bytes */
} saver_result;

/* tensors: the live tensors (names, shapes, data pointers), copied into the
 * saver; their data must stay valid while the saver exists. dir, level,
 * workers (zstd threads) and keep are those of ckpt_write_mt / ckpt_prune.
 * rank and world place this rank's slice; background (world > 1 only):
 * saves may compress on the background thread (saver_hash). The snapshot,
 * if any, is allocated and touched here, so that no save pays its page
 * faults.
 * @return 0 or MS_ENOMEM / MS_ECKPT (invalid tensors). */
int saver_create(ms_saver **out, const ckpt_tensor *tensors, int n_tensors, const char *dir,
                 int level, int workers, int keep, int rank, int world, int background);

/* Waits for any background work, then frees everything; accepts NULL. */
void saver_free(ms_saver *s);

/* Alone: snapshots the tensors and starts writing them with meta (copied,
 * including meta->config); with sync, writes them on the calling thread
 * (at its priority) before returning, to be collected by saver_wait all
 * the same. A save in flight is waited for first; its failure is returned
 * (with its message) and the new save is not started.
 * @return 0, or the code of the earlier save's failure, MS_ENOMEM, or
 * MS_EINTERNAL if the thread could not start. */
int saver_start(ms_saver *s, const ckpt_meta *meta, int sync);

/* Together, step 1: hashes this rank's chunks (ckpt_slice) of the live
 * tensors; with `background` (honoured if the saver was created with it),
 * this save compresses in the background, and its slice is first copied
 * into the snapshot as stored (byte-shuffled when shuffle). *hashes (owned
 * by the saver, valid until the next save) gets *n_hashes chunk hashes. A
 * save whose frame is still being compressed is an error (MS_EINTERNAL):
 * collect it first. */
int saver_hash(ms_saver *s, int shuffle, int background, const uint64_t **hashes,
               size_t *n_hashes);

/* Together, step 2: compresses this rank's slice into one frame, now or (as
 * saver_hash was told) on the background thread. On rank 0, meta (copied) and all_hashes (the chunk
 * hashes of every rank, in order: n_all of them) make the header that
 * leads its frame; other ranks pass NULL and 0. A rank whose slice is empty
 * (r > 0) has an empty frame. @return 0 or an error. */
int saver_compress(ms_saver *s, const ckpt_meta *meta, const uint64_t *all_hashes, size_t n_all);

/* @return 1 while a frame is being compressed or waits to be taken. */
int saver_compressing(const ms_saver *s);

/* @return 1 if the frame is ready to be taken; never blocks. */
int saver_frame_ready(const ms_saver *s);

/* Waits for the frame and gives it: *frame (owned by the saver, valid until
 * saver_frame_done or the next save) and *len bytes; *seconds (may be NULL)
 * the compression time. @return 0 or the compression's error with its
 * message. */
int saver_frame(ms_saver *s, const void **frame, size_t *len, double *seconds);

/* Frees the frame once it has been gathered. */
void saver_frame_done(ms_saver *s);

/* Together, step 3 (rank 0): takes `bytes` (malloc'ed; freed by the saver,
 * also on failure), the concatenated frames, and writes them on the
 * background thread (with sync: on the calling thread, before returning)
 * as the checkpoint of the step given to saver_compress, then prunes;
 * collect with saver_wait. @return 0, MS_EINTERNAL (thread) or an earlier
 * save's error. */
int saver_write(ms_saver *s, void *bytes, size_t len, int sync);

/* Together, one node, step 3 (every rank, instead of the gather and
 * saver_write): writes the frame taken with saver_frame at `offset` of
 * tmp_path (ckpt_part_create for `step`) and fsyncs it, on the background thread
 * (sync: now); collect with saver_part_wait. @return 0, MS_ENOMEM or
 * MS_EINTERNAL. */
int saver_write_part(ms_saver *s, int64_t step, const char *tmp_path, uint64_t offset,
                     int sync);

/* @return 1 if a part write was started and has finished; never blocks. */
int saver_part_ready(const ms_saver *s);

/* Waits for the part write and frees the frame. @return 0 or its error
 * with its message. */
int saver_part_wait(ms_saver *s);

/* Rank 0, once every rank's part is written: checks that the file has
 * `total` bytes, renames it into place, syncs the directory and prunes, on
 * the background thread (sync: now); collect with saver_wait.
 * @return 0 or MS_EINTERNAL. */
int saver_commit(ms_saver *s, uint64_t total, int sync);

/* A part write failed somewhere: forgets the temporary file, and on rank 0
 * removes it. */
void saver_part_discard(ms_saver *s);

/* @return 1 if a write (saver_start, saver_write or saver_commit) was started and has
 * finished but was not yet collected with saver_wait, else 0. Never blocks. */
int saver_finished(const ms_saver *s);

/* @return 1 while a write is started and not yet collected. */
int saver_pending(const ms_saver *s);

/* Waits for the started write (if any) and collects it: 0 and *res filled
 * (res may be NULL), 1 if there was nothing to wait for, or the write's
 * error code with its message set on this thread. */
int saver_wait(ms_saver *s, saver_result *res);

#endif
