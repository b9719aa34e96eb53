#!/usr/bin/python3
"""Hostile data files for midscale's data readers (issue 16), and the cases
that run them.

Run in an empty directory (tests/e2e/hostile_data.sh does, in the build's
tmp dir): writes every file there, small on disk (a few MB in all; the
"bombs" are deflate streams that inflate to hundreds of MB), and prints the
cases to stdout, one per line, tab-separated:

    name  command  exit_code  message_fragment  [argument ...]

command is info (midscale data-info FILE), check (midscale check cfg.yaml
--set data.path=FILE ...), train (the same under mpiexec -n 2), or prepare
(midscale prepare ARGS..., whose output out.h5 must be byte-identical after
a failure). The first argument of info/check/train is the data file; more
arguments are --set overrides. A fragment "-" means success (exit 0 and no
error line). A case name ending in @MB has a peak-memory bound of MB MiB
instead of the default.

Needs numpy and h5py (Debian's python3-h5py for /usr/bin/python3).
"""
import os
import struct
import sys
import zlib

import h5py
import numpy as np

N, F = 256, 8
rng = np.random.default_rng(16)
X = rng.normal(0, 1, (N, F)).astype(np.float32)
Y = rng.integers(0, 4, N).astype(np.int64)
CASES = []


def case(name, cmd, rc, text, *args):
    CASES.append("\t".join([name, cmd, str(rc), text] + [str(a) for a in args]))


def zeros_stream(nbytes, level=9):
    """A zlib stream of nbytes zeros, made a MiB at a time (small memory)."""
    z = zlib.compressobj(level)
    mib = bytes(1 << 20)
    out = []
    for _ in range(nbytes >> 20):
        out.append(z.compress(mib))
    out.append(z.compress(bytes(nbytes & ((1 << 20) - 1))))
    out.append(z.flush())
    return b"".join(out)


def write(name, x=X, y=Y, xkw=None, ykw=None):
    with h5py.File(name, "w") as f:
        f.create_dataset("train/images", data=x, **(xkw or {}))
        f.create_dataset("train/labels", data=y, **(ykw or {}))


def all_three(name, rc, text, *sets, info_rc=None, info_text=None):
    """data-info, check and train on one file."""
    case(name, "info", rc if info_rc is None else info_rc, text if info_text is None else info_text,
         name + ".h5")
    case(name, "check", rc, text, name + ".h5", *sets)
    case(name, "train", rc, text, name + ".h5", *sets)


# ---- positive controls: the guards must not refuse honest files ----------
write("good.h5")
all_three("good", 0, "-")
write("good_gzip.h5", xkw=dict(chunks=(64, F), compression="gzip", shuffle=True),
      ykw=dict(chunks=(100,), compression="gzip"))
case("good_gzip_stream", "train", 0, "-", "good_gzip.h5", "--set", "data.cache=stream")
with h5py.File("good_compact.h5", "w") as f:
    sp = h5py.h5s.create_simple((N,))
    pl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    pl.set_layout(h5py.h5d.COMPACT)
    f.create_dataset("train/images", data=X)
    ds = h5py.h5d.create(f["train"].id, b"labels", h5py.h5t.STD_I64LE, sp, pl)
    ds.write(h5py.h5s.ALL, h5py.h5s.ALL, Y)
case("good_compact", "check", 0, "-", "good_compact.h5")

# ---- 4: deflate bombs through HDF5's own filter ---------------------------
BOMB = zeros_stream(400 << 20)  # 400 MiB of zeros in about 400 KB


def bomb_file(name, x, chunks, target, dtype=None):
    with h5py.File(name, "w") as f:
        kw = dict(chunks=chunks, compression="gzip")
        if target == "x":
            d = f.create_dataset("train/images", data=x, dtype=dtype, **kw)
            f.create_dataset("train/labels", data=Y)
        else:
            f.create_dataset("train/images", data=x)
            d = f.create_dataset("train/labels", data=Y, **kw)
        d.id.write_direct_chunk((0,) * len(chunks), BOMB)


bomb_file("bomb_labels.h5", X, (N,), "y")
all_three("bomb_labels", 3, "'/train/labels' in 'bomb_labels.h5' (damaged?): a chunk of ")
bomb_file("bomb_inputs_be.h5", X, (N, F), "x", dtype=">f4")  # big-endian: H5Dread
all_three("bomb_inputs_be", 3, "'/train/images' in 'bomb_inputs_be.h5' (damaged?): a chunk of ",
          "--set", "data.check_finite=true", info_rc=0, info_text="-")
case("bomb_inputs_be_stream", "train", 3, "inflates to more than its 8192 bytes",
     "bomb_inputs_be.h5", "--set", "data.cache=stream")
# A chunk that inflates to less than its size ("lies about its size").
with h5py.File("short_labels.h5", "w") as f:
    f.create_dataset("train/images", data=X)
    d = f.create_dataset("train/labels", data=Y, chunks=(64,), compression="gzip")
    d.id.write_direct_chunk((64,), zlib.compress(bytes(100)))
all_three("short_labels", 3, "inflates to 100 bytes, not its 512")
with h5py.File("short_inputs.h5", "w") as f:
    d = f.create_dataset("train/images", data=X, chunks=(64, F), compression="gzip")
    d.id.write_direct_chunk((64, 0), zlib.compress(bytes(100)))
    f.create_dataset("train/labels", data=Y)
case("short_inputs", "train", 3, "of '/train/images' in 'short_inputs.h5'", "short_inputs.h5")
# Chunks far larger than the dataset: one 256 MiB chunk for 8 KiB of data.
with h5py.File("huge_chunk.h5", "w") as f:
    d = f.create_dataset("train/images", shape=(N, F), maxshape=(None, F), dtype="f4",
                         chunks=(8 << 20, F), compression="gzip")
    d.id.write_direct_chunk((0, 0), zeros_stream(256 << 20, 1))
    f.create_dataset("train/labels", data=Y)
all_three("huge_chunk", 3, "'/train/images' in 'huge_chunk.h5' has chunks of 268435456 bytes",
          info_rc=0, info_text="-")

# ---- 5: memory follows the declared count, not the data -------------------
BIG = 10**8
with h5py.File("declared_1e8.h5", "w") as f:  # never written: 2.7 KB
    f.create_dataset("train/images", shape=(BIG, F), dtype="f4")
    f.create_dataset("train/labels", shape=(BIG,), dtype="i8")
all_three("declared_1e8", 3, "'/train/images' in 'declared_1e8.h5' declares 3200000000 bytes but "
          "stores fewer", info_text="'/train/labels' in 'declared_1e8.h5' declares 800000000 bytes")
with h5py.File("declared_chunks.h5", "w") as f:  # one chunk of 100 written
    x = f.create_dataset("train/images", shape=(BIG, F), dtype="u1", chunks=(10**6, F),
                         compression="gzip")
    x[:10**6] = 1
    y = f.create_dataset("train/labels", shape=(BIG,), dtype="i8", chunks=(10**6,),
                         compression="gzip")
    y[:10**6] = 1
all_three("declared_chunks", 3, "'/train/images' in 'declared_chunks.h5' stores 1 of its 100 chunks",
          info_text="'/train/labels' in 'declared_chunks.h5' stores 1 of its 100 chunks")
with h5py.File("beyond_ratio.h5", "w") as f:  # every chunk there, each 16 bytes
    x = f.create_dataset("train/images", shape=(BIG, F), dtype="u1", chunks=(10**6, F),
                         compression="gzip")
    y = f.create_dataset("train/labels", shape=(BIG,), dtype="i8", chunks=(10**6,),
                         compression="gzip")
    tiny = zlib.compress(bytes(8))
    for c in range(100):
        x.id.write_direct_chunk((c * 10**6, 0), tiny)
        y.id.write_direct_chunk((c * 10**6,), tiny)
all_three("beyond_ratio", 3, "in 'beyond_ratio.h5' declares 800000000 bytes in chunks of",
          info_text="'/train/labels' in 'beyond_ratio.h5' declares 800000000 bytes in chunks of")
with h5py.File("huge_dims.h5", "w") as f:
    f.create_dataset("train/images", shape=(1 << 40, F), dtype="u1")
    f.create_dataset("train/labels", shape=(1 << 40,), dtype="u1")
all_three("huge_dims", 3, "in 'huge_dims.h5' declares 8796093022208 bytes but stores fewer",
          info_text="'/train/labels' in 'huge_dims.h5' declares 1099511627776 bytes")

# ---- 8, 9: links, virtual datasets, external storage, special files ------
os.mkfifo("fifo.h5")
os.mkfifo("fifo.raw")
write("target.h5")
with h5py.File("elink_fifo.h5", "w") as f:
    f["train/images"] = h5py.ExternalLink("fifo.h5", "/train/images")
    f.create_dataset("train/labels", data=Y)
all_three("elink_fifo", 3, "cannot open '/train/images' in 'elink_fifo.h5': it goes through an "
          "external link to '/train/images' in 'fifo.h5', refused (data.allow_links is false)",
          info_rc=0, info_text="-")
case("elink_fifo_allowed", "check", 3, "its file 'fifo.h5' is not a regular file",
     "elink_fifo.h5", "--set", "data.allow_links=true")
with h5py.File("elink_ok.h5", "w") as f:
    f["train/images"] = h5py.ExternalLink("target.h5", "/train/images")
    f.create_dataset("train/labels", data=Y)
case("elink_refused", "check", 3, "external link to '/train/images' in 'target.h5', refused",
     "elink_ok.h5")
case("elink_allowed", "train", 0, "-", "elink_ok.h5", "--set", "data.allow_links=true")
os.makedirs("sub", exist_ok=True)
write("sub/inner.h5")
with h5py.File("elink_outside.h5", "w") as f:
    f["train/images"] = h5py.ExternalLink("sub/inner.h5", "/train/images")
    f.create_dataset("train/labels", data=Y)
case("elink_outside", "check", 3, "refers to 'sub/inner.h5', outside the data file's directory",
     "elink_outside.h5", "--set", "data.allow_links=true")


def vds(name, src):
    layout = h5py.VirtualLayout(shape=(N, F), dtype="f4")
    layout[:] = h5py.VirtualSource(src, "train/images", shape=(N, F))
    with h5py.File(name, "w") as f:
        f.create_virtual_dataset("train/images", layout, fillvalue=0)
        f.create_dataset("train/labels", data=Y)


vds("vds_missing.h5", "missing_source.h5")
case("vds_missing", "train", 3, "dataset '/train/images' in 'vds_missing.h5' is a virtual dataset",
     "vds_missing.h5")
case("vds_missing_allowed", "train", 3, "its file 'missing_source.h5': No such file or directory",
     "vds_missing.h5", "--set", "data.allow_links=true")
vds("vds_ok.h5", "target.h5")
case("vds_allowed", "check", 0, "-", "vds_ok.h5", "--set", "data.allow_links=true")
with h5py.File("external_fifo.h5", "w") as f:
    f.create_dataset("train/images", shape=(N, F), dtype="f4", external=[("fifo.raw", 0, N * F * 4)])
    f.create_dataset("train/labels", data=Y)
all_three("external_fifo", 3, "'/train/images' in 'external_fifo.h5' keeps its data in external raw "
          "files, refused", info_rc=0, info_text="-")
case("external_fifo_allowed", "check", 3, "is refused: its file 'fifo.raw' is not a regular file",
     "external_fifo.h5", "--set", "data.allow_links=true")
os.symlink("loop_b.h5", "loop_a.h5")
os.symlink("loop_a.h5", "loop_b.h5")
os.symlink("nowhere.h5", "dangling.h5")
os.makedirs("a_directory.h5", exist_ok=True)
open("empty.h5", "wb").close()
with open("text.h5", "w") as f:
    f.write("label,a\n1,2\n")
all_three("fifo", 3, "'fifo.h5' is a FIFO (named pipe), not an HDF5 file")
# (check skips the data checks when data.path does not exist yet.)
for name, text in [("loop_a", "cannot open 'loop_a.h5': Too many levels of symbolic links"),
                   ("dangling", "cannot open 'dangling.h5': No such file or directory")]:
    case(name, "info", 3, text, name + ".h5")
    case(name, "train", 3, text, name + ".h5")
all_three("a_directory", 3, "'a_directory.h5' is a directory, not an HDF5 file")
case("char_device", "check", 3, "'/dev/null' is a character device, not an HDF5 file", "/dev/null")
case("empty", "info", 3, "'empty.h5' is not an HDF5 file (0 bytes", "empty.h5")
case("text", "check", 3, "'text.h5' is not an HDF5 file (12 bytes", "text.h5")
write("good_for_trunc.h5", xkw=dict(chunks=(64, F), compression="gzip"))
with open("good_for_trunc.h5", "rb") as f:
    head = f.read(4000)
with open("truncated.h5", "wb") as f:
    f.write(head)
all_three("truncated", 3, "cannot open 'truncated.h5' as HDF5 (truncated or damaged?)")

# ---- types and shapes -----------------------------------------------------
with h5py.File("rank0_labels.h5", "w") as f:
    f.create_dataset("train/images", data=X)
    f["train/labels"] = np.int64(3)
case("rank0_labels", "check", 3, "labels '/train/labels' in 'rank0_labels.h5' are a scalar",
     "rank0_labels.h5")
write("string_labels.h5", y=np.array([b"cat%d" % i for i in range(N)]))
case("string_labels", "check", 3, "'/train/labels' in 'string_labels.h5' has type string",
     "string_labels.h5")
write("compound_labels.h5", y=np.zeros(N, dtype=[("a", "<i4"), ("b", "<f4")]))
case("compound_labels", "train", 3, "'/train/labels' in 'compound_labels.h5' has type compound",
     "compound_labels.h5")
write("mismatch.h5", y=Y[:100])
case("mismatch", "train", 3, "'/train/images' has 256 samples but '/train/labels' has 100",
     "mismatch.h5")
write("empty_sample.h5", x=np.zeros((N, 0), np.float32))
case("empty_sample", "check", 3, "has shape (256, 0): an empty sample shape", "empty_sample.h5")
write("lzf_labels.h5", ykw=dict(chunks=(64,), compression="lzf"))
case("lzf_labels", "check", 3, "'/train/labels' in 'lzf_labels.h5' is compressed with HDF5 filter "
     "32000 (lzf)", "lzf_labels.h5")


# ---- 6, 9: prepare npy / idx / csv ----------------------------------------
def npy(name, header, data=b"", magic=b"\x93NUMPY", version=(1, 0)):
    h = header.encode("latin1")
    pre = magic + bytes(version)
    pre += struct.pack("<H", len(h)) if version[0] == 1 else struct.pack("<I", len(h))
    with open(name, "wb") as f:
        f.write(pre + h + data)


np.save("y10.npy", np.arange(10) % 3)
np.save("x10.npy", np.zeros((10, 2), np.float32))
np.save("zero_dim.npy", np.zeros((10, 0), np.float32))
D20 = bytes(80)
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (10, 2), }"
npy("bad_magic.npy", hdr, D20, magic=b"\x93NUMPZ")
npy("version_4.npy", hdr, D20, version=(4, 0))
npy("version_1_5.npy", hdr, D20, version=(1, 5))
with open("hlen_beyond.npy", "wb") as f:
    f.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + hdr.encode())
npy("unknown_key.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (10, 2), 'x': 1}", D20)
npy("smuggled.npy", "{'descr': '<f4', 'fortran_order': False, 'shpe': (1,), "
    "'note': \"'shape': (10, 2)\"}", D20)
npy("expression.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (5*2, 2), }", D20)
npy("int_shape.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (20), }", D20)
npy("bool_order.npy", "{'descr': '<f4', 'fortran_order': 0, 'shape': (10, 2), }", D20)
npy("trailing.npy", hdr + " __import__('os')", D20)
npy("no_shape.npy", "{'descr': '<f4', 'fortran_order': False}", D20)
ok_out = ("prepare", "npy", "--x", "x10.npy", "--y", "y10.npy", "out.h5")
case("npy_good", "prepare", 0, "-", *ok_out)
for name, text in [
    ("zero_dim", "'zero_dim.npy' has a zero-size dimension 1"),
    ("bad_magic", "'bad_magic.npy' is not a .npy file (no \\x93NUMPY magic)"),
    ("version_4", "'version_4.npy' has .npy format version 4;"),
    ("version_1_5", "'version_1_5.npy' has .npy format version 1.5"),
    ("hlen_beyond", "its .npy header of 4294967280 bytes ends past the file"),
    ("unknown_key", "a key other than 'descr', 'fortran_order', 'shape'"),
    ("smuggled", "a key other than 'descr', 'fortran_order', 'shape'"),
    ("expression", "'shape' is not a tuple of non-negative integers"),
    ("int_shape", "'shape' is not a tuple of non-negative integers"),
    ("bool_order", "'fortran_order' is not True or False"),
    ("trailing", "the header has text after its dict"),
    ("no_shape", "lacks 'descr', 'fortran_order' or 'shape'"),
]:
    case("npy_" + name, "prepare", 3, text, "prepare", "npy", "--x", name + ".npy", "--y",
         "y10.npy", "out.h5")


def idx(name, magic, dims, payload=b""):
    with open(name, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)


idx("wrap_images.idx", 0x803, (1 << 22, 1 << 21, 1 << 21))  # product 2^64: wraps to 0
idx("wrap_labels.idx", 0x801, (1 << 22,), bytes(1 << 22))
case("idx_wrap", "prepare", 3, "'wrap_images.idx': the header claims an impossibly large payload",
     "prepare", "idx", "--images", "wrap_images.idx", "--labels", "wrap_labels.idx", "out.h5")
case("idx_fifo", "prepare", 3, "'fifo.raw' is a FIFO (named pipe), not an idx file",
     "prepare", "idx", "--images", "fifo.raw", "--labels", "wrap_labels.idx", "out.h5")

case("prepare_into_fifo", "prepare", 3, "'fifo.h5' exists and is not a regular file; not writing",
     "prepare", "npy", "--x", "x10.npy", "--y", "y10.npy", "fifo.h5")
with open("bom.csv", "w", encoding="utf-8-sig") as f:
    f.write("label,a,b\n" + "".join("%d,%d,%d\n" % (i % 3, i, 2 * i) for i in range(20)))
case("csv_bom", "prepare", 0, "-", "prepare", "csv", "bom.csv", "out.h5", "--label", "label")
with open("u64.csv", "w") as f:
    f.write("label,a\n1,2\n18446744073709551615,3\n")
case("csv_uint64", "prepare", 3, "u64.csv:3: label 18446744073709551615 in column 'label' is an "
     "integer outside the int64 range", "prepare", "csv", "u64.csv", "out.h5", "--label", "label")
# One row of 6M columns: reserving 1024 rows up front wanted 24 GB. The
# parse needs the text (12 MB), two field pointers per column (96 MB) and
# the row (24 MB): its bound is 400 MiB.
W = 6 * 10**6
with open("wide.csv", "w") as f:
    f.write("label" + ",a" * W + "\n1" + ",0" * W + "\n")
case("csv_wide@400", "prepare", 0, "-", "prepare", "csv", "wide.csv", "out.h5", "--label", "label")

# ---- token sets (data.tokens, issue 20): every refusal is exit 3 ----------
TOK = ["--set", "data.tokens=true", "--set", "data.seq_len=16", "--set",
       "data.train_x=/train/tokens", "--set", "data.test_x="]


def tokens(name, data, dtype, vocab=None, **kw):
    with h5py.File(name, "w") as f:
        d = f.create_dataset("train/tokens", data=np.asarray(data), dtype=dtype, **kw)
        if vocab is not None:
            d.attrs["vocab_size"] = vocab


def check_train(name, rc, text, *sets):
    case(name, "check", rc, text, name + ".h5", *sets)
    case(name, "train", rc, text, name + ".h5", *sets)


IDS = np.arange(4000) % 4  # ids the 4-class model of cfg.yaml can take
tokens("tok_good.h5", IDS, "u2", vocab=4, chunks=(1000,), compression="gzip")
case("tok_good", "check", 0, "-", "tok_good.h5", *TOK)
tokens("tok_float.h5", IDS, "f4")
check_train("tok_float", 3, "token dataset '/train/tokens' in 'tok_float.h5' has type float32; "
            "token ids must be integers", *TOK)
tokens("tok_over_vocab.h5", np.r_[IDS, 4], "u2", vocab=4)
check_train("tok_over_vocab", 3, "token id 4 at token 4000 of '/train/tokens' in "
            "'tok_over_vocab.h5' is outside the vocabulary [0, 4)", *TOK)
tokens("tok_over_model.h5", np.r_[IDS, 9], "u1")
check_train("tok_over_model", 3, "token id 9 at token 4000 of '/train/tokens' in "
            "'tok_over_model.h5' is outside the model's vocabulary [0, 4)", *TOK)
tokens("tok_negative.h5", np.r_[IDS[:100], -3, IDS[:100]], "i4")
check_train("tok_negative", 3, "token id -3 at token 100 of '/train/tokens' in "
            "'tok_negative.h5' is negative", *TOK)
tokens("tok_negative_seq.h5", np.r_[IDS[:99], -1].reshape(5, 20), "i1")
check_train("tok_negative_seq", 3, "token id -1 at sequence 4, token 19 of '/train/tokens'", *TOK)
tokens("tok_short.h5", IDS[:16], "u1")
check_train("tok_short", 3, "'/train/tokens' in 'tok_short.h5' has a stream of 16 tokens, shorter "
            "than one window of data.seq_len + 1 = 17 tokens", *TOK)
tokens("tok_short_seq.h5", IDS[:160].reshape(10, 16), "u1")
check_train("tok_short_seq", 3, "has sequences of 16 tokens, shorter than one window", *TOK)
tokens("tok_few_windows.h5", IDS[:100], "u1")
check_train("tok_few_windows", 3, "'/train/tokens' in 'tok_few_windows.h5' has 6 windows "
            "(data.seq_len, data.stride), fewer than one global batch", *TOK)
tokens("tok_3d.h5", IDS.reshape(10, 20, 20), "u1")
check_train("tok_3d", 3, "has shape (10, 20, 20); expected one stream (T,) or sequences (N, L)",
            *TOK)
tokens("tok_attr.h5", IDS, "u1")
with h5py.File("tok_attr.h5", "a") as f:
    f["train/tokens"].attrs["vocab_size"] = "four"
check_train("tok_attr", 3, "the vocab_size attribute of '/train/tokens' in 'tok_attr.h5' is not "
            "one integer", *TOK)
with h5py.File("tok_bomb.h5", "w") as f:  # 400 MiB of ids in a 400 KB file
    d = f.create_dataset("train/tokens", shape=(400 << 20,), dtype="u1", chunks=(400 << 20,),
                         compression="gzip")
    d.id.write_direct_chunk((0,), BOMB)
check_train("tok_bomb", 3, "holds 419430400 tokens (400.0 MiB), more than the memory "
            "budget of 100.0 MiB per rank", *TOK, "--set", "data.memory_mb=100")

print("\n".join(CASES))
