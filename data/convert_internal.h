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

/* Writes rows [row, row + rows) of a dataset of shape dims from buf. */
int convert_write_rows(hid_t set, int rank, const hsize_t *dims, uint64_t row, uint64_t rows,
                       hid_t mem_type, const void *buf);

/* Opens out_path for writing: an existing HDF5 file is kept (its other
 * groups survive), a missing or empty file is created, anything else is
 * refused so that a typo never overwrites a file that is not HDF5. */
hid_t convert_open_output(const char *out_path, char *err, size_t errlen);

#endif
