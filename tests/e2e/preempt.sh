#!/usr/bin/env bash
# Preemption: SIGTERM to one rank, or SIGUSR1 to mpirun (what Slurm's
# --signal=B:USR1@… and a forwarding batch script deliver), makes every rank
# agree at the next step, write a checkpoint and exit 75; --resume auto then
# finishes with parameters bitwise equal to an uninterrupted run.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 8192 --test 512 --features 64
smoke_config cfg.yaml data.h5 run
# Long enough (a few seconds of training) that the signal lands mid-run.
common=(--set train.epochs=120 --set log.every_steps=1000 --set model.layers[0].units=256)

note "reference: uninterrupted"
run_np 2 train cfg.yaml "${common[@]}" --set run.dir=ref
expect_ok
grep -q '^params: shared: ' "$LAST_OUT" || fail "the banner does not say the parameters are shared (comm.shared_params)"
final=$(ls ref/checkpoints | tail -n 1)

# signal_run NAME HOW: start a run, signal it once it trains (its first
# log line is in metrics.jsonl: the handlers are in place and most of the
# run is ahead, however busy the machine), expect exit 75.
signal_run() {
  local dir=$1 how=$2
  CALLS=$((CALLS + 1))
  LAST_OUT="$WORK/out.$CALLS.log" LAST_ERR="$WORK/err.$CALLS.log"
  "$MPIEXEC" -n 2 "$MIDSCALE" train cfg.yaml "${common[@]}" --set log.every_steps=50 \
    --set run.dir="$dir" >"$LAST_OUT" 2>"$LAST_ERR" &
  local launcher=$!
  for _ in $(seq 1 600); do
    grep -q '"kind":"train"' "$dir/metrics.jsonl" 2>/dev/null && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.05
  done
  grep -q '"kind":"train"' "$dir/metrics.jsonl" 2>/dev/null ||
    { cat "$LAST_OUT" "$LAST_ERR"; fail "$how: the run never trained"; }
  case "$how" in
    rank-term)
      # One rank only: the highest-numbered midscale process of this run.
      local pid
      pid=$(pgrep -n -f "^$MIDSCALE train cfg.yaml .*run.dir=$dir\$")
      [ -n "$pid" ] || fail "no rank process found"
      kill -TERM "$pid" ;;
    mpirun-usr1) kill -USR1 "$launcher" ;;
  esac
  set +e
  timeout 60 tail --pid="$launcher" -f /dev/null
  wait "$launcher"
  RC=$?
  set -e
}

for how in rank-term mpirun-usr1; do
  note "$how: stop, then resume"
  signal_run "$how" "$how"
  [ "$RC" -eq 75 ] || { cat "$LAST_OUT" "$LAST_ERR"; fail "$how: exit $RC, expected 75"; }
  grep -q '^midscale: stopped: signal' "$LAST_ERR" || { cat "$LAST_ERR"; fail "$how: no stop message"; }
  ck=$(sed -n 's/.*; wrote \([^;]*\); continue.*/\1/p' "$LAST_ERR")
  [ -f "$ck" ] || fail "$how: the checkpoint named in the message ($ck) does not exist"
  "$MIDSCALE" inspect "$ck" >/dev/null || fail "$how: the stop checkpoint does not verify"
  [ "$ck" != "$how/checkpoints/$final" ] || fail "$how: the run finished before the signal"
  run_np 2 train cfg.yaml "${common[@]}" --set run.dir="$how" --resume auto
  expect_ok
  grep -q '^params: shared: ' "$LAST_OUT" || fail "the banner does not say the parameters are shared (comm.shared_params)"
  decompress "ref/checkpoints/$final" ref.safetensors
  decompress "$how/checkpoints/$final" "$how.safetensors"
  "$PYTHON" "$CHECKER" --compare ref.safetensors "$how.safetensors" || fail "$how: parameters differ"
done
note "checkpoint.every_minutes: a checkpoint when the interval (0.6 s here) has passed"
# Bounded by steps (3 epochs, 384 steps), not by time: the time comes from
# MIDSCALE_DEBUG_STALL (trainer/fault.h), rank 0 sleeping 1 s before the
# gradient sync of the step after step 100 (step 101). The interval is then
# due, whatever the machine's speed, when rank 0 looks at its clock at the
# start of step 102 (or at 101's, on a machine slow enough that 0.6 s had
# passed already): a checkpoint at step 101 or 102, which no other rule
# would write. A slower machine may add others; every one must verify.
timed=(--set train.epochs=3 --set checkpoint.keep=100 --set checkpoint.workers=2)
MIDSCALE_DEBUG_STALL=0:100:1.0 run_np 2 train cfg.yaml "${common[@]}" "${timed[@]}" \
  --set run.dir=timed --set checkpoint.every_minutes=0.01
expect_ok
ls timed/checkpoints | grep -Eq '^step-0000010[12]\.' ||
  { ls timed/checkpoints; fail "no time-based checkpoint at step 101 or 102, after a 1 s stall"; }
[ -f timed/checkpoints/step-00000384.safetensors.zst ] || fail "no final checkpoint"
n=$(ls timed/checkpoints | grep -c '^step-')
for f in timed/checkpoints/step-*; do "$MIDSCALE" inspect "$f" >/dev/null || fail "$f"; done
note "$n checkpoints, all verified"
# The same stall with an interval of 10 minutes: only the final checkpoint
# (the one above came from the interval, not from the stall or the steps).
MIDSCALE_DEBUG_STALL=0:100:1.0 run_np 2 train cfg.yaml "${common[@]}" "${timed[@]}" \
  --set run.dir=untimed --set checkpoint.every_minutes=10
expect_ok
[ "$(ls untimed/checkpoints | grep -c '^step-')" -eq 1 ] ||
  { ls untimed/checkpoints; fail "checkpoints other than the final one with every_minutes: 10"; }
echo "preempt: ok"
