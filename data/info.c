/* info — see info.h. */
#include "info.h"

#include "h5guard.h"
#include "h5util.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A histogram lists at most this many distinct values. */
#define HIST_ROWS 50
#define BAR_WIDTH 40

/* "12.3 MB", "512 B". */
static void human(double bytes, char *buf, size_t len) {
  const char *unit[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) bytes /= 1000, u++;
  snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

/* The dtype with its byte order when that matters: "float32 BE". */
static void dtype_str(hid_t t, char *buf, size_t len) {
  char base[48];
  h5util_type_name(t, base, sizeof base);
  H5T_class_t cls = H5Tget_class(t);
  if (cls == H5T_STRING) {
    htri_t var = H5Tis_variable_str(t);
    snprintf(buf, len, var > 0 ? "string (variable length)" : "string (%zu bytes)", H5Tget_size(t));
  } else if (cls == H5T_COMPOUND) {
    snprintf(buf, len, "compound (%d fields)", H5Tget_nmembers(t));
  } else if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Tget_size(t) > 1 &&
             H5Tget_order(t) == H5T_ORDER_BE) {
    snprintf(buf, len, "%s BE", base);
  } else {
    snprintf(buf, len, "%s", base);
  }
}

/* "gzip 1, shuffle" (or "none") and whether every filter can be decoded. */
static void filters_str(hid_t dcpl, char *buf, size_t len) {
  int n = H5Pget_nfilters(dcpl);
  size_t used = 0;
  buf[0] = '\0';
  if (n <= 0) {
    snprintf(buf, len, "none");
    return;
  }
  for (int i = 0; i < n && used < len; i++) {
    unsigned flags, cd[8] = {0}, conf;
    size_t ncd = 8;
    char name[64] = "", one[96];
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof name, name, &conf);
    switch (id) {
      case H5Z_FILTER_DEFLATE: snprintf(one, sizeof one, "gzip %u", ncd ? cd[0] : 0); break;
      case H5Z_FILTER_SHUFFLE: snprintf(one, sizeof one, "shuffle"); break;
      case H5Z_FILTER_FLETCHER32: snprintf(one, sizeof one, "fletcher32"); break;
      case H5Z_FILTER_SZIP:
        snprintf(one, sizeof one, "szip (%s, %u pixels/block)",
                 ncd && (cd[0] & H5_SZIP_NN_OPTION_MASK) ? "nn" : "ec", ncd > 1 ? cd[1] : 0);
        break;
      case H5Z_FILTER_NBIT: snprintf(one, sizeof one, "nbit"); break;
      case H5Z_FILTER_SCALEOFFSET: snprintf(one, sizeof one, "scaleoffset"); break;
      default:
        snprintf(one, sizeof one, "filter %d (%s)", (int)id, name[0] ? name : "unnamed");
        break;
    }
    int avail = H5Zfilter_avail(id) > 0;
    int w = snprintf(buf + used, len - used, "%s%s%s", i ? ", " : "", one,
                     avail ? "" : " [not available here: cannot be read]");
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* One dataset's lines. *is_int: integer class, for the histograms. */
static void describe(hid_t file, const char *path, const char *name, FILE *out, int *is_int) {
  char link_why[160];
  hid_t dapl = h5guard_dapl(path, link_why);
  hid_t set = dapl >= 0 ? H5Dopen2(file, name, dapl) : H5I_INVALID_HID;
  if (dapl >= 0) H5Pclose(dapl);
  *is_int = 0;
  if (set < 0) {
    char why[160];
    fprintf(out, "%s\n  cannot open: %s\n", name, h5util_reason(why));
    return;
  }
  hid_t t = H5Dget_type(set), space = H5Dget_space(set), dcpl = H5Dget_create_plist(set);
  char dt[96] = "?", sh[256] = "?", chunk[256] = "", filt[512] = "none", a[32], b[32];
  hsize_t dims[H5S_MAX_RANK], cdims[H5S_MAX_RANK];
  int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (rank >= 0 && H5Sget_simple_extent_dims(space, dims, NULL) >= 0)
    h5util_shape_str(dims, rank, sh, sizeof sh);
  if (t >= 0) dtype_str(t, dt, sizeof dt), *is_int = H5Tget_class(t) == H5T_INTEGER;
  H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
  const char *lname = layout == H5D_CHUNKED      ? "chunked"
                      : layout == H5D_CONTIGUOUS ? "contiguous"
                      : layout == H5D_COMPACT    ? "compact"
                      : layout == H5D_VIRTUAL    ? "virtual"
                                                 : "?";
  if (layout == H5D_CHUNKED) {
    int cr = H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims);
    size_t cbytes = t >= 0 ? H5Tget_size(t) : 0;
    for (int i = 0; i < cr; i++) cbytes *= (size_t)cdims[i];
    h5util_shape_str(cdims, cr, chunk, sizeof chunk);
    human((double)cbytes, a, sizeof a);
    size_t l = strlen(chunk);
    snprintf(chunk + l, sizeof chunk - l, ", %s per chunk", a);
    filters_str(dcpl, filt, sizeof filt);
  }
  hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : 0;
  double logical = (double)(npoints > 0 ? npoints : 0) * (double)(t >= 0 ? H5Tget_size(t) : 0);
  double stored = (double)H5Dget_storage_size(set);
  human(stored, a, sizeof a);
  human(logical, b, sizeof b);

  fprintf(out, "%s\n", name);
  fprintf(out, "  dtype    %s\n", dt);
  if (rank >= 1)
    fprintf(out, "  shape    %s: %llu samples\n", sh, (unsigned long long)dims[0]);
  else
    fprintf(out, "  shape    %s (a scalar: no sample axis)\n", sh);
  fprintf(out, "  layout   %s%s%s\n", lname, chunk[0] ? " " : "", chunk);
  fprintf(out, "  filters  %s\n", filt);
  if (stored > 0)
    fprintf(out, "  storage  %s on disk for %s of data (ratio %.2f)\n", a, b, logical / stored);
  else
    fprintf(out, "  storage  nothing on disk yet for %s of data\n", b);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  if (t >= 0) H5Tclose(t);
  H5Dclose(set);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The histogram of an integer dataset (every value, whatever the shape). */
static int histogram(hid_t file, const char *path, const char *name, uint64_t file_size, FILE *out,
                     char *err, size_t errlen) {
  char link_why[160];
  hid_t dapl = h5guard_dapl(path, link_why);
  hid_t set = dapl >= 0 ? H5Dopen2(file, name, dapl) : H5I_INVALID_HID;
  if (dapl >= 0) H5Pclose(dapl);
  if (set < 0) {
    h5util_set_err(err, errlen, "--histogram: dataset '%s' not found in '%s'", name, path);
    return -1;
  }
  int rc = -1;
  int64_t *v = NULL;
  hid_t t = H5Dget_type(set), space = H5Dget_space(set);
  hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  if (t < 0 || H5Tget_class(t) != H5T_INTEGER) {
    char tn[48] = "?";
    if (t >= 0) h5util_type_name(t, tn, sizeof tn);
    h5util_set_err(err, errlen,
                   "--histogram: '%s' in '%s' has type %s; histograms are of integer "
                   "labels",
                   name, path, tn);
    goto done;
  }
  /* The values are read whole: first check that the file holds them and
   * that HDF5 will not inflate a chunk past its size (h5guard.h). */
  if (h5guard_storage(set, path, name, file_size, err, errlen) < 0 ||
      h5guard_inflate(set, 0, UINT64_MAX, path, name, file_size, err, errlen) < 0)
    goto done;
  if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof *v ||
      !(v = malloc((size_t)(n ? n : 1) * sizeof *v))) {
    h5util_set_err(err, errlen, "out of memory reading '%s' in '%s'", name, path);
    goto done;
  }
  if (n > 0 && H5Dread(set, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
    char why[160];
    h5util_set_err(err, errlen, "cannot read '%s' in '%s': %s", name, path, h5util_reason(why));
    goto done;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_i64);
  size_t distinct = 0, most = 0;
  for (size_t i = 0, j; i < (size_t)n; i = j) {
    for (j = i; j < (size_t)n && v[j] == v[i]; j++) {
    }
    distinct++;
    if (j - i > most) most = j - i;
  }
  fprintf(out, "\nlabel histogram of %s: %lld values", name, (long long)n);
  if (n > 0)
    fprintf(out, ", %zu distinct, min %" PRId64 ", max %" PRId64 "%s\n", distinct, v[0], v[n - 1],
            v[0] < 0 ? " (negative labels: not class indices)" : "");
  else
    fprintf(out, "\n");
  size_t shown = 0;
  for (size_t i = 0, j; i < (size_t)n && shown < HIST_ROWS; i = j, shown++) {
    for (j = i; j < (size_t)n && v[j] == v[i]; j++) {
    }
    int bar = (int)((double)(j - i) / (double)most * BAR_WIDTH + 0.5);
    fprintf(out, "  %8" PRId64 " %10zu %6.2f%%  %.*s\n", v[i], j - i,
            100.0 * (double)(j - i) / (double)n, bar, "########################################");
  }
  if (distinct > shown) fprintf(out, "  ... (%zu more values)\n", distinct - shown);
  rc = 0;
done:
  free(v);
  if (space >= 0) H5Sclose(space);
  if (t >= 0) H5Tclose(t);
  H5Dclose(set);
  return rc;
}

/* 1 when `given` (with or without the leading slash) names `full`. */
static int same_dataset(const char *given, const char *full) {
  return strcmp(given, full) == 0 || (given[0] != '/' && strcmp(given, full + 1) == 0);
}

/* 1 when the last path component contains "label", any case. */
static int looks_like_labels(const char *name) {
  const char *leaf = strrchr(name, '/');
  leaf = leaf ? leaf + 1 : name;
  for (const char *p = leaf; *p; p++)
    if (strncasecmp(p, "label", 5) == 0) return 1;
  return 0;
}

int data_info(const char *path, const char *const *hist, int n_hist, FILE *out, char *err,
              size_t errlen) {
  h5util_guard q;
  char **names = NULL;
  size_t count = 0;
  int rc = -1;
  int *is_int = NULL;
  hid_t file = H5I_INVALID_HID;
  h5util_enter(&q);
  uint64_t file_size = 0;
  if (h5util_probe_file(path, &file_size, err, errlen) < 0) goto done;
  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    char why[160];
    h5util_set_err(err, errlen, "cannot open '%s' as HDF5 (truncated or damaged?): %s", path,
                   h5util_reason(why));
    goto done;
  }
  if (h5util_list_datasets(file, path, &names, &count, err, errlen) < 0) goto done;
  /* A requested dataset that is not in the file: say so before printing. */
  for (int k = 0; k < n_hist; k++) {
    int found = 0;
    for (size_t i = 0; i < count && !found; i++) found = same_dataset(hist[k], names[i]);
    if (!found) {
      h5util_set_err(err, errlen, "--histogram: dataset '%s' not found in '%s'", hist[k], path);
      goto done;
    }
  }
  hsize_t fsize = 0;
  H5Fget_filesize(file, &fsize);
  char sz[32];
  human((double)fsize, sz, sizeof sz);
  fprintf(out, "%s: HDF5, %s, %zu dataset%s\n", path, sz, count, count == 1 ? "" : "s");
  is_int = calloc(count ? count : 1, sizeof *is_int);
  if (!is_int) {
    h5util_set_err(err, errlen, "out of memory describing '%s'", path);
    goto done;
  }
  for (size_t i = 0; i < count; i++) {
    fprintf(out, "\n");
    describe(file, path, names[i], out, &is_int[i]);
  }
  for (size_t i = 0; i < count; i++) {
    int asked = 0;
    for (int k = 0; k < n_hist; k++) asked |= same_dataset(hist[k], names[i]);
    if (((is_int[i] && looks_like_labels(names[i])) || asked) &&
        histogram(file, path, names[i], file_size, out, err, errlen) < 0)
      goto done;
  }
  rc = 0;
done:
  h5util_free_names(names, count);
  free(is_int);
  if (file >= 0) H5Fclose(file);
  h5util_leave(&q);
  return rc;
}
