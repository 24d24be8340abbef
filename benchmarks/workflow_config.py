"""Pre-training configs of the benchmark, read from a workflow config the way the workflow reads them.

`load_workflow_config` resolves a workflow config file (config/default.yaml, config/paper.yaml, or a
user file with `base:`) the way workflow/rules/common.smk's `_resolve_config` does and validates it
against workflow/schemas/config.schema.yaml (defaults filled in). `pretrain_config` then builds the
`python -m mokd pretrain` config of a pair or of one model the way common.smk's `pretrain_config`
does: the scale's `pretrain` section, the normalisation, the DINO baseline's terms (L_sm only), the
pair's T-Head width (the widest ViT's), and each model's family settings, backbone and lambda.
`protocol_settings` resolves an evaluation protocol's settings the way common.smk's does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mokd.config import ConfigError, deep_merge, load_yaml, validate

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def load_workflow_config(path: str | Path) -> dict[str, Any]:
    """A workflow config file with its `base` chain merged under it, validated, defaults filled in."""
    from mokd.workflow.configs import load_workflow_config as load

    return load([path], root=REPO)


def pair_lambdas(config: dict[str, Any], roles: list[str]) -> list[float]:
    """The lambdas of the matrix's experiment training exactly these models (either order), else Eq. 9's 1, 1."""
    for exp in config["experiments"].values():
        if "dataset" in exp or "losses" in exp or "t_head" in exp:
            continue
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
    pair = len(roles) == 2
    cfg = copy.deepcopy(config["pretrain"])
    cfg["data"] = copy.deepcopy(config["datasets"][dataset]["spec"])
    norm = config["normalization"]
    cfg["crops"] = {**cfg.get("crops", {}), "mean": norm["mean"], "std": norm["std"]}
    if not pair:  # the DINO baseline: L_sm only
        cfg["losses"] = {**cfg.get("losses", {}), "self_thead": False, "cross_mlp": False, "cross_thead": False}
    vit_widths = [config["models"][r]["width"] for r in roles if config["models"][r]["family"] == "vit"]
    if pair and vit_widths:  # authors: D is the ViT's width
        cfg["t_head"] = {**cfg.get("t_head", {}), "dim": max(vit_widths)}
    if overrides:
        cfg = deep_merge(cfg, overrides)
    lambdas = lambdas if lambdas is not None else (pair_lambdas(config, roles) if pair else [1.0])
    models = []
    for role, lam in zip(roles, lambdas):
        m = config["models"][role]
        entry = deep_merge(config["families"][m["family"]], {"name": role, "backbone": m["backbone"]})
        entry["lambda"] = lam
        models.append(entry)
    cfg["models"] = models
    return validate(cfg, "pretrain")


def protocol_settings(config: dict[str, Any], protocol: str, feature_cache: str | Path) -> dict[str, Any]:
    """An evaluation protocol's settings with its datasets resolved, as common.smk's `protocol_settings`."""
    if protocol not in config["protocols"]:
        raise ConfigError(f"unknown protocol {protocol!r}; the config defines {sorted(config['protocols'])}")
    p = config["protocols"][protocol]
    settings = copy.deepcopy(p["settings"])
    for key, dataset in p["datasets"].items():
        settings[key] = copy.deepcopy(config["datasets"][dataset]["spec"])
    settings.setdefault("mean", config["normalization"]["mean"])
    settings.setdefault("std", config["normalization"]["std"])
    settings["feature_cache"] = str(feature_cache)
    return settings

