/* layers_seq — kernels of the sequence layers: token and positional
 * embeddings, multi-head scaled dot-product attention, and the per-position
 * softmax cross-entropy of a language model.
 *
 * The rules of layers.h apply: plain functions over float arrays, row-major,
 * batch first, shapes in the comments, no allocation (scratch comes from the
 * caller), no state, no MPI, no error returns. Every backward OVERWRITES its
 * outputs, except embedding_backward with accumulate = 1 (the tied output
 * head has already written its share of the same gradient). Each kernel has
 * a finite-difference gradient check in tests/test_layers_seq.c and is
 * cross-checked against PyTorch by tests/tools/torch_seq_crosscheck.py.
 *
 * A sequence is (T, D): T positions of D features, position-major, so a
 * batch (B, T, D) is also B*T rows of D features and the per-position
 * products (projections, the MLP, the output head) are single sgemm calls
 * over B*T rows (kernels.h dense_*).
 *
 * Nothing here mixes samples (attention mixes positions of one sample
 * only), so the world-size invariance of layers.h holds.
 */
#ifndef MS_LAYERS_SEQ_H
#define MS_LAYERS_SEQ_H

#include <stdint.h>

/* ---- embeddings --------------------------------------------------------------- */

/* The token id a float input holds: (int)x, clamped into [0, V). The data
 * layer refuses ids >= the vocabulary before training (exit 3), so the
 * clamp only keeps a bad row from reading outside the table. */
int embedding_id(float x, int V);

/* out[r, :] = w[embedding_id(ids[r]), :] for the N positions r.
 * out: (N, D)   ids: (N) token ids held in floats   w: (V, D) */
void embedding_forward(float *out, const float *ids, const float *w, long N, int D, int V);

/* dw = 0 unless accumulate, then dw[id(r), :] += dout[r, :] for r = 0..N-1
 * in that order (a fixed summation order: the result is reproducible).
 * dw: (V, D)   dout: (N, D)   ids: (N) */
void embedding_backward(float *dw, const float *dout, const float *ids, long N, int D, int V,
                        int accumulate);

/* Learned positional embedding: out[b, t, :] = inp[b, t, :] + p[t, :].
 * out, inp: (B, T, D)   p: (T, D). out may equal inp. */
void posemb_forward(float *out, const float *inp, const float *p, int B, int T, int D);

/* dp = sum over b of dout[b]; the input's gradient is dout itself.
 * dp: (T, D)   dout: (B, T, D) */
void posemb_backward(float *dp, const float *dout, int B, int T, int D);

/* ---- attention ------------------------------------------------------------------ */

/* Multi-head scaled dot-product attention on projected inputs. Each position
 * of qkv holds [q (D) | k (D) | v (D)]; head h uses features h*hd..(h+1)*hd
 * of each, hd = D / H (PyTorch: q, k, v = qkv.split(D, -1), then
 * .view(B, T, H, hd)). Per sample b and head h:
 *   S = q k^T / sqrt(hd)   (T, T)
 *   P = softmax(S) row by row; with causal, position t sees positions <= t
 *       only, and the masked scores are never computed (masked P are 0)
 *   y[:, h] = P v          (T, hd)
 * The products are the file's own loops (no BLAS: at these sizes OpenBLAS
 * spent more in packing than in arithmetic, scripts/bench/results/seq.md);
 * every sum runs in an order fixed by the shapes, the same bits on every
 * machine.
 * y: (B, T, D)   att: (B, H, T, T) the probabilities P, kept for the backward
 * qkv: (B, T, 3D). D % H == 0. scratch: attention_scratch(T, D, H) floats. */
void attention_forward(float *y, float *att, const float *qkv, int B, int T, int D, int H,
                       int causal, float *scratch);

/* Gradient of attention_forward with respect to qkv, overwriting dqkv:
 *   dP = dy v^T   dv = P^T dy
 *   dS = P * (dP - rowsum(dP * P)) / sqrt(hd)
 *   dq = dS k     dk = dS^T q
 * over the visible part of P only (causal as in the forward).
 * dqkv: (B, T, 3D)   dy: (B, T, D)   qkv, att: the forward's
 * scratch: attention_scratch(T, D, H) floats. */
void attention_backward(float *dqkv, const float *dy, const float *qkv, const float *att, int B,
                        int T, int D, int H, int causal, float *scratch);

/* The floats of working memory attention_forward and _backward need. */
long attention_scratch(int T, int D, int H);

/* ---- GELU of the transformer blocks --------------------------------------------- */

/* gelu_forward / gelu_backward of layers.h (the tanh form, PyTorch's
 * gelu(approximate='tanh')) with tanh computed from an inline exp
 * (a degree-6 polynomial after range reduction, no libm call) that the
 * compiler vectorises: libm's tanhf was a third of a transformer step
 * (scripts/bench/results/seq.md). Within 5e-7 * (1 + |x|) of the libm
 * versions (tests/test_layers_seq.c), well inside the 1e-4 of the PyTorch
 * cross-check. The activation layers of layers.h keep libm's tanhf, so
 * their results stay bit for bit what they were.
 * out, inp, dinp, dout: (n); out may equal inp, dinp may equal dout. */
void gelu_fast_forward(float *out, const float *inp, long n);
void gelu_fast_backward(float *dinp, const float *dout, const float *inp, long n);

/* The same split for training: gelu_fast_forward_grad writes out as
 * gelu_fast_forward does and grad[i] = d out[i] / d inp[i] (grad may equal
 * inp: the input is then replaced by what the backward needs instead of
 * it); gelu_fast_backward_grad(dinp, dout, grad) is then
 * gelu_fast_backward(dinp, dout, inp) bit for bit, one product per element
 * instead of a tanh (the GELU backward was 4% of a step,
 * scripts/bench/results/seq.md). dinp may equal dout. */
void gelu_fast_forward_grad(float *out, float *grad, const float *inp, long n);
void gelu_fast_backward_grad(float *dinp, const float *dout, const float *grad, long n);

/* ---- layer norm of the sequence layers ----------------------------------------- */

/* layernorm_forward / layernorm_backward of layers.h (same arguments and
 * contract) for the transformer's rows, on vectors: the same double sums
 * in 16 partial sums (an order fixed by D) where layers.h sums one element
 * after the other (which the MLP's results keep, bit for bit). Within 1e-5
 * of layers.h's (tests/test_layers_seq.c). */
void layernorm_seq_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *gamma, const float *beta, int B, int D, float eps);
void layernorm_seq_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                            const float *inp, const float *mean, const float *rstd,
                            const float *gamma, int B, int D);

/* ---- loss ------------------------------------------------------------------------ */

/* Softmax cross-entropy at every position of a sequence: logits (B, T, V)
 * against the next-token labels (B, T) in [0, V). A sample's loss is the
 * MEAN over its T positions, so the returned sum over the B samples divided
 * by B is PyTorch's cross_entropy(logits.view(-1, V), labels.view(-1)) with
 * reduction 'mean'. dlogits (may be NULL) receives scale * d(sum)/d(logits)
 * = scale / T * (softmax - onehot). *correct (may be NULL) gets the number
 * of POSITIONS whose argmax is the label added. Its own kernel, not
 * kernels.h's softmax_xent (which the MLP keeps bit for bit): each
 * exponential is computed once, in float, by the inline exp of the GELU
 * (the loss within 1e-6 of softmax_xent's, tests/test_layers_seq.c);
 * NaN logits give a NaN loss as there. */
double seq_xent(float *dlogits, const float *logits, const int32_t *labels, int B, int T, int V,
                float scale, long *correct);

#endif
