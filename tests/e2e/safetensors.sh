#!/usr/bin/env bash
# DESIGN.md "Checkpoint file": `zstd -d` on a checkpoint gives a file that an
# independent safetensors reader (tests/tools/safetensors_check.py, Python
# standard library only) accepts, with the tensors and metadata promised.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 1024 --test 256 --features 16
smoke_config cfg.yaml data.h5 run
run_np 2 train cfg.yaml --set train.epochs=1
expect_ok
ck=run/checkpoints/step-00000016.safetensors.zst
[ -f "$ck" ] || { ls -R run; fail "no final checkpoint $ck"; }
ls run/checkpoints | grep -v -q '^step-' && fail "stray files in the checkpoint directory"
decompress "$ck" model.safetensors
"$PYTHON" "$CHECKER" model.safetensors >summary.json || fail "the checker refused the file"

"$PYTHON" - summary.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t, m = s["tensors"], s["metadata"]
want = {"layers.0.weight": [48, 16], "layers.0.bias": [48],
        "layers.1.weight": [32, 48], "layers.1.bias": [32],
        "layers.2.weight": [10, 32], "layers.2.bias": [10]}
for name, shape in want.items():
    assert t[name]["shape"] == shape and t[name]["dtype"] == "F32", (name, t.get(name))
    assert t["optim/momentum/" + name]["shape"] == shape, name
assert len(t) == 2 * len(want), sorted(t)
for key in ["format", "format_version", "step", "epoch", "step_in_epoch", "world_size",
            "seed", "rng_state", "layout_hash", "data_hash", "config"]:
    assert key in m, f"metadata lacks {key}"
assert m["format"] == "midscale-ckpt" and m["step"] == "16" and m["world_size"] == "2"
assert m["epoch"] == "1" and m["step_in_epoch"] == "0" and m["seed"] == "7"
assert "batch_size: 64" in m["config"], "the resolved config is not in the metadata"
print("tensors and metadata as promised:", len(t), "tensors")
PY
echo "safetensors: ok"
