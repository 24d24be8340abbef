"""config/rehearsal.yaml is config/paper.yaml with only run lengths, sizes of work, data roots and where
jobs run changed, and its DAG is the paper's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mokd.workflow import configs
from tests.workflow.smk import REPO, job_counts, snakemake, write_config
from tests.workflow.test_dag import PAPER

# What a rehearsal may change (regular expressions over the merged configs' dotted keys):
ALLOWED = [
    r"scale\.(name|description|results)",  # its identity: results of its own
    r"datasets\.\w+\.spec\.(root|max_per_class)",  # data roots (the fixtures); images per class
    r"pretrain\.(max_steps|batch_size|num_workers|checkpoint_every_iters|log_every_iters)",  # run length, work
    r"protocols\.\w+\.settings\.(epochs|iterations|batch_size|eval_batch_size|num_workers|checkpoint_every"
    r"|max_val_images)",  # run lengths, sizes of work, workers
    r"protocols\.semi(1|10)\.settings\.subset\.file_list",  # data: the fixtures' SimCLR-format split files
    r"figures\.\w+\.settings\.(per_class|n_images|batch_size|num_workers)",  # images, batch, workers
    r"resources\.(pretrain|evaluate)\.(threads|gpus|mem_mb|runtime)",  # where jobs run
    r"launch\.(pretrain|gpus_per_node|cpus_per_task|mem_gb)",
]


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(cfg, dict):
        out: dict[str, Any] = {}
        for k, v in cfg.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: cfg}


def load(name: str) -> dict[str, Any]:
    return configs.load_workflow_config([f"config/{name}.yaml"], root=REPO)


def test_the_rehearsal_changes_only_run_lengths_sizes_and_roots() -> None:
    paper, rehearsal = flatten(load("paper")), flatten(load("rehearsal"))
    differing = sorted(k for k in paper.keys() | rehearsal.keys() if paper.get(k, "<absent>") != rehearsal.get(k, "<absent>"))
    not_allowed = [k for k in differing if not any(re.fullmatch(p, k) for p in ALLOWED)]
    assert not not_allowed, f"config/rehearsal.yaml changes more than run lengths and sizes: {not_allowed}"
    # what it must keep, named: the networks, heads, crops, K, optimizers, schedules and protocols
    for key in ("models.r50.backbone.arch", "pretrain.out_dim", "pretrain.crops.global_size", "pretrain.crops.n_local",
                "pretrain.t_head.depth", "families.cnn.t_head_group.lr", "families.vit.optimizer.name",
                "pretrain.epochs", "protocols.linear.settings.lr.cnn", "protocols.detection.settings.min_size"):
        assert key in paper and paper[key] == rehearsal[key], key
    assert {k for k in differing if k.startswith("pretrain.")} >= {"pretrain.max_steps", "pretrain.batch_size"}


def test_the_allowed_keys_are_what_the_test_checks() -> None:
    """The check bites: a changed network width or lr is a difference it reports."""
    assert not any(re.fullmatch(p, "pretrain.out_dim") for p in ALLOWED)
    assert not any(re.fullmatch(p, "families.cnn.optimizer.lr") for p in ALLOWED)
    assert not any(re.fullmatch(p, "protocols.linear.settings.lr.cnn") for p in ALLOWED)
    assert any(re.fullmatch(p, "protocols.linear.settings.epochs") for p in ALLOWED)


def test_the_rehearsal_dag_is_the_papers(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", "config/rehearsal.yaml", tmp_path / "results")
    out = snakemake("-n", "-F", "--quiet", "rules", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout + out.stderr) == PAPER
