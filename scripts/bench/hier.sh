#!/usr/bin/env bash
# Inter-host bytes of the gradient sync, flat vs hierarchical (issue 15), on
# hosts emulated with network namespaces (/work/shared/notes/emulated-cluster.md):
# two hosts hq-h0, hq-h1 on a bridge in hq-sw (10.77.0.0/24, only inside the
# namespaces), each with its own UTS namespace so MPI sees two nodes; Open
# MPI starts the remote ranks through a tiny rsh agent. Runs
# scripts/bench/bench_hier.c with HOSTS x RANKS ranks (default 2 x 2,
# consecutive; MAP=node for round robin) and appends its JSON lines to
# scripts/bench/results/hier.jsonl. Root only; removes every namespace it
# made, also on failure. Bytes are the point: on 2 cores the seconds are not
# a speed measurement.
#   scripts/bench/hier.sh [FLOATS] [REPS]     (defaults 4000000, 5)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
build
FLOATS=${1:-4000000}
REPS=${2:-5}
RANKS=${RANKS:-2}
MAP=${MAP:-ppr:$RANKS:node}
BIN="$BUILD_DIR/bench_hier"
OUT="$ROOT/scripts/bench/results/hier.jsonl"
WORK=$(mktemp -d /tmp/midscale-bench-hier.XXXXXX)
NS=(hq-sw hq-h0 hq-h1)
cleanup() {
  for ns in "${NS[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
for ns in "${NS[@]}"; do ip netns add "$ns"; done
ip -n hq-sw link add br0 type bridge
ip -n hq-sw link set br0 up
for i in 0 1; do
  ip -n hq-sw link add "hq-p$i" type veth peer name eth0 netns "hq-h$i"
  ip -n hq-sw link set "hq-p$i" master br0 up
  ip -n "hq-h$i" addr add "10.77.0.$((i + 1))/24" dev eth0
  ip -n "hq-h$i" link set eth0 up
  ip -n "hq-h$i" link set lo up
  mkdir -p "/etc/netns/hq-h$i"
  printf '127.0.0.1 localhost\n10.77.0.1 hq-h0\n10.77.0.2 hq-h1\n' >"/etc/netns/hq-h$i/hosts"
done
# Open MPI calls the agent as `ssh [options] HOST COMMAND`.
cat >"$WORK/rsh" <<'AGENT'
#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
host=$1
shift
exec ip netns exec "$host" unshare --uts -- sh -c "hostname $host; exec sh -c \"\$0\"" "$*"
AGENT
chmod +x "$WORK/rsh"
mkdir -p "$WORK/tmp"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
ip netns exec hq-h0 unshare --uts -- sh -c "hostname hq-h0; exec env \
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 \
  mpirun --host hq-h0:$RANKS,hq-h1:$RANKS -np $((2 * RANKS)) --map-by $MAP --bind-to none \
  --mca ras ^slurm,gridengine --mca pml ob1 --mca btl tcp,self,vader \
  --mca btl_vader_single_copy_mechanism none \
  --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
  --mca orte_tmpdir_base $WORK/tmp --mca mpi_yield_when_idle 1 \
  --mca plm rsh --mca plm_rsh_agent $WORK/rsh $BIN $FLOATS $REPS eth0" | tee "$WORK/out"
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) (map $MAP)"
cat "$WORK/out" >>"$OUT"
