#!/usr/bin/env bash
# midscale plot: two short runs overlaid. The SVG is read back: every
# logged training and evaluation point (loss, accuracy, learning rate),
# mapped through the data-to-picture mapping plot prints for each panel,
# lies on a polyline of the picture whose corners are all logged points
# (cairo merges collinear segments, so a flat stretch keeps only its ends).
# The PNG has the size asked for. Bad arguments exit 2 with one message.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 512 --test 128 --features 8
smoke_config cfg.yaml data.h5 unused
for lr in 0.01 0.1; do
  run_np 1 train cfg.yaml --set optim.lr=$lr --set log.every_steps=2 --set run.dir="$WORK/lr$lr"
  expect_ok
done

note "SVG: the plotted points are the logged values"
"$MIDSCALE" plot lr0.01 lr0.1 -o curves.svg --size 1000x700 >plot.out || fail "plot failed"
cat plot.out
"$PYTHON" - lr0.01 lr0.1 <<'PY' || fail "the SVG does not match the logs"
import json, re, sys
import xml.etree.ElementTree as ET

maps = {}
for line in open("plot.out"):
    m = re.match(r"panel (.+): steps \[(\S+), (\S+)\] -> x \[(\S+), (\S+)\]; "
                 r"values \[(\S+), (\S+)\] -> y \[(\S+), (\S+)\]", line)
    if m:
        maps[m.group(1)] = [float(v) for v in m.groups()[1:]]
assert set(maps) == {"loss", "accuracy", "learning rate"}, maps

def to_px(panel, step, v):
    s0, s1, x0, x1, v0, v1, y0, y1 = maps[panel]
    return (x0 + (step - s0) / (s1 - s0) * (x1 - x0), y0 + (v - v0) / (v1 - v0) * (y1 - y0))

# The curves: stroked paths of straight segments only, outside the glyphs.
root = ET.parse("curves.svg").getroot()
assert root.get("width") == "1000pt" and root.get("height") == "700pt", root.attrib
ns = "{http://www.w3.org/2000/svg}"
paths = []
for el in root.iter(ns + "path"):
    d, style = el.get("d", ""), el.get("style", "")
    if "stroke:none" in style or not re.fullmatch(r"[ML0-9.\s-]+", d):
        continue
    nums = [float(t) for t in re.findall(r"-?[0-9.]+", d)]
    paths.append(("dasharray" in style, list(zip(nums[0::2], nums[1::2]))))

def on_segment(p, a, b, tol):
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2 <= tol * tol

TOL = 0.02  # cairo keeps coordinates in 1/256 of a unit
def matches(points, verts):
    if len(verts) == 1:
        return all(abs(p[0] - verts[0][0]) <= TOL and abs(p[1] - verts[0][1]) <= TOL for p in points)
    corners_logged = all(any(abs(v[0] - p[0]) <= TOL and abs(v[1] - p[1]) <= TOL for p in points)
                         for v in verts)
    logged_on_line = all(any(on_segment(p, verts[i], verts[i + 1], TOL) for i in range(len(verts) - 1))
                         for p in points)
    return corners_logged and logged_on_line

checked = 0
for run in sys.argv[1:]:
    recs = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
    series = [("loss", False, [(r["step"], r["loss"]) for r in recs if r["kind"] == "train"]),
              ("accuracy", False, [(r["step"], r["acc"]) for r in recs if r["kind"] == "train"]),
              ("learning rate", False, [(r["step"], r["lr"]) for r in recs if r["kind"] == "train"]),
              ("loss", True, [(r["step"], r["loss"]) for r in recs if r["kind"] == "eval"]),
              ("accuracy", True, [(r["step"], r["acc"]) for r in recs if r["kind"] == "eval"])]
    for panel, dashed, pts in series:
        assert len(pts) >= 2, (run, panel, pts)
        px = [to_px(panel, s, v) for s, v in pts]
        hits = [v for d, v in paths if d == dashed and matches(px, v)]
        assert hits, f"{run} {panel} {'eval' if dashed else 'train'}: no curve through {px[:3]}..."
        checked += len(pts)
print(f"svg: {checked} logged points on their curves")
PY

note "PNG: the size asked for"
"$MIDSCALE" plot lr0.01 lr0.1 -o curves.png --size 900x600 >/dev/null || fail "plot png failed"
"$PYTHON" - <<'PY' || fail "the PNG"
import struct
b = open("curves.png", "rb").read(32)
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", b
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (900, 600), (w, h)
print(f"png: {w}x{h}")
PY
"$MIDSCALE" plot lr0.01 -o default.png >/dev/null || fail "plot with the default size failed"

note "bad arguments: exit 2, one message"
run1() {
  CALLS=$((CALLS + 1))
  LAST_OUT="$WORK/out.$CALLS.log"
  LAST_ERR="$WORK/err.$CALLS.log"
  set +e
  "$MIDSCALE" "$@" >"$LAST_OUT" 2>"$LAST_ERR"
  RC=$?
  set -e
}
run1 plot nowhere -o x.png
expect_error 2 "cannot read 'nowhere/metrics.jsonl'"
run1 plot lr0.01 -o x.jpg
expect_error 2 "-o takes a .png or .svg file"
run1 plot lr0.01
expect_error 2 "plot needs RUN_DIR... and -o"
run1 plot lr0.01 -o x.png --size 10x10
expect_error 2 "--size takes WxH"
mkdir -p empty && : >empty/metrics.jsonl
run1 plot empty -o x.png
expect_error 2 "holds no training records"
[ ! -e x.png ] || fail "a failed plot wrote x.png"

note "hostile logs: a directory, a FIFO, a huge line, a deep and a broken line"
mkdir -p dirlog/metrics.jsonl fifolog
mkfifo fifolog/metrics.jsonl
run1 plot dirlog -o x.png
expect_error 2 "not a regular file"
run1 plot fifolog -o x.png
expect_error 2 "not a regular file"
mkdir -p odd
{
  head -c 300000 /dev/zero | tr '\0' 'x'; echo
  "$PYTHON" -c 'print("[" * 100000 + "]" * 100000)'
  echo '{"kind":"train","step":'
  grep '"kind":"train"' lr0.1/metrics.jsonl
} >odd/metrics.jsonl
"$MIDSCALE" plot odd -o odd.svg >odd.out || fail "plot of a log with odd lines failed"
grep -q '^wrote odd.svg' odd.out || fail "odd.svg"
echo "plot: ok"
