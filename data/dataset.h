/* dataset — one (inputs, labels) pair of HDF5 datasets, read by sample index.
 *
 * Inputs: uint8 or float32, any per-sample shape (dimension 0 is the sample
 * index; the rest is flattened). Labels: any integer type, shape (N,) or
 * (N, 1). The two must agree on N.
 *
 * Every rank opens the file itself (independent, serial HDF5 access: no MPI
 * calls here). When the inputs fit `mem_budget` bytes the whole dataset is
 * read once into memory in its stored dtype; otherwise samples are read on
 * demand, sorted and merged into runs of consecutive rows (one H5Dread per
 * run), through an HDF5 chunk cache of max(mem_budget, 1 MiB, two chunks)
 * bytes. Random access to gzip-compressed chunks costs about one chunk
 * decompression per sample once the chunks outgrow that cache.
 *
 * Errors: functions return 0 or -1 and write a one-line message naming the
 * file and dataset into err (errlen bytes); they never print or exit.
 * Not thread-safe. HDF5 is usually built without thread safety (so is the
 * Debian/Ubuntu parallel build), so all HDF5 calls of the process -- every
 * data_set and the converters -- must come from one thread at a time. A
 * data_read in memory mode makes no HDF5 call.
 */
#ifndef MS_DATASET_H
#define MS_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct data_set data_set;

typedef enum { DATA_U8 = 0, DATA_F32 = 1 } data_dtype;

/* Opens `path` and the datasets `x_name`, `y_name` (absolute or relative
 * paths inside the file, e.g. "/train/images"). On failure *out is NULL and
 * err says why: the file is missing or not HDF5, a dataset is missing (the
 * message lists the datasets that do exist), the dtypes are unsupported, or
 * the sample counts differ. */
int data_open(data_set **out, const char *path, const char *x_name,
              const char *y_name, size_t mem_budget, char *err, size_t errlen);

/* Closes the file and frees everything; accepts NULL. */
void data_close(data_set *ds);

uint64_t data_count(const data_set *ds);          /* samples N */
size_t data_sample_elems(const data_set *ds);     /* features per sample */
data_dtype data_input_dtype(const data_set *ds);
int data_in_memory(const data_set *ds);           /* 1 if cached in memory */

/* The per-sample shape of the inputs (their dims without the first): fills
 * up to max_dims of dims. @return the number of per-sample dims (0 for
 * inputs of shape (N,), one feature each). */
int data_sample_shape(const data_set *ds, uint64_t *dims, int max_dims);

/* Checks that every label is in [0, n_classes). On failure err names the
 * first bad sample index and its value. */
int data_check_labels(data_set *ds, int n_classes, char *err, size_t errlen);

/* Reads samples idx[0..n) (any order, repeats allowed) into x (n x elems
 * floats, row i = sample idx[i]; uint8 is multiplied by `scale`, float32 is
 * copied as is) and y (n labels). */
int data_read(data_set *ds, const uint64_t *idx, size_t n, float scale,
              float *x, int32_t *y, char *err, size_t errlen);

#endif
