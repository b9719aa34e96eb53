/* ckpt — reading checkpoint files, and the directory scans (see ckpt.h for
 * the format and the contract; ckpt_write.c writes them).
 *
 * Reading streams: the header is decompressed into a small buffer, and each
 * tensor's bytes are decompressed directly into its destination, frame
 * after frame, hashed as they arrive. A file is decompressed once, whatever
 * is asked of it.
 */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zstd.h>

#include "ckpt_internal.h"
#include "ms_error.h"

#define CKPT_SCRATCH (1u << 20)
/* "step-" + 8 digits + ".safetensors.zst" */
#define CKPT_NAME_LEN 29

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

/* Undoes the byte shuffle in place, with scratch of n floats. */
static void unshuffle(float *x, size_t n, float *scratch) {
  const unsigned char *in = (const unsigned char *)x;
  unsigned char *out = (unsigned char *)scratch;
  /* Element-major: four sequential read streams, one sequential write. */
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < sizeof(float); k++) out[i * sizeof(float) + k] = in[k * n + i];
  memcpy(x, scratch, n * sizeof(float));
}

/* ---- the zstd stream ------------------------------------------------------ */

/* zr_run's answer when the stream ended cleanly between two frames before
 * the output was full. */
#define ZR_END 1

typedef struct {
  FILE *f;
  const char *path;
  ZSTD_DCtx *dctx;
  unsigned char *ibuf;
  size_t icap;
  ZSTD_inBuffer in;
  int eof;
  int in_frame;        /* a frame has begun and has not ended */
  int frames;          /* frames ended (each one's checksum verified) */
  uint64_t out_total;  /* payload bytes decompressed so far */
  uint64_t data_start; /* payload offset of the data section; 0 until known */
  uint64_t data_size;  /* its size by the header */
} zreader;

static int zr_fill(zreader *r) {
  size_t got = fread(r->ibuf, 1, r->icap, r->f);
  if (got == 0 && ferror(r->f))
    return ms_error_set(MS_EIO, "%s: read failed: %s", r->path, strerror(errno));
  if (got == 0) r->eof = 1;
  r->in.src = r->ibuf;
  r->in.size = got;
  r->in.pos = 0;
  return 0;
}

/* Decompresses into out until it is full, from frame to frame; with
 * one_frame, only to the end of the current frame (none: ZR_END at once).
 * @return 0, ZR_END (the stream, or the frame, ended first), or an error. */
static int zr_run(zreader *r, ZSTD_outBuffer *out, int one_frame) {
  while (out->pos < out->size) {
    if (r->in.pos == r->in.size && !r->eof) {
      int rc = zr_fill(r);
      if (rc) return rc;
    }
    if (!r->in_frame) {
      if (one_frame || r->in.pos == r->in.size) return ZR_END;
      r->in_frame = 1;
    }
    size_t in0 = r->in.pos, out0 = out->pos;
    size_t ret = ZSTD_decompressStream(r->dctx, out, &r->in);
    if (ZSTD_isError(ret)) {
      if (r->frames == 0)
        return ms_error_set(MS_ECKPT, "%s: corrupted (zstd: %s)", r->path, ZSTD_getErrorName(ret));
      return ms_error_set(MS_ECKPT, "%s: corrupted (zstd, frame %d: %s)", r->path, r->frames + 1,
                          ZSTD_getErrorName(ret));
    }
    r->out_total += out->pos - out0;
    if (ret == 0) {
      r->in_frame = 0;
      r->frames++;
      if (one_frame) return ZR_END;
    } else if (r->eof && r->in.pos == in0 && out->pos == out0) {
      return ms_error_set(MS_ECKPT, "%s: truncated (the zstd stream ends early)", r->path);
    }
  }
  return 0;
}

/* Reads exactly n payload bytes. A stream that ends between frames before
 * that is a file cut at a frame boundary, or a payload shorter than its
 * header says. */
static int zr_read(zreader *r, void *dst, size_t n) {
  ZSTD_outBuffer out = {dst, n, 0};
  int rc = zr_run(r, &out, 0);
  if (rc < 0) return rc;
  if (out.pos == n) return 0;
  if (r->data_start)
    return ms_error_set(MS_ECKPT,
                        "%s: the tensors cover %" PRIu64 " bytes but the data section has %" PRIu64
                        ": the zstd stream ends after frame %d",
                        r->path, r->data_size, r->out_total - r->data_start, r->frames);
  return ms_error_set(MS_ECKPT,
                      "%s: the payload is shorter than its header says: the zstd stream ends "
                      "after frame %d at byte %" PRIu64,
                      r->path, r->frames, r->out_total);
}

/* Reads the end of the last frame (where zstd verifies the checksum) and
 * makes sure nothing follows it. */
static int zr_finish(zreader *r) {
  unsigned char extra;
  ZSTD_outBuffer out = {&extra, 1, 0};
  int rc = zr_run(r, &out, 1);
  if (rc < 0) return rc;
  if (out.pos)
    return ms_error_set(MS_ECKPT, "%s: the payload is longer than its header says", r->path);
  if (r->in.pos == r->in.size && !r->eof && (rc = zr_fill(r)) != 0) return rc;
  if (r->in.pos < r->in.size)
    return ms_error_set(MS_ECKPT, "%s: unexpected bytes after the zstd frame%s", r->path,
                        r->frames > 1 ? "s" : "");
  return 0;
}

/* ---- the header ---------------------------------------------------------- */

typedef struct {
  const char *name;
  uint64_t begin, end;
  int ndim;
  int64_t shape[CKPT_MAX_DIMS];
  int req; /* index of the matching requested tensor, or -1 */
} entry;

static int entry_cmp(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

static int parse_u64(const char *s, int hex, uint64_t max, uint64_t *out) {
  size_t n = strlen(s);
  if (n == 0 || (hex && n != 16) || (!hex && n > 20)) return -1;
  if (!hex && n > 1 && s[0] == '0') return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    int d;
    if (s[i] >= '0' && s[i] <= '9')
      d = s[i] - '0';
    else if (hex && s[i] >= 'a' && s[i] <= 'f')
      d = s[i] - 'a' + 10;
    else
      return -1;
    if (!hex && v > (UINT64_MAX - (uint64_t)d) / 10) return -1;
    v = v * (hex ? 16 : 10) + (uint64_t)d;
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

static int meta_field(const char *path, json_t *md, const char *key, int hex, uint64_t max,
                      uint64_t *out) {
  json_t *v = json_object_get(md, key);
  if (!v) return ms_error_set(MS_ECKPT, "%s: metadata key '%s' is missing", path, key);
  if (parse_u64(json_string_value(v), hex, max, out))
    return ms_error_set(MS_ECKPT, "%s: metadata '%s' = '%s' is not a valid %s", path, key,
                        json_string_value(v), hex ? "16-digit hex hash" : "number");
  return 0;
}

/* Checks __metadata__ and fills m (config borrowed from the JSON). */
static int parse_meta(const char *path, json_t *root, ckpt_meta *m, int *version,
                      uint64_t *data_hash, const char **config) {
  json_t *md = json_object_get(root, "__metadata__"), *v;
  const char *key;
  if (!json_is_object(md))
    return ms_error_set(MS_ECKPT,
                        "%s: the header has no __metadata__ map: not a midscale checkpoint", path);
  json_object_foreach(md, key, v) {
    if (!json_is_string(v))
      return ms_error_set(MS_ECKPT,
                          "%s: metadata '%s' is not a string (safetensors requires string values)",
                          path, key);
  }
  v = json_object_get(md, "format");
  if (!v || strcmp(json_string_value(v), CKPT_FORMAT_NAME) != 0)
    return ms_error_set(
        MS_ECKPT, "%s: not a midscale checkpoint (metadata 'format' is %s%s%s, expected '%s')",
        path, v ? "'" : "", v ? json_string_value(v) : "missing", v ? "'" : "", CKPT_FORMAT_NAME);
  uint64_t u[9];
  int rc = meta_field(path, md, "format_version", 0, INT32_MAX, &u[0]);
  if (rc) return rc;
  if (u[0] > CKPT_FORMAT_VERSION)
    return ms_error_set(
        MS_ECKPT, "%s: made by a newer midscale (format version %" PRIu64 "; this build reads %d)",
        path, u[0], CKPT_FORMAT_VERSION);
  if (u[0] < 1) return ms_error_set(MS_ECKPT, "%s: unknown format version %" PRIu64, path, u[0]);
  *version = (int)u[0];
  static const char *keys[] = {"step", "epoch",     "step_in_epoch", "world_size",
                               "seed", "rng_state", "layout_hash",   "data_hash"};
  const uint64_t maxes[] = {CKPT_MAX_STEP, INT64_MAX,  INT64_MAX,  INT32_MAX,
                            UINT64_MAX,    UINT64_MAX, UINT64_MAX, UINT64_MAX};
  for (int i = 0; i < 8; i++)
    if ((rc = meta_field(path, md, keys[i], i >= 6, maxes[i], &u[i + 1])) != 0) return rc;
  if (u[4] < 1) return ms_error_set(MS_ECKPT, "%s: metadata 'world_size' is 0", path);
  v = json_object_get(md, "config");
  if (!v) return ms_error_set(MS_ECKPT, "%s: metadata key 'config' is missing", path);
  m->step = (int64_t)u[1];
  m->epoch = (int64_t)u[2];
  m->step_in_epoch = (int64_t)u[3];
  m->world_size = (int)u[4];
  m->seed = u[5];
  m->rng_state = u[6];
  m->layout_hash = u[7];
  *data_hash = u[8];
  *config = json_string_value(v);
  v = json_object_get(md, "byte_shuffle");
  m->byte_shuffle = 0;
  if (v && strcmp(json_string_value(v), "4") == 0) m->byte_shuffle = 1;
  else if (v)
    return ms_error_set(MS_ECKPT, "%s: unknown byte_shuffle '%s' (this build reads 4)", path,
                        json_string_value(v));
  return 0;
}

/* Parses one tensor entry of the header into e. */
static int parse_entry(const char *path, const char *name, json_t *v, entry *e) {
  json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
  json_t *offs = json_object_get(v, "data_offsets");
  e->name = name;
  e->req = -1;
  if (!json_is_object(v) || !json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs))
    return ms_error_set(MS_ECKPT, "%s: tensor '%s' lacks dtype, shape or data_offsets", path, name);
  if (strcmp(json_string_value(dtype), "F32") != 0)
    return ms_error_set(MS_ECKPT,
                        "%s: tensor '%s' has dtype %s; midscale checkpoints hold F32 only", path,
                        name, json_string_value(dtype));
  size_t nd = json_array_size(shape);
  if (nd > CKPT_MAX_DIMS)
    return ms_error_set(MS_ECKPT, "%s: tensor '%s' has %zu dimensions (at most %d)", path, name, nd,
                        CKPT_MAX_DIMS);
  e->ndim = (int)nd;
  for (size_t d = 0; d < nd; d++) {
    json_t *x = json_array_get(shape, d);
    if (!json_is_integer(x) || json_integer_value(x) < 0)
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' has an invalid shape", path, name);
    e->shape[d] = json_integer_value(x);
  }
  json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
  if (json_array_size(offs) != 2 || !json_is_integer(b) || !json_is_integer(en) ||
      json_integer_value(b) < 0 || json_integer_value(en) < json_integer_value(b))
    return ms_error_set(MS_ECKPT, "%s: tensor '%s' has invalid data_offsets", path, name);
  e->begin = (uint64_t)json_integer_value(b);
  e->end = (uint64_t)json_integer_value(en);
  int64_t bytes = ckpt_tensor_bytes(e->ndim, e->shape);
  if (bytes < 0 || e->end - e->begin != (uint64_t)bytes)
    return ms_error_set(MS_ECKPT,
                        "%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                        "] that do not match its shape",
                        path, name, e->begin, e->end);
  return 0;
}

/* Matches the file's tensors with the requested ones (any order, exactly). */
static int match_tensors(const char *path, entry *es, size_t ne, const ckpt_tensor *t, int n) {
  char fs[128], ms[128];
  for (int i = 0; i < n; i++) {
    if (!t[i].name || ckpt_tensor_bytes(t[i].ndim, t[i].shape) < 0 ||
        (ckpt_tensor_bytes(t[i].ndim, t[i].shape) > 0 && !t[i].data))
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
                          path, es[j].name);
  return 0;
}

/* For ckpt_load: every tensor of the file becomes a destination, in file
 * order, backed by one arena. */
static int take_all(const char *path, entry *es, size_t ne, uint64_t data_size,
                    ckpt_contents *all) {
  all->tensors = calloc(ne ? ne : 1, sizeof *all->tensors);
  all->arena = malloc(data_size ? (size_t)data_size : 1);
  if (!all->tensors || !all->arena) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  for (size_t j = 0; j < ne; j++) {
    ckpt_tensor *t = &all->tensors[j];
    if (es[j].begin % sizeof(float))
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' is not 4-byte aligned", path, es[j].name);
    if (!(t->name = strdup(es[j].name))) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
    all->n_tensors = (int)j + 1;
    t->ndim = es[j].ndim;
    memcpy(t->shape, es[j].shape, sizeof t->shape);
    t->data = (float *)((unsigned char *)all->arena + es[j].begin);
    es[j].req = (int)j;
  }
  return 0;
}

/* The whole reader. With tensors == NULL it verifies everything but keeps
 * only the metadata; with `all` it loads every tensor the file holds. A
 * file that does not fit (accept refuses it, tensors or layout hash differ)
 * is read on to the end before that is reported, and *verified (if not
 * NULL) says whether the file itself verified. */
static int read_ckpt(const char *path, const ckpt_tensor *tensors, int n_tensors,
                     uint64_t expected_layout_hash, ckpt_accept_fn accept, void *ctx,
                     ckpt_meta *meta, ckpt_contents *all, int *verified) {
  int rc, version = 0, fit_rc = 0;
  char *fit_msg = NULL;
  zreader r = {0};
  char *hdr = NULL;
  unsigned char *scratch = NULL;
  json_t *root = NULL;
  entry *es = NULL;
  ckpt_meta m = {0};
  uint64_t want_hash = 0;
  const char *cfg = NULL;
  ckpt_hasher h = {0};
  if (meta) memset(meta, 0, sizeof *meta);
  if (verified) *verified = 0;
  if (!path || n_tensors < 0 || (n_tensors > 0 && !tensors))
    return ms_error_set(MS_ECKPT, "ckpt_read: invalid arguments");
  r.path = path;

  r.f = fopen(path, "rb");
  if (!r.f)
    return ms_error_set(errno == ENOENT ? MS_ECKPT : MS_EIO, "%s: cannot open: %s", path,
                        strerror(errno));
  r.icap = ZSTD_DStreamInSize();
  r.ibuf = malloc(r.icap);
  r.dctx = ZSTD_createDCtx();
  if (!r.ibuf || !r.dctx) FAIL(out, MS_ENOMEM, "%s: out of memory", path);
  if ((rc = zr_fill(&r)) != 0) goto out;
  /* The first frame holds the length and the whole header. */
  unsigned long long csize = ZSTD_getFrameContentSize(r.ibuf, r.in.size);
  if (csize == ZSTD_CONTENTSIZE_ERROR)
    FAIL(out, MS_ECKPT, "%s: not a zstd file, or truncated", path);
  if (csize == ZSTD_CONTENTSIZE_UNKNOWN || csize < 8 || csize > CKPT_MAX_PAYLOAD)
    FAIL(out, MS_ECKPT, "%s: the zstd frame does not declare a plausible content size", path);

  unsigned char len8[8];
  if ((rc = zr_read(&r, len8, 8)) != 0) goto out;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len8[i];
  if (hlen < 2 || hlen > CKPT_MAX_HEADER || hlen > csize - 8)
    FAIL(out, MS_ECKPT, "%s: invalid safetensors header length %" PRIu64, path, hlen);
  hdr = malloc((size_t)hlen);
  if (!hdr) FAIL(out, MS_ENOMEM, "%s: out of memory", path);
  if ((rc = zr_read(&r, hdr, (size_t)hlen)) != 0) goto out;
  json_error_t jerr;
  root = hdr[0] == '{' ? json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr) : NULL;
  if (hdr[0] != '{') snprintf(jerr.text, sizeof jerr.text, "it does not start with '{'");
  if (!json_is_object(root))
    FAIL(out, MS_ECKPT, "%s: the safetensors header is not a JSON object (%s)", path,
         root ? "other JSON value" : jerr.text);
  if ((rc = parse_meta(path, root, &m, &version, &want_hash, &cfg)) != 0) goto out;

  size_t ne = json_object_size(root) - 1, k = 0;
  es = calloc(ne ? ne : 1, sizeof *es);
  if (!es) FAIL(out, MS_ENOMEM, "%s: out of memory", path);
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (strcmp(key, "__metadata__") == 0) continue;
    if ((rc = parse_entry(path, key, v, &es[k++])) != 0) goto out;
  }
  qsort(es, ne, sizeof *es, entry_cmp);
  uint64_t pos = 0;
  for (size_t j = 0; j < ne; j++) {
    if (es[j].begin != pos)
      FAIL(out, MS_ECKPT, "%s: tensor '%s' data_offsets leave a gap or overlap at byte %" PRIu64,
           path, es[j].name, pos);
    pos = es[j].end;
    if (pos > CKPT_MAX_PAYLOAD)
      FAIL(out, MS_ECKPT, "%s: the tensors cover more than %llu bytes", path, CKPT_MAX_PAYLOAD);
  }
  r.data_start = 8 + hlen;
  r.data_size = pos;
  if (all && (rc = take_all(path, es, ne, pos, all)) != 0) goto out;
  if (all) tensors = all->tensors;

  /* Whether the file fits is decided now, but reported only once it has
   * verified: until then it might just be damaged. */
  if (accept) {
    ckpt_meta view = m;
    view.config = (char *)cfg;
    fit_rc = accept(ctx, path, &view);
  }
  if (!fit_rc && tensors && !all) fit_rc = match_tensors(path, es, ne, tensors, n_tensors);
  if (!fit_rc && tensors && !all && expected_layout_hash != 0 && m.layout_hash != expected_layout_hash)
    fit_rc = ms_error_set(MS_ECKPT,
                          "%s: layout hash %016" PRIx64 " in the file but the model has %016" PRIx64
                          ": this checkpoint was made for another model",
                          path, m.layout_hash, expected_layout_hash);
  if (fit_rc) {
    if (!(fit_msg = strdup(ms_error_msg()))) FAIL(out, MS_ENOMEM, "%s: out of memory", path);
    for (size_t j = 0; j < ne; j++) es[j].req = -1; /* read on, into scratch */
  }

  /* Tensor bytes in file order, hashed as they arrive (the hash is of the
   * values, so a byte-shuffled tensor is unshuffled first). */
  if ((rc = ckpt_hasher_init(&h, version, path)) != 0) goto out;
  for (size_t j = 0; j < ne; j++) {
    uint64_t left = es[j].end - es[j].begin;
    if (es[j].req >= 0 || (m.byte_shuffle && left)) {
      float *own = NULL, *dst = es[j].req >= 0 ? tensors[es[j].req].data : NULL;
      if (!dst && !(dst = own = malloc((size_t)left)))
        FAIL(out, MS_ENOMEM, "%s: out of memory", path);
      rc = zr_read(&r, dst, (size_t)left);
      if (rc == 0 && m.byte_shuffle && left) {
        float *tmp = malloc((size_t)left);
        if (!tmp) rc = ms_error_set(MS_ENOMEM, "%s: out of memory", path);
        else unshuffle(dst, (size_t)left / sizeof(float), tmp);
        free(tmp);
      }
      if (rc == 0 && left) ckpt_hasher_update(&h, dst, (size_t)left);
      free(own);
      if (rc) goto out;
      continue;
    }
    if (!scratch && !(scratch = malloc(CKPT_SCRATCH)))
      FAIL(out, MS_ENOMEM, "%s: out of memory", path);
    while (left) {
      size_t c = left < CKPT_SCRATCH ? (size_t)left : CKPT_SCRATCH;
      if ((rc = zr_read(&r, scratch, c)) != 0) goto out;
      ckpt_hasher_update(&h, scratch, c);
      left -= c;
    }
  }
  if ((rc = zr_finish(&r)) != 0) goto out;
  uint64_t got = ckpt_hasher_final(&h);
  if (got != want_hash)
    FAIL(out, MS_ECKPT,
         "%s: corrupted (data hash %016" PRIx64 " does not match the header's %016" PRIx64 ")",
         path, got, want_hash);
  if (verified) *verified = 1;
  if (fit_rc) FAIL(out, fit_rc, "%s", fit_msg);
  if (meta) {
    if (!(m.config = strdup(cfg))) FAIL(out, MS_ENOMEM, "%s: out of memory", path);
    *meta = m;
  }
  rc = 0;
out:
  ckpt_hasher_free(&h);
  free(fit_msg);
  free(scratch);
  free(es);
  json_decref(root);
  free(hdr);
  ZSTD_freeDCtx(r.dctx);
  free(r.ibuf);
  fclose(r.f);
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

int ckpt_export(const char *in_path, const char *out_path, const char *skip_prefix) {
  ckpt_contents c;
  int rc = ckpt_load(in_path, &c);
  if (rc) return rc;
  ckpt_tensor *keep = malloc(sizeof *keep * (size_t)(c.n_tensors ? c.n_tensors : 1));
  char *dir = strdup(out_path);
  if (!keep || !dir) {
    rc = ms_error_set(MS_ENOMEM, "%s: out of memory", out_path);
    goto out;
  }
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
  if (!*name) {
    rc = ms_error_set(MS_EUSAGE, "'%s' names a directory, not a file", out_path);
    goto out;
  }
  c.meta.byte_shuffle = 0; /* ckpt_load unshuffled the values: write them plain */
  rc = ckpt_write_plain(dir, name, keep, n, &c.meta, NULL);
out:
  free(dir);
  free(keep);
  ckpt_contents_free(&c);
  return rc;
}

/* ---- directory scans --------------------------------------------------- */

typedef struct {
  int64_t step;
  char name[CKPT_NAME_LEN + 1];
} found;

static int found_cmp_desc(const void *a, const void *b) {
  const found *x = a, *y = b;
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

/* Lists the checkpoint files of dir, newest first, into *out (which the
 * caller frees, also on error). A missing dir gives 0 files. */
static int list_ckpts(const char *dir, found **out, size_t *n) {
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
      found *g = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof *g);
      if (!g) FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
      *out = g;
    }
    (*out)[*n].step = s;
    memcpy((*out)[(*n)++].name, de->d_name, CKPT_NAME_LEN + 1);
    errno = 0;
  }
  if (errno != 0) FAIL(out, MS_EIO, "%s: cannot list directory: %s", dir, strerror(errno));
  if (*n) qsort(*out, *n, sizeof **out, found_cmp_desc);
out:
  closedir(d);
  return rc;
}

static int append_line(char **list, const char *line) {
  size_t old = *list ? strlen(*list) : 0, add = strlen(line);
  char *s = realloc(*list, old + add + 2);
  if (!s) return -1;
  if (old) s[old++] = '\n';
  memcpy(s + old, line, add + 1);
  *list = s;
  return 0;
}

int ckpt_find_latest(const char *dir, char **out_path, char **skipped) {
  found *fs = NULL;
  size_t n = 0;
  char *list = NULL, *path = NULL;
  if (out_path) *out_path = NULL;
  if (skipped) *skipped = NULL;
  if (!dir || !out_path) return ms_error_set(MS_ECKPT, "ckpt_find_latest: invalid arguments");
  int rc = list_ckpts(dir, &fs, &n);
  if (rc) goto out;
  rc = 1;
  for (size_t i = 0; i < n && rc == 1; i++) {
    ckpt_meta m;
    if (!(path = ckpt_str2("%s/%s", dir, fs[i].name)))
      FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
    int r = ckpt_read_meta(path, &m);
    ckpt_meta_free(&m);
    if (r == 0) {
      *out_path = path;
      path = NULL;
      rc = 0;
    } else if (r == MS_ENOMEM || append_line(&list, ms_error_msg()) != 0) {
      FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
    }
    free(path);
    path = NULL;
  }
out:
  free(path);
  free(fs);
  if (rc >= 0 && skipped)
    *skipped = list;
  else
    free(list);
  return rc;
}

int ckpt_restore(const char *dir, const char *path, const ckpt_tensor *tensors, int n_tensors,
                 uint64_t expected_layout_hash, ckpt_accept_fn accept, void *ctx,
                 ckpt_meta *meta, char **out_path, char **skipped) {
  static const ckpt_tensor none = {0};
  const ckpt_tensor *t = n_tensors ? tensors : &none;
  found *fs = NULL;
  size_t n = 0;
  char *list = NULL, *p = NULL;
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
  int rc = list_ckpts(dir, &fs, &n);
  if (rc) goto out;
  rc = 1;
  for (size_t i = 0; i < n && rc == 1; i++) {
    if (!(p = ckpt_str2("%s/%s", dir, fs[i].name))) FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
    int verified = 0;
    int r = read_ckpt(p, t, n_tensors, expected_layout_hash, accept, ctx, meta, NULL, &verified);
    if (r == 0) {
      if (out_path) *out_path = p;
      else free(p);
      p = NULL;
      rc = 0;
    } else if (r == MS_ENOMEM || verified) {
      rc = r; /* a good file that does not fit this run is an error, not a skip */
    } else if (append_line(&list, ms_error_msg()) != 0) {
      FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
    }
    free(p);
    p = NULL;
  }
out:
  free(p);
  free(fs);
  if (rc >= 0 && skipped)
    *skipped = list;
  else
    free(list);
  return rc;
}

/* Deletes temporary files that a writer killed mid-write left behind
 * (".step-XXXXXXXX.safetensors.zst.tmp.PID"); a directory has one writer, so
 * none of them is still being written when this runs. */
static int clean_temp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : ms_error_set(MS_EIO, "%s: cannot list directory: %s", dir,
                                                   strerror(errno));
  int rc = 0;
  struct dirent *de;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    const char *nm = de->d_name;
    if (nm[0] != '.' || name_step(nm + 1) >= 0 || strstr(nm, ".safetensors.zst.tmp.") == NULL ||
        strncmp(nm, ".step-", 6) != 0)
      continue;
    char *path = ckpt_str2("%s/%s", dir, nm);
    if (!path) rc = ms_error_set(MS_ENOMEM, "%s: out of memory", dir);
    else if (unlink(path) != 0 && errno != ENOENT)
      rc = ms_error_set(MS_EIO, "%s: cannot delete: %s", path, strerror(errno));
    free(path);
  }
  closedir(d);
  return rc;
}

int ckpt_prune(const char *dir, int keep) {
  found *fs = NULL;
  size_t n = 0;
  char *path = NULL;
  if (!dir) return ms_error_set(MS_ECKPT, "ckpt_prune: invalid arguments");
  int rc = clean_temp(dir);
  if (rc == 0) rc = list_ckpts(dir, &fs, &n);
  for (size_t i = keep < 1 ? 1 : (size_t)keep; rc == 0 && i < n; i++) {
    if (!(path = ckpt_str2("%s/%s", dir, fs[i].name)))
      FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
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
