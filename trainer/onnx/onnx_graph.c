/* onnx_graph — see onnx_graph.h. */
#include "onnx_graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_error.h"
#include "onnx_subset.pb-c.h"

#define OG_MAX_DIMS 8

/* A growable array of message pointers. */
typedef struct {
  void **v;
  size_t n, cap;
} ptrvec;

struct og {
  int rc;              /* sticky error: 0 or MS_ENOMEM */
  ptrvec blocks;       /* every allocation, freed by og_free */
  ptrvec nodes, inits, inputs, outputs, meta;
  char scope[96];
  long counter;        /* makes value names unique */
};

static int fail_oom(og *g) {
  if (!g->rc) g->rc = ms_error_set(MS_ENOMEM, "onnx export: out of memory");
  return g->rc;
}

static int vec_push(ptrvec *v, void *p) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? 2 * v->cap : 16;
    void **nv = realloc(v->v, cap * sizeof *nv);
    if (!nv) return -1;
    v->v = nv, v->cap = cap;
  }
  v->v[v->n++] = p;
  return 0;
}

/* Zeroed memory owned by the builder; NULL (and the sticky error) on OOM. */
static void *og_alloc(og *g, size_t bytes) {
  if (g->rc) return NULL;
  void *p = calloc(1, bytes ? bytes : 1);
  if (!p || vec_push(&g->blocks, p)) {
    free(p);
    fail_oom(g);
    return NULL;
  }
  return p;
}

static char *og_strf(og *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *og_strf(og *g, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = n >= 0 ? og_alloc(g, (size_t)n + 1) : NULL;
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

static void *og_copy(og *g, const void *src, size_t bytes) {
  void *p = og_alloc(g, bytes);
  if (p && bytes) memcpy(p, src, bytes);
  return p;
}

og *og_create(void) { return calloc(1, sizeof(og)); }

void og_free(og *g) {
  if (!g) return;
  for (size_t i = 0; i < g->blocks.n; i++) free(g->blocks.v[i]);
  free(g->blocks.v);
  free(g->nodes.v);
  free(g->inits.v);
  free(g->inputs.v);
  free(g->outputs.v);
  free(g->meta.v);
  free(g);
}

void og_scope(og *g, const char *scope) { snprintf(g->scope, sizeof g->scope, "%s", scope); }

static void push(og *g, ptrvec *v, void *p) {
  if (p && !g->rc && vec_push(v, p)) fail_oom(g);
}

/* A tensor message of type dt and shape dims with its bytes in raw_data. */
static Onnx__TensorProto *tensor(og *g, const char *name, int dt, const void *bytes,
                                 size_t nbytes, int ndim, const int64_t *dims) {
  if (ndim < 0 || ndim > OG_MAX_DIMS) ndim = 0;
  Onnx__TensorProto *t = og_alloc(g, sizeof *t);
  char *nm = og_strf(g, "%s", name);
  int64_t *d = og_copy(g, dims, sizeof(int64_t) * (size_t)ndim);
  if (!t || !nm || !d) return NULL;
  Onnx__TensorProto init = ONNX__TENSOR_PROTO__INIT;
  *t = init;
  t->name = nm;
  t->n_dims = (size_t)ndim;
  t->dims = d;
  t->has_data_type = 1;
  t->data_type = dt;
  t->has_raw_data = 1;
  t->raw_data.len = nbytes;
  t->raw_data.data = (uint8_t *)(uintptr_t)bytes; /* the message never writes through it */
  push(g, &g->inits, t);
  return g->rc ? NULL : t;
}

const char *og_weight(og *g, const char *name, const float *data, int ndim, const int64_t *dims) {
  size_t n = 1;
  for (int d = 0; d < ndim; d++) n *= (size_t)dims[d];
  Onnx__TensorProto *t =
      tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, data, n * sizeof(float), ndim, dims);
  return t ? t->name : NULL;
}

const char *og_const_f32(og *g, const char *hint, const float *data, long n, int ndim,
                         const int64_t *dims) {
  char *name = og_strf(g, "%s/%s_%ld", g->scope, hint, g->counter++);
  float *copy = og_copy(g, data, sizeof(float) * (size_t)n);
  if (!name || !copy) return NULL;
  Onnx__TensorProto *t =
      tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, copy, sizeof(float) * (size_t)n,
             ndim, dims);
  return t ? t->name : NULL;
}

const char *og_scalar(og *g, const char *hint, float v) {
  return og_const_f32(g, hint, &v, 1, 0, NULL);
}

const char *og_const_i64(og *g, const char *hint, const int64_t *data, int n) {
  char *name = og_strf(g, "%s/%s_%ld", g->scope, hint, g->counter++);
  int64_t *copy = og_copy(g, data, sizeof(int64_t) * (size_t)n);
  int64_t dims[1] = {n};
  if (!name || !copy) return NULL;
  Onnx__TensorProto *t = tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, copy,
                                sizeof(int64_t) * (size_t)n, 1, dims);
  return t ? t->name : NULL;
}

og_node *og_op(og *g, const char *op, const char *const *in, int n_in) {
  Onnx__NodeProto *nd = og_alloc(g, sizeof *nd);
  char **ins = og_alloc(g, sizeof(char *) * (size_t)(n_in > 0 ? n_in : 1));
  char **outs = og_alloc(g, sizeof(char *));
  if (!nd || !ins || !outs) return NULL;
  for (int i = 0; i < n_in; i++) {
    if (!in[i]) { /* an input that failed to be made (its error is set), or a caller's bug */
      if (!g->rc) g->rc = ms_error_set(MS_EINTERNAL, "onnx export: node %s lacks input %d", op, i);
      return NULL;
    }
    ins[i] = og_strf(g, "%s", in[i]);
  }
  Onnx__NodeProto init = ONNX__NODE_PROTO__INIT;
  *nd = init;
  nd->op_type = og_strf(g, "%s", op);
  outs[0] = og_strf(g, "%s/%s_%ld", g->scope, op, g->counter++);
  nd->name = og_strf(g, "%s", outs[0] ? outs[0] : "");
  nd->n_input = (size_t)n_in;
  nd->input = ins;
  nd->n_output = 1;
  nd->output = outs;
  push(g, &g->nodes, nd);
  return g->rc ? NULL : nd;
}

const char *og_out(const og_node *n) { return n ? n->output[0] : NULL; }

const char *og_op1(og *g, const char *op, const char *a) {
  const char *in[1] = {a};
  return og_out(og_op(g, op, in, 1));
}

const char *og_op2(og *g, const char *op, const char *a, const char *b) {
  const char *in[2] = {a, b};
  return og_out(og_op(g, op, in, 2));
}

static Onnx__AttributeProto *attr(og *g, og_node *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type) {
  if (!n || g->rc) return NULL;
  Onnx__AttributeProto *a = og_alloc(g, sizeof *a);
  Onnx__AttributeProto **list =
      og_alloc(g, sizeof(Onnx__AttributeProto *) * (n->n_attribute + 1));
  char *nm = og_strf(g, "%s", name);
  if (!a || !list || !nm) return NULL;
  Onnx__AttributeProto init = ONNX__ATTRIBUTE_PROTO__INIT;
  *a = init;
  a->name = nm;
  a->has_type = 1;
  a->type = type;
  /* The old list stays in the builder's blocks until og_free. */
  if (n->n_attribute) memcpy(list, n->attribute, sizeof(*list) * n->n_attribute);
  list[n->n_attribute++] = a;
  n->attribute = list;
  return a;
}

void og_attr_int(og *g, og_node *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (a) a->has_i = 1, a->i = v;
}

void og_attr_float(og *g, og_node *n, const char *name, float v) {
  Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (a) a->has_f = 1, a->f = v;
}

void og_attr_ints(og *g, og_node *n, const char *name, const int64_t *v, int count) {
  Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *copy = a ? og_copy(g, v, sizeof(int64_t) * (size_t)count) : NULL;
  if (copy) a->n_ints = (size_t)count, a->ints = copy;
}

/* A float32 tensor value's name and type, the batch dimension symbolic. */
static Onnx__ValueInfoProto *value_info(og *g, const char *name, int ndim, const int64_t *dims) {
  if (ndim < 0 || ndim > OG_MAX_DIMS) ndim = 0;
  Onnx__ValueInfoProto *vi = og_alloc(g, sizeof *vi);
  Onnx__TypeProto *tp = og_alloc(g, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = og_alloc(g, sizeof *tt);
  Onnx__TensorShapeProto *sh = og_alloc(g, sizeof *sh);
  Onnx__TensorShapeProto__Dimension **dv = og_alloc(g, sizeof(*dv) * (size_t)(ndim ? ndim : 1));
  if (!vi || !tp || !tt || !sh || !dv) return NULL;
  for (int d = 0; d < ndim; d++) {
    Onnx__TensorShapeProto__Dimension *dim = og_alloc(g, sizeof *dim);
    if (!dim) return NULL;
    Onnx__TensorShapeProto__Dimension dinit = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
    *dim = dinit;
    if (dims[d] < 0) {
      dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      dim->dim_param = og_strf(g, "N");
    } else {
      dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dim->dim_value = dims[d];
    }
    dv[d] = dim;
  }
  Onnx__TensorShapeProto shinit = ONNX__TENSOR_SHAPE_PROTO__INIT;
  *sh = shinit;
  sh->n_dim = (size_t)ndim;
  sh->dim = dv;
  Onnx__TypeProto__Tensor ttinit = ONNX__TYPE_PROTO__TENSOR__INIT;
  *tt = ttinit;
  tt->has_elem_type = 1;
  tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tt->shape = sh;
  Onnx__TypeProto tpinit = ONNX__TYPE_PROTO__INIT;
  *tp = tpinit;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  Onnx__ValueInfoProto viinit = ONNX__VALUE_INFO_PROTO__INIT;
  *vi = viinit;
  vi->name = og_strf(g, "%s", name);
  vi->type = tp;
  return g->rc ? NULL : vi;
}

void og_input(og *g, const char *name, int ndim, const int64_t *dims) {
  push(g, &g->inputs, value_info(g, name, ndim, dims));
}

void og_output(og *g, const char *name, int ndim, const int64_t *dims) {
  push(g, &g->outputs, value_info(g, name, ndim, dims));
}

void og_rename(og *g, const char *from, const char *to) {
  if (g->rc || !from) return;
  char *keep = og_strf(g, "%s", from); /* `from` may be one of the names replaced */
  char *nm = og_strf(g, "%s", to);
  if (!keep || !nm) return;
  for (size_t i = 0; i < g->nodes.n; i++) {
    Onnx__NodeProto *nd = g->nodes.v[i];
    for (size_t k = 0; k < nd->n_input; k++)
      if (strcmp(nd->input[k], keep) == 0) nd->input[k] = nm;
    for (size_t k = 0; k < nd->n_output; k++)
      if (strcmp(nd->output[k], keep) == 0) nd->output[k] = nm;
  }
}

void og_meta(og *g, const char *key, const char *value) {
  Onnx__StringStringEntryProto *e = og_alloc(g, sizeof *e);
  if (!e) return;
  Onnx__StringStringEntryProto init = ONNX__STRING_STRING_ENTRY_PROTO__INIT;
  *e = init;
  e->key = og_strf(g, "%s", key);
  e->value = og_strf(g, "%s", value);
  push(g, &g->meta, e);
}

int og_pack(og *g, int opset, const char *version, const char *name, const char *doc,
            uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
  Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
  Onnx__OperatorSetIdProto ops = ONNX__OPERATOR_SET_ID_PROTO__INIT;
  Onnx__OperatorSetIdProto *opsp = &ops;
  char empty[1] = "";
  char *gname = og_strf(g, "%s", name), *gdoc = og_strf(g, "%s", doc);
  char *prod = og_strf(g, "midscale"), *pver = og_strf(g, "%s", version);
  if (g->rc) return g->rc;
  ops.domain = empty; /* the default domain, ai.onnx */
  ops.has_version = 1;
  ops.version = opset;
  graph.n_node = g->nodes.n;
  graph.node = (Onnx__NodeProto **)g->nodes.v;
  graph.name = gname;
  graph.n_initializer = g->inits.n;
  graph.initializer = (Onnx__TensorProto **)g->inits.v;
  graph.n_input = g->inputs.n;
  graph.input = (Onnx__ValueInfoProto **)g->inputs.v;
  graph.n_output = g->outputs.n;
  graph.output = (Onnx__ValueInfoProto **)g->outputs.v;
  model.has_ir_version = 1;
  model.ir_version = 7; /* the IR of opset 13 (ONNX 1.8) */
  model.producer_name = prod;
  model.producer_version = pver;
  model.doc_string = gdoc;
  model.graph = &graph;
  model.n_opset_import = 1;
  model.opset_import = &opsp;
  model.n_metadata_props = g->meta.n;
  model.metadata_props = (Onnx__StringStringEntryProto **)g->meta.v;
  size_t n = onnx__model_proto__get_packed_size(&model);
  /* Protobuf messages are limited to 2 GiB; larger weights would need ONNX's
   * external data files, which this exporter does not write. */
  if (n > 0x7fffffffu)
    return g->rc = ms_error_set(MS_ECONFIG,
                                "onnx export: the model needs %zu bytes, over the 2 GiB that one "
                                "ONNX file can hold",
                                n);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return fail_oom(g);
  *len = onnx__model_proto__pack(&model, buf);
  *out = buf;
  return 0;
}

int og_node_count(const og *g) { return (int)g->nodes.n; }
int og_initializer_count(const og *g) { return (int)g->inits.n; }
