#!/usr/bin/env bash
# Issue 18: model.precision. bf16 runs are bitwise reproducible, run after
# run and across a stop and resume (same world size and threads), and land
# near the fp32 run; fp32 stays on OpenBLAS, and `auto` on a CPU without
# native bf16 (oneDNN capped at AVX2) is the fp32 run, bit for bit.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 2000 --test 300 --features 20
smoke_config cfg.yaml data.h5 run
# 2000 samples / batch 64 = 31 steps an epoch; 62 in two epochs.
bf16=(--set model.precision=bf16)

note "A, A2: bf16 twice"
run_np 2 train cfg.yaml "${bf16[@]}" --set run.dir=A
expect_ok
run_np 2 train cfg.yaml "${bf16[@]}" --set run.dir=A2
expect_ok

note "B: bf16, stop after the first epoch, resume"
run_np 2 train cfg.yaml "${bf16[@]}" --set run.dir=B --stop-at 31
expect_ok
run_np 2 train cfg.yaml "${bf16[@]}" --set run.dir=B --resume auto
expect_ok

note "F: fp32; G: auto with oneDNN capped at AVX2 (no native bf16)"
run_np 2 train cfg.yaml --set run.dir=F
expect_ok
ONEDNN_MAX_CPU_ISA=AVX2 run_np 2 train cfg.yaml --set run.dir=G --set model.precision=auto
expect_ok

note "H: explicit bf16 with oneDNN capped at AVX2 runs (emulated: bf16 rounding, fp32 products)"
ONEDNN_MAX_CPU_ISA=AVX2 run_np 2 train cfg.yaml "${bf16[@]}" --set run.dir=H
expect_ok

for run in A A2 B F G H; do
  decompress "$run/checkpoints/step-00000062.safetensors.zst" "$run.safetensors"
done
"$PYTHON" "$CHECKER" --compare A.safetensors A2.safetensors || fail "bf16 runs A and A2 differ"
"$PYTHON" "$CHECKER" --compare A.safetensors B.safetensors || fail "bf16 A and resumed B differ"
"$PYTHON" "$CHECKER" --compare F.safetensors G.safetensors || fail "auto under AVX2 is not fp32"
if "$PYTHON" "$CHECKER" --compare A.safetensors F.safetensors >/dev/null 2>&1; then
  fail "bf16 and fp32 gave identical parameters: bf16 did not run"
fi

"$PYTHON" - F/metrics.jsonl A/metrics.jsonl H/metrics.jsonl <<'PY'
import json, sys
def evals(path):
    return [r for r in map(json.loads, open(path)) if r["kind"] == "eval"]
f = evals(sys.argv[1])[-1]
for path in sys.argv[2:]:
    b = evals(path)[-1]
    print(f"final eval: fp32 loss {f['loss']:.4f} acc {f['acc']:.4f}; "
          f"bf16 ({path}) loss {b['loss']:.4f} acc {b['acc']:.4f}")
    assert abs(b["loss"] - f["loss"]) <= 0.05 * abs(f["loss"]), f"{path}: loss is not near fp32's"
    assert abs(b["acc"] - f["acc"]) <= 0.02, f"{path}: accuracy is not near fp32's"
PY
echo "precision: ok"
