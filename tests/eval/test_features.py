"""Feature extraction matches the backbone called by hand; the disk cache is keyed, reused and atomic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import mokd.eval.features as features
from mokd.checkpoint import export_teacher
from mokd.data import build_dataset
from mokd.eval.features import (
    cache_key,
    cached_features,
    default_cache_dir,
    eval_transform_desc,
    extract_features,
    probe_mode,
)
from mokd.models.backbone import build_backbone

TINY_CNN = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}}
TINY_VIT = {
    "arch": "vit_tiny_patch16_224",
    "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3},
}


def export_tiny(path: Path, cfg: dict = TINY_CNN, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    export_teacher(path, path.stem, build_backbone(cfg), None, {"test": True})
    return path


def image_set(n: int = 7) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 3)


def test_pooled_features_match_embed_in_order() -> None:
    backbone = build_backbone(TINY_CNN).train()
    data = image_set()
    feats, labels = extract_features(backbone, data, batch_size=3, device="cpu")
    assert feats.dtype == torch.float32 and labels.dtype == torch.int64
    assert feats.shape == (7, backbone.feature_dim)
    assert labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    with torch.no_grad():
        expected = backbone.eval().embed(data.tensors[0])
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)


def test_restores_training_mode() -> None:
    backbone = build_backbone(TINY_CNN).train()
    extract_features(backbone, image_set(2), batch_size=2, device="cpu")
    assert backbone.training


def test_last4cls_is_vit_concat_and_cnn_rejected() -> None:
    vit = build_backbone({**TINY_VIT, "timm_kwargs": {**TINY_VIT["timm_kwargs"], "depth": 5}})
    data = image_set(4)
    feats, _ = extract_features(vit, data, batch_size=4, device="cpu", mode="last4cls")
    assert feats.shape == (4, 4 * 48)
    with torch.no_grad():
        torch.testing.assert_close(feats, vit.eval().last_cls_tokens(data.tensors[0], n=4), rtol=1e-4, atol=1e-5)
        # by hand: the [CLS] of blocks 2..5 (of 5), each through the final norm
        h = vit.net.norm_pre(vit.net._pos_embed(vit.net.patch_embed(data.tensors[0])))
        cls = []
        for block in vit.net.blocks:
            h = block(h)
            cls.append(vit.net.norm(h)[:, 0])
        torch.testing.assert_close(feats, torch.cat(cls[1:], dim=1), rtol=1e-4, atol=1e-5)
    shallow, _ = extract_features(build_backbone(TINY_VIT), data, 4, "cpu", mode="last4cls")
    assert shallow.shape == (4, 2 * 48)  # a 2-block ViT contributes both blocks
    with pytest.raises(ValueError, match="last4cls"):
        extract_features(build_backbone(TINY_CNN), data, 4, "cpu", mode="last4cls")
    with pytest.raises(ValueError, match="mode"):
        extract_features(vit, data, 4, "cpu", mode="mean")
    assert probe_mode("vit") == "last4cls" and probe_mode("cnn") == "pooled"


def test_cache_written_once_and_reused(tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = export_tiny(tmp_path / "t.pt")
    data = {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 2}
    desc = eval_transform_desc(32, [0.5] * 3, [0.5] * 3)
    cache = tmp_path / "cache"
    feats, labels = cached_features(ckpt, data, "val", desc, "pooled", cache, batch_size=8)
    files = list(cache.iterdir())
    assert len(files) == 1 and not files[0].name.startswith(".")  # no temporary file left behind
    assert feats.shape == (20, 64) and labels.tolist() == [y for _, y in build_dataset(data, "val")]

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(features, "extract_features", boom)
    again, again_labels = cached_features(ckpt, data, "val", desc, "pooled", cache)
    assert torch.equal(again, feats) and torch.equal(again_labels, labels)


def test_cache_key_covers_every_input(tmp_path: Path) -> None:
    a = export_tiny(tmp_path / "a.pt", seed=0)
    b = export_tiny(tmp_path / "b.pt", seed=1)
    data = {"name": "fashion_mnist", "root": "/x", "max_per_class": 2}
    desc = eval_transform_desc(32)
    base = cache_key(a, data, "val", desc, "pooled")
    assert base == cache_key(a, dict(data), "val", dict(desc), "pooled")
    variants = [
        cache_key(b, data, "val", desc, "pooled"),
        cache_key(a, {**data, "max_per_class": 3}, "val", desc, "pooled"),
        cache_key(a, data, "train", desc, "pooled"),
        cache_key(a, data, "val", eval_transform_desc(64), "pooled"),
        cache_key(a, data, "val", desc, "last4cls"),
    ]
    assert len({base, *variants}) == 6
    # a file list's contents are part of the key, not only its path
    fl = tmp_path / "list.txt"
    fl.write_text("1\n2\n")
    k1 = cache_key(a, {**data, "file_list": str(fl)}, "train", desc, "pooled")
    fl.write_text("1\n3\n")
    assert cache_key(a, {**data, "file_list": str(fl)}, "train", desc, "pooled") != k1


def test_corrupt_cache_is_recomputed(tmp_path: Path, fashion_root: Path) -> None:
    ckpt = export_tiny(tmp_path / "t.pt")
    data = {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 1}
    desc = eval_transform_desc(32)
    feats, _ = cached_features(ckpt, data, "val", desc, "pooled", tmp_path / "c")
    (path,) = (tmp_path / "c").iterdir()
    path.write_bytes(b"not a torch file")
    again, _ = cached_features(ckpt, data, "val", desc, "pooled", tmp_path / "c")
    torch.testing.assert_close(again, feats)


def test_random_transforms_are_not_cacheable() -> None:
    with pytest.raises(ValueError, match="eval"):
        features.build_transform({"kind": "train", "size": 32})


def test_default_cache_dir(tmp_path: Path) -> None:
    assert default_cache_dir(tmp_path / "m" / "knn.json", None) == (tmp_path / "m" / "features").resolve()
    assert default_cache_dir(tmp_path / "knn.json", "/elsewhere") == Path("/elsewhere")


def test_empty_dataset_is_an_error() -> None:
    empty = TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        extract_features(build_backbone(TINY_CNN), empty, 4, "cpu")
