#!/usr/bin/env bash
# Start a real one-node SLURM cluster (with accounting) on this machine.
#
# For CI and tests: Debian 12, run as root, no systemd needed.  Idempotent: a second run
# re-uses what is installed, configured and running, and only starts what is missing.
#
#   bash .ci/slurm/start.sh        # prints "SLURM ready: partition=<p> cpus=<n> mem=<MB>"
#   bash .ci/slurm/stop.sh         # stops every daemon this script started (by PID)
#
# Environment:
#   MOKD_SLURM_STATE      state directory (default /tmp/mokd-slurm): configs, logs, DB, PIDs
#   MOKD_SLURM_CLUSTER    cluster name             (default mokd)
#   MOKD_SLURM_PARTITION  default partition name   (default debug)
#   MOKD_SLURM_DB_PORT    TCP port of the private mariadbd on 127.0.0.1 (default 3307)
#   MOKD_SLURM_MEM_MB     RealMemory of the node   (default 90 % of what `slurmd -C` reports)
#   MOKD_SLURM_TIMEOUT    seconds to wait for each daemon / the cluster (default 60)
#   MOKD_SLURM_DEBUG      log level of the SLURM daemons (default info; e.g. debug2)
#   MOKD_SLURM_FORCE_ETC=1  replace an /etc/slurm/slurm.conf that this script did not write
#
# Files outside the state directory that this script touches:
#   - Debian packages (apt-get install), only if missing;
#   - /etc/slurm/slurm.conf: a symlink to $STATE/etc/slurm.conf, so that plain sbatch/sacct/
#     squeue (Snakemake's SLURM plugin, submitit) find the cluster without SLURM_CONF;
#   - /run/munge (munged's socket directory; clients use the default socket path there).
# Daemon PIDs are recorded in $STATE/pids/<name>.pid; stop.sh kills exactly those.
set -euo pipefail

STATE=${MOKD_SLURM_STATE:-/tmp/mokd-slurm}
CLUSTER=${MOKD_SLURM_CLUSTER:-mokd}
PARTITION=${MOKD_SLURM_PARTITION:-debug}
DB_PORT=${MOKD_SLURM_DB_PORT:-3307}
TIMEOUT=${MOKD_SLURM_TIMEOUT:-60}
DEBUG=${MOKD_SLURM_DEBUG:-info}
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
ETC_CONF=/etc/slurm/slurm.conf
MARKER="# written by mokd .ci/slurm/start.sh"

log() { echo "[slurm-start] $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    echo "start.sh must run as root (it starts munged, slurmctld, slurmd, slurmdbd, mariadbd)" >&2
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# Failure reporting: print the tails of every daemon log.
# ---------------------------------------------------------------------------------------------
dump_logs() {
    local f
    for f in "$STATE"/log/*.log "$STATE"/log/*.out "$STATE"/mysql/*.err; do
        [[ -s $f ]] || continue
        echo "----- tail -n 30 $f -----" >&2
        tail -n 30 "$f" >&2 || true
    done
}
fail() {
    echo "[slurm-start] ERROR: $*" >&2
    exit 1   # the EXIT trap prints the log tails
}
POLICY_CREATED=0
on_exit() {
    local rc=$?
    [[ $POLICY_CREATED -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    if [[ $rc -ne 0 ]]; then
        echo "[slurm-start] failed (exit $rc); daemon logs follow" >&2
        dump_logs
    fi
}
trap on_exit EXIT

# wait_for SECONDS DESCRIPTION CMD...: retry CMD every 0.5 s until it succeeds or time runs out.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            fail "timed out after ${secs}s waiting for: $what"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------------------------
pkgs_missing() {
    local p missing=()
    for p in "${PKGS[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    echo "${missing[@]:-}"
}

missing=$(pkgs_missing)
if [[ -n $missing ]]; then
    log "installing: $missing"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting services (munge, mariadb) that this
    # script would not track: a temporary policy-rc.d that denies every start.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_CREATED=1   # removed again by on_exit
    fi
    # Wait for the dpkg lock (another apt run) instead of failing at once.
    APT=(apt-get -q -o DPkg::Lock::Timeout=300)
    apt_install() { "${APT[@]}" install -y --no-install-recommends "${PKGS[@]}"; }
    if ! apt-cache show slurmctld >/dev/null 2>&1 || ! apt_install; then
        # No package lists yet, or stale ones (404): refresh and try once more.
        "${APT[@]}" update
        apt_install
    fi
    [[ -z $(pkgs_missing) ]] || fail "packages still missing after apt-get: $(pkgs_missing)"
fi

# ---------------------------------------------------------------------------------------------
# 2. State directory and configuration
# ---------------------------------------------------------------------------------------------
mkdir -p "$STATE"/{etc,log,pids,run,slurmctld,slurmd,munge,mysql}
chmod 755 "$STATE"
export SLURM_CONF=$STATE/etc/slurm.conf

HOST=$(hostname -s)
NODE_HW=$(slurmd -C | head -n 1)   # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 ...
hw() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$NODE_HW"; }
CPUS=$(hw CPUs)
BOARDS=$(hw Boards)
SOCKETS=$(hw SocketsPerBoard)
CORES=$(hw CoresPerSocket)
THREADS=$(hw ThreadsPerCore)
MEM_REPORTED=$(hw RealMemory)
[[ -n $CPUS && -n $CORES && -n $MEM_REPORTED ]] || fail "could not parse 'slurmd -C': $NODE_HW"
# More than what slurmd reports at registration marks the node invalid; 90 % leaves a margin.
MEM=${MOKD_SLURM_MEM_MB:-$((MEM_REPORTED * 90 / 100))}

# The DB password is created once per state directory.
if [[ ! -s $STATE/etc/db.pass ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/etc/db.pass")
fi
DB_PASS=$(cat "$STATE/etc/db.pass")

CONFIG_CHANGED=0
write_if_changed() {  # write stdin to $1 only when the content differs
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
    else
        [[ -f $1 ]] && CONFIG_CHANGED=1
        mv -f "$tmp" "$1"
    fi
}

write_if_changed "$STATE/etc/slurm.conf" <<EOF
$MARKER (state dir $STATE)
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job must wait before it may start again (Eligible
# time = requeue + cred_expire + 1 s; default 120 s).  10 s keeps requeue tests short.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=$DEBUG
SlurmdDebug=$DEBUG
# No cgroups / systemd here.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Look at pending jobs every few seconds (defaults: 30 s backfill, 60 s main loop), so that a
# requeued job starts soon after its BeginTime passes.
SchedulerParameters=bf_interval=2,sched_interval=5
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A node that was down (slurmd restarted) comes back by itself.
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 min (sacct has them for ever).
MinJobAge=300
# Batch jobs may be requeued (scontrol requeue, submitit's preemption handling).
JobRequeue=1
# Seconds between SIGTERM and SIGKILL when a job is killed (cancel, requeue, time limit).
KillWait=5
InactiveLimit=0
Waittime=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS Boards=${BOARDS:-1} SocketsPerBoard=${SOCKETS:-1} CoresPerSocket=$CORES ThreadsPerCore=${THREADS:-1} RealMemory=$MEM State=UNKNOWN
# Without DefMemPerCPU every job would take the whole node's memory.
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1000
EOF

write_if_changed "$STATE/etc/slurmdbd.conf" <<EOF
$MARKER (state dir $STATE)
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
DebugLevel=$DEBUG
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
# slurmdbd refuses a slurmdbd.conf readable by others.
chown root:root "$STATE/etc/slurmdbd.conf"
chmod 600 "$STATE/etc/slurmdbd.conf"

# Clients (sbatch, sacct, ... called by Snakemake and submitit) read the default path.
mkdir -p /etc/slurm
if [[ -e $ETC_CONF || -L $ETC_CONF ]] && [[ $(readlink -f "$ETC_CONF") != "$(readlink -f "$STATE/etc/slurm.conf")" ]]; then
    if ! grep -qF "$MARKER" "$ETC_CONF" 2>/dev/null && [[ ${MOKD_SLURM_FORCE_ETC:-0} != 1 ]]; then
        fail "$ETC_CONF exists and was not written by this script; set MOKD_SLURM_FORCE_ETC=1 to replace it"
    fi
fi
ln -sfn "$STATE/etc/slurm.conf" "$ETC_CONF"

cat >"$STATE/env.sh" <<EOF
# source this file to talk to the mokd CI SLURM cluster (state dir $STATE)
export SLURM_CONF=$STATE/etc/slurm.conf
export MOKD_SLURM_STATE=$STATE
export MOKD_SLURM_PARTITION=$PARTITION
EOF

# ---------------------------------------------------------------------------------------------
# 3. Daemons.  Each runs in the foreground (-D/-F), detached with setsid, so that $! is the
#    daemon's own PID; it is recorded in $STATE/pids/<name>.pid.
# ---------------------------------------------------------------------------------------------
# running NAME EXE: the recorded PID is alive and still runs EXE (guards against PID reuse).
running() {
    local pidfile=$STATE/pids/$1.pid pid
    [[ -s $pidfile ]] || return 1
    pid=$(cat "$pidfile")
    [[ -d /proc/$pid ]] || return 1
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$2" ]]
}

# launch NAME EXE [ARGS...]: start a daemon in the background and record its PID.
launch() {
    local name=$1; shift
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo $! >"$STATE/pids/$name.pid"
    log "started $name (pid $!)"
}

# check_alive NAME EXE: fail early (with logs) if a daemon died right after its start.
check_alive() {
    running "$1" "$2" || fail "$1 exited right after its start"
}

if [[ $CONFIG_CHANGED -eq 1 ]] && [[ -n $(ls -A "$STATE/pids" 2>/dev/null) ]]; then
    log "WARNING: the configuration changed; daemons that are already running keep the old one" \
        "(run .ci/slurm/stop.sh, then start.sh again, to apply it)"
fi

# --- munged --------------------------------------------------------------------------------
MUNGED=$(readlink -f /usr/sbin/munged)
chown munge:munge "$STATE/munge"
chmod 700 "$STATE/munge"
if [[ ! -s $STATE/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$STATE/munge/munge.key"
    else
        dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    fi
fi
chown munge:munge "$STATE/munge/munge.key"
chmod 400 "$STATE/munge/munge.key"
mkdir -p /run/munge
chown munge:munge /run/munge
chmod 755 /run/munge
if running munged "$MUNGED"; then
    log "munged already running"
elif timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
    log "a munged not started by this script answers on the default socket; using it"
else
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    launch munged setpriv --reuid=munge --regid=munge --init-groups \
        "$MUNGED" --foreground --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munge/munged.pid" \
        --seed-file="$STATE/munge/munged.seed" --socket=/run/munge/munge.socket.2
    wait_for "$TIMEOUT" "munged (munge -n | unmunge)" \
        bash -c 'timeout 5 munge -n | timeout 5 unmunge'
    check_alive munged "$MUNGED"
fi

# --- mariadbd ------------------------------------------------------------------------------
MARIADBD=$(readlink -f "$(command -v mariadbd || echo /usr/sbin/mariadbd)")
DB_SOCK=$STATE/mysql/mysqld.sock
DB_DATA=$STATE/mysql/data
chown mysql:mysql "$STATE/mysql"
db() { mariadb --no-defaults --protocol=socket --socket="$DB_SOCK" -uroot "$@"; }
if [[ ! -d $DB_DATA/mysql ]]; then
    log "initialising mariadb datadir $DB_DATA"
    rm -rf "$DB_DATA"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DATA" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$STATE/log/mariadb-install-db.log" 2>&1 \
        || fail "mariadb-install-db failed (see $STATE/log/mariadb-install-db.log)"
fi
if running mariadbd "$MARIADBD"; then
    log "mariadbd already running"
else
    launch mariadbd "$MARIADBD" --no-defaults --user=mysql --datadir="$DB_DATA" \
        --socket="$DB_SOCK" --pid-file="$STATE/mysql/mariadbd.pid" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$STATE/mysql/mariadbd.err" \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 --max-allowed-packet=64M
    wait_for "$TIMEOUT" "mariadbd (ping on $DB_SOCK)" \
        mariadb-admin --no-defaults --protocol=socket --socket="$DB_SOCK" -uroot ping
    check_alive mariadbd "$MARIADBD"
fi
# slurmdbd connects over TCP to 127.0.0.1 (with --skip-name-resolve, the host is '127.0.0.1').
db -e "
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;" || fail "could not create the slurm DB user"

# --- slurmdbd ------------------------------------------------------------------------------
SLURMDBD=$(readlink -f /usr/sbin/slurmdbd)
if running slurmdbd "$SLURMDBD"; then
    log "slurmdbd already running"
else
    # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF.
    launch slurmdbd "$SLURMDBD" -D
fi
wait_for "$TIMEOUT" "slurmdbd (sacctmgr list cluster)" timeout 10 sacctmgr -n -P list cluster
check_alive slurmdbd "$SLURMDBD"

# The cluster must be known to slurmdbd before slurmctld registers with it.
clusters=$(timeout 10 sacctmgr -n -P list cluster format=cluster) || fail "sacctmgr list cluster failed"
if ! grep -qx "$CLUSTER" <<<"$clusters"; then
    timeout 30 sacctmgr -i add cluster "$CLUSTER" >&2 || fail "sacctmgr add cluster $CLUSTER failed"
fi

# --- slurmctld, slurmd ---------------------------------------------------------------------
# Launch through /usr/sbin/slurmctld and /usr/sbin/slurmd, never through the files the Debian
# alternatives symlinks resolve to (slurmctld-wlm, slurmd-wlm): SLURM decides "am I slurmctld?"
# from the program name, and slurmctld-wlm started with an empty StateSaveLocation crashes
# (SIGSEGV in slurm_persist_msg_pack <- slurmdbd_agent_send <- acct_storage_p_flush_jobs_on_cluster,
# right after "Ending any jobs in accounting that were running when controller went down on").
SLURMCTLD=$(readlink -f /usr/sbin/slurmctld)   # for the PID check only (/proc/PID/exe)
SLURMD=$(readlink -f /usr/sbin/slurmd)
if running slurmctld "$SLURMCTLD"; then
    log "slurmctld already running"
else
    launch slurmctld /usr/sbin/slurmctld -D -f "$SLURM_CONF"
fi
wait_for "$TIMEOUT" "slurmctld (scontrol ping)" bash -c 'timeout 5 scontrol ping | grep -q UP'
check_alive slurmctld "$SLURMCTLD"
if running slurmd "$SLURMD"; then
    log "slurmd already running"
else
    launch slurmd /usr/sbin/slurmd -D -f "$SLURM_CONF" -N "$HOST"
fi

# ---------------------------------------------------------------------------------------------
# 4. Ready: the node is idle (or already running jobs) and sacct answers.
# ---------------------------------------------------------------------------------------------
node_ready() {
    local st
    st=$(timeout 5 sinfo -h -N -n "$HOST" -o '%T') || return 1
    case $st in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}
wait_for "$TIMEOUT" "node $HOST idle in sinfo" node_ready
check_alive slurmd "$SLURMD"
wait_for "$TIMEOUT" "sacct" timeout 10 sacct -n -X -S now-1minute

trap - EXIT
[[ $POLICY_CREATED -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
echo "SLURM ready: partition=$PARTITION cpus=$CPUS mem=$MEM"
