#!/usr/bin/env bash
# `midscale check` (serial, no mpiexec) on every bad config of
# tests/configs/bad: the exit code and the message each file's header names
# (`# expect:`, `# set:`, `# world:`, `# exit:`, see tests/test_config_errors.c);
# a sample of them under `mpiexec -n 2 midscale train`: exit 2 and exactly
# one error line. Every file of configs/ passes the check, and the dataset
# cross-checks work on generated data. Each case has 20 s (a hang or a slow
# failure path fails the test).
source "$(dirname "$0")/lib.sh"
BAD="$MS_SOURCE_DIR/tests/configs/bad"
# 20 s per case: one case took 5.3 s at load 9 (the suite's MPI tests
# beside it), past the 5 s this had before; a hang still fails. A
# sanitizer build starts MPI several times slower (LSan's full unwinding),
# so it gets more.
CASE_TIMEOUT=20
if ldd "$MIDSCALE" 2>/dev/null | grep -q -e libasan -e libubsan; then CASE_TIMEOUT=60; fi
export RUN_TIMEOUT=$CASE_TIMEOUT

# check_file FILE: runs `midscale check` with the file's header options.
# Sets RC, EXPECT, CODE, SETS (the --set options, for train); output in check.out / check.err.
check_file() {
  local f=$1 args=() sets=() line
  EXPECT=$(sed -n '1s/^# expect: //p' "$f")
  CODE=2
  while IFS= read -r line; do
    case "$line" in
      "# set: "*) args+=(--set "${line#\# set: }") sets+=(--set "${line#\# set: }") ;;
      "# world: "*) args+=(--world "${line#\# world: }") ;;
      "# exit: "*) CODE=${line#\# exit: } ;;
      "# "*) ;;
      *) break ;;
    esac
  done <"$f"
  SETS=("${sets[@]}")
  set +e
  timeout "$CASE_TIMEOUT" "$MIDSCALE" check "$f" "${args[@]}" >check.out 2>check.err
  RC=$?
  set -e
}

n=0
start=$(date +%s%N)
slowest=0
for f in "$BAD"/*.yaml; do
  t0=$(date +%s%N)
  check_file "$f"
  t=$((($(date +%s%N) - t0) / 1000000))
  [ $t -gt $slowest ] && slowest=$t
  [ "$RC" -ne 124 ] || fail "$(basename "$f"): check timed out"
  [ "$RC" -eq "$CODE" ] || { cat check.out check.err; fail "$(basename "$f"): exit $RC, expected $CODE"; }
  [ "$(grep -c '^midscale: error:' check.err)" -eq 1 ] || { cat check.err; fail "$(basename "$f"): expected one error line"; }
  grep -F -q -- "$EXPECT" check.err || { cat check.err; fail "$(basename "$f"): message lacks '$EXPECT'"; }
  [ ! -s check.out ] || { cat check.out; fail "$(basename "$f"): a failed check printed a report"; }
  n=$((n + 1))
done
[ $n -ge 30 ] || fail "only $n bad configs (expected at least 30)"
note "check: $n bad configs, each with its exit code and message ($(( ($(date +%s%N) - start) / 1000000 )) ms in all, slowest $slowest ms)"

note "the same files under mpiexec -n 2 midscale train: exit 2, one error line"
for name in unknown_key range set_bad_value last_layer_relu warmup_max_steps world_not_divisible \
  ckpt_dir_not_dir syntax; do
  check_file "$BAD/$name.yaml"
  t0=$(date +%s%N)
  run_np 2 train "$BAD/$name.yaml" "${SETS[@]}" --set run.dir=run-$name
  note "$name: $((($(date +%s%N) - t0) / 1000000)) ms"
  expect_error 2 "$EXPECT"
done

note "every config in configs/ passes midscale check"
for f in "$MS_SOURCE_DIR"/configs/*.yaml; do
  set +e
  timeout "$CASE_TIMEOUT" "$MIDSCALE" check "$f" >check.out 2>check.err
  RC=$?
  set -e
  [ "$RC" -eq 0 ] || { cat check.out check.err; fail "$(basename "$f"): exit $RC"; }
  grep -q '^check: config .* is valid' check.out || fail "$(basename "$f"): no verdict"
done

note "dataset cross-checks on generated data"
synth data.h5 --train 1000 --test 200 --features 16
smoke_config cfg.yaml data.h5 run
expect_check() { # CODE TEXT ARGS...
  local code=$1 text=$2
  shift 2
  set +e
  timeout "$CASE_TIMEOUT" "$MIDSCALE" check cfg.yaml "$@" >check.out 2>check.err
  RC=$?
  set -e
  [ "$RC" -eq "$code" ] || { cat check.out check.err; fail "check $*: exit $RC, expected $code"; }
  if [ "$code" -eq 0 ]; then
    grep -F -q -- "$text" check.out || { cat check.out; fail "check $*: report lacks '$text'"; }
  else
    grep -F -q -- "$text" check.err || { cat check.err; fail "check $*: message lacks '$text'"; }
  fi
}
expect_check 0 "check: dataset data.h5: 1000 training samples of shape (16)" --world 2
grep -E -q '^  layers\.0 +dense \+relu +\(48\) +816$' check.out || { cat check.out; fail "summary row"; }
grep -q '^  parameters: 2,714$' check.out || { cat check.out; fail "parameter count"; }
grep -q '^  forward FLOPs per sample: 5,248 ' check.out || { cat check.out; fail "FLOPs"; }
grep -q 'batch 32 per rank' check.out || { cat check.out; fail "per-rank batch"; }
grep -q '^  batch_size: 64 ' check.out || fail "the resolved config is not printed"
expect_check 0 "" --set model.input=[4,4]
note "the summary covers every layer type (a CNN on the 16 features as a 1x4x4 image)"
cat >cnn.yaml <<YAML
run: {name: cnn, dir: run}
data: {path: data.h5}
model:
  input: [1, 4, 4]
  layers:
    - {type: conv2d, filters: 3, kernel: 3, padding: 1, activation: gelu}
    - {type: maxpool2d, kernel: 2}
    - {type: layernorm}
    - {type: activation, activation: tanh}
    - {type: avgpool2d, kernel: 2, stride: 1}
    - {type: flatten}
    - {type: dropout, rate: 0.5}
    - {type: dense, units: 10}
optim: {name: adam}
train: {batch_size: 64}
YAML
"$MIDSCALE" check cnn.yaml >check.out 2>check.err || { cat check.out check.err; fail "CNN check"; }
for row in 'layers\.0 +conv2d 3x3/1 pad 1 \+gelu +\(3, 4, 4\) +30$' \
  'layers\.1 +maxpool2d 2x2/2 +\(3, 2, 2\) +0$' 'layers\.2 +layernorm +\(3, 2, 2\) +24$' \
  'layers\.3 +tanh +\(3, 2, 2\) +0$' 'layers\.4 +avgpool2d 2x2/1 +\(3\) +0$' \
  'layers\.5 +flatten +\(3\) +0$' 'layers\.6 +dropout 0\.5 +\(3\) +0$' \
  'layers\.7 +dense +\(10\) +40$' 'parameters: 94$' 'memory per rank: .*optimizer state \(adam: 2 arenas\)'; do
  grep -E -q "^  $row" check.out || { cat check.out; fail "CNN summary lacks /$row/"; }
done
note "a window that does not fit is a config error naming the layer"
set +e
"$MIDSCALE" check cnn.yaml --set model.layers[0].kernel=7 >check.out 2>check.err
RC=$?
set -e
[ "$RC" -eq 2 ] || { cat check.out check.err; fail "kernel 7 on 4x4: exit $RC, expected 2"; }
grep -q 'model.layers\[0\] (conv2d): a 7x7 window' check.err || { cat check.err; fail "message"; }
expect_check 2 "model.input [4, 5] (20 features) does not match the samples of 'data.h5' /train/images, of shape [16] (16 features)" --set 'model.input=[4, 5]'
expect_check 3 "the model has 6 output units: label" --set model.layers[2].units=6
expect_check 2 "schedule.warmup_steps 30 is not less than the 30 steps of this run" --set schedule.warmup_steps=30
expect_check 3 "has 1000 samples, fewer than one global batch (train.batch_size 2048)" --set train.batch_size=2048
expect_check 0 "the run trains 30 steps (train.epochs): 2 epochs of 15 steps"
# train.max_steps sets the run's length over train.epochs, also past them.
expect_check 0 "the run trains 40 steps (train.max_steps, overrides train.epochs 2): 3 epochs of 15 steps, the last partial" --set train.max_steps=40
expect_check 0 "the run trains 10 steps (train.max_steps, overrides train.epochs 2): 1 epoch of 15 steps, the last partial" --set train.max_steps=10
expect_check 3 "/train/imagez" --set data.train_x=/train/imagez
expect_check 0 "dataset checks skipped: the data file missing.h5 is missing" --set data.path=missing.h5
grep -q 'model summary skipped' check.out || fail "summary without input size"
# A link that does not resolve is not "missing": train would refuse it, so check does too.
ln -sfn gone.h5 dangling.h5
expect_check 3 "data.path dangling.h5 is a symbolic link that does not resolve" --set data.path=dangling.h5
ln -sfn loop.h5 loop.h5
expect_check 3 "data.path loop.h5 is a symbolic link that does not resolve (Too many levels of symbolic links)" --set data.path=loop.h5
rm -f dangling.h5 loop.h5
expect_check 0 "dataset checks skipped" --set data.path=missing.h5 --set 'model.input=[28, 28]'
grep -E -q "^  input +- +\(1, 28, 28\) +0$" check.out || { cat check.out; fail "input row from model.input"; }
set +e
"$MIDSCALE" check >/dev/null 2>check.err; rc=$?
set -e
[ $rc -eq 2 ] && grep -q 'check needs a CONFIG' check.err || fail "check without a config: exit $rc"
"$MIDSCALE" check --help | grep -q -- '--world' || fail "check --help"

note "the cost model: a prediction for 2 ranks on 2 nodes over 1 Gbit"
expect_check 0 "prediction for 2 ranks on 2 nodes (1 per node), link 1gbit: alpha 50 us, 1 Gbit/s:" \
  --world 2 --nodes 2 --link 1gbit
grep -q "^  sync: hierarchical: 1 rank per node, ring across 2 nodes, fp32 wire" check.out ||
  { cat check.out; fail "prediction: sync"; }
grep -E -q "^  exposed comm: [0-9.]+ ms/step \(" check.out || { cat check.out; fail "prediction: exposed comm"; }
grep -E -q "^  step: [0-9.]+ ms predicted, [0-9]+ samples/s over 2 ranks; weak-scaling efficiency [0-9]+% vs one rank alone$" \
  check.out || { cat check.out; fail "prediction: step"; }
expect_check 0 "(no --link given: the default; pass --link for yours)" --world 4 --nodes 2
expect_check 0 "link 2.5gbit,20us: alpha 20 us, 2.5 Gbit/s" --world 2 --nodes 2 --link 2.5gbit,20us
expect_check 2 "--link needs 1gbit, 10gbit, 100gbit or RATE,LATENCY" --world 2 --nodes 2 --link 3gbit
expect_check 2 "--nodes 3 does not divide --world 2" --world 2 --nodes 3

note "the same cross-checks in midscale train (2 ranks)"
run_np 2 train cfg.yaml --set 'model.input=[4,5]'
expect_error 2 "model.input [4, 5] (20 features) does not match"
run_np 2 train cfg.yaml --set schedule.warmup_steps=30
expect_error 2 "schedule.warmup_steps 30 is not less than the 30 steps of this run"
note "train.max_steps past train.epochs: 40 steps into a third epoch"
run_np 2 train cfg.yaml --set train.max_steps=40 --set run.dir=long
expect_ok
grep -q "^train: 40 steps (train.max_steps, overrides train.epochs 2): 3 epochs of 15 steps" "$LAST_OUT" ||
  { cat "$LAST_OUT"; fail "max_steps banner"; }
[ -f long/checkpoints/step-00000040.safetensors.zst ] || fail "max_steps: no checkpoint at step 40"
grep -q '"kind":"train","step":40,"epoch":3,' long/metrics.jsonl || fail "max_steps: step 40 is not in epoch 3"
[ "$(grep -c '"kind":"eval"' long/metrics.jsonl)" -eq 3 ] || fail "max_steps: expected 3 evaluations"
echo "not a dir" >afile
run_np 2 train cfg.yaml --set checkpoint.dir=afile/ckpt
expect_error 2 "checkpoint directory 'afile/ckpt' cannot be created: 'afile' is not a directory"
echo "check: ok"
