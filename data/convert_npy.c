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
#include "h5guard.h"
#include "h5util.h"

#include <ctype.h>
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The longest .npy header read (NumPy's own limit, max_header_size). */
#define NPY_MAX_HEADER 10000
/* Bytes of data the filter trial compresses (about one chunk). */
#define CHUNK_TRIAL ((size_t)1 << 20)

/* ---- the header dict ------------------------------------------------------
 * The header is a Python literal, {'descr': '<f4', 'fortran_order': False,
 * 'shape': (3, 4), }, which NumPy reads with ast.literal_eval and then
 * checks: exactly these three keys, descr a string (or a list: a structured
 * dtype), fortran_order a bool, shape a tuple of ints. This is a parser of
 * that grammar, not a search for substrings: anything else (another key, a
 * key twice, an expression, text after the closing brace) is refused. */

typedef struct {
  const char *p, *end;
} npy_cursor;

static void skip_ws(npy_cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* 1 when the next character (after blanks) is ch, consumed. */
static int eat(npy_cursor *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) return c->p++, 1;
  return 0;
}

/* A quoted string without escapes into buf (cap bytes); -1 if not one. */
static int read_str(npy_cursor *c, char *buf, size_t cap) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
  char q = *c->p++;
  const char *s = c->p;
  while (c->p < c->end && *c->p != q) {
    if (*c->p == '\\' || *c->p == '\n' || *c->p == '\0') return -1;
    c->p++;
  }
  if (c->p >= c->end || (size_t)(c->p - s) >= cap) return -1;
  memcpy(buf, s, (size_t)(c->p - s));
  buf[c->p - s] = '\0';
  c->p++;
  return 0;
}

/* The literal True or False; -1 for anything else. */
static int read_bool(npy_cursor *c, int *v) {
  skip_ws(c);
  size_t left = (size_t)(c->end - c->p);
  if (left >= 4 && memcmp(c->p, "True", 4) == 0)
    *v = 1, c->p += 4;
  else if (left >= 5 && memcmp(c->p, "False", 5) == 0)
    *v = 0, c->p += 5;
  else
    return -1;
  /* "Trueish" is a name, not the literal. */
  if (c->p < c->end && (isalnum((unsigned char)*c->p) || *c->p == '_')) return -1;
  return 0;
}

/* A tuple of non-negative decimal ints: (), (5,), (5, 6), (5, 6,). (5) is
 * an int in Python, not a tuple: refused. */
static int read_shape(npy_cursor *c, npy_header *h, const char **why) {
  *why = "'shape' is not a tuple of non-negative integers";
  if (!eat(c, '(')) return -1;
  h->ndim = 0;
  h->elems = 1;
  int comma = 1; /* an item may follow */
  while (!eat(c, ')')) {
    skip_ws(c);
    if (!comma || c->p >= c->end || !isdigit((unsigned char)*c->p)) return -1;
    if (h->ndim == NPY_MAX_DIMS) return *why = "'shape' has more than 32 dimensions", -1;
    uint64_t x = 0;
    while (c->p < c->end && isdigit((unsigned char)*c->p)) {
      unsigned d = (unsigned)(*c->p++ - '0');
      if (x > (UINT64_MAX - d) / 10) return *why = "a dimension in 'shape' is too large", -1;
      x = x * 10 + d;
    }
    if (c->p < c->end && *c->p == 'L') c->p++; /* written by Python 2 */
    h->dims[h->ndim++] = x;
    if (x && h->elems > UINT64_MAX / x) return *why = "the shape is impossibly large", -1;
    h->elems *= x;
    comma = eat(c, ',');
  }
  if (h->ndim == 1 && !comma) return -1; /* (5): an int in parentheses */
  return 0;
}

/* One key's value into h; `seen` marks the keys read. */
static int read_entry(npy_cursor *c, npy_header *h, unsigned *seen, const char **why) {
  char key[32];
  if (read_str(c, key, sizeof key) < 0 || !eat(c, ':'))
    return *why = "the header is not a dict of quoted keys", -1;
  unsigned bit = strcmp(key, "descr") == 0           ? 1u
                 : strcmp(key, "fortran_order") == 0 ? 2u
                 : strcmp(key, "shape") == 0         ? 4u
                                                     : 0u;
  if (!bit) return *why = "the header has a key other than 'descr', 'fortran_order', 'shape'", -1;
  if (*seen & bit) return *why = "the header names a key twice", -1;
  *seen |= bit;
  if (bit == 1) {
    skip_ws(c);
    if (c->p < c->end && *c->p == '[') return *why = "structured", -1;
    if (read_str(c, h->descr, sizeof h->descr) < 0) return *why = "'descr' is not a string", -1;
  } else if (bit == 2) {
    if (read_bool(c, &h->fortran) < 0) return *why = "'fortran_order' is not True or False", -1;
  } else if (read_shape(c, h, why) < 0) {
    return -1;
  }
  return 0;
}

int convert_npy_parse_dict(const char *path, const char *d, size_t len, npy_header *h, char *err,
                           size_t errlen) {
  npy_cursor c = {d, d + len};
  unsigned seen = 0;
  const char *why = "the header is not a dict";
  int ok = eat(&c, '{');
  while (ok && !eat(&c, '}')) {
    ok = read_entry(&c, h, &seen, &why) == 0;
    if (ok && !eat(&c, ',')) {
      ok = eat(&c, '}');
      if (!ok) why = "the header dict is not closed";
      break;
    }
  }
  skip_ws(&c);
  if (ok && c.p != c.end) ok = 0, why = "the header has text after its dict";
  if (ok && seen != 7) ok = 0, why = "the header lacks 'descr', 'fortran_order' or 'shape'";
  if (!ok && strcmp(why, "structured") == 0) {
    h5util_set_err(err, errlen,
                   "'%s' holds a structured dtype; midscale converts plain numeric arrays", path);
    return -1;
  }
  if (!ok) {
    h5util_set_err(err, errlen, "'%s': bad .npy header: %s", path, why);
    return -1;
  }
  return 0;
}

/* Parses the header dict text into h. */
static int parse_dict(const char *path, const char *d, size_t len, npy_header *h, char *err,
                      size_t errlen) {
  if (convert_npy_parse_dict(path, d, len, h, err, errlen) < 0) return -1;
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
  /* A regular file only: opening a FIFO would block. */
  if (h5guard_regular_file(path, "a .npy file", NULL, err, errlen) < 0) return -1;
  FILE *f = fopen(path, "rb");
  if (!f) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    h5util_set_err(err, errlen, "'%s' is not a .npy file (not a regular file)", path);
    goto done;
  }
  size_t got = fread(pre, 1, 10, f);
  if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    h5util_set_err(err, errlen, "'%s' is not a .npy file (no \\x93NUMPY magic)", path);
    goto done;
  }
  unsigned major = pre[6];
  if (pre[7] != 0) {
    h5util_set_err(err, errlen, "'%s' has .npy format version %u.%u; midscale reads 1.0, 2.0, 3.0",
                   path, major, pre[7]);
    goto done;
  }
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
  /* NumPy refuses headers over 10000 bytes (max_header_size); a numeric
   * array's is under 1000. */
  if (pre_len + hlen > (uint64_t)st.st_size) {
    h5util_set_err(err, errlen,
                   "'%s' is truncated: its .npy header of %zu bytes ends past the file", path,
                   hlen);
    goto done;
  }
  if (hlen > NPY_MAX_HEADER) {
    h5util_set_err(err, errlen, "'%s': the .npy header has %zu bytes, more than %d", path, hlen,
                   NPY_MAX_HEADER);
    goto done;
  }
  if (!(dict = malloc(hlen + 1))) {
    h5util_set_err(err, errlen, "out of memory reading '%s'", path);
    goto done;
  }
  if (fread(dict, 1, hlen, f) != hlen) {
    h5util_set_err(err, errlen, "'%s' is truncated in its .npy header", path);
    goto done;
  }
  dict[hlen] = '\0';
  if (parse_dict(path, dict, hlen, h, err, errlen) < 0) goto done;
  h->data_offset = (long)(pre_len + hlen);
  if (h->ndim < 1) {
    h5util_set_err(err, errlen, "'%s' holds a scalar (shape ()); expected (N, ...)", path);
    goto done;
  }
  for (int i = 1; i < h->ndim; i++)
    if (h->dims[i] == 0) {
      h5util_set_err(err, errlen,
                     "'%s' has a zero-size dimension %d in its shape; samples would be empty", path,
                     i);
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
  char tmp[1024] = "";
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
  grp = convert_stage_group(file, group, tmp, sizeof tmp);
  if (grp < 0) {
    h5util_set_err(err, errlen, "cannot create group '%s' in '%s'", group, out_path);
    goto done;
  }
  if (copy_array(grp, "images", x_path, &hx, 1, out_path, group, err, errlen) < 0) goto done;
  if (copy_array(grp, "labels", y_path, &hy, 0, out_path, group, err, errlen) < 0) goto done;
  rc = 0;
done:
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
  h5util_leave(&q);
  return rc;
}
