#!/usr/bin/python3
"""Cross-checks midscale's transformer language model against PyTorch.

usage: torch_seq_crosscheck.py DIR

DIR holds init.safetensors and run.safetensors written by tests/seq_dump
(see its header comment). This script builds the same model as a plain
PyTorch module tree whose state_dict keys are midscale's tensor names
(tok_emb.weight, pos_emb.weight, blocks.<k>.ln1.weight,
blocks.<k>.attn.qkv.weight, ..., ln_f.weight, head.weight, head.bias),
loads the initial parameters from the export, and asserts:

  logits of the first forward, its loss and every gradient   rel. error <= 1e-4
  the loss before each of 20 AdamW steps                     rel. error <= 1e-4
  every parameter tensor after the 20 steps                  ||c - t|| / ||t|| <= 1e-4

on the same token batches. The key bias (features D..2D of each
attn.qkv.bias) is left out of the last check: its gradient is exactly zero
(adding a constant to every key adds the same to a query's scores, which the
softmax ignores), so each side's update there is its own rounding noise
scaled up by Adam's normalisation - in PyTorch as in midscale. Its zero
gradient is checked with the other gradients. PyTorch runs in float64, midscale in float32.
GELU is the tanh approximation on both sides; layer norms use eps 1e-5;
weight decay applies to the 2-D tensors only.

The relative error of an element is |c - t| / max(|t|, 1e-3 * max|t|), t the
torch value (as in torch_crosscheck.py). Prints the largest error of each
group and exits 1 on a mismatch.
"""
import json
import os
import struct
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    sys.exit(f"FAIL: {e}: install python3-torch and python3-numpy (scripts/setup.sh)")

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
RTOL = 1e-4


def load(path):
    """A plain safetensors file, read with nothing but json and numpy."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"FAIL: {path}: {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"])
    return out


class Attention(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.h = h
        s.qkv = nn.Linear(d, 3 * d)
        s.proj = nn.Linear(d, d)

    def forward(s, x):
        b, t, d = x.shape
        q, k, v = s.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, s.h, d // s.h).transpose(1, 2) for z in (q, k, v))
        # Written out: Debian's torch 1.13 has no scaled_dot_product_attention.
        att = (q @ k.transpose(-2, -1)) / (d // s.h) ** 0.5
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        y = att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return s.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(s, d, hidden):
        super().__init__()
        s.fc = nn.Linear(d, hidden)
        s.proj = nn.Linear(hidden, d)

    def forward(s, x):
        return s.proj(F.gelu(s.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.ln1 = nn.LayerNorm(d, eps=1e-5)
        s.attn = Attention(d, h)
        s.ln2 = nn.LayerNorm(d, eps=1e-5)
        s.mlp = MLP(d, 4 * d)

    def forward(s, x):
        x = x + s.attn(s.ln1(x))
        return x + s.mlp(s.ln2(x))


class LM(nn.Module):
    def __init__(s, vocab, d, h, ctx, n_blocks, tied):
        super().__init__()
        s.tok_emb = nn.Embedding(vocab, d)
        s.pos_emb = nn.Embedding(ctx, d)
        s.blocks = nn.ModuleList(Block(d, h) for _ in range(n_blocks))
        s.ln_f = nn.LayerNorm(d, eps=1e-5)
        s.head = nn.Linear(d, vocab)
        if tied:
            s.head.weight = s.tok_emb.weight

    def forward(s, idx):
        x = s.tok_emb(idx) + s.pos_emb(torch.arange(idx.shape[1]))
        for b in s.blocks:
            x = b(x)
        return s.head(s.ln_f(x))


worst = {}


def check_norm(group, what, c, t):
    c = np.asarray(c, dtype=np.float64)
    t = t.detach().numpy() if torch.is_tensor(t) else np.asarray(t, dtype=np.float64)
    err = float(np.linalg.norm(c - t) / max(float(np.linalg.norm(t)), 1e-30))
    if err > worst.get(group, (0.0, ""))[0]:
        worst[group] = (err, what)
    if not err <= RTOL:
        sys.exit(f"FAIL: {what}: relative error of the norm {err:.3g} > {RTOL:g}")


def check(group, what, c, t):
    c = np.asarray(c, dtype=np.float64)
    t = t.detach().numpy() if torch.is_tensor(t) else np.asarray(t, dtype=np.float64)
    if c.shape != t.shape:
        sys.exit(f"FAIL: {what}: shape {c.shape} != torch {t.shape}")
    floor = 1e-3 * max(float(np.max(np.abs(t))), 1e-30)
    err = float(np.max(np.abs(c - t) / np.maximum(np.abs(t), floor)))
    if err > worst.get(group, (0.0, ""))[0]:
        worst[group] = (err, what)
    if not err <= RTOL:
        sys.exit(f"FAIL: {what}: relative error {err:.3g} > {RTOL:g}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    init, run = load(os.path.join(d, "init.safetensors")), load(os.path.join(d, "run.safetensors"))
    vocab, dim, heads, ctx, batch, steps = (int(v) for v in run["shape"])
    tied = "head.weight" not in init
    model = LM(vocab, dim, heads, ctx, 2, tied)
    params = dict(model.named_parameters())  # a tied head.weight is tok_emb.weight
    if set(params) != set(init):
        sys.exit(f"FAIL: tensor names differ: midscale only {sorted(set(init) - set(params))}, "
                 f"torch only {sorted(set(params) - set(init))}")
    with torch.no_grad():
        for name, p in params.items():
            if tuple(p.shape) != init[name].shape:
                sys.exit(f"FAIL: {name}: midscale shape {init[name].shape}, torch {tuple(p.shape)}")
            p.copy_(torch.from_numpy(init[name].astype(np.float64)))
    decay = [p for n, p in params.items() if p.dim() == 2]
    rest = [p for n, p in params.items() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    x = torch.from_numpy(run["x"].astype(np.int64))
    y = torch.from_numpy(run["y"].astype(np.int64))
    for s in range(steps):
        opt.zero_grad()
        logits = model(x[s])
        loss = F.cross_entropy(logits.reshape(-1, vocab), y[s].reshape(-1))
        loss.backward()
        check("loss", f"loss before step {s + 1}", run["loss"][s], loss)
        if s == 0:
            check("forward", "logits of the first forward", run["logits0"], logits)
            for name, p in params.items():
                check("gradients", f"gradient of {name}", run["grad0." + name], p.grad)
        opt.step()
    for name, p in params.items():
        c, t = run["final." + name], p.detach().numpy()
        if name.endswith("attn.qkv.bias"):  # without the key bias (above)
            c, t = np.delete(c, np.s_[dim:2 * dim]), np.delete(t, np.s_[dim:2 * dim])
        check_norm("adamw", f"{name} after {steps} AdamW steps", c, t)
    for g, (err, what) in worst.items():
        print(f"{g:10s} worst relative error {err:.2e} ({what})")
    print(f"OK: {'tied' if tied else 'untied'} 2-block model, {len(params)} tensors, "
          f"loss {run['loss'][0]:.4f} -> {run['loss'][-1]:.4f} over {steps} AdamW steps")


main()
