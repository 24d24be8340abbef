"""What the workflow makes: every table and figure of the config (rule `all`), and one named target
rule per registered table and figure (`snakemake table_t1`, `snakemake figure_f4`)."""

from __future__ import annotations

from typing import Any

from mokd.workflow.figures import FIGURES
from mokd.workflow.table_specs import TABLES

TABLE_FORMATS = ("md", "tex")
FIGURE_FORMATS = ("png", "pdf")


def table_files(results: str, table: str) -> list[str]:
    return [f"{results}/tables/table_{table}.{ext}" for ext in TABLE_FORMATS]


def figure_files(results: str, fig: str) -> list[str]:
    return [f"{results}/figures/{fig}.{ext}" for ext in FIGURE_FORMATS]


def built_tables(config: dict[str, Any]) -> list[str]:
    """The tables rule `all` builds: scale.tables, by default every table of the config."""
    return list(config["scale"].get("tables") or config["tables"])


def built_figures(config: dict[str, Any]) -> list[str]:
    """The figures rule `all` builds: scale.figures, by default every figure of the config."""
    chosen = config["scale"].get("figures")
    return list(config["figures"] if chosen is None else chosen)


def all_targets(config: dict[str, Any]) -> list[str]:
    """The files of every table and figure the scale builds, tables first."""
    results = config["scale"]["results"]
    tables = [f for t in built_tables(config) for f in table_files(results, t)]
    figures = [f for fig in built_figures(config) for f in figure_files(results, fig)]
    return tables + figures


def named_targets(results: str) -> dict[str, list[str]]:
    """{rule name: its files} of every registered table (`table_<id>`) and figure (`figure_<id>`)."""
    targets = {f"table_{t}": table_files(results, t) for t in TABLES}
    targets.update({f"figure_{f}": figure_files(results, name) for f, name in FIGURES.items()})
    return targets
