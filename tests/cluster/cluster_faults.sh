#!/usr/bin/env bash
# Faults across emulated hosts (tests/cluster/cluster.sh), launched through
# scripts/mpirun.sh (the settings that end a faulty job fast), 3 hosts x 1
# rank, comm.timeout_s T:
# - a link taken down mid-training (the last host's): midscale's watchdog
#   message, naming the host and the step, comes first; exit 6; every rank
#   (on every host), the launcher and the daemons of the hosts still
#   connected are gone within T + 15 s. The daemon of the cut-off host
#   cannot be reached by anyone; it ends its ranks by itself and then
#   lingers in TCP retransmission (about 2 minutes here): reported, not
#   failed on.
# - a rank killed with SIGKILL: exit 137 (Open MPI's), everything gone
#   within T + 15 s.
# - SIGUSR1 to the launcher: a checkpoint across hosts, exit 75, and
#   --resume auto goes on from it to the end.
# Needs root and ip netns, else SKIPPED.
# The skip first: lib.sh already writes to the build tree.
source "$(dirname "$0")/cluster.sh"
cluster_need
source "$(dirname "$0")/../e2e/lib.sh"
cluster_up 3

T=5
BOUND=$((T + 15))
synth data.h5 --train 2048 --test 256 --features 784
MLP=$MS_SOURCE_DIR/configs/fashion_mnist_mlp.yaml
common=(--set data.path="$WORK/data.h5" --set data.scale=1 --set train.batch_size=96
  --set schedule.warmup_steps=10 --set log.every_steps=10 --set log.progress=false
  --set run.threads=1 --set comm.timeout_s=$T --set train.epochs=1000)

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

# start_run DIR MAXSTEPS: the MLP on 3 hosts x 1 rank in the background;
# returns once it trains (its first line in metrics.jsonl).
start_run() {
  cl_mpirun_bg 3x1 "$MIDSCALE" train "$MLP" "${common[@]}" --set run.dir="$1" --set train.max_steps="$2"
  local i
  for i in $(seq 1 600); do
    grep -q '"kind":"train"' "$1/metrics.jsonl" 2>/dev/null && return 0
    kill -0 "$CL_LAUNCHER" 2>/dev/null || break
    sleep 0.1
  done
  cat "$LAST_OUT" "$LAST_ERR"
  fail "$1: the run never trained"
}

# watch_end T0 CUTOFF: waits (bounded) until the launcher and every
# midscale/orted/mpirun process are gone, except a daemon (orted) on the
# host CUTOFF (may be empty). Sets RC (the launcher's exit code), T_LAUNCHER,
# T_RANKS, T_ALL (seconds after T0; empty if not reached within the bound).
watch_end() {
  local t0=$1 cutoff=$2 left
  T_LAUNCHER='' T_RANKS='' T_ALL=''
  while [ "$(echo "$(since "$t0") < $BOUND + 5" | bc)" -eq 1 ]; do
    left=$(cl_leftovers)
    [ -n "$T_LAUNCHER" ] || kill -0 "$CL_LAUNCHER" 2>/dev/null || T_LAUNCHER=$(since "$t0")
    [ -n "$T_RANKS" ] || [[ "$left" == *midscale* ]] || T_RANKS=$(since "$t0")
    if [ -n "$T_LAUNCHER" ] && [ -z "$(echo "$left" | grep -v "^$cutoff [0-9]* orted\$" | grep .)" ]; then
      T_ALL=$(since "$t0")
      break
    fi
    sleep 0.1
  done
  set +e
  timeout 30 tail --pid="$CL_LAUNCHER" -f /dev/null
  wait "$CL_LAUNCHER"
  RC=$?
  set -e
  note "launcher gone after ${T_LAUNCHER:-never} s, ranks after ${T_RANKS:-never} s, all (but a cut-off daemon) after ${T_ALL:-never} s; exit $RC"
  for t in "$T_LAUNCHER" "$T_RANKS" "$T_ALL"; do
    [ -n "$t" ] && [ "$(echo "$t <= $BOUND" | bc)" -eq 1 ] ||
      { cl_leftovers; tail -n 20 "$LAST_ERR"; fail "not all gone within comm.timeout_s + 15 = $BOUND s"; }
  done
}

note "link down: host ${CL_HOSTS[2]} cut off mid-training (comm.timeout_s $T)"
start_run linkdown 100000
t0=$(now)
ip -n "${CL_HOSTS[2]}" link set eth0 down
watch_end "$t0" "${CL_HOSTS[2]}"
[ "$RC" -eq 6 ] || { cat "$LAST_ERR"; fail "link down: exit $RC, expected 6 (the watchdog)"; }
first=$(grep -m1 -E '^midscale: error:|^-----|ORTE|mpirun' "$LAST_ERR" || true)
[[ "$first" == "midscale: error: hang: rank "* ]] ||
  { cat "$LAST_ERR"; fail "link down: midscale's message is not the first ($first)"; }
grep -E -q "^midscale: error: hang: rank [0-9]+ waited .* at step [0-9]+ .*runs on host mscl-[0-9]+-[0-9]+-h[0-9]" "$LAST_ERR" ||
  { cat "$LAST_ERR"; fail "link down: the message does not name the host and the step"; }
note "$first"
cut_daemon=$(cl_leftovers)
if [ -n "$cut_daemon" ]; then
  note "still there, on the cut-off host, unreachable by anyone: $(echo $cut_daemon) (it ended its ranks; TCP retransmission keeps it; removed with the cluster)"
  for p in $(echo "$cut_daemon" | awk '{print $2}'); do kill -9 "$p" 2>/dev/null || true; done
fi
ip -n "${CL_HOSTS[2]}" link set eth0 up

note "SIGKILL to the rank on ${CL_HOSTS[1]}"
start_run kill 100000
victim=$(cl_leftovers | awk -v h="${CL_HOSTS[1]}" '$1 == h && $3 == "midscale" {print $2}' | head -n 1)
[ -n "$victim" ] || fail "no rank found on ${CL_HOSTS[1]}"
t0=$(now)
kill -KILL "$victim"
watch_end "$t0" ""
[ "$RC" -eq 137 ] || { cat "$LAST_ERR"; fail "SIGKILL: exit $RC, expected 137"; }
grep -q "exited on signal 9" "$LAST_ERR" || { cat "$LAST_ERR"; fail "SIGKILL: no message naming the rank"; }

note "SIGUSR1 to the launcher: checkpoint across hosts, exit 75, then --resume auto"
start_run usr1 400
kill -USR1 "$CL_LAUNCHER"
set +e
timeout 60 tail --pid="$CL_LAUNCHER" -f /dev/null
wait "$CL_LAUNCHER"
RC=$?
set -e
[ "$RC" -eq 75 ] || { cat "$LAST_OUT" "$LAST_ERR"; fail "SIGUSR1: exit $RC, expected 75"; }
grep -q '^midscale: stopped: signal' "$LAST_ERR" || { cat "$LAST_ERR"; fail "SIGUSR1: no stop message"; }
ck=$(sed -n 's/.*; wrote \([^;]*\); continue.*/\1/p' "$LAST_ERR")
[ -f "$ck" ] || fail "SIGUSR1: the checkpoint named in the message ($ck) does not exist"
stop_step=$(basename "$ck" | sed 's/^step-0*\([0-9]*\)\..*/\1/')
[ "$stop_step" -lt 400 ] || fail "SIGUSR1: the run finished before the signal"
note "stopped at step $stop_step"
[ -z "$(cl_leftovers)" ] || { cl_leftovers; fail "SIGUSR1: processes left"; }
cl_mpirun 3x1 "$MIDSCALE" train "$MLP" "${common[@]}" --set run.dir=usr1 --set train.max_steps=400 --resume auto
[ "$RC" -eq 0 ] || { tail -n 30 "$LAST_OUT" "$LAST_ERR"; fail "resume: exit $RC"; }
grep -q "resumed from .* at step $stop_step (" "$LAST_OUT" || { cat "$LAST_OUT"; fail "not resumed at step $stop_step"; }
grep -q '"step":400,' usr1/metrics.jsonl || fail "the resumed run did not reach step 400"
[ -z "$(cl_leftovers)" ] || { cl_leftovers; fail "processes left after the resumed run"; }
echo "cluster_faults: ok"
