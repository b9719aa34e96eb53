#!/usr/bin/env bash
# Data loader benchmark (issue 4, item 3): Fashion-MNIST replicated to at
# least 2 GB on disk, and
#   1. the raw sequential read rate of that file (cat FILE > /dev/null),
#      cold (after echo 3 > /proc/sys/vm/drop_caches; root only) and warm;
#   2. samples/s of the loader alone (build/bench_loader: one rank, global
#      batch 128, prefetch 2, no model) streamed with global shuffle, block
#      shuffle and sequential order, and in memory;
#   3. the share of step time a training run of the Fashion-MNIST MLP
#      (configs/fashion_mnist_mlp.yaml, 15 epochs, data.cache: stream)
#      spends waiting for data, on 1 and 2 ranks, with data.prefetch 2 (the
#      default) and 0.
# Every figure is the median of --runs runs (default 3). It prints a
# Markdown report (scripts/bench/results/loader.md is one, with notes).
# The machine should be quiet: these are timings.
#
#   scripts/bench/loader.sh [--dir DIR] [--keep] [--runs N] [--size-gb G]
#                           [--seconds T] [--epochs E] [--out FILE]
#                           [--train-only]
#
# --train-only runs part 3 alone (it reads the Fashion-MNIST file itself,
# not the big one, so no big file is written).
# --dir: where the big file goes (default data-cache/bench-loader, which
# .gitignore covers); it is deleted at the end unless --keep (an existing
# file of the right size is reused). Needs /usr/bin/python3 with h5py and
# numpy, and the Debian package dataset-fashion-mnist.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MIDSCALE_BUILD_DIR:-$ROOT/build}
MIDSCALE=$BUILD/midscale
BENCH=$BUILD/bench_loader
PY=/usr/bin/python3
DIR=$ROOT/data-cache/bench-loader
KEEP=0 RUNS=3 SIZE_GB=2 SECONDS_PER=10 EPOCHS=15 OUT= TRAIN_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift ;;
    --keep) KEEP=1 ;;
    --runs) RUNS=$2; shift ;;
    --size-gb) SIZE_GB=$2; shift ;;
    --seconds) SECONDS_PER=$2; shift ;;
    --epochs) EPOCHS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --train-only) TRAIN_ONLY=1 ;;
    *) sed -n '2,28p' "$0" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$MIDSCALE" ] && [ -x "$BENCH" ] || { echo "build first: cmake --build build (needs midscale and bench_loader)" >&2; exit 2; }
"$PY" -c 'import h5py, numpy' 2>/dev/null || { echo "needs /usr/bin/python3 with h5py and numpy" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

mkdir -p "$DIR"
SMALL=$ROOT/data-cache/fashion_mnist.h5
BIG=$DIR/fashion_mnist_x.h5
WORK=$DIR/work
mkdir -p "$WORK"
cleanup() {
  rm -rf "$WORK"
  if [ $KEEP = 0 ]; then rm -f "$BIG"; rmdir "$DIR" 2>/dev/null || true; fi
}
trap cleanup EXIT
[ -n "$OUT" ] && exec > >(tee "$OUT")

median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
can_drop() { [ -w /proc/sys/vm/drop_caches ]; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# header TITLE TAIL: the report's title and the machine line (TAIL appended).
header() {
  echo "$1"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM;"\
    "load before: $(uptime | sed 's/.*load average: //').$2"
  echo
}

[ -f "$SMALL" ] || "$MIDSCALE" prepare fashion-mnist "$SMALL" >/dev/null

if [ $TRAIN_ONLY = 0 ]; then
# ---- the big file ---------------------------------------------------------
# Fashion-MNIST's 60000 training images repeated in order, written in
# chunk-aligned slices with the layout `midscale prepare` uses (chunks of
# 1337 images, about 1 MiB; gzip 1; uint8), labels alike.
"$PY" - "$SMALL" "$BIG" "$SIZE_GB" <<'PY'
import os, sys, time
import h5py, numpy as np
small, big, size_gb = sys.argv[1], sys.argv[2], float(sys.argv[3])
with h5py.File(small, "r") as f:
    x, y = f["train/images"][()], f["train/labels"][()]
    per_copy = f["train/images"].id.get_storage_size()
    chunk = f["train/images"].chunks
copies = int(size_gb * 1e9 / per_copy) + 2
n = copies * len(x)
if os.path.exists(big):
    with h5py.File(big, "r") as f:
        if f["train/images"].shape[0] == n:
            print(f"reusing {big}", file=sys.stderr)
            sys.exit(0)
t0 = time.time()
with h5py.File(big, "w") as f:
    xs = f.create_dataset("train/images", (n,) + x.shape[1:], np.uint8, chunks=chunk,
                          compression="gzip", compression_opts=1)
    ys = f.create_dataset("train/labels", (n,), np.uint8, chunks=(min(n, 1 << 20),))
    step = chunk[0] * 32
    for s in range(0, n, step):
        e = min(n, s + step)
        i = np.arange(s, e) % len(x)
        xs[s:e] = x[i]
        ys[s:e] = y[i]
print(f"wrote {big}: {copies} copies, {n} samples, {os.path.getsize(big) / 1e9:.2f} GB "
      f"in {time.time() - t0:.0f} s", file=sys.stderr)
PY
BYTES=$(stat -c %s "$BIG")
[ "$BYTES" -ge $((SIZE_GB * 1000000000)) ] || { echo "the file is only $BYTES bytes" >&2; exit 1; }
N=$("$PY" -c "import h5py; print(h5py.File('$BIG', 'r')['train/images'].shape[0])")
RAW=$((N * 784))

header "# Data loader benchmark" ""
echo "File: Fashion-MNIST train images x $((N / 60000)), $N samples, uint8 (28, 28), chunks of"\
  "1337 samples, gzip 1: $(awk "BEGIN {printf \"%.2f\", $BYTES / 1e9}") GB on disk,"\
  "$(awk "BEGIN {printf \"%.2f\", $RAW / 1e9}") GB of pixels. Medians of $RUNS runs."
echo

# ---- 1. raw sequential read -------------------------------------------------
echo "## Sequential read of the file (cat FILE > /dev/null)"
echo
echo "| page cache | MB/s on disk | samples/s equivalent |"
echo "| --- | --- | --- |"
read_rate() { # prints MB/s of one cat
  local t0 t1
  t0=$(date +%s.%N)
  cat "$BIG" >/dev/null
  t1=$(date +%s.%N)
  awk "BEGIN {printf \"%.0f\n\", $BYTES / 1e6 / ($t1 - $t0)}"
}
if can_drop; then
  cold=$(for r in $(seq "$RUNS"); do drop_caches; read_rate; done | median)
  echo "| cold (drop_caches before each run) | $cold | $(awk "BEGIN {printf \"%.0f\", $cold * 1e6 / $BYTES * $N}") |"
else
  echo "| cold | not measured (needs root for /proc/sys/vm/drop_caches) | |"
fi
cat "$BIG" >/dev/null
warm=$(for r in $(seq "$RUNS"); do read_rate; done | median)
echo "| warm (the file in the page cache) | $warm | $(awk "BEGIN {printf \"%.0f\", $warm * 1e6 / $BYTES * $N}") |"
echo

# ---- 2. the loader alone ------------------------------------------------------
# field NAME LINE: the value of NAME=... in a bench_loader line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
echo "## The loader alone (bench_loader: 1 rank, batch 128, prefetch 2, ${SECONDS_PER} s per run)"
echo
echo "| mode | page cache | open s | first batch s | samples/s | MB/s of pixels |"
echo "| --- | --- | --- | --- | --- | --- |"
loader_case() { # LABEL CACHE_STATE ARGS...
  local label=$1 state=$2
  shift 2
  local rates=() opens=() firsts=()
  for r in $(seq "$RUNS"); do
    if [ "$state" = cold ]; then drop_caches; else cat "$BIG" >/dev/null; fi
    local line
    line=$("$BENCH" "$BIG" --seconds "$SECONDS_PER" --seed "$r" "$@")
    rates+=("$(field samples_per_s "$line")")
    opens+=("$(field open_s "$line")")
    firsts+=("$(field first_wait_s "$line")")
  done
  local rate open first
  rate=$(printf '%s\n' "${rates[@]}" | median)
  open=$(printf '%s\n' "${opens[@]}" | median)
  first=$(printf '%s\n' "${firsts[@]}" | median)
  echo "| $label | $state | $open | $first | $rate | $(awk "BEGIN {printf \"%.0f\", $rate * 784 / 1e6}") |"
}
loader_case "stream, global shuffle" warm --cache stream --shuffle global
loader_case "stream, block shuffle (chunk-sized blocks, window 16)" warm --cache stream --shuffle block
can_drop && loader_case "stream, block shuffle (chunk-sized blocks, window 16)" cold --cache stream --shuffle block
loader_case "stream, sequential (shuffle none)" warm --cache stream --shuffle none
loader_case "memory (whole file loaded at open), global shuffle" warm --cache memory --shuffle global \
  --budget $((RAW + (1 << 30)))
echo
echo "Streamed, the HDF5 chunk cache is 2 GiB (the trainer's per-rank budget) and starts empty;"\
  "global shuffle then pays one 1 MiB chunk decompression per sample until the cache holds"\
  "the chunks. \"open s\" in memory mode is the load of the whole file."
echo

else
  header "# Data loader benchmark (--train-only: the data wait in training)" " Medians of $RUNS runs."
fi

# ---- 3. a training run --------------------------------------------------------
echo "## Data wait in training (configs/fashion_mnist_mlp.yaml, data.cache: stream, $EPOCHS epochs)"
echo
echo "Fraction = data / (compute + comm + data), each the max over ranks of its seconds"\
  "(the run's summary line); data is the time train_step waits for its batch (with"\
  "data.prefetch 0: reads it). \"After epoch 1\" is the same fraction over the log"\
  "intervals (100 steps, rank 0) after the first epoch, whose first batches wait while"\
  "every chunk of the file is decompressed once into the chunk cache."
echo
echo "| ranks | BLAS threads/rank | data.prefetch | data s | step s (compute + comm + data) | data share | data share after epoch 1 | samples/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
GLOBAL_BATCH=$(sed -n 's/^ *batch_size: *\([0-9]*\).*/\1/p' "$ROOT/configs/fashion_mnist_mlp.yaml")
train_case() { # NP PREFETCH RUN_THREADS
  local np=$1 p=$2 thr=$3 shares=() datas=() steps=() sps=() steadies=()
  for r in $(seq "$RUNS"); do
    rm -rf "$WORK/run"
    mpiexec -n "$np" "$MIDSCALE" train "$ROOT/configs/fashion_mnist_mlp.yaml" \
      --set data.path="$SMALL" --set data.cache=stream --set data.prefetch="$p" --set run.threads="$thr" \
      --set train.epochs="$EPOCHS" --set run.dir="$WORK/run" --set log.progress=false \
      --set checkpoint.every_steps=0 >/dev/null
    read -r d st share rate steady < <("$PY" -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
s = next(r for r in rs if r["kind"] == "summary")
step = s["compute_s"] + s["comm_s"] + s["data_s"]
per_epoch = s["steps"] // int(sys.argv[2])
batch = int(sys.argv[3])
# Seconds of each part per interval: its fraction of the interval wall time.
prev, dsum, ssum = 0, 0.0, 0.0
for r in rs:
    if r["kind"] != "time":
        continue
    wall = (r["step"] - prev) * batch / r["samples_per_s"]
    if prev >= per_epoch:
        dsum += r["data"] * wall
        ssum += (r["compute"] + r["comm"] + r["data"]) * wall
    prev = r["step"]
print(s["data_s"], step, s["data_s"] / step, s["samples_per_s"], dsum / ssum if ssum else float("nan"))' \
      "$WORK/run/metrics.jsonl" "$EPOCHS" "$GLOBAL_BATCH")
    datas+=("$d") steps+=("$st") shares+=("$share") sps+=("$rate") steadies+=("$steady")
  done
  local m_d m_st m_sh m_sps m_steady
  m_steady=$(printf '%s\n' "${steadies[@]}" | median)
  m_d=$(printf '%s\n' "${datas[@]}" | median)
  m_st=$(printf '%s\n' "${steps[@]}" | median)
  m_sh=$(printf '%s\n' "${shares[@]}" | median)
  m_sps=$(printf '%s\n' "${sps[@]}" | median)
  echo "| $np | $([ "$thr" = 0 ] && echo "$(($(nproc) / np)) (default)" || echo "$thr") | $p | $(printf '%.2f' "$m_d") | $(printf '%.2f' "$m_st") |"\
    "$(awk "BEGIN {printf \"%.2f%%\", 100 * $m_sh}") | $(awk "BEGIN {printf \"%.2f%%\", 100 * $m_steady}") | $(printf '%.0f' "$m_sps") |"
}
train_case 1 2 0
train_case 1 0 0
train_case 1 2 1
train_case 2 2 0
train_case 2 0 0
echo
echo "load after: $(uptime | sed 's/.*load average: //')"
