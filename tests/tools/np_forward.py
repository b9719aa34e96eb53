#!/usr/bin/python3
"""An independent NumPy forward pass of a model exported by `midscale export`,
for `midscale predict`'s test (tests/e2e/eval_predict.sh).

usage: np_forward.py MODEL.safetensors INPUT.h5 DATASET PRED.h5 [--probs] [--tol T]

Reads the weights and the resolved config that the safetensors file carries
(its __metadata__), the inputs DATASET of INPUT.h5, normalises them as the
config says (data.scale, then data.mean and data.std, scalar or per feature),
runs the layers in float64 (dense, conv2d, maxpool2d, avgpool2d, flatten,
dropout as the identity; activations none, relu, tanh, sigmoid) and compares
with PRED.h5: /logits (or /probabilities with --probs: the softmax), /argmax
where the top two outputs differ by more than the tolerance, or /outputs of
a regression. Prints the largest difference; exits 1 above T (default 1e-5).

Needs h5py, NumPy and PyYAML (Debian: python3-h5py, python3-yaml).
"""
import json
import struct
import sys

import h5py
import numpy as np
import yaml


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    tensors = {}
    for name, e in hdr.items():
        a, b = e["data_offsets"]
        tensors[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(e["shape"])
    return tensors, meta


def activation(x, name):
    if name in (None, "none"):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    sys.exit(f"np_forward.py: activation {name} is not implemented here")


def conv2d(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oc, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def pool(x, k, stride, op):
    n, c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    win = np.stack([x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                    for i in range(k) for j in range(k)])
    return win.max(axis=0) if op == "max" else win.mean(axis=0)


def forward(tensors, cfg, x):
    shape = cfg["model"].get("input") or []
    if shape:
        x = x.reshape((x.shape[0],) + tuple(shape))
    for i, layer in enumerate(cfg["model"]["layers"]):
        kind = layer["type"]
        w, b = tensors.get(f"layers.{i}.weight"), tensors.get(f"layers.{i}.bias")
        if kind == "dense":
            x = x.reshape(x.shape[0], -1) @ w.astype(np.float64).T + b
        elif kind == "conv2d":
            if x.ndim == 3:
                x = x[:, None]
            x = conv2d(x, w.astype(np.float64), b, layer.get("stride") or 1, layer.get("padding", 0))
        elif kind in ("maxpool2d", "avgpool2d"):
            k = layer["kernel"]
            x = pool(x, k, layer.get("stride") or k, kind[:3])
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "dropout":
            pass
        elif kind == "activation":
            pass
        else:
            sys.exit(f"np_forward.py: layer type {kind} is not implemented here")
        x = activation(x, layer.get("activation"))
    return x.reshape(x.shape[0], -1)


def main():
    args = sys.argv[1:]
    probs = "--probs" in args
    tol = 1e-5
    if "--tol" in args:
        tol = float(args[args.index("--tol") + 1])
    model, data, dataset, pred = [a for a in args if not a.startswith("--")][:4]
    tensors, meta = load_safetensors(model)
    cfg = yaml.safe_load(meta["config"])
    d = cfg["data"]
    x = h5py.File(data, "r")[dataset][...].astype(np.float64)
    x = x.reshape(x.shape[0], -1) * float(d.get("scale", 1))
    if d.get("mean"):
        x = x - np.array(d["mean"], dtype=np.float64)
    if d.get("std"):
        x = x / np.array(d["std"], dtype=np.float64)
    z = forward(tensors, cfg, x)
    out = h5py.File(pred, "r")
    loss = cfg["model"].get("loss", "softmax_cross_entropy")
    if loss in ("mse", "mae"):
        got, want, what = out["outputs"][...], z, "outputs"
    elif probs and loss == "softmax_cross_entropy":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        got, want, what = out["probabilities"][...], e / e.sum(axis=1, keepdims=True), "probabilities"
    elif probs:
        got, want, what = out["probabilities"][...], 1 / (1 + np.exp(-z)), "probabilities"
    else:
        got, want, what = out["logits"][...], z, "logits"
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = float(np.abs(got - want).max())
    print(f"{what}: {got.shape[0]} rows, max |midscale - numpy| = {diff:.2e} (limit {tol:g})")
    ok = diff <= tol
    if loss == "softmax_cross_entropy":
        top2 = np.sort(z, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > tol
        am = out["argmax"][...]
        bad = int((am[clear] != z.argmax(axis=1)[clear]).sum())
        print(f"argmax: {bad} of {int(clear.sum())} rows with a clear maximum differ")
        ok = ok and bad == 0 and am.dtype == np.int32
    sys.exit(0 if ok else 1)


main()
