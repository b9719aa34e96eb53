/* chunk_cache — midscale's own chunk cache for the inputs of a data_set,
 * and the reads of whole chunks it is filled by. Private to data/.
 *
 * A cached set is read a whole chunk of samples at a time: its HDF5 chunks
 * or, for a contiguous dataset, blocks of about 1 MiB of whole samples.
 * Each chunk is kept as stored (native byte order, not yet converted to
 * float) in one of `slots` slots, the least recently used one giving way,
 * so that a sample that is cached costs a lookup and a row conversion
 * (rowconv.h), not an HDF5 call. The slots are one mapping in huge pages
 * (chunk_big_alloc), committed as chunks are first read.
 *
 * Direct chunk reads: when every chunk holds whole samples, stored in
 * native order and either unfiltered or deflated (after the shuffle filter
 * or not), a chunk is read as stored (H5Dread_chunk) and decoded here with
 * libdeflate, straight into its destination. HDF5's own pipeline would
 * inflate with zlib (slower; scripts/bench/results/loader.md) into a
 * buffer it grows, then copy the chunk out. Other pipelines (Fletcher32,
 * szip, plugins), big-endian data, unallocated chunks and chunks stored
 * with an unusual filter skipped go through H5Dread.
 *
 * Sharing (chunk_cache_share): when the slots hold every chunk, the
 * processes of a node may share the decoded chunks through memory they map
 * together (dataset.h, data_share_cache). Chunk c is then decoded once per
 * node, by whichever process needs it first, published to the shared
 * memory, and copied from there by the others into their own slot c. The
 * slots stay private: read at random, rows are found faster in huge pages
 * than in the 4 KiB pages of shared memory.
 *
 * Ownership: the cache copies the chunk_src it is given; the HDF5 handles
 * in it stay the data_set's (dataset.c closes them after chunk_cache_free).
 * Threads: a cache belongs to its data_set's thread; the functions that read
 * take the HDF5 lock (h5util.h) around their HDF5 calls.
 * Errors: -1 (or NULL) with a message in err (dataset.h, "Errors").
 */
#ifndef MS_CHUNK_CACHE_H
#define MS_CHUNK_CACHE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* The stored inputs a cache reads from (handles owned by the data_set). */
typedef struct {
  hid_t set, space; /* the inputs' dataset and its file space */
  hid_t mem_type;   /* stored width, native order */
  int rank;         /* of the dataset */
  hsize_t dims[H5S_MAX_RANK];
  uint64_t n;              /* samples (dims[0]) */
  size_t row_bytes;        /* stored bytes per sample */
  uint64_t chunk_rows;     /* samples per HDF5 chunk; 0 = not chunked */
  const char *path, *name; /* for messages; must outlive the cache */
  uint64_t file_size;      /* bytes of the file, for h5guard_inflate */
} chunk_src;

/* Rows [start, start + len) of src as stored into dst, with one H5Dread
 * of a hyperslab. Takes the HDF5 lock. */
int chunk_src_read_rows(const chunk_src *src, uint64_t start, uint64_t len, unsigned char *dst,
                        char *err, size_t errlen);

typedef struct chunk_cache chunk_cache;

/* The rows of a block of a contiguous set: about 1 MiB of whole samples,
 * at least one, at most src->n. */
uint64_t chunk_cache_block_rows(const chunk_src *src);

/* A cache of chunks of `rows` samples (src->chunk_rows, or for a contiguous
 * set the rows of a block) with as many slots as `budget` bytes hold, at
 * least 2, at most all the chunks; with slots == 0 no slots at all (a
 * reader of whole chunks, chunk_cache_read). Direct reads are set up when
 * they apply (rows == src->chunk_rows, see above). The caller holds the
 * HDF5 lock. @return 0, or -1 when out of memory (nothing written to err:
 * the caller names what it was opening). */
int chunk_cache_create(chunk_cache **out, const chunk_src *src, uint64_t rows, size_t budget,
                       int slots);

/* Accepts NULL. Makes no HDF5 call. */
void chunk_cache_free(chunk_cache *cc);

/* Samples per cached chunk. */
uint64_t chunk_cache_rows(const chunk_cache *cc);

/* 1 when the chunks are read directly (see above). */
int chunk_cache_direct(const chunk_cache *cc);

/* Chunks this process has read into its slots. */
uint64_t chunk_cache_chunks_read(const chunk_cache *cc);

/* Rows [c * rows, + rows) (fewer in the last chunk) as stored into dst,
 * which has room for `rows` rows: a direct read where it applies, else
 * H5Dread. Uses no slot. */
int chunk_cache_read(chunk_cache *cc, uint64_t c, unsigned char *dst, char *err, size_t errlen);

/* The stored rows of chunk c, from its slot or read into one (evicting the
 * least recently used chunk, or through the shared memory); NULL and err on
 * a failed read. Valid until the next call that reads a chunk. */
const unsigned char *chunk_cache_get(chunk_cache *cc, uint64_t c, char *err, size_t errlen);

/* Sample i's stored row when its chunk is in a slot, else NULL. */
const unsigned char *chunk_cache_row(const chunk_cache *cc, uint64_t i);

/* 1 when the chunks of every sample of idx[0..n) are in slots, and marks
 * them used; 0 at the first one that is not (the ones before stay marked). */
int chunk_cache_has_all(chunk_cache *cc, const uint64_t *idx, size_t n);

/* The shared memory a node's processes need to share this cache: a state
 * word per chunk, padded to a page, then every chunk. 0 when the slots do
 * not hold every chunk (processes evicting different chunks cannot share
 * slots) or when the cache is already shared. */
size_t chunk_cache_shared_bytes(const chunk_cache *cc);

/* The bytes at the start of that memory that must be zero before any
 * process uses it (the state words). */
size_t chunk_cache_shared_zeroed(const chunk_cache *cc);

/* From now on, chunks come through mem (chunk_cache_shared_bytes > 0 of
 * it, mapped by every process of the node for the same file and dataset,
 * and mapped until chunk_cache_free). */
void chunk_cache_share(chunk_cache *cc, void *mem);

/* The pure decode step of a direct chunk read (no HDF5): `stored` (the
 * chunk's stored_bytes as H5Dread_chunk gives them) inflated with
 * `inflater` when deflated (a zlib stream), then unshuffled when
 * shuffle_size > 1 (HDF5's shuffle filter with elements of that many
 * bytes, through scratch, chunk_bytes of room), into dst (chunk_bytes).
 * The result must be exactly chunk_bytes long: a stream that inflates to
 * more or fewer bytes, or does not inflate, is refused.
 * @return 0, or -1 with the reason in why (the tail of the caller's
 * message). Exposed for tests/fuzz/fuzz_chunk.c. */
struct libdeflate_decompressor;
int chunk_decode(struct libdeflate_decompressor *inflater, const unsigned char *stored,
                 size_t stored_bytes, int deflated, size_t shuffle_size, unsigned char *scratch,
                 unsigned char *dst, size_t chunk_bytes, char why[160]);

/* Memory for large buffers filled once and then read at random (the inputs
 * in memory, the slots): an anonymous mapping, 2 MiB aligned, with
 * transparent huge pages requested where Linux has them, because first
 * touching 4 KiB pages dominates the warm-up of a large cache
 * (scripts/bench/results/loader.md). Pages are committed as they are
 * touched. NULL when out of memory; free accepts NULL. */
void *chunk_big_alloc(size_t bytes);
void chunk_big_free(void *p, size_t bytes);

#endif
