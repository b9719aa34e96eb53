#!/usr/bin/env python3
"""An independent safetensors reader, standard library only (no `safetensors`
package), so that midscale's writer is checked against the spec rather than
against itself.

  safetensors_check.py FILE.safetensors
      Validates FILE and prints a JSON summary:
      {"tensors": {name: {"dtype", "shape", "sum" (F32 only)}}, "metadata": {...}}
  safetensors_check.py --compare A B [--prefix P]
      Exit 0 when A and B hold the same tensor names (only those starting with
      P, if given) with identical dtype, shape and bytes; else print the first
      difference and exit 1.

Any violation of the format prints a message naming the file and exits 1.
The checkpoint files themselves are zstd-compressed; run `zstd -d` first.
"""
import argparse
import json
import struct
import sys

# Bytes per element of each safetensors dtype.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
# The reference implementation refuses headers above 100 MB.
MAX_HEADER = 100 * 1000 * 1000
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK_ELEMS = 1 << 18


class FormatError(Exception):
    pass


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise FormatError("duplicate key %r in the JSON header" % key)
        obj[key] = value
    return obj


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


class SafeTensors(object):
    """A validated safetensors file: header parsed, data left on disk."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            f.seek(0, 2)
            self.file_size = f.tell()
            f.seek(0)
            prefix = f.read(8)
            if prefix[:4] == ZSTD_MAGIC:
                raise FormatError("this is a zstd-compressed file; decompress it "
                                  "with `zstd -d` first")
            if len(prefix) < 8:
                raise FormatError("file of %d bytes is too short for the 8-byte header "
                                  "size" % self.file_size)
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER:
                raise FormatError("header size %d exceeds the %d-byte limit" % (n, MAX_HEADER))
            if 8 + n > self.file_size:
                raise FormatError("header size %d does not fit in the file (%d bytes)"
                                  % (n, self.file_size))
            raw = f.read(n)
        self.header_size = n
        self.data_start = 8 + n
        self.data_size = self.file_size - self.data_start
        self.metadata, self.tensors = self._parse_header(raw)

    def _parse_header(self, raw):
        if not raw.startswith(b"{"):
            raise FormatError("the JSON header does not start with '{'")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError("the header is not valid UTF-8 (%s)" % e)
        try:
            header = json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError as e:
            raise FormatError("the header is not valid JSON (%s)" % e)
        if not isinstance(header, dict):
            raise FormatError("the header is not a JSON object")

        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict):
            raise FormatError("__metadata__ is not a map")
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise FormatError("__metadata__[%r] is %s, not a string"
                                  % (key, type(value).__name__))

        tensors = {}
        for name, info in header.items():
            tensors[name] = self._parse_tensor(name, info)

        spans = sorted((t["begin"], t["end"], name) for name, t in tensors.items())
        pos = 0
        for begin, end, name in spans:
            if begin != pos:
                what = "overlaps the previous tensor" if begin < pos else "leaves a gap"
                raise FormatError("tensor %r data_offsets [%d, %d] %s (expected to start at %d)"
                                  % (name, begin, end, what, pos))
            pos = end
        if pos != self.data_size:
            raise FormatError("the tensors cover %d bytes but the data section has %d"
                              % (pos, self.data_size))
        return metadata, tensors

    def _parse_tensor(self, name, info):
        if not isinstance(info, dict):
            raise FormatError("tensor %r: entry is not a JSON object" % name)
        for key in ("dtype", "shape", "data_offsets"):
            if key not in info:
                raise FormatError("tensor %r has no %r" % (name, key))
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise FormatError("tensor %r has unknown dtype %r" % (name, dtype))
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise FormatError("tensor %r has invalid shape %r" % (name, shape))
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) for o in offsets)):
            raise FormatError("tensor %r has invalid data_offsets %r" % (name, offsets))
        begin, end = offsets
        if begin < 0 or end < begin:
            raise FormatError("tensor %r has data_offsets [%d, %d] out of order"
                              % (name, begin, end))
        if end > self.data_size:
            raise FormatError("tensor %r data_offsets [%d, %d] run past the data section "
                              "(%d bytes)" % (name, begin, end, self.data_size))
        count = 1
        for d in shape:
            count *= d
        if end - begin != count * DTYPE_SIZES[dtype]:
            raise FormatError("tensor %r holds %d bytes but shape %r of %s needs %d"
                              % (name, end - begin, shape, dtype, count * DTYPE_SIZES[dtype]))
        return {"dtype": dtype, "shape": shape, "begin": begin, "end": end, "count": count}

    def read(self, name):
        t = self.tensors[name]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + t["begin"])
            data = f.read(t["end"] - t["begin"])
        if len(data) != t["end"] - t["begin"]:
            raise FormatError("tensor %r: short read" % name)
        return data

    def f32_sum(self, name):
        data = self.read(name)
        total = 0.0
        step = 4 * CHUNK_ELEMS
        for i in range(0, len(data), step):
            chunk = data[i:i + step]
            total += sum(struct.unpack("<%df" % (len(chunk) // 4), chunk))
        return total


def _json_float(x):
    # JSON has no NaN or infinity; name them instead of emitting invalid JSON.
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return x


def summarize(st):
    tensors = {}
    for name in sorted(st.tensors, key=lambda k: st.tensors[k]["begin"]):
        t = st.tensors[name]
        entry = {"dtype": t["dtype"], "shape": t["shape"]}
        if t["dtype"] == "F32":
            entry["sum"] = _json_float(st.f32_sum(name))
        tensors[name] = entry
    return {"tensors": tensors, "metadata": st.metadata}


def compare(a, b, prefix):
    def names(st):
        return set(n for n in st.tensors if n.startswith(prefix))

    na, nb = names(a), names(b)
    if na != nb:
        only_a, only_b = sorted(na - nb), sorted(nb - na)
        if only_a:
            return "tensor %r is in %s but not in %s" % (only_a[0], a.path, b.path)
        return "tensor %r is in %s but not in %s" % (only_b[0], b.path, a.path)
    for name in sorted(na):
        ta, tb = a.tensors[name], b.tensors[name]
        if ta["dtype"] != tb["dtype"] or ta["shape"] != tb["shape"]:
            return "tensor %r is %s %r in %s but %s %r in %s" % (
                name, ta["dtype"], ta["shape"], a.path, tb["dtype"], tb["shape"], b.path)
        da, db = a.read(name), b.read(name)
        if da != db:
            i = next(k for k in range(len(da)) if da[k] != db[k])
            size = DTYPE_SIZES[ta["dtype"]]
            elem = i // size
            msg = "tensor %r differs at byte %d (element %d)" % (name, i, elem)
            if ta["dtype"] == "F32":
                (va,) = struct.unpack_from("<f", da, elem * 4)
                (vb,) = struct.unpack_from("<f", db, elem * 4)
                msg += ": %r in %s, %r in %s" % (va, a.path, vb, b.path)
            return msg
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description="Validate or compare safetensors files "
                                "(standard library only).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--compare", action="store_true",
                   help="compare the tensors of two files byte for byte")
    p.add_argument("--prefix", default="",
                   help="with --compare, only tensors whose names start with this")
    args = p.parse_args(argv)
    if args.compare and len(args.files) != 2:
        p.error("--compare takes exactly two files")
    if not args.compare and len(args.files) != 1:
        p.error("give one file to check, or --compare A B")
    if args.prefix and not args.compare:
        p.error("--prefix needs --compare")

    loaded = []
    for path in args.files:
        try:
            loaded.append(SafeTensors(path))
        except FormatError as e:
            sys.stderr.write("%s: invalid safetensors: %s\n" % (path, e))
            return 1
        except (IOError, OSError) as e:
            sys.stderr.write("%s: cannot read: %s\n" % (path, e))
            return 1

    if args.compare:
        diff = compare(loaded[0], loaded[1], args.prefix)
        if diff:
            print(diff)
            return 1
        return 0
    json.dump(summarize(loaded[0]), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
