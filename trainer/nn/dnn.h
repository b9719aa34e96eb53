/* dnn — dense and conv2d layers through oneDNN primitives (matmul,
 * convolution), in fp32 or in bf16 mixed precision, and the process-wide
 * oneDNN settings (threads, ISA). dnn.c holds the dense layer, dnn_conv.c
 * the convolution; conv2d follows the same rules as dense below, with
 * NCHW / OIHW arrays (layers.h) converted into the layouts oneDNN picks.
 *
 * A dnn_dense serves one dense layer: out (B, OC) = inp (B, C) @ w^T + b
 * with w (OC, C) row-major, the arena's PyTorch layout, so parameters and
 * checkpoints do not change with the kernel library. Its primitives (forward,
 * backward data, backward weights and the bf16 conversions) are created the
 * first time a batch size B is seen and kept for the next calls; a layer sees
 * a few sizes (the training batch, a short last batch, the evaluation batch),
 * and the cache keeps the most recent DNN_CACHE of them.
 *
 * Precision DNN_BF16 (mixed): the inputs, the weights and the output
 * gradients are rounded to bf16 (round to nearest even) before each product;
 * products accumulate in fp32 and every result (out, dinp, dw, db) is fp32.
 * A dense layer's bf16 weights are one plain (OC, C) array, which the
 * forward reads as w^T and the backward data as w: converted from w on each
 * call, or, after dnn_dense_use_bf16, read from the caller's copy (comm.
 * shared_params keeps one per node; trainer/startup.c). The matmul packs
 * plain bf16 weights itself, block by block, which costs less than a
 * reorder of the whole f32 array into its packed layout on each call (the
 * commit that brought this has the figures) and gives the same bits
 * (test_dnn).
 * The caller keeps fp32 master weights. Where oneDNN has no bf16 matmul for
 * the CPU (an ISA capped below AVX-512), the same rounding is applied and an
 * fp32 product runs instead: the numbers are those of bf16 inputs with fp32
 * accumulation, at fp32 speed or lower (dnn_dense_emulated says so).
 *
 * Determinism: oneDNN picks its implementation from the shapes, the
 * precision, the ISA and the thread count; with those fixed, results are
 * bitwise reproducible from run to run.
 *
 * Threads: oneDNN runs on OpenMP in Debian's build; dnn_set_threads sets the
 * count for the calling thread's parallel regions. Not thread-safe: one
 * thread drives all dnn_dense objects (the trainer's compute thread).
 * Errors: functions returning int give 0 or a negative MS_E code (MS_ENOMEM,
 * MS_EINTERNAL) set through ms_error_set, with oneDNN's status in the message.
 */
#ifndef MS_DNN_H
#define MS_DNN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "layers.h"

typedef enum { DNN_FP32 = 0, DNN_BF16 = 1 } dnn_precision;

/* Primitive sets (batch sizes) each dnn_dense keeps. */
#define DNN_CACHE 4

/* Sets oneDNN's (OpenMP's) thread count for the calling thread (n >= 1). */
void dnn_set_threads(int n);

/* @return 1 when oneDNN's effective ISA executes bf16 dot products natively
 * (AVX512_BF16 or AMX), 0 otherwise; honours ONEDNN_MAX_CPU_ISA. */
int dnn_bf16_native(void);

/* @return 1 when bf16 products are faster than fp32 ones on this CPU:
 * AMX, or AVX512_BF16 on an AMD CPU (twice the multiply-adds of an fp32
 * FMA per instruction). Intel's AVX512_BF16 without AMX does as many as
 * fp32 FMAs, and the conversions make bf16 slower there. */
int dnn_bf16_fast(void);

/* @return oneDNN's effective ISA as a short name ("avx512_core_bf16", "avx2"). */
const char *dnn_isa_name(void);

/* Resolves model.precision (config.h) to *prec, and writes why into why (n bytes): auto picks bf16 only when
 * dnn_bf16_fast() (native and faster than fp32); an explicit bf16 on a CPU
 * without native bf16 gets a reason that starts with "emulated".
 * @return 0, or MS_ECONFIG for another value. */
int dnn_resolve_precision(ms_precision want, dnn_precision *prec, char *why, size_t n);

/* The single-thread rate in FLOP/s of oneDNN's dense forward at precision
 * prec on 256x256x256 (bf16: conversions included), the best of a few
 * products (a few ms), as blas_sgemm_peak measures OpenBLAS: for the
 * "fraction of peak" of the precision that runs. @return 0 on a failure. */
double dnn_matmul_peak(dnn_precision prec);

typedef struct dnn_dense dnn_dense;

/* A dense layer of C inputs and OC outputs for batches of up to max_batch
 * rows; makes the products for max_batch rows at once. @return 0,
 * MS_ENOMEM, or MS_EINTERNAL (oneDNN failed to start or has no product). */
int dnn_dense_create(dnn_dense **out, int C, int OC, int max_batch, dnn_precision prec);

/* Accepts NULL. */
void dnn_dense_free(dnn_dense *d);

/* out = inp @ w^T + b, as dense_forward (kernels.h); B <= max_batch.
 * out: (B, OC)   inp: (B, C)   w: (OC, C)   b: (OC)
 * @return 0 or MS_EINTERNAL (a primitive could not be created or run). */
int dnn_dense_forward(dnn_dense *d, float *out, const float *inp, const float *w, const float *b,
                      int B);

/* Gradients as dense_backward (kernels.h), overwriting dw and db:
 *   dw = dout^T @ inp   db = sum over rows of dout (fp32)   dinp = dout @ w
 * dinp may be NULL. dout: (B, OC)   dinp: (B, C)   dw: (OC, C)   db: (OC)
 * @return 0 or MS_EINTERNAL. */
int dnn_dense_backward(dnn_dense *d, float *dinp, float *dw, float *db, const float *dout,
                       const float *inp, const float *w, int B);

/* 1 when the layer's products read plain bf16 weights (native bf16, not
 * emulated): only then does dnn_dense_use_bf16 take effect. */
int dnn_dense_bf16_weights(const dnn_dense *d);

/* w16: NULL (the default: each forward and backward converts w), or the
 * layer's weights (OC, C) as bf16, rounded to nearest even from w as
 * dnn_bf16_convert rounds them; the caller keeps them equal to the rounded
 * w whenever a forward or backward runs, and alive until the next call or
 * dnn_dense_free. Ignored unless dnn_dense_bf16_weights. */
void dnn_dense_use_bf16(dnn_dense *d, const uint16_t *w16);

/* dst[i] = src[i] rounded to bf16 (nearest even), i < n, by oneDNN's
 * reorder: the bits a layer's own conversion makes. @return 0 or
 * MS_EINTERNAL. */
int dnn_bf16_convert(uint16_t *dst, const float *src, size_t n);

/* oneDNN's name of the forward implementation last used
 * ("brg:avx512_core_bf16"), or "" before the first forward. */
const char *dnn_dense_impl(const dnn_dense *d);

/* 1 when bf16 runs as rounded inputs through fp32 primitives (no bf16
 * matmul for this ISA) or through oneDNN's own emulation (no native bf16). */
int dnn_dense_emulated(const dnn_dense *d);

typedef struct dnn_conv dnn_conv;

/* A conv2d layer of geometry g (conv2d_geometry done) for batches of up to
 * max_batch samples. @return 0, MS_ENOMEM or MS_EINTERNAL. */
int dnn_conv_create(dnn_conv **out, const ms_conv2d *g, int max_batch, dnn_precision prec);

/* Accepts NULL. */
void dnn_conv_free(dnn_conv *c);

/* As conv2d_forward (layers.h): out = conv(inp, w) + b, zero padding.
 * out: (B, OC, OH, OW)   inp: (B, C, H, W)   w: (OC, C, KH, KW)   b: (OC)
 * @return 0 or MS_EINTERNAL. */
int dnn_conv_forward(dnn_conv *c, float *out, const float *inp, const float *w, const float *b,
                     int B);

/* As conv2d_backward, overwriting dw, db and dinp (may be NULL); db is an
 * fp32 sum of dout (bf16: of the fp32 dout, not the rounded one). dout is
 * converted once for both products. @return 0 or MS_EINTERNAL. */
int dnn_conv_backward(dnn_conv *c, float *dinp, float *dw, float *db, const float *dout,
                      const float *inp, const float *w, int B);

/* oneDNN's name of the forward implementation ("brg:avx512_core"). */
const char *dnn_conv_impl(const dnn_conv *c);

/* As dnn_dense_emulated. */
int dnn_conv_emulated(const dnn_conv *c);

#endif
