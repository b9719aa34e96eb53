/* ckpt/frames — the zstd layer of a checkpoint: a payload written as
 * independent frames (content size declared, content checksum on), and
 * read back as one stream, frame after frame, with every checksum checked
 * and nothing after the last frame. Knows the data section only through
 * section.h (what to compress), nothing of the header or the hash.
 *
 * Implements the public ckpt_compress. A ckpt_zreader or ckpt_zwriter
 * belongs to one thread; zstd's own workers (ckpt_zw_setup `workers`) are
 * managed by libzstd inside the calls. Errors: 0, or MS_ECKPT (a damaged
 * stream, a bad zstd parameter) / MS_EIO / MS_ENOMEM with a message naming
 * the file.
 */
#ifndef MS_CKPT_FRAMES_H
#define MS_CKPT_FRAMES_H

#include <stdint.h>
#include <stdio.h>
#include <zstd.h>

#include "ckpt.h"

/* ---- reading ------------------------------------------------------------ */

typedef struct {
  FILE *f;
  const char *path; /* borrowed, for messages */
  ZSTD_DCtx *dctx;
  unsigned char *ibuf;
  size_t icap;
  ZSTD_inBuffer in;
  int eof;
  int in_frame;        /* a frame has begun and has not ended */
  int frames;          /* frames ended (each one's checksum verified) */
  uint64_t out_total;  /* payload bytes decompressed so far */
  uint64_t data_start; /* payload offset of the data section; 0 until known
                          (set by the caller: it only words messages) */
  uint64_t data_size;  /* its size by the header (likewise) */
  uint64_t file_size;    /* the compressed file's size */
  uint64_t payload_size; /* the sum of the frames' declared content sizes,
                            each no more than its blocks can hold */
  int n_frames;          /* how many frames the file holds */
} ckpt_zreader;

/* Opens path, a regular file only (never blocking on a FIFO), walks the
 * frame and block headers to set payload_size (each frame must declare
 * its content size, no more than its blocks can hold: so no size a reader
 * allocates can exceed what the file's bytes can decompress to), and reads
 * its first block; *first_size gets the content size the first frame
 * declares, which must lie in [8, max_size] (the first frame holds the
 * header length and the header). Call ckpt_zr_close whatever this
 * returns; r must be zeroed first. */
int ckpt_zr_open(ckpt_zreader *r, const char *path, uint64_t max_size, uint64_t *first_size);

/* Reads exactly n payload bytes, crossing frames as needed. A stream that
 * ends first is reported as truncated or shorter than the header says. */
int ckpt_zr_read(ckpt_zreader *r, void *dst, size_t n);

/* Reads the end of the last frame (where zstd checks its checksum) and
 * makes sure no payload byte and no other byte follows. */
int ckpt_zr_finish(ckpt_zreader *r);

void ckpt_zr_close(ckpt_zreader *r);

/* ---- writing ------------------------------------------------------------ */

/* Compresses into a FILE (f set, obuf of ocap bytes, owned by the caller)
 * or into memory (f NULL: mem grows as needed and is handed over by the
 * caller). Without a zstd context (cctx NULL) bytes go to f as they are:
 * the plain safetensors files of ckpt_export. */
typedef struct {
  ZSTD_CCtx *cctx; /* made by ckpt_zw_setup; ckpt_zw_free frees it */
  FILE *f;
  void *obuf;
  size_t ocap;
  unsigned char *mem;
  size_t mem_len, mem_cap;
  const char *what; /* the destination, for messages */
} ckpt_zwriter;

/* Makes the compression context: `level`, checksums on, and `workers`
 * zstd threads (0 = this thread; a libzstd without threads ignores it). */
int ckpt_zw_setup(ckpt_zwriter *w, int level, int workers);

/* Writes one frame: prefix (prefix_len bytes, may be 0), then bytes
 * [begin, end) of the data section of t as stored. */
int ckpt_zw_write_frame(ckpt_zwriter *w, const ckpt_tensor *t, int n, int shuffle,
                        const void *prefix, size_t prefix_len, uint64_t begin, uint64_t end);

/* Frees the context (not f, obuf or mem); accepts a zeroed writer. */
void ckpt_zw_free(ckpt_zwriter *w);

#endif
