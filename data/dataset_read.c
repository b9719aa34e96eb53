/* dataset_read — data_read and data_check_finite (dataset.h): the
 * labels from memory, the inputs from memory, the chunk cache
 * (chunk_cache.h) or runs of rows read on demand, each row converted by
 * rowconv.h.
 */
#include "dataset.h"
#include "dataset_internal.h"
#include "h5util.h"
#include "rowconv.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* data_check_finite reads this many bytes of stored rows at a time. */
#define FINITE_BLOCK_BYTES ((size_t)4 << 20)

/* A requested sample and its position in the caller's batch. */
struct data_run_item {
  uint64_t idx;
  size_t pos;
};

static int cmp_item(const void *a, const void *b) {
  const struct data_run_item *x = a, *y = b;
  if (x->idx != y->idx) return x->idx < y->idx ? -1 : 1;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static const unsigned char *mem_row(const void *ctx, uint64_t i) {
  const data_set *ds = ctx;
  return ds->mem + (size_t)i * ds->x.row_bytes;
}

static const unsigned char *cached_row(const void *ctx, uint64_t i) {
  return chunk_cache_row(ctx, i);
}

/* Sorts idx[0..n) into ds->scratch.order (with each one's position). */
static int sort_request(data_set *ds, const uint64_t *idx, size_t n) {
  data_read_scratch *sc = &ds->scratch;
  if (n > sc->order_cap) {
    struct data_run_item *o = realloc(sc->order, n * sizeof *o);
    if (!o) return -1;
    sc->order = o;
    sc->order_cap = n;
  }
  for (size_t i = 0; i < n; i++) {
    sc->order[i].idx = idx[i];
    sc->order[i].pos = i;
  }
  qsort(sc->order, n, sizeof *sc->order, cmp_item);
  return 0;
}

/* Through the chunk cache: in the caller's order when every chunk is
 * cached (the usual case once a set that fits the budget has been read
 * once: no sort, the output written front to back), else sorted, so that
 * the samples of one chunk come together and cost one lookup. */
static int read_through_cache(data_set *ds, const uint64_t *idx, size_t n, const rowconv *rc,
                              float *x, char *err, size_t errlen) {
  chunk_cache *cc = ds->cache;
  if (n && chunk_cache_has_all(cc, idx, n)) {
    rowconv_gather(rc, cached_row, cc, idx, n, x);
    return 0;
  }
  if (sort_request(ds, idx, n) < 0) return 1;
  const struct data_run_item *order = ds->scratch.order;
  size_t row_bytes = ds->x.row_bytes, d = rowconv_prefetch_distance(row_bytes);
  uint64_t rows = chunk_cache_rows(cc), have = UINT64_MAX;
  const unsigned char *buf = NULL;
  for (size_t i = 0; i < n; i++) {
    uint64_t c = order[i].idx / rows;
    if (c != have && !(buf = chunk_cache_get(cc, c, err, errlen))) return -1;
    have = c;
    const unsigned char *ahead = i + d < n ? chunk_cache_row(cc, order[i + d].idx) : NULL;
    if (ahead) rowconv_prefetch(ahead, row_bytes);
    rowconv_row(rc, buf + (size_t)(order[i].idx - c * rows) * row_bytes,
                x + order[i].pos * ds->elems);
  }
  return 0;
}

/* Without a chunk cache: sorted, and merged into runs of consecutive (or
 * repeated) indices, one H5Dread each. */
static int read_runs(data_set *ds, const uint64_t *idx, size_t n, const rowconv *rc, float *x,
                     char *err, size_t errlen) {
  if (sort_request(ds, idx, n) < 0) return 1;
  data_read_scratch *sc = &ds->scratch;
  const struct data_run_item *order = sc->order;
  size_t row_bytes = ds->x.row_bytes;
  size_t i = 0;
  while (i < n) {
    size_t j = i + 1;
    while (j < n && order[j].idx - order[j - 1].idx <= 1) j++;
    uint64_t start = order[i].idx;
    uint64_t len = order[j - 1].idx - start + 1;
    /* len <= n, so len * row_bytes is bounded by the caller's output size. */
    size_t need = (size_t)len * row_bytes;
    if (need > sc->rows_cap) {
      unsigned char *r = realloc(sc->rows, need);
      if (!r) return 1;
      sc->rows = r;
      sc->rows_cap = need;
    }
    if (chunk_src_read_rows(&ds->x, start, len, sc->rows, err, errlen) < 0) return -1;
    for (size_t k = i; k < j; k++)
      rowconv_row(rc, sc->rows + (size_t)(order[k].idx - start) * row_bytes,
                  x + order[k].pos * ds->elems);
    i = j;
  }
  return 0;
}

/* The inputs of idx[0..n) through rc. */
static int read_inputs(data_set *ds, const uint64_t *idx, size_t n, const rowconv *rc, float *x,
                       char *err, size_t errlen) {
  if (ds->mem) {
    rowconv_gather(rc, mem_row, ds, idx, n, x);
    return 0;
  }
  int r = ds->cache ? read_through_cache(ds, idx, n, rc, x, err, errlen)
                    : read_runs(ds, idx, n, rc, x, err, errlen);
  if (r > 0)
    h5util_set_err(err, errlen, "out of memory reading %zu samples of '%s' in '%s'", n,
                   ds->x_name, ds->path);
  return r == 0 ? 0 : -1;
}

int data_read(data_set *ds, const uint64_t *idx, size_t n, const data_norm *norm, float *x,
              int32_t *y, float *t, char *err, size_t errlen) {
  if (ds->tok.ids) return data_tokens_read(ds, idx, n, norm, x, y, t, err, errlen);
  rowconv rc;
  if (rowconv_plan(&rc, ds, norm, err, errlen) < 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (idx[i] >= ds->x.n) {
      h5util_set_err(err, errlen,
                     "sample index %" PRIu64 " is out of range for '%s' in '%s' (%" PRIu64
                     " samples)",
                     idx[i], ds->x_name, ds->path, ds->x.n);
      return -1;
    }
    if (ds->y.kind != DATA_LABEL_CLASS) continue;
    int64_t v = ds->y.classes[idx[i]];
    if (v < INT32_MIN || v > INT32_MAX) {
      h5util_set_err(err, errlen,
                     "label %" PRId64 " of sample %" PRIu64 " in '%s' of '%s' does not fit int32",
                     v, idx[i], ds->y_name, ds->path);
      return -1;
    }
  }
  if (ds->y.kind == DATA_LABEL_CLASS) {
    if (y)
      for (size_t i = 0; i < n; i++) y[i] = (int32_t)ds->y.classes[idx[i]];
    if (t)
      for (size_t i = 0; i < n; i++) t[i] = (float)ds->y.classes[idx[i]];
  } else if (t) {
    for (size_t i = 0; i < n; i++)
      memcpy(t + i * ds->y.elems, ds->y.targets + (size_t)idx[i] * ds->y.elems,
             ds->y.elems * sizeof *t);
  }
  return read_inputs(ds, idx, n, &rc, x, err, errlen);
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
  rowconv rcv;
  if (rowconv_plan(&rcv, ds, norm, err, errlen) < 0) return -1;
  if (begin > ds->x.n || count > ds->x.n - begin) {
    h5util_set_err(err, errlen,
                   "samples %" PRIu64 "..+%" PRIu64 " are out of range for '%s' in '%s' (%" PRIu64
                   " samples)",
                   begin, count, ds->x_name, ds->path, ds->x.n);
    return -1;
  }
  if (ds->y.targets)
    for (uint64_t i = begin; i < begin + count; i++)
      for (size_t k = 0; k < ds->y.elems; k++) {
        float v = ds->y.targets[(size_t)i * ds->y.elems + k];
        if (!isfinite(v)) return report_nonfinite(ds, ds->y_name, i, k, v, err, errlen);
      }
  /* Integer inputs with a finite scale, mean and std cannot overflow a
   * float: only float inputs need the pass. */
  if (ds->dtype != DATA_F16 && ds->dtype != DATA_F32 && ds->dtype != DATA_F64) return 0;

  size_t block = FINITE_BLOCK_BYTES / ds->x.row_bytes;
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
    rc = read_inputs(ds, idx, len, &rcv, x, err, errlen);
    for (size_t k = 0; rc == 0 && k < len * ds->elems; k++)
      if (!isfinite(x[k]))
        rc = report_nonfinite(ds, ds->x_name, at + k / ds->elems, k % ds->elems, x[k], err, errlen);
  }
  free(x);
  free(idx);
  return rc;
}
