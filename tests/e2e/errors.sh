#!/usr/bin/env bash
# Bad input ends every rank with one clear message and the documented exit
# code, without hanging (run_np fails the test on a timeout).
source "$(dirname "$0")/lib.sh"
export RUN_TIMEOUT=60

synth data.h5 --train 1024 --test 256 --features 16
smoke_config cfg.yaml data.h5 run

note "a config path that does not exist: exit 2"
run_np 2 train does-not-exist.yaml
expect_error 2 "cannot read config 'does-not-exist.yaml'"

note "a data file that does not exist: exit 3"
run_np 2 train cfg.yaml --set data.path=missing.h5
expect_error 3 "missing.h5"

note "a dataset that is not in the file: exit 3, naming what is there"
run_np 2 train cfg.yaml --set data.train_x=/train/imagez
expect_error 3 "/train/imagez"
grep -q '/train/images' "$LAST_ERR" || fail "the message should list the datasets in the file"

note "labels outside the model's outputs: exit 3, naming the sample"
# The data has 10 classes; a 6-output model cannot represent labels 6..9.
run_np 2 train cfg.yaml --set model.layers[2].units=6
expect_error 3 "outside [0, 6)"
grep -q 'of sample [0-9]' "$LAST_ERR" || fail "the message should name the first bad sample"

note "the same with 3 ranks: exit 3"
run_np 3 train cfg.yaml --set model.layers[2].units=6 --set train.batch_size=96
expect_error 3 "outside [0, 6)"

note "a global batch the world does not divide: exit 2"
run_np 3 train cfg.yaml
expect_error 2 "not divisible by the world size 3"

note "a config key that does not exist: exit 2, with a suggestion"
run_np 2 train cfg.yaml --set optim.momentun=0.5
expect_error 2 "optim.momentum"

note "a file that is not HDF5: exit 3"
echo "not hdf5" >bogus.h5
run_np 2 train cfg.yaml --set data.path=bogus.h5
expect_error 3 "not an HDF5 file"

note "resuming from a damaged checkpoint: exit 4, and the good one is untouched"
run_np 2 train cfg.yaml --set train.epochs=1
expect_ok
ck=$(ls run/checkpoints/step-*.safetensors.zst | tail -n 1)
sum_before=$(sha256sum "$ck" | cut -d' ' -f1)
cp "$ck" damaged.safetensors.zst
size=$(stat -c %s damaged.safetensors.zst)
printf '\xff' | dd of=damaged.safetensors.zst bs=1 seek=$((size / 2)) conv=notrunc status=none
run_np 2 train cfg.yaml --resume damaged.safetensors.zst
expect_error 4 "damaged.safetensors.zst"
head -c $((size / 3)) "$ck" >truncated.safetensors.zst
run_np 2 train cfg.yaml --resume truncated.safetensors.zst
expect_error 4 "truncated.safetensors.zst"
[ "$(sha256sum "$ck" | cut -d' ' -f1)" = "$sum_before" ] || fail "the good checkpoint changed"

note "resuming a checkpoint of another model: exit 4, naming every changed key"
run_np 2 train cfg.yaml --set model.layers[0].units=40 --set run.seed=8 --resume "$ck"
expect_error 4 "$ck: this checkpoint was made with a different config: run.seed 7 → 8; model.layers[0].units 48 → 40"

note "resume-safe keys may change: more epochs, another learning rate"
run_np 2 train cfg.yaml --set optim.lr=0.01 --set log.every_steps=8 --resume "$ck"
expect_ok
echo "errors: ok"
