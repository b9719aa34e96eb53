/* ckpt/section — the data section of a checkpoint: the tensors' bytes in
 * order, as stored (plain, or byte-shuffled per tensor), and how a payload
 * is cut into slices and hash chunks (ckpt.h, "Frames" and "data_hash").
 *
 * The bottom layer of the checkpoint code: no files, no zstd, no JSON.
 * Implements the public ckpt_data_size, ckpt_slice and ckpt_copy_stored.
 * Pure functions of their arguments: thread-safe on distinct outputs.
 * Errors: ckpt_data_size returns 0 or MS_ECKPT with a message.
 */
#ifndef MS_CKPT_SECTION_H
#define MS_CKPT_SECTION_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ckpt writes float bytes and hashes as they are in memory; safetensors is little-endian"
#endif

/* Refuse payloads whose declared sizes no midscale model needs: a corrupted
 * size field must not turn into a huge allocation or a long read. */
#define CKPT_MAX_PAYLOAD (64ULL << 30)

/* Byte size of a tensor of this shape, or -1 when a dimension is negative,
 * ndim is out of range, or the size does not fit the payload cap. */
int64_t ckpt_sec_tensor_bytes(int ndim, const int64_t *shape);

/* The data section's size of tensors already checked by ckpt_data_size. */
uint64_t ckpt_sec_bytes(const ckpt_tensor *t, int n);

/* Receives consecutive pieces of the section; returns 0 or an error code,
 * which stops the walk and is returned by ckpt_sec_emit. */
typedef int (*ckpt_emit_fn)(void *ctx, const void *p, size_t n);

/* Hands bytes [begin, end) of the data section of t to emit, in order, as
 * stored (byte-shuffled when shuffle). Shuffled bytes go through a small
 * buffer on the stack, so no copy of a tensor is made. */
int ckpt_sec_emit(const ckpt_tensor *t, int n, int shuffle, uint64_t begin, uint64_t end,
                  ckpt_emit_fn emit, void *ctx);

/* Undoes the byte shuffle of n floats in place; scratch holds n floats. */
void ckpt_sec_unshuffle(float *x, size_t n, float *scratch);

#endif
