#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by .ci/slurm/start.sh.
#
# Kills exactly the daemons whose PIDs start.sh recorded in $STATE/pids/ (never by name):
# SIGTERM, then SIGKILL after a bounded wait.  Jobs still in the queue are cancelled first so
# that no job step (slurmstepd) outlives the cluster.  Safe to run twice, or with nothing running.
#
#   MOKD_SLURM_STATE   state directory (default /tmp/mokd-slurm)
#   MOKD_SLURM_STOP_WAIT  seconds to wait after SIGTERM before SIGKILL (default 20)
set -uo pipefail

STATE=${MOKD_SLURM_STATE:-/tmp/mokd-slurm}
WAIT=${MOKD_SLURM_STOP_WAIT:-20}
PIDDIR=$STATE/pids

log() { echo "[slurm-stop] $*" >&2; }

if [[ ! -d $PIDDIR ]] || [[ -z $(ls -A "$PIDDIR" 2>/dev/null) ]]; then
    log "nothing to stop (no PID files in $PIDDIR)"
    exit 0
fi

alive() { [[ -n $1 && -d /proc/$1 ]] && [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]]; }
pid_of() { [[ -s $PIDDIR/$1.pid ]] && cat "$PIDDIR/$1.pid"; }

# Cancel remaining jobs while slurmctld and slurmd still run, so their steps end cleanly.
if alive "$(pid_of slurmctld)" && [[ -f $STATE/etc/slurm.conf ]]; then
    export SLURM_CONF=$STATE/etc/slurm.conf
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        deadline=$((SECONDS + WAIT))
        while ((SECONDS < deadline)) && [[ -n $(timeout 5 squeue -h -t R,CG -o %A 2>/dev/null) ]]; do
            sleep 0.5
        done
    fi
fi

# stop NAME: TERM the recorded PID, wait, then KILL; remove the PID file.
stop_one() {
    local name=$1 pid deadline
    pid=$(pid_of "$name") || { rm -f "$PIDDIR/$name.pid"; return 0; }
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        deadline=$((SECONDS + WAIT))
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
        if alive "$pid"; then
            log "$name (pid $pid) ignored SIGTERM for ${WAIT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 0.5
        fi
        if alive "$pid"; then log "WARNING: $name (pid $pid) is still alive"; return 1; fi
        log "stopped $name (pid $pid)"
    else
        log "$name (pid $pid) was not running"
    fi
    rm -f "$PIDDIR/$name.pid"
}

rc=0
# Reverse start order; then anything else recorded there.
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    [[ -e $PIDDIR/$name.pid ]] && { stop_one "$name" || rc=1; }
done
for f in "$PIDDIR"/*.pid; do
    [[ -e $f ]] || continue
    stop_one "$(basename "$f" .pid)" || rc=1
done
exit $rc
