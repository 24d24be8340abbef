# What the report and the figures show (functions only, used by workflow/rules/tables.smk): the report()
# arguments of every table and figure file, the attention figures' panels, the pre-training curves' runs.


def table_item(kind):
    """The report() arguments of one file of a table: category Tables, subcategory the table."""
    return dict(caption="../report/table.rst", category="Tables",
                subcategory=lambda w: f"Table {w.table.upper()}", labels={"file": kind})


def figure_item(kind):
    return dict(caption="../report/figure.rst", category="Figures", subcategory=lambda w: w.fig, labels={"file": kind})


def shown_figure_settings(fig):
    """The figure's settings; an attention figure also gets one panel per model, named by its config label
    (the paper's "ViT-S"), not by its timm architecture."""
    s = figure_settings(fig)
    if figure_kind(fig) == "attn-distance":
        s["panels"] = [label(m[1]) for m in figure_members(fig)]
    return s


def pretrained_runs():
    """The experiments this scale pre-trains (those its tables and figures read), in the matrix's order."""
    used = {Path(m).parts[-3] for t in config["tables"] for m in table_inputs(t)}
    used |= {Path(d).parts[-2] for d in cost_inputs()}
    used |= {m[0] for f in config["figures"] for m in figure_members(f)}
    return [e for e in EXPERIMENTS if e in used]


def curves_settings():
    runs = []
    for exp in pretrained_runs():
        roles = EXPERIMENTS[exp]["models"]
        cfg = pretrain_config(exp)
        runs.append({
            "name": exp,
            "title": f"DINO {label(roles[0])}" if len(roles) == 1 else f"MOKD {pair_label(exp)}",
            "log": f"{R}/pretrain/{exp}/log.jsonl",
            "out_dim": cfg["out_dim"],
            "collapse_warning": cfg.get("collapse_warning", 0.98),  # the engine's default (mokd/schemas/pretrain.yaml)
            "models": {r: label(r) for r in roles},
        })
    return {"scale": SCALE, "runs": runs}


CURVES = [f"{R}/figures/pretrain_curves.{ext}" for ext in ("png", "pdf")]
# Besides the .md and .tex of all_targets(): each table's paper view in LaTeX and its HTML page (report items).
REPORT_TARGETS = CURVES + [f"{R}/tables/table_{t}{end}" for t in config["tables"] for end in ("_vs_paper.tex", ".html")]
