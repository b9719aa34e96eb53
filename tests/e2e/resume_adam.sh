#!/usr/bin/env bash
# Exact resume with Adam-family state and random layers: a small CNN with
# layer norm and dropout, trained with AdamW (moments in the checkpoint, the
# bias-correction step count restored from the step) and label smoothing,
# stopped mid-epoch and resumed, ends bitwise identical to a straight run;
# resuming with another optimizer is refused.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 1000 --test 200 --features 16
cat >cfg.yaml <<YAML
run: {name: adam, dir: run, seed: 3}
data: {path: data.h5}
model:
  input: [1, 4, 4]
  layers:
    - {type: conv2d, filters: 4, kernel: 3, padding: 1, activation: relu}
    - {type: maxpool2d, kernel: 2}
    - {type: layernorm}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 24, activation: gelu}
    - {type: dense, units: 10}
  label_smoothing: 0.1
optim: {name: adamw, lr: 0.005, weight_decay: 0.05}
schedule: {name: cosine, warmup_steps: 4}
train: {epochs: 2, batch_size: 40, eval_batch_size: 200}
checkpoint: {every_steps: 10}
log: {every_steps: 5, progress: false}
YAML
# 1000 / 40 = 25 steps an epoch, 50 in all.

note "A: straight"
run_np 2 train cfg.yaml --set run.dir=A
expect_ok
note "B: stopped at step 30 (epoch 2, 5 of its steps done), resumed"
run_np 2 train cfg.yaml --set run.dir=B --stop-at 30
expect_ok
run_np 2 train cfg.yaml --set run.dir=B --resume auto
expect_ok
grep -q 'at step 30 (epoch 2, 5 of its ' "$LAST_OUT" || { cat "$LAST_OUT"; fail "cursor"; }
for run in A B; do decompress "$run/checkpoints/step-00000050.safetensors.zst" "$run.safetensors"; done
"$PYTHON" "$CHECKER" A.safetensors >summary.json || fail "the checker refused A"
grep -q '"optim/exp_avg_sq/layers.0.weight"' summary.json || fail "no Adam moments in the checkpoint"
"$PYTHON" "$CHECKER" --compare A.safetensors B.safetensors || fail "A and B differ"

note "C: resuming with another optimizer is refused (its state would not fit)"
run_np 2 train cfg.yaml --set run.dir=B --set optim.name=adam --resume B/checkpoints/step-00000030.safetensors.zst
expect_error 4 "optim.name adamw → adam"
note "D: another seed differs (the comparison can fail)"
run_np 2 train cfg.yaml --set run.dir=D --set run.seed=4
expect_ok
decompress D/checkpoints/step-00000050.safetensors.zst D.safetensors
if "$PYTHON" "$CHECKER" --compare A.safetensors D.safetensors >/dev/null 2>&1; then
  fail "a different seed gave identical parameters: the comparison is blind"
fi
echo "resume_adam: ok"
