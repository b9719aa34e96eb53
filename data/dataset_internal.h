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
};

#endif
