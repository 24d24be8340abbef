"""The spec `python -m mokd table` renders: a registered table's rows (mokd/workflow/table_specs.py)
with its title, caption and footer, and what the table rule and the `cost` rule read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mokd.config import config_hash, validate
from mokd.workflow.matrix import Matrix
from mokd.workflow.run_logs import run_log
from mokd.workflow.settings import pretrain_config, protocol_settings
from mokd.workflow.table_specs import TABLES


def caption(m: Matrix, roles: list[str]) -> str:
    """The scale and its stand-in models (e.g. `R50 = ResNet-18 at 32 px`)."""
    s = m.config["scale"]
    stand = "; ".join(f"{m.label(r)} = {m.models[r]['stand_in']}" for r in roles if m.models[r].get("stand_in"))
    text = f"Scale '{s['name']}': {s['description'].strip()}."
    return text + (f" Models: {stand}." if stand else "")


def cell_files(rows: list[dict[str, Any]]) -> list[str]:
    """Every metrics file the cells of these rows read (their random-initialisation references too), in
    order (with repeats)."""
    files: list[str] = []
    for row in rows:
        for c in row["cells"].values():
            for part in (c, c.get("reference") or {}):
                paths = part.get("metrics")
                files += paths if isinstance(paths, list) else ([paths] if paths else [])
    return files


def run_teachers(m: Matrix, rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[str]]:
    """{(experiment, seed): the models whose teachers these rows' cells read}, in the order first read; not
    the random initialisations (no pre-training, no log) nor files outside eval/ (Table S3's cost)."""
    runs: dict[tuple[str, int], list[str]] = {}
    for path in cell_files(rows):
        parsed = m.parse_metrics(path)
        if parsed is not None and m.random_role(parsed[0]) is None:
            roles = runs.setdefault((parsed[0], parsed[1]), [])
            roles += [] if parsed[2] in roles else [parsed[2]]
    return runs


def table_runs(m: Matrix, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spec's `runs`: per pre-training run whose teachers the cells read, its log, K, collapse_warning
    and those teachers, so that the table marks the cells of a teacher that ended collapsed."""
    return [{"name": exp, "seed": seed, **run_log(m, exp, seed),
             "models": {r: {"label": m.label(r), "teacher": m.teacher(exp, r, seed)} for r in roles}}
            for (exp, seed), roles in run_teachers(m, rows).items()]


def table_config_hash(m: Matrix, rows: list[dict[str, Any]]) -> str:
    """Hash of the config slices a table's numbers come from (its runs, seeds and protocols), so that
    editing one experiment reruns only the tables that show it."""
    runs, protocols = set(), set()
    for path in cell_files(rows):
        parsed = m.parse_metrics(path)
        if parsed is not None:
            exp, seed, _, protocol = parsed
            runs.add((exp, seed))
            protocols.add(protocol)
    return config_hash({
        "scale": m.config["scale"],
        "experiments": {f"{e}/seed{s}": pretrain_config(m, e, s) for e, s in sorted(runs)},
        "protocols": {p: protocol_settings(m, p) for p in sorted(protocols)},
    })


def seeds_note(m: Matrix) -> str:
    """What a cell is over seeds (scale.seeds), said under every table."""
    if len(m.seeds) == 1:
        return (f"One run per cell (seed {m.seeds[0]}): a single seed, not a measure of the spread between "
                f"runs; list more in scale.seeds for mean ± std (n).")
    return f"Each cell: mean ± std (n) over seeds {', '.join(map(str, m.seeds))} (one pre-training and evaluation per seed)."


def protocol_notes(m: Matrix, rows: list[dict[str, Any]]) -> list[str]:
    """What a linear-probe cell reports (its protocol's `report` setting), once per such protocol."""
    protocols = sorted({parsed[3] for path in cell_files(rows) if (parsed := m.parse_metrics(path)) is not None})
    notes = []
    for name in protocols:
        if name not in m.protocols or m.protocols[name]["command"] != "linear":
            continue
        s = validate(m.protocols[name]["settings"], "linear")  # the schema's defaults where the config is silent
        report, every = s["report"], s["val_every"]
        if report == "best":
            notes.append(f"Linear probe ({name}): the best val top-1 of the evaluations every {every} epochs, as the "
                         "authors' eval_linear.py reports it (the last epoch's is top1_last in each metrics file).")
        else:
            notes.append(f"Linear probe ({name}): the last epoch's val top-1 (the best of the evaluations every "
                         f"{every} epochs is top1_best in each metrics file).")
    return notes


def table_spec(m: Matrix, table: str, code_version: str) -> dict[str, Any]:
    """The full spec of a registered table, its rows from the config's `tables.<table>` entry."""
    entry = TABLES[table]
    body = entry.build(m, m.config["tables"][table])
    return {
        "id": table,
        "title": entry.title,
        "caption": caption(m, sorted(set(body.roles), key=list(m.models).index)),
        "reconstructed": entry.reconstructed,
        "columns": [{"key": k, "label": label} for k, label in body.columns],
        "derived": [{"key": k, "label": label, "minus": list(minus)} for k, label, minus in body.derived],
        "rows": body.rows,
        "runs": table_runs(m, body.rows),
        "notes": [seeds_note(m), *body.notes, *protocol_notes(m, body.rows)],
        "decimals": body.decimals,
        "footer": {"config_hash": table_config_hash(m, body.rows), "code_version": code_version},
    }


def table_inputs(m: Matrix, table: str) -> list[str]:
    """Every metrics file a table reads (its rows only: no footer, no config hash)."""
    entry = TABLES[table]
    return sorted(set(cell_files(entry.build(m, m.config["tables"][table]).rows)))


def table_run_exports(m: Matrix, table: str) -> list[str]:
    """The export folders of the runs whose teachers a table's cells read: a run's log is complete once its
    export exists, and a rerun of the run rebuilds the table's marks."""
    rows = TABLES[table].build(m, m.config["tables"][table]).rows
    return sorted({m.export_dir(exp, seed) for exp, seed in run_teachers(m, rows)})


def cost_inputs(m: Matrix) -> list[str]:
    """The export folders whose summaries Table S3's time and memory come from."""
    t = m.config["tables"]["s3"]
    return [m.export_dir(e, m.first_seed) for e in t["dino"] + [t["mokd"]]]


def cost_settings(m: Matrix) -> dict[str, Any]:
    t = m.config["tables"]["s3"]
    return {"scale": m.scale, "rows": [{"name": "DINO", "runs": list(t["dino"])}, {"name": "MOKD", "runs": [t["mokd"]]}]}
