#!/usr/bin/env bash
# `midscale data-info` on a file written by h5py (nested groups, gzip +
# shuffle + fletcher32, h5py's own LZF filter that the C library cannot
# decode, strings, compounds), and its errors: exit 3 with one message.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
need_h5py

"$PY" - <<'PY'
import h5py, numpy as np
with h5py.File("mixed.h5", "w") as f:
    f.create_dataset("experiments/run1/x", data=np.arange(600, dtype=np.float32).reshape(60, 10),
                     chunks=(16, 10), compression="gzip", compression_opts=4, shuffle=True,
                     fletcher32=True)
    f.create_dataset("experiments/run1/labels", data=np.arange(60) % 3, dtype=np.int64)
    f.create_dataset("experiments/run1/lzf", data=np.zeros((60, 4), np.float32), chunks=(30, 4),
                     compression="lzf")
    f.create_dataset("names", data=np.array([b"ab", b"cd"]))
    f.create_dataset("pairs", data=np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))
    f.create_dataset("half", data=np.zeros((5, 2), np.float16))
PY

"$MIDSCALE" data-info mixed.h5 >info.out || { cat info.out; fail "data-info on mixed.h5"; }
cat info.out
expect_line() { grep -q -F -- "$1" info.out || fail "data-info output lacks: $1"; }
expect_line "mixed.h5: HDF5, "
expect_line ", 6 datasets"
expect_line "/experiments/run1/x"
expect_line "  shape    (60, 10): 60 samples"
expect_line "  layout   chunked (16, 10), 640 B per chunk"
expect_line "  filters  shuffle, gzip 4, fletcher32"
expect_line "[not available here: cannot be read]"
expect_line "  dtype    string (2 bytes)"
expect_line "  dtype    compound (2 fields)"
expect_line "  dtype    float16"
expect_line "label histogram of /experiments/run1/labels: 60 values, 3 distinct, min 0, max 2"

"$MIDSCALE" data-info mixed.h5 --histogram /names >/dev/null 2>err.log && fail "a string histogram passed"
grep -q "^midscale: error: --histogram: '/names' in 'mixed.h5' has type string" err.log || { cat err.log; fail "histogram message"; }

# expect_data_error TEXT ARGS...: exit 3 and one error line containing TEXT.
expect_data_error() {
  local text=$1
  shift
  set +e
  "$MIDSCALE" data-info "$@" >out.log 2>err.log
  local rc=$?
  set -e
  [ $rc -eq 3 ] || { cat out.log err.log; fail "data-info $*: exit $rc, expected 3"; }
  [ "$(grep -c '^midscale: error:' err.log)" -eq 1 ] || { cat err.log; fail "data-info $*: one error line"; }
  grep -q -F -- "$text" err.log || { cat err.log; fail "data-info $*: message lacks '$text'"; }
  note "exit 3: $(cat err.log)"
}
expect_data_error "cannot open 'nothing.h5': No such file or directory" nothing.h5
mkdir adir
expect_data_error "'adir' is a directory, not an HDF5 file" adir
echo "a,b" >text.csv
expect_data_error "'text.csv' is not an HDF5 file" text.csv
head -c 2000 mixed.h5 >cut.h5
expect_data_error "cannot open 'cut.h5' as HDF5 (truncated or damaged?)" cut.h5
expect_data_error "--histogram: dataset '/nope' not found in 'mixed.h5'" mixed.h5 --histogram /nope

set +e
"$MIDSCALE" data-info >/dev/null 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || fail "data-info without a file: exit $rc, expected 2"
"$MIDSCALE" help data-info | grep -q -- '--histogram' || fail "help data-info"
"$MIDSCALE" help | grep -q 'midscale data-info' || fail "data-info missing from midscale help"
echo "data_info: ok"
