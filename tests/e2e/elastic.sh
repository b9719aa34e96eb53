#!/usr/bin/env bash
# Resume on another world size: saved on 4 ranks, resumed on 2 (and saved on
# 2, resumed on 1) continues at the same step with the same sample cursor and
# global batch, so the losses after the resume match an uninterrupted run's.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 2048 --test 256 --features 24
smoke_config cfg.yaml data.h5 run
# 2048 / 64 = 32 steps an epoch; stop mid-epoch at step 45 (epoch 2, 13 of its 32 steps done).
common=(--set train.epochs=3 --set train.batch_size=64)

elastic() {
  local from=$1 to=$2 dir="w${1}to${2}"
  note "saved on $from ranks, resumed on $to"
  run_np "$from" train cfg.yaml "${common[@]}" --set run.dir="ref$from" # uninterrupted
  expect_ok
  run_np "$from" train cfg.yaml "${common[@]}" --set run.dir="$dir" --stop-at 45
  expect_ok
  "$MIDSCALE" inspect "$dir/checkpoints/step-00000045.safetensors.zst" |
    grep -q "step 45, epoch 1, step in epoch 13, saved on $from rank" || fail "metadata of the saved cursor"
  run_np "$to" train cfg.yaml "${common[@]}" --set run.dir="$dir" --resume auto
  expect_ok
  grep -q "world $to " "$LAST_OUT" || fail "not resumed on $to ranks"
  [ "$to" -lt 2 ] || grep -q '^params: shared: ' "$LAST_OUT" || fail "the banner does not say the parameters are shared (comm.shared_params)"
  grep -q 'at step 45 (epoch 2, 13 of its 32 steps done)' "$LAST_OUT" || { cat "$LAST_OUT"; fail "cursor"; }
  "$PYTHON" - "ref$from/metrics.jsonl" "$dir/metrics.jsonl" <<'PY'
import json, sys
def losses(path):
    out = {}
    for r in map(json.loads, open(path)):
        if r["kind"] == "train":
            out[r["step"]] = r["loss"]   # a resumed run appends: the last wins
    return out
ref, got = losses(sys.argv[1]), losses(sys.argv[2])
after = [s for s in sorted(got) if s > 45]
assert len(after) == 96 - 45, f"{len(after)} steps after the resume"
worst = max(abs(ref[s] - got[s]) / abs(ref[s]) for s in after)
print(f"max relative loss difference over {len(after)} steps after the resume: {worst:.3g}")
assert worst <= 1e-4, worst
PY
}
elastic 4 2
elastic 2 1
echo "elastic: ok"
