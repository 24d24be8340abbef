"""What the report and the figures show: the attention figures' panels, and the runs of the
pre-training-curves figure (the experiments a scale's tables and figures read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mokd.config import validate
from mokd.workflow.figures import figure_kind, figure_members, figure_settings
from mokd.workflow.matrix import Matrix
from mokd.workflow.settings import pretrain_config
from mokd.workflow.specs import cost_inputs, table_inputs
from mokd.workflow.targets import built_figures, built_tables


def shown_figure_settings(m: Matrix, fig: str) -> dict[str, Any]:
    """The figure's settings; an attention figure also gets one panel per model, named by its config
    label (the paper's "ViT-S"), not by its timm architecture."""
    s = figure_settings(m, fig)
    if figure_kind(fig) == "attn-distance":
        s["panels"] = [m.label(member[1]) for member in figure_members(m, fig)]
    return s


def pretrained_runs(m: Matrix) -> list[str]:
    """The experiments this scale pre-trains (those its built tables and figures read), in the matrix's order
    (random initialisations are not pre-trained)."""
    tables = built_tables(m.config)
    used = {parsed[0] for t in tables for f in table_inputs(m, t) if (parsed := m.parse_metrics(f))}
    if "s3" in tables:
        used |= {Path(d).parts[-3] for d in cost_inputs(m)}  # .../pretrain/<exp>/seed<k>/export
    used |= {member[0] for f in built_figures(m.config) for member in figure_members(m, f)}
    return [e for e in m.experiments if e in used]


def curves_settings(m: Matrix) -> dict[str, Any]:
    """The settings of `python -m mokd curves`: per pre-trained run (of the first seed) its title, log, K
    and model labels."""
    runs = []
    for exp in pretrained_runs(m):
        roles = m.experiments[exp]["models"]
        cfg = validate(pretrain_config(m, exp), "pretrain")  # defaults filled (collapse_warning)
        runs.append({
            "name": exp,
            "title": f"DINO {m.label(roles[0])}" if len(roles) == 1 else f"MOKD {m.pair_label(exp)}",
            "log": f"{m.run_dir(exp, m.first_seed)}/log.jsonl",
            "out_dim": cfg["out_dim"],
            "collapse_warning": cfg["collapse_warning"],
            "models": {r: m.label(r) for r in roles},
        })
    return {"scale": m.scale, "runs": runs}
