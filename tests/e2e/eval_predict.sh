#!/usr/bin/env bash
# Issue 19, eval and predict. `midscale eval` on the final checkpoint prints
# the test accuracy the run ended with, on 1 rank and on 3 (which do not
# divide the 1000 test samples: every sample counted once, the confusion
# matrix sums to 1000); `midscale predict` writes outputs that match an
# independent NumPy forward pass of the exported weights within 1e-5, for
# an MLP and a small CNN, on 1 and 3 ranks through parallel HDF5; R^2, MSE
# and MAE of a regression agree with NumPy on predict's outputs; bad inputs
# end with their exit code and one message.
source "$(dirname "$0")/lib.sh"
need_h5py
NPF="$MS_SOURCE_DIR/tests/tools/np_forward.py"

synth data.h5 --train 2048 --test 1000 --features 16
smoke_config cfg.yaml data.h5 run
run_np 2 train cfg.yaml --set train.eval_top_k=3
expect_ok
final=$(grep -o 'final test accuracy [0-9.]* (loss [0-9.]*)' "$LAST_OUT") ||
  { cat "$LAST_OUT"; fail "no final test accuracy"; }
ck=$(ls run/checkpoints/step-*.safetensors.zst | tail -n 1)
note "training: $final"

note "eval on 1 and 3 ranks prints the same accuracy and loss"
for np in 1 3; do
  run_np $np eval cfg.yaml "$ck" --set train.eval_top_k=3
  expect_ok
  got=$(grep -o '^test accuracy [0-9.]* (loss [0-9.]*)' "$LAST_OUT") || { cat "$LAST_OUT"; fail "no test accuracy"; }
  [ "final $got" = "$final" ] || { cat "$LAST_OUT"; fail "$np ranks: '$got', training ended with '$final'"; }
  grep -q '^confusion matrix' "$LAST_OUT" || fail "no confusion matrix"
  grep -q "1000 samples, $np rank" "$LAST_OUT" || { cat "$LAST_OUT"; fail "not 1000 samples on $np ranks"; }
done
run_np 3 eval cfg.yaml "$ck" --json --set=train.eval_top_k=3
expect_ok
cp "$LAST_OUT" eval3.json
run_np 3 eval cfg.yaml "$ck" --split data.h5:/test/images --json
expect_ok
cp "$LAST_OUT" evalpath.json
run_np 2 eval cfg.yaml "$ck" --split train --json
expect_ok
cp "$LAST_OUT" evaltrain.json
/usr/bin/python3 - eval3.json evalpath.json evaltrain.json run/metrics.jsonl data.h5 <<'PY'
import json, sys
import h5py, numpy as np
e, p, t = (json.load(open(f)) for f in sys.argv[1:4])
ev = [r for r in map(json.loads, open(sys.argv[4])) if r["kind"] == "eval"][-1]
y = h5py.File(sys.argv[5], "r")["test/labels"][...]
c = np.array(e["confusion"])
assert e["samples"] == 1000 and c.sum() == 1000, (e["samples"], c.sum())
assert np.trace(c) == round(e["accuracy"] * 1000), (np.trace(c), e["accuracy"])
assert (c.sum(axis=1) == np.bincount(y, minlength=10)).all(), "rows are not the label counts"
assert [k["samples"] for k in e["classes"]] == list(c.sum(axis=1))
assert abs(e["accuracy"] - ev["acc"]) < 1e-6 and abs(e["loss"] - ev["loss"]) < 1e-6, (e, ev)
assert e["top_k"] == 3 and abs(e["top_k_accuracy"] - ev["topk_acc"]) < 1e-6, (e, ev)
assert p["labels"] == "/test/labels" and p["accuracy"] == e["accuracy"], p
assert t["samples"] == 2048 and t["inputs"] == "/train/images", t
print(f"eval: accuracy {e['accuracy']} on 3 ranks = the run's {ev['acc']}; confusion sums to 1000")
PY

note "predict: 3 ranks, logits and argmax, against NumPy"
"$MIDSCALE" export "$ck" model.safetensors >/dev/null
run_np 3 predict cfg.yaml "$ck" data.h5:/test/images pred.h5
expect_ok
/usr/bin/python3 "$NPF" model.safetensors data.h5 /test/images pred.h5 || fail "predict differs from NumPy"
run_np 1 predict cfg.yaml "$ck" data.h5:/test/images pred1.h5 --probs
expect_ok
/usr/bin/python3 "$NPF" model.safetensors data.h5 /test/images pred1.h5 --probs || fail "--probs differs"
ls ./*.tmp 2>/dev/null && fail "a temporary file was left behind"

note "predict: a small CNN (model.input [1, 4, 4])"
cat >cnn.yaml <<YAML
run: {name: cnn, dir: cnnrun, seed: 3}
data: {path: data.h5, scale: 0.5}
model:
  input: [1, 4, 4]
  layers:
    - {type: conv2d, filters: 4, kernel: 3, padding: 1, activation: relu}
    - {type: maxpool2d, kernel: 2}
    - {type: flatten}
    - {type: dense, units: 10}
optim: {lr: 0.05, momentum: 0.9}
train: {epochs: 1, batch_size: 64, eval_batch_size: 256}
log: {every_steps: 100, progress: false}
YAML
run_np 2 train cnn.yaml
expect_ok
cck=$(ls cnnrun/checkpoints/step-*.safetensors.zst | tail -n 1)
"$MIDSCALE" export "$cck" cnn.safetensors >/dev/null
run_np 3 predict cnn.yaml "$cck" data.h5:/test/images cnnpred.h5
expect_ok
/usr/bin/python3 "$NPF" cnn.safetensors data.h5 /test/images cnnpred.h5 || fail "CNN predict differs"

note "regression: eval's mse, mae and R^2 against NumPy on predict's outputs"
/usr/bin/python3 "$MS_SOURCE_DIR/tests/tools/make_regression.py" reg.h5 --targets 2 >/dev/null
cat >reg.yaml <<YAML
run: {name: reg, dir: regrun, seed: 1}
data: {path: reg.h5, train_x: /train/x, train_y: /train/y, test_x: /test/x, test_y: /test/y}
model:
  layers:
    - {type: dense, units: 2}
  loss: mse
optim: {lr: 0.05}
train: {epochs: 1, batch_size: 32, eval_batch_size: 100}
log: {every_steps: 100, progress: false}
YAML
run_np 2 train reg.yaml
expect_ok
rck=$(ls regrun/checkpoints/step-*.safetensors.zst | tail -n 1)
run_np 3 eval reg.yaml "$rck" --json
expect_ok
cp "$LAST_OUT" reg.json
run_np 3 predict reg.yaml "$rck" reg.h5:/test/x regpred.h5
expect_ok
"$MIDSCALE" export "$rck" reg.safetensors >/dev/null
/usr/bin/python3 "$NPF" reg.safetensors reg.h5 /test/x regpred.h5 || fail "regression predict differs"
/usr/bin/python3 - reg.json regpred.h5 reg.h5 <<'PY'
import json, sys
import h5py, numpy as np
e = json.load(open(sys.argv[1]))
p = h5py.File(sys.argv[2], "r")["outputs"][...].astype(np.float64)
t = h5py.File(sys.argv[3], "r")["test/y"][...].astype(np.float64)
mse, mae = ((p - t) ** 2).mean(), np.abs(p - t).mean()
r2 = 1 - ((p - t) ** 2).sum(axis=0) / ((t - t.mean(axis=0)) ** 2).sum(axis=0)
print(f"regression: mse {e['mse']:.6g} (numpy {mse:.6g}), r2 {e['r2']:.6g} (numpy {r2.mean():.6g})")
assert abs(e["mse"] - mse) <= 1e-5 * max(1, mse) and abs(e["mae"] - mae) <= 1e-5 * max(1, mae)
assert np.allclose(e["r2_per_output"], r2, atol=1e-5) and abs(e["r2"] - r2.mean()) < 1e-5
PY

note "bce_with_logits: eval's accuracy, predict's sigmoid against NumPy"
"$MIDSCALE" prepare synthetic two.h5 --train 1024 --test 300 --features 12 --classes 2 >/dev/null
cat >bce.yaml <<YAML
run: {name: bce, dir: bcerun}
data: {path: two.h5}
model:
  layers:
    - {type: dense, units: 16, activation: tanh}
    - {type: dense, units: 1}
  loss: bce_with_logits
optim: {name: adam, lr: 0.01}
train: {epochs: 1, batch_size: 32, eval_batch_size: 100}
log: {every_steps: 100, progress: false}
YAML
run_np 2 train bce.yaml
expect_ok
bck=$(ls bcerun/checkpoints/step-*.safetensors.zst | tail -n 1)
for np in 1 3; do
  run_np $np eval bce.yaml "$bck" --json
  expect_ok
  grep -q '"accuracy"' "$LAST_OUT" || { cat "$LAST_OUT"; fail "bce: no accuracy"; }
done
run_np 3 predict bce.yaml "$bck" two.h5:/test/images bpred.h5 --probs
expect_ok
"$MIDSCALE" export "$bck" bce.safetensors >/dev/null
/usr/bin/python3 "$NPF" bce.safetensors two.h5 /test/images bpred.h5 --probs || fail "bce predict differs"

note "bad inputs: one message and the documented exit code"
run_np 3 predict cfg.yaml "$ck" data.h5:/test/nope out.h5
expect_error 3 "/test/nope"
"$MIDSCALE" prepare synthetic wide.h5 --train 64 --test 64 --features 12 >/dev/null
run_np 3 predict cfg.yaml "$ck" wide.h5:/test/images out.h5
expect_error 3 "has 12 features per sample, but the model takes 16"
run_np 2 eval cfg.yaml "$ck" --split wide.h5:/test/images
expect_error 3 "has 12 features per sample"
run_np 3 predict cnn.yaml "$ck" data.h5:/test/images out.h5
expect_error 4 "was made for another model"
run_np 1 eval cnn.yaml "$ck"
expect_error 4 "was made for another model"
run_np 3 predict cfg.yaml "$ck" data.h5:/test/images pred.h5
expect_error 2 "exists: pass --force"
run_np 1 predict cfg.yaml "$ck" data.h5:/test/images data.h5 --force
expect_error 2 "is the input file"
run_np 3 predict cfg.yaml "$ck" data.h5:/test/images no/such/dir/out.h5
expect_error 1 "cannot create 'no/such/dir/out.h5.tmp': its directory: No such file"
run_np 2 predict reg.yaml "$rck" reg.h5:/test/x out.h5 --probs
expect_error 2 "--probs needs a classifier"
run_np 2 eval cfg.yaml "$ck" --split data.h5:/test/images --labels /test/nolabels
expect_error 3 "/test/nolabels"
run_np 2 eval cfg.yaml "$ck" --split data.h5
expect_error 2 "--split takes test, train or PATH:DATASET"
head -c 2000 "$ck" >trunc.safetensors.zst
run_np 3 predict cfg.yaml trunc.safetensors.zst data.h5:/test/images out.h5
expect_error 4 "trunc.safetensors.zst"
run_np 1 eval cfg.yaml
expect_error 2 "eval needs CONFIG and CHECKPOINT"
[ ! -e out.h5 ] && [ ! -e out.h5.tmp ] || fail "a failed predict left out.h5 or its temporary file"
note "a sequence model: eval and predict take one label per sample, so refuse it (exit 2)"
INIT=$(dirname "$MIDSCALE")/tests/lm_init
[ -x "$INIT" ] || fail "no fixture at $INIT (build the lm_init target)"
lm_config() { # FILE [EXTRA DATA KEYS]
  cat >"$1" <<YAML
run: {name: lm, seed: 5}
data: {path: lm.h5, train_x: /x, train_y: /y${2:-}}
model:
  input: [8]
  layers:
    - {type: embedding, vocab: 16, dim: 8}
    - {type: pos_embedding}
    - {type: transformer_block, heads: 2, causal: true}
    - {type: dense, units: 16}
YAML
}
/usr/bin/python3 - <<'PY'
import h5py, numpy as np
r = np.random.default_rng(1)
with h5py.File("lm.h5", "w") as f:
    f["x"] = r.integers(0, 16, (12, 8)).astype(np.float32)
    f["y"] = r.integers(0, 16, (12,)).astype(np.int32)
    f["ids"] = r.integers(0, 16, (200,)).astype(np.uint8)
PY
lm_config lm.yaml
lmck=$("$INIT" lm.yaml lmck) || fail "lm_init failed"
run_np 2 eval lm.yaml "$lmck" --split lm.h5:/x --labels /y
expect_error 2 "sequence model"
run_np 2 predict lm.yaml "$lmck" lm.h5:/x lmpred.h5
expect_error 2 "sequence model"
lm_config lmtok.yaml ", tokens: true, seq_len: 8"
run_np 2 eval lmtok.yaml "$lmck" --split lm.h5:/ids --labels /ids
expect_error 2 "data.tokens"
run_np 2 predict lmtok.yaml "$lmck" lm.h5:/ids lmpred.h5
expect_error 2 "data.tokens"
[ ! -e lmpred.h5 ] || fail "predict wrote a sequence model's outputs as one row per sample"
cp pred.h5 keep.h5
run_np 3 predict cfg.yaml "$ck" data.h5:/test/images pred.h5 --force --probs
expect_ok
cmp -s pred.h5 keep.h5 && fail "--force did not replace pred.h5"
"$MIDSCALE" help eval | grep -q -- '--split test|train|PATH:DATASET' || fail "no help for eval"
"$MIDSCALE" help predict | grep -q -- 'INPUT.h5:DATASET OUT.h5' || fail "no help for predict"
echo "eval_predict: ok"
