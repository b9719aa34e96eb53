#!/usr/bin/env python3
"""Checks the house style's structural limits on trainer/, data/ and comm/.

- no source file over MAX_FILE lines;
- no function over MAX_FUNC lines (a function starts at a line that begins
  in column 0 and ends with '{', and ends at the next '}' in column 0);
- no include cycle between files, and a header named *_internal.h is
  included only from its own folder;
- data/ and comm/ include neither each other's headers nor trainer's.

Prints each violation and exits 1 if there is one. Usage:
  scripts/lint/structure.py [ROOT]
"""
import os
import re
import sys

MAX_FILE = 800
MAX_FUNC = 120
MODULES = ("trainer", "data", "comm")


def sources(root):
    for mod in MODULES:
        for dirpath, _, files in os.walk(os.path.join(root, mod)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.join(dirpath, f)


def long_functions(lines):
    start = None
    for i, line in enumerate(lines):
        if start is None:
            if re.match(r"[A-Za-z_].*\)\s*\{\s*$", line) and not line.startswith(("typedef", "struct", "enum", "union")):
                start = i
        elif line.startswith("}"):
            if i - start + 1 > MAX_FUNC:
                yield start + 1, i - start + 1, lines[start].strip()
            start = None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    root = os.path.abspath(root)
    bad = []
    by_name = {}
    files = list(sources(root))
    for p in files:
        by_name.setdefault(os.path.basename(p), []).append(p)
    graph = {}
    for p in files:
        rel = os.path.relpath(p, root)
        with open(p, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) > MAX_FILE:
            bad.append(f"{rel}: {len(lines)} lines (limit {MAX_FILE})")
        for at, n, head in long_functions(lines):
            bad.append(f"{rel}:{at}: function of {n} lines (limit {MAX_FUNC}): {head}")
        mod = rel.split(os.sep)[0]
        deps = []
        for line in lines:
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            name = os.path.basename(m.group(1))
            targets = by_name.get(name, [])
            for t in targets:
                trel = os.path.relpath(t, root)
                tmod = trel.split(os.sep)[0]
                if name.endswith("_internal.h") and os.path.dirname(trel) != os.path.dirname(rel):
                    bad.append(f"{rel}: includes {trel}, another folder's internal header")
                if mod in ("data", "comm") and tmod != mod:
                    bad.append(f"{rel}: includes {trel} ({mod}/ may include only its own headers)")
                if t != p:
                    deps.append(t)
        graph[p] = deps
    # Include cycles (a header that needs a header that needs it back).
    state = {}

    def visit(p, stack):
        state[p] = 1
        stack.append(p)
        for q in graph.get(p, []):
            if state.get(q) == 1:
                cyc = stack[stack.index(q):] + [q]
                bad.append("include cycle: " + " -> ".join(os.path.relpath(c, root) for c in cyc))
            elif q in graph and not state.get(q):
                visit(q, stack)
        stack.pop()
        state[p] = 2

    for p in files:
        if not state.get(p):
            visit(p, [])
    for b in bad:
        print(b)
    print(f"structure: {len(files)} files checked, {len(bad)} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
