#!/usr/bin/env python3
"""Markdown tables of one scripts/bench/cluster.sh invocation.

    cluster_report.py RESULTS.jsonl RUN_ID > cluster.md

Medians over the repetitions; every ratio is taken within one repetition
(two hosts vs one rank alone, run back to back) before the median.
"""
import json
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)


def pct(x):
    return "n/a" if x is None else "%.0f%%" % (100 * x)


def single_table(single, p):
    p("## One node (not used to choose the model's form)\n")
    p("One emulated host, 1 and 2 ranks (2 ranks: the node's shared-memory sum), 1 BLAS "
      "thread per rank. Ratio = predicted / measured step, per repetition, then the "
      "median.\n")
    p("| case | ranks | samples/s | step ms measured | **predicted (ratio)** | per-rep ratios | "
      "FLOPs at peak (ratio) | compute ms: measured / predicted | comm ms: measured / "
      "predicted | data ms/step |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    keys = []
    for r in single:
        k = (r["name"], r["ranks"])
        if k not in keys:
            keys.append(k)
    for name, n in keys:
        ss = [r["summary"] for r in single if (r["name"], r["ranks"]) == (name, n) and r["summary"]]
        pr = [x.get("predicted", {}) for x in ss]
        rat = [x["step_ms"] / x["measured_step_ms"] for x in pr
               if x.get("step_ms") and x.get("measured_step_ms")]
        ratp = med([x["step_ms_peak"] / x["measured_step_ms"] for x in pr
                    if x.get("step_ms_peak") and x.get("measured_step_ms")])
        data = med([1e3 * x["data_s"] / x["steps"] for x in ss if x.get("steps")])
        p("| %s | %d | %s | %s | **%s (%s)** | %s | %s (%s) | %s / %s | %s / %s | %s |" % (
            name, n, fmt(med([x["samples_per_s"] for x in ss]), ".0f"),
            fmt(med([x.get("measured_step_ms") for x in pr]), ".2f"),
            fmt(med([x.get("step_ms") for x in pr]), ".2f"), fmt(med(rat), ".2f"),
            ", ".join("%.2f" % v for v in rat),
            fmt(med([x.get("step_ms_peak") for x in pr]), ".2f"), fmt(ratp, ".2f"),
            fmt(med([x.get("measured_compute_ms") for x in pr]), ".2f"),
            fmt(med([x.get("compute_ms") for x in pr]), ".2f"),
            fmt(med([x.get("measured_comm_ms") for x in pr]), ".2f"),
            fmt(med([x.get("exposed_ms") for x in pr]), ".2f"), fmt(data, ".2f")))
    p("")


def targets_table(cases, rate, p):
    """Issue 15's targets at one link rate, each read off the repetitions
    (ratios within a repetition, then the median)."""
    def reps(case):
        return [r for r in cases if r["rate"] == rate and r["case"] == case and r["two_hosts"]]

    def pr(r):
        return r["two_hosts"].get("predicted", {})

    def eff(case):
        return med([r["two_hosts"]["samples_per_s"] / (2 * r["one_rank"]["samples_per_s"])
                    for r in reps(case) if r["one_rank"]])

    p("## Targets at %s (issue 15)\n" % rate)
    p("*Ideal* = the cost model's exposed comm for the schedule the run used: with overlap, "
      "each bucket sent as soon as backward has produced it, one at a time at the probed "
      "link rate (trainer/costmodel.h); without, one reduction after backward. *Compute "
      "inflation* = the two hosts' compute per step / one rank alone's: the CPU time the "
      "emulated network (both hosts' TCP stacks run on the same 2 cores) and the comm "
      "thread take from compute, which no schedule can hide.\n")
    p("| case | schedule | exposed comm ms | / one raw MPI_Allreduce | / ideal | efficiency | "
      "compute inflation |")
    p("|---|---|---|---|---|---|---|")
    names = []
    for r in cases:
        if r["rate"] == rate and r["case"] not in names:
            names.append(r["case"])
    for case in names:
        rs = reps(case)
        if not rs:
            continue
        ov = med([pr(r).get("overlap") for r in rs])
        raw = [pr(r)["measured_comm_ms"] / r["raw_allreduce"]["allreduce_ms"] for r in rs
               if r["raw_allreduce"] and pr(r).get("measured_comm_ms") is not None]
        ide = [pr(r)["measured_comm_ms"] / pr(r)["exposed_ms"] for r in rs
               if pr(r).get("exposed_ms") and pr(r).get("measured_comm_ms") is not None]
        infl = [pr(r)["measured_compute_ms"] / r["one_rank"]["predicted"]["measured_compute_ms"]
                for r in rs if r["one_rank"] and pr(r).get("measured_compute_ms")
                and r["one_rank"].get("predicted", {}).get("measured_compute_ms")]
        p("| %s | %s | %s | %s | %s | %s | %s |" % (
            case, "overlap" if ov else "after backward",
            fmt(med([pr(r).get("measured_comm_ms") for r in rs]), ".2f"), fmt(med(raw), ".2f"),
            fmt(med(ide), ".2f"), pct(eff(case)), fmt(med(infl), ".2f")))
    p("")
    on = reps("mlp1024_b512_overlap")
    off = reps("mlp1024_b512_no_overlap")
    speed = None
    if on and off:
        pairs = [(a, b) for a in on for b in off if a["rep"] == b["rep"]]
        speed = med([a["two_hosts"]["samples_per_s"] / b["two_hosts"]["samples_per_s"]
                     for a, b in pairs])
    p("- Nothing to overlap (one reduction after backward): exposed comm <= 1.05x one raw "
      "blocking MPI_Allreduce of the same bytes (column 4).")
    p("- With overlap: exposed comm within 10%% of the ideal schedule (column 5 <= 1.10). "
      "The issue's absolute figures: CNN >= 85%% efficiency: %s; MLP 784-1024-1024-10 at 512 "
      "per rank, overlap on / off >= 1.15x: %s; MLP 784-256-256-10 at 512 per rank with "
      "comm.compress bf16 >= 70%%: %s.\n" % (
          pct(eff("cnn_b64")), fmt(speed, ".2f") + "x" if speed else "n/a",
          pct(eff("mlp256_b512_bf16"))))


def main():
    path, run = sys.argv[1], sys.argv[2]
    rows = [json.loads(l) for l in open(path) if l.strip()]
    rows = [r for r in rows if r.get("run") == run]
    cases = [r for r in rows if r["case"] not in ("hier_vs_flat_2x2", "single_node", "sched")]
    single = [r for r in rows if r["case"] == "single_node"]
    policy = ([r["policy"] for r in rows if r["case"] == "sched"] or ["not recorded"])[0]
    rows = [r for r in rows if r["case"] != "sched"]
    hier = [r for r in rows if r["case"] == "hier_vs_flat_2x2"]
    commit = rows[0]["commit"] if rows else "?"
    loads = [r["load_before"] for r in rows] + [r["load_after"] for r in rows]
    out = []
    p = out.append
    p("# Across hosts: 2 emulated hosts x 1 rank (`scripts/bench/cluster.sh`)\n")
    p("Run `%s`, commit `%s`. Two network namespaces joined by a bridge, veth links "
      "shaped with TBF (tests/cluster/cluster.sh), Open MPI over TCP, 1 rank per host, "
      "1 BLAS thread per rank, on a 2-core machine shared with other jobs: load average "
      "(1 min) %s to %s during the run; scheduling policy of every run: %s. Medians of %d repetitions; efficiency = two "
      "hosts' samples/s / (2 x one rank alone), both measured back to back in the same "
      "repetition. The link rate is what the start-up probe measured (2 MiB vs 512 KiB "
      "exchanges), not the nominal TBF rate.\n" % (
          run, commit, fmt(min(loads) if loads else None), fmt(max(loads) if loads else None),
          policy, 1 + max([r["rep"] for r in rows] or [0])))
    p("Predicted = the cost model (trainer/costmodel.h) with the link from the run's own "
      "start-up probe and compute from this model's own kernels timed at start-up on every "
      "rank at its micro-batch (trainer/layer_probe.h: forward, loss, each layer's backward, "
      "optimizer; the slowest rank's table), as the run's summary prints it. For "
      "comparison: *FLOPs at peak* computes at the single-core 256^3 sgemm peak (the old "
      "form); *at run rate* uses the FLOP rate the run's compute reached (it isolates the "
      "communication model). Ratio = predicted / measured step (wall time / steps).\n")
    p("| link | case | samples/s | efficiency (measured / predicted) | step ms measured | "
      "**predicted (ratio)** | FLOPs at peak (ratio) | at run rate (ratio) | "
      "compute ms: measured / predicted | exposed comm ms: measured / predicted | "
      "raw MPI_Allreduce ms (same bytes) | exposed / raw |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = []
    for r in cases:
        k = (r["rate"], r["case"])
        if k not in keys:
            keys.append(k)
    outside = []
    for rate, case in keys:
        rs = [r for r in cases if (r["rate"], r["case"]) == (rate, case) and r["two_hosts"]]
        if not rs:
            p("| %s | %s | failed |  |  |  |  |  |  |  |  |  |" % (rate, case))
            continue
        pr = [r["two_hosts"].get("predicted", {}) for r in rs]
        sps = med([r["two_hosts"]["samples_per_s"] for r in rs])
        eff = med([r["two_hosts"]["samples_per_s"] / (2 * r["one_rank"]["samples_per_s"])
                   for r in rs if r["one_rank"]])
        step = med([x.get("measured_step_ms") for x in pr])
        comm = med([x.get("measured_comm_ms") for x in pr])
        mc = med([x.get("measured_compute_ms") for x in pr])
        ratio = med([x["step_ms"] / x["measured_step_ms"] for x in pr
                     if x.get("step_ms") and x.get("measured_step_ms")])
        ratio_p = med([x["step_ms_peak"] / x["measured_step_ms"] for x in pr
                       if x.get("step_ms_peak") and x.get("measured_step_ms")])
        ratio_r = med([x["step_ms_run_rate"] / x["measured_step_ms"] for x in pr
                       if x.get("step_ms_run_rate") and x.get("measured_step_ms")])
        ps = med([x.get("step_ms") for x in pr])
        pp = med([x.get("step_ms_peak") for x in pr])
        psr = med([x.get("step_ms_run_rate") for x in pr])
        pe = med([x.get("exposed_ms") for x in pr])
        pc = med([x.get("compute_ms") for x in pr])
        peff = med([x.get("efficiency") for x in pr])
        raw = med([r["raw_allreduce"]["allreduce_ms"] for r in rs if r["raw_allreduce"]])
        gbit = med([x.get("link_gbit_s") for x in pr])
        if ratio is None or abs(ratio - 1) > 0.25:
            outside.append((rate, case, ratio, ratio_r))
        p("| %s (probe %s Gbit/s) | %s | %s | %s / %s | %s | **%s (%s)** | %s (%s) | %s (%s) | "
          "%s / %s | %s / %s | %s | %s |"
          % (rate, fmt(gbit, ".2f"), case, fmt(sps, ".0f"), pct(eff), pct(peff), fmt(step, ".2f"),
             fmt(ps, ".2f"), fmt(ratio, ".2f"), fmt(pp, ".2f"), fmt(ratio_p, ".2f"),
             fmt(psr, ".2f"), fmt(ratio_r, ".2f"), fmt(mc, ".2f"), fmt(pc, ".2f"),
             fmt(comm, ".2f"), fmt(pe, ".2f"), fmt(raw, ".2f"),
             fmt(comm / raw if comm and raw else None, ".2f")))
    p("")
    if outside:
        p("Cases outside +-25%% of the measured step (predicted from the layers): %s.\n" % ", ".join(
            "%s %s (%s; at run rate %s)" % (a, b, fmt(c, ".2f"), fmt(d, ".2f"))
            for a, b, c, d in outside))
    else:
        p("Every case within +-25% of the measured step (predicted from the layers).\n")
    if cases:
        targets_table(cases, cases[0]["rate"], p)
    if hier:
        p("## Hierarchical vs flat, 2 hosts x 2 ranks (MLP 784-256-256-10, 64 per rank, %s)\n"
          % hier[0]["rate"])
        p("Bytes host 0 sent on its veth per step: (tx bytes of a 60-step run - those of a "
          "20-step run) / 40, so start-up traffic cancels. Sync = the run's exposed comm "
          "per step (slowest rank).\n")
        p("| mode | method (banner) | bytes per step on the link | banner: MB sent per rank per step (x 2 ranks) | sync ms/step | predicted sync ms |")
        p("|---|---|---|---|---|---|")
        for mode in ("hierarchical", "flat"):
            hs = [r for r in hier if r["mode"] == mode]
            per = []
            for rep in sorted({r["rep"] for r in hs}):
                a = [r for r in hs if r["rep"] == rep and r["steps"] == 20]
                b = [r for r in hs if r["rep"] == rep and r["steps"] == 60]
                if a and b:
                    per.append((b[0]["veth_tx_bytes"] - a[0]["veth_tx_bytes"]) / 40.0)
            sums = [r["summary"] for r in hs if r["summary"] and r["steps"] == 60]
            sync = med([s.get("predicted", {}).get("measured_comm_ms") for s in sums])
            psync = med([s.get("predicted", {}).get("sync_ms") for s in sums])
            method = hs[0]["method"] if hs else "?"
            sent = med([r.get("banner_mb_sent_per_rank") for r in hs])
            p("| %s | %s | %s | %s (%s) | %s | %s |" % (
                mode, method, fmt(med(per), ".0f"), fmt(sent, ".3g"),
                fmt(2e6 * sent if sent else None, ".0f"), fmt(sync, ".2f"), fmt(psync, ".2f")))
        p("")
    if single:
        single_table(single, p)
    print("\n".join(out))


if __name__ == "__main__":
    main()
