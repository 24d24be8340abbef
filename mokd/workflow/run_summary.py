"""What a finished run of a scale shows, in a few lines (`python -m mokd summary`, printed at the end of
scripts/run.sh): how many model runs ended with a collapsed MLP-Head teacher (mokd/collapse.py), each
DINO baseline's k-NN gain over its random initialisation (where scale.random_init_reference), and where
the tables and figures are. Missing or unreadable results never fail it: it says what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mokd.collapse import LOW_ENTROPY, RunTeacher, teacher_ends
from mokd.config import ConfigError
from mokd.tables.cells import fmt_signed
from mokd.tables.stats import aggregate
from mokd.workflow.matrix import Matrix
from mokd.workflow.report import pretrained_run_seeds
from mokd.workflow.run_logs import run_log
from mokd.workflow.specs import table_inputs
from mokd.workflow.targets import built_figures, built_tables, figure_files, table_files

SHOWN = 4  # collapsed teachers and missing files named before "and N more"


@dataclass(frozen=True)
class Gain:
    """A DINO baseline's k-NN minus its random initialisation's, per seed (same protocol)."""

    label: str
    protocol: str
    by_seed: dict[int, float]


@dataclass
class Summary:
    """Everything the summary says, collected from a results folder."""

    scale: str
    results: str
    seeds: list[int]
    random_reference: bool
    warnings: set[float] = field(default_factory=set)
    ends: list[RunTeacher] = field(default_factory=list)
    gains: list[Gain] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what was not found or not readable, one phrase each
    tables: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))  # (built, not built) ids
    figures: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))


def collect_ends(m: Matrix, summary: Summary) -> None:
    """The teacher of every model of every pre-training run the scale's tables and figures read."""
    for exp, seed in pretrained_run_seeds(m):
        log = run_log(m, exp, seed)
        roles = list(m.experiments[exp]["models"])
        try:
            ends = teacher_ends(log["log"], log["out_dim"], roles, log["collapse_warning"])
        except FileNotFoundError:
            summary.missing.append(f"run log {log['log']}")
            continue
        except (ConfigError, OSError, KeyError, TypeError, AttributeError) as exc:
            summary.missing.append(f"unreadable run log {log['log']} ({exc})")
            continue
        summary.warnings.add(log["collapse_warning"])
        summary.ends += [RunTeacher(exp, seed, m.label(r), ends[r]) for r in roles]


def top1(path: str) -> float | None:
    """metrics.top1 of a metrics file; None when it is missing or unreadable."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))["metrics"]["top1"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def baseline_knn_files(m: Matrix) -> Iterator[tuple[str, str, str, int]]:
    """(baseline, model, protocol, seed) of every DINO baseline's k-NN metrics file a built table reads."""
    files = sorted({f for t in built_tables(m.config) for f in table_inputs(m, t)})
    for f in files:
        parsed = m.parse_metrics(f)
        if parsed is None or parsed[0] not in m.experiments or not m.is_baseline(parsed[0]):
            continue
        exp, seed, role, protocol = parsed
        if m.protocols[protocol]["command"] == "knn":
            yield exp, role, protocol, seed


def collect_gains(m: Matrix, summary: Summary) -> None:
    """Each DINO baseline's k-NN minus its random initialisation's, per seed (paired)."""
    gains: dict[tuple[str, str, str], dict[int, float]] = {}
    for exp, role, protocol, seed in baseline_knn_files(m):
        ours_file = m.metrics(exp, role, protocol, seed)
        ref_file = m.metrics(m.random_run(role), role, protocol, seed)
        ours, ref = top1(ours_file), top1(ref_file)
        summary.missing += [f"metrics file {p}" for p, v in ((ours_file, ours), (ref_file, ref)) if v is None]
        by_seed = gains.setdefault((exp, role, protocol), {})
        if ours is not None and ref is not None:
            by_seed[seed] = ours - ref
    order = list(m.experiments)
    for (exp, role, protocol), by_seed in sorted(gains.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][2])):
        if by_seed:
            summary.gains.append(Gain(m.label(role), protocol, dict(sorted(by_seed.items()))))


def split_built(files: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(names whose every file exists, the others)."""
    built = [name for name, paths in files.items() if all(Path(p).is_file() for p in paths)]
    return built, [name for name in files if name not in built]


def collect(m: Matrix) -> Summary:
    """The summary of a scale's results folder (its config: `m`)."""
    s = Summary(m.scale, m.results, m.seeds, m.random_reference)
    collect_ends(m, s)
    if m.random_reference:
        collect_gains(m, s)
    s.tables = split_built({t: table_files(m.results, t) for t in built_tables(m.config)})
    s.figures = split_built({f: figure_files(m.results, f) for f in built_figures(m.config)})
    return s


# ------------------------------------------------------------------------------------------ text
def _first(items: list[str], more: str = "") -> str:
    shown = "; ".join(items[:SHOWN])
    return shown + (f"; and {len(items) - SHOWN} more{more}" if len(items) > SHOWN else "")


def _seeds(seeds: list[int]) -> str:
    return f"one seed (seed {seeds[0]})" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"


def collapse_line(s: Summary) -> str:
    if not s.ends:
        return "collapse: no run log found"
    collapsed = [e for e in s.ends if e.end.collapsed]
    fractions = [e.end.fraction for e in s.ends]
    warnings = "/".join(f"{w:g}" for w in sorted(s.warnings))
    head = (f"collapse: {len(collapsed)} of {len(s.ends)} model runs ended with a collapsed MLP-Head teacher "
            f"(final entropy above {warnings} ln K or below {LOW_ENTROPY:g} ln K; all runs: "
            f"{min(fractions):.2f}-{max(fractions):.2f} ln K)")
    if not collapsed:
        return head
    curves = f" in {s.results}/figures/pretrain_curves.png"
    return f"{head}, marked ‡ in every table cell from them: {_first([e.describe() for e in collapsed], curves)}"


def gain_text(g: Gain, seeds: list[int]) -> str:
    """One baseline's gain: one number, or mean ± std (n) over its seeds; its seeds when not the scale's."""
    text = fmt_signed(aggregate(list(g.by_seed.values())), 1)
    if list(g.by_seed) == seeds:
        return text
    return f"{text} (seed{'s' if len(g.by_seed) > 1 else ''} {', '.join(map(str, g.by_seed))} only)"


def gains_line(s: Summary) -> str:
    head = "DINO k-NN − random initialisation"
    if not s.random_reference:
        return f"{head}: not measured at this scale (scale.random_init_reference: false)"
    if not s.gains:
        return f"{head}: no baseline with both metrics files"
    protocols = sorted({g.protocol for g in s.gains})
    spread = "; mean ± std (n) of the per-seed differences" if len(s.seeds) > 1 else ""
    parts = [f"{g.label}{f' ({g.protocol})' if len(protocols) > 1 else ''} {gain_text(g, s.seeds)}" for g in s.gains]
    return f"{head} ({'/'.join(protocols)} top-1, {_seeds(s.seeds)}{spread}): {', '.join(parts)}"


def where_line(s: Summary) -> str:
    built, missing = s.tables
    figs, figs_missing = s.figures
    text = (f"tables: {s.results}/tables/ ({len(built)} of {len(built) + len(missing)} built: table_<id>.md, .tex); "
            f"figures: {s.results}/figures/ ({len(figs)} of {len(figs) + len(figs_missing)})")
    absent = [f"table {t}" for t in missing] + [f"figure {f}" for f in figs_missing]
    return text + (f"; not built: {', '.join(absent)}" if absent else "")


def render(s: Summary) -> str:
    """The summary as a few lines of text."""
    lines = [f"[summary] scale '{s.scale}' ({s.results}), {_seeds(s.seeds)}:",
             f"  {collapse_line(s)}", f"  {gains_line(s)}", f"  {where_line(s)}"]
    if s.missing:
        lines.append(f"  not found or unreadable ({len(s.missing)}): {_first(s.missing)}")
    return "\n".join(lines)


def summary_text(config: dict[str, Any]) -> str:
    """The summary of a validated workflow config's results folder."""
    return render(collect(Matrix(config)))
