/* h5guard — see h5guard.h. */
#include "h5guard.h"

#include "h5util.h"

#include <errno.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static atomic_int allow_links;

void h5guard_set_allow_links(int on) { atomic_store(&allow_links, on != 0); }
int h5guard_allow_links(void) { return atomic_load(&allow_links); }

int h5guard_regular_file(const char *path, const char *want, uint64_t *size, char *err,
                         size_t errlen) {
  struct stat st;
  if (stat(path, &st) != 0) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  const char *what = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                     : S_ISREG(st.st_mode)  ? NULL
                                            : "not a regular file";
  if (what) {
    h5util_set_err(err, errlen, "'%s' is %s, not %s", path, what, want);
    return -1;
  }
  if (size) *size = (uint64_t)st.st_size;
  return 0;
}

/* The directory part of path ("." when it has none) into dir. */
static void dir_of(const char *path, char *dir, size_t len) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    snprintf(dir, len, ".");
  else if (slash == path)
    snprintf(dir, len, "/");
  else
    snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

/* A file another file refers to (an external link, a virtual dataset's
 * source): a plain name, a regular file in the directory of `parent`.
 * NULL when it is, else why not (into why, 160 bytes). */
static const char *confined_file(const char *parent, const char *child, char *why) {
  char dir[PATH_MAX], full[PATH_MAX + 256];
  if (strchr(child, '/') || strcmp(child, "..") == 0 || child[0] == '\0') {
    snprintf(why, 160, "it refers to '%.80s', outside the data file's directory", child);
    return why;
  }
  dir_of(parent, dir, sizeof dir);
  int w = snprintf(full, sizeof full, "%s/%s", dir, child);
  (void)w;
  struct stat st;
  if (stat(full, &st) != 0)
    snprintf(why, 160, "its file '%.80s': %s", child, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    snprintf(why, 160, "its file '%.80s' is not a regular file (a FIFO, device or directory)",
             child);
  else
    return NULL;
  return why;
}

static herr_t elink_cb(const char *parent_file, const char *parent_group, const char *child_file,
                       const char *child_object, unsigned *acc_flags, hid_t fapl, void *data) {
  (void)parent_group, (void)acc_flags, (void)fapl;
  char *why = data;
  if (!h5guard_allow_links()) {
    int w = snprintf(why, 160,
                     "it goes through an external link to '%.32s' in '%.32s', refused "
                     "(data.allow_links is false)",
                     child_object, child_file);
    (void)w;
    return -1;
  }
  return confined_file(parent_file, child_file, why) ? -1 : 0;
}

hid_t h5guard_dapl(const char *path, char *why) {
  char dir[PATH_MAX];
  why[0] = '\0';
  dir_of(path, dir, sizeof dir);
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0) return dapl;
  if (H5Pset_elink_cb(dapl, elink_cb, why) < 0 || H5Pset_elink_prefix(dapl, dir) < 0) {
    H5Pclose(dapl);
    return H5I_INVALID_HID;
  }
  return dapl;
}

/* A virtual dataset: refused unless links are allowed; then every source
 * file must be the file itself or confined (above), and every source
 * dataset must exist (a missing one would read as zeros). */
static int check_virtual(hid_t dcpl, const char *path, const char *name, char *err, size_t errlen) {
  if (!h5guard_allow_links()) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' is a virtual dataset (its data lives in other "
                   "datasets or files), refused; set data.allow_links: true to read it",
                   name, path);
    return -1;
  }
  size_t count = 0;
  if (H5Pget_virtual_count(dcpl, &count) < 0) count = 0;
  for (size_t i = 0; i < count; i++) {
    char src[PATH_MAX], dset[1024], why[160];
    const char *bad = NULL;
    if (H5Pget_virtual_filename(dcpl, i, src, sizeof src) < 0 ||
        H5Pget_virtual_dsetname(dcpl, i, dset, sizeof dset) < 0) {
      bad = "its mapping cannot be read";
    } else if (strcmp(src, ".") != 0) {
      bad = confined_file(path, src, why);
    }
    if (!bad) {
      char dir[PATH_MAX], full[2 * PATH_MAX + 2];
      dir_of(path, dir, sizeof dir);
      const char *leaf = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
      int w = snprintf(full, sizeof full, "%s/%s", dir, strcmp(src, ".") ? src : leaf);
      (void)w;
      char lwhy[160];
      hid_t lapl = h5guard_dapl(path, lwhy);
      hid_t f = H5Fopen(full, H5F_ACC_RDONLY, H5P_DEFAULT);
      if (f < 0 || lapl < 0 || H5Oexists_by_name(f, dset, lapl) <= 0) {
        snprintf(why, sizeof why, "its source dataset '%.60s' in '%.60s' is missing", dset, src);
        bad = why;
      }
      if (f >= 0) H5Fclose(f);
      if (lapl >= 0) H5Pclose(lapl);
    }
    if (bad) {
      h5util_set_err(err, errlen, "virtual dataset '%s' in '%s' is refused: %s", name, path, bad);
      return -1;
    }
  }
  return 0;
}

/* The chunk grid of a chunked set: chunks along each dim, their product. */
static uint64_t chunk_count(int rank, const hsize_t *dims, const hsize_t *cdims) {
  uint64_t k = 1;
  for (int i = 0; i < rank; i++) {
    uint64_t along = cdims[i] ? (dims[i] + cdims[i] - 1) / cdims[i] : 0;
    if (along && k > UINT64_MAX / along) return UINT64_MAX;
    k *= along;
  }
  return k;
}

/* 1 when every filter of dcpl is one whose ratio deflate's limit bounds
 * (shuffle, deflate, fletcher32), and there is at least one deflate;
 * *fletcher_after is the index of a Fletcher32 filter after it, or 0. */
static int deflate_only(hid_t dcpl, int *deflate_at, int *fletcher_after) {
  int n = H5Pget_nfilters(dcpl), ok = n > 0;
  *deflate_at = -1;
  *fletcher_after = 0;
  for (int i = 0; ok && i < n; i++) {
    unsigned flags, cd[8];
    size_t ncd = 8;
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
    if (id == H5Z_FILTER_DEFLATE && *deflate_at < 0)
      *deflate_at = i;
    else if (id == H5Z_FILTER_FLETCHER32 && *deflate_at >= 0 && i == n - 1)
      *fletcher_after = i;
    else if (id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32)
      ok = 0;
  }
  return ok && *deflate_at >= 0;
}

/* A chunked set: every chunk allocated, no more stored than the file
 * holds, no less than deflate can justify; chunks not absurdly larger
 * than the set. */
static int check_chunked(hid_t set, hid_t space, hid_t dcpl, int rank, const hsize_t *dims,
                         size_t esize, double need, uint64_t file_size, const char *path,
                         const char *name, char *err, size_t errlen) {
  hsize_t cdims[H5S_MAX_RANK];
  if (H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims) != rank) {
    h5util_set_err(err, errlen, "cannot read the chunk shape of '%s' in '%s'", name, path);
    return -1;
  }
  double chunk_bytes = (double)esize;
  for (int i = 0; i < rank; i++) chunk_bytes *= (double)cdims[i];
  if (chunk_bytes > need && chunk_bytes > (double)(64u << 20)) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' has chunks of %.0f bytes, larger than the whole "
                   "dataset (%.0f bytes); rewrite it with smaller chunks",
                   name, path, chunk_bytes, need);
    return -1;
  }
  uint64_t expect = chunk_count(rank, dims, cdims);
  hsize_t have = 0;
  if (expect && H5Dget_num_chunks(set, space, &have) < 0) {
    char why[160];
    h5util_set_err(err, errlen, "cannot read the chunk index of '%s' in '%s' (damaged?): %s", name,
                   path, h5util_reason(why));
    return -1;
  }
  if (have < expect) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' stores %llu of its %" PRIu64
                   " chunks; its declared samples are not all in the file (truncated or "
                   "never written?)",
                   name, path, (unsigned long long)have, expect);
    return -1;
  }
  double stored = (double)H5Dget_storage_size(set);
  int deflate_at, fletcher;
  int nfilters = H5Pget_nfilters(dcpl);
  if (stored > (double)file_size || (nfilters == 0 && stored < need) ||
      (deflate_only(dcpl, &deflate_at, &fletcher) && stored * H5GUARD_DEFLATE_RATIO < need)) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' declares %.0f bytes in chunks of %.0f stored bytes in a "
                   "file of %" PRIu64 " bytes; that storage cannot hold them (damaged?)",
                   name, path, need, stored, file_size);
    return -1;
  }
  return 0;
}

/* The size of the file `obj` lives in: an object reached through an
 * external link lives in another file than the one opened. */
static uint64_t object_file_size(hid_t obj, uint64_t opened_size) {
  char name[PATH_MAX];
  struct stat st;
  ssize_t len = H5Fget_name(obj, name, sizeof name);
  if (len <= 0 || (size_t)len >= sizeof name || stat(name, &st) != 0) return opened_size;
  return (uint64_t)st.st_size;
}

int h5guard_storage(hid_t set, const char *path, const char *name, uint64_t file_size, char *err,
                    size_t errlen) {
  h5util_guard q;
  h5util_enter(&q);
  file_size = object_file_size(set, file_size);
  int rc = -1;
  hid_t dcpl = H5Dget_create_plist(set), type = H5Dget_type(set), space = H5Dget_space(set);
  hsize_t dims[H5S_MAX_RANK];
  int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (dcpl < 0 || type < 0 || rank < 0 ||
      (rank > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0)) {
    h5util_set_err(err, errlen, "cannot read the layout of '%s' in '%s' (damaged?)", name, path);
    goto done;
  }
  size_t esize = H5Tget_size(type);
  double need = (double)esize;
  for (int i = 0; i < rank; i++) need *= (double)dims[i];
  H5D_layout_t layout = H5Pget_layout(dcpl);
  if (layout == H5D_VIRTUAL) {
    rc = check_virtual(dcpl, path, name, err, errlen);
    goto done;
  }
  int n_ext = H5Pget_external_count(dcpl);
  if (n_ext > 0 && !h5guard_allow_links()) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' keeps its data in external raw files, refused; set "
                   "data.allow_links: true to read it",
                   name, path);
    goto done;
  }
  for (int i = 0; i < n_ext; i++) { /* allowed: confined, regular files only */
    char ext[PATH_MAX] = "", why[160];
    off_t off;
    hsize_t bytes;
    const char *bad = H5Pget_external(dcpl, (unsigned)i, sizeof ext, ext, &off, &bytes) < 0
                          ? "its list of external files cannot be read"
                          : confined_file(path, ext, why);
    if (bad) {
      h5util_set_err(err, errlen, "dataset '%s' in '%s' is refused: %s", name, path, bad);
      goto done;
    }
  }
  if (need == 0) {
    rc = 0;
  } else if (layout == H5D_CHUNKED) {
    rc = check_chunked(set, space, dcpl, rank, dims, esize, need, file_size, path, name, err,
                       errlen);
  } else if (layout == H5D_CONTIGUOUS || layout == H5D_COMPACT) {
    double stored = (double)H5Dget_storage_size(set);
    haddr_t at = layout == H5D_CONTIGUOUS ? H5Dget_offset(set) : 0;
    int external = H5Pget_external_count(dcpl) > 0;
    if (!external &&
        (stored < need || (layout == H5D_CONTIGUOUS &&
                           (at == HADDR_UNDEF || (double)at + need > (double)file_size)))) {
      h5util_set_err(err, errlen,
                     "dataset '%s' in '%s' declares %.0f bytes but %s (truncated or never "
                     "written?)",
                     name, path, need,
                     stored < need || at == HADDR_UNDEF ? "stores fewer"
                                                        : "they lie beyond the end of the file");
      goto done;
    }
    rc = 0;
  } else {
    h5util_set_err(err, errlen, "dataset '%s' in '%s' has an unknown storage layout", name, path);
  }
done:
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (dcpl >= 0) H5Pclose(dcpl);
  h5util_leave(&q);
  return rc;
}

/* ---- deflate bombs ------------------------------------------------------- */

typedef struct {
  hid_t set;
  int rank;
  hsize_t dims[H5S_MAX_RANK], cdims[H5S_MAX_RANK];
  int deflate_at, fletcher;
  size_t chunk_bytes;
  uint64_t file_size;
  unsigned char *in, *out;
  size_t in_cap;
  struct libdeflate_decompressor *inflater;
} bomb_scan;

/* Chunk at offset off: 0 fine (or not deflated), -1 with why. */
static int scan_chunk(bomb_scan *b, const hsize_t *off, char *why) {
  hsize_t stored = 0;
  uint32_t mask = 0;
  if (H5Dget_chunk_storage_size(b->set, off, &stored) < 0) return 0; /* H5Dread will say */
  if (stored == 0) return 0;
  if (stored > b->file_size) {
    snprintf(why, 160, "a chunk claims %llu stored bytes, more than the file",
             (unsigned long long)stored);
    return -1;
  }
  if (stored > b->in_cap) {
    unsigned char *g = realloc(b->in, (size_t)stored);
    if (!g) return snprintf(why, 160, "out of memory"), -1;
    b->in = g;
    b->in_cap = (size_t)stored;
  }
  if (H5Dread_chunk(b->set, H5P_DEFAULT, off, &mask, b->in) < 0) return 0;
  if (mask & (1u << b->deflate_at)) return 0;
  size_t len = (size_t)stored;
  if (b->fletcher && !(mask & (1u << b->fletcher)) && len >= 4) len -= 4;
  size_t got = 0;
  enum libdeflate_result r =
      libdeflate_zlib_decompress(b->inflater, b->in, len, b->out, b->chunk_bytes, &got);
  if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
    snprintf(why, 160,
             "a chunk of %llu stored bytes inflates to more than its %zu bytes "
             "(a deflate bomb?)",
             (unsigned long long)stored, b->chunk_bytes);
    return -1;
  }
  if (r == LIBDEFLATE_SUCCESS && got != b->chunk_bytes) {
    snprintf(why, 160, "a chunk of %llu stored bytes inflates to %zu bytes, not its %zu",
             (unsigned long long)stored, got, b->chunk_bytes);
    return -1;
  }
  return 0; /* a damaged stream: HDF5's read reports it */
}

/* Every chunk of the grid whose first dim holds rows [begin, end). */
static int scan_rows(bomb_scan *b, uint64_t begin, uint64_t end, char *why) {
  hsize_t off[H5S_MAX_RANK] = {0};
  uint64_t c0 = b->cdims[0];
  for (uint64_t r = begin - begin % c0; r < end; r += c0) {
    memset(off, 0, sizeof off);
    off[0] = r;
    for (;;) {
      if (scan_chunk(b, off, why) < 0) return -1;
      int i = b->rank - 1;
      for (; i >= 1; i--) {
        off[i] += b->cdims[i];
        if (off[i] < b->dims[i]) break;
        off[i] = 0;
      }
      if (i < 1) break;
    }
  }
  return 0;
}

int h5guard_inflate(hid_t set, uint64_t begin, uint64_t end, const char *path, const char *name,
                    uint64_t file_size, char *err, size_t errlen) {
  h5util_guard q;
  h5util_enter(&q);
  bomb_scan b = {.set = set, .file_size = object_file_size(set, file_size)};
  int rc = 0;
  char why[160] = "";
  hid_t dcpl = H5Dget_create_plist(set), type = H5Dget_type(set), space = H5Dget_space(set);
  b.rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && b.rank > 0 &&
                H5Pget_chunk(dcpl, H5S_MAX_RANK, b.cdims) == b.rank &&
                H5Sget_simple_extent_dims(space, b.dims, NULL) >= 0 && type >= 0;
  int deflated = chunked && deflate_only(dcpl, &b.deflate_at, &b.fletcher);
  if (chunked && end > b.dims[0]) end = b.dims[0];
  if (deflated && begin < end && b.cdims[0] > 0) {
    double bytes = (double)H5Tget_size(type);
    for (int i = 0; i < b.rank; i++) bytes *= (double)b.cdims[i];
    b.chunk_bytes = bytes < (double)SIZE_MAX ? (size_t)bytes : SIZE_MAX;
    b.out = malloc(b.chunk_bytes ? b.chunk_bytes : 1);
    b.inflater = libdeflate_alloc_decompressor();
    if (!b.out || !b.inflater) {
      snprintf(why, sizeof why, "out of memory");
      rc = -1;
    } else {
      rc = scan_rows(&b, begin, end, why);
    }
  }
  if (rc < 0)
    h5util_set_err(err, errlen, "cannot read '%s' in '%s' (damaged?): %s", name, path, why);
  if (b.inflater) libdeflate_free_decompressor(b.inflater);
  free(b.out);
  free(b.in);
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (dcpl >= 0) H5Pclose(dcpl);
  h5util_leave(&q);
  return rc;
}
