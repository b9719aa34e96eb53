/* conv_direct — a direct 2-d convolution for layers of few input channels
 * (the first conv2d of an image model: 1 or 3 channels), where im2col makes
 * a short, wide matrix (C*KH*KW rows) on which sgemm runs far below its
 * peak, and oneDNN's direct convolution has little reuse to exploit.
 *
 * Same contract as conv2d_forward / conv2d_backward (layers.h): plain
 * functions over float arrays, NCHW, weights (OC, C, KH, KW), no allocation
 * (a caller's scratch of conv_direct_scratch_floats floats), no state, no
 * MPI, no error returns; the backward OVERWRITES dinp, dw and db.
 *
 * How: each input plane is copied into a zero-padded plane of width
 * WP = W + 2*PW, and the output is computed in that width too, so that a
 * tap (c, kh, kw) of the window is one contiguous multiply-add over the
 * whole plane at the offset kh*WP + kw, with no bounds test in the loop;
 * the WP - OW columns past the output's right edge are dropped (forward)
 * or held at zero (backward). The forward computes 8 output channels per
 * load of the input; weight and bias gradients are sums over (B, OH, OW)
 * kept in 16 (weights) or 64 (biases) partial sums each, added together at
 * the end in a fixed order: a run is deterministic for its batch split,
 * and the sums agree with im2col's to rounding (tests/test_conv_direct.c:
 * 1e-5 relative to the tensor's scale), not bit for bit. The vector loops
 * use GCC/Clang vector types and clones.h.
 *
 * Thread-safety: none needed (no shared state); the caller's scratch is
 * the only memory written besides the outputs.
 */
#ifndef MS_CONV_DIRECT_H
#define MS_CONV_DIRECT_H

#include "layers.h"

/* Input channels below which model.conv_kernel auto runs the direct kernel
 * (from here up, oneDNN's convolution). */
#define CONV_DIRECT_MAX_C 8

/* 1 when the direct kernel handles g: stride 1 and fewer than
 * CONV_DIRECT_MAX_C input channels. A rule of the shape alone. */
int conv_direct_supported(const ms_conv2d *g);

/* Floats of scratch conv_direct_forward and conv_direct_backward need
 * (any batch size): padded input stacks, padded output planes, the
 * partial sums of the gradients and the taps' offsets. */
long conv_direct_scratch_floats(const ms_conv2d *g);

/* out = conv(inp, w) + b.   out: (B, OC, OH, OW)   inp: (B, C, H, W)
 * w: (OC, C, KH, KW)   b: (OC)   g: conv_direct_supported. */
void conv_direct_forward(float *out, const float *inp, const float *w, const float *b,
                         const ms_conv2d *g, int B, float *scratch);

/* Gradients of conv_direct_forward, overwriting dw, db and (unless NULL)
 * dinp.   dinp: (B, C, H, W)   dw: (OC, C, KH, KW)   db: (OC)
 * dout: (B, OC, OH, OW)   inp: (B, C, H, W)   w: (OC, C, KH, KW). */
void conv_direct_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const ms_conv2d *g, int B, float *scratch);

#endif
