#!/usr/bin/python3
"""Independent check of midscale's token windows with h5py and numpy.

  token_windows.py make FILE
      Writes FILE with h5py: /lm/stream (uint16, 5003 tokens, chunked +
      gzip, attribute vocab_size 1000), /lm/seqs (int32, 40 sequences of 57
      tokens, contiguous, no attribute) and /lm/bytes (uint8, 3001 tokens).

  token_windows.py check --h5 FILE --ds DATASET --seq-len L --stride K
                         --batch B --seed S --steps T
                         [--shuffle global|block|none] [--block-size K]
                         [--window W] DUMP_DIR...
      Each DUMP_DIR holds the rank<R>.txt/.x.f32/.y.i32 files of one
      tests/token_dump run (the world size is the number of rank files; a
      run may start at a later step, as a resumed one does). For every step
      of every run: the rank slices, in rank order, are the step's global
      batch of the reference order (sampler_epoch_order, reimplemented in
      h5py_stream.py) over the windows; the inputs of window w are the ids
      [s, s + L) of the h5py array as floats and its labels the ids
      [s + 1, s + L + 1), s = w * K for a stream, and for sequences (N, M)
      window w % P of sequence w // P at w % P * K, P = (M - L - 1) // K + 1.
      Runs that share a step must agree on it (implied, and checked).

Exits non-zero with a message on the first mismatch.
"""
import argparse
import glob
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h5py_stream import epoch_order  # noqa: E402  (the sampler's reference)


def fail(msg):
    print("token_windows: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def make(path):
    import h5py

    rng = np.random.default_rng(20)
    with h5py.File(path, "w") as f:
        g = f.create_group("lm")
        s = g.create_dataset("stream", data=rng.integers(0, 1000, 5003).astype(np.uint16),
                             chunks=(700,), compression="gzip", shuffle=True)
        s.attrs["vocab_size"] = np.int64(1000)
        g.create_dataset("seqs", data=rng.integers(0, 70000, (40, 57)).astype(np.int32))
        g.create_dataset("bytes", data=rng.integers(0, 256, 3001).astype(np.uint8))


def windows(data, seq, stride):
    """(n_windows, seq + 1) int64: every window of the reference."""
    rows = data.reshape(1, -1) if data.ndim == 1 else data
    per_row = (rows.shape[1] - seq - 1) // stride + 1
    if per_row < 1:
        fail(f"the data is shorter than one window of {seq + 1}")
    starts = np.arange(per_row) * stride
    w = np.stack([rows[:, s:s + seq + 1] for s in starts], axis=1)
    return w.reshape(-1, seq + 1).astype(np.int64)


def read_run(d, seq):
    files = glob.glob(os.path.join(d, "rank*.txt"))
    ranks = sorted(int(re.search(r"rank(\d+)\.txt$", p).group(1)) for p in files)
    if not ranks or ranks != list(range(len(ranks))):
        fail(f"{d}: expected rank0.txt .. rankN.txt, found ranks {ranks}")
    runs = []
    for r in ranks:
        lines = [[int(t) for t in ln.split()] for ln in open(os.path.join(d, f"rank{r}.txt"))]
        x = np.fromfile(os.path.join(d, f"rank{r}.x.f32"), dtype=np.float32)
        y = np.fromfile(os.path.join(d, f"rank{r}.y.i32"), dtype=np.int32)
        per = len(lines[0]) - 2 if lines else 0
        if x.size != len(lines) * per * seq or y.size != x.size:
            fail(f"{d}: rank {r}: {x.size} inputs and {y.size} labels for {len(lines)} steps of "
                 f"{per} windows of {seq}")
        steps = {}
        for i, v in enumerate(lines):
            rows = slice(i * per * seq, (i + 1) * per * seq)
            steps[v[0]] = (v[1], v[2:], x[rows].reshape(per, seq), y[rows].reshape(per, seq))
        runs.append(steps)
    return runs


def check(a):
    import h5py

    with h5py.File(a.h5, "r") as f:
        data = f[a.ds][()]
    win = windows(data, a.seq_len, a.stride or a.seq_len)
    n = len(win)
    spe = n // a.batch
    perms, seen = {}, {}
    for d in a.dump:
        runs = read_run(d, a.seq_len)
        world = len(runs)
        if a.batch % world:
            fail(f"{d}: batch {a.batch} does not split over {world} ranks")
        first = min(runs[0]) if runs[0] else a.steps
        if any(sorted(r) != list(range(first, a.steps)) for r in runs):
            fail(f"{d}: every rank must hold steps {first} .. {a.steps - 1}")
        for step in range(first, a.steps):
            epoch, s_in = divmod(step, spe)
            if epoch not in perms:
                perms[epoch] = epoch_order(a, epoch, n)
            want = perms[epoch][s_in * a.batch:(s_in + 1) * a.batch]
            got = [i for r in runs for i in r[step][1]]
            if any(r[step][0] != epoch for r in runs):
                fail(f"{d}: step {step} is not in epoch {epoch}")
            if got != list(want):
                fail(f"{d}: step {step}: windows {got[:6]}... != reference {list(want)[:6]}...")
            x = np.concatenate([r[step][2] for r in runs])
            y = np.concatenate([r[step][3] for r in runs])
            ref = win[np.asarray(want)]
            if not np.array_equal(x, ref[:, :-1].astype(np.float32)):
                fail(f"{d}: step {step}: inputs differ from h5py's ids")
            if not np.array_equal(y, ref[:, 1:].astype(np.int32)):
                fail(f"{d}: step {step}: labels differ from h5py's next ids")
            key = (step, x.tobytes(), y.tobytes())
            if step in seen and seen[step] != key:
                fail(f"{d}: step {step} differs from another run")
            seen[step] = key
    print(f"token_windows: {len(a.dump)} run(s) of '{a.ds}' ({n} windows of {a.seq_len}, stride "
          f"{a.stride or a.seq_len}) match h5py and the reference order")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("file")
    c = sub.add_parser("check")
    c.add_argument("--h5", required=True)
    c.add_argument("--ds", required=True)
    c.add_argument("--seq-len", type=int, required=True)
    c.add_argument("--stride", type=int, default=0)
    c.add_argument("--batch", type=int, required=True)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--steps", type=int, required=True)
    c.add_argument("--shuffle", default="global", choices=["global", "block", "none"])
    c.add_argument("--block-size", type=int, default=0)
    c.add_argument("--window", type=int, default=16)
    c.add_argument("dump", nargs="+")
    a = p.parse_args()
    if a.cmd == "make":
        make(a.file)
    else:
        if a.shuffle == "block" and a.block_size == 0:
            fail("--shuffle block needs --block-size (token sets are not chunked by window)")
        check(a)


if __name__ == "__main__":
    main()
