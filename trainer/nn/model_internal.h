/* model_internal — what model.c shares with model_seq.c, the sequence
 * layers' half of the model. Private to trainer/nn/. */
#ifndef MS_MODEL_INTERNAL_H
#define MS_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Appends the tensor `name` of ndim dimensions at *off (advanced past it).
 * @return its index in m->p, or -1 when the table is full. */
int model_add_param(ms_model *m, const char *name, size_t *off, int ndim, const int64_t *shape,
                    int decay);

/* Standard normal for element i of stream key (model.c). */
double model_normal_at(uint64_t key, uint64_t i);

/* 1 when the layer belongs to model_seq.c: a sequence layer type, or a
 * dense or layer norm working on a sequence. */
int model_seq_layer(const ms_layer *l);

/* Plans layer i (l->seq and the input shape set) of a sequence model:
 * output shape, parameters. @return 0 or MS_ECONFIG. */
int model_seq_plan(ms_model *m, int i, const ms_layer_cfg *lc, const ms_config *cfg, size_t *off);

/* Allocates the layer's saved activations for B rows (attention, block);
 * raises *scratch to the floats its backward needs. @return 0, or -1 out of memory. */
int model_seq_alloc(ms_layer *l, size_t B, long *scratch);

/* Initialises the layer's parameters when model_seq.c owns their rule
 * (embeddings, attention, blocks, a tied head). @return 1 when it did. */
int model_seq_init(ms_model *m, int li, uint64_t seed);

/* Forward and backward of a model_seq_layer (before its activation);
 * dinp may be NULL. */
void model_seq_forward(ms_model *m, ms_layer *l, const float *in, int B);
void model_seq_backward(ms_model *m, ms_layer *l, float *dinp, const float *d, int B);

/* The layer's share of the layout hash, FLOPs per sample, and floats per row. */
uint64_t model_seq_hash(const ms_model *m, const ms_layer *l, uint64_t h);
double model_seq_flops(const ms_layer *l);
double model_seq_row_floats(const ms_layer *l);

#endif
