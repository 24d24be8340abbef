# What the report shows (used by workflow/rules/tables.smk): the report() arguments of every table and
# figure file; the attention figures' panels and the pre-training curves' runs come from
# mokd/workflow/report.py, bound to this config.


def table_item(kind):
    """The report() arguments of one file of a table: category Tables, subcategory the table."""
    return dict(caption="../report/table.rst", category="Tables",
                subcategory=lambda w: f"Table {w.table.upper()}", labels={"file": kind})


def figure_item(kind):
    return dict(caption="../report/figure.rst", category="Figures", subcategory=lambda w: w.fig, labels={"file": kind})


from mokd.workflow import report as _report
from mokd.workflow.targets import built_tables

shown_figure_settings = partial(_report.shown_figure_settings, M)
pretrained_runs = partial(_report.pretrained_runs, M)
curves_settings = partial(_report.curves_settings, M)


CURVES = [f"{R}/figures/pretrain_curves.{ext}" for ext in ("png", "pdf")]
# Besides the .md and .tex of all_targets(): each table's paper view in LaTeX and its HTML page (report items).
REPORT_TARGETS = CURVES + [f"{R}/tables/table_{t}{end}" for t in built_tables(config) for end in ("_vs_paper.tex", ".html")]
