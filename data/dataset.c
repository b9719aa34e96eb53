#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE, madvise */
/* dataset — see dataset.h.
 *
 * HDF5's automatic error printing is switched off around every call into the
 * library (and the caller's handler restored afterwards): a failure becomes
 * one line in the caller's err buffer, never a stack dump on stderr.
 * *
 * This file opens and checks; dataset_read.c reads.
 */
#include "dataset.h"
#include "dataset_internal.h"
#include "h5util.h"

#include <assert.h>
#include <hdf5.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Rows of a contiguous set are cached in blocks of about this many bytes. */
#define UNCHUNKED_CACHE_BYTES ((size_t)1 << 20)

/* data_big_alloc aligns to this (the x86-64 and arm64 huge page). */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

/* At most this many dataset names are listed when one is not found. */
#define LIST_CAP 20

void *data_big_alloc(size_t bytes) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t keep = (bytes ? bytes : 1) + page - 1;
  keep -= keep % page;
  if (keep > SIZE_MAX - HUGE_PAGE_BYTES) return NULL;
  size_t len = keep + HUGE_PAGE_BYTES;
  unsigned char *m =
      mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return NULL;
  size_t head = (HUGE_PAGE_BYTES - (uintptr_t)m % HUGE_PAGE_BYTES) % HUGE_PAGE_BYTES;
  if (head) munmap(m, head);
  if (len - head > keep) munmap(m + head + keep, len - head - keep);
#ifdef MADV_HUGEPAGE
  madvise(m + head, keep, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages */
#endif
  return m + head;
}

void data_big_free(void *p, size_t bytes) {
  if (p) munmap(p, bytes ? bytes : 1);
}

static char *dup_str(const char *s) {
  size_t len = strlen(s) + 1;
  char *d = malloc(len);
  if (d) memcpy(d, s, len);
  return d;
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
  }
  return "?";
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
static int check_filters(hid_t set, const char *path, const char *name, char *err, size_t errlen) {
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

/* Checks the inputs' dtype and shape; fills ds->dtype, dsize, mem_type,
 * elems, xrank, xdims. */
static int check_inputs(data_set *ds, hid_t xset, char *err, size_t errlen) {
  hid_t t = H5Dget_type(xset);
  if (t < 0) {
    h5util_set_err(err, errlen, "cannot read the type of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  int ok = classify_input(t, &ds->dtype, &ds->mem_type, &ds->dsize) == 0;
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

  ds->xrank = get_shape(xset, ds->xdims);
  if (ds->xrank < 0) {
    h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", ds->x_name, ds->path);
    return -1;
  }
  if (ds->xrank < 1) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' is a scalar (shape ()); inputs need a sample axis: "
                   "shape (N, ...)",
                   ds->x_name, ds->path);
    return -1;
  }
  size_t elems = 1;
  for (int i = 1; i < ds->xrank; i++) {
    if (ds->xdims[i] == 0) {
      char sh[160];
      h5util_shape_str(ds->xdims, ds->xrank, sh, sizeof sh);
      h5util_set_err(err, errlen, "dataset '%s' in '%s' has shape %s: an empty sample shape",
                     ds->x_name, ds->path, sh);
      return -1;
    }
    if (elems > SIZE_MAX / 8 / ds->xdims[i]) {
      h5util_set_err(err, errlen, "dataset '%s' in '%s': samples are too large", ds->x_name,
                     ds->path);
      return -1;
    }
    elems *= (size_t)ds->xdims[i];
  }
  ds->elems = elems;
  return 0;
}

/* Checks the labels' dtype and shape: fills ds->lkind, lelems, lrank,
 * ldims, ltype. */
static int check_labels_shape(data_set *ds, hid_t yset, char *err, size_t errlen) {
  hid_t t = H5Dget_type(yset);
  if (t < 0) {
    h5util_set_err(err, errlen, "cannot read the type of '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  H5T_class_t cls = H5Tget_class(t);
  h5util_type_name(t, ds->ltype, sizeof ds->ltype);
  H5Tclose(t);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    h5util_set_err(err, errlen,
                   "dataset '%s' in '%s' has type %s; labels must be integers (class indices) "
                   "or floats (regression targets)",
                   ds->y_name, ds->path, ds->ltype);
    return -1;
  }
  ds->lkind = cls == H5T_INTEGER ? DATA_LABEL_CLASS : DATA_LABEL_FLOAT;
  ds->lrank = get_shape(yset, ds->ldims);
  char sh[160];
  if (ds->lrank < 0) {
    h5util_set_err(err, errlen, "cannot read the shape of '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  h5util_shape_str(ds->ldims, ds->lrank, sh, sizeof sh);
  if (ds->lrank < 1) {
    h5util_set_err(err, errlen,
                   "labels '%s' in '%s' are a scalar (shape ()); labels need a sample axis: "
                   "shape (N,) or (N, ...)",
                   ds->y_name, ds->path);
    return -1;
  }
  if (ds->lkind == DATA_LABEL_CLASS) {
    if (!(ds->lrank == 1 || (ds->lrank == 2 && ds->ldims[1] == 1))) {
      h5util_set_err(err, errlen,
                     "labels '%s' in '%s' have shape %s; integer labels are class indices of "
                     "shape (N,) or (N, 1) (store regression targets as floats)",
                     ds->y_name, ds->path, sh);
      return -1;
    }
    ds->lelems = 1;
    return 0;
  }
  size_t elems = 1;
  for (int i = 1; i < ds->lrank; i++) {
    if (ds->ldims[i] == 0 || elems > SIZE_MAX / 4 / ds->ldims[i]) {
      h5util_set_err(err, errlen, "labels '%s' in '%s' have shape %s: %s per-sample shape",
                     ds->y_name, ds->path, sh, ds->ldims[i] == 0 ? "an empty" : "too large a");
      return -1;
    }
    elems *= (size_t)ds->ldims[i];
  }
  ds->lelems = elems;
  return 0;
}

/* Reads every label into memory: int64 class labels or float32 targets. */
static int read_labels(data_set *ds, hid_t yset, char *err, size_t errlen) {
  char why[160];
  size_t width = ds->lkind == DATA_LABEL_CLASS ? sizeof *ds->labels : sizeof *ds->targets;
  if (ds->n > SIZE_MAX / width / ds->lelems) {
    h5util_set_err(err, errlen, "labels '%s' in '%s' are too large for memory", ds->y_name,
                   ds->path);
    return -1;
  }
  void *buf = malloc((size_t)ds->n * ds->lelems * width);
  if (!buf) {
    h5util_set_err(err, errlen, "out of memory reading '%s' in '%s'", ds->y_name, ds->path);
    return -1;
  }
  if (ds->lkind == DATA_LABEL_CLASS)
    ds->labels = buf;
  else
    ds->targets = buf;
  hid_t mt = ds->lkind == DATA_LABEL_CLASS ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT;
  if (H5Dread(yset, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    h5util_set_err(err, errlen, "cannot read '%s' in '%s': %s", ds->y_name, ds->path,
                   h5util_reason(why));
    return -1;
  }
  return 0;
}

/* The chunk cache of a streamed set (dataset_internal.h): its HDF5
 * chunks, or for a contiguous set that fits the budget blocks of about
 * UNCHUNKED_CACHE_BYTES (over the budget, a global shuffle would read a
 * whole block per sample: such a set is read a run of samples at a time).
 * As many chunks as the budget holds, at least 2, at most all of them.
 * The slots' memory is one mapping whose pages are committed as chunks are
 * first read. */
static int chunk_cache_init(data_set *ds, size_t row_bytes) {
  ds->cache_rows = ds->chunk_rows;
  if (!ds->cache_rows && ds->fits_budget) {
    ds->cache_rows = UNCHUNKED_CACHE_BYTES / row_bytes;
    if (ds->cache_rows < 1) ds->cache_rows = 1;
    if (ds->cache_rows > ds->n) ds->cache_rows = ds->n;
  }
  if (!ds->cache_rows) return 0;
  ds->n_chunks = (ds->n + ds->cache_rows - 1) / ds->cache_rows;
  size_t chunk_bytes = (size_t)ds->cache_rows * row_bytes;
  uint64_t slots = ds->mem_budget / (chunk_bytes ? chunk_bytes : 1);
  if (slots < 2) slots = 2;
  if (slots > ds->n_chunks) slots = ds->n_chunks;
  if (slots > INT32_MAX) slots = INT32_MAX;
  ds->cache_slots = (int)slots;
  ds->chunk_slot = malloc(sizeof *ds->chunk_slot * (size_t)ds->n_chunks);
  ds->slot_buf = calloc(slots, sizeof *ds->slot_buf);
  ds->slot_chunk = malloc(sizeof *ds->slot_chunk * (size_t)slots);
  ds->slot_used = calloc(slots, sizeof *ds->slot_used);
  if (chunk_bytes && slots <= SIZE_MAX / chunk_bytes) {
    ds->arena_bytes = (size_t)slots * chunk_bytes;
    ds->arena = data_big_alloc(ds->arena_bytes);
  }
  if (!ds->chunk_slot || !ds->slot_buf || !ds->slot_chunk || !ds->slot_used || !ds->arena)
    return -1;
  for (uint64_t c = 0; c < ds->n_chunks; c++) ds->chunk_slot[c] = -1;
  for (uint64_t k = 0; k < slots; k++) {
    ds->slot_chunk[k] = UINT64_MAX;
    ds->slot_buf[k] = ds->arena + k * chunk_bytes;
  }
  return 0;
}

/* The shared chunk cache (dataset.h): the state words, then the chunks
 * from the next page on. */
static size_t shared_states_bytes(const data_set *ds) {
  size_t b = (size_t)ds->n_chunks * sizeof(uint32_t);
  return (b + 4095) / 4096 * 4096;
}

size_t data_shared_cache_bytes(const data_set *ds) {
  if (!ds->cache_rows || ds->chunk_state || (uint64_t)ds->cache_slots != ds->n_chunks ||
      ds->n_chunks == 0)
    return 0;
  return shared_states_bytes(ds) + ds->arena_bytes;
}

size_t data_shared_cache_zeroed(const data_set *ds) { return shared_states_bytes(ds); }

/* Processes share the state words: their atomics must not hide a lock. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

void data_share_cache(data_set *ds, void *mem) {
  assert((uint64_t)ds->cache_slots == ds->n_chunks); /* data_shared_cache_bytes > 0 */
  ds->chunk_state = mem;
  ds->shared_chunks = (unsigned char *)mem + shared_states_bytes(ds);
  /* Slot c (already arena + c chunks, chunk_cache_init) holds chunk c; a
   * chunk read before (data_check_finite) is fetched again through the
   * shared states. */
  for (uint64_t c = 0; c < ds->n_chunks; c++) {
    ds->slot_chunk[c] = c;
    ds->chunk_slot[c] = -1; /* until this process has it */
  }
}

uint64_t data_chunks_read(const data_set *ds) { return ds->chunks_read; }

/* Sets ds->direct when the streamed chunks of ds->xset can be read as
 * stored and decoded by midscale (dataset_internal.h): chunks of whole
 * samples, the stored type identical to the memory type (native order),
 * and a pipeline of at most the shuffle filter then deflate. Anything
 * else (Fletcher32, szip, plugins, big-endian data) stays with HDF5. */
static int direct_chunks_init(data_set *ds) {
  ds->shuffle_at = ds->deflate_at = -1;
  if (!ds->chunk_rows || ds->cache_rows != ds->chunk_rows) return 0;
  hid_t dcpl = H5Dget_create_plist(ds->xset), ftype = H5Dget_type(ds->xset);
  hsize_t cdims[H5S_MAX_RANK];
  int ok = dcpl >= 0 && ftype >= 0 && H5Tequal(ftype, ds->mem_type) > 0 &&
           H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims) == ds->xrank;
  for (int i = 1; ok && i < ds->xrank; i++) ok = cdims[i] == ds->xdims[i];
  int n = ok ? H5Pget_nfilters(dcpl) : -1;
  ok = ok && n >= 0 && n <= 2;
  for (int i = 0; ok && i < n; i++) {
    unsigned flags, cd[8];
    size_t ncd = 8;
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
    if (id == H5Z_FILTER_SHUFFLE && i == 0 && ncd >= 1 && cd[0] >= 1) {
      ds->shuffle_at = i;
      ds->shuffle_size = cd[0];
    } else if (id == H5Z_FILTER_DEFLATE && i == n - 1)
      ds->deflate_at = i;
    else
      ok = 0;
  }
  if (ftype >= 0) H5Tclose(ftype);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (!ok) return 0;
  if (ds->deflate_at >= 0 && !(ds->inflater = libdeflate_alloc_decompressor())) return -1;
  ds->direct = 1;
  return 0;
}

/* The inputs into ds->mem: chunk by chunk with the direct reads where they
 * apply (dataset_internal.h; Fashion-MNIST's 47 MB in 0.13 s against 0.31 s
 * for one H5Dread here), else in one H5Dread. */
static int load_inputs(data_set *ds, hid_t xset, char *err, size_t errlen) {
  size_t row_bytes = ds->elems * ds->dsize;
  char why[160];
  ds->xset = xset;
  ds->xspace = H5Dget_space(xset);
  ds->cache_rows = ds->chunk_rows;
  int rc = ds->xspace >= 0 && direct_chunks_init(ds) == 0 ? 0 : -2;
  unsigned char *tail = NULL;
  if (rc == 0 && ds->direct) {
    for (uint64_t c = 0, start = 0; rc == 0 && start < ds->n; c++, start += ds->cache_rows) {
      unsigned char *dst = ds->mem + (size_t)start * row_bytes;
      if (ds->n - start < ds->cache_rows) /* the last chunk, partial: through a whole one */
        dst = tail = malloc((size_t)ds->cache_rows * row_bytes);
      if (!dst)
        rc = -2;
      else if (data_read_chunk(ds, c, dst, err, errlen) < 0)
        rc = -1;
      else if (dst == tail)
        memcpy(ds->mem + (size_t)start * row_bytes, tail, (size_t)(ds->n - start) * row_bytes);
    }
  } else if (rc == 0 && H5Dread(xset, ds->mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->mem) < 0) {
    h5util_set_err(err, errlen, "cannot read '%s' in '%s' (truncated or damaged?): %s", ds->x_name,
                   ds->path, h5util_reason(why));
    rc = -1;
  }
  if (rc == -2)
    h5util_set_err(err, errlen, "out of memory reading '%s' in '%s'", ds->x_name, ds->path);
  /* Back to an in-memory set: no stream state. */
  free(tail);
  if (ds->xspace >= 0) H5Sclose(ds->xspace);
  ds->xset = ds->xspace = H5I_INVALID_HID;
  ds->cache_rows = 0;
  ds->direct = 0;
  free(ds->zbuf);
  free(ds->unshuf);
  if (ds->inflater) libdeflate_free_decompressor(ds->inflater);
  ds->zbuf = ds->unshuf = NULL;
  ds->zbuf_cap = 0;
  ds->inflater = NULL;
  return rc < 0 ? -1 : 0;
}

/* Streamed, a chunked set is read a whole chunk (of samples) at a time
 * into midscale's own chunk cache (chunk_cache_init), which HDF5's would
 * only duplicate: it is turned off (a read that covers whole chunks then
 * goes straight to the caller's buffer). */
static hid_t streaming_dapl(hid_t xset) {
  hid_t dcpl = H5Dget_create_plist(xset);
  int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
  if (dcpl >= 0) H5Pclose(dcpl);
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl >= 0 && chunked) H5Pset_chunk_cache(dapl, 0, 0, 1.0);
  return dapl;
}

int data_cache_parse(const char *name, data_cache *out) {
  static const char *const names[] = {"auto", "memory", "stream"};
  for (int i = 0; i < 3; i++)
    if (strcmp(name, names[i]) == 0) {
      *out = (data_cache)i;
      return 0;
    }
  return -1;
}

/* "1.50 GiB" */
static void bytes_str(double b, char *buf, size_t len) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, u++;
  snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", b, units[u]);
}

void data_hdf5_lock(void) { h5util_lock(); }
void data_hdf5_unlock(void) { h5util_unlock(); }

int data_open(data_set **out, const char *path, const char *x_name, const char *y_name,
              size_t mem_budget, char *err, size_t errlen) {
  return data_open_cached(out, path, x_name, y_name, mem_budget, DATA_CACHE_AUTO, err, errlen);
}

int data_open_cached(data_set **out, const char *path, const char *x_name, const char *y_name,
                     size_t mem_budget, data_cache cache, char *err, size_t errlen) {
  h5util_guard q;
  char why[160];
  int rc = -1;
  data_set *ds = NULL;
  hid_t file = H5I_INVALID_HID, xset = H5I_INVALID_HID, yset = H5I_INVALID_HID;
  hid_t stream_set = H5I_INVALID_HID, stream_space = H5I_INVALID_HID;

  *out = NULL;
  h5util_enter(&q);
  if (h5util_probe_file(path, err, errlen) < 0) goto done;

  ds = calloc(1, sizeof *ds);
  if (!ds) goto oom;
  ds->file = ds->xset = ds->xspace = ds->mem_type = H5I_INVALID_HID;
  ds->path = dup_str(path);
  ds->x_name = dup_str(x_name);
  ds->y_name = dup_str(y_name);
  if (!ds->path || !ds->x_name || !ds->y_name) goto oom;

  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    h5util_set_err(err, errlen, "cannot open '%s' as HDF5 (truncated or damaged?): %s", path,
                   h5util_reason(why));
    goto done;
  }
  xset = open_dataset(file, path, x_name, err, errlen);
  if (xset < 0) goto done;
  yset = open_dataset(file, path, y_name, err, errlen);
  if (yset < 0) goto done;
  if (check_filters(xset, path, x_name, err, errlen) < 0) goto done;
  if (check_filters(yset, path, y_name, err, errlen) < 0) goto done;
  if (check_inputs(ds, xset, err, errlen) < 0) goto done;
  ds->chunk_rows = chunk_rows_of(xset);
  if (check_labels_shape(ds, yset, err, errlen) < 0) goto done;
  ds->n = ds->xdims[0];
  if (ds->n != ds->ldims[0]) {
    h5util_set_err(err, errlen,
                   "'%s' has %" PRIu64
                   " samples but '%s' has %llu in '%s'; inputs and labels "
                   "must have the same length",
                   x_name, ds->n, y_name, (unsigned long long)ds->ldims[0], path);
    goto done;
  }
  if (ds->n == 0) {
    h5util_set_err(err, errlen, "'%s' in '%s' has no samples", x_name, path);
    goto done;
  }
  if (read_labels(ds, yset, err, errlen) < 0) goto done;

  size_t row_bytes = ds->elems * ds->dsize;
  int fits = ds->n <= SIZE_MAX / row_bytes && (size_t)ds->n * row_bytes <= mem_budget;
  ds->fits_budget = fits;
  if (cache == DATA_CACHE_MEMORY && !fits) {
    char need[32], have[32];
    bytes_str((double)ds->n * (double)row_bytes, need, sizeof need);
    bytes_str((double)mem_budget, have, sizeof have);
    h5util_set_err(err, errlen,
                   "data.cache is memory but the inputs '%s' in '%s' take %s, more than the "
                   "memory budget of %s per rank; use data.cache: auto or stream",
                   x_name, path, need, have);
    goto done;
  }
  if (fits && cache != DATA_CACHE_STREAM) {
    ds->mem = data_big_alloc((size_t)ds->n * row_bytes);
    if (!ds->mem) goto oom;
    if (load_inputs(ds, xset, err, errlen) < 0) goto done;
  } else {
    /* Reopen the inputs with the access list for streaming. The first
     * handle must be closed first: while a dataset is open, HDF5 shares its
     * chunk cache with every new handle and ignores the new access list. */
    hid_t dapl = streaming_dapl(xset);
    H5Dclose(xset);
    xset = H5I_INVALID_HID;
    stream_set = H5Dopen2(file, x_name, dapl >= 0 ? dapl : H5P_DEFAULT);
    if (dapl >= 0) H5Pclose(dapl);
    if (stream_set < 0) {
      h5util_set_err(err, errlen, "cannot open '%s' in '%s': %s", x_name, path, h5util_reason(why));
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
    ds->mem_budget = mem_budget;
    if (chunk_cache_init(ds, row_bytes) < 0 || direct_chunks_init(ds) < 0) goto oom;
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
  h5util_leave(&q);
  return rc;
}

void data_close(data_set *ds) {
  if (!ds) return;
  h5util_guard q;
  h5util_enter(&q);
  if (ds->xspace >= 0) H5Sclose(ds->xspace);
  if (ds->xset >= 0) H5Dclose(ds->xset);
  if (ds->file >= 0) H5Fclose(ds->file);
  if (ds->mem_type >= 0) H5Tclose(ds->mem_type);
  h5util_leave(&q);
  data_big_free(ds->arena, ds->arena_bytes);
  free(ds->slot_buf);
  free(ds->slot_chunk);
  free(ds->slot_used);
  free(ds->chunk_slot);
  free(ds->zbuf);
  free(ds->unshuf);
  if (ds->inflater) libdeflate_free_decompressor(ds->inflater);
  free(ds->rows);
  free(ds->order);
  if (ds->mem) data_big_free(ds->mem, (size_t)ds->n * ds->elems * ds->dsize);
  free(ds->labels);
  free(ds->targets);
  free(ds->y_name);
  free(ds->x_name);
  free(ds->path);
  free(ds);
}

uint64_t data_count(const data_set *ds) { return ds->n; }
size_t data_sample_elems(const data_set *ds) { return ds->elems; }
data_dtype data_input_dtype(const data_set *ds) { return ds->dtype; }
int data_in_memory(const data_set *ds) { return ds->mem != NULL; }
uint64_t data_chunk_samples(const data_set *ds) { return ds->chunk_rows; }
int data_direct_chunks(const data_set *ds) { return ds->direct; }
int data_fits_budget(const data_set *ds) { return ds->fits_budget; }
const char *data_path(const data_set *ds) { return ds->path; }
const char *data_x_name(const data_set *ds) { return ds->x_name; }
const char *data_y_name(const data_set *ds) { return ds->y_name; }
data_label_kind data_label_kind_of(const data_set *ds) { return ds->lkind; }
size_t data_label_elems(const data_set *ds) { return ds->lelems; }

int data_sample_shape(const data_set *ds, uint64_t *dims, int max_dims) {
  int n = ds->xrank - 1;
  for (int i = 0; i < n && i < max_dims; i++) dims[i] = (uint64_t)ds->xdims[i + 1];
  return n;
}

int data_label_shape(const data_set *ds, uint64_t *dims, int max_dims) {
  if (ds->lkind == DATA_LABEL_CLASS) return 0;
  int n = ds->lrank - 1;
  for (int i = 0; i < n && i < max_dims; i++) dims[i] = (uint64_t)ds->ldims[i + 1];
  return n;
}

int data_check_labels(data_set *ds, int n_classes, char *err, size_t errlen) {
  if (ds->lkind != DATA_LABEL_CLASS) {
    h5util_set_err(err, errlen,
                   "labels '%s' in '%s' are %s regression targets, but the model is a "
                   "classifier (%d classes): classification needs integer class indices",
                   ds->y_name, ds->path, ds->ltype, n_classes);
    return -1;
  }
  for (uint64_t i = 0; i < ds->n; i++) {
    int64_t v = ds->labels[i];
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
  if (ds->lelems == n_outputs) return 0;
  char sh[160];
  h5util_shape_str(ds->ldims, ds->lrank, sh, sizeof sh);
  h5util_set_err(err, errlen,
                 "labels '%s' in '%s' have shape %s: %zu target value%s per sample, but the "
                 "model has %zu output%s",
                 ds->y_name, ds->path, sh, ds->lelems, ds->lelems == 1 ? "" : "s", n_outputs,
                 n_outputs == 1 ? "" : "s");
  return -1;
}
