/* ckpt/header — the safetensors header of a checkpoint: the 8-byte
 * little-endian length, the JSON object (space-padded so the data section
 * starts 8-byte aligned) with one entry per tensor and the __metadata__
 * string map (ckpt.h lists its keys). Built and parsed through jansson, so
 * names and the config text are always escaped; key order is fixed
 * (__metadata__ first, then the tensors in data order).
 *
 * Implements the public ckpt_header. Parsing checks everything the header
 * alone can tell: metadata keys and values, format version, dtypes,
 * shapes, offsets that tile the data section without gaps or overlap.
 * No shared state: thread-safe on distinct objects. Errors: 0, or MS_ECKPT
 * (a header that is not a midscale checkpoint's) / MS_ENOMEM, with a
 * message naming the file.
 */
#ifndef MS_CKPT_HEADER_H
#define MS_CKPT_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

#define CKPT_FORMAT_NAME "midscale-ckpt"
/* Limits on a header (README "Checkpoints"), checked before the JSON is
 * parsed, since a JSON parser's memory grows with the number of values far
 * faster than with the text: at most CKPT_MAX_HEADER bytes, CKPT_MAX_TENSORS
 * tensor entries, nesting 3 deep (header, entry, shape), and no more JSON
 * values than that many entries and the metadata hold. The saved config is
 * at most CKPT_MAX_CONFIG bytes, config.h's CONFIG_MAX_BYTES (JSON escaping
 * may make it up to 6 times longer in the header). */
#define CKPT_MAX_HEADER (8ULL << 20)
#define CKPT_MAX_TENSORS 4096
#define CKPT_MAX_CONFIG (1u << 20)

/* Checks the metadata a writer is given: the reader would refuse a step
 * without a file name, a negative cursor or world_size < 1. */
int ckpt_hdr_check_meta(const char *what, const ckpt_meta *meta);

/* One tensor entry of a parsed header. */
typedef struct {
  const char *name;    /* borrowed from the parsed JSON */
  uint64_t begin, end; /* data_offsets */
  int ndim;
  int64_t shape[CKPT_MAX_DIMS];
  int req; /* the caller's: index of a destination, or -1 */
} ckpt_entry;

/* A parsed header. */
typedef struct {
  void *json;         /* the parsed object (jansson), owning the strings */
  ckpt_meta meta;     /* meta.config NULL: see config */
  const char *config; /* borrowed from json */
  int version;        /* format_version */
  uint64_t data_hash;
  ckpt_entry *es; /* sorted by offset, malloc'ed */
  size_t ne;
  uint64_t data_size; /* bytes the entries cover */
} ckpt_hdr;

/* Decodes the 8-byte length prefix; payload_size is the first frame's
 * content size, which must hold the prefix and the whole header. */
int ckpt_hdr_length(const char *path, const unsigned char len8[8], uint64_t payload_size,
                    uint64_t *len);

/* Parses and checks `len` bytes of header JSON into h (zeroed first). Free
 * with ckpt_hdr_free, also after a failure. */
int ckpt_hdr_parse(const char *path, const char *text, size_t len, ckpt_hdr *h);
void ckpt_hdr_free(ckpt_hdr *h);

#endif
