#!/usr/bin/python3
"""PyTorch DistributedDataParallel (gloo) on the model, data and per-rank
batch of a midscale run, for scripts/bench/ddp.sh.

  ddp_torch.py --config RESOLVED.yaml --world W --batch B --warmup N --steps N [--autocast]

RESOLVED.yaml is midscale's config.resolved.yaml of the same benchmark
case: the layer list (dense, conv2d, maxpool2d, avgpool2d, flatten,
activation, dropout), data.path/train_x/train_y/scale and the optimizer
(sgd, adam or adamw with their keys) are taken from it, so both programs
train the same model on the same samples. W processes on this host, one
thread each (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and torch.set_num_threads
are 1, set before torch is imported). Each step: gather the rank's slice of
a shuffled global batch from the in-memory data set, forward, cross-entropy,
backward (DDP's bucketed gloo allreduce), optimizer step. After the warm-up steps,
the next N run as five intervals between barriers, and the median
interval counts (the slowest rank's time). --autocast runs the forward and
the loss under torch.autocast("cpu", dtype=torch.bfloat16) (bf16 mixed
precision: bf16 matmuls and convolutions, fp32 weights, gradients and
optimizer), the counterpart of midscale's model.precision bf16. Prints one
JSON line: {"world", "batch", "samples_per_s", "ms_per_step", "blas_core",
"torch", "precision"}.
"""
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import ctypes
import json
import socket
import sys
import time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import yaml


def blas_core():
    """The OpenBLAS kernel this process loaded (torch links the system one)."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "unknown"


def chw(shape):
    """midscale's per-sample shapes: (F) is (F, 1, 1), (H, W) is (1, H, W)."""
    shape = list(shape)
    return tuple(shape + [1, 1]) if len(shape) == 1 else tuple([1] + shape) if len(shape) == 2 \
        else tuple(shape)


def build(cfg, shape):
    """The nn.Sequential of midscale's model.layers (NCHW, dense flattens)."""
    c, h, w = chw(shape)
    layers, flat = [], False
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": lambda: nn.GELU("tanh")}
    for l in cfg["model"]["layers"]:
        t = l.get("type", "dense")
        if t == "dense":
            if not flat:
                layers.append(nn.Flatten())
                flat, c, h, w = True, c * h * w, 1, 1
            layers.append(nn.Linear(c, l["units"]))
            c = l["units"]
        elif t == "conv2d":
            s, p, k = l.get("stride") or 1, l.get("padding") or 0, l["kernel"]
            layers.append(nn.Conv2d(c, l["filters"], k, stride=s, padding=p))
            c, h, w = l["filters"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif t in ("maxpool2d", "avgpool2d"):
            k, s = l["kernel"], l.get("stride") or l["kernel"]
            layers.append((nn.MaxPool2d if t == "maxpool2d" else nn.AvgPool2d)(k, s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif t == "flatten":
            layers.append(nn.Flatten())
            flat, c, h, w = True, c * h * w, 1, 1
        elif t == "dropout":
            layers.append(nn.Dropout(l.get("rate", 0.0)))
        elif t != "activation":
            raise SystemExit(f"ddp_torch.py: layer type {t} is not supported here")
        act = l.get("activation", "none")
        if act in acts:
            layers.append(acts[act]())
        elif act not in ("none", None):
            raise SystemExit(f"ddp_torch.py: activation {act} is not supported here")
    return nn.Sequential(*layers), (c, h, w)


def worker(rank, args, cfg, port, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.world)
    d = cfg["data"]
    with h5py.File(d["path"], "r") as f:
        x = torch.from_numpy(np.asarray(f[d["train_x"]]))
        y = torch.from_numpy(np.asarray(f[d["train_y"]]).astype(np.int64))
    shape = chw(cfg["model"].get("input") or list(x.shape[1:]))
    x = x.reshape((x.shape[0],) + shape)
    scale = float(d.get("scale", 1.0))
    torch.manual_seed(int(cfg["run"]["seed"]))
    model, _ = build(cfg, shape)
    ddp = nn.parallel.DistributedDataParallel(model)
    # PyYAML reads 1e-08 (no dot) as a string: numbers go through float().
    o = {k: (v if k == "name" or isinstance(v, bool) else float(v)) for k, v in cfg["optim"].items()}
    if o["name"] == "sgd":
        opt = torch.optim.SGD(ddp.parameters(), lr=o["lr"], momentum=o["momentum"],
                              nesterov=bool(o["nesterov"]), weight_decay=o["weight_decay"])
    else:
        kind = torch.optim.AdamW if o["name"] == "adamw" else torch.optim.Adam
        opt = kind(ddp.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                   weight_decay=o["weight_decay"])
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(x.shape[0], generator=g)
    gb, b = args.batch * args.world, args.batch
    steps_per_epoch = x.shape[0] // gb

    def step(i):
        j = i % steps_per_epoch
        idx = perm[j * gb + rank * b: j * gb + (rank + 1) * b]
        xb = x[idx].to(torch.float32).mul_(scale)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast):
            out = ddp(xb)
            loss = F.cross_entropy(out, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(args.warmup):
        step(i)
    # Five intervals of steps / 5, as midscale's log intervals; the median
    # interval counts (the slowest rank's time of each).
    per = max(1, args.steps // 5)
    times = []
    for k in range(5):
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(per):
            step(args.warmup + k * per + i)
        dist.barrier()
        dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)
        times.append(dt.item())
    t = sorted(times)[2]
    if rank == 0:
        queue.put({"world": args.world, "batch": b, "ms_per_step": 1e3 * t / per,
                   "samples_per_s": gb * per / t, "blas_core": blas_core(),
                   "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "precision": "bf16-autocast" if args.autocast else "fp32"})
    dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--batch", type=int, required=True, help="per rank")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--autocast", action="store_true",
                   help='forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)')
    args = p.parse_args()
    cfg = yaml.safe_load(open(args.config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    # Keep the context: its error queues must outlive the workers' start.
    context = mp.start_processes(worker, args=(args, cfg, port, queue), nprocs=args.world,
                                 join=False, start_method="spawn")
    procs = context.processes
    # Wait for rank 0's result, but not for ever: a worker that dies would
    # leave the others blocked in a collective.
    while queue.empty():
        dead = [p for p in procs if not p.is_alive() and p.exitcode != 0]
        if dead:
            try:
                context.join(timeout=1)  # raises with the worker's traceback
            finally:
                for p in procs:
                    p.terminate()
            raise SystemExit(f"ddp_torch.py: a worker exited with code {dead[0].exitcode}")
        time.sleep(0.2)
    result = queue.get()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
