/* onnx_export — a checkpoint's model as an ONNX graph; see onnx_export.h.
 * The graph is assembled with onnx_graph.h; this file says what each layer
 * becomes. */
#include "onnx_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "config.h"
#include "file.h"
#include "model.h"
#include "ms_error.h"
#include "onnx_graph.h"
#include "version.h"

/* The value flowing from layer to layer, and its rank: 2 (N, F), 3 (N, H, W)
 * (an (H, W) input) or 4 (N, C, H, W). */
typedef struct {
  og *g;
  const char *cur;
  int rank;
} flow;

static void to_flat(flow *f) {
  if (f->rank == 2) return;
  og_node *n = og_op(f->g, "Flatten", &f->cur, 1);
  og_attr_int(f->g, n, "axis", 1);
  f->cur = og_out(n);
  f->rank = 2;
}

/* Reshape to (N, c, h, w); 0 in Reshape's shape copies N from the input. */
static void to_image(flow *f, int c, int h, int w) {
  if (f->rank == 4) return;
  const int64_t shape[4] = {0, c, h, w};
  f->cur = og_op2(f->g, "Reshape", f->cur, og_const_i64(f->g, "shape", shape, 4));
  f->rank = 4;
}

/* The checkpoint tensor of parameter p of the planned model. */
static const ckpt_tensor *find_param(const ckpt_contents *c, const ms_param *p) {
  for (int i = 0; i < c->n_tensors; i++)
    if (strcmp(c->tensors[i].name, p->name) == 0) return &c->tensors[i];
  return NULL;
}

static const char *weight(flow *f, const ms_model *m, int pi, const ckpt_contents *c) {
  const ms_param *p = &m->p[pi];
  const ckpt_tensor *t = find_param(c, p); /* present: checked before */
  return og_weight(f->g, p->name, t->data, p->ndim, p->shape);
}

/* Layer norm over the F features of each row (layers.h), in opset-13
 * operators: (x - mean) / sqrt(var + eps) * gain + bias, var biased. */
static void layernorm(flow *f, const char *gain, const char *bias, float eps) {
  og *g = f->g;
  const int64_t axes[1] = {1};
  og_node *mean = og_op(g, "ReduceMean", &f->cur, 1);
  og_attr_ints(g, mean, "axes", axes, 1);
  og_attr_int(g, mean, "keepdims", 1);
  const char *d = og_op2(g, "Sub", f->cur, og_out(mean));
  const char *d2 = og_op2(g, "Mul", d, d);
  og_node *var = og_op(g, "ReduceMean", &d2, 1);
  og_attr_ints(g, var, "axes", axes, 1);
  og_attr_int(g, var, "keepdims", 1);
  const char *sd = og_op1(g, "Sqrt", og_op2(g, "Add", og_out(var), og_scalar(g, "eps", eps)));
  const char *xhat = og_op2(g, "Div", d, sd);
  f->cur = og_op2(g, "Add", og_op2(g, "Mul", xhat, gain), bias);
}

/* GELU, tanh form (layers.h): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static void gelu(flow *f) {
  og *g = f->g;
  const char *x = f->cur;
  const char *x3 = og_op2(g, "Mul", og_op2(g, "Mul", x, x), x);
  const char *inner = og_op2(g, "Add", x, og_op2(g, "Mul", x3, og_scalar(g, "gelu_c", 0.044715f)));
  const char *t =
      og_op1(g, "Tanh", og_op2(g, "Mul", inner, og_scalar(g, "gelu_k", 0.7978845608028654f)));
  const char *half_x = og_op2(g, "Mul", x, og_scalar(g, "half", 0.5f));
  f->cur = og_op2(g, "Mul", half_x, og_op2(g, "Add", t, og_scalar(g, "one", 1.0f)));
}

static int activation(flow *f, const ms_layer *l, int i) {
  og_node *n;
  switch (l->act) {
    case MS_ACT_NONE: return 0;
    case MS_ACT_RELU: f->cur = og_op1(f->g, "Relu", f->cur); return 0;
    case MS_ACT_TANH: f->cur = og_op1(f->g, "Tanh", f->cur); return 0;
    case MS_ACT_SIGMOID: f->cur = og_op1(f->g, "Sigmoid", f->cur); return 0;
    case MS_ACT_LEAKY_RELU:
      n = og_op(f->g, "LeakyRelu", &f->cur, 1);
      og_attr_float(f->g, n, "alpha", l->alpha);
      f->cur = og_out(n);
      return 0;
    case MS_ACT_GELU: gelu(f); return 0;
    case MS_ACT_SOFTMAX: /* over all features of a sample, as softmax_forward */
      to_flat(f);
      n = og_op(f->g, "Softmax", &f->cur, 1);
      og_attr_int(f->g, n, "axis", 1);
      f->cur = og_out(n);
      return 0;
  }
  return ms_error_set(MS_ECONFIG, "model.layers[%d]: activation %d has no ONNX export", i,
                      (int)l->act);
}

/* A window operator (Conv, MaxPool, AveragePool) with its geometry. */
static og_node *window_op(flow *f, const char *op, const char *const *in, int n_in,
                          const ms_conv2d *w, int padded) {
  const int64_t k[2] = {w->KH, w->KW}, s[2] = {w->SH, w->SW};
  const int64_t p[4] = {w->PH, w->PW, w->PH, w->PW}; /* begins, then ends */
  og_node *n = og_op(f->g, op, in, n_in);
  og_attr_ints(f->g, n, "kernel_shape", k, 2);
  og_attr_ints(f->g, n, "strides", s, 2);
  if (padded) og_attr_ints(f->g, n, "pads", p, 4);
  return n;
}

static int emit_layer(flow *f, const ms_model *m, int i, const ckpt_contents *c) {
  const ms_layer *l = &m->layers[i];
  char scope[32];
  snprintf(scope, sizeof scope, "layers.%d", i);
  og_scope(f->g, scope);
  switch (l->type) {
    case MS_LAYER_DENSE: { /* y = x W^T + b, W (out, in) */
      to_flat(f);
      const char *in[3] = {f->cur, weight(f, m, l->w, c), NULL};
      in[2] = weight(f, m, l->b, c); /* in order: the file lists weight, then bias */
      og_node *n = og_op(f->g, "Gemm", in, 3);
      og_attr_int(f->g, n, "transB", 1);
      f->cur = og_out(n);
      break;
    }
    case MS_LAYER_CONV2D: {
      to_image(f, l->in_c, l->in_h, l->in_w);
      const char *in[3] = {f->cur, weight(f, m, l->w, c), NULL};
      in[2] = weight(f, m, l->b, c);
      f->cur = og_out(window_op(f, "Conv", in, 3, &l->g, 1));
      break;
    }
    case MS_LAYER_MAXPOOL2D:
    case MS_LAYER_AVGPOOL2D:
      to_image(f, l->in_c, l->in_h, l->in_w);
      f->cur = og_out(window_op(f, l->type == MS_LAYER_MAXPOOL2D ? "MaxPool" : "AveragePool",
                                &f->cur, 1, &l->g, 0));
      break;
    case MS_LAYER_FLATTEN: to_flat(f); break;
    case MS_LAYER_LAYERNORM: {
      to_flat(f);
      const char *gain = weight(f, m, l->w, c);
      layernorm(f, gain, weight(f, m, l->b, c), l->eps);
      break;
    }
    case MS_LAYER_DROPOUT:    /* the identity outside training */
    case MS_LAYER_ACTIVATION: break;
    default:
      return ms_error_set(MS_ECONFIG,
                          "model.layers[%d]: %s has no ONNX export (export this model to "
                          "safetensors: OUT.safetensors)",
                          i, config_enum_name("model.layers[i].type", (int)l->type));
  }
  return activation(f, l, i);
}

/* The values of one data.mean / data.std list spread over the e features
 * of a sample: value k / (e / n) for feature k, as the loader maps 1, C
 * (per channel) or e values (data/rowconv.c). NULL (error set) if n does
 * not divide e, which no run could have trained with. */
static float *spread(const ms_floats *v, long e, const char *what) {
  if (v->n < 1 || e % v->n) {
    ms_error_set(MS_ECKPT, "data.%s has %d values, which do not divide the %ld input features",
                 what, v->n, e);
    return NULL;
  }
  float *out = malloc(sizeof(float) * (size_t)e);
  if (!out) {
    ms_error_set(MS_ENOMEM, "onnx export: out of memory");
    return NULL;
  }
  long inner = e / v->n;
  for (long k = 0; k < e; k++) out[k] = v->v[k / inner];
  return out;
}

/* The loader's normalisation in front of the graph: x * scale, - mean,
 * / std, each only when it changes something. */
static int normalisation(flow *f, const ms_config *cfg, long e, int nd, const int64_t *dims) {
  og_scope(f->g, "normalise");
  float scale = (float)cfg->data.scale;
  if (scale != 1.0f) f->cur = og_op2(f->g, "Mul", f->cur, og_scalar(f->g, "scale", scale));
  const ms_floats *lists[2] = {&cfg->data.mean, &cfg->data.std};
  const char *names[2] = {"mean", "std"}, *ops[2] = {"Sub", "Div"};
  for (int k = 0; k < 2; k++) {
    if (lists[k]->n == 0) continue;
    const char *cst;
    if (lists[k]->n == 1) {
      cst = og_scalar(f->g, names[k], lists[k]->v[0]);
    } else {
      float *v = spread(lists[k], e, names[k]);
      if (!v) return e % lists[k]->n ? MS_ECKPT : MS_ENOMEM; /* message set by spread */
      cst = og_const_f32(f->g, names[k], v, e, nd, dims);
      free(v);
    }
    f->cur = og_op2(f->g, ops[k], f->cur, cst);
  }
  return 0;
}

/* The per-sample input shape: opts, model.input, or (F) from the first
 * layer with weights when it is dense (or a layer norm) and only
 * shape-keeping layers come before it. */
static int input_shape(const char *path, const ms_config *cfg, const ckpt_contents *c,
                       const onnx_export_opts *o, int64_t *in, int *nd) {
  if (o->input_ndim > 0) {
    *nd = o->input_ndim;
    for (int d = 0; d < *nd; d++) in[d] = o->input[d];
    return 0;
  }
  const ms_dims *md = &cfg->model.input;
  if (md->ndim > 0) {
    if (md->ndim > 3)
      return ms_error_set(MS_ECONFIG, "%s: model.input has %d dimensions: expected 1 to 3", path,
                          md->ndim);
    *nd = md->ndim;
    for (int d = 0; d < *nd; d++) in[d] = md->dims[d];
    return 0;
  }
  for (int i = 0; i < cfg->model.n_layers; i++) {
    ms_layer_type t = cfg->model.layers[i].type;
    if (t == MS_LAYER_ACTIVATION || t == MS_LAYER_DROPOUT || t == MS_LAYER_FLATTEN) continue;
    if (t != MS_LAYER_DENSE && t != MS_LAYER_LAYERNORM) break;
    char name[48];
    snprintf(name, sizeof name, "layers.%d.weight", i);
    for (int k = 0; k < c->n_tensors; k++)
      if (strcmp(c->tensors[k].name, name) == 0 && c->tensors[k].ndim >= 1) {
        *nd = 1;
        in[0] = c->tensors[k].shape[c->tensors[k].ndim - 1];
        return 0;
      }
    return ms_error_set(MS_ECKPT, "%s: holds no tensor '%s'", path, name);
  }
  return ms_error_set(MS_ECONFIG,
                      "%s: the saved config has no model.input (the shape came from the "
                      "dataset) and the first layer needs the image shape: pass --input C,H,W",
                      path);
}

/* Every parameter of the planned model is in the checkpoint, with its shape. */
static int check_params(const char *path, const ms_model *m, const ckpt_contents *c,
                        int input_given) {
  for (int i = 0; i < m->n_p; i++) {
    const ms_param *p = &m->p[i];
    const ckpt_tensor *t = find_param(c, p);
    if (!t) return ms_error_set(MS_ECKPT, "%s: holds no tensor '%s'", path, p->name);
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same) {
      char want[64], have[64];
      int a = 0, b = 0;
      for (int d = 0; d < p->ndim; d++)
        a += snprintf(want + a, sizeof want - (size_t)a, "%s%lld", d ? ", " : "",
                      (long long)p->shape[d]);
      for (int d = 0; d < t->ndim && d < CKPT_MAX_DIMS; d++)
        b += snprintf(have + b, sizeof have - (size_t)b, "%s%lld", d ? ", " : "",
                      (long long)t->shape[d]);
      return ms_error_set(input_given ? MS_EUSAGE : MS_ECKPT,
                          "%s: tensor '%s' is (%s) but the model%s needs (%s)", path, p->name,
                          have, input_given ? " with this --input" : " of its saved config",
                          want);
    }
  }
  return 0;
}

/* The graph of model m with the checkpoint's weights. */
static int build(og *g, const ms_config *cfg, const ms_model *m, const ckpt_contents *c,
                 const onnx_export_opts *o, int nd, const int64_t *in, onnx_export_info *info) {
  int64_t dims[4] = {-1, 0, 0, 0};
  for (int d = 0; d < nd; d++) dims[d + 1] = in[d];
  og_input(g, "input", nd + 1, dims);
  flow f = {g, "input", nd + 1};
  int rc = o->normalised_input ? 0 : normalisation(&f, cfg, m->in_features, nd, in);
  for (int i = 0; i < m->n_layers && !rc; i++) rc = emit_layer(&f, m, i, c);
  if (rc) return rc;
  og_scope(g, "output");
  to_flat(&f);
  if (strcmp(f.cur, "input") == 0) f.cur = og_op1(g, "Identity", f.cur);
  og_rename(g, f.cur, "output");
  const int64_t odims[2] = {-1, m->n_out};
  og_output(g, "output", 2, odims);
  info->in_ndim = nd;
  for (int d = 0; d < nd; d++) info->in_dims[d] = in[d];
  info->n_out = m->n_out;
  return 0;
}

/* Metadata that says where the graph came from and what it takes. */
static void describe(og *g, const char *path, const ckpt_contents *c, int normalised,
                     char *doc, size_t cap) {
  char step[32];
  snprintf(step, sizeof step, "%lld", (long long)c->meta.step);
  const char *slash = strrchr(path, '/');
  og_meta(g, "midscale.checkpoint", slash ? slash + 1 : path);
  og_meta(g, "midscale.step", step);
  og_meta(g, "midscale.input", normalised ? "normalised" : "raw");
  if (c->meta.config) og_meta(g, "midscale.config", c->meta.config);
  snprintf(doc, cap,
           "midscale model from %s (step %s). Input: %s. Output: the last layer's values "
           "(logits for a classifier).",
           slash ? slash + 1 : path, step,
           normalised ? "normalised as in training (x * data.scale - data.mean) / data.std"
                      : "raw values as stored in the dataset; the graph applies data.scale, "
                        "data.mean and data.std");
}

/* out_path replaced atomically (temporary file in its directory, rename). */
static int write_file(const char *out_path, const uint8_t *bytes, size_t len) {
  char *dir = strdup(out_path);
  if (!dir) return ms_error_set(MS_ENOMEM, "%s: out of memory", out_path);
  char *slash = strrchr(dir, '/');
  const char *name = slash ? slash + 1 : out_path;
  if (slash) {
    *slash = '\0';
    if (!*dir) strcpy(dir, "/");
  } else {
    strcpy(dir, ".");
  }
  int rc = 0;
  ckpt_atomic a;
  if (!*name) {
    rc = ms_error_set(MS_EUSAGE, "'%s' names a directory, not a file", out_path);
    free(dir);
    return rc;
  }
  rc = ckpt_atomic_open(&a, dir, name);
  if (!rc && fwrite(bytes, 1, len, a.f) != len)
    rc = ms_error_set(MS_EIO, "%s: write failed", out_path);
  if (!rc) rc = ckpt_atomic_commit(&a);
  ckpt_atomic_close(&a, rc, NULL);
  free(dir);
  return rc;
}

int onnx_export(const char *ckpt_path, const char *out_path, const onnx_export_opts *opts,
                onnx_export_info *info) {
  const onnx_export_opts none = {0, 0, {0, 0, 0}};
  onnx_export_info scratch;
  const onnx_export_opts *o = opts ? opts : &none;
  if (!info) info = &scratch;
  memset(info, 0, sizeof *info);
  struct stat si, so;
  if (stat(ckpt_path, &si) == 0 && stat(out_path, &so) == 0 && si.st_dev == so.st_dev &&
      si.st_ino == so.st_ino)
    return ms_error_set(MS_EUSAGE, "export: %s is the checkpoint being read (%s): choose another output",
                        out_path, ckpt_path);
  ckpt_contents c;
  int rc = ckpt_load(ckpt_path, &c);
  ms_config *cfg = NULL;
  ms_model *m = NULL;
  og *g = NULL;
  uint8_t *bytes = NULL;
  size_t len = 0;
  if (rc) goto out;
  cfg = malloc(sizeof *cfg);
  m = malloc(sizeof *m);
  g = og_create();
  if (!cfg || !m || !g) {
    rc = ms_error_set(MS_ENOMEM, "%s: out of memory", ckpt_path);
    goto out;
  }
  config_defaults(cfg);
  const char *text = c.meta.config ? c.meta.config : "";
  if ((rc = config_parse(cfg, text, strlen(text), "the saved config"))) {
    ms_error_prefix("%s", ckpt_path);
    rc = MS_ECKPT; /* it verified, so the writer stored a config no run can have had */
    goto out;
  }
  int64_t in[3];
  int nd = 0;
  if ((rc = input_shape(ckpt_path, cfg, &c, o, in, &nd))) goto out;
  if ((rc = model_plan(m, cfg, in, nd))) {
    ms_error_prefix("%s", ckpt_path);
    goto out;
  }
  if ((rc = check_params(ckpt_path, m, &c, o->input_ndim > 0))) goto out;
  char doc[512];
  describe(g, ckpt_path, &c, o->normalised_input, doc, sizeof doc);
  if ((rc = build(g, cfg, m, &c, o, nd, in, info))) goto out;
  if ((rc = og_pack(g, ONNX_EXPORT_OPSET, MS_VERSION_STRING, "midscale", doc, &bytes, &len)))
    goto out;
  info->nodes = og_node_count(g);
  info->initializers = og_initializer_count(g);
  info->bytes = (long long)len;
  rc = write_file(out_path, bytes, len);
out:
  free(bytes);
  og_free(g);
  free(m);
  free(cfg);
  ckpt_contents_free(&c);
  return rc;
}
