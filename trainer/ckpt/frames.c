/* ckpt/frames — see frames.h.
 *
 * Reading streams: the caller asks for the header into a small buffer and
 * for each tensor's bytes straight into its destination, so a file is
 * decompressed once and never held whole. Writing streams likewise, from
 * the tensors through one compression context, into the file or memory.
 */
#include "frames.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* pread of exactly n bytes at off. @return 0, 1 (the file ends first) or
 * an error. */
static int read_at(ckpt_zreader *r, void *dst, size_t n, uint64_t off) {
  if (off > r->file_size || n > r->file_size - off) return 1;
  for (size_t got = 0; got < n;) {
    ssize_t k = pread(fileno(r->f), (char *)dst + got, n - got, (off_t)(off + got));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return ms_error_set(MS_EIO, "%s: read failed: %s", r->path, strerror(errno));
    if (k == 0) return 1;
    got += (size_t)k;
  }
  return 0;
}

/* Walks the blocks of the frame whose header starts at *at (RFC 8878: a
 * 3-byte header per block; raw and RLE blocks state their content size,
 * a compressed one holds at most ZSTD_BLOCKSIZE_MAX bytes). *content gets
 * the frame's declared content size, which must be present and no more
 * than its blocks can hold; *at moves past the frame.
 * @return 0, or MS_ECKPT / MS_EIO. */
static int walk_frame(ckpt_zreader *r, uint64_t *at, int index, uint64_t *content) {
  static const int did_len[4] = {0, 1, 2, 4}, fcs_len[4] = {0, 2, 4, 8};
  unsigned char h[18];
  int rc = read_at(r, h, 5, *at);
  if (rc < 0) return rc;
  if (rc == 0 && (h[0] & 0xF0) == 0x50 && h[1] == 0x2A && h[2] == 0x4D && h[3] == 0x18)
    return ms_error_set(MS_ECKPT, "%s: unexpected skippable zstd frame %d", r->path, index);
  if ((rc > 0 || memcmp(h, "\x28\xb5\x2f\xfd", 4) != 0) && index == 1)
    return ms_error_set(MS_ECKPT, "%s: not a zstd file, or truncated", r->path);
  if (rc > 0 || memcmp(h, "\x28\xb5\x2f\xfd", 4) != 0)
    return ms_error_set(MS_ECKPT,
                        "%s: corrupted (unexpected bytes after the zstd frame %d, at byte %" PRIu64
                        " where frame %d would begin)",
                        r->path, index - 1, *at, index);
  unsigned fhd = h[4], single = (fhd >> 5) & 1, fcs = fhd >> 6;
  size_t hlen = 5 + !single + (size_t)did_len[fhd & 3] + (size_t)(single && !fcs ? 1 : fcs_len[fcs]);
  if (!single && !fcs)
    return ms_error_set(MS_ECKPT, "%s: zstd frame %d does not declare its content size", r->path,
                        index);
  if ((rc = read_at(r, h, hlen, *at)) != 0)
    return rc < 0 ? rc : ms_error_set(MS_ECKPT, "%s: truncated (in zstd frame %d's header)", r->path, index);
  uint64_t declared = 0;
  size_t fcs_bytes = single && !fcs ? 1 : (size_t)fcs_len[fcs];
  for (size_t i = fcs_bytes; i > 0; i--) declared = declared << 8 | h[hlen - fcs_bytes + i - 1];
  if (fcs_bytes == 2) declared += 256;
  uint64_t can = 0, pos = *at + hlen;
  for (int last = 0; !last;) {
    unsigned char b[3];
    if ((rc = read_at(r, b, 3, pos)) != 0)
      return rc < 0 ? rc
                    : ms_error_set(MS_ECKPT, "%s: truncated (the zstd stream ends early, in frame %d)",
                                   r->path, index);
    uint32_t bh = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
    uint32_t type = (bh >> 1) & 3, size = bh >> 3;
    last = bh & 1;
    if (type == 3 || size > ZSTD_BLOCKSIZE_MAX)
      return ms_error_set(MS_ECKPT, "%s: corrupted (zstd, frame %d: a bad block header)", r->path,
                          index);
    can += type == 2 ? ZSTD_BLOCKSIZE_MAX : size;
    pos += 3 + (type == 1 ? 1 : size);
  }
  pos += (fhd >> 2) & 1 ? 4 : 0; /* the content checksum */
  if (pos > r->file_size)
    return ms_error_set(MS_ECKPT, "%s: truncated (the zstd stream ends early, in frame %d)",
                        r->path, index);
  if (declared > can)
    return ms_error_set(MS_ECKPT,
                        "%s: damaged: zstd frame %d declares %" PRIu64
                        " bytes but its blocks can hold at most %" PRIu64,
                        r->path, index, declared, can);
  *content = declared;
  *at = pos;
  return 0;
}

/* Sums the content sizes the frames declare, each checked against what
 * its blocks can hold, into r->payload_size: the payload's size, known
 * before anything is decompressed or allocated. */
static int walk_frames(ckpt_zreader *r) {
  uint64_t at = 0, total = 0, content = 0;
  int n = 0;
  for (int i = 1; at < r->file_size; i++, n++) {
    int rc = walk_frame(r, &at, i, &content);
    if (rc) return rc;
    if (content > CKPT_MAX_PAYLOAD - total)
      return ms_error_set(MS_ECKPT, "%s: damaged: the zstd frames declare more than %llu GiB",
                          r->path, (unsigned long long)(CKPT_MAX_PAYLOAD >> 30));
    total += content;
  }
  r->payload_size = total;
  r->n_frames = n;
  return 0;
}

int ckpt_zr_open(ckpt_zreader *r, const char *path, uint64_t max_size, uint64_t *first_size) {
  r->path = path;
  /* O_NONBLOCK: a FIFO named like a checkpoint must not block the open;
   * anything but a regular file is refused before a byte is read. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return ms_error_set(errno == ENOENT ? MS_ECKPT : MS_EIO, "%s: cannot open: %s", path,
                        strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    return ms_error_set(MS_ECKPT, "%s: not a regular file (%s)", path,
                        dir ? "a directory" : "a FIFO, device or socket");
  }
  r->file_size = (uint64_t)st.st_size;
  if (!(r->f = fdopen(fd, "rb"))) {
    close(fd);
    return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  }
  int wrc = walk_frames(r);
  if (wrc) return wrc;
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
