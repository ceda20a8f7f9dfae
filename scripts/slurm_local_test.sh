#!/usr/bin/env bash
# Single-node SLURM cluster on localhost, for testing the sweep routes (best effort).
#
#   scripts/slurm_local_test.sh start DIR   start munged + slurmctld + slurmd with state/logs under DIR,
#                                           write DIR/env.sh (export SLURM_CONF=...), wait for the node
#   scripts/slurm_local_test.sh stop DIR    stop the daemons started by `start DIR` (by their pid files)
#   scripts/slurm_local_test.sh smoke       start a cluster in a temp dir, submit a 2-task array through
#                                           scripts/slurm_array.sh (sbatch route), wait, print, stop
#
# Needs slurm-wlm and munge (Debian: apt-get install -y slurm-wlm munge) and root (slurmd must be able to
# switch to the submitting user). Nothing is written outside DIR; the daemons listen on free ports, so
# several clusters can coexist. On failure, the daemons' logs are printed so the reason is visible.
set -euo pipefail

die() { echo "slurm_local_test: $*" >&2; exit 1; }

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF
}

show_logs() {
  local dir=$1
  for f in "$dir"/log/*.log; do
    [ -f "$f" ] || continue
    echo "----- $f (last 30 lines) -----" >&2
    tail -n 30 "$f" >&2 || true
  done
}

start_cluster() {
  local dir=$1
  for bin in slurmctld slurmd sbatch sinfo; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || die "$bin not found (install slurm-wlm)"
  done
  [ "$(id -u)" -eq 0 ] || die "needs root (slurmd runs jobs as the submitting user)"
  mkdir -p "$dir"/{log,state,spool,run,munge}
  dir=$(cd "$dir" && pwd)
  local host cpus mem ctl_port d_port auth
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%d", $2/1024*0.8}' /proc/meminfo)
  ctl_port=$(free_port)
  d_port=$(free_port)

  # --- authentication: munge with a private key and socket; auth/none if munged cannot start ---
  auth="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket"
  local munged=/usr/sbin/munged
  if [ -x "$munged" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" status=none
    chmod 600 "$dir/munge/munge.key"
    if ! "$munged" --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munge.seed" >"$dir/log/munged.start.log" 2>&1; then
      echo "slurm_local_test: munged failed to start, falling back to auth/none:" >&2
      cat "$dir/log/munged.start.log" >&2
      auth="AuthType=auth/none
CredType=cred/none"
    fi
  else
    echo "slurm_local_test: munged not installed, using auth/none" >&2
    auth="AuthType=auth/none
CredType=cred/none"
  fi

  cat >"$dir/slurm.conf" <<EOF
ClusterName=rlpreflocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
$auth
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
MaxArraySize=10001
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  echo "export SLURM_CONF=$dir/slurm.conf" >"$dir/env.sh"
  export SLURM_CONF="$dir/slurm.conf"

  /usr/sbin/slurmctld -i -f "$SLURM_CONF" >"$dir/log/slurmctld.start.log" 2>&1 \
    || { cat "$dir/log/slurmctld.start.log" >&2; show_logs "$dir"; die "slurmctld did not start"; }
  /usr/sbin/slurmd -f "$SLURM_CONF" >"$dir/log/slurmd.start.log" 2>&1 \
    || { cat "$dir/log/slurmd.start.log" >&2; show_logs "$dir"; die "slurmd did not start"; }

  local state=""
  for _ in $(seq 1 40); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
    case "$state" in idle|mixed|allocated) echo "slurm_local_test: node $host is $state (SLURM_CONF=$SLURM_CONF)"; return 0 ;; esac
    sleep 0.5
  done
  show_logs "$dir"
  die "node never became idle (state: '${state:-no answer from slurmctld}')"
}

stop_cluster() {
  local dir=$1
  local f pid
  for f in "$dir"/run/slurmd-*.pid "$dir"/run/slurmctld.pid "$dir"/munge/munged.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  # wait for their exit, then make sure (each daemon by its own pid, never by name)
  sleep 1
  for f in "$dir"/run/slurmd-*.pid "$dir"/run/slurmctld.pid "$dir"/munge/munged.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
  return 0
}

SMOKE_DIR=""
smoke() {
  local repo dir
  repo=$(cd "$(dirname "$0")/.." && pwd)
  dir=$(mktemp -d /tmp/rlpref-slurm.XXXXXX)
  SMOKE_DIR=$dir  # the EXIT trap runs after this function's locals are gone
  trap 'stop_cluster "$SMOKE_DIR"' EXIT
  start_cluster "$dir"
  # a 2-row table of harmless commands: each task writes its row and hostname
  printf 'echo task-0 > %s/out0.txt\necho task-1 > %s/out1.txt\n' "$dir" "$dir" >"$dir/rows.txt"
  local jid
  jid=$(sbatch --parsable --array=0-1 --output="$dir/log/array_%A_%a.out" \
        --export=ALL,RLPREF_SWEEP_TABLE="$dir/rows.txt",RLPREF_RAW_COMMANDS=1 \
        "$repo/scripts/slurm_array.sh")
  echo "submitted array job $jid"
  for _ in $(seq 1 120); do
    [ -f "$dir/out0.txt" ] && [ -f "$dir/out1.txt" ] && break
    sleep 0.5
  done
  cat "$dir"/out*.txt || { show_logs "$dir"; squeue || true; die "array tasks did not finish"; }
}

cmd=${1:-}
case "$cmd" in
  start) [ -n "${2:-}" ] || die "usage: $0 start DIR"; start_cluster "$2" ;;
  stop) [ -n "${2:-}" ] || die "usage: $0 stop DIR"; stop_cluster "$2" ;;
  smoke) smoke ;;
  *) die "usage: $0 start DIR | stop DIR | smoke" ;;
esac
