#!/usr/bin/env bash
# Start-up consistency: ranks launched with different configs (MPMD syntax,
# `mpiexec -n 1 midscale train a.yaml : -n 1 midscale train b.yaml`), with
# different --set overrides, or with different builds of the program stop
# at start-up with exit 2 and one message naming the rank and the key.
source "$(dirname "$0")/lib.sh"

# run_mpmd ARGS...: like run_np, for an MPMD command line (ARGS after mpiexec).
run_mpmd() {
  CALLS=$((CALLS + 1))
  LAST_OUT="$WORK/out.$CALLS.log"
  LAST_ERR="$WORK/err.$CALLS.log"
  set +e
  timeout --kill-after=10 "${RUN_TIMEOUT:-240}" "$MPIEXEC" "$@" >"$LAST_OUT" 2>"$LAST_ERR"
  RC=$?
  set -e
  [ "$RC" -ne 124 ] && [ "$RC" -ne 137 ] || { cat "$LAST_OUT" "$LAST_ERR"; fail "timed out (a hang): $*"; }
}

synth data.h5 --train 1024 --test 256 --features 16
smoke_config a.yaml data.h5 run
sed 's/lr: 0.05/lr: 0.2/' a.yaml >b.yaml

run_mpmd -n 1 "$MIDSCALE" train a.yaml : -n 1 "$MIDSCALE" train b.yaml
expect_error 2 "ranks were given different configs: rank 1 differs from rank 0 in 1 key (rank 0's value → rank 1's): optim.lr 0.05 → 0.2"

# A key that decides a collective before the configs are compared (the
# streamed set's shared chunk cache): still the message, not a hang.
run_mpmd -n 1 "$MIDSCALE" train a.yaml --set data.cache=stream --set comm.shared_memory=false \
  : -n 1 "$MIDSCALE" train a.yaml --set data.cache=stream
expect_error 2 "comm.shared_memory false → true"

# Overrides given to one rank only; three ranks, the last one differs.
run_mpmd -n 2 "$MIDSCALE" train a.yaml --set train.batch_size=96 \
  : -n 1 "$MIDSCALE" train a.yaml --set train.batch_size=96 --set model.layers[1].units=30
expect_error 2 "rank 2 differs from rank 0 in 1 key"
grep -q "model.layers\[1\].units 32 → 30" "$LAST_ERR" ||
  { cat "$LAST_ERR"; fail "the layer key that differs is not named"; }

# Another build: the same program with one byte appended still runs.
cp "$MIDSCALE" ./midscale-other
echo >>./midscale-other
run_mpmd -n 1 "$MIDSCALE" train a.yaml : -n 1 ./midscale-other train a.yaml
expect_error 2 "ranks run different programs: rank 1 runs midscale"

# The same config on every rank, once as MPMD: trains.
run_mpmd -n 1 "$MIDSCALE" train a.yaml --set train.max_steps=3 \
  : -n 1 "$MIDSCALE" train a.yaml --set train.max_steps=3
expect_ok
echo "consistency: ok"
