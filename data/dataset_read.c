/* dataset_read — the reading half of dataset.h: normalisation (data_norm),
 * the stored-type conversions, data_read and data_check_finite.
 *
 * Inputs are kept (in memory, or per streamed run) in their stored width
 * with native byte order; the conversion to float, the scale and the
 * mean/std are applied row by row in convert_row / apply_norm, so that a
 * uint8 dataset costs one byte per value in memory.
 */
#include "dataset.h"
#include "dataset_internal.h"
#include "h5util.h"

#include <hdf5.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

/* data_check_finite reads this many bytes of stored rows at a time. */
#define FINITE_BLOCK_BYTES ((size_t)4 << 20)

data_norm data_norm_identity(void) {
  data_norm n = {
      .scale = 1.0f, .n_mean = 0, .mean = NULL, .n_std = 0, .std = NULL, .check_finite = 0};
  return n;
}

/* ---- normalisation ------------------------------------------------------------ */

/* How a mean/std list maps onto the elements of a sample: value index =
 * k / inner (inner = elems for one value, elems / C per channel, 1 per
 * feature). */
typedef struct {
  size_t inner_m, inner_s;
} norm_plan;

/* Channels C: dimension 1 of the inputs, or 1 for inputs of shape (N,). */
static size_t channels_of(const data_set *ds) { return ds->xrank >= 2 ? (size_t)ds->xdims[1] : 1; }

static int plan_one(const data_set *ds, const char *what, size_t count, const float *v,
                    int positive, size_t *inner, char *err, size_t errlen) {
  size_t c = channels_of(ds), e = ds->elems;
  *inner = e;
  if (count == 0) return 0;
  if (!v) {
    h5util_set_err(err, errlen, "data.%s: %zu values announced but none given", what, count);
    return -1;
  }
  if (count == 1)
    *inner = e;
  else if (count == e)
    *inner = 1;
  else if (count == c)
    *inner = e / c;
  else {
    char sh[160];
    h5util_shape_str(ds->xdims, ds->xrank, sh, sizeof sh);
    h5util_set_err(err, errlen,
                   "data.%s has %zu values; '%s' in '%s' has shape %s: expected 1 value, %zu "
                   "(one per channel, dimension 1) or %zu (one per feature)",
                   what, count, ds->x_name, ds->path, sh, c, e);
    return -1;
  }
  for (size_t i = 0; i < count; i++)
    if (!isfinite(v[i]) || (positive && !(v[i] > 0))) {
      h5util_set_err(err, errlen, "data.%s[%zu] is %g; expected a finite number%s", what, i,
                     (double)v[i], positive ? " > 0" : "");
      return -1;
    }
  return 0;
}

static int make_plan(const data_set *ds, const data_norm *nm, norm_plan *p, char *err,
                     size_t errlen) {
  if (!isfinite(nm->scale)) {
    h5util_set_err(err, errlen, "data.scale is %g; expected a finite number", (double)nm->scale);
    return -1;
  }
  if (plan_one(ds, "mean", nm->n_mean, nm->mean, 0, &p->inner_m, err, errlen) < 0) return -1;
  return plan_one(ds, "std", nm->n_std, nm->std, 1, &p->inner_s, err, errlen);
}

int data_norm_check(const data_set *ds, const data_norm *norm, char *err, size_t errlen) {
  norm_plan p;
  data_norm id = data_norm_identity();
  return make_plan(ds, norm ? norm : &id, &p, err, errlen);
}

/* IEEE half to float, exactly (every half is a float). */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  float f;
  if (exp == 0) {
    f = (float)man * 0x1p-24f; /* zero or subnormal: man * 2^-24, exact */
    return sign ? -f : f;
  }
  if (exp == 31)
    bits = sign | 0x7f800000u | (man << 13); /* inf, nan (payload kept) */
  else
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* The conversion loops run twice as wide with AVX2: x86-64 builds carry
 * both versions and the loader picks one when the program starts (function
 * multiversioning), with no -march. bench_loader, Fashion-MNIST in memory,
 * batch 64: 6.0 M to 7.0 M samples/s (medians of 3). */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MS_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef MS_MULTIVERSION
#define MS_MULTIVERSION
#endif

/* One stored row (native order) to floats, times scale. memcpy per value
 * keeps the loads free of alignment and aliasing assumptions; compilers turn
 * it into plain loads. */
MS_MULTIVERSION static void convert_row(data_dtype t, const unsigned char *src, size_t e,
                                        float scale, float *dst) {
  switch (t) {
    case DATA_U8:
      for (size_t k = 0; k < e; k++) dst[k] = (float)src[k] * scale;
      return;
    case DATA_I8:
      for (size_t k = 0; k < e; k++) dst[k] = (float)(int8_t)src[k] * scale;
      return;
    case DATA_U16:
      for (size_t k = 0; k < e; k++) {
        uint16_t v;
        memcpy(&v, src + 2 * k, 2);
        dst[k] = (float)v * scale;
      }
      return;
    case DATA_I16:
      for (size_t k = 0; k < e; k++) {
        int16_t v;
        memcpy(&v, src + 2 * k, 2);
        dst[k] = (float)v * scale;
      }
      return;
    case DATA_F16:
      for (size_t k = 0; k < e; k++) {
        uint16_t v;
        memcpy(&v, src + 2 * k, 2);
        dst[k] = half_to_float(v) * scale;
      }
      return;
    case DATA_F32:
      memcpy(dst, src, e * sizeof(float));
      if (scale != 1.0f)
        for (size_t k = 0; k < e; k++) dst[k] *= scale;
      return;
    case DATA_F64:
      for (size_t k = 0; k < e; k++) {
        double v;
        memcpy(&v, src + 8 * k, 8);
        dst[k] = (float)v * scale;
      }
      return;
  }
}

/* In place: x[k] = (x[k] - mean[k / inner_m]) / std[k / inner_s]. */
MS_MULTIVERSION static void apply_norm(float *x, size_t e, const data_norm *nm,
                                       const norm_plan *p) {
  if (nm->n_mean)
    for (size_t k0 = 0, c = 0; k0 < e; k0 += p->inner_m, c++) {
      float m = nm->mean[c];
      for (size_t k = k0; k < k0 + p->inner_m; k++) x[k] -= m;
    }
  if (nm->n_std)
    for (size_t k0 = 0, c = 0; k0 < e; k0 += p->inner_s, c++) {
      float s = nm->std[c];
      for (size_t k = k0; k < k0 + p->inner_s; k++) x[k] /= s;
    }
}

static void row_to_float(const data_set *ds, const unsigned char *src, const data_norm *nm,
                         const norm_plan *p, float *dst) {
  convert_row(ds->dtype, src, ds->elems, nm->scale, dst);
  if (nm->n_mean || nm->n_std) apply_norm(dst, ds->elems, nm, p);
}

/* The rows of a shuffled batch are scattered over the set: converting one
 * waited on memory for its first cache lines (perf: 80% of row_to_float's
 * samples on its first load, then most of read_inputs' on the prefetch of
 * the next row alone). The lines of the row about PREFETCH_AHEAD_BYTES of
 * rows ahead are requested while this one converts. bench_loader,
 * Fashion-MNIST (784-byte rows) in memory, batch 64, prefetch 0: on one
 * 2-core VM 6.7-7.0 M samples/s one row ahead, 8.1-8.3 M at ~6 KiB; on
 * another the distance (1 to 16 rows) made no difference beyond noise
 * (4.9-6.6 M). */
#define PREFETCH_AHEAD_BYTES ((size_t)6 << 10)

static size_t prefetch_distance(size_t row_bytes) {
  size_t d = PREFETCH_AHEAD_BYTES / row_bytes;
  return d < 1 ? 1 : d > 16 ? 16 : d;
}

/* The first PREFETCH_AHEAD_BYTES of a row (the hardware prefetcher
 * follows a longer one). */
static void prefetch_row(const unsigned char *row, size_t bytes) {
  if (bytes > PREFETCH_AHEAD_BYTES) bytes = PREFETCH_AHEAD_BYTES;
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(row + off);
}

/* Sample i's stored row when it is in memory or in the chunk cache, else
 * NULL. */
static const unsigned char *row_at(const data_set *ds, uint64_t i) {
  size_t row_bytes = ds->elems * ds->dsize;
  if (ds->mem) return ds->mem + (size_t)i * row_bytes;
  uint64_t c = i / ds->cache_rows;
  int k = ds->chunk_slot[c];
  return k < 0 ? NULL : ds->slot_buf[k] + (size_t)(i - c * ds->cache_rows) * row_bytes;
}

/* Rows idx[0..n), all in memory or in the chunk cache, to floats in that
 * order. */
static void convert_rows(const data_set *ds, const uint64_t *idx, size_t n, const data_norm *nm,
                         const norm_plan *p, float *x) {
  size_t row_bytes = ds->elems * ds->dsize, d = prefetch_distance(row_bytes);
  for (size_t i = 0; i < d && i < n; i++) prefetch_row(row_at(ds, idx[i]), row_bytes);
  for (size_t i = 0; i < n; i++) {
    if (i + d < n) prefetch_row(row_at(ds, idx[i + d]), row_bytes);
    row_to_float(ds, row_at(ds, idx[i]), nm, p, x + i * ds->elems);
  }
}

/* ---- reading ------------------------------------------------------------------ */

static int cmp_item(const void *a, const void *b) {
  const struct run_item *x = a, *y = b;
  if (x->idx != y->idx) return x->idx < y->idx ? -1 : 1;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Reads rows [start, start + len) of the inputs into dst (stored width). */
static int read_run(data_set *ds, uint64_t start, uint64_t len, unsigned char *dst, char *err,
                    size_t errlen) {
  hsize_t off[H5S_MAX_RANK] = {0}, cnt[H5S_MAX_RANK];
  off[0] = start;
  cnt[0] = len;
  for (int i = 1; i < ds->xrank; i++) cnt[i] = ds->xdims[i];
  h5util_guard q;
  h5util_enter(&q);
  /* The memory space has the shape of the file selection: HDF5 then copies
   * straight through instead of iterating element by element. */
  hid_t mem_space = H5Screate_simple(ds->xrank, cnt, NULL);
  int rc = -1;
  if (mem_space >= 0 &&
      H5Sselect_hyperslab(ds->xspace, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0 &&
      H5Dread(ds->xset, ds->mem_type, mem_space, ds->xspace, H5P_DEFAULT, dst) >= 0)
    rc = 0;
  if (rc < 0) {
    char why[160];
    h5util_set_err(err, errlen,
                   "cannot read samples %" PRIu64 "..%" PRIu64
                   " of '%s' in '%s' (truncated or damaged?): %s",
                   start, start + len - 1, ds->x_name, ds->path, h5util_reason(why));
  }
  if (mem_space >= 0) H5Sclose(mem_space);
  h5util_leave(&q);
  return rc;
}

/* HDF5's shuffle filter undone: the first bytes of every element, then
 * the second bytes, ... back to whole elements; a tail shorter than an
 * element is stored as is. */
static void unshuffle(const unsigned char *src, size_t bytes, size_t size, unsigned char *dst) {
  size_t n = bytes / size;
  for (size_t b = 0; b < size; b++)
    for (size_t i = 0; i < n; i++) dst[i * size + b] = src[b * n + i];
  memcpy(dst + n * size, src + n * size, bytes - n * size);
}

static int grow(unsigned char **buf, size_t *cap, size_t want) {
  if (*cap >= want) return 0;
  unsigned char *b = realloc(*buf, want);
  if (!b) return -1;
  *buf = b;
  *cap = want;
  return 0;
}

/* Chunk c read as stored and decoded into dst (dataset_internal.h, direct
 * chunk reads). 1: done; 0: the chunk is not allocated or was stored with
 * a filter skipped other than the two handled here, read it with H5Dread;
 * -1: error. */
static int read_chunk_direct(data_set *ds, uint64_t c, uint64_t len, unsigned char *dst, char *err,
                             size_t errlen) {
  size_t chunk_bytes = (size_t)ds->cache_rows * ds->elems * ds->dsize;
  hsize_t off[H5S_MAX_RANK] = {0}, stored = 0;
  off[0] = c * ds->cache_rows;
  uint32_t mask = 0;
  char why[160] = "";
  int rc = -1;
  h5util_guard q;
  h5util_enter(&q);
  if (H5Dget_chunk_storage_size(ds->xset, off, &stored) < 0)
    h5util_reason(why);
  else if (stored == 0)
    rc = 0;
  else if (grow(&ds->zbuf, &ds->zbuf_cap, (size_t)stored) < 0)
    snprintf(why, sizeof why, "out of memory");
  else if (H5Dread_chunk(ds->xset, H5P_DEFAULT, off, &mask, ds->zbuf) < 0)
    h5util_reason(why);
  else
    rc = 1;
  h5util_leave(&q);
  if (rc == 0) return 0;

  uint32_t known = (ds->deflate_at >= 0 ? 1u << ds->deflate_at : 0) |
                   (ds->shuffle_at >= 0 ? 1u << ds->shuffle_at : 0);
  if (rc > 0 && (mask & ~known)) return 0;
  int deflated = ds->deflate_at >= 0 && !(mask & (1u << ds->deflate_at));
  int shuffled = ds->shuffle_at >= 0 && !(mask & (1u << ds->shuffle_at)) && ds->shuffle_size > 1;
  if (rc > 0 && shuffled && !ds->unshuf && !(ds->unshuf = malloc(chunk_bytes))) {
    snprintf(why, sizeof why, "out of memory");
    rc = -1;
  }
  if (rc > 0) {
    unsigned char *out = shuffled ? ds->unshuf : dst;
    size_t got = (size_t)stored;
    if (deflated) {
      enum libdeflate_result r = libdeflate_zlib_decompress(ds->inflater, ds->zbuf, (size_t)stored,
                                                            out, chunk_bytes, &got);
      if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
        got = chunk_bytes + 1;
      else if (r != LIBDEFLATE_SUCCESS)
        got = SIZE_MAX;
    } else if (got == chunk_bytes)
      memcpy(out, ds->zbuf, got);
    if (got == SIZE_MAX)
      snprintf(why, sizeof why, "its chunk does not inflate (the deflate stream is damaged)");
    else if (got != chunk_bytes)
      snprintf(why, sizeof why, "its chunk holds %s %zu bytes",
               got < chunk_bytes ? "fewer than" : "more than", chunk_bytes);
    else if (shuffled)
      unshuffle(out, chunk_bytes, ds->shuffle_size, dst);
    if (got != chunk_bytes) rc = -1;
  }
  if (rc < 0)
    h5util_set_err(err, errlen,
                   "cannot read samples %" PRIu64 "..%" PRIu64
                   " of '%s' in '%s' (truncated or damaged?): %s",
                   (uint64_t)off[0], (uint64_t)off[0] + len - 1, ds->x_name, ds->path, why);
  return rc;
}

int data_read_chunk(data_set *ds, uint64_t c, unsigned char *dst, char *err, size_t errlen) {
  uint64_t start = c * ds->cache_rows;
  uint64_t len = ds->n - start < ds->cache_rows ? ds->n - start : ds->cache_rows;
  int done = ds->direct ? read_chunk_direct(ds, c, len, dst, err, errlen) : 0;
  return done < 0 || (!done && read_run(ds, start, len, dst, err, errlen) < 0) ? -1 : 0;
}

/* Chunk c of a cache shared by the node's processes (dataset.h): read
 * here and published if no process has it, copied from shared memory if
 * one has, waited for while one reads it. A failed read leaves it empty,
 * so a waiting process tries it too and reports the same error. */
static const unsigned char *shared_chunk_get(data_set *ds, uint64_t c, char *err, size_t errlen) {
  _Atomic uint32_t *st = &ds->chunk_state[c];
  size_t chunk_bytes = (size_t)ds->cache_rows * ds->elems * ds->dsize;
  unsigned char *mine = ds->slot_buf[c], *shared = ds->shared_chunks + c * chunk_bytes;
  for (unsigned waits = 0;; waits++) {
    uint32_t s = atomic_load_explicit(st, memory_order_acquire);
    if (s == CHUNK_READY) {
      memcpy(mine, shared, chunk_bytes);
      break;
    }
    if (s == CHUNK_EMPTY) {
      if (!atomic_compare_exchange_strong_explicit(st, &s, CHUNK_BUSY, memory_order_acquire,
                                                   memory_order_acquire))
        continue;
      int rc = data_read_chunk(ds, c, mine, err, errlen);
      if (rc == 0) memcpy(shared, mine, chunk_bytes);
      atomic_store_explicit(st, rc < 0 ? CHUNK_EMPTY : CHUNK_READY, memory_order_release);
      if (rc < 0) return NULL;
      ds->chunks_read++;
      break;
    }
    /* Another process is decoding it (~2 ms for 1 MiB here). */
    if (waits < 16) {
      sched_yield();
    } else {
      struct timespec t = {0, 50000};
      nanosleep(&t, NULL);
    }
  }
  ds->chunk_slot[c] = (int32_t)c;
  ds->slot_used[c] = ++ds->tick;
  return mine;
}

/* The stored rows of chunk c, from the cache or read into it (evicting
 * the least recently used chunk); NULL on a failed read. */
static const unsigned char *chunk_get(data_set *ds, uint64_t c, char *err, size_t errlen) {
  int k = ds->chunk_slot[c];
  if (k < 0 && ds->chunk_state) return shared_chunk_get(ds, c, err, errlen);
  if (k < 0) {
    k = 0;
    for (int j = 1; j < ds->cache_slots; j++)
      if (ds->slot_used[j] < ds->slot_used[k]) k = j;
    if (ds->slot_chunk[k] != UINT64_MAX) ds->chunk_slot[ds->slot_chunk[k]] = -1;
    ds->slot_chunk[k] = UINT64_MAX;
    if (data_read_chunk(ds, c, ds->slot_buf[k], err, errlen) < 0) return NULL;
    ds->chunks_read++;
    ds->slot_chunk[k] = c;
    ds->chunk_slot[c] = k;
  }
  ds->slot_used[k] = ++ds->tick;
  return ds->slot_buf[k];
}

/* The rows of idx converted in the caller's order when every chunk they
 * lie in is cached (the usual case once a set that fits the budget has
 * been read once): no sort, and the output is written front to back.
 * 0 when some chunk is missing (nothing written). */
static int read_cached(data_set *ds, const uint64_t *idx, size_t n, const data_norm *nm,
                       const norm_plan *p, float *x) {
  uint64_t tick = ++ds->tick;
  for (size_t i = 0; i < n; i++) {
    int k = ds->chunk_slot[idx[i] / ds->cache_rows];
    if (k < 0) return 0;
    ds->slot_used[k] = tick;
  }
  convert_rows(ds, idx, n, nm, p, x);
  return 1;
}

static int read_streaming(data_set *ds, const uint64_t *idx, size_t n, const data_norm *nm,
                          const norm_plan *p, float *x, char *err, size_t errlen) {
  if (ds->chunk_slot && n && read_cached(ds, idx, n, nm, p, x)) return 0;
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
  if (ds->chunk_slot) {
    /* Sorted, the samples of one chunk come together: one lookup each. */
    size_t d = prefetch_distance(row_bytes);
    const unsigned char *buf = NULL;
    uint64_t have = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
      uint64_t c = ds->order[i].idx / ds->cache_rows;
      if (c != have && !(buf = chunk_get(ds, c, err, errlen))) return -1;
      have = c;
      const unsigned char *ahead = i + d < n ? row_at(ds, ds->order[i + d].idx) : NULL;
      if (ahead) prefetch_row(ahead, row_bytes);
      row_to_float(ds, buf + (size_t)(ds->order[i].idx - c * ds->cache_rows) * row_bytes, nm, p,
                   x + ds->order[i].pos * ds->elems);
    }
    return 0;
  }
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
    if (read_run(ds, start, len, ds->rows, err, errlen) < 0) return -1;
    for (size_t k = i; k < j; k++) {
      const unsigned char *src = ds->rows + (size_t)(ds->order[k].idx - start) * row_bytes;
      row_to_float(ds, src, nm, p, x + ds->order[k].pos * ds->elems);
    }
    i = j;
  }
  return 0;
oom:
  h5util_set_err(err, errlen, "out of memory reading %zu samples of '%s' in '%s'", n, ds->x_name,
                 ds->path);
  return -1;
}

/* The inputs of idx[0..n) through nm (checked into p by the caller). */
static int read_inputs(data_set *ds, const uint64_t *idx, size_t n, const data_norm *nm,
                       const norm_plan *p, float *x, char *err, size_t errlen) {
  if (ds->mem) {
    convert_rows(ds, idx, n, nm, p, x);
    return 0;
  }
  return read_streaming(ds, idx, n, nm, p, x, err, errlen);
}

int data_read(data_set *ds, const uint64_t *idx, size_t n, const data_norm *norm, float *x,
              int32_t *y, float *t, char *err, size_t errlen) {
  data_norm id = data_norm_identity();
  const data_norm *nm = norm ? norm : &id;
  norm_plan p;
  if (make_plan(ds, nm, &p, err, errlen) < 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (idx[i] >= ds->n) {
      h5util_set_err(err, errlen,
                     "sample index %" PRIu64 " is out of range for '%s' in '%s' (%" PRIu64
                     " samples)",
                     idx[i], ds->x_name, ds->path, ds->n);
      return -1;
    }
    if (ds->lkind != DATA_LABEL_CLASS) continue;
    int64_t v = ds->labels[idx[i]];
    if (v < INT32_MIN || v > INT32_MAX) {
      h5util_set_err(err, errlen,
                     "label %" PRId64 " of sample %" PRIu64 " in '%s' of '%s' does not fit int32",
                     v, idx[i], ds->y_name, ds->path);
      return -1;
    }
  }
  if (ds->lkind == DATA_LABEL_CLASS) {
    if (y)
      for (size_t i = 0; i < n; i++) y[i] = (int32_t)ds->labels[idx[i]];
    if (t)
      for (size_t i = 0; i < n; i++) t[i] = (float)ds->labels[idx[i]];
  } else if (t) {
    for (size_t i = 0; i < n; i++)
      memcpy(t + i * ds->lelems, ds->targets + (size_t)idx[i] * ds->lelems, ds->lelems * sizeof *t);
  }
  return read_inputs(ds, idx, n, nm, &p, x, err, errlen);
}

/* ---- the finite check ------------------------------------------------------- */

static int report_nonfinite(const data_set *ds, const char *name, uint64_t sample, size_t elem,
                            float v, char *err, size_t errlen) {
  h5util_set_err(err, errlen,
                 "sample %" PRIu64
                 " of '%s' in '%s' has a non-finite value (%s) at element %zu "
                 "(data.check_finite)",
                 sample, name, ds->path,
                 isnan(v) ? "nan"
                 : v > 0  ? "inf"
                          : "-inf",
                 elem);
  return -1;
}

int data_check_finite(data_set *ds, uint64_t begin, uint64_t count, const data_norm *norm,
                      char *err, size_t errlen) {
  data_norm id = data_norm_identity();
  const data_norm *nm = norm ? norm : &id;
  norm_plan p;
  if (make_plan(ds, nm, &p, err, errlen) < 0) return -1;
  if (begin > ds->n || count > ds->n - begin) {
    h5util_set_err(err, errlen,
                   "samples %" PRIu64 "..+%" PRIu64 " are out of range for '%s' in '%s' (%" PRIu64
                   " samples)",
                   begin, count, ds->x_name, ds->path, ds->n);
    return -1;
  }
  if (ds->targets)
    for (uint64_t i = begin; i < begin + count; i++)
      for (size_t k = 0; k < ds->lelems; k++) {
        float v = ds->targets[(size_t)i * ds->lelems + k];
        if (!isfinite(v)) return report_nonfinite(ds, ds->y_name, i, k, v, err, errlen);
      }
  /* Integer inputs with a finite scale, mean and std cannot overflow a
   * float: only float inputs need the pass. */
  if (ds->dtype != DATA_F16 && ds->dtype != DATA_F32 && ds->dtype != DATA_F64) return 0;

  size_t block = FINITE_BLOCK_BYTES / (ds->elems * ds->dsize);
  if (block < 1) block = 1;
  if (block > count) block = (size_t)count;
  uint64_t *idx = malloc(block * sizeof *idx);
  float *x = malloc(block * ds->elems * sizeof *x);
  int rc = 0;
  if (!idx || !x) {
    h5util_set_err(err, errlen, "out of memory checking '%s' in '%s'", ds->x_name, ds->path);
    rc = -1;
  }
  for (uint64_t at = begin; rc == 0 && at < begin + count; at += block) {
    size_t len = begin + count - at < block ? (size_t)(begin + count - at) : block;
    for (size_t i = 0; i < len; i++) idx[i] = at + i;
    rc = read_inputs(ds, idx, len, nm, &p, x, err, errlen);
    for (size_t k = 0; rc == 0 && k < len * ds->elems; k++)
      if (!isfinite(x[k]))
        rc = report_nonfinite(ds, ds->x_name, at + k / ds->elems, k % ds->elems, x[k], err, errlen);
  }
  free(x);
  free(idx);
  return rc;
}
