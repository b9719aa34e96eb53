/* ckpt — checkpoint files: one zstd stream (content checksum on) whose
 * payload is a valid safetensors file (DESIGN.md, "Checkpoint file").
 *
 *   <dir>/step-<8 digits>.safetensors.zst
 *
 * safetensors layout: 8-byte little-endian header length N, N bytes of JSON
 * (padded with spaces so the data starts 8-byte aligned), then the tensor
 * bytes. Every tensor here is F32, little-endian, C order. The JSON's
 * "__metadata__" is a string->string map (the safetensors rule) holding:
 *   format: "midscale-ckpt", format_version: "1", midscale_version,
 *   step, epoch, step_in_epoch, world_size, seed, rng_state,
 *   layout_hash (16 hex digits), data_hash (FNV-1a 64 of all tensor bytes,
 *   16 hex digits), config (the resolved YAML), and byte_shuffle ("4") only
 *   when the tensor bytes are stored shuffled (checkpoint.shuffle).
 *
 * Writes are atomic: a temporary file in the same directory, fflush + fsync,
 * rename, fsync of the directory. A reader checks everything (zstd checksum,
 * header JSON, every tensor's dtype/shape/offsets, data_hash, layout_hash,
 * format version) and refuses with a message naming the file and the problem.
 *
 * Not collective, no MPI: the caller decides which rank writes.
 * Errors: 0, or MS_ECKPT (bad file) / MS_EIO (file system) / MS_ENOMEM, with a
 * message through ms_error_set().
 */
#ifndef MS_CKPT_H
#define MS_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_DIMS 4

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
} ckpt_meta;

/* Writes tensors and meta to <dir>/step-<step>.safetensors.zst atomically
 * (creating dir if needed). `level` is the zstd level.
 * On success *out_path (if not NULL) gets the malloc'ed final path. */
int ckpt_write(const char *dir, const ckpt_tensor *tensors, int n_tensors,
               const ckpt_meta *meta, int level, char **out_path);

/* ckpt_write with `workers` zstd compression threads (0 = compress on the
 * calling thread; ignored where libzstd has no thread support). The
 * decompressed payload is the same whatever the number of workers; the
 * compressed bytes may differ. */
int ckpt_write_mt(const char *dir, const ckpt_tensor *tensors, int n_tensors,
                  const ckpt_meta *meta, int level, int workers, char **out_path);

/* Reads and verifies `path`; fills each tensors[i].data (names and shapes
 * must match the file exactly, and the file must hold no other tensors) and
 * *meta (meta->config malloc'ed). If expected_layout_hash != 0 it must
 * equal the file's. */
int ckpt_read(const char *path, const ckpt_tensor *tensors, int n_tensors,
              uint64_t expected_layout_hash, ckpt_meta *meta);

/* Reads only the metadata after full verification of the stream and the
 * header (for inspect and for `--resume auto` probing). */
int ckpt_read_meta(const char *path, ckpt_meta *meta);

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
 * safetensors file with the same metadata, atomically. */
int ckpt_export(const char *in_path, const char *out_path, const char *skip_prefix);

/* Finds the newest checkpoint in dir that verifies (by step number in the
 * name; temporary and damaged files are skipped). *out_path malloc'ed.
 * skipped (if not NULL) gets a malloc'ed, newline-separated list of "path:
 * reason" for files passed over, or NULL.
 * @return 0 found, 1 none found (not an error), <0 error. */
int ckpt_find_latest(const char *dir, char **out_path, char **skipped);

/* Deletes all but the newest `keep` step-*.safetensors.zst files in dir
 * (never the newest), and temporary files that a killed writer left. The
 * caller must be the directory's only writer. */
int ckpt_prune(const char *dir, int keep);

/* Frees meta->config; accepts NULL. */
void ckpt_meta_free(ckpt_meta *meta);

/* FNV-1a 64-bit over bytes, continuing from h (start with CKPT_FNV_OFFSET). */
#define CKPT_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t ckpt_fnv1a(uint64_t h, const void *data, size_t n);

#endif
