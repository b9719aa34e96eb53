#!/usr/bin/python3
"""configs/char_lm.yaml trained by PyTorch DDP (gloo), for scripts/bench/char_lm.sh.

  torch_char_lm.py --config RESOLVED.yaml --world W [--steps N] [--log-every L]

RESOLVED.yaml is midscale's config.resolved.yaml of the run to compare
with; from it come the data (data.path, train_x, test_x, seq_len, stride),
the model (embedding dim and vocab, the number of transformer_block layers,
their heads/hidden/eps, tie_embeddings), the recipe (optim.lr, beta1,
beta2, eps, weight_decay, clip_norm; schedule warmup_steps, min_lr_ratio;
train.batch_size, the global batch; train.max_steps unless --steps) and
run.seed. The model is tests/tools/torch_seq_crosscheck.py's module tree
(imported from it, not copied), initialised as midscale does (README,
"Sequence models": normal std 0.02, the two projections into the residual
stream 0.02 / sqrt(2 * blocks), biases 0, gains 1), in float32.

The recipe is midscale's: AdamW with weight decay on the 2-D tensors only,
the global gradient norm clipped to clip_norm, and the learning rate of
trainer/nn/optim.c's schedule_lr_at: a linear warmup lr * (s + 1) / warmup,
then a cosine from lr down to lr * min_lr_ratio over the remaining
max_steps - warmup steps. The data are midscale's windows (data/tokens.c):
window i starts at token i * stride of the stream and holds seq_len inputs
and the seq_len next tokens as labels; each epoch is PyTorch's own shuffle
of all windows (torch.randperm, seed run.seed + epoch), cut into global
batches (the remainder dropped), rank r taking the r-th slice of each.

W processes on this host, one thread each (OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and torch.set_num_threads are 1, as midscale's ranks with
run.threads 1). Throughput: the time of each interval of --log-every steps
between barriers (the slowest rank's), tokens/s = global batch * seq_len *
steps / time; the first interval (start-up, allocator warm-up) is left out
and the median of the others is reported. After the last step every test
window is evaluated once (split over the ranks, sums reduced): the mean
per-window cross-entropy in nats, as midscale's eval. Prints one JSON line:
{"world", "steps", "val_loss", "val_bits_per_char", "tokens_per_s",
"ms_per_step", "train_loss", "seconds", "torch", "threads", "blas_core"}.
"""
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import ctypes
import json
import math
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def crosscheck_module():
    """tests/tools/torch_seq_crosscheck.py's classes, without running its main()."""
    path = os.path.join(ROOT, "tests", "tools", "torch_seq_crosscheck.py")
    src = open(path).read()
    src = src[:src.rindex("\nmain()")]  # the module ends with a bare main() call
    mod = type(sys)("torch_seq_crosscheck")
    mod.__file__ = path
    exec(compile(src, path, "exec"), mod.__dict__)
    torch.set_default_dtype(torch.float32)  # the cross-check runs in float64
    return mod


def blas_core():
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "unknown"


def lr_at(step, lr, warm, min_ratio, total):
    """trainer/nn/optim.c: schedule_lr_at with the cosine main_lr."""
    def main_lr(s, t):
        x = min(s / t, 1.0) if t > 0 else 1.0
        floor = lr * min_ratio
        return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * x))
    if step < warm:
        return main_lr(0, total - warm) * (step + 1) / warm
    return main_lr(step - warm, total - warm)


def windows(tokens, seq_len, stride):
    n = (len(tokens) - seq_len - 1) // stride + 1
    idx = torch.arange(n)[:, None] * stride + torch.arange(seq_len + 1)[None, :]
    return torch.from_numpy(tokens.astype(np.int64))[idx]  # (n, seq_len + 1)


def build_model(mod, cfg, seq_len):
    layers = cfg["model"]["layers"]
    emb = next(l for l in layers if l["type"] == "embedding")
    blocks = [l for l in layers if l["type"] == "transformer_block"]
    d, vocab, nb = int(emb["dim"]), int(emb["vocab"]), len(blocks)
    heads = int(blocks[0]["heads"])
    for b in blocks:
        if int(b.get("hidden") or 4 * d) != 4 * d or float(b.get("eps") or 1e-5) != 1e-5 \
                or b.get("causal", True) is False:
            raise SystemExit("torch_char_lm.py: only hidden 4*D, eps 1e-5, causal blocks")
    tied = bool(cfg["model"].get("tie_embeddings", False))
    model = mod.LM(vocab, d, heads, seq_len, nb, tied)
    std, proj_std = 0.02, 0.02 / math.sqrt(2 * nb)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, 0.0, proj_std)
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("weight"):  # the 1-D weights are layer-norm gains
                p.fill_(1.0)
            else:
                p.zero_()
    return model, vocab


def worker(rank, args, cfg, port, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.world)
    t_start = time.perf_counter()
    mod = crosscheck_module()
    d = cfg["data"]
    seq_len = int(d["seq_len"])
    stride = int(d.get("stride") or 0) or seq_len
    with h5py.File(d["path"], "r") as f:
        train = windows(np.asarray(f[d["train_x"]]).reshape(-1), seq_len, stride)
        test = windows(np.asarray(f[d["test_x"]]).reshape(-1), seq_len, stride)
    seed = int(cfg["run"]["seed"])
    torch.manual_seed(seed)
    model, vocab = build_model(mod, cfg, seq_len)
    ddp = nn.parallel.DistributedDataParallel(model)
    o = {k: (v if k == "name" or isinstance(v, bool) else float(v)) for k, v in cfg["optim"].items()}
    if o["name"] != "adamw":
        raise SystemExit("torch_char_lm.py: optim.name must be adamw")
    named = list(model.named_parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for _, p in named if p.dim() == 2], "weight_decay": o["weight_decay"]},
         {"params": [p for _, p in named if p.dim() != 2], "weight_decay": 0.0}],
        lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o.get("eps", 1e-8))
    sch = cfg["schedule"]
    if sch.get("name") != "cosine":
        raise SystemExit("torch_char_lm.py: schedule.name must be cosine")
    warm, min_ratio = int(sch.get("warmup_steps") or 0), float(sch.get("min_lr_ratio") or 0.0)
    steps = args.steps or int(cfg["train"]["max_steps"])
    total = int(cfg["train"]["max_steps"]) if args.schedule_steps == 0 else args.schedule_steps
    clip = float(o.get("clip_norm") or 0.0)
    gb = int(cfg["train"]["batch_size"])
    b = gb // args.world
    per_epoch = train.shape[0] // gb
    perm = None

    ddp.train()
    times, losses = [], []
    dist.barrier()
    t0 = time.perf_counter()
    for step in range(steps):
        j = step % per_epoch
        if j == 0:
            perm = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(
                seed + step // per_epoch))
        w = train[perm[j * gb + rank * b: j * gb + (rank + 1) * b]]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, o["lr"], warm, min_ratio, total)
        logits = ddp(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % args.log_every == 0:
            dist.barrier()
            dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
            dist.all_reduce(dt, op=dist.ReduceOp.MAX)
            times.append(dt.item())
            if rank == 0:
                print(f"step {step + 1} loss {sum(losses[-args.log_every:]) / args.log_every:.4f} "
                      f"{gb * seq_len * args.log_every / dt.item():.0f} tokens/s",
                      file=sys.stderr, flush=True)
            t0 = time.perf_counter()
    # The evaluation: every test window once, the ranks' shares summed.
    ddp.eval()
    s = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        mine = test[rank::args.world]
        for k in range(0, mine.shape[0], 256):
            w = mine[k:k + 256]
            logits = model(w[:, :-1])
            per = F.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1),
                                  reduction="none").view(w.shape[0], -1).mean(dim=1)
            s += torch.tensor([per.double().sum().item(), float(w.shape[0])], dtype=torch.float64)
    dist.all_reduce(s)
    val = (s[0] / s[1]).item()
    rates = times[1:] or times
    t = sorted(rates)[len(rates) // 2]
    if rank == 0:
        queue.put({"world": args.world, "steps": steps, "val_loss": val,
                   "val_bits_per_char": val / math.log(2), "test_windows": int(s[1].item()),
                   "tokens_per_s": gb * seq_len * args.log_every / t,
                   "ms_per_step": 1e3 * t / args.log_every,
                   "train_loss": sum(losses[-args.log_every:]) / min(len(losses), args.log_every),
                   "seconds": time.perf_counter() - t_start, "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "blas_core": blas_core()})
    dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="default train.max_steps")
    p.add_argument("--schedule-steps", type=int, default=0,
                   help="the schedule's total steps (default train.max_steps)")
    p.add_argument("--log-every", type=int, default=50)
    args = p.parse_args()
    cfg = yaml.safe_load(open(args.config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
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
            raise SystemExit(f"torch_char_lm.py: a worker exited with code {dead[0].exitcode}")
        time.sleep(0.2)
    result = queue.get()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
