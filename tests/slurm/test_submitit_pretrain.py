"""`python -m mokd pretrain --launcher slurm` on the real SLURM cluster (mokd/launch.py).

* A tiny pre-training submitted through submitit gets the preemption signal mid-run
  (``scancel --signal=USR2 <jobid>``, what SLURM sends ``signal_delay_s`` before a time limit):
  the job saves its checkpoint after the current step, submitit requeues it (same job id; sacct -D
  shows a REQUEUED run, then a COMPLETED one), and the second run resumes from checkpoint.pt to
  exactly the weights of an uninterrupted in-process run.
* A pre-training that fails on SLURM with an expected error (a config that only fails on the node)
  makes the launching command print that error on one line, name the job and its log, and exit with
  the error's code (mokd/cli.py), without a traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.core.test_launch import assert_same_weights
from tests.core.tiny import PAIRS, tiny_config

from .helpers import WAIT_S, run, wait_recorded_end, wait_until

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def write_tiny(path: Path, fashion_root: Path, **overrides: object) -> Path:
    settings = {"epochs": 3, "batch_size": 8, "checkpoint_every_iters": 4,
                "data": {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 8}, **overrides}
    path.write_text(yaml.safe_dump(tiny_config(PAIRS["cnn_vit"](), fashion_root, **settings)))
    return path


def pretrain(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mokd", "pretrain", "--config", str(config), "--out", str(out), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # the launcher; its SLURM job is cancelled by the test below
        out, _ = proc.communicate()
        raise AssertionError(f"did not finish within {timeout} s:\n{out[-4000:]}")
    return proc.returncode, out


def job_id_of(out: Path) -> str | None:
    record = out / "submitit" / "job.json"
    return json.loads(record.read_text())["job_id"] if record.is_file() else None


def steps(out: Path) -> int:
    log = out / "log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def sacct_history(job_id: str) -> list[str]:
    out = run(["sacct", "-j", job_id, "-D", "-n", "-P", "-o", "JobID,JobName,State,ExitCode,Start,End"]).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def launch_args(partition: str) -> list[str]:
    return ["--launcher", "slurm", "--partition", partition, "--timeout-min", "60", "--mem-gb", "2",
            "--cpus-per-task", "1", "--poll-max-s", "2"]


def test_requeued_pretraining_resumes_to_the_same_weights(slurm_cluster, fashion_root: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    config = write_tiny(tmp_path / "tiny.yaml", fashion_root)
    job = pretrain(config, tmp_path / "slurm", *launch_args(slurm_cluster.partition))
    job_id, rc = None, None
    try:
        job_id = wait_until(lambda: job_id_of(tmp_path / "slurm"), "the job to be submitted")
        wait_until(lambda: steps(tmp_path / "slurm") >= 3, f"job {job_id} to train 3 steps", poll=0.2)
        run(["scancel", "--signal=USR2", job_id])  # preemption / time-limit signal, as SLURM sends it
        reference = pretrain(config, tmp_path / "inprocess")  # meanwhile: the uninterrupted run, here
        rc, out = finish(job, timeout=2 * WAIT_S)
        assert finish(reference, timeout=WAIT_S)[0] == 0
    finally:
        if job.poll() is None:
            job.kill()
        if job_id and rc != 0:
            run(["scancel", job_id], check=False)
    assert rc == 0, out[-4000:]
    # The launcher returns once the result is written; SLURM records the end a moment later.
    assert wait_recorded_end(job_id) == "COMPLETED"
    history = sacct_history(job_id)
    m = re.search(r"caught SIGUSR2: saving a checkpoint at step (\d+)", out)
    assert m, out[-4000:]
    stopped = int(m.group(1))
    total = json.loads((tmp_path / "slurm" / "summary.json").read_text())["steps"]
    print(f"\n--launcher slurm, SLURM job {job_id} ({time.monotonic() - t0:.0f} s), requeued at step {stopped} "
          f"of {total}; sacct -D:\n" + "\n".join(history))
    assert 3 <= stopped < total, (stopped, total)
    assert f"resuming at step {stopped}" in out and "restart 1" in out
    assert f"SLURM job {job_id} finished" in out
    alloc = [ln.split("|") for ln in history if ln.split("|")[0] == job_id]
    assert [a[2] for a in alloc] == ["REQUEUED", "COMPLETED"], history
    assert assert_same_weights(tmp_path / "inprocess", tmp_path / "slurm") > 100


def test_failed_pretraining_job_is_reported(slurm_cluster, fashion_root: Path, tmp_path: Path) -> None:
    """A setting that only fails when the job runs (device=cuda on a node without GPU)."""
    config = write_tiny(tmp_path / "tiny.yaml", fashion_root, device="cuda")
    rc, out = finish(pretrain(config, tmp_path / "job", *launch_args(slurm_cluster.partition)), timeout=WAIT_S)
    print("\n" + "\n".join(ln for ln in out.splitlines() if re.match(r"\[mokd\] (error|SLURM)|error: ", ln)))
    assert rc == 2, out[-3000:]  # a config error, caught in the job (mokd/cli.py's exit codes)
    job_id = job_id_of(tmp_path / "job")
    assert [ln for ln in out.splitlines() if ln.startswith("error: ")] == [
        "error: config key 'device': cuda requested but no GPU is visible"], out[-3000:]
    assert f"SLURM job {job_id} stopped on an error; job log {tmp_path / 'job' / 'submitit'}/{job_id}_0_log.err" in out
    assert "Traceback" not in out, out[-3000:]
