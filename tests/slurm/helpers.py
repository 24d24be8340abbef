"""Helpers for the SLURM tests: bounded subprocess calls and bounded waits."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Callable, Sequence

#: Upper bound for one wait on the cluster (a job to start, finish, be requeued...).
WAIT_S = float(os.environ.get("MOKD_SLURM_WAIT_S", "120"))


def run(cmd: Sequence[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    """Run a SLURM client command with a hard time limit; raise with its output on failure."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(cmd)!r} did not return within {timeout} s") from exc
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)!r} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT_S, poll: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; fail (not hang) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


#: sacct states of a run that has ended (a requeued run is REQUEUED, then the job runs again).
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def recorded_state(job_id: str) -> str:
    """The state sacct records for the job's last run ('' before slurmdbd knows the job)."""
    lines = run(["sacct", "-j", job_id, "-D", "-X", "-n", "-P", "-o", "State"]).stdout.split("\n")
    states = [ln.split()[0] for ln in lines if ln.strip()]  # "CANCELLED by 0" -> "CANCELLED"
    return states[-1] if states else ""


def wait_recorded_end(job_id: str, timeout: float = WAIT_S) -> str:
    """The final state of the job's last run, once sacct records it. A job's result file (or the
    launcher's exit) comes before slurmdbd records the job's end, by a moment that grows with the
    machine's load: read sacct's history only after this."""
    return wait_until(
        lambda: (s := recorded_state(job_id)) in TERMINAL and s, f"sacct to record the end of job {job_id}",
        timeout=timeout,
    )
