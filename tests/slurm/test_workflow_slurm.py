"""The workflow with `--profile slurm` on the real SLURM cluster (profiles/slurm, docs/CLUSTER.md).

* Tables S2 and S3 of the test scale (22 jobs: Fashion-MNIST preparation, 6 pre-trainings, 10 linear
  probes, the cost job, 2 tables) run to the end on SLURM and give the same tables as a local run of
  the same config. Only this partial target runs on SLURM: the whole test-scale DAG (117 jobs) takes
  about 15 s per DAG level and job wave there, well over the few minutes a test may take. On SLURM,
  the pre-trainings go through `launch.pretrain: slurm` (local rule, submitit job), the other jobs
  through the executor plugin; the local run uses the test scale's `submitit-local`. Every cell must
  be equal, except Table S3's training time and peak memory, which are measurements (compared for
  presence and format only).
* Nothing reaches sbatch when the config or a dataset path is wrong.
* A job that fails on SLURM makes the run fail with a message naming the job and its log: an
  evaluation of a corrupt checkpoint (a plugin job) and a pre-training whose setting fails at run
  time (a submitit job launched by the local pretrain rule).

The runs write their results to a temporary folder. They use `--nolock` (other Snakemake runs of this
repository may hold its lock; the outputs here are all under tmp) and `--rerun-triggers mtime` (the
prepared datasets under data/ are reused as they are).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.tables.markdown import pipe_tables

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
COMMON = ["--nolock", "--rerun-triggers", "mtime"]
_NUMBER = r"\d+(\.\d+)?(e[+-]?\d+)?"
MEASUREMENT = re.compile(rf"{_NUMBER}(\+{_NUMBER})?")  # Table S3's hours / GB: "0.000381+0.000381", "8.85e-05"


@pytest.fixture
def sbatch_log(tmp_path: Path) -> Path:
    """A `sbatch` first on PATH that records each call, then runs the real one."""
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sbatch-calls.txt"
    (bindir / "sbatch").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (bindir / "sbatch").chmod(0o755)
    return log


def env_with(sbatch_log: Path, partition: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{sbatch_log.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "MOKD_SLURM_PARTITION": partition,  # read by profiles/slurm and by `--launcher slurm`
        "HF_HUB_OFFLINE": "1",
    }


def snakemake(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    """Snakemake in the repository root, SIGKILLed after `timeout` s (it ignores SIGTERM while jobs run)."""
    cmd = ["timeout", "-s", "KILL", str(timeout), SNAKEMAKE, *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)


def write_config(path: Path, results: Path, **extra: object) -> Path:
    path.write_text(yaml.safe_dump({"base": "config/test.yaml", "scale": {"results": str(results)}, **extra}))
    return path


def scancel_own() -> None:
    """Cancel the pre-training job should the run have been killed before it ended."""
    subprocess.run(["scancel", "--user", "root", "--name", "mokd-dino_r34"], capture_output=True, timeout=30)


# ---------------------------------------------------------------------------------------------
def test_test_scale_tables_on_slurm_equal_a_local_run(slurm_cluster, sbatch_log: Path, tmp_path: Path) -> None:
    env = env_with(sbatch_log, slurm_cluster.partition)
    targets = ["table_s2", "table_s3"]
    # One job per protocol (rule `evaluate`), as at the paper scale: no evaluation groups.
    on_slurm = write_config(tmp_path / "slurm.yaml", tmp_path / "slurm", launch={"pretrain": "slurm"},
                            scale={"results": str(tmp_path / "slurm"), "evaluation_groups": None})
    local = write_config(tmp_path / "local.yaml", tmp_path / "local",
                         scale={"results": str(tmp_path / "local"), "evaluation_groups": None})

    t0 = time.monotonic()
    run = snakemake([*targets, "--profile", "slurm", *FAST_STATUS, *COMMON, "--configfile", str(on_slurm)], env, 420)
    t_slurm = time.monotonic() - t0
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    t0 = time.monotonic()
    ref = snakemake([*targets, "--cores", "2", *COMMON, "--configfile", str(local)], env, 300)
    t_local = time.monotonic() - t0
    assert ref.returncode == 0, (ref.stdout + ref.stderr)[-6000:]
    print(f"\ntable_s2 + table_s3 of the test scale: {t_slurm:.0f} s on SLURM, {t_local:.0f} s locally (2 cores)")

    log = run.stdout + run.stderr
    calls = sbatch_log.read_text().splitlines()
    # The executor plugin's jobs: 10 probes, the random initialisations of R50 and ViT-S and their 2
    # probes (Table S2's reference; S3's joined cells have none), cost, 2 tables (plus Fashion-MNIST's
    # preparation in a fresh clone, where data/ is still empty).
    plugin = [c for c in calls if "--wrap" in c and "rule_prepare_" not in c]
    scripts = [Path(c.split()[-1]) for c in calls if "--wrap" not in c]  # submitit's: one script per pre-training
    assert len(plugin) == 17 and all(f"-p {slurm_cluster.partition}" in c for c in plugin), plugin[:2]
    assert len(scripts) == 6
    for folder in {p.parent for p in scripts}:  # the partition from MOKD_SLURM_PARTITION, as for the plugin
        assert all(f"#SBATCH --partition={slurm_cluster.partition}" in f.read_text() for f in folder.glob("*_submission.sh"))
    assert "localrule pretrain:" in log  # pre-trainings are submitted by their own (local) job
    assert len(re.findall(r"SLURM job \d+ finished", "".join(
        p.read_text() for p in (tmp_path / "slurm" / "logs" / "pretrain").glob("*/*.log")))) == 6
    assert list((REPO / ".snakemake" / "slurm_logs" / "rule_evaluate").rglob("*.log"))  # kept on success
    for table in ("table_s2.md", "table_s3.md"):
        # The view of our values (the file's first table): equal but for measured time and memory; the
        # paper view beside it is derived from it and the published numbers.
        a = pipe_tables((tmp_path / "slurm" / "tables" / table).read_text())[0]
        b = pipe_tables((tmp_path / "local" / "tables" / table).read_text())[0]
        assert len(a) == len(b) and [r[0] for r in a] == [r[0] for r in b], (a, b)
        header = a[0]
        measured = {i for i, name in enumerate(header) if name in ("Time (h)", "Mem. (G)")}
        assert table != "table_s3.md" or len(measured) == 2, header
        for row_a, row_b in zip(a[1:], b[1:]):
            for i, (x, y) in enumerate(zip(row_a, row_b)):
                if i in measured:
                    assert MEASUREMENT.fullmatch(x) and MEASUREMENT.fullmatch(y), (x, y)
                else:
                    assert x == y, f"{table} row {row_a[0]!r} column {header[i]!r}: SLURM {x} != local {y}"


def test_nothing_is_submitted_when_config_or_dataset_is_wrong(slurm_cluster, sbatch_log: Path, tmp_path: Path) -> None:
    env = env_with(sbatch_log, slurm_cluster.partition)
    missing = tmp_path / "no-imagenet"
    cases = [
        ({"pretrain": {"epochz": 3}}, "epochz"),
        ({"launch": {"pretrain": "kubernetes"}}, "launch.pretrain"),
        ({"datasets": {"pretrain": {"prepare": "none", "spec": {"name": "imagefolder", "root": str(missing)}}}},
         str(missing)),
    ]
    for i, (extra, message) in enumerate(cases):
        cfg = write_config(tmp_path / f"c{i}.yaml", tmp_path / f"results{i}", **extra)
        out = snakemake(["table_s3", "--profile", "slurm", *FAST_STATUS, *COMMON, "--configfile", str(cfg)], env, 120)
        assert out.returncode != 0 and message in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
        assert not sbatch_log.exists(), f"{extra}: sbatch was called: {sbatch_log.read_text()}"
        assert not (tmp_path / f"results{i}" / "pretrain").exists()


def test_failed_slurm_jobs_fail_the_run_naming_job_and_log(slurm_cluster, sbatch_log: Path, tmp_path: Path) -> None:
    """Two failures in one run (the profile keeps going): an evaluation group's job (executor plugin:
    k-NN and linear probe, scale.evaluation_groups of the test scale) of a corrupt checkpoint, and a pre-training (submitit job of the local pretrain rule) with device=cuda
    on a node without GPU."""
    env = env_with(sbatch_log, slurm_cluster.partition)
    results = tmp_path / "results"
    export = results / "pretrain" / "dino_r18" / "seed0" / "export"
    export.mkdir(parents=True)
    (export / "teacher_r18.pt").write_bytes(b"not a checkpoint")
    (export / "summary.json").write_text("{}")
    cfg = write_config(tmp_path / "c.yaml", results, launch={"pretrain": "slurm"}, pretrain={"device": "cuda"})
    evaluation = results / "eval" / "dino_r18" / "seed0" / "r18" / "knn.json"
    pretraining = results / "pretrain" / "dino_r34" / "seed0" / "export"
    try:
        out = snakemake([str(evaluation), str(pretraining), "--profile", "slurm", *FAST_STATUS, *COMMON,
                         "--configfile", str(cfg)], env, 300)
    finally:
        scancel_own()
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-4000:]
    # The evaluation: the plugin names the SLURM job, its state, the rule's log and SLURM's log.
    eval_log = results / "logs" / "eval" / "dino_r18" / "seed0" / "r18" / "features.log"
    m = re.search(r"Error in rule evaluate_features:.*?(?=\n\n|\Z)", text, re.S)
    assert m and str(eval_log) in m.group(0), text[-5000:]
    assert re.search(r"SLURM-job '?\d+'? failed, SLURM status is: '?FAILED", m.group(0)), m.group(0)
    assert re.search(r"\.snakemake/slurm_logs/rule_evaluate_features/\S*\d+\.log", text), text[-5000:]
    assert "protocol 'knn' failed (exit code 4)" in eval_log.read_text()  # the corrupt checkpoint, named
    # The pre-training: its rule's log (shown by the profile's show-failed-logs) has sacct and the log path.
    pre_log = results / "logs" / "pretrain" / "dino_r34" / "seed0.log"
    assert re.search(rf"Error in rule pretrain:.*{re.escape(str(pre_log))}", text, re.S), text[-5000:]
    shown = pre_log.read_text()
    # A config error, caught in the SLURM job: one line and its exit code (mokd/cli.py), no traceback.
    job_id = re.search(r"SLURM job (\d+) stopped on an error; job log \S+/pretrain/dino_r34/seed0/submitit/(\d+)_0_log\.err",
                       shown)
    assert job_id and job_id.group(1) == job_id.group(2), shown[-3000:]
    assert "error: config key 'device': cuda requested but no GPU is visible" in shown.splitlines(), shown[-3000:]
    assert "Traceback" not in shown, shown[-3000:]
    assert "error: config key 'device'" in text  # shown in Snakemake's own output too (show-failed-logs)
    report = [ln for ln in shown.splitlines() if re.match(r"\[mokd\] (error|SLURM)|error: ", ln)]
    print("\n" + m.group(0)[:1500] + "\n...\n" + "\n".join(report))
