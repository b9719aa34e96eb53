#!/usr/bin/env bash
# The reducer changes when and where gradients are summed, never what: on
# 2 and 3 ranks, MPI collectives with overlap off (one collective after
# backward), overlap on with one bucket per layer and overlap on with
# DDP-like defaults, and the node-shared-memory sum (the default on one
# node) end with bitwise-identical parameters and optimizer state
# (tests/test_reducer.c checks the same on the reducer alone).
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 2048 --test 256 --features 24
smoke_config cfg.yaml data.h5 run
for np in 2 3; do
  for mode in off layers default shm; do
    mpi=(--set comm.shared_memory=false)
    case $mode in
      off) set=("${mpi[@]}" --set comm.overlap=false) ;;
      layers) set=("${mpi[@]}" --set comm.first_bucket_mb=0.001 --set comm.bucket_mb=0.001) ;;
      default) set=("${mpi[@]}") ;;
      shm) set=() ;;
    esac
    run_np "$np" train cfg.yaml --set run.dir="r$np$mode" --set train.batch_size=96 \
      --set train.max_steps=40 --set log.every_steps=10 "${set[@]}"
    expect_ok
    case $mode in
      off) want="1 bucket .*overlap off: comm.overlap false" ;;
      layers) want="3 buckets .*overlap: non-blocking collectives per bucket during backward" ;;
      default) want="1 bucket .*overlap off: the gradients fit one bucket" ;;
      shm) want="node shared memory" ;;
    esac
    grep -q "^comm: .*$want" "$LAST_OUT" || { grep '^comm:' "$LAST_OUT"; fail "np $np $mode: no '$want'"; }
    "$MIDSCALE" export "r$np$mode/checkpoints/step-00000040.safetensors.zst" "$np$mode.safetensors" \
      --with-optimizer >/dev/null
  done
  for mode in layers default shm; do
    "$PYTHON" "$CHECKER" --compare "${np}off.safetensors" "$np$mode.safetensors" ||
      fail "np $np: overlap off and $mode differ"
  done
  note "np $np: overlap off, one bucket per layer, DDP's buckets and shared memory agree bit for bit"
done
echo "overlap: ok"
