#!/usr/bin/env bash
# A file system that fills up in the middle of a checkpoint write: the run
# ends with a clear message (exit 1, every rank), no temporary file is left,
# and the previous checkpoint is intact and verifies. Needs root to mount a
# 2 MiB tmpfs (CI and scripts/test.sh run as root).
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || fail "this test mounts a tmpfs and must run as root"

synth data.h5 --train 1024 --test 128 --features 64
smoke_config cfg.yaml data.h5 run
mkdir -p small
mount -t tmpfs -o size=2m midscale-test small || fail "cannot mount a tmpfs on $WORK/small"
trap 'umount "$WORK/small" 2>/dev/null || true' EXIT
# ~0.8 MB a checkpoint: two fit in 2 MiB, the third does not.
run_np 2 train cfg.yaml --set model.layers[0].units=1024 --set checkpoint.dir=small \
  --set checkpoint.every_steps=4 --set checkpoint.keep=10 --set train.epochs=2
expect_error 1 "No space left on device"
ls -la small
ls -a small | grep -q '\.tmp\.' && fail "a temporary file was left behind"
n=$(ls small | grep -c '^step-')
[ "$n" -ge 1 ] || fail "no earlier checkpoint survived"
for f in small/step-*; do
  "$MIDSCALE" inspect "$f" >/dev/null || fail "$f does not verify"
done
note "$n earlier checkpoint(s) intact and verified"
echo "diskfull: ok"
