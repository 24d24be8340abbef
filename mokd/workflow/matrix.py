"""The experiment matrix of a validated workflow config: names, labels, file paths and dataset inputs.

A `Matrix` wraps the config that `mokd.workflow.configs.load_workflow_config` returns and answers what
the rules ask of it: where an experiment's teachers and metrics files are, what a model is called in
the tables, which preparation rules a dataset needs. It reads the config, never changes it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mokd.config import ConfigError

# The file whose presence says a preparation rule (workflow/rules/data.smk) has finished, under its root.
PREPARED_MARKERS = {
    "fashion_mnist": "FashionMNIST/raw/t10k-labels-idx1-ubyte",
    "cifar_standin": "cifar-100-python/meta",
    "coco_synthetic": "annotations/instances_val2017.json",
}


class Matrix:
    """Read-only views of one workflow config (experiments, models, protocols, datasets, paths)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    # ------------------------------------------------------------------------------ sections
    @property
    def results(self) -> str:
        return self.config["scale"]["results"]

    @property
    def scale(self) -> str:
        return self.config["scale"]["name"]

    @property
    def models(self) -> Mapping[str, Any]:
        return self.config["models"]

    @property
    def experiments(self) -> Mapping[str, Any]:
        return self.config["experiments"]

    @property
    def protocols(self) -> Mapping[str, Any]:
        return self.config["protocols"]

    def resources_of(self, kind: str) -> dict[str, Any]:
        """config resources.<kind> (pretrain, evaluate, light)."""
        return self.config["resources"][kind]

    # --------------------------------------------------------------------------------- paths
    def export_dir(self, exp: str) -> str:
        return f"{self.results}/pretrain/{exp}/export"

    def teacher(self, exp: str, role: str) -> str:
        return f"{self.export_dir(exp)}/teacher_{role}.pt"

    def metrics(self, exp: str, role: str, protocol: str) -> str:
        return f"{self.results}/eval/{exp}/{role}/{protocol}.json"

    def cost_metrics(self) -> str:
        """The metrics file of Table S3's time and memory (rule `cost`)."""
        return f"{self.results}/eval/cost/s3.json"

    # -------------------------------------------------------------------------------- labels
    def label(self, role: str) -> str:
        return self.models[role]["label"]

    def pair_label(self, exp: str) -> str:
        """An experiment's models as shown in captions, e.g. R50–ViT-S."""
        return "–".join(self.label(r) for r in self.experiments[exp]["models"])

    def pair_key(self, exp: str) -> str:
        """The id of a pair in config/reported.csv, e.g. R50-ViT-S."""
        return "-".join(self.label(r) for r in self.experiments[exp]["models"])

    def is_baseline(self, exp: str) -> bool:
        """A DINO baseline trains one model; a MOKD pair two."""
        return len(self.experiments[exp]["models"]) == 1

    def baseline_of(self, role: str) -> str:
        """The DINO baseline experiment of a model: by convention `dino_<role>`."""
        exp = f"dino_{role}"
        if exp not in self.experiments:
            raise ConfigError.at("experiments", f"the tables need the DINO baseline {exp!r} of model {role!r}")
        return exp

    # ------------------------------------------------------------------------------ datasets
    def dataset_spec(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.config["datasets"][name]["spec"])

    def prepared_marker(self, prep: str) -> str:
        """The file whose presence says a preparation rule has finished."""
        return f"{self.config['prepare'][prep]['root']}/{PREPARED_MARKERS[prep]}"

    def dataset_inputs(self, *names: str) -> list[str]:
        """Markers of the preparation rules the named datasets need (none for user-provided datasets)."""
        preps = {self.config["datasets"][d]["prepare"] for d in names}
        return sorted(self.prepared_marker(p) for p in preps if p != "none")

    def protocol_inputs(self, protocol: str) -> list[str]:
        return self.dataset_inputs(*self.protocols[protocol]["datasets"].values())

    # ----------------------------------------------------------------------------- checking
    def check(self) -> None:
        """Every name the matrix uses must be defined: ConfigError names the first that is not, with its key."""
        datasets = self.config["datasets"]
        for exp, e in self.experiments.items():
            for role in e["models"]:
                if role not in self.models:
                    raise ConfigError.at(f"experiments.{exp}.models", f"unknown model {role!r}")
            if len(e["models"]) == 2 and len(e.get("lambda", [])) != 2:
                raise ConfigError.at(f"experiments.{exp}.lambda", "a pair needs two lambdas")
            ds = e.get("dataset", "pretrain")
            if ds not in datasets:
                raise ConfigError.at(f"experiments.{exp}.dataset", f"unknown dataset {ds!r}")
        for name, p in self.protocols.items():
            for key, ds in p["datasets"].items():
                if ds not in datasets:
                    raise ConfigError.at(f"protocols.{name}.datasets.{key}", f"unknown dataset {ds!r}")
        for name, d in datasets.items():
            if d["prepare"] != "none" and d["prepare"] not in self.config["prepare"]:
                raise ConfigError.at(f"datasets.{name}.prepare", f"unknown preparation {d['prepare']!r}")
