#!/usr/bin/env bash
# The hang watchdog: a rank made to stall before a collective
# (MIDSCALE_DEBUG_STALL=RANK:STEP:SECONDS, far longer than comm.timeout_s)
# ends the job with exit 6 and one message naming the waiting rank, the
# operation, the step and the rank that has not arrived, within
# comm.timeout_s plus a few seconds (asserted loosely: well before the
# stall would end; the figure is printed). Without a stall, a short timeout
# does not fire.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 1024 --test 256 --features 16
smoke_config cfg.yaml data.h5 run

# watchdog_run NP STALL: runs with comm.timeout_s 3; sets ELAPSED (seconds).
# Log lines every 50 steps: a log line's sum over ranks (report_step)
# would otherwise be each step's last collective.
watchdog_run() {
  local np=$1 stall=$2 t0
  t0=$(date +%s.%N)
  MIDSCALE_DEBUG_STALL=$stall run_np "$np" train cfg.yaml --set run.dir="run$np" \
    --set comm.timeout_s=3 --set train.max_steps=20 --set train.batch_size=96 \
    --set log.every_steps=50
  ELAPSED=$(echo "$(date +%s.%N) - $t0" | bc)
}

# Rank 1 of 2 sleeps 300 s before the gradient allreduce of step 3. (Its last
# collective, with comm.shared_params on by default: step 2's parameter barrier.
# The sharded update without clipping has no barrier of its own after
# backward: rank 0 waits in the step agreement, which is that barrier.)
watchdog_run 2 1:3:300
expect_error 6 "hang: rank 0 waited 3."
grep -q "in step agreement (train_step) at step 3 for the other ranks; not arrived (ranks of this node): rank 1 has not reached it, last in parameter barrier (train_step) at step 2" "$LAST_ERR" ||
  { cat "$LAST_ERR"; fail "the report does not name the operation, step and rank"; }
note "np 2: ended after ${ELAPSED} s (timeout 3 s, start-up included)"
(( $(echo "$ELAPSED < 60" | bc) )) || fail "took ${ELAPSED} s: the watchdog did not end the stall"

# Rank 0 of 3 stalls: rank 1 reports (after its 2 s grace), naming rank 0.
watchdog_run 3 0:5:300
[ "$RC" -eq 6 ] || { cat "$LAST_ERR"; fail "exit $RC, expected 6"; }
grep -q "^midscale: error: hang: rank [12] waited .* at step 5 .*rank 0 has not reached it" "$LAST_ERR" ||
  { cat "$LAST_ERR"; fail "np 3: the report does not name rank 0"; }
note "np 3: ended after ${ELAPSED} s"
(( $(echo "$ELAPSED < 60" | bc) )) || fail "took ${ELAPSED} s: the watchdog did not end the stall"

# No stall: the same short timeout lets the run finish.
run_np 2 train cfg.yaml --set run.dir=quiet --set comm.timeout_s=3 --set train.max_steps=20
expect_ok
echo "watchdog: ok"
