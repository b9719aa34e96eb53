#!/usr/bin/env bash
# Gradient-sync benchmark (issue: gradient sync and step speed). Side by
# side, in one invocation, on the same data, model, per-rank batch and
# threads (1 BLAS thread per rank, the same OpenBLAS kernel):
#   (a) midscale                      mpiexec -n W midscale train ...
#   (b) midscale without gradient sync  ... --set comm.sync=false (the bound)
#   (c) PyTorch DDP, gloo             scripts/bench/ddp_torch.py (skipped,
#                                     with a message, without python3-torch)
#   (d) one MPI_Allreduce of the gradient (scripts/bench/bench_allreduce.c)
#   (e) midscale with model.precision bf16 (issue 18: oneDNN, bf16 mixed
#       precision)
#   (f) PyTorch DDP under torch.autocast("cpu", dtype=torch.bfloat16)
#       (ddp_torch.py --autocast), its bf16 mixed precision
# for the MLP 784-H-H-10 at world 1 and 2, per-rank batch 64 and 256,
# hidden 256 and 1024; then the CNN of configs/fashion_mnist_cnn.yaml
# (conv16 3x3 / pool / conv32 3x3 / pool / dense 128 / dropout / dense 10,
# AdamW) midscale vs PyTorch at per-rank batch 64. Throughput is measured after a
# warm-up interval (the median of the next 5 intervals); every case runs
# REPS times, interleaved (a, b, c, e, f, then b, c, e, f, a, ...), and the
# tables show medians and the ratios of medians. Writes
# scripts/bench/results/ddp.md (by scripts/bench/ddp_report.py) and the raw
# rows in ddp.jsonl beside it.
#   scripts/bench/ddp.sh [REPS]            (default 3)
#   DDP_BF16=0 scripts/bench/ddp.sh        without (e) and (f)
#   DDP_SMOKE=1 scripts/bench/ddp.sh       a quick check that every program
#     runs: one round of the MLP hidden 256 and the CNN, world 1 and 2, short
#     intervals, the tables on stdout and the results files untouched (its
#     figures mean nothing)
# Timing figures on a shared machine are noisy: run it on a quiet one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
build
REPS=${1:-3}
BF16=${DDP_BF16:-1}
SMOKE=${DDP_SMOKE:-0}
OUT="$ROOT/scripts/bench/results/ddp.md"
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/midscale-bench-ddp.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ "$SMOKE" = 1 ]; then
  REPS=1
  OUT="$WORK/ddp.md"
fi
cd "$WORK"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
MIDSCALE="$BUILD_DIR/midscale"
# One explicit kernel for both programs: the one midscale would pick.
bench_env

bench_fashion_mnist "$WORK"
HAVE_TORCH=1
if ! OPENBLAS_NUM_THREADS=1 "$PY" -c "import torch, h5py, yaml" 2>/dev/null; then
  HAVE_TORCH=0
  echo "bench: PyTorch (python3-torch), h5py or yaml is not importable from $PY:" \
    "the DDP column is skipped"
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# The MLP config of every case: configs/fashion_mnist_mlp.yaml with the
# hidden width, the batch, no evaluation and no warmup (the schedule's
# shape does not change the step time).
mlp_args() { # HIDDEN
  echo "$ROOT/configs/fashion_mnist_mlp.yaml --set data.path=$DATA --set data.test_x=" \
    "--set model.layers[0].units=$1 --set model.layers[1].units=$1 --set schedule.warmup_steps=0" \
    "--set run.threads=1 --set log.progress=false --set checkpoint.every_steps=0"
}
CNN_CFG="$ROOT/configs/fashion_mnist_cnn.yaml"
cnn_args() {
  echo "$CNN_CFG --set data.path=$DATA --set data.test_x= --set schedule.warmup_steps=0" \
    "--set run.threads=1 --set log.progress=false --set checkpoint.every_steps=0"
}

# Steps per log interval L: about 30 GFLOP of training per rank and
# interval (0.2-0.6 s at this machine's rates), at least 10 (4 for the CNN).
interval() { # FLOP_PER_SAMPLE_FORWARD BATCH MIN
  if [ "$SMOKE" = 1 ]; then
    echo 2
    return
  fi
  awk -v f="$1" -v b="$2" -v m="$3" 'BEGIN { l = int(3e10 / (3 * f * b) + 0.5); print (l < m ? m : l) }'
}

# run_midscale TAG REP W B L MODEL_ARGS... : 6 intervals of L steps, the
# first one a warm-up; appends a JSON row with the median interval's rate
# (a median resists the other processes' bursts on a shared machine).
run_midscale() {
  local tag=$1 rep=$2 w=$3 b=$4 l=$5 case=$6
  shift 6
  local dir="$WORK/$case-$tag-$rep"
  # shellcheck disable=SC2046
  mpiexec -n "$w" "$MIDSCALE" train "$@" --set run.dir="$dir" \
    --set train.batch_size=$((w * b)) --set train.max_steps=$((6 * l)) \
    --set log.every_steps="$l" >"$dir.log" 2>&1 || { tail -n 20 "$dir.log"; exit 1; }
  "$PY" - "$dir" "$case" "$tag" "$rep" "$w" "$b" "$l" >>"$WORK/rows.jsonl" <<'PY'
import json, re, sys
d, case, tag, rep, w, b, l = sys.argv[1:]
rows = [json.loads(x) for x in open(d + "/metrics.jsonl")]
sps = [r["samples_per_s"] for r in rows if r["kind"] == "train"][1:]   # after the warm-up
rate = sorted(sps)[len(sps) // 2]
core = re.search(r"BLAS OpenBLAS ([^,\s]+)", open(d + ".log").read())
print(json.dumps({"case": case, "tool": tag, "rep": int(rep), "world": int(w), "batch": int(b),
                  "samples_per_s": rate, "ms_per_step": 1e3 * int(w) * int(b) / rate,
                  "blas_core": core.group(1) if core else "?"}))
PY
}

run_torch() { # TAG REP W B L CASE RESOLVED [--autocast]
  local tag=$1 rep=$2 w=$3 b=$4 l=$5 case=$6 cfg=$7
  shift 7
  [ "$HAVE_TORCH" = 1 ] || return 0
  timeout 1800 "$PY" "$ROOT/scripts/bench/ddp_torch.py" --config "$cfg" --world "$w" --batch "$b" \
    --warmup "$l" --steps $((5 * l)) "$@" 2>"$WORK/torch.err" |
    "$PY" -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(case='$case', tool='$tag', rep=$rep); print(json.dumps(r))" \
    >>"$WORK/rows.jsonl" || { echo "bench: PyTorch failed on $case (round $rep):"; cat "$WORK/torch.err"; }
}

# Forward FLOPs per sample and parameter count, from midscale check.
model_info() { # ARGS...
  # shellcheck disable=SC2046
  "$MIDSCALE" check "$@" --set data.path="$DATA" --set run.dir="$WORK/check" |
    awk '/forward FLOPs per sample:/ { gsub(",", "", $5); f = $5 } /^  parameters:/ { gsub(",", "", $2); p = $2 } END { print f, p }'
}

CASES=()
for w in 1 2; do
  for h in 256 1024; do
    for b in 64 256; do CASES+=("mlp $w $b $h"); done
  done
done
CASES+=("cnn 1 64 0" "cnn 2 64 0")
# The smoke run: one MLP and the CNN, world 1 and 2.
[ "$SMOKE" != 1 ] || CASES=("mlp 1 64 256" "mlp 2 64 256" "cnn 1 64 0" "cnn 2 64 0")
# The programs of a round: a b c, then e f (bf16) unless DDP_BF16=0.
PROGRAMS=(a b c)
[ "$BF16" = 0 ] || PROGRAMS+=(e f)

echo "== $REPS interleaved rounds of ${#CASES[@]} cases (load before: $LOAD_BEFORE)"
for rep in $(seq 1 "$REPS"); do
  for c in "${CASES[@]}"; do
    read -r kind w b h <<<"$c"
    if [ "$kind" = mlp ]; then
      # shellcheck disable=SC2046
      set -- $(mlp_args "$h")
      case="mlp-w$w-b$b-h$h"
      read -r flops params <<<"$(model_info "$@")"
      l=$(interval "$flops" "$b" 10)
    else
      # shellcheck disable=SC2046
      set -- $(cnn_args)
      case="cnn-w$w-b$b"
      read -r flops params <<<"$(model_info "$@")"
      l=$(interval "$flops" "$b" 4)
    fi
    echo "{\"case\":\"$case\",\"tool\":\"info\",\"flops\":$flops,\"params\":$params,\"interval\":$l}" >>"$WORK/rows.jsonl"
    echo "-- round $rep: $case ($params parameters, $l steps per interval)"
    # Rotate the order of the programs from round to round.
    order=("${PROGRAMS[@]}")
    for ((k = 0; k < (rep - 1) % ${#order[@]}; k++)); do order=("${order[@]:1}" "${order[0]}"); done
    # PyTorch reads the model from midscale's resolved config of round 1,
    # whose (a) runs first.
    resolved="$WORK/$case-midscale-1/config.resolved.yaml"
    for t in "${order[@]}"; do
      case $t in
        a) run_midscale midscale "$rep" "$w" "$b" "$l" "$case" "$@" ;;
        b) [ "$kind" = mlp ] && run_midscale nosync "$rep" "$w" "$b" "$l" "$case" "$@" --set comm.sync=false ;;
        c) run_torch ddp "$rep" "$w" "$b" "$l" "$case" "$resolved" ;;
        e) run_midscale midscale-bf16 "$rep" "$w" "$b" "$l" "$case" "$@" --set model.precision=bf16 ;;
        f) run_torch ddp-bf16 "$rep" "$w" "$b" "$l" "$case" "$resolved" --autocast ;;
      esac
    done
    if [ "$rep" = 1 ] && [ "$w" = 2 ] && [ "$kind" = mlp ]; then
      mpiexec -n 2 "$BUILD_DIR/bench_allreduce" "$params" 50 |
        "$PY" -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(case='$case', tool='allreduce'); print(json.dumps(r))" >>"$WORK/rows.jsonl"
    fi
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

cp "$WORK/rows.jsonl" "${OUT%.md}.jsonl"
"$PY" "$ROOT/scripts/bench/ddp_report.py" "${OUT%.md}.jsonl" "$OUT" "$LOAD_BEFORE" "$LOAD_AFTER" \
  "$REPS" "$DATA_NOTE" "${OPENBLAS_CORETYPE:-auto}"
if [ "$SMOKE" = 1 ]; then
  echo "smoke run: every program ran; the results files are untouched"
else
  echo "wrote $OUT and ${OUT%.md}.jsonl (the raw rows)"
fi
