/* tokens — token sets (dataset.h, "Token sets"): opening, checking and
 * reading windows of token ids.
 *
 * Every id is read into memory at open, checked, and kept in the stored
 * width (1, 2 or 4 bytes: a byte-level corpus costs a byte a token, as an
 * image set in memory costs its stored bytes). Windows overlap when the
 * stride is shorter than seq_len + 1 (always, by one token, at the default
 * stride), so a window is not a stored row: data_read copies seq_len ids
 * for the inputs and the seq_len ids one further on for the labels. A
 * stream of about 2 billion uint8 ids fits the default budget; a larger one
 * is refused with both sizes rather than streamed (small sequence models
 * train on small corpora; streaming windows is left for when one does not
 * fit).
 */
#include "dataset.h"
#include "dataset_internal.h"
#include "h5guard.h"
#include "h5util.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Ids are read and checked this many at a time (as int64: 8 MiB). */
#define READ_BLOCK_IDS ((uint64_t)1 << 20)
/* The inputs carry ids as floats, which hold integers exactly up to 2^24:
 * a larger id would reach the model as its neighbour. */
#define MAX_VOCAB ((int64_t)1 << 24)

/* "token 17" of a stream, "sequence 3, token 17" of an (N, L) set. */
static void where_str(const data_set *ds, uint64_t flat, char *buf, size_t len) {
  if (ds->tok.stream)
    snprintf(buf, len, "token %" PRIu64, flat);
  else
    snprintf(buf, len, "sequence %" PRIu64 ", token %" PRIu64, flat / ds->tok.row_len,
             flat % ds->tok.row_len);
}

/* The type and shape: an integer type, shape (T,) or (N, L). Fills
 * ds->tok.rows, row_len and ds->x.rank, dims. */
static int check_type_shape(data_set *ds, hid_t set, char *err, size_t errlen) {
  hid_t t = H5Dget_type(set);
  if (t < 0) {
    h5util_set_err(err, errlen, "cannot read the type of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  h5util_type_name(t, ds->y.type, sizeof ds->y.type);
  size_t size = H5Tget_size(t);
  int is_int = H5Tget_class(t) == H5T_INTEGER && size <= 8;
  ds->tok.width = size <= 2 ? size : 4;
  H5Tclose(t);
  if (!is_int) {
    h5util_set_err(err, errlen,
                   "token dataset '%s' in '%s' has type %s; token ids must be integers "
                   "(uint8, uint16 or int32; data.tokens is true)",
                   ds->x_name, ds->path, ds->y.type);
    return -1;
  }
  hid_t space = H5Dget_space(set);
  int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (rank > 0 && H5Sget_simple_extent_dims(space, ds->x.dims, NULL) < 0) rank = -1;
  if (space >= 0) H5Sclose(space);
  if (rank < 0) {
    h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  if (rank != 1 && rank != 2) {
    char sh[160];
    h5util_shape_str(ds->x.dims, rank, sh, sizeof sh);
    h5util_set_err(err, errlen,
                   "token dataset '%s' in '%s' has shape %s; expected one stream (T,) or "
                   "sequences (N, L)",
                   ds->x_name, ds->path, rank == 0 ? "()" : sh);
    return -1;
  }
  ds->x.rank = rank;
  ds->tok.stream = rank == 1;
  ds->tok.rows = rank == 1 ? 1 : (uint64_t)ds->x.dims[0];
  ds->tok.row_len = (uint64_t)ds->x.dims[rank - 1];
  return 0;
}

/* The vocab_size attribute, if any: a positive integer scalar. */
static int read_vocab_attr(data_set *ds, hid_t set, char *err, size_t errlen) {
  htri_t has = H5Aexists(set, "vocab_size");
  if (has == 0) return 0;
  int64_t v = 0;
  hid_t a = has > 0 ? H5Aopen(set, "vocab_size", H5P_DEFAULT) : H5I_INVALID_HID;
  hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
  hid_t sp = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
  int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_INTEGER &&
           H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_INT64, &v) >= 0;
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  if (!ok || v < 1 || v > MAX_VOCAB) {
    h5util_set_err(err, errlen,
                   "the vocab_size attribute of '%s' in '%s' is %s; expected one integer in "
                   "[1, 2^24] (ids reach the model as floats, exact up to 2^24)",
                   ds->x_name, ds->path, ok ? "out of range" : "not one integer");
    return -1;
  }
  ds->tok.vocab = (uint64_t)v;
  ds->tok.vocab_stated = 1;
  return 0;
}

/* Checks ids buf[0..n) (flat positions from first) and stores them. */
static int take_ids(data_set *ds, const int64_t *buf, uint64_t n, uint64_t first, int64_t *max,
                    char *err, size_t errlen) {
  int64_t limit = ds->tok.vocab_stated ? (int64_t)ds->tok.vocab : MAX_VOCAB;
  for (uint64_t i = 0; i < n; i++) {
    int64_t v = buf[i];
    if (v < 0 || v >= limit) {
      char at[80];
      where_str(ds, first + i, at, sizeof at);
      if (v < 0)
        h5util_set_err(err, errlen, "token id %" PRId64 " at %s of '%s' in '%s' is negative", v, at,
                       ds->x_name, ds->path);
      else if (ds->tok.vocab_stated)
        h5util_set_err(err, errlen,
                       "token id %" PRId64
                       " at %s of '%s' in '%s' is outside the vocabulary "
                       "[0, %" PRIu64 ") (its vocab_size attribute)",
                       v, at, ds->x_name, ds->path, ds->tok.vocab);
      else
        h5util_set_err(err, errlen,
                       "token id %" PRId64
                       " at %s of '%s' in '%s' is over 2^24 - 1, the "
                       "largest id a float input holds exactly",
                       v, at, ds->x_name, ds->path);
      return -1;
    }
    if (v > *max) *max = v;
    /* Checked: 0 <= v < 2^24, and below 2^(8 * width) for the narrow
     * widths, whose stored types cannot hold more. */
    unsigned char *dst = ds->tok.ids + (first + i) * ds->tok.width;
    if (ds->tok.width == 1) {
      *dst = (unsigned char)v;
    } else if (ds->tok.width == 2) {
      uint16_t u = (uint16_t)v;
      memcpy(dst, &u, 2);
    } else {
      uint32_t u = (uint32_t)v;
      memcpy(dst, &u, 4);
    }
  }
  return 0;
}

/* Reads every id, in blocks of whole rows, checking each (take_ids). */
static int read_ids(data_set *ds, hid_t set, char *err, size_t errlen) {
  char why[160];
  uint64_t total = ds->tok.rows * ds->tok.row_len;
  uint64_t rows_per = READ_BLOCK_IDS / ds->tok.row_len;
  if (rows_per < 1) rows_per = 1;
  if (ds->tok.stream) rows_per = READ_BLOCK_IDS; /* a stream: rows are single ids */
  uint64_t nrows = ds->tok.stream ? total : ds->tok.rows;
  uint64_t ids_per_row = ds->tok.stream ? 1 : ds->tok.row_len;
  if (h5guard_inflate(set, 0, nrows, ds->path, ds->x_name, ds->x.file_size, err, errlen) < 0)
    return -1;
  size_t cap = (size_t)((rows_per < nrows ? rows_per : nrows) * ids_per_row);
  int64_t *buf = malloc(cap * sizeof *buf);
  hid_t fspace = H5Dget_space(set);
  int rc = 0;
  int64_t max = -1;
  if (!buf || fspace < 0) {
    h5util_set_err(err, errlen, "out of memory reading '%s' in '%s'", ds->x_name, ds->path);
    rc = -1;
  }
  for (uint64_t r = 0; rc == 0 && r < nrows; r += rows_per) {
    uint64_t k = nrows - r < rows_per ? nrows - r : rows_per;
    hsize_t start[2] = {(hsize_t)r, 0}, count[2] = {(hsize_t)k, (hsize_t)ds->tok.row_len};
    hsize_t mdims[1] = {(hsize_t)(k * ids_per_row)};
    hid_t mspace = H5Screate_simple(1, mdims, NULL);
    if (mspace < 0 || H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(set, H5T_NATIVE_INT64, mspace, fspace, H5P_DEFAULT, buf) < 0) {
      h5util_set_err(err, errlen, "cannot read '%s' in '%s' (truncated or damaged?): %s",
                     ds->x_name, ds->path, h5util_reason(why));
      rc = -1;
    }
    if (mspace >= 0) H5Sclose(mspace);
    if (rc == 0) rc = take_ids(ds, buf, k * ids_per_row, r * ids_per_row, &max, err, errlen);
  }
  if (fspace >= 0) H5Sclose(fspace);
  free(buf);
  if (rc == 0 && !ds->tok.vocab_stated) ds->tok.vocab = (uint64_t)max + 1;
  return rc;
}

/* The windows (dataset.h) and the shapes the getters report. */
static int plan_windows(data_set *ds, const data_token_opts *o, char *err, size_t errlen) {
  data_tokens *tk = &ds->tok;
  tk->seq_len = o->seq_len;
  tk->stride = o->stride ? o->stride : o->seq_len;
  if (tk->seq_len < 1 || tk->seq_len > (uint64_t)INT32_MAX) {
    h5util_set_err(err, errlen, "data.seq_len is %" PRIu64 "; a token set needs 1 or more",
                   tk->seq_len);
    return -1;
  }
  if (tk->row_len < tk->seq_len + 1) {
    h5util_set_err(err, errlen,
                   "token dataset '%s' in '%s' has %s of %" PRIu64
                   " tokens, shorter than one window of data.seq_len + 1 = %" PRIu64 " tokens",
                   ds->x_name, ds->path, tk->stream ? "a stream" : "sequences", tk->row_len,
                   tk->seq_len + 1);
    return -1;
  }
  tk->per_row = (tk->row_len - tk->seq_len - 1) / tk->stride + 1;
  if (tk->rows > UINT64_MAX / tk->per_row) {
    h5util_set_err(err, errlen, "token dataset '%s' in '%s' has too many windows", ds->x_name,
                   ds->path);
    return -1;
  }
  ds->x.n = tk->rows * tk->per_row;
  ds->dtype = DATA_I32;
  ds->elems = (size_t)tk->seq_len;
  ds->x.row_bytes = ds->elems * sizeof(int32_t);
  ds->fits_budget = 1;
  ds->y.kind = DATA_LABEL_CLASS;
  ds->y.elems = ds->elems;
  return 0;
}

/* The budget: every id in its stored width (dataset.h). */
static int check_budget(const data_set *ds, size_t mem_budget, char *err, size_t errlen) {
  uint64_t total = ds->tok.rows * ds->tok.row_len;
  size_t w = ds->tok.width;
  if (total > SIZE_MAX / w || (mem_budget > 0 && total * w > mem_budget)) {
    h5util_set_err(err, errlen,
                   "token dataset '%s' in '%s' holds %" PRIu64
                   " tokens (%.1f MiB), more than the memory budget of %.1f MiB per rank "
                   "(data.memory_mb); token sets are held in memory",
                   ds->x_name, ds->path, total, (double)total * (double)w / 1048576.0,
                   (double)mem_budget / 1048576.0);
    return -1;
  }
  return 0;
}

int data_open_tokens(data_set **out, const char *path, const char *name, const data_token_opts *o,
                     size_t mem_budget, char *err, size_t errlen) {
  h5util_guard q;
  char why[160];
  int rc = -1;
  data_set *ds = NULL;
  hid_t file = H5I_INVALID_HID, set = H5I_INVALID_HID;

  *out = NULL;
  h5util_enter(&q);
  uint64_t file_size = 0;
  if (h5util_probe_file(path, &file_size, err, errlen) < 0) goto done;
  if (!(ds = data_set_new(path, name, name, file_size))) goto oom;

  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    h5util_set_err(err, errlen, "cannot open '%s' as HDF5 (truncated or damaged?): %s", path,
                   h5util_reason(why));
    goto done;
  }
  set = data_open_dataset(file, path, name, file_size, err, errlen);
  if (set < 0) goto done;
  if (data_check_filters(set, path, name, err, errlen) < 0) goto done;
  if (check_type_shape(ds, set, err, errlen) < 0) goto done;
  if (plan_windows(ds, o, err, errlen) < 0) goto done;
  if (check_budget(ds, mem_budget, err, errlen) < 0) goto done;
  if (read_vocab_attr(ds, set, err, errlen) < 0) goto done;
  ds->tok.ids = malloc((size_t)(ds->tok.rows * ds->tok.row_len) * ds->tok.width);
  if (!ds->tok.ids) goto oom;
  if (read_ids(ds, set, err, errlen) < 0) goto done;
  /* The getters describe windows, not the stored shape. */
  ds->x.rank = ds->y.rank = 2;
  ds->x.dims[0] = ds->y.dims[0] = (hsize_t)ds->x.n;
  ds->x.dims[1] = ds->y.dims[1] = (hsize_t)ds->tok.seq_len;
  *out = ds;
  ds = NULL;
  rc = 0;
  goto done;

oom:
  h5util_set_err(err, errlen, "out of memory opening '%s' in '%s'", name, path);
done:
  if (set >= 0) H5Dclose(set);
  if (file >= 0) H5Fclose(file);
  data_close(ds);
  h5util_leave(&q);
  return rc;
}

/* Id i (flat) of a token set. */
static int32_t id_at(const data_tokens *tk, uint64_t i) {
  const unsigned char *p = tk->ids + i * tk->width;
  if (tk->width == 1) return *p;
  if (tk->width == 2) {
    uint16_t u;
    memcpy(&u, p, 2);
    return u;
  }
  uint32_t u;
  memcpy(&u, p, 4);
  return (int32_t)u;
}

/* The first id of window w. */
static uint64_t window_start(const data_tokens *tk, uint64_t w) {
  return (w / tk->per_row) * tk->row_len + (w % tk->per_row) * tk->stride;
}

int data_tokens_read(data_set *ds, const uint64_t *idx, size_t n, const data_norm *norm, float *x,
                     int32_t *y, float *t, char *err, size_t errlen) {
  if (norm && (norm->scale != 1.0f || norm->n_mean || norm->n_std)) {
    h5util_set_err(err, errlen,
                   "'%s' in '%s' is a token set: data.scale, data.mean and data.std do not apply "
                   "(token ids are read as they are)",
                   ds->x_name, ds->path);
    return -1;
  }
  const data_tokens *tk = &ds->tok;
  size_t L = (size_t)tk->seq_len;
  for (size_t i = 0; i < n; i++) {
    if (idx[i] >= ds->x.n) {
      h5util_set_err(err, errlen,
                     "sample index %" PRIu64 " is out of range for '%s' in '%s' (%" PRIu64
                     " windows)",
                     idx[i], ds->x_name, ds->path, ds->x.n);
      return -1;
    }
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t s = window_start(tk, idx[i]);
    for (size_t k = 0; k < L; k++) {
      int32_t in = id_at(tk, s + k), next = id_at(tk, s + k + 1);
      x[i * L + k] = (float)in;
      if (y) y[i * L + k] = next;
      if (t) t[i * L + k] = (float)next;
    }
  }
  return 0;
}

int data_tokens_check_vocab(const data_set *ds, int n_classes, char *err, size_t errlen) {
  const data_tokens *tk = &ds->tok;
  if (n_classes < 1 || tk->vocab > (uint64_t)n_classes) {
    if (tk->vocab_stated) {
      h5util_set_err(err, errlen,
                     "token dataset '%s' in '%s' has vocab_size %" PRIu64
                     ", more than the model's %d classes",
                     ds->x_name, ds->path, tk->vocab, n_classes);
      return -1;
    }
    uint64_t total = tk->rows * tk->row_len;
    for (uint64_t i = 0; i < total; i++)
      if (id_at(tk, i) >= n_classes) {
        char at[80];
        where_str(ds, i, at, sizeof at);
        h5util_set_err(err, errlen,
                       "token id %" PRId32
                       " at %s of '%s' in '%s' is outside the model's "
                       "vocabulary [0, %d)",
                       id_at(tk, i), at, ds->x_name, ds->path, n_classes);
        return -1;
      }
  }
  return 0;
}

uint64_t data_vocab_size(const data_set *ds) { return ds->tok.ids ? ds->tok.vocab : 0; }
int data_is_tokens(const data_set *ds) { return ds->tok.ids != NULL; }
uint64_t data_seq_len(const data_set *ds) { return ds->tok.ids ? ds->tok.seq_len : 0; }
uint64_t data_stride(const data_set *ds) { return ds->tok.ids ? ds->tok.stride : 0; }
uint64_t data_token_count(const data_set *ds) {
  return ds->tok.ids ? ds->tok.rows * ds->tok.row_len : 0;
}
