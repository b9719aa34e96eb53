/* h5guard — what data/ checks before it trusts an HDF5 file with memory or
 * time: the resource budget of the HDF5 readers (dataset.h, "Hostile
 * input"). Private to data/.
 *
 * Every check runs before the allocation or the read it protects, and a
 * file that fails one is "damaged" (exit 3 in the trainer), never "out of
 * memory":
 *  - h5guard_probe_file: only a regular file is opened (a FIFO would block
 *    the open forever, a device or a directory is not data).
 *  - h5guard_dapl: external links are refused unless the process allows
 *    links (h5guard_allow_links, the data.allow_links key), and then they
 *    are followed only to regular files in the data file's own directory.
 *  - h5guard_storage: the storage of a dataset can hold what its shape
 *    declares: a contiguous or compact set stores every declared byte inside
 *    the file, a chunked set has every chunk allocated and stores no more
 *    than the file holds, and no less than the deflate ratio limit allows;
 *    virtual datasets and external raw storage are links (above), and a
 *    virtual dataset's source files must exist.
 *  - h5guard_inflate: each deflated chunk HDF5 is about to decode inflates
 *    to at most its declared size (HDF5's own filter grows its buffer
 *    without a limit: a 1 MiB chunk could become 1 GiB).
 *
 * Threads: every function takes the HDF5 lock (h5util_enter) itself.
 * Errors: 0 or -1 with one line in err (dataset.h, "Errors"), naming the
 * file and the dataset.
 */
#ifndef MS_H5GUARD_H
#define MS_H5GUARD_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* Deflate cannot compress better than about 1032:1 (a 258-byte match in
 * 2 bits, with block overhead); a set that claims more is damaged. */
#define H5GUARD_DEFLATE_RATIO 1100

/* The process-wide links switch (data_allow_links, dataset.h). */
void h5guard_set_allow_links(int on);
int h5guard_allow_links(void);

/* `path` exists and is a regular file (symbolic links followed); else a
 * message: missing, a loop of symbolic links, or "'PATH' is a FIFO (named
 * pipe), not <want>" ("an HDF5 file", ...). Opens nothing. Also fills
 * *size (bytes) when size != NULL. */
int h5guard_regular_file(const char *path, const char *want, uint64_t *size, char *err,
                         size_t errlen);

/* The access property list to open datasets of the file at `path` with
 * (links refused or confined, above); the caller closes it. `why` (160
 * bytes, owned by the caller, must outlive the list) receives the reason a
 * link was refused, "" otherwise. */
hid_t h5guard_dapl(const char *path, char *why);

/* Checks set (named `name` in the file at `path`, `file_size` bytes)
 * against its storage (above). */
int h5guard_storage(hid_t set, const char *path, const char *name, uint64_t file_size, char *err,
                    size_t errlen);

/* Checks every deflated chunk of set holding a row in [begin, end) (dim 0)
 * before H5Dread decodes it: each inflates to at most its declared size,
 * and is stored inside a file of `file_size` bytes. A no-op for sets that
 * are not chunked or not deflated. Costs one decode of each such chunk. */
int h5guard_inflate(hid_t set, uint64_t begin, uint64_t end, const char *path, const char *name,
                    uint64_t file_size, char *err, size_t errlen);

#endif
