"""Cells from a collapsed teacher: which of a table's pre-training runs (the spec's `runs`) ended with a
collapsed MLP-Head teacher (mokd/collapse.py), which cells read a metrics file evaluated on one of those
teachers (by the `checkpoints` the metrics file records), and the note that names them.

A cell is marked when any of its metrics files (any seed) comes from such a teacher; a derived column
(MOKD − DINO, ours − random initialisation) when the value it uses is. A random initialisation has no
log and is not a run of the spec: its files never mark a cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mokd.collapse import DEFAULT_WARNING, LOW_ENTROPY, RunTeacher, TeacherEnd, teacher_ends
from mokd.config import ConfigError
from mokd.tables.metrics import MetricsFiles
from mokd.tables.reported import TableError

MARK = "‡"
LEGEND = f" {MARK}: from a teacher that ended collapsed (see the notes)."


def _key(path: str) -> Path:
    return Path(path).resolve()


def _ends(run: dict[str, Any], i: int) -> dict[str, TeacherEnd]:
    """The run's teachers at its end; a missing or bad log names the run and its log."""
    where = f"spec runs[{i}] ({run['name']}, seed {run['seed']})"
    try:
        return teacher_ends(run["log"], run["out_dim"], list(run["models"]),
                            float(run.get("collapse_warning", DEFAULT_WARNING)))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{where}: {exc} (the table reads it to mark cells from a collapsed teacher; "
                                "run that pre-training again)") from None
    except ConfigError as exc:
        raise TableError(f"{where}: {exc}") from None


class CollapseMarks:
    """The collapsed teachers of a spec's runs, by teacher path; `used`: those some cell read."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.collapsed: dict[Path, RunTeacher] = {}
        for i, run in enumerate(runs):
            for model, end in _ends(run, i).items():
                if end.collapsed:
                    info = run["models"][model]
                    self.collapsed[_key(info["teacher"])] = RunTeacher(run["name"], run["seed"], info["label"], end)
        self.used: set[Path] = set()

    def reads_collapsed(self, cell: dict[str, Any] | None, files: MetricsFiles, where: str) -> bool:
        """Whether any metrics file of the cell (not of its reference) comes from a collapsed teacher."""
        if not self.collapsed or not cell or cell.get("metrics") is None:
            return False
        paths = cell["metrics"] if isinstance(cell["metrics"], list) else [cell["metrics"]]
        hits = {_key(c) for p in paths for c in files.read(p, where).get("checkpoints") or [] if isinstance(c, str)}
        hits &= set(self.collapsed)
        self.used |= hits
        return bool(hits)

    def note(self) -> str | None:
        """The note explaining the mark and naming every collapsed teacher a cell read; None when none."""
        named = [c.describe() for key, c in self.collapsed.items() if key in self.used]
        if not named:
            return None
        return (f"{MARK}: a value from a teacher that ended collapsed (in at least one seed), or a difference using "
                f"one: not a result. A teacher has collapsed when the entropy of its MLP-Head output at the last "
                f"logged step of its run is above the run's collapse_warning × ln K (default {DEFAULT_WARNING}: a "
                f"uniform output) or below {LOW_ENTROPY} ln K (one dimension), K = out_dim. Collapsed teachers (model "
                f"in experiment, seed; final entropy as a fraction of ln K): {'; '.join(named)}.")
