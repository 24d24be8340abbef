"""Ctrl-C of `snakemake` during a pre-training, then a rerun, at the test scale.

Snakemake runs in its own process group, as a job-control shell starts a foreground job, and gets
SIGINT on that whole group, which is what Ctrl-C does. Finished results must stay untouched, no
process of the group may keep training, no incomplete export may be left looking complete, and the
rerun must finish, resuming the interrupted pre-training from its checkpoint, with every step in
its log.jsonl once.

The moment of the Ctrl-C is a state, not a time: the group is stopped (SIGSTOP, as Ctrl-Z would),
and interrupted only when the stopped run has logged a step after its last checkpoint (a step the
rerun trains again); otherwise it is continued and the state polled again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.workflow.smk import REPO, SNAKEMAKE, snakemake, write_config

FINISHED = "dino_r18"  # pre-trained before the interrupted run, and a target of it again
INTERRUPTED = "mokd_r50_r18"  # a pair: two teachers to export
EPOCHS = 30  # 2 steps per epoch at the test scale; a checkpoint at each epoch end only (below)
BOUND_S = 900  # generous bound of every wait: CI shares 2 cores with other jobs


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = BOUND_S) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.05)


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: (mtime in ns, sha256 of the content)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def group_members(pgid: int) -> list[str]:
    """The live (not zombie) processes of a process group, as 'pid command'."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        state, _ppid, pgrp = text[text.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(text[: text.rindex(")") + 1] + f" {state}")
    return members


def logged_steps(run_dir: Path) -> list[int]:
    """The steps of the complete records in a run's log.jsonl (a line being written is not one)."""
    log = run_dir / "log.jsonl"
    return [json.loads(line)["step"] for line in log.read_text().split("\n")[:-1]] if log.exists() else []


def ctrl_c_when(pgid: int, ready: Callable[[], bool], running: Callable[[], bool]) -> None:
    """SIGINT to the process group at a state: stop the group, check `ready` on the stopped state,
    then SIGINT and continue it (the SIGINT arrives first); if not ready, continue and poll again."""
    while True:
        wait_for(lambda: ready() or not running(), "pre-training in progress")
        assert running(), "snakemake ended before it could be interrupted"
        os.killpg(pgid, signal.SIGSTOP)
        wait_for(lambda: all(m.endswith((" T", " t")) for m in group_members(pgid)), "stopped process group")
        if ready():
            os.killpg(pgid, signal.SIGINT)
            os.killpg(pgid, signal.SIGCONT)
            return
        os.killpg(pgid, signal.SIGCONT)


@pytest.mark.slow
def test_ctrl_c_during_pretraining_keeps_finished_results_and_rerun_resumes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cfg = write_config(tmp_path / "c.yaml", "config/test.yaml", results,
                       experiments={INTERRUPTED: {"epochs": EPOCHS, "checkpoint_every_iters": 1000}})
    finished, target = (results / "pretrain" / run / "seed0" / "export" for run in (FINISHED, INTERRUPTED))
    run_dir = target.parent
    out = snakemake(str(finished), "--cores", "1", "--configfile", str(cfg), timeout=BOUND_S)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    before = snapshot(results)
    assert "pretrain/dino_r18/seed0/export/summary.json" in before

    console = tmp_path / "interrupted.log"
    with console.open("w") as stream:
        # A job-control shell runs a foreground job with SIGINT at its default, even where this test
        # runner inherited it ignored (a background job of a non-interactive shell, as CI may start it).
        proc = subprocess.Popen([SNAKEMAKE, str(finished), str(target), "--cores", "1", "--configfile", str(cfg)],
                                cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pgid = proc.pid
    try:
        seen: list[int] = []

        def past_checkpoint() -> bool:
            """In progress, one step past a checkpoint: an odd number of records, steps 0..2j with j >= 1
            (the checkpoint holds step 2j, the end of epoch j-1; step 2j is logged and not in it)."""
            seen[:] = logged_steps(run_dir)
            return len(seen) >= 3 and len(seen) % 2 == 1

        ctrl_c_when(pgid, past_checkpoint, lambda: proc.poll() is None)
        checkpointed = seen[-1]
        rc = proc.wait(timeout=BOUND_S)
        wait_for(lambda: not group_members(pgid), "end of every process of the interrupted run")
    finally:
        if group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()
    log = console.read_text()
    assert rc != 0, log[-3000:]
    assert snapshot(results).items() >= before.items(), "a finished result changed"
    # The export is the declared output of the interrupted job: gone, not left half-written.
    assert not target.exists(), f"{sorted(p.name for p in target.iterdir())}\n{log[-3000:]}"
    assert (run_dir / "checkpoint.pt").exists(), "the resume checkpoint is kept"

    out = snakemake(str(finished), str(target), "--cores", "1", "--configfile", str(cfg), timeout=BOUND_S)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert snapshot(results).items() >= before.items(), "the rerun changed a finished result"
    summary = json.loads((target / "summary.json").read_text())
    assert summary["steps"] == 2 * EPOCHS
    assert sorted(p.name for p in target.glob("teacher_*.pt")) == ["teacher_r18.pt", "teacher_r50.pt"]
    rerun_log = (results / "logs" / "pretrain" / INTERRUPTED / "seed0.log").read_text()
    resumed = re.search(r"resuming at step (\d+)", rerun_log)
    assert resumed and int(resumed.group(1)) == checkpointed, rerun_log[-3000:]
    assert logged_steps(run_dir) == list(range(2 * EPOCHS)), "log.jsonl: a step missing or logged twice"
