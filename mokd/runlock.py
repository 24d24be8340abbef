"""One writer per run folder: a lock that the training process holds for as long as it trains.

`RunLock(run_dir).acquire()` takes an exclusive `flock` on `run_dir/run.lock` and writes into that
file who holds it (pid, host, SLURM job id, since when). The kernel releases the lock when the process
ends, however it ends (kill -9, out of memory, a node reboot once its NFS lease expires), so a lock
left by a dead training never blocks a rerun, and there is nothing to clean up by hand. A second start
that finds the lock held fails with `RunLockedError` naming the holder, or, asked to (`wait=True`),
waits until the holder ends; a requeued run of the same SLURM job always waits for its earlier run.

`holder(run_dir)` says who holds a run's lock without taking it (the launcher asks before it submits
a job). On a file system without locks (Lustre mounted without `flock`) the lock is skipped with a
warning: two trainings of one run would then not be noticed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_NAME = "run.lock"
NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class RunLockedError(RuntimeError):
    """Another process is training in this run folder; the message names it and what to do."""


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock, as it wrote itself into the lock file."""

    pid: int
    host: str
    slurm_job_id: str | None = None
    since: str | None = None

    @classmethod
    def this_process(cls) -> "Holder":
        from mokd.provenance import now

        return cls(os.getpid(), socket.gethostname(), os.environ.get("SLURM_JOB_ID") or None, now())

    def describe(self) -> str:
        job = f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else ""
        since = f", since {self.since}" if self.since else ""
        return f"pid {self.pid} on host {self.host}{job}{since}"

    def stop_hint(self) -> str:
        kill = f"kill {self.pid} on {self.host}"
        return f"scancel {self.slurm_job_id} or {kill}" if self.slurm_job_id else kill


def _open(path: Path) -> tuple[int, bool]:
    """The lock file, read-write where allowed (a run of another user may only be readable); created
    with the mode open() gives it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:
        return os.open(path, os.O_RDONLY), False


def _try_lock(fd: int, operation: int) -> bool | None:
    """True when taken, False when another process holds it, None when the file system has no locks."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in NO_LOCKS:
            return None
        raise


def read_holder(path: Path) -> Holder | None:
    """The holder the lock file names (None if it names none: being written, or never written)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), data.get("slurm_job_id"), data.get("since"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def holder(run_dir: str | Path) -> Holder | None:
    """Who holds `run_dir`'s lock now, or None when nobody does (the lock is not taken)."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        taken = _try_lock(fd, fcntl.LOCK_SH)  # a shared lock conflicts only with a training's
        if taken is not False:
            return None
    finally:
        os.close(fd)  # releases the probe's shared lock
    return read_holder(path) or Holder(-1, "an unknown host")


def locked_message(run_dir: str | Path, who: Holder) -> str:
    return (f"run folder {run_dir} is in use by another training ({who.describe()}): two trainings must not "
            f"write one run. Wait for it to end (or run again with --wait-for-run), or stop it ({who.stop_hint()}) "
            "and run again: the run resumes from its checkpoint")


def log(message: str) -> None:
    print(f"[mokd] {message}", file=sys.stderr, flush=True)


class RunLock:
    """The lock of one run folder (module docstring); released by `release()`, at the end of a `with`
    block, or by the kernel when the process ends."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, wait: bool = False, notify: Callable[[str], None] = log) -> "RunLock":
        """Take the lock; if another process holds it, raise RunLockedError, or wait for it when `wait`
        (or when the holder is an earlier run of this SLURM job). `notify` gets the waiting message."""
        fd, writable = _open(self.path)
        try:
            taken = None
            for _ in range(3):  # a probe (holder()) holds a shared lock for an instant
                taken = _try_lock(fd, fcntl.LOCK_EX)
                if taken is not False:
                    break
                time.sleep(0.2)
            if taken is None:
                notify(f"warning: {self.path.parent}'s file system has no file locks: a second training of this "
                       "run would not be noticed")
            elif not taken:
                who = read_holder(self.path) or Holder(-1, "an unknown host")
                same_job = who.slurm_job_id is not None and who.slurm_job_id == os.environ.get("SLURM_JOB_ID")
                if not (wait or same_job):
                    raise RunLockedError(locked_message(self.run_dir, who))
                notify(f"run folder {self.run_dir} is in use by another training ({who.describe()}): waiting "
                       "for it to end")
                fcntl.flock(fd, fcntl.LOCK_EX)
            if writable:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(asdict(Holder.this_process())).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases its lock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def training_lock(run_dir: str | Path, wait: bool = False, main: bool = True) -> AbstractContextManager[object]:
    """The run's lock, taken now, for a `with` block around the training; nothing for the other ranks of a
    distributed run (their rank 0 holds it)."""
    return RunLock(run_dir).acquire(wait) if main else contextlib.nullcontext()
