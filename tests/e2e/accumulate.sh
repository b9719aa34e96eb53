#!/usr/bin/env bash
# train.accumulate K splits each rank's share of the global batch into K
# micro-batches (train.batch_size stays the global batch): the same config
# gives the same loss at each of 50 steps, within 1e-4 relative, on
# (world, K) = (1, 1), (1, 4), (2, 3), (3, 2) and (4, 1), with and without
# optim.clip_norm (tight enough to clip every step); and a K that does not
# divide the per-rank batch is a config error naming the numbers.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 4096 --test 512 --features 24
smoke_config cfg.yaml data.h5 run
for clip in 0 0.5; do
  for wk in 1:1 1:4 2:3 3:2 4:1; do
    np=${wk%:*} k=${wk#*:}
    run_np "$np" train cfg.yaml --set run.dir="r$clip-$np-$k" --set train.max_steps=50 \
      --set train.batch_size=96 --set train.accumulate="$k" --set optim.clip_norm="$clip"
    expect_ok
    [ "$k" = 1 ] || grep -q "in $k micro-batches of $((96 / np / k))" "$LAST_OUT" ||
      { grep '^train:' "$LAST_OUT"; fail "np $np K $k: the banner does not show the micro-batches"; }
  done
  "$PYTHON" - "$clip" r$clip-1-1 r$clip-1-4 r$clip-2-3 r$clip-3-2 r$clip-4-1 <<'PY'
import json, sys
def losses(run):
    return [r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if r["kind"] == "train"]
ref = losses(sys.argv[2])
assert len(ref) == 50 and ref[-1] < ref[0], "the reference run did not learn"
for run in sys.argv[3:]:
    got = losses(run)
    worst = max(abs(a - b) / abs(a) for a, b in zip(ref, got))
    print(f"clip {sys.argv[1]}: {run}: max relative loss difference over 50 steps {worst:.3g}")
    assert len(got) == 50 and worst <= 1e-4, f"{run}: {worst} > 1e-4"
PY
done
# Clipping changes the run (so the clip runs above did clip).
"$PYTHON" - <<'PY'
import json
def losses(run):
    return [r["loss"] for r in map(json.loads, open(run + "/metrics.jsonl")) if r["kind"] == "train"]
a, b = losses("r0-1-1"), losses("r0.5-1-1")
assert max(abs(x - y) / x for x, y in zip(a, b)) > 1e-3, "optim.clip_norm 0.5 changed nothing"
PY

run_np 2 train cfg.yaml --set train.batch_size=96 --set train.accumulate=5
expect_error 2 "train.accumulate 5 does not divide the 48 samples per rank of train.batch_size 96 on 2 ranks"
set +e
"$MIDSCALE" check cfg.yaml --world 2 --set train.batch_size=96 --set train.accumulate=5 \
  >check.out 2>check.err
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "train.accumulate 5 does not divide the 48 samples per rank" check.err ||
  { cat check.err; fail "midscale check does not refuse the accumulate (exit $rc)"; }
echo "accumulate: ok"
