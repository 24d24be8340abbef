"""End-to-end tests against a real SLURM cluster (see .ci/slurm/start.sh and conftest.py).

How a submitit job gets checkpointed and requeued (checked here on SLURM 22.05 + submitit 1.5):

* submitit's job installs handlers: SIGUSR2 -> ``checkpoint()`` of a Checkpointable, dump of
  the new state, ``scontrol requeue <jobid>`` from inside the job, exit; SIGTERM and SIGCONT are
  only logged ("Bypassing signal SIGTERM").  The signal name comes from env
  SUBMITIT_PREEMPT_SIGNAL (default USR2).
* On a real cluster SLURM sends that signal ``slurm_signal_delay_s`` (default 90) seconds before
  the time limit (sbatch ``--signal=USR2@90``, to the job steps, with up to 60 s of jitter), or a
  preemption sends SIGTERM.  Time-limit signals are too coarse for a quick test, so the test
  sends the same signal itself: ``scancel --signal=USR2 <jobid>`` (to the job steps, where
  submitit runs under srun), exactly what submitit's ``job._interrupt()`` does (it sends SIGTERM
  first, which submitit ignores).  That exercises submitit's checkpoint hook and SLURM's real
  requeue (the job keeps its ID; sacct -D shows the REQUEUED run, then the COMPLETED one).
* A plain ``scontrol requeue <jobid>`` from outside does NOT call ``checkpoint()``: SLURM sends
  SIGCONT + SIGTERM (ignored by submitit), then SIGKILL after KillWait; the job then restarts
  from the pickle written at submission, i.e. from scratch (test_external_requeue...).
* A requeued job may start again only after ``cred_expire`` + 1 s (AuthInfo, default 120 s;
  start.sh sets 10 s), then waits for the scheduler (start.sh: sched_interval=5, bf_interval=2).
"""

from __future__ import annotations

import re
from pathlib import Path

import cloudpickle
import pytest
import submitit

from . import jobs
from .helpers import WAIT_S, run, wait_recorded_end, wait_until

pytestmark = pytest.mark.slurm

# Pickle the job callables by value: the job then does not need to import tests.slurm.jobs,
# whatever its working directory and sys.path are.
cloudpickle.register_pickle_by_value(jobs)

def sacct_lines(job_id: str, duplicates: bool = False) -> list[str]:
    cmd = ["sacct", "-j", job_id, "-n", "-P", "-o", "JobID,JobName,State,ExitCode,Start,End"]
    if duplicates:
        cmd.insert(1, "-D")  # every run of a requeued job, not only the last one
    return [ln for ln in run(cmd).stdout.splitlines() if ln.strip()]


def executor_for(folder: Path, partition: str) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder)
    assert executor.cluster == "slurm", f"submitit picked {executor.cluster!r}, not slurm"
    executor.update_parameters(
        slurm_partition=partition, timeout_min=5, cpus_per_task=1, mem_gb=1, name="mokd-test"
    )
    return executor


def wait_result(job: submitit.Job, timeout: float = WAIT_S):
    """job.result() without the risk of waiting for ever (it has no timeout of its own)."""
    try:
        wait_until(job.done, f"submitit job {job.job_id} to finish", timeout=timeout, poll=1)
    except AssertionError:
        run(["scancel", job.job_id], check=False)
        print("\n".join(sacct_lines(job.job_id, duplicates=True)))
        print("stderr of the job:\n", job.stderr())
        raise
    return job.result()


def progress(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def steps_done(path: Path) -> int:
    return sum(1 for ln in progress(path) if ln.startswith("step "))


# ---------------------------------------------------------------------------------------------


def test_sbatch_wrap_completes(slurm_cluster, tmp_path):
    out = tmp_path / "wrap-%j.out"
    job_id = run(
        ["sbatch", "--parsable", "-p", slurm_cluster.partition, "-o", str(out), "-t", "2",
         "--wrap", "echo hello from $SLURM_JOB_ID"]
    ).stdout.strip().split(";")[0]
    assert job_id.isdigit(), job_id
    state = wait_recorded_end(job_id)
    lines = run(["sacct", "-j", job_id, "-n", "-P", "-o", "State"]).stdout.split()
    print(f"\nsacct -j {job_id} -n -P -o State: {lines}")
    assert state == "COMPLETED" and lines[0] == "COMPLETED", lines
    log = Path(str(out).replace("%j", job_id))
    assert log.read_text().strip() == f"hello from {job_id}"


def test_submitit_autoexecutor_returns_result(slurm_cluster, tmp_path):
    executor = executor_for(tmp_path / "submitit", slurm_cluster.partition)
    job = executor.submit(jobs.describe, 7)
    result = wait_result(job)
    print(f"\nsubmitit job {job.job_id}: {result}")
    assert result["square"] == 49
    assert result["job_id"] == job.job_id
    assert result["cpus"] == "1"
    assert result["mem_per_node"] == "1024"
    assert wait_recorded_end(job.job_id) == "COMPLETED"  # the result comes before sacct records the end


def test_checkpointable_requeued_by_preemption_signal(slurm_cluster, tmp_path):
    n_steps, step_s = 16, 0.5
    progress_file = tmp_path / "progress.txt"
    executor = executor_for(tmp_path / "submitit", slurm_cluster.partition)
    job = executor.submit(jobs.ProgressCounter(str(progress_file), n_steps, step_s))

    wait_until(lambda: steps_done(progress_file) >= 3, f"job {job.job_id} to make progress")
    # What SLURM does before a time limit (--signal=USR2@N) and what job._interrupt() does.
    run(["scancel", "--signal=USR2", job.job_id])

    result = wait_result(job)
    # The result file can be written before SLURM records the job's end.
    assert wait_recorded_end(job.job_id) == "COMPLETED"
    history = sacct_lines(job.job_id, duplicates=True)
    lines = progress(progress_file)
    print(f"\nsacct -D for submitit job {job.job_id}:\n" + "\n".join(history))
    print("progress file:\n" + "\n".join(lines))

    assert result == sum(i * i for i in range(n_steps))
    # submitit's handler ran checkpoint(), requeued the job, and it resumed where it stopped.
    ckpt = [ln for ln in lines if ln.startswith("checkpoint")]
    assert len(ckpt) == 1 and "restart=0" in ckpt[0], lines
    starts = [ln for ln in lines if ln.startswith("start")]
    assert len(starts) == 2, lines
    assert starts[0].startswith("start step=0 restart=0")
    resumed_at = int(re.search(r"step=(\d+)", starts[1]).group(1))
    assert resumed_at >= 3 and "restart=1" in starts[1], starts
    stepped = [int(ln.split()[1]) for ln in lines if ln.startswith("step ")]
    assert len(stepped) == len(set(stepped)), f"a step ran twice: {stepped}"
    assert set(stepped) <= set(range(n_steps)) and len(stepped) >= n_steps - 1
    assert "Caught signal SIGUSR2" in job.stderr()
    # SLURM's own record of the requeue: same job ID, first run REQUEUED, last one COMPLETED.
    alloc = [ln.split("|") for ln in history if ln.split("|")[0] == job.job_id]
    assert [a[2] for a in alloc] == ["REQUEUED", "COMPLETED"], history


def test_external_scontrol_requeue_restarts_from_scratch(slurm_cluster, tmp_path):
    """`scontrol requeue` alone: SIGTERM is ignored by submitit, no checkpoint, rerun from 0.

    The first run must outlast KillWait (5 s in start.sh): submitit ignores the SIGTERM of the
    requeue, so a function that ends within KillWait still writes its result pickle, and
    ``job.result()`` returns that while SLURM runs the requeued job a second time.
    """
    n_steps, step_s = 48, 0.25
    progress_file = tmp_path / "progress.txt"
    executor = executor_for(tmp_path / "submitit", slurm_cluster.partition)
    job = executor.submit(jobs.ProgressCounter(str(progress_file), n_steps, step_s))

    wait_until(lambda: steps_done(progress_file) >= 2, f"job {job.job_id} to make progress")
    run(["scontrol", "requeue", job.job_id])

    result = wait_result(job)
    # The result file can be written before SLURM records the end of the second run (still RUNNING).
    assert wait_recorded_end(job.job_id) == "COMPLETED"
    history = sacct_lines(job.job_id, duplicates=True)
    lines = progress(progress_file)
    print(f"\nsacct -D after scontrol requeue of {job.job_id}:\n" + "\n".join(history))
    assert result == sum(i * i for i in range(n_steps))
    assert not [ln for ln in lines if ln.startswith("checkpoint")], lines
    starts = [ln for ln in lines if ln.startswith("start")]
    assert [s.split()[1] for s in starts] == ["step=0", "step=0"], lines
    assert "Bypassing signal SIGTERM" in job.stderr()
    alloc = [ln.split("|") for ln in history if ln.split("|")[0] == job.job_id]
    assert [a[2] for a in alloc] == ["REQUEUED", "COMPLETED"], history
