#!/usr/bin/python3
"""Writes a linear-regression dataset for configs/linear_regression.yaml and
prints the least-squares solution NumPy finds for it.

usage: make_regression.py OUT.h5 [--train N] [--test N] [--features F]
                          [--targets T] [--noise S] [--seed K]

Inputs x ~ N(0, 1) (float32, (N, F)); targets y = x @ W^T + b + noise,
noise ~ N(0, S^2) (float32, (N, T)), with W (T, F) and b (T) drawn from the
seed. Groups /train and /test, datasets "x" and "y", chunked along the
samples and gzip-compressed like midscale's own converters.

The last line of output is JSON: {"weight": W_hat, "bias": b_hat} — the
ordinary least-squares fit of the TRAINING set (numpy.linalg.lstsq on
[x, 1]), which a model trained to convergence with the MSE loss must match.
Needs h5py and NumPy (Debian: python3-h5py, python3-numpy, from
/usr/bin/python3).
"""
import argparse
import json
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    sys.exit(f"FAIL: {e}: install python3-h5py and python3-numpy (Debian) "
             "and run this with /usr/bin/python3")

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--train", type=int, default=4096)
ap.add_argument("--test", type=int, default=1024)
ap.add_argument("--features", type=int, default=8)
ap.add_argument("--targets", type=int, default=1)
ap.add_argument("--noise", type=float, default=0.1)
ap.add_argument("--seed", type=int, default=7)
a = ap.parse_args()

rng = np.random.default_rng(a.seed)
W = rng.normal(size=(a.targets, a.features))
b = rng.normal(size=a.targets)


def split(n):
    x = rng.normal(size=(n, a.features)).astype(np.float32)
    y = (x.astype(np.float64) @ W.T + b + a.noise * rng.normal(size=(n, a.targets)))
    return x, y.astype(np.float32)


with h5py.File(a.out, "w") as f:
    for name, n in (("train", a.train), ("test", a.test)):
        x, y = split(n)
        g = f.create_group(name)
        g.create_dataset("x", data=x, chunks=(min(n, 4096), a.features), compression="gzip",
                         compression_opts=1)
        g.create_dataset("y", data=y, chunks=(min(n, 4096), a.targets))
        if name == "train":
            A = np.hstack([x.astype(np.float64), np.ones((n, 1))])
            sol, *_ = np.linalg.lstsq(A, y.astype(np.float64), rcond=None)
            fit = {"weight": sol[:-1].T.tolist(), "bias": sol[-1].tolist()}
print(f"wrote {a.out}: {a.train} train + {a.test} test samples, {a.features} features, "
      f"{a.targets} target(s), noise {a.noise}")
print(json.dumps(fit))
