"""Pre-training curves of one scale: each run's loss terms and teacher entropy against the step.

`python -m mokd curves --settings '{"scale": ..., "runs": [...]}' --out results/<scale>/figures/pretrain_curves.json`

Each run is {"name": "mokd_r50_vit_s", "title": "MOKD R50–ViT-S", "log": ".../log.jsonl", "out_dim": K,
"models": {"r50": "R50", "vit_s": "ViT-S"}}; optional "collapse_warning" (default 0.98, as the engine).
A run's log (`mokd.engine`, one JSON record per logged step: {"step", "epoch", "<model>": {"loss", "L_<term>", ...,
"teacher_entropy"}}) gives two panels, one above the other: the loss terms of each model (nats), and
the teacher entropy of each model (nats) with ln K dashed. An entropy that climbs to ln K is a teacher
collapsing to the uniform output; one that falls to 0 collapses to a single dimension. Both are
flagged in the panel title and in the metrics JSON beside the PNG and PDF (the definition, shared
with the tables' marks and the run summary: mokd/collapse.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

from mokd.atomic import write_text
from mokd.collapse import DEFAULT_WARNING, collapse_state, read_log
from mokd.config import ConfigError, config_hash
from mokd.provenance import code_version, now

LINESTYLES = ("-", "--", ":", "-.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", required=True, help="JSON: {scale, runs: [{name, title, log, out_dim, models}]}")
    parser.add_argument("--out", required=True, help="metrics JSON to write (the PNG and PDF go beside it)")
    parser.add_argument("--dpi", type=int, default=150, help="PNG resolution")


def series(records: list[dict[str, Any]], model: str) -> dict[str, tuple[list[int], list[float]]]:
    """{value name: (steps, values)} of one model: its loss terms (`L_*`), total `loss` and `teacher_entropy`."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for rec in records:
        values = rec.get(model)
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if (key == "loss" or key.startswith("L_") or key == "teacher_entropy") and isinstance(value, (int, float)):
                steps, ys = out.setdefault(key, ([], []))
                steps.append(int(rec["step"]))
                ys.append(float(value))
    return out


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Per model: the curves and its final values, ln K, and the collapse state."""
    records = read_log(run["log"])
    ln_k = math.log(int(run["out_dim"]))
    models = {}
    for model, label in run["models"].items():
        curves = series(records, model)
        if "teacher_entropy" not in curves:
            raise ConfigError(f"{run['log']}: no teacher_entropy of model {model!r}")
        final = {k: ys[-1] for k, (_, ys) in curves.items()}
        state = collapse_state(final["teacher_entropy"], ln_k, float(run.get("collapse_warning", DEFAULT_WARNING)))
        models[model] = {"label": label, "curves": curves, "final": final, "collapse": state}
    return {"name": run["name"], "title": run["title"], "ln_k": ln_k, "steps": records[-1]["step"] + 1,
            "models": models}


def _draw_run(ax_loss: Any, ax_ent: Any, run: dict[str, Any]) -> None:
    colors = {}
    for m_i, (model, info) in enumerate(run["models"].items()):
        style = LINESTYLES[m_i % len(LINESTYLES)]
        for key, (steps, ys) in sorted(info["curves"].items()):
            if key == "teacher_entropy":
                continue
            color = colors.setdefault(key, f"C{len(colors)}")
            ax_loss.plot(steps, ys, style, color=color, linewidth=1.2, label=f"{info['label']} {key}")
        steps, ys = info["curves"]["teacher_entropy"]
        ax_ent.plot(steps, ys, style, color="k", linewidth=1.2, label=f"{info['label']}")
    ax_ent.axhline(run["ln_k"], color="tab:red", linestyle="--", linewidth=1, label=f"ln K = {run['ln_k']:.2f}")
    ax_ent.set_ylim(0, run["ln_k"] * 1.1)
    collapsed = {m: i["collapse"] for m, i in run["models"].items() if i["collapse"] != "ok"}
    lines = [f"{run['title']} ({run['name']})"]
    if collapsed:
        lines.append("COLLAPSE? " + ", ".join(f"{run['models'][m]['label']}: {s}" for m, s in collapsed.items()))
    title = "\n".join(textwrap.fill(line, 60) for line in lines)
    ax_loss.set_title(title, fontsize=8, color="tab:red" if collapsed else "black")
    ax_loss.set_ylabel("loss (nats)", fontsize=8)
    ax_ent.set_ylabel("teacher entropy (nats)", fontsize=8)
    ax_ent.set_xlabel("training step (iterations)", fontsize=8)
    for ax in (ax_loss, ax_ent):
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")


def draw_figure(runs: list[dict[str, Any]], title: str, paths: list[Path], dpi: int) -> None:
    """A grid of runs, each a loss panel above its teacher-entropy panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(4, len(runs)))
    nrows = max(1, -(-len(runs) // ncols))
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(4.2 * ncols, 5.0 * nrows), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2] * nrows})
    for i in range(nrows * ncols):
        r, c = divmod(i, ncols)
        ax_loss, ax_ent = axes[2 * r][c], axes[2 * r + 1][c]
        if i < len(runs):
            ax_ent.sharex(ax_loss)
            _draw_run(ax_loss, ax_ent, runs[i])
        else:
            ax_loss.axis("off")
            ax_ent.axis("off")
    fig.suptitle(textwrap.fill(title, 120), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    for path in paths:
        fig.savefig(path, dpi=dpi)
    plt.close(fig)


def check_settings(s: Any) -> list[dict[str, Any]]:
    if not isinstance(s, dict) or not isinstance(s.get("runs"), list) or not s["runs"]:
        raise ConfigError("--settings must be {\"scale\": ..., \"runs\": [...]} with at least one run")
    for i, run in enumerate(s["runs"]):
        missing = [k for k in ("name", "title", "log", "out_dim", "models") if k not in run]
        if missing:
            raise ConfigError(f"--settings runs[{i}]: missing key(s) {missing}")
    return s["runs"]


def run(args: argparse.Namespace) -> int:
    try:
        settings = json.loads(args.settings)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--settings is not valid JSON: {exc}") from exc
    runs = [summarise(r) for r in check_settings(settings)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    title = (f"Pre-training curves, scale '{settings.get('scale')}': loss terms (top) and teacher entropy "
             f"(bottom; ln K dashed: a teacher at ln K is uniform, at 0 one-hot) per run and model")
    draw_figure(runs, title, figures, args.dpi)
    metrics = {r["name"]: {"title": r["title"], "ln_k": r["ln_k"], "steps": r["steps"],
                           "models": {m: {"label": i["label"], "final": i["final"], "collapse": i["collapse"]}
                                      for m, i in r["models"].items()}} for r in runs}
    record = {"protocol": "curves", "metrics": metrics, "figure": {"png": str(figures[0]), "pdf": str(figures[1])},
              "provenance": {"config_hash": config_hash(settings), "code_version": code_version(),
                             "scale": settings.get("scale"), "settings": settings, "created": now()}}
    write_text(out, json.dumps(record, indent=2))
    print(f"[mokd] pre-training curves {figures[0]} (+ .pdf) of {len(runs)} runs, metrics {out}", file=sys.stderr)
    return 0
