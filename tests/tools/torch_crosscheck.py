#!/usr/bin/python3
"""Cross-checks midscale's kernels and optimizers against PyTorch.

usage: torch_crosscheck.py DUMP.safetensors

DUMP is written by tests/layers_dump (see its header comment for the
contents). This script rebuilds every computation in PyTorch from
the same inputs and asserts that the C results match:

  kernels, losses and gradients   relative error <= 1e-4 (torch in float64)
  optimizer trajectories, lrs     relative error <= 1e-5 (torch in float32,
                                  CROSSCHECK_OPT_DTYPE=float64 to change)
  bf16 mixed precision (oneDNN    relative error <= 2e-2 against
  dense and conv2d)               torch.autocast("cpu", dtype=torch.bfloat16),
                                  measured over each tensor:
                                  ||c - t|| / ||t|| (bf16 keeps 8 bits)

The relative error of an element is |c - t| / max(|t|, 1e-3 * max|t|), t the
torch value: near-zero elements are measured against a thousandth of the
tensor's scale instead of their own magnitude. Prints the largest error of
each group and exits 1 on the first mismatch.

Needs PyTorch and NumPy for this interpreter: on Debian/Ubuntu the packages
python3-torch and python3-numpy (scripts/setup.sh installs them), used from
/usr/bin/python3.
"""
import json
import os
import struct
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
try:
    import numpy as np
except ImportError:
    sys.exit(f"FAIL: NumPy is not importable from {sys.executable}: install the "
             "Debian package python3-numpy (apt-get install python3-numpy, or scripts/setup.sh)")
try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(f"FAIL: PyTorch is not importable from {sys.executable}: install the "
             "Debian package python3-torch (apt-get install python3-torch, or scripts/setup.sh)")

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

KERNEL_RTOL = 1e-4
OPTIM_RTOL = 1e-5
# The optimizers run in float32 like the C arenas, so that both sides round
# alike: against float64, elements near zero drift by float32's rounding
# (1e-7 absolute), which is more than 1e-5 of their own size.
OPT_DTYPE = getattr(torch, os.environ.get("CROSSCHECK_OPT_DTYPE", "float32"))
BF16_RTOL = 2e-2
worst = {"kernels": (0.0, ""), "optim": (0.0, ""), "bf16": (0.0, "")}


def load(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    dtypes = {"F32": np.float32, "F64": np.float64, "I32": np.int32}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


D = load(sys.argv[1])


def T(name, grad=False):
    return torch.tensor(D[name].astype(np.float64), requires_grad=grad)


def check(what, c, t, rtol, group="kernels"):
    c = np.asarray(c, dtype=np.float64)
    t = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
    if c.shape != t.shape:
        sys.exit(f"FAIL: {what}: shape {c.shape} vs torch {t.shape}")
    floor = max(1e-3 * float(np.max(np.abs(t))) if t.size else 0.0, 1e-30)
    err = float(np.max(np.abs(c - t) / np.maximum(np.abs(t), floor))) if t.size else 0.0
    worst[group] = max(worst[group], (err, what))
    if not err <= rtol:
        i = int(np.argmax(np.abs(c - t) / np.maximum(np.abs(t), floor)))
        sys.exit(f"FAIL: {what}: relative error {err:.3g} > {rtol:g} "
                 f"(element {i}: C {c.flat[i]!r}, torch {t.flat[i]!r})")


# ---- the network: conv -> relu -> maxpool -> flatten -> dense -> each loss ----
def net_forward():
    x, wc, bc = T("net.x", True), T("net.conv_w", True), T("net.conv_b", True)
    wd, bd = T("net.dense_w", True), T("net.dense_b", True)
    conv = F.conv2d(x, wc, bc, stride=2, padding=1)
    pool = F.max_pool2d(F.relu(conv), kernel_size=2, stride=1)
    logits = pool.reshape(pool.shape[0], -1) @ wd.T + bd
    logits.retain_grad()
    return (x, wc, bc, wd, bd), conv, pool, logits


leaves, conv, pool, logits = net_forward()
check("net.conv_out", D["net.conv_out"], conv, KERNEL_RTOL)
check("net.pool_out", D["net.pool_out"], pool, KERNEL_RTOL)
check("net.logits", D["net.logits"], logits, KERNEL_RTOL)

labels = torch.tensor(D["net.labels"].astype(np.int64))
targets, reg = T("net.targets"), T("net.reg_targets")
B, K = D["net.logits"].shape
# The C losses are sums over rows of per-row losses; BCE, MSE and MAE take
# the mean over the K outputs of a row (layers.h).
losses = {
    "xent_smooth": lambda z: F.cross_entropy(z, labels, label_smoothing=0.1, reduction="sum"),
    "bce": lambda z: F.binary_cross_entropy_with_logits(z, targets, reduction="sum") / K,
    "mse": lambda z: F.mse_loss(z, reg, reduction="sum") / K,
    "mae": lambda z: F.l1_loss(z, reg, reduction="sum") / K,
}
for name, fn in losses.items():
    leaves, _, _, logits = net_forward()
    loss = fn(logits)
    (loss / B).backward()  # the C gradients carry scale = 1 / B
    check(f"net.{name}.loss", D[f"net.{name}.loss"], loss.reshape(1), KERNEL_RTOL)
    check(f"net.{name}.dlogits", D[f"net.{name}.dlogits"], logits.grad, KERNEL_RTOL)
    for leaf, key in zip(leaves, ["x", "conv_w", "conv_b", "dense_w", "dense_b"]):
        check(f"net.{name}.{key}", D[f"net.{name}.{key}"], leaf.grad, KERNEL_RTOL)

top = [int((torch.topk(logits, k, dim=1).indices == labels[:, None]).any(1).sum()) for k in (1, 2, 3)]
if list(D["topk.correct_k123"]) != top:
    sys.exit(f"FAIL: topk: C {list(D['topk.correct_k123'])} vs torch {top}")

# ---- kernels one at a time ----
r = T("unit.r")
gamma, beta = T("unit.layernorm.gamma", True), T("unit.layernorm.beta", True)
units = {
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "gelu": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=1),
    "layernorm": lambda x: F.layer_norm(x, (x.shape[1],), gamma, beta, eps=1e-5),
}
for name, fn in units.items():
    x = T("unit.x", True)
    y = fn(x)
    (y * r).sum().backward()
    check(f"unit.{name}.y", D[f"unit.{name}.y"], y, KERNEL_RTOL)
    check(f"unit.{name}.dx", D[f"unit.{name}.dx"], x.grad, KERNEL_RTOL)
check("unit.layernorm.dgamma", D["unit.layernorm.dgamma"], gamma.grad, KERNEL_RTOL)
check("unit.layernorm.dbeta", D["unit.layernorm.dbeta"], beta.grad, KERNEL_RTOL)

img = T("unit.avgpool.x", True)
po = F.avg_pool2d(img, kernel_size=3, stride=2)
(po * T("unit.avgpool.r")).sum().backward()
check("unit.avgpool.y", D["unit.avgpool.y"], po, KERNEL_RTOL)
check("unit.avgpool.dx", D["unit.avgpool.dx"], img.grad, KERNEL_RTOL)

# Dropout's mask comes from midscale's own hash, which torch cannot draw:
# check the inverted scaling and that the backward used the forward's mask.
p = 0.3
y = D["unit.dropout.y"]
mask = (y != 0).astype(np.float64)
check("unit.dropout.y", y, D["unit.x"] * mask / (1 - p), KERNEL_RTOL)
check("unit.dropout.dx", D["unit.dropout.dx"], D["unit.r"] * mask / (1 - p), KERNEL_RTOL)

# ---- optimizers over 20 steps of a fixed gradient sequence ----
def run_torch(run, make):
    p0, grads = D[f"opt.{run}.p0"], D[f"opt.{run}.grads"]
    params, opt, sched = make(p0)
    lrs, traj = [], []
    for g in grads:
        lrs.append(opt.param_groups[0]["lr"])
        offset = 0
        for prm in params:
            prm.grad = torch.tensor(g[offset:offset + prm.numel()], dtype=prm.dtype)
            offset += prm.numel()
        opt.step()
        if sched is not None:
            sched.step()
        traj.append(torch.cat([prm.detach() for prm in params]).numpy().copy())
    check(f"opt.{run}.lr", D[f"opt.{run}.lr"], np.array(lrs), OPTIM_RTOL, "optim")
    check(f"opt.{run}.params", D[f"opt.{run}.params"], np.array(traj), OPTIM_RTOL, "optim")


def one(p0):
    return [torch.tensor(p0, dtype=OPT_DTYPE, requires_grad=True)]


def sgd(nesterov):
    def make(p0):
        ps = one(p0)
        return ps, torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01,
                                   nesterov=nesterov), None
    return make


def adam_step(p0):
    ps = one(p0)
    opt = torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    return ps, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)


def adamw_onecycle_mask(p0):
    # The decay mask [1, 1, 1, 1, 0, 0] as two parameter groups.
    a = torch.tensor(p0[:4], dtype=OPT_DTYPE, requires_grad=True)
    b = torch.tensor(p0[4:], dtype=OPT_DTYPE, requires_grad=True)
    opt = torch.optim.AdamW([{"params": [a], "weight_decay": 0.05},
                             {"params": [b], "weight_decay": 0.0}],
                            lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=20,
                                                cycle_momentum=False)
    return [a, b], opt, sched


def adamw_warmup_cosine(p0):
    ps = one(p0)
    opt = torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 3, end_factor=1.0,
                                             total_iters=2)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=17, eta_min=0.001)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[3])
    return ps, opt, sched


# ---- bf16 mixed precision: dense -> relu -> dense under autocast ----
def B16(name, grad=False):
    return torch.tensor(D[name], dtype=torch.float32, requires_grad=grad)


def check_norm(what, c, t, rtol):
    c = np.asarray(c, dtype=np.float64)
    t = t.detach().double().numpy()
    if c.shape != t.shape:
        sys.exit(f"FAIL: {what}: shape {c.shape} vs torch {t.shape}")
    err = float(np.linalg.norm(c - t) / max(np.linalg.norm(t), 1e-30))
    worst["bf16"] = max(worst["bf16"], (err, what))
    if not err <= rtol:
        sys.exit(f"FAIL: {what}: relative error {err:.3g} > {rtol:g} against torch.autocast bf16")


bx, bw1, bb1 = B16("bf16.x", True), B16("bf16.w1", True), B16("bf16.b1", True)
bw2, bb2 = B16("bf16.w2", True), B16("bf16.b2", True)
with torch.autocast("cpu", dtype=torch.bfloat16):
    bh = F.linear(bx, bw1, bb1)
    bout = F.linear(F.relu(bh), bw2, bb2)
if bout.dtype != torch.bfloat16:
    sys.exit(f"FAIL: torch.autocast did not run the linear layers in bf16 ({bout.dtype})")
bout.float().backward(B16("bf16.dout"))
check_norm("bf16.h", D["bf16.h"], bh, BF16_RTOL)
check_norm("bf16.out", D["bf16.out"], bout, BF16_RTOL)
for key, leaf in [("dx", bx), ("dw1", bw1), ("db1", bb1), ("dw2", bw2), ("db2", bb2)]:
    check_norm(f"bf16.{key}", D[f"bf16.{key}"], leaf.grad, BF16_RTOL)

cx, cw, cb = B16("bf16.conv.x", True), B16("bf16.conv.w", True), B16("bf16.conv.b", True)
with torch.autocast("cpu", dtype=torch.bfloat16):
    cy = F.conv2d(cx, cw, cb, stride=2, padding=1)
if cy.dtype != torch.bfloat16:
    sys.exit(f"FAIL: torch.autocast did not run conv2d in bf16 ({cy.dtype})")
cy.float().backward(B16("bf16.conv.dy"))
check_norm("bf16.conv.y", D["bf16.conv.y"], cy, BF16_RTOL)
for key, leaf in [("dx", cx), ("dw", cw), ("db", cb)]:
    check_norm(f"bf16.conv.{key}", D[f"bf16.conv.{key}"], leaf.grad, BF16_RTOL)

import warnings  # noqa: E402  (SequentialLR warns about step(epoch) internally)

warnings.filterwarnings("ignore", category=UserWarning)
run_torch("sgd", sgd(False))
run_torch("sgd_nesterov", sgd(True))
run_torch("adam_step", adam_step)
run_torch("adamw_onecycle_mask", adamw_onecycle_mask)
run_torch("adamw_warmup_cosine", adamw_warmup_cosine)

print(f"torch {torch.__version__}: kernels and gradients match, max relative error "
      f"{worst['kernels'][0]:.3g} in {worst['kernels'][1]} (limit {KERNEL_RTOL:g}); "
      f"optimizers and schedules match, max relative error {worst['optim'][0]:.3g} in "
      f"{worst['optim'][1]} (limit {OPTIM_RTOL:g}); bf16 matches torch.autocast, relative "
      f"error {worst['bf16'][0]:.3g} in {worst['bf16'][1]} (limit {BF16_RTOL:g})")
