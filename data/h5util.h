/* h5util — what the HDF5 code of data/ shares: the process-wide HDF5
 * lock, keeping HDF5 quiet, writing one-line messages into the caller's
 * error buffer (dataset.h, "Errors"), listing a file's datasets, naming
 * types and shapes. Private to data/.
 */
#ifndef MS_H5UTIL_H
#define MS_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* Every public data/ function brackets its HDF5 calls with h5util_enter /
 * h5util_leave. enter takes the process-wide HDF5 lock -- HDF5 is usually
 * built without thread safety, so the loader thread and the main thread
 * must never be inside it at once -- and switches off HDF5's automatic
 * error printing (library code never prints; that setting is process-wide
 * too, hence inside the lock); leave restores the caller's handler and
 * releases the lock. The lock is recursive: a public function may call
 * another (data_open calls data_close on failure). */
typedef struct {
  H5E_auto2_t func;
  void *data;
} h5util_guard;

void h5util_enter(h5util_guard *g);
void h5util_leave(const h5util_guard *g);

/* The lock alone, for data_hdf5_lock / data_hdf5_unlock (dataset.h). */
void h5util_lock(void);
void h5util_unlock(void);

/* printf into err (errlen bytes); accepts err == NULL. */
void h5util_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The innermost description on HDF5's error stack, for the tail of a
 * message ("" when the stack is empty); buf holds 160 bytes. */
const char *h5util_reason(char buf[160]);

/* Checks what is at `path` before HDF5 looks: a missing file, anything
 * but a regular file (h5guard_regular_file: a directory, a FIFO, ...) or a
 * file without the HDF5 signature each get their own message; *size (may
 * be NULL) gets its size in bytes.
 * @return 0 when HDF5 should be able to open it, -1 otherwise. */
int h5util_probe_file(const char *path, uint64_t *size, char *err, size_t errlen);

/* The datasets of `file` (found through every group), as full paths
 * ("/train/images") in name order: *names holds *count strings, which the
 * caller frees with h5util_free_names whatever the result. The one lister
 * of data/: data_info prints them, data_open names them when a dataset is
 * missing. The caller holds the HDF5 lock (h5util_enter).
 * @return 0, or -1 when the walk failed or ran out of memory: err says
 * "cannot list the datasets of 'PATH': ...", and *names holds what was
 * found before. */
int h5util_list_datasets(hid_t file, const char *path, char ***names, size_t *count, char *err,
                         size_t errlen);
void h5util_free_names(char **names, size_t count);

/* A short name for an HDF5 datatype, for messages: "uint8", "int64",
 * "float16", "float32", "string", "compound", ... */
void h5util_type_name(hid_t t, char *buf, size_t len);

/* 1 when t is a 16-bit IEEE 754 half float (numpy's float16, as h5py
 * writes it), in either byte order. */
int h5util_is_ieee_half(hid_t t);

/* "(60000, 28, 28)", "(10,)", "()" into buf. */
void h5util_shape_str(const hsize_t *dims, int rank, char *buf, size_t len);

#endif
