"""The conda environment and the pip set-up pin the same versions, and the venv has them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def test_setup_rebuilds_a_venv_whose_creation_was_interrupted(tmp_path: Path) -> None:
    """Ctrl-C while `python -m venv` installs pip leaves a .venv with a python and no pip: the next
    set-up builds it again instead of failing on `.venv/bin/pip` (127) every time. (In this sandbox the
    package install that follows has no index to build from; what matters is the venv it installs into.)"""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "sandbox"\nversion = "0"\n')
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True, timeout=120)
    assert not (tmp_path / ".venv" / "bin" / "pip").exists()
    env = {**os.environ, "PYTHON": base, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    out = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert "[setup] .venv is incomplete (an interrupted set-up?): building it again" in out.stdout, out.stdout
    assert out.returncode != 127 and "No such file or directory" not in out.stderr, out.stderr[-2000:]
    pip = subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "-m", "pip", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert pip.returncode == 0, pip.stderr
