# Config loading and validation, the experiment matrix, paths and input functions. No rules here.

import copy
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from mokd.config import ConfigError, config_hash, deep_merge, load_yaml, validate
from mokd.launch import gpu_resource
from mokd.provenance import code_version

DEFAULT_CONFIG = "config/default.yaml"
# Jobs run `python` from the environment that runs Snakemake (the project's .venv or conda env),
# also when Snakemake was started by its path without activating that environment.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
ENV = "../../environment.yml"  # conda environment of every rule (used with --software-deployment-method conda)


def _resolve_config(cfg):
    """The default config when none was given; a `base` config chain merged under the given one."""
    if "scale" not in cfg:  # no --configfile: the embedded default (plus any --config overrides)
        cfg = deep_merge(load_yaml(DEFAULT_CONFIG), cfg)
    seen = set()
    while "base" in cfg:
        base = cfg.pop("base")
        if base in seen:
            raise WorkflowError(f"config: `base` chain loops at {base}")
        seen.add(base)
        cfg = deep_merge(load_yaml(base), cfg)
    return cfg


try:
    _cfg = validate(_resolve_config(dict(config)), load_yaml("workflow/schemas/config.schema.yaml"))
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
config.clear()
config.update(_cfg)

R = config["scale"]["results"]
SCALE = config["scale"]["name"]
MODELS = config["models"]
EXPERIMENTS = config["experiments"]
PROTOCOLS = config["protocols"]
# How jobs are launched and sized does not change a number: not part of the tables' config hash.
CONFIG_HASH = config_hash({k: v for k, v in config.items() if k not in ('launch', 'resources')})
CODE_VERSION = code_version()


def _check_matrix():
    """Every name the matrix uses must be defined; report the first that is not, with its key."""
    for exp, e in EXPERIMENTS.items():
        for role in e["models"]:
            if role not in MODELS:
                raise WorkflowError(f"config key 'experiments.{exp}.models': unknown model {role!r}")
        if len(e["models"]) == 2 and len(e.get("lambda", [])) != 2:
            raise WorkflowError(f"config key 'experiments.{exp}.lambda': a pair needs two lambdas")
        ds = e.get("dataset", "pretrain")
        if ds not in config["datasets"]:
            raise WorkflowError(f"config key 'experiments.{exp}.dataset': unknown dataset {ds!r}")
    for name, p in PROTOCOLS.items():
        for key, ds in p["datasets"].items():
            if ds not in config["datasets"]:
                raise WorkflowError(f"config key 'protocols.{name}.datasets.{key}': unknown dataset {ds!r}")
    for name, d in config["datasets"].items():
        if d["prepare"] != "none" and d["prepare"] not in config["prepare"]:
            raise WorkflowError(f"config key 'datasets.{name}.prepare': unknown preparation {d['prepare']!r}")


_check_matrix()


wildcard_constraints:
    exp="|".join(sorted(EXPERIMENTS)),
    role="|".join(sorted(MODELS)),
    protocol="|".join(sorted(PROTOCOLS)),


# ------------------------------------------------------------------------------------------ paths
def export_dir(exp):
    return f"{R}/pretrain/{exp}/export"


def teacher(exp, role):
    return f"{export_dir(exp)}/teacher_{role}.pt"


def metrics(exp, role, protocol):
    return f"{R}/eval/{exp}/{role}/{protocol}.json"


def label(role):
    return MODELS[role]["label"]


def pair_label(exp):
    return "–".join(label(r) for r in EXPERIMENTS[exp]["models"])


# ------------------------------------------------------------------------------------ data inputs
def prepared_marker(prep_name):
    """The file whose presence says a preparation rule has finished."""
    root = config["prepare"][prep_name]["root"]
    return {
        "fashion_mnist": f"{root}/FashionMNIST/raw/t10k-labels-idx1-ubyte",
        "cifar_standin": f"{root}/cifar-100-python/meta",
        "coco_synthetic": f"{root}/annotations/instances_val2017.json",
    }[prep_name]


def dataset_inputs(*dataset_names):
    """Markers of the preparation rules the named datasets need (none for user-provided datasets)."""
    preps = {config["datasets"][d]["prepare"] for d in dataset_names}
    return sorted(prepared_marker(p) for p in preps if p != "none")


def dataset_spec(name):
    return copy.deepcopy(config["datasets"][name]["spec"])


# ---------------------------------------------------------------------------- pre-training configs
def pretrain_config(exp):
    """The full `python -m mokd pretrain` config of one experiment: its own slice of the config only."""
    e = EXPERIMENTS[exp]
    pair = len(e["models"]) == 2
    cfg = copy.deepcopy(config["pretrain"])
    cfg["data"] = dataset_spec(e.get("dataset", "pretrain"))
    norm = config["normalization"]
    cfg["crops"] = {**cfg.get("crops", {}), "mean": norm["mean"], "std": norm["std"]}
    if not pair:  # the DINO baseline: L_sm only
        cfg["losses"] = {**cfg.get("losses", {}), "self_thead": False, "cross_mlp": False, "cross_thead": False}
    vit_widths = [MODELS[r]["width"] for r in e["models"] if MODELS[r]["family"] == "vit"]
    if pair and vit_widths:  # authors: D is the ViT's width
        cfg["t_head"] = {**cfg.get("t_head", {}), "dim": max(vit_widths)}
    overrides = {k: v for k, v in e.items() if k not in ("models", "lambda", "dataset")}
    cfg = deep_merge(cfg, overrides)
    models = []
    for i, role in enumerate(e["models"]):
        m = MODELS[role]
        entry = deep_merge(config["families"][m["family"]], {"name": role, "backbone": m["backbone"]})
        entry["lambda"] = e["lambda"][i] if pair else 1.0
        models.append(entry)
    cfg["models"] = models
    return cfg


# ------------------------------------------------------------------------------- protocol settings
def protocol_settings(protocol, role=None):
    """The settings of one evaluation protocol (datasets resolved): each job's own slice."""
    p = PROTOCOLS[protocol]
    s = copy.deepcopy(p["settings"])
    for key, ds in p["datasets"].items():
        s[key] = dataset_spec(ds)
    s["scale"] = SCALE
    if p["command"] in ("knn", "linear", "finetune"):
        s.setdefault("mean", config["normalization"]["mean"])
        s.setdefault("std", config["normalization"]["std"])
    if p["command"] in ("knn", "linear"):
        s.setdefault("feature_cache", f"{R}/cache/features")
    if role is not None and p["command"] in ("knn", "linear", "finetune"):
        s["expected_backbone"] = MODELS[role]["backbone"]
    return s


def protocol_inputs(protocol):
    return dataset_inputs(*PROTOCOLS[protocol]["datasets"].values())


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def check_user_datasets():
    """Fail before any job when a user-provided dataset is missing: the error names the path."""
    from mokd.data import check_dataset

    problems = []
    for name, d in config["datasets"].items():
        if d["prepare"] != "none":
            continue
        for split in d.get("check_splits", ["train", "val"]):
            try:
                check_dataset(d["spec"], split)
            except (FileNotFoundError, ValueError) as exc:
                problems.append(f"dataset '{name}' ({split}): {exc}")
    if problems:
        raise WorkflowError(
            "datasets missing, nothing was started:\n  " + "\n  ".join(problems)
            + "\nSet their paths in your config (see config/paper.yaml) and run again."
        )


def resources_of(kind):
    return config["resources"][kind]
