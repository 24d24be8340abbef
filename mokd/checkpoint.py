"""Atomic checkpoint files, resume state and the strict export of teacher backbones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mokd.atomic import save_torch
from mokd.models.backbone import Backbone, BackboneSpec
from mokd.models.heads import THead

EXPORT_FORMAT = "mokd-teacher-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match what it is loaded into."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save atomically (mokd/atomic.py): never a half-written file; a full disk raises
    mokd.atomic.DiskFullError naming the path, and the previous file is kept."""
    save_torch(obj, path)


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for corrupt files
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({reason}); it is damaged or incomplete: move it aside"
            f" (mv {path} {path}.bad) or delete it and run again, which starts that step over"
        ) from exc


def export_teacher(
    path: str | Path,
    name: str,
    backbone: Backbone,
    t_head: THead | None,
    t_head_cfg: dict[str, Any] | None,
    provenance: dict[str, Any],
) -> None:
    """Write a teacher's backbone (and T-Head, used by the attention-distance protocol) for evaluation."""
    atomic_save(
        {
            "format": EXPORT_FORMAT,
            "name": name,
            "backbone": backbone.spec.to_dict(),
            "state_dict": backbone.state_dict(),
            "t_head": None if t_head is None else {"config": t_head_cfg, "state_dict": t_head.state_dict()},
            "provenance": provenance,
        },
        path,
    )


def _check_format(blob: dict[str, Any], path: Path) -> None:
    if not isinstance(blob, dict) or blob.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{path} is not an exported MOKD teacher (format {blob.get('format') if isinstance(blob, dict) else None!r},"
            f" expected {EXPORT_FORMAT!r}); export one with `python -m mokd pretrain`"
        )


def _load_strict(module: torch.nn.Module, state: dict[str, Any], what: str, path: Path) -> None:
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: {what} does not match its architecture; missing keys {result.missing_keys[:5]}"
            f"{'...' if len(result.missing_keys) > 5 else ''}, unexpected keys {result.unexpected_keys[:5]}"
            f"{'...' if len(result.unexpected_keys) > 5 else ''}"
        )


def load_backbone(path: str | Path, expected: dict[str, Any] | BackboneSpec | None = None) -> Backbone:
    """Rebuild an exported teacher backbone; a wrong architecture or a key mismatch is an error."""
    path = Path(path)
    blob = load_file(path)
    _check_format(blob, path)
    spec = BackboneSpec.from_config(blob["backbone"])
    if expected is not None:
        want = expected if isinstance(expected, BackboneSpec) else BackboneSpec.from_config(expected)
        if (want.arch, want.timm_kwargs, want.stem_stride) != (spec.arch, spec.timm_kwargs, spec.stem_stride):
            raise CheckpointError(f"{path} holds a {spec.to_dict()} backbone, but {want.to_dict()} was expected")
    try:
        backbone = Backbone(spec)
        _load_strict(backbone, blob["state_dict"], "the backbone state", path)
    except RuntimeError as exc:  # shape mismatches
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: backbone weights do not fit {spec.arch}: {exc}") from exc
    return backbone.eval()


def load_t_head(path: str | Path, backbone: Backbone) -> THead:
    """The exported teacher T-Head of a MOKD model (for the CNN attention-distance protocol)."""
    path = Path(path)
    blob = load_file(path)
    _check_format(blob, path)
    if blob.get("t_head") is None:
        raise CheckpointError(f"{path} has no T-Head (a DINO baseline trains none)")
    cfg = blob["t_head"]["config"]
    head = THead(backbone.token_dim, **cfg)
    _load_strict(head, blob["t_head"]["state_dict"], "the T-Head state", path)
    return head.eval()


def export_provenance(path: str | Path) -> dict[str, Any]:
    blob = load_file(path)
    _check_format(blob, Path(path))
    return dict(blob.get("provenance", {}))
