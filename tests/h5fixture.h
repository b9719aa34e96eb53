/* h5fixture — small HDF5 fixtures for the data/ unit tests written after
 * test_dataset.c (test_dataset_read.c, test_convert.c, test_info.c): a
 * fresh temporary directory per test binary, and datasets written with the
 * HDF5 C API. cmocka assertions fail the running test on any HDF5 error. */
#ifndef MS_H5FIXTURE_H
#define MS_H5FIXTURE_H

#include <hdf5.h>

/* cmocka group setup / teardown: creates / removes the directory (one
 * level of files). */
int h5f_make_dir(void **state);
int h5f_remove_dir(void **state);

/* "<tmpdir>/name", in one of eight rotating buffers. */
const char *h5f_tmp(const char *name);

/* Creates (truncates) an HDF5 file. */
hid_t h5f_create(const char *path);

/* Writes dataset `name` (intermediate groups created) of the given shape;
 * chunk_rows > 0 makes it chunked along dimension 0 and gzip-compressed. */
void h5f_put(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
             const void *data, hsize_t chunk_rows);

/* The filter pipelines of h5f_put_filtered (in HDF5's order: the shuffle,
 * then deflate, then Fletcher32 checksums). */
enum { FX_SHUFFLE = 1, FX_DEFLATE = 2, FX_FLETCHER32 = 4 };

/* h5f_put with chunk_rows > 0 and the filters of `filters`. */
void h5f_put_filtered(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank,
                      const hsize_t *dims, const void *data, hsize_t chunk_rows, int filters);

/* numpy's float16 as h5py writes it (little-endian IEEE half); the caller
 * closes it. big_endian: the same layout, big-endian. */
hid_t h5f_half_type(int big_endian);

/* Writes text to a file (a not-HDF5 fixture). */
void h5f_write_text(const char *path, const char *text);

#endif
