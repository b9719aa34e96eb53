/* layers — forward and backward kernels for the layers beyond dense + ReLU:
 * 2-d convolution, max and average pooling, activations, dropout, layer
 * normalisation, more losses, and a top-k accuracy count.
 *
 * The same rules as kernels.h: plain functions over float arrays, row-major,
 * batch first, shapes in the comments. No allocation (a kernel that needs
 * working memory takes a caller's scratch buffer, sized by a *_scratch_floats
 * helper), no state, no MPI, no error returns (shapes are the caller's
 * contract). Every backward OVERWRITES its outputs (dinp, dweight, dbias...),
 * like dense_backward; none accumulates. Every kernel has a finite-difference
 * gradient check in tests/test_layers.c and a cross-check against PyTorch in
 * tests/tools/torch_crosscheck.py.
 *
 * Images are NCHW: (B, C, H, W), W fastest.
 *
 * World-size invariance (DESIGN.md, "Global batch"): nothing here mixes rows,
 * so a rank computing its slice of the global batch gets the same numbers as
 * one rank computing all of it. Dropout's mask is a function of the sample's
 * global index, not of its position on the rank. Normalisation is layer norm
 * (statistics over the features of one row) rather than batch norm, whose
 * batch statistics would need a cross-rank reduction and would change with
 * the per-rank batch.
 */
#ifndef MS_LAYERS_H
#define MS_LAYERS_H

#include <stdint.h>

/* ---- 2-d convolution ------------------------------------------------------ */

/* Geometry of a 2-d convolution or pooling window. Fill the inputs
 * (C, H, W, OC, KH, KW, SH, SW, PH, PW) and call conv2d_geometry, which sets
 * OH and OW. Pooling uses the same struct with OC = C and PH = PW = 0. */
typedef struct {
  int C, H, W; /* input channels, height, width */
  int OC;      /* output channels (conv) */
  int KH, KW;  /* window */
  int SH, SW;  /* stride, >= 1 */
  int PH, PW;  /* zero padding on each side (conv only), >= 0 */
  int OH, OW;  /* output height and width (set by conv2d_geometry) */
} ms_conv2d;

/* Sets g->OH = (H + 2*PH - KH) / SH + 1 and g->OW likewise.
 * @return 0, or -1 when the window does not fit (OH or OW < 1) or a
 * dimension is out of range. */
int conv2d_geometry(ms_conv2d *g);

/* Samples per group: the kernels below take a batch in groups of up to this
 * many samples (1 to B), whose im2col matrices sit side by side so that one
 * sgemm serves the group; groups are capped at about 8 MiB of scratch. */
int conv2d_group(const ms_conv2d *g, int B);

/* Floats of scratch that conv2d_forward and conv2d_backward need for
 * batches of up to B samples: a group's im2col matrix (C*KH*KW, G*OH*OW)
 * and its outputs (OC, G*OH*OW), G = conv2d_group(g, B). */
long conv2d_scratch_floats(const ms_conv2d *g, int B);

/* out = conv(inp, w) + b, with zero padding, through im2col and one sgemm
 * per group of samples: [out_1 .. out_G] (OC, G*OH*OW) =
 * w (OC, C*KH*KW) @ [col_1 .. col_G] (C*KH*KW, G*OH*OW).
 * out: (B, OC, OH, OW)   inp: (B, C, H, W)   w: (OC, C, KH, KW)   b: (OC)
 * scratch: conv2d_scratch_floats(g, B) floats. */
void conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                    const ms_conv2d *g, int B, float *scratch);

/* Gradients of conv2d_forward, overwriting dw, db and dinp, per group:
 *   dw = sum_b dout_b @ col_b^T   db = sum of dout over (B, OH, OW)
 *   dinp = col2im(w^T @ dout_b)
 * The im2col matrix is recomputed from inp (scratch), so the forward keeps
 * nothing. dinp may be NULL (first layer).
 * dinp: (B, C, H, W)   dw: (OC, C, KH, KW)   db: (OC)   dout: (B, OC, OH, OW)
 * inp: (B, C, H, W)    w: (OC, C, KH, KW)   scratch: conv2d_scratch_floats(g, B). */
void conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, const ms_conv2d *g, int B, float *scratch);

/* ---- pooling ------------------------------------------------------------------ */

/* Pooling windows take g->C, H, W, KH, KW, SH, SW; no padding (g->PH and
 * g->PW must be 0; OC is ignored). Call conv2d_geometry first for OH, OW. */

/* out = max over each window. argmax receives, per output element, the index
 * h*W + w of the winning input within its (H, W) plane (the first maximum in
 * row-major order on ties); the backward needs it.
 * out: (B, C, OH, OW)   argmax: (B, C, OH, OW)   inp: (B, C, H, W) */
void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, const ms_conv2d *g, int B);

/* dinp = 0, then each dout element added to its window's argmax.
 * dinp: (B, C, H, W)   dout, argmax: (B, C, OH, OW) */
void maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, const ms_conv2d *g,
                        int B);

/* out = mean over each window (KH*KW inputs, all inside: no padding).
 * out: (B, C, OH, OW)   inp: (B, C, H, W) */
void avgpool2d_forward(float *out, const float *inp, const ms_conv2d *g, int B);

/* dinp = each dout element spread evenly (1 / (KH*KW)) over its window,
 * summed where windows overlap.  dinp: (B, C, H, W)   dout: (B, C, OH, OW) */
void avgpool2d_backward(float *dinp, const float *dout, const ms_conv2d *g, int B);

/* ---- activations (element-wise over n floats; out may equal inp) ------------ */

/* out = x > 0 ? x : alpha * x */
void leaky_relu_forward(float *out, const float *inp, long n, float alpha);
/* dinp = dout * (inp > 0 ? 1 : alpha). Needs the forward's INPUT.
 * dinp may equal dout. */
void leaky_relu_backward(float *dinp, const float *dout, const float *inp, long n, float alpha);

/* GELU, tanh approximation (PyTorch's gelu(approximate='tanh')):
 * out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
void gelu_forward(float *out, const float *inp, long n);
/* dinp = dout * gelu'(inp). Needs the forward's INPUT (so the forward must
 * not run in place when a backward follows). dinp may equal dout. */
void gelu_backward(float *dinp, const float *dout, const float *inp, long n);

/* out = tanh(x) */
void tanh_forward(float *out, const float *inp, long n);
/* dinp = dout * (1 - out^2). Needs the forward's OUTPUT. dinp may equal dout. */
void tanh_backward(float *dinp, const float *dout, const float *out, long n);

/* out = 1 / (1 + exp(-x)), stable for large |x| */
void sigmoid_forward(float *out, const float *inp, long n);
/* dinp = dout * out * (1 - out). Needs the forward's OUTPUT. dinp may equal dout. */
void sigmoid_backward(float *dinp, const float *dout, const float *out, long n);

/* Row-wise softmax (max-shifted).  out, inp: (B, K); out may equal inp. */
void softmax_forward(float *out, const float *inp, int B, int K);
/* dinp = out * (dout - sum_k dout_k out_k), per row. Needs the OUTPUT.
 * dinp, dout, out: (B, K); dinp may equal dout. */
void softmax_backward(float *dinp, const float *dout, const float *out, int B, int K);

/* ---- dropout ----------------------------------------------------------------- */

/* Inverted dropout: element j of row i is kept with probability 1 - p and
 * then scaled by 1 / (1 - p); dropped elements become 0. Whether it is kept
 * is a pure function, dropout_keep(seed, step, rows[i], j, p), of the run's
 * seed, the optimizer step, the GLOBAL index of the row's sample and the
 * element index: the caller passes rows[i] = an index that does not depend
 * on how the batch is split over ranks (the sample's position in the global
 * batch, step * global_batch + position, or its dataset index). Then a row
 * gets the same mask on 1 or 64 ranks, and the mask need not be stored: the
 * backward recomputes it. p in [0, 1); p = 0 is the identity.
 * out, inp: (B, D)   rows: (B). out may equal inp. */
void dropout_forward(float *out, const float *inp, int B, int D, float p, uint64_t seed,
                     uint64_t step, const uint64_t *rows);

/* dinp = dout * mask / (1 - p), with the forward's arguments.
 * dinp, dout: (B, D)   rows: (B). dinp may equal dout. */
void dropout_backward(float *dinp, const float *dout, int B, int D, float p, uint64_t seed,
                      uint64_t step, const uint64_t *rows);

/* 1 when element `elem` of the sample with global index `row` is kept:
 * a uniform draw in [0, 1) from sampler_mix64 of (seed, step, row, elem)
 * is >= p. */
int dropout_keep(uint64_t seed, uint64_t step, uint64_t row, uint64_t elem, float p);

/* ---- layer normalisation ----------------------------------------------------- */

/* Per row: out = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps),
 * var the biased variance over the D features (PyTorch's LayerNorm(D)).
 * Saves mean and rstd per row for the backward.
 * out, inp: (B, D)   mean, rstd: (B)   gamma, beta: (D) */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                       const float *beta, int B, int D, float eps);

/* Gradients of layernorm_forward, overwriting dinp, dgamma, dbeta:
 *   dbeta = sum_rows dout   dgamma = sum_rows dout * xhat
 *   dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dout * gamma
 * dinp may be NULL. dinp, dout, inp: (B, D)   mean, rstd: (B)
 * gamma, dgamma, dbeta: (D) */
void layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *rstd, const float *gamma,
                        int B, int D);

/* ---- losses -------------------------------------------------------------------
 * Each returns the loss summed over the B rows (in double) and, when the
 * gradient pointer is not NULL, writes scale * d(summed loss)/d(input) into
 * it, like softmax_xent (the trainer passes scale = 1 / global batch, which
 * makes the reduced gradient that of the global-batch mean). */

/* Softmax cross-entropy against labels (B) in [0, K) with label smoothing
 * epsilon in [0, 1) (PyTorch's CrossEntropyLoss(label_smoothing=epsilon)):
 * the target is q = (1 - epsilon) onehot(y) + epsilon / K, the row's loss
 * -sum_k q_k log softmax(z)_k, the gradient scale * (softmax(z) - q).
 * epsilon = 0 is softmax_xent. Adds the rows whose argmax is the label to
 * *correct when correct != NULL.  dlogits, logits: (B, K) */
double softmax_xent_smooth(float *dlogits, const float *logits, const int32_t *labels, int B, int K,
                           float epsilon, float scale, long *correct);

/* The per-row losses below are MEANS over the row's K outputs, so that the
 * returned sum divided by B is PyTorch's default reduction='mean' over all
 * B*K elements. Targets are floats (B, K). */

/* Binary cross-entropy on logits z against targets t in [0, 1]
 * (PyTorch's BCEWithLogitsLoss), in the stable form
 *   max(z, 0) - z t + log1p(exp(-|z|));   gradient (sigmoid(z) - t) / K.
 * dlogits, logits, targets: (B, K) */
double bce_logits_loss(float *dlogits, const float *logits, const float *targets, int B, int K,
                       float scale);

/* Mean squared error: row loss mean_k (y - t)^2, gradient 2 (y - t) / K.
 * dpred, pred, targets: (B, K) */
double mse_loss(float *dpred, const float *pred, const float *targets, int B, int K, float scale);

/* Mean absolute error: row loss mean_k |y - t|, gradient sign(y - t) / K with
 * the subgradient 0 where y == t (as PyTorch's L1Loss).
 * dpred, pred, targets: (B, K) */
double mae_loss(float *dpred, const float *pred, const float *targets, int B, int K, float scale);

/* ---- metrics ------------------------------------------------------------------ */

/* Rows whose label is among the top k logits: fewer than k logits of the row
 * are strictly greater than the label's (ties count in the label's favour).
 * k >= K counts every row.  logits: (B, K)   labels: (B) */
long topk_correct(const float *logits, const int32_t *labels, int B, int K, int k);

#endif
