"""Callables that the tests in tests/slurm run as submitit jobs on the SLURM cluster.

They are pickled by value (see test_cluster.py), so the job does not need to import this
module: it runs whatever the working directory of the submitting process is.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import submitit


def describe(x: int) -> dict:
    """A plain function: returns its result together with where it ran."""
    return {
        "square": x * x,
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "cpus": os.environ.get("SLURM_CPUS_PER_TASK"),
        "mem_per_node": os.environ.get("SLURM_MEM_PER_NODE"),
        "host": socket.gethostname(),
    }


class ProgressCounter(submitit.helpers.Checkpointable):
    """Sums i*i for i < n_steps, one step every step_s seconds, logging progress to a file.

    The state lives in ``self.state = (next_step, partial_sum)``, replaced as one tuple so that
    a checkpoint taken by submitit's signal handler (between two bytecodes) is consistent.
    After a checkpoint + requeue, the job starts again from the pickled ``self``.
    """

    def __init__(self, progress_file: str, n_steps: int, step_s: float) -> None:
        self.progress_file = progress_file
        self.n_steps = n_steps
        self.step_s = step_s
        self.state = (0, 0)

    def _log(self, line: str) -> None:
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        with Path(self.progress_file).open("a") as f:
            f.write(f"{line} restart={restarts} pid={os.getpid()}\n")

    def __call__(self) -> int:
        self._log(f"start step={self.state[0]}")
        while self.state[0] < self.n_steps:
            step, total = self.state
            time.sleep(self.step_s)
            self.state = (step + 1, total + step * step)
            self._log(f"step {step}")
        self._log("done")
        return self.state[1]

    def checkpoint(self, *args, **kwargs):
        # Called by submitit's handler of the preemption/timeout signal (SIGUSR2).
        self._log(f"checkpoint step={self.state[0]}")
        return super().checkpoint(*args, **kwargs)
