#!/usr/bin/python3
"""Hostile checkpoints, made at test time from one good checkpoint.

    make_ckpt_cases.py GOOD.safetensors.zst OUTDIR

Writes OUTDIR/<case>.zst (or a FIFO or directory of that name) and
OUTDIR/cases.tsv, one line per case and tool:

    case <TAB> tool <TAB> exit code <TAB> text the one error line holds

tool is inspect, export (to safetensors), onnx (`export FILE X.onnx`) or
resume (`train --resume FILE`); text "-" means
exit 0 and no error line. Header edits keep the data section, so the data
hash still verifies and the file reaches the checks after it. Needs only the
standard library and the zstd command (the frames midscale reads are built
here byte by byte where zstd would not make them).
"""
import json
import os
import struct
import subprocess
import sys

GOOD, OUT = sys.argv[1], sys.argv[2]
os.makedirs(OUT, exist_ok=True)
plain = subprocess.run(["zstd", "-dcq", GOOD], check=True, capture_output=True).stdout
HLEN = struct.unpack("<Q", plain[:8])[0]
HEADER = json.loads(plain[8:8 + HLEN])
DATA = plain[8 + HLEN:]
rows = []


def expect(name, tool, code, text):
    rows.append(f"{name}\t{tool}\t{code}\t{text}")


def payload(hdr, data=DATA, pad=True):
    text = hdr if isinstance(hdr, bytes) else json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((-(8 + len(text))) % 8)
    return struct.pack("<Q", len(text)) + text + data


def zst(name, body):
    """body compressed by the zstd command: one frame, size and checksum."""
    tmp = os.path.join(OUT, name + ".plain")
    with open(tmp, "wb") as f:
        f.write(body)
    subprocess.run(["zstd", "-q", "-f", "--check", tmp, "-o", os.path.join(OUT, name + ".zst")],
                   check=True)
    os.unlink(tmp)


def raw_frame(body, declare=None, block_type=0):
    """A zstd frame of raw blocks, no checksum, declaring `declare` bytes."""
    n = len(body) if declare is None else declare
    out = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", n)  # single segment, 8-byte size
    at = 0
    while True:
        piece = body[at:at + (1 << 17)]
        at += len(piece)
        last = at >= len(body)
        out += struct.pack("<I", (len(piece) << 3) | (block_type << 1) | last)[:3] + piece
        if last:
            return out


def write(name, data):
    with open(os.path.join(OUT, name + ".zst"), "wb") as f:
        f.write(data)


def edited(**meta):
    h = json.loads(json.dumps(HEADER))
    h["__metadata__"].update(meta)
    return h


def tensors(h):
    return [k for k in h if k != "__metadata__"]


def everywhere(name, code, text):
    for tool in ("inspect", "export", "onnx", "resume"):
        expect(name, tool, code, text)


# ---- declared sizes (item 2) -------------------------------------------------
h = edited()
last = tensors(h)[-1]
b = h[last]["data_offsets"][0]
h[last]["shape"] = [1 << 28]
h[last]["data_offsets"] = [b, b + (4 << 28)]
zst("big_decl", payload(h))
everywhere("big_decl", 4, "the tensors cover")
h2 = json.loads(json.dumps(h))
h2[last]["shape"] = [12 << 30]  # 48 GiB: more than this machine can allocate
h2[last]["data_offsets"] = [b, b + (48 << 30)]
zst("huge_decl", payload(h2))
everywhere("huge_decl", 4, "the tensors cover")
# An extra 48 GiB shuffled tensor: skipping it used to allocate it (twice).
h3 = edited(byte_shuffle="4")
end = h3[last]["data_offsets"][1]
h3["zz_extra"] = {"dtype": "F32", "shape": [12 << 30], "data_offsets": [end, end + (48 << 30)]}
zst("huge_shuffled_extra", payload(h3))
everywhere("huge_shuffled_extra", 4, "the tensors cover")
h["__metadata__"]["byte_shuffle"] = "4"
zst("big_decl_shuffled", payload(h))
everywhere("big_decl_shuffled", 4, "the tensors cover")
# The frame agrees with the lie, so only the blocks can refuse it.
write("lying_frame", raw_frame(payload(h), declare=len(payload(h, data=b"")) + (4 << 28) +
                               b))
everywhere("lying_frame", 4, "but its blocks can hold at most")
write("lying_content_size", raw_frame(plain, declare=1 << 30))
expect("lying_content_size", "inspect", 4, "but its blocks can hold at most")
write("raw_frame_good", raw_frame(plain))  # a plain, checksum-less frame still reads
expect("raw_frame_good", "inspect", 0, "-")

# ---- the header (item 3 and more) ------------------------------------------------
h = edited()
h[tensors(h)[0]]["junk"] = [0] * 3000000  # ~6 MB of values: jansson ~50x
zst("json_amplification", payload(h))
expect("json_amplification", "inspect", 4, "JSON values for")
expect("json_amplification", "resume", 4, "JSON values for")
deep = b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"
zst("deep_json", payload(deep))
expect("deep_json", "inspect", 4, "nested deeper than 3 levels")
h = edited()
for i in range(5000):
    h[f"zero{i:05d}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
zst("too_many_tensors", payload(h))
expect("too_many_tensors", "inspect", 4, "tensor entries (at most 4096)")
text = json.dumps(HEADER, separators=(",", ":")).encode()
zst("header_9mib", payload(text + b" " * ((9 << 20) - len(text))))
expect("header_9mib", "inspect", 4, "invalid safetensors header length")
zst("huge_meta_string", payload(edited(junk="A" * (7 << 20))))
expect("huge_meta_string", "inspect", 0, "-")
zst("meta_not_string", payload(edited(step=8)))
expect("meta_not_string", "inspect", 4, "is not a string")

# ---- tensor entries ------------------------------------------------------------
def entry_case(name, fn, text, tools=("inspect",)):
    h = edited()
    fn(h)
    zst(name, payload(h))
    for t in tools:
        expect(name, t, 4, text)


def overlap(h):
    t = tensors(h)[1]
    h[t]["data_offsets"] = [x - 4 for x in h[t]["data_offsets"]]


def past_end(h):
    t = tensors(h)[-1]
    h[t]["shape"][-1] += 1
    h[t]["data_offsets"][1] += 4 * (h[t]["shape"][0] if len(h[t]["shape"]) > 1 else 1)


entry_case("overlap", overlap, "leave a gap or overlap")
entry_case("past_end", past_end, "the tensors cover", ("inspect", "export", "onnx"))
entry_case("dtype_f16", lambda h: h[tensors(h)[0]].update(dtype="F16"), "has dtype F16")
entry_case("five_dims", lambda h: h[tensors(h)[0]].update(shape=[1, 1, 1, 1, 1]),
           "dimensions (at most 4)")
entry_case("negative_shape", lambda h: h[tensors(h)[0]].update(shape=[-1]), "invalid shape")
entry_case("bad_offsets", lambda h: h[tensors(h)[0]].update(data_offsets=[8, 4]),
           "invalid data_offsets")
first = tensors(HEADER)[0]
dup = json.dumps(HEADER, separators=(",", ":")).encode()
dup = dup[:-1] + b',"' + first.encode() + b'":' + json.dumps(HEADER[first]).encode() + b"}"
zst("duplicate_name", payload(dup))
expect("duplicate_name", "inspect", 4, "duplicate")
bad = json.dumps(HEADER, separators=(",", ":")).encode().replace(first.encode(), b"\xff\xfe" + first.encode()[2:], 1)
zst("non_utf8_name", payload(bad))
expect("non_utf8_name", "inspect", 4, "not a JSON object")

# ---- names and text printed (item 10) --------------------------------------------
def renamed(new):
    h = {}
    for k, v in HEADER.items():
        h[new if k == first else k] = v
    return h


zst("escape_name", payload(renamed("\x1b[31mEVIL\x07\x9b2J")))
expect("escape_name", "inspect", 0, "-")
expect("escape_name", "resume", 4, "missing from the file")
expect("escape_name", "onnx", 4, "holds no tensor")
zst("newline_name", payload(renamed("x\nmidscale: error: forged")))
expect("newline_name", "inspect", 0, "-")
expect("newline_name", "resume", 4, "missing from the file")
expect("newline_name", "onnx", 4, "holds no tensor")
zst("escape_config", payload(edited(config=HEADER["__metadata__"]["config"] + "# \x1b]0;pwned\x07\n")))
expect("escape_config", "inspect", 0, "-")
expect("escape_config", "onnx", 4, "control characters are not allowed")

# ---- metadata that verifies but cannot be this run's (items 1 and 7) -------------------
zst("deep_config", payload(edited(config="run: " + "[" * 200000)))
expect("deep_config", "resume", 4, "nested at most 32 deep")
expect("deep_config", "onnx", 4, "nested at most 32 deep")
zst("big_config", payload(edited(config="#" * (1536 << 10))))
expect("big_config", "inspect", 4, "the saved config has")
# The loop's own state (early stopping) is at most 255 bytes.
zst("big_train_state", payload(edited(train_state="x" * 300)))
everywhere("big_train_state", 4, "metadata 'train_state' holds 300 bytes")
zst("cursor_step_in_epoch", payload(edited(step_in_epoch="9223372036854775806")))
expect("cursor_step_in_epoch", "resume", 4, "damaged cursor")
zst("cursor_epoch", payload(edited(epoch="5")))
expect("cursor_epoch", "resume", 4, "damaged cursor")
zst("world_size_7", payload(edited(world_size="7")))
expect("world_size_7", "resume", 4, "does not divide train.batch_size")
zst("layout_other_model", payload(edited(layout_hash="0123456789abcdef")))
expect("layout_other_model", "inspect", 0, "-")
expect("layout_other_model", "resume", 4, "made for another model")
# The tensors fit the saved config, which is all an export needs.
expect("layout_other_model", "onnx", 0, "-")

# ---- the data and the stream -----------------------------------------------------
flip = bytearray(DATA)
flip[len(flip) // 2] ^= 1
zst("data_bit", payload(HEADER, bytes(flip)))
everywhere("data_bit", 4, "data hash")
good = open(GOOD, "rb").read()
write("truncated_half", good[:len(good) // 2])
everywhere("truncated_half", 4, "truncated")
write("trailing_garbage", good + b"garbage")
expect("trailing_garbage", "inspect", 4, "after the zstd frame")
write("skippable_first", b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"abcd" + good)
expect("skippable_first", "inspect", 4, "skippable")
no_size = subprocess.run(["zstd", "-q", "--check", "-c"], input=plain, check=True,
                         capture_output=True).stdout
write("no_content_size", no_size)
expect("no_content_size", "inspect", 4, "does not declare its content size")
write("empty", b"")
expect("empty", "inspect", 4, "not a zstd file")
write("random", bytes((i * 7919 + 13) % 251 for i in range(4096)))
expect("random", "inspect", 4, "not a zstd file")
write("reserved_block", raw_frame(plain, block_type=3))
expect("reserved_block", "inspect", 4, "a bad block header")

# ---- not regular files (item 8) --------------------------------------------------
os.mkfifo(os.path.join(OUT, "fifo.zst"))
everywhere("fifo", 4, "not a regular file")
os.mkdir(os.path.join(OUT, "directory.zst"))
expect("directory", "inspect", 4, "not a regular file")

with open(os.path.join(OUT, "cases.tsv"), "w") as f:
    f.write("\n".join(rows) + "\n")
print(f"{len(set(r.split(chr(9))[0] for r in rows))} cases, {len(rows)} runs")
