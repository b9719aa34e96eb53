/* ckpt/file — see file.h. */
#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "ckpt.h"
#include "ms_error.h"

/* Records the message and jumps to the function's cleanup label. */
#define FAIL(label, ...)            \
  do {                              \
    rc = ms_error_set(__VA_ARGS__); \
    goto label;                     \
  } while (0)

int ckpt_file_check_step(const char *what, int64_t step) {
  if (step < 0 || step > CKPT_MAX_STEP)
    return ms_error_set(MS_ECKPT, "%s: step %" PRId64 " cannot be a checkpoint id (0 to %lld)",
                        what, step, CKPT_MAX_STEP);
  return 0;
}

char *ckpt_file_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *s = malloc(a + b + 2);
  if (!s) return NULL;
  memcpy(s, dir, a);
  s[a] = '/';
  memcpy(s + a + 1, name, b + 1);
  return s;
}

/* <dir>/step-<step>.safetensors.zst, or with tmp the temporary name that
 * ckpt_atomic_open gives it. */
static char *step_name(const char *dir, int64_t step, int tmp) {
  char name[96];
  if (tmp)
    snprintf(name, sizeof name, ".step-%08" PRId64 ".safetensors.zst.tmp.%ld", step,
             (long)getpid());
  else
    snprintf(name, sizeof name, "step-%08" PRId64 ".safetensors.zst", step);
  return ckpt_file_join(dir, name);
}

/* mkdir -p: creates every missing component of path. */
static int make_dirs(const char *path) {
  char *p = strdup(path);
  if (!p) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      int rc = ms_error_set(MS_EIO, "%s: cannot create directory %s: %s", path, p, strerror(errno));
      free(p);
      return rc;
    }
    *s = '/';
  }
  free(p);
  if (mkdir(path, 0777) != 0 && errno != EEXIST)
    return ms_error_set(MS_EIO, "%s: cannot create directory: %s", path, strerror(errno));
  struct stat st;
  if (stat(path, &st) != 0)
    return ms_error_set(MS_EIO, "%s: cannot create directory: %s", path, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return ms_error_set(MS_EIO, "%s: cannot create directory: it exists and is not a directory",
                        path);
  return 0;
}

int ckpt_atomic_open(ckpt_atomic *a, const char *dir, const char *name) {
  char tmpname[320];
  snprintf(tmpname, sizeof tmpname, ".%s.tmp.%ld", name, (long)getpid());
  a->dir = dir;
  a->path = ckpt_file_join(dir, name);
  a->tmp = ckpt_file_join(dir, tmpname);
  a->f = NULL;
  if (!a->path || !a->tmp) return ms_error_set(MS_ENOMEM, "%s: out of memory", dir);
  int rc = make_dirs(dir);
  if (rc) return rc;
  a->f = fopen(a->tmp, "wb");
  if (!a->f)
    return ms_error_set(MS_EIO, "%s: cannot create temporary file %s: %s", a->path, a->tmp,
                        strerror(errno));
  return 0;
}

/* Syncs the directory of a file just renamed into it: that makes the
 * rename itself durable. File systems that cannot sync a directory say
 * EINVAL; the file is in place either way. */
static int sync_dir(const char *dir, const char *path) {
  int rc = 0, dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL))
    rc = ms_error_set(MS_EIO, "%s: cannot sync directory %s: %s", path, dir, strerror(errno));
  if (dfd >= 0) close(dfd);
  return rc;
}

int ckpt_atomic_commit(ckpt_atomic *a) {
  FILE *f = a->f;
  a->f = NULL;
  int rc = 0;
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
    rc = ms_error_set(MS_EIO, "%s: write failed: %s", a->path, strerror(errno));
    fclose(f);
    return rc;
  }
  if (fclose(f) != 0) return ms_error_set(MS_EIO, "%s: write failed: %s", a->path, strerror(errno));
  if (rename(a->tmp, a->path) != 0)
    return ms_error_set(MS_EIO, "%s: cannot rename %s into place: %s", a->path, a->tmp,
                        strerror(errno));
  free(a->tmp);
  a->tmp = NULL; /* in place: nothing to remove any more */
  return sync_dir(a->dir, a->path);
}

void ckpt_atomic_close(ckpt_atomic *a, int rc, char **out_path) {
  if (a->f) fclose(a->f);
  if (a->tmp && rc) unlink(a->tmp);
  if (rc == 0 && out_path) {
    *out_path = a->path;
    a->path = NULL;
  }
  free(a->tmp);
  free(a->path);
  a->f = NULL;
  a->tmp = a->path = NULL;
}

int ckpt_write_bytes(const char *dir, int64_t step, const void *bytes, size_t len,
                     char **out_path) {
  if (out_path) *out_path = NULL;
  if (!dir || !*dir || (len && !bytes))
    return ms_error_set(MS_ECKPT, "ckpt_write: invalid arguments");
  int rc = ckpt_file_check_step(dir, step);
  if (rc) return rc;
  char name[64];
  snprintf(name, sizeof name, "step-%08" PRId64 ".safetensors.zst", step);
  ckpt_atomic a;
  rc = ckpt_atomic_open(&a, dir, name);
  if (rc == 0 && len && fwrite(bytes, 1, len, a.f) != len)
    rc = ms_error_set(MS_EIO, "%s: write failed: %s", a.path, strerror(errno));
  if (rc == 0) rc = ckpt_atomic_commit(&a);
  ckpt_atomic_close(&a, rc, out_path);
  return rc;
}

/* ---- one file, written in parts by several processes -------------------- */

int ckpt_part_create(const char *dir, int64_t step, char **tmp_path) {
  *tmp_path = NULL;
  int rc = ckpt_file_check_step(dir, step);
  if (rc == 0) rc = make_dirs(dir);
  if (rc) return rc;
  char *tmp = step_name(dir, step, 1);
  if (!tmp) return ms_error_set(MS_ENOMEM, "%s: out of memory", dir);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    rc = ms_error_set(MS_EIO, "%s: cannot create temporary file %s: %s", dir, tmp, strerror(errno));
    free(tmp);
    return rc;
  }
  close(fd);
  *tmp_path = tmp;
  return 0;
}

int ckpt_part_write(const char *dir, int64_t step, const char *tmp_path, uint64_t offset,
                    const void *bytes, size_t len) {
  char *path = step_name(dir, step, 0);
  const char *what = path ? path : tmp_path;
  int fd = open(tmp_path, O_WRONLY | O_CLOEXEC), rc = 0;
  if (fd < 0)
    rc = ms_error_set(MS_EIO, "%s: cannot open the temporary file %s: %s", what, tmp_path,
                      strerror(errno));
  const char *p = bytes;
  while (fd >= 0 && len && rc == 0) {
    ssize_t w = pwrite(fd, p, len, (off_t)offset);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      rc = ms_error_set(MS_EIO, "%s: write failed at byte %" PRIu64 ": %s", what, offset,
                        w < 0 ? strerror(errno) : "no progress");
    else
      p += w, offset += (uint64_t)w, len -= (size_t)w;
  }
  if (fd >= 0 && rc == 0 && fsync(fd) != 0)
    rc = ms_error_set(MS_EIO, "%s: write failed: %s", what, strerror(errno));
  if (fd >= 0 && close(fd) != 0 && rc == 0)
    rc = ms_error_set(MS_EIO, "%s: write failed: %s", what, strerror(errno));
  free(path);
  return rc;
}

int ckpt_part_commit(const char *dir, int64_t step, const char *tmp_path, uint64_t len,
                     char **out_path) {
  if (out_path) *out_path = NULL;
  char *path = step_name(dir, step, 0);
  if (!path) return ms_error_set(MS_ENOMEM, "%s: out of memory", dir);
  struct stat st;
  int rc = 0;
  if (stat(tmp_path, &st) != 0)
    rc = ms_error_set(MS_EIO, "%s: cannot stat %s: %s", path, tmp_path, strerror(errno));
  else if ((uint64_t)st.st_size != len)
    rc = ms_error_set(MS_EIO,
                      "%s: %s has %lld bytes after every rank wrote its part, expected %" PRIu64,
                      path, tmp_path, (long long)st.st_size, len);
  if (rc == 0 && rename(tmp_path, path) != 0)
    rc = ms_error_set(MS_EIO, "%s: cannot rename %s into place: %s", path, tmp_path,
                      strerror(errno));
  if (rc)
    unlink(tmp_path);
  else
    rc = sync_dir(dir, path);
  if (rc == 0 && out_path)
    *out_path = path;
  else
    free(path);
  return rc;
}

void ckpt_part_abort(const char *tmp_path) {
  if (tmp_path) unlink(tmp_path);
}

/* ---- listing and pruning ------------------------------------------------ */

static int found_cmp_desc(const void *a, const void *b) {
  const ckpt_found *x = a, *y = b;
  return (x->step < y->step) - (x->step > y->step);
}

/* @return the step of a name "step-<8 digits>.safetensors.zst", or -1. */
static int64_t name_step(const char *name) {
  if (strlen(name) != CKPT_NAME_LEN || strncmp(name, "step-", 5) != 0 ||
      strcmp(name + 13, ".safetensors.zst") != 0)
    return -1;
  int64_t s = 0;
  for (int i = 5; i < 13; i++) {
    if (name[i] < '0' || name[i] > '9') return -1;
    s = s * 10 + (name[i] - '0');
  }
  return s;
}

int ckpt_file_list(const char *dir, ckpt_found **out, size_t *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d && errno == ENOENT) return 0;
  if (!d) return ms_error_set(MS_EIO, "%s: cannot list directory: %s", dir, strerror(errno));
  size_t cap = 0;
  struct dirent *de;
  int rc = 0;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    int64_t s = name_step(de->d_name);
    if (s < 0) continue;
    if (*n == cap) {
      ckpt_found *g = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof *g);
      if (!g) FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
      *out = g;
    }
    struct stat st;
    (*out)[*n].step = s;
    (*out)[*n].regular = fstatat(dirfd(d), de->d_name, &st, 0) == 0 && S_ISREG(st.st_mode);
    memcpy((*out)[(*n)++].name, de->d_name, CKPT_NAME_LEN + 1);
    errno = 0;
  }
  if (errno != 0) FAIL(out, MS_EIO, "%s: cannot list directory: %s", dir, strerror(errno));
  if (*n) qsort(*out, *n, sizeof **out, found_cmp_desc);
out:
  closedir(d);
  return rc;
}

/* Deletes temporary files that a writer killed mid-write left behind
 * (".step-XXXXXXXX.safetensors.zst.tmp.PID"); a directory has one writer, so
 * none of them is still being written when this runs. */
static int clean_temp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return errno == ENOENT
               ? 0
               : ms_error_set(MS_EIO, "%s: cannot list directory: %s", dir, strerror(errno));
  int rc = 0;
  struct dirent *de;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    const char *nm = de->d_name;
    if (nm[0] != '.' || name_step(nm + 1) >= 0 || strstr(nm, ".safetensors.zst.tmp.") == NULL ||
        strncmp(nm, ".step-", 6) != 0)
      continue;
    struct stat st;
    if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
      continue; /* not a file a writer left */
    char *path = ckpt_file_join(dir, nm);
    if (!path)
      rc = ms_error_set(MS_ENOMEM, "%s: out of memory", dir);
    else if (unlink(path) != 0 && errno != ENOENT)
      rc = ms_error_set(MS_EIO, "%s: cannot delete: %s", path, strerror(errno));
    free(path);
  }
  closedir(d);
  return rc;
}

int ckpt_prune(const char *dir, int keep) {
  ckpt_found *fs = NULL;
  size_t n = 0;
  char *path = NULL;
  if (!dir) return ms_error_set(MS_ECKPT, "ckpt_prune: invalid arguments");
  int rc = clean_temp(dir);
  if (rc == 0) rc = ckpt_file_list(dir, &fs, &n);
  /* Only regular files count and are deleted: a directory or FIFO named
   * like a checkpoint is not one (readers skip it with a note). */
  for (size_t i = 0, kept = 0; rc == 0 && i < n; i++) {
    if (!fs[i].regular || kept++ < (keep < 1 ? 1u : (size_t)keep)) continue;
    if (!(path = ckpt_file_join(dir, fs[i].name))) FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
    if (unlink(path) != 0 && errno != ENOENT)
      FAIL(out, MS_EIO, "%s: cannot delete: %s", path, strerror(errno));
    free(path);
    path = NULL;
  }
out:
  free(path);
  free(fs);
  return rc;
}
