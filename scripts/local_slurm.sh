#!/usr/bin/env bash
# A single-node SLURM on this machine, for the launcher's tests (and for trying --backend slurm).
#
#   bash scripts/local_slurm.sh start DIR    # config, state and logs in DIR; prints SLURM_CONF=...
#   export SLURM_CONF=DIR/slurm.conf         # then sbatch, squeue, scontrol talk to it
#   bash scripts/local_slurm.sh stop DIR     # stops the slurmctld and slurmd started in DIR
#
# Needs root and the Debian packages slurm-wlm and munge (apt-get install -y slurm-wlm munge).
# No cgroups (proctrack/linuxproc, task/none), no accounting database, free ports picked at start.
# The node offers 8 CPUs whatever the machine has (jobs of the tests are tiny), and a requeued job
# may start again after 5 s (cred_expire; SLURM's default is 120 s).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[[ ( $cmd == start || $cmd == stop ) && -n $dir ]] || { sed -n '2,11p' "$0"; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if [[ $cmd == stop ]]; then
  # Jobs still there are cancelled first and given time to end (their slurmstepd needs both
  # daemons for that), so no run outlives its cluster.
  if [[ -f $dir/slurm.conf && -f $dir/slurmctld.pid ]]; then
    export SLURM_CONF=$dir/slurm.conf
    scancel --quiet --user="$(id -un)" 2> /dev/null || true
    for _ in $(seq 600); do [[ -z $(squeue -h -o %i 2> /dev/null) ]] && break; sleep 0.1; done
  fi
  for daemon in slurmd slurmctld; do
    [[ -f $dir/$daemon.pid ]] || continue
    pid=$(cat "$dir/$daemon.pid")
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    rm -f "$dir/$daemon.pid"
  done
  exit 0
fi

for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" > /dev/null || { echo "local_slurm.sh: $tool not found: apt-get install -y slurm-wlm munge" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "local_slurm.sh: slurmd must run as root to start jobs" >&2; exit 1; }

# munge authenticates every SLURM message; one munged serves the whole machine.
if ! munge -n > /dev/null 2>&1; then
  [[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
                                    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  su -s /bin/sh munge -c munged || munged --force
  for _ in $(seq 50); do munge -n > /dev/null 2>&1 && break; sleep 0.1; done
  munge -n > /dev/null || { echo "local_slurm.sh: munged did not start" >&2; exit 1; }
fi

read -r ctld_port slurmd_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
host=$(hostname -s)
mkdir -p "$dir/state" "$dir/spool"
cat > "$dir/slurm.conf" <<EOF
ClusterName=linkbert-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=1,bf_interval=1
MinJobAge=300
KillWait=30
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  [[ $(sinfo -h -o %t 2> /dev/null) == idle ]] && { echo "SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.2
done
echo "local_slurm.sh: the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 1
