/* ckpt_write — writing checkpoint files (see ckpt.h for the format).
 *
 * A writer streams the payload (length prefix, JSON header, tensor bytes)
 * through one zstd compression context, frame after frame, either straight
 * into the temporary file (ckpt_write_mt: no second copy of the parameters
 * is held) or into memory (ckpt_compress: one rank's frame of a
 * distributed write, gathered and written by ckpt_write_bytes).
 */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "ckpt_internal.h"
#include "hash.h"
#include "ms_error.h"
#include "version.h"

/* ---- hashes ------------------------------------------------------------ */

uint64_t ckpt_fnv1a(uint64_t h, const void *data, size_t n) {
  return hash_fnv1a(h, data, n);
}

int ckpt_hasher_init(ckpt_hasher *h, int version, const char *what) {
  memset(h, 0, sizeof *h);
  h->version = version;
  h->fnv = CKPT_FNV_OFFSET;
  if (version < 2) return 0;
  h->chunk = XXH3_createState();
  h->top = XXH3_createState();
  if (!h->chunk || !h->top) {
    ckpt_hasher_free(h);
    return ms_error_set(MS_ENOMEM, "%s: out of memory", what);
  }
  XXH3_64bits_reset(h->chunk);
  XXH3_64bits_reset(h->top);
  return 0;
}

void ckpt_hasher_update(ckpt_hasher *h, const void *data, size_t n) {
  if (h->version < 2) {
    h->fnv = ckpt_fnv1a(h->fnv, data, n);
    return;
  }
  const unsigned char *p = data;
  while (n) {
    size_t take = CKPT_HASH_CHUNK - h->in_chunk < n ? (size_t)(CKPT_HASH_CHUNK - h->in_chunk) : n;
    XXH3_64bits_update(h->chunk, p, take);
    h->in_chunk += take, p += take, n -= take;
    if (h->in_chunk == CKPT_HASH_CHUNK) {
      uint64_t d = XXH3_64bits_digest(h->chunk);
      XXH3_64bits_update(h->top, &d, sizeof d);
      XXH3_64bits_reset(h->chunk);
      h->in_chunk = 0;
    }
  }
}

uint64_t ckpt_hasher_final(ckpt_hasher *h) {
  if (h->version < 2) return h->fnv;
  if (h->in_chunk) {
    uint64_t d = XXH3_64bits_digest(h->chunk);
    XXH3_64bits_update(h->top, &d, sizeof d);
    h->in_chunk = 0;
  }
  return XXH3_64bits_digest(h->top);
}

void ckpt_hasher_free(ckpt_hasher *h) {
  if (!h) return;
  XXH3_freeState(h->chunk);
  XXH3_freeState(h->top);
  h->chunk = h->top = NULL;
}

uint64_t ckpt_data_hash(const uint64_t *chunk_hashes, uint64_t n_chunks) {
  return XXH3_64bits(chunk_hashes, (size_t)n_chunks * sizeof *chunk_hashes);
}

/* ---- the data section, as stored ---------------------------------------- */

/* Receives consecutive pieces of bytes; returns 0 or an error code. */
typedef int (*emit_fn)(void *ctx, const void *p, size_t n);

/* Emits stored bytes [s, e) of a byte-shuffled tensor of nf floats: stored
 * byte p is byte p / nf of float p % nf. Through a small buffer, so no copy
 * of the tensor is needed. */
static int emit_shuffled(const float *x, uint64_t nf, uint64_t s, uint64_t e, emit_fn emit,
                         void *ctx) {
  const unsigned char *b = (const unsigned char *)x;
  unsigned char buf[1 << 14];
  while (s < e) {
    uint64_t k = s / nf, i = s % nf;
    uint64_t run = e - s < nf - i ? e - s : nf - i; /* within byte plane k */
    while (run) {
      size_t c = run < sizeof buf ? (size_t)run : sizeof buf;
      for (size_t j = 0; j < c; j++) buf[j] = b[(i + j) * sizeof(float) + k];
      int rc = emit(ctx, buf, c);
      if (rc) return rc;
      i += c, s += c, run -= c;
    }
  }
  return 0;
}

/* Emits bytes [begin, end) of the data section of t, as stored. */
static int emit_range(const ckpt_tensor *t, int n, int shuffle, uint64_t begin, uint64_t end,
                      emit_fn emit, void *ctx) {
  uint64_t off = 0;
  for (int i = 0; i < n && off < end; i++) {
    uint64_t b = (uint64_t)ckpt_tensor_bytes(t[i].ndim, t[i].shape);
    uint64_t lo = begin > off ? begin : off, hi = end < off + b ? end : off + b;
    if (lo < hi) {
      int rc = shuffle ? emit_shuffled(t[i].data, b / sizeof(float), lo - off, hi - off, emit, ctx)
                       : emit(ctx, (const unsigned char *)t[i].data + (lo - off), hi - lo);
      if (rc) return rc;
    }
    off += b;
  }
  return 0;
}

static int emit_hash(void *ctx, const void *p, size_t n) {
  XXH3_64bits_update(ctx, p, n);
  return 0;
}

static int emit_copy(void *ctx, const void *p, size_t n) {
  unsigned char **dst = ctx;
  memcpy(*dst, p, n);
  *dst += n;
  return 0;
}

void ckpt_slice(uint64_t bytes, int n, int r, uint64_t *begin, uint64_t *end,
                uint64_t *first_chunk, uint64_t *n_chunks) {
  uint64_t floats = bytes / sizeof(float), q = floats / (uint64_t)n, rem = floats % (uint64_t)n;
  uint64_t ur = (uint64_t)r;
  uint64_t b = q * ur + (ur < rem ? ur : rem);
  uint64_t e = b + q + (ur < rem ? 1 : 0);
  b *= sizeof(float), e *= sizeof(float);
  if (r == n - 1) e = bytes;
  if (begin) *begin = b;
  if (end) *end = e;
  uint64_t c0 = (b + CKPT_HASH_CHUNK - 1) / CKPT_HASH_CHUNK;
  uint64_t c1 = (e + CKPT_HASH_CHUNK - 1) / CKPT_HASH_CHUNK;
  if (first_chunk) *first_chunk = c0;
  if (n_chunks) *n_chunks = c1 - c0;
}

static uint64_t data_bytes(const ckpt_tensor *t, int n) {
  uint64_t d = 0;
  for (int i = 0; i < n; i++) d += (uint64_t)ckpt_tensor_bytes(t[i].ndim, t[i].shape);
  return d;
}

void ckpt_hash_chunks(const ckpt_tensor *tensors, int n_tensors, uint64_t first_chunk,
                      uint64_t n_chunks, uint64_t *out) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  uint64_t d = data_bytes(tensors, n_tensors);
  for (uint64_t c = 0; c < n_chunks; c++) {
    uint64_t lo = (first_chunk + c) * CKPT_HASH_CHUNK;
    uint64_t hi = lo + CKPT_HASH_CHUNK < d ? lo + CKPT_HASH_CHUNK : d;
    XXH3_64bits_reset(&st);
    (void)emit_range(tensors, n_tensors, 0, lo, hi, emit_hash, &st);
    out[c] = XXH3_64bits_digest(&st);
  }
}

void ckpt_copy_stored(const ckpt_tensor *tensors, int n_tensors, int shuffle, uint64_t begin,
                      uint64_t end, void *dst) {
  unsigned char *p = dst;
  (void)emit_range(tensors, n_tensors, shuffle, begin, end, emit_copy, &p);
}

/* ---- checks and the header ---------------------------------------------- */

int ckpt_data_size(const char *what, const ckpt_tensor *t, int n, uint64_t *bytes) {
  if (n < 0 || (n > 0 && !t)) return ms_error_set(MS_ECKPT, "%s: invalid tensor list", what);
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (!t[i].name || !*t[i].name || strcmp(t[i].name, "__metadata__") == 0)
      return ms_error_set(MS_ECKPT, "%s: tensor %d has an invalid name", what, i);
    int64_t b = ckpt_tensor_bytes(t[i].ndim, t[i].shape);
    if (b < 0)
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' has an invalid shape", what, t[i].name);
    if (b > 0 && !t[i].data)
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' has no data", what, t[i].name);
    total += (uint64_t)b;
    if (total > CKPT_MAX_PAYLOAD)
      return ms_error_set(MS_ECKPT, "%s: tensors exceed %llu bytes", what, CKPT_MAX_PAYLOAD);
  }
  *bytes = total;
  return 0;
}

static int check_step(const char *what, int64_t step) {
  if (step < 0 || step > CKPT_MAX_STEP)
    return ms_error_set(MS_ECKPT, "%s: step %" PRId64 " cannot be a checkpoint id (0 to %lld)",
                        what, step, CKPT_MAX_STEP);
  return 0;
}

static int check_meta(const char *what, const ckpt_meta *meta) {
  if (!meta) return ms_error_set(MS_ECKPT, "%s: no metadata", what);
  int rc = check_step(what, meta->step);
  if (rc) return rc;
  /* The reader refuses these, so never write them. */
  if (meta->epoch < 0 || meta->step_in_epoch < 0 || meta->world_size < 1)
    return ms_error_set(MS_ECKPT,
                        "%s: invalid cursor (epoch %" PRId64 ", step_in_epoch %" PRId64
                        ", world_size %d)",
                        what, meta->epoch, meta->step_in_epoch, meta->world_size);
  return 0;
}

/* The safetensors JSON header, space-padded so that 8 + its length is a
 * multiple of 8: *out gets a malloc'ed string of *len bytes. */
static int build_json(const ckpt_tensor *t, int n, const ckpt_meta *meta, uint64_t data_hash,
                      const char *what, char **out, size_t *len) {
  int rc = MS_ENOMEM;
  char num[32];
  json_t *root = json_object(), *md = json_object();
  if (!root || !md || json_object_set(root, "__metadata__", md)) goto fail;

#define PUT(key, value)                                     \
  do {                                                      \
    json_t *v_ = json_string(value);                        \
    if (!v_ || json_object_set_new(md, key, v_)) goto fail; \
  } while (0)
#define PUTF(key, fmt, value)              \
  do {                                     \
    snprintf(num, sizeof num, fmt, value); \
    PUT(key, num);                         \
  } while (0)
  PUT("format", CKPT_FORMAT_NAME);
  PUTF("format_version", "%d", CKPT_FORMAT_VERSION);
  PUT("midscale_version", MS_VERSION_STRING);
  PUTF("step", "%" PRId64, meta->step);
  PUTF("epoch", "%" PRId64, meta->epoch);
  PUTF("step_in_epoch", "%" PRId64, meta->step_in_epoch);
  PUTF("world_size", "%d", meta->world_size);
  PUTF("seed", "%" PRIu64, meta->seed);
  PUTF("rng_state", "%" PRIu64, meta->rng_state);
  PUTF("layout_hash", "%016" PRIx64, meta->layout_hash);
  PUTF("data_hash", "%016" PRIx64, data_hash);
  if (meta->byte_shuffle) PUT("byte_shuffle", "4");
#undef PUTF
#undef PUT
  json_t *cfg = json_string(meta->config ? meta->config : "");
  if (!cfg) FAIL(fail_rc, MS_ECKPT, "%s: the config text is not valid UTF-8", what);
  if (json_object_set_new(md, "config", cfg)) goto fail;

  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    int64_t end = off + ckpt_tensor_bytes(t[i].ndim, t[i].shape);
    json_t *name = json_string(t[i].name);
    if (!name) FAIL(fail_rc, MS_ECKPT, "%s: tensor name '%s' is not valid UTF-8", what, t[i].name);
    json_decref(name);
    if (json_object_get(root, t[i].name))
      FAIL(fail_rc, MS_ECKPT, "%s: tensor name '%s' is given twice", what, t[i].name);
    json_t *shape = json_array();
    for (int d = 0; shape && d < t[i].ndim; d++)
      if (json_array_append_new(shape, json_integer(t[i].shape[d]))) {
        json_decref(shape);
        shape = NULL;
      }
    /* json_pack steals the "o" reference, also when it fails. */
    json_t *e = shape ? json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                  "data_offsets", (json_int_t)off, (json_int_t)end)
                      : NULL;
    if (!e || json_object_set_new(root, t[i].name, e)) goto fail;
    off = end;
  }

  char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!s) goto fail;
  size_t slen = strlen(s);
  size_t pad = (8 - slen % 8) % 8;
  char *padded = realloc(s, slen + pad + 1);
  if (!padded) {
    free(s);
    goto fail;
  }
  memset(padded + slen, ' ', pad);
  padded[slen + pad] = '\0';
  *out = padded;
  *len = slen + pad;
  json_decref(md);
  json_decref(root);
  return 0;

fail:
  rc = ms_error_set(MS_ENOMEM, "%s: out of memory building the header", what);
fail_rc:
  json_decref(md);
  json_decref(root);
  return rc;
}

int ckpt_header(const char *what, const ckpt_tensor *tensors, int n_tensors,
                const ckpt_meta *meta, uint64_t data_hash, void **out, size_t *len) {
  *out = NULL;
  *len = 0;
  uint64_t d;
  int rc = check_meta(what, meta);
  if (rc == 0) rc = ckpt_data_size(what, tensors, n_tensors, &d);
  if (rc) return rc;
  char *json = NULL;
  size_t jlen = 0;
  if ((rc = build_json(tensors, n_tensors, meta, data_hash, what, &json, &jlen)) != 0) return rc;
  if (jlen > CKPT_MAX_HEADER) {
    free(json);
    return ms_error_set(MS_ECKPT, "%s: the header would be %zu bytes (at most %llu)", what, jlen,
                        CKPT_MAX_HEADER);
  }
  unsigned char *p = malloc(8 + jlen);
  if (!p) {
    free(json);
    return ms_error_set(MS_ENOMEM, "%s: out of memory", what);
  }
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
  memcpy(p + 8, json, jlen);
  free(json);
  *out = p;
  *len = 8 + jlen;
  return 0;
}

/* ---- zstd, into a file or into memory ----------------------------------- */

typedef struct {
  ZSTD_CCtx *cctx;      /* NULL: bytes go to f uncompressed (ckpt_export) */
  FILE *f;              /* the file sink, or NULL for memory */
  void *obuf;           /* the file sink's output buffer */
  size_t ocap;
  unsigned char *mem;   /* the memory sink */
  size_t mem_len, mem_cap;
  const char *what;     /* the destination, for messages */
} zwriter;

static int zw_setup(zwriter *w, int level, int workers) {
  w->cctx = ZSTD_createCCtx();
  if (!w->cctx) return ms_error_set(MS_ENOMEM, "%s: out of memory", w->what);
  size_t zr = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
  if (ZSTD_isError(zr))
    return ms_error_set(MS_ECKPT, "%s: zstd setup failed (level %d): %s", w->what, level,
                        ZSTD_getErrorName(zr));
  /* A libzstd built without threads refuses nbWorkers > 0: fall back to
   * compressing on this thread rather than failing the checkpoint. */
  if (workers > 0) (void)ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, workers);
  return 0;
}

/* Starts a new frame of `content` bytes (parameters are kept). */
static int zw_frame(zwriter *w, uint64_t content) {
  if (!w->cctx) return 0;
  size_t zr = ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
  if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_setPledgedSrcSize(w->cctx, content);
  if (ZSTD_isError(zr))
    return ms_error_set(MS_ECKPT, "%s: zstd setup failed: %s", w->what, ZSTD_getErrorName(zr));
  return 0;
}

/* Compresses n bytes of src (mode ZSTD_e_continue), or ends the frame
 * (ZSTD_e_end), handing whatever zstd produces to the sink. */
static int zw_feed(zwriter *w, const void *src, size_t n, ZSTD_EndDirective mode) {
  if (!w->cctx) {
    if (n && fwrite(src, 1, n, w->f) != n)
      return ms_error_set(MS_EIO, "%s: write failed: %s", w->what, strerror(errno));
    return 0;
  }
  ZSTD_inBuffer in = {src, n, 0};
  for (;;) {
    ZSTD_outBuffer out = {w->obuf, w->ocap, 0};
    if (!w->f) {
      if (w->mem_len == w->mem_cap) {
        size_t cap = w->mem_cap + w->mem_cap / 4 + 4096;
        unsigned char *g = realloc(w->mem, cap);
        if (!g) return ms_error_set(MS_ENOMEM, "%s: out of memory", w->what);
        w->mem = g, w->mem_cap = cap;
      }
      out = (ZSTD_outBuffer){w->mem, w->mem_cap, w->mem_len};
    }
    size_t left = ZSTD_compressStream2(w->cctx, &out, &in, mode);
    if (ZSTD_isError(left))
      return ms_error_set(MS_EIO, "%s: zstd compression failed: %s", w->what,
                          ZSTD_getErrorName(left));
    if (!w->f)
      w->mem_len = out.pos;
    else if (out.pos && fwrite(w->obuf, 1, out.pos, w->f) != out.pos)
      return ms_error_set(MS_EIO, "%s: write failed: %s", w->what, strerror(errno));
    if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) return 0;
  }
}

static int emit_zw(void *ctx, const void *p, size_t n) {
  return zw_feed(ctx, p, n, ZSTD_e_continue);
}

/* One frame: prefix, then data bytes [begin, end) as stored. */
static int zw_write_frame(zwriter *w, const ckpt_tensor *t, int n, int shuffle, const void *prefix,
                          size_t prefix_len, uint64_t begin, uint64_t end) {
  int rc = zw_frame(w, prefix_len + (end - begin));
  if (rc == 0 && prefix_len) rc = zw_feed(w, prefix, prefix_len, ZSTD_e_continue);
  if (rc == 0) rc = emit_range(t, n, shuffle, begin, end, emit_zw, w);
  if (rc == 0 && w->cctx) rc = zw_feed(w, NULL, 0, ZSTD_e_end);
  return rc;
}

int ckpt_compress(const ckpt_tensor *tensors, int n_tensors, int shuffle, const void *prefix,
                  size_t prefix_len, uint64_t begin, uint64_t end, int level, int workers,
                  void **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  zwriter w = {0};
  w.what = "checkpoint frame";
  w.mem_cap = ZSTD_compressBound(prefix_len + (size_t)(end - begin)) + 4096;
  int rc = (w.mem = malloc(w.mem_cap)) ? 0 : ms_error_set(MS_ENOMEM, "out of memory for a "
                                                          "compressed checkpoint frame");
  if (rc == 0) rc = zw_setup(&w, level, workers);
  if (rc == 0)
    rc = zw_write_frame(&w, tensors, n_tensors, shuffle, prefix, prefix_len, begin, end);
  ZSTD_freeCCtx(w.cctx);
  if (rc) {
    free(w.mem);
    return rc;
  }
  *out = w.mem;
  *out_len = w.mem_len;
  return 0;
}

/* ---- atomic files --------------------------------------------------------- */

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

/* A file written under a temporary name and renamed into place. */
typedef struct {
  const char *dir;
  char *path, *tmp;
  FILE *f;
} atomic_file;

static int af_open(atomic_file *a, const char *dir, const char *name) {
  char tmpname[320];
  snprintf(tmpname, sizeof tmpname, ".%s.tmp.%ld", name, (long)getpid());
  a->dir = dir;
  a->path = ckpt_str2("%s/%s", dir, name);
  a->tmp = ckpt_str2("%s/%s", dir, tmpname);
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

/* Flushes, syncs and renames the file into place, then syncs the directory. */
static int af_commit(atomic_file *a) {
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

/* Removes what is left of a failed write and frees; on success (rc == 0)
 * hands the final path to *out_path. */
static void af_close(atomic_file *a, int rc, char **out_path) {
  if (a->f) fclose(a->f);
  if (a->tmp && rc) unlink(a->tmp);
  if (rc == 0 && out_path) {
    *out_path = a->path;
    a->path = NULL;
  }
  free(a->tmp);
  free(a->path);
}

int ckpt_write_bytes(const char *dir, int64_t step, const void *bytes, size_t len,
                     char **out_path) {
  if (out_path) *out_path = NULL;
  if (!dir || !*dir || (len && !bytes)) return ms_error_set(MS_ECKPT, "ckpt_write: invalid arguments");
  int rc = check_step(dir, step);
  if (rc) return rc;
  char name[64];
  snprintf(name, sizeof name, "step-%08" PRId64 ".safetensors.zst", step);
  atomic_file a;
  rc = af_open(&a, dir, name);
  if (rc == 0 && len && fwrite(bytes, 1, len, a.f) != len)
    rc = ms_error_set(MS_EIO, "%s: write failed: %s", a.path, strerror(errno));
  if (rc == 0) rc = af_commit(&a);
  af_close(&a, rc, out_path);
  return rc;
}

/* <dir>/step-<step>.safetensors.zst, or with tmp the temporary name af_open
 * gives it. */
static char *step_name(const char *dir, int64_t step, int tmp) {
  char name[96];
  if (tmp)
    snprintf(name, sizeof name, ".step-%08" PRId64 ".safetensors.zst.tmp.%ld", step,
             (long)getpid());
  else
    snprintf(name, sizeof name, "step-%08" PRId64 ".safetensors.zst", step);
  return ckpt_str2("%s/%s", dir, name);
}

int ckpt_part_create(const char *dir, int64_t step, char **tmp_path) {
  *tmp_path = NULL;
  int rc = check_step(dir, step);
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
    rc = ms_error_set(MS_EIO, "%s: %s has %lld bytes after every rank wrote its part, expected %" PRIu64,
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

/* Writes dir/name atomically: `slices` zstd frames at `level`, or a plain
 * safetensors file when level is 0. */
static int write_file(const char *dir, const char *name, const ckpt_tensor *t, int n,
                      const ckpt_meta *meta, int level, int workers, int slices,
                      char **out_path) {
  if (out_path) *out_path = NULL;
  if (!dir || !*dir || slices < 1) return ms_error_set(MS_ECKPT, "ckpt_write: invalid arguments");
  uint64_t d = 0, n_chunks = 0;
  uint64_t *chunks = NULL;
  void *hdr = NULL;
  size_t hlen = 0;
  zwriter w = {0};
  atomic_file a = {0};
  w.what = dir;
  int rc = check_meta(dir, meta);
  if (rc == 0) rc = ckpt_data_size(dir, t, n, &d);
  if (rc) return rc;

  ckpt_slice(d, 1, 0, NULL, NULL, NULL, &n_chunks);
  if (!(chunks = malloc(sizeof *chunks * (n_chunks ? n_chunks : 1))))
    FAIL(out, MS_ENOMEM, "%s: out of memory", dir);
  ckpt_hash_chunks(t, n, 0, n_chunks, chunks);
  if ((rc = ckpt_header(dir, t, n, meta, ckpt_data_hash(chunks, n_chunks), &hdr, &hlen)) != 0)
    goto out;
  if ((rc = af_open(&a, dir, name)) != 0) goto out;
  w.what = a.path;
  w.f = a.f;
  w.ocap = ZSTD_CStreamOutSize();
  if (level > 0 && (rc = zw_setup(&w, level, workers)) != 0) goto out;
  if (!(w.obuf = malloc(w.ocap))) FAIL(out, MS_ENOMEM, "%s: out of memory", a.path);
  if (level <= 0) slices = 1;
  for (int r = 0; r < slices && rc == 0; r++) {
    uint64_t b, e;
    ckpt_slice(d, slices, r, &b, &e, NULL, NULL);
    if (r == 0 || e > b)
      rc = zw_write_frame(&w, t, n, meta->byte_shuffle, r == 0 ? hdr : NULL, r == 0 ? hlen : 0, b,
                          e);
  }
  if (rc == 0) rc = af_commit(&a);
out:
  af_close(&a, rc, out_path);
  ZSTD_freeCCtx(w.cctx);
  free(w.obuf);
  free(hdr);
  free(chunks);
  return rc;
}

int ckpt_write(const char *dir, const ckpt_tensor *tensors, int n_tensors, const ckpt_meta *meta,
               int level, char **out_path) {
  return ckpt_write_mt(dir, tensors, n_tensors, meta, level, 0, 1, out_path);
}

int ckpt_write_mt(const char *dir, const ckpt_tensor *tensors, int n_tensors,
                  const ckpt_meta *meta, int level, int workers, int slices, char **out_path) {
  char name[64];
  if (out_path) *out_path = NULL;
  if (!meta) return ms_error_set(MS_ECKPT, "ckpt_write: invalid arguments");
  snprintf(name, sizeof name, "step-%08" PRId64 ".safetensors.zst", meta->step);
  return write_file(dir, name, tensors, n_tensors, meta, level < 1 ? 1 : level, workers, slices,
                    out_path);
}

int ckpt_write_plain(const char *dir, const char *name, const ckpt_tensor *tensors,
                     int n_tensors, const ckpt_meta *meta, char **out_path) {
  return write_file(dir, name, tensors, n_tensors, meta, 0, 0, 1, out_path);
}
