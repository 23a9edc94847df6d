#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for CI and for trying the Slurm path on a
# workstation. Needs root and Debian's packages (installed here when missing).
#
#   bash tools/local_slurm.sh start    # install if needed, start munged, slurmctld, slurmd; wait
#   bash tools/local_slurm.sh stop     # stop the daemons this script started
#   bash tools/local_slurm.sh status   # sinfo
#
# The node has this machine's CPUs and memory, in one partition `debug` (the default).
# Process tracking and task binding avoid cgroups (proctrack/linuxproc, task/none), which
# containers often do not delegate to Slurm. There is no accounting database: finished jobs'
# states (COMPLETED, FAILED, CANCELLED, TIMEOUT) are read from `squeue --states=all`, so the
# controller keeps them for a day (MinJobAge). A requeued job waits cred_expire seconds before
# it starts again (Slurm's default 120 s; 10 s here). `start` on a running cluster whose
# configuration differs restarts its daemons with the new one (running jobs survive).
set -euo pipefail

STATE=${DROPKEY_SLURM_STATE:-/var/lib/dropkey-slurm}
CONF=/etc/slurm/slurm.conf
log() { printf '[local_slurm] %s\n' "$*" >&2; }

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  log "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
  install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    head -c 1024 /dev/urandom > /etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    su -s /bin/sh munge -c /usr/sbin/munged
  fi
  munge -n | unmunge >/dev/null
}

# Writes slurm.conf; succeeds when the file changed.
write_conf() {
  local host cpus memory old
  host=$(hostname -s)
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p "$STATE"/{ctld,spool,log} /etc/slurm
  old=$(cat "$CONF" 2>/dev/null || true)
  cat > "$CONF" <<EOF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MinJobAge=86400
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  [ "$old" != "$(cat "$CONF")" ]
}

# Whether the daemon of pid file $1 (slurmctld.pid -> slurmctld) runs; the name is checked because
# after a restart of the machine another process may hold a pid of the earlier boot.
running() {
  [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ]
}

start() {
  install_packages
  start_munge
  if write_conf; then
    stop_daemons
  fi
  running "$STATE/slurmctld.pid" || /usr/sbin/slurmctld
  running "$STATE/slurmd.pid" || /usr/sbin/slurmd
  for _ in $(seq 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      log "ready: $(sinfo -h -o '%P %a %D %T %N')"
      return 0
    fi
    sleep 0.5
  done
  log "the node did not become idle in 30 s; logs in $STATE/log"
  sinfo >&2 || true
  return 1
}

stop_daemons() {
  local daemon pid
  for daemon in slurmd slurmctld; do
    if running "$STATE/$daemon.pid"; then
      pid=$(cat "$STATE/$daemon.pid")
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
  done
}

stop() {
  stop_daemons
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
