"""How a pre-training runs: in this process, with submitit's local executor, or as a SLURM job.

    python -m mokd pretrain --config FILE --out DIR                       # in this process
    python -m mokd pretrain ... --launcher submitit-local                 # a child process (submitit)
    python -m mokd pretrain ... --launcher slurm --gpus-per-node 8 --partition gpu --timeout-min 2880

With `submitit-local` or `slurm`, this process only submits a `PretrainJob` and waits for it: it
never imports torch. It prints the job id and the job's log files, copies task 0's log into its own
stderr as it grows (so a Snakemake rule's log still shows the training), and exits 0 once the job
has finished; otherwise it prints SLURM's record of the job (sacct: state, exit code, reason) and the
log path, and exits 1, so a Snakemake job that launched it fails with that message (a local job
whose training process was killed without a result, by kill -9 or the out-of-memory killer, says
so). SIGTERM/SIGINT cancel the job (its checkpoint stays; rerunning resumes it); the job's log then
holds a line, no traceback (submitit's local controller writes its stderr to <log folder>/controller.err).
A rerun while an earlier SLURM job of the same run is still queued or running attaches to that job
instead of submitting a second one.

The job runs one task per GPU (`gpus_per_node` tasks per node; one task without GPUs). Each task
exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR (the first node) and MASTER_PORT with submitit's
`TorchDistributedEnvironment`, so `mokd.distributed.init_distributed` joins the process group, then builds the
trainer with `mokd.engine.build_trainer` and trains; the trainer resumes from
`checkpoint.pt` in the run folder when there is one.

Preemption and time limits: SLURM sends SIGUSR2 `signal_delay_s` (90 s) before the time limit (or
on preemption when the cluster is set up so); submitit's handler then calls `checkpoint()` and
requeues the job, which starts again from the returned `DelayedSubmission`. A `PretrainJob` defers
that signal to the end of the current step: it saves `checkpoint.pt` there, then lets submitit's
handler requeue the job, which resumes exactly where it stopped (bit-identical to an uninterrupted
run). A job is requeued after at most `max_num_timeout` time limits; preemptions do not count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import submitit

from mokd import runlock

LAUNCHERS = ("inprocess", "submitit-local", "slurm")
ENV_PARTITION = "MOKD_SLURM_PARTITION"  # default partition of `--launcher slurm` (and of the slurm profile)
ENV_ACCOUNT = "MOKD_SLURM_ACCOUNT"  # default account
SACCT_FIELDS = "JobID,JobName,State,ExitCode,Elapsed,NodeList,Reason"
# squeue states of a job that still holds (or waits for) resources.
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED", "RESV_DEL_HOLD"}


def log(message: str) -> None:
    print(f"[mokd] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class LaunchOptions:
    """Where and with what a pre-training runs (command-line options of `mokd pretrain`)."""

    launcher: str = "inprocess"
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None  # per node; None: the cluster's default
    timeout_min: int = 1440
    partition: str | None = None
    account: str | None = None
    log_folder: str | None = None  # default: <out>/submitit
    job_name: str | None = None  # default: mokd-<name of the out folder>
    max_num_timeout: int = 3
    poll_max_s: float = 60.0

    @property
    def tasks_per_node(self) -> int:
        return max(1, self.gpus_per_node)

    def resolved(self, out: str | Path) -> "LaunchOptions":
        """Partition and account from the environment when not given; the default log folder."""
        return replace(
            self,
            partition=self.partition or os.environ.get(ENV_PARTITION) or None,
            account=self.account or os.environ.get(ENV_ACCOUNT) or None,
            log_folder=self.log_folder or str(Path(out) / "submitit"),
            job_name=self.job_name or f"mokd-{Path(out).resolve().name}",
        )

    def check(self) -> None:
        from mokd.config import ConfigError

        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher: {self.launcher!r} is not one of {', '.join(LAUNCHERS)}")
        if self.nodes < 1 or self.gpus_per_node < 0 or self.cpus_per_task < 1 or self.timeout_min < 1:
            raise ConfigError("--nodes, --cpus-per-task and --timeout-min must be >= 1, --gpus-per-node >= 0")
        if self.launcher == "submitit-local" and self.nodes != 1:
            raise ConfigError("--launcher submitit-local runs on this machine: --nodes must be 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("launching (see mokd/launch.py and docs/CLUSTER.md)")
    d = LaunchOptions()
    g.add_argument("--launcher", choices=LAUNCHERS, default=d.launcher,
                   help="inprocess: train here; submitit-local: a child process through submitit; "
                        "slurm: a SLURM job through submitit, this process waits for it")
    g.add_argument("--nodes", type=int, default=d.nodes, help="nodes of the SLURM job")
    g.add_argument("--gpus-per-node", type=int, default=d.gpus_per_node, help="GPUs per node; one task per GPU")
    g.add_argument("--cpus-per-task", type=int, default=d.cpus_per_task, help="CPUs (torch threads) per task")
    g.add_argument("--mem-gb", type=float, default=d.mem_gb, help="memory per node in GB (default: the cluster's)")
    g.add_argument("--timeout-min", type=int, default=d.timeout_min,
                   help="time limit of one job in minutes; at the limit it checkpoints and is requeued")
    g.add_argument("--partition", default=None, help=f"SLURM partition (default: ${ENV_PARTITION}, else the cluster's)")
    g.add_argument("--account", default=None, help=f"SLURM account (default: ${ENV_ACCOUNT}, else none)")
    g.add_argument("--log-folder", default=None, help="submitit's folder: job pickles and logs (default: OUT/submitit)")
    g.add_argument("--job-name", default=None, help="SLURM job name (default: mokd-<name of the --out folder>)")
    g.add_argument("--max-num-timeout", type=int, default=d.max_num_timeout,
                   help="how many time limits the job may be requeued after (preemptions do not count)")
    g.add_argument("--poll-max-s", type=float, default=d.poll_max_s,
                   help="longest pause between two status checks while waiting (they start at 1 s)")


def options_from_args(args: argparse.Namespace) -> LaunchOptions:
    return LaunchOptions(
        launcher=args.launcher, nodes=args.nodes, gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb, timeout_min=args.timeout_min, partition=args.partition, account=args.account,
        log_folder=args.log_folder, job_name=args.job_name, max_num_timeout=args.max_num_timeout,
        poll_max_s=args.poll_max_s,
    )


# ------------------------------------------------------------------------------------ the job side
def preemption_signal() -> int:
    """The signal of submitit's checkpoint-and-requeue handler (env SUBMITIT_PREEMPT_SIGNAL, USR2)."""
    return int(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")))


def export_dist_env() -> submitit.helpers.TorchDistributedEnvironment:
    """RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR (the first node) and MASTER_PORT of
    this task, from submitit's job environment (submitit's rule: a MASTER_PORT already set is kept, else
    one drawn from the job id, the same in every task). CUDA_VISIBLE_DEVICES is left alone: each task
    sees the node's GPUs and picks its own by LOCAL_RANK (mokd.distributed.init_distributed)."""
    return submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


class PretrainJob(submitit.helpers.Checkpointable):
    """One pre-training as a submitit job: run in every task; checkpoint() requeues it on USR2."""

    def __init__(
        self,
        cfg: dict[str, Any],
        out: str,
        export_dir: str | None = None,
        restart_on_config_change: bool = False,
        stop_after: int | None = None,
        threads: int | None = None,
        env: dict[str, str | None] | None = None,
        debug: bool = False,
        wait_for_run: bool = False,
    ) -> None:
        self.cfg = cfg
        self.wait_for_run = wait_for_run  # another training in `out`: wait for it (else fail, exit code 8)
        self.debug = debug  # expected failures with their traceback in the job's log
        self.env = dict(env or {})  # variables set (a string) or unset (None) in each task
        self.out = str(out)
        self.export_dir = export_dir
        self.restart_on_config_change = restart_on_config_change
        self.stop_after = stop_after
        self.threads = threads
        self._phase = "setup"  # setup -> training -> done
        self._pending: int | None = None  # the preemption signal, once caught during training

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)  # a requeued job starts afresh (and resumes from checkpoint.pt)
        state.update(_phase="setup", _pending=None)
        return state

    def __call__(self) -> dict[str, Any]:
        """Train; an expected failure (bad config or data, unreadable checkpoint, NaN loss, full disk:
        mokd/cli.py's EXPECTED) is returned as {"error": one line, "exit_code": N} for the launcher to
        report and exit with, not raised with a traceback."""
        try:
            return self._train()
        except KeyboardInterrupt:  # cancelled (Ctrl-C, or the launcher cancelling the job): no traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller forwards a second one
            log("training interrupted; its last checkpoint stays")
            return {"error": "interrupted", "exit_code": 130}
        except Exception as exc:
            from mokd.cli import exit_code, one_line

            code = exit_code(exc)
            if code is None:
                raise
            if getattr(self, "debug", False):
                traceback.print_exc()
            log(f"error: {one_line(exc)}")
            return {"error": one_line(exc), "exit_code": code}

    def _train(self) -> dict[str, Any]:
        env = submitit.JobEnvironment()
        export_dist_env()
        for key, value in self.env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.threads:
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        log(f"task {env.global_rank} of {env.num_tasks} in job {env.job_id} on {env.hostname}, pid {os.getpid()}, "
            f"restart {os.environ.get('SLURM_RESTART_COUNT', '0')}, out {self.out}")
        submitit_handler = self._defer_preemption(env.global_rank)
        from mokd.engine import build_trainer

        # Task 0 holds the run folder's lock while the job trains (mokd/runlock.py).
        with runlock.training_lock(self.out, getattr(self, "wait_for_run", False), env.global_rank == 0):
            trainer = build_trainer(self.cfg, self.out, self.export_dir, self.restart_on_config_change)

            def preempted() -> bool:  # asked between steps: the trainer then saves a checkpoint and returns
                if self._pending is None:
                    return False
                print(file=sys.stderr)  # end the progress bar's line
                log(f"caught {signal.Signals(self._pending).name}: saving a checkpoint at step {trainer.step}")
                return True

            self._phase = "training"
            summary = trainer.train(stop_after=self.stop_after, should_stop=preempted)
        if summary.get("checkpointed") and self._pending is not None:
            self._phase = "done"
            log(f"checkpoint saved at step {summary['stopped_at']}: handing over to submitit (requeue)")
            submitit_handler(self._pending, None)  # calls checkpoint(), requeues the job and exits
            return summary
        self._phase = "done"
        if self._pending is not None:
            log("the preemption signal came after the last step: the run is complete, not requeued")
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        return summary

    def _defer_preemption(self, rank: int) -> Callable[..., Any]:
        """On rank 0, move submitit's USR2 handling to the end of the current step (other ranks: as is)."""
        sig = preemption_signal()
        handler = signal.getsignal(sig)
        if rank != 0 or not callable(handler):
            return handler  # type: ignore[return-value]

        def deferred(signum: int, frame: Any) -> None:
            if self._phase == "setup":
                handler(signum, frame)  # nothing new to save yet: submitit checkpoints and requeues now
            elif self._phase == "training" and self._pending is None:
                self._pending = signum  # no printing here: the handler may interrupt a write to stderr

        signal.signal(sig, deferred)
        return handler  # type: ignore[return-value]

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """submitit's hook (USR2): the same job again; it resumes from checkpoint.pt."""
        fresh = PretrainJob(self.cfg, self.out, self.export_dir, self.restart_on_config_change, self.stop_after,
                            self.threads, self.env, getattr(self, "debug", False), getattr(self, "wait_for_run", False))
        log(f"requeueing: the next run resumes from {Path(self.out) / 'checkpoint.pt'}")
        return submitit.helpers.DelayedSubmission(fresh, *args, **kwargs)


# ------------------------------------------------------------------------------ the launching side
def build_executor(opts: LaunchOptions, folder: Path) -> submitit.AutoExecutor:
    cluster = "slurm" if opts.launcher == "slurm" else "local"
    executor = submitit.AutoExecutor(
        folder=folder, cluster=cluster, slurm_max_num_timeout=opts.max_num_timeout,
        local_max_num_timeout=opts.max_num_timeout,
    )
    params: dict[str, Any] = {
        "name": opts.job_name or "mokd-pretrain", "timeout_min": int(opts.timeout_min), "nodes": opts.nodes,
        "tasks_per_node": opts.tasks_per_node, "cpus_per_task": opts.cpus_per_task,
    }
    if opts.gpus_per_node > 0:  # no --gpus-per-node=0: clusters without GPU GRES may refuse it
        params["gpus_per_node"] = opts.gpus_per_node
    if cluster == "slurm":
        if opts.mem_gb:
            params["mem_gb"] = float(opts.mem_gb)
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.account:
            params["slurm_account"] = opts.account
    executor.update_parameters(**params)
    return executor


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def squeue_state(job_id: str) -> str | None:
    """The job's state in squeue; '' when SLURM no longer lists it, None when squeue did not answer."""
    proc = _run(["squeue", "-h", "-j", job_id, "-o", "%T"], timeout=30)
    if proc is None or (proc.returncode != 0 and "Invalid job id" not in proc.stderr):
        return None
    return proc.stdout.split()[0] if proc.stdout.split() else ""


def sacct_lines(job_id: str, settle_s: float = 60) -> list[str]:
    """SLURM's record of every run of the job (a requeued job has one line per run), once it shows
    the job's end: a job whose result is written may still be RUNNING for a moment (bounded wait)."""
    deadline = time.monotonic() + settle_s
    while True:
        proc = _run(["sacct", "-j", job_id, "-D", "-P", "-o", SACCT_FIELDS], timeout=60)
        if proc is None or proc.returncode != 0:
            return [f"(sacct failed: {proc.stderr.strip() if proc else 'no answer'})"]
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        states = [ln.split("|")[2] for ln in lines[1:] if ln.split("|")[0] == job_id]
        ended = states and states[-1] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED")
        if ended or time.monotonic() > deadline:
            return lines
        time.sleep(2)


class LogFollower:
    """Copies what a job writes to its log files into this process's stderr."""

    def __init__(self, paths: list[Path]) -> None:
        self.offsets = {p: 0 for p in paths}

    def pump(self) -> None:
        for path, offset in self.offsets.items():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < offset:  # truncated (a requeued job's log, on some clusters)
                offset = 0
            if size == offset:
                continue
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            self.offsets[path] = offset + len(data)
            sys.stderr.write(data.decode("utf-8", "replace"))
            sys.stderr.flush()


def _record_path(folder: Path) -> Path:
    return folder / "job.json"


def _config_key(job: PretrainJob) -> str:
    from mokd.config import config_hash

    return config_hash({"cfg": job.cfg, "out": job.out, "export_dir": job.export_dir})


def _attach_or_cancel(opts: LaunchOptions, folder: Path, key: str) -> submitit.Job | None:
    """An earlier SLURM job of this run that is still queued or running: attach to it if it trains the
    same config, else cancel it (two jobs must never write the same checkpoint)."""
    record = _record_path(folder)
    if opts.launcher != "slurm" or not record.is_file():
        return None
    try:
        old = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    job_id = str(old.get("job_id", ""))
    state = squeue_state(job_id) if job_id else ""
    if state not in ACTIVE:
        return None
    if old.get("key") == key:
        log(f"attaching to SLURM job {job_id} of this run, still {state}")
        return submitit.SlurmJob(folder=folder, job_id=job_id, tasks=tuple(range(int(old.get("tasks", 1)))))
    log(f"cancelling SLURM job {job_id} ({state}): it trains another config")
    _run(["scancel", job_id])
    deadline = time.monotonic() + 120
    while squeue_state(job_id) not in ("", None) and time.monotonic() < deadline:
        time.sleep(2)
    return None


@contextlib.contextmanager
def _interruptible_children() -> Iterator[None]:
    """Start processes (a local job's controller and tasks) with SIGINT at its default, even where this
    process inherited it ignored (a background job of a non-interactive shell, `nohup`): cancelling a
    local job sends its controller SIGINT, which must stop the controller and its training tasks."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _child_stderr(path: Path) -> Iterator[None]:
    """Processes started meanwhile (a local job's controller) write their stderr to `path`, not to this
    process's (the job log): on a cancel, submitit's controller ends with a KeyboardInterrupt traceback."""
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _wait_for_free_run(job_fn: PretrainJob) -> None:
    """Before a new job is submitted: another process that trains in the run folder (a job this launcher
    cannot attach to, e.g. a local job left by a killed Snakemake) fails the command naming it, or is
    waited for with --wait-for-run."""
    who = runlock.holder(job_fn.out)
    if who is None:
        return
    if not getattr(job_fn, "wait_for_run", False):
        raise runlock.RunLockedError(runlock.locked_message(job_fn.out, who))
    log(f"run folder {job_fn.out} is in use by another training ({who.describe()}): waiting for it to end")
    while runlock.holder(job_fn.out) is not None:
        time.sleep(2)


def submit_and_wait(job_fn: PretrainJob, opts: LaunchOptions) -> int:
    """Submit (or re-attach to) the job, wait for it, report; the exit status of the command."""
    folder = Path(opts.log_folder or Path(job_fn.out) / "submitit").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    key = _config_key(job_fn)
    job = _attach_or_cancel(opts, folder, key)
    verb = "attached" if job is not None else "submitted"
    if job is None:
        _wait_for_free_run(job_fn)
        quiet = _child_stderr(folder / "controller.err") if opts.launcher != "slurm" else contextlib.nullcontext()
        with _interruptible_children(), quiet:
            job = build_executor(opts, folder).submit(job_fn)
        tasks = opts.nodes * opts.tasks_per_node
        _record_path(folder).write_text(json.dumps({"job_id": job.job_id, "key": key, "tasks": tasks,
                                                    "launcher": opts.launcher, "options": asdict(opts)}))
    kind = "SLURM job" if opts.launcher == "slurm" else "local submitit job"
    task0 = job.task(0)
    log(f"{kind} {job.job_id} {verb}: {job.num_tasks} task(s); log {task0.paths.stderr} (stdout {task0.paths.stdout})")
    follower = LogFollower([task0.paths.stdout, task0.paths.stderr])
    interrupted = _wait(job, opts, follower)
    if interrupted:
        log(f"interrupted ({signal.Signals(interrupted).name}): cancelling {kind} {job.job_id}; "
            "its checkpoint stays, running the same command again resumes it")
        job.cancel(check=False)
        return 128 + interrupted
    try:
        results = job.results()
    except Exception as exc:  # UncompletedJobError (killed, timed out, node failure) or FailedJobError
        _report_failure(job, opts, kind, exc)
        return 1
    failed = [r for r in results if isinstance(r, dict) and "error" in r]
    if failed:  # an expected failure, caught in the job (PretrainJob.__call__): one line and its exit code
        task0 = job.task(0)
        log(f"{kind} {job.job_id} stopped on an error; job log {task0.paths.stderr}")
        print(f"error: {failed[0]['error']}", file=sys.stderr, flush=True)
        return int(failed[0]["exit_code"])
    summary = results[0] if isinstance(results[0], dict) else {}
    if "stopped_at" in summary:
        log(f"{kind} {job.job_id} stopped after step {summary['stopped_at']} (--stop-after)")
    else:
        log(f"{kind} {job.job_id} finished: teachers and summary in {job_fn.export_dir or job_fn.out}")
    return 0


def _wait(job: submitit.Job, opts: LaunchOptions, follower: LogFollower) -> int:
    """Poll until the job is done (pauses from 1 s growing to poll_max_s); returns a signal number
    when this process was asked to stop, else 0."""
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    pause, state, gone = 1.0, None, 0
    try:
        while not caught:
            done = job.done(force_check=True)
            follower.pump()
            if done:
                break
            new_state = job.state
            if opts.launcher == "slurm" and new_state.upper() in ("UNKNOWN", ""):
                # No answer from sacct (no accounting?): a job that squeue no longer lists is over.
                gone = gone + 1 if squeue_state(job.job_id) == "" else 0
                if gone >= 3:
                    break
            if new_state != state:
                log(f"job {job.job_id}: {new_state}")
                state = new_state
            deadline = time.monotonic() + pause
            while not caught and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            # A local job is polled cheaply (its process); a SLURM job through sacct, less and less often.
            pause = 0.5 if opts.launcher != "slurm" else min(opts.poll_max_s, pause * 1.5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    follower.pump()
    return caught[0] if caught else 0


def _failure_reason(exc: Exception) -> str:
    """One line: the exception that ended the job (its traceback is in the job's log, copied above)."""
    text = str(exc)
    if "with trace:" in text:  # FailedJobError: the traceback between two dashed lines
        trace = text.split("-" * 22)[1] if text.count("-" * 22) >= 2 else text
        lines = [ln for ln in trace.strip().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else text
    # UncompletedJobError: "Job N (task: 0) with path ...\nhas not produced any output (state: X)\n..."
    return " ".join(ln.strip() for ln in text.strip().splitlines()[:2])


def _local_failure_reason(job: submitit.Job) -> str:
    """Why a local job left no result: submitit's state of its controller says only FINISHED."""
    try:
        found = re.search(r"\[mokd\] task 0 of \d+ in job \S+ on \S+, pid (\d+)", job.task(0).paths.stderr.read_text())
    except OSError:
        found = None
    task = f"training process (pid {found.group(1)})" if found else "training process"
    if job.state == "INTERRUPTED":
        return "its submitit controller was stopped by a signal"
    return (f"its {task} ended without a result or an error: it was killed by a signal (kill -9, the "
            "out-of-memory killer: see dmesg) or crashed")


def _report_failure(job: submitit.Job, opts: LaunchOptions, kind: str, exc: Exception) -> None:
    task0 = job.task(0)
    if opts.launcher != "slurm" and isinstance(exc, submitit.core.utils.UncompletedJobError):
        log(f"error: {kind} {job.job_id} failed: {_local_failure_reason(job)}; the last checkpoint stays, "
            "running the same command again resumes from it")
        log(f"error: job log {task0.paths.stderr}")
        return
    log(f"error: {kind} {job.job_id} failed ({type(exc).__name__}): {_failure_reason(exc)}")
    if opts.launcher == "slurm":
        print(f"sacct -j {job.job_id} -D -o {SACCT_FIELDS}:", file=sys.stderr)
        for line in sacct_lines(job.job_id):
            print(f"  {line}", file=sys.stderr)
    log(f"error: job log {task0.paths.stderr} (stdout {task0.paths.stdout}); submitit folder {job.paths.folder}")
    sys.stderr.flush()
