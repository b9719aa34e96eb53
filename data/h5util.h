/* h5util — what dataset.c, convert.c and info.c share: keeping HDF5 quiet,
 * writing one-line messages into the caller's error buffer, naming types
 * and shapes. Internal to data/; not thread-safe (HDF5's automatic error
 * printing is process-wide).
 */
#ifndef MS_H5UTIL_H
#define MS_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

/* HDF5 prints its error stack to stderr by default; library code never
 * prints, so every public data/ function brackets its HDF5 calls with
 * h5util_quiet_begin / h5util_quiet_end, which restore the caller's handler. */
typedef struct {
  H5E_auto2_t func;
  void *data;
} h5util_quiet;

void h5util_quiet_begin(h5util_quiet *q);
void h5util_quiet_end(const h5util_quiet *q);

/* printf into err (errlen bytes); accepts err == NULL. */
void h5util_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The innermost description on HDF5's error stack, for the tail of a
 * message ("" when the stack is empty); buf holds 160 bytes. */
const char *h5util_reason(char buf[160]);

/* Checks what is at `path` before HDF5 looks: a missing file, a directory
 * or a file without the HDF5 signature each get their own message.
 * @return 0 when HDF5 should be able to open it, -1 otherwise. */
int h5util_probe_file(const char *path, char *err, size_t errlen);

/* A short name for an HDF5 datatype, for messages: "uint8", "int64",
 * "float16", "float32", "string", "compound", ... */
void h5util_type_name(hid_t t, char *buf, size_t len);

/* 1 when t is a 16-bit IEEE 754 half float (numpy's float16, as h5py
 * writes it), in either byte order. */
int h5util_is_ieee_half(hid_t t);

/* "(60000, 28, 28)", "(10,)", "()" into buf. */
void h5util_shape_str(const hsize_t *dims, int rank, char *buf, size_t len);

#endif
