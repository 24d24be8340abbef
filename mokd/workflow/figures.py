"""The figures: their registry (named targets) and the settings of the `figure` rule.

A figure is an entry of the workflow config's `figures` (config/matrix.yaml: t-SNE figures list
pairs, attention-distance figures list models); its name says its kind (`..._tsne` is a t-SNE
figure, any other an attention-distance one). The paper's figures are registered below, each with
its `figure_<id>` target rule.
"""

from __future__ import annotations

import copy
from typing import Any

from mokd.workflow.matrix import Matrix

# The paper's figures: target id -> name in the config (and of the files results/<scale>/figures/<name>.*).
FIGURES = {
    "f4": "f4_tsne",
    "fs1": "fs1_tsne",
    "f5": "f5_attention",
    "fs2": "fs2_attention",
}


def figure_kind(fig: str) -> str:
    """The command that draws the figure: `tsne` or `attn-distance`."""
    return "tsne" if "tsne" in fig else "attn-distance"


def figure_members(m: Matrix, fig: str) -> list[tuple[str, str, str]]:
    """[(experiment, role, display label)] of a figure, in the order they are passed to the command."""
    f = m.config["figures"][fig]
    out = []
    if figure_kind(fig) == "tsne":
        for exp, baselines in f["pairs"]:
            for role in m.experiments[exp]["models"]:
                out.append((exp, role, f"{m.label(role)} (MOKD, {m.pair_label(exp)})"))
            for b in baselines:
                role = m.experiments[b]["models"][0]
                out.append((b, role, f"{m.label(role)} (DINO)"))
    else:
        for exp, role in f["models"]:
            method = "DINO" if m.is_baseline(exp) else f"MOKD {m.pair_label(exp)}"
            out.append((exp, role, f"{m.label(role)} ({method})"))
    return out


def figure_settings(m: Matrix, fig: str) -> dict[str, Any]:
    """The settings of the figure's command: its own settings, images, labels (and methods)."""
    f = m.config["figures"][fig]
    members = figure_members(m, fig)
    s = copy.deepcopy(f["settings"])
    s["data"] = m.dataset_spec(f["dataset"])
    s["scale"] = m.scale
    s["labels"] = [label for _, _, label in members]
    s.setdefault("mean", m.config["normalization"]["mean"])
    s.setdefault("std", m.config["normalization"]["std"])
    if figure_kind(fig) == "attn-distance":
        s["methods"] = ["DINO" if m.is_baseline(exp) else "MOKD" for exp, _, _ in members]
    return s
