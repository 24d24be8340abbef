"""`python -m mokd evaluate`: several protocols of one teacher, or of the two teachers of a pair, in one
process give the numbers each gives on its own, in any order; a failing protocol stops the plan with its
exit code and names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mokd.checkpoint import export_teacher
from mokd.cli import main
from mokd.commands.evaluate import parse_plan
from mokd.config import ConfigError
from mokd.models.backbone import build_backbone
from tests.eval.test_knn import TINY_CNN, TINY_VIT, export_tiny
from tests.eval.test_knn import settings as knn_settings
from tests.eval.test_linear import probe_settings


def plan_entries(fashion_root: Path, folder: Path) -> dict[str, dict]:
    """k-NN and a linear probe with augmentation (it draws from the RNG), each with its own feature cache."""
    knn = json.loads(knn_settings(fashion_root, feature_cache=str(folder / "cache")))
    linear = probe_settings(fashion_root, precompute_features=False, feature_cache=str(folder / "cache"))
    return {
        "knn": {"protocol": "knn", "command": "knn", "settings": knn, "out": str(folder / "knn.json")},
        "linear": {"protocol": "linear", "command": "linear", "settings": linear, "out": str(folder / "linear.json")},
    }


def metrics(folder: Path) -> dict[str, dict]:
    return {p: json.loads((folder / f"{p}.json").read_text())["metrics"] for p in ("knn", "linear")}


def test_a_plan_gives_each_protocols_own_numbers_in_any_order(tmp_path: Path, fashion_root: Path) -> None:
    ckpt = str(export_tiny(tmp_path / "teacher_r.pt"))
    alone = tmp_path / "alone"
    for entry in plan_entries(fashion_root, alone).values():
        argv = [entry["command"], "--checkpoint", ckpt, "--settings", json.dumps(entry["settings"]), "--out", entry["out"]]
        assert main(argv) == 0
    for order in (["knn", "linear"], ["linear", "knn"]):
        folder = tmp_path / "_".join(order)
        entries = plan_entries(fashion_root, folder)
        assert main(["evaluate", "--checkpoint", ckpt, "--plan", json.dumps([entries[p] for p in order])]) == 0
        assert metrics(folder) == metrics(alone), order


def test_a_plan_over_two_teachers_gives_each_teachers_own_numbers(tmp_path: Path, fashion_root: Path) -> None:
    """A pair's job: each entry names its teacher (a CNN and a ViT here); no --checkpoint."""
    teachers = {}
    for role, cfg in (("cnn", TINY_CNN), ("vit", TINY_VIT)):
        torch.manual_seed(1)
        teachers[role] = tmp_path / f"teacher_{role}.pt"
        export_teacher(teachers[role], role, build_backbone(cfg), None, {"test": True})
    alone, together = {}, []
    for role, ckpt in teachers.items():
        folder = tmp_path / "alone" / role
        for entry in plan_entries(fashion_root, folder).values():
            argv = [entry["command"], "--checkpoint", str(ckpt), "--settings", json.dumps(entry["settings"]),
                    "--out", entry["out"]]
            assert main(argv) == 0
        alone[role] = metrics(folder)
        together += [{**e, "checkpoint": str(ckpt)} for e in plan_entries(fashion_root, tmp_path / "pair" / role).values()]
    assert main(["evaluate", "--plan", json.dumps(together)]) == 0
    assert {role: metrics(tmp_path / "pair" / role) for role in teachers} == alone
    assert alone["cnn"] != alone["vit"]  # two different teachers, not one evaluated twice


def test_a_failing_protocol_stops_the_plan_and_is_named(
    tmp_path: Path, fashion_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = str(export_tiny(tmp_path / "teacher_r.pt"))
    entries = plan_entries(fashion_root, tmp_path)
    entries["linear"]["settings"]["epochz"] = 3
    plan = [entries["knn"], entries["linear"], {**entries["knn"], "protocol": "knn_again", "out": str(tmp_path / "k2.json")}]
    assert main(["evaluate", "--checkpoint", ckpt, "--plan", json.dumps(plan)]) == 2
    err = capsys.readouterr().err
    assert "epochz" in err and "protocol 'linear' failed (exit code 2) on " in err and "; not run: ['knn_again']" in err
    assert (tmp_path / "knn.json").is_file()  # what ran before the failure stays
    assert not (tmp_path / "linear.json").exists() and not (tmp_path / "k2.json").exists()


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("[", "--plan is not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"protocol": "knn", "command": "knn", "settings": {}}]', "missing keys ['out']"),
        ('[{"protocol": "t", "command": "tsne", "settings": {}, "out": "a"}]', "--plan[0].command: 'tsne'"),
        ('[{"protocol": "a", "command": "knn", "settings": {}, "out": "x"},'
         ' {"protocol": "b", "command": "knn", "settings": {}, "out": "x"}]', "the same file"),
        ('[{"protocol": "a", "command": "knn", "settings": {}, "out": "x", "teacher": "t.pt"}]', "unknown keys ['teacher']"),
    ],
)
def test_a_bad_plan_is_refused_naming_what_is_wrong(plan: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_plan(plan, "teacher.pt")
    assert message in str(err.value)


def test_an_entry_without_a_teacher_is_refused() -> None:
    plan = '[{"protocol": "a", "command": "knn", "settings": {}, "out": "x", "checkpoint": "t.pt"}, ' \
           '{"protocol": "b", "command": "knn", "settings": {}, "out": "y"}]'
    assert [p.checkpoint for p in parse_plan(plan, "default.pt")] == ["t.pt", "default.pt"]
    with pytest.raises(ConfigError) as err:
        parse_plan(plan)
    assert "--plan[1].checkpoint: no teacher to evaluate" in str(err.value)
