#!/usr/bin/env bash
# The command line: help, version, and usage errors with exit code 2.
source "$(dirname "$0")/lib.sh"

"$MIDSCALE" --version | grep -E -q '^midscale [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
"$MIDSCALE" --help | grep -q 'midscale train CONFIG' || fail "--help"
"$MIDSCALE" help train | grep -q -- '--resume' || fail "help train"
"$MIDSCALE" train --help | grep -q -- '--set' || fail "train --help"
"$MIDSCALE" help prepare | grep -q 'fashion-mnist' || fail "help prepare"

set +e
"$MIDSCALE" >/dev/null 2>err.txt; rc=$?
[ $rc -eq 2 ] || fail "no arguments: exit $rc"
"$MIDSCALE" frobnicate 2>err.txt; rc=$?
[ $rc -eq 2 ] && grep -q "unknown command 'frobnicate'" err.txt || fail "unknown command: exit $rc"
"$MIDSCALE" train 2>err.txt; rc=$?
[ $rc -eq 2 ] && grep -q 'needs a CONFIG' err.txt || fail "train without config: exit $rc"
"$MIDSCALE" train x.yaml --bogus 2>err.txt; rc=$?
[ $rc -eq 2 ] && grep -q "unknown option '--bogus'" err.txt || fail "unknown option: exit $rc"
"$MIDSCALE" prepare synthetic 2>err.txt; rc=$?
[ $rc -eq 2 ] || fail "prepare synthetic without output: exit $rc"
"$MIDSCALE" prepare fashion-mnist /nonexistent out.h5 2>err.txt; rc=$?
[ $rc -eq 3 ] && grep -q '/nonexistent' err.txt || fail "prepare from a missing dir: exit $rc"
set -e

# A run as a singleton (no mpiexec) works too.
synth data.h5 --train 512 --test 128 --features 16
smoke_config cfg.yaml data.h5 run
"$MIDSCALE" train cfg.yaml --set train.epochs=1 --set log.every_steps=4 >out.txt
grep -q 'world 1 (singleton)' out.txt || fail "singleton banner"
grep -q 'final test accuracy' out.txt || fail "singleton summary"
[ -s run/config.resolved.yaml ] || fail "config.resolved.yaml not written"
[ -s run/metrics.jsonl ] || fail "metrics.jsonl not written"
echo "cli: ok"
