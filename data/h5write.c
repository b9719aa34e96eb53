#include "h5write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"

/* Datasets per file: predict writes two. */
#define H5WRITE_MAX_SETS 8

struct h5write {
  char *path;
  hid_t file;
  int n_sets;
  hid_t sets[H5WRITE_MAX_SETS];
  uint64_t cols[H5WRITE_MAX_SETS];
  uint64_t rows;
};

int h5write_parallel(void) {
#ifdef H5_HAVE_PARALLEL
  return 1;
#else
  return 0;
#endif
}

/* Why path cannot be created, when HDF5 does not say (MPI-IO errors leave
 * its stack empty): its directory is missing or not writable. */
static const char *create_reason(const char *path, char why[160]) {
  if (h5util_reason(why)[0]) return why;
  char dir[4096];
  const char *slash = strrchr(path, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1,
           slash ? path : ".");
  if (access(dir, W_OK) != 0)
    snprintf(why, 160, "its directory: %s", strerror(errno));
  return why;
}

/* The file access list: MPI-IO on comm with a parallel HDF5. */
static hid_t access_list(MPI_Comm comm) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#ifdef H5_HAVE_PARALLEL
  if (fapl >= 0 && H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
    H5Pclose(fapl);
    return H5I_INVALID_HID;
  }
#else
  (void)comm;
#endif
  return fapl;
}

static int add_source(hid_t file, const char *source) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
  int ok = t >= 0 && sp >= 0 && H5Tset_size(t, strlen(source) + 1) >= 0 &&
           (a = H5Acreate2(file, "source", t, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
           H5Awrite(a, t, source) >= 0;
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  return ok ? 0 : -1;
}

static int add_set(h5write *h, const h5write_set *s, char *err, size_t errlen) {
  char why[160];
  hsize_t dims[2] = {(hsize_t)h->rows, (hsize_t)s->cols};
  hid_t sp = H5Screate_simple(s->cols ? 2 : 1, dims, NULL);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  hid_t d = H5I_INVALID_HID;
  if (sp >= 0 && lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
    d = H5Dcreate2(h->file, s->name, s->cols ? H5T_IEEE_F32LE : H5T_STD_I32LE, sp, lcpl,
                   H5P_DEFAULT, H5P_DEFAULT);
  if (lcpl >= 0) H5Pclose(lcpl);
  if (sp >= 0) H5Sclose(sp);
  if (d < 0) {
    h5util_set_err(err, errlen, "cannot create dataset '%s' in '%s': %s", s->name, h->path,
                   h5util_reason(why));
    return -1;
  }
  h->cols[h->n_sets] = s->cols;
  h->sets[h->n_sets++] = d;
  return 0;
}

int h5write_create(h5write **out, MPI_Comm comm, const char *path, uint64_t rows,
                   const h5write_set *sets, int n_sets, const char *source, char *err,
                   size_t errlen) {
  h5util_guard q;
  char why[160];
  *out = NULL;
  if (n_sets < 1 || n_sets > H5WRITE_MAX_SETS || rows == 0) {
    h5util_set_err(err, errlen, "'%s': %d datasets of %llu rows is not a file h5write makes", path,
                   n_sets, (unsigned long long)rows);
    return -1;
  }
  h5write *h = calloc(1, sizeof *h);
  if (!h || !(h->path = strdup(path))) {
    free(h);
    h5util_set_err(err, errlen, "out of memory creating '%s'", path);
    return -1;
  }
  h->rows = rows;
  h5util_enter(&q);
  hid_t fapl = access_list(comm);
  h->file = fapl < 0 ? H5I_INVALID_HID : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (fapl >= 0) H5Pclose(fapl);
  int rc = 0;
  if (h->file < 0) {
    h5util_set_err(err, errlen, "cannot create '%s': %s", path, create_reason(path, why));
    rc = -1;
  }
  for (int i = 0; rc == 0 && i < n_sets; i++) rc = add_set(h, &sets[i], err, errlen);
  if (rc == 0 && source && add_source(h->file, source) < 0) {
    h5util_set_err(err, errlen, "cannot write the 'source' attribute of '%s': %s", path,
                   h5util_reason(why));
    rc = -1;
  }
  h5util_leave(&q);
  /* Even on failure: closing is collective when parallel, so the caller
   * closes on every process once they agreed (h5write.h). */
  *out = h;
  return rc;
}

int h5write_rows(h5write *h, int set, uint64_t row0, uint64_t n, const void *data, char *err,
                 size_t errlen) {
  char why[160];
  if (set < 0 || set >= h->n_sets || row0 > h->rows || n > h->rows - row0) {
    h5util_set_err(err, errlen, "rows %llu..+%llu are outside '%s' (%llu rows)",
                   (unsigned long long)row0, (unsigned long long)n, h->path,
                   (unsigned long long)h->rows);
    return -1;
  }
  if (n == 0) return 0;
  h5util_guard q;
  h5util_enter(&q);
  const uint64_t cols = h->cols[set];
  hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)cols};
  const int rank = cols ? 2 : 1;
  hid_t fsp = H5Dget_space(h->sets[set]), msp = H5Screate_simple(rank, count, NULL);
  int ok = fsp >= 0 && msp >= 0 &&
           H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
           H5Dwrite(h->sets[set], cols ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32, msp, fsp, H5P_DEFAULT,
                    data) >= 0;
  if (!ok)
    h5util_set_err(err, errlen, "cannot write rows %llu..+%llu of '%s': %s",
                   (unsigned long long)row0, (unsigned long long)n, h->path, h5util_reason(why));
  if (msp >= 0) H5Sclose(msp);
  if (fsp >= 0) H5Sclose(fsp);
  h5util_leave(&q);
  return ok ? 0 : -1;
}

int h5write_close(h5write *h, char *err, size_t errlen) {
  if (!h) return 0;
  h5util_guard q;
  char why[160];
  int rc = 0;
  h5util_enter(&q);
  for (int i = 0; i < h->n_sets; i++)
    if (H5Dclose(h->sets[i]) < 0) rc = -1;
  if (h->file >= 0 && H5Fclose(h->file) < 0) rc = -1;
  if (rc) h5util_set_err(err, errlen, "cannot close '%s': %s", h->path, h5util_reason(why));
  h5util_leave(&q);
  free(h->path);
  free(h);
  return rc;
}
