/* ckpt/frames — see frames.h.
 *
 * Reading streams: the caller asks for the header into a small buffer and
 * for each tensor's bytes straight into its destination, so a file is
 * decompressed once and never held whole. Writing streams likewise, from
 * the tensors through one compression context, into the file or memory.
 */
#include "frames.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ms_error.h"
#include "section.h"

/* zr_run's answer when the stream ended cleanly between two frames before
 * the output was full. */
#define ZR_END 1

static int zr_fill(ckpt_zreader *r) {
  size_t got = fread(r->ibuf, 1, r->icap, r->f);
  if (got == 0 && ferror(r->f))
    return ms_error_set(MS_EIO, "%s: read failed: %s", r->path, strerror(errno));
  if (got == 0) r->eof = 1;
  r->in.src = r->ibuf;
  r->in.size = got;
  r->in.pos = 0;
  return 0;
}

int ckpt_zr_open(ckpt_zreader *r, const char *path, uint64_t max_size, uint64_t *first_size) {
  r->path = path;
  r->f = fopen(path, "rb");
  if (!r->f)
    return ms_error_set(errno == ENOENT ? MS_ECKPT : MS_EIO, "%s: cannot open: %s", path,
                        strerror(errno));
  r->icap = ZSTD_DStreamInSize();
  r->ibuf = malloc(r->icap);
  r->dctx = ZSTD_createDCtx();
  if (!r->ibuf || !r->dctx) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  int rc = zr_fill(r);
  if (rc) return rc;
  unsigned long long csize = ZSTD_getFrameContentSize(r->ibuf, r->in.size);
  if (csize == ZSTD_CONTENTSIZE_ERROR)
    return ms_error_set(MS_ECKPT, "%s: not a zstd file, or truncated", path);
  if (csize == ZSTD_CONTENTSIZE_UNKNOWN || csize < 8 || csize > max_size)
    return ms_error_set(MS_ECKPT, "%s: the zstd frame does not declare a plausible content size",
                        path);
  *first_size = csize;
  return 0;
}

void ckpt_zr_close(ckpt_zreader *r) {
  ZSTD_freeDCtx(r->dctx);
  free(r->ibuf);
  if (r->f) fclose(r->f);
  r->dctx = NULL;
  r->ibuf = NULL;
  r->f = NULL;
}

/* Decompresses into out until it is full, from frame to frame; with
 * one_frame, only to the end of the current frame (none: ZR_END at once).
 * @return 0, ZR_END (the stream, or the frame, ended first), or an error. */
static int zr_run(ckpt_zreader *r, ZSTD_outBuffer *out, int one_frame) {
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

int ckpt_zr_read(ckpt_zreader *r, void *dst, size_t n) {
  ZSTD_outBuffer out = {dst, n, 0};
  int rc = zr_run(r, &out, 0);
  if (rc < 0) return rc;
  if (out.pos == n) return 0;
  /* The stream ended between frames: a file cut at a frame boundary, or a
   * payload shorter than its header says. */
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

int ckpt_zr_finish(ckpt_zreader *r) {
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

/* ---- writing ------------------------------------------------------------ */

int ckpt_zw_setup(ckpt_zwriter *w, int level, int workers) {
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

void ckpt_zw_free(ckpt_zwriter *w) {
  ZSTD_freeCCtx(w->cctx);
  w->cctx = NULL;
}

/* Starts a new frame of `content` bytes (parameters are kept). */
static int zw_frame(ckpt_zwriter *w, uint64_t content) {
  if (!w->cctx) return 0;
  size_t zr = ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
  if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_setPledgedSrcSize(w->cctx, content);
  if (ZSTD_isError(zr))
    return ms_error_set(MS_ECKPT, "%s: zstd setup failed: %s", w->what, ZSTD_getErrorName(zr));
  return 0;
}

/* Compresses n bytes of src (mode ZSTD_e_continue), or ends the frame
 * (ZSTD_e_end), handing whatever zstd produces to the sink. */
static int zw_feed(ckpt_zwriter *w, const void *src, size_t n, ZSTD_EndDirective mode) {
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

int ckpt_zw_write_frame(ckpt_zwriter *w, const ckpt_tensor *t, int n, int shuffle,
                        const void *prefix, size_t prefix_len, uint64_t begin, uint64_t end) {
  int rc = zw_frame(w, prefix_len + (end - begin));
  if (rc == 0 && prefix_len) rc = zw_feed(w, prefix, prefix_len, ZSTD_e_continue);
  if (rc == 0) rc = ckpt_sec_emit(t, n, shuffle, begin, end, emit_zw, w);
  if (rc == 0 && w->cctx) rc = zw_feed(w, NULL, 0, ZSTD_e_end);
  return rc;
}

int ckpt_compress(const ckpt_tensor *tensors, int n_tensors, int shuffle, const void *prefix,
                  size_t prefix_len, uint64_t begin, uint64_t end, int level, int workers,
                  void **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  ckpt_zwriter w = {0};
  w.what = "checkpoint frame";
  /* zstd's worst case up front: the buffer is not expected to grow, though
   * zw_feed would grow it rather than fail. */
  w.mem_cap = ZSTD_compressBound(prefix_len + (size_t)(end - begin)) + 4096;
  int rc = (w.mem = malloc(w.mem_cap)) ? 0
                                       : ms_error_set(MS_ENOMEM,
                                                      "out of memory for a "
                                                      "compressed checkpoint frame");
  if (rc == 0) rc = ckpt_zw_setup(&w, level, workers);
  if (rc == 0)
    rc = ckpt_zw_write_frame(&w, tensors, n_tensors, shuffle, prefix, prefix_len, begin, end);
  ckpt_zw_free(&w);
  if (rc) {
    free(w.mem);
    return rc;
  }
  *out = w.mem;
  *out_len = w.mem_len;
  return 0;
}
