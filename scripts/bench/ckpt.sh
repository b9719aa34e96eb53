#!/usr/bin/env bash
# Checkpoint benchmark (issue: checkpoints that never lose work).
#  1. Write and read MB/s and compression ratio of midscale's checkpoint
#     writer at zstd levels 1, 3 and 9, for a model of 50 M parameters plus
#     momentum (400 MB of float32), beside the zstd command line on the same
#     bytes (the uncompressed safetensors payload), single-threaded both.
#  2. The training-step stall of an asynchronous checkpoint: a ~50 M
#     parameter MLP trains on 1 and on 2 ranks and checkpoints at intervals
#     longer than one checkpoint takes to reach the disk (so that a save
#     never waits for the one before); the stall is the extra time of the
#     steps from the save until its file is in place, over a median step
#     without a save in flight, as a fraction of that step. On 2 ranks both
#     ways of compressing run: on the spot (the default when, as here, every
#     core trains) and in the background (checkpoint.compress=background).
# Figures are ratios measured in the same run; the machine is shared and
# noisy, so its load average is recorded with the results.
#   scripts/bench/ckpt.sh [N_PARAMS] [REPEATS] [STALL_REPEATS]
# CKPT_BENCH_SKIP_THROUGHPUT=1 runs part 2 only (its table alone).
# On a shared machine, `nice -n -5 scripts/bench/ckpt.sh` (as root) lets
# other jobs disturb the figures less; the checkpoint threads still lower
# their own priority. The results say at which niceness the script ran.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
build
N=${1:-50000000}
REPEATS=${2:-3}
STALL_REPEATS=${3:-2}
OUT="$ROOT/scripts/bench/results/ckpt.md"
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/midscale-bench-ckpt.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
export OPENBLAS_NUM_THREADS=1
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "load_start $(load)" >"$WORK/load.txt"
touch "$WORK/rows.jsonl"

if [ "${CKPT_BENCH_SKIP_THROUGHPUT:-0}" != 1 ]; then
echo "== 1. write/read throughput, $N parameters + momentum, $REPEATS repeats"
for r in $(seq 1 "$REPEATS"); do
  "$BUILD_DIR/bench_ckpt" "$WORK" "$N" 1 3 9 | sed "s/^{/{\"repeat\":$r,\"tool\":\"midscale\",/" >>"$WORK/rows.jsonl"
  plain="$WORK/plain.safetensors"
  raw=$(stat -c %s "$plain")
  for level in 1 3 9; do
    t0=$(date +%s.%N)
    zstd -q -f -T1 --check "-$level" "$plain" -o "$WORK/cli.zst"
    t1=$(date +%s.%N)
    zstd -q -f -d "$WORK/cli.zst" -o "$WORK/cli.out"
    t2=$(date +%s.%N)
    bytes=$(stat -c %s "$WORK/cli.zst")
    echo "{\"repeat\":$r,\"tool\":\"zstd-cli\",\"level\":$level,\"raw_bytes\":$raw,\"file_bytes\":$bytes,\"ratio\":$(echo "$raw/$bytes" | bc -l),\"write_MBps\":$(echo "$raw/1000000/($t1-$t0)" | bc -l),\"read_MBps\":$(echo "$raw/1000000/($t2-$t1)" | bc -l)}" >>"$WORK/rows.jsonl"
  done
  rm -f "$plain" "$WORK/cli.zst" "$WORK/cli.out"
done
echo "load_after_part1 $(load)" >>"$WORK/load.txt"
fi

echo "== 2. step stall of an asynchronous checkpoint (1 and 2 ranks)"
"$BUILD_DIR/midscale" prepare synthetic "$WORK/data.h5" --train 4096 --test 64 --features 784 >/dev/null
cat >"$WORK/big.yaml" <<YAML
run: {dir: $WORK/run, seed: 1}
data: {path: $WORK/data.h5}
model:
  layers:
    - {type: dense, units: 8192, activation: relu}
    - {type: dense, units: 4096, activation: relu}
    - {type: dense, units: 2560, activation: relu}
    - {type: dense, units: 10}
optim: {lr: 0.001}
train: {epochs: 100, batch_size: 64}
checkpoint: {level: 3, keep: 2}
log: {every_steps: 1, progress: false}
YAML
# train.max_steps ends each run (an epoch is 64 steps on 2 ranks, 128 on 1),
# so that no save's steps are cut off by the run's end.
# One BLAS thread per rank: world 2 then uses both cores of a 2-core
# machine (compression competes with training), world 1 leaves one idle.
# Intervals: a step takes ~0.2 s on 1 and on 2 ranks here (2 ranks sum
# their gradients in node shared memory). A file is in place within ~1.5 s
# on 1 rank, but 10-35 s after the save on 2 ranks (ranks compressing in
# the background at the lowest priority on cores that all train take the
# longest), so saves are 120 steps apart on 2 ranks and 40 on 1; the table
# flags any save that started before the previous one was in place.
# stall_run NAME NP EVERY STEPS [COMPRESS]   (checkpoint.compress, default auto)
stall_run() {
  local name=$1 np=$2 every=$3 steps=$4 compress=${5:-auto}
  for k in $(seq 1 "$STALL_REPEATS"); do
    echo "-- $name, run $k (load $(load))"
    mpirun -np "$np" "$BUILD_DIR/midscale" train "$WORK/big.yaml" \
      --set run.dir="$WORK/$name.$k" --set train.batch_size=$((32 * np)) --set run.threads=1 \
      --set train.max_steps="$steps" --set checkpoint.every_steps="$every" \
      --set checkpoint.compress="$compress" |
      grep -E '^(model|checkpoint|done)'
    echo "$name $np $k $WORK/$name.$k/metrics.jsonl" >>"$WORK/runs.txt"
  done
}
stall_run w2-spot 2 120 400
stall_run w2-background 2 120 400 background
stall_run w1 1 40 160
echo "load_end $(load)" >>"$WORK/load.txt"
echo "nice $(nice)" >>"$WORK/load.txt"

"$PY" - "$WORK/rows.jsonl" "$N" "$WORK/runs.txt" "$WORK/load.txt" "$(nproc)" >"$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
runs = [l.split() for l in open(sys.argv[3])]
loads = dict(l.split(None, 1) for l in open(sys.argv[4]))
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("# Checkpoint benchmark\n")
print(f"Generated by `scripts/bench/ckpt.sh` on this machine ({sys.argv[5]} cores, shared with "
      f"other jobs: load average (1, 5, 15 min) {loads['load_start'].strip()} at the start, "
      f"{loads['load_end'].strip()} at the end; the benchmark ran at niceness "
      f"{loads['nice'].strip()}; its checkpoint threads at 19 to compress, 10 to write).\n")
if rows:
    print(f"## Write and read throughput\n\nMedians of {len({r['repeat'] for r in rows})} repeats. "
          f"{n/1e6:.0f} M parameters + SGD momentum "
          f"({rows[0]['raw_bytes']/1e6:.0f} MB of float32, He-normal values). "
          "MB/s are of raw tensor bytes; one compression thread for both tools.\n")
    print("| zstd level | midscale write MB/s | zstd CLI write MB/s | midscale read MB/s | zstd CLI read MB/s | midscale ratio | CLI ratio | write midscale/CLI | shuffled: write MB/s | shuffled: read MB/s | shuffled: ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for lv in sorted({r["level"] for r in rows}):
        m = [r for r in rows if r["tool"] == "midscale" and r["level"] == lv and not r["shuffle"]]
        sh = [r for r in rows if r["tool"] == "midscale" and r["level"] == lv and r["shuffle"]]
        c = [r for r in rows if r["tool"] == "zstd-cli" and r["level"] == lv]
        mw, cw = med([r["write_MBps"] for r in m]), med([r["write_MBps"] for r in c])
        print(f"| {lv} | {mw:.0f} | {cw:.0f} | {med([r['read_MBps'] for r in m]):.0f} | "
              f"{med([r['read_MBps'] for r in c]):.0f} | {med([r['ratio'] for r in m]):.4f} | "
              f"{med([r['ratio'] for r in c]):.4f} | {mw/cw:.2f} | "
              f"{med([r['write_MBps'] for r in sh]):.0f} | {med([r['read_MBps'] for r in sh]):.0f} | "
              f"{med([r['ratio'] for r in sh]):.4f} |")
    print("\nmidscale's write includes hashing the tensors (XXH3) and fsync; its read includes "
          "verification (checksums, data hash). 'shuffled' is checkpoint.shuffle: true (all first "
          "bytes of the floats, then all second bytes, ...), which only midscale writes.\n")

def analyse(path, world):
    """Per checkpoint (the last one, at the end of the run, is synchronous
    by design and left out): the steps from the save until its file was in
    place are its own; its stall is their time above a median step."""
    metrics = [json.loads(l) for l in open(path)]
    train = {r["step"]: r for r in metrics if r["kind"] == "train"}
    ckpts = [r for r in metrics if r["kind"] == "checkpoint"][:-1]
    step_s = {s: 32 * world / r["samples_per_s"] for s, r in train.items()}
    # When each step ended, from the start of step 2 (1 is warm-up).
    end, t = {}, 0.0
    for s in sorted(step_s):
        t += step_s[s]
        end[s] = t
    owner, out, prev_in_place = {}, [], -1.0
    for k, c in enumerate(ckpts):
        start = end[c["step"]]
        in_place = start + c["write_s"]
        s = c["step"] + 1
        while s in step_s and end[s - 1] < in_place:
            owner[s] = k
            s += 1
        # A save still in flight when the run's last step ended would hide
        # its stall in the final (synchronous) save: it is reported, not
        # counted.
        out.append({"c": c, "start": start, "waited": start < prev_in_place,
                    "cut": in_place > end[max(end)]})
        prev_in_place = in_place
    base = med([v for s, v in step_s.items() if s not in owner and s > 2])
    for k, o in enumerate(out):
        o["extra"] = sum(max(0.0, step_s[s] - base) for s, w in owner.items() if w == k)
        o["n_steps"] = sum(1 for w in owner.values() if w == k)
        o["frac"] = o["extra"] / base
    return base, out

configs = {}
for name, np_, k, path in runs:
    configs.setdefault(name, []).append((int(np_), int(k), path))
titles = {"w2-spot": "2 ranks, each compressing its slice on the spot (the default here)",
          "w2-background": "2 ranks, each compressing its slice in the background",
          "w1": "1 rank, compressing in the background"}
print("## Step stall of an asynchronous checkpoint (~50 M-parameter MLP, 32 samples per rank)\n")
print("Stall = the extra time, over a median step without a save in flight, of the steps from "
      "the save until its file is in place (each step's excess counted if positive: noise can "
      "only add), as a fraction of that median step. The in-program columns are rank 0's: "
      "`in save` is the time the training thread spent in the save (hash, compress on the spot, "
      "hand the frames over, wait for the other ranks), `compress` one slice's compression, "
      "`frames` the hand-over (ranks of one node exchange their frames' lengths and start "
      "writing them into the file; across nodes rank 0 gathers them), "
      "`file` the background write + fsync (one node: rank 0's part, then the rename). The last checkpoint of each run (at its end, "
      "synchronous by design) is left out.\n")
summary = []
for name in ["w2-spot", "w2-background", "w1"]:
    if name not in configs:
        continue
    fr_all = []
    print(f"### {titles[name]}\n")
    print("| run | step | median step (ms) | in save (ms) | compress (s) | frames (ms) | file (s) | in place after (s) | steps until in place | extra step time (ms) | stall / step | waited for the previous save |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for world, k, path in configs[name]:
        base, out = analyse(path, world)
        for o in out:
            c = o["c"]
            if not o["cut"]:
                fr_all.append(o["frac"])
            print(f"| {k} | {c['step']} | {base*1000:.0f} | {c['stall_s']*1000:.0f} | "
                  f"{c['compress_s']:.2f} | {c['gather_s']*1000:.0f} | {c['file_s']:.2f} | "
                  f"{c['write_s']:.2f} | {o['n_steps']} | {o['extra']*1000:.0f} | "
                  f"{o['frac']:.2f} | {'yes' if o['waited'] else 'no'} |"
                  f"{' (not counted: still in flight at the run end)' if o['cut'] else ''}")
    print(f"\nMedian stall: **{med(fr_all):.2f} of one step** over {len(fr_all)} checkpoints "
          f"(target: under 1).\n")
    summary.append((titles[name], med(fr_all), min(fr_all), max(fr_all)))
print("### Summary\n")
print("| configuration | median stall / step | min | max |")
print("|---|---|---|---|")
for t, m_, lo, hi in summary:
    print(f"| {t} | {m_:.2f} | {lo:.2f} | {hi:.2f} |")
PY
cat "$OUT"
