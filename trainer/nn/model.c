#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_direct.h"
#include "hash.h"
#include "kernels.h"
#include "model_internal.h"
#include "ms_error.h"
#include "sampler.h"

/* Layer and activation names, as the config spells them. */
static const char *type_name(ms_layer_type t) {
  return config_enum_name("model.layers[i].type", (int)t);
}
static const char *act_name(ms_activation a) {
  return config_enum_name("model.layers[i].activation", (int)a);
}

void model_shape_desc(int c, int h, int w, char *buf, size_t n) {
  if (h == 1 && w == 1)
    snprintf(buf, n, "(%d)", c);
  else
    snprintf(buf, n, "(%d, %d, %d)", c, h, w);
}

void model_layer_desc(const ms_layer *l, char *buf, size_t n) {
  int k = 0;
  switch (l->type) {
    case MS_LAYER_CONV2D:
      k = snprintf(buf, n, "conv2d %dx%d/%d pad %d", l->g.KH, l->g.KW, l->g.SH, l->g.PH);
      break;
    case MS_LAYER_MAXPOOL2D:
    case MS_LAYER_AVGPOOL2D:
      k = snprintf(buf, n, "%s %dx%d/%d", type_name(l->type), l->g.KH, l->g.KW, l->g.SH);
      break;
    case MS_LAYER_DROPOUT: k = snprintf(buf, n, "dropout %g", (double)l->rate); break;
    case MS_LAYER_ACTIVATION: k = snprintf(buf, n, "%s", act_name(l->act)); break;
    default: k = snprintf(buf, n, "%s", type_name(l->type)); break;
  }
  if (l->act != MS_ACT_NONE && l->type != MS_LAYER_ACTIVATION && k >= 0 && (size_t)k < n)
    snprintf(buf + k, n - (size_t)k, " +%s", act_name(l->act));
}

/* ---- planning -------------------------------------------------------------------- */

int model_add_param(ms_model *m, const char *name, size_t *off, int ndim, const int64_t *shape,
                    int decay) {
  if (m->n_p >= MS_MAX_PARAMS) return -1;
  ms_param *p = &m->p[m->n_p];
  snprintf(p->name, sizeof p->name, "%s", name);
  p->off = *off;
  p->len = 1;
  p->ndim = ndim;
  for (int d = 0; d < ndim; d++) p->shape[d] = shape[d], p->len *= (size_t)shape[d];
  p->decay = decay;
  *off += p->len;
  return m->n_p++;
}

static int add_param(ms_model *m, int li, const char *what, size_t *off, int ndim,
                     const int64_t *shape, int decay) {
  char name[48];
  snprintf(name, sizeof name, "layers.%d.%s", li, what);
  return model_add_param(m, name, off, ndim, shape, decay);
}

/* Fills the geometry of a conv2d or pooling layer from its input shape.
 * @return 0 or MS_ECONFIG. */
static int plan_window(ms_layer *l, const ms_layer_cfg *lc, int li) {
  char in[64];
  model_shape_desc(l->in_c, l->in_h, l->in_w, in, sizeof in);
  int conv = l->type == MS_LAYER_CONV2D;
  int stride = lc->stride > 0 ? lc->stride : conv ? 1 : lc->kernel;
  l->g = (ms_conv2d){.C = l->in_c,
                     .H = l->in_h,
                     .W = l->in_w,
                     .OC = conv ? lc->filters : l->in_c,
                     .KH = lc->kernel,
                     .KW = lc->kernel,
                     .SH = stride,
                     .SW = stride,
                     .PH = conv ? lc->padding : 0,
                     .PW = conv ? lc->padding : 0};
  if (conv2d_geometry(&l->g))
    return ms_error_set(MS_ECONFIG,
                        "model.layers[%d] (%s): a %dx%d window with stride %d and padding %d "
                        "does not fit its input of shape %s (images are (C, H, W); set "
                        "model.input to the image shape, e.g. [1, 28, 28])",
                        li, type_name(l->type), lc->kernel, lc->kernel, stride, l->g.PH, in);
  l->out_c = l->g.OC, l->out_h = l->g.OH, l->out_w = l->g.OW;
  return 0;
}

int model_plan(ms_model *m, const ms_config *cfg, const int64_t *in, int ndim) {
  memset(m, 0, sizeof *m);
  int64_t c = 1, h = 1, w = 1;
  if (ndim == 1)
    c = in[0];
  else if (ndim == 2)
    h = in[0], w = in[1];
  else if (ndim == 3)
    c = in[0], h = in[1], w = in[2];
  else
    return ms_error_set(MS_ECONFIG,
                        "model: inputs of %d dimensions per sample: expected 1 (features), 2 "
                        "(H, W) or 3 (C, H, W); set model.input",
                        ndim);
  if (c < 1 || h < 1 || w < 1 || c * h * w > (1 << 30))
    return ms_error_set(MS_ECONFIG, "model: input shape (%lld, %lld, %lld) is empty or too large",
                        (long long)c, (long long)h, (long long)w);
  if (cfg->model.n_layers < 1 || cfg->model.n_layers > MS_MAX_LAYERS)
    return ms_error_set(MS_ECONFIG, "model.layers: expected 1 to %d layers, found %d",
                        MS_MAX_LAYERS, cfg->model.n_layers);
  m->in_c = (int)c, m->in_h = (int)h, m->in_w = (int)w;
  m->in_features = (long)(c * h * w);
  m->n_layers = cfg->model.n_layers;
  size_t off = 0;
  int pc = m->in_c, ph = m->in_h, pw = m->in_w, seq = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer_cfg *lc = &cfg->model.layers[i];
    ms_layer *l = &m->layers[i];
    l->type = lc->type;
    l->act = lc->activation;
    l->alpha = (float)lc->alpha;
    l->rate = (float)lc->rate;
    l->eps = (float)lc->eps;
    l->init = lc->init;
    l->in_c = pc, l->in_h = ph, l->in_w = pw;
    l->in_elems = (long)pc * ph * pw;
    l->w = l->b = -1;
    l->out_c = pc, l->out_h = ph, l->out_w = pw;
    l->seq = seq;
    l->tie = -1;
    int rc = 0;
    if (seq || l->type >= MS_LAYER_EMBEDDING) {
      if ((rc = model_seq_plan(m, i, lc, cfg, &off))) return rc;
    } else
    switch (l->type) {
      case MS_LAYER_DENSE: {
        if (lc->units < 1)
          return ms_error_set(MS_ECONFIG, "model.layers[%d].units: expected >= 1", i);
        int64_t ws[2] = {lc->units, l->in_elems}, bs[1] = {lc->units};
        l->out_c = lc->units, l->out_h = l->out_w = 1;
        l->w = add_param(m, i, "weight", &off, 2, ws, 1);
        l->b = add_param(m, i, "bias", &off, 1, bs, 0);
        break;
      }
      case MS_LAYER_CONV2D: {
        if (lc->filters < 1 || lc->kernel < 1)
          return ms_error_set(MS_ECONFIG, "model.layers[%d] (conv2d): needs filters and kernel",
                              i);
        if ((rc = plan_window(l, lc, i))) return rc;
        int64_t ws[4] = {l->g.OC, l->g.C, l->g.KH, l->g.KW}, bs[1] = {l->g.OC};
        l->w = add_param(m, i, "weight", &off, 4, ws, 1);
        l->b = add_param(m, i, "bias", &off, 1, bs, 0);
        break;
      }
      case MS_LAYER_MAXPOOL2D:
      case MS_LAYER_AVGPOOL2D:
        if (lc->kernel < 1)
          return ms_error_set(MS_ECONFIG, "model.layers[%d] (%s): needs a kernel", i,
                              type_name(l->type));
        if ((rc = plan_window(l, lc, i))) return rc;
        break;
      case MS_LAYER_FLATTEN: l->out_c = (int)l->in_elems, l->out_h = l->out_w = 1; break;
      case MS_LAYER_LAYERNORM: {
        int64_t s[1] = {l->in_elems};
        l->w = add_param(m, i, "weight", &off, 1, s, 0);
        l->b = add_param(m, i, "bias", &off, 1, s, 0);
        break;
      }
      case MS_LAYER_DROPOUT:
      case MS_LAYER_ACTIVATION: break;
      default: return ms_error_set(MS_ECONFIG, "model.layers[%d]: unknown type %d", i, l->type);
    }
    if ((unsigned)l->act > MS_ACT_SOFTMAX)
      return ms_error_set(MS_ECONFIG, "model.layers[%d]: unknown activation %d", i, l->act);
    l->out_elems = (long)l->out_c * l->out_h * l->out_w;
    pc = l->out_c, ph = l->out_h, pw = l->out_w;
    seq = (seq || l->type == MS_LAYER_EMBEDDING) && l->type != MS_LAYER_FLATTEN;
  }
  m->n_out = m->layers[m->n_layers - 1].out_elems;
  if (seq) m->seq_T = ph, m->vocab = pw;
  if (cfg->model.tie_embeddings && m->layers[m->n_layers - 1].tie < 0)
    return ms_error_set(MS_ECONFIG,
                        "model.tie_embeddings: needs an embedding first layer and a dense output "
                        "head on the sequence last");
  m->n_params = off;
  return 0;
}

/* ---- allocation ------------------------------------------------------------------- */

/* 1 when the activation's backward needs its input (so the forward must
 * not overwrite it); relu, tanh, sigmoid and softmax need only the output. */
static int act_needs_input(ms_activation a) { return a == MS_ACT_LEAKY_RELU || a == MS_ACT_GELU; }

/* 1 when the layer computes a result of its own (z) rather than passing its
 * input through. Dropout computes one, used in training passes only. */
static int has_own_output(ms_layer_type t) {
  return t != MS_LAYER_FLATTEN && t != MS_LAYER_ACTIVATION;
}

static float *falloc(size_t rows, long cols, int *ok) {
  if (!*ok) return NULL;
  float *p = malloc(sizeof(float) * rows * (size_t)(cols > 0 ? cols : 1));
  if (!p) *ok = 0;
  return p;
}

/* model.conv_kernel auto: oneDNN's fp32 convolution from this many input
 * channels up. Fewer channels make the im2col matrix short (C*KH*KW rows)
 * and oneDNN's direct convolution has little reuse to exploit there; from
 * 8 up it is the faster of the two (scripts/bench/results/kernels.md, the
 * conv2d table). Below, stride-1 layers run conv_direct.h's kernel, the
 * rest im2col. A rule of the shape alone, never a timing: the kernels,
 * and so the bits, of a run do not depend on the machine's load. */
#define CONV_ONEDNN_MIN_C CONV_DIRECT_MAX_C /* conv_desc_fp32 says 8 too */

/* 1 when the fp32 conv2d layer l runs on oneDNN under kernel. */
static int conv_on_onednn(const ms_layer *l, ms_conv_kernel kernel) {
  if (kernel == MS_CONV_IM2COL) return 0;
  return kernel == MS_CONV_ONEDNN || l->g.C >= CONV_ONEDNN_MIN_C;
}

/* 1 when the fp32 conv2d layer l runs the direct kernel under kernel. */
static int conv_on_direct(const ms_layer *l, ms_conv_kernel kernel) {
  return kernel == MS_CONV_AUTO && !conv_on_onednn(l, kernel) && conv_direct_supported(&l->g);
}

/* Resolves the precision and gives the layers their oneDNN primitives: in
 * bf16 every dense and conv2d layer, in fp32 the conv2d layers that
 * model.conv_kernel puts on oneDNN. */
static int model_kernels_create(ms_model *m, ms_precision precision, ms_conv_kernel kernel) {
  int rc = dnn_resolve_precision(precision, &m->precision, m->precision_why,
                                 sizeof m->precision_why);
  m->conv_kernel = kernel;
  for (int i = 0; i < m->n_layers && !rc; i++) {
    ms_layer *l = &m->layers[i];
    if (l->type == MS_LAYER_DENSE && !l->seq && m->precision == DNN_BF16)
      rc = dnn_dense_create(&l->dnn, (int)l->in_elems, (int)l->out_elems, m->max_batch,
                            DNN_BF16);
    else if (l->type == MS_LAYER_CONV2D && m->precision == DNN_BF16)
      rc = dnn_conv_create(&l->dconv, &l->g, m->max_batch, DNN_BF16);
    else if (l->type == MS_LAYER_CONV2D && conv_on_onednn(l, kernel))
      rc = dnn_conv_create(&l->dconv, &l->g, m->max_batch, DNN_FP32);
    else if (l->type == MS_LAYER_CONV2D)
      l->direct = conv_on_direct(l, kernel);
  }
  return rc;
}

int model_create(ms_model **out, const ms_config *cfg, const int64_t *in, int ndim,
                 int max_batch) {
  *out = NULL;
  ms_model *m = calloc(1, sizeof *m);
  if (!m) return ms_error_set(MS_ENOMEM, "model: out of memory");
  int rc = model_plan(m, cfg, in, ndim);
  if (rc) {
    free(m);
    return rc;
  }
  m->max_batch = max_batch;
  size_t B = (size_t)(max_batch > 0 ? max_batch : 1);
  int ok = 1;
  m->params = calloc(m->n_params ? m->n_params : 1, sizeof(float));
  m->grads = calloc(m->n_params ? m->n_params : 1, sizeof(float));
  ok = m->params && m->grads;
  long widest = m->in_features, conv = 0, seqs = 0;
  for (int i = 0; i < m->n_layers; i++) {
    ms_layer *l = &m->layers[i];
    if (l->out_elems > widest) widest = l->out_elems;
    if (has_own_output(l->type)) l->z = falloc(B, l->out_elems, &ok);
    int own = l->z != NULL && l->type != MS_LAYER_DROPOUT;
    if (l->act != MS_ACT_NONE && (!own || act_needs_input(l->act)))
      l->a = falloc(B, l->out_elems, &ok);
    else
      l->a = l->z;
    if (l->type == MS_LAYER_MAXPOOL2D && ok) {
      l->argmax = malloc(sizeof(int32_t) * B * (size_t)l->out_elems);
      ok = l->argmax != NULL;
    }
    if (l->type == MS_LAYER_LAYERNORM) { /* per position on a sequence */
      l->mean = falloc(B, l->seq ? l->in_h : 1, &ok);
      l->rstd = falloc(B, l->seq ? l->in_h : 1, &ok);
    }
    if (ok && model_seq_alloc(l, B, &seqs)) ok = 0;
    if (l->type == MS_LAYER_CONV2D) {
      long s = conv2d_scratch_floats(&l->g, (int)B), d = conv_direct_scratch_floats(&l->g);
      if (s > conv) conv = s;
      if (d > conv) conv = d;
    }
  }
  m->scratch[0] = falloc(B, widest, &ok);
  m->scratch[1] = falloc(B, widest, &ok);
  if (conv > 0) m->conv_scratch = falloc(1, conv, &ok);
  if (seqs > 0) m->seq_scratch = falloc(1, seqs, &ok);
  if (!ok) {
    model_free(m);
    return ms_error_set(MS_ENOMEM, "model: out of memory for %zu parameters and batch %d",
                        m->n_params, max_batch);
  }
  rc = model_kernels_create(m, cfg->model.precision, cfg->model.conv_kernel);
  if (rc) {
    model_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

void model_use_grads(ms_model *m, float *g) {
  if (g == m->grads) return;
  memcpy(g, m->grads, sizeof(float) * m->n_params);
  if (!m->grads_borrowed) free(m->grads);
  m->grads = g;
  m->grads_borrowed = 1;
}

void model_use_params(ms_model *m, float *p, int copy) {
  if (p == m->params) return;
  if (copy) memcpy(p, m->params, sizeof(float) * m->n_params);
  if (!m->params_borrowed) free(m->params);
  m->params = p;
  m->params_borrowed = 1;
}

int model_bf16_wanted(const ms_model *m) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].dnn && dnn_dense_bf16_weights(m->layers[i].dnn)) return 1;
  return 0;
}

void model_use_bf16(ms_model *m, uint16_t *w16) {
  m->bf16 = w16;
  for (int i = 0; i < m->n_layers; i++) {
    ms_layer *l = &m->layers[i];
    if (l->dnn && l->w >= 0) dnn_dense_use_bf16(l->dnn, w16 ? w16 + m->p[l->w].off : NULL);
  }
}

int model_bf16_update(ms_model *m, size_t lo, size_t hi) {
  if (!m->bf16 || hi <= lo) return 0;
  return dnn_bf16_convert(m->bf16 + lo, m->params + lo, hi - lo);
}

void model_free(ms_model *m) {
  if (!m) return;
  if (!m->params_borrowed) free(m->params);
  if (!m->grads_borrowed) free(m->grads);
  for (int i = 0; i < m->n_layers; i++) {
    ms_layer *l = &m->layers[i];
    if (l->a != l->z) free(l->a);
    free(l->z);
    free(l->argmax);
    free(l->mean);
    free(l->rstd);
    dnn_dense_free(l->dnn);
    dnn_conv_free(l->dconv);
    free(l->sv);
  }
  free(m->scratch[0]);
  free(m->seq_scratch);
  free(m->scratch[1]);
  free(m->conv_scratch);
  free(m);
}

/* ---- initialisation ----------------------------------------------------------------- */

/* Standard normal for element i of stream key: Box-Muller on two uniform
 * draws from the counter-based mixer, so the value depends on (key, i) only. */
double model_normal_at(uint64_t key, uint64_t i) {
  uint64_t a = sampler_mix64(key ^ sampler_mix64(2 * i));
  uint64_t b = sampler_mix64(key ^ sampler_mix64(2 * i + 1));
  double u1 = ((a >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
  double u2 = (b >> 11) * 0x1.0p-53;         /* [0, 1) */
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Uniform in [-1, 1) for element i of stream key. */
static double uniform_at(uint64_t key, uint64_t i) {
  return (double)(sampler_mix64(key ^ sampler_mix64(2 * i)) >> 11) * 0x1.0p-52 - 1.0;
}

void model_init(ms_model *m, uint64_t seed) {
  for (int li = 0; li < m->n_layers; li++) {
    const ms_layer *l = &m->layers[li];
    if (model_seq_init(m, li, seed) || l->w < 0) continue;
    const ms_param *w = &m->p[l->w], *b = &m->p[l->b];
    if (l->type == MS_LAYER_LAYERNORM) {
      for (size_t i = 0; i < w->len; i++) m->params[w->off + i] = 1.0f;
      memset(m->params + b->off, 0, sizeof(float) * b->len);
      continue;
    }
    /* fan_in = inputs per output, fan_out = outputs per input (PyTorch's
     * _calculate_fan_in_and_fan_out): dense (in, out); conv2d C*KH*KW and
     * OC*KH*KW. */
    double fan_out = (double)w->shape[0], fan_in = (double)(w->len / (size_t)w->shape[0]);
    if (l->type == MS_LAYER_CONV2D) fan_out *= (double)(l->g.KH * l->g.KW);
    ms_init init = l->init;
    if (init == MS_INIT_AUTO)
      init = l->act == MS_ACT_RELU || l->act == MS_ACT_LEAKY_RELU ? MS_INIT_HE_NORMAL
                                                                  : MS_INIT_XAVIER_NORMAL;
    int uniform = init == MS_INIT_HE_UNIFORM || init == MS_INIT_XAVIER_UNIFORM;
    int he = init == MS_INIT_HE_NORMAL || init == MS_INIT_HE_UNIFORM;
    /* std of the distribution; a uniform one on [-a, a] has std a / sqrt(3). */
    double std = he ? sqrt(2.0 / fan_in) : sqrt(2.0 / (fan_in + fan_out));
    uint64_t key = sampler_mix64(seed ^ sampler_mix64(0x696e6974ULL + (uint64_t)li));
    float *p = m->params + w->off;
    for (size_t i = 0; i < w->len; i++)
      p[i] = (float)(uniform ? std * sqrt(3.0) * uniform_at(key, i) : std * model_normal_at(key, i));
    memset(m->params + b->off, 0, sizeof(float) * b->len);
  }
}

/* ---- forward and backward ------------------------------------------------------------ */

static void act_forward(const ms_layer *l, float *a, const float *z, int B) {
  long n = (long)B * l->out_elems;
  switch (l->act) {
    case MS_ACT_NONE: break;
    case MS_ACT_RELU:
      if (a != z) memcpy(a, z, sizeof(float) * (size_t)n);
      relu_forward(a, n);
      break;
    case MS_ACT_LEAKY_RELU: leaky_relu_forward(a, z, n, l->alpha); break;
    case MS_ACT_GELU: gelu_forward(a, z, n); break;
    case MS_ACT_TANH: tanh_forward(a, z, n); break;
    case MS_ACT_SIGMOID: sigmoid_forward(a, z, n); break;
    case MS_ACT_SOFTMAX: softmax_forward(a, z, B, (int)l->out_elems); break;
  }
}

/* In place: d (gradient of the output) becomes the gradient of z. */
static void act_backward(const ms_layer *l, float *d, int B) {
  long n = (long)B * l->out_elems;
  switch (l->act) {
    case MS_ACT_NONE: break;
    case MS_ACT_RELU: relu_backward(d, l->out, n); break;
    case MS_ACT_LEAKY_RELU: leaky_relu_backward(d, d, l->pre, n, l->alpha); break;
    case MS_ACT_GELU: gelu_backward(d, d, l->pre, n); break;
    case MS_ACT_TANH: tanh_backward(d, d, l->out, n); break;
    case MS_ACT_SIGMOID: sigmoid_backward(d, d, l->out, n); break;
    case MS_ACT_SOFTMAX: softmax_backward(d, d, l->out, B, (int)l->out_elems); break;
  }
}

/* A oneDNN failure moves the layer to OpenBLAS for good and is kept for
 * model_kernel_status. */
static void dnn_failed(ms_model *m, ms_layer *l, int rc) {
  if (!m->kernel_rc) m->kernel_rc = rc;
  dnn_dense_free(l->dnn);
  dnn_conv_free(l->dconv);
  l->dnn = NULL;
  l->dconv = NULL;
}

static void dense_fwd(ms_model *m, ms_layer *l, const float *in, const float *w, const float *b,
                      int B) {
  if (l->dnn) {
    int rc = dnn_dense_forward(l->dnn, l->z, in, w, b, B);
    if (!rc) return;
    dnn_failed(m, l, rc);
  }
  dense_forward(l->z, in, w, b, B, (int)l->in_elems, (int)l->out_elems);
}

static void dense_bwd(ms_model *m, ms_layer *l, float *dinp, float *dw, float *db, const float *d,
                      const float *w, int B) {
  if (l->dnn) {
    int rc = dnn_dense_backward(l->dnn, dinp, dw, db, d, l->in, w, B);
    if (!rc) return;
    dnn_failed(m, l, rc);
  }
  dense_backward(dinp, dw, db, d, l->in, w, B, (int)l->in_elems, (int)l->out_elems);
}

static void conv_fwd(ms_model *m, ms_layer *l, const float *in, const float *w, const float *b,
                     int B) {
  if (l->dconv) {
    int rc = dnn_conv_forward(l->dconv, l->z, in, w, b, B);
    if (!rc) return;
    dnn_failed(m, l, rc);
  }
  if (l->direct)
    conv_direct_forward(l->z, in, w, b, &l->g, B, m->conv_scratch);
  else
    conv2d_forward(l->z, in, w, b, &l->g, B, m->conv_scratch);
}

static void conv_bwd(ms_model *m, ms_layer *l, float *dinp, float *dw, float *db, const float *d,
                     const float *w, int B) {
  if (l->dconv) {
    int rc = dnn_conv_backward(l->dconv, dinp, dw, db, d, l->in, w, B);
    if (!rc) return;
    dnn_failed(m, l, rc);
  }
  if (l->direct)
    conv_direct_backward(dinp, dw, db, d, l->in, w, &l->g, B, m->conv_scratch);
  else
    conv2d_backward(dinp, dw, db, d, l->in, w, &l->g, B, m->conv_scratch);
}

const float *model_forward(ms_model *m, const float *x, int B, const ms_pass *pass) {
  m->batch = B;
  const float *in = x;
  for (int i = 0; i < m->n_layers; i++) {
    ms_layer *l = &m->layers[i];
    const float *w = l->w >= 0 ? m->params + m->p[l->w].off : NULL;
    const float *b = l->b >= 0 ? m->params + m->p[l->b].off : NULL;
    const float *z = l->z;
    l->in = in;
    if (model_seq_layer(l))
      model_seq_forward(m, l, in, B);
    else
    switch (l->type) {
      case MS_LAYER_DENSE: dense_fwd(m, l, in, w, b, B); break;
      case MS_LAYER_CONV2D: conv_fwd(m, l, in, w, b, B); break;
      case MS_LAYER_MAXPOOL2D: maxpool2d_forward(l->z, l->argmax, in, &l->g, B); break;
      case MS_LAYER_AVGPOOL2D: avgpool2d_forward(l->z, in, &l->g, B); break;
      case MS_LAYER_LAYERNORM:
        layernorm_forward(l->z, l->mean, l->rstd, in, w, b, B, (int)l->in_elems, l->eps);
        break;
      case MS_LAYER_DROPOUT:
        if (pass && l->rate > 0)
          dropout_forward(l->z, in, B, (int)l->in_elems, l->rate, pass->seed, pass->step,
                          pass->rows);
        else
          z = in;
        break;
      case MS_LAYER_FLATTEN:
      case MS_LAYER_ACTIVATION: z = in; break;
      default: break; /* the sequence layers: model_seq_forward */
    }
    l->pre = z;
    if (l->act != MS_ACT_NONE) {
      act_forward(l, l->a, z, B); /* in place when l->a == l->z (model_create) */
      z = l->a;
    }
    l->out = z;
    in = z;
  }
  return in;
}

void model_backward(ms_model *m, float *dout, const ms_pass *pass, ms_grad_ready ready,
                    void *ctx) {
  int B = m->batch;
  float *d = dout;
  for (int i = m->n_layers - 1; i >= 0; i--) {
    ms_layer *l = &m->layers[i];
    act_backward(l, d, B);
    float *dw = l->w >= 0 ? m->grads + m->p[l->w].off : NULL;
    float *db = l->b >= 0 ? m->grads + m->p[l->b].off : NULL;
    const float *w = l->w >= 0 ? m->params + m->p[l->w].off : NULL;
    /* The input gradient goes to whichever backward buffer d is not in;
     * the first layer's is not needed. */
    float *dinp = i == 0 ? NULL : d == m->scratch[0] ? m->scratch[1] : m->scratch[0];
    size_t off, len;
    int told = 0; /* the hook has seen this layer's gradients */
    if (model_seq_layer(l))
      model_seq_backward(m, l, dinp, d, B);
    else
    switch (l->type) {
      case MS_LAYER_DENSE:
        if (ready && dinp && !l->dnn && model_layer_params(m, l, &off, &len)) {
          /* The weights' and bias' gradients first, announced before the
           * input gradient's product: the bucket that holds them can go
           * on the wire that much earlier (an overlapped sync), with the
           * products and the bits of dense_backward. */
          dense_backward(NULL, dw, db, d, l->in, w, B, (int)l->in_elems, (int)l->out_elems);
          ready(ctx, off, len);
          told = 1;
          dense_backward_data(dinp, d, w, B, (int)l->in_elems, (int)l->out_elems);
        } else {
          dense_bwd(m, l, dinp, dw, db, d, w, B);
        }
        break;
      case MS_LAYER_CONV2D: conv_bwd(m, l, dinp, dw, db, d, w, B); break;
      case MS_LAYER_MAXPOOL2D:
        if (dinp) maxpool2d_backward(dinp, d, l->argmax, &l->g, B);
        break;
      case MS_LAYER_AVGPOOL2D:
        if (dinp) avgpool2d_backward(dinp, d, &l->g, B);
        break;
      case MS_LAYER_LAYERNORM:
        layernorm_backward(dinp, dw, db, d, l->in, l->mean, l->rstd, w, B, (int)l->in_elems);
        break;
      case MS_LAYER_DROPOUT:
        if (pass && l->rate > 0 && dinp)
          dropout_backward(d, d, B, (int)l->in_elems, l->rate, pass->seed, pass->step,
                           pass->rows);
        dinp = d;
        break;
      case MS_LAYER_FLATTEN:
      case MS_LAYER_ACTIVATION: dinp = d; break;
      default: break; /* the sequence layers: model_seq_backward */
    }
    if (ready && !told && model_layer_params(m, l, &off, &len)) ready(ctx, off, len);
    d = dinp;
  }
}

/* Appends the fp32 conv2d layers' libraries to buf at k, one entry per
 * layer and the rule that chose them. @return the new length. */
static size_t conv_desc_fp32(const ms_model *m, char *buf, size_t n, size_t k) {
  static const char *const why[] = {
      [MS_CONV_AUTO] = "model.conv_kernel auto: oneDNN from 8 input channels, faster "
                       "there; below, a direct kernel at stride 1, else im2col",
      [MS_CONV_IM2COL] = "model.conv_kernel im2col",
      [MS_CONV_ONEDNN] = "model.conv_kernel onednn"};
  k += (size_t)snprintf(buf + k, n - k, "; conv2d fp32 (%s):", why[m->conv_kernel]);
  const char *sep = "";
  for (int i = 0; i < m->n_layers && k < n; i++) {
    const ms_layer *l = &m->layers[i];
    if (l->type != MS_LAYER_CONV2D) continue;
    if (l->dconv)
      k += (size_t)snprintf(buf + k, n - k, "%s layer %d (%d in-channels) oneDNN convolution [%s]",
                            sep, i, l->g.C, dnn_conv_impl(l->dconv));
    else if (l->direct)
      k += (size_t)snprintf(buf + k, n - k, "%s layer %d (%d in-channels) direct convolution (C)",
                            sep, i, l->g.C);
    else
      k += (size_t)snprintf(buf + k, n - k, "%s layer %d (%d in-channels) im2col + OpenBLAS sgemm",
                            sep, i, l->g.C);
    sep = ",";
  }
  return k < n ? k : n;
}

void model_kernels_desc(const ms_model *m, char *buf, size_t n) {
  int has[MS_LAYER_TRANSFORMER_BLOCK + 1] = {0}, seq = 0;
  const char *impl = "", *cimpl = "";
  for (int i = 0; i < m->n_layers; i++) {
    if (model_seq_layer(&m->layers[i]))
      seq = 1;
    else
      has[m->layers[i].type] = 1;
    if (m->layers[i].dnn && !*impl) impl = dnn_dense_impl(m->layers[i].dnn);
    if (m->layers[i].dconv && !*cimpl) cimpl = dnn_conv_impl(m->layers[i].dconv);
  }
  size_t k = (size_t)snprintf(buf, n, "precision %s (%s)",
                              m->precision == DNN_BF16 ? "bf16" : "fp32", m->precision_why);
  /* fp32 dense stays on OpenBLAS: oneDNN's fp32 matmul is not faster on
   * every shape (scripts/bench/results/kernels.md), and OpenBLAS keeps fp32
   * MLP runs bit for bit what they were. */
  if (seq && k < n) /* always OpenBLAS fp32: model.h */
    k += (size_t)snprintf(buf + k, n - k,
                          "; sequence layers (attention, blocks, per-position dense): OpenBLAS "
                          "sgemm fp32");
  if (has[MS_LAYER_DENSE] && k < n)
    k += (size_t)(m->precision == DNN_BF16
                      ? snprintf(buf + k, n - k, "; dense: oneDNN matmul bf16 [%s]", impl)
                      : snprintf(buf + k, n - k, "; dense: OpenBLAS sgemm fp32"));
  if (has[MS_LAYER_CONV2D] && k < n && m->precision == DNN_BF16)
    k += (size_t)snprintf(buf + k, n - k, "; conv2d: oneDNN convolution bf16 [%s]", cimpl);
  else if (has[MS_LAYER_CONV2D] && k < n)
    k = conv_desc_fp32(m, buf, n, k);
  if (k < n) snprintf(buf + k, n - k, "; other layers, loss, optimizer: C loops fp32");
}

int model_kernel_status(const ms_model *m) { return m->kernel_rc; }

long model_classes(const ms_model *m) { return m->seq_T > 0 ? m->vocab : m->n_out; }

int model_layer_params(const ms_model *m, const ms_layer *l, size_t *off, size_t *len) {
  int first = l->w >= 0 ? l->w : l->b, last = l->b >= 0 ? l->b : l->w;
  if (first < 0) return 0;
  *off = m->p[first].off;
  *len = m->p[last].off + m->p[last].len - *off;
  return 1;
}

void model_decay_mask(const ms_model *m, uint8_t *mask) {
  memset(mask, 0, m->n_params);
  for (int i = 0; i < m->n_p; i++)
    if (m->p[i].decay) memset(mask + m->p[i].off, 1, m->p[i].len);
}

uint64_t model_layout_hash(const ms_model *m) {
  /* FNV-1a, not XXH3: every checkpoint stores this value and a resume
   * compares it (hash.h). */
  uint64_t h = HASH_FNV_OFFSET;
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    if (model_seq_layer(l)) {
      h = model_seq_hash(m, l, h);
      continue;
    }
    if (l->type == MS_LAYER_DENSE) {
      /* The MLP's hash of the first format: (out, in, activation) per layer. */
      const ms_param *w = &m->p[l->w], *b = &m->p[l->b];
      int64_t dims[3] = {l->out_elems, l->in_elems, l->act};
      h = hash_fnv1a(h, w->name, strlen(w->name));
      h = hash_fnv1a(h, dims, sizeof dims);
      h = hash_fnv1a(h, b->name, strlen(b->name));
      continue;
    }
    int64_t dims[10] = {1000 + l->type, l->act, l->in_c, l->in_h, l->in_w,
                        l->out_c,       l->out_h, l->out_w, l->g.KH, l->g.SH};
    h = hash_fnv1a(h, dims, sizeof dims);
    for (int k = 0; k < 2; k++) {
      int pi = k ? l->b : l->w;
      if (pi >= 0) h = hash_fnv1a(h, m->p[pi].name, strlen(m->p[pi].name));
    }
  }
  return h;
}

uint64_t model_params_hash(const ms_model *m) {
  return hash_xxh3(m->params, sizeof(float) * m->n_params, 0);
}

double model_layer_flops(const ms_model *m, int i) {
  const ms_layer *l = &m->layers[i];
  if (model_seq_layer(l)) return model_seq_flops(l);
  if (l->type == MS_LAYER_DENSE) return 2.0 * (double)l->in_elems * (double)l->out_elems;
  if (l->type == MS_LAYER_CONV2D)
    return 2.0 * (double)l->out_elems * (double)(l->g.C * l->g.KH * l->g.KW);
  return 0.0;
}

double model_flops_per_sample(const ms_model *m) {
  double f = 0.0;
  for (int i = 0; i < m->n_layers; i++) f += model_layer_flops(m, i);
  return f;
}

double model_row_floats(const ms_model *m) {
  double f = 0.0;
  long widest = m->in_features;
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    if (l->out_elems > widest) widest = l->out_elems;
    if (has_own_output(l->type)) f += (double)l->out_elems;
    if (l->act != MS_ACT_NONE &&
        (!has_own_output(l->type) || l->type == MS_LAYER_DROPOUT || act_needs_input(l->act)))
      f += (double)l->out_elems;
    if (l->type == MS_LAYER_MAXPOOL2D) f += (double)l->out_elems;
    if (l->type == MS_LAYER_LAYERNORM && !l->seq) f += 2.0;
    f += model_seq_layer(l) ? model_seq_row_floats(l) : 0.0;
  }
  return f + 2.0 * (double)widest;
}
