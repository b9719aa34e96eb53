/* rowconv — see rowconv.h. Also data_norm_identity and data_norm_check
 * (dataset.h), which are the plan's checks. */
#include "rowconv.h"

#include "h5util.h"

#include <math.h>
#include <string.h>

/* Rows are prefetched about this many bytes of rows ahead
 * (scripts/bench/results/loader.md). */
#define PREFETCH_AHEAD_BYTES ((size_t)6 << 10)

data_norm data_norm_identity(void) {
  data_norm n = {
      .scale = 1.0f, .n_mean = 0, .mean = NULL, .n_std = 0, .std = NULL, .check_finite = 0};
  return n;
}

/* ---- the plan ----------------------------------------------------------- */

/* The inputs' shape (N, ...) as a data_set reports it. */
typedef struct {
  hsize_t dims[H5S_MAX_RANK];
  int rank;
  size_t elems, channels; /* channels: dimension 1, or 1 for shape (N,) */
} input_shape;

static void shape_of(const data_set *ds, input_shape *s) {
  uint64_t d[H5S_MAX_RANK - 1];
  int k = data_sample_shape(ds, d, H5S_MAX_RANK - 1);
  s->rank = k + 1;
  s->dims[0] = data_count(ds);
  for (int i = 0; i < k; i++) s->dims[i + 1] = d[i];
  s->elems = data_sample_elems(ds);
  s->channels = k >= 1 ? (size_t)d[0] : 1;
}

/* How one mean or std list maps onto the elements of a sample: value index
 * = k / *inner (inner = elems for one value, elems / C per channel, 1 per
 * feature). */
static int plan_one(const data_set *ds, const input_shape *s, const char *what, size_t count,
                    const float *v, int positive, size_t *inner, char *err, size_t errlen) {
  size_t c = s->channels, e = s->elems;
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
    h5util_shape_str(s->dims, s->rank, sh, sizeof sh);
    h5util_set_err(err, errlen,
                   "data.%s has %zu values; '%s' in '%s' has shape %s: expected 1 value, %zu "
                   "(one per channel, dimension 1) or %zu (one per feature)",
                   what, count, data_x_name(ds), data_path(ds), sh, c, e);
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

int rowconv_plan(rowconv *rc, const data_set *ds, const data_norm *norm, char *err,
                 size_t errlen) {
  rc->norm = norm ? *norm : data_norm_identity();
  rc->dtype = data_input_dtype(ds);
  rc->elems = data_sample_elems(ds);
  rc->row_bytes = rc->elems * data_dtype_size(rc->dtype);
  const data_norm *nm = &rc->norm;
  if (!isfinite(nm->scale)) {
    h5util_set_err(err, errlen, "data.scale is %g; expected a finite number", (double)nm->scale);
    return -1;
  }
  input_shape s;
  shape_of(ds, &s);
  if (plan_one(ds, &s, "mean", nm->n_mean, nm->mean, 0, &rc->inner_m, err, errlen) < 0) return -1;
  return plan_one(ds, &s, "std", nm->n_std, nm->std, 1, &rc->inner_s, err, errlen);
}

int data_norm_check(const data_set *ds, const data_norm *norm, char *err, size_t errlen) {
  if (data_is_tokens(ds) && norm && (norm->scale != 1.0f || norm->n_mean || norm->n_std)) {
    h5util_set_err(err, errlen,
                   "'%s' in '%s' is a token set: data.scale, data.mean and data.std do not apply "
                   "(token ids are read as they are)",
                   data_x_name(ds), data_path(ds));
    return -1;
  }
  rowconv rc;
  return rowconv_plan(&rc, ds, norm, err, errlen);
}

/* ---- conversion --------------------------------------------------------- */

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

/* Function multiversioning (rowconv.h): an AVX2 clone and the baseline. */
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
    case DATA_I32:
      for (size_t k = 0; k < e; k++) {
        int32_t v;
        memcpy(&v, src + 4 * k, 4);
        dst[k] = (float)v * scale;
      }
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
MS_MULTIVERSION static void apply_norm(float *x, size_t e, const data_norm *nm, size_t inner_m,
                                       size_t inner_s) {
  if (nm->n_mean)
    for (size_t k0 = 0, c = 0; k0 < e; k0 += inner_m, c++) {
      float m = nm->mean[c];
      for (size_t k = k0; k < k0 + inner_m; k++) x[k] -= m;
    }
  if (nm->n_std)
    for (size_t k0 = 0, c = 0; k0 < e; k0 += inner_s, c++) {
      float s = nm->std[c];
      for (size_t k = k0; k < k0 + inner_s; k++) x[k] /= s;
    }
}

void rowconv_row(const rowconv *rc, const unsigned char *src, float *dst) {
  convert_row(rc->dtype, src, rc->elems, rc->norm.scale, dst);
  if (rc->norm.n_mean || rc->norm.n_std)
    apply_norm(dst, rc->elems, &rc->norm, rc->inner_m, rc->inner_s);
}

/* ---- prefetch ----------------------------------------------------------- */

size_t rowconv_prefetch_distance(size_t row_bytes) {
  size_t d = PREFETCH_AHEAD_BYTES / row_bytes;
  return d < 1 ? 1 : d > 16 ? 16 : d;
}

void rowconv_prefetch(const unsigned char *row, size_t row_bytes) {
  if (row_bytes > PREFETCH_AHEAD_BYTES) row_bytes = PREFETCH_AHEAD_BYTES;
  for (size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(row + off);
}

void rowconv_gather(const rowconv *rc, rowconv_row_at at, const void *ctx, const uint64_t *idx,
                    size_t n, float *x) {
  size_t d = rowconv_prefetch_distance(rc->row_bytes);
  for (size_t i = 0; i < d && i < n; i++) rowconv_prefetch(at(ctx, idx[i]), rc->row_bytes);
  for (size_t i = 0; i < n; i++) {
    if (i + d < n) rowconv_prefetch(at(ctx, idx[i + d]), rc->row_bytes);
    rowconv_row(rc, at(ctx, idx[i]), x + i * rc->elems);
  }
}
