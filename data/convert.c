/* convert — see convert.h.
 *
 * Both converters validate their input completely before they touch the
 * output file, so a bad idx file never leaves a half-written group behind.
 */
#include "convert.h"

#include "convert_internal.h"
#include "h5guard.h"
#include "h5util.h"
#include "sampler.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define CHUNK_TARGET_BYTES ((size_t)1 << 20)
#define READ_BLOCK ((size_t)1 << 20)

/* ---- idx input ----------------------------------------------------------- */

/* Reads up to len bytes; *got is how many arrived. Returns -1 (message set)
 * on a read or decompression error, 0 otherwise (a short count is EOF). */
static int gz_read_full(gzFile gz, const char *path, void *buf, size_t len, size_t *got, char *err,
                        size_t errlen) {
  unsigned char *p = buf;
  *got = 0;
  while (*got < len) {
    size_t want = len - *got;
    if (want > READ_BLOCK) want = READ_BLOCK;
    int r = gzread(gz, p + *got, (unsigned)want);
    if (r < 0) {
      int code;
      const char *msg = gzerror(gz, &code);
      h5util_set_err(err, errlen, "cannot read '%s': %s", path,
                     code == Z_ERRNO ? strerror(errno) : msg);
      return -1;
    }
    if (r == 0) break;
    *got += (size_t)r;
  }
  return 0;
}

typedef struct {
  uint32_t dims[3];
  int ndims;
  unsigned char *data; /* payload, prod(dims) bytes */
  size_t bytes;
} idx_file;

/* Reads a whole idx file with the given magic and dimension count. The
 * payload buffer grows as data arrives, so a header that claims more than the
 * file holds fails as "truncated", not as a huge allocation. */
static int idx_read(const char *path, uint32_t magic, int ndims, const char *what, idx_file *f,
                    char *err, size_t errlen) {
  int rc = -1;
  unsigned char hdr[16];
  size_t got;
  memset(f, 0, sizeof *f);
  if (h5guard_regular_file(path, "an idx file", NULL, err, errlen) < 0)
    return -1; /* a FIFO would block */
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path,
                   errno ? strerror(errno) : "out of memory");
    return -1;
  }
  size_t hdr_len = 4 + 4 * (size_t)ndims;
  if (gz_read_full(gz, path, hdr, hdr_len, &got, err, errlen) < 0) goto done;
  if (got < 4) {
    h5util_set_err(err, errlen, "'%s' is not an idx %s file (only %zu bytes)", path, what, got);
    goto done;
  }
  uint32_t m = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
  if (m != magic) {
    h5util_set_err(err, errlen,
                   "'%s' is not an idx %s file (magic 0x%08" PRIx32 ", expected 0x%08" PRIx32 ")",
                   path, what, m, magic);
    goto done;
  }
  if (got < hdr_len) {
    h5util_set_err(err, errlen, "'%s' is truncated: the header needs %zu bytes, %zu missing", path,
                   hdr_len, hdr_len - got);
    goto done;
  }
  uint64_t total = 1;
  f->ndims = ndims;
  for (int i = 0; i < ndims; i++) {
    const unsigned char *d = hdr + 4 + 4 * i;
    f->dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
    if (f->dims[i] == 0) {
      h5util_set_err(err, errlen, "'%s': dimension %d is zero", path, i);
      goto done;
    }
    /* Checked before multiplying: three 32-bit dims could wrap to 0. */
    if (total > (uint64_t)SIZE_MAX / 2 / f->dims[i]) {
      h5util_set_err(err, errlen, "'%s': the header claims an impossibly large payload", path);
      goto done;
    }
    total *= f->dims[i];
  }
  f->bytes = (size_t)total;

  size_t have = 0, cap = 0;
  while (have < f->bytes) {
    if (have == cap) {
      size_t ncap = cap ? cap * 2 : READ_BLOCK;
      if (ncap > f->bytes) ncap = f->bytes;
      unsigned char *grown = realloc(f->data, ncap);
      if (!grown) {
        h5util_set_err(err, errlen, "out of memory reading '%s'", path);
        goto done;
      }
      f->data = grown;
      cap = ncap;
    }
    if (gz_read_full(gz, path, f->data + have, cap - have, &got, err, errlen) < 0) goto done;
    have += got;
    if (have < cap) break;
  }
  if (have < f->bytes) {
    h5util_set_err(err, errlen,
                   "'%s' is truncated: the header promises %zu bytes of %s data, "
                   "%zu bytes missing",
                   path, f->bytes, what, f->bytes - have);
    goto done;
  }
  unsigned char extra;
  if (gz_read_full(gz, path, &extra, 1, &got, err, errlen) < 0) goto done;
  if (got) {
    h5util_set_err(err, errlen, "'%s' has bytes after the %zu the header promises", path,
                   f->bytes + hdr_len);
    goto done;
  }
  rc = 0;
done:
  gzclose(gz);
  if (rc < 0) {
    free(f->data);
    f->data = NULL;
  }
  return rc;
}

/* ---- HDF5 output --------------------------------------------------------- */

hsize_t convert_chunk_rows(uint64_t n, size_t row_bytes) {
  size_t rows = CHUNK_TARGET_BYTES / row_bytes;
  if (rows < 1) rows = 1;
  if (rows > n) rows = (size_t)n;
  return (hsize_t)rows;
}

hid_t convert_create_chunked(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims,
                             size_t row_bytes, int filters) {
  hsize_t chunk[H5S_MAX_RANK];
  chunk[0] = convert_chunk_rows(dims[0], row_bytes);
  if (chunk[0] < 1) chunk[0] = 1; /* an empty dataset still needs a chunk shape */
  for (int i = 1; i < rank; i++) chunk[i] = dims[i];
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  hid_t set = H5I_INVALID_HID;
  int gzip = filters != CONVERT_PLAIN && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0;
  if (space < 0 || dcpl < 0) goto done;
  if (H5Pset_chunk(dcpl, rank, chunk) < 0) goto done;
  /* The shuffle filter must come first: it regroups the bytes that deflate
   * then compresses. */
  if (gzip && filters == CONVERT_SHUFFLE_GZIP && H5Pset_shuffle(dcpl) < 0) goto done;
  if (gzip && H5Pset_deflate(dcpl, 1) < 0) goto done;
  set = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
done:
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  return set;
}

int convert_pick_filters(const void *sample, size_t bytes, size_t elem_size) {
  if (elem_size < 2 || bytes < 2 * elem_size) return CONVERT_GZIP; /* shuffle is a no-op */
  size_t n = bytes / elem_size;
  bytes = n * elem_size;
  const unsigned char *in = sample;
  uLongf bound = compressBound((uLong)bytes), plain_len = bound, shuf_len = bound;
  unsigned char *shuf = malloc(bytes), *out = malloc(bound);
  int pick = CONVERT_SHUFFLE_GZIP; /* the usual winner when the trial cannot run */
  if (shuf && out) {
    /* HDF5's shuffle: byte b of every element, then byte b + 1, ... */
    for (size_t b = 0; b < elem_size; b++)
      for (size_t i = 0; i < n; i++) shuf[b * n + i] = in[i * elem_size + b];
    if (compress2(out, &plain_len, in, (uLong)bytes, 1) == Z_OK &&
        compress2(out, &shuf_len, shuf, (uLong)bytes, 1) == Z_OK && plain_len <= shuf_len)
      pick = CONVERT_GZIP;
  }
  free(shuf);
  free(out);
  return pick;
}

hid_t convert_replace_group(hid_t file, const char *group) {
  if (H5Lexists(file, group, H5P_DEFAULT) > 0 && H5Ldelete(file, group, H5P_DEFAULT) < 0)
    return H5I_INVALID_HID;
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (lcpl < 0) return H5I_INVALID_HID;
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t g = H5Gcreate2(file, group, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  return g;
}

#define STAGE_SUFFIX ".midscale-partial"

/* 1 when `name` is a link in file (0 also when a parent is missing). */
static int link_exists(hid_t file, const char *name) {
  return H5Lexists(file, name, H5P_DEFAULT) > 0;
}

hid_t convert_stage_group(hid_t file, const char *group, char *tmp, size_t tmplen) {
  int w = snprintf(tmp, tmplen, "%s" STAGE_SUFFIX, group);
  if (w < 0 || (size_t)w >= tmplen) return H5I_INVALID_HID;
  return convert_replace_group(file, tmp);
}

int convert_commit_group(hid_t file, const char *group, const char *tmp) {
  if (link_exists(file, group) && H5Ldelete(file, group, H5P_DEFAULT) < 0) return -1;
  return H5Lmove(file, tmp, file, group, H5P_DEFAULT, H5P_DEFAULT) < 0 ? -1 : 0;
}

void convert_drop_group(hid_t file, const char *tmp) {
  if (tmp[0] && link_exists(file, tmp)) H5Ldelete(file, tmp, H5P_DEFAULT);
}

int convert_write_rows(hid_t set, int rank, const hsize_t *dims, uint64_t row, uint64_t rows,
                       hid_t mem_type, const void *buf) {
  hsize_t off[H5S_MAX_RANK] = {0}, cnt[H5S_MAX_RANK];
  off[0] = row;
  cnt[0] = rows;
  for (int i = 1; i < rank; i++) cnt[i] = dims[i];
  hid_t fspace = H5Dget_space(set);
  hid_t mspace = H5Screate_simple(rank, cnt, NULL);
  int rc = -1;
  if (fspace >= 0 && mspace >= 0 &&
      H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0 &&
      H5Dwrite(set, mem_type, mspace, fspace, H5P_DEFAULT, buf) >= 0)
    rc = 0;
  if (mspace >= 0) H5Sclose(mspace);
  if (fspace >= 0) H5Sclose(fspace);
  return rc;
}

hid_t convert_open_output(const char *out_path, char *err, size_t errlen) {
  hid_t file = H5I_INVALID_HID;
  struct stat st;
  /* Only a regular file is probed: opening a FIFO would block. */
  if (stat(out_path, &st) == 0 && !S_ISREG(st.st_mode)) {
    h5util_set_err(err, errlen, "'%s' exists and is not a regular file; not writing to it",
                   out_path);
    return H5I_INVALID_HID;
  }
  FILE *probe = fopen(out_path, "rb");
  if (probe) {
    int empty = fgetc(probe) == EOF;
    fclose(probe);
    if (H5Fis_hdf5(out_path) > 0) {
      file = H5Fopen(out_path, H5F_ACC_RDWR, H5P_DEFAULT);
    } else if (!empty) {
      h5util_set_err(err, errlen, "'%s' exists and is not an HDF5 file; not overwriting it",
                     out_path);
      return H5I_INVALID_HID;
    }
  }
  if (file < 0) file = H5Fcreate(out_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) h5util_set_err(err, errlen, "cannot open '%s' for writing", out_path);
  return file;
}

int convert_idx(const char *images_path, const char *labels_path, const char *out_path,
                const char *group, char *err, size_t errlen) {
  int rc = -1;
  idx_file img = {0}, lab = {0};
  hid_t file = H5I_INVALID_HID, grp = H5I_INVALID_HID;
  hid_t xset = H5I_INVALID_HID, yset = H5I_INVALID_HID;
  char tmp[1024] = "";
  h5util_guard q;
  h5util_enter(&q);

  if (idx_read(images_path, IDX_IMAGES_MAGIC, 3, "image", &img, err, errlen) < 0) goto done;
  if (idx_read(labels_path, IDX_LABELS_MAGIC, 1, "label", &lab, err, errlen) < 0) goto done;
  if (img.dims[0] != lab.dims[0]) {
    h5util_set_err(err, errlen, "'%s' has %" PRIu32 " images but '%s' has %" PRIu32 " labels",
                   images_path, img.dims[0], labels_path, lab.dims[0]);
    goto done;
  }

  file = convert_open_output(out_path, err, errlen);
  if (file < 0) goto done;
  grp = convert_stage_group(file, group, tmp, sizeof tmp);
  if (grp < 0) {
    h5util_set_err(err, errlen, "cannot create group '%s' in '%s'", group, out_path);
    goto done;
  }

  hsize_t xdims[3] = {img.dims[0], img.dims[1], img.dims[2]};
  size_t row_bytes = (size_t)img.dims[1] * img.dims[2];
  xset = convert_create_chunked(grp, "images", H5T_STD_U8LE, 3, xdims, row_bytes, CONVERT_GZIP);
  if (xset < 0 || H5Dwrite(xset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, img.data) < 0) {
    h5util_set_err(err, errlen, "cannot write '%s/images' in '%s'", group, out_path);
    goto done;
  }
  hsize_t ydims[1] = {lab.dims[0]};
  yset = convert_create_chunked(grp, "labels", H5T_STD_U8LE, 1, ydims, 1, CONVERT_PLAIN);
  if (yset < 0 || H5Dwrite(yset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab.data) < 0) {
    h5util_set_err(err, errlen, "cannot write '%s/labels' in '%s'", group, out_path);
    goto done;
  }
  rc = 0;
done:
  if (yset >= 0) H5Dclose(yset);
  if (xset >= 0) H5Dclose(xset);
  if (grp >= 0) H5Gclose(grp);
  if (rc == 0 && convert_commit_group(file, group, tmp) < 0) {
    h5util_set_err(err, errlen, "cannot replace group '%s' in '%s'", group, out_path);
    rc = -1;
  }
  if (rc < 0 && file >= 0) convert_drop_group(file, tmp);
  if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
    h5util_set_err(err, errlen, "cannot finish writing '%s'", out_path);
    rc = -1;
  }
  free(lab.data);
  free(img.data);
  h5util_leave(&q);
  return rc;
}

/* ---- synthetic data ------------------------------------------------------ */

/* splitmix64 as a stream: word k is sampler_mix64(start + k * golden). */
typedef struct {
  uint64_t state;
} rng;

static uint64_t rng_next(rng *r) {
  uint64_t v = sampler_mix64(r->state);
  r->state += 0x9e3779b97f4a7c15ULL;
  return v;
}

/* Uniform in (0, 1): 53 random bits, never 0, so log() below is finite. */
static double rng_unit(rng *r) {
  return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal by Box-Muller (one of the pair; simple beats fast here). */
static double rng_normal(rng *r) {
  double u1 = rng_unit(r), u2 = rng_unit(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Uniform integer in [0, k) by multiply-shift; the bias is below k / 2^32,
 * irrelevant for picking labels. */
static int rng_below(rng *r, int k) { return (int)(((rng_next(r) >> 32) * (uint64_t)k) >> 32); }

/* The class-separation margin t, solving (classes - 1) * Phi(-t) = 0.1, so
 * that the nearest-centre rule is right about 90% of the time whatever the
 * number of classes (bisection on erfc; Phi(-t) = erfc(t / sqrt 2) / 2). */
static double margin_for(int classes) {
  double target = 0.1 / (classes > 1 ? classes - 1 : 1);
  double lo = 0.0, hi = 10.0;
  for (int i = 0; i < 60; i++) {
    double mid = 0.5 * (lo + hi);
    if (0.5 * erfc(mid / sqrt(2.0)) > target)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

static int write_split(hid_t file, const char *group, uint64_t n, int features, int classes,
                       int as_u8, const double *centres, double noise, uint64_t stream,
                       const char *out_path, char *err, size_t errlen) {
  int rc = -1;
  hid_t grp = H5I_INVALID_HID, xset = H5I_INVALID_HID, yset = H5I_INVALID_HID;
  size_t dsize = as_u8 ? 1 : 4;
  size_t row_bytes = (size_t)features * dsize;
  hsize_t block = convert_chunk_rows(n, row_bytes);
  unsigned char *xbuf = malloc((size_t)block * row_bytes);
  unsigned char *ybuf = malloc((size_t)block);
  rng r = {stream};
  if (!xbuf || !ybuf) {
    h5util_set_err(err, errlen, "out of memory writing '%s'", out_path);
    goto done;
  }
  grp = convert_replace_group(file, group);
  hsize_t xdims[2] = {n, (hsize_t)features}, ydims[1] = {n};
  hid_t ftype = as_u8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
  hid_t mtype = as_u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  if (grp >= 0)
    xset = convert_create_chunked(grp, "images", ftype, 2, xdims, row_bytes, CONVERT_GZIP);
  if (xset >= 0)
    yset = convert_create_chunked(grp, "labels", H5T_STD_U8LE, 1, ydims, 1, CONVERT_PLAIN);
  if (yset < 0) {
    h5util_set_err(err, errlen, "cannot create '%s/images' and '%s/labels' in '%s'", group, group,
                   out_path);
    goto done;
  }
  for (uint64_t row = 0; row < n; row += block) {
    uint64_t rows = n - row < block ? n - row : block;
    for (uint64_t i = 0; i < rows; i++) {
      int label = rng_below(&r, classes);
      const double *c = centres + (size_t)label * (size_t)features;
      ybuf[i] = (unsigned char)label;
      for (int k = 0; k < features; k++) {
        double v = c[k] + noise * rng_normal(&r);
        size_t at = (size_t)i * (size_t)features + (size_t)k;
        if (as_u8) {
          double u = floor(128.0 + 32.0 * v + 0.5);
          xbuf[at] = (unsigned char)(u < 0 ? 0 : u > 255 ? 255 : u);
        } else {
          float fv = (float)v;
          memcpy(xbuf + at * 4, &fv, 4);
        }
      }
    }
    if (convert_write_rows(xset, 2, xdims, row, rows, mtype, xbuf) < 0 ||
        convert_write_rows(yset, 1, ydims, row, rows, H5T_NATIVE_UINT8, ybuf) < 0) {
      h5util_set_err(err, errlen, "cannot write '%s' in '%s'", group, out_path);
      goto done;
    }
  }
  rc = 0;
done:
  if (yset >= 0) H5Dclose(yset);
  if (xset >= 0) H5Dclose(xset);
  if (grp >= 0) H5Gclose(grp);
  free(ybuf);
  free(xbuf);
  return rc;
}

int convert_synthetic(const char *out_path, uint64_t n_train, uint64_t n_test, int features,
                      int classes, int as_u8, uint64_t seed, char *err, size_t errlen) {
  if (features < 1 || classes < 2 || classes > 256 || n_train < 1 || n_test < 1) {
    h5util_set_err(err, errlen,
                   "synthetic data for '%s' needs features >= 1, 2 <= classes <= 256 "
                   "and at least one train and one test sample",
                   out_path);
    return -1;
  }
  int rc = -1;
  hid_t file = H5I_INVALID_HID;
  h5util_guard q;
  h5util_enter(&q);

  /* Centres ~ N(0, s^2) per feature, noise N(0, sigma^2) with s^2 + sigma^2 = 1
   * (values stay within about +-4, which the uint8 mapping covers). Two
   * random centres lie about s*sqrt(2 * features) apart; the ratio s/sigma
   * puts that distance at 2t noise deviations, t from margin_for(). */
  double t = margin_for(classes);
  double ratio = t * sqrt(2.0 / features);
  double spread = ratio / sqrt(1.0 + ratio * ratio);
  double noise = 1.0 / sqrt(1.0 + ratio * ratio);
  double *centres = malloc((size_t)classes * (size_t)features * sizeof *centres);
  if (!centres) {
    h5util_set_err(err, errlen, "out of memory writing '%s'", out_path);
    goto done;
  }
  rng r = {sampler_mix64(seed ^ 0x63656e7472657321ULL)};
  for (size_t i = 0; i < (size_t)classes * (size_t)features; i++)
    centres[i] = spread * rng_normal(&r);

  file = H5Fcreate(out_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) {
    h5util_set_err(err, errlen, "cannot create '%s'", out_path);
    goto done;
  }
  /* Separate streams per split: the training set does not change when only
   * n_test does. */
  if (write_split(file, "/train", n_train, features, classes, as_u8, centres, noise,
                  sampler_mix64(seed ^ 0x747261696e000001ULL), out_path, err, errlen) < 0)
    goto done;
  if (write_split(file, "/test", n_test, features, classes, as_u8, centres, noise,
                  sampler_mix64(seed ^ 0x7465737400000002ULL), out_path, err, errlen) < 0)
    goto done;
  rc = 0;
done:
  if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
    h5util_set_err(err, errlen, "cannot finish writing '%s'", out_path);
    rc = -1;
  }
  free(centres);
  h5util_leave(&q);
  return rc;
}
