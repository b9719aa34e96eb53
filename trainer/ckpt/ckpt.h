/* ckpt — checkpoint files: zstd frames (content checksum on) whose
 * concatenated payload is a valid safetensors file (DESIGN.md, "Checkpoint
 * file").
 *
 *   <dir>/step-<8 digits>.safetensors.zst
 *
 * safetensors layout: 8-byte little-endian header length N, N bytes of JSON
 * (padded with spaces so the data starts 8-byte aligned), then the tensor
 * bytes (the "data section"). Every tensor here is F32, little-endian, C
 * order. The JSON's "__metadata__" is a string->string map (the safetensors
 * rule) holding:
 *   format: "midscale-ckpt", format_version: "2", midscale_version,
 *   step, epoch, step_in_epoch, world_size, seed, rng_state,
 *   layout_hash (16 hex digits), data_hash (16 hex digits, see below),
 *   config (the resolved YAML), byte_shuffle ("4") only when the tensor
 *   bytes are stored shuffled (checkpoint.shuffle), and train_state only
 *   when the run keeps state of its own (early stopping).
 *
 * Frames: the payload is cut into contiguous pieces, each compressed as an
 * independent zstd frame with its content size declared, and the frames are
 * concatenated; that is one valid zstd stream (`zstd -d` yields the plain
 * safetensors file). Piece 0 holds the length and the JSON header and the
 * first slice of the data section, piece r > 0 slice r (ckpt_slice); a run
 * on W ranks writes W pieces (empty ones are left out), one rank one frame.
 *
 * data_hash, format version 2: XXH3-64 of the concatenated little-endian
 * XXH3-64 hashes of the data section's consecutive CKPT_HASH_CHUNK-byte
 * chunks (the last one shorter), of the tensor values (a byte-shuffled
 * tensor is hashed unshuffled). Chunks let ranks hash their slices in
 * parallel, and the value does not depend on the number of ranks or frames.
 * Version 1 (still read): FNV-1a 64 of all tensor bytes, and one frame.
 *
 * Writes are atomic: a temporary file in the same directory, fflush + fsync,
 * rename, fsync of the directory. A reader checks everything (every frame's
 * zstd checksum, header JSON, every tensor's dtype/shape/offsets,
 * data_hash, layout_hash, format version) and refuses with a message naming
 * the file and the problem.
 *
 * layout_hash is FNV-1a 64 (hash.h says why it stays so); the reader
 * only compares it.
 *
 * Not collective, no MPI: the caller decides which rank does what (the
 * pieces of a distributed write are ckpt_slice, ckpt_hash_chunks,
 * ckpt_header, ckpt_compress and ckpt_write_bytes).
 *
 * The code, in trainer/ckpt/, by layer (each includes only those below):
 *   section  the data section: sizes, slices, byte shuffle;
 *   datahash data_hash of each format version (on hash.h);
 *   frames   zstd frames, written and read;
 *   file     names, the atomic write protocol, listing and pruning;
 *   header   the safetensors JSON header and __metadata__ (jansson);
 *   read, write  the calls below, on top of them;
 *   saver    the background writer (saver.h), on top of this API.
 * Threads: no shared state; calls on distinct files may run concurrently.
 * Errors: 0, or MS_ECKPT (bad file) / MS_EIO (file system) / MS_ENOMEM /
 * MS_EUSAGE (export onto its input), with a message through ms_error_set().
 * A damaged file is MS_ECKPT, never MS_ENOMEM: no size is allocated before
 * it is checked against what the file's frames can hold.
 */
#ifndef MS_CKPT_H
#define MS_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT_VERSION 2
#define CKPT_MAX_DIMS 4
/* The largest step a file name (8 digits) can carry. */
#define CKPT_MAX_STEP 99999999LL
#define CKPT_HASH_CHUNK ((uint64_t)1 << 20)
/* Bytes of ckpt_meta.train_state, its NUL included. */
#define CKPT_MAX_TRAIN_STATE 256

/* A named F32 tensor. For writing, data points at the bytes to save; for
 * reading, at the destination, whose name and shape must match the file. */
typedef struct {
  const char *name;
  float *data;
  int ndim;
  int64_t shape[CKPT_MAX_DIMS];
} ckpt_tensor;

typedef struct {
  int64_t step;           /* optimizer steps done */
  int64_t epoch;          /* epoch of the next step */
  int64_t step_in_epoch;  /* steps done within that epoch (sampler cursor) */
  int world_size;         /* at save time */
  uint64_t seed;
  uint64_t rng_state;
  uint64_t layout_hash;   /* hash of tensor names and shapes */
  char *config;           /* resolved YAML; on read, malloc'ed (ckpt_meta_free) */
  int byte_shuffle;       /* 1: tensor bytes stored shuffled ("byte_shuffle": "4"
                             in the metadata): all first bytes of a tensor's
                             floats, then all second bytes, ...; readers
                             unshuffle, and data_hash is of the values */
  char train_state[CKPT_MAX_TRAIN_STATE]; /* the loop's own state beyond the
                             cursor (early stopping, earlystop.h), opaque
                             here: "train_state" in the metadata when not "";
                             an array so that copies of the meta own it */
} ckpt_meta;

/* ---- writing in one call --------------------------------------------- */

/* Writes tensors and meta to <dir>/step-<step>.safetensors.zst atomically
 * (creating dir if needed), as one frame. `level` is the zstd level.
 * On success *out_path (if not NULL) gets the malloc'ed final path. */
int ckpt_write(const char *dir, const ckpt_tensor *tensors, int n_tensors,
               const ckpt_meta *meta, int level, char **out_path);

/* ckpt_write with `workers` zstd compression threads (0 = compress on the
 * calling thread; ignored where libzstd has no thread support) and the
 * payload cut into `slices` frames exactly as `slices` ranks would cut it
 * (1 = one frame). The decompressed payload is the same whatever the
 * workers and slices; the compressed bytes differ. Streams into the file:
 * no copy of the tensors is held. */
int ckpt_write_mt(const char *dir, const ckpt_tensor *tensors, int n_tensors,
                  const ckpt_meta *meta, int level, int workers, int slices, char **out_path);

/* ckpt_write_mt's file as one frame under `name` in dir instead of its step
 * name (best.safetensors.zst: early stopping's best model). The name must
 * not be a step-<8 digits> one or hidden, so the file is never listed,
 * pruned or resumed by `--resume auto`; it replaces an older file of that
 * name atomically. */
int ckpt_write_named(const char *dir, const char *name, const ckpt_tensor *tensors, int n_tensors,
                     const ckpt_meta *meta, int level, int workers, char **out_path);

/* ---- the pieces of a distributed write -------------------------------- */

/* Checks the tensors as a writer would (names, shapes, data, the size cap)
 * and gives the byte size of their data section. `what` names the
 * destination in messages. */
int ckpt_data_size(const char *what, const ckpt_tensor *tensors, int n_tensors, uint64_t *bytes);

/* Slice r of n of a data section of `bytes` bytes: [*begin, *end), whole
 * floats, the slices of r = 0..n-1 contiguous and in order, their sizes
 * differing by at most one float. *first_chunk and *n_chunks (may be NULL)
 * give the CKPT_HASH_CHUNK chunks whose first byte lies in the slice: each
 * chunk belongs to exactly one slice. Pure arithmetic. */
void ckpt_slice(uint64_t bytes, int n, int r, uint64_t *begin, uint64_t *end,
                uint64_t *first_chunk, uint64_t *n_chunks);

/* Hashes n_chunks chunks of the data section of tensors, starting at chunk
 * first_chunk, into out[0..n_chunks-1] (the values: never shuffled). */
void ckpt_hash_chunks(const ckpt_tensor *tensors, int n_tensors, uint64_t first_chunk,
                      uint64_t n_chunks, uint64_t *out);

/* data_hash from the hashes of all the chunks, in order. */
uint64_t ckpt_data_hash(const uint64_t *chunk_hashes, uint64_t n_chunks);

/* The start of the payload: the 8-byte header length and the JSON header
 * with data_hash; *out malloc'ed, *len bytes. `what` names the destination
 * in messages. */
int ckpt_header(const char *what, const ckpt_tensor *tensors, int n_tensors,
                const ckpt_meta *meta, uint64_t data_hash, void **out, size_t *len);

/* Compresses `prefix` (prefix_len bytes, may be 0) followed by bytes
 * [begin, end) of the data section of tensors, as stored (byte-shuffled
 * when shuffle), into one zstd frame (content checksum and size) in *out
 * (malloc'ed, *out_len bytes). */
int ckpt_compress(const ckpt_tensor *tensors, int n_tensors, int shuffle, const void *prefix,
                  size_t prefix_len, uint64_t begin, uint64_t end, int level, int workers,
                  void **out, size_t *out_len);

/* Copies bytes [begin, end) of the data section, as stored (byte-shuffled
 * when shuffle), to dst: a snapshot that ckpt_compress can take later as
 * one tensor of (end - begin) / 4 floats. */
void ckpt_copy_stored(const ckpt_tensor *tensors, int n_tensors, int shuffle, uint64_t begin,
                      uint64_t end, void *dst);

/* Writes `len` bytes (concatenated frames) to <dir>/step-<step>.safetensors.zst
 * atomically, creating dir if needed; *out_path (if not NULL) gets the
 * malloc'ed final path. The bytes are not checked. */
int ckpt_write_bytes(const char *dir, int64_t step, const void *bytes, size_t len,
                     char **out_path);

/* A checkpoint whose frames are written by several processes of one node,
 * each its own part at its offset, instead of being gathered:
 * ckpt_part_create (one process) makes the temporary file of `step` in dir
 * (creating dir) and gives its malloc'ed path; ckpt_part_write (each
 * process, given the same dir and step) writes `len` bytes at `offset` and
 * fsyncs them; once all have,
 * ckpt_part_commit (the creator) checks that the file has `len` bytes in
 * all, renames it into place and syncs the directory (*out_path, if not
 * NULL, gets the malloc'ed final path). A failed commit removes the
 * temporary file, as does ckpt_part_abort. */
int ckpt_part_create(const char *dir, int64_t step, char **tmp_path);
int ckpt_part_write(const char *dir, int64_t step, const char *tmp_path, uint64_t offset,
                    const void *bytes, size_t len);
int ckpt_part_commit(const char *dir, int64_t step, const char *tmp_path, uint64_t len,
                     char **out_path);
void ckpt_part_abort(const char *tmp_path);

/* ---- reading ----------------------------------------------------------- */

/* Reads and verifies `path`: only a regular file (never blocking on a
 * FIFO), every declared size checked against what the file's zstd frames
 * can hold before it is allocated (ckpt/frames.h), the header within
 * ckpt/header.h's limits. Fills each tensors[i].data (names and shapes
 * must match the file exactly, and the file must hold no other tensors) and
 * *meta (meta->config malloc'ed). If expected_layout_hash != 0 it must
 * equal the file's. The file is decompressed once; a file that does not
 * match is reported as such only after it verified, so a damaged file is
 * never mistaken for one of another model. On failure the destinations
 * may hold part of the file. */
int ckpt_read(const char *path, const ckpt_tensor *tensors, int n_tensors,
              uint64_t expected_layout_hash, ckpt_meta *meta);

/* Reads only the metadata after full verification of the stream and the
 * header (for inspect and for `--resume auto` probing). */
int ckpt_read_meta(const char *path, ckpt_meta *meta);

/* Called by ckpt_restore once a file verified (size, every checksum, data
 * hash: a damaged file never gets here, so the saved config it parses is
 * the one the writer stored), with its metadata (meta->config borrowed for
 * the call): returns 0 to go on, an error code with its message to refuse
 * the file as not fitting the run, or CKPT_DAMAGED (with a message) when
 * the metadata cannot be any run's (a saved config that does not parse, an
 * impossible cursor): the file is then treated as damaged (MS_ECKPT,
 * passed over by `--resume auto`). */
#define CKPT_DAMAGED 1
typedef int (*ckpt_accept_fn)(void *ctx, const char *path, const ckpt_meta *meta);

/* What `--resume` needs, each file decompressed and verified once: reads
 * `path`, or when path is NULL the newest checkpoint of `dir` that
 * verifies, into tensors (as ckpt_read), asking accept (if not NULL) about
 * its metadata once it verified. A file that does not verify is an error for `path`
 * and is passed over in `dir` (listed in *skipped, as ckpt_find_latest
 * does); a file that verifies but does not fit (accept refuses it, tensors
 * or layout hash differ) is an error either way. The destinations may hold
 * a damaged file's bytes when this returns anything but 0: read into
 * scratch and copy on success. On 0, *meta is filled (config malloc'ed)
 * and *out_path (if not NULL) gets the malloc'ed path read.
 * @return 0 restored, 1 nothing to restore (dir mode), <0 error. */
int ckpt_restore(const char *dir, const char *path, const ckpt_tensor *tensors, int n_tensors,
                 uint64_t expected_layout_hash, ckpt_accept_fn accept, void *ctx,
                 ckpt_meta *meta, char **out_path, char **skipped);

/* Everything a checkpoint holds, for tools that do not know the model. */
typedef struct {
  ckpt_meta meta;
  int n_tensors;
  ckpt_tensor *tensors;  /* in file order; names malloc'ed, data in arena */
  float *arena;
} ckpt_contents;

/* Reads and verifies `path` like ckpt_read, loading every tensor it holds.
 * Free with ckpt_contents_free (also after a failure). */
int ckpt_load(const char *path, ckpt_contents *out);
void ckpt_contents_free(ckpt_contents *c);

/* Writes the tensors of checkpoint in_path whose names do not start with
 * skip_prefix (NULL keeps all) to out_path as a plain, uncompressed
 * safetensors file with the same metadata, atomically. An out_path that is
 * in_path's file (same device and inode: also through a symlink or a hard
 * link) is refused with MS_EUSAGE. */
int ckpt_export(const char *in_path, const char *out_path, const char *skip_prefix);

/* ---- directories ------------------------------------------------------- */

/* Finds the newest checkpoint in dir that verifies (by step number in the
 * name; temporary and damaged files, and anything not a regular file, are
 * skipped). *out_path malloc'ed.
 * skipped (if not NULL) gets a malloc'ed, newline-separated list of "path:
 * reason" for files passed over, or NULL.
 * @return 0 found, 1 none found (not an error), <0 error. */
int ckpt_find_latest(const char *dir, char **out_path, char **skipped);

/* Deletes all but the newest `keep` step-*.safetensors.zst files in dir
 * (never the newest), and temporary files that a killed writer left. Only
 * regular files count and are deleted: a directory or FIFO named like a
 * checkpoint is left alone (readers skip it with a note). The caller must
 * be the directory's only writer. */
int ckpt_prune(const char *dir, int keep);

/* Frees meta->config; accepts NULL. */
void ckpt_meta_free(ckpt_meta *meta);

#endif
