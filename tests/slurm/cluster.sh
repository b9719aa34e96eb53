# A throwaway single-node Slurm cluster for the tests: munged, slurmctld and
# slurmd started by hand (no systemd) from a config under $1, as root.
#   source tests/slurm/cluster.sh; slurm_start DIR; ...; slurm_stop
# Exports SLURM_CONF so sbatch, squeue, scontrol and scancel talk to it.
# Settings that matter here: MpiDefault=pmix (Debian's Open MPI is launched
# by srun --mpi=pmix), proctrack/linuxproc and task/none (no cgroups or
# systemd), EnforcePartLimits=ALL (an impossible request fails instead of
# pending forever), cred_expire=10 and 2-second scheduler intervals (a
# requeued job would otherwise wait about two minutes).

slurm_start() {
  SLURM_DIR=$1
  local cpus
  cpus=$(nproc)
  mkdir -p "$SLURM_DIR"/{state,spool,munge}
  chmod 755 "$SLURM_DIR" "$SLURM_DIR/munge"
  dd if=/dev/urandom of="$SLURM_DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$SLURM_DIR/munge/munge.key"
  munged -f --key-file="$SLURM_DIR/munge/munge.key" --socket="$SLURM_DIR/munge/munge.sock" \
    --pid-file="$SLURM_DIR/munge/munged.pid" --log-file="$SLURM_DIR/munge/munged.log" \
    --seed-file="$SLURM_DIR/munge/seed" || return 1
  local host port
  host=$(hostname)
  # Two free consecutive ports, so a cluster left by another run (or a
  # site's own Slurm) does not collide with this one.
  port=$(${PYTHON:-python3} - <<'PY'
import socket
for p in range(16817, 17817, 2):
    try:
        for q in (p, p + 1):
            s = socket.socket(); s.bind(("", q)); s.close()
        print(p); break
    except OSError:
        continue
PY
)
  cat >"$SLURM_DIR/slurm.conf" <<CONF
ClusterName=midscaletest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SLURM_DIR/munge/munge.sock,cred_expire=10
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$SLURM_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=pmix
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
EnforcePartLimits=ALL
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
JobRequeue=1
MinJobAge=600
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$SLURM_DIR/slurm.conf"
  slurmctld -f "$SLURM_CONF" || return 1
  slurmd -f "$SLURM_CONF" || return 1
  local i
  for i in $(seq 1 60); do
    sinfo -h -o '%T' 2>/dev/null | grep -q -E '^idle' && return 0
    sleep 0.5
  done
  echo "slurm did not come up; slurmctld.log:" >&2
  tail -n 20 "$SLURM_DIR/slurmctld.log" "$SLURM_DIR/slurmd.log" >&2
  return 1
}

# Stops the daemons this cluster started, by their PID files.
slurm_stop() {
  [ -n "${SLURM_DIR:-}" ] || return 0
  local f pid
  for f in "$SLURM_DIR/slurmd.pid" "$SLURM_DIR/slurmctld.pid" "$SLURM_DIR/munge/munged.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

# slurm_job_state JOBID: COMPLETED, RUNNING, PENDING, FAILED, ...
slurm_job_state() {
  scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}
