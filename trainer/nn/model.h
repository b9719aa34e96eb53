/* model — a stack of layers (dense, conv2d, pooling, flatten, dropout, layer
 * norm, activations; embeddings, attention and transformer blocks for
 * sequences) over one parameter arena.
 *
 * All parameters live in one contiguous float arena (params), all gradients
 * in another of the same layout (grads); each layer holds offsets into them
 * (DESIGN.md, "Parameters"). Parameters are laid out in layer order, the
 * weight (dense (out, in); conv2d (OC, C, KH, KW); layer norm: the gain)
 * before the bias. Images are NCHW; a vector of F features is (F, 1, 1).
 * Dense layers flatten what comes in.
 *
 * Sequences (model_seq.c, layers_seq.h): an `embedding` first layer turns
 * the input's T token ids into a (T, D) sequence, shape (1, T, D) here
 * (in_h = T, in_w = D). Layers after it work per position: layer norm over
 * the D features of each position, dense on each position's features (a
 * shared (units, D) weight; the output head of a language model), dropout,
 * activations (not softmax); attention and transformer blocks mix the
 * positions of one sample. flatten ends the sequence ((T*D) features). A
 * model whose last layer outputs a sequence has a sequence loss: seq_T
 * positions of `vocab` logits each (n_out = seq_T * vocab). Tensor names
 * are PyTorch's (tok_emb.weight, pos_emb.weight, blocks.<k>.ln1.weight,
 * blocks.<k>.attn.qkv.weight, ..., ln_f.*, head.*: README "Sequence
 * models"); layouts too (Linear weights (out, in)). Sequence layers always
 * run fp32 on OpenBLAS.
 *
 * Activations are preallocated for up to max_batch rows. model_plan computes
 * the shapes and the layout without allocating (for `midscale check`).
 *
 * Kernels (model_kernels_desc names them): model.precision fp32 runs dense
 * layers on OpenBLAS sgemm, bit for bit as before oneDNN came in, and each
 * conv2d layer on oneDNN's fp32 convolution or on im2col + OpenBLAS sgemm
 * by a rule of its shape (model.conv_kernel auto: oneDNN from 8 input
 * channels up; im2col or onednn pin one library for every layer); bf16
 * runs dense and conv2d on oneDNN matmul and convolution primitives
 * (dnn.h: bf16 inputs and weights, fp32 sums and results).
 * Master weights, gradients, the optimizer, the loss and every other layer
 * stay fp32 either way.
 *
 * Ownership: model_create allocates everything; model_free releases it and
 * accepts NULL. Not thread-safe; no MPI.
 */
#ifndef MS_MODEL_H
#define MS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dnn.h"
#include "layers.h"

/* One parameter tensor: a view of the arenas. */
typedef struct {
  char name[48];      /* "layers.<i>.weight" / "layers.<i>.bias"; sequence models above */
  size_t off, len;    /* floats into params / grads */
  int ndim;
  int64_t shape[4];
  int decay;          /* 1: weight decay applies by default (weights of dense and conv2d) */
} ms_param;

typedef struct {
  ms_layer_type type;
  ms_activation act;
  float alpha;        /* leaky_relu */
  float rate;         /* dropout */
  float eps;          /* layernorm */
  ms_init init;
  int in_c, in_h, in_w;    /* input shape */
  int out_c, out_h, out_w; /* output shape */
  long in_elems, out_elems;
  ms_conv2d g;        /* conv2d and pools */
  dnn_dense *dnn;     /* dense in bf16: its oneDNN products (owned); NULL = OpenBLAS */
  dnn_conv *dconv;    /* conv2d on oneDNN (bf16, or fp32 by model.conv_kernel): its
                       * convolutions (owned); NULL = direct or im2col */
  int direct;         /* fp32 conv2d without dconv: 1 = conv_direct.h, 0 = im2col */
  int w, b;           /* indices into ms_model.p of the weight and bias; -1 = none */
  /* Buffers of max_batch rows, owned unless noted: */
  float *z;           /* the layer's result before the activation; NULL when the
                       * layer passes its input through (flatten, activation, and
                       * dropout outside training) */
  float *a;           /* after the activation; == z when it runs in place or there is none */
  int32_t *argmax;    /* maxpool2d */
  float *mean, *rstd; /* layernorm, (max_batch) */
  const float *in;    /* the last forward's input (not owned) */
  const float *pre;   /* the last forward's result before the activation (not owned) */
  const float *out;   /* the last forward's output (not owned) */
  /* Sequences (model_seq.c): */
  int seq;            /* 1: the input is a sequence of in_h positions of in_w features */
  int heads, causal, hidden; /* attention, transformer_block */
  int tie;            /* a dense head tied to the embedding: its table's index in p, else -1 */
  float *sv;          /* attention, transformer_block: the saved activations below (owned) */
  float *h1, *qkv, *att, *atty, *x2, *h2, *fc, *ge, *m1, *r1, *m2, *r2; /* views of sv */
} ms_layer;

/* Parameter tensors a model can have: a transformer block has 12. */
#define MS_MAX_PARAMS (12 * MS_MAX_LAYERS)

typedef struct {
  int n_layers;
  ms_layer layers[MS_MAX_LAYERS];
  int in_c, in_h, in_w;  /* input shape */
  long in_features;      /* in_c * in_h * in_w */
  long n_out;            /* outputs per sample (classes, or regression targets) */
  int n_p;               /* parameter tensors */
  ms_param p[MS_MAX_PARAMS];
  size_t n_params;
  float *params;         /* (n_params); model_use_params may move it */
  int params_borrowed;   /* 1: params is the caller's (model_use_params) */
  float *grads;          /* (n_params); model_use_grads may move it */
  int grads_borrowed;    /* 1: grads is the caller's (model_use_grads) */
  uint16_t *bf16;        /* the caller's bf16 copy of params (model_use_bf16), or NULL */
  int max_batch;
  float *scratch[2];     /* backward buffers, (max_batch, widest) */
  float *conv_scratch;   /* one im2col matrix, the largest conv2d's */
  float *seq_scratch;    /* the largest attention or block backward's working memory */
  int seq_T, vocab;      /* sequence output: seq_T positions of vocab logits; 0 = none */
  int batch;             /* rows of the last forward */
  dnn_precision precision;  /* model.precision, resolved (auto -> fp32 or bf16) */
  char precision_why[160];  /* the choice and its reason (dnn_resolve_precision) */
  ms_conv_kernel conv_kernel; /* model.conv_kernel: which fp32 conv2d layers run oneDNN */
  int kernel_rc;         /* first oneDNN failure in a forward or backward, else 0 */
} ms_model;

/* What a forward pass needs beyond its input. Training passes enable
 * dropout, whose mask is a function of (seed, step, rows[i]), rows[i] the
 * GLOBAL index of row i's sample, so that it does not depend on the world
 * size (layers.h). NULL = inference. */
typedef struct {
  uint64_t seed;
  uint64_t step;
  const uint64_t *rows; /* (B) */
} ms_pass;

/* Called by model_backward as soon as the gradients [off, off + len) of the
 * grads arena are final. Layers are visited last to first, so the ranges
 * come from the end of the arena towards its start, each adjacent to the
 * previous one. */
typedef void (*ms_grad_ready)(void *ctx, size_t off, size_t len);

/* Computes the layer shapes and the parameter layout of cfg->model for
 * inputs of shape `in` (ndim 1: (F) features; 2: (H, W), one channel;
 * 3: (C, H, W)) into m, which is zeroed first; allocates nothing.
 * @return 0 or MS_ECONFIG naming the layer and the shape that does not fit. */
int model_plan(ms_model *m, const ms_config *cfg, const int64_t *in, int ndim);

/* model_plan, then allocates the arenas and the buffers for max_batch rows,
 * and resolves cfg->model.precision (bf16: creates the oneDNN products for
 * max_batch rows). @return 0, MS_ECONFIG (bad shapes or precision),
 * MS_ENOMEM, or MS_EINTERNAL (oneDNN could not make a product). */
int model_create(ms_model **out, const ms_config *cfg, const int64_t *in, int ndim,
                 int max_batch);

void model_free(ms_model *m);

/* From now on the gradients live in g (n_params floats, the caller's, which
 * must outlive every later forward and backward): the gradient reducer's
 * node-shared arena (comm/reducer.h). The current gradients are copied. */
void model_use_grads(ms_model *m, float *g);

/* From now on the parameters live in p (n_params floats, the caller's,
 * which must outlive every later use of the model): a node-shared copy that
 * the ranks of a node read in place (trainer/startup.c). copy: the current
 * parameters are copied into p first (one rank of the node does it); 0
 * leaves p as it is. */
void model_use_params(ms_model *m, float *p, int copy);

/* 1 when some layer multiplies by bf16 weights that it can read from a
 * bf16 copy of the parameters (model.precision bf16, native: the dense
 * layers on oneDNN), so that model_use_bf16 saves their conversions. */
int model_bf16_wanted(const ms_model *m);

/* From now on those layers read their bf16 weights from w16 (n_params
 * bf16 values, the caller's, same offsets as params; NULL: each converts
 * its own again). The caller keeps w16 equal to params rounded to bf16
 * (model_bf16_update) whenever a forward or backward runs: comm.
 * shared_params keeps one copy per node, each rank updating its range. */
void model_use_bf16(ms_model *m, uint16_t *w16);

/* The bf16 copy's [lo, hi) from params (no-op without model_use_bf16).
 * @return 0 or MS_EINTERNAL. */
int model_bf16_update(ms_model *m, size_t lo, size_t hi);

/* Deterministic init from seed, identical on every rank and platform: per
 * layer its `init` (auto: He normal before relu / leaky_relu, Xavier normal
 * otherwise), fan-in and fan-out as PyTorch counts them (conv2d: C*KH*KW and
 * OC*KH*KW); biases zero, layer-norm gains one. */
void model_init(ms_model *m, uint64_t seed);

/* Forward of B <= max_batch rows of x (B, in_features); pass as above.
 * @return the outputs (B, n_out), owned by the model. */
const float *model_forward(ms_model *m, const float *x, int B, const ms_pass *pass);

/* Backward from dout (B, n_out), the gradient of the loss with respect to
 * the last forward's outputs; overwrites grads (every element). dout is
 * used as scratch. pass must be the forward's. ready (may be NULL) is
 * called as each layer's gradients are final. */
void model_backward(ms_model *m, float *dout, const ms_pass *pass, ms_grad_ready ready,
                    void *ctx);

/* One line for the start-up banner: the precision and why, and which library
 * runs which layer kind ("precision bf16 (auto: ...); dense: oneDNN matmul
 * bf16 [brg:avx512_core_bf16]; conv2d: im2col + OpenBLAS sgemm fp32; ...").
 * Mentions only the layer kinds the model has. */
void model_kernels_desc(const ms_model *m, char *buf, size_t n);

/* 0, or the error of the first oneDNN primitive that failed in a forward or
 * backward (a batch size not seen before needs new primitives, which can
 * fail for memory). That layer then ran, and keeps running, on OpenBLAS
 * fp32; the message is in ms_error. The trainer checks it after a step. */
int model_kernel_status(const ms_model *m);

/* Fills mask (n_params bytes) with 1 where weight decay applies by default
 * (weights of dense and conv2d layers) and 0 elsewhere (biases, layer-norm
 * gains and biases). */
void model_decay_mask(const ms_model *m, uint8_t *mask);

/* Hash of the layout (kinds, names, shapes, order): equal layouts, equal
 * hashes. FNV-1a 64: it is stored in every checkpoint (hash.h). */
uint64_t model_layout_hash(const ms_model *m);

/* XXH3-64 of the parameter bytes: equal on ranks holding equal params. */
uint64_t model_params_hash(const ms_model *m);

/* Forward FLOPs per sample (2 * multiply-adds of dense and conv2d layers,
 * and of the products of the sequence layers). */
double model_flops_per_sample(const ms_model *m);

/* Layer i's share of model_flops_per_sample. */
double model_layer_flops(const ms_model *m, int i);

/* "conv2d 5x5/1 pad 2 +relu", "dense +relu", "maxpool2d 2x2/2"... */
void model_layer_desc(const ms_layer *l, char *buf, size_t n);

/* "(32, 14, 14)" or "(256)" */
void model_shape_desc(int c, int h, int w, char *buf, size_t n);

/* The classes a label picks from: the vocabulary (outputs per position) of
 * a sequence model, else n_out. */
long model_classes(const ms_model *m);

/* The layer's own parameters as one range of the arenas: [*off, *off + *len)
 * (a tied head's table is the embedding's, not its own).
 * @return 0 when the layer has none, else 1. */
int model_layer_params(const ms_model *m, const ms_layer *l, size_t *off, size_t *len);

/* Floats of activations one row keeps for the backward (outputs, argmax and
 * statistics), plus the two backward buffers: the per-row memory estimate. */
double model_row_floats(const ms_model *m);

#endif
