#!/usr/bin/env bash
# Blocking vs non-blocking vs a comm thread across two emulated hosts
# (issue 15): scripts/bench/bench_overlap.c on 2 hosts x 1 rank of the
# emulated cluster (tests/cluster/cluster.sh), links shaped by TBF to RATE.
# Appends its JSON lines to scripts/bench/results/overlap.jsonl. Root only.
#   scripts/bench/overlap.sh [MB_LIST] [REPS] [RATE] [LEVEL]
#   (defaults 1,2,4,8  7  1gbit  serialized)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LIST=${1:-1,2,4,8}
REPS=${2:-7}
RATE=${3:-1gbit}
LEVEL=${4:-serialized}
OUT="$ROOT/scripts/bench/results/overlap.jsonl"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source "$ROOT/tests/cluster/cluster.sh"
cluster_need
BIN=$(mktemp /tmp/bench_overlap.XXXXXX)
mpicc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -o "$BIN" "$ROOT/scripts/bench/bench_overlap.c" -lpthread
WORK=$(mktemp -d /tmp/bench_overlap_run.XXXXXX)
cd "$WORK"
cluster_up 2 "$RATE"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cl_mpirun 2x1 "$BIN" "$LIST" "$REPS" "$LEVEL"
rm -f "$BIN"
cat "$LAST_OUT"
[ "$RC" -eq 0 ] || { cat "$LAST_ERR" >&2; exit 1; }
note="{\"note\":\"rate $RATE, load before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)\"}"
echo "$note"
{ grep '^{' "$LAST_OUT"; echo "$note"; } >>"$OUT"
