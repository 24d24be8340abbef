# Config loading and validation, the experiment matrix, paths and input functions. No rules here.

import copy
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from mokd.config import ConfigError, config_hash, deep_merge, validate
from mokd.launch import gpu_resource
from mokd.provenance import code_version
from mokd.workflow.configs import load_workflow_config, missing_user_datasets

# Jobs run `python` from the environment that runs Snakemake (the project's .venv or conda env),
# also when Snakemake was started by its path without activating that environment.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
ENV = "../../environment.yml"  # conda environment of every rule (used with --software-deployment-method conda)


# The config is made again from the --configfile files (each with its `base:` chain), the embedded default
# under them when none names a scale, and the --config overrides (mokd/workflow/configs.py): Snakemake's
# own merge of those files is not used, so that a file's `base:` is its base whatever else was loaded,
# and every file is read with the project's YAML loader (1e-3 is a number).
try:
    _cfg = load_workflow_config(workflow.config_settings.configfiles, workflow.config_settings.config)
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


# User-provided datasets (ImageNet, CIFAR, COCO at paper scale) are checked when the workflow is read, so
# that a dry run (-n) names what is missing (a warning); a real run stops on it before any job (onstart,
# workflow/rules/data.smk). Jobs that Snakemake runs in their own process (cluster jobs) do not check.
MISSING_DATASETS = missing_user_datasets(config["datasets"]) if workflow.is_main_process else []
if MISSING_DATASETS:
    print(
        "warning: datasets missing (a real run stops before any job):\n  " + "\n  ".join(MISSING_DATASETS)
        + "\nSet their paths in your config (see config/paper.yaml).",
        file=sys.stderr,
    )


def check_user_datasets():
    """Fail before any job when a user-provided dataset is missing: the error names the path."""
    if MISSING_DATASETS:
        raise WorkflowError(
            "datasets missing, nothing was started:\n  " + "\n  ".join(MISSING_DATASETS)
            + "\nSet their paths in your config (see config/paper.yaml) and run again."
        )


def resources_of(kind):
    return config["resources"][kind]
