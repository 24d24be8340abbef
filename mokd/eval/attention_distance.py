"""Mean attention distance per layer and head (Fig. 5 / S2).

`python -m mokd attn-distance --checkpoints A.pt [B.pt ...] --settings '{...}' --out fig.json`

The measure is the ViT paper's (Dosovitskiy et al. 2021): for a query patch, the attention-weighted
mean Euclidean distance in pixels to the patches it attends to; averaged over query patches and
images, it is reported per block and head. Our choices, where the paper leaves them open:

- ViT: the backbone's blocks (`Backbone.attention_maps`). The [CLS] row and column are dropped and
  every patch query's attention is renormalised over the patches, so the distances are those of a
  distribution over image positions. Patch centres lie `patch_size` pixels apart.
- CNN: the teacher T-Head's blocks over the last-stage grid (`THead.attention_maps`), the only
  attention a CNN has in MOKD; grid cells lie `image_size / grid side` pixels apart (the grid tiles the
  image). A DINO-baseline CNN trains no T-Head: it is recorded as skipped, with the reason, and the
  figure says so.

Metrics: {"<label>": {"per_layer_mean": [...], "per_layer_heads": [[...] per layer], ...}, "figure": {...}}.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mokd.config import ConfigError, validate
from mokd.eval.common import add_common_arguments, dataset_label, load_settings, resolve_device, write_metrics

DEFAULTS: dict[str, Any] = validate({}, "attention_distance")  # mokd/schemas/attention_distance.yaml: keys, defaults, bounds
RESERVED_LABELS = ("figure", "skipped")
METHOD_STYLE = {"DINO": ("o", "tab:orange"), "MOKD": ("^", "tab:blue")}  # marker, colour


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, checkpoints="many")


# ---------------------------------------------------------------- the measure


def grid_distances(grid: tuple[int, int], spacing: float) -> torch.Tensor:
    """(N, N) Euclidean distances between the centres of a row-major (h, w) grid of cells `spacing` apart."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()], dim=1) * spacing
    return torch.cdist(coords, coords)


def mean_attention_distance(attn: torch.Tensor, grid: tuple[int, int], spacing: float) -> torch.Tensor:
    """Per head (H,): attention-weighted distance in pixels, averaged over queries and images.

    `attn` (B, H, N, N) is attention among the N = h*w patch tokens only, rows summing to 1.
    """
    n = grid[0] * grid[1]
    if attn.dim() != 4 or attn.shape[-1] != n or attn.shape[-2] != n:
        raise ValueError(
            f"attention of shape {tuple(attn.shape)} does not fit a {grid} grid (expected (B, H, {n}, {n}))"
        )
    dist = grid_distances(grid, spacing).to(attn.device)
    per_query = (attn.double() * dist).sum(dim=-1)  # (B, H, N)
    return per_query.mean(dim=(0, 2))


def patch_attention(attn: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """Drop the prefix ([CLS]) rows and columns and renormalise each query's attention over the patches."""
    patches = attn[:, :, n_prefix:, n_prefix:]
    return patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------- per model


def image_subset(dataset: Dataset, n_images: int, seed: int) -> Subset:
    """A seeded random choice of `n_images` items (all of them when the dataset is smaller)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))[:n_images]
    return Subset(dataset, [int(i) for i in order])


@torch.no_grad()
def model_distances(
    path: str, loader: DataLoader, image_size: int, device: torch.device, desc: str
) -> tuple[dict[str, Any] | None, str | None]:
    """(per-layer result, None) for one export, or (None, reason) when it has no attention to measure."""
    from tqdm import tqdm

    from mokd.checkpoint import load_backbone, load_file, load_t_head

    backbone = load_backbone(path).to(device).eval()
    t_head = None
    if backbone.kind == "cnn":
        if load_file(path).get("t_head") is None:
            return None, "a CNN without a T-Head (DINO baseline) has no attention maps"
        t_head = load_t_head(path, backbone).to(device).eval()
    sums: torch.Tensor | None = None
    count = 0
    grid: tuple[int, int] = (0, 0)
    spacing = 0.0
    for x, _ in tqdm(loader, desc=desc, file=sys.stderr, leave=False):
        x = x.to(device)
        if t_head is None:
            grid = (x.shape[-2] // backbone.patch_size, x.shape[-1] // backbone.patch_size)
            spacing = float(backbone.patch_size)
            n_prefix = int(backbone.net.num_prefix_tokens)
            maps = [patch_attention(a, n_prefix) for a in backbone.attention_maps(x)]
        else:
            out = backbone(x)
            grid = out.grid
            spacing = image_size / grid[1]
            maps = t_head.attention_maps(out.tokens, out.grid)
        batch = torch.stack([mean_attention_distance(a, grid, spacing) for a in maps]).cpu() * len(x)  # (L, H)
        sums = batch if sums is None else sums + batch
        count += len(x)
    if sums is None:
        raise ConfigError("no images to measure: setting 'n_images' or the dataset is empty")
    heads = sums / count
    return {
        "per_layer_mean": heads.mean(dim=1).tolist(),
        "per_layer_heads": heads.tolist(),
        "source": "T-Head blocks" if t_head is not None else "backbone blocks ([CLS] excluded, renormalised)",
        "kind": backbone.kind,
        "arch": backbone.spec.arch,
        "grid": list(grid),
        "spacing_px": spacing,
        "n_images": count,
    }, None


# ---------------------------------------------------------------- figure


def panel_title(panel: str, members: list[str]) -> str:
    """"ViT-S (MOKD R50–ViT-S)" for one member; "ViT-S: DINO vs MOKD R50–ViT-S" when every member's label
    is "<panel> (<run>)"; else the labels joined by "vs"."""
    if len(members) == 1:
        return members[0]
    prefix = f"{panel} ("
    if all(m.startswith(prefix) and m.endswith(")") for m in members):
        return f"{panel}: " + " vs ".join(m[len(prefix):-1] for m in members)
    return " vs ".join(members)


def draw_figure(
    results: dict[str, dict[str, Any]],
    panels: dict[str, str],
    methods: dict[str, str],
    skipped: dict[str, str],
    title: str,
    paths: list[Path],
    dpi: int,
) -> None:
    """A panel per model (architecture); one dot per head per layer, mean as a line, DINO vs MOKD styled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panel_names = list(dict.fromkeys(panels[label] for label in results))
    n = max(len(panel_names), 1)
    fig, axes = plt.subplots(1, n, figsize=(max(4.2 * n, 6.0), 4.4), squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], panel_names):
        members = [label for label in results if panels[label] == panel]
        for i, label in enumerate(members):
            heads = np.asarray(results[label]["per_layer_heads"])  # (L, H)
            layers = np.arange(1, heads.shape[0] + 1)
            offset = (i - (len(members) - 1) / 2) * 0.12  # side by side, not on top of each other
            marker, color = METHOD_STYLE.get(methods[label], ("s", cycle[i % len(cycle)]))
            if [methods[m] for m in members].count(methods[label]) > 1:  # two of a method: tell them apart
                color = cycle[i % len(cycle)]
            ax.scatter(np.repeat(layers + offset, heads.shape[1]), heads.flatten(), marker=marker, s=18,
                       color=color, alpha=0.8, linewidths=0, label=label)
            ax.plot(layers + offset, heads.mean(axis=1), color=color, linewidth=1, alpha=0.8)
        cnn = results[members[0]]["kind"] == "cnn"
        heading = panel_title(panel, members) + (", T-Head attention" if cnn else "")
        ax.set_title(textwrap.fill(heading, 48), fontsize=9)
        ax.set_xlabel("layer (block index)")
        ax.set_ylabel("mean attention distance (pixels)")
        ax.set_xticks(np.arange(1, max(len(results[m]["per_layer_heads"]) for m in members) + 1))
        top = max(float(np.max(results[m]["per_layer_heads"])) for m in members)
        ax.set_ylim(0, 1.25 * top if top > 0 else 1.0)  # absolute scale from 0, as in the paper
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if not panel_names:
        axes[0][0].axis("off")
    notes = [f"skipped {label}: {reason}" for label, reason in skipped.items()]
    fig.suptitle(textwrap.fill(title, 100), fontsize=9)
    if notes:
        fig.text(0.5, 0.01, textwrap.fill("; ".join(notes), 140), ha="center", va="bottom", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.07 if notes else 0, 1, 0.93))
    for path in paths:
        fig.savefig(path, dpi=dpi)
    plt.close(fig)


# ---------------------------------------------------------------- command


def per_checkpoint(s: dict[str, Any], key: str, n: int) -> list[str] | None:
    """A settings list with one string per checkpoint, or None when unset."""
    value = s[key]
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        raise ConfigError(f"setting {key!r} must list one entry per checkpoint ({n}), got {value!r}")
    return [str(v) for v in value]


def resolve_names(s: dict[str, Any], paths: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Labels, methods and panel titles per checkpoint, from the settings or from the exports."""
    from mokd.checkpoint import load_file

    n = len(paths)
    labels = per_checkpoint(s, "labels", n) or [
        f"{Path(p).parent.name}:{Path(p).stem.removeprefix('teacher_')}" for p in paths
    ]
    if len(set(labels)) != n or set(labels) & set(RESERVED_LABELS):
        raise ConfigError(f"setting 'labels' must be distinct and not {RESERVED_LABELS}, got {labels}")
    blobs = [load_file(p) for p in paths] if s["methods"] is None or s["panels"] is None else []
    methods = per_checkpoint(s, "methods", n) or ["MOKD" if b.get("t_head") else "DINO" for b in blobs]
    panels = per_checkpoint(s, "panels", n) or [str(b["backbone"]["arch"]) for b in blobs]
    return labels, methods, panels


def run(args: argparse.Namespace) -> int:
    from mokd.data import build_dataset, eval_transform

    s = load_settings(args, schema="attention_distance")
    if not isinstance(s["data"], dict):
        raise ConfigError("setting 'data' must be a dataset config mapping (name, root, ...)")
    labels, methods, panels = resolve_names(s, args.checkpoints)
    device = resolve_device(args.device)
    image_size = int(s["image_size"])
    transform = eval_transform(image_size, s["mean"], s["std"], float(s["resize_ratio"]))
    subset = image_subset(build_dataset(s["data"], s["split"], transform=transform), int(s["n_images"]), int(s["seed"]))
    loader = DataLoader(subset, batch_size=int(s["batch_size"]), shuffle=False, num_workers=int(s["num_workers"]))

    metrics: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for path, label, method in zip(args.checkpoints, labels, methods):
        result, reason = model_distances(path, loader, image_size, device, label)
        if result is None:
            skipped[label] = str(reason)
            metrics[label] = {"skipped": True, "reason": reason, "method": method}
            print(f"[mokd] attn-distance: skipped {label}: {reason}", file=sys.stderr)
            continue
        results[label] = result
        metrics[label] = dict(result, method=method, panel=panels[labels.index(label)])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    title = (f"Mean attention distance per layer, one dot per head ({len(subset)} images, {image_size} px, "
             f"{s['data'].get('name')} {s['split']}; scale: {s['scale']})")
    draw_figure(results, dict(zip(labels, panels)), dict(zip(labels, methods)), skipped, title, figures, int(s["dpi"]))
    metrics["figure"] = {"png": str(figures[0]), "pdf": str(figures[1])}
    metrics["skipped"] = skipped
    write_metrics(out, "attn-distance", metrics, args.checkpoints, s, dataset_label(s["data"]))
    print(f"[mokd] attention-distance figure {figures[0]} (+ .pdf), metrics {out}", file=sys.stderr)
    return 0
