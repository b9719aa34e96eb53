/* onnx_export — `midscale export CHECKPOINT OUT.onnx`: a checkpoint's model
 * as an ONNX graph for inference runtimes (edge devices), opset 13.
 *
 * The graph: one float32 input "input" and one output "output" (N, n_out),
 * N symbolic. Layers become standard operators of the default domain,
 * opset 13, which every ONNX runtime of the last years runs and Debian's
 * onnx 1.12 checks:
 *   dense      Flatten (when its input is an image) + Gemm (transB = 1)
 *   conv2d     Conv (pads, strides)       maxpool2d / avgpool2d  MaxPool / AveragePool
 *   flatten    Flatten                    dropout   nothing (inference)
 *   layernorm  ReduceMean, Sub, Mul, Add, Sqrt, Div over the sample's features
 *              (LayerNormalization is an opset-17 operator; the decomposition
 *              runs on opset 13 runtimes as well)
 *   relu Relu  leaky_relu LeakyRelu  tanh Tanh  sigmoid Sigmoid
 *   softmax    Softmax over the sample's features (axis 1 of the flattened tensor)
 *   gelu       its tanh form from Mul, Add, Tanh (Gelu is an opset-20 operator)
 * Images stay NCHW; a Reshape makes a flat tensor an image again where a
 * conv2d or pooling layer follows a flattening one.
 *
 * Inputs: by default the graph takes RAW inputs, the values as stored in the
 * dataset (uint8 pixels 0..255 as floats, say), and begins with midscale's
 * own input normalisation, x * data.scale, - data.mean, / data.std, in that
 * order and in float32 as the loader does it (data/rowconv.c), so a device
 * needs nothing from the config. normalised_input = 1 leaves those nodes
 * out: the graph then takes inputs already normalised.
 *
 * Input shape: model.input of the saved config, (C, H, W), (H, W) or (F); a
 * config without it (the shape came from the dataset) gives (F) when the
 * first layer with weights is a dense layer or a layer norm (F = its
 * inputs) and only activations, dropout and flatten come before it, and
 * otherwise needs opts->input (the exit-2 message says so). opts->input,
 * when given, is used instead of model.input and must fit the weights.
 *
 * The graph computes what midscale's fp32 forward computes; a model trained
 * with model.precision bf16 is exported with its fp32 master weights.
 *
 * Serial, no MPI. Errors: 0, or MS_ECKPT (not a checkpoint, damaged, its
 * saved config does not parse, or its tensors do not fit that config),
 * MS_ECONFIG (the model cannot be exported: no input shape, a layer or
 * activation without an ONNX form, over 2 GiB), MS_EUSAGE (output is the
 * input file; opts->input does not fit the weights), MS_EIO, MS_ENOMEM;
 * message via ms_error. The
 * output is written atomically (temporary file, rename).
 */
#ifndef MS_ONNX_EXPORT_H
#define MS_ONNX_EXPORT_H

#include <stdint.h>

/* The opset the graph declares. */
#define ONNX_EXPORT_OPSET 13

typedef struct {
  int normalised_input; /* 1: no normalisation nodes; the graph takes normalised inputs */
  int input_ndim;       /* 0: the shape from the checkpoint's config; else 1..3 dims */
  int64_t input[3];     /* (F), (H, W) or (C, H, W) */
} onnx_export_opts;

/* What was written, for the command's summary line. */
typedef struct {
  int nodes, initializers;
  long long bytes;
  int64_t in_dims[3];
  int in_ndim; /* the input's dimensions after N */
  long n_out;
} onnx_export_info;

/* Writes the model of checkpoint ckpt_path as an ONNX model to out_path.
 * opts may be NULL (defaults), info may be NULL. */
int onnx_export(const char *ckpt_path, const char *out_path, const onnx_export_opts *opts,
                onnx_export_info *info);

#endif
