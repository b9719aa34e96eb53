# Shared helpers for the end-to-end tests: each test script sources this.
# ctest sets MIDSCALE, MPIEXEC, PYTHON, MS_SOURCE_DIR and MS_TEST_TMP.
set -euo pipefail

: "${MIDSCALE:?run through ctest (MIDSCALE is the binary under test)}"
: "${MPIEXEC:=mpiexec}"
: "${PYTHON:=python3}"
: "${MS_SOURCE_DIR:?}"
: "${MS_TEST_TMP:=/tmp/midscale-tests}"

TEST_NAME=$(basename "$0" .sh)
WORK="$MS_TEST_TMP/$TEST_NAME"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
CHECKER="$MS_SOURCE_DIR/tests/tools/safetensors_check.py"

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }
# need_h5py: these tests write their files with h5py (Debian's python3-h5py,
# which scripts/setup.sh installs for /usr/bin/python3); without it they fail.
need_h5py() {
  /usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null ||
    fail "needs /usr/bin/python3 with h5py and numpy (apt-get install python3-h5py; scripts/setup.sh does)"
}

# run_np N ARGS...: midscale under mpiexec with N ranks, bounded in time so
# that a hang fails the test instead of blocking it. Sets RC; output goes to
# out.N.log / err.N.log (N = the call number) and LAST_OUT / LAST_ERR.
# MPIEXEC_FLAGS (word-split) go to mpiexec before -n, e.g. "--bind-to none".
CALLS=0
run_np() {
  local np=$1
  shift
  CALLS=$((CALLS + 1))
  LAST_OUT="$WORK/out.$CALLS.log"
  LAST_ERR="$WORK/err.$CALLS.log"
  set +e
  timeout --kill-after=10 "${RUN_TIMEOUT:-240}" \
    "$MPIEXEC" ${MPIEXEC_FLAGS:-} -n "$np" "$MIDSCALE" "$@" >"$LAST_OUT" 2>"$LAST_ERR"
  RC=$?
  set -e
  [ "$RC" -ne 124 ] && [ "$RC" -ne 137 ] || { cat "$LAST_OUT" "$LAST_ERR"; fail "timed out (a hang): $*"; }
}

# expect_ok: the last run exited 0.
expect_ok() {
  [ "$RC" -eq 0 ] || { tail -n 30 "$LAST_OUT" "$LAST_ERR"; fail "exit $RC, expected 0"; }
}

# expect_error CODE TEXT: the last run exited CODE and stderr holds exactly
# one "midscale: error:" line, which contains TEXT.
expect_error() {
  local code=$1 text=$2
  [ "$RC" -eq "$code" ] || { cat "$LAST_OUT" "$LAST_ERR"; fail "exit $RC, expected $code"; }
  local n
  n=$(grep -c '^midscale: error:' "$LAST_ERR" || true)
  [ "$n" -eq 1 ] || { cat "$LAST_ERR"; fail "expected one error message, found $n"; }
  grep -F -q -- "$text" "$LAST_ERR" || { cat "$LAST_ERR"; fail "error message lacks '$text'"; }
  note "exit $code: $(grep '^midscale: error:' "$LAST_ERR")"
}

# synth FILE [ARGS...]: a small generated dataset.
synth() {
  "$MIDSCALE" prepare synthetic "$@" >/dev/null
}

# smoke_config FILE DATA RUNDIR: a small MLP config on synthetic data.
smoke_config() {
  cat >"$1" <<YAML
run: {name: e2e, dir: $3, seed: 7}
data: {path: $2}
model:
  layers:
    - {type: dense, units: 48, activation: relu}
    - {type: dense, units: 32, activation: relu}
    - {type: dense, units: 10}
optim: {lr: 0.05, momentum: 0.9, weight_decay: 0.0001}
train: {epochs: 2, batch_size: 64, eval_batch_size: 500}
log: {every_steps: 1, progress: false}
YAML
}

# decompress CKPT OUT: zstd -d, the way a user would.
decompress() {
  zstd -q -d -f "$1" -o "$2"
}

# fashion_data OUT.h5: Fashion-MNIST from the Debian package
# dataset-fashion-mnist, converted with midscale prepare.
fashion_data() {
  local src=/usr/share/datasets/fashion-mnist
  [ -f "$src/train-images-idx3-ubyte.gz" ] ||
    fail "$src is missing: install the Debian package dataset-fashion-mnist (scripts/setup.sh does)"
  "$MIDSCALE" prepare fashion-mnist "$src" "$1" >/dev/null
}
