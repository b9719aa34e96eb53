/* convert — write datasets in the layout midscale reads.
 *
 * Layout: one HDF5 file, a group per split ("/train", "/test"), each with
 * "images" (N, ...) and "labels" (N,) datasets -- the names the data.*
 * config keys default to, whatever the inputs are.
 *
 * Storage, and why: every dataset is chunked along the sample axis only
 * (the other dims whole), about 1 MiB of whole samples per chunk.
 *  - Whole samples per chunk: one sample is one chunk to read, never two.
 *  - ~1 MiB: large enough that deflate sees enough data to compress well
 *    and a sequential pass makes few, large reads; small enough that a
 *    streamed random read (global shuffle, a file larger than the memory
 *    budget) decompresses at most 1 MiB per sample before the chunk cache
 *    keeps it. Files that fit the memory budget are read once whole, and
 *    then the chunk size does not matter.
 *  - gzip level 1: decompression costs the same at every level, and level 1
 *    gets most of the ratio of level 9 at several times the write speed;
 *    gzip (deflate) is in every HDF5 build, so any reader (h5py, h5dump,
 *    MATLAB) opens the file without plugins.
 *  - the shuffle filter before gzip when it pays (csv, npy): shuffle
 *    regroups the bytes of multi-byte values by significance, which helps
 *    deflate on continuous data and hurts it on data with few distinct
 *    values. Measured with gzip 1 (1 MiB chunks): Fashion-MNIST pixels / 255
 *    as float32 4.36:1 without, 2.25:1 with shuffle (and 2.51 vs 2.37 as
 *    float16); a smooth float32 field 1.07 vs 1.32; Gaussian float32 1.08 vs
 *    1.16; int16 sensor-like noise 1.27 vs 1.43. So the converters compress
 *    the first ~1 MiB both ways and keep the smaller (convert_pick_filters);
 *    uint8 data (idx) never needs it.
 *
 * Serial HDF5, no MPI: run on one rank. Errors: 0 or -1 with a message in
 * err (dataset.h, "Errors").
 * The inputs are checked completely before the output is touched; the
 * new group is then written under a temporary name and replaces the old
 * one only when every write succeeded (convert_internal.h), so a failed
 * conversion leaves an existing group as it was. An existing output that is
 * not HDF5 is never overwritten. Input files must be regular files (a FIFO
 * is refused, not waited on).
 */
#ifndef MS_CONVERT_H
#define MS_CONVERT_H

#include <stddef.h>
#include <stdint.h>

/* Converts an idx image file and its idx label file (MNIST family; plain or
 * gzip-compressed, detected from the content) into group `group` of
 * `out_path` (created if missing, the group replaced if present). Images are
 * stored uint8 (N, rows, cols), labels uint8 (N,). The files are checked:
 * magic numbers, dimensions, counts agree, sizes match the header. */
int convert_idx(const char *images_path, const char *labels_path, const char *out_path,
                const char *group, char *err, size_t errlen);

/* Writes a learnable synthetic classification set to `out_path` (truncated):
 * /train and /test groups; `features` inputs per sample drawn around one
 * random centre per class (Gaussian noise), labels in [0, classes).
 * uint8 inputs when `as_u8` (values 0..255), else float32. Deterministic in
 * `seed`. */
int convert_synthetic(const char *out_path, uint64_t n_train, uint64_t n_test, int features,
                      int classes, int as_u8, uint64_t seed, char *err, size_t errlen);

/* Options of convert_csv. */
typedef struct {
  const char *label;      /* name of the label column (required) */
  const char *group;      /* group of the training rows; NULL or "" = "train" */
  const char *test_group; /* group of the test rows; NULL or "" = "test" */
  double test_fraction;   /* in [0, 1): share of rows for test_group; 0 = none */
  uint64_t seed;          /* picks the test rows */
} convert_csv_opts;

/* Converts a CSV file (comma-separated, a header row naming the columns,
 * double-quoted fields allowed, blank lines skipped) into group o->group of
 * `out_path` (created if missing; the group replaced, other groups kept).
 * The label column becomes "labels": int64 class indices when every value
 * is an integer, otherwise float32 regression targets. Every other column
 * becomes one float32 feature of "images" (N, columns - 1), in file order.
 * With a test fraction f, round(f * rows) rows picked by a permutation of
 * `seed` (sampler_permutation) go to o->test_group instead; both groups keep
 * the file's row order. Errors name the file, the line and the column (an
 * empty or non-numeric value, a wrong field count, a missing label column
 * with the list of columns). */
int convert_csv(const char *csv_path, const char *out_path, const convert_csv_opts *o, char *err,
                size_t errlen);

/* Converts NumPy .npy files (format 1.0 to 3.0; either byte order; C or
 * Fortran order; bool, int8..int64, uint8..uint64, float16/32/64) into group
 * `group` (NULL or "" = "train") of `out_path` (as convert_csv):
 * x_path -> "images" of x's shape, y_path -> "labels" of y's shape. Input
 * types midscale reads keep their type; 32- and 64-bit integer inputs are
 * stored as float32 (exact up to 2^24). Labels keep their type (integers
 * are class indices, floats regression targets; bool becomes uint8). The
 * two must agree on shape[0]. C-order files are copied in blocks, so they
 * may be larger than memory; Fortran-order files are reordered in memory. */
int convert_npy(const char *x_path, const char *y_path, const char *out_path, const char *group,
                char *err, size_t errlen);

/* Options of convert_text. */
typedef struct {
  const char *vocab;    /* NULL or "bytes": byte-level; else a vocabulary file (below) */
  double test_fraction; /* in [0, 1): the share of each file held out; 0 = no test split */
} convert_text_opts;

/* What convert_text wrote. */
typedef struct {
  uint64_t train_tokens, test_tokens, vocab_size;
} convert_text_stats;

/* Converts text files into token streams (dataset.h, "Token sets"): group
 * "train" of `out_path` (created if missing; the groups replaced, other
 * groups kept) gets "tokens", the ids of the files one after the other
 * (as they are: no separator is added), and with a test fraction f group
 * "test" gets the last f of each file instead, from the start of a line
 * (so a split never cuts a line). Each "tokens" (uint8 for up to 256 ids,
 * uint16 up to 65536, else int32; chunked, gzip 1) carries the attributes
 * vocab_size (int64) and tokenizer ("bytes" or "chars").
 *
 * Tokenizers: o->vocab NULL or "bytes": one token per byte, id = the byte,
 * vocab_size 256, any file. Otherwise o->vocab names a vocabulary file,
 * UTF-8, one character per line, id = the entry's number (blank lines
 * skipped): "\n", "\t", "\r", "\s" and "\\" stand for a newline, a
 * tab, a carriage return, a space and a backslash, and a line "<unk>"
 * takes every character not listed. The text must then be UTF-8, and each
 * group also gets "vocab" (int32, vocab_size): the code point of each id
 * (-1 for <unk>), so that a reader can turn ids back into text. Errors
 * name the file and line: a character outside the vocabulary (without
 * <unk>), invalid UTF-8, a vocabulary line that is not one character or
 * repeats one, a split with fewer than 2 tokens. Inputs must be regular
 * files; all are read (in memory) before the output is touched. *stats
 * (may be NULL) gets the counts. */
int convert_text(const char *const *files, size_t n_files, const char *out_path,
                 const convert_text_opts *o, convert_text_stats *stats, char *err,
                 size_t errlen);

#endif
