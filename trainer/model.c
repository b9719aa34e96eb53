#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "kernels.h"
#include "ms_error.h"
#include "sampler.h"

int model_create(ms_model **out, const ms_config *cfg, int in_features, int max_batch) {
  *out = NULL;
  if (in_features < 1)
    return ms_error_set(MS_ECONFIG, "model: input has %d features", in_features);
  if (cfg->model.n_layers < 1)
    return ms_error_set(MS_ECONFIG, "model.layers: the model has no layers");
  ms_model *m = calloc(1, sizeof *m);
  if (!m) return ms_error_set(MS_ENOMEM, "model: out of memory");
  m->n_layers = cfg->model.n_layers;
  m->in_features = in_features;
  m->max_batch = max_batch;
  size_t off = 0;
  int in = in_features, widest = in_features;
  for (int i = 0; i < m->n_layers; i++) {
    ms_dense *l = &m->layers[i];
    l->in = in;
    l->out = cfg->model.layers[i].units;
    l->activation = cfg->model.layers[i].activation;
    l->w_off = off;
    off += (size_t)l->in * (size_t)l->out;
    l->b_off = off;
    off += (size_t)l->out;
    snprintf(l->w_name, sizeof l->w_name, "layers.%d.weight", i);
    snprintf(l->b_name, sizeof l->b_name, "layers.%d.bias", i);
    if (l->out > widest) widest = l->out;
    in = l->out;
  }
  m->n_classes = in;
  m->n_params = off;
  m->params = calloc(off, sizeof(float));
  m->grads = calloc(off, sizeof(float));
  int ok = m->params && m->grads;
  for (int i = 0; ok && i < m->n_layers; i++) {
    m->acts[i] = malloc(sizeof(float) * (size_t)max_batch * (size_t)m->layers[i].out);
    ok = m->acts[i] != NULL;
  }
  for (int i = 0; ok && i < 2; i++) {
    m->scratch[i] = malloc(sizeof(float) * (size_t)max_batch * (size_t)widest);
    ok = m->scratch[i] != NULL;
  }
  if (!ok) {
    model_free(m);
    return ms_error_set(MS_ENOMEM, "model: out of memory for %zu parameters", off);
  }
  *out = m;
  return 0;
}

void model_free(ms_model *m) {
  if (!m) return;
  free(m->params);
  free(m->grads);
  for (int i = 0; i < m->n_layers; i++) free(m->acts[i]);
  free(m->scratch[0]);
  free(m->scratch[1]);
  free(m);
}

/* Standard normal for element i of stream key: Box-Muller on two uniform
 * draws from the counter-based mixer, so the value depends on (key, i) only. */
static double normal_at(uint64_t key, uint64_t i) {
  uint64_t a = sampler_mix64(key ^ sampler_mix64(2 * i));
  uint64_t b = sampler_mix64(key ^ sampler_mix64(2 * i + 1));
  double u1 = ((a >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
  double u2 = (b >> 11) * 0x1.0p-53;         /* [0, 1) */
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void model_init(ms_model *m, uint64_t seed) {
  for (int li = 0; li < m->n_layers; li++) {
    ms_dense *l = &m->layers[li];
    double std = l->activation == MS_ACT_RELU ? sqrt(2.0 / l->in)
                                              : sqrt(2.0 / (l->in + l->out));
    uint64_t key = sampler_mix64(seed ^ sampler_mix64(0x696e6974ULL + (uint64_t)li));
    float *w = m->params + l->w_off;
    size_t n = (size_t)l->in * (size_t)l->out;
    for (size_t i = 0; i < n; i++) w[i] = (float)(std * normal_at(key, i));
    memset(m->params + l->b_off, 0, sizeof(float) * (size_t)l->out);
  }
}

const float *model_forward(ms_model *m, const float *x, int B) {
  m->input = x;
  m->batch = B;
  const float *in = x;
  for (int i = 0; i < m->n_layers; i++) {
    ms_dense *l = &m->layers[i];
    dense_forward(m->acts[i], in, m->params + l->w_off, m->params + l->b_off, B, l->in, l->out);
    if (l->activation == MS_ACT_RELU) relu_forward(m->acts[i], (long)B * l->out);
    in = m->acts[i];
  }
  return in;
}

void model_backward(ms_model *m, float *dlogits) {
  int B = m->batch;
  float *dout = dlogits;
  for (int i = m->n_layers - 1; i >= 0; i--) {
    ms_dense *l = &m->layers[i];
    if (l->activation == MS_ACT_RELU) relu_backward(dout, m->acts[i], (long)B * l->out);
    const float *in = i > 0 ? m->acts[i - 1] : m->input;
    float *dinp = i > 0 ? m->scratch[i & 1] : NULL;
    dense_backward(dinp, m->grads + l->w_off, m->grads + l->b_off, dout, in,
                   m->params + l->w_off, B, l->in, l->out);
    dout = dinp;
  }
}

uint64_t model_layout_hash(const ms_model *m) {
  uint64_t h = CKPT_FNV_OFFSET;
  for (int i = 0; i < m->n_layers; i++) {
    const ms_dense *l = &m->layers[i];
    int64_t dims[3] = {l->out, l->in, l->activation};
    h = ckpt_fnv1a(h, l->w_name, strlen(l->w_name));
    h = ckpt_fnv1a(h, dims, sizeof dims);
    h = ckpt_fnv1a(h, l->b_name, strlen(l->b_name));
  }
  return h;
}

uint64_t model_params_hash(const ms_model *m) {
  return ckpt_fnv1a(CKPT_FNV_OFFSET, m->params, sizeof(float) * m->n_params);
}

double model_flops_per_sample(const ms_model *m) {
  double f = 0.0;
  for (int i = 0; i < m->n_layers; i++) f += 2.0 * m->layers[i].in * m->layers[i].out;
  return f;
}
