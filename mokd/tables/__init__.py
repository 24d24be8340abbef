"""Results tables in the paper's layout: our metrics, and the paper's reported numbers with Δ.

`reported` loads `config/reported.csv` (the paper's numbers with their source and confidence);
`build` is the `python -m mokd table` command (spec format in its docstring); `cells` and `stats` hold
one cell's values (a seed Stat: mean ± std (n)); `views` lays out the two views in the paper's rows and
columns (ours; the paper's values with Δ); `render` writes them as Markdown, LaTeX and HTML.
"""

from mokd.tables.reported import Reported, TableError, load_reported, lookup

__all__ = ["Reported", "TableError", "load_reported", "lookup"]
