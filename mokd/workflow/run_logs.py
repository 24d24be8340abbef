"""Where a pre-training run's log is and what reading its teachers' end needs (mokd/collapse.py): the log
path, K and collapse_warning of one run (experiment, seed), for the curves figure, the tables' marks of
cells from a collapsed teacher and the run summary."""

from __future__ import annotations

from typing import Any

from mokd.config import validate
from mokd.workflow.matrix import Matrix
from mokd.workflow.settings import pretrain_config


def run_log(m: Matrix, exp: str, seed: int) -> dict[str, Any]:
    """{"log", "out_dim", "collapse_warning"} of a pre-trained run (not a random initialisation: no log)."""
    cfg = validate(pretrain_config(m, exp, seed), "pretrain")  # defaults filled (collapse_warning)
    return {"log": f"{m.run_dir(exp, seed)}/log.jsonl", "out_dim": cfg["out_dim"],
            "collapse_warning": cfg["collapse_warning"]}
