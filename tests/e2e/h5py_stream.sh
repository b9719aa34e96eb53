#!/usr/bin/env bash
# Independent reader: a file written by h5py (chunked, gzip + shuffle, in a
# nested group), trained on by midscale with MIDSCALE_TRACE_SAMPLES on 1, 2
# and 3 ranks; tests/tools/h5py_stream.py checks each rank's samples against
# the reference permutation (reimplemented in Python; block shuffle too),
# their floats against h5py's values, and that the runs have the same global
# stream.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
need_h5py
TOOL="$MS_SOURCE_DIR/tests/tools/h5py_stream.py"

"$PY" "$TOOL" make stream.h5
"$MIDSCALE" data-info stream.h5 | grep -q 'filters  shuffle, gzip 6' || fail "stream.h5 is not gzip + shuffle"

# 600 samples, batch 24 (divisible by 1, 2 and 3): 25 steps per epoch; 2
# epochs and a bit.
SEED=1234567890123
cat >cfg.yaml <<YAML
run: {name: stream, dir: run, seed: $SEED}
data:
  path: stream.h5
  train_x: /experiments/run1/x
  train_y: /experiments/run1/labels
  test_x: /experiments/run1/test/x
  test_y: /experiments/run1/test/labels
  scale: 0.5
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 5}
train: {epochs: 3, batch_size: 24, eval_batch_size: 48, max_steps: 60}
log: {every_steps: 20, progress: false}
YAML

# trace NAME NP [--set ...]: one traced run into trace_NAME/.
trace() {
  local name=$1 np=$2
  shift 2
  rm -rf "trace_$name"
  mkdir "trace_$name"
  MIDSCALE_TRACE_SAMPLES="$PWD/trace_$name" MIDSCALE_TRACE_FLOAT_STEPS=60 \
    run_np "$np" train cfg.yaml --set run.dir="run_$name" "$@"
  expect_ok
}

note "float32 inputs, scale 0.5, on 1, 2 and 3 ranks"
trace f32_w1 1
trace f32_w2 2
trace f32_w3 3
"$PY" "$TOOL" check --h5 stream.h5 --x /experiments/run1/x --seed $SEED --batch 24 --steps 60 \
  --scale 0.5 trace_f32_w1 trace_f32_w2 trace_f32_w3 || fail "float32 stream"

note "int16 inputs, scale 1/1024, on 1 and 3 ranks"
trace i16_w1 1 --set data.train_x=/experiments/run1/x16 --set data.test_x=/experiments/run1/test/x16 \
  --set data.scale=0.0009765625
trace i16_w3 3 --set data.train_x=/experiments/run1/x16 --set data.test_x=/experiments/run1/test/x16 \
  --set data.scale=0.0009765625
"$PY" "$TOOL" check --h5 stream.h5 --x /experiments/run1/x16 --seed $SEED --batch 24 --steps 60 \
  --scale 0.0009765625 trace_i16_w1 trace_i16_w3 || fail "int16 stream"

note "per-channel mean and std, on 2 ranks"
trace norm_w2 2 --set 'data.mean=[0.1, -0.2]' --set 'data.std=[0.5, 2]'
"$PY" "$TOOL" check --h5 stream.h5 --x /experiments/run1/x --seed $SEED --batch 24 --steps 60 \
  --scale 0.5 --mean 0.1,-0.2 --std 0.5,2 trace_norm_w2 trace_f32_w1 2>check.err \
  && fail "the normalised floats matched the plain ones: the check cannot see the norm"
grep -q "input checksum" check.err || { cat check.err; fail "expected a checksum mismatch on the plain run"; }
"$PY" "$TOOL" check --h5 stream.h5 --x /experiments/run1/x --seed $SEED --batch 24 --steps 60 \
  --scale 0.5 --mean 0.1,-0.2 --std 0.5,2 trace_norm_w2 || fail "normalised stream"

note "block shuffle (the file's chunks of 37 samples, windows of 4), streamed, on 1 and 3 ranks"
trace blk_w1 1 --set data.shuffle=block --set data.shuffle_window=4 --set data.cache=stream \
  --set data.prefetch=0
trace blk_w3 3 --set data.shuffle=block --set data.shuffle_window=4 --set data.cache=stream \
  --set data.prefetch=3
"$PY" "$TOOL" check --h5 stream.h5 --x /experiments/run1/x --seed $SEED --batch 24 --steps 60 \
  --scale 0.5 --shuffle block --window 4 trace_blk_w1 trace_blk_w3 || fail "block-shuffle stream"

note "the checker notices a wrong sample"
sed -i '1s/^\(0 0 \)\([0-9]*\)/\1999999/' trace_f32_w2/rank1.txt
"$PY" "$TOOL" check --h5 stream.h5 --x /experiments/run1/x --seed $SEED --batch 24 --steps 60 \
  --scale 0.5 trace_f32_w2 2>check.err && fail "a tampered trace passed"
grep -q "the reference permutation gives" check.err || { cat check.err; fail "tamper message"; }
echo "h5py_stream: ok"
