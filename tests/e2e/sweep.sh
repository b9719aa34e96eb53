#!/usr/bin/env bash
# midscale sweep --local and sweep-report: a 2-trial grid on tiny
# synthetic data runs one trial after another under mpiexec, each trial's
# resolved config holds its value, the report lists both trials sorted by
# eval_loss with the values of their own metrics.jsonl, and a second
# --local skips the trials already done. Then bad sweep files: each exits
# 2 with one message and writes nothing.
source "$(dirname "$0")/lib.sh"

# run1 ARGS...: midscale without mpiexec; sets RC, LAST_OUT, LAST_ERR.
run1() {
  CALLS=$((CALLS + 1))
  LAST_OUT="$WORK/out.$CALLS.log"
  LAST_ERR="$WORK/err.$CALLS.log"
  set +e
  timeout --kill-after=10 240 "$MIDSCALE" "$@" >"$LAST_OUT" 2>"$LAST_ERR"
  RC=$?
  set -e
}

synth data.h5 --train 512 --test 128 --features 8
smoke_config base.yaml "$WORK/data.h5" unused
cat >ok.yaml <<YAML
base: base.yaml
ranks: 2
set: {train.epochs: 1, log.every_steps: 2}
grid:
  optim.lr: [0.002, 0.2]
local: {mpirun: $MPIEXEC}
YAML

note "sweep --local: 2 trials"
run1 sweep ok.yaml --local --out out
expect_ok
cat "$LAST_OUT"
for t in 0 1; do
  [ "$(cat out/trial-00$t/exit_status)" = 0 ] || fail "trial $t: exit status"
  grep -q '"kind":"summary"' out/trial-00$t/metrics.jsonl || fail "trial $t has no summary"
done
grep -E -q '^  lr: 0\.002 ' out/trial-000/config.yaml || fail "trial 0's config lacks its lr"
grep -E -q '^  lr: 0\.2 ' out/trial-001/config.yaml || fail "trial 1's config lacks its lr"
grep -q "dir: $WORK/out/trial-001/checkpoints" out/trial-001/config.yaml ||
  fail "trial 1 checkpoints elsewhere"
grep -q -- '--array=0-1%4' out/sweep.sbatch || fail "the job array script"
bash -n out/sweep.sbatch || fail "the job array script does not parse"
"$MIDSCALE" check out/trial-001/config.yaml --world 2 >/dev/null || fail "trial config does not check"

note "sweep-report"
run1 sweep-report out
expect_ok
cat "$LAST_OUT"
"$PYTHON" - out <<'PY' || fail "the report does not match the trials' logs"
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f"{d}/report.csv")))
assert [r["status"] for r in rows] == ["done", "done"], rows
last = {}
for r in rows:
    ev = [json.loads(l) for l in open(f"{d}/{r['trial']}/metrics.jsonl")]
    ev = [e for e in ev if e["kind"] == "eval"]
    assert abs(float(r["eval_loss"]) - ev[-1]["loss"]) <= 1e-5 * abs(ev[-1]["loss"]), (r, ev[-1])
    assert abs(float(r["eval_acc"]) - ev[-1]["acc"]) <= 1e-6, (r, ev[-1])
    last[r["trial"]] = ev[-1]["loss"]
losses = [float(r["eval_loss"]) for r in rows]
assert losses == sorted(losses), losses
assert {r["trial"]: r["optim.lr"] for r in rows} == {"trial-000": "0.002", "trial-001": "0.2"}
PY
grep -q '^| 1 | trial-' out/report.md || fail "report.md"
run1 sweep-report out --metric eval_acc
expect_ok
run1 sweep-report out --metric nope
expect_error 2 "unknown metric 'nope'"

note "plot of the sweep's directory: one curve per trial"
"$MIDSCALE" plot out -o sweep.png >plot.out || fail "plot of the sweep failed"
grep -q '^wrote sweep.png (2 runs, 1200x800)' plot.out || { cat plot.out; fail "plot of the sweep"; }

note "a second --local skips the trials done"
run1 sweep ok.yaml --local --out out
expect_ok
[ "$(grep -c 'done before, skipped' "$LAST_OUT")" -eq 2 ] || { cat "$LAST_OUT"; fail "not skipped"; }

note "a trial that is not finished is listed as such"
mkdir -p part && cp out/trials.tsv part/ && mkdir -p part/trial-000 part/trial-001
head -n 3 out/trial-000/metrics.jsonl >part/trial-000/metrics.jsonl
run1 sweep-report part
expect_ok
grep -q '| trial-000 | running |' "$LAST_OUT" || { cat "$LAST_OUT"; fail "unfinished trial"; }
grep -q '| trial-001 | not started |' "$LAST_OUT" || { cat "$LAST_OUT"; fail "trial not started"; }

note "a trials.tsv naming a path outside its sweep is refused"
mkdir -p evil && printf 'trial\toptim.lr\n../out\t0.1\n' >evil/trials.tsv
run1 sweep-report evil
expect_error 2 "row 2 names '../out', not a trial-NNN of this folder"

note "bad sweep files: exit 2, one message, nothing written"
bad_sweep() { # TEXT YAML
  local text=$1
  printf '%s\n' "$2" >bad.yaml
  rm -rf badout
  run1 sweep bad.yaml --out badout
  expect_error 2 "$text"
  [ ! -e badout ] || fail "a bad sweep wrote badout"
}
bad_sweep "bad.yaml:2:1: unknown key 'gird'" $'base: base.yaml\ngird: {optim.lr: [0.1]}'
bad_sweep "bad.yaml:2: --set optim.lrr=0.1: unknown key 'optim.lrr', did you mean 'optim.lr'?" \
  $'base: base.yaml\ngrid: {optim.lrr: [0.1]}'
bad_sweep "grid.optim.lr: expected a non-empty list of values, found an empty list" \
  $'base: base.yaml\ngrid: {optim.lr: []}'
bad_sweep "bad.yaml:3: --set optim.lr=fast" $'base: base.yaml\ngrid:\n  optim.lr: [0.1, fast]'
bad_sweep "bad.yaml:3: --set optim.lr=-1: expected a number in" $'base: base.yaml\ngrid:\n  optim.lr: [0.1, -1]'
bad_sweep "bad.yaml: trial-001 of 2 (train.batch_size=63): train.batch_size 63 is not divisible" $'base: base.yaml\ngrid:\n  train.batch_size: [64, 63]'
bad_sweep "train.batch_size" $'base: base.yaml\nranks: 3\ngrid: {optim.lr: [0.1]}'
bad_sweep "log_uniform expects lo < hi and lo > 0" \
  $'base: base.yaml\nrandom: {trials: 2, params: {optim.lr: {log_uniform: [0, 1]}}}'
bad_sweep "unknown distribution 'normal'" \
  $'base: base.yaml\nrandom: {trials: 2, params: {optim.lr: {normal: [0, 1]}}}'
bad_sweep "random: expected trials: N" $'base: base.yaml\nrandom: {params: {optim.lr: {uniform: [0, 1]}}}'
bad_sweep "expected grid, random or both" $'base: base.yaml\nset: {optim.lr: 0.1}'
bad_sweep "expected base:" $'grid: {optim.lr: [0.1]}'
bad_sweep "cannot read config 'nothere.yaml'" $'base: nothere.yaml\ngrid: {optim.lr: [0.1]}'
bad_sweep "expected at most 1000 trials, found 1024" \
  $'base: base.yaml\ngrid: {optim.lr: [1,2,3,4,5,6,7,8], optim.momentum: [0,0,0,0,0,0,0,0]}\nrandom: {trials: 16, params: {optim.eps: {uniform: [0, 1]}}}'
bad_sweep "the sweep sets run.dir, run.name and checkpoint.dir" $'base: base.yaml\ngrid: {run.dir: [a, b]}'
bad_sweep "'optim.lr' is both set and swept" $'base: base.yaml\nset: {optim.lr: 0.1}\ngrid: {optim.lr: [0.1]}'
bad_sweep "nested at most 8 deep" "base: base.yaml
grid: {a: [[[[[[[[[[[[1]]]]]]]]]]]]}"
bad_sweep "YAML syntax error" $'base: base.yaml\ngrid: {optim.lr: [0.1'
bad_sweep "slurm.time: expected letters, digits" $'base: base.yaml\ngrid: {optim.lr: [0.1]}\nslurm: {time: "1:00 ; rm"}'
run1 sweep
expect_error 2 "sweep needs a SWEEP.yaml"
run1 sweep-report nowhere
expect_error 2 "cannot read config 'nowhere/trials.tsv'"
note "another sweep into the same folder is refused"
sed 's/0.002, 0.2/0.3, 0.4/' ok.yaml >other.yaml
run1 sweep other.yaml --out out
expect_error 2 "out/trials.tsv' belongs to another sweep"
sed 's/train.epochs: 1,/train.epochs: 2,/' ok.yaml >changed.yaml
run1 sweep changed.yaml --out out
expect_error 2 "out/trial-000/config.yaml' belongs to another sweep"
note "the README's example sweep writes its 12 trials"
run1 sweep "$MS_SOURCE_DIR/configs/sweeps/fashion_mnist_lr.yaml" --out example
expect_ok
[ "$(ls -d example/trial-0* | wc -l)" -eq 12 ] || fail "the example sweep's trials"
grep -q -- '--array=0-11%4' example/sweep.sbatch || fail "the example's job array"
echo "sweep: ok"
