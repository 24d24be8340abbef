"""t-SNE of the teacher features of a pair and its baselines (Fig. 4 / S1).

`python -m mokd tsne --checkpoints A.pt B.pt [C.pt D.pt] --settings '{...}' --out fig.json`

The paper embeds the features of `n_classes` random classes (ImageNet-100, ten classes) and plots
them with one colour per class and one marker per model. Our reading, as one figure:

- every checkpoint gets its own t-SNE of its pooled teacher features (two models' feature spaces have
  different widths, so they cannot share one t-SNE);
- consecutive checkpoints form a pair (A, B), (C, D): one panel per pair (`layout: overlay`, the
  default), both models in it, colour = class, marker = model. Since a t-SNE's rotation, reflection
  and scale are arbitrary, the second model's embedding is aligned to the first's with an orthogonal
  Procrustes fit over the shared images; the alignment changes neither embedding's shape.
  `layout: panels` draws one panel per checkpoint instead, without alignment.

Next to the figure, the metrics hold per model the silhouette score by class of the t-SNE embedding
and of the features the t-SNE saw, and per pair the linear CKA of the two models' features (1 = the
same representation up to rotation and scale), which quantifies "MOKD does not make models similar".
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Subset

from mokd.config import ConfigError, validate
from mokd.eval.common import add_common_arguments, dataset_label, load_settings, resolve_device, write_metrics
from mokd.eval.features import extract_features

DEFAULTS: dict[str, Any] = validate({}, "tsne")  # mokd/schemas/tsne.yaml: keys, defaults, bounds
LAYOUTS = ("overlay", "panels")
MARKERS = ("o", "^", "s", "D")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, checkpoints="many")


# ---------------------------------------------------------------- data


def class_subset(targets: list[int], n_classes: int, per_class: int, seed: int) -> tuple[list[int], list[int]]:
    """Seeded choice of `n_classes` classes and `per_class` samples of each: (sorted classes, indices)."""
    targets_arr = np.asarray(targets)
    present = np.unique(targets_arr)
    if n_classes > len(present):
        raise ConfigError(f"n_classes={n_classes} but the dataset has only {len(present)} classes")
    rng = np.random.default_rng(seed)
    classes = sorted(int(c) for c in rng.choice(present, size=n_classes, replace=False))
    indices: list[int] = []
    for c in classes:
        members = np.flatnonzero(targets_arr == c)
        indices.extend(int(i) for i in rng.permutation(members)[:per_class])
    return classes, indices


# ---------------------------------------------------------------- numbers


def tsne_embed(features: np.ndarray, perplexity: float, max_iter: int, seed: int) -> tuple[np.ndarray, float]:
    """scikit-learn t-SNE (PCA init, seeded): the (N, 2) embedding and its final KL divergence."""
    from sklearn.manifold import TSNE

    tsne = TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=max_iter, random_state=seed
    )
    return tsne.fit_transform(features.astype(np.float64)), float(tsne.kl_divergence_)


def silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score by class (Euclidean), in [-1, 1]; higher = tighter, better separated classes."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(points, labels, metric="euclidean"))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two feature sets of the same images (Kornblith et al. 2019): ||Yc'Xc||² / (||Xc'Xc|| ||Yc'Yc||)."""
    xc = x.astype(np.float64) - x.mean(axis=0)
    yc = y.astype(np.float64) - y.mean(axis=0)
    cross = np.linalg.norm(yc.T @ xc) ** 2
    return float(cross / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def align_to(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """`moving` rotated/reflected, uniformly scaled and shifted onto `reference` (orthogonal Procrustes)."""
    from scipy.linalg import orthogonal_procrustes

    ref_c = reference - reference.mean(axis=0)
    mov_c = moving - moving.mean(axis=0)
    rotation, _ = orthogonal_procrustes(mov_c, ref_c)
    scale = np.linalg.norm(ref_c) / max(np.linalg.norm(mov_c), 1e-12)
    return mov_c @ rotation * scale + reference.mean(axis=0)


# ---------------------------------------------------------------- figure


def groups_for(n: int, layout: str) -> list[list[int]]:
    """Checkpoint indices per panel: consecutive pairs (overlay) or one each (panels)."""
    size = 2 if layout == "overlay" else 1
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def class_colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def draw_figure(
    embeddings: list[np.ndarray],
    labels: list[str],
    y: np.ndarray,
    class_names: list[str],
    groups: list[list[int]],
    title: str,
    paths: list[Path],
    dpi: int,
) -> None:
    """One panel per group; colour = class, marker = position of the model in its group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colors = class_colors(len(class_names))
    n_legend_rows = -(-len(class_names) // 5)
    fig, axes = plt.subplots(
        1, len(groups), figsize=(max(4.6 * len(groups), 7.0), 5.0 + 0.25 * n_legend_rows), squeeze=False
    )
    for ax, group in zip(axes[0], groups):
        for slot, k in enumerate(group):
            pts = embeddings[k]
            for c in range(len(class_names)):
                sel = y == c
                ax.scatter(pts[sel, 0], pts[sel, 1], s=12, marker=MARKERS[slot % len(MARKERS)],
                           color=colors[c], alpha=0.75, linewidths=0)
        ax.set_title(textwrap.fill(" vs ".join(labels[k] for k in group), 60), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("t-SNE dimension 1 (arbitrary units)", fontsize=8)
        ax.set_ylabel("t-SNE dimension 2 (arbitrary units)", fontsize=8)
        ax.legend(handles=[Line2D([], [], marker=MARKERS[s % len(MARKERS)], color="0.3", linestyle="", label=labels[k])
                           for s, k in enumerate(group)], loc="best", fontsize=8, framealpha=0.8)
    class_handles = [Line2D([], [], marker="s", color=colors[c], linestyle="", label=name)
                     for c, name in enumerate(class_names)]
    fig.legend(handles=class_handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(textwrap.fill(title, 90), fontsize=9)
    fig.tight_layout(rect=(0, 0.045 * n_legend_rows, 1, 0.94))
    for path in paths:
        fig.savefig(path, dpi=dpi)
    plt.close(fig)


# ---------------------------------------------------------------- command


def check_settings(s: dict[str, Any], n_checkpoints: int) -> list[str] | None:
    """Validate the settings that the dataset code does not; returns the labels (or None)."""
    if not isinstance(s["data"], dict):
        raise ConfigError("setting 'data' must be a dataset config mapping (name, root, ...)")
    if s["layout"] not in LAYOUTS:
        raise ConfigError(f"setting 'layout' must be one of {LAYOUTS}, got {s['layout']!r}")
    if int(s["n_classes"]) < 2 or int(s["per_class"]) < 1:
        raise ConfigError("settings 'n_classes' >= 2 and 'per_class' >= 1 are needed for a silhouette score")
    labels = s["labels"]
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != n_checkpoints:
            raise ConfigError(f"setting 'labels' must list one name per checkpoint ({n_checkpoints}), got {labels!r}")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"setting 'labels' has duplicates: {labels}")
    return labels


def default_labels(paths: list[str]) -> list[str]:
    """`<run folder>:<model>` from `.../<run>/teacher_<model>.pt`."""
    return [f"{Path(p).parent.name}:{Path(p).stem.removeprefix('teacher_')}" for p in paths]


def run(args: argparse.Namespace) -> int:
    from mokd.checkpoint import load_backbone
    from mokd.data import build_dataset, eval_transform

    s = load_settings(args, schema="tsne")
    labels = check_settings(s, len(args.checkpoints)) or default_labels(args.checkpoints)
    backbones = [load_backbone(p) for p in args.checkpoints]
    device = resolve_device(args.device)
    transform = eval_transform(int(s["image_size"]), s["mean"], s["std"], float(s["resize_ratio"]))
    dataset = build_dataset(s["data"], s["split"], transform=transform)
    classes, indices = class_subset(dataset.targets, int(s["n_classes"]), int(s["per_class"]), int(s["seed"]))
    if not 0 < float(s["perplexity"]) < len(indices):
        raise ConfigError(f"setting 'perplexity'={s['perplexity']} must be in (0, number of points = {len(indices)})")
    subset = Subset(dataset, indices)
    y = np.asarray([classes.index(dataset.targets[i]) for i in indices])
    class_names = [str(dataset.classes[c]) for c in classes]

    metrics: dict[str, Any] = {"models": {}, "pairs": {}}
    feats, embeddings = [], []
    for label, backbone in zip(labels, backbones):
        f = extract_features(backbone, subset, int(s["batch_size"]), device, "pooled", int(s["num_workers"]), label)[0]
        f = f.numpy()
        if s["l2_normalize"]:
            f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        emb, kl = tsne_embed(f, float(s["perplexity"]), int(s["max_iter"]), int(s["seed"]))
        feats.append(f)
        embeddings.append(emb)
        metrics["models"][label] = {
            "silhouette_tsne": silhouette(emb, y),
            "silhouette_features": silhouette(f, y),
            "kl_divergence": kl,
            "feature_dim": int(f.shape[1]),
            "n_points": int(len(f)),
        }
    for group in groups_for(len(labels), "overlay"):  # consecutive checkpoints are a pair
        if len(group) == 2:
            a, b = group
            metrics["pairs"][f"{labels[a]} | {labels[b]}"] = {"linear_cka_features": linear_cka(feats[a], feats[b])}
            if s["layout"] == "overlay":
                embeddings[b] = align_to(embeddings[a], embeddings[b])
    groups = groups_for(len(labels), s["layout"])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    title = (f"t-SNE of teacher features, {len(classes)} classes x {s['per_class']} images "
             f"({s['data'].get('name')}, {s['split']}; scale: {s['scale']})")
    draw_figure(embeddings, labels, y, class_names, groups, title, figures, int(s["dpi"]))
    metrics["figure"] = {"png": str(figures[0]), "pdf": str(figures[1])}
    metrics["classes"] = class_names
    metrics["class_indices"] = classes
    metrics["labels"] = labels
    write_metrics(out, "tsne", metrics, args.checkpoints, s, dataset_label(s["data"]))
    print(f"[mokd] t-SNE figure {figures[0]} (+ .pdf), metrics {out}", file=sys.stderr)
    return 0
