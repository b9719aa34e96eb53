/* ckpt_fixture — what the checkpoint tests (test_ckpt*.c) share: a temp
 * dir per test, small and big models to save, and helpers that take files
 * apart and rebuild them (decompress, edit the header, flip a bit) to make
 * damaged or older files. Linked into those tests only (tests/CMakeLists.txt),
 * as h5fixture.c is into the data tests. Helpers fail the running cmocka
 * test on any unexpected error; returned buffers and paths are malloc'ed
 * and the caller frees them. Single-threaded.
 */
#ifndef MS_CKPT_FIXTURE_H
#define MS_CKPT_FIXTURE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

#define CHECKER MS_PYTHON " " MS_SOURCE_DIR "/tests/tools/safetensors_check.py"

/* cmocka setup/teardown: *state is a ckf_fixture with a fresh temp dir,
 * removed with its contents afterwards. */
typedef struct {
  char dir[64];
} ckf_fixture;
int ckf_setup(void **state);
int ckf_teardown(void **state);

/* A small model: one layer's weight and bias, and the weight's momentum. */
typedef struct {
  float w[16 * 8], b[16], m[16 * 8];
  ckpt_tensor t[3];
} ckf_model;
void ckf_model_init(ckf_model *md, unsigned seed);

/* A model over 1 MiB, so that its data section has several hash chunks:
 * a 700 x 1000 weight, its bias and its momentum. */
typedef struct {
  float *w, *b, *m;
  ckpt_tensor t[3];
} ckf_big_model;
void ckf_big_init(ckf_big_model *bm, unsigned seed);
void ckf_big_free(ckf_big_model *bm);

/* Metadata of a test checkpoint at `step` (config borrowed, static). */
ckpt_meta ckf_test_meta(int64_t step);
/* Writes the small model of `seed` at `step` in dir; returns the path. */
char *ckf_write_step(const char *dir, int64_t step, unsigned seed);
/* Writes the big model at step in `slices` frames; returns the path. */
char *ckf_write_big(const char *dir, int64_t step, int slices, int shuffle);

/* Whole files: read, write, decompress all frames, compress as one frame
 * with a checksum. */
unsigned char *ckf_slurp(const char *path, size_t *n);
void ckf_spit(const char *path, const void *buf, size_t n);
unsigned char *ckf_decompress_file(const char *path, size_t *n);
void ckf_compress_to(const char *path, const void *payload, size_t n);

uint64_t ckf_le64(const unsigned char *p);
/* data_hash of format version 2, from its definition in ckpt.h. */
uint64_t ckf_data_hash_v2(const unsigned char *data, size_t n);

/* Writes header JSON root and dlen data bytes as a checkpoint at path, in
 * one valid zstd frame; flip >= 0 flips one bit of that data byte. */
void ckf_recompress(const char *path, json_t *root, const unsigned char *data, size_t dlen,
                    long flip);
/* Rebuilds the checkpoint at path with a valid zstd frame: edit() may change
 * the header JSON, and flip >= 0 flips one bit of that data-section byte. */
void ckf_rewrite(const char *path, void (*edit)(json_t *root), long flip);
/* Turns the checkpoint at path into a format-version-1 file (one frame,
 * data_hash the FNV-1a of the tensor bytes, xor `spoil`). */
void ckf_make_version1(const char *path, uint64_t spoil);
/* The start offsets of the zstd frames of a file: their count. */
size_t ckf_frame_starts(const unsigned char *c, size_t n, size_t *starts, size_t max);

/* The last error message begins with path and holds needle. */
void ckf_assert_msg_has(const char *path, const char *needle);
/* ckpt_read and ckpt_read_meta refuse path with MS_ECKPT and a message
 * holding needle (NULL: any message). */
void ckf_assert_refused(const char *path, const char *needle);
/* Entries of dir whose names contain `containing` (NULL: all). */
int ckf_count_entries(const char *dir, const char *containing);
/* Runs tests/tools/safetensors_check.py with args: its exit status. */
int ckf_run_checker(const char *args);

#endif
