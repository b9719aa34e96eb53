#!/usr/bin/env bash
# Issue 18: fp32 conv2d layers on oneDNN by a rule of their shape
# (model.conv_kernel auto: oneDNN from 8 input channels, the direct kernel
# below). A small CNN whose first conv2d has 1 input channel and whose
# second has 8: the banner names each layer's library;
# runs are bitwise reproducible run after run, across a stop and resume
# (world 2) and on 2 threads (world 1); world 1 and 2 give the same losses
# within 1e-4 relative (world_invariance.sh's bar); im2col (the kernels
# before oneDNN) lands within the same bar of auto.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 1280 --test 256 --features 36
cat >cfg.yaml <<YAML
run: {name: convk, dir: run, seed: 5}
data: {path: data.h5}
model:
  input: [1, 6, 6]
  layers:
    - {type: conv2d, filters: 8, kernel: 3, padding: 1, activation: relu}
    - {type: conv2d, filters: 8, kernel: 3, activation: relu}
    - {type: maxpool2d, kernel: 2}
    - {type: flatten}
    - {type: dense, units: 10}
optim: {name: adamw, lr: 0.01}
train: {epochs: 2, batch_size: 64, eval_batch_size: 256}
checkpoint: {every_steps: 10}
log: {every_steps: 1, progress: false}
YAML
# 1280 / 64 = 20 steps an epoch, 40 in all.

note "A, A2: auto twice (world 2)"
run_np 2 train cfg.yaml --set run.dir=A
expect_ok
grep -q 'layer 0 (1 in-channels) direct convolution (C), layer 1 (8 in-channels) oneDNN convolution' \
  "$LAST_OUT" || { cat "$LAST_OUT"; fail "the banner does not name each conv2d layer's library"; }
run_np 2 train cfg.yaml --set run.dir=A2
expect_ok
note "B: auto, stopped at step 30, resumed"
run_np 2 train cfg.yaml --set run.dir=B --stop-at 30
expect_ok
run_np 2 train cfg.yaml --set run.dir=B --resume auto
expect_ok
note "W1: world 1; T, T2: world 1 on 2 threads, twice"
run_np 1 train cfg.yaml --set run.dir=W1
expect_ok
for run in T T2; do
  run_np 1 train cfg.yaml --set run.dir=$run --set run.threads=2
  expect_ok
done
note "I: im2col pinned (world 2)"
run_np 2 train cfg.yaml --set run.dir=I --set model.conv_kernel=im2col
expect_ok
grep -q 'layer 0 (1 in-channels) im2col + OpenBLAS sgemm, layer 1 (8 in-channels) im2col' "$LAST_OUT" || { cat "$LAST_OUT"; fail "im2col banner"; }

for run in A A2 B T T2; do
  decompress "$run/checkpoints/step-00000040.safetensors.zst" "$run.safetensors"
done
"$PYTHON" "$CHECKER" --compare A.safetensors A2.safetensors || fail "runs A and A2 differ"
"$PYTHON" "$CHECKER" --compare A.safetensors B.safetensors || fail "A and resumed B differ"
"$PYTHON" "$CHECKER" --compare T.safetensors T2.safetensors || fail "2-thread runs T and T2 differ"

"$PYTHON" - A/metrics.jsonl W1/metrics.jsonl I/metrics.jsonl <<'PY'
import json, sys
def losses(path):
    return [r["loss"] for r in map(json.loads, open(path)) if r["kind"] == "train"]
ref = losses(sys.argv[1])
assert len(ref) == 40, f"expected 40 logged steps, got {len(ref)}"
for path in sys.argv[2:]:
    got = losses(path)
    assert len(got) == 40, f"{path}: {len(got)} steps"
    worst = max(abs(a - b) / abs(a) for a, b in zip(ref, got))
    print(f"{path}: max relative loss difference over 40 steps {worst:.3g}")
    assert worst <= 1e-4, f"{path}: relative difference {worst} > 1e-4"
PY
echo "conv_kernel: ok"
