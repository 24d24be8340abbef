"""Results tables: our metrics beside the paper's reported numbers, as Markdown and LaTeX.

`reported` loads `config/reported.csv` (the paper's numbers with their source and confidence);
`build` is the `python -m mokd table` command (spec format in its docstring); `render` writes the
Markdown and LaTeX from one DataFrame.
"""

from mokd.tables.reported import Reported, TableError, load_reported, lookup

__all__ = ["Reported", "TableError", "load_reported", "lookup"]
