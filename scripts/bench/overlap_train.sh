#!/usr/bin/env bash
# Overlap across hosts, measured on the trainer (issue 15): 2 emulated hosts
# x 1 rank (tests/cluster/cluster.sh), links shaped by TBF to RATE, 1 BLAS
# thread per rank, synthetic data of Fashion-MNIST's shape, no eval.
# Cases: the MLP 784-1024-1024-10 (7.45 MB of gradients, 2 buckets) at 512
# samples per rank, and the CNN of configs/fashion_mnist_cnn.yaml at its
# batch per rank; each as one rank alone (1 host), 2 hosts with
# comm.overlap on and off, ROUNDS rounds interleaved. Prints and appends to
# scripts/bench/results/overlap_train.jsonl one line per run (samples/s
# from the run's summary, comm seconds, the banner's comm line).
# Root only.   scripts/bench/overlap_train.sh [ROUNDS] [STEPS] [RATE]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROUNDS=${1:-3}
STEPS=${2:-40}
RATE=${3:-1gbit}
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
MS="$BUILD_DIR/midscale"
OUT="$ROOT/scripts/bench/results/overlap_train.jsonl"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source "$ROOT/tests/cluster/cluster.sh"
cluster_need
WORK=$(mktemp -d /tmp/bench_overlap_train.XXXXXX)
cd "$WORK"
"$MS" prepare synthetic data.h5 --train 8192 --test 16 --features 784 >/dev/null
cat >mlp.yaml <<YAML
run: {name: mlp1024, dir: r, seed: 42}
data: {path: $WORK/data.h5, scale: 1, test_x: ""}
model:
  layers:
    - {type: dense, units: 1024, activation: relu}
    - {type: dense, units: 1024, activation: relu}
    - {type: dense, units: 10}
  loss: softmax_cross_entropy
optim: {name: sgd, lr: 0.01, momentum: 0.9}
train: {batch_size: 512}
YAML
cluster_up 2 "$RATE"
common=(--set train.max_steps="$STEPS" --set log.every_steps=1000 --set log.progress=false
  --set run.threads=1 --set data.path="$WORK/data.h5" --set data.scale=1 --set data.test_x=
  --set schedule.warmup_steps=2)
# case name, config, global batch of one rank, extra settings
run_case() {
  local name=$1 cfg=$2 per=$3 spec=$4 ov=$5
  local hosts=${spec%x*}
  cl_mpirun "$spec" "$MS" train "$cfg" "${common[@]}" --set train.batch_size=$((per * hosts)) \
    --set comm.overlap="$ov" --set run.dir="$WORK/run-$name-$spec-$ov-$RANDOM"
  [ "$RC" -eq 0 ] || { tail -20 "$LAST_OUT" "$LAST_ERR"; exit 1; }
  local sps comm line
  sps=$(grep -o '"samples_per_s":[0-9.]*' "$LAST_OUT" | head -1 | cut -d: -f2 || true)
  [ -n "$sps" ] || sps=$(sed -n 's/^done: .* \([0-9]*\) samples\/s;.*/\1/p' "$LAST_OUT")
  comm=$(sed -n 's/^done: .*comm \([0-9.]*\) s,.*/\1/p' "$LAST_OUT")
  line=$(grep '^comm:' "$LAST_OUT" | sed 's/"/\\"/g')
  local j="{\"bench\":\"overlap_train\",\"case\":\"$name\",\"hosts\":$hosts,\"overlap\":$ov,\"rate\":\"$RATE\",\"steps\":$STEPS,\"samples_per_s\":$sps,\"comm_s\":${comm:-null},\"banner\":\"$line\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
  echo "$j"
  echo "$j" >>"$OUT"
}
for ((round = 0; round < ROUNDS; round++)); do
  run_case mlp1024_512 mlp.yaml 512 1x1 true
  run_case mlp1024_512 mlp.yaml 512 2x1 true
  run_case mlp1024_512 mlp.yaml 512 2x1 false
  run_case cnn "$ROOT/configs/fashion_mnist_cnn.yaml" 128 1x1 true
  run_case cnn "$ROOT/configs/fashion_mnist_cnn.yaml" 128 2x1 true
  run_case cnn "$ROOT/configs/fashion_mnist_cnn.yaml" 128 2x1 false
done
rm -rf "$WORK"
