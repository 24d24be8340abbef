"""A slice of the paper-scale rehearsal (config/rehearsal.yaml) through `--profile slurm` on the one-node
cluster: the paper's R50–ViT-S pair and its two DINO baselines at the paper's shapes (224/96 px crops,
K = 65536, T-Heads of width 384) for two steps, pre-trained through submitit SLURM jobs; k-NN, linear
probes, semi-supervised fine-tuning on a SimCLR-format split file, CIFAR-10 fine-tuning and COCO
detection of the pair's R50 through the executor plugin; Table S3 in Markdown and LaTeX. Every data
format of the paper (ImageNet folders, SimCLR split files, CIFAR pickles, COCO 2017) is read on the way.
The whole rehearsal DAG is run by hand (docs/CLUSTER.md, "Rehearsing the paper scale"): its 258 jobs
take over an hour here.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from mokd.data.paper_fixtures import build_paper_fixtures
from tests.slurm.test_workflow_slurm import COMMON, FAST_STATUS, env_with, sbatch_log, snakemake  # noqa: F401

pytestmark = pytest.mark.slurm
PAIR = "mokd_r50_vit_s"


@pytest.fixture(scope="module")
def fixtures(fashion_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_paper_fixtures(tmp_path_factory.mktemp("rehearsal") / "paper_fixtures", fashion_root)


def slice_config(path: Path, results: Path, fixtures: Path) -> Path:
    """config/rehearsal.yaml with its data under `fixtures`, its results under `results`, pre-trainings
    as SLURM jobs (submitit), as the paper scale runs them."""
    imagenet, cifar, coco = (str(fixtures / d) for d in ("imagenet", "cifar", "coco"))
    roots = {"cifar10": cifar, "cifar100": cifar, "coco": coco}
    datasets = {d: {"spec": {"root": roots.get(d, imagenet)}} for d in
                ("pretrain", "pretrain_100", "train", "val", "train_100", "val_100", "cifar10", "cifar100", "coco")}
    splits = fixtures / "imagenet" / "splits"
    path.write_text(yaml.safe_dump({
        "base": "config/rehearsal.yaml",
        "scale": {"results": str(results)},
        "datasets": datasets,
        "protocols": {"semi1": {"settings": {"subset": {"file_list": str(splits / "1percent.txt")}}},
                      "semi10": {"settings": {"subset": {"file_list": str(splits / "10percent.txt")}}}},
        "launch": {"pretrain": "slurm"},
    }))
    return path


def test_rehearsal_slice_through_slurm(slurm_cluster, sbatch_log: Path, tmp_path: Path, fixtures: Path) -> None:
    env = env_with(sbatch_log, slurm_cluster.partition)
    results = tmp_path / "results"
    cfg = slice_config(tmp_path / "slice.yaml", results, fixtures)
    evals = results / "eval" / PAIR / "seed0" / "r50"
    targets = ["table_s3", *(str(evals / f"{p}.json") for p in ("knn", "semi1", "cifar10", "detection"))]
    t0 = time.monotonic()
    run = snakemake([*targets, "--profile", "slurm", *FAST_STATUS, *COMMON, "--configfile", str(cfg)], env, 1500)
    wall = time.monotonic() - t0
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    print(f"\nrehearsal slice (3 pre-trainings, 8 evaluations, cost, Table S3) on SLURM: {wall:.0f} s")

    # Pre-training: three submitit SLURM jobs at the paper's shapes, the first 2 steps of the paper's schedule.
    calls = sbatch_log.read_text().splitlines()
    assert len([c for c in calls if "--wrap" not in c]) == 3
    for exp, models in ((PAIR, ["r50", "vit_s"]), ("dino_r50", ["r50"]), ("dino_vit_s", ["vit_s"])):
        summary = json.loads((results / "pretrain" / exp / "seed0" / "export" / "summary.json").read_text())
        assert summary["models"] == models and summary["steps"] == 2 and summary["epochs"] == 100
        assert summary["peak_memory_mb"] > 1000  # the paper's networks and K = 65536 heads
        log = (results / "logs" / "pretrain" / exp / "seed0.log").read_text()
        assert re.search(r"2 steps of a \d+-step schedule", log) and "SLURM job" in log
    # The evaluations read every format: ImageNet folders, the SimCLR split file, CIFAR pickles, COCO.
    metrics = {p: json.loads((evals / f"{p}.json").read_text())["metrics"] for p in ("knn", "semi1", "cifar10", "detection")}
    assert 0 <= metrics["knn"]["top1"] <= 100
    assert metrics["semi1"]["labelled"] == 20 and metrics["semi1"]["best_lr"] in (0.01, 0.02, 0.05, 0.1)
    assert len(metrics["semi1"]["search"]) == 4  # the paper's lr grid, searched on a held-out part
    assert 0 <= metrics["cifar10"]["top1"] <= 100
    assert {"AP_bbox", "AP50_bbox", "AP75_bbox", "AP_segm", "AP50_segm", "AP75_segm"} <= set(metrics["detection"])
    linear = json.loads((results / "eval" / PAIR / "seed0" / "vit_s" / "linear.json").read_text())["metrics"]
    assert linear["report"] == "best" and linear["last4cls"] == 1 and linear["feature_dim"] == 4 * 384
    # Table S3 and its LaTeX: time, memory and linear top-1 of both DINO runs and the pair.
    table = (results / "tables" / "table_s3.md").read_text()
    assert "DINO (R50 / ViT-S)" in table and "MOKD (R50–ViT-S)" in table
    tex = (results / "tables" / "table_s3.tex").read_text()
    assert "\\begin{tabular}" in tex and "MOKD" in tex
