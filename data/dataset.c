/* dataset — see dataset.h.
 *
 * HDF5's automatic error printing is switched off around every call into the
 * library (and the caller's handler restored afterwards): a failure becomes
 * one line in the caller's err buffer, never a stack dump on stderr.
 */
#include "dataset.h"
#include "h5util.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many dataset names are listed when one is not found. */
#define LIST_CAP 20

struct data_set {
  char *path, *x_name, *y_name;
  uint64_t n;
  size_t elems; /* features per sample */
  data_dtype dtype;
  size_t dsize;       /* bytes per stored element: 1 or 4 */
  int64_t *labels;    /* (n) */
  unsigned char *mem; /* (n, elems) in the stored dtype; NULL if streaming */
  /* Streaming mode only. */
  hid_t file, xset, xspace;
  int xrank;
  hsize_t xdims[H5S_MAX_RANK];
  struct run_item *order; /* scratch: requested indices sorted */
  size_t order_cap;
  unsigned char *rows; /* scratch: one run of rows */
  size_t rows_cap;     /* bytes */
};

struct run_item {
  uint64_t idx;
  size_t pos;
};

/* The innermost description on HDF5's error stack, for the tail of a message
 * ("" when the stack is empty). */
static herr_t first_error_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  char *out = data;
  if (out[0] == '\0' && e->desc && e->desc[0]) snprintf(out, 160, "%s", e->desc);
  return 0;
}

static const char *h5_reason(char buf[160]) {
  buf[0] = '\0';
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error_cb, buf);
  return buf;
}

static char *dup_str(const char *s) {
  size_t len = strlen(s) + 1;
  char *d = malloc(len);
  if (d) memcpy(d, s, len);
  return d;
}

/* A short name for an HDF5 datatype, for messages ("uint8", "float64"). */
static void type_name(hid_t t, char *buf, size_t len) {
  size_t bits = H5Tget_size(t) * 8;
  switch (H5Tget_class(t)) {
    case H5T_INTEGER:
      snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
      return;
    case H5T_FLOAT: snprintf(buf, len, "float%zu", bits); return;
    case H5T_STRING: snprintf(buf, len, "string"); return;
    case H5T_COMPOUND: snprintf(buf, len, "compound"); return;
    case H5T_ENUM: snprintf(buf, len, "enum"); return;
    case H5T_ARRAY: snprintf(buf, len, "array"); return;
    case H5T_VLEN: snprintf(buf, len, "vlen"); return;
    case H5T_OPAQUE: snprintf(buf, len, "opaque"); return;
    case H5T_BITFIELD: snprintf(buf, len, "bitfield"); return;
    case H5T_REFERENCE: snprintf(buf, len, "reference"); return;
    case H5T_TIME: snprintf(buf, len, "time"); return;
    default: snprintf(buf, len, "unknown"); return;
  }
}

/* ---- listing the datasets of a file (for "not found" messages) ---------- */

typedef struct {
  char **names;
  size_t count, cap;
  int oom;
} name_list;

static herr_t list_cb(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
  (void)obj;
  name_list *l = data;
  if (info->type != H5O_TYPE_DATASET) return 0;
  if (l->count == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    char **grown = realloc(l->names, cap * sizeof *grown);
    if (!grown) {
      l->oom = 1;
      return 1;
    }
    l->names = grown;
    l->cap = cap;
  }
  size_t len = strlen(name);
  char *s = malloc(len + 2);
  if (!s) {
    l->oom = 1;
    return 1;
  }
  s[0] = '/';
  memcpy(s + 1, name, len + 1);
  l->names[l->count++] = s;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Writes "dataset 'NAME' not found in 'PATH'; datasets in the file: ..." */
static void not_found(hid_t file, const char *path, const char *name, char *err, size_t errlen) {
  name_list l = {0};
  H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, list_cb, &l, H5O_INFO_BASIC);
  if (l.count > 1) qsort(l.names, l.count, sizeof *l.names, cmp_str);

  char list[2048] = "";
  size_t used = 0;
  size_t shown = l.count < LIST_CAP ? l.count : LIST_CAP;
  for (size_t i = 0; i < shown && used < sizeof list; i++) {
    int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", l.names[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (l.count > shown && used < sizeof list)
    snprintf(list + used, sizeof list - used, ", ... (%zu more)", l.count - shown);

  if (l.count == 0)
    h5util_set_err(err, errlen, "dataset '%s' not found in '%s'; the file has no datasets", name,
                   path);
  else
    h5util_set_err(err, errlen, "dataset '%s' not found in '%s'; datasets in the file: %s", name,
                   path, list);
  for (size_t i = 0; i < l.count; i++) free(l.names[i]);
  free(l.names);
}

/* Opens dataset `name`, or explains why not (missing, or not a dataset). */
static hid_t open_dataset(hid_t file, const char *path, const char *name, char *err,
                          size_t errlen) {
  hid_t id = H5Dopen2(file, name, H5P_DEFAULT);
  if (id >= 0) return id;
  H5O_info_t info;
  if (H5Oget_info_by_name2(file, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
      info.type != H5O_TYPE_DATASET)
    h5util_set_err(err, errlen, "'%s' in '%s' is not a dataset", name, path);
  else
    not_found(file, path, name, err, errlen);
  return H5I_INVALID_HID;
}

/* Reads the shape of `set` into dims; returns its rank or -1. */
static int get_shape(hid_t set, hsize_t dims[H5S_MAX_RANK]) {
  hid_t space = H5Dget_space(set);
  if (space < 0) return -1;
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) rank = -1;
  H5Sclose(space);
  return rank;
}

static void shape_str(const hsize_t *dims, int rank, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "(");
  for (int i = 0; i < rank && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "",
                             (unsigned long long)dims[i]);
  if (used < len) snprintf(buf + used, len - used, rank == 1 ? ",)" : ")");
}

/* Checks the inputs' dtype and shape; fills ds->dtype, dsize, elems, xrank,
 * xdims. */
static int check_inputs(data_set *ds, hid_t xset, char *err, size_t errlen) {
  hid_t t = H5Dget_type(xset);
  if (t < 0) {
    h5util_set_err(err, errlen, "cannot read the type of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  int ok = 1;
  if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(t) == H5T_SGN_NONE) {
    ds->dtype = DATA_U8;
    ds->dsize = 1;
  } else if (cls == H5T_FLOAT && size == 4) {
    ds->dtype = DATA_F32;
    ds->dsize = 4;
  } else {
    char tn[32];
    type_name(t, tn, sizeof tn);
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' has type %s; supported input types are uint8 and float32",
                   ds->x_name, ds->path, tn);
    ok = 0;
  }
  H5Tclose(t);
  if (!ok) return -1;

  ds->xrank = get_shape(xset, ds->xdims);
  if (ds->xrank < 1) {
    h5util_set_err(err, errlen, "dataset '%s' in '%s' is a scalar; inputs need a sample axis",
                   ds->x_name, ds->path);
    return -1;
  }
  size_t elems = 1;
  for (int i = 1; i < ds->xrank; i++) {
    if (ds->xdims[i] == 0) {
      h5util_set_err(err, errlen, "dataset '%s' in '%s' has an empty sample shape", ds->x_name,
                     ds->path);
      return -1;
    }
    if (elems > SIZE_MAX / 4 / ds->xdims[i]) {
      h5util_set_err(err, errlen, "dataset '%s' in '%s': samples are too large", ds->x_name,
                     ds->path);
      return -1;
    }
    elems *= (size_t)ds->xdims[i];
  }
  ds->elems = elems;
  return 0;
}

/* Checks the labels' dtype and shape; returns their count or -1 via *n. */
static int check_labels_shape(const data_set *ds, hid_t yset, uint64_t *n, char *err,
                              size_t errlen) {
  hid_t t = H5Dget_type(yset);
  if (t < 0) {
    h5util_set_err(err, errlen, "cannot read the type of '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  int is_int = H5Tget_class(t) == H5T_INTEGER;
  char tn[32];
  type_name(t, tn, sizeof tn);
  H5Tclose(t);
  if (!is_int) {
    h5util_set_err(err, errlen, "dataset '%s' in '%s' has type %s; labels must be an integer type",
                   ds->y_name, ds->path, tn);
    return -1;
  }
  hsize_t dims[H5S_MAX_RANK];
  int rank = get_shape(yset, dims);
  if (rank < 0) {
    h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  if (!(rank == 1 || (rank == 2 && dims[1] == 1))) {
    char sh[128];
    shape_str(dims, rank, sh, sizeof sh);
    h5util_set_err(err, errlen, "labels '%s' in '%s' have shape %s; expected (N,) or (N, 1)",
                   ds->y_name, ds->path, sh);
    return -1;
  }
  *n = dims[0];
  return 0;
}

/* A chunk cache big enough for the budget and for at least one chunk, so
 * that a streamed read of a compressed chunk does not bypass the cache. */
static hid_t streaming_dapl(hid_t xset, size_t mem_budget, size_t row_bytes) {
  size_t nbytes = 1u << 20, chunk_bytes = 0;
  hid_t dcpl = H5Dget_create_plist(xset);
  if (dcpl >= 0) {
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
      hsize_t cdims[H5S_MAX_RANK];
      int r = H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims);
      if (r > 0) chunk_bytes = (size_t)cdims[0] * row_bytes;
    }
    H5Pclose(dcpl);
  }
  if (mem_budget > nbytes) nbytes = mem_budget;
  if (chunk_bytes > 0 && nbytes < 2 * chunk_bytes) nbytes = 2 * chunk_bytes;
  /* HDF5 advises about 100 hash slots per chunk that fits; a prime spreads
   * chunk indices best. */
  size_t slots = chunk_bytes ? nbytes / chunk_bytes * 100 : 521;
  if (slots < 521) slots = 521;
  if (slots > 1000003) slots = 1000003;
  for (;; slots++) {
    int prime = 1;
    for (size_t d = 2; d * d <= slots; d++)
      if (slots % d == 0) {
        prime = 0;
        break;
      }
    if (prime) break;
  }
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl >= 0) H5Pset_chunk_cache(dapl, slots, nbytes, 0.75);
  return dapl;
}

int data_open(data_set **out, const char *path, const char *x_name, const char *y_name,
              size_t mem_budget, char *err, size_t errlen) {
  h5util_quiet q;
  char why[160];
  int rc = -1;
  data_set *ds = NULL;
  hid_t file = H5I_INVALID_HID, xset = H5I_INVALID_HID, yset = H5I_INVALID_HID;
  hid_t stream_set = H5I_INVALID_HID, stream_space = H5I_INVALID_HID;
  uint64_t ny = 0;

  *out = NULL;
  h5util_quiet_begin(&q);

  FILE *probe = fopen(path, "rb");
  if (!probe) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    goto done;
  }
  fclose(probe);
  if (H5Fis_hdf5(path) <= 0) {
    h5util_set_err(err, errlen, "'%s' is not an HDF5 file", path);
    goto done;
  }

  ds = calloc(1, sizeof *ds);
  if (!ds) goto oom;
  ds->file = ds->xset = ds->xspace = H5I_INVALID_HID;
  ds->path = dup_str(path);
  ds->x_name = dup_str(x_name);
  ds->y_name = dup_str(y_name);
  if (!ds->path || !ds->x_name || !ds->y_name) goto oom;

  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    h5util_set_err(err, errlen, "cannot open '%s' as HDF5: %s", path, h5_reason(why));
    goto done;
  }
  xset = open_dataset(file, path, x_name, err, errlen);
  if (xset < 0) goto done;
  yset = open_dataset(file, path, y_name, err, errlen);
  if (yset < 0) goto done;
  if (check_inputs(ds, xset, err, errlen) < 0) goto done;
  if (check_labels_shape(ds, yset, &ny, err, errlen) < 0) goto done;
  ds->n = ds->xdims[0];
  if (ds->n != ny) {
    h5util_set_err(err, errlen, "'%s' has %" PRIu64 " samples but '%s' has %" PRIu64 " in '%s'",
                   x_name, ds->n, y_name, ny, path);
    goto done;
  }
  if (ds->n == 0) {
    h5util_set_err(err, errlen, "'%s' in '%s' has no samples", x_name, path);
    goto done;
  }
  if (ds->n > SIZE_MAX / sizeof *ds->labels) goto oom;

  ds->labels = malloc((size_t)ds->n * sizeof *ds->labels);
  if (!ds->labels) goto oom;
  if (H5Dread(yset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->labels) < 0) {
    h5util_set_err(err, errlen, "cannot read '%s' in '%s': %s", y_name, path, h5_reason(why));
    goto done;
  }

  hid_t mem_type = ds->dtype == DATA_U8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  size_t row_bytes = ds->elems * ds->dsize;
  int fits = ds->n <= SIZE_MAX / row_bytes && (size_t)ds->n * row_bytes <= mem_budget;
  if (fits) {
    ds->mem = malloc((size_t)ds->n * row_bytes);
    if (!ds->mem) goto oom;
    if (H5Dread(xset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->mem) < 0) {
      h5util_set_err(err, errlen, "cannot read '%s' in '%s': %s", x_name, path, h5_reason(why));
      goto done;
    }
  } else {
    /* Reopen the inputs with a chunk cache sized for streaming. The first
     * handle must be closed first: while a dataset is open, HDF5 shares its
     * chunk cache with every new handle and ignores the new access list. */
    hid_t dapl = streaming_dapl(xset, mem_budget, row_bytes);
    H5Dclose(xset);
    xset = H5I_INVALID_HID;
    stream_set = H5Dopen2(file, x_name, dapl >= 0 ? dapl : H5P_DEFAULT);
    if (dapl >= 0) H5Pclose(dapl);
    if (stream_set < 0) {
      h5util_set_err(err, errlen, "cannot open '%s' in '%s': %s", x_name, path, h5_reason(why));
      goto done;
    }
    stream_space = H5Dget_space(stream_set);
    if (stream_space < 0) {
      h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", x_name, path);
      goto done;
    }
    ds->file = file;
    ds->xset = stream_set;
    ds->xspace = stream_space;
    file = stream_set = stream_space = H5I_INVALID_HID;
  }
  *out = ds;
  ds = NULL;
  rc = 0;
  goto done;

oom:
  h5util_set_err(err, errlen, "out of memory opening '%s' in '%s'", x_name, path);
done:
  if (stream_space >= 0) H5Sclose(stream_space);
  if (stream_set >= 0) H5Dclose(stream_set);
  if (yset >= 0) H5Dclose(yset);
  if (xset >= 0) H5Dclose(xset);
  if (file >= 0) H5Fclose(file);
  data_close(ds);
  h5util_quiet_end(&q);
  return rc;
}

void data_close(data_set *ds) {
  if (!ds) return;
  h5util_quiet q;
  h5util_quiet_begin(&q);
  if (ds->xspace >= 0) H5Sclose(ds->xspace);
  if (ds->xset >= 0) H5Dclose(ds->xset);
  if (ds->file >= 0) H5Fclose(ds->file);
  h5util_quiet_end(&q);
  free(ds->rows);
  free(ds->order);
  free(ds->mem);
  free(ds->labels);
  free(ds->y_name);
  free(ds->x_name);
  free(ds->path);
  free(ds);
}

uint64_t data_count(const data_set *ds) { return ds->n; }
size_t data_sample_elems(const data_set *ds) { return ds->elems; }
data_dtype data_input_dtype(const data_set *ds) { return ds->dtype; }
int data_in_memory(const data_set *ds) { return ds->mem != NULL; }

int data_sample_shape(const data_set *ds, uint64_t *dims, int max_dims) {
  int n = ds->xrank - 1;
  for (int i = 0; i < n && i < max_dims; i++) dims[i] = (uint64_t)ds->xdims[i + 1];
  return n;
}

int data_check_labels(data_set *ds, int n_classes, char *err, size_t errlen) {
  for (uint64_t i = 0; i < ds->n; i++) {
    int64_t v = ds->labels[i];
    if (v < 0 || v >= n_classes) {
      h5util_set_err(err, errlen,
                     "label %" PRId64 " of sample %" PRIu64 " in '%s' of '%s' is outside [0, %d)",
                     v, i, ds->y_name, ds->path, n_classes);
      return -1;
    }
  }
  return 0;
}

/* Converts one stored row to floats. */
static void row_to_float(const data_set *ds, const unsigned char *src, float scale, float *dst) {
  if (ds->dtype == DATA_U8) {
    for (size_t k = 0; k < ds->elems; k++) dst[k] = (float)src[k] * scale;
  } else {
    memcpy(dst, src, ds->elems * sizeof(float));
  }
}

static int cmp_item(const void *a, const void *b) {
  const struct run_item *x = a, *y = b;
  if (x->idx != y->idx) return x->idx < y->idx ? -1 : 1;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Reads rows [start, start + len) of the inputs into ds->rows. */
static int read_run(data_set *ds, uint64_t start, uint64_t len, char *err, size_t errlen) {
  hsize_t off[H5S_MAX_RANK] = {0}, cnt[H5S_MAX_RANK];
  off[0] = start;
  cnt[0] = len;
  for (int i = 1; i < ds->xrank; i++) cnt[i] = ds->xdims[i];
  /* The memory space has the shape of the file selection: HDF5 then copies
   * straight through instead of iterating element by element. */
  hid_t mem_space = H5Screate_simple(ds->xrank, cnt, NULL);
  hid_t mem_type = ds->dtype == DATA_U8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  int rc = -1;
  if (mem_space >= 0 &&
      H5Sselect_hyperslab(ds->xspace, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0 &&
      H5Dread(ds->xset, mem_type, mem_space, ds->xspace, H5P_DEFAULT, ds->rows) >= 0)
    rc = 0;
  if (rc < 0) {
    char why[160];
    h5util_set_err(err, errlen, "cannot read samples %" PRIu64 "..%" PRIu64 " of '%s' in '%s': %s",
                   start, start + len - 1, ds->x_name, ds->path, h5_reason(why));
  }
  if (mem_space >= 0) H5Sclose(mem_space);
  return rc;
}

static int read_streaming(data_set *ds, const uint64_t *idx, size_t n, float scale, float *x,
                          char *err, size_t errlen) {
  if (n > ds->order_cap) {
    struct run_item *o = realloc(ds->order, n * sizeof *o);
    if (!o) goto oom;
    ds->order = o;
    ds->order_cap = n;
  }
  for (size_t i = 0; i < n; i++) {
    ds->order[i].idx = idx[i];
    ds->order[i].pos = i;
  }
  qsort(ds->order, n, sizeof *ds->order, cmp_item);

  size_t row_bytes = ds->elems * ds->dsize;
  size_t i = 0;
  while (i < n) {
    /* A run: consecutive (or repeated) indices starting at order[i]. */
    size_t j = i + 1;
    while (j < n && ds->order[j].idx - ds->order[j - 1].idx <= 1) j++;
    uint64_t start = ds->order[i].idx;
    uint64_t len = ds->order[j - 1].idx - start + 1;
    /* len <= n, so len * row_bytes is bounded by the caller's output size. */
    size_t need = (size_t)len * row_bytes;
    if (need > ds->rows_cap) {
      unsigned char *r = realloc(ds->rows, need);
      if (!r) goto oom;
      ds->rows = r;
      ds->rows_cap = need;
    }
    if (read_run(ds, start, len, err, errlen) < 0) return -1;
    for (size_t k = i; k < j; k++) {
      const unsigned char *src = ds->rows + (size_t)(ds->order[k].idx - start) * row_bytes;
      row_to_float(ds, src, scale, x + ds->order[k].pos * ds->elems);
    }
    i = j;
  }
  return 0;
oom:
  h5util_set_err(err, errlen, "out of memory reading %zu samples of '%s' in '%s'", n, ds->x_name,
                 ds->path);
  return -1;
}

int data_read(data_set *ds, const uint64_t *idx, size_t n, float scale, float *x, int32_t *y,
              char *err, size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    if (idx[i] >= ds->n) {
      h5util_set_err(err, errlen,
                     "sample index %" PRIu64 " is out of range for '%s' in '%s' (%" PRIu64
                     " samples)",
                     idx[i], ds->x_name, ds->path, ds->n);
      return -1;
    }
    int64_t v = ds->labels[idx[i]];
    if (v < INT32_MIN || v > INT32_MAX) {
      h5util_set_err(err, errlen,
                     "label %" PRId64 " of sample %" PRIu64 " in '%s' of '%s' does not fit int32",
                     v, idx[i], ds->y_name, ds->path);
      return -1;
    }
  }
  for (size_t i = 0; i < n; i++) y[i] = (int32_t)ds->labels[idx[i]];

  if (ds->mem) {
    size_t row_bytes = ds->elems * ds->dsize;
    for (size_t i = 0; i < n; i++)
      row_to_float(ds, ds->mem + (size_t)idx[i] * row_bytes, scale, x + i * ds->elems);
    return 0;
  }
  h5util_quiet q;
  h5util_quiet_begin(&q);
  int rc = read_streaming(ds, idx, n, scale, x, err, errlen);
  h5util_quiet_end(&q);
  return rc;
}
