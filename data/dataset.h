/* dataset — one (inputs, labels) pair of HDF5 datasets, read by sample
 * index. This header also states the error convention of all of data/.
 *
 * Inputs: uint8, int8, uint16, int16, float16 (IEEE half, as h5py and numpy
 * write it), float32 or float64, any byte order, any per-sample shape
 * (dimension 0 is the sample index; the rest is flattened in C order).
 *
 * Labels, one of two kinds (data_label_kind_of):
 *   DATA_LABEL_CLASS  any integer type, shape (N,) or (N, 1): class indices.
 *   DATA_LABEL_FLOAT  any float type (16, 32 or 64 bits), shape (N, ...):
 *                     regression targets, data_label_elems() per sample.
 * The inputs and the labels must agree on N. The labels are always read
 * into memory at open (int64 or float32 per value).
 *
 * Access modes. Every rank opens the file itself (independent, serial HDF5
 * access: no MPI calls here). The inputs are kept in their stored width
 * with byte order made native, and become floats (data_norm) only as
 * data_read copies each row out. data_open_cached picks one mode from the
 * data.cache key and whether the inputs fit `mem_budget` bytes:
 *
 *   memory   auto and they fit, or memory (memory and they do not fit is an
 *            error that names both sizes). Read whole at open into one
 *            huge-page mapping, with direct chunk reads where they apply
 *            (below), else one H5Dread; the file is closed before
 *            data_open returns. data_read makes no HDF5 call and takes no
 *            lock.
 *   chunks   stream (however small) or auto over the budget, chunked
 *            inputs: streamed through midscale's chunk cache
 *            (chunk_cache.h), which reads whole HDF5 chunks and keeps as
 *            many as the budget holds (at least 2, at most all), the least
 *            recently used giving way. HDF5's own chunk cache is switched
 *            off on that dataset: it would only hold a second copy.
 *            Random access over more chunks than the cache holds costs
 *            about one chunk read and decode per sample: block shuffle
 *            (sampler.h) keeps a batch within a few chunks.
 *   blocks   stream, contiguous inputs that fit the budget: as chunks, in
 *            blocks of about 1 MiB of whole samples.
 *   runs     contiguous inputs over the budget (auto or stream): no cache.
 *            A data_read sorts its indices and merges them into runs of
 *            consecutive rows, one H5Dread of a hyperslab per run.
 * Two refinements:
 *   direct chunk reads  in memory and chunks modes, when every chunk holds
 *            whole samples stored in native order, unfiltered or deflated
 *            (after the shuffle filter or not): chunks are read as stored
 *            and inflated with libdeflate rather than through HDF5's
 *            pipeline. Anything else (other filters, big-endian data) is
 *            read with H5Dread. data_direct_chunks says which, for a
 *            streamed set.
 *   node-shared cache   chunks or blocks whose cache holds every chunk
 *            (data_shared_cache_bytes > 0): the processes of a node may
 *            share the decoded chunks through memory they map together
 *            (data_share_cache), so that each chunk is read and decoded
 *            once per node. Each process keeps its own slots.
 * The modes change where bytes come from, never the floats data_read
 * returns. scripts/bench/results/loader.md measures them.
 *
 * Hostile input (h5guard.h). A data file may come from anyone: before it
 * spends memory or time on a file, data/ checks what the file can justify,
 * and refuses the rest as damaged (an err that names the file and the
 * dataset; exit 3 in the trainer), never "out of memory" and never a hang:
 *   - only regular files are opened: a FIFO, a device, a directory or a
 *     loop of symbolic links is named as such;
 *   - every dataset's storage holds what its shape declares: contiguous
 *     and compact data lie inside the file; a chunked set has every chunk
 *     allocated, stores no more than the file's size and no less than
 *     1/1100 of its declared bytes (deflate's ratio limit, when its filters
 *     are deflate, shuffle, Fletcher32), and has no chunk over 64 MiB that
 *     is larger than the whole set. So N, and with it the labels (8 B per
 *     sample and value) and the loader's order (8 B per sample, loader.h),
 *     are bounded by the file's size;
 *   - a deflated chunk that HDF5's own filter would decode (the labels
 *     always; inputs off the direct path) is first inflated here into a
 *     buffer of its declared size: one that inflates to more or fewer bytes
 *     is refused before HDF5 grows a buffer for it;
 *   - links (data_allow_links, below) are refused unless allowed.
 *
 * Memory. mem_budget (data.memory_mb) bounds the inputs kept in memory,
 * and in the streamed modes the chunk cache's slots, with one exception:
 * the cache holds at least 2 chunks, so a set whose chunks are larger than
 * half the budget takes 2 chunks. It does not bound the labels (N x
 * data_label_elems values of 8 B for class labels, 4 B for float labels),
 * the loader's order (8 B per sample) or data_info's histogram (8 B per
 * value), which the storage checks above bound by the file instead, nor
 * HDF5's own metadata cache. data_open with budget 0 (midscale check)
 * reads the labels only.
 *
 * Ownership. A data_set owns its HDF5 handles (streamed: the file and the
 * inputs' dataset stay open until data_close), the labels, the inputs in
 * memory, the chunk cache and its scratch. Strings from the getters are
 * ds's, valid until data_close. The caller owns the data_norm arrays, the
 * output buffers of data_read, and the shared memory of data_share_cache
 * (mapped until data_close).
 *
 * Threads. HDF5 is usually built without thread safety (so is the
 * Debian/Ubuntu parallel build). Every function of data/ that calls HDF5 --
 * data_open, data_open_cached, data_close, data_read and data_check_finite
 * on a streamed set, the converters (convert.h) and data_info (info.h) --
 * holds one process-wide, recursive lock while it does, so HDF5 never runs
 * on two threads at once: the loader thread (loader.h) may read the
 * training set while the main thread evaluates on the test set or checks a
 * file. A data_set itself belongs to one thread at a time: data_read,
 * data_check_finite, data_check_labels and data_share_cache use or change
 * per-set state (scratch buffers, the cache); while a loader reads a set,
 * the set is the loader's (loader.h). The getters (data_count, ...) only
 * read fields fixed at open and may be called from any thread.
 * data_read on an in-memory set makes no HDF5 call and takes no lock. Code
 * outside data/ that calls HDF5 itself while another thread may be in
 * data/ brackets the calls with data_hdf5_lock / data_hdf5_unlock.
 *
 * Errors (all of data/: dataset.h, loader.h, sampler.h, convert.h,
 * info.h). A function that can fail returns int: 0, or -1 with one line
 * (no newline) in the caller's buffer err of errlen bytes, its last two
 * parameters, always NUL-terminated and cut to fit. The line names what
 * failed and where: the file, the dataset, the sample index, the config
 * key (data.mean, ...). err may be NULL (or errlen 0) when the caller
 * needs no message; its content after a 0 is unspecified. Nothing in
 * data/ prints or exits. DATA_ERRLEN is the buffer size callers should
 * use: it holds the longest message data/ writes (a missing dataset, with
 * up to 2 KiB of the datasets that do exist) with room for the file and
 * dataset names. Getters cannot fail. (The names of data_cache and
 * sampler_shuffle values are the config's: trainer/config/ parses them.)
 */
#ifndef MS_DATASET_H
#define MS_DATASET_H

#include <stddef.h>
#include <stdint.h>

/* The size of an err buffer for data/ functions (Errors, above). */
#define DATA_ERRLEN 4096

typedef struct data_set data_set;

/* Stored input types. The values of DATA_U8 and DATA_F32 are kept from the
 * first version. */
typedef enum {
  DATA_U8 = 0,
  DATA_F32 = 1,
  DATA_I8 = 2,
  DATA_U16 = 3,
  DATA_I16 = 4,
  DATA_F16 = 5,
  DATA_F64 = 6,
  DATA_I32 = 7 /* token sets only: the ids as held in memory (Token sets, below) */
} data_dtype;

typedef enum { DATA_LABEL_CLASS = 0, DATA_LABEL_FLOAT = 1 } data_label_kind;

/* How stored input values become the floats data_read returns. Element k of
 * a sample, stored value raw, becomes, in single precision,
 *
 *     x = ((float)raw * scale - mean[m(k)]) / std[s(k)]
 *
 * (the subtraction left out when n_mean == 0, the division when n_std == 0).
 * mean and std each hold one of:
 *   1 value                  the same for every element;
 *   C values (per channel)   C = dimension 1 of the inputs, (N, C, ...):
 *                            m(k) = the channel of element k;
 *   E values (per feature)   E = data_sample_elems(): m(k) = k.
 * (When C == E both readings agree.) std values must be finite and > 0, mean
 * values finite. The caller owns the arrays; data_read only reads them.
 *
 * check_finite is not used by data_read: it is data_check_finite's switch
 * kept here so that one struct carries the data options of a run. */
typedef struct {
  float scale;       /* 1 = as stored */
  size_t n_mean;     /* 0 = no mean */
  const float *mean; /* (n_mean) */
  size_t n_std;      /* 0 = no std */
  const float *std;  /* (n_std) */
  int check_finite;  /* the run asked for data_check_finite */
} data_norm;

/* The identity: scale 1, no mean, no std. */
data_norm data_norm_identity(void);

/* Opens `path` and the datasets `x_name`, `y_name` (absolute or relative
 * paths inside the file, e.g. "/train/images"). On failure *out is NULL and
 * err says why: the file is missing, not a regular file, not HDF5 or
 * truncated; a dataset is missing (the message lists the datasets that do
 * exist), reached through a refused link, or stored in less than its shape
 * declares (Hostile input, above); a dtype or a shape is unsupported; the
 * sample counts differ; there are no samples. */
int data_open(data_set **out, const char *path, const char *x_name, const char *y_name,
              size_t mem_budget, char *err, size_t errlen);

/* Where the inputs live (Access modes, at the top of this file). */
typedef enum { DATA_CACHE_AUTO = 0, DATA_CACHE_MEMORY = 1, DATA_CACHE_STREAM = 2 } data_cache;

/* data_open with a cache mode (data_open is DATA_CACHE_AUTO). With
 * DATA_CACHE_MEMORY, inputs larger than mem_budget are an error that names
 * both sizes. */
int data_open_cached(data_set **out, const char *path, const char *x_name, const char *y_name,
                     size_t mem_budget, data_cache cache, char *err, size_t errlen);

/* Links (the data.allow_links key), process-wide, off by default: HDF5
 * external links, virtual datasets and external raw storage make a file
 * read other files, which may be missing (a virtual dataset then reads as
 * zeros) or block (a FIFO). Off, data_open and data_info refuse them with
 * a message that names the dataset; on, they are followed only to regular
 * files in the data file's own directory, and a virtual dataset's sources
 * must all exist. Call before opening; any thread. */
void data_allow_links(int on);

/* The process-wide HDF5 lock (recursive), for HDF5 calls made outside
 * data/ while another thread may be inside it. */
void data_hdf5_lock(void);
void data_hdf5_unlock(void);

/* The node-shared cache (Access modes): the processes of a node (the MPI
 * ranks of one node all open the same file) share a streamed set's chunk
 * cache. Each chunk is then read and decoded once per node, by whichever
 * process needs it first, and the others copy it (waiting while it is
 * decoded).
 *
 * data_shared_cache_bytes: the bytes of shared memory that takes (a state
 * word per chunk, then every chunk), or 0 when ds has no chunk cache, its
 * cache does not hold every chunk (processes evicting different chunks
 * cannot share slots) or it is shared already. The first
 * data_shared_cache_zeroed bytes of the memory must be zero before any
 * process uses it.
 *
 * data_share_cache (only when data_shared_cache_bytes > 0; no MPI call, but
 * every process of the node must pass memory mapped from the same object,
 * for the same file and datasets): from then on ds's chunks come through
 * mem (its slots stay its own), which must stay mapped until data_close.
 * A failed read leaves the chunk to the next process that needs it, which
 * reads it again and reports the same error. */
size_t data_shared_cache_bytes(const data_set *ds);
size_t data_shared_cache_zeroed(const data_set *ds);
void data_share_cache(data_set *ds, void *mem);

/* Chunks (or blocks) this process has read into its chunk cache. */
uint64_t data_chunks_read(const data_set *ds);

/* ---- Token sets --------------------------------------------------------
 *
 * A token set is one HDF5 dataset of integer token ids (any integer type
 * up to 64 bits; uint8, uint16 and int32 are the usual ones), either
 *   (T,)     one long stream, or
 *   (N, L)   N fixed-length sequences of L tokens each.
 * Training windows of seq_len + 1 tokens are cut every `stride` tokens (a
 * window never crosses from one sequence of an (N, L) set into the next),
 * and the sample index is the window number w:
 *   inputs  x  (seq_len) floats: tokens [s, s + seq_len), ids exactly;
 *   labels  y  (seq_len) int32: tokens [s + 1, s + seq_len + 1), the next
 *              token at each position,
 * with s = w * stride for a stream; for (N, L), window w is window
 * w % W of sequence w / W, W = (L - seq_len - 1) / stride + 1 windows per
 * sequence. So data_count is the number of windows (for a stream of T
 * tokens, (T - seq_len - 1) / stride + 1), data_sample_elems and
 * data_label_elems are seq_len, data_label_kind_of is DATA_LABEL_CLASS,
 * data_input_dtype is DATA_I32, and the sampler, the loader, sharding and
 * resume treat windows as they treat any sample.
 *
 * The vocabulary: the integer attribute `vocab_size` on the dataset (as
 * `midscale prepare text` writes it), else the largest id + 1. All ids are
 * read into memory at open, in their stored width (1, 2 or 4 B; within
 * mem_budget unless it is 0), and checked there: an id that is negative, at or over vocab_size, or
 * over 2^24 - 1 (the largest integer a float input holds exactly) is
 * refused with its position, as are a float or non-integer
 * type, a shape other than (T,) or (N, L) and data shorter than one window.
 * data_read refuses a norm other than the identity (token ids are not
 * scaled). data_check_labels(ds, V) checks that every id, and vocab_size
 * when the file states it, fits a model of V classes. */

/* How windows are cut from a token set. */
typedef struct {
  uint64_t seq_len; /* tokens per window's inputs, >= 1 (data.seq_len) */
  uint64_t stride;  /* tokens between window starts, >= 1; 0 = seq_len (data.stride) */
} data_token_opts;

/* Opens the token dataset `name` of `path` (see above); ds's labels are
 * the same dataset (data_y_name returns name). Errors: those of data_open,
 * and those of Token sets, above. */
int data_open_tokens(data_set **out, const char *path, const char *name,
                     const data_token_opts *o, size_t mem_budget, char *err, size_t errlen);

/* The vocabulary size of a token set (above); 0 for any other set. */
uint64_t data_vocab_size(const data_set *ds);

/* 1 for a token set. */
int data_is_tokens(const data_set *ds);

/* seq_len and stride of a token set (stride resolved); 0 for other sets. */
uint64_t data_seq_len(const data_set *ds);
uint64_t data_stride(const data_set *ds);

/* Tokens in a token set (all sequences together); 0 for other sets. */
uint64_t data_token_count(const data_set *ds);

/* Closes the file and frees everything; accepts NULL. */
void data_close(data_set *ds);

uint64_t data_count(const data_set *ds);      /* samples N */
size_t data_sample_elems(const data_set *ds); /* input features per sample */
data_dtype data_input_dtype(const data_set *ds);
int data_in_memory(const data_set *ds);          /* 1 in the memory mode */
uint64_t data_chunk_samples(const data_set *ds); /* samples per HDF5 chunk; 0 = not chunked */
/* 1 if a streamed set's chunks are read as stored and decoded by midscale
 * (direct chunk reads); 0 in memory and when HDF5 decodes them. */
int data_direct_chunks(const data_set *ds);
/* 1 if the inputs fit the memory budget: in memory, or streamed (data.cache
 * stream) through a chunk cache that ends up holding all of them. */
int data_fits_budget(const data_set *ds);
const char *data_path(const data_set *ds);       /* the file, as given */
const char *data_x_name(const data_set *ds);     /* the inputs' dataset, as given */
const char *data_y_name(const data_set *ds);     /* the labels' dataset, as given */

/* "uint8", "float16", ...; "?" for a value outside the enum. */
const char *data_dtype_name(data_dtype t);

/* Bytes per stored value: 1, 2, 4 or 8 (4 for a value outside the enum). */
size_t data_dtype_size(data_dtype t);

/* The per-sample shape of the inputs (their dims without the first): fills
 * up to max_dims of dims. @return the number of per-sample dims (0 for
 * inputs of shape (N,), one feature each). */
int data_sample_shape(const data_set *ds, uint64_t *dims, int max_dims);

/* The kind of the labels (see the top of this file). */
data_label_kind data_label_kind_of(const data_set *ds);

/* Label values per sample: 1 for class labels; for float labels the product
 * of their per-sample dims (1 for shape (N,)). */
size_t data_label_elems(const data_set *ds);

/* The per-sample shape of the labels, as data_sample_shape (0 dims for (N,);
 * class labels of shape (N, 1) report 0 dims too; a token set's labels
 * report one dim, seq_len). */
int data_label_shape(const data_set *ds, uint64_t *dims, int max_dims);

/* For a classifier with n_classes outputs: the labels must be class labels
 * (float labels are refused: "... are float32 regression targets but the
 * model is a classifier ..."), every label in [0, n_classes). On failure err
 * names the first bad sample index and its value (negative labels are called
 * negative). */
int data_check_labels(data_set *ds, int n_classes, char *err, size_t errlen);

/* For a regression model with n_outputs outputs: data_label_elems() must
 * equal n_outputs (class labels count as one float target each). */
int data_check_targets(const data_set *ds, size_t n_outputs, char *err, size_t errlen);

/* Checks that norm fits these inputs: the counts of mean and std (1, C or
 * E, see data_norm), finite values, std > 0, a finite scale. */
int data_norm_check(const data_set *ds, const data_norm *norm, char *err, size_t errlen);

/* Reads samples [begin, begin + count) (every one, in blocks) through norm
 * and checks that every input float is finite, and every float label.
 * A pass over that part of the file in streaming mode: split [0, N) over
 * ranks (sampler_eval_range) to share it. On failure err names the sample
 * index, the element and the value ("nan", "inf"). */
int data_check_finite(data_set *ds, uint64_t begin, uint64_t count, const data_norm *norm,
                      char *err, size_t errlen);

/* Reads samples idx[0..n) (any order, repeats allowed).
 *   x  (n, data_sample_elems) floats, row i = sample idx[i], through norm
 *      (NULL = data_norm_identity()).
 *   y  (n, data_label_elems) class labels (one per sample, seq_len for a
 *      token set); may be NULL; ignored when the labels are float.
 *   t  (n, data_label_elems) float targets; may be NULL. For class labels
 *      t gets the class index as a float.
 * Errors: an index >= N, a class label outside int32, a norm that does not
 * fit (data_norm_check), an HDF5 read failure (e.g. a truncated file). */
int data_read(data_set *ds, const uint64_t *idx, size_t n, const data_norm *norm, float *x,
              int32_t *y, float *t, char *err, size_t errlen);

#endif
