#!/usr/bin/env bash
# A real single-node SLURM (22.05, Debian packages) with accounting, for tests and CI.
#
#   scripts/slurm_cluster.sh install   # apt packages: munge, slurmctld, slurmd, client, slurmdbd, mariadb
#   scripts/slurm_cluster.sh start     # write configs, start every daemon, wait until the node is idle
#   scripts/slurm_cluster.sh stop      # stop the daemons by their recorded PIDs
#   scripts/slurm_cluster.sh status    # sinfo
#
# Runs as root; jobs run as root. Everything (configs, state, spool, logs, PIDs, the MariaDB
# datadir) lives under one directory: $CRUIJFF_SLURM_DIR (default /tmp/cruijff-slurm).
# /etc/slurm/slurm.conf becomes a symlink to the generated config so that sbatch, squeue and
# friends work without SLURM_CONF in the environment.
#
# Knobs (a `start` with different values rewrites the config and restarts the daemons):
#   CRUIJFF_SLURM_MAX_ARRAY_SIZE  MaxArraySize  (default 1001)
#   CRUIJFF_SLURM_MAX_JOB_COUNT   MaxJobCount   (default 20000)
#   CRUIJFF_SLURM_DB_PORT         MariaDB TCP port on 127.0.0.1 (default 3399)
#   CRUIJFF_SLURM_START_TIMEOUT   seconds to wait for the node to become idle (default 60)
set -euo pipefail

DIR="${CRUIJFF_SLURM_DIR:-/tmp/cruijff-slurm}"
MAX_ARRAY_SIZE="${CRUIJFF_SLURM_MAX_ARRAY_SIZE:-1001}"
MAX_JOB_COUNT="${CRUIJFF_SLURM_MAX_JOB_COUNT:-20000}"
DB_PORT="${CRUIJFF_SLURM_DB_PORT:-3399}"
START_TIMEOUT="${CRUIJFF_SLURM_START_TIMEOUT:-60}"
CLUSTER=cruijff
NODE_CPUS=16
NODE_MEM=16000
NODE_GPUS=4

ETC="$DIR/etc"
RUN="$DIR/run"
LOG="$DIR/log"
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF="$ETC/slurm.conf"

PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
BINARIES=(munged slurmctld slurmd slurmdbd sbatch squeue sacct sacctmgr scontrol mariadbd mariadb-install-db mariadb)

say() { printf 'slurm_cluster: %s\n' "$*"; }
die() { printf 'slurm_cluster: error: %s\n' "$*" >&2; exit 1; }

show_log() {  # the tail of a daemon's log, for a failure message
    local f="$1"
    if [[ -s "$f" ]]; then
        printf -- '--- last lines of %s ---\n' "$f" >&2
        tail -n 25 "$f" >&2
    fi
}

need_root() { [[ $(id -u) -eq 0 ]] || die "run as root (the test cluster runs its daemons and jobs as root)"; }

# --- processes -------------------------------------------------------------------------------

alive() {  # alive PID: the process exists and is not a zombie (PID 1 here may not reap)
    local pid="$1" state
    [[ -n "$pid" && -r "/proc/$pid/status" ]] || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

pid_of() { [[ -s "$RUN/$1.pid" ]] && tr -dc '0-9' <"$RUN/$1.pid" || true; }

running() { alive "$(pid_of "$1")"; }

stop_one() {  # stop_one NAME: SIGTERM, wait up to 15 s, then SIGKILL
    local name="$1" pid i
    pid=$(pid_of "$name")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "$name ($pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        say "stopped $name ($pid)"
    fi
    rm -f "$RUN/$name.pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.2 s until COMMAND succeeds;
    local secs="$1" what="$2" i rc  # COMMAND returning 99 means it never will: give up at once
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        rc=0
        "$@" >/dev/null 2>&1 || rc=$?
        ((rc == 0)) && return 0
        ((rc == 99)) && return 1
        sleep 0.2
    done
    return 1
}

daemon_up() {  # daemon_up NAME COMMAND...: for wait_for; 99 once NAME's recorded PID has exited
    local pid
    pid=$(pid_of "$1")
    shift
    if [[ -n "$pid" ]] && ! alive "$pid"; then return 99; fi
    "$@"
}

# --- install ---------------------------------------------------------------------------------

cmd_install() {
    need_root
    local missing=()
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    if ((${#missing[@]} == 0)); then
        say "packages already installed (slurm $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || echo '?'))"
        return 0
    fi
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' init scripts from starting daemons without a configuration (a failed
    # start in a postinst would fail the install); `start` runs them itself.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"/tmp/cruijff-slurm-apt.log" 2>&1 \
        || { tail -n 30 /tmp/cruijff-slurm-apt.log >&2; die "apt-get install failed"; }
    say "installed slurm $(dpkg-query -W -f='${Version}' slurmctld)"
}

# --- configuration ---------------------------------------------------------------------------

write_if_changed() {  # write_if_changed FILE MODE: stdin -> FILE; returns 0 when the content changed
    local file="$1" mode="$2" tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$file"
    return 0
}

HOST=""
SLURM_CHANGED=0
DBD_CHANGED=0

write_configs() {
    HOST=$(hostname -s)
    mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/state" "$DIR/spool/slurmd-$HOST" "$DIR/gpu"
    # Fake GPUs: slurmd wants character devices; copies of /dev/null do (plain files work too,
    # with an error in the log).
    local i
    for ((i = 0; i < NODE_GPUS; i++)); do
        [[ -c "$DIR/gpu/gpu$i" ]] || { rm -f "$DIR/gpu/gpu$i"; mknod "$DIR/gpu/gpu$i" c 1 3 2>/dev/null || : >"$DIR/gpu/gpu$i"; }
    done

    if write_if_changed "$ETC/slurm.conf" 644 <<EOF
# Generated by scripts/slurm_cluster.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
MpiDefault=none
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=5
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=$MAX_JOB_COUNT
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$NODE_MEM Gres=gpu:$NODE_GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    then SLURM_CHANGED=1; fi

    if write_if_changed "$ETC/gres.conf" 644 <<EOF
NodeName=$HOST Name=gpu File=$DIR/gpu/gpu[0-$((NODE_GPUS - 1))]
EOF
    then SLURM_CHANGED=1; fi

    # No cgroups: proctrack/linuxproc and task/none need none; the file only keeps slurmd from
    # probing the host's cgroup setup.
    if write_if_changed "$ETC/cgroup.conf" 644 <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
    then SLURM_CHANGED=1; fi

    if write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    then DBD_CHANGED=1; fi

    # Clients (sbatch, squeue, sacct ...) read /etc/slurm/slurm.conf.
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    if [[ -e "$SYSTEM_CONF" && ! -L "$SYSTEM_CONF" ]]; then
        die "$SYSTEM_CONF exists and is not ours; move it away or set SLURM_CONF=$ETC/slurm.conf yourself"
    fi
    ln -sfn "$ETC/slurm.conf" "$SYSTEM_CONF"
}

# --- daemons ---------------------------------------------------------------------------------

start_munge() {
    local pid
    pid=""
    [[ -r /run/munge/munged.pid ]] && pid=$(tr -dc '0-9' </run/munge/munged.pid)
    if alive "$pid" && munge -n </dev/null | unmunge >/dev/null 2>&1; then
        echo "$pid" >"$RUN/munged.pid"
        return 0
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --force && chown munge:munge /etc/munge/munge.key; }
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged || { show_log /var/log/munge/munged.log; die "munged did not start"; }
    wait_for 10 munge bash -c 'munge -n </dev/null | unmunge' \
        || { show_log /var/log/munge/munged.log; die "munged does not answer"; }
    cp /run/munge/munged.pid "$RUN/munged.pid"
    say "started munged ($(pid_of munged))"
}

mysql_root() { mariadb --no-defaults -S "$RUN/mariadb.sock" -u root "$@"; }

mariadb_up() {  # mariadb_up PID: answers queries; gives up at once when mariadbd has exited
    alive "$1" || return 99
    mysql_root -e 'SELECT 1'
}

start_mariadb() {
    if running mariadb && mysql_root -e 'SELECT 1' >/dev/null 2>&1; then
        return 0
    fi
    if [[ ! -d "$DIR/mysql/mysql" ]]; then
        mkdir -p "$DIR/mysql"
        chown mysql:mysql "$DIR/mysql"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql" \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
            || { show_log "$LOG/mariadb-install.log"; die "mariadb-install-db failed"; }
    fi
    chown mysql:mysql "$RUN" "$LOG" 2>/dev/null || true
    chmod 0755 "$DIR" "$RUN" "$LOG"
    rm -f "$RUN/mariadb.sock"
    setsid nohup /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" \
        --socket="$RUN/mariadb.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$RUN/mariadb.pid" --log-error="$LOG/mariadb.log" \
        --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 --skip-log-bin </dev/null >/dev/null 2>&1 &
    local pid=$!
    wait_for 60 mariadb mariadb_up "$pid" \
        || { show_log "$LOG/mariadb.log"; die "mariadbd did not start (another one on port $DB_PORT? set CRUIJFF_SLURM_DB_PORT)"; }
    mysql_root <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
    say "started mariadbd ($(pid_of mariadb)) on 127.0.0.1:$DB_PORT"
}

start_slurmdbd() {
    if running slurmdbd; then
        if ((DBD_CHANGED == 0)); then return 0; fi
        stop_one slurmdbd
    fi
    rm -f "$RUN/slurmdbd.pid"  # a stale one would read as "exited at once"
    slurmdbd || { show_log "$LOG/slurmdbd.log"; die "slurmdbd did not start"; }
    # sacctmgr answers once slurmdbd has connected to the database.
    wait_for 60 slurmdbd daemon_up slurmdbd sacctmgr -n list cluster \
        || { show_log "$LOG/slurmdbd.log"; die "slurmdbd does not answer"; }
    say "started slurmdbd ($(pid_of slurmdbd))"
}

register_cluster() {
    if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr could not add cluster $CLUSTER"
        say "registered cluster $CLUSTER with slurmdbd"
    fi
}

node_idle() {  # the node takes jobs; a drained or down one (after a crash) is resumed
    local state
    state=$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n 1)
    case "$state" in
        idle | mix | alloc) return 0 ;;
        drain* | drng* | down*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    return 1
}

start_slurm() {
    if ((SLURM_CHANGED)) || ! running slurmctld || ! running slurmd; then
        if running slurmctld || running slurmd; then say "configuration changed: restarting slurmctld and slurmd"; fi
        stop_one slurmd
        stop_one slurmctld
        slurmctld || { show_log "$LOG/slurmctld.log"; die "slurmctld did not start"; }
        wait_for 30 slurmctld daemon_up slurmctld scontrol ping \
            || { show_log "$LOG/slurmctld.log"; die "slurmctld does not answer"; }
        say "started slurmctld ($(pid_of slurmctld))"
        slurmd || { show_log "$LOG/slurmd.log"; die "slurmd did not start"; }
        wait_for 10 slurmd running slurmd || { show_log "$LOG/slurmd.log"; die "slurmd exited at start"; }
        say "started slurmd ($(pid_of slurmd))"
    fi
    if ! wait_for "$START_TIMEOUT" node daemon_up slurmd node_idle; then
        sinfo -N -l >&2 || true
        show_log "$LOG/slurmctld.log"
        show_log "$LOG/slurmd.log"
        die "node $HOST did not become idle within ${START_TIMEOUT}s"
    fi
}

cmd_start() {
    need_root
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || die "$b not found; run: $0 install"
    done
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    register_cluster
    start_slurm
    say "cluster $CLUSTER up: node $HOST idle (MaxArraySize=$MAX_ARRAY_SIZE MaxJobCount=$MAX_JOB_COUNT, state in $DIR)"
}

cmd_stop() {
    need_root
    local name
    for name in slurmd slurmctld slurmdbd mariadb munged; do stop_one "$name"; done
}

cmd_status() {
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if running "$name"; then say "$name running ($(pid_of "$name"))"; else say "$name not running"; fi
    done
    sinfo
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
