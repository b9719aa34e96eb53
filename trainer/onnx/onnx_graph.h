/* onnx_graph — builds one ONNX model (a graph of nodes over named values,
 * its initializers, one input and one output) on protobuf-c messages
 * generated at build time from onnx_subset.proto, and serialises it.
 *
 * It knows ONNX, not midscale: onnx_export.c says which operators a layer
 * becomes. Value names are made unique by the builder ("<scope>/<Op>_<k>").
 *
 * Ownership: everything the builder makes (messages, names, copied
 * constants) lives in the builder and is released by og_free, which
 * accepts NULL. og_weight BORROWS its data: it must stay alive until
 * og_pack has returned.
 *
 * Errors are sticky: a failed allocation records MS_ENOMEM (ms_error) and
 * makes every later call a no-op that returns NULL; og_pack reports it. So
 * the caller writes a sequence of calls and checks once.
 *
 * Serial, no MPI, not thread-safe. Tensors are float32 or int64 and are
 * written as raw_data in the host's byte order, which ONNX defines as
 * little-endian: midscale runs on little-endian hosts only (its checkpoints
 * assume the same).
 */
#ifndef MS_ONNX_GRAPH_H
#define MS_ONNX_GRAPH_H

#include <stddef.h>
#include <stdint.h>

typedef struct og og;
typedef struct Onnx__NodeProto og_node;

/* @return a new builder, or NULL when out of memory. */
og *og_create(void);
void og_free(og *g);

/* Names made from now on start with scope (copied), e.g. "layers.3". */
void og_scope(og *g, const char *scope);

/* A float32 initializer named `name` (copied) over `data` (BORROWED) of
 * shape dims (ndim <= 8). @return its name. */
const char *og_weight(og *g, const char *name, const float *data, int ndim, const int64_t *dims);

/* A float32 constant of n values (copied) and shape dims (ndim 0 = a
 * scalar), named "<scope>/<hint>". @return its name. */
const char *og_const_f32(og *g, const char *hint, const float *data, long n, int ndim,
                         const int64_t *dims);

/* A float32 scalar constant. */
const char *og_scalar(og *g, const char *hint, float v);

/* A 1-d int64 constant of n values (copied), e.g. Reshape's shape. */
const char *og_const_i64(og *g, const char *hint, const int64_t *data, int n);

/* Appends a node of operator `op` (default domain) on inputs in[0..n_in-1]
 * with one output, a fresh value name. @return the node (for og_attr_*),
 * or NULL after an error. og_out gives its output's name. */
og_node *og_op(og *g, const char *op, const char *const *in, int n_in);
const char *og_out(const og_node *n);

/* The common case: one node, no attributes. @return its output's name. */
const char *og_op1(og *g, const char *op, const char *a);
const char *og_op2(og *g, const char *op, const char *a, const char *b);

/* Attributes of a node (all accept a NULL node and do nothing). */
void og_attr_int(og *g, og_node *n, const char *name, int64_t v);
void og_attr_float(og *g, og_node *n, const char *name, float v);
void og_attr_ints(og *g, og_node *n, const char *name, const int64_t *v, int count);

/* The graph's input and output: float32 tensors of shape dims (ndim <= 8),
 * where a dimension of -1 is the symbolic batch size "N". */
void og_input(og *g, const char *name, int ndim, const int64_t *dims);
void og_output(og *g, const char *name, int ndim, const int64_t *dims);

/* Renames the value `from` to `to` wherever the graph's nodes name it (the
 * last node's output becomes the graph's output name). */
void og_rename(og *g, const char *from, const char *to);

/* A metadata_props entry (both copied). */
void og_meta(og *g, const char *key, const char *value);

/* Serialises the model: ir_version 7, the default domain at `opset`,
 * producer "midscale" version `version`, the graph named `name`, the doc
 * string `doc`. @return 0 with *out malloc'ed (*len bytes), or the sticky
 * error (MS_ENOMEM, MS_EINTERNAL for a node given a missing input) with its
 * message, or MS_ECONFIG when the model is over protobuf's 2 GiB. */
int og_pack(og *g, int opset, const char *version, const char *name, const char *doc,
            uint8_t **out, size_t *len);

/* Nodes and initializers so far (for the caller's summary line). */
int og_node_count(const og *g);
int og_initializer_count(const og *g);

#endif
