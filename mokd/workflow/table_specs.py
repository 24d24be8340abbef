"""Every table of the paper: its registry entry and the builder of its rows, in one place.

A table is one `@table(...)` builder below: its id (the `tables.<id>` key of the workflow config, the
`table_<id>` target rule, the id in config/reported.csv), title, whether the paper's numbers are a
reconstruction, and what its config entry holds (the workflow schema's description of
`tables.<id>`). The builder turns that config entry (config/matrix.yaml) into columns and rows whose
cells name a metrics file and the value in it; `mokd.workflow.specs.table_spec` adds the title,
caption and footer that `python -m mokd table` renders beside the reported numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mokd.config import ConfigError
from mokd.workflow.matrix import Matrix


@dataclass
class Body:
    """What a builder returns: columns [(key, label)], rows, the models shown (for the caption),
    derived columns [(key, label, (minuend, subtrahend))], notes, decimals."""

    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]
    roles: list[str]
    derived: list[tuple[str, str, tuple[str, str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decimals: int = 1


Builder = Callable[[Matrix, Mapping[str, Any]], Body]


@dataclass(frozen=True)
class Table:
    """One registered table."""

    id: str
    title: str
    reconstructed: bool  # the paper's numbers of this table are reconstructed (rendered as such)
    config: str  # what its `tables.<id>` entry holds
    build: Builder


TABLES: dict[str, Table] = {}


def table(id: str, title: str, config: str, reconstructed: bool = True) -> Callable[[Builder], Builder]:
    """Register a builder as table `id` (the decorator of every table below)."""

    def register(build: Builder) -> Builder:
        if id in TABLES:
            raise ValueError(f"table {id!r} is registered twice")
        TABLES[id] = Table(id, title, reconstructed, config, build)
        return build

    return register


# ------------------------------------------------------------------------------- building blocks
def cell(m: Matrix, exp: str, role: str, protocol: str, value: str = "metrics.top1") -> dict[str, Any]:
    """A model's value in one run and protocol: one metrics file per seed (mean ± std (n) over several);
    at the CPU scales, also its random initialisation's files of the same seeds (the reference view)."""
    out: dict[str, Any] = {"metrics": m.seed_metrics(exp, role, protocol), "value": value, "join": "mean"}
    if m.random_reference:
        out["reference"] = {"metrics": m.seed_metrics(m.random_run(role), role, protocol), "value": value}
    return out


def protocol_map(t: Mapping[str, Any]) -> dict[str, str]:
    """A table's protocols as {column key: protocol}: a list uses each protocol's name as its key."""
    p = t["protocols"]
    return dict(p) if isinstance(p, Mapping) else {name: name for name in p}


def model_rows(m: Matrix, pairs: list[str], protocols: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows `<model>@<pair>` with DINO and MOKD cells for every protocol."""
    rows, roles = [], []
    for exp in pairs:
        for role in m.experiments[exp]["models"]:
            cells = {}
            for col, protocol in protocols.items():
                cells[f"{col}_dino"] = cell(m, m.baseline_of(role), role, protocol)
                cells[f"{col}_mokd"] = cell(m, exp, role, protocol)
            rows.append({"key": f"{m.label(role)}@{m.pair_key(exp)}", "label": f"{m.label(role)} ({m.pair_label(exp)})",
                         "cells": cells})
            roles.append(role)
    return rows, roles


def gain_columns(protocols: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[tuple[str, str, tuple[str, str]]]]:
    """DINO and MOKD columns of every protocol, and their difference."""
    columns, derived = [], []
    for col in protocols:
        name = col.replace("_", " ")
        columns += [(f"{col}_dino", f"{name} DINO"), (f"{col}_mokd", f"{name} MOKD")]
        derived.append((f"{col}_gain", f"{name} Δ", (f"{col}_mokd", f"{col}_dino")))
    return columns, derived


def dino_vs_mokd(m: Matrix, t: Mapping[str, Any]) -> Body:
    """Each model of each pair, DINO vs MOKD, for every protocol (with the gain)."""
    protocols = protocol_map(t)
    rows, roles = model_rows(m, t["pairs"], protocols)
    columns, derived = gain_columns(protocols)
    return Body(columns, rows, roles, derived)


# ----------------------------------------------------------------------------------- the tables
table("t1", "Table T1: ImageNet k-NN and linear top-1, independent (DINO) vs MOKD", "pairs, protocols")(dino_vs_mokd)


@table("t2", "Table T2: small students with a larger partner, linear top-1", "pairs (larger model first), protocol")
def t2(m: Matrix, t: Mapping[str, Any]) -> Body:
    rows, roles = [], []
    for exp in t["pairs"]:
        big, small = m.experiments[exp]["models"]
        rows.append({
            "key": f"{m.label(small)}@{m.pair_key(exp)}",
            "label": f"{m.label(small)} with {m.label(big)}",
            "cells": {
                "teacher_linear_mokd": cell(m, exp, big, t["protocol"]),
                "linear_dino": cell(m, m.baseline_of(small), small, t["protocol"]),
                "linear_mokd": cell(m, exp, small, t["protocol"]),
            },
        })
        roles += [big, small]
    columns = [("teacher_linear_mokd", "larger model, MOKD"), ("linear_dino", "smaller, DINO"),
               ("linear_mokd", "smaller, MOKD")]
    derived = [("linear_gain", "smaller Δ (MOKD−DINO)", ("linear_mokd", "linear_dino"))]
    notes = ["SEED, ReKD and DisCo numbers for these students are in Table S1 (R50/R101 with Eff-b0 and Mob-v3)."]
    return Body(columns, rows, roles, derived, notes)


table("t3", "Table T3: semi-supervised fine-tuning on 1 % and 10 % of the labels, top-1",
      "pairs, protocols (semi-supervised)")(dino_vs_mokd)
table("t4", "Table T4: transfer by fine-tuning on CIFAR-10 and CIFAR-100, top-1",
      "pairs, protocols (CIFAR transfer)")(dino_vs_mokd)

DETECTION_KEYS = [("AP_bbox", "AP^b"), ("AP50_bbox", "AP^b_50"), ("AP75_bbox", "AP^b_75"),
                  ("AP_segm", "AP^s"), ("AP50_segm", "AP^s_50"), ("AP75_segm", "AP^s_75")]


@table("t5", "Table T5: COCO detection and instance segmentation, C4 Mask R-CNN",
       "rows [[experiment, model], ...], protocol (detection)")
def t5(m: Matrix, t: Mapping[str, Any]) -> Body:
    rows, roles = [], []
    for exp, role in t["rows"]:
        dino = m.is_baseline(exp)
        rows.append({
            "key": f"{m.label(role)}@{'DINO' if dino else m.pair_key(exp)}",
            "label": f"{m.label(role)}, {'DINO' if dino else f'MOKD ({m.pair_label(exp)})'}",
            "cells": {k: cell(m, exp, role, t["protocol"], f"metrics.{k}") for k, _ in DETECTION_KEYS},
        })
        roles.append(role)
    return Body(list(DETECTION_KEYS), rows, roles)


@table("t6", "Table T6: ablation of the distillation modes (ImageNet-100)",
       "rows {name: experiment or [experiments]}, protocols")
def t6(m: Matrix, t: Mapping[str, Any]) -> Body:
    protocols = protocol_map(t)
    first = next(iter(t["rows"].values()))
    pair_roles = [r for e in (first if isinstance(first, list) else [first]) for r in m.experiments[e]["models"]]
    rows = []
    for name, exps in t["rows"].items():
        exps = exps if isinstance(exps, list) else [exps]
        cells = {}
        for role in pair_roles:
            exp = next((e for e in exps if role in m.experiments[e]["models"]), None)
            if exp is None:
                raise ConfigError.at(f"tables.t6.rows.{name}", f"no experiment trains {role!r}")
            for col, protocol in protocols.items():
                cells[f"{role}_{col}"] = cell(m, exp, role, protocol)
        rows.append({"key": name, "label": name, "cells": cells})
    columns = [(f"{r}_{c}", f"{m.label(r)} {c.replace('_', ' ')}") for r in pair_roles for c in protocols]
    return Body(columns, rows, pair_roles)


@table("s1", "Table S1: results on other convnets (linear top-1; larger then smaller model)", "pairs, protocol",
       reconstructed=False)
def s1(m: Matrix, t: Mapping[str, Any]) -> Body:
    columns, mokd_cells, roles = [], {}, []
    for exp in t["pairs"]:
        for role in m.experiments[exp]["models"]:
            key = f"{m.label(role)}@{m.pair_key(exp)}"
            columns.append((key, f"{m.label(role)} ({m.pair_label(exp)})"))
            mokd_cells[key] = cell(m, exp, role, t["protocol"])
            roles.append(role)
    rows = [{"key": name, "label": f"{name} (reported only)", "cells": {}} for name in ("SEED", "ReKD", "DisCo")]
    rows.append({"key": "MOKD", "label": "MOKD", "cells": mokd_cells})
    return Body(columns, rows, roles)


@table("s2", "Table S2: influence of the T-Head depth", "depths {depth: experiment}, protocol", reconstructed=False)
def s2(m: Matrix, t: Mapping[str, Any]) -> Body:
    depths = {int(d): e for d, e in t["depths"].items()}
    roles = m.experiments[next(iter(depths.values()))]["models"]
    rows = [
        {"key": f"depth{d}", "label": f"depth {d}",
         "cells": {m.label(r): cell(m, exp, r, t["protocol"]) for r in roles}}
        for d, exp in sorted(depths.items())
    ]
    return Body([(m.label(r), m.label(r)) for r in roles], rows, list(roles))


@table("s3", "Table S3: training time and memory requirement", "dino [experiments], mokd experiment, protocol",
       reconstructed=False)
def s3(m: Matrix, t: Mapping[str, Any]) -> Body:
    cost, mokd = m.cost_metrics(), t["mokd"]

    def row(key: str, label: str, linear: list[str]) -> dict[str, Any]:
        return {"key": key, "label": label, "cells": {
            "time_h": {"metrics": cost, "value": f"metrics.rows.{key}.train_time_h_text"},
            "mem_gb": {"metrics": cost, "value": f"metrics.rows.{key}.peak_memory_gb_text"},
            "linear": {"metrics": linear, "value": "metrics.top1", "join": "/"},
        }}

    dino_models = " / ".join(m.label(m.experiments[e]["models"][0]) for e in t["dino"])
    s0 = m.first_seed
    rows = [
        row("DINO", f"DINO ({dino_models})",
            [m.metrics(e, m.experiments[e]["models"][0], t["protocol"], s0) for e in t["dino"]]),
        row("MOKD", f"MOKD ({m.pair_label(mokd)})",
            [m.metrics(mokd, r, t["protocol"], s0) for r in m.experiments[mokd]["models"]]),
    ]
    notes = ["Time: total pre-training hours; memory: peak per device (GPU: max allocated; CPU: peak process RSS)."]
    if len(m.seeds) > 1:
        notes.append(f"Every cell: the runs of seed {s0} (the first of the scale's seeds {m.seeds}).")
    columns = [("time_h", "Time (h)"), ("mem_gb", "Mem. (G)"), ("linear", "LP")]
    return Body(columns, rows, list(m.experiments[mokd]["models"]), notes=notes, decimals=2)
