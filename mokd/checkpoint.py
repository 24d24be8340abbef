"""Checkpoint files: a run's resume state (save, resume, set aside) and the strict export of teachers."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mokd.atomic import save_torch, write_text
from mokd.models.backbone import Backbone, BackboneSpec
from mokd.config import diff_keys
from mokd.models.heads import THead

if TYPE_CHECKING:
    from mokd.engine import Trainer

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


def export_teacher(path: str | Path, name: str, backbone: Backbone, t_head: THead | None, provenance: dict[str, Any]) -> None:
    """Write a teacher's backbone (and T-Head, used by the attention-distance protocol) for evaluation."""
    atomic_save(
        {
            "format": EXPORT_FORMAT,
            "name": name,
            "backbone": backbone.spec.to_dict(),
            "state_dict": backbone.state_dict(),
            "t_head": None if t_head is None else {"config": t_head.config(), "state_dict": t_head.state_dict()},
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


# ------------------------------------------------------------------------------------ resume state
def training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a run needs to continue exactly where it is: weights, optimizers, scalers, loss
    centres, counters and every RNG state (the data order and augmentation are functions of the step)."""
    return {
        "step": trainer.step,
        "elapsed_s": trainer.elapsed_s,
        "images_seen": trainer.images_seen,
        "config": trainer.hashed_config,
        "config_hash": trainer.config_hash,
        "models": [
            {
                "name": m.name,
                "slot": m.slot.state_dict(),
                "optimizers": [o.optimizer.state_dict() for o in m.optimizers],
                "scaler": m.scaler.state_dict(),
                "losses": m.objective.state_dict(),
            }
            for m in trainer.models
        ],
        "rng": {
            "torch": torch.random.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }


def restore_training_state(trainer: Trainer, state: dict[str, Any]) -> None:
    """Load `training_state`'s dict into a freshly built trainer of the same config."""
    for model, saved in zip(trainer.models, state["models"]):
        model.slot.load_state_dict(saved["slot"])
        for opt, opt_state in zip(model.optimizers, saved["optimizers"]):
            opt.optimizer.load_state_dict(opt_state)
        model.scaler.load_state_dict(saved["scaler"])
        model.objective.load_state_dict(saved["losses"])
    trainer.step, trainer.elapsed_s, trainer.images_seen = state["step"], state["elapsed_s"], state["images_seen"]
    rng = state["rng"]
    torch.random.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_save(state, path)


def _logged_step(line: str) -> int | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record.get("step") if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def trim_log(path: str | Path, step: int) -> None:
    """Drop the records of a run's log.jsonl from `step` on, and any incomplete line.

    A stopped run (Ctrl-C, kill, time limit) has logged the steps after its last checkpoint; resumed
    at `step`, it trains and logs them again, so each step must be in the log once."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if (s := _logged_step(ln)) is not None and s < step]
    if len(kept) != len(lines):
        write_text(path, "".join(ln + "\n" for ln in kept))


def resume_state(run_dir: str | Path, config_hash: str, config: dict[str, Any], restart_on_config_change: bool) -> dict[str, Any] | None:
    """The state in `run_dir/checkpoint.pt` to resume from, or None to start afresh.

    A checkpoint of another config is refused, naming the keys that differ; with
    `restart_on_config_change` it is set aside as checkpoint.<old hash>.pt, and the run's log.jsonl
    as log.<old hash>.jsonl, so that nothing is lost and no reader mixes the two runs' logs.
    """
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        return None
    state = load_file(path)
    if state.get("config_hash") == config_hash:
        return state
    keys = diff_keys(state.get("config", {}), config)
    if not restart_on_config_change:
        raise CheckpointError(
            f"{path} was written with another config (keys that differ: {', '.join(keys) or '?'}); "
            "use another --out folder, or delete the checkpoint to start over"
        )
    old = state.get("config_hash")
    kept = path.with_name(f"checkpoint.{old}.pt")
    path.replace(kept)
    log = path.with_name("log.jsonl")
    if log.exists():
        log.replace(path.with_name(f"log.{old}.jsonl"))
    print(f"[mokd] config changed ({', '.join(keys)}): starting over; the old checkpoint and log are kept as "
          f"{kept.name} and log.{old}.jsonl", file=sys.stderr)
    return None
