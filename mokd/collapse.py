"""When a pre-training's teacher ended collapsed: its MLP-Head teacher's entropy at the last logged step of
the run's log.jsonl, against ln K (K = out_dim, the uniform output's entropy).

One definition, shared by the pre-training-curves figure (mokd/eval/curves.py), the tables' marks
(mokd/tables/marks.py) and the run summary (mokd/workflow/run_summary.py): a teacher is "uniform" above
`collapse_warning` · ln K (the run's setting, 0.98 by default, as the engine's warning) and "one-hot"
below LOW_ENTROPY · ln K (one dimension); either is collapsed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mokd.config import ConfigError

LOW_ENTROPY = 0.05  # fraction of ln K under which a teacher is called collapsed to one dimension
DEFAULT_WARNING = 0.98  # the pretrain schema's default collapse_warning
OK = "ok"


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a log.jsonl in step order; a missing file or a bad line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pre-training log not found: {path}")
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{i}: not a JSON record: {exc}") from exc
    if not records:
        raise ConfigError(f"pre-training log {path} has no records")
    return sorted(records, key=lambda r: r["step"])


def collapse_state(entropy: float, ln_k: float, warning: float = DEFAULT_WARNING) -> str:
    """"uniform" (entropy near ln K), "one-hot" (near 0) or "ok" for a final teacher entropy."""
    if entropy > warning * ln_k:
        return "uniform"
    if entropy < LOW_ENTROPY * ln_k:
        return "one-hot"
    return OK


@dataclass(frozen=True)
class TeacherEnd:
    """One model's teacher at the last logged step of its run."""

    model: str
    entropy: float
    ln_k: float
    state: str  # collapse_state: "ok", "uniform" or "one-hot"

    @property
    def fraction(self) -> float:
        """The final entropy as a fraction of ln K."""
        return self.entropy / self.ln_k

    @property
    def collapsed(self) -> bool:
        return self.state != OK


@dataclass(frozen=True)
class RunTeacher:
    """A model's teacher at the end of one pre-training run (experiment, seed), by the model's label."""

    run: str
    seed: int
    label: str
    end: TeacherEnd

    def describe(self) -> str:
        return f"{self.label} in {self.run}, seed {self.seed} ({self.end.fraction:.3f} ln K, {self.end.state})"


def final_entropy(records: list[dict[str, Any]], model: str, log: str | Path) -> float:
    """The teacher entropy of `model` in the last record that has one."""
    for rec in reversed(records):
        value = rec.get(model, {}).get("teacher_entropy") if isinstance(rec.get(model), dict) else None
        if isinstance(value, (int, float)):
            return float(value)
    raise ConfigError(f"{log}: no teacher_entropy of model {model!r}")


def teacher_ends(log: str | Path, out_dim: int, models: list[str],
                 warning: float = DEFAULT_WARNING) -> dict[str, TeacherEnd]:
    """{model: its teacher at the end of the run} from the run's log.jsonl."""
    records = read_log(log)
    ln_k = math.log(int(out_dim))
    ends = {}
    for model in models:
        entropy = final_entropy(records, model, log)
        ends[model] = TeacherEnd(model, entropy, ln_k, collapse_state(entropy, ln_k, warning))
    return ends
