#!/usr/bin/env bash
# log.trace_steps: every rank records the chosen steps (forward, backward
# per layer, each bucket's communication, data wait, evaluation, checkpoint
# phases) and rank 0 merges them into <run.dir>/trace.json: valid Chrome
# trace-event JSON, one process per rank, spans that nest on every thread,
# the chosen steps only; a trace changes nothing the run computes.
source "$(dirname "$0")/lib.sh"
CHECK=("$PYTHON" "$MS_SOURCE_DIR/tests/tools/trace_check.py")

synth data.h5 --train 2000 --test 300 --features 20
smoke_config cfg.yaml data.h5 run
# 2000 / 64 = 31 steps an epoch, 62 in all.
flat=(--set comm.shared_memory=false --set comm.bucket_mb=0.005 --set comm.first_bucket_mb=0.001)

note "A: 2 ranks, MPI collectives per bucket, steps 3-7 with a checkpoint and an evaluation"
run_np 2 train cfg.yaml --set run.dir=A "${flat[@]}" --set log.trace_steps=[3,7] \
  --set checkpoint.every_steps=5 --set train.eval_every_steps=5
expect_ok
grep -q '^trace of steps 3-7 (Chrome trace events, for Perfetto): A/trace.json' "$LAST_OUT" ||
  { cat "$LAST_OUT"; fail "no trace line"; }
"${CHECK[@]}" A/trace.json --world 2 --steps 3 7 --expect step --expect 'data wait' \
  --expect forward --expect loss --expect backward --expect 'backward layers.0' \
  --expect 'backward layers.2' --expect 'allreduce bucket 0' --expect 'allreduce bucket 1' \
  --expect 'gradient sync wait' --expect optimizer --expect eval --expect 'checkpoint save' \
  --expect 'checkpoint hash' || fail "A: trace"
size=$(stat -c %s A/trace.json)
[ "$size" -lt 200000 ] || fail "A: trace of 5 steps is $size bytes"

note "B: the same run without a trace ends with the same bits"
run_np 2 train cfg.yaml --set run.dir=B "${flat[@]}" --set checkpoint.every_steps=5 \
  --set train.eval_every_steps=5
expect_ok
[ ! -e B/trace.json ] || fail "B wrote a trace while log.trace_steps is []"
decompress A/checkpoints/step-00000062.safetensors.zst A.safetensors
decompress B/checkpoints/step-00000062.safetensors.zst B.safetensors
"$PYTHON" "$CHECKER" --compare A.safetensors B.safetensors || fail "a trace changed the parameters"

note "C: 2 ranks, node shared memory (the default), the last steps (range past the end)"
run_np 2 train cfg.yaml --set run.dir=C --set log.trace_steps=[60,70]
expect_ok
"${CHECK[@]}" C/trace.json --world 2 --steps 60 62 --expect 'gradient sync wait' \
  --expect 'backward layers.1' --expect eval --expect 'checkpoint save (sync)' || fail "C: trace"

note "D: one rank, one step: still per-layer backward"
run_np 1 train cfg.yaml --set run.dir=D --set log.trace_steps=[2,2]
expect_ok
"${CHECK[@]}" D/trace.json --world 1 --steps 2 2 --expect 'backward layers.0' || fail "D: trace"

note "E: the checker fails on a broken trace"
"$PYTHON" - <<'PY'
import json
d = json.load(open("A/trace.json"))
x = [e for e in d["traceEvents"] if e.get("name") == "forward"][0]
x["dur"] += 10000.0
json.dump(d, open("E.json", "w"))
PY
if "${CHECK[@]}" E.json --world 2 --steps 3 7 >/dev/null 2>&1; then
  fail "the checker accepted spans that do not nest"
fi
echo "timeline: ok"
