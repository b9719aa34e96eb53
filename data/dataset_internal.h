/* dataset_internal — the data_set struct, shared by dataset.c (opening,
 * checking the shapes and the labels) and dataset_read.c (normalisation,
 * reading, the finite check). Private to data/.
 */
#ifndef MS_DATASET_INTERNAL_H
#define MS_DATASET_INTERNAL_H

#include <hdf5.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

struct data_set {
  char *path, *x_name, *y_name;
  uint64_t n;
  size_t elems; /* input features per sample */
  data_dtype dtype;
  size_t dsize;   /* bytes per stored input element: 1, 2, 4 or 8 */
  hid_t mem_type; /* the inputs in memory: stored width, native order */
  int xrank;
  hsize_t xdims[H5S_MAX_RANK];
  uint64_t chunk_rows; /* samples per HDF5 chunk of the inputs; 0 = not chunked */
  int fits_budget;     /* the inputs fit the memory budget (and a streaming chunk cache) */
  /* Labels. */
  data_label_kind lkind;
  size_t lelems; /* values per sample */
  int lrank;
  hsize_t ldims[H5S_MAX_RANK];
  char ltype[40];     /* the stored label type, for messages */
  int64_t *labels;    /* (n) class labels, or NULL */
  float *targets;     /* (n, lelems) float labels, or NULL */
  unsigned char *mem; /* (n, elems) stored inputs; NULL if streaming */
  /* Streaming mode only. */
  hid_t file, xset, xspace;
  struct run_item *order; /* scratch: requested indices sorted */
  size_t order_cap;
  unsigned char *rows; /* scratch: one run of rows */
  size_t rows_cap;     /* bytes */
  /* Streaming chunked inputs (or contiguous ones that fit the budget, in
   * blocks of ~1 MiB): whole chunks as stored, decompressed once and kept
   * (least recently used out) within the memory budget, so that a sample
   * costs a lookup and a row conversion, not an HDF5 call. */
  size_t mem_budget;
  uint64_t cache_rows; /* samples per cached chunk; 0: no cache */
  uint64_t n_chunks;
  int32_t *chunk_slot;  /* (n_chunks) the slot holding each chunk, or -1 */
  unsigned char *arena; /* the slots' memory (data_big_alloc), touched as used */
  size_t arena_bytes;
  unsigned char **slot_buf; /* (cache_slots) slot k: arena + k chunks */
  uint64_t *slot_chunk;     /* (cache_slots) the chunk in each slot, or UINT64_MAX */
  uint64_t *slot_used;      /* (cache_slots) the tick of its last use */
  uint64_t tick;
  int cache_slots;
  uint64_t chunks_read; /* by this process */
  /* A chunk cache shared by the node's processes (data_share_cache): chunk
   * c is decoded by one of them into its own slot c and copied to
   * shared_chunks (memory ds does not own), from which the others copy it
   * into theirs; chunk_state[c] says where it is: CHUNK_EMPTY, CHUNK_BUSY
   * (a process is reading it), CHUNK_READY (in shared_chunks). The slots
   * stay private: read at random, rows are found faster in the arena's
   * huge pages than in the 4 KiB pages of shared memory. NULL when not
   * shared. */
  _Atomic uint32_t *chunk_state;
  unsigned char *shared_chunks;
  /* Direct chunk reads (dataset_read.c, chunk_get): when each chunk holds
   * whole samples, stored in native order and either not filtered or
   * deflated (after the shuffle filter or not), a chunk is read as stored
   * (H5Dread_chunk) and decoded here with libdeflate, straight into its
   * cache slot: HDF5's pipeline inflates with zlib (2x slower here) into a
   * buffer it grows by realloc, then copies the chunk out. Other pipelines,
   * unallocated chunks and chunks whose filters were skipped in an unusual
   * way go through H5Dread. */
  int direct;
  int shuffle_at, deflate_at; /* index in the pipeline, or -1 */
  size_t shuffle_size;        /* bytes per element of the shuffle filter */
  unsigned char *zbuf;        /* the stored bytes of one chunk */
  size_t zbuf_cap;
  unsigned char *unshuf; /* scratch: a decompressed, still shuffled chunk */
  struct libdeflate_decompressor *inflater;
};

enum { CHUNK_EMPTY = 0, CHUNK_BUSY = 1, CHUNK_READY = 2 };

/* Memory for large buffers filled once and then read at random (the
 * inputs in memory, the chunk cache): an anonymous mapping, 2 MiB aligned,
 * with transparent huge pages requested (MADV_HUGEPAGE where Linux has it).
 * First touch of 4 KiB pages dominated the chunk cache's warm-up on this
 * VM: 0.15 s to fault in 48 MiB against 0.004-0.1 s with huge pages. Pages
 * are committed as they are touched. NULL when out of memory. */
void *data_big_alloc(size_t bytes);
void data_big_free(void *p, size_t bytes);

/* Rows [c * cache_rows, + cache_rows) of the inputs (fewer in the last
 * chunk) as stored, into dst, which has room for cache_rows rows: a direct
 * chunk read where it applies, else H5Dread. -1 and err on failure. */
int data_read_chunk(data_set *ds, uint64_t c, unsigned char *dst, char *err, size_t errlen);

struct run_item {
  uint64_t idx;
  size_t pos;
};

#endif
