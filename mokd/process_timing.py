"""A `python -m mokd` process's overhead: one timing line on its log, and an exit without tear-down.

`install()` runs first thing in `mokd/__main__.py` (and in a submitit task, whose process does not go
through it). It notes when the process started (from /proc: interpreter start-up included), wraps
`builtins.__import__` to add up the wall and CPU time of every import made in the main thread
(outermost imports only: nested ones are inside them), and at exit prints

    [mokd] timing {"role": ..., "pid": ..., "start": ..., "entry": ..., "end": ..., "import_wall": ...}

to stderr, for `benchmarks/dag_cost.py`: start-up = (entry - start) + import_wall, the rest of
end - start is the command's work. CPU figures are `time.process_time()` (this process, all threads)
and `resource.getrusage(RUSAGE_CHILDREN)` (children waited for: DataLoader workers, a submitit task).

Only MOKD_TIMING=1 turns it on: the workflow sets it for its jobs (Snakefile), whose logs feed the
cost table; a user's command (`--help` included) prints no such line. Imports have no effect on
results: numbers are unchanged.

`fast_exit(code)` ends `python -m mokd` once its command has returned: it joins the other non-daemon
threads, runs the atexit handlers (the timing line, multiprocessing's clean-up of DataLoader workers,
temporary files, logging), flushes stdout and stderr, then leaves with `os._exit`, skipping the
interpreter's tear-down of every module (0.3 s after importing torch, about 0.85 s with timm and
torchvision, i.e. a third of a short job). Files are written with `with` blocks or mokd.atomic
(closed and fsynced before the command returns), so nothing is left in a buffer. MOKD_FAST_EXIT=0
exits the ordinary way.
"""

from __future__ import annotations

import atexit
import builtins
import json
import os
import resource
import sys
import threading
import time
from typing import Any, NoReturn

PREFIX = "[mokd] timing "

_state: dict[str, Any] = {}


def process_start_epoch() -> float | None:
    """Wall-clock time (epoch s) at which this process started, from /proc (10 ms steps); None elsewhere."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5)
    return time.time() - max(0.0, uptime - started_after_boot)


def install(role: str = "main") -> None:
    """Start accounting for this process (idempotent per process); the line is printed at exit."""
    if os.environ.get("MOKD_TIMING", "") != "1" or _state.get("pid") == os.getpid():
        return
    entry = time.time()
    _state.clear()
    _state.update(
        role=role, pid=os.getpid(), argv=sys.argv[1:2], start=process_start_epoch(), entry=entry,
        entry_cpu=time.process_time(), import_wall=0.0, import_cpu=0.0, depth=0,
        main_thread=threading.get_ident(),
    )
    original = builtins.__import__

    def timed_import(*args: Any, **kwargs: Any) -> Any:
        if _state.get("depth") is None or threading.get_ident() != _state["main_thread"]:
            return original(*args, **kwargs)
        outermost = _state["depth"] == 0
        if outermost:
            w0, c0 = time.perf_counter(), time.process_time()
        _state["depth"] += 1
        try:
            return original(*args, **kwargs)
        finally:
            _state["depth"] -= 1
            if outermost:
                _state["import_wall"] += time.perf_counter() - w0
                _state["import_cpu"] += time.process_time() - c0

    builtins.__import__ = timed_import
    atexit.register(_report)


def record() -> dict[str, Any]:
    """The figures so far, as the exit line writes them."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    keys = ("role", "pid", "argv", "start", "entry", "entry_cpu", "import_wall", "import_cpu")
    out = {k: _state[k] for k in keys}
    out.update(end=time.time(), cpu=time.process_time(), children_cpu=children.ru_utime + children.ru_stime)
    return out


def _report() -> None:
    if _state.get("pid") != os.getpid():  # a forked child that runs atexit handlers is not this process
        return
    try:
        print(PREFIX + json.dumps(record()), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr already closed
        pass


def fast_exit(code: Any = 0) -> NoReturn:
    """Exit with `code` (as `sys.exit` reads it) without the interpreter's tear-down; see above."""
    if os.environ.get("MOKD_FAST_EXIT", "") == "0":
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
