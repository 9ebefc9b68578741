#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from Debian's packages (munge, slurmctld, slurmd),
# with no systemd and no cgroups, everything under DIR. Needs root.
#
#   scripts/slurm_cluster.sh start DIR   # prints "export SLURM_CONF=DIR/slurm.conf" when ready
#   scripts/slurm_cluster.sh stop DIR    # cancels its jobs, stops the daemons
#
# Ports: SLURM_CLUSTER_PORT (default 6817) for slurmctld and the next one for slurmd.
# Install the packages with: apt-get install -y --no-install-recommends slurm-wlm munge
set -euo pipefail
cmd=${1:?usage: slurm_cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: slurm_cluster.sh start|stop DIR}")
conf=$dir/slurm.conf
port=${SLURM_CLUSTER_PORT:-6817}

stop_pidfile() {  # TERM the pid in $1 and wait for it to go (at most 10 s)
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

case $cmd in
start)
  for exe in munged mungekey slurmctld slurmd sinfo; do
    command -v "$exe" >/dev/null || { echo "error: $exe not found; apt-get install -y" \
      "--no-install-recommends slurm-wlm munge" >&2; exit 2; }
  done
  [ "$(id -u)" = 0 ] || { echo "error: run as root (munged and slurmd need it)" >&2; exit 2; }
  mkdir -p "$dir"/{munge,state,spool,log,run}
  chmod 0755 "$dir" "$dir/munge"  # a 0700 socket directory makes munge clients fail
  [ -f "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key"
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --log-file="$dir/log/munged.log" --pid-file="$dir/run/munged.pid" \
    --seed-file="$dir/munge/munge.seed"
  host=$(hostname -s)
  node=$(slurmd -C | head -n1)  # NodeName=... CPUs=... Boards=... (a hand-written line makes slurmd complain)
  cat > "$conf" <<CONF
ClusterName=aqa
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=86400
JobRequeue=1
EnforcePartLimits=ALL
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$conf
  slurmctld -f "$conf"
  slurmd -f "$conf"
  for _ in $(seq 300); do
    [ "$(sinfo -h -o %T 2>/dev/null | head -n1)" = idle ] && { echo "export SLURM_CONF=$conf"; exit 0; }
    sleep 0.1
  done
  echo "error: the node did not become idle in 30 s; see $dir/log/" >&2
  sinfo >&2 || true
  exit 1
  ;;
stop)
  export SLURM_CONF=$conf
  if [ -f "$dir/run/slurmctld.pid" ]; then
    squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  stop_pidfile "$dir/run/slurmd.pid"
  stop_pidfile "$dir/run/slurmctld.pid"
  stop_pidfile "$dir/run/munged.pid"
  ;;
*)
  echo "usage: slurm_cluster.sh start|stop DIR" >&2
  exit 2
  ;;
esac
