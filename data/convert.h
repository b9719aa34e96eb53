/* convert — write datasets in the layout midscale reads.
 *
 * Layout: one HDF5 file, a group per split ("/train", "/test"), each with
 * "images" (N, ...) and "labels" (N,) datasets, chunked along the sample axis
 * (about 1 MiB per chunk) with gzip level 1 on the inputs.
 *
 * Serial HDF5, no MPI: run on one rank. Errors: 0 or -1, message in err.
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
int convert_idx(const char *images_path, const char *labels_path,
                const char *out_path, const char *group, char *err, size_t errlen);

/* Writes a learnable synthetic classification set to `out_path` (truncated):
 * /train and /test groups; `features` inputs per sample drawn around one
 * random centre per class (Gaussian noise), labels in [0, classes).
 * uint8 inputs when `as_u8` (values 0..255), else float32. Deterministic in
 * `seed`. */
int convert_synthetic(const char *out_path, uint64_t n_train, uint64_t n_test,
                      int features, int classes, int as_u8, uint64_t seed,
                      char *err, size_t errlen);

#endif
