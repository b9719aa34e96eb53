/* h5util — what dataset.c and convert.c share: keeping HDF5 quiet and
 * writing one-line messages into the caller's error buffer. Internal to
 * data/; not thread-safe (HDF5's automatic error printing is process-wide).
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

#endif
