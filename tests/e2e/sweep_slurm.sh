#!/usr/bin/env bash
# A 4-trial sweep as a Slurm job array on a real single-node cluster
# started for the test (tests/slurm/cluster.sh): sbatch the sweep.sbatch
# that `midscale sweep` wrote, signal array task 0 with USR1 while it
# trains, see it checkpoint, requeue itself, resume with --resume auto and
# complete; the three others complete untouched, and sweep-report lists
# all 4 as done with their metrics. Needs root, slurm-wlm and munge.
source "$(dirname "$0")/lib.sh"
source "$MS_SOURCE_DIR/tests/slurm/cluster.sh"
for tool in sbatch slurmctld slurmd munged; do
  command -v "$tool" >/dev/null || fail "$tool is missing: install slurm-wlm and munge"
done
[ "$(id -u)" -eq 0 ] || fail "the test cluster's daemons run as root"
trap slurm_stop EXIT
slurm_start "$WORK/cluster" || fail "could not start the test cluster"

synth data.h5 --train 8192 --test 512 --features 64
cat >base.yaml <<YAML
run: {name: base, dir: unused, seed: 7}
data: {path: data.h5}
model:
  layers:
    - {type: dense, units: 256, activation: relu}
    - {type: dense, units: 10}
optim: {lr: 0.05, momentum: 0.9}
train: {epochs: 30, batch_size: 64, eval_batch_size: 512}
log: {every_steps: 200, progress: false}
YAML
# A few seconds per trial under srun on an idle 2-core machine; two ranks
# per task take both cores, so the tasks run one after another whatever
# max_parallel allows. So that USR1 arrives mid-run however fast the
# machine is, rank 0 of every trial pauses 4 s before the sync of step 250
# (MIDSCALE_DEBUG_STALL, trainer/fault.h; sbatch passes the environment
# on), just after the first train record (step 200) the signal waits for.
cat >sweep.yaml <<YAML
base: base.yaml
ranks: 2
grid:
  optim.lr: [0.01, 0.02, 0.05, 0.1]
slurm: {max_parallel: 2, time: "00:10:00"}
YAML
"$MIDSCALE" sweep sweep.yaml --out sw || fail "midscale sweep failed"
job=$(MIDSCALE="$MIDSCALE" MIDSCALE_DEBUG_STALL=0:250:4 sbatch --parsable sw/sweep.sbatch) || fail "sbatch failed"
echo "array job $job submitted at $(date +%T.%N | cut -c1-12)"

for _ in $(seq 1 600); do
  grep -q '"kind":"train"' sw/trial-000/metrics.jsonl 2>/dev/null && break
  sleep 0.1
done
grep -q '"kind":"train"' sw/trial-000/metrics.jsonl 2>/dev/null ||
  { cat sw/logs/*; fail "task 0 never trained"; }
echo "scancel --signal=USR1 task ${job}_0 at $(date +%T.%N | cut -c1-12)"
# Slurm 22.05 delivers USR1 to a running array task while others of the
# array are pending, yet answers "Job can not be altered now, try again
# later", and scancel then retries every few seconds, signalling the task
# again after its requeue. So scancel gets 3 s, and the delivery is read
# from the task's log instead of scancel's exit status.
timeout 3 scancel --signal=USR1 --batch "${job}_0" 2>scancel.err || true
for _ in $(seq 1 100); do
  grep -q '^got USR1' sw/logs/trial-000.out 2>/dev/null && break
  sleep 0.1
done
grep -q '^got USR1' sw/logs/trial-000.out || { cat scancel.err; fail "USR1 never reached task 0"; }
for _ in $(seq 1 900); do
  [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
  sleep 0.2
done
[ -z "$(squeue -h -j "$job")" ] || { squeue -j "$job"; fail "the array did not finish"; }
for t in 0 1 2 3; do
  state=$(slurm_job_state "${job}_$t")
  log=sw/logs/trial-00$t.out
  grep -E '^(task |got USR1|midscale|checkpointed|resumed)' "$log" | sed "s/^/task $t: /"
  [ "$state" = COMPLETED ] || { cat "$log"; fail "task $t ended $state"; }
  [ "$(cat sw/trial-00$t/exit_status)" = 0 ] || fail "task $t: exit status"
done
restarts=$(scontrol show job "${job}_0" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[ "${restarts:-0}" -ge 1 ] || fail "task 0 was not requeued (Restarts=$restarts)"
log0=sw/logs/trial-000.out
grep -q '^midscale: stopped: signal 10' "$log0" || fail "task 0 did not stop on USR1"
[ "$(grep -c '^got USR1' "$log0")" -eq 1 ] || fail "task 0 got USR1 more than once"
grep -q 'requeueing' "$log0" || fail "task 0's script did not requeue"
grep -q '^resumed from .*step-' "$log0" || fail "task 0 did not resume"
for t in 1 2 3; do
  ! grep -q 'requeueing' "sw/logs/trial-00$t.out" || fail "task $t was requeued too"
done

"$MIDSCALE" sweep-report sw | tee report.txt || fail "sweep-report failed"
[ "$(grep -c '| done |' report.txt)" -eq 4 ] || fail "the report does not list 4 trials done"
"$PYTHON" - sw <<'PY' || fail "the report's metrics"
import csv, math, sys
rows = list(csv.DictReader(open(f"{sys.argv[1]}/report.csv")))
assert sorted(r["trial"] for r in rows) == [f"trial-00{i}" for i in range(4)], rows
for r in rows:
    assert r["step"] == "3840", r
    assert math.isfinite(float(r["eval_loss"])) and 0 < float(r["eval_acc"]) <= 1, r
PY
note "array job $job: 4 trials done, task 0 stopped by USR1, requeued ($restarts restart), resumed"
echo "sweep_slurm: ok"
