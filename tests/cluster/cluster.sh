# An emulated cluster for the tests: N hosts as network namespaces on this
# machine, joined by a Linux bridge in a "switch" namespace, Open MPI over
# TCP between them. Source it from a test script (bash), then:
#
#   cluster_need                 skip (exit $CLUSTER_SKIP) unless root with ip netns
#   cluster_up N [RATE]          hosts ${CL_HOSTS[0..N-1]}, links shaped to RATE (1gbit)
#   cl_mpirun SPEC ARGS...       scripts/mpirun.sh on host 0, SPEC = "2x2" (hosts x ranks
#                                per host) or "1x2"; bounded by CL_RUN_TIMEOUT; sets RC,
#                                LAST_OUT, LAST_ERR (like tests/e2e/lib.sh's run_np)
#   cl_mpirun_bg SPEC ARGS...    the same in the background; CL_LAUNCHER = its pid (mpirun)
#   cl_leftovers                 prints midscale/orted/prted processes left in the hosts
#   cluster_down                 kills what runs in the namespaces, deletes them (the
#                                EXIT trap does it too)
#
# Names: every namespace is "mscl-<pid of the test>-<random>-h<i>" (and
# "...-sw" for the switch), so parallel runs never collide; host names are
# the namespace names (the rsh agent gives each its own UTS namespace and
# hostname). Addresses: CL_NET (10.213.7.0/24 by default) exists only inside
# these namespaces; each namespace gets /etc/netns/<ns>/hosts. Nothing in
# the root namespace (interfaces, routes, firewall) is touched.
#
# Links: veth pairs, shaped with TBF (this kernel has no netem) with the
# device's gso_max_size capped to the bucket, or TBF drops GSO super-packets.
# Ranks: 1 BLAS thread each, mpi_yield_when_idle (emulated hosts share the
# real cores), no binding.

CLUSTER_SKIP=77
CL_NET=${CL_NET:-10.213.7}
CL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CL_ROOT=$(cd "$CL_DIR/../.." && pwd)
CL_AGENT="$CL_DIR/rsh_agent.sh"
CL_MPIRUN="$CL_ROOT/scripts/mpirun.sh"
CL_RUN_TIMEOUT=${CL_RUN_TIMEOUT:-240}
CL_HOSTS=()
CL_SWITCH=
CL_PREFIX=
CL_CALLS=0

cl_skip() {
  echo "SKIP: $*" >&2
  exit "$CLUSTER_SKIP"
}

# cluster_need: root, ip netns, unshare --uts and tc, or the test is skipped.
cluster_need() {
  [ "$(id -u)" -eq 0 ] || cl_skip "the emulated cluster needs root (network namespaces)"
  command -v ip >/dev/null || cl_skip "no 'ip' (install iproute2; scripts/setup.sh does)"
  command -v tc >/dev/null || cl_skip "no 'tc' (install iproute2; scripts/setup.sh does)"
  command -v unshare >/dev/null || cl_skip "no 'unshare' (util-linux)"
  local probe="mscl-$$-probe"
  ip netns add "$probe" 2>/dev/null || cl_skip "'ip netns add' fails here (no CAP_SYS_ADMIN or no netns)"
  ip netns exec "$probe" unshare --uts -- true 2>/dev/null ||
    { ip netns del "$probe"; cl_skip "'unshare --uts' fails inside a network namespace"; }
  ip netns del "$probe"
}

# Namespaces of runs whose test process is gone (killed by a ctest timeout,
# which sends SIGKILL and so skips the trap): only our prefix, by name.
cl_reap_stale() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^mscl-[0-9]*-'); do
    pid=${ns#mscl-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    cl_kill_ns "$ns"
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
}

# cl_kill_ns NS: SIGKILL every process in NS (those are ours: we made it).
cl_kill_ns() {
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
}

cluster_down() {
  local ns
  for ns in "${CL_HOSTS[@]}" $CL_SWITCH; do cl_kill_ns "$ns"; done
  for ns in "${CL_HOSTS[@]}" $CL_SWITCH; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  [ -z "${CL_TMP:-}" ] || rm -rf "$CL_TMP"
  CL_HOSTS=()
  CL_SWITCH=
}

# cluster_up N [RATE]: N hosts on one switch, each link shaped to RATE.
cluster_up() {
  local n=$1 rate=${2:-1gbit} i ns
  [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "cluster_up: 1..200 hosts" >&2; return 1; }
  cl_reap_stale
  CL_PREFIX="mscl-$$-$RANDOM"
  CL_SWITCH="$CL_PREFIX-sw"
  CL_TMP=$(mktemp -d /tmp/mscl-XXXXXX)
  trap 'cluster_down' EXIT
  trap 'cluster_down; exit 130' INT TERM
  ip netns add "$CL_SWITCH"
  ip -n "$CL_SWITCH" link add br0 type bridge
  ip -n "$CL_SWITCH" link set br0 up
  ip -n "$CL_SWITCH" link set lo up
  local hosts=""
  for ((i = 0; i < n; i++)); do
    ns="$CL_PREFIX-h$i"
    CL_HOSTS+=("$ns")
    hosts+="$CL_NET.$((i + 1)) $ns"$'\n'
  done
  for ((i = 0; i < n; i++)); do
    ns=${CL_HOSTS[$i]}
    ip netns add "$ns"
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n%s' "$hosts" >"/etc/netns/$ns/hosts"
    ip -n "$CL_SWITCH" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$CL_SWITCH" link set "p$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$CL_NET.$((i + 1))/24" dev eth0
    # TBF: a 256 KiB bucket; GSO packets no larger than it.
    ip -n "$ns" link set dev eth0 gso_max_size 65536
    ip -n "$ns" link set eth0 up
    tc -n "$ns" qdisc replace dev eth0 root tbf rate "$rate" burst 256kb limit 4mb
  done
}

# cl_hostspec HOSTSxRANKS: sets CL_NP and CL_HOSTLIST ("ns-h0:2,ns-h1:2").
cl_hostspec() {
  local h=${1%x*} r=${1#*x} i
  [ "$h" -le "${#CL_HOSTS[@]}" ] || { echo "cl_hostspec: $h hosts, cluster has ${#CL_HOSTS[@]}" >&2; return 1; }
  CL_NP=$((h * r))
  CL_HOSTLIST=
  for ((i = 0; i < h; i++)); do CL_HOSTLIST+="${CL_HOSTLIST:+,}${CL_HOSTS[$i]}:$r"; done
}

# The launch line: the wrapper (fault settings) plus what the emulation needs.
cl_launch_cmd() {
  cl_hostspec "$1"
  CL_CMD=(ip netns exec "${CL_HOSTS[0]}" unshare --uts -- sh -c 'hostname "$0"; exec "$@"'
    "${CL_HOSTS[0]}" env OPENBLAS_NUM_THREADS=1 "$CL_MPIRUN" -n "$CL_NP" --host "$CL_HOSTLIST"
    --bind-to none --mca ras ^slurm,gridengine --mca plm rsh --mca plm_rsh_agent "$CL_AGENT"
    --mca pml ob1 --mca btl tcp,self,vader --mca btl_tcp_if_include "$CL_NET.0/24"
    --mca oob_tcp_if_include "$CL_NET.0/24" --mca orte_tmpdir_base "$CL_TMP"
    --mca mpi_yield_when_idle 1)
}

cl_mpirun() {
  local spec=$1
  shift
  cl_launch_cmd "$spec"
  CL_CALLS=$((CL_CALLS + 1))
  LAST_OUT="$PWD/cl.$CL_CALLS.out" LAST_ERR="$PWD/cl.$CL_CALLS.err"
  set +e
  timeout --kill-after=10 "$CL_RUN_TIMEOUT" "${CL_CMD[@]}" "$@" >"$LAST_OUT" 2>"$LAST_ERR"
  RC=$?
  set -e
}

cl_mpirun_bg() {
  local spec=$1
  shift
  cl_launch_cmd "$spec"
  CL_CALLS=$((CL_CALLS + 1))
  LAST_OUT="$PWD/cl.$CL_CALLS.out" LAST_ERR="$PWD/cl.$CL_CALLS.err"
  "${CL_CMD[@]}" "$@" >"$LAST_OUT" 2>"$LAST_ERR" &
  CL_LAUNCHER=$!
}

# cl_leftovers: "ns pid program" for each midscale/orted/prted/mpirun
# process still alive in one of the hosts; empty when all are gone. By the
# executable, not the name: midscale re-executes itself through
# /proc/self/exe (its name is then "exe"), mpirun is a link to orterun.
cl_leftovers() {
  local ns pid c
  for ns in "${CL_HOSTS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      c=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
      c=${c##*/}
      c=${c% (deleted)}
      case "$c" in midscale | orted | prted | mpirun | orterun | prterun) echo "$ns $pid $c" ;; esac
    done
  done
}
