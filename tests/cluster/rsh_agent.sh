#!/bin/sh
# Open MPI's rsh agent for the emulated cluster (tests/cluster/cluster.sh):
# called as `rsh_agent.sh [ssh options] HOST COMMAND...`, it runs COMMAND in
# HOST's network namespace (HOST is the namespace's name) with a private UTS
# namespace whose hostname is HOST, so Open MPI and MPI_COMM_TYPE_SHARED see
# one node per namespace. The environment is inherited (unlike ssh), which
# is what carries OMPI_* and OPENBLAS_NUM_THREADS to the remote daemons.
# setsid gives each emulated host's daemon and ranks a session of their
# own, hence their own scheduler autogroup, as a separate machine's
# processes would have: in one session the hosts' ranks shared one
# group's CPU share against other sessions' work, and on a busy machine
# two emulated hosts computed at half the speed of one rank alone.
while [ $# -gt 0 ]; do
  case "$1" in
    -[1246AaCfgKkMNnqsTtVvXxYy]) shift ;;   # ssh flags without a value
    -*) shift; [ $# -gt 0 ] && shift ;;     # ssh options with a value (-o X, -p N, ...)
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "rsh_agent.sh: usage: rsh_agent.sh [opts] HOST COMMAND..." >&2; exit 255; }
host=$1
shift
# Only namespaces of an emulated cluster: never the root namespace.
ip netns list 2>/dev/null | grep -q "^$host\( \|\$\)" ||
  { echo "rsh_agent.sh: no network namespace named $host" >&2; exit 255; }
exec setsid -w ip netns exec "$host" unshare --uts -- sh -c 'hostname "$0"; exec sh -c "$1"' "$host" "$*"
