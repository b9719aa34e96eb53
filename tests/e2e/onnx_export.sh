#!/usr/bin/env bash
# `midscale export CHECKPOINT OUT.onnx` (trainer/onnx/onnx_export.h): small
# MLP and CNN models that use every layer kind and activation, and the real
# Fashion-MNIST MLP and CNN configs (a few steps on synthetic data of the
# same shape), exported to ONNX; onnx.checker accepts each graph, and our own
# NumPy evaluator of it (tests/tools/onnx_check.py) on raw test inputs
# matches midscale's own forward (tests/onnx_forward.c: the run's loader
# path and model code) within 1e-5. Then the bad inputs, each one message.
source "$(dirname "$0")/lib.sh"
need_h5py
/usr/bin/python3 -c 'import onnx' 2>/dev/null ||
  fail "needs /usr/bin/python3 with onnx (apt-get install python3-onnx; scripts/setup.sh does)"
FWD=${ONNX_FORWARD:-$(dirname "$MIDSCALE")/tests/onnx_forward}
[ -x "$FWD" ] || fail "no driver at $FWD (build the onnx_forward target)"
CHECK="/usr/bin/python3 $MS_SOURCE_DIR/tests/tools/onnx_check.py"
N=64

# export_and_check NAME CKPT DATA X Y [export options...]: export, forward in C, check.
export_and_check() {
  local name=$1 ck=$2 data=$3 x=$4 y=$5
  shift 5
  "$MIDSCALE" export "$ck" "$name.onnx" "$@" >"$name.export.log" 2>&1 ||
    { cat "$name.export.log"; fail "$name: export failed"; }
  cat "$name.export.log"
  "$FWD" "$ck" "$data" "$x" "$y" "$N" "$name.ref.f32" >/dev/null || fail "$name: onnx_forward failed"
  $CHECK "$name.onnx" "$data" "$x" "$N" "$name.ref.f32" || fail "$name: the ONNX graph does not match"
}

note "an MLP with every activation, layer norm and dropout; raw uint8 inputs, per-feature std"
synth flat.h5 --train 512 --test 128 --features 64 --classes 10 --u8
STD=$(/usr/bin/python3 -c 'print(", ".join(str(0.2 + 0.01 * i) for i in range(64)))')
cat >mlp.yaml <<YAML
run: {name: onnx_mlp, dir: run_mlp, seed: 11}
data: {path: flat.h5, scale: 0.00392156862745098, mean: [0.45], std: [$STD]}
model:
  layers:
    - {type: dense, units: 32, activation: gelu}
    - {type: layernorm}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 24, activation: tanh}
    - {type: dense, units: 24, activation: sigmoid}
    - {type: dense, units: 16, activation: leaky_relu, alpha: 0.1}
    - {type: activation, activation: softmax}
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 10}
optim: {lr: 0.05, momentum: 0.9}
train: {epochs: 1, batch_size: 64, eval_batch_size: 128}
log: {every_steps: 100, progress: false}
YAML
run_np 1 train mlp.yaml
expect_ok
export_and_check mlp run_mlp/checkpoints/step-00000008.safetensors.zst flat.h5 /test/images /test/labels

note "the same checkpoint with --normalised-input: no normalisation nodes"
"$MIDSCALE" export run_mlp/checkpoints/step-00000008.safetensors.zst mlp_norm.onnx --normalised-input >/dev/null ||
  fail "export --normalised-input failed"
/usr/bin/python3 - mlp_norm.onnx <<'PY'
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
first = m.graph.node[0]
assert first.op_type == "Gemm" and first.input[0] == "input", first
assert {p.key: p.value for p in m.metadata_props}["midscale.input"] == "normalised"
print("normalised-input graph starts with", first.op_type)
PY

note "a CNN on (2, 8, 8) images: conv (stride, padding), layer norm between convs, pools"
/usr/bin/python3 - img.h5 <<'PY'
import sys, h5py, numpy as np
r = np.random.default_rng(5)
with h5py.File(sys.argv[1], "w") as f:
    for split, n in (("train", 256), ("test", 96)):
        y = r.integers(0, 3, n).astype(np.uint8)
        x = r.integers(0, 256, (n, 2, 8, 8)).astype(np.uint8)
        x[:, 0] = np.clip(x[:, 0].astype(int) // 2 + 60 * y[:, None, None], 0, 255)
        f[f"{split}/images"] = x
        f[f"{split}/labels"] = y
PY
cat >cnn.yaml <<'YAML'
run: {name: onnx_cnn, dir: run_cnn, seed: 3}
data: {path: img.h5, scale: 0.00392156862745098, mean: [0.4, 0.6], std: [0.5, 0.25]}
model:
  layers:
    - {type: conv2d, filters: 4, kernel: 3, padding: 1, activation: relu}
    - {type: layernorm}
    - {type: conv2d, filters: 6, kernel: 3, stride: 2, padding: 1, activation: gelu}
    - {type: maxpool2d, kernel: 2}
    - {type: conv2d, filters: 5, kernel: 1, activation: leaky_relu}
    - {type: avgpool2d, kernel: 2, stride: 1}
    - {type: flatten}
    - {type: dense, units: 8, activation: sigmoid}
    - {type: dropout, rate: 0.25}
    - {type: dense, units: 3}
optim: {name: adam, lr: 0.01}
train: {epochs: 1, batch_size: 32, eval_batch_size: 96}
log: {every_steps: 100, progress: false}
YAML
run_np 2 train cnn.yaml
expect_ok
CK=run_cnn/checkpoints/step-00000008.safetensors.zst
note "no model.input in the config: the image shape must be given"
run_np 1 export "$CK" cnn.onnx
expect_error 2 "pass --input C,H,W"
run_np 1 export "$CK" cnn.onnx --input 2,16,16
expect_error 2 "with this --input"
export_and_check cnn "$CK" img.h5 /test/images /test/labels --input 2,8,8

note "the real configs: configs/fashion_mnist_mlp.yaml and _cnn.yaml, a few steps on synthetic 28x28 data"
synth fm.h5 --train 512 --test 128 --features 784 --classes 10 --u8
for net in mlp cnn; do
  run_np 1 train "$MS_SOURCE_DIR/configs/fashion_mnist_$net.yaml" --set data.path=fm.h5 \
    --set run.dir=run_fm_$net --set train.max_steps=3 --set schedule.warmup_steps=0 \
    --set log.progress=false
  expect_ok
  export_and_check "fm_$net" run_fm_$net/checkpoints/step-00000003.safetensors.zst fm.h5 \
    /test/images /test/labels
done

note "model.input (H, W), an activation first, softmax over an image, conv after a flattening layer, bf16"
cat >hw.yaml <<'YAML'
run: {name: onnx_hw, dir: run_hw, seed: 1}
data: {path: fm.h5, scale: 0.00392156862745098}
model:
  input: [28, 28]
  precision: bf16
  layers:
    - {type: activation, activation: tanh}
    - {type: avgpool2d, kernel: 4}
    - {type: conv2d, filters: 3, kernel: 3, activation: softmax}
    - {type: conv2d, filters: 2, kernel: 3, padding: 2}
    - {type: layernorm}
    - {type: dense, units: 10}
optim: {lr: 0.05}
train: {max_steps: 2, batch_size: 64, eval_batch_size: 128}
log: {every_steps: 100, progress: false}
YAML
run_np 1 train hw.yaml
expect_ok
# The graph is the fp32 forward of the master weights (onnx_forward runs fp32 too).
export_and_check hw run_hw/checkpoints/step-00000002.safetensors.zst fm.h5 /test/images /test/labels

note "bad inputs"
run_np 1 export mlp.yaml x.onnx
expect_error 4 "mlp.yaml"
run_np 1 export "$CK" x.onnx --with-optimizer
expect_error 2 "--with-optimizer is for safetensors"
run_np 1 export "$CK" x.safetensors --input 2,8,8
expect_error 2 "are for ONNX output"
run_np 1 export "$CK" x.bin --format tflite
expect_error 2 "--format takes onnx or safetensors"
run_np 1 export "$CK" "$CK" --format onnx --input 2,8,8
expect_error 2 "is the checkpoint being read"
INIT=$(dirname "$MIDSCALE")/tests/lm_init
[ -x "$INIT" ] || fail "no fixture at $INIT (build the lm_init target)"
cat >lm.yaml <<YAML
run: {name: lm, seed: 5}
data: {path: none.h5, train_x: /x, train_y: /y}
model:
  input: [8]
  layers:
    - {type: embedding, vocab: 16, dim: 8}
    - {type: pos_embedding}
    - {type: transformer_block, heads: 2, causal: true}
    - {type: dense, units: 16}
YAML
lmck=$("$INIT" lm.yaml lmck) || fail "lm_init failed"
run_np 1 export "$lmck" x.onnx
expect_error 2 "model.layers[0]: embedding has no ONNX export"
run_np 1 export "$lmck" lm.safetensors
expect_ok
[ ! -e x.onnx ] || fail "a failed export left x.onnx"
ls -a | grep -q '\.tmp\.' && fail "a temporary file was left behind"
echo "onnx_export: ok"
