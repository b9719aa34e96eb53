#!/usr/bin/env bash
# comm.shared_params benchmark (issue 21), measured from outside the
# process, in one invocation on the same data and build:
#  1. Throughput, world 2, 64 samples per rank, MLP 784-256-256-10 (SGD,
#     Nesterov; configs/fashion_mnist_mlp.yaml): the wall time of a LONG-step
#     run minus a SHORT-step run (start-up, the final checkpoint and the
#     end cancel), for sharing on, sharing off, and comm.sync false (every
#     rank updates its own whole model: the bound), ROUNDS rounds
#     interleaved (on, off, nosync; then off, nosync, on; ...). Samples/s =
#     (LONG - SHORT) x 128 / (t_long - t_short); the table shows medians.
#  2. The 50 M-parameter Adam model (MLP 784-4096-4096-4096-4096-10, 53.6 M
#     parameters, 8 samples per rank): seconds per step on/off the same way
#     (BIG_LONG - BIG_SHORT steps).
#  3. Memory of that model on 2 ranks: the PSS (proportional set size,
#     /proc/PID/smaps_rollup: a page shared by the 2 ranks counts half in
#     each; RSS would count it in both) of each rank, the largest of samples
#     taken every 0.2 s while it trains, sharing on and off.
# Writes scripts/bench/results/shared_params.md and the raw rows in
# shared_params.jsonl beside it.
#   scripts/bench/shared_params.sh [ROUNDS] [LONG] [SHORT]   (default 5 6300 300)
# Timing figures on a shared machine are noisy: run it on a quiet one.
set -euo pipefail
export MIDSCALE_SKIP_INSTALL=${MIDSCALE_SKIP_INSTALL:-1}
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
[ -n "${MIDSCALE_BENCH_NO_BUILD:-}" ] || build
ROUNDS=${1:-5} LONG=${2:-6300} SHORT=${3:-300}
BIG_LONG=${BIG_LONG:-40} BIG_SHORT=${BIG_SHORT:-10} # and BIG_ROUNDS (3)
OUT="$ROOT/scripts/bench/results/shared_params.md"
JSONL="$ROOT/scripts/bench/results/shared_params.jsonl"
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/midscale-bench-shared.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
MIDSCALE="$BUILD_DIR/midscale"
# One explicit OpenBLAS kernel (without it, this script's MIDSCALE_BLAS_AUTOFIX=0
# left some CPUs on generic kernels).
bench_env

bench_fashion_mnist "$WORK"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Run as `chrt -f 20 scripts/bench/shared_params.sh` on a machine other jobs
# share: every run then preempts them (the kernel keeps 5% of each CPU for
# the rest); the page says which policy ran.
POLICY=$(chrt -p $$ | sed -n 's/.*scheduling policy: //p')
: >"$JSONL.tmp"

CFG="$ROOT/configs/fashion_mnist_mlp.yaml"
common=(--set "data.path=$DATA" --set data.test_x=
  --set schedule.warmup_steps=0 --set run.threads=1 --set log.progress=false
  --set checkpoint.every_steps=0 --set log.every_steps=100000 --set train.epochs=1000)
# The 50 M-parameter model: the MLP config with four hidden layers of 4096.
sed '/^model:/,/^  loss:/{/^    - /d}' "$ROOT/configs/fashion_mnist_mlp.yaml" |
  sed 's/^  layers:$/  layers:\n    - {type: dense, units: 4096, activation: relu}\n    - {type: dense, units: 4096, activation: relu}\n    - {type: dense, units: 4096, activation: relu}\n    - {type: dense, units: 4096, activation: relu}\n    - {type: dense, units: 10}/' >big.yaml
big=(--set optim.name=adam --set optim.lr=0.001 --set train.batch_size=16 --set log.every_steps=1)

args_of() { # VARIANT
  case $1 in
    on) echo "--set comm.shared_params=true" ;;
    off) echo "--set comm.shared_params=false" ;;
    nosync) echo "--set comm.sync=false" ;;
  esac
}

# run_once DIR STEPS EXTRA...: seconds of wall time of one 2-rank run,
# checked for the path its banner reports.
run_once() {
  local dir=$1 steps=$2
  shift 2
  local t0 t1
  t0=$(date +%s.%N)
  mpiexec -n 2 "$MIDSCALE" train "$CFG" "${common[@]}" --set run.dir="$dir" --set train.max_steps="$steps" \
    "$@" >"$dir.log" 2>&1 || { tail -n 20 "$dir.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{printf "%.4f", $2 - $1}'
}

check_banner() { # LOG VARIANT
  case $2 in
    on) grep -q '^params: shared: ' "$1" ;;
    off) grep -q '^params: off (comm.shared_params false)' "$1" ;;
    nosync) grep -q '^params: off (comm.sync false' "$1" ;;
  esac || { grep '^params' "$1" >&2; echo "bench: $1: not the $2 path" >&2; exit 1; }
}

echo "1. MLP 784-256-256-10, world 2, 64 per rank: $ROUNDS rounds of $LONG - $SHORT steps"
order=(on off nosync)
for r in $(seq 1 "$ROUNDS"); do
  for v in "${order[@]}"; do
    # shellcheck disable=SC2046
    tl=$(run_once "mlp-$v-$r-long" "$LONG" --set train.batch_size=128 $(args_of "$v"))
    check_banner "mlp-$v-$r-long.log" "$v"
    # shellcheck disable=SC2046
    ts=$(run_once "mlp-$v-$r-short" "$SHORT" --set train.batch_size=128 $(args_of "$v"))
    echo "  round $r $v: long $tl s, short $ts s"
    echo "{\"case\":\"mlp\",\"variant\":\"$v\",\"round\":$r,\"long_steps\":$LONG,\"short_steps\":$SHORT,\"long_s\":$tl,\"short_s\":$ts,\"global_batch\":128}" >>"$JSONL.tmp"
    rm -rf "mlp-$v-$r-long" "mlp-$v-$r-short"
  done
  order=("${order[@]:1}" "${order[0]}")
done

# pss_watch DIR: the largest PSS (kB) of each rank of the run in DIR while
# it trains, "rank0 rank1", into DIR.pss: sampled only between its first
# and its second-to-last step's log records (log.every_steps 1), so never
# during start-up or the final checkpoint, whose buffers are the same with
# sharing on and off.
pss_watch() {
  local dir=$1 best0=0 best1=0 steps=$2
  while [ ! -f "$dir.done" ]; do
    local n
    n=$(grep -c '"kind":"train"' "$dir/metrics.jsonl" 2>/dev/null || true)
    if [ "${n:-0}" -ge 1 ] && [ "${n:-0}" -lt $((steps - 1)) ]; then
      mapfile -t pids < <(pgrep -f "^$MIDSCALE train .*run.dir=$dir( |\$)" | sort -n)
      if [ "${#pids[@]}" -ge 2 ]; then
        local p0 p1
        p0=$(awk '/^Pss:/ {print $2}' "/proc/${pids[0]}/smaps_rollup" 2>/dev/null || echo 0)
        p1=$(awk '/^Pss:/ {print $2}' "/proc/${pids[1]}/smaps_rollup" 2>/dev/null || echo 0)
        [ "${p0:-0}" -gt "$best0" ] && best0=$p0
        [ "${p1:-0}" -gt "$best1" ] && best1=$p1
      fi
    fi
    sleep 0.2
  done
  echo "$best0 $best1" >"$dir.pss"
}

CFG="$WORK/big.yaml"
echo "2-3. 50 M-parameter Adam model, world 2, 8 per rank: $BIG_LONG - $BIG_SHORT steps"
order=(on off)
for r in $(seq 1 "${BIG_ROUNDS:-3}"); do
  for v in "${order[@]}"; do
    d="big-$v-$r-long"
    pss_watch "$d" "$BIG_LONG" &
    watcher=$!
    # Under SCHED_FIFO the ranks, which poll, would never let a sampler of
    # their own priority run.
    [ "$POLICY" != SCHED_FIFO ] || chrt -f -p 99 "$watcher" >/dev/null
    # shellcheck disable=SC2046
    tl=$(run_once "$d" "$BIG_LONG" "${big[@]}" $(args_of "$v"))
    touch "$d.done"
    wait "$watcher"
    check_banner "$d.log" "$v"
    read -r pss0 pss1 <"$d.pss"
    # shellcheck disable=SC2046
    ts=$(run_once "big-$v-$r-short" "$BIG_SHORT" "${big[@]}" $(args_of "$v"))
    params=$(sed -n 's/^model .*: \([0-9]*\) parameters.*/\1/p' "$d.log")
    mem=$(grep '^memory: ' "$d.log" | head -n 1)
    echo "  round $r $v: long $tl s, short $ts s, PSS $pss0 + $pss1 kB"
    echo "{\"case\":\"adam50m\",\"variant\":\"$v\",\"round\":$r,\"params\":$params,\"long_steps\":$BIG_LONG,\"short_steps\":$BIG_SHORT,\"long_s\":$tl,\"short_s\":$ts,\"pss_kb\":[$pss0,$pss1],\"banner\":\"${mem//\"/}\"}" >>"$JSONL.tmp"
    rm -rf "$d" "big-$v-$r-short"
  done
  order=("${order[@]:1}" "${order[0]}")
done
mv "$JSONL.tmp" "$JSONL"

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/python3 - "$JSONL" "$OUT" "$DATA_NOTE" "$LOAD_BEFORE" "$LOAD_AFTER" "$(getconf _NPROCESSORS_ONLN)" "${OPENBLAS_CORETYPE:-auto}" "$POLICY" <<'PY'
import json, statistics, sys, subprocess
rows = [json.loads(l) for l in open(sys.argv[1])]
out, note, lb, la, cores, blas, policy = sys.argv[2:9]
med = statistics.median
def rate(r):
    return (r["long_steps"] - r["short_steps"]) * r["global_batch"] / (r["long_s"] - r["short_s"])
def step(r):
    return (r["long_s"] - r["short_s"]) / (r["long_steps"] - r["short_steps"])
L = []
L.append("# comm.shared_params: parameters and optimizer state once per node (issue 21)\n")
L.append("Made by `scripts/bench/shared_params.sh` on %s cores, OPENBLAS_CORETYPE=%s, scheduling "
         "policy %s, data: %s; "
         "load average before %s, after %s. Every figure is measured from outside the process (wall "
         "time of a long run minus a short run, interleaved rounds, medians).\n" % (cores, blas, policy, note, lb, la))
mlp = [r for r in rows if r["case"] == "mlp"]
if mlp:
    L.append("## 1. MLP 784-256-256-10, world 2, 64 samples per rank (SGD, Nesterov)\n")
    L.append("| variant | samples/s (median) | rounds | of the no-sync bound (ratio of medians) "
             "| of the bound, round by round (median) |")
    L.append("| --- | --- | --- | --- | --- |")
    by = {v: [rate(r) for r in mlp if r["variant"] == v] for v in ("on", "off", "nosync")}
    rounds = {v: {r["round"]: rate(r) for r in mlp if r["variant"] == v} for v in by}
    bound = med(by["nosync"]) if by["nosync"] else float("nan")
    names = {"on": "comm.shared_params true (default)", "off": "comm.shared_params false",
             "nosync": "comm.sync false (the bound)"}
    for v in ("on", "off", "nosync"):
        if by[v]:
            paired = [x / rounds["nosync"][k] for k, x in rounds[v].items() if k in rounds["nosync"]]
            L.append("| %s | %.0f | %s | %.3f | %s |" % (names[v], med(by[v]),
                     ", ".join("%.0f" % x for x in by[v]), med(by[v]) / bound,
                     "%.3f" % med(paired) if paired else "-"))
    L.append("")
    L.append("The last column divides each round's rate by the bound's rate of the same round "
             "(the runs of a round are adjacent in time) and takes the median: less moved by one "
             "disturbed run than the ratio of medians.\n")
big = [r for r in rows if r["case"] == "adam50m"]
if big:
    L.append("## 2. The 50 M-parameter Adam model (MLP 784-4096x4-10, %d parameters), world 2, 8 "
             "samples per rank\n" % big[0]["params"])
    L.append("| variant | seconds per step (median) | rounds | PSS rank 0 + rank 1 (MiB, largest sample while training) | per node (MiB) |")
    L.append("| --- | --- | --- | --- | --- |")
    for v in ("on", "off"):
        rs = [r for r in big if r["variant"] == v]
        if not rs:
            continue
        p = [max(r["pss_kb"][0] for r in rs) / 1024, max(r["pss_kb"][1] for r in rs) / 1024]
        L.append("| %s | %.3f | %s | %.0f + %.0f | %.0f |" % (
            "shared (default)" if v == "on" else "comm.shared_params false",
            med([step(r) for r in rs]), ", ".join("%.3f" % step(r) for r in rs), p[0], p[1], p[0] + p[1]))
    L.append("")
    L.append("The banner's memory line for these runs (what midscale predicts):\n")
    for v in ("on", "off"):
        rs = [r for r in big if r["variant"] == v]
        if rs:
            L.append("- %s: `%s`" % (v, rs[0]["banner"]))
    L.append("")
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
echo "bench: wrote $OUT"
