#!/usr/bin/env python3
"""Checks a midscale trace (log.trace_steps): Chrome trace-event JSON with
one process per rank, spans that nest on every thread, and only the chosen
steps.

usage: trace_check.py TRACE.json --world N --steps FROM TO [--expect NAME]...
Exit 0, or 1 with the first problem on stderr."""
import argparse
import json
import sys


def fail(msg):
    print("trace_check: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("trace")
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--steps", type=int, nargs=2, required=True)
    p.add_argument("--expect", action="append", default=[],
                   help="a span name (or prefix ending in '*') every rank must have")
    a = p.parse_args()
    with open(a.trace) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        fail("no traceEvents list")
    events = doc["traceEvents"]
    procs = {}
    spans = {}
    for e in events:
        for key in ("name", "ph", "pid"):
            if key not in e:
                fail("event without %s: %r" % (key, e))
        if e["ph"] == "M":
            if e["name"] == "process_name":
                procs[e["pid"]] = e["args"]["name"]
            continue
        if e["ph"] != "X":
            fail("unexpected phase %r" % e["ph"])
        for key in ("ts", "dur", "tid", "args"):
            if key not in e:
                fail("span without %s: %r" % (key, e))
        if not (isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float))):
            fail("ts/dur not numbers: %r" % e)
        if e["dur"] < 0:
            fail("negative duration: %r" % e)
        step = e["args"].get("step")
        if not (a.steps[0] <= step <= a.steps[1]):
            fail("span of step %r outside %r: %r" % (step, a.steps, e))
        spans.setdefault((e["pid"], e["tid"]), []).append(e)
    if sorted(procs) != list(range(a.world)):
        fail("processes %r, expected one per rank 0..%d" % (sorted(procs), a.world - 1))
    for pid, name in procs.items():
        if name != "rank %d" % pid:
            fail("process %d is named %r" % (pid, name))
    # Nesting: on each thread, sorted by start (longer first on a tie), a
    # span lies wholly inside the enclosing open span or after it.
    # Times are exact multiples of 1 ns written with 3 decimals.
    def ns(x):
        return round(x * 1000)
    for (pid, tid), lst in spans.items():
        lst.sort(key=lambda e: (ns(e["ts"]), -ns(e["dur"])))
        stack = []
        for e in lst:
            b, end = ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])
            while stack and stack[-1][1] <= b:
                stack.pop()
            if stack and end > stack[-1][1]:
                fail("rank %d thread %d: %r [%d, %d] overlaps %r [%d, %d] without nesting"
                     % (pid, tid, e["name"], b, end, stack[-1][2], stack[-1][0], stack[-1][1]))
            stack.append((b, end, e["name"]))
    for pid in procs:
        names = {e["name"] for (p_, _), lst in spans.items() if p_ == pid for e in lst}
        steps = {e["args"]["step"] for (p_, t), lst in spans.items() if p_ == pid and t == 0
                 for e in lst if e["name"] == "step"}
        if steps != set(range(a.steps[0], a.steps[1] + 1)):
            fail("rank %d has step spans %r, expected %r" % (pid, sorted(steps), a.steps))
        for want in a.expect:
            ok = any(n.startswith(want[:-1]) for n in names) if want.endswith("*") else want in names
            if not ok:
                fail("rank %d has no %r span (has %s)" % (pid, want, sorted(names)))
    print("trace_check: %d events, %d ranks, steps %d-%d, %d threads: ok"
          % (len(events), len(procs), a.steps[0], a.steps[1], len(spans)))


main()
