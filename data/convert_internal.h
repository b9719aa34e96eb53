/* convert_internal — the HDF5 output helpers that convert.c (idx,
 * synthetic), convert_csv.c and convert_npy.c share. Private to data/;
 * callers bracket them with h5util_enter/h5util_leave (the HDF5 lock).
 */
#ifndef MS_CONVERT_INTERNAL_H
#define MS_CONVERT_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* Filters of convert_create_chunked (see convert.h for the choice). */
enum { CONVERT_PLAIN = 0, CONVERT_GZIP = 1, CONVERT_SHUFFLE_GZIP = 2 };

/* Rows per chunk: about 1 MiB of whole samples, at least one, at most n. */
hsize_t convert_chunk_rows(uint64_t n, size_t row_bytes);

/* Creates a chunked dataset `name` in `loc` of shape dims (rank), chunked
 * along the sample axis (convert_chunk_rows; the other dims whole), with
 * `filters` (gzip is skipped when this HDF5 lacks deflate).
 * @return the dataset, or H5I_INVALID_HID. */
hid_t convert_create_chunked(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims,
                             size_t row_bytes, int filters);

/* The filters for data like `sample` (bytes of elements of elem_size
 * bytes, about one chunk): CONVERT_SHUFFLE_GZIP when byte-shuffling makes
 * deflate level 1 smaller on it, CONVERT_GZIP otherwise (and for 1-byte
 * elements). A trial compression of the sample, so it costs about one chunk
 * compressed twice. See convert.h for why both occur. */
int convert_pick_filters(const void *sample, size_t bytes, size_t elem_size);

/* Creates group `group` in `file` (intermediate groups too), replacing one
 * that exists. */
hid_t convert_replace_group(hid_t file, const char *group);

/* A converter's output group is written as a temporary sibling and
 * replaces the group only when every write succeeded, so a failure leaves
 * an existing group as it was (the file may keep the space the attempt
 * used). convert_stage_group creates "<group>.midscale-partial" (deleting
 * a stale one) and writes its name into tmp (tmplen bytes);
 * convert_commit_group deletes `group` if it exists and moves tmp there;
 * convert_drop_group deletes tmp (a failed conversion). */
hid_t convert_stage_group(hid_t file, const char *group, char *tmp, size_t tmplen);
int convert_commit_group(hid_t file, const char *group, const char *tmp);
void convert_drop_group(hid_t file, const char *tmp);

/* Writes rows [row, row + rows) of a dataset of shape dims from buf. */
int convert_write_rows(hid_t set, int rank, const hsize_t *dims, uint64_t row, uint64_t rows,
                       hid_t mem_type, const void *buf);

/* Opens out_path for writing: an existing HDF5 file is kept (its other
 * groups survive), a missing or empty file is created, anything else is
 * refused so that a typo never overwrites a file that is not HDF5. */
hid_t convert_open_output(const char *out_path, char *err, size_t errlen);

/* A .npy header (convert_npy.c). */
#define NPY_MAX_DIMS 32
typedef struct {
  char descr[32];
  char kind;      /* 'u', 'i', 'f', 'b' */
  size_t size;    /* bytes per element */
  int big_endian; /* byte order of the data */
  int fortran;
  int ndim;
  uint64_t dims[NPY_MAX_DIMS];
  long data_offset; /* where the data starts */
  uint64_t elems;   /* product of dims */
} npy_header;

/* Parses the header dict of a .npy file (the len bytes after the
 * preamble) into h's descr, fortran and shape (ndim, dims, elems), the way
 * NumPy reads it (convert_npy.c); err names `path`. 0 or -1. */
int convert_npy_parse_dict(const char *path, const char *d, size_t len, npy_header *h, char *err,
                           size_t errlen);

#endif
