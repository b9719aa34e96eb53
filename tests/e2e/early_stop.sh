#!/usr/bin/env bash
# train.early_stop and train.eval_every_steps: a run whose eval loss stops
# improving (a tiny training set, a high learning rate) stops early, keeps
# the best model as best.safetensors.zst (never pruned, never resumed by
# --resume auto), says why in the summary; a run interrupted and resumed
# stops at the same step with bitwise-equal parameters; the best model,
# evaluated by `midscale eval`, gives back the best logged value.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 256 --test 500 --features 20
cat >cfg.yaml <<YAML
run: {name: es, dir: A, seed: 7}
data: {path: data.h5}
model:
  layers:
    - {type: dense, units: 128, activation: relu}
    - {type: dense, units: 128, activation: relu}
    - {type: dense, units: 10}
optim: {lr: 0.1, momentum: 0.9}
train:
  epochs: 60
  batch_size: 32
  eval_every_steps: 4
  early_stop: {metric: loss, patience: 3}
checkpoint: {every_steps: 2, keep: 2}
log: {every_steps: 100, progress: false}
YAML
# 256 samples / batch 32 = 8 steps an epoch, 480 in all: an evaluation
# every 4 steps (the epoch ends among them).

note "A: straight run on 2 ranks"
run_np 2 train cfg.yaml
expect_ok
stop_line=$(grep '^early stop at step' "$LAST_OUT") || { cat "$LAST_OUT"; fail "no early stop"; }
note "$stop_line"
S=$(sed -E 's/^early stop at step ([0-9]+) of 480: .*/\1/' <<<"$stop_line")
B=$(sed -E 's/.* best [^ ]+ at step ([0-9]+) .*/\1/' <<<"$stop_line")
[ "$S" -lt 480 ] || fail "did not stop early ($S)"
grep -q 'did not improve by more than 0 for 3 evaluations' <<<"$stop_line" || fail "reason: $stop_line"
[ $(((S - B) / 4)) -eq 3 ] || fail "stopped at $S, 3 evaluations after the best at $B expected"
grep -q '^eval in epoch' "$LAST_OUT" || fail "no evaluation inside an epoch (eval_every_steps)"
[ "$(grep -c '"kind":"eval"' A/metrics.jsonl)" -eq $((S / 4)) ] || fail "expected $((S / 4)) eval records"
tail -n 1 A/metrics.jsonl | grep -q "\"early_stop\":{\"step\":$S," || fail "summary record lacks early_stop"
[ -f A/checkpoints/best.safetensors.zst ] || fail "no best.safetensors.zst"
"$MIDSCALE" inspect A/checkpoints/best.safetensors.zst | grep -q "step $B," || fail "best is not step $B"
# keep 2: only the two newest rolling checkpoints beside the best.
[ "$(ls A/checkpoints | grep -c '^step-')" -eq 2 ] || { ls A/checkpoints; fail "rolling files"; }
[ -f A/checkpoints/step-$(printf %08d "$S").safetensors.zst ] || fail "no checkpoint at the stop"

note "the best model, evaluated, reproduces the best logged loss"
want=$("$PYTHON" - "$B" <<'PY'
import json, sys
for line in open("A/metrics.jsonl"):
    r = json.loads(line)
    if r["kind"] == "eval" and r["step"] == int(sys.argv[1]):
        print("%.9g" % r["loss"])
PY
)
# midscale eval runs the evaluation training runs (with the BLAS kernels
# midscale picks for itself, README "BLAS").
got=$("$MPIEXEC" -n 2 "$MIDSCALE" eval cfg.yaml A/checkpoints/best.safetensors.zst --json \
  --set run.dir=EV)
note "logged $want, evaluated $got"
"$PYTHON" -c 'import json,sys; g=json.loads(sys.argv[1]); sys.exit(not (g["step"]==int(sys.argv[3]) and "%.9g"%g["loss"]==sys.argv[2]))' \
  "$got" "$want" "$B" || fail "best checkpoint evaluates to $got, the log says $want at step $B"

note "B: interrupted after a non-improving evaluation, resumed: same stop, same bits"
# Stop two steps after the first evaluation that did not improve (mid
# patience), then resume by auto: the state must come from the checkpoint.
F=$((B + 6))
run_np 2 train cfg.yaml --set run.dir=B --stop-at "$F"
expect_ok
! grep -q '^early stop' "$LAST_OUT" || fail "B stopped early before $F"
run_np 2 train cfg.yaml --set run.dir=B --resume auto
expect_ok
grep -q "resumed from .*step-$(printf %08d "$F").safetensors.zst" "$LAST_OUT" || fail "B did not resume at $F"
grep -q "^early stop at step $S of 480" "$LAST_OUT" || { cat "$LAST_OUT"; fail "B did not stop at $S"; }
for f in step-$(printf %08d "$S") best; do
  decompress A/checkpoints/$f.safetensors.zst A.$f.safetensors
  decompress B/checkpoints/$f.safetensors.zst B.$f.safetensors
  "$PYTHON" "$CHECKER" --compare A.$f.safetensors B.$f.safetensors || fail "A and B differ in $f"
done

note "C: resuming a run that stopped early trains no further"
run_np 2 train cfg.yaml --resume auto
expect_ok
grep -q "^early stop at step $S of 480" "$LAST_OUT" || fail "C: no early-stop line"
grep -q '^done: 0 steps' "$LAST_OUT" || { cat "$LAST_OUT"; fail "C trained on"; }

note "D: --resume auto never takes best.safetensors.zst"
mkdir -p D/checkpoints
cp A/checkpoints/best.safetensors.zst D/checkpoints/
run_np 2 train cfg.yaml --set run.dir=D --resume auto --stop-at 1
expect_ok
grep -q 'resume: no checkpoint in' "$LAST_OUT" || { cat "$LAST_OUT"; fail "D resumed from best"; }

note "E: the metric, by accuracy (mode auto = max), and off"
run_np 1 train cfg.yaml --set run.dir=E --set train.early_stop.metric=acc --set train.early_stop.patience=2
expect_ok
grep -q '^early stop at step .*eval acc did not improve' "$LAST_OUT" || { cat "$LAST_OUT"; fail "E"; }
run_np 1 train cfg.yaml --set run.dir=F --set train.early_stop.metric=none --set train.epochs=3
expect_ok
! grep -q 'early stop\|best so far' "$LAST_OUT" || fail "F: early stopping while off"
[ ! -e F/checkpoints/best.safetensors.zst ] || fail "F wrote a best model while off"
echo "early_stop: ok"
