#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for the cluster tests (tests/cluster.py, pytest -m cluster):
# munge for authentication, slurmctld and slurmd as root, select/cons_tres over this machine's CPUs.
#
#   bash .ci/slurm.sh install   # Debian's slurmctld, slurmd, slurm-client and munge (root, ~1 min)
#   bash .ci/slurm.sh start     # write $LMPHYS_SLURM_DIR/slurm.conf, start the daemons, wait for the node
#   bash .ci/slurm.sh stop      # stop the daemons this script started
#
# Everything lives under $LMPHYS_SLURM_DIR (default /tmp/lmphys-slurm), so /etc/slurm is left alone;
# clients find the cluster through SLURM_CONF=$LMPHYS_SLURM_DIR/slurm.conf (the tests set it).
set -euo pipefail

DIR="${LMPHYS_SLURM_DIR:-/tmp/lmphys-slurm}"
CONF="$DIR/slurm.conf"
CPUS="$(nproc)"
# Not the default ports 6817/6818: a machine may run a SLURM of its own.
CTLD_PORT="${LMPHYS_SLURMCTLD_PORT:-16817}"
SLURMD_PORT="${LMPHYS_SLURMD_PORT:-16818}"

install() {
    if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF" <<EOF
# Written by .ci/slurm.sh: a one-node cluster on localhost for lmphys's cluster tests.
ClusterName=lmphys
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups in a container: track processes by their parent, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# A task signalled to stop gets this long between SIGTERM and SIGKILL to write its checkpoint.
KillWait=30
MinJobAge=600
NodeName=localhost CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$DIR/started-munge"
}

start() {
    install
    write_conf
    start_munge
    export SLURM_CONF="$CONF"
    if ! scontrol ping >/dev/null 2>&1 || ! scontrol ping | grep -q UP; then
        /usr/sbin/slurmctld -f "$CONF" -i
    fi
    if [ ! -s "$DIR/slurmd.pid" ] || ! kill -0 "$(cat "$DIR/slurmd.pid")" 2>/dev/null; then
        /usr/sbin/slurmd -f "$CONF" -N localhost
    fi
    for _ in $(seq 1 60); do
        if sinfo -h -n localhost -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
            echo "slurm: one-node cluster up ($CPUS CPUs), SLURM_CONF=$CONF"
            return
        fi
        sleep 0.5
    done
    echo "slurm: the node did not come up; see $DIR/log" >&2
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    return 1
}

stop_pid_file() {
    local file="$1"
    if [ -s "$file" ]; then
        local pid
        pid="$(cat "$file")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        rm -f "$file"
    fi
}

stop() {
    export SLURM_CONF="$CONF"
    scancel --user=root 2>/dev/null || true
    stop_pid_file "$DIR/slurmd.pid"
    stop_pid_file "$DIR/slurmctld.pid"
    if [ -e "$DIR/started-munge" ]; then
        stop_pid_file /run/munge/munged.pid
        rm -f "$DIR/started-munge"
    fi
    echo "slurm: stopped"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: bash .ci/slurm.sh install|start|stop" >&2; exit 2 ;;
esac
