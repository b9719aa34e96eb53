/* ckpt/write — writing checkpoints in one call (ckpt_write, ckpt_write_mt)
 * and ckpt_export, on top of datahash (the data hash first), header,
 * frames (the payload streamed through zstd) and file (the atomic write).
 *
 * The payload streams from the tensors into the temporary file: no second
 * copy of the parameters is held. The distributed write's pieces
 * (ckpt_compress, ckpt_write_bytes, ckpt_part_*) live in frames.c and
 * file.c; the protocol that drives them is the saver's and train.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "datahash.h"
#include "file.h"
#include "frames.h"
#include "header.h"
#include "ms_error.h"

/* Records the message and jumps to the function's cleanup label. */
#define FAIL(label, ...)            \
  do {                              \
    rc = ms_error_set(__VA_ARGS__); \
    goto label;                     \
  } while (0)

/* The header of tensors and meta with their data hash: *hdr malloc'ed. */
static int make_header(const char *dir, const ckpt_tensor *t, int n, const ckpt_meta *meta,
                       uint64_t d, void **hdr, size_t *hlen) {
  uint64_t n_chunks = 0;
  ckpt_slice(d, 1, 0, NULL, NULL, NULL, &n_chunks);
  uint64_t *chunks = malloc(sizeof *chunks * (n_chunks ? n_chunks : 1));
  if (!chunks) return ms_error_set(MS_ENOMEM, "%s: out of memory", dir);
  ckpt_hash_chunks(t, n, 0, n_chunks, chunks);
  int rc = ckpt_header(dir, t, n, meta, ckpt_data_hash(chunks, n_chunks), hdr, hlen);
  free(chunks);
  return rc;
}

/* Writes dir/name atomically: `slices` zstd frames at `level`, or a plain
 * safetensors file when level is 0. */
static int write_file(const char *dir, const char *name, const ckpt_tensor *t, int n,
                      const ckpt_meta *meta, int level, int workers, int slices, char **out_path) {
  if (out_path) *out_path = NULL;
  if (!dir || !*dir || slices < 1) return ms_error_set(MS_ECKPT, "ckpt_write: invalid arguments");
  uint64_t d = 0;
  void *hdr = NULL;
  size_t hlen = 0;
  ckpt_zwriter w = {0};
  ckpt_atomic a = {0};
  w.what = dir;
  int rc = ckpt_hdr_check_meta(dir, meta);
  if (rc == 0) rc = ckpt_data_size(dir, t, n, &d);
  if (rc) return rc;

  if ((rc = make_header(dir, t, n, meta, d, &hdr, &hlen)) != 0) goto out;
  if ((rc = ckpt_atomic_open(&a, dir, name)) != 0) goto out;
  w.what = a.path;
  w.f = a.f;
  w.ocap = ZSTD_CStreamOutSize();
  if (level > 0 && (rc = ckpt_zw_setup(&w, level, workers)) != 0) goto out;
  if (!(w.obuf = malloc(w.ocap))) FAIL(out, MS_ENOMEM, "%s: out of memory", a.path);
  if (level <= 0) slices = 1;
  for (int r = 0; r < slices && rc == 0; r++) {
    uint64_t b, e;
    ckpt_slice(d, slices, r, &b, &e, NULL, NULL);
    if (r == 0 || e > b)
      rc = ckpt_zw_write_frame(&w, t, n, meta->byte_shuffle, r == 0 ? hdr : NULL, r == 0 ? hlen : 0,
                               b, e);
  }
  if (rc == 0) rc = ckpt_atomic_commit(&a);
out:
  ckpt_atomic_close(&a, rc, out_path);
  ckpt_zw_free(&w);
  free(w.obuf);
  free(hdr);
  return rc;
}

int ckpt_write(const char *dir, const ckpt_tensor *tensors, int n_tensors, const ckpt_meta *meta,
               int level, char **out_path) {
  return ckpt_write_mt(dir, tensors, n_tensors, meta, level, 0, 1, out_path);
}

int ckpt_write_mt(const char *dir, const ckpt_tensor *tensors, int n_tensors, const ckpt_meta *meta,
                  int level, int workers, int slices, char **out_path) {
  char name[64];
  if (out_path) *out_path = NULL;
  if (!meta) return ms_error_set(MS_ECKPT, "ckpt_write: invalid arguments");
  snprintf(name, sizeof name, "step-%08" PRId64 ".safetensors.zst", meta->step);
  return write_file(dir, name, tensors, n_tensors, meta, level < 1 ? 1 : level, workers, slices,
                    out_path);
}

int ckpt_write_named(const char *dir, const char *name, const ckpt_tensor *tensors, int n_tensors,
                     const ckpt_meta *meta, int level, int workers, char **out_path) {
  if (out_path) *out_path = NULL;
  /* A step-<8 digits> name would join the rolling checkpoints. */
  if (!meta || !name || !*name || strchr(name, '/') || !strncmp(name, "step-", 5) || name[0] == '.')
    return ms_error_set(MS_ECKPT, "ckpt_write_named: invalid arguments");
  return write_file(dir, name, tensors, n_tensors, meta, level < 1 ? 1 : level, workers, 1,
                    out_path);
}

int ckpt_export(const char *in_path, const char *out_path, const char *skip_prefix) {
  ckpt_contents c;
  struct stat si, so;
  /* The output replaces its path by rename: never onto the input, whatever
   * the spelling (a symlink, a hard link, "./x"). */
  if (stat(in_path, &si) == 0 && stat(out_path, &so) == 0 && si.st_dev == so.st_dev &&
      si.st_ino == so.st_ino)
    return ms_error_set(MS_EUSAGE, "export: %s is the checkpoint being read (%s): choose another output",
                        out_path, in_path);
  int rc = ckpt_load(in_path, &c);
  if (rc) return rc;
  ckpt_tensor *keep = malloc(sizeof *keep * (size_t)(c.n_tensors ? c.n_tensors : 1));
  char *dir = strdup(out_path);
  if (!keep || !dir) FAIL(out, MS_ENOMEM, "%s: out of memory", out_path);
  int n = 0;
  size_t plen = skip_prefix ? strlen(skip_prefix) : 0;
  for (int i = 0; i < c.n_tensors; i++)
    if (!plen || strncmp(c.tensors[i].name, skip_prefix, plen) != 0) keep[n++] = c.tensors[i];
  char *slash = strrchr(dir, '/');
  const char *name = slash ? slash + 1 : out_path;
  if (slash) {
    *slash = '\0';
    if (!*dir) strcpy(dir, "/");
  } else {
    strcpy(dir, ".");
  }
  if (!*name) FAIL(out, MS_EUSAGE, "'%s' names a directory, not a file", out_path);
  c.meta.byte_shuffle = 0; /* ckpt_load unshuffled the values: write them plain */
  rc = write_file(dir, name, keep, n, &c.meta, 0, 0, 1, NULL);
out:
  free(dir);
  free(keep);
  ckpt_contents_free(&c);
  return rc;
}
