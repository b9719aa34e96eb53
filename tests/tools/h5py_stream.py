#!/usr/bin/python3
"""Independent check of midscale's data pipeline with h5py and numpy.

  h5py_stream.py make FILE
      Writes FILE with h5py: chunked + gzip + shuffle inputs in a nested group,
      /experiments/run1/x (float32, (N, 2, 3, 5)) and /experiments/run1/x16
      (int16, same shape), int64 labels /experiments/run1/labels, and a small
      test split under /experiments/run1/test/.

  h5py_stream.py check --h5 FILE --x DATASET --seed S --batch B --steps T
                       [--scale F] [--mean M,...] [--std S,...]
                       [--shuffle global|block|none] [--block-size K] [--window W]
                       TRACE_DIR...
      Each TRACE_DIR holds the rank<R>.txt/.sum/.f32 files that midscale
      writes under MIDSCALE_TRACE_SAMPLES (trainer/trace.h) for one run; the
      world size is the number of rank files. For every run it checks that
      every step's rank slices are disjoint, cover the step's global batch and
      equal the reference order (sampler_epoch_order of data/sampler.c,
      reimplemented below: the global permutation, block shuffle with
      --block-size K (the HDF5 chunk's rows when 0) and --window W, or the
      sequential order), so each epoch's steps cover its global batches;
      that every step's FNV-1a of the inputs and the raw floats dumped equal
      h5py's values through the same scale/mean/std in float32; and that all
      runs give the same global stream.

Standard library + numpy + h5py only; exits non-zero with a message on the
first mismatch.
"""
import argparse
import glob
import os
import re
import sys

import numpy as np

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
EPOCH_SALT = 0xD1B54A32D192ED03
DRAW_SALT = 0x8CB92BA72F3D8DD7
BLOCK_SALT = 0x5BD1E9955BD1E995
WINDOW_SALT = 0xC2B2AE3D27D4EB4F


def mix64(x):
    """sampler_mix64: the splitmix64 finaliser of x + golden."""
    x = (x + GOLDEN) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def draw_word(key, i, k):
    return mix64(key ^ mix64((i + k * DRAW_SALT) & M64))


def bounded_draw(key, i, rng):
    """Lemire's multiply-shift with rejection, as bounded_draw in sampler.c."""
    k = 0
    p = draw_word(key, i, k) * rng
    hi, lo = p >> 64, p & M64
    if lo < rng:
        threshold = ((1 << 64) - rng) % rng  # (0 - range) % range in uint64
        while lo < threshold:
            k += 1
            p = draw_word(key, i, k) * rng
            hi, lo = p >> 64, p & M64
    return hi


def shuffle_keyed(key, a):
    """Fisher-Yates over the list a, position i drawing from (key, i)."""
    for i in range(len(a), 1, -1):
        top = i - 1
        j = bounded_draw(key, top, i)
        a[top], a[j] = a[j], a[top]
    return a


def permutation(seed, epoch, n):
    return shuffle_keyed(mix64(seed ^ mix64(epoch ^ EPOCH_SALT)), list(range(n)))


def block_order(seed, epoch, n, bs, window):
    """Blocks of bs samples in a shuffled order, then the samples of each
    run of `window` blocks shuffled together (block_order in sampler.c)."""
    nb = (n + bs - 1) // bs
    key = mix64(seed ^ mix64(epoch ^ BLOCK_SALT))
    blocks = shuffle_keyed(key, list(range(nb)))
    order = []
    for w, first in enumerate(range(0, nb, window)):
        seg = [i for b in blocks[first:first + window] for i in range(b * bs, min(n, b * bs + bs))]
        order += shuffle_keyed(mix64(key ^ mix64(w ^ WINDOW_SALT)), seg)
    return order


def epoch_order(a, epoch, n):
    if a.shuffle == "block":
        return block_order(a.seed, epoch, n, a.block_size, a.window)
    if a.shuffle == "none":
        return list(range(n))
    return permutation(a.seed, epoch, n)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def fail(msg):
    print("h5py_stream: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def make(path):
    import h5py

    rng = np.random.default_rng(11)
    n, n_test = 600, 100
    shape = (2, 3, 5)
    labels = rng.integers(0, 5, n + n_test).astype(np.int64)
    centres = rng.normal(0, 1, (5,) + shape)
    x = (centres[labels] + rng.normal(0, 0.7, (n + n_test,) + shape)).astype(np.float32)
    x16 = np.clip(np.round(x * 1000), -32768, 32767).astype(np.int16)
    opts = dict(chunks=(37,) + shape, compression="gzip", compression_opts=6, shuffle=True)
    with h5py.File(path, "w") as f:
        g = f.create_group("experiments/run1")
        g.create_dataset("x", data=x[:n], **opts)
        g.create_dataset("x16", data=x16[:n], **opts)
        g.create_dataset("labels", data=labels[:n], chunks=(64,), compression="gzip")
        t = g.create_group("test")
        t.create_dataset("x", data=x[n:], **opts)
        t.create_dataset("x16", data=x16[n:], **opts)
        t.create_dataset("labels", data=labels[n:])


def expected_rows(data, idx, scale, mean, std):
    """What midscale's data_read must return, in float32 arithmetic."""
    rows = data[np.asarray(idx, dtype=np.int64)].astype(np.float32) * np.float32(scale)
    c = rows.shape[1] if rows.ndim > 1 else 1
    per_channel = lambda v: v.reshape((1, c) + (1,) * (rows.ndim - 2)) if len(v) == c else v
    if mean is not None:
        m = np.asarray(mean, np.float32)
        rows = rows - (m[0] if len(m) == 1 else per_channel(m))
    if std is not None:
        s = np.asarray(std, np.float32)
        rows = rows / (s[0] if len(s) == 1 else per_channel(s))
    return rows.astype(np.float32).reshape(len(idx), -1)


def read_run(d):
    """{rank: {step: (epoch, idx)}}, {rank: {step: fnv}}, {rank: raw floats}."""
    ranks = sorted(int(re.search(r"rank(\d+)\.txt$", p).group(1))
                   for p in glob.glob(os.path.join(d, "rank*.txt")))
    if ranks != list(range(len(ranks))) or not ranks:
        fail(f"{d}: expected rank0.txt .. rankN.txt, found ranks {ranks}")
    idx, sums, raw = {}, {}, {}
    for r in ranks:
        idx[r], sums[r] = {}, {}
        for line in open(os.path.join(d, f"rank{r}.txt")):
            v = [int(t) for t in line.split()]
            idx[r][v[0]] = (v[1], v[2:])
        for line in open(os.path.join(d, f"rank{r}.sum")):
            s, h = line.split()
            sums[r][int(s)] = int(h, 16)
        raw[r] = np.fromfile(os.path.join(d, f"rank{r}.f32"), dtype=np.float32)
    return idx, sums, raw


def check(a):
    import h5py

    with h5py.File(a.h5, "r") as f:
        data = f[a.x][()]  # h5py decompresses (gzip + shuffle) on its own
        if a.shuffle == "block" and a.block_size == 0:
            a.block_size = f[a.x].chunks[0] if f[a.x].chunks else 1
    n = data.shape[0]
    elems = int(np.prod(data.shape[1:]))
    steps_per_epoch = n // a.batch
    mean = [float(v) for v in a.mean.split(",")] if a.mean else None
    std = [float(v) for v in a.std.split(",")] if a.std else None
    perms = {}
    streams = []
    for d in a.trace:
        idx, sums, raw = read_run(d)
        world = len(idx)
        per = a.batch // world
        if per * world != a.batch:
            fail(f"{d}: batch {a.batch} is not divisible by {world} ranks")
        stream = []
        for step in range(a.steps):
            epoch, s_in = divmod(step, steps_per_epoch)
            if epoch not in perms:
                perms[epoch] = epoch_order(a, epoch, n)
                if sorted(perms[epoch]) != list(range(n)):
                    fail(f"the reference order of epoch {epoch} is not a permutation")
            want = perms[epoch][s_in * a.batch:(s_in + 1) * a.batch]
            got = []
            for r in range(world):
                if step not in idx[r]:
                    fail(f"{d}: rank {r} has no line for step {step}")
                e, ids = idx[r][step]
                if e != epoch:
                    fail(f"{d}: rank {r} step {step}: epoch {e}, expected {epoch}")
                if ids != want[r * per:(r + 1) * per]:
                    fail(f"{d}: rank {r} step {step}: samples {ids}, the reference permutation "
                         f"gives {want[r * per:(r + 1) * per]}")
                rows = expected_rows(data, ids, a.scale, mean, std)
                h = fnv1a64(rows.tobytes())
                if sums[r].get(step) != h:
                    fail(f"{d}: rank {r} step {step}: input checksum {sums[r].get(step, 0):016x}, "
                         f"h5py gives {h:016x}")
                got += ids
            if len(set(got)) != len(got):
                fail(f"{d}: step {step}: ranks share samples")
            stream.append(got)
        # The raw floats of the first steps, element by element.
        for r in range(world):
            k = len(raw[r]) // (per * elems)
            want_rows = np.concatenate([expected_rows(data, idx[r][s][1], a.scale, mean, std)
                                        for s in range(k)]) if k else np.zeros((0, elems))
            got_rows = raw[r][:k * per * elems].reshape(-1, elems)
            if not np.array_equal(got_rows.view(np.uint32), want_rows.view(np.uint32)):
                bad = np.argwhere(got_rows != want_rows)[0]
                fail(f"{d}: rank {r}: float {tuple(bad)} of the first {k} steps is "
                     f"{got_rows[tuple(bad)]!r}, h5py gives {want_rows[tuple(bad)]!r}")
        # Every epoch covered: its steps hold distinct samples.
        for e in range(a.steps // steps_per_epoch):
            ep = [i for s in stream[e * steps_per_epoch:(e + 1) * steps_per_epoch] for i in s]
            if len(set(ep)) != len(ep) or len(ep) != steps_per_epoch * a.batch:
                fail(f"{d}: epoch {e} does not cover {steps_per_epoch} distinct global batches")
        streams.append(stream)
        print(f"h5py_stream: {d}: {world} rank(s), {a.steps} steps, {len(raw[0]) // elems} "
              f"samples' floats compared bit for bit: ok")
    for d, s in zip(a.trace[1:], streams[1:]):
        if s != streams[0]:
            step = next(i for i in range(len(s)) if s[i] != streams[0][i])
            fail(f"{d}: global stream differs from {a.trace[0]} at step {step}")
    print(f"h5py_stream: {len(a.trace)} runs, identical global streams")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("file")
    c = sub.add_parser("check")
    c.add_argument("--h5", required=True)
    c.add_argument("--x", required=True)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--batch", type=int, required=True)
    c.add_argument("--steps", type=int, required=True)
    c.add_argument("--scale", type=float, default=1.0)
    c.add_argument("--mean", default="")
    c.add_argument("--std", default="")
    c.add_argument("--shuffle", choices=["global", "block", "none"], default="global")
    c.add_argument("--block-size", type=int, default=0)
    c.add_argument("--window", type=int, default=16)
    c.add_argument("trace", nargs="+")
    a = p.parse_args()
    if a.cmd == "make":
        make(a.file)
    else:
        check(a)


if __name__ == "__main__":
    main()
