/* dataset — see dataset.h.
 *
 * This file opens (checks the types and shapes, reads the labels, places
 * the inputs in memory or sets up streaming), closes and answers the
 * getters and the label checks; dataset_read.c reads. The chunk cache is
 * chunk_cache.c's, the row conversions rowconv.c's.
 *
 * HDF5's automatic error printing is switched off around every call into
 * the library (h5util_enter) and the caller's handler restored afterwards:
 * a failure becomes one line in the caller's err buffer, never a stack dump
 * on stderr.
 */
#include "dataset.h"
#include "dataset_internal.h"
#include "h5guard.h"
#include "h5util.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many dataset names are listed when one is not found. */
#define LIST_CAP 20

static char *dup_str(const char *s) {
  size_t len = strlen(s) + 1;
  char *d = malloc(len);
  if (d) memcpy(d, s, len);
  return d;
}

size_t data_dtype_size(data_dtype t) {
  switch (t) {
    case DATA_U8:
    case DATA_I8: return 1;
    case DATA_U16:
    case DATA_I16:
    case DATA_F16: return 2;
    case DATA_F32:
    case DATA_I32: return 4;
    case DATA_F64: return 8;
  }
  return 4;
}

const char *data_dtype_name(data_dtype t) {
  switch (t) {
    case DATA_U8: return "uint8";
    case DATA_F32: return "float32";
    case DATA_I8: return "int8";
    case DATA_U16: return "uint16";
    case DATA_I16: return "int16";
    case DATA_F16: return "float16";
    case DATA_F64: return "float64";
    case DATA_I32: return "int32";
  }
  return "?";
}

/* Writes "dataset 'NAME' not found in 'PATH'; datasets in the file: ..." */
static void not_found(hid_t file, const char *path, const char *name, char *err, size_t errlen) {
  char **names = NULL;
  size_t count = 0;
  /* A failed walk still names the datasets it found before failing. */
  (void)h5util_list_datasets(file, path, &names, &count, NULL, 0);

  char list[2048] = "";
  size_t used = 0;
  size_t shown = count < LIST_CAP ? count : LIST_CAP;
  for (size_t i = 0; i < shown && used < sizeof list; i++) {
    int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (count > shown && used < sizeof list)
    snprintf(list + used, sizeof list - used, ", ... (%zu more)", count - shown);

  if (count == 0)
    h5util_set_err(err, errlen, "dataset '%s' not found in '%s'; the file has no datasets", name,
                   path);
  else
    h5util_set_err(err, errlen, "dataset '%s' not found in '%s'; datasets in the file: %s", name,
                   path, list);
  h5util_free_names(names, count);
}

/* Opens dataset `name`, or explains why not (missing, not a dataset, a
 * link refused), through the guarded access list (h5guard_dapl), and
 * checks its storage against its shape (h5guard_storage). */
hid_t data_open_dataset(hid_t file, const char *path, const char *name, uint64_t file_size,
                          char *err, size_t errlen) {
  char why[160];
  hid_t dapl = h5guard_dapl(path, why);
  hid_t id = dapl >= 0 ? H5Dopen2(file, name, dapl) : H5I_INVALID_HID;
  H5O_info_t info;
  if (id >= 0) {
    if (dapl >= 0) H5Pclose(dapl);
    if (h5guard_storage(id, path, name, file_size, err, errlen) == 0) return id;
    H5Dclose(id);
    return H5I_INVALID_HID;
  }
  if (why[0])
    h5util_set_err(err, errlen, "cannot open '%s' in '%s': %s", name, path, why);
  else if (dapl >= 0 && H5Oget_info_by_name2(file, name, &info, H5O_INFO_BASIC, dapl) >= 0 &&
           info.type != H5O_TYPE_DATASET)
    h5util_set_err(err, errlen, "'%s' in '%s' is not a dataset", name, path);
  else if (why[0])
    h5util_set_err(err, errlen, "cannot open '%s' in '%s': %s", name, path, why);
  else
    not_found(file, path, name, err, errlen);
  if (dapl >= 0) H5Pclose(dapl);
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

/* Samples per chunk of a chunked dataset (dimension 0 of its chunk
 * shape); 0 for a contiguous or compact one. */
static uint64_t chunk_rows_of(hid_t set) {
  uint64_t rows = 0;
  hid_t dcpl = H5Dget_create_plist(set);
  if (dcpl < 0) return 0;
  hsize_t cdims[H5S_MAX_RANK];
  if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims) > 0)
    rows = (uint64_t)cdims[0];
  H5Pclose(dcpl);
  return rows;
}

/* Refuses a dataset compressed with a filter this HDF5 cannot decode (h5py's
 * LZF, Blosc, Zstandard... without their plugins), which would otherwise
 * fail only at the first read. */
int data_check_filters(hid_t set, const char *path, const char *name, char *err, size_t errlen) {
  hid_t dcpl = H5Dget_create_plist(set);
  if (dcpl < 0) return 0; /* the read will say what is wrong */
  int n = H5Pget_nfilters(dcpl), rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    unsigned flags, cd[8], conf;
    size_t ncd = 8;
    char fname[64] = "";
    H5Z_filter_t id =
        H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof fname, fname, &conf);
    if (id >= 0 && H5Zfilter_avail(id) <= 0) {
      h5util_set_err(err, errlen,
                     "dataset '%s' in '%s' is compressed with HDF5 filter %d (%s), which this "
                     "HDF5 cannot decode; rewrite it with gzip, e.g. h5repack -f GZIP=1 IN OUT "
                     "(or set HDF5_PLUGIN_PATH to the filter's plugin)",
                     name, path, (int)id, fname[0] ? fname : "unnamed");
      rc = -1;
    }
  }
  H5Pclose(dcpl);
  return rc;
}

/* The input dtype of a stored type, with its memory type (a new handle the
 * caller closes) and width; -1 when the type is not supported. */
static int classify_input(hid_t t, data_dtype *dtype, hid_t *mem_type, size_t *dsize) {
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  hid_t native = H5I_INVALID_HID;
  if (cls == H5T_INTEGER && size <= 2) {
    int is_signed = H5Tget_sign(t) != H5T_SGN_NONE;
    *dtype = size == 1 ? (is_signed ? DATA_I8 : DATA_U8) : (is_signed ? DATA_I16 : DATA_U16);
    native = size == 1 ? (is_signed ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8)
                       : (is_signed ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16);
    *mem_type = H5Tcopy(native);
  } else if (cls == H5T_FLOAT && h5util_is_ieee_half(t)) {
    /* No native half type in C or in HDF5 1.10: keep the two bytes (in
     * native order) and convert by hand. */
    *dtype = DATA_F16;
    *mem_type = H5Tcopy(t);
    if (*mem_type >= 0 && H5Tset_order(*mem_type, H5Tget_order(H5T_NATIVE_FLOAT)) < 0) {
      H5Tclose(*mem_type);
      *mem_type = H5I_INVALID_HID;
    }
  } else if (cls == H5T_FLOAT && (size == 4 || size == 8)) {
    *dtype = size == 4 ? DATA_F32 : DATA_F64;
    *mem_type = H5Tcopy(size == 4 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE);
  } else {
    return -1;
  }
  if (*mem_type < 0) return -1;
  *dsize = H5Tget_size(*mem_type);
  return 0;
}

/* Checks the inputs' dtype and shape; fills ds->dtype, ds->elems and, in
 * ds->x, mem_type, rank, dims and row_bytes. */
static int check_inputs(data_set *ds, hid_t xset, char *err, size_t errlen) {
  hid_t t = H5Dget_type(xset);
  if (t < 0) {
    h5util_set_err(err, errlen, "cannot read the type of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  size_t dsize = 0;
  int ok = classify_input(t, &ds->dtype, &ds->x.mem_type, &dsize) == 0;
  if (!ok) {
    char tn[40];
    h5util_type_name(t, tn, sizeof tn);
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' has type %s; supported input types are uint8, int8, "
                   "uint16, int16, float16, float32 and float64",
                   ds->x_name, ds->path, tn);
  }
  H5Tclose(t);
  if (!ok) return -1;

  ds->x.rank = get_shape(xset, ds->x.dims);
  if (ds->x.rank < 0) {
    h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  if (ds->x.rank < 1) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' is a scalar (shape ()); inputs need a sample axis: "
                   "shape (N, ...)",
                   ds->x_name, ds->path);
    return -1;
  }
  size_t elems = 1;
  for (int i = 1; i < ds->x.rank; i++) {
    if (ds->x.dims[i] == 0) {
      char sh[160];
      h5util_shape_str(ds->x.dims, ds->x.rank, sh, sizeof sh);
      h5util_set_err(err, errlen, "dataset '%s' in '%s' has shape %s: an empty sample shape",
                     ds->x_name, ds->path, sh);
      return -1;
    }
    if (elems > SIZE_MAX / 8 / ds->x.dims[i]) {
      h5util_set_err(err, errlen, "dataset '%s' in '%s': samples are too large", ds->x_name,
                     ds->path);
      return -1;
    }
    elems *= (size_t)ds->x.dims[i];
  }
  ds->elems = elems;
  ds->x.row_bytes = elems * dsize;
  return 0;
}

/* Checks the labels' dtype and shape: fills ds->y but for the values. */
static int check_labels_shape(data_set *ds, hid_t yset, char *err, size_t errlen) {
  hid_t t = H5Dget_type(yset);
  if (t < 0) {
    h5util_set_err(err, errlen, "cannot read the type of '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  H5T_class_t cls = H5Tget_class(t);
  h5util_type_name(t, ds->y.type, sizeof ds->y.type);
  H5Tclose(t);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' has type %s; labels must be integers (class indices) "
                   "or floats (regression targets)",
                   ds->y_name, ds->path, ds->y.type);
    return -1;
  }
  ds->y.kind = cls == H5T_INTEGER ? DATA_LABEL_CLASS : DATA_LABEL_FLOAT;
  ds->y.rank = get_shape(yset, ds->y.dims);
  char sh[160];
  if (ds->y.rank < 0) {
    h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  h5util_shape_str(ds->y.dims, ds->y.rank, sh, sizeof sh);
  if (ds->y.rank < 1) {
    h5util_set_err(err, errlen,
                   "labels '%s' in '%s' are a scalar (shape ()); labels need a sample axis: "
                   "shape (N,) or (N, ...)",
                   ds->y_name, ds->path);
    return -1;
  }
  if (ds->y.kind == DATA_LABEL_CLASS) {
    if (!(ds->y.rank == 1 || (ds->y.rank == 2 && ds->y.dims[1] == 1))) {
      h5util_set_err(err, errlen,
                     "labels '%s' in '%s' have shape %s; integer labels are class indices of "
                     "shape (N,) or (N, 1) (store regression targets as floats)",
                     ds->y_name, ds->path, sh);
      return -1;
    }
    ds->y.elems = 1;
    return 0;
  }
  size_t elems = 1;
  for (int i = 1; i < ds->y.rank; i++) {
    if (ds->y.dims[i] == 0 || elems > SIZE_MAX / 4 / ds->y.dims[i]) {
      h5util_set_err(err, errlen, "labels '%s' in '%s' have shape %s: %s per-sample shape",
                     ds->y_name, ds->path, sh, ds->y.dims[i] == 0 ? "an empty" : "too large a");
      return -1;
    }
    elems *= (size_t)ds->y.dims[i];
  }
  ds->y.elems = elems;
  return 0;
}

/* Reads every label into memory: int64 class labels or float32 targets. */
static int read_labels(data_set *ds, hid_t yset, char *err, size_t errlen) {
  char why[160];
  size_t width = ds->y.kind == DATA_LABEL_CLASS ? sizeof *ds->y.classes : sizeof *ds->y.targets;
  if (ds->x.n > SIZE_MAX / width / ds->y.elems) {
    h5util_set_err(err, errlen, "labels '%s' in '%s' are too large for memory", ds->y_name,
                   ds->path);
    return -1;
  }
  void *buf = malloc((size_t)ds->x.n * ds->y.elems * width);
  if (!buf) {
    h5util_set_err(err, errlen, "out of memory reading '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  if (ds->y.kind == DATA_LABEL_CLASS)
    ds->y.classes = buf;
  else
    ds->y.targets = buf;
  /* HDF5's deflate filter inflates without a limit: check the chunks it
   * will decode first (h5guard.h). */
  if (h5guard_inflate(yset, 0, ds->x.n, ds->path, ds->y_name, ds->x.file_size, err, errlen) < 0)
    return -1;
  hid_t mt = ds->y.kind == DATA_LABEL_CLASS ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT;
  if (H5Dread(yset, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    h5util_set_err(err, errlen, "cannot read '%s' in '%s': %s", ds->y_name, ds->path,
                   h5util_reason(why));
    return -1;
  }
  return 0;
}

/* The inputs into ds->mem: chunk by chunk with direct reads where they
 * apply (chunk_cache.h: they decode faster than HDF5's pipeline), else in
 * one H5Dread. */
static int load_inputs(data_set *ds, hid_t xset, char *err, size_t errlen) {
  size_t row_bytes = ds->x.row_bytes;
  char why[160];
  chunk_src src = ds->x;
  chunk_cache *reader = NULL;
  src.set = xset;
  src.space = H5Dget_space(xset);
  int rc = src.space >= 0 ? 0 : -2;
  if (rc == 0 && src.chunk_rows && chunk_cache_create(&reader, &src, src.chunk_rows, 0, 0) < 0)
    rc = -2;
  unsigned char *tail = NULL;
  uint64_t rows = src.chunk_rows;
  if (rc == 0 && reader && chunk_cache_direct(reader)) {
    for (uint64_t c = 0, start = 0; rc == 0 && start < ds->x.n; c++, start += rows) {
      unsigned char *dst = ds->mem + (size_t)start * row_bytes;
      if (ds->x.n - start < rows) /* the last chunk, partial: through a whole one */
        dst = tail = malloc((size_t)rows * row_bytes);
      if (!dst)
        rc = -2;
      else if (chunk_cache_read(reader, c, dst, err, errlen) < 0)
        rc = -1;
      else if (dst == tail)
        memcpy(ds->mem + (size_t)start * row_bytes, tail, (size_t)(ds->x.n - start) * row_bytes);
    }
  } else if (rc == 0 && h5guard_inflate(xset, 0, ds->x.n, ds->path, ds->x_name, ds->x.file_size,
                                        err, errlen) < 0) {
    rc = -1;
  } else if (rc == 0 && H5Dread(xset, ds->x.mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->mem) < 0) {
    h5util_set_err(err, errlen, "cannot read '%s' in '%s' (truncated or damaged?): %s", ds->x_name,
                   ds->path, h5util_reason(why));
    rc = -1;
  }
  if (rc == -2)
    h5util_set_err(err, errlen, "out of memory reading '%s' in '%s'", ds->x_name, ds->path);
  free(tail);
  chunk_cache_free(reader);
  if (src.space >= 0) H5Sclose(src.space);
  return rc < 0 ? -1 : 0;
}

/* Streamed, a chunked set is read a whole chunk (of samples) at a time
 * into midscale's own chunk cache (chunk_cache.h), which HDF5's would
 * only duplicate: it is turned off (a read that covers whole chunks then
 * goes straight to the caller's buffer). */
static hid_t streaming_dapl(hid_t xset, const char *path, char *why) {
  hid_t dcpl = H5Dget_create_plist(xset);
  int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
  if (dcpl >= 0) H5Pclose(dcpl);
  hid_t dapl = h5guard_dapl(path, why);
  if (dapl >= 0 && chunked) H5Pset_chunk_cache(dapl, 0, 0, 1.0);
  return dapl;
}

/* "1.50 GiB" */
static void bytes_str(double b, char *buf, size_t len) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, u++;
  snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", b, units[u]);
}

void data_hdf5_lock(void) { h5util_lock(); }
void data_allow_links(int on) { h5guard_set_allow_links(on); }
void data_hdf5_unlock(void) { h5util_unlock(); }

data_set *data_set_new(const char *path, const char *x_name, const char *y_name,
                       uint64_t file_size) {
  data_set *ds = calloc(1, sizeof *ds);
  if (!ds) return NULL;
  ds->file = ds->x.set = ds->x.space = ds->x.mem_type = H5I_INVALID_HID;
  ds->path = dup_str(path);
  ds->x_name = dup_str(x_name);
  ds->y_name = y_name ? dup_str(y_name) : NULL;
  if (!ds->path || !ds->x_name || (y_name && !ds->y_name)) {
    data_close(ds);
    return NULL;
  }
  ds->x.path = ds->path;
  ds->x.name = ds->x_name;
  ds->x.file_size = file_size;
  return ds;
}

int data_open(data_set **out, const char *path, const char *x_name, const char *y_name,
              size_t mem_budget, char *err, size_t errlen) {
  return data_open_cached(out, path, x_name, y_name, mem_budget, DATA_CACHE_AUTO, err, errlen);
}

/* Streams the inputs: reopens them with the streaming access list, keeps
 * the file open in ds, and sets up the chunk cache when the set is chunked
 * or fits the budget in blocks (over the budget, a global shuffle would
 * read a whole block per sample: such a set is read a run at a time).
 * *xset is closed (and set invalid) first: while a dataset is open, HDF5
 * shares its chunk cache with every new handle and ignores the new access
 * list. On success ds owns *file. */
static int open_streamed(data_set *ds, hid_t *file, hid_t *xset, size_t mem_budget, char *err,
                         size_t errlen) {
  char why[160], link_why[160];
  hid_t dapl = streaming_dapl(*xset, ds->path, link_why);
  H5Dclose(*xset);
  *xset = H5I_INVALID_HID;
  ds->x.set = H5Dopen2(*file, ds->x_name, dapl >= 0 ? dapl : H5P_DEFAULT);
  if (dapl >= 0) H5Pclose(dapl);
  if (ds->x.set < 0) {
    h5util_set_err(err, errlen, "cannot open '%s' in '%s': %s", ds->x_name, ds->path,
                   h5util_reason(why));
    return -1;
  }
  ds->x.space = H5Dget_space(ds->x.set);
  if (ds->x.space < 0) {
    h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  ds->file = *file;
  *file = H5I_INVALID_HID;
  uint64_t rows = ds->x.chunk_rows;
  if (!rows && ds->fits_budget) rows = chunk_cache_block_rows(&ds->x);
  if (rows && chunk_cache_create(&ds->cache, &ds->x, rows, mem_budget, 1) < 0) {
    h5util_set_err(err, errlen, "out of memory opening '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  return 0;
}

/* In memory or streamed (dataset.h, "Access modes"). */
static int place_inputs(data_set *ds, hid_t *file, hid_t *xset, size_t mem_budget, data_cache cache,
                        char *err, size_t errlen) {
  size_t row_bytes = ds->x.row_bytes;
  int fits = ds->x.n <= SIZE_MAX / row_bytes && (size_t)ds->x.n * row_bytes <= mem_budget;
  ds->fits_budget = fits;
  if (cache == DATA_CACHE_MEMORY && !fits) {
    char need[32], have[32];
    bytes_str((double)ds->x.n * (double)row_bytes, need, sizeof need);
    bytes_str((double)mem_budget, have, sizeof have);
    h5util_set_err(err, errlen,
                   "data.cache is memory but the inputs '%s' in '%s' take %s, more than the "
                   "memory budget of %s per rank; use data.cache: auto or stream",
                   ds->x_name, ds->path, need, have);
    return -1;
  }
  if (!fits || cache == DATA_CACHE_STREAM)
    return open_streamed(ds, file, xset, mem_budget, err, errlen);
  ds->mem = chunk_big_alloc((size_t)ds->x.n * row_bytes);
  if (!ds->mem) {
    h5util_set_err(err, errlen, "out of memory opening '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  return load_inputs(ds, *xset, err, errlen);
}

int data_open_cached(data_set **out, const char *path, const char *x_name, const char *y_name,
                     size_t mem_budget, data_cache cache, char *err, size_t errlen) {
  h5util_guard q;
  char why[160];
  int rc = -1;
  data_set *ds = NULL;
  hid_t file = H5I_INVALID_HID, xset = H5I_INVALID_HID, yset = H5I_INVALID_HID;

  *out = NULL;
  h5util_enter(&q);
  uint64_t file_size = 0;
  if (h5util_probe_file(path, &file_size, err, errlen) < 0) goto done;

  if (!(ds = data_set_new(path, x_name, y_name, file_size))) goto oom;

  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    h5util_set_err(err, errlen, "cannot open '%s' as HDF5 (truncated or damaged?): %s", path,
                   h5util_reason(why));
    goto done;
  }
  xset = data_open_dataset(file, path, x_name, file_size, err, errlen);
  if (xset < 0) goto done;
  if (y_name && (yset = data_open_dataset(file, path, y_name, file_size, err, errlen)) < 0) goto done;
  if (data_check_filters(xset, path, x_name, err, errlen) < 0) goto done;
  if (y_name && data_check_filters(yset, path, y_name, err, errlen) < 0) goto done;
  if (check_inputs(ds, xset, err, errlen) < 0) goto done;
  ds->x.chunk_rows = chunk_rows_of(xset);
  if (y_name && check_labels_shape(ds, yset, err, errlen) < 0) goto done;
  ds->x.n = ds->x.dims[0];
  if (y_name && ds->x.n != ds->y.dims[0]) {
    h5util_set_err(err, errlen,
                   "'%s' has %" PRIu64
                   " samples but '%s' has %llu in '%s'; inputs and labels "
                   "must have the same length",
                   x_name, ds->x.n, y_name, (unsigned long long)ds->y.dims[0], path);
    goto done;
  }
  if (ds->x.n == 0) {
    h5util_set_err(err, errlen, "'%s' in '%s' has no samples", x_name, path);
    goto done;
  }
  if (y_name && read_labels(ds, yset, err, errlen) < 0) goto done;
  if (place_inputs(ds, &file, &xset, mem_budget, cache, err, errlen) < 0) goto done;
  *out = ds;
  ds = NULL;
  rc = 0;
  goto done;

oom:
  h5util_set_err(err, errlen, "out of memory opening '%s' in '%s'", x_name, path);
done:
  if (yset >= 0) H5Dclose(yset);
  if (xset >= 0) H5Dclose(xset);
  if (file >= 0) H5Fclose(file);
  data_close(ds);
  h5util_leave(&q);
  return rc;
}

void data_close(data_set *ds) {
  if (!ds) return;
  chunk_cache_free(ds->cache);
  h5util_guard q;
  h5util_enter(&q);
  if (ds->x.space >= 0) H5Sclose(ds->x.space);
  if (ds->x.set >= 0) H5Dclose(ds->x.set);
  if (ds->file >= 0) H5Fclose(ds->file);
  if (ds->x.mem_type >= 0) H5Tclose(ds->x.mem_type);
  h5util_leave(&q);
  free(ds->scratch.rows);
  free(ds->scratch.order);
  if (ds->mem) chunk_big_free(ds->mem, (size_t)ds->x.n * ds->x.row_bytes);
  free(ds->y.classes);
  free(ds->y.targets);
  free(ds->tok.ids);
  free(ds->y_name);
  free(ds->x_name);
  free(ds->path);
  free(ds);
}

/* The node-shared chunk cache (dataset.h) is the chunk cache's. */
size_t data_shared_cache_bytes(const data_set *ds) {
  return ds->cache ? chunk_cache_shared_bytes(ds->cache) : 0;
}

size_t data_shared_cache_zeroed(const data_set *ds) {
  return ds->cache ? chunk_cache_shared_zeroed(ds->cache) : 0;
}

void data_share_cache(data_set *ds, void *mem) { chunk_cache_share(ds->cache, mem); }

uint64_t data_chunks_read(const data_set *ds) {
  return ds->cache ? chunk_cache_chunks_read(ds->cache) : 0;
}

uint64_t data_count(const data_set *ds) { return ds->x.n; }
size_t data_sample_elems(const data_set *ds) { return ds->elems; }
data_dtype data_input_dtype(const data_set *ds) { return ds->dtype; }
int data_in_memory(const data_set *ds) { return ds->mem != NULL || ds->tok.ids != NULL; }
uint64_t data_chunk_samples(const data_set *ds) { return ds->x.chunk_rows; }
int data_direct_chunks(const data_set *ds) { return ds->cache ? chunk_cache_direct(ds->cache) : 0; }
int data_fits_budget(const data_set *ds) { return ds->fits_budget; }
const char *data_path(const data_set *ds) { return ds->path; }
const char *data_x_name(const data_set *ds) { return ds->x_name; }
const char *data_y_name(const data_set *ds) { return ds->y_name; }
data_label_kind data_label_kind_of(const data_set *ds) { return ds->y.kind; }
size_t data_label_elems(const data_set *ds) { return ds->y.elems; }

int data_sample_shape(const data_set *ds, uint64_t *dims, int max_dims) {
  int n = ds->x.rank - 1;
  for (int i = 0; i < n && i < max_dims; i++) dims[i] = (uint64_t)ds->x.dims[i + 1];
  return n;
}

int data_label_shape(const data_set *ds, uint64_t *dims, int max_dims) {
  if (ds->tok.ids) {
    if (max_dims > 0) dims[0] = ds->tok.seq_len;
    return 1;
  }
  if (ds->y.kind == DATA_LABEL_CLASS) return 0;
  int n = ds->y.rank - 1;
  for (int i = 0; i < n && i < max_dims; i++) dims[i] = (uint64_t)ds->y.dims[i + 1];
  return n;
}

int data_check_labels(data_set *ds, int n_classes, char *err, size_t errlen) {
  if (ds->tok.ids) return data_tokens_check_vocab(ds, n_classes, err, errlen);
  if (ds->y.kind != DATA_LABEL_CLASS) {
    h5util_set_err(err, errlen,
                   "labels '%s' in '%s' are %s regression targets, but the model is a "
                   "classifier (%d classes): classification needs integer class indices",
                   ds->y_name, ds->path, ds->y.type, n_classes);
    return -1;
  }
  for (uint64_t i = 0; i < ds->x.n; i++) {
    int64_t v = ds->y.classes[i];
    if (v < 0) {
      h5util_set_err(err, errlen,
                     "label %" PRId64 " of sample %" PRIu64
                     " in '%s' of '%s' is negative; "
                     "class labels are indices in [0, %d)",
                     v, i, ds->y_name, ds->path, n_classes);
      return -1;
    }
    if (v >= n_classes) {
      h5util_set_err(err, errlen,
                     "label %" PRId64 " of sample %" PRIu64 " in '%s' of '%s' is outside [0, %d)",
                     v, i, ds->y_name, ds->path, n_classes);
      return -1;
    }
  }
  return 0;
}

int data_check_targets(const data_set *ds, size_t n_outputs, char *err, size_t errlen) {
  if (ds->y.elems == n_outputs) return 0;
  char sh[160];
  h5util_shape_str(ds->y.dims, ds->y.rank, sh, sizeof sh);
  h5util_set_err(err, errlen,
                 "labels '%s' in '%s' have shape %s: %zu target value%s per sample, but the "
                 "model has %zu output%s",
                 ds->y_name, ds->path, sh, ds->y.elems, ds->y.elems == 1 ? "" : "s", n_outputs,
                 n_outputs == 1 ? "" : "s");
  return -1;
}
