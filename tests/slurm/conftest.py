"""Fixtures for the tests that need a real SLURM cluster (tests/slurm).

``slurm_cluster`` (session scope) makes sure that ``sbatch``/``sinfo``/``sacct`` answer:

* if they do already (a cluster is running, e.g. started by ``.ci/slurm/start.sh`` in an
  earlier CI step), it is used as it is;
* otherwise, with ``MOKD_START_SLURM=1``, it runs ``.ci/slurm/start.sh`` and, at the end of the
  session, ``.ci/slurm/stop.sh`` (only if it started the cluster itself);
* if SLURM is still unusable, the tests are skipped with the precise reason, or they fail
  when ``MOKD_REQUIRE_SLURM=1`` (set it in CI so that a broken cluster cannot look green).

Every test collected under tests/slurm gets the ``slurm`` marker (``-m "not slurm"`` skips them).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
START = REPO / ".ci" / "slurm" / "start.sh"
STOP = REPO / ".ci" / "slurm" / "stop.sh"


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    partition: str
    nodes: str
    started_here: bool


def _probe() -> tuple[Optional[SlurmCluster], str]:
    """Return (cluster, "") if sbatch, sinfo and sacct work, else (None, reason)."""
    for exe in ("sbatch", "sinfo", "sacct", "scontrol"):
        if shutil.which(exe) is None:
            return None, f"'{exe}' is not on PATH"
    try:
        # Fails at once when slurmctld is down (sinfo would retry for about 9 s first).
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return None, "'scontrol ping' did not answer within 15 s"
    if ping.returncode != 0:
        first = (ping.stdout.strip() or ping.stderr.strip()).splitlines()[:1]
        return None, f"'scontrol ping' failed ({ping.returncode}): {' '.join(first)}"
    try:
        info = subprocess.run(
            ["sinfo", "-h", "-o", "%P|%a|%T|%N"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return None, "'sinfo' did not answer within 15 s (slurmctld down?)"
    if info.returncode != 0:
        return None, f"'sinfo' failed ({info.returncode}): {info.stderr.strip() or info.stdout.strip()}"
    partitions = [line.split("|") for line in info.stdout.splitlines() if line.strip()]
    if not partitions:
        return None, "'sinfo' shows no partition"
    default = next((p for p in partitions if p[0].endswith("*")), partitions[0])
    name, avail, state, nodes = default[0].rstrip("*"), default[1], default[2], default[3]
    if avail != "up":
        return None, f"partition {name} is {avail}"
    usable = {"idle", "mixed", "allocated", "completing"}
    if not any(p[2] in usable for p in partitions if p[0].rstrip("*") == name):
        return None, f"no usable node in partition {name} (state {state})"
    try:
        acct = subprocess.run(
            ["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return None, "'sacct' did not answer within 20 s (slurmdbd down?)"
    if acct.returncode != 0:
        return None, f"'sacct' failed (no accounting/slurmdbd?): {acct.stderr.strip()}"
    return SlurmCluster(partition=name, nodes=nodes, started_here=False), ""


def _unusable(reason: str) -> None:
    if os.environ.get("MOKD_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM not available (MOKD_REQUIRE_SLURM=1): {reason}", pytrace=False)
    pytest.skip(f"SLURM not available: {reason}")


def _stop() -> None:
    proc = subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        print(f"{STOP} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


@pytest.fixture(scope="session")
def slurm_cluster():
    cluster, reason = _probe()
    started = False
    if cluster is None and os.environ.get("MOKD_START_SLURM") == "1":
        started = True  # even a failed start may leave daemons behind: always run stop.sh
        try:
            # 900 s: the first run installs the Debian packages.
            proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            _stop()
            _unusable(f"{START} did not finish within 900 s (before it: {reason})")
        if proc.returncode != 0:
            _stop()
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            _unusable(f"{START} failed with exit {proc.returncode} (before it: {reason}):\n{tail}")
        cluster, reason = _probe()
        if cluster is not None:
            cluster = dataclasses.replace(cluster, started_here=True)
    if cluster is None:
        if started:
            _stop()
        hint = "" if os.environ.get("MOKD_START_SLURM") == "1" else \
            " (set MOKD_START_SLURM=1 to start one with .ci/slurm/start.sh)"
        _unusable(reason + hint)
    try:
        yield cluster
    finally:
        if started:
            _stop()


def pytest_collection_modifyitems(config, items):
    # Hooks of a conftest see every collected item: mark only those below this directory.
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slurm)
