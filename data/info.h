/* info — `midscale data-info FILE`: what an HDF5 file holds, for someone
 * about to point midscale at it.
 *
 * For every dataset (full path, in name order): dtype, shape, sample count
 * (dimension 0), layout and chunk shape, filters (gzip level, shuffle,
 * szip, fletcher32, ..., and whether this HDF5 can decode them), bytes on
 * disk against logical bytes. Then a label histogram for each integer
 * dataset whose name contains "label" (any case) and each one asked for.
 *
 * Serial HDF5, no MPI. The report goes to `out`; nothing is printed on
 * errors. Errors (dataset.h, "Errors"): 0 or -1 with a message in err:
 * the file is missing, not a regular file, not HDF5 or damaged; a requested
 * histogram dataset is missing or not integer; a histogram dataset's
 * storage cannot hold what its shape declares, or a chunk of it inflates
 * past its size (dataset.h, "Hostile input"). Datasets are listed through
 * hard links only, and opened with links refused unless data_allow_links.
 */
#ifndef MS_INFO_H
#define MS_INFO_H

#include <stddef.h>
#include <stdio.h>

/* Writes the report on `path`; hist[0..n_hist) name datasets to histogram
 * besides the automatic ones. */
int data_info(const char *path, const char *const *hist, int n_hist, FILE *out, char *err,
              size_t errlen);

#endif
