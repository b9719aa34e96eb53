#!/usr/bin/env bash
# SIGKILL at random moments — every process of the job, as a node failure
# would, including during checkpoint writes — never leaves a directory that
# --resume auto cannot continue from, and the run that finally completes ends
# with parameters bitwise equal to an uninterrupted run's.
source "$(dirname "$0")/lib.sh"
TRIALS=${KILL_TRIALS:-20}

synth data.h5 --train 4096 --test 256 --features 64
smoke_config cfg.yaml data.h5 run
# Checkpoints every 8 steps keep the writer busy, so kills land in writes too.
common=(--set train.epochs=80 --set log.every_steps=1000 --set model.layers[0].units=256
  --set checkpoint.every_steps=8 --set checkpoint.keep=2)

run_np 2 train cfg.yaml "${common[@]}" --set run.dir=ref
expect_ok
final=$(ls ref/checkpoints | tail -n 1)

RANDOM=12345 # reproducible kill times
killed=0 advanced=0 midwrite=0 newest=none
for trial in $(seq 1 "$TRIALS"); do
  "$MPIEXEC" -n 2 "$MIDSCALE" train cfg.yaml "${common[@]}" --set run.dir=chain --resume auto \
    >"out.kill$trial.log" 2>&1 &
  launcher=$!
  # Wait until this attempt has written a checkpoint of its own (so every
  # trial makes progress, however fast the machine), then a random 0-199 ms.
  for _ in $(seq 1 1500); do
    now=$(ls chain/checkpoints 2>/dev/null | grep '^step-' | tail -n 1 || true)
    [ -n "$now" ] && [ "$now" != "$newest" ] && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.02
  done
  sleep "0.$((RANDOM % 2))$((RANDOM % 10))$((RANDOM % 10))"
  # Ranks first, then the launcher: nobody gets to clean up.
  pkill -KILL -f "^$MIDSCALE train cfg.yaml .*run.dir=chain" || true
  kill -KILL "$launcher" 2>/dev/null || true
  wait "$launcher" 2>/dev/null || true
  killed=$((killed + 1))
  ls -a chain/checkpoints 2>/dev/null | grep -q '\.tmp\.' && midwrite=$((midwrite + 1))
  now=$(ls chain/checkpoints 2>/dev/null | grep '^step-' | tail -n 1 || true)
  [ -n "$now" ] && [ "$now" != "$newest" ] && advanced=$((advanced + 1))
  newest=${now:-none}
  if grep -q '^error\|midscale: error' "out.kill$trial.log"; then
    cat "out.kill$trial.log"
    fail "trial $trial: the run failed before it was killed"
  fi
done
note "$killed kills, $midwrite of them during a checkpoint write; the newest checkpoint advanced in $advanced of them (now $newest)"
ls -a chain/checkpoints | sed 's/^/    /'

run_np 2 train cfg.yaml "${common[@]}" --set run.dir=chain --resume auto
expect_ok
grep -q '^resumed from' "$LAST_OUT" || fail "the final run did not resume"
grep -q '^params: shared: ' "$LAST_OUT" || fail "the banner does not say the parameters are shared (comm.shared_params)"
[ "$advanced" -ge $((TRIALS / 2)) ] ||
  fail "the newest checkpoint advanced in only $advanced of $TRIALS runs: the kills came too early"
decompress "ref/checkpoints/$final" ref.safetensors
decompress "chain/checkpoints/$final" chain.safetensors
"$PYTHON" "$CHECKER" --compare ref.safetensors chain.safetensors || fail "parameters differ"
echo "kill: ok"
