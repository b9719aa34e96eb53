#!/usr/bin/env bash
# Issue 7, point 3: the Fashion-MNIST CNN of configs/fashion_mnist_cnn.yaml
# (two conv + max-pool blocks, a dense head, AdamW + cosine) reaches >= 0.91
# test accuracy on 2 ranks (the published 2-conv figure is 0.916); also
# checks that the run reports top-2 accuracy and that its checkpoint holds
# AdamW's two moment arenas for every conv and dense tensor.
# MS_PRECISION=bf16 (ctest's e2e_fashion_mnist_cnn_bf16) holds it to the same bar in bf16
# mixed precision (issue 18).
source "$(dirname "$0")/lib.sh"
export RUN_TIMEOUT=1500
fashion_data fashion_mnist.h5
run_np 2 train "$MS_SOURCE_DIR/configs/fashion_mnist_cnn.yaml" \
  --set data.path=fashion_mnist.h5 --set run.dir=run --set log.every_steps=500 \
  --set model.precision="${MS_PRECISION:-fp32}"
expect_ok
grep -E '^(eval|final|done)' "$LAST_OUT"
grep -q 'top-2 0\.9' "$LAST_OUT" || fail "no top-2 accuracy in the eval lines"
"$PYTHON" - run/metrics.jsonl <<'PY'
import json, sys
s = [r for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "summary"][-1]
print(f"test accuracy {s['test_acc']:.4f} in {s['seconds']:.1f} s ({s['samples_per_s']:.0f} samples/s)")
assert s["test_acc"] >= 0.91, f"test accuracy {s['test_acc']} < 0.91"
PY
ck=$(ls run/checkpoints/step-*.safetensors.zst | tail -n 1)
"$MIDSCALE" inspect "$ck" >inspect.txt || { cat inspect.txt; fail "inspect refused $ck"; }
for t in layers.0.weight layers.2.weight layers.5.weight layers.7.bias; do
  for a in "" optim/exp_avg/ optim/exp_avg_sq/; do
    grep -q "$a$t" inspect.txt || { cat inspect.txt; fail "no tensor $a$t in $ck"; }
  done
done
grep -E -q 'layers\.0\.weight +F32 +\[16, 1, 3, 3\]' inspect.txt ||
  { cat inspect.txt; fail "conv weight shape"; }
echo "fashion_mnist_cnn: ok"
