/* model — a stack of dense layers over one parameter arena.
 *
 * All parameters live in one contiguous float arena (params), all gradients
 * in another of the same layout (grads); each layer holds offsets into them
 * (DESIGN.md, "Parameters"). Layer i owns a weight (out, in) followed by a
 * bias (out). Activations are preallocated for up to max_batch rows.
 *
 * Ownership: model_create allocates everything; model_free releases it and
 * accepts NULL. Not thread-safe; no MPI.
 */
#ifndef MS_MODEL_H
#define MS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct {
  int in, out;
  ms_activation activation;
  size_t w_off, b_off;   /* offsets into the arenas */
  char w_name[48];       /* "layers.<i>.weight" */
  char b_name[48];       /* "layers.<i>.bias" */
} ms_dense;

typedef struct {
  int n_layers;
  ms_dense layers[MS_MAX_LAYERS];
  int in_features, n_classes;
  size_t n_params;
  float *params;         /* (n_params) */
  float *grads;          /* (n_params) */
  int max_batch;
  float *acts[MS_MAX_LAYERS];  /* layer outputs, (max_batch, out) each */
  float *scratch[2];     /* backward ping-pong buffers, (max_batch, widest) */
  const float *input;    /* the last forward's input, (batch, in_features) */
  int batch;             /* rows of the last forward */
} ms_model;

/* Builds the layer stack of cfg->model for inputs of in_features.
 * @return 0, MS_ECONFIG (bad shapes), or MS_ENOMEM. */
int model_create(ms_model **out, const ms_config *cfg, int in_features, int max_batch);

void model_free(ms_model *m);

/* Deterministic init from seed, identical on every rank and platform:
 * He normal (std sqrt(2/in)) before a ReLU, Glorot normal
 * (std sqrt(2/(in+out))) otherwise; biases zero. */
void model_init(ms_model *m, uint64_t seed);

/* Forward of B <= max_batch rows of x (B, in_features).
 * @return the logits (B, n_classes), owned by the model. */
const float *model_forward(ms_model *m, const float *x, int B);

/* Backward from dlogits (B, n_classes) of the last forward; overwrites grads.
 * dlogits is used as scratch. */
void model_backward(ms_model *m, float *dlogits);

/* Hash of the layout (names, shapes, order): equal layouts, equal hashes. */
uint64_t model_layout_hash(const ms_model *m);

/* FNV-1a 64 of the parameter bytes: equal on ranks holding equal params. */
uint64_t model_params_hash(const ms_model *m);

/* Forward FLOPs per sample (2 * multiply-adds). */
double model_flops_per_sample(const ms_model *m);

#endif
