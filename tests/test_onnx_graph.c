/* Tests for trainer/onnx/onnx_graph: what the builder packs is a ModelProto
 * that protobuf-c unpacks to the same graph (names, attributes, tensors,
 * shapes, opset), and a failure is sticky and reported once, by og_pack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ms_error.h"
#include "onnx_graph.h"
#include "onnx_subset.pb-c.h"

static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i];
  return NULL;
}

static void test_onnx_graph_round_trip(void **state) {
  (void)state;
  og *g = og_create();
  assert_non_null(g);
  const float w[6] = {1, 2, 3, 4, 5, 6};
  const int64_t wd[2] = {3, 2}, in_dims[2] = {-1, 2}, out_dims[2] = {-1, 3};
  const int64_t k[2] = {3, 3}, shape[2] = {0, 3};
  og_input(g, "input", 2, in_dims);
  og_scope(g, "layers.0");
  const char *in[3] = {"input", og_weight(g, "layers.0.weight", w, 2, wd), NULL};
  in[2] = og_scalar(g, "bias", 0.5f);
  og_node *gemm = og_op(g, "Gemm", in, 3);
  og_attr_int(g, gemm, "transB", 1);
  og_attr_float(g, gemm, "alpha", 1.0f);
  og_attr_ints(g, gemm, "kernel_shape", k, 2);
  const char *r = og_op2(g, "Reshape", og_out(gemm), og_const_i64(g, "shape", shape, 2));
  const char *y = og_op1(g, "Relu", r);
  og_rename(g, y, "output");
  og_output(g, "output", 2, out_dims);
  og_meta(g, "midscale.input", "raw");
  assert_int_equal(og_node_count(g), 3);
  assert_int_equal(og_initializer_count(g), 3);
  uint8_t *bytes = NULL;
  size_t len = 0;
  assert_int_equal(og_pack(g, 13, "1.2.3", "net", "doc", &bytes, &len), 0);
  og_free(g);

  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, bytes);
  assert_non_null(m);
  assert_true(m->has_ir_version && m->ir_version == 7);
  assert_int_equal(m->n_opset_import, 1);
  assert_string_equal(m->opset_import[0]->domain, "");
  assert_int_equal(m->opset_import[0]->version, 13);
  assert_string_equal(m->producer_name, "midscale");
  assert_string_equal(m->producer_version, "1.2.3");
  assert_int_equal(m->n_metadata_props, 1);
  assert_string_equal(m->metadata_props[0]->value, "raw");
  const Onnx__GraphProto *gr = m->graph;
  assert_string_equal(gr->name, "net");
  assert_int_equal(gr->n_node, 3);
  assert_string_equal(gr->node[0]->op_type, "Gemm");
  assert_string_equal(gr->node[0]->input[0], "input");
  assert_string_equal(gr->node[0]->input[1], "layers.0.weight");
  assert_string_equal(gr->node[1]->input[0], gr->node[0]->output[0]);
  assert_string_equal(gr->node[2]->output[0], "output"); /* renamed */
  const Onnx__AttributeProto *a = find_attr(gr->node[0], "transB");
  assert_true(a && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT && a->i == 1);
  a = find_attr(gr->node[0], "alpha");
  assert_true(a && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT && a->f == 1.0f);
  a = find_attr(gr->node[0], "kernel_shape");
  assert_true(a && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS && a->n_ints == 2 &&
              a->ints[1] == 3);
  /* Initializers: float32 raw little-endian data, with their shapes. */
  assert_int_equal(gr->n_initializer, 3);
  const Onnx__TensorProto *t = gr->initializer[0];
  assert_string_equal(t->name, "layers.0.weight");
  assert_int_equal(t->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
  assert_int_equal(t->n_dims, 2);
  assert_int_equal(t->dims[0], 3);
  assert_int_equal(t->raw_data.len, sizeof w);
  assert_memory_equal(t->raw_data.data, w, sizeof w);
  assert_int_equal(gr->initializer[1]->n_dims, 0); /* a scalar */
  assert_int_equal(gr->initializer[2]->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
  /* Input (N, 2): N symbolic. */
  const Onnx__TensorShapeProto *sh = gr->input[0]->type->tensor_type->shape;
  assert_int_equal(sh->n_dim, 2);
  assert_int_equal(sh->dim[0]->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
  assert_string_equal(sh->dim[0]->dim_param, "N");
  assert_int_equal(sh->dim[1]->dim_value, 2);
  assert_string_equal(gr->output[0]->name, "output");
  onnx__model_proto__free_unpacked(m, NULL);
  free(bytes);
}

static void test_onnx_graph_error_is_sticky(void **state) {
  (void)state;
  og *g = og_create();
  const char *in[2] = {"input", NULL}; /* an input that was never made */
  assert_null(og_op(g, "Add", in, 2));
  assert_null(og_op1(g, "Relu", "input")); /* everything after is a no-op */
  uint8_t *bytes = (uint8_t *)1;
  size_t len = 7;
  assert_int_equal(og_pack(g, 13, "v", "n", "d", &bytes, &len), MS_EINTERNAL);
  assert_null(bytes);
  assert_int_equal(len, 0);
  assert_non_null(strstr(ms_error_msg(), "Add lacks input 1"));
  assert_int_equal(og_node_count(g), 0);
  og_free(g);
  og_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_onnx_graph_round_trip),
      cmocka_unit_test(test_onnx_graph_error_is_sticky),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
