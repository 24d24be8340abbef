"""Start-up of `python -m mokd <command>`: each command's module imports only what it uses, and every
process of the workflow (MOKD_TIMING=1) leaves one timing line on its log (mokd/process_timing.py, read by
benchmarks/dag_cost.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.dag_cost import timing_lines
from mokd.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
# Heavy packages no command module needs at import: they are imported inside the functions using them.
HEAVY = ("torchvision", "torchvision.models", "torchvision.datasets", "timm", "sklearn", "matplotlib", "pycocotools")


def imported_after(code: str) -> list[str]:
    """The HEAVY modules present in sys.modules after running `code` in a fresh interpreter."""
    probe = f"import json, sys\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", sorted({m for m, _ in COMMANDS.values()}))
def test_command_module_imports_no_heavy_package(module: str) -> None:
    assert imported_after(f"import {module}") == []


def test_data_package_names_resolve_lazily() -> None:
    assert imported_after("import mokd.data; from mokd.data import IMAGENET_MEAN, read_file_list") == []
    # the check sees an import when there is one: a transform needs torchvision
    assert "torchvision" in imported_after("from mokd.data import eval_transform")


def test_data_package_exports_the_submodules_objects() -> None:
    import mokd.data as data
    from mokd.data import datasets, normalization, subsets, transforms

    assert data.build_dataset is datasets.build_dataset
    assert data.IMAGENET_MEAN is normalization.IMAGENET_MEAN is transforms.IMAGENET_MEAN
    assert data.read_file_list is subsets.read_file_list
    for name in data.__all__:
        assert getattr(data, name) is not None
    assert set(data.__all__) <= set(dir(data))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        data.not_a_name  # noqa: B018


def run_mokd(args: list[str], timing: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MOKD_TIMING", None)
    if timing is not None:
        env["MOKD_TIMING"] = timing
    return subprocess.run([sys.executable, "-m", "mokd", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def test_a_users_command_prints_no_timing_line() -> None:
    """The line is for the workflow's job logs (which ask for it): not in a user's piped --help."""
    out = run_mokd(["cost", "--help"], timing=None)  # stderr is a pipe, not a terminal
    assert out.returncode == 0 and "usage: python -m mokd cost" in out.stdout
    assert out.stderr == ""


def test_process_leaves_one_timing_line() -> None:
    out = run_mokd(["cost", "--help"], timing="1")  # as in the workflow's jobs
    assert out.returncode == 0 and "usage: python -m mokd cost" in out.stdout
    (record,) = timing_lines(out.stderr)
    assert record["role"] == "main" and record["argv"] == ["cost"] and record["pid"] > 0
    assert record["start"] <= record["entry"] <= record["end"]
    # imports ran after entry and took time; the process's CPU includes them
    assert 0.0 < record["import_wall"] <= record["end"] - record["entry"]
    assert 0.0 < record["import_cpu"] <= record["cpu"]
    assert record["entry_cpu"] <= record["cpu"] and record["children_cpu"] >= 0.0


def test_timing_line_can_be_turned_off() -> None:
    out = run_mokd(["--help"], timing="0")
    assert out.returncode == 0 and timing_lines(out.stderr) == []


FAST_EXIT_SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from mokd.process_timing import fast_exit
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.2)
    (out / "thread").write_text("joined")
threading.Thread(target=late).start()
sys.stdout.write("x" * 100000 + "\\nend\\n")  # buffered: stdout is a pipe
fast_exit(int(sys.argv[2]) if sys.argv[2].isdigit() else sys.argv[2])
"""


@pytest.mark.parametrize("setting", [None, "0"])
@pytest.mark.parametrize("code", ["3", "0", "bad input"])
def test_fast_exit_keeps_output_handlers_threads_and_status(tmp_path: Path, setting: str | None, code: str) -> None:
    env = {**os.environ}
    env.pop("MOKD_FAST_EXIT", None)
    if setting is not None:
        env["MOKD_FAST_EXIT"] = setting
    out = subprocess.run([sys.executable, "-c", FAST_EXIT_SCRIPT, str(tmp_path), code], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == (int(code) if code.isdigit() else 1)
    assert out.stdout == "x" * 100000 + "\nend\n"
    assert (out.stderr.strip() == code) if not code.isdigit() else out.stderr == ""
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "joined"


def test_mokd_exit_status_and_piped_help(monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_mokd(["cost", "--help"], timing="0")
    assert out.returncode == 0 and "--summaries" in out.stdout and out.stderr == ""
    monkeypatch.setenv("MOKD_FAST_EXIT", "0")  # the ordinary exit prints the same
    assert run_mokd(["cost", "--help"], timing="0").stdout == out.stdout
    monkeypatch.delenv("MOKD_FAST_EXIT")
    bad = run_mokd(["cost", "--summaries", "s.json", "--out", "o.json", "--no-such-option"], timing="0")
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-option" in bad.stderr
