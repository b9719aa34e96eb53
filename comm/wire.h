/* wire — 16-bit wire formats for gradients (IEEE fp16, bfloat16) with error
 * feedback, and the bucket plan of the reducer. Pure arithmetic: no MPI, no
 * allocation, any thread.
 *
 * Conversions round to nearest, ties to even, as the hardware instructions
 * (F16C vcvtps2ph, AVX512-BF16 vcvtneps2bf16) do; NaN stays NaN, overflow
 * becomes infinity, fp16 keeps its subnormals.
 *
 * A block of floats is sent as one 16-bit value per element after a
 * power-of-two scale 2^e chosen per block (fp16 only; e = 0 for bf16, whose
 * exponent range is fp32's): the block's largest magnitude lands in
 * [2^14, 2^15), so gradients of size 1e-6 keep fp16's 11 significant bits
 * instead of underflowing. Scaling by a power of two is exact.
 */
#ifndef MS_WIRE_H
#define MS_WIRE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { WIRE_F32 = 0, WIRE_FP16, WIRE_BF16 } wire_format;

/* 16-bit words in front of every encoded block: the scale exponent e as a
 * little-endian int32. */
#define WIRE_HEADER 2

uint16_t wire_f32_to_f16(float f);
float wire_f16_to_f32(uint16_t h);
uint16_t wire_f32_to_bf16(float f);
float wire_bf16_to_f32(uint16_t h);

/* The kernels wire_encode and wire_decode use for bf16 blocks on this CPU:
 * "avx512" (AVX-512F/BW, 16 elements at a time) or "scalar"; both give the
 * bits of wire_f32_to_bf16 and wire_bf16_to_f32 element by element. */
const char *wire_kernels(void);

/* The scale exponent for a block whose largest finite magnitude is maxabs
 * (0 for bf16, for 0, NaN and Inf). */
int wire_scale_exponent(wire_format fmt, float maxabs);

/* Encodes n floats of x, each plus its residual, into out (WIRE_HEADER + n
 * words) and leaves in residual[i] what the wire lost:
 *   v = x[i] + residual[i];  out = encode(v * 2^e);  residual[i] = v - decoded
 * residual may be NULL (no error feedback). fmt is WIRE_FP16 or WIRE_BF16. */
void wire_encode(wire_format fmt, const float *x, float *residual, size_t n, uint16_t *out);

/* Decodes a block that wire_encode wrote: y[i] = value of word i (n words
 * after the header). */
void wire_decode(wire_format fmt, const uint16_t *in, size_t n, float *y);

/* y[i] += value of word i: the accumulation step of a reduction (exact
 * scaling, one fp32 addition per element). */
void wire_decode_add(wire_format fmt, const uint16_t *in, size_t n, float *y);

/* wire_encode and wire_decode in parts, so a block can go on the wire piece
 * by piece with one header: the block's exponent e (a pass over x +
 * residual for fp16; 0 for bf16), the header that carries it, and any run
 * of the block's elements encoded or decoded with that e. Encoding a block
 * in parts gives exactly wire_encode's words and residuals. add: y += value
 * instead of y = value. */
int wire_block_exponent(wire_format fmt, const float *x, const float *residual, size_t n);
void wire_put_exponent(uint16_t *out, int e); /* writes WIRE_HEADER words */
int wire_get_exponent(const uint16_t *in);
void wire_encode_words(wire_format fmt, int e, const float *x, float *residual, size_t n,
                       uint16_t *out);
void wire_decode_words(wire_format fmt, int e, const uint16_t *in, size_t n, float *y, int add);

/* Plans the buckets of an arena of n floats whose gradients become final
 * from the end towards the start, in units [starts[k], starts[k+1]) (the
 * parameter tensors of one layer; starts ascending within (0, n), may be
 * NULL for byte-count buckets). Buckets take whole units from the end until
 * they reach the cap, as PyTorch DDP's buckets do: first_cap floats for the
 * first bucket (the last layers, so the first collective starts early), cap
 * for the others; so a bucket exceeds its cap by less than one unit, and no
 * bucket holds more than 2^30 floats (MPI counts are int). Without units,
 * buckets are first_cap, cap, cap, ... floats from the end.
 * Writes bounds[0] = n > bounds[1] > ... > bounds[nb] = 0: bucket b is
 * [bounds[b + 1], bounds[b]). bounds holds max + 1 entries.
 * @return nb (0 when n is 0), or -1 when more than max buckets are needed. */
int wire_plan_buckets(size_t n, const size_t *starts, int n_starts, size_t first_cap, size_t cap,
                      size_t *bounds, int max);

#endif
