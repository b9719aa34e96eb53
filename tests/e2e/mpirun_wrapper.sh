#!/usr/bin/env bash
# scripts/mpirun.sh, on one node: the keepalive settings it derives from
# comm.timeout_s (an argument, the config, the environment, the default);
# arguments and exit codes passed through; and its follow-up on midscale's
# hang report: an mpirun that outlives the report by MIDSCALE_ABORT_GRACE
# seconds is ended and the wrapper exits 6. The faults themselves, across
# hosts, are in tests/cluster/cluster_faults.sh.
source "$(dirname "$0")/lib.sh"
WRAP="$MS_SOURCE_DIR/scripts/mpirun.sh"

# settings ARGS...: what the wrapper would run (MIDSCALE_MPIRUN=echo).
settings() { MIDSCALE_MPIRUN=echo "$WRAP" "$@" 2>&1; }
expect_settings() {
  local want=$1 got
  shift
  got=$(settings "$@")
  [[ "$got" == "--mca oob_tcp_keepalive_time 2 $want "* ]] || fail "for '$*': got '$got', expected '$want'"
}
expect_settings "--mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 8" \
  -n 2 midscale train c.yaml --set comm.timeout_s=5
expect_settings "--mca oob_tcp_keepalive_intvl 3 --mca oob_tcp_keepalive_probes 101" \
  -n 2 midscale train c.yaml
printf 'comm:\n  timeout_s: 60\n' >t60.yaml
expect_settings "--mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 63" \
  -n 2 midscale train t60.yaml
MIDSCALE_TIMEOUT_S=2.5 expect_settings "--mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 6" \
  -n 2 midscale train t60.yaml
# Every argument reaches mpirun unchanged, spaces included.
[ "$(settings -n 2 'a b' c | sed 's/.*probes [0-9]* //')" = "-n 2 a b c" ] || fail "arguments changed"

note "a short run through the wrapper, and a config error's exit code"
synth data.h5 --train 512 --test 128 --features 16
smoke_config cfg.yaml data.h5 run
set +e
timeout 120 "$WRAP" -n 2 "$MIDSCALE" train cfg.yaml --set train.epochs=1 >ok.out 2>ok.err
RC=$?
set -e
[ "$RC" -eq 0 ] || { cat ok.out ok.err; fail "exit $RC through the wrapper"; }
grep -q '^done:' ok.out || fail "no 'done:' line on stdout"
set +e
timeout 120 "$WRAP" -n 2 "$MIDSCALE" train cfg.yaml --set train.epochs=0 >bad.out 2>bad.err
RC=$?
set -e
[ "$RC" -eq 2 ] || { cat bad.err; fail "config error: exit $RC through the wrapper, expected 2"; }
grep -q '^midscale: error:' bad.err || fail "the error message did not come through stderr"

note "an mpirun that outlives midscale's hang report is ended; exit 6"
cat >fake_mpirun.sh <<'SH'
#!/bin/sh
echo "midscale: error: hang: rank 0 waited 5.0 s (test) at step 3; aborting the job (exit 6)" >&2
exec sleep 300
SH
chmod +x fake_mpirun.sh
t0=$(date +%s)
set +e
MIDSCALE_MPIRUN=$PWD/fake_mpirun.sh MIDSCALE_ABORT_GRACE=1 timeout 60 "$WRAP" -n 2 x 2>hang.err
RC=$?
set -e
took=$(($(date +%s) - t0))
[ "$RC" -eq 6 ] || { cat hang.err; fail "exit $RC, expected 6"; }
[ "$took" -le 10 ] || fail "took $took s to end (grace 1 s)"
grep -q "ending it" hang.err || { cat hang.err; fail "no note that the wrapper ended mpirun"; }
note "ended after $took s"
echo "mpirun_wrapper: ok"
