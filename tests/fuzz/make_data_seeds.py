#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_npy, fuzz_csv and fuzz_chunk (seeds_npy/,
seeds_csv/, seeds_chunk/ next to this script): a few valid and a few broken
inputs each, every file small, in the input format the target's header
comment describes (a mode byte first). Rerun after changing a format;
libFuzzer's finds (found_*.bin) are added by hand and kept.
Usage: tests/fuzz/make_data_seeds.py"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "seeds_" + target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name + ".bin"), "wb") as f:
        f.write(data)


def npy(descr, shape, data, fortran=False, version=1, pad=True):
    shp = "(" + "".join("%d, " % s for s in shape)[:-2] + ("," if len(shape) == 1 else "") + ")"
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", shp)
    pre = 10 if version == 1 else 12
    if pad:
        d += " " * ((64 - (pre + len(d) + 1) % 64) % 64)
    d = (d + "\n").encode()
    n = struct.pack("<H", len(d)) if version == 1 else struct.pack("<I", len(d))
    return b"\x93NUMPY" + bytes([version, 0]) + n + d + data


# fuzz_npy: mode 0 = a header dict alone, mode 1 = a whole .npy file.
u8 = bytes(range(12))
f4 = struct.pack("<6f", *[0.5 * i for i in range(6)])
put("npy", "dict_plain", b"\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }")
put("npy", "dict_one_dim", b"\x00{'shape': (5,), 'descr': '|u1', 'fortran_order': True}")
put("npy", "dict_two_keys", b"\x00{'descr': '<f4', 'descr': '<f4', 'shape': (3,), }")
put("npy", "dict_int_shape", b"\x00{'descr': '<f4', 'fortran_order': False, 'shape': (5), }")
put("npy", "dict_structured", b"\x00{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }")
put("npy", "file_u1_c", b"\x01" + npy("|u1", (3, 4), u8))
put("npy", "file_f4_fortran", b"\x01" + npy("<f4", (2, 3), f4, fortran=True))
put("npy", "file_f4_be_v2", b"\x03" + npy(">f4", (3, 2), struct.pack(">6f", *range(6)), version=2))
put("npy", "file_i8_widened", b"\x01" + npy("<i8", (2, 1), struct.pack("<2q", -1, 7)))
put("npy", "file_f2", b"\x01" + npy("<f2", (2,), b"\x00\x3c\x00\xc0"))
put("npy", "file_truncated", b"\x01" + npy("<f4", (3, 4), f4))
put("npy", "file_trailing", b"\x01" + npy("|u1", (2,), b"\x01\x02\x03"))
put("npy", "file_zero_dim", b"\x01" + npy("|u1", (2, 0), b""))
put("npy", "file_bad_magic", b"\x01\x93NUMPX\x01\x00\x10\x00{}" + b" " * 14)
put("npy", "file_v9", b"\x01" + b"\x93NUMPY\x09\x00" + b"\x10\x00" + b" " * 16)
put("npy", "file_huge_shape", b"\x01" + npy("<f8", (1 << 40, 1 << 30), b""))

# fuzz_csv: mode bit 0 = label "y" (else "label"), bit 1 = a 0.25 test split.
put("csv", "int_labels", b"\x00a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
put("csv", "float_labels_split", b"\x02label,x\n0.5,1\n1.5,2\n2.5,3\n3.5,4\n")
put("csv", "quoted_crlf_bom", b"\x01\xef\xbb\xbf\"x\",\"y\"\r\n\"1.0\",2\r\n\r\n3,\"4\"\r\n")
put("csv", "no_label", b"\x00a,b\n1,2\n")
put("csv", "ragged", b"\x00a,label\n1,2,3\n")
put("csv", "unclosed_quote", b"\x00a,label\n\"1,2\n")
put("csv", "not_a_number", b"\x00a,label\n1e999,2\nx,1\n")
put("csv", "uint64_label", b"\x00a,label\n1,18446744073709551615\n")
put("csv", "header_only", b"\x00a,label\n")

# fuzz_chunk: mode bit 0 deflated, bit 1 shuffled (element size 2,3,4,8 from
# bits 2-3), bit 4 stored here from content; then the chunk size (LE16).
content = bytes((i * 7) % 251 for i in range(96))
n = struct.pack("<H", len(content))
put("chunk", "plain_stored_here", b"\x10" + n + content)
put("chunk", "deflate_shuffle4_here", bytes([0x10 | 1 | 2 | (2 << 2)]) + n + content)
put("chunk", "shuffle8_tail_here", bytes([0x10 | 2 | (3 << 2)]) + struct.pack("<H", 99) + content + b"xyz")
put("chunk", "deflate_raw", b"\x01" + n + zlib.compress(content, 1))
put("chunk", "deflate_shuffle2_raw", bytes([1 | 2]) + n + zlib.compress(content, 6))
put("chunk", "deflate_too_big", b"\x01" + struct.pack("<H", 64) + zlib.compress(content))
put("chunk", "deflate_too_small", b"\x01" + struct.pack("<H", 200) + zlib.compress(content))
put("chunk", "deflate_damaged", b"\x01" + n + zlib.compress(content)[:20] + b"\xff" * 8)
put("chunk", "plain_wrong_size", b"\x00" + struct.pack("<H", 10) + content[:9])
put("chunk", "bomb", b"\x01\xff\xff" + zlib.compress(bytes(1 << 20), 9))
