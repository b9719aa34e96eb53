#!/usr/bin/env bash
# The time breakdown: every log line is followed by where the interval's
# time went (and a "time" JSON record), and the run ends with the fractions
# over the whole run, samples/s, model FLOP/s and the fraction of the
# single-core sgemm peak measured at start-up. Values are not asserted
# (the machine is shared), only that they are there and add up: the five
# parts are disjoint, so with "other" they make 100% and never more, for
# every interval and for the run, also when checkpoints (every step here,
# in the second run) take most of the time and the ranks reach each sync
# at different times.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 2048 --test 256 --features 32
smoke_config cfg.yaml data.h5 run
run_np 2 train cfg.yaml --set log.every_steps=8 --set train.max_steps=40
expect_ok
n=$(grep -c '^        time: compute [0-9.]*% | comm [0-9.]*% | data [0-9.]*% | checkpoint [0-9.]*% | eval [0-9.]*% | other [0-9.]*% | .* GFLOP/s per rank, [0-9]*% of sgemm peak$' "$LAST_OUT" || true)
[ "$n" -eq 5 ] || { cat "$LAST_OUT"; fail "expected 5 interval breakdowns, found $n"; }
grep -q '^time (mean over ranks): compute .*| other [0-9.]*%$' "$LAST_OUT" || fail "no final breakdown"
grep -q '^speed: [0-9]* samples/s; model .* GFLOP/s per rank (3x the .* MFLOP/sample forward), .*% of 1 x .* GFLOP/s (single-core sgemm peak measured at start-up, 1 BLAS thread per rank)$' "$LAST_OUT" ||
  { grep '^speed' "$LAST_OUT"; fail "no speed line"; }
"$PYTHON" - run/metrics.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
times = [r for r in rows if r["kind"] == "time"]
assert len(times) == 5, len(times)
s = [r for r in rows if r["kind"] == "summary"][-1]
f = s["fractions"]
PARTS = ("compute", "comm", "data", "checkpoint", "eval")
def check(f, what):  # 4 decimals each: 5 roundings of 5e-5
    parts = sum(f[k] for k in PARTS)
    assert parts <= 1.0 + 3e-4, f"{what}: the parts add up to {parts:.4f} > 1: {f}"
    assert abs(parts + f["other"] - 1.0) <= 3e-4, f"{what}: with other {parts + f['other']:.4f}"
for r in times:
    check(r, f"interval to step {r['step']}")
check(f, "summary")
assert s["sgemm_peak_gflops"] > 0 and f["gflops_per_rank"] > 0 and f["peak_frac"] > 0, s
print(f"fractions {f}")
PY

note "checkpoints every step: parts never add up to more than 100%"
run_np 2 train cfg.yaml --set run.dir=ck --set log.every_steps=4 --set train.max_steps=32 \
  --set checkpoint.every_steps=1
expect_ok
"$PYTHON" - ck/metrics.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
PARTS = ("compute", "comm", "data", "checkpoint", "eval")
checked = [(f"interval to step {r['step']}", r) for r in rows if r["kind"] == "time"]
s = [r for r in rows if r["kind"] == "summary"][-1]
checked.append(("summary", s["fractions"]))
assert len(checked) == 9, len(checked)
for what, f in checked:
    parts = sum(f[k] for k in PARTS)
    assert parts <= 1.0 + 3e-4, f"{what}: the parts add up to {parts:.4f} > 1: {f}"
    assert abs(parts + f["other"] - 1.0) <= 3e-4, f"{what}: with other {parts + f['other']:.4f}"
assert s["fractions"]["checkpoint"] > 0 and s["checkpoint_s"] > 0, s
print("--- summary: " + ", ".join(f"{k} {s['fractions'][k]:.3f}" for k in PARTS + ("other",)))
PY
echo "timing: ok"
