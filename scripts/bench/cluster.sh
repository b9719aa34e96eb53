#!/usr/bin/env bash
# Across hosts (issue 15): 2 emulated hosts x 1 rank (network namespaces,
# tests/cluster/cluster.sh; Open MPI over TCP; 1 rank per core, 1 BLAS
# thread), links shaped with TBF at each RATE. Per case: samples/s, exposed
# comm per step, one raw blocking MPI_Allreduce of the same bytes on the
# same link (bench_allreduce), the cost model's prediction (the run's
# summary, trainer/costmodel.h) and the weak-scaling efficiency vs one rank
# alone, measured in the same invocation. Then hierarchical vs flat at 2
# hosts x 2 ranks: bytes on the inter-host veth per step and the sync time.
# Then one node (one emulated host, 1 and 2 ranks: MLP at 64 and 512 per
# rank, the CNN), cases the cost model's form was not chosen on.
# Medians of REPS runs; the load average before and after each run and the
# shell's scheduling policy are recorded; each rank is pinned to its own
# CPU (PIN_RANKS=0: not). Run it as
# `chrt -f 20 scripts/bench/cluster.sh` (SCHED_FIFO, inherited by the
# emulated hosts' ranks) on a shared machine. Never fails on timing. Root
# only; removes what it made.
#
#   scripts/bench/cluster.sh [REPS] [RATE...]     (defaults: 3, 1gbit 10gbit)
#
# Appends JSON lines to scripts/bench/results/cluster.jsonl and rewrites
# scripts/bench/results/cluster.md (scripts/bench/cluster_report.py).
# DATA=file.h5 (default data-cache/fashion_mnist.h5, prepared if missing).
# ONLY=REGEX runs only the cases whose name matches, skips the 2 x 2 part
# (and the one-node part unless SINGLE_TOO=1)
# and prints the tables instead of rewriting cluster.md (a reduced re-run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
REPS=${1:-3}
shift || true
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(1gbit 10gbit)
source "$ROOT/tests/cluster/cluster.sh"
cluster_need
[ -n "${NO_BUILD:-}" ] || build   # NO_BUILD=1: use the binaries in MIDSCALE_BUILD_DIR as they are
MIDSCALE="$BUILD_DIR/midscale"
BENCH="$BUILD_DIR/bench_allreduce"
DATA=${DATA:-$ROOT/data-cache/fashion_mnist.h5}
[ -f "$DATA" ] || { mkdir -p "$(dirname "$DATA")" && "$MIDSCALE" prepare fashion-mnist "$DATA"; }
OUT="$ROOT/scripts/bench/results/cluster.jsonl"
WORK=$(mktemp -d /tmp/midscale-bench-cluster.XXXXXX)
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
cd "$WORK"
export CL_RUN_TIMEOUT=300 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

MLP="$ROOT/configs/fashion_mnist_mlp.yaml"
CNN="$ROOT/configs/fashion_mnist_cnn.yaml"
sed 's/units: 256/units: 1024/' "$MLP" >mlp1024.yaml
# Training only: no evaluation, no checkpoints, no warmup, 1 BLAS thread.
COMMON=(--set data.path="$DATA" --set data.test_x= --set checkpoint.every_steps=0
  --set schedule.warmup_steps=0 --set run.threads=1 --set log.every_steps=100000)

# case name, config, per-rank batch, steps, extra --set options
CASES=(
  "mlp256_b64|$MLP|64|300|"
  "mlp256_b64_bf16|$MLP|64|300|comm.compress=bf16"
  "mlp256_b512|$MLP|512|100|"
  "mlp256_b512_bf16|$MLP|512|100|comm.compress=bf16"
  "cnn_b64|$CNN|64|60|"
  "mlp1024_b512_overlap|$WORK/mlp1024.yaml|512|30|comm.overlap=true"
  "mlp1024_b512_no_overlap|$WORK/mlp1024.yaml|512|30|comm.overlap=false"
)

# 1 rank per core: each rank (world rank r) pinned to CPU r mod the CPUs,
# so the 2 emulated hosts do not each see both cores: a rank has no CPU
# beyond its BLAS thread, and its comm thread takes its short turns from
# backward on the same core (comm/reducer_hier.c). PIN_RANKS=0: unpinned,
# as the runs before 2026-12-06 10:45 UTC.
PIN=(sh -c 'exec taskset -c "$((OMPI_COMM_WORLD_RANK % $(nproc)))" "$@"' pin)
[ "${PIN_RANKS:-1}" = 1 ] || PIN=()
load() { cut -d' ' -f1 /proc/loadavg; }
# "SCHED_FIFO 20" or "SCHED_OTHER 0": the policy every run inherits.
SCHED=$(chrt -p $$ | awk -F': ' '/policy/ {p = $2} /priority/ {q = $2} END {print p, q}')

# run SPEC CONFIG GLOBAL_BATCH STEPS EXTRA DIR: one training run; prints
# the summary record of DIR/metrics.jsonl (empty when it failed).
run() {
  local spec=$1 cfg=$2 batch=$3 steps=$4 extra=$5 dir=$6 sets=()
  [ -z "$extra" ] || sets=(--set "$extra")
  cl_mpirun "$spec" "${PIN[@]}" "$MIDSCALE" train "$cfg" "${COMMON[@]}" "${sets[@]}" \
    --set train.batch_size="$batch" --set train.max_steps="$steps" --set run.dir="$WORK/$dir"
  if [ "$RC" -ne 0 ]; then
    echo "  run $dir failed (exit $RC): $(tail -3 "$LAST_ERR" | tr '\n' ' ')" >&2
    return 0
  fi
  grep '"kind":"summary"' "$WORK/$dir/metrics.jsonl" | tail -1
}

# The floats of the gradient arena of a config (midscale check's summary).
params_of() {
  "$MIDSCALE" check "$1" "${COMMON[@]}" 2>/dev/null | sed -n 's/^  parameters: //p' | tr -d ','
}

bench_rate() {
  local rate=$1 c name cfg b steps extra r s1 s2 l0 l1 ar floats
  cluster_up 2 "$rate"
  echo "== $rate: load before $(load)"
  for c in "${CASES[@]}"; do
    IFS='|' read -r name cfg b steps extra <<<"$c"
    [ -z "${ONLY:-}" ] || [[ "$name" =~ ^($ONLY)$ ]] || continue
    floats=$(params_of "$cfg")
    # The same bytes as the gradient sync: a 16-bit wire sends half.
    [[ "$extra" == *bf16* ]] && floats=$((floats / 2))
    for ((r = 0; r < REPS; r++)); do
      l0=$(load)
      s2=$(run 2x1 "$cfg" $((2 * b)) "$steps" "$extra" "$rate-$name-2x1-$r")
      s1=$(run 1x1 "$cfg" "$b" "$steps" "$extra" "$rate-$name-1x1-$r")
      cl_mpirun 2x1 "${PIN[@]}" "$BENCH" "$floats" 10
      ar=$(grep -m1 '"allreduce_ms"' "$LAST_OUT" || true)
      l1=$(load)
      printf '{"run":"%s","commit":"%s","rate":"%s","case":"%s","rep":%d,"per_rank_batch":%d,"load_before":%s,"load_after":%s,"two_hosts":%s,"one_rank":%s,"raw_allreduce":%s}\n' \
        "$RUN_ID" "$COMMIT" "$rate" "$name" "$r" "$b" "$l0" "$l1" "${s2:-null}" "${s1:-null}" "${ar:-null}" >>"$OUT"
      echo "  $name rep $r done (load $l0 -> $l1)"
    done
  done
  cluster_down
}

# Hierarchical (comm.shared_memory true: node sum, then each byte once per
# node) vs flat (false: every rank to every rank) at 2 hosts x 2 ranks:
# bytes host 0 sends on its veth per step, from the difference of two run
# lengths (start-up traffic cancels), and the sync time per step.
veth_tx() { ip netns exec "${CL_HOSTS[0]}" cat /sys/class/net/eth0/statistics/tx_bytes; }
bench_hier() {
  local rate=$1 mode sm r n t0 t1 s l0
  cluster_up 2 "$rate"
  for mode in hierarchical flat; do
    sm=true
    [ "$mode" = flat ] && sm=false
    for ((r = 0; r < REPS; r++)); do
      for n in 20 60; do
        l0=$(load)
        t0=$(veth_tx)
        cl_mpirun 2x2 "$MIDSCALE" train "$MLP" "${COMMON[@]}" --set comm.shared_memory=$sm \
          --set train.batch_size=256 --set train.max_steps=$n --set run.dir="$WORK/hier-$mode-$r-$n"
        t1=$(veth_tx)
        s=$(grep '"kind":"summary"' "$WORK/hier-$mode-$r-$n/metrics.jsonl" 2>/dev/null | tail -1 || true)
        # The banner: the method, and what the reducer counts as sent per rank
        # (reducer_wire_bytes; on the hierarchical path its inter-node bytes).
        local method sent
        method=$(sed -n 's/^comm: \([^,]*\).*/\1/p' "$LAST_OUT" | head -1)
        sent=$(sed -n 's/^comm: .*, \([0-9.e+-]*\) MB sent per rank per step.*/\1/p' "$LAST_OUT" | head -1)
        printf '{"run":"%s","commit":"%s","rate":"%s","case":"hier_vs_flat_2x2","mode":"%s","rep":%d,"steps":%d,"veth_tx_bytes":%d,"method":"%s","banner_mb_sent_per_rank":%s,"load_before":%s,"load_after":%s,"summary":%s}\n' \
          "$RUN_ID" "$COMMIT" "$rate" "$mode" "$r" "$n" $((t1 - t0)) "$method" "${sent:-null}" "$l0" "$(load)" "${s:-null}" >>"$OUT"
      done
      echo "  $mode rep $r done"
    done
  done
  cluster_down
}

# One node: 1 and 2 ranks on one emulated host (the node's shared-memory
# sum), the summary's prediction against the measured step.
SINGLE=(mlp256_b64 mlp256_b512 cnn_b64)
bench_single() {
  local c name cfg b steps extra r n s l0
  cluster_up 1 "$1"
  for c in "${CASES[@]}"; do
    IFS='|' read -r name cfg b steps extra <<<"$c"
    [[ " ${SINGLE[*]} " == *" $name "* ]] || continue
    [ -z "${ONLY:-}" ] || [[ "$name" =~ ^($ONLY)$ ]] || continue
    for ((r = 0; r < REPS; r++)); do
      for n in 1 2; do
        l0=$(load)
        s=$(run "1x$n" "$cfg" $((n * b)) "$steps" "$extra" "single-$name-$n-$r")
        printf '{"run":"%s","commit":"%s","case":"single_node","name":"%s","ranks":%d,"rep":%d,"per_rank_batch":%d,"load_before":%s,"load_after":%s,"summary":%s}\n' \
          "$RUN_ID" "$COMMIT" "$name" "$n" "$r" "$b" "$l0" "$(load)" "${s:-null}" >>"$OUT"
      done
      echo "  single node $name rep $r done"
    done
  done
  cluster_down
}

echo "cluster bench $RUN_ID (commit $COMMIT), $REPS reps, rates ${RATES[*]}, policy $SCHED, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '{"run":"%s","commit":"%s","case":"sched","policy":"%s, ranks %s"}\n' "$RUN_ID" "$COMMIT" \
  "$SCHED" "$([ ${#PIN[@]} -gt 0 ] && echo "pinned one per CPU" || echo "not pinned")" >>"$OUT"
for rate in "${RATES[@]}"; do bench_rate "$rate"; done
if [ -n "${ONLY:-}" ]; then
  [ -z "${SINGLE_TOO:-}" ] || bench_single "${RATES[0]}"
  python3 "$ROOT/scripts/bench/cluster_report.py" "$OUT" "$RUN_ID"
  echo "run $RUN_ID (ONLY=$ONLY: cluster.md left as it is); load now $(cut -d' ' -f1-3 /proc/loadavg)"
else
  bench_hier "${RATES[0]}"
  bench_single "${RATES[0]}"
  python3 "$ROOT/scripts/bench/cluster_report.py" "$OUT" "$RUN_ID" >"$ROOT/scripts/bench/results/cluster.md"
  echo "wrote scripts/bench/results/cluster.md (run $RUN_ID); load now $(cut -d' ' -f1-3 /proc/loadavg)"
fi
rm -rf "$WORK"
