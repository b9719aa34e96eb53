#!/usr/bin/env bash
# The loader thread (data/loader.h) changes when batches are read, never
# which: runs with data.prefetch 0 (reads in the step), 1, 2 and 6, streamed
# or in memory (on 2 ranks and on 1), in global and block shuffle, end with bitwise-identical
# parameters; a stop and resume mid-epoch with the loader ahead matches an
# uninterrupted run; a chunk that cannot be read fails the step it belongs
# to with exit 3 on every rank and one message naming the step, without a
# hang, whatever the prefetch depth.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 2000 --test 300 --features 20
smoke_config cfg.yaml data.h5 run
# 2000 samples / batch 64: 31 steps an epoch, 62 in two; 8 samples dropped
# per epoch (drop_last).
final=step-00000062.safetensors.zst

# train NAME ARGS...: a 2-rank run into NAME/; its final parameters in NAME.safetensors.
train() {
  local name=$1
  shift
  run_np 2 train cfg.yaml --set run.dir="$name" "$@"
  expect_ok
  decompress "$name/checkpoints/$final" "$name.safetensors"
}
same() {
  "$PYTHON" "$CHECKER" --compare "$1.safetensors" "$2.safetensors" >/dev/null ||
    fail "$2 differs from $1"
}

note "global shuffle, streamed: prefetch 0, 1, 2, 6"
train g0 --set data.cache=stream --set data.prefetch=0
grep -q "loader: shuffle global, streamed: read in the step, chunk cache shared by the node's ranks (data.cache stream)" "$LAST_OUT" ||
  { cat "$LAST_OUT"; fail "no loader line (a chunk cache shared by the node's 2 ranks)"; }
grep -q '(streamed)' "$LAST_OUT" || fail "data.cache=stream did not stream"
for p in 1 2 6; do
  train "g$p" --set data.cache=stream --set data.prefetch=$p
  same g0 "g$p"
done
grep -q "loader: shuffle global, streamed: 6 batches read ahead" "$LAST_OUT" ||
  { cat "$LAST_OUT"; fail "prefetch 6 did not read ahead"; }
note "streamed, a chunk cache per rank (comm.shared_memory false) as shared"
train gp --set data.cache=stream --set comm.shared_memory=false
grep -q 'loader: shuffle global, streamed: 2 batches read ahead (data.cache stream)' "$LAST_OUT" ||
  { cat "$LAST_OUT"; fail "comm.shared_memory=false still shares the chunk cache"; }
same g0 gp
note "in memory (data.cache memory and auto) as streamed"
train gm --set data.cache=memory
grep -q '(in memory)' "$LAST_OUT" || fail "data.cache=memory is not in memory"
grep -q 'in memory: each batch assembled in the step' "$LAST_OUT" ||
  fail "data in memory should be assembled in the step, without the loader thread"
same g0 gm
train ga
same g0 ga
# One rank that may run on a spare core (unbound: its affinity mask holds
# every core): the set in memory is read ahead too, and gives what it gives
# read in the step. Bound to one core (mpiexec's default for 1 or 2 ranks),
# the rank has no core for a loader thread and assembles in the step.
for p in 0 2; do
  MPIEXEC_FLAGS="--bind-to none" run_np 1 train cfg.yaml --set run.dir="m1p$p" \
    --set data.cache=memory --set data.prefetch=$p
  expect_ok
  decompress "m1p$p/checkpoints/$final" "m1p$p.safetensors"
done
if [ "$(nproc)" -gt 1 ]; then
  grep -q 'loader: shuffle global, in memory: 2 batches read ahead' "$LAST_OUT" ||
    { cat "$LAST_OUT"; fail "1 unbound rank on $(nproc) cores: data in memory should be read ahead"; }
  run_np 1 train cfg.yaml --set run.dir=m1bound --set data.cache=memory --set data.prefetch=2
  expect_ok
  grep -q 'in memory: each batch assembled in the step' "$LAST_OUT" ||
    { cat "$LAST_OUT"; fail "1 rank bound to one core: data in memory should be assembled in the step"; }
fi
same m1p0 m1p2

note "block shuffle (blocks of 100, windows of 3), streamed: prefetch 0 and 3"
block=(--set data.cache=stream --set data.shuffle=block --set data.block_size=100
  --set data.shuffle_window=3)
train b0 "${block[@]}" --set data.prefetch=0
grep -q 'loader: shuffle block (blocks of 100 samples, 3 per window)' "$LAST_OUT" ||
  { cat "$LAST_OUT"; fail "no block loader line"; }
train b3 "${block[@]}" --set data.prefetch=3
same b0 b3
if "$PYTHON" "$CHECKER" --compare g0.safetensors b0.safetensors >/dev/null 2>&1; then
  fail "block and global shuffle gave the same parameters: the shuffle mode is ignored"
fi
note "shuffle none"
train n2 --set data.cache=stream --set data.shuffle=none
if "$PYTHON" "$CHECKER" --compare g0.safetensors n2.safetensors >/dev/null 2>&1; then
  fail "shuffle none gave the global-shuffle parameters"
fi

note "data.memory_mb decides memory or streamed; a global shuffle over it warns"
synth big.h5 --train 20000 --test 300 --features 20 # 1.6 MB of float32 inputs
warning="reads a whole HDF5 chunk for each sample; data.shuffle: block reads each chunk once"
over=(--set data.path=big.h5 --set data.memory_mb=1 --set train.batch_size=2000 --stop-at 3)
run_np 2 train cfg.yaml --set run.dir=m1 "${over[@]}"
expect_ok
grep -q '(streamed)' "$LAST_OUT" || { cat "$LAST_OUT"; fail "1.6 MB over a 1 MiB budget is not streamed"; }
grep -q -- "loader: warning: a global shuffle of '/train/images' (chunks of [0-9]* samples.*$warning" \
  "$LAST_OUT" || { cat "$LAST_OUT"; fail "no warning for a global shuffle over the budget"; }
run_np 2 train cfg.yaml --set run.dir=m2 "${over[@]}" --set data.shuffle=block
expect_ok
! grep -q "$warning" "$LAST_OUT" || fail "block shuffle warned"
run_np 2 train cfg.yaml --set run.dir=m3 "${over[@]}" --set data.memory_mb=2
expect_ok
grep -q '(in memory)' "$LAST_OUT" || { cat "$LAST_OUT"; fail "1.6 MB within a 2 MiB budget is not in memory"; }
! grep -q "$warning" "$LAST_OUT" || fail "data in memory warned"

note "stop mid-epoch (step 40) with the loader ahead, resume: as uninterrupted"
run_np 2 train cfg.yaml "${block[@]}" --set data.prefetch=4 --set run.dir=r --stop-at 40
expect_ok
train r "${block[@]}" --set data.prefetch=4 --resume auto
grep -q 'at step 40 (epoch 2, 9 of its 31 steps done)' "$LAST_OUT" || { cat "$LAST_OUT"; fail "mid-epoch cursor"; }
same b0 r

note "a shuffle change is refused on resume (it changes the sample stream)"
run_np 2 train cfg.yaml "${block[@]}" --set run.dir=r --set data.shuffle=global --resume auto
expect_error 4 "data.shuffle block → global"

PY=/usr/bin/python3
need_h5py

# 640 samples in chunks of 32; chunk 11 (samples 352..383) damaged. In order
# (shuffle none), batch 64: steps 0..4 read, step 5 (samples 320..383) fails.
"$PY" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(3)
x = rng.normal(0, 1, (640, 20)).astype(np.float32)
y = rng.integers(0, 10, 640)
with h5py.File("damaged.h5", "w") as f:
    f.create_dataset("train/images", data=x, chunks=(32, 20), compression="gzip")
    f.create_dataset("train/labels", data=y)
    f.create_dataset("test/images", data=x[:100])
    f.create_dataset("test/labels", data=y[:100])
with h5py.File("damaged.h5", "r") as f:
    info = f["train/images"].id.get_chunk_info(11)
with open("damaged.h5", "r+b") as f:
    f.seek(info.byte_offset + 2)
    f.write(b"\xff" * (info.size - 4))
PY

# damaged P: both ranks exit 3, one message naming step 6 (1-based, as
# every human-readable line) and rank 1's samples (the lowest failing
# rank: rank 0's half, 320..351, reads).
damaged() {
  local p=$1
  rm -f rc.*
  set +e
  OMPI_MCA_orte_abort_on_non_zero_status=0 timeout --kill-after=10 120 \
    "$MPIEXEC" -n 2 bash -c '"$@"; rc=$?; echo $rc >"rc.$OMPI_COMM_WORLD_RANK"; exit $rc' \
    rank "$MIDSCALE" train cfg.yaml --set run.dir="d$p" --set data.path=damaged.h5 \
    --set data.cache=stream --set data.shuffle=none --set data.prefetch="$p" \
    >"out.d$p.log" 2>"err.d$p.log"
  local rc=$?
  set -e
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || { cat "err.d$p.log"; fail "prefetch $p: timed out (a hang)"; }
  for r in 0 1; do
    [ -f "rc.$r" ] || { cat "err.d$p.log"; fail "prefetch $p: rank $r left no exit code"; }
    [ "$(cat "rc.$r")" -eq 3 ] || { cat "err.d$p.log"; fail "prefetch $p: rank $r exited $(cat "rc.$r")"; }
  done
  [ "$(grep -c '^midscale: error:' "err.d$p.log")" -eq 1 ] || { cat "err.d$p.log"; fail "error lines"; }
  grep -F -q "rank 1: step 6 (epoch 1, step 6 of the epoch): cannot read samples 352..383 of '/train/images' in 'damaged.h5'" \
    "err.d$p.log" || { cat "err.d$p.log"; fail "prefetch $p: message"; }
  # Steps 1..5 were logged (log.every_steps 1): the five good steps trained.
  [ "$(grep -c '"kind":"train"' "d$p/metrics.jsonl")" -eq 5 ] ||
    { cat "d$p/metrics.jsonl"; fail "prefetch $p: expected 5 trained steps"; }
  note "prefetch $p: $(grep '^midscale: error:' "err.d$p.log")"
}
damaged 0
damaged 2
damaged 8
echo "loader: ok"
