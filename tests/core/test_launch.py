"""mokd/launch.py without a cluster: options, the distributed environment of a task, and real
pre-trainings through submitit's local executor (same weights as in-process, also after a preemption
signal, failures reported with the log path, SIGTERM cancels the job). The SLURM side is tested on a
real cluster in tests/slurm/test_submitit_pretrain.py."""

from __future__ import annotations

import argparse
import os
import re
import signal
from pathlib import Path

import pytest
import torch
import yaml

from mokd import launch
from mokd.config import ConfigError
from tests.core.processes import finish, pretrain, wait_for
from tests.core.tiny import PAIRS, tiny_config



def test_options_from_command_line_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    launch.add_arguments(parser)
    args = parser.parse_args(["--launcher", "slurm", "--gpus-per-node", "4", "--nodes", "2", "--mem-gb", "64"])
    monkeypatch.setenv(launch.ENV_PARTITION, "gpu")
    monkeypatch.setenv(launch.ENV_ACCOUNT, "proj")
    opts = launch.options_from_args(args).resolved(tmp_path / "run_a")
    assert (opts.partition, opts.account, opts.tasks_per_node, opts.nodes) == ("gpu", "proj", 4, 2)
    assert opts.log_folder == str(tmp_path / "run_a" / "submitit") and opts.job_name == "mokd-run_a"
    given = launch.LaunchOptions(partition="big", account="other").resolved(tmp_path)
    assert (given.partition, given.account) == ("big", "other")  # given values win over the environment
    monkeypatch.delenv(launch.ENV_PARTITION)
    assert launch.LaunchOptions().resolved(tmp_path).partition is None
    assert launch.LaunchOptions(gpus_per_node=0).tasks_per_node == 1
    opts.check()
    with pytest.raises(ConfigError, match="nodes must be 1"):
        launch.LaunchOptions(launcher="submitit-local", nodes=2).check()
    with pytest.raises(ConfigError, match="launcher"):
        launch.LaunchOptions(launcher="kubernetes").check()


def test_task_environment_is_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task 5 of a 2-node, 8-task SLURM job: submitit's TorchDistributedEnvironment exports its rank,
    the first node as master and one port for the whole job (a MASTER_PORT already set is kept)."""
    exported = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "CUDA_VISIBLE_DEVICES")
    for key in exported:
        # setenv first so that teardown restores the key's absence: a bare delenv of a missing key
        # records nothing, and the values exported below would leak into later tests' subprocesses.
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4321", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_NODEID": "1", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "n[01-02]"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    launch.export_dist_env()
    assert [os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")] == \
        ["5", "8", "1", "4", "n01"]
    port = os.environ["MASTER_PORT"]
    assert 20000 <= int(port) <= 60000 and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.delenv("MASTER_PORT")
    launch.export_dist_env()
    assert os.environ["MASTER_PORT"] == port and os.environ["RANK"] == "0"  # every task of the job agrees
    monkeypatch.setenv("MASTER_PORT", "29500")
    launch.export_dist_env()
    assert os.environ["MASTER_PORT"] == "29500"
    from mokd.distributed import env_dist_info

    assert env_dist_info().rank == 0 and env_dist_info().world_size == 8 and env_dist_info().local_rank == 0


def test_slurm_executor_parameters(tmp_path: Path) -> None:
    """What would be passed to sbatch (submitit writes the script; nothing is submitted here)."""
    opts = launch.LaunchOptions(launcher="slurm", nodes=2, gpus_per_node=8, cpus_per_task=10, mem_gb=480,
                                timeout_min=2880, partition="gpu", account="proj", job_name="mokd-x")
    try:
        executor = launch.build_executor(opts, tmp_path)
    except Exception as exc:  # pragma: no cover - submitit refuses without srun on PATH
        pytest.skip(f"submitit's SLURM executor unavailable here: {exc}")
    params = executor._executor.parameters
    assert params["nodes"] == 2 and params["ntasks_per_node"] == 8 and params["gpus_per_node"] == 8
    assert params["cpus_per_task"] == 10 and params["mem"] == "480GB" and params["time"] == 2880
    assert params["partition"] == "gpu" and params["account"] == "proj" and params["job_name"] == "mokd-x"


# ------------------------------------------------------------------------------ real local jobs
def _config(fashion_root: Path, path: Path, **overrides: object) -> Path:
    settings = {"epochs": 3, "batch_size": 8, "checkpoint_every_iters": 4,
                "data": {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 8}, **overrides}
    cfg = tiny_config(PAIRS["cnn_vit"](), fashion_root, **settings)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _steps(out: Path) -> int:
    log = out / "log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _task_pid(out: Path) -> int | None:
    for err in (out / "submitit").glob("*_0_log.err"):
        m = re.search(r"\[mokd\] task 0 of \d+ in job \S+ on \S+, pid (\d+)", err.read_text())
        if m:
            return int(m.group(1))
    return None


def assert_same_weights(a: Path, b: Path) -> int:
    sa = torch.load(a / "checkpoint.pt", weights_only=False)
    sb = torch.load(b / "checkpoint.pt", weights_only=False)
    assert sa["step"] == sb["step"]
    n = 0
    for ma, mb in zip(sa["models"], sb["models"]):
        for key, value in ma["slot"].items():
            assert torch.equal(value, mb["slot"][key]), f"{ma['name']}.{key}"
            n += 1
    for name in ("teacher_cnn.pt", "teacher_vit.pt"):
        ta = torch.load(a / name, weights_only=False)["state_dict"]
        tb = torch.load(b / name, weights_only=False)["state_dict"]
        assert all(torch.equal(v, tb[k]) for k, v in ta.items()), name
    return n


@pytest.mark.slow
def test_local_job_preempted_resumes_to_the_same_weights(fashion_root: Path, tmp_path: Path) -> None:
    """USR2 to the training task (what SLURM sends before a time limit): checkpoint after the current
    step, requeue (the local executor restarts the task), resume: bit-identical to in-process."""
    config = _config(fashion_root, tmp_path / "tiny.yaml")
    ref = pretrain(config, tmp_path / "ref")
    job = pretrain(config, tmp_path / "job", "--launcher", "submitit-local")
    pid = wait_for(lambda: _steps(tmp_path / "job") >= 3 and _task_pid(tmp_path / "job"), "3 steps of the job")
    os.kill(pid, signal.SIGUSR2)
    rc, out = finish(job)
    assert rc == 0, out[-3000:]
    assert finish(ref)[0] == 0
    assert re.search(r"caught SIGUSR2: saving a checkpoint at step (\d+)", out), out[-3000:]
    stopped = int(re.search(r"caught SIGUSR2: saving a checkpoint at step (\d+)", out).group(1))
    assert f"resuming at step {stopped}" in out and 3 <= stopped < 30
    assert "local submitit job" in out and "finished" in out
    assert assert_same_weights(tmp_path / "ref", tmp_path / "job") > 100


def _error_lines(out: str) -> list[str]:
    """The command's own one-line errors (the job's log, copied into the output, has them as `[mokd] error: `)."""
    return [line for line in out.splitlines() if line.startswith("error: ")]


@pytest.mark.slow
def test_local_job_failure_names_the_log(fashion_root: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU (device=cuda must fail at run time)")
    config = _config(fashion_root, tmp_path / "tiny.yaml", device="cuda")
    rc, out = finish(pretrain(config, tmp_path / "job", "--launcher", "submitit-local"))
    assert rc == 2, out[-3000:]  # a config error, caught in the job: mokd/cli.py's exit code, no traceback
    assert _error_lines(out) == ["error: config key 'device': cuda requested but no GPU is visible"], out[-2000:]
    assert re.search(r"stopped on an error; job log \S+/job/submitit/\d+_0_log\.err", out), out[-2000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.slow
def test_nan_loss_in_a_local_job_is_one_line_and_its_exit_code(fashion_root: Path, tmp_path: Path) -> None:
    config = _config(fashion_root, tmp_path / "tiny.yaml")
    rc, out = finish(pretrain(config, tmp_path / "job", "--launcher", "submitit-local", "models.0.optimizer.lr=1e30"))
    assert rc == 5, out[-3000:]
    errors = _error_lines(out)
    assert len(errors) == 1 and re.fullmatch(r"error: model 'cnn': loss term L_\w+ is (nan|inf).*", errors[0]), out[-2000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.slow
def test_sigterm_cancels_the_local_job(fashion_root: Path, tmp_path: Path) -> None:
    config = _config(fashion_root, tmp_path / "tiny.yaml", epochs=50)
    job = pretrain(config, tmp_path / "job", "--launcher", "submitit-local")
    pid = wait_for(lambda: _steps(tmp_path / "job") >= 1 and _task_pid(tmp_path / "job"), "the job to train")
    job.send_signal(signal.SIGTERM)
    rc, out = finish(job, timeout=60)
    assert rc == 128 + signal.SIGTERM and "cancelling local submitit job" in out, out[-2000:]
    wait_for(lambda: not _alive(pid), "the training task to end", timeout=30)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_plain_srun_task_gets_the_submitit_jobs_master(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task of a bare `srun` step (no submitit) that joins the process group gets the same master
    address and port as a submitit job with the same id: one rule (submitit's) for both."""
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SUBMITIT_EXECUTOR"):
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    slurm = {"SLURM_JOB_ID": "4321", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1",
             "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "n[01-02]"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    from mokd import distributed

    distributed._export_master()
    srun = (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
    assert "SUBMITIT_EXECUTOR" not in os.environ  # not left behind
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.delenv("MASTER_PORT")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    launch.export_dist_env()
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == srun == ("n01", srun[1])


@pytest.mark.slow
def test_ctrl_c_of_a_local_job_leaves_no_traceback(fashion_root: Path, tmp_path: Path) -> None:
    """Ctrl-C reaches the whole foreground process group: the launcher, submitit's controller and the
    training task. The job log (the launcher's output) gets one line from each of ours, no traceback."""
    config = _config(fashion_root, tmp_path / "tiny.yaml", epochs=50)
    # its own process group, as a terminal's foreground job
    job = pretrain(config, tmp_path / "job", "--launcher", "submitit-local", start_new_session=True)
    pid = wait_for(lambda: _steps(tmp_path / "job") >= 1 and _task_pid(tmp_path / "job"), "the job to train")
    os.killpg(job.pid, signal.SIGINT)
    rc, out = finish(job, timeout=60)
    assert rc == 130 and "cancelling local submitit job" in out, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    wait_for(lambda: not _alive(pid), "the training task to end", timeout=30)


@pytest.mark.slow
def test_a_killed_training_process_is_reported_as_killed(fashion_root: Path, tmp_path: Path) -> None:
    """kill -9 of the training task: submitit's controller ends normally (state FINISHED); the launcher
    says that the training process was killed, and fails."""
    config = _config(fashion_root, tmp_path / "tiny.yaml", epochs=50)
    job = pretrain(config, tmp_path / "job", "--launcher", "submitit-local")
    pid = wait_for(lambda: _steps(tmp_path / "job") >= 1 and _task_pid(tmp_path / "job"), "the job to train")
    os.kill(pid, signal.SIGKILL)
    rc, out = finish(job, timeout=120)
    assert rc == 1, out[-3000:]
    assert f"training process (pid {pid}) ended without a result or an error: it was killed by a signal" in out
    assert "state: FINISHED" not in out, out[-3000:]
