#!/usr/bin/env bash
# comm.shared_params (issue 21): the parameters and the optimizer state live
# once per node and each rank updates its own range of them. It changes
# where the update happens, never what it computes: on 2 and 3 ranks, with
# SGD, Nesterov, Adam and AdamW, with train.accumulate and optim.clip_norm
# (tight enough to clip every step), sharing on and off end with
# bitwise-identical parameters and optimizer state; so do runs stopped in
# the middle and resumed (also on another number of ranks, which re-shards).
# Every run asserts the path its banner reports: "params: shared" where it
# is on, and the reason where it is off (no silent fallback).
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 2048 --test 256 --features 24
smoke_config cfg.yaml data.h5 run
STEPS=30

# train NP NAME SHARED ARGS...: a run of STEPS steps into run dir NAME,
# its final checkpoint exported to NAME.safetensors, its banner checked.
train() {
  local np=$1 name=$2 shared=$3
  shift 3
  run_np "$np" train cfg.yaml --set run.dir="$name" --set train.batch_size=96 \
    --set train.max_steps=$STEPS --set log.every_steps=10 --set comm.shared_params="$shared" "$@"
  expect_ok
  local want="^params: shared: "
  [ "$shared" = true ] || want="^params: off \(comm.shared_params false\)"
  grep -Eq "$want" "$LAST_OUT" || { grep '^params' "$LAST_OUT"; fail "$name: no '$want'"; }
  grep -q '^memory: ' "$LAST_OUT" || fail "$name: no memory line in the banner"
  "$MIDSCALE" export "$name/checkpoints/step-$(printf %08d $STEPS).safetensors.zst" \
    "$name.safetensors" --with-optimizer >/dev/null
}

same() {
  "$PYTHON" "$CHECKER" --compare "$1.safetensors" "$2.safetensors" >/dev/null ||
    fail "$1 and $2 differ"
}

for np in 2 3; do
  for opt in sgd nesterov adam adamw; do
    case $opt in
      sgd) set=(--set optim.name=sgd) ;;
      nesterov) set=(--set optim.name=sgd --set optim.nesterov=true) ;;
      adam) set=(--set optim.name=adam --set optim.lr=0.003) ;;
      adamw) set=(--set optim.name=adamw --set optim.lr=0.003 --set optim.weight_decay=0.01) ;;
    esac
    train "$np" "on$np$opt" true "${set[@]}"
    train "$np" "off$np$opt" false "${set[@]}"
    same "on$np$opt" "off$np$opt"
  done
  note "np $np: SGD, Nesterov, Adam, AdamW: sharing on and off agree bit for bit"
  # Accumulation and clipping (0.05 clips every step of this model).
  acc=(--set optim.name=adam --set optim.lr=0.003 --set train.accumulate=2 --set optim.clip_norm=0.05)
  train "$np" "on${np}acc" true "${acc[@]}"
  train "$np" "off${np}acc" false "${acc[@]}"
  same "on${np}acc" "off${np}acc"
  train "$np" "off${np}noclip" false --set optim.name=adam --set optim.lr=0.003 --set train.accumulate=2
  "$PYTHON" "$CHECKER" --compare "off${np}acc.safetensors" "off${np}noclip.safetensors" \
    >/dev/null 2>&1 && fail "np $np: optim.clip_norm 0.05 changed nothing"
  note "np $np: accumulate 2 with clipping: sharing on and off agree bit for bit"
done

# Resume in the middle: stopped at step 12 with sharing on, resumed with
# sharing on, on the same and on another number of ranks, against the same
# with sharing off.
adamw=(--set optim.name=adamw --set optim.lr=0.003 --set optim.weight_decay=0.01)
for from_to in 2:2 2:3 3:2; do
  a=${from_to%:*} b=${from_to#*:}
  for shared in true false; do
    name="res$a$b$shared"
    run_np "$a" train cfg.yaml --set run.dir="$name" --set train.batch_size=96 \
      --set train.max_steps=$STEPS "${adamw[@]}" --set comm.shared_params=$shared --stop-at 12
    expect_ok
    train "$b" "$name" "$shared" "${adamw[@]}" --resume auto
    grep -q '^resumed from .*step-00000012' "$LAST_OUT" || fail "$name: did not resume at step 12"
  done
  same "res$a${b}true" "res$a${b}false"
  [ "$a" != "$b" ] || same "res$a${b}true" "on${a}adamw"
  note "resume $a -> $b ranks at step 12: sharing on and off agree bit for bit"
done

# bf16 (issue 21's derived copy): the dense layers' bf16 weights live once
# per node too, each rank rounding its range after its update. Sharing on
# and off agree bit for bit, also resumed in the middle (the copy is made
# again from the loaded parameters), and the banner and `midscale check`
# count the copy once per node. Without native bf16 the layers run
# emulated and read no copy; the runs must agree all the same.
bf=(--set model.precision=bf16 --set optim.name=adam --set optim.lr=0.003)
native=1
train 2 on2bf16 true "${bf[@]}"
grep -q '^kernels: precision bf16 (emulated' "$LAST_OUT" && native=0
if [ $native = 1 ]; then
  grep -q '^params: shared: .* and a bf16 copy of the parameters once per node' "$LAST_OUT" ||
    { grep '^params' "$LAST_OUT"; fail "bf16: the banner does not say the bf16 copy is shared"; }
  grep -Eq '^memory: parameters and optimizer state shared .*; bf16 weights: .* once per node shared, .* per rank unshared$' \
    "$LAST_OUT" || { grep '^memory' "$LAST_OUT"; fail "bf16: the memory line does not count the copy"; }
  "$MIDSCALE" check cfg.yaml --world 2 "${bf[@]}" >check.out 2>check.err || fail "bf16: check failed"
  grep -Eq '^  memory: parameters and optimizer state shared .*; bf16 weights: .* once per node shared' \
    check.out || { grep memory check.out; fail "bf16: check's memory line does not count the copy"; }
fi
train 2 off2bf16 false "${bf[@]}"
same on2bf16 off2bf16
"$PYTHON" "$CHECKER" --compare on2bf16.safetensors on2adam.safetensors >/dev/null 2>&1 &&
  fail "bf16: the same parameters as fp32 (did bf16 run?)"
for shared in true false; do
  name="res22bf16$shared"
  run_np 2 train cfg.yaml --set run.dir="$name" --set train.batch_size=96 \
    --set train.max_steps=$STEPS "${bf[@]}" --set comm.shared_params=$shared --stop-at 12
  expect_ok
  train 2 "$name" "$shared" "${bf[@]}" --resume auto
  grep -q '^resumed from .*step-00000012' "$LAST_OUT" || fail "$name: did not resume at step 12"
  same "$name" on2bf16
done
note "bf16 (native $native): sharing on and off agree bit for bit, also resumed at step 12"

# Where sharing cannot run, the banner says why.
run_np 2 train cfg.yaml --set run.dir=fp16 --set train.max_steps=4 --set comm.compress=fp16
expect_ok
grep -q '^params: off (the gradients are not summed in node shared memory' "$LAST_OUT" ||
  { grep '^params' "$LAST_OUT"; fail "fp16 wire: no reason in the banner"; }
run_np 2 train cfg.yaml --set run.dir=nosync --set train.max_steps=4 --set comm.sync=false
expect_ok
grep -q '^params: off (comm.sync false' "$LAST_OUT" ||
  { grep '^params' "$LAST_OUT"; fail "comm.sync false: no reason in the banner"; }
run_np 1 train cfg.yaml --set run.dir=one --set train.max_steps=4
expect_ok
grep -q '^params: off (one rank)' "$LAST_OUT" || fail "one rank: no reason in the banner"
echo "shared_params: ok"
