"""Mean attention distance: hand-computed values, and the command on tiny ViT / CNN+T-Head exports."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from mokd.checkpoint import export_teacher
from mokd.cli import main
from mokd.eval.attention_distance import mean_attention_distance, patch_attention
from mokd.models.backbone import build_backbone
from mokd.models.heads import THead

TINY_CNN = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}, "stem_stride": 1}
TINY_VIT = {
    "arch": "vit_tiny_patch16_224",
    "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3},
}
T_HEAD_CFG = {"dim": 24, "out_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "base_grid": 4,
              "norm_last_layer": True}


def uniform_mean_distance(h: int, w: int, spacing: float) -> float:
    """Mean distance over all ordered (query, key) cell pairs of an h x w grid, self pairs included."""
    cells = list(itertools.product(range(h), range(w)))
    total = sum(math.dist(a, b) for a, b in itertools.product(cells, cells))
    return spacing * total / len(cells) ** 2


def test_attention_on_itself_is_zero() -> None:
    attn = torch.eye(6).expand(2, 3, 6, 6)
    assert torch.allclose(mean_attention_distance(attn, (2, 3), 16.0), torch.zeros(3, dtype=torch.float64))


def test_uniform_attention_gives_the_mean_pairwise_distance() -> None:
    attn = torch.full((2, 4, 12, 12), 1 / 12)
    got = mean_attention_distance(attn, (3, 4), 16.0)
    assert torch.allclose(got, torch.full((4,), uniform_mean_distance(3, 4, 16.0), dtype=torch.float64))


def test_hand_made_2x2() -> None:
    # cells (row-major): 0=(0,0) 1=(0,1) 2=(1,0) 3=(1,1), 10 px apart
    opposite = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    half_right = torch.tensor([[.5, .5, 0, 0], [.5, .5, 0, 0], [0, 0, .5, .5], [0, 0, .5, .5]])
    # query 0 attends 0.5 to cell 3 and 0.5 to cell 1; queries 1-3 attend to themselves
    mixed = torch.tensor([[0, .5, 0, .5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    attn = torch.stack([opposite, half_right, mixed]).unsqueeze(0)  # (1, 3 heads, 4, 4)
    got = mean_attention_distance(attn, (2, 2), 10.0)
    expected = [10 * math.sqrt(2), 5.0, (0.5 * 10 + 0.5 * 10 * math.sqrt(2)) / 4]
    assert got.tolist() == pytest.approx(expected)


def test_images_are_averaged() -> None:
    near = torch.eye(4)
    far = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    attn = torch.stack([near, far]).unsqueeze(1)  # 2 images, 1 head
    assert mean_attention_distance(attn, (2, 2), 1.0).item() == pytest.approx(math.sqrt(2) / 2)


def test_wrong_grid_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        mean_attention_distance(torch.full((1, 1, 5, 5), 0.2), (2, 2), 1.0)


def test_patch_attention_drops_cls_and_renormalises() -> None:
    attn = torch.tensor([[0.4, 0.3, 0.3], [0.5, 0.1, 0.4], [0.2, 0.2, 0.6]]).view(1, 1, 3, 3)
    got = patch_attention(attn, 1)
    assert torch.allclose(got[0, 0], torch.tensor([[0.2, 0.8], [0.25, 0.75]]))


def _uniform(module: torch.nn.Module) -> None:
    """Zero every q/k/v projection: all attention becomes uniform."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".attn.qkv." in f".{name}":
                p.zero_()


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attn")
    torch.manual_seed(0)
    vit = build_backbone(TINY_VIT)
    _uniform(vit)
    cnn = build_backbone(TINY_CNN)
    t_head = THead(cnn.token_dim, **T_HEAD_CFG)
    _uniform(t_head)
    paths = {"vit": root / "mokd" / "teacher_vit.pt", "cnn": root / "mokd" / "teacher_cnn.pt",
             "dino_cnn": root / "dino" / "teacher_cnn.pt", "vit_random": root / "rand" / "teacher_vit.pt"}
    export_teacher(paths["vit"], "vit", vit, None, {"test": True})
    export_teacher(paths["cnn"], "cnn", cnn, t_head, {"test": True})
    export_teacher(paths["dino_cnn"], "cnn", build_backbone(TINY_CNN), None, {"test": True})
    export_teacher(paths["vit_random"], "vit", build_backbone(TINY_VIT), None, {"test": True})
    return paths


def _settings(fashion_root: Path, **extra: object) -> str:
    s = {"scale": "test", "data": {"name": "fashion_mnist", "root": str(fashion_root)}, "n_images": 6,
         "image_size": 32, "batch_size": 4, "num_workers": 0, "mean": [0.3] * 3, "std": [0.35] * 3}
    s.update(extra)
    return json.dumps(s)


def test_command_on_vit_and_cnn_with_t_head(exports: dict[str, Path], fashion_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "fig" / "attn.json"
    ckpts = [str(exports[k]) for k in ("vit", "cnn", "dino_cnn", "vit_random")]
    labels = ["ViT (uniform)", "CNN (MOKD)", "CNN (DINO)", "ViT (random)"]
    rc = main(["attn-distance", "--checkpoints", *ckpts, "--device", "cpu", "--out", str(out),
               "--settings", _settings(fashion_root, labels=labels)])
    assert rc == 0
    record = json.loads(out.read_text())
    m = record["metrics"]
    # both tiny models see a 4 x 4 grid of 32 / 4 = 8 px cells (ViT: patch 8; CNN: stride 8 on 32 px)
    uniform = uniform_mean_distance(4, 4, 8.0)
    for label, depth, heads in (("ViT (uniform)", 2, 3), ("CNN (MOKD)", 2, 2)):
        per_heads = m[label]["per_layer_heads"]
        assert len(per_heads) == depth and all(len(row) == heads for row in per_heads)
        assert [d for row in per_heads for d in row] == pytest.approx([uniform] * (heads * depth))
        assert m[label]["per_layer_mean"] == pytest.approx([uniform] * depth)
        assert m[label]["spacing_px"] == 8.0 and m[label]["grid"] == [4, 4] and m[label]["n_images"] == 6
    assert m["CNN (MOKD)"]["method"] == "MOKD" and m["ViT (uniform)"]["method"] == "DINO"
    assert m["CNN (DINO)"]["skipped"] is True and "T-Head" in m["CNN (DINO)"]["reason"]
    assert "CNN (DINO)" in m["skipped"]
    max_dist = 8.0 * math.dist((0, 0), (3, 3))
    assert all(0 < d < max_dist for row in m["ViT (random)"]["per_layer_heads"] for d in row)
    png, pdf = Path(m["figure"]["png"]), Path(m["figure"]["pdf"])
    assert png == out.with_suffix(".png") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert len(record["provenance"]["checkpoint_sha256"]) == 4


def test_bad_labels_are_an_error(exports: dict[str, Path], fashion_root: Path, tmp_path: Path) -> None:
    rc = main(["attn-distance", "--checkpoints", str(exports["vit"]), "--device", "cpu",
               "--out", str(tmp_path / "a.json"), "--settings", _settings(fashion_root, labels=["a", "b"])])
    assert rc == 2 and not (tmp_path / "a.json").exists()
