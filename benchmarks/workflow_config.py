"""Pre-training configs of the benchmarks, made by the workflow's own code (mokd/workflow/).

`load_workflow_config` resolves and validates a workflow config file (config/default.yaml,
config/paper.yaml, or a user file with `base:`) as the workflow does. `pretrain_config` builds the
validated `python -m mokd pretrain` config of any pair or single model (not only the matrix's
experiments) with `mokd.workflow.settings.pretrain_settings`, which also builds every experiment's
config in the workflow. `protocol_settings` is the workflow's, with the benchmark's feature cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mokd.config import ConfigError, validate
from mokd.workflow import configs, settings
from mokd.workflow.matrix import Matrix

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_SCHEMA = REPO / configs.WORKFLOW_SCHEMA


def load_workflow_config(path: str | Path) -> dict[str, Any]:
    """A workflow config file with its `base` chain merged under it, validated, defaults filled in."""
    return configs.load_workflow_config([path], root=REPO)


def pair_lambdas(config: dict[str, Any], roles: list[str]) -> list[float]:
    """The lambdas of the matrix's experiment training exactly these models (either order), else Eq. 9's 1, 1."""
    for exp in config["experiments"].values():
        if exp.get("dataset", "pretrain") != "pretrain" or "losses" in exp or "t_head" in exp:
            continue  # an ablation or another dataset (the schema fills `dataset: pretrain` in)
        if list(exp["models"]) == list(roles):
            return [float(x) for x in exp["lambda"]]
        if list(exp["models"]) == list(reversed(roles)):
            return [float(x) for x in reversed(exp["lambda"])]
    return [1.0] * len(roles)


def pretrain_config(
    config: dict[str, Any],
    roles: list[str],
    dataset: str = "pretrain",
    lambdas: list[float] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The validated pretrain config of a pair (two roles) or of a DINO baseline (one role)."""
    for role in roles:
        if role not in config["models"]:
            raise ConfigError(f"unknown model {role!r}; the config defines {sorted(config['models'])}")
    if lambdas is None:
        lambdas = pair_lambdas(config, roles) if len(roles) == 2 else [1.0]
    return validate(settings.pretrain_settings(config, roles, lambdas, dataset, overrides), "pretrain")


def protocol_settings(config: dict[str, Any], protocol: str, feature_cache: str | Path) -> dict[str, Any]:
    """An evaluation protocol's settings as the workflow's evaluate rule gets them, with this feature cache."""
    if protocol not in config["protocols"]:
        raise ConfigError(f"unknown protocol {protocol!r}; the config defines {sorted(config['protocols'])}")
    out = settings.protocol_settings(Matrix(config), protocol)
    out["feature_cache"] = str(feature_cache)
    return out
