"""One writer per run folder (mokd/runlock.py): the training process holds the folder's lock; a second
training fails naming it (exit code 8) or waits for it; the kernel releases the lock of a killed one.
Every wait polls a state with a bound, never a fixed sleep."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mokd import runlock
from mokd.runlock import RunLock, RunLockedError
from tests.core.processes import REPO, finish, pretrain, wait_for
from tests.core.tiny import PAIRS, tiny_config

# A process that takes the lock of the folder argv[1], says so, and holds it until killed.
HOLD = ("import sys; from mokd.runlock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
        "sys.stdin.read()")


@pytest.fixture
def other_holder(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the lock of tmp_path/run (killed with SIGKILL at the end)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def test_a_held_run_is_refused_naming_its_holder(tmp_path: Path, other_holder: subprocess.Popen) -> None:
    run = tmp_path / "run"
    who = runlock.holder(run)
    assert who is not None and (who.pid, who.host) == (other_holder.pid, socket.gethostname())
    with pytest.raises(RunLockedError) as err:
        RunLock(run).acquire()
    message = str(err.value)
    assert f"run folder {run} is in use by another training (pid {other_holder.pid} on host {socket.gethostname()}" \
        in message
    assert "--wait-for-run" in message and f"kill {other_holder.pid}" in message


def test_the_lock_of_a_killed_holder_is_free(tmp_path: Path, other_holder: subprocess.Popen) -> None:
    other_holder.send_signal(signal.SIGKILL)  # kill -9: no clean-up code runs
    other_holder.wait(timeout=30)
    assert runlock.holder(tmp_path / "run") is None
    with RunLock(tmp_path / "run").acquire() as lock:
        assert runlock.read_holder(lock.path).pid == os.getpid()
        assert runlock.holder(tmp_path / "run").pid == os.getpid()
    assert runlock.holder(tmp_path / "run") is None  # released at the end of the block


def test_a_second_start_may_wait_for_the_first(tmp_path: Path, other_holder: subprocess.Popen) -> None:
    waiting = threading.Event()
    acquired: list[RunLock] = []
    thread = threading.Thread(
        target=lambda: acquired.append(RunLock(tmp_path / "run").acquire(wait=True, notify=lambda _: waiting.set())))
    thread.start()
    assert waiting.wait(timeout=60)
    assert not acquired and thread.is_alive()
    other_holder.kill()
    thread.join(timeout=60)
    assert acquired and runlock.holder(tmp_path / "run").pid == os.getpid()
    acquired[0].release()


def test_a_requeued_run_of_the_same_slurm_job_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert holder.stdout.readline().strip() == "held"
    assert runlock.holder(tmp_path / "run").slurm_job_id == "4321"
    messages: list[str] = []
    thread = threading.Thread(target=lambda: RunLock(tmp_path / "run").acquire(notify=messages.append).release())
    thread.start()
    wait_for(lambda: messages, "the waiting message")
    assert "SLURM job 4321" in messages[0] and "waiting for it to end" in messages[0]
    holder.kill()
    holder.wait(timeout=30)
    thread.join(timeout=60)
    assert not thread.is_alive()


# ------------------------------------------------------------------------------- the pretrain command
def _config(fashion_root: Path, path: Path, epochs: int) -> Path:
    cfg = tiny_config(PAIRS["dino"](), fashion_root, epochs=epochs, batch_size=8, checkpoint_every_iters=4,
                      data={"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 8})
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("launcher", ["inprocess", "submitit-local"])
def test_pretrain_in_a_held_run_folder_fails_with_exit_code_8(fashion_root: Path, tmp_path: Path, launcher: str,
                                                              other_holder: subprocess.Popen) -> None:
    config = _config(fashion_root, tmp_path / "tiny.yaml", epochs=1)
    rc, out = finish(pretrain(config, tmp_path / "run", "--launcher", launcher))
    assert rc == 8, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert errors == [runlock.locked_message(tmp_path / "run", runlock.holder(tmp_path / "run")).join(["error: ", ""])]
    assert not (tmp_path / "run" / "log.jsonl").exists()
    assert not list((tmp_path / "run").glob("submitit/*.pkl"))  # no job submitted


def test_a_launched_training_waits_for_the_holder_when_asked(fashion_root: Path, tmp_path: Path,
                                                            other_holder: subprocess.Popen) -> None:
    config = _config(fashion_root, tmp_path / "tiny.yaml", epochs=1)
    log = tmp_path / "launcher.log"
    with log.open("w") as out:
        job = subprocess.Popen([sys.executable, "-m", "mokd", "pretrain", "--config", str(config), "--out",
                                str(tmp_path / "run"), "--launcher", "submitit-local", "--wait-for-run"],
                               cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: "waiting for it to end" in log.read_text(), "the launcher to wait")
        assert job.poll() is None and not list((tmp_path / "run").glob("submitit/*.pkl"))  # nothing submitted yet
        other_holder.kill()
        assert finish(job)[0] == 0, log.read_text()[-3000:]
    assert f"in use by another training (pid {other_holder.pid} on host" in log.read_text()
    assert (tmp_path / "run" / "teacher_cnn.pt").is_file()


@pytest.mark.slow
def test_a_second_training_of_a_running_local_job_is_refused(fashion_root: Path, tmp_path: Path) -> None:
    """The issue's case: a local submitit job still trains (its Snakemake was killed with -9); the same
    command again must not start a second writer of log.jsonl and checkpoint.pt."""
    config = _config(fashion_root, tmp_path / "tiny.yaml", epochs=12)
    first = pretrain(config, tmp_path / "run", "--launcher", "submitit-local")
    log = tmp_path / "run" / "log.jsonl"
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, "the first job to train")
    task = runlock.holder(tmp_path / "run")
    assert task is not None and task.pid != first.pid  # the training task holds it, not the launcher
    rc, out = finish(pretrain(config, tmp_path / "run", "--launcher", "submitit-local"))
    assert rc == 8 and f"is in use by another training (pid {task.pid} on host {socket.gethostname()}" in out, \
        out[-3000:]
    rc, out = finish(first)
    assert rc == 0, out[-3000:]
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == sorted(set(steps)) and re.search(r"local submitit job \d+ finished", out)
    waited = pretrain(config, tmp_path / "again", "--wait-for-run")  # a free folder: no waiting
    assert finish(waited)[0] == 0
