/* ckpt/read — reading checkpoints (ckpt.h "reading" and "directories"), on
 * top of frames (the zstd stream), header (the JSON), datahash and file
 * (the directory listing).
 *
 * One pass: the header is decompressed into a small buffer and parsed,
 * then each tensor's bytes are decompressed straight into its destination
 * (or a scratch buffer), hashed as they arrive. Whether the file fits the
 * caller is decided from the header but reported only once the whole file
 * verified: until then it might just be damaged.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "datahash.h"
#include "file.h"
#include "frames.h"
#include "header.h"
#include "ms_error.h"
#include "section.h"

#define CKPT_SCRATCH (1u << 20)

/* Records the message and jumps to the function's cleanup label. */
#define FAIL(label, ...)            \
  do {                              \
    rc = ms_error_set(__VA_ARGS__); \
    goto label;                     \
  } while (0)

void ckpt_meta_free(ckpt_meta *meta) {
  if (!meta) return;
  free(meta->config);
  meta->config = NULL;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
  size_t len = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < ndim && len < cap; d++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, d ? ", " : "", shape[d]);
  if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Matches the file's tensors with the requested ones (any order, exactly). */
static int match_tensors(const char *path, ckpt_entry *es, size_t ne, const ckpt_tensor *t, int n) {
  char fs[128], ms[128];
  for (int i = 0; i < n; i++) {
    int64_t bytes = ckpt_sec_tensor_bytes(t[i].ndim, t[i].shape);
    if (!t[i].name || bytes < 0 || (bytes > 0 && !t[i].data))
      return ms_error_set(MS_ECKPT, "%s: requested tensor %d is invalid", path, i);
    size_t j = 0;
    while (j < ne && strcmp(es[j].name, t[i].name) != 0) j++;
    if (j == ne)
      return ms_error_set(
          MS_ECKPT,
          "%s: tensor '%s' is missing from the file: this checkpoint was made for another model",
          path, t[i].name);
    if (es[j].req >= 0)
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' is requested twice", path, t[i].name);
    int same = es[j].ndim == t[i].ndim;
    for (int d = 0; same && d < t[i].ndim; d++) same = es[j].shape[d] == t[i].shape[d];
    if (!same) {
      shape_str(fs, sizeof fs, es[j].ndim, es[j].shape);
      shape_str(ms, sizeof ms, t[i].ndim, t[i].shape);
      return ms_error_set(MS_ECKPT,
                          "%s: tensor '%s' has shape %s in the file but the model expects %s: this "
                          "checkpoint was made for another model",
                          path, t[i].name, fs, ms);
    }
    es[j].req = i;
  }
  for (size_t j = 0; j < ne; j++)
    if (es[j].req < 0)
      return ms_error_set(MS_ECKPT,
                          "%s: the file holds tensor '%s' that the model does not have: this "
                          "checkpoint was made for another model",
                          path, ms_escape(es[j].name, 0, fs, sizeof fs));
  return 0;
}

/* For ckpt_load: every tensor of the file becomes a destination, in file
 * order, backed by one arena. */
static int take_all(const char *path, ckpt_hdr *h, ckpt_contents *all) {
  all->tensors = calloc(h->ne ? h->ne : 1, sizeof *all->tensors);
  all->arena = malloc(h->data_size ? (size_t)h->data_size : 1);
  if (!all->tensors || !all->arena) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  for (size_t j = 0; j < h->ne; j++) {
    ckpt_entry *e = &h->es[j];
    ckpt_tensor *t = &all->tensors[j];
    char q[128];
    if (e->begin % sizeof(float))
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' is not 4-byte aligned", path,
                          ms_escape(e->name, 0, q, sizeof q));
    if (!(t->name = strdup(e->name))) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
    all->n_tensors = (int)j + 1;
    t->ndim = e->ndim;
    memcpy(t->shape, e->shape, sizeof t->shape);
    t->data = (float *)((unsigned char *)all->arena + e->begin);
    e->req = (int)j;
  }
  return 0;
}

/* Opens path and parses its header into h; r is left at the data section. */
static int read_header(const char *path, ckpt_zreader *r, ckpt_hdr *h) {
  uint64_t csize, hlen;
  unsigned char len8[8];
  int rc = ckpt_zr_open(r, path, CKPT_MAX_PAYLOAD, &csize);
  if (rc == 0) rc = ckpt_zr_read(r, len8, 8);
  if (rc == 0) rc = ckpt_hdr_length(path, len8, csize, &hlen);
  if (rc) return rc;
  char *text = malloc((size_t)hlen);
  if (!text) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  rc = ckpt_zr_read(r, text, (size_t)hlen);
  if (rc == 0) rc = ckpt_hdr_parse(path, text, (size_t)hlen, h);
  free(text);
  r->data_start = 8 + hlen;
  r->data_size = h->data_size;
  /* Before anything is sized by the header: the tensors must cover exactly
   * what the frames declare, which their blocks can hold (frames.h). */
  if (rc == 0 && r->data_size > r->payload_size - r->data_start)
    rc = ms_error_set(MS_ECKPT,
                      "%s: the tensors cover %" PRIu64 " bytes but the data section has %" PRIu64
                      ": the zstd stream ends after frame %d",
                      path, r->data_size, r->payload_size - r->data_start, r->n_frames);
  else if (rc == 0 && r->data_size < r->payload_size - r->data_start)
    rc = ms_error_set(MS_ECKPT,
                      "%s: the payload is longer than its header says (the tensors cover %" PRIu64
                      " bytes, the zstd frames hold %" PRIu64
                      "): unexpected bytes after the zstd frames",
                      path, r->data_size, r->payload_size - r->data_start);
  return rc;
}

/* Whether the file, by its header, fits the requested tensors and layout
 * hash. @return 0 or the error (its message recorded). */
static int check_fit(const char *path, ckpt_hdr *h, const ckpt_tensor *tensors, int n_tensors,
                     uint64_t expected_layout_hash) {
  if (!tensors) return 0;
  int rc = match_tensors(path, h->es, h->ne, tensors, n_tensors);
  if (rc) return rc;
  if (expected_layout_hash != 0 && h->meta.layout_hash != expected_layout_hash)
    return ms_error_set(MS_ECKPT,
                        "%s: layout hash %016" PRIx64 " in the file but the model has %016" PRIx64
                        ": this checkpoint was made for another model",
                        path, h->meta.layout_hash, expected_layout_hash);
  return 0;
}

/* Asks accept (if any) about a verified file's metadata: only then is the
 * saved config parsed, so a damaged file never reaches the YAML parser. */
static int ask_accept(const char *path, const ckpt_hdr *h, ckpt_accept_fn accept, void *ctx) {
  if (!accept) return 0;
  ckpt_meta view = h->meta;
  view.config = (char *)h->config;
  return accept(ctx, path, &view);
}

/* Hashes the values of n byte-shuffled floats (plane b of x holds byte b
 * of every float) through a small buffer: a tensor only being verified
 * costs its stored size once, not twice. */
static void hash_shuffled(const unsigned char *x, size_t n, ckpt_hasher *hs) {
  unsigned char buf[4096];
  for (size_t i = 0; i < n;) {
    size_t k = n - i < sizeof buf / 4 ? n - i : sizeof buf / 4;
    for (size_t j = 0; j < k; j++)
      for (size_t b = 0; b < 4; b++) buf[4 * j + b] = x[b * n + i + j];
    ckpt_hasher_update(hs, buf, 4 * k);
    i += k;
  }
}

/* Reads one entry's bytes into its destination (or a buffer of its own
 * when it has none but is byte-shuffled), unshuffled, and hashes them. */
static int read_whole(const char *path, ckpt_zreader *r, const ckpt_entry *e, float *dst,
                      int shuffled, ckpt_hasher *hs) {
  uint64_t left = e->end - e->begin;
  float *own = NULL;
  if (!dst && !(dst = own = malloc((size_t)left)))
    return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  int rc = ckpt_zr_read(r, dst, (size_t)left);
  if (rc == 0 && own && shuffled) {
    hash_shuffled((const unsigned char *)own, (size_t)left / sizeof(float), hs);
    free(own);
    return 0;
  }
  if (rc == 0 && shuffled && left) {
    float *tmp = malloc((size_t)left);
    if (!tmp)
      rc = ms_error_set(MS_ENOMEM, "%s: out of memory", path);
    else
      ckpt_sec_unshuffle(dst, (size_t)left / sizeof(float), tmp);
    free(tmp);
  }
  if (rc == 0 && left) ckpt_hasher_update(hs, dst, (size_t)left);
  free(own);
  return rc;
}

/* Reads the data section in file order, hashing the values, and checks the
 * end of the stream and the data hash. Entries with req >= 0 go to
 * tensors[req]. */
static int read_data(const char *path, ckpt_zreader *r, const ckpt_hdr *h,
                     const ckpt_tensor *tensors) {
  ckpt_hasher hs;
  unsigned char *scratch = NULL;
  int rc = 0;
  ckpt_hasher_init(&hs, h->version);
  for (size_t j = 0; j < h->ne && rc == 0; j++) {
    const ckpt_entry *e = &h->es[j];
    uint64_t left = e->end - e->begin;
    if (e->req >= 0 || (h->meta.byte_shuffle && left)) {
      rc = read_whole(path, r, e, e->req >= 0 ? tensors[e->req].data : NULL, h->meta.byte_shuffle,
                      &hs);
      continue;
    }
    if (!scratch && !(scratch = malloc(CKPT_SCRATCH)))
      FAIL(out, MS_ENOMEM, "%s: out of memory", path);
    while (left && rc == 0) {
      size_t c = left < CKPT_SCRATCH ? (size_t)left : CKPT_SCRATCH;
      if ((rc = ckpt_zr_read(r, scratch, c)) == 0) ckpt_hasher_update(&hs, scratch, c);
      left -= c;
    }
  }
  if (rc == 0) rc = ckpt_zr_finish(r);
  uint64_t got = ckpt_hasher_final(&hs);
  if (rc == 0 && got != h->data_hash)
    rc = ms_error_set(MS_ECKPT,
                      "%s: corrupted (data hash %016" PRIx64
                      " does not match the header's %016" PRIx64 ")",
                      path, got, h->data_hash);
out:
  free(scratch);
  return rc;
}

/* The whole reader. With tensors == NULL it verifies everything but keeps
 * only the metadata; with `all` it loads every tensor the file holds. A
 * file that does not fit (tensors or layout hash differ) is read on to the
 * end before that is reported; accept is asked only once the file
 * verified; *verified (if not NULL) says whether the file itself
 * verified. */
static int read_ckpt(const char *path, const ckpt_tensor *tensors, int n_tensors,
                     uint64_t expected_layout_hash, ckpt_accept_fn accept, void *ctx,
                     ckpt_meta *meta, ckpt_contents *all, int *verified) {
  int rc, fit_rc = 0;
  char *fit_msg = NULL;
  ckpt_zreader r = {0};
  ckpt_hdr h = {0};
  if (meta) memset(meta, 0, sizeof *meta);
  if (verified) *verified = 0;
  if (!path || n_tensors < 0 || (n_tensors > 0 && !tensors))
    return ms_error_set(MS_ECKPT, "ckpt_read: invalid arguments");
  if ((rc = read_header(path, &r, &h)) != 0) goto out;
  if (all && (rc = take_all(path, &h, all)) != 0) goto out;
  if (all) tensors = NULL; /* take_all set the destinations: nothing to match */
  fit_rc = check_fit(path, &h, tensors, n_tensors, expected_layout_hash);
  if (fit_rc) {
    if (!(fit_msg = strdup(ms_error_msg()))) FAIL(out, MS_ENOMEM, "%s: out of memory", path);
    for (size_t j = 0; j < h.ne; j++) h.es[j].req = -1; /* read on, into scratch */
  }
  if ((rc = read_data(path, &r, &h, all ? all->tensors : tensors)) != 0) goto out;
  if (verified) *verified = 1;
  /* The config is asked about first, so that a changed model is named by
   * its keys rather than by the tensor shapes. */
  if ((rc = ask_accept(path, &h, accept, ctx)) == CKPT_DAMAGED) {
    if (verified) *verified = 0; /* passed over like a file that does not verify */
    rc = MS_ECKPT;
  }
  if (rc) goto out;
  if (fit_rc) FAIL(out, fit_rc, "%s", fit_msg);
  if (meta) {
    if (!(h.meta.config = strdup(h.config))) FAIL(out, MS_ENOMEM, "%s: out of memory", path);
    *meta = h.meta;
  }
out:
  free(fit_msg);
  ckpt_hdr_free(&h);
  ckpt_zr_close(&r);
  return rc;
}

int ckpt_read(const char *path, const ckpt_tensor *tensors, int n_tensors,
              uint64_t expected_layout_hash, ckpt_meta *meta) {
  static const ckpt_tensor none = {0};
  return read_ckpt(path, n_tensors ? tensors : &none, n_tensors, expected_layout_hash, NULL, NULL,
                   meta, NULL, NULL);
}

int ckpt_read_meta(const char *path, ckpt_meta *meta) {
  return read_ckpt(path, NULL, 0, 0, NULL, NULL, meta, NULL, NULL);
}

int ckpt_load(const char *path, ckpt_contents *out) {
  memset(out, 0, sizeof *out);
  int rc = read_ckpt(path, NULL, 0, 0, NULL, NULL, &out->meta, out, NULL);
  if (rc) ckpt_contents_free(out);
  return rc;
}

void ckpt_contents_free(ckpt_contents *c) {
  if (!c) return;
  for (int i = 0; c->tensors && i < c->n_tensors; i++) free((char *)c->tensors[i].name);
  free(c->tensors);
  free(c->arena);
  ckpt_meta_free(&c->meta);
  memset(c, 0, sizeof *c);
}

/* ---- directories -------------------------------------------------------- */

static int append_line(char **list, const char *line) {
  size_t old = *list ? strlen(*list) : 0, add = strlen(line);
  char *s = realloc(*list, old + add + 2);
  if (!s) return -1;
  if (old) s[old++] = '\n';
  memcpy(s + old, line, add + 1);
  *list = s;
  return 0;
}

/* Reads the checkpoints of dir newest first until one verifies (and fits).
 * Files that do not verify are listed in *list and passed over; one that
 * verifies but does not fit ends the search with its error.
 * @return 0 (*out_path malloc'ed), 1 none, <0 error. */
static int scan_dir(const char *dir, const ckpt_tensor *t, int n_tensors,
                    uint64_t expected_layout_hash, ckpt_accept_fn accept, void *ctx,
                    ckpt_meta *meta, char **out_path, char **list) {
  ckpt_found *fs = NULL;
  size_t n = 0;
  char *p = NULL;
  int rc = ckpt_file_list(dir, &fs, &n);
  if (rc) goto out;
  rc = 1;
  for (size_t i = 0; i < n && rc == 1; i++) {
    if (!(p = ckpt_file_join(dir, fs[i].name))) FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
    int verified = 0;
    if (!fs[i].regular) {
      ms_error_set(MS_ECKPT, "%s: not a regular file, skipped", p);
      if (append_line(list, ms_error_msg()) != 0) FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
      free(p);
      p = NULL;
      continue;
    }
    int r = read_ckpt(p, t, n_tensors, expected_layout_hash, accept, ctx, meta, NULL, &verified);
    if (r == 0) {
      *out_path = p;
      p = NULL;
      rc = 0;
    } else if (r == MS_ENOMEM || verified) {
      rc = r; /* a good file that does not fit this run is an error, not a skip */
    } else if (append_line(list, ms_error_msg()) != 0) {
      FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
    }
    free(p);
    p = NULL;
  }
out:
  free(p);
  free(fs);
  return rc;
}

int ckpt_find_latest(const char *dir, char **out_path, char **skipped) {
  char *list = NULL;
  ckpt_meta m;
  if (out_path) *out_path = NULL;
  if (skipped) *skipped = NULL;
  if (!dir || !out_path) return ms_error_set(MS_ECKPT, "ckpt_find_latest: invalid arguments");
  int rc = scan_dir(dir, NULL, 0, 0, NULL, NULL, &m, out_path, &list);
  if (rc == 0) ckpt_meta_free(&m);
  if (rc >= 0 && skipped)
    *skipped = list;
  else
    free(list);
  return rc;
}

int ckpt_restore(const char *dir, const char *path, const ckpt_tensor *tensors, int n_tensors,
                 uint64_t expected_layout_hash, ckpt_accept_fn accept, void *ctx, ckpt_meta *meta,
                 char **out_path, char **skipped) {
  static const ckpt_tensor none = {0};
  const ckpt_tensor *t = n_tensors ? tensors : &none;
  char *list = NULL, *found = NULL;
  if (out_path) *out_path = NULL;
  if (skipped) *skipped = NULL;
  if (meta) memset(meta, 0, sizeof *meta);
  if (!meta || (!dir && !path)) return ms_error_set(MS_ECKPT, "ckpt_restore: invalid arguments");
  if (path) {
    int rc = read_ckpt(path, t, n_tensors, expected_layout_hash, accept, ctx, meta, NULL, NULL);
    if (rc == 0 && out_path && !(*out_path = strdup(path))) {
      ckpt_meta_free(meta);
      rc = ms_error_set(MS_ENOMEM, "%s: out of memory", path);
    }
    return rc;
  }
  int rc = scan_dir(dir, t, n_tensors, expected_layout_hash, accept, ctx, meta, &found, &list);
  if (rc == 0 && out_path)
    *out_path = found;
  else
    free(found);
  if (rc >= 0 && skipped)
    *skipped = list;
  else
    free(list);
  return rc;
}
