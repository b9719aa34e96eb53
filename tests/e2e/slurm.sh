#!/usr/bin/env bash
# Slurm end to end, on a real single-node cluster started for the test:
# sbatch scripts/slurm/preemptible.sbatch (2 ranks), signal the batch script
# with USR1 mid-run, see midscale checkpoint and exit 75, the job requeue
# itself, resume with --resume auto and finish with the same final
# parameters as an uninterrupted run. Needs root and Debian's slurm-wlm and
# munge (scripts/setup.sh installs them).
source "$(dirname "$0")/lib.sh"
source "$MS_SOURCE_DIR/tests/slurm/cluster.sh"
for tool in sbatch slurmctld slurmd munged; do
  command -v "$tool" >/dev/null || fail "$tool is missing: install slurm-wlm and munge"
done
[ "$(id -u)" -eq 0 ] || fail "the test cluster's daemons run as root"
trap slurm_stop EXIT
slurm_start "$WORK/cluster" || fail "could not start the test cluster"

synth data.h5 --train 8192 --test 512 --features 64
smoke_config cfg.yaml data.h5 run
# Long enough (~25 s on an idle 2-core machine) that USR1 arrives mid-run.
# The lines with times (submitted, trains, scancel, got USR1) show where a
# slow run spent its time: a loader thread per rank once starved this
# script's polling for the whole job, so USR1 came after the end.
common=(--set train.epochs=2000 --set log.every_steps=500 --set model.layers[0].units=256)

note "reference: uninterrupted, mpiexec -n 2"
run_np 2 train cfg.yaml "${common[@]}" --set run.dir="$WORK/ref"
expect_ok
final=$(ls ref/checkpoints | tail -n 1)

note "sbatch the preemptible template"
job=$(MIDSCALE="$MIDSCALE" sbatch --parsable --chdir="$WORK" --output="$WORK/job.out" \
  "$MS_SOURCE_DIR/scripts/slurm/preemptible.sbatch" cfg.yaml "${common[@]}" \
  --set run.dir="$WORK/job") || fail "sbatch failed"
echo "job $job submitted at $(date +%T.%N | cut -c1-12)"
# Signal once the job trains (its first log line is in metrics.jsonl).
for _ in $(seq 1 300); do
  [ -s job/metrics.jsonl ] && grep -q '"kind":"train"' job/metrics.jsonl && break
  sleep 0.1
done
grep -q '"kind":"train"' job/metrics.jsonl 2>/dev/null || { cat job.out; fail "the job never trained"; }
echo "the job trains at $(date +%T.%N | cut -c1-12)"
echo "scancel --signal=USR1 at $(date +%T.%N | cut -c1-12)"; scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 failed"

state=
for _ in $(seq 1 600); do
  state=$(slurm_job_state "$job")
  [ "$state" = COMPLETED ] || [ "$state" = FAILED ] || [ "$state" = CANCELLED ] && break
  sleep 0.5
done
grep -E '^(job |got USR1|midscale|checkpointed|resumed|final|done)' job.out
[ "$state" = COMPLETED ] || { cat job.out; fail "job $job ended $state"; }
restarts=$(scontrol show job "$job" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[ "${restarts:-0}" -ge 1 ] || fail "the job was not requeued (Restarts=$restarts)"
grep -q '^midscale: stopped: signal 10' job.out || fail "midscale did not stop on USR1"
grep -q 'requeueing job' job.out || fail "the batch script did not requeue"
grep -q '^resumed from .*step-' job.out || fail "the requeued job did not resume"
grep -q '^params: shared: ' job.out || fail "the banner does not say the parameters are shared (comm.shared_params)"
decompress "ref/checkpoints/$final" ref.safetensors
decompress "job/checkpoints/$final" job.safetensors
"$PYTHON" "$CHECKER" --compare ref.safetensors job.safetensors || fail "parameters differ"
note "job $job: stopped by USR1, requeued ($restarts restart), resumed, same parameters"
echo "slurm: ok"
