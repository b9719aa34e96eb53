#!/usr/bin/env bash
# Character-level language model benchmark (issue 20, points 1 and 3):
# configs/char_lm.yaml trained by midscale (mpiexec) and by PyTorch DDP
# with gloo (scripts/bench/torch_char_lm.py: the same model, init, AdamW
# recipe, clipping, cosine schedule, windows and global batch 32, its own
# shuffle), one BLAS thread per rank and the same OpenBLAS kernel, in one
# invocation:
#   (1) world 2, STEPS steps each (default 3000, the config's): validation
#       loss on every test window (nats, bits per char) and tokens/s;
#   (2) a sample of `midscale generate` from the world-2 checkpoint;
#   (3) REPS rounds (default 3) of short throughput runs, STEPS1 steps each
#       (default 100, warmup 25; losses not compared) of both programs at
#       world 1 and 2, interleaved with the order rotated from round to
#       round, so that the other jobs of a shared machine weigh on both:
#       the throughput table shows medians over the rounds.
# Tokens/s of a run is the median of its log intervals after the first
# (start-up), intervals with an evaluation left out (PyTorch evaluates after
# its last step only).
# Writes scripts/bench/results/char_lm.md (scripts/bench/char_lm_report.py)
# and the raw rows in char_lm.jsonl beside it, after every run (a run cut
# short leaves the table of those before it). Never fails on timing.
#   scripts/bench/char_lm.sh [STEPS [STEPS1 [REPS]]]
# CHAR_LM_OUT=FILE.md writes the page (and FILE.jsonl) elsewhere.
# The full length takes 2 x 3000 steps: about 2 x 8 minutes on an idle
# 2-core machine (scripts/bench/results/seq.md: the step's cost).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
build
STEPS=${1:-3000}
STEPS1=${2:-100}
REPS=${3:-3}
OUT=${CHAR_LM_OUT:-$ROOT/scripts/bench/results/char_lm.md}
ROWS="${OUT%.md}.jsonl"
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/midscale-bench-char-lm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
MIDSCALE="$BUILD_DIR/midscale"
# One explicit kernel for both programs: the one midscale would pick.
bench_env
DATA="$ROOT/data-cache/char_lm.h5"
[ -f "$DATA" ] || "$ROOT/scripts/prepare_char_lm.sh" "$DATA"
HAVE_TORCH=1
if ! "$PY" -c "import torch, h5py, yaml" 2>/dev/null; then
  HAVE_TORCH=0
  echo "bench: PyTorch (python3-torch), h5py or yaml is not importable from $PY: the PyTorch rows are skipped"
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$ROWS"
report() {
  "$PY" "$ROOT/scripts/bench/char_lm_report.py" "$ROWS" "$OUT" "$LOAD_BEFORE" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "${OPENBLAS_CORETYPE:-auto}" >/dev/null ||
    echo "bench: the report failed"
}

# run_midscale W STEPS WARMUP LOG_EVERY [REP]: appends a JSON row (rep 0:
# the full-length run).
run_midscale() {
  local w=$1 steps=$2 warm=$3 every=$4 rep=${5:-0}
  local dir="$WORK/midscale-w$w-r$rep"
  echo "-- midscale, world $w, $steps steps ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
  mpiexec -n "$w" "$MIDSCALE" train "$ROOT/configs/char_lm.yaml" --set data.path="$DATA" \
    --set run.dir="$dir" --set run.threads=1 --set train.max_steps="$steps" \
    --set schedule.warmup_steps="$warm" --set log.every_steps="$every" \
    --set log.progress=false --set checkpoint.every_steps=0 >"$dir.log" 2>&1 ||
    { tail -n 20 "$dir.log"; return 1; }
  "$PY" - "$dir" "$w" "$steps" "$rep" >>"$ROWS" <<'PY'
import json, math, re, sys
d, w, steps, rep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(x) for x in open(d + "/metrics.jsonl")]
seq = 128
times = [r for r in rows if r["kind"] == "time"][1:]          # after the start-up interval
rates = sorted(r["samples_per_s"] for r in times if r.get("eval", 0) == 0) or [0.0]
ev = [r for r in rows if r["kind"] == "eval"]
summ = next((r for r in rows if r["kind"] == "summary"), {})
train = [r for r in rows if r["kind"] == "train"]
core = re.search(r"BLAS OpenBLAS ([^,\s]+)", open(d + ".log").read())
out = {"tool": "midscale", "world": w, "steps": steps, "rep": rep,
       "tokens_per_s": rates[len(rates) // 2] * seq,
       "ms_per_step": 1e3 * 32 / rates[len(rates) // 2] if rates[0] else None,
       "train_loss": train[-1]["loss"] if train else None, "seconds": summ.get("seconds"),
       "blas_core": core.group(1) if core else "?"}
if ev and ev[-1]["step"] == steps:
    out.update(val_loss=ev[-1]["loss"], val_bits_per_char=ev[-1]["loss"] / math.log(2),
               test_windows=ev[-1]["samples"])
print(json.dumps(out))
PY
}

run_torch() { # W STEPS LOG_EVERY RESOLVED_CONFIG [REP]
  [ "$HAVE_TORCH" = 1 ] || return 0
  echo "-- PyTorch DDP, world $1, $2 steps ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
  "$PY" "$ROOT/scripts/bench/torch_char_lm.py" --config "$4" --world "$1" --steps "$2" \
    --log-every "$3" 2>"$WORK/torch-w$1.err" |
    "$PY" -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(tool='torch', rep=${5:-0}); print(json.dumps(r))" \
      >>"$ROWS" || { echo "bench: PyTorch failed at world $1:"; tail -n 20 "$WORK/torch-w$1.err"; }
}

WARM=$(awk '/^schedule:/ { s = 1 } s && /warmup_steps:/ { print $2; exit }' "$ROOT/configs/char_lm.yaml")
[ "$WARM" -lt "$STEPS" ] || WARM=$((STEPS / 4))
run_midscale 2 "$STEPS" "$WARM" 50 && report
run_torch 2 "$STEPS" 50 "$WORK/midscale-w2-r0/config.resolved.yaml" && report
# The sample of the README: the world-2 model, prompt "The ", seed 1.
CK=$(ls "$WORK"/midscale-w2-r0/checkpoints/step-*.safetensors.zst 2>/dev/null | tail -n 1)
if [ -n "$CK" ]; then
  "$MIDSCALE" generate "$WORK/midscale-w2-r0/config.resolved.yaml" "$CK" --prompt "The " \
    --tokens 300 --temperature 0.8 --top-k 40 --seed 1 >"$WORK/sample.txt" 2>/dev/null &&
    "$PY" -c "import json,sys; print(json.dumps({'tool': 'sample', 'steps': $STEPS, 'text': open(sys.argv[1], errors='replace').read()}))" \
      "$WORK/sample.txt" >>"$ROWS" && report
fi
W1=$((STEPS1 / 4))
for rep in $(seq 1 "$REPS"); do
  order=("m 1" "t 1" "m 2" "t 2")
  for ((k = 0; k < (rep - 1) % 4; k++)); do order=("${order[@]:1}" "${order[0]}"); done
  for c in "${order[@]}"; do
    read -r p w <<<"$c"
    if [ "$p" = m ]; then
      run_midscale "$w" "$STEPS1" "$W1" 25 "$rep" || true
    else
      # The config of a short midscale run (round 1 starts with one).
      cfg=$(ls "$WORK"/midscale-w*-r[1-9]*/config.resolved.yaml 2>/dev/null | head -n 1)
      [ -n "$cfg" ] && run_torch "$w" "$STEPS1" 25 "$cfg" "$rep"
    fi
  done
  report
done
report
echo "wrote $OUT and $ROWS (the raw rows)"
