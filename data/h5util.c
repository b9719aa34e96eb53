#include "h5util.h"

#include "h5guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static pthread_mutex_t hdf5_lock;
static pthread_once_t hdf5_lock_once = PTHREAD_ONCE_INIT;

static void hdf5_lock_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&hdf5_lock, &a);
  pthread_mutexattr_destroy(&a);
}

void h5util_lock(void) {
  pthread_once(&hdf5_lock_once, hdf5_lock_init);
  pthread_mutex_lock(&hdf5_lock);
}

void h5util_unlock(void) { pthread_mutex_unlock(&hdf5_lock); }

void h5util_enter(h5util_guard *g) {
  h5util_lock();
  H5Eget_auto2(H5E_DEFAULT, &g->func, &g->data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5util_leave(const h5util_guard *g) {
  H5Eset_auto2(H5E_DEFAULT, g->func, g->data);
  h5util_unlock();
}

void h5util_set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static herr_t first_error_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  char *out = data;
  if (out[0] == '\0' && e->desc && e->desc[0]) snprintf(out, 160, "%s", e->desc);
  return 0;
}

const char *h5util_reason(char buf[160]) {
  buf[0] = '\0';
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error_cb, buf);
  return buf;
}

void h5util_type_name(hid_t t, char *buf, size_t len) {
  size_t bits = H5Tget_size(t) * 8;
  switch (H5Tget_class(t)) {
    case H5T_INTEGER:
      snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
      return;
    case H5T_FLOAT:
      if (bits == 16 && !h5util_is_ieee_half(t))
        snprintf(buf, len, "float16 (non-IEEE layout)");
      else
        snprintf(buf, len, "float%zu", bits);
      return;
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

int h5util_is_ieee_half(hid_t t) {
  size_t spos, epos, esize, mpos, msize;
  if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 2) return 0;
  if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0) return 0;
  return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 &&
         H5Tget_ebias(t) == 15 && H5Tget_offset(t) == 0 && H5Tget_precision(t) == 16 &&
         H5Tget_norm(t) == H5T_NORM_IMPLIED;
}

void h5util_shape_str(const hsize_t *dims, int rank, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "(");
  for (int i = 0; i < rank && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "",
                             (unsigned long long)dims[i]);
  if (used < len) snprintf(buf + used, len - used, rank == 1 ? ",)" : ")");
}

/* What is at `path`, before HDF5 looks: missing, not a regular file (a
 * FIFO would block the open), not HDF5. */
int h5util_probe_file(const char *path, uint64_t *size, char *err, size_t errlen) {
  uint64_t bytes = 0;
  if (h5guard_regular_file(path, "an HDF5 file", &bytes, err, errlen) < 0) return -1;
  FILE *probe = fopen(path, "rb");
  if (!probe) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  fclose(probe);
  if (H5Fis_hdf5(path) <= 0) {
    h5util_set_err(err, errlen, "'%s' is not an HDF5 file (%llu bytes, no HDF5 signature)", path,
                   (unsigned long long)bytes);
    return -1;
  }
  if (size) *size = bytes;
  return 0;
}

/* ---- the dataset lister -------------------------------------------------- */

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
    if (!grown) return l->oom = 1, 1;
    l->names = grown;
    l->cap = cap;
  }
  size_t len = strlen(name);
  char *s = malloc(len + 2);
  if (!s) return l->oom = 1, 1;
  s[0] = '/';
  memcpy(s + 1, name, len + 1);
  l->names[l->count++] = s;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int h5util_list_datasets(hid_t file, const char *path, char ***names, size_t *count, char *err,
                         size_t errlen) {
  name_list l = {0};
  int rc = 0;
  if (H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, list_cb, &l, H5O_INFO_BASIC) < 0 || l.oom) {
    char why[160];
    h5util_set_err(err, errlen, "cannot list the datasets of '%s': %s", path,
                   l.oom ? "out of memory" : h5util_reason(why));
    rc = -1;
  }
  if (l.count > 1) qsort(l.names, l.count, sizeof *l.names, cmp_str);
  *names = l.names;
  *count = l.count;
  return rc;
}

void h5util_free_names(char **names, size_t count) {
  for (size_t i = 0; i < count; i++) free(names[i]);
  free(names);
}
