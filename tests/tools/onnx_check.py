#!/usr/bin/python3
"""Checks an ONNX model written by `midscale export` and runs it in NumPy.

    onnx_check.py MODEL.onnx DATA.h5 X_DATASET N REF.f32 [--normalised] [--tol T]

1. onnx.checker.check_model(full_check=True) (Debian's python3-onnx; full
   check includes shape inference), the declared opset (13) and that no
   operator outside the small set below, nor a Dropout, is in the graph.
2. A small evaluator of our own, written from the ONNX operator
   specifications (no ONNX runtime: Debian has none, and onnx 1.12 has no
   reference evaluator), runs the graph on the first N inputs of X_DATASET
   as stored (raw values as float32; --normalised: the caller's file holds
   inputs already normalised), reshaped to the graph's input shape.
3. Its outputs must match REF.f32, midscale's own forward of the same
   samples (tests/onnx_forward.c), within T (default 1e-5) absolute, or
   T relative for outputs larger than 1.

Prints one summary line; exits 1 with a message on a mismatch.
"""
import sys

import h5py
import numpy as np
import onnx
from onnx import numpy_helper

OPSET = 13


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def window_view(x, kh, kw, sh, sw):
    """(N, C, OH, OW, KH, KW) view of the windows of x (N, C, H, W)."""
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2], s[3]), writeable=False)


def conv(x, w, b, a):
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    assert a.get("group", 1) == 1 and a.get("dilations", [1, 1]) == [1, 1]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = window_view(xp.astype(np.float64), kh, kw, sh, sw)
    y = np.einsum("ncyxij,ocij->noyx", win, w.astype(np.float64))
    return (y + b.astype(np.float64)[None, :, None, None]).astype(np.float32)


def pool(x, a, kind):
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    assert a.get("pads", [0, 0, 0, 0]) == [0, 0, 0, 0]
    win = window_view(np.ascontiguousarray(x), kh, kw, sh, sw)
    if kind == "max":
        return win.max(axis=(4, 5))
    return (win.astype(np.float64).sum(axis=(4, 5)) / (kh * kw)).astype(np.float32)


def gemm(x, w, b, a):
    assert a.get("transA", 0) == 0 and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0
    w = w.T if a.get("transB", 0) else w
    return (x.astype(np.float64) @ w.astype(np.float64) + b).astype(np.float32)


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def reshape(x, shape):
    shape = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
    return x.reshape(shape)


def run(node, ins):
    op, a, f32 = node.op_type, attrs(node), np.float32
    if op in ("Add", "Sub", "Mul", "Div"):
        fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        return fn(ins[0], ins[1], dtype=f32)
    if op == "Relu":
        return np.maximum(ins[0], f32(0))
    if op == "LeakyRelu":
        return np.where(ins[0] > 0, ins[0], f32(a.get("alpha", 0.01)) * ins[0]).astype(f32)
    if op == "Tanh":
        return np.tanh(ins[0])
    if op == "Sigmoid":
        return (1.0 / (1.0 + np.exp(-ins[0].astype(np.float64)))).astype(f32)
    if op == "Sqrt":
        return np.sqrt(ins[0])
    if op == "Softmax":
        return softmax(ins[0].astype(np.float64), a.get("axis", -1)).astype(f32)
    if op == "Gemm":
        return gemm(ins[0], ins[1], ins[2], a)
    if op == "Conv":
        return conv(ins[0], ins[1], ins[2], a)
    if op == "MaxPool":
        return pool(ins[0], a, "max")
    if op == "AveragePool":
        return pool(ins[0], a, "avg")
    if op == "Flatten":
        ax = a.get("axis", 1)
        return ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
    if op == "Reshape":
        return reshape(ins[0], ins[1])
    if op == "ReduceMean":
        axes = tuple(a["axes"])
        return ins[0].astype(np.float64).mean(axis=axes, keepdims=bool(a.get("keepdims", 1))).astype(f32)
    if op == "Identity":
        return ins[0]
    raise SystemExit(f"FAIL: operator {op} is not one the exporter should use")


def main():
    args = sys.argv[1:]
    normalised = "--normalised" in args
    tol = 1e-5
    if "--tol" in args:
        tol = float(args[args.index("--tol") + 1])
    path, data, xname, n, ref = args[:5]
    n = int(n)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": OPSET}, f"opsets {opsets}"
    g = model.graph
    ops = sorted({nd.op_type for nd in g.node})
    assert "Dropout" not in ops, "a Dropout is left in the graph"
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["output"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta.get("midscale.input") == ("normalised" if normalised else "raw"), meta

    in_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in g.input[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in g.output[0].type.tensor_type.shape.dim]
    with h5py.File(data, "r") as f:
        x = np.asarray(f[xname][:n], dtype=np.float32)
    x = x.reshape([n] + in_dims[1:])
    values = {"input": x}
    for t in g.initializer:
        values[t.name] = numpy_helper.to_array(t)
    for nd in g.node:
        values[nd.output[0]] = run(nd, [values[i] for i in nd.input])
    y = values["output"]
    want = np.fromfile(ref, dtype="<f4").reshape(n, out_dims[1])
    assert y.shape == want.shape, (y.shape, want.shape)
    err = np.abs(y.astype(np.float64) - want) / np.maximum(1.0, np.abs(want))
    worst = float(err.max())
    print(f"{path}: checker ok, opset {OPSET}, {len(g.node)} nodes ({', '.join(ops)}), "
          f"input {in_dims}, output {out_dims}; {n} samples, largest difference from "
          f"midscale's forward {worst:.2e} (bound {tol:g})")
    if not np.all(np.isfinite(y)) or worst > tol:
        i = np.unravel_index(np.argmax(err), err.shape)
        raise SystemExit(f"FAIL: output {i}: ONNX {y[i]!r}, midscale {want[i]!r}")


if __name__ == "__main__":
    main()
