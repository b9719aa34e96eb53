/* ckpt/file — checkpoint files as files: names (step-<8 digits>.safetensors.zst
 * and the temporary ".step-....tmp.<pid>"), the atomic write protocol
 * (temporary file in the same directory, fflush + fsync, rename, fsync of
 * the directory), listing a directory's checkpoints, and deleting old ones.
 * Knows nothing of what the bytes mean.
 *
 * Implements the public ckpt_write_bytes, ckpt_part_* and ckpt_prune.
 * Not thread-safe on one directory: a directory has one writer (the caller
 * makes sure). Errors: 0, or MS_EIO / MS_ENOMEM / MS_ECKPT (a step that
 * cannot be named) with a message through ms_error_set().
 */
#ifndef MS_CKPT_FILE_H
#define MS_CKPT_FILE_H

#include <stdint.h>
#include <stdio.h>

/* "step-" + 8 digits + ".safetensors.zst" */
#define CKPT_NAME_LEN 29

/* @return 0, or MS_ECKPT when step has no 8-digit file name. */
int ckpt_file_check_step(const char *what, int64_t step);

/* "dir/name", malloc'ed; NULL when out of memory. */
char *ckpt_file_join(const char *dir, const char *name);

/* A file written under a temporary name and renamed into place. */
typedef struct {
  const char *dir; /* borrowed */
  char *path, *tmp;
  FILE *f; /* open for writing between open and commit */
} ckpt_atomic;

/* Creates dir (mkdir -p) and opens the temporary file of dir/name. Call
 * ckpt_atomic_close afterwards whatever this returns. */
int ckpt_atomic_open(ckpt_atomic *a, const char *dir, const char *name);

/* Flushes, fsyncs and closes the file, renames it into place and fsyncs
 * the directory. */
int ckpt_atomic_commit(ckpt_atomic *a);

/* Removes the temporary file unless committed (rc != 0 means the write
 * failed) and frees; with rc == 0 hands the final path to *out_path (if not
 * NULL). */
void ckpt_atomic_close(ckpt_atomic *a, int rc, char **out_path);

/* A checkpoint file found in a directory. */
typedef struct {
  int64_t step;
  char name[CKPT_NAME_LEN + 1];
  int regular; /* 0: a directory, FIFO, device... named like a checkpoint */
} ckpt_found;

/* Lists the checkpoint names of dir, newest (highest step) first, into
 * *out (malloc'ed; the caller frees it, also on error), each with whether
 * it is a regular file (stat, following symlinks; never opened). A missing
 * dir gives 0 files. */
int ckpt_file_list(const char *dir, ckpt_found **out, size_t *n);

#endif
