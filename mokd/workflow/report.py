"""What the report and the figures show: the attention figures' panels, and the runs of the
pre-training-curves figure (the experiments a scale's tables and figures read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mokd.workflow.figures import figure_kind, figure_members, figure_settings
from mokd.workflow.matrix import Matrix
from mokd.workflow.run_logs import run_log
from mokd.workflow.specs import cost_inputs, table_inputs
from mokd.workflow.targets import built_figures, built_tables


def shown_figure_settings(m: Matrix, fig: str) -> dict[str, Any]:
    """The figure's settings; an attention figure also gets one panel per model, named by its config
    label (the paper's "ViT-S"), not by its timm architecture."""
    s = figure_settings(m, fig)
    if figure_kind(fig) == "attn-distance":
        s["panels"] = [m.label(member[1]) for member in figure_members(m, fig)]
    return s


def pretrained_run_seeds(m: Matrix) -> list[tuple[str, int]]:
    """Every pre-training (experiment, seed) this scale's built tables and figures read, in the matrix's order
    then by seed: a table's runs at every seed, figures and Table S3's cost at the first (random
    initialisations are not pre-trained)."""
    tables = built_tables(m.config)
    used = {(parsed[0], parsed[1]) for t in tables for f in table_inputs(m, t) if (parsed := m.parse_metrics(f))}
    if "s3" in tables:
        used |= {(Path(d).parts[-3], m.first_seed) for d in cost_inputs(m)}  # .../pretrain/<exp>/seed<k>/export
    used |= {(member[0], m.first_seed) for f in built_figures(m.config) for member in figure_members(m, f)}
    order = list(m.experiments)
    return sorted((r for r in used if r[0] in m.experiments), key=lambda r: (order.index(r[0]), r[1]))


def pretrained_runs(m: Matrix) -> list[str]:
    """The experiments this scale pre-trains (those its built tables and figures read), in the matrix's order."""
    return list(dict.fromkeys(exp for exp, _ in pretrained_run_seeds(m)))


def curves_settings(m: Matrix) -> dict[str, Any]:
    """The settings of `python -m mokd curves`: per pre-trained run (of the first seed) its title, log, K
    and model labels."""
    runs = []
    for exp in pretrained_runs(m):
        roles = m.experiments[exp]["models"]
        runs.append({
            "name": exp,
            "title": f"DINO {m.label(roles[0])}" if len(roles) == 1 else f"MOKD {m.pair_label(exp)}",
            **run_log(m, exp, m.first_seed),
            "models": {r: m.label(r) for r in roles},
        })
    return {"scale": m.scale, "runs": runs}
