"""The settings each job gets: a pre-training's `python -m mokd pretrain` config and an evaluation
protocol's settings, each built from its own slice of the workflow config (so that editing one
experiment or protocol reruns only its jobs)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mokd.config import ConfigError, deep_merge, validate
from mokd.workflow.configs import pretrain_key_origin
from mokd.workflow.matrix import Matrix

# Experiment keys that are not pre-training settings (every other key overrides `pretrain`).
MATRIX_KEYS = ("models", "lambda", "dataset")
# Commands whose settings take the normalisation, and those that cache features.
NORMALISED_COMMANDS = ("knn", "linear", "finetune")
CACHING_COMMANDS = ("knn", "linear")


def pretrain_settings(
    config: Mapping[str, Any],
    roles: Sequence[str],
    lambdas: Sequence[float],
    dataset: str = "pretrain",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The pre-training config (not validated) of a pair (two roles) or of a DINO baseline (one role):
    the scale's `pretrain` section, the normalisation, the baseline's terms (L_sm only), the pair's
    T-Head width (the widest ViT's), the overrides, and each model's family settings (with the model's own
    `settings` over them), backbone, lambda."""
    pair = len(roles) == 2
    cfg = copy.deepcopy(config["pretrain"])
    cfg["data"] = copy.deepcopy(config["datasets"][dataset]["spec"])
    norm = config["normalization"]
    cfg["crops"] = {**cfg.get("crops", {}), "mean": norm["mean"], "std": norm["std"]}
    if not pair:  # the DINO baseline: L_sm only
        cfg["losses"] = {**cfg.get("losses", {}), "self_thead": False, "cross_mlp": False, "cross_thead": False}
    models = config["models"]
    vit_widths = [models[r]["width"] for r in roles if models[r]["family"] == "vit"]
    if pair and vit_widths:  # authors: D is the ViT's width
        cfg["t_head"] = {**cfg.get("t_head", {}), "dim": max(vit_widths)}
    if overrides:
        cfg = deep_merge(cfg, dict(overrides))
    entries = []
    for role, lam in zip(roles, lambdas):
        m = models[role]
        own = {**(m.get("settings") or {}), "name": role, "backbone": m["backbone"]}
        entry = deep_merge(config["families"][m["family"]], own)
        entry["lambda"] = lam
        entries.append(entry)
    cfg["models"] = entries
    return cfg


def pretrain_config(matrix: Matrix, exp: str, seed: int | None = None) -> dict[str, Any]:
    """The full `python -m mokd pretrain` config of one experiment of the matrix and seed (default: the
    scale's first), not validated. A random-initialisation run (`random_<model>`) gets its model's
    DINO baseline config: its exported teacher is that baseline's initial teacher."""
    seed = matrix.first_seed if seed is None else seed
    role = matrix.random_role(exp)
    if role is not None:
        return pretrain_settings(matrix.config, [role], [1.0], overrides={"seed": seed})
    e = matrix.experiments[exp]
    lambdas = e["lambda"] if len(e["models"]) == 2 else [1.0]
    overrides = {k: v for k, v in e.items() if k not in MATRIX_KEYS}
    return pretrain_settings(matrix.config, e["models"], lambdas, e.get("dataset", "pretrain"), {**overrides, "seed": seed})


def check_pretrain_configs(matrix: Matrix) -> None:
    """Validate every experiment's pre-training config (before any job starts: a wrong key in `pretrain`,
    `families` or an experiment's overrides would otherwise only fail in its own job). ConfigError
    names the workflow config key the wrong key comes from."""
    for exp in matrix.experiments:
        try:
            validate(pretrain_config(matrix, exp), "pretrain")
        except ConfigError as exc:
            where = f"pre-training settings of experiment '{exp}'"
            if exc.key is None:
                raise ConfigError(f"{where}: {exc}") from None
            key = pretrain_key_origin(matrix.config, exp, exc.key)
            raise ConfigError(f"config key '{key}': {exc.detail} ({where})", key=key, detail=exc.detail) from None


# The settings schema (mokd/schemas/<name>.yaml) of each evaluation command and figure kind.
COMMAND_SCHEMAS = {"knn": "knn", "linear": "linear", "finetune": "finetune", "detect": "detection",
                   "tsne": "tsne", "attn-distance": "attention_distance"}


def check_settings(settings: Mapping[str, Any], schema: str, where: str) -> None:
    """The settings a config states for a command, against its schema: ConfigError naming the full
    workflow key (`protocols.linear.settings.epoch`, with the closest known key)."""
    try:
        validate(dict(settings), schema)
    except ConfigError as exc:
        key = where if exc.key in (None, "<top level>") else f"{where}.{exc.key}"
        sep = " " if exc.detail.startswith("must be") else ": "
        raise ConfigError(f"config key '{key}'{sep}{exc.detail}", key=key, detail=exc.detail) from None


def check_evaluation_settings(matrix: Matrix) -> None:
    """Every protocol's and figure's settings, before any job starts (a wrong key would otherwise fail
    only in its job, after pre-training)."""
    from mokd.workflow.figures import figure_kind

    for name, p in matrix.protocols.items():
        check_settings(p["settings"], COMMAND_SCHEMAS[p["command"]], f"protocols.{name}.settings")
    for fig, f in matrix.config["figures"].items():
        check_settings(f["settings"], COMMAND_SCHEMAS[figure_kind(fig)], f"figures.{fig}.settings")


def protocol_settings(matrix: Matrix, protocol: str, role: str | None = None) -> dict[str, Any]:
    """The settings of one evaluation protocol, its datasets resolved; with `role`, the backbone the
    evaluated checkpoint must hold."""
    p = matrix.protocols[protocol]
    s = copy.deepcopy(p["settings"])
    for key, ds in p["datasets"].items():
        s[key] = matrix.dataset_spec(ds)
    s["scale"] = matrix.scale
    norm = matrix.config["normalization"]
    if p["command"] in NORMALISED_COMMANDS:
        s.setdefault("mean", norm["mean"])
        s.setdefault("std", norm["std"])
    if p["command"] in CACHING_COMMANDS:
        s.setdefault("feature_cache", f"{matrix.results}/cache/features")
    if role is not None and p["command"] in NORMALISED_COMMANDS:
        s["expected_backbone"] = matrix.models[role]["backbone"]
    return s


def as_json(obj: Any) -> str:
    """Settings as one command-line argument (sorted keys: the same settings, the same string)."""
    return json.dumps(obj, sort_keys=True)


def group_plan(matrix: Matrix, protocols: Sequence[str], exp: str, roles: Sequence[str], seed: int) -> str:
    """The `python -m mokd evaluate --plan` of an evaluation group's job over the teachers `roles` of a run
    (one, or both of a pair): for each teacher in turn, each protocol's command, its settings (those it
    gets as a job of its own), its metrics file and the teacher, in the group's order."""
    plan = [
        {"protocol": p, "command": matrix.protocols[p]["command"], "settings": protocol_settings(matrix, p, role),
         "out": matrix.metrics(exp, role, p, seed), "checkpoint": matrix.teacher(exp, role, seed)}
        for role in roles
        for p in protocols
    ]
    return as_json(plan)
