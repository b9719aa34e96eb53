#!/usr/bin/env bash
# mpirun with the settings that end a faulty multi-node job fast. Every
# argument is passed through unchanged:
#   scripts/mpirun.sh -n 8 --host a:4,b:4 build/midscale train CONFIG [--set ...]
# Its exit code is mpirun's, or 6 when it had to end a launcher that
# outlived midscale's hang report (below).
#
# What a fault does with these settings (README, "Across nodes"):
# - A rank that waits in a collective longer than comm.timeout_s (a host or
#   link gone, a stalled rank) makes midscale's watchdog print one message
#   naming the rank, its host, the operation and the step, and abort the
#   job with exit 6.
# - Open MPI's runtime (the OOB TCP connections between mpirun and its
#   daemons) notices a host that went silent only through TCP keepalive,
#   whose kernel defaults take hours. The keepalive below declares a silent
#   peer dead a few seconds AFTER the watchdog has fired, so that
#   midscale's message comes first; the daemons of the cut-off host then
#   end their ranks themselves.
# - mpirun itself cannot use that keepalive once it has sent the abort to
#   the lost host's daemon: with unacknowledged data on the socket, Linux
#   retransmits instead (net.ipv4.tcp_retries2, about 15 minutes), and
#   Open MPI has no setting for it. So this wrapper watches mpirun's stderr
#   for midscale's hang report and, if mpirun is still there GRACE seconds
#   later (MIDSCALE_ABORT_GRACE, default 8), ends it (TERM, then KILL 3 s
#   later). Daemons on the hosts that are still connected see mpirun's
#   sockets close and end their ranks.
# Together: the launcher and every surviving rank are gone within
# comm.timeout_s + 15 s (measured: see the README).
#
# comm.timeout_s is taken from, in order: MIDSCALE_TIMEOUT_S, a
# "--set comm.timeout_s=X" argument, a "timeout_s: X" line in the config
# file (the argument after "train"), else midscale's default, 300.
# MIDSCALE_MPIRUN names the mpirun to run (default: mpirun on PATH).
# HUP, INT, TERM, USR1 and USR2 are passed on to mpirun (USR1: midscale
# checkpoints and exits 75).
set -uo pipefail

timeout_s=${MIDSCALE_TIMEOUT_S:-}
if [ -z "$timeout_s" ]; then
  prev='' config=''
  for a in "$@"; do
    case "$a" in
      comm.timeout_s=*) timeout_s=${a#comm.timeout_s=} ;;
      --set=comm.timeout_s=*) timeout_s=${a#--set=comm.timeout_s=} ;;
    esac
    [ "$prev" = train ] && [ -z "$config" ] && config=$a
    prev=$a
  done
  if [ -z "$timeout_s" ] && [ -n "$config" ] && [ -r "$config" ]; then
    timeout_s=$(sed -n 's/.*timeout_s:[[:space:]]*\([0-9.][0-9.]*\).*/\1/p' "$config" | tail -n 1)
  fi
fi
timeout_s=${timeout_s:-300}
# Whole seconds, rounded up (the keepalive counts in seconds).
t=$(awk -v t="$timeout_s" 'BEGIN { s = int(t); if (s < t) s++; if (s < 1) s = 1; print s }')

# Linux keepalive: after `time` idle seconds, `probes` probes `intvl` apart;
# the peer is declared dead probes x intvl after the first unanswered one,
# i.e. between probes x intvl and time + probes x intvl after the link
# went silent. probes x intvl >= timeout + 3 puts it after the watchdog
# (which fires at most timeout + 1 s after the last step began, and rank 0
# reports first); time 2 keeps it within timeout + 5 + intvl. Linux caps
# probes at 127, hence intvl > 1 for long timeouts.
intvl=$(((t + 3 + 119) / 120))
probes=$(((t + 3 + intvl - 1) / intvl))
ka_time=2
grace=${MIDSCALE_ABORT_GRACE:-8}

fifo_dir=$(mktemp -d "${TMPDIR:-/tmp}/midscale-mpirun.XXXXXX") || exit 1
mkfifo "$fifo_dir/err" || exit 1
# mpirun in a process group of its own (job control on), so that a Ctrl-C
# at a terminal reaches it once, through the trap below, not twice (mpirun
# takes a second INT as "terminate now", skipping midscale's checkpoint).
# Its stdin is /dev/null: midscale reads none, and a background group
# reading the terminal would be stopped.
set -m
"${MIDSCALE_MPIRUN:-mpirun}" \
  --mca oob_tcp_keepalive_time "$ka_time" \
  --mca oob_tcp_keepalive_intvl "$intvl" \
  --mca oob_tcp_keepalive_probes "$probes" \
  "$@" </dev/null 2>"$fifo_dir/err" &
launcher=$!
set +m
for s in HUP INT TERM USR1 USR2; do
  trap "kill -$s $launcher 2>/dev/null" "$s"
done

# The follow-up: TERM, then KILL, to an mpirun that outlives the report.
ender=
end_launcher() {
  (
    sleep "$grace"
    kill -0 "$launcher" 2>/dev/null || exit 0
    echo "midscale-mpirun: mpirun still running ${grace} s after midscale's hang report: ending it" >&2
    kill -TERM "$launcher" 2>/dev/null
    sleep 3
    kill -KILL "$launcher" 2>/dev/null
  ) &
  ender=$!
}

# mpirun's stderr, line by line, to ours. Daemons that mpirun started
# inherit that stderr and may outlive it (on a host cut off from the
# network), so the loop ends when mpirun has, not at end of file.
exec 3<"$fifo_dir/err"
rm -rf "$fifo_dir"
reported=0
while :; do
  line=
  if IFS= read -r -t 1 line <&3; then
    printf '%s\n' "$line" >&2
    case "$line" in
      *"midscale: error: hang:"*)
        [ "$reported" -eq 1 ] || end_launcher
        reported=1 ;;
    esac
  else
    # A timeout, a trapped signal (status > 128) or the end of the file.
    st=$?
    [ -z "$line" ] || printf '%s' "$line" >&2
    kill -0 "$launcher" 2>/dev/null || break
    [ "$st" -gt 128 ] || sleep 0.2 # stderr closed, mpirun still running
  fi
done
# What mpirun wrote just before it ended, without waiting on daemons.
while IFS= read -r -t 0.2 line <&3; do printf '%s\n' "$line" >&2; done
exec 3<&-
# wait returns early when a trapped signal arrives; wait until mpirun ends.
while :; do
  wait "$launcher"
  rc=$?
  kill -0 "$launcher" 2>/dev/null || break
done
if [ -n "$ender" ]; then
  kill "$ender" 2>/dev/null
  wait "$ender" 2>/dev/null
fi
# Ended by a signal after the report (ours, or mpirun crashing on its way
# out, which Open MPI 4.1 does on TERM during an abort): the report's code.
if [ "$reported" -eq 1 ] && [ "$rc" -gt 128 ]; then rc=6; fi
exit "$rc"
