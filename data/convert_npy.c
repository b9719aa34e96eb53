/* convert_npy — `midscale prepare npy`: a pair of NumPy .npy files (inputs,
 * labels) into the layout midscale reads (see convert.h).
 *
 * The .npy header is parsed here (format versions 1, 2 and 3): the magic,
 * then a Python dict literal with 'descr', 'fortran_order' and 'shape'.
 * Both headers and file sizes are checked before the output is touched;
 * C-order data is then copied in blocks of whole chunks, so a file larger
 * than memory converts.
 */
#include "convert.h"

#include "convert_internal.h"
#include "h5util.h"

#include <ctype.h>
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAX_DIMS 32
/* Bytes of data the filter trial compresses (about one chunk). */
#define CHUNK_TRIAL ((size_t)1 << 20)

typedef struct {
  char descr[32];
  char kind;      /* 'u', 'i', 'f', 'b' */
  size_t size;    /* bytes per element */
  int big_endian; /* byte order of the data */
  int fortran;
  int ndim;
  uint64_t dims[NPY_MAX_DIMS];
  long data_offset; /* where the data starts */
  uint64_t elems;   /* product of dims */
} npy_header;

/* The value text after 'key': in the header dict, or NULL. */
static const char *dict_value(const char *h, const char *key) {
  char pat[40];
  for (int q = 0; q < 2; q++) {
    snprintf(pat, sizeof pat, q ? "\"%s\"" : "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) continue;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') continue;
    p++;
    while (*p == ' ') p++;
    return p;
  }
  return NULL;
}

/* Parses the header dict text into h. */
static int parse_dict(const char *path, const char *d, npy_header *h, char *err, size_t errlen) {
  const char *v = dict_value(d, "descr");
  if (!v) {
    h5util_set_err(err, errlen, "'%s': the .npy header has no 'descr'", path);
    return -1;
  }
  if (*v == '[') {
    h5util_set_err(err, errlen,
                   "'%s' holds a structured dtype (descr %.60s...); midscale converts plain "
                   "numeric arrays",
                   path, v);
    return -1;
  }
  char quote = *v;
  const char *end = quote == '\'' || quote == '"' ? strchr(v + 1, quote) : NULL;
  if (!end || (size_t)(end - v - 1) >= sizeof h->descr) {
    h5util_set_err(err, errlen, "'%s': cannot read 'descr' in the .npy header", path);
    return -1;
  }
  memcpy(h->descr, v + 1, (size_t)(end - v - 1));
  h->descr[end - v - 1] = '\0';

  v = dict_value(d, "fortran_order");
  if (!v || (strncmp(v, "True", 4) && strncmp(v, "False", 5))) {
    h5util_set_err(err, errlen, "'%s': cannot read 'fortran_order' in the .npy header", path);
    return -1;
  }
  h->fortran = strncmp(v, "True", 4) == 0;

  v = dict_value(d, "shape");
  if (!v || *v != '(') {
    h5util_set_err(err, errlen, "'%s': cannot read 'shape' in the .npy header", path);
    return -1;
  }
  v++;
  h->ndim = 0;
  h->elems = 1;
  for (;;) {
    while (*v == ' ' || *v == ',') v++;
    if (*v == ')') break;
    if (!isdigit((unsigned char)*v) || h->ndim == NPY_MAX_DIMS) {
      h5util_set_err(err, errlen, "'%s': cannot read 'shape' in the .npy header", path);
      return -1;
    }
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (errno == ERANGE) {
      h5util_set_err(err, errlen, "'%s': a dimension in 'shape' is too large", path);
      return -1;
    }
    if (*e == 'L') e++; /* written by Python 2 */
    h->dims[h->ndim++] = x;
    if (x && h->elems > UINT64_MAX / x) {
      h5util_set_err(err, errlen, "'%s': the shape is impossibly large", path);
      return -1;
    }
    h->elems *= x;
    v = e;
  }

  /* descr: byte order, kind, size; e.g. "<f4", "|u1", ">i8". */
  const char *s = h->descr;
  char order = *s;
  if (order == '<' || order == '>' || order == '|' || order == '=') s++;
  h->big_endian = order == '>';
  h->kind = *s;
  char *e;
  long size = strtol(s + 1, &e, 10);
  int known =
      *e == '\0' && strchr("uifb", h->kind) &&
      ((h->kind == 'f' && (size == 2 || size == 4 || size == 8)) || (h->kind == 'b' && size == 1) ||
       ((h->kind == 'u' || h->kind == 'i') && (size == 1 || size == 2 || size == 4 || size == 8)));
  if (!known) {
    h5util_set_err(err, errlen,
                   "'%s' has dtype '%s'; midscale converts bool, int8..int64, uint8..uint64, "
                   "float16, float32 and float64",
                   path, h->descr);
    return -1;
  }
  h->size = (size_t)size;
  return 0;
}

/* Reads and checks the header of `path`, and that the file holds exactly
 * the data it announces. */
static int read_header(const char *path, npy_header *h, char *err, size_t errlen) {
  unsigned char pre[12];
  char *dict = NULL;
  int rc = -1;
  memset(h, 0, sizeof *h);
  FILE *f = fopen(path, "rb");
  if (!f) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
    h5util_set_err(err, errlen, "'%s' is not a .npy file (a directory?)", path);
    goto done;
  }
  size_t got = fread(pre, 1, 10, f);
  if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    h5util_set_err(err, errlen, "'%s' is not a .npy file (no \\x93NUMPY magic)", path);
    goto done;
  }
  unsigned major = pre[6];
  size_t hlen, pre_len = 10;
  if (major == 1) {
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
  } else if (major == 2 || major == 3) {
    if (fread(pre + 10, 1, 2, f) != 2) {
      h5util_set_err(err, errlen, "'%s' is truncated in its .npy header", path);
      goto done;
    }
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    pre_len = 12;
  } else {
    h5util_set_err(err, errlen, "'%s' has .npy format version %u; midscale reads 1, 2 and 3", path,
                   major);
    goto done;
  }
  if (hlen > (1u << 24) || !(dict = malloc(hlen + 1))) {
    h5util_set_err(err, errlen, "'%s': the .npy header is too large", path);
    goto done;
  }
  if (fread(dict, 1, hlen, f) != hlen) {
    h5util_set_err(err, errlen, "'%s' is truncated in its .npy header", path);
    goto done;
  }
  dict[hlen] = '\0';
  if (parse_dict(path, dict, h, err, errlen) < 0) goto done;
  h->data_offset = (long)(pre_len + hlen);
  if (h->ndim < 1) {
    h5util_set_err(err, errlen, "'%s' holds a scalar (shape ()); expected (N, ...)", path);
    goto done;
  }
  if (h->elems > UINT64_MAX / h->size) {
    h5util_set_err(err, errlen, "'%s': the shape is impossibly large", path);
    goto done;
  }
  uint64_t want = h->elems * h->size, have = (uint64_t)st.st_size - (uint64_t)h->data_offset;
  if ((uint64_t)st.st_size < (uint64_t)h->data_offset || have < want) {
    h5util_set_err(err, errlen,
                   "'%s' is truncated: its header promises %" PRIu64
                   " bytes of data, the file "
                   "has %" PRIu64,
                   path, want, (uint64_t)st.st_size < (uint64_t)h->data_offset ? 0 : have);
    goto done;
  }
  if (have > want) {
    h5util_set_err(err, errlen, "'%s' has %" PRIu64 " bytes after the data its header promises",
                   path, have - want);
    goto done;
  }
  rc = 0;
done:
  free(dict);
  fclose(f);
  return rc;
}

/* The HDF5 type of the .npy data as it lies in the file (a new handle). */
static hid_t npy_type(const npy_header *h) {
  hid_t base;
  switch (h->kind) {
    case 'b': base = H5T_STD_U8LE; break;
    case 'u':
      base = h->size == 1   ? H5T_STD_U8LE
             : h->size == 2 ? H5T_STD_U16LE
             : h->size == 4 ? H5T_STD_U32LE
                            : H5T_STD_U64LE;
      break;
    case 'i':
      base = h->size == 1   ? H5T_STD_I8LE
             : h->size == 2 ? H5T_STD_I16LE
             : h->size == 4 ? H5T_STD_I32LE
                            : H5T_STD_I64LE;
      break;
    default: base = h->size == 4 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE; break;
  }
  hid_t t = H5Tcopy(base);
  if (t < 0) return t;
  if (h->kind == 'f' && h->size == 2) {
    /* IEEE half as numpy writes it (and as h5py stores it). */
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 ||
        H5Tset_ebias(t, 15) < 0) {
      H5Tclose(t);
      return H5I_INVALID_HID;
    }
  }
  if (h->big_endian && h->size > 1 && H5Tset_order(t, H5T_ORDER_BE) < 0) {
    H5Tclose(t);
    return H5I_INVALID_HID;
  }
  return t;
}

/* C-order copy of a Fortran-order array of n elements of `size` bytes. */
static void fortran_to_c(const unsigned char *src, unsigned char *dst, const npy_header *h) {
  uint64_t idx[NPY_MAX_DIMS] = {0}, stride[NPY_MAX_DIMS];
  for (int j = 0; j < h->ndim; j++) stride[j] = j ? stride[j - 1] * h->dims[j - 1] : 1;
  uint64_t off = 0; /* Fortran offset of idx */
  for (uint64_t k = 0; k < h->elems; k++) {
    memcpy(dst + k * h->size, src + off * h->size, h->size);
    for (int j = h->ndim - 1; j >= 0; j--) { /* the last index runs fastest in C order */
      if (++idx[j] < h->dims[j]) {
        off += stride[j];
        break;
      }
      off -= stride[j] * (idx[j] - 1);
      idx[j] = 0;
    }
  }
}

/* Copies the data of `path` (header h) into a new dataset `name` of grp.
 * Input types midscale does not read (int32/64, uint32/64) are stored as
 * float32 when as_input; everything else keeps its type. */
static int copy_array(hid_t grp, const char *name, const char *path, const npy_header *h,
                      int as_input, const char *out, const char *group, char *err, size_t errlen) {
  int rc = -1;
  FILE *f = NULL;
  unsigned char *buf = NULL, *cbuf = NULL;
  hid_t mtype = npy_type(h), ftype = H5I_INVALID_HID, set = H5I_INVALID_HID;
  hsize_t dims[NPY_MAX_DIMS];
  size_t row_elems = 1;
  for (int i = 0; i < h->ndim; i++) dims[i] = h->dims[i];
  for (int i = 1; i < h->ndim; i++) row_elems *= (size_t)h->dims[i];
  int widen = as_input && (h->kind == 'i' || h->kind == 'u') && h->size > 2;
  if (mtype >= 0) ftype = widen ? H5Tcopy(H5T_IEEE_F32LE) : H5Tcopy(mtype);
  /* Stored little-endian, whatever the source: what HDF5 writes natively. */
  if (ftype >= 0 && H5Tget_size(ftype) > 1) H5Tset_order(ftype, H5T_ORDER_LE);
  size_t frow = row_elems * H5Tget_size(ftype >= 0 ? ftype : H5T_NATIVE_UINT8);
  f = fopen(path, "rb");
  if (!f || fseek(f, h->data_offset, SEEK_SET) != 0) {
    h5util_set_err(err, errlen, "cannot read '%s': %s", path, strerror(errno));
    goto done;
  }
  /* Filters from a trial on the first ~1 MiB of the data as stored in the
   * .npy file (the element bytes are the same, whatever the order). */
  uint64_t total_bytes = h->elems * h->size;
  size_t trial = total_bytes < CHUNK_TRIAL ? (size_t)total_bytes : CHUNK_TRIAL;
  if (!(buf = malloc(trial ? trial : 1)) || fread(buf, 1, trial, f) != trial ||
      fseek(f, h->data_offset, SEEK_SET) != 0) {
    h5util_set_err(err, errlen, "cannot read '%s'", path);
    goto done;
  }
  int filters = convert_pick_filters(buf, trial, h->size);
  free(buf);
  buf = NULL;
  if (ftype >= 0)
    set = convert_create_chunked(grp, name, ftype, h->ndim, dims, frow ? frow : 1, filters);
  if (set < 0) {
    h5util_set_err(err, errlen, "cannot create '%s/%s' in '%s'", group, name, out);
    goto done;
  }
  size_t row_bytes = row_elems * h->size;
  if (h->fortran && h->ndim > 1) {
    /* Fortran order: rows are scattered through the file; convert the
     * whole array at once. */
    size_t total = (size_t)h->elems * h->size;
    if (!(buf = malloc(total ? total : 1)) || !(cbuf = malloc(total ? total : 1))) {
      h5util_set_err(err, errlen,
                     "out of memory converting '%s' (Fortran order is converted in "
                     "memory)",
                     path);
      goto done;
    }
    if (fread(buf, 1, total, f) != total) {
      h5util_set_err(err, errlen, "cannot read '%s'", path);
      goto done;
    }
    fortran_to_c(buf, cbuf, h);
    if (H5Dwrite(set, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, cbuf) < 0) goto write_failed;
  } else {
    uint64_t block = convert_chunk_rows(h->dims[0], row_bytes ? row_bytes : 1) * 4;
    if (!(buf = malloc((size_t)block * (row_bytes ? row_bytes : 1)))) {
      h5util_set_err(err, errlen, "out of memory converting '%s'", path);
      goto done;
    }
    for (uint64_t row = 0; row < h->dims[0]; row += block) {
      uint64_t rows = h->dims[0] - row < block ? h->dims[0] - row : block;
      size_t bytes = (size_t)rows * row_bytes;
      if (fread(buf, 1, bytes, f) != bytes) {
        h5util_set_err(err, errlen, "cannot read '%s'", path);
        goto done;
      }
      if (bytes && convert_write_rows(set, h->ndim, dims, row, rows, mtype, buf) < 0)
        goto write_failed;
    }
  }
  rc = 0;
  goto done;
write_failed:
  h5util_set_err(err, errlen, "cannot write '%s/%s' in '%s'", group, name, out);
done:
  if (f) fclose(f);
  free(buf);
  free(cbuf);
  if (set >= 0) H5Dclose(set);
  if (ftype >= 0) H5Tclose(ftype);
  if (mtype >= 0) H5Tclose(mtype);
  return rc;
}

int convert_npy(const char *x_path, const char *y_path, const char *out_path, const char *group,
                char *err, size_t errlen) {
  npy_header hx, hy;
  hid_t file = H5I_INVALID_HID, grp = H5I_INVALID_HID;
  int rc = -1;
  h5util_guard q;
  h5util_enter(&q);
  if (!group || !*group) group = "train";
  if (read_header(x_path, &hx, err, errlen) < 0 || read_header(y_path, &hy, err, errlen) < 0)
    goto done;
  if (hx.dims[0] != hy.dims[0]) {
    h5util_set_err(err, errlen, "'%s' has %" PRIu64 " samples (shape[0]) but '%s' has %" PRIu64,
                   x_path, hx.dims[0], y_path, hy.dims[0]);
    goto done;
  }
  if (hx.dims[0] == 0) {
    h5util_set_err(err, errlen, "'%s' has no samples (shape[0] is 0)", x_path);
    goto done;
  }
  file = convert_open_output(out_path, err, errlen);
  if (file < 0) goto done;
  grp = convert_replace_group(file, group);
  if (grp < 0) {
    h5util_set_err(err, errlen, "cannot create group '%s' in '%s'", group, out_path);
    goto done;
  }
  if (copy_array(grp, "images", x_path, &hx, 1, out_path, group, err, errlen) < 0) goto done;
  if (copy_array(grp, "labels", y_path, &hy, 0, out_path, group, err, errlen) < 0) goto done;
  rc = 0;
done:
  if (grp >= 0) H5Gclose(grp);
  if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
    h5util_set_err(err, errlen, "cannot finish writing '%s'", out_path);
    rc = -1;
  }
  h5util_leave(&q);
  return rc;
}
