"""The conda environment and the pip set-up pin the same versions, and the venv has them."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def pins_of_requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, ver = line.split("==")
            pins[name.lower()] = ver
    return pins


def pins_of_environment() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {p.split("==")[0].lower(): p.split("==")[1] for p in pip if "==" in p}


def test_environment_yml_and_requirements_pin_the_same_versions() -> None:
    req, env = pins_of_requirements(), pins_of_environment()
    assert req == env
    for required in ("torch", "torchvision", "timm", "snakemake", "submitit", "pandas", "tabulate",
                     "snakemake-executor-plugin-slurm", "pycocotools", "scikit-learn"):
        assert required in req, required


def test_installed_versions_match_the_pins() -> None:
    for name, pinned in pins_of_requirements().items():
        assert version(name).split("+")[0] == pinned, name
