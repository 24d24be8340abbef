"""Teacher features for the classification protocols, extracted once per checkpoint and cached on disk.

`extract_features` runs a frozen backbone over a dataset. `cached_features` wraps it with a disk cache
keyed by the checkpoint's sha256, the dataset config (and the contents of the files it names), the
split, the transform description and the feature mode, so that k-NN, the linear probe and t-SNE reuse
features extracted once. Cache files are written atomically (temporary file, then rename).

Modes: "pooled" is `Backbone.embed` (CNN global-average pool, ViT [CLS] after the final norm);
"last4cls" is DINO's ViT linear-probe feature, the [CLS] tokens of the last 4 blocks concatenated
(all blocks of a ViT shallower than 4, as the small-scale ones may be).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mokd.config import ConfigError
from mokd.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from mokd.eval.common import dataset_label, warn_few_classes
from mokd.provenance import file_sha256

if TYPE_CHECKING:  # mokd.models imports timm (and torchvision): only where a backbone is built
    from mokd.models.backbone import Backbone

MODES: tuple[str, ...] = ("pooled", "last4cls")
CACHE_VERSION = 1


def probe_mode(kind: str) -> str:
    """The linear-probe feature of a backbone kind: pooled for CNNs, last-4 [CLS] for ViTs (DINO)."""
    return "last4cls" if kind == "vit" else "pooled"


def _check_mode(backbone: Backbone, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"feature mode must be one of {MODES}, got {mode!r}")
    if mode == "last4cls" and backbone.kind != "vit":
        raise ValueError(f"feature mode 'last4cls' needs a ViT backbone, not {backbone.spec.arch!r} ({backbone.kind})")


def backbone_features(backbone: Backbone, images: torch.Tensor, mode: str = "pooled") -> torch.Tensor:
    """The feature of one batch in `mode` (no grad handling here)."""
    if mode == "last4cls":
        return backbone.last_cls_tokens(images, n=last_blocks(backbone))
    return backbone.embed(images)


def last_blocks(backbone: Backbone) -> int:
    """Blocks whose [CLS] the "last4cls" feature concatenates: 4, or all of a shallower (test-size) ViT."""
    return min(4, len(backbone.net.blocks))


@torch.no_grad()
def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str,
    mode: str = "pooled",
    num_workers: int = 0,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, C) float32 and labels (N,) int64 of `dataset`, in dataset order, on the CPU."""
    _check_mode(backbone, mode)
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval().to(device)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"cannot extract features of an empty dataset ({desc})")
    feats: torch.Tensor | None = None  # preallocated: an ImageNet bank is 10 GB, no room for a copy
    labels = torch.empty(n, dtype=torch.int64)
    start = 0
    try:
        for images, targets in tqdm(loader, desc=desc, file=sys.stderr, leave=False, mininterval=10, disable=None):
            out = backbone_features(backbone, images.to(device, non_blocking=True), mode).float().cpu()
            if feats is None:
                feats = torch.empty(n, out.shape[1], dtype=torch.float32)
            feats[start : start + len(out)] = out
            labels[start : start + len(out)] = torch.as_tensor(targets, dtype=torch.int64)
            start += len(out)
    finally:
        backbone.train(was_training)
    assert feats is not None and start == n, f"{desc}: the loader gave {start} of {n} samples"
    return feats, labels


def eval_transform_desc(
    size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> dict[str, Any]:
    """The description (cache key part) of `mokd.data.eval_transform(size, mean, std)`."""
    return {"kind": "eval", "size": int(size), "mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def build_transform(desc: Mapping[str, Any]) -> Any:
    """The transform a description names; only deterministic ("eval") transforms may be cached."""
    from mokd.data import eval_transform

    if desc.get("kind") != "eval":
        raise ValueError(f"only deterministic 'eval' transforms can be cached, got {dict(desc)}")
    return eval_transform(int(desc["size"]), desc["mean"], desc["std"])


def _data_identity(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset config plus the sha256 of the list files it names (their contents select samples)."""
    ident: dict[str, Any] = {"cfg": dict(data_cfg)}
    paths: list[Any] = [data_cfg.get("class_list")]
    fl = data_cfg.get("file_list")
    paths += list(fl.values()) if isinstance(fl, Mapping) else [fl]
    ident["files"] = {str(p): file_sha256(p, 64) for p in paths if p is not None and Path(p).is_file()}
    return ident


def cache_key(
    checkpoint_path: str | Path, data_cfg: Mapping[str, Any], split: str, transform_desc: Mapping[str, Any], mode: str
) -> str:
    """Hex sha256 identifying the features of (checkpoint contents, data, split, transform, mode)."""
    record = {
        "version": CACHE_VERSION,
        "checkpoint_sha256": file_sha256(checkpoint_path, 64),
        "data": _data_identity(data_cfg),
        "split": split,
        "transform": dict(transform_desc),
        "mode": mode,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _read_cache(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file is recomputed, never trusted
        print(f"feature cache {path} unreadable ({type(exc).__name__}); recomputing", file=sys.stderr)
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    return blob["features"], blob["labels"]


def cached_features(
    checkpoint_path: str | Path,
    data_cfg: Mapping[str, Any],
    split: str,
    transform_desc: Mapping[str, Any],
    mode: str,
    cache_dir: str | Path,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    backbone: Backbone | None = None,
    expected: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of `split` of `data_cfg`, from `cache_dir` or extracted (and then cached).

    `backbone` (already loaded from `checkpoint_path`) saves loading it again on a cache miss;
    otherwise it is loaded with `load_backbone(checkpoint_path, expected)`.
    """
    from mokd.checkpoint import atomic_save, load_backbone
    from mokd.data import build_dataset

    key = cache_key(checkpoint_path, data_cfg, split, transform_desc, mode)
    path = Path(cache_dir) / f"{Path(checkpoint_path).stem}-{split}-{mode}-{key[:20]}.pt"
    what = f"the {split} split of {dataset_label(dict(data_cfg))}"
    if path.is_file():
        hit = _read_cache(path, key)
        if hit is not None:
            print(f"features: cached {path}", file=sys.stderr)
            warn_few_classes(hit[1], what)
            return hit
    if backbone is None:
        backbone = load_backbone(checkpoint_path, dict(expected) if expected is not None else None)
    dataset = build_dataset(data_cfg, split, build_transform(transform_desc))
    feats, labels = extract_features(
        backbone, dataset, batch_size, device, mode=mode, num_workers=num_workers, desc=f"features {split}"
    )
    atomic_save({"key": key, "features": feats, "labels": labels}, path)
    warn_few_classes(labels, what)
    return feats, labels


def default_cache_dir(out: str | Path, setting: str | None) -> Path:
    """The `feature_cache` setting, or a `features/` folder next to the metrics output."""
    return Path(setting) if setting else Path(out).resolve().parent / "features"


def require_settings(settings: Mapping[str, Any], keys: Sequence[str], command: str) -> None:
    """A missing required setting is an error naming it."""
    for key in keys:
        if settings.get(key) in (None, "", {}):
            raise ConfigError(f"`{command}` needs the setting {key!r} (a dataset config dict for data_*)")


def load_teacher(checkpoint: str | Path, settings: Mapping[str, Any]) -> Backbone:
    """The exported teacher backbone, checked against the optional `expected_backbone` setting."""
    from mokd.checkpoint import load_backbone

    expected = settings.get("expected_backbone")
    return load_backbone(checkpoint, dict(expected) if expected else None)
