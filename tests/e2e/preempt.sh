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
note "checkpoint.every_minutes: time-based checkpoints during a run (every 0.6 s here)"
# About 5 s of training (four times the runs above): saves land a few steps
# after they are taken, so the run must outlast several intervals.
run_np 2 train cfg.yaml "${common[@]}" --set train.epochs=480 --set run.dir=timed \
  --set checkpoint.every_minutes=0.01 --set checkpoint.keep=100 --set checkpoint.workers=2
expect_ok
n=$(ls timed/checkpoints | grep -c '^step-')
[ "$n" -ge 3 ] || fail "only $n checkpoints from a time interval of 0.6 s"
for f in timed/checkpoints/step-*; do "$MIDSCALE" inspect "$f" >/dev/null || fail "$f"; done
note "$n checkpoints, all verified"
echo "preempt: ok"
