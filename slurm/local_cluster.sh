#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for the `slurm`-marked tests (Debian's slurmctld, slurmd,
# slurm-client and munge; slurm 22.05 here). Not for real clusters.
#
#   slurm/local_cluster.sh up     # start munged, slurmctld, slurmd; wait until the node is idle
#   slurm/local_cluster.sh down   # stop them by the pids in their pid files, remove the state
#
# State (config, spool, logs, pid files) lives in $DRIFTBENCH_SLURM_DIR (default /tmp/driftbench-slurm).
# /etc/slurm/slurm.conf is linked to the generated config only if no config exists there; `down` removes
# the link it made. Needs root (the daemons run as root here, munged as the munge user).
set -euo pipefail
STATE="${DRIFTBENCH_SLURM_DIR:-/tmp/driftbench-slurm}"
CONF="$STATE/slurm.conf"
LINK=/etc/slurm/slurm.conf

pid_of() { [ -s "$1" ] && cat "$1" || true; }

down() {
    for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
        pid="$(pid_of "$f")"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$f"
    done
    if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$CONF" ]; then rm -f "$LINK"; fi
    rm -rf "$STATE"
    echo "local slurm: down"
}

up() {
    for cmd in slurmctld slurmd munged sinfo sbatch; do
        command -v "$cmd" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$cmd" >/dev/null || {
            echo "local slurm: $cmd not found; install Debian's slurmctld slurmd slurm-client munge" >&2; exit 1; }
    done
    export PATH="$PATH:/usr/sbin"
    [ "$(id -u)" -eq 0 ] || { echo "local slurm: run as root (the daemons need it)" >&2; exit 1; }
    if [ -s "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
        echo "local slurm: already up ($STATE)"; return
    fi
    mkdir -p "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
    mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    fi
    if ! { [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
        runuser -u munge -- /usr/sbin/munged
    fi
    cpus="$(nproc)"
    mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    cat > "$CONF" <<CONF
ClusterName=driftbench
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
KillWait=10
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    [ -e "$LINK" ] || { mkdir -p /etc/slurm; ln -s "$CONF" "$LINK"; }
    [ "$(readlink -f "$LINK")" = "$CONF" ] || echo "local slurm: $LINK is another config; export SLURM_CONF=$CONF" >&2
    export SLURM_CONF="$CONF"
    slurmctld -f "$CONF"
    slurmd -f "$CONF" -N localhost
    for _ in $(seq 100); do
        state="$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)"
        [ "$state" = "idle" ] && { echo "local slurm: up ($cpus CPUs, $mem_mb MB; state in $STATE)"; return; }
        sleep 0.2
    done
    echo "local slurm: the node did not become idle (state '$state'); see $STATE/log" >&2
    exit 1
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
