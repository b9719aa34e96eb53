/* dataset_internal — the data_set struct, shared by dataset.c (opening,
 * the getters, the label checks) and dataset_read.c (data_read, the finite
 * check). The chunk cache (chunk_cache.h) and the row conversions
 * (rowconv.h) keep their state to themselves. Private to data/.
 */
#ifndef MS_DATASET_INTERNAL_H
#define MS_DATASET_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk_cache.h"
#include "dataset.h"

/* The labels, read into memory at open. */
typedef struct {
  data_label_kind kind;
  size_t elems; /* values per sample */
  int rank;
  hsize_t dims[H5S_MAX_RANK];
  char type[40];    /* the stored type, for messages */
  int64_t *classes; /* (n) class labels, or NULL */
  float *targets;   /* (n, elems) float labels, or NULL */
} data_labels;

/* dataset_read.c's scratch for streamed reads without a chunk cache. */
typedef struct {
  struct data_run_item *order; /* the requested indices, sorted */
  size_t order_cap;
  unsigned char *rows; /* one run of stored rows */
  size_t rows_cap;     /* bytes */
} data_read_scratch;

/* A token set's ids (dataset.h, "Token sets"); ids NULL for other sets. */
typedef struct {
  unsigned char *ids;         /* (rows, row_len) every token id, `width` bytes each */
  size_t width;               /* 1, 2 or 4: the stored width (uint8, uint16, uint32) */
  uint64_t rows, row_len;     /* a stream is 1 row */
  uint64_t seq_len, stride;   /* stride resolved */
  uint64_t per_row;           /* windows per row */
  uint64_t vocab;             /* the vocab_size attribute, else max id + 1 */
  int vocab_stated;           /* the file has the attribute */
  int stream;                 /* stored (T,), not (N, L) */
} data_tokens;

struct data_set {
  char *path, *x_name, *y_name;
  data_dtype dtype;
  size_t elems;    /* input features per sample */
  int fits_budget; /* the inputs fit the memory budget */
  /* The inputs: shape, width, chunking, names; set and space are open (and
   * owned here) only while streamed, else H5I_INVALID_HID. */
  chunk_src x;
  hid_t file; /* streamed: the open file, else H5I_INVALID_HID */
  data_labels y;
  unsigned char *mem;  /* in memory: (n, elems) stored inputs, else NULL */
  chunk_cache *cache;  /* streamed through the chunk cache, else NULL */
  data_read_scratch scratch;
  data_tokens tok;
};

/* A new data_set for the inputs x_name (and labels y_name, or NULL) of the
 * file path, of file_size bytes: its names copied, its HDF5 ids invalid.
 * @return it, or NULL when out of memory (nothing is left allocated). */
data_set *data_set_new(const char *path, const char *x_name, const char *y_name,
                       uint64_t file_size);

/* dataset.c's guarded open of a dataset (h5guard.h), shared with
 * tokens.c: H5I_INVALID_HID with err set when it is missing (the message
 * lists what exists), a refused link, or short of its declared storage. */
hid_t data_open_dataset(hid_t file, const char *path, const char *name, uint64_t file_size,
                        char *err, size_t errlen);

/* Refuses a dataset whose filters this HDF5 cannot decode (dataset.c). */
int data_check_filters(hid_t set, const char *path, const char *name, char *err, size_t errlen);

/* tokens.c: data_read and data_check_labels of a token set. */
int data_tokens_read(data_set *ds, const uint64_t *idx, size_t n, const data_norm *norm, float *x,
                     int32_t *y, float *t, char *err, size_t errlen);
int data_tokens_check_vocab(const data_set *ds, int n_classes, char *err, size_t errlen);

#endif
