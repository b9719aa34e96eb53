#!/usr/bin/env bash
# Kernel benchmark (issue 18: oneDNN kernels and bf16 mixed precision), in
# one invocation, one thread per rank, the same OpenBLAS kernel throughout:
#   1. bench_dense: one dense layer's step (forward, backward weights,
#      backward data) on OpenBLAS sgemm, oneDNN fp32 and oneDNN bf16, and
#      the same for the CNN's two conv2d layers (im2col + sgemm against
#      oneDNN), interleaved, median GFLOP/s and the ratios to OpenBLAS;
#   2. midscale samples/s with model.precision fp32 and bf16 side by side:
#      the MLP 784-H-H-10 at hidden 256 (batch 64 per rank) and 1024
#      (batch 256 per rank), and the CNN of configs/fashion_mnist_cnn.yaml
#      (batch 64 per rank), world 1 and 2. Each case runs REPS rounds, fp32
#      and bf16 alternating in order; the table shows medians over rounds of
#      the median interval rate (the first interval is a warm-up). In bf16
#      the dense and conv2d layers run on oneDNN; in fp32 on OpenBLAS
#      (dense) and on the conv2d kernels of model.conv_kernel auto;
#   3. the fp32 CNN with model.conv_kernel im2col (every conv2d on im2col +
#      sgemm, the kernels before oneDNN) against auto (oneDNN for layers of
#      8 or more input channels, the direct kernel of conv_direct.h below),
#      world 1 and 2, alternating in order.
# Writes scripts/bench/results/kernels.md (raw rows in kernels.jsonl).
#   scripts/bench/kernels.sh [REPS]        (default 3)
#   KERNELS_CNN_ONLY=1 scripts/bench/kernels.sh [REPS]: part 3 alone, a
#      table on stdout (results file untouched).
# Timing figures on a shared machine are noisy: run it on a quiet one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
build
REPS=${1:-3}
OUT="$ROOT/scripts/bench/results/kernels.md"
WORK=$(mktemp -d /tmp/midscale-bench-kernels.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
PY=/usr/bin/python3
MIDSCALE="$BUILD_DIR/midscale"
bench_env
DATA="$ROOT/data-cache/fashion_mnist.h5"
if [ ! -f "$DATA" ]; then
  mkdir -p "$ROOT/data-cache"
  "$MIDSCALE" prepare fashion-mnist /usr/share/datasets/fashion-mnist "$DATA" >/dev/null
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

CNN_ONLY=${KERNELS_CNN_ONLY:-0}
: >"$WORK/rows.jsonl"
if [ "$CNN_ONLY" != 1 ]; then
  echo "== bench_dense, $((REPS * 7)) rounds"
  "$BUILD_DIR/bench_dense" --reps $((REPS * 7)) | tee "$WORK/dense.txt"
fi

common="--set data.path=$DATA --set data.test_x= --set schedule.warmup_steps=0 --set run.threads=1
  --set log.progress=false --set checkpoint.every_steps=0"
# CASE W B L ARGS: L steps per log interval, 6 intervals.
CASES=(
  "mlp-h256 1 64 200 $ROOT/configs/fashion_mnist_mlp.yaml"
  "mlp-h256 2 64 200 $ROOT/configs/fashion_mnist_mlp.yaml"
  "mlp-h1024 1 256 20 $ROOT/configs/fashion_mnist_mlp.yaml --set model.layers[0].units=1024 --set model.layers[1].units=1024"
  "mlp-h1024 2 256 20 $ROOT/configs/fashion_mnist_mlp.yaml --set model.layers[0].units=1024 --set model.layers[1].units=1024"
  "cnn 1 64 10 $ROOT/configs/fashion_mnist_cnn.yaml"
  "cnn 2 64 10 $ROOT/configs/fashion_mnist_cnn.yaml"
)
# run_case NAME W B L VARIANT CFG...: one training run; appends its row
# (the median interval rate, the first interval left out) to rows.jsonl.
run_case() {
  local name=$1 w=$2 b=$3 l=$4 variant=$5 rep=$6
  shift 6
  local dir="$WORK/$name-w$w-$variant-$rep"
  # shellcheck disable=SC2086
  mpiexec -n "$w" "$MIDSCALE" train "$@" $common --set run.dir="$dir" \
    --set train.batch_size=$((w * b)) --set train.max_steps=$((6 * l)) \
    --set log.every_steps="$l" >"$dir.log" 2>&1 || { tail -n 20 "$dir.log"; exit 1; }
  "$PY" - "$dir" "$name" "$variant" "$rep" "$w" "$b" >>"$WORK/rows.jsonl" <<'PY'
import json, sys
d, name, prec, rep, w, b = sys.argv[1:]
sps = [r["samples_per_s"] for r in map(json.loads, open(d + "/metrics.jsonl"))
       if r["kind"] == "train"][1:]
print(json.dumps({"case": name, "precision": prec, "rep": int(rep), "world": int(w),
                  "batch": int(b), "samples_per_s": sorted(sps)[len(sps) // 2]}))
PY
  echo "-- round $rep: $name world $w $variant: $(tail -n 1 "$WORK/rows.jsonl")"
}

for rep in $(seq 1 "$REPS"); do
  [ "$CNN_ONLY" != 1 ] || break
  for c in "${CASES[@]}"; do
    read -r name w b l cfg <<<"$c"
    precs=(fp32 bf16)
    [ $((rep % 2)) = 1 ] || precs=(bf16 fp32)
    for p in "${precs[@]}"; do
      # shellcheck disable=SC2086
      run_case "$name" "$w" "$b" "$l" "$p" "$rep" $cfg --set model.precision="$p"
    done
  done
done
# Part 3: the fp32 CNN, im2col against the conv2d kernels by shape.
for rep in $(seq 1 "$REPS"); do
  for w in 1 2; do
    kernels=(im2col auto)
    [ $((rep % 2)) = 1 ] || kernels=(auto im2col)
    for k in "${kernels[@]}"; do
      run_case cnn-fp32 "$w" 64 10 "conv-$k" "$rep" "$ROOT/configs/fashion_mnist_cnn.yaml" \
        --set model.conv_kernel="$k"
    done
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$CNN_ONLY" = 1 ]; then
  OUT="$WORK/kernels.md"
  : >"$WORK/dense.txt"
else
  cp "$WORK/rows.jsonl" "${OUT%.md}.jsonl"
fi

"$PY" - "$WORK/rows.jsonl" "$WORK/dense.txt" "$OUT" "$LOAD_BEFORE" "$LOAD_AFTER" "$REPS" <<'PY'
import json, statistics, subprocess, sys
rows_path, dense_path, out, load0, load1, reps = sys.argv[1:]
rows = [json.loads(x) for x in open(rows_path)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = ["# Kernel benchmark: OpenBLAS vs oneDNN, fp32 vs bf16", "",
         f"scripts/bench/kernels.sh {reps}; CPU {cpu}; load average before {load0}, after {load1}.",
         "One thread per rank. Medians; ratios are of medians in the same run.", "",
         "## One dense layer's step (bench_dense: forward + backward weights + backward data)", "",
         "| B | C | OC | OpenBLAS GFLOP/s | oneDNN fp32 | oneDNN bf16 | fp32 / OpenBLAS | bf16 / OpenBLAS | bf16 impl |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
conv = ["", "## One conv2d layer's step (im2col + OpenBLAS sgemm vs oneDNN convolutions)", "",
        "| B | C | HxW | OC | kernel | im2col GFLOP/s | oneDNN fp32 | oneDNN bf16 | fp32 / im2col | bf16 / im2col | bf16 impl |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for l in open(dense_path):
    if l.startswith("#"):
        lines.insert(4, l[2:].strip() + ".")
        continue
    kv = dict(x.split("=", 1) for x in l.split() if "=" in x)
    if l.startswith("conv"):
        conv.append(f"| {kv['B']} | {kv['C']} | {kv['HxW']} | {kv['OC']} | {kv['K']} | {kv['openblas_gflops']} "
                    f"| {kv['onednn_fp32_gflops']} | {kv['onednn_bf16_gflops']} | {kv['fp32_vs_openblas']} "
                    f"| {kv['bf16_vs_openblas']} | {kv['impl_bf16']} |")
        continue
    lines.append(f"| {kv['B']} | {kv['C']} | {kv['OC']} | {kv['openblas_gflops']} | {kv['onednn_fp32_gflops']} "
                 f"| {kv['onednn_bf16_gflops']} | {kv['fp32_vs_openblas']} | {kv['bf16_vs_openblas']} | {kv['impl_bf16']} |")
lines += conv
lines += ["", "## midscale training, samples/s (Fashion-MNIST)", "",
          "| model | world | batch per rank | fp32 (dense OpenBLAS, conv2d by conv_kernel auto) | bf16 (oneDNN) | bf16 / fp32 |",
          "| --- | --- | --- | --- | --- | --- |"]
keys = []
for r in rows:
    k = (r["case"], r["world"], r["batch"])
    if k not in keys:
        keys.append(k)
def median(k, variant):
    return statistics.median(r["samples_per_s"] for r in rows
                             if (r["case"], r["world"], r["batch"]) == k and r["precision"] == variant)
for k in keys:
    if k[0] == "cnn-fp32":
        continue
    med = {p: median(k, p) for p in ("fp32", "bf16")}
    lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {med['fp32']:.0f} | {med['bf16']:.0f} | {med['bf16'] / med['fp32']:.2f} |")
lines += ["", "## The fp32 CNN's conv2d kernels, samples/s (model.conv_kernel)", "",
          "im2col: every conv2d on im2col + OpenBLAS sgemm (the kernels before oneDNN); auto: oneDNN "
          "convolutions for layers of 8 or more input channels (the second), the direct kernel "
          "below (the first).", "",
          "| world | batch per rank | im2col | auto | auto / im2col |", "| --- | --- | --- | --- | --- |"]
for k in keys:
    if k[0] == "cnn-fp32":
        old, new = median(k, "conv-im2col"), median(k, "conv-auto")
        lines.append(f"| {k[1]} | {k[2]} | {old:.0f} | {new:.0f} | {new / old:.2f} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "wrote $OUT"
