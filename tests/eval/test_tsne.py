"""t-SNE figure: class choice, CKA and alignment by hand, and the command on tiny exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mokd.checkpoint import export_teacher
from mokd.cli import main
from mokd.eval.tsne import align_to, class_subset, linear_cka
from mokd.models.backbone import build_backbone

TINY_CNN = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}, "stem_stride": 1}
TINY_VIT = {
    "arch": "vit_tiny_patch16_224",
    "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3},
}


def test_class_subset_is_seeded_and_balanced() -> None:
    targets = [i % 7 for i in range(70)]  # 10 samples of each of 7 classes
    classes, indices = class_subset(targets, 3, 4, seed=5)
    assert (classes, indices) == class_subset(targets, 3, 4, seed=5)
    assert len(set(classes)) == 3 and classes == sorted(classes)
    assert len(indices) == len(set(indices)) == 12
    assert sorted(targets[i] for i in indices) == sorted(classes * 4)
    assert class_subset(targets, 3, 4, seed=6) != (classes, indices)


def test_linear_cka_matches_the_hsic_formula() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 5)), rng.normal(size=(20, 3))
    h = np.eye(20) - 1 / 20  # centring matrix
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = np.trace(k @ l_) / np.sqrt(np.trace(k @ k) * np.trace(l_ @ l_))
    assert linear_cka(x, y) == pytest.approx(expected)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert linear_cka(x, 3 * x @ q + 1) == pytest.approx(1.0)  # invariant to rotation, scale, shift


def test_align_to_undoes_rotation_scale_and_shift() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(30, 2))
    angle = 1.1
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 2.5 * ref @ rot @ np.diag([1, -1]) + np.array([4.0, -3.0])  # rotated, reflected, scaled, shifted
    assert np.allclose(align_to(ref, moved), ref)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("tsne")
    torch.manual_seed(0)
    paths = [root / "pair" / "teacher_cnn.pt", root / "pair" / "teacher_vit.pt"]
    export_teacher(paths[0], "cnn", build_backbone(TINY_CNN), None, {"test": True})
    export_teacher(paths[1], "vit", build_backbone(TINY_VIT), None, {"test": True})
    return [str(p) for p in paths]


@pytest.mark.parametrize("layout", ["overlay", "panels"])
def test_command_writes_figure_and_metrics(exports: list[str], fashion_root: Path, tmp_path: Path, layout: str) -> None:
    settings = {"scale": "test", "data": {"name": "fashion_mnist", "root": str(fashion_root)}, "n_classes": 3,
                "per_class": 8, "image_size": 32, "batch_size": 8, "num_workers": 0, "perplexity": 5,
                "max_iter": 250, "labels": ["R (MOKD)", "V (MOKD)"], "layout": layout, "dpi": 60}
    out = tmp_path / "tsne.json"
    rc = main(["tsne", "--checkpoints", *exports, "--device", "cpu", "--out", str(out),
               "--settings", json.dumps(settings)])
    assert rc == 0
    record = json.loads(out.read_text())
    m = record["metrics"]
    assert len(m["classes"]) == 3 and len(set(m["class_indices"])) == 3
    for label, dim in (("R (MOKD)", 64), ("V (MOKD)", 48)):
        model = m["models"][label]
        assert model["n_points"] == 24 and model["feature_dim"] == dim
        assert -1 <= model["silhouette_tsne"] <= 1 and -1 <= model["silhouette_features"] <= 1
    assert 0 <= m["pairs"]["R (MOKD) | V (MOKD)"]["linear_cka_features"] <= 1 + 1e-9
    assert Path(m["figure"]["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(m["figure"]["pdf"]).read_bytes()[:5] == b"%PDF-"
    assert Path(m["figure"]["png"]) == out.with_suffix(".png")
    assert record["provenance"]["settings"]["layout"] == layout
    assert len(record["provenance"]["checkpoint_sha256"]) == 2


def test_perplexity_too_large_is_an_error(
    exports: list[str], fashion_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {"data": {"name": "fashion_mnist", "root": str(fashion_root)}, "n_classes": 2, "per_class": 3,
                "image_size": 32, "num_workers": 0, "perplexity": 30}
    rc = main(["tsne", "--checkpoints", exports[0], "--device", "cpu", "--out", str(tmp_path / "t.json"),
               "--settings", json.dumps(settings)])
    assert rc == 2 and "'perplexity'=30" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()
