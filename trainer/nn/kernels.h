/* kernels — forward and backward passes of the layers and the loss.
 *
 * Plain functions over float arrays, row-major, batch first. Shapes are in
 * the comments as (rows, cols). Dense layers go through CBLAS sgemm; the rest
 * are loops. No allocation, no state, no MPI: each kernel has a finite-
 * difference gradient check in tests/test_kernels.c.
 */
#ifndef MS_KERNELS_H
#define MS_KERNELS_H

#include <stdint.h>

/* out = inp @ w^T + b
 * out: (B, OC)   inp: (B, C)   w: (OC, C)   b: (OC) */
void dense_forward(float *out, const float *inp, const float *w, const float *b,
                   int B, int C, int OC);

/* Gradients of dense_forward, overwriting dw and db (not accumulating):
 *   dw = dout^T @ inp   db = sum over rows of dout   dinp = dout @ w
 * dinp may be NULL (first layer: no gradient is needed for the input).
 * dinp: (B, C)   dw: (OC, C)   db: (OC)   dout: (B, OC) */
void dense_backward(float *dinp, float *dw, float *db, const float *dout,
                    const float *inp, const float *w, int B, int C, int OC);

/* dense_backward's last product alone: dinp = dout @ w (its bits). */
void dense_backward_data(float *dinp, const float *dout, const float *w, int B, int C, int OC);

/* In place: x = max(x, 0); NaN stays NaN. x: (n) */
void relu_forward(float *x, long n);

/* In place: dx *= (out > 0), where out is relu_forward's result. */
void relu_backward(float *dx, const float *out, long n);

/* Softmax cross-entropy on logits (B, K) against labels (B) in [0, K).
 * Returns the summed loss over the B rows (in double); adds the number of
 * rows whose argmax equals the label to *correct when correct != NULL.
 * When dlogits != NULL it receives scale * (softmax - onehot), the gradient
 * of scale * summed loss (the trainer passes scale = 1 / global batch). */
double softmax_xent(float *dlogits, const float *logits, const int32_t *labels,
                    int B, int K, float scale, long *correct);

#endif
