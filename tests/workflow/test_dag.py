"""The DAG of each config (dry runs), partial targets, config errors and lint: no job is run here."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.workflow.smk import REPO, SNAKEMAKE, job_counts, snakemake, write_config

# Evaluation jobs, counted by hand from config/matrix.yaml (one job per experiment, model, protocol):
#  T1: 14 pairs x 2 models x {knn, linear} = 56, plus the 9 DINO baselines x 2 = 18        ->  74
#  T3, T4 (paper): 10 pairs x 2 models x 2 protocols = 40, plus 7 baselines x 2 = 14        ->  54 each
#  T5 (paper): 5 detection rows                                                              ->   5
#  T6: (2 DINO runs x 1 model + 4 pair runs x 2 models) x {knn_100, linear_100}              ->  20
#  S2: depths 1 and 2 x 2 models x linear_100 (depth 3 is T6's MOKD run)                     ->   4
#  T2, S1, S3 reuse T1's linear jobs.
#  One pre-training curves figure per scale (every run's log.jsonl).
#  One seed per scale by default (scale.seeds: [0]).
PAPER = {"pretrain": 31, "evaluate": 74 + 54 + 54 + 5 + 20 + 4, "table": 9, "figure": 4, "cost": 1, "all": 1,
         "pretrain_curves": 1}
#  The default scale shortens T3 and T4 to 3 pairs (6 models + 4 baselines) x 2 = 20 each, T5 to 3 rows.
#  Its random-initialisation references (scale.random_init_reference): one export per model (9), and one
#  evaluation per (model, protocol) the tables show: T1 9 models x 2 = 18; T3 and T4 (R50, ViT-S, R18,
#  ViT-T) x 2 = 8 each; T5 R50 detection 1; T6 (R50, ViT-S) x 2 = 4; T2, S1, S2 reuse those      ->  39
DEFAULT_EVALUATE = 74 + 20 + 20 + 3 + 20 + 4 + 39
UNGROUPED = {
    "pretrain": 31, "random_init": 9, "evaluate": DEFAULT_EVALUATE, "table": 9, "figure": 4, "cost": 1, "all": 1,
    "pretrain_curves": 1,
    "prepare_fashion_mnist": 1, "prepare_cifar_standin": 1, "prepare_coco_synthetic": 1,
}
#  The default scale's evaluation groups (scale.evaluation_groups) make one job per run of each group:
#  per teacher of a one-model run (DINO baseline, random initialisation; rule evaluate_<group>) and per
#  pair for both its teachers (rule evaluate_<group>__<pair>, counted as evaluate_<group>__pairs).
#  features = T1's k-NN and linear cells: 9 baselines + 9 references, 14 pairs; features_100 = T6's
#  2 baselines + 2 references, T6's 4 pairs and S2's 2 depth runs (T6's knn_100 teachers are among its
#  linear_100 ones); semi (T3) and transfer (T4) 4 baselines + 4 references, 3 pairs each; detection
#  stays a job per teacher (rule evaluate). The same 180 evaluations as UNGROUPED's.
GROUPED_EVALUATE = {"evaluate": 3 + 1, "evaluate_features": 9 + 9, "evaluate_features__pairs": 14,
                    "evaluate_features_100": 2 + 2, "evaluate_features_100__pairs": 4 + 2,
                    "evaluate_semi": 4 + 4, "evaluate_semi__pairs": 3,
                    "evaluate_transfer": 4 + 4, "evaluate_transfer__pairs": 3}
DEFAULT = {**{k: v for k, v in UNGROUPED.items() if k != "evaluate"}, **GROUPED_EVALUATE}


def test_paper_dag_lists_every_pair_and_protocol(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "config/paper.yaml", tmp_path / "results")
    out = snakemake("-n", "-F", "--quiet", "rules", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout + out.stderr) == PAPER


def test_default_dag(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "config/default.yaml", tmp_path / "results")
    out = snakemake("-n", "-F", "--quiet", "rules", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout + out.stderr) == DEFAULT


def test_without_groups_every_protocol_is_a_job(tmp_path: Path) -> None:
    """scale.evaluation_groups: null (the paper scale's way): one job per (run, model, protocol)."""
    results = tmp_path / "results"
    cfg = write_config(tmp_path / "c.yaml", "config/default.yaml", results,
                       scale={"results": str(results), "evaluation_groups": None})
    out = snakemake("-n", "-F", "--quiet", "rules", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout + out.stderr) == UNGROUPED


def test_every_run_is_repeated_per_seed(tmp_path: Path) -> None:
    """With three seeds every pre-training, reference and evaluation a table shows runs three times;
    figures, the training curves and Table S3's cost stay one job each (the first seed's runs)."""
    results = tmp_path / "results"
    cfg = write_config(tmp_path / "c.yaml", "config/default.yaml", results, scale={"results": str(results), "seeds": [0, 1, 2]})
    out = snakemake("-n", "-F", "--quiet", "rules", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    expected = {**DEFAULT, "pretrain": 3 * 31, "random_init": 3 * 9, **{k: 3 * v for k, v in GROUPED_EVALUATE.items()}}
    assert job_counts(out.stdout + out.stderr) == expected


def test_partial_target_runs_only_what_it_needs(tmp_path: Path) -> None:
    """Table S2 needs its three T-Head-depth runs, their linear probes, the random initialisations of
    its two models with theirs, and its table: nothing else."""
    cfg = write_config(tmp_path / "c.yaml", "config/default.yaml", tmp_path / "results")
    out = snakemake("table_s2", "-n", "-F", "--quiet", "rules", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout + out.stderr)
    assert counts == {"pretrain": 3, "random_init": 2, "evaluate_features_100": 2, "evaluate_features_100__pairs": 3,
                      "table": 1, "table_s2": 1, "prepare_fashion_mnist": 1}


def test_one_metrics_file_is_a_target_of_its_groups_job(tmp_path: Path) -> None:
    """`snakemake .../knn.json` runs the job of its group (features: k-NN and linear probe) and what it needs."""
    results = tmp_path / "results"
    cfg = write_config(tmp_path / "c.yaml", "config/default.yaml", results)
    target = f"{results}/eval/dino_r18/seed0/r18/knn.json"
    out = snakemake(target, "-n", "-F", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout + out.stderr) == {"pretrain": 1, "evaluate_features": 1, "prepare_fashion_mnist": 1}
    assert f"{results}/eval/dino_r18/seed0/r18/linear.json" in out.stdout
    # a pair's file: the pair's job, both its teachers
    pair = snakemake(f"{results}/eval/mokd_r50_vit_s/seed0/vit_s/linear.json", "-n", "-F", "--configfile", str(cfg),
                     timeout=300)
    assert job_counts(pair.stdout + pair.stderr, fold_pairs=False) == {
        "pretrain": 1, "evaluate_features__mokd_r50_vit_s": 1, "prepare_fashion_mnist": 1}
    assert all(f"{results}/eval/mokd_r50_vit_s/seed0/{r}/{p}.json" in pair.stdout
               for r in ("r50", "vit_s") for p in ("knn", "linear"))
    detection = snakemake(f"{results}/eval/dino_r50/seed0/r50/detection.json", "-n", "-F", "--quiet", "rules",
                          "--configfile", str(cfg), timeout=300)
    assert job_counts(detection.stdout + detection.stderr) == {"pretrain": 1, "evaluate": 1, "prepare_fashion_mnist": 1,
                                                               "prepare_coco_synthetic": 1}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"pretrain": {"epochz": 3}}, "epochz"),
        ({"experiments": {"mokd_r50_vit_s": {"models": ["r50", "vit_x"], "lambda": [1, 1]}}}, "vit_x"),
        ({"protocols": {"knn": {"command": "knn", "datasets": {"data_train": "imagenet9"}}}}, "imagenet9"),
        ({"scale": {"name": 3}}, "scale.name"),
        ({"pretrain": {"crops": {"n_locla": 2}}}, "config key 'pretrain.crops.n_locla'"),
        ({"families": {"vit": {"optimizer": {"lrr": 1}}}}, "config key 'families.vit.optimizer.lrr'"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path: Path, extra: dict, message: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", "config/test.yaml", tmp_path / "results", **extra)
    if "scale" in extra:
        cfg.write_text(cfg.read_text().replace("name: 3", "name: 3\n  results: x"))
    out = snakemake("--cores", "1", "--configfile", str(cfg), timeout=300)
    assert out.returncode != 0
    assert message in out.stderr
    assert not (tmp_path / "results").exists()


def test_missing_user_dataset_is_reported_before_any_job(tmp_path: Path) -> None:
    """A dataset the user provides (ImageNet at paper scale) is checked before anything runs."""
    missing = tmp_path / "no-imagenet"
    cfg = write_config(
        tmp_path / "c.yaml", "config/test.yaml", tmp_path / "results",
        datasets={"pretrain": {"prepare": "none", "spec": {"name": "imagefolder", "root": str(missing)}}},
    )
    out = snakemake("table_s3", "--cores", "1", "--configfile", str(cfg), timeout=300)
    assert out.returncode != 0
    assert str(missing) in out.stdout + out.stderr
    assert not (tmp_path / "results" / "pretrain").exists()


def test_a_config_with_only_base_is_that_base(tmp_path: Path) -> None:
    """`base: config/test.yaml` alone plans the test scale (not the default one, whatever Snakemake
    loaded first); with an override, a target of the test scale is found."""
    only_base = tmp_path / "only_base.yaml"
    only_base.write_text("base: config/test.yaml\n")
    planned = snakemake("-n", "-F", "--configfile", str(only_base), timeout=300)
    reference = snakemake("-n", "-F", "--quiet", "rules", "--configfile", "config/test.yaml", timeout=300)
    assert planned.returncode == 0 and reference.returncode == 0, planned.stderr[-3000:]
    assert job_counts(planned.stdout + planned.stderr) == job_counts(reference.stdout + reference.stderr)
    assert "results/test/" in planned.stdout and "results/default/" not in planned.stdout
    override = tmp_path / "override.yaml"
    override.write_text("base: config/test.yaml\nexperiments: {dino_r34: {epochs: 20}}\n")
    out = snakemake("results/test/pretrain/dino_r34/seed0/export", "-n", "--configfile", str(override), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_several_config_files_layer_in_order(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"scale: {{results: {tmp_path / 'results'}}}\n")
    out = snakemake("-n", "-F", "--configfile", "config/test.yaml", str(mine), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{tmp_path / 'results'}/pretrain/" in out.stdout and "results/test/" not in out.stdout


def test_exponent_numbers_in_config_files_and_config_option(tmp_path: Path) -> None:
    """`5e-4` in a config file and `1e-1` inside a --config mapping are numbers (YAML 1.2 floats)."""
    cfg = write_config(tmp_path / "c.yaml", "config/test.yaml", tmp_path / "results")
    cfg.write_text(cfg.read_text() + "families: {vit: {optimizer: {lr: 5e-4}}}\n")
    out = snakemake("-n", "--quiet", "rules", "--configfile", str(cfg),
                    "--config", "pretrain={crops: {blur_kernel_frac: 1e-1}}", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_dry_run_warns_of_missing_user_datasets(tmp_path: Path) -> None:
    """The paper scale without ImageNet: a dry run plans the jobs and names every missing dataset."""
    missing = tmp_path / "no-imagenet"
    cfg = write_config(
        tmp_path / "c.yaml", "config/paper.yaml", tmp_path / "results",
        datasets={"pretrain": {"spec": {"root": str(missing)}}},
    )
    out = snakemake("-n", "--quiet", "rules", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "warning: datasets missing" in out.stderr and "a real run stops before any job" in out.stderr
    assert f"dataset 'pretrain' (train): image folder path {missing}/train not found" in out.stderr
    assert "dataset 'cifar10' (train)" in out.stderr
    assert job_counts(out.stdout + out.stderr).get("pretrain", 0) > 0
    assert not (tmp_path / "results").exists()


def test_lint_is_clean() -> None:
    out = snakemake("--lint", timeout=120)
    assert "Lints for" not in out.stdout + out.stderr, (out.stdout + out.stderr)[-4000:]


SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "srun", "sinfo", "scontrol")


def path_without_slurm(tmp_path: Path) -> str:
    """PATH as it is, with every folder holding SLURM's commands replaced by a copy of its links
    without them (on a machine where the test cluster is installed)."""
    folders = []
    for i, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not any((Path(folder) / c).exists() for c in SLURM_COMMANDS):
            folders.append(folder)
            continue
        shadow = tmp_path / f"path{i}"
        shadow.mkdir()
        for entry in Path(folder).iterdir():
            if entry.name not in SLURM_COMMANDS:
                (shadow / entry.name).symlink_to(entry)
        folders.append(str(shadow))
    return os.pathsep.join(folders)


def test_slurm_profile_without_slurm_says_so(tmp_path: Path) -> None:
    """`--profile slurm` where SLURM's commands are not on PATH: the dry run warns, a run stops
    before any job, saying so (not naming the first command the executor plugin happened to call)."""
    cfg = write_config(tmp_path / "c.yaml", "config/test.yaml", tmp_path / "results")
    env = {**os.environ, "PATH": path_without_slurm(tmp_path)}
    cmd = ["timeout", "-s", "KILL", "300", SNAKEMAKE, "table_s2", "--profile", "slurm", "--configfile", str(cfg)]
    dry = subprocess.run([*cmd, "-n"], cwd=REPO, capture_output=True, text=True, env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "warning: SLURM's commands are not on PATH (sbatch, squeue, sacct, scancel)" in dry.stderr, dry.stderr
    real = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    assert real.returncode != 0
    assert "SLURM's commands are not on PATH (sbatch, squeue, sacct, scancel), nothing was started" in real.stderr, \
        real.stderr[-3000:]
    assert "'sacct'" not in real.stdout + real.stderr
    assert not (tmp_path / "results").exists()


def test_every_shell_command_quotes_its_paths(tmp_path: Path) -> None:
    """Every job's shell command of the whole test-scale DAG, with results under a folder whose name has a
    space: each path is one word of the command (an unquoted one splits at the space)."""
    results = tmp_path / "with space" / "results"
    cfg = write_config(tmp_path / "c.yaml", "config/test.yaml", results)
    out = snakemake("-n", "-p", "-F", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    commands = [ln.split("Shell command: ", 1)[1] for ln in out.stdout.splitlines() if "Shell command: " in ln]
    assert len(commands) == sum(job_counts(out.stdout).values())
    commands = [c for c in commands if c != "None"]  # target rules (table_t1, all) have no command
    assert len(commands) > 50
    for command in commands:
        words = shlex.split(command)
        assert not [w for w in words if w.endswith(f"{tmp_path}/with") or w.startswith("space/")], command
        assert str(results) in command


@pytest.mark.slow
def test_a_target_under_a_path_with_a_space(tmp_path: Path) -> None:
    """A pre-training and its evaluation group run under `scale.results: ".../with space/results"`; no
    stray file at the part before the space; each job's log ends with its timing line (the cost table's)."""
    results = tmp_path / "with space" / "results"
    cfg = write_config(tmp_path / "c.yaml", "config/test.yaml", results)
    out = snakemake(f"{results}/eval/dino_r18/seed0/r18/knn.json", "--cores", "2", "--configfile", str(cfg))
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    assert json.loads((results / "eval/dino_r18/seed0/r18/knn.json").read_text())["metrics"]["top1"] >= 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "with space"]
    for log in (results / "logs/pretrain/dino_r18/seed0.log", results / "logs/eval/dino_r18/seed0/r18/features.log"):
        assert "[mokd] timing {" in log.read_text(), log
