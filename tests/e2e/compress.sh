#!/usr/bin/env bash
# comm.compress fp16/bf16 (16-bit gradients on the wire, error feedback)
# follow the fp32 run's loss trajectory over 200 steps, on 2 and 3 ranks:
#   - every 20-step window's mean loss within 2% (relative) of fp32's,
#   - every single step's loss within 10%,
#   - the final test accuracy within 0.02 (absolute).
# (Measured when written: windows within 0.4%, steps within 5%, same
# accuracy to 0.004.) The first steps agree to ~1e-5: the rounding is small.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 4096 --test 1024 --features 24
smoke_config cfg.yaml data.h5 run
for np in 2 3; do
  for c in none fp16 bf16; do
    run_np "$np" train cfg.yaml --set run.dir="r$np$c" --set comm.compress="$c" \
      --set train.epochs=10 --set train.max_steps=200 --set train.batch_size=96
    expect_ok
    [ "$c" = none ] || grep -q "^comm: .*$c on the wire with error feedback" "$LAST_OUT" ||
      fail "np $np: the banner does not show $c"
  done
  "$PYTHON" - "r${np}none" "r${np}fp16" "r${np}bf16" <<'PY'
import json, sys
def load(run):
    rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
    loss = [r["loss"] for r in rows if r["kind"] == "train"]
    acc = [r["acc"] for r in rows if r["kind"] == "eval"][-1]
    return loss, acc
ref, ref_acc = load(sys.argv[1])
assert len(ref) == 200, len(ref)
for run in sys.argv[2:]:
    got, acc = load(run)
    assert len(got) == 200, (run, len(got))
    step = max(abs(a - b) / a for a, b in zip(ref, got))
    win = max(abs(sum(ref[i:i + 20]) - sum(got[i:i + 20])) / sum(ref[i:i + 20])
              for i in range(0, 200, 20))
    print(f"{run}: worst step {step:.4f}, worst 20-step window {win:.4f}, "
          f"test accuracy {acc:.4f} vs fp32 {ref_acc:.4f}")
    assert win <= 0.02, f"{run}: a 20-step window's mean loss is off by {win:.4f} > 2%"
    assert step <= 0.10, f"{run}: a step's loss is off by {step:.4f} > 10%"
    assert abs(acc - ref_acc) <= 0.02, f"{run}: test accuracy {acc} vs {ref_acc}"
PY
done
echo "compress: ok"
