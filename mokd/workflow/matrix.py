"""The experiment matrix of a validated workflow config: names, labels, file paths and dataset inputs.

A `Matrix` wraps the config that `mokd.workflow.configs.load_workflow_config` returns and answers what
the rules ask of it: where an experiment's teachers and metrics files are (per seed of the scale),
what a model is called in the tables, which preparation rules a dataset needs. It reads the config,
never changes it.

Every run exists once per seed of `scale.seeds`: results/<scale>/pretrain/<exp>/seed<k>/ and
results/<scale>/eval/<exp>/seed<k>/<model>/<protocol>.json. A model's random initialisation (the
reference of the CPU scales' tables, `scale.random_init_reference`) is the run `random_<model>`: its
teacher is the DINO baseline's initial teacher of the same seed, exported without training.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from mokd.config import ConfigError

RANDOM_PREFIX = "random_"  # run name of a model's random initialisation: random_<model>

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

    @property
    def seeds(self) -> list[int]:
        """The seeds every pre-training and evaluation a table shows runs with (scale.seeds)."""
        return list(self.config["scale"]["seeds"])

    @property
    def first_seed(self) -> int:
        """The seed of what is shown once (figures, training curves, Table S3's time and memory)."""
        return self.seeds[0]

    @property
    def random_reference(self) -> bool:
        """Whether the tables show each model's gain over its random initialisation."""
        return bool(self.config["scale"]["random_init_reference"])

    @property
    def evaluation_groups(self) -> dict[str, list[str]]:
        """{group: its protocols}: the protocols of one teacher that run as one job (scale.evaluation_groups)."""
        groups = self.config["scale"].get("evaluation_groups") or {}
        return {g: list(p) for g, p in groups.items() if p}  # null or [] removes a base config's group

    def ungrouped_protocols(self) -> list[str]:
        """The protocols that run one per job (rule `evaluate`): those of no evaluation group."""
        grouped = {p for members in self.evaluation_groups.values() for p in members}
        return sorted(p for p in self.protocols if p not in grouped)

    def resources_of(self, kind: str) -> dict[str, Any]:
        """config resources.<kind> (pretrain, evaluate, light)."""
        return self.config["resources"][kind]

    # --------------------------------------------------------------------------------- paths
    def run_dir(self, exp: str, seed: int) -> str:
        """A pre-training's folder: checkpoint, log.jsonl, submitit logs and the export."""
        return f"{self.results}/pretrain/{exp}/seed{seed}"

    def export_dir(self, exp: str, seed: int) -> str:
        return f"{self.run_dir(exp, seed)}/export"

    def teacher(self, exp: str, role: str, seed: int) -> str:
        return f"{self.export_dir(exp, seed)}/teacher_{role}.pt"

    def metrics(self, exp: str, role: str, protocol: str, seed: int) -> str:
        return f"{self.results}/eval/{exp}/seed{seed}/{role}/{protocol}.json"

    def seed_metrics(self, exp: str, role: str, protocol: str) -> list[str]:
        """One cell's metrics files: one per seed of the scale."""
        return [self.metrics(exp, role, protocol, s) for s in self.seeds]

    @staticmethod
    def parse_metrics(path: str) -> tuple[str, int, str, str] | None:
        """(experiment, seed, model, protocol) of an evaluation's metrics file; None for another file."""
        m = re.search(r"/eval/([^/]+)/seed(\d+)/([^/]+)/([^/]+)\.json$", path)
        return (m.group(1), int(m.group(2)), m.group(3), m.group(4)) if m else None

    @staticmethod
    def random_run(role: str) -> str:
        """The run name of a model's random initialisation."""
        return f"{RANDOM_PREFIX}{role}"

    def random_role(self, run: str) -> str | None:
        """The model of a random-initialisation run name; None for an experiment."""
        role = run[len(RANDOM_PREFIX):] if run.startswith(RANDOM_PREFIX) else None
        return role if role in self.models and run not in self.experiments else None

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

    def run_roles(self, run: str) -> list[str]:
        """The models whose teachers a run exports: an experiment's models, or a random run's one model."""
        role = self.random_role(run)
        return [role] if role is not None else list(self.experiments[run]["models"])

    def pair_experiments(self) -> list[str]:
        """The experiments that train two models (MOKD pairs and their ablations), in config order."""
        return [e for e, spec in self.experiments.items() if len(spec["models"]) > 1]

    def single_model_runs(self) -> list[str]:
        """The runs that export one teacher: DINO baselines and every model's random initialisation."""
        pairs = set(self.pair_experiments())
        return [e for e in self.experiments if e not in pairs] + [self.random_run(r) for r in self.models]

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
        if "seed" in self.config["pretrain"]:
            raise ConfigError.at("pretrain.seed", "the workflow's seeds are the list scale.seeds (e.g. seeds: [0, 1, 2])")
        for exp, e in self.experiments.items():
            if "seed" in e:
                raise ConfigError.at(f"experiments.{exp}.seed", "the workflow's seeds are the list scale.seeds")
            if exp.startswith(RANDOM_PREFIX):
                raise ConfigError.at(f"experiments.{exp}", f"names starting with {RANDOM_PREFIX!r} are the random "
                                     "initialisations' runs")
            for role in e["models"]:
                if role not in self.models:
                    raise ConfigError.at(f"experiments.{exp}.models", f"unknown model {role!r}")
            if len(e["models"]) == 2 and len(e.get("lambda", [])) != 2:
                raise ConfigError.at(f"experiments.{exp}.lambda", "a pair needs two lambdas")
            ds = e.get("dataset", "pretrain")
            if ds not in datasets:
                raise ConfigError.at(f"experiments.{exp}.dataset", f"unknown dataset {ds!r}")
        for kind in ("tables", "figures"):
            for name in self.config["scale"].get(kind) or []:
                if name not in self.config[kind]:
                    raise ConfigError.at(f"scale.{kind}", f"unknown {kind[:-1]} {name!r}; known: {sorted(self.config[kind])}")
        for name, p in self.protocols.items():
            for key, ds in p["datasets"].items():
                if ds not in datasets:
                    raise ConfigError.at(f"protocols.{name}.datasets.{key}", f"unknown dataset {ds!r}")
        for name, d in datasets.items():
            if d["prepare"] != "none" and d["prepare"] not in self.config["prepare"]:
                raise ConfigError.at(f"datasets.{name}.prepare", f"unknown preparation {d['prepare']!r}")
        self._check_evaluation_groups()

    def _check_evaluation_groups(self) -> None:
        seen: dict[str, str] = {}
        for group, members in self.evaluation_groups.items():
            key = f"scale.evaluation_groups.{group}"
            if group in self.protocols:  # its log would be the protocol's
                raise ConfigError.at(key, f"a group's name must not be a protocol's ({group!r})")
            for p in members:
                if p not in self.protocols:
                    raise ConfigError.at(key, f"unknown protocol {p!r}; known: {sorted(self.protocols)}")
                if p in seen:
                    raise ConfigError.at(key, f"protocol {p!r} is already in group {seen[p]!r}")
                seen[p] = group
