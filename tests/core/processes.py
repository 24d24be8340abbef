"""`python -m mokd pretrain` as a child process for the tests: started, awaited with a bound, and
states polled with a bound (never a fixed sleep)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def pretrain(config: Path, out: Path, *extra: str, **popen: Any) -> subprocess.Popen:
    """`python -m mokd pretrain --config CONFIG --out OUT EXTRA...`, stderr merged into stdout."""
    cmd = [sys.executable, "-m", "mokd", "pretrain", "--config", str(config), "--out", str(out), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    """Its exit status and output; killed (and the test failed) after `timeout` seconds."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"pretrain did not finish within {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll `predicate` until it returns something true (returned); fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value
