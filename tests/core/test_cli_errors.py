"""`python -m mokd`: expected failures end in one line `error: ...` with their own exit code (mokd/cli.py);
a traceback only with --debug or for a bug. Output folders are checked writable before computing."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

import mokd.atomic
from mokd import cli
from tests.core.tiny import PAIRS, tiny_config

REPO = Path(__file__).resolve().parents[2]
CODES = {"config": 2, "input": 3, "checkpoint": 4, "diverged": 5, "disk_full": 6, "not_writable": 7, "run_in_use": 8}


def test_exit_codes_are_distinct_and_documented() -> None:
    kinds = {
        "config": "mokd.config.ConfigError", "input": "mokd.data.imagefolder.UnreadableImageError",
        "checkpoint": "mokd.checkpoint.CheckpointError", "diverged": "mokd.engine.NonFiniteLossError",
        "disk_full": "mokd.atomic.DiskFullError", "not_writable": "mokd.atomic.NotWritableError",
        "run_in_use": "mokd.runlock.RunLockedError",
    }
    assert {kind: cli.EXPECTED[name] for kind, name in kinds.items()} == CODES
    assert len(set(CODES.values())) == len(CODES) and 0 not in CODES.values() and 1 not in CODES.values()
    for code in (*CODES.values(), 130):
        assert f"\n    {code} " in cli.__doc__, f"exit code {code} is not documented in mokd/cli.py"


def one_error_line(err: str) -> str:
    """The single `error: ` line of stderr (and no traceback)."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str], stdout: bool = False) -> tuple[int, str]:
    """The exit status of `python -m mokd ARGV` (argparse's exits included) and its stderr (or stdout)."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # --help, usage errors
        rc = int(exc.code or 0)
    captured = capsys.readouterr()
    return rc, captured.out if stdout else captured.err


def image_folder(root: Path, bad: bool) -> Path:
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(3):
            pixels = np.random.default_rng(i).integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / c / f"{i}.png")
    if bad:
        (root / "train" / "a" / "1.png").write_bytes(b"not an image at all")
    return root


def test_bad_image_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = image_folder(tmp_path / "images", bad=True)
    cfg = tiny_config(PAIRS["dino"](), root, data={"name": "imagefolder", "root": str(root)}, batch_size=2)
    rc, err = run_main(["pretrain", "--config", str(write_config(tmp_path / "c.yaml", cfg)),
                        "--out", str(tmp_path / "run")], capsys)
    assert rc == CODES["input"]
    assert f"cannot read image {root}/train/a/1.png" in one_error_line(err)


def test_unreadable_resume_checkpoint_says_what_to_do(fashion_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(PAIRS["dino"](), fashion_root))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"truncated")
    rc, err = run_main(["pretrain", "--config", str(config), "--out", str(tmp_path / "run")], capsys)
    assert rc == CODES["checkpoint"]
    line = one_error_line(err)
    assert f"checkpoint {tmp_path}/run/checkpoint.pt cannot be read" in line
    assert "move it aside" in line and "delete it" in line


def test_nan_loss_is_one_line_and_its_own_exit_code(fashion_root: Path, tmp_path: Path) -> None:
    """In a real process: a learning rate of 1e30 (an exponent, read as a number) makes the loss NaN."""
    config = write_config(tmp_path / "c.yaml", tiny_config(PAIRS["dino"](), fashion_root))
    proc = subprocess.run(
        [sys.executable, "-m", "mokd", "pretrain", "--config", str(config), "--out", str(tmp_path / "run"),
         "models.0.optimizer.lr=1e30"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == CODES["diverged"], proc.stderr[-3000:]
    assert "loss term L_sm is nan" in one_error_line(proc.stderr)


def test_disk_full_during_a_checkpoint(fashion_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(PAIRS["dino"](), fashion_root, checkpoint_every_iters=1))
    run = tmp_path / "run"
    assert cli.main(["pretrain", "--config", str(config), "--out", str(run), "--stop-after", "2"]) == 0
    saved = (run / "checkpoint.pt").read_bytes()
    capsys.readouterr()

    real_write_all = mokd.atomic._write_all

    def full(fd: int, data: Any) -> None:
        # The disk is full for the checkpoint (the resume first trims the log of the step after it).
        if ".checkpoint.pt" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(fd, data)

    monkeypatch.setattr(mokd.atomic, "_write_all", full)
    rc, err = run_main(["pretrain", "--config", str(config), "--out", str(run)], capsys)
    assert rc == CODES["disk_full"]
    assert one_error_line(err).startswith(f"error: cannot write {run}/checkpoint.pt: no space left on device")
    assert (run / "checkpoint.pt").read_bytes() == saved
    assert not list(run.glob(".checkpoint.pt.*"))


def test_read_only_output_fails_before_computing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The checkpoint does not even exist: the output folder is checked first (exit 7, not 4)."""
    real = tempfile.mkstemp
    read_only = tmp_path / "ro"
    read_only.mkdir()

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if Path(kwargs.get("dir", "")) == read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    for argv in (
        ["knn", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(read_only / "knn.json")],
        ["table", "--spec", "{}", "--out-md", str(read_only / "sub" / "t.md")],
        ["pretrain", "--config", str(tmp_path / "missing.yaml"), "--out", str(read_only / "run")],
    ):
        rc, err = run_main(argv, capsys)
        assert rc == CODES["not_writable"], (argv, err)
        assert f"cannot write {read_only}" in one_error_line(err) and "read-only file system" in err


def test_config_errors(fashion_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(PAIRS["dino"](), fashion_root))
    out = str(tmp_path / "run")
    rc, err = run_main(["pretrain", "--config", "no/such.yaml", "--out", out], capsys)
    assert rc == CODES["config"] and "relative to the working directory" in one_error_line(err)
    rc, err = run_main(["pretrain", "--config", str(config), "--out", out, "crops.n_locla=3"], capsys)
    assert rc == CODES["config"] and "config key 'crops.n_locla'" in one_error_line(err)
    rc, err = run_main(["pretrain", "--config", str(config), "--out", out, "models.0.optimizer.lr=1e-3",
                        "--stop-after", "1"], capsys)
    assert rc == 0, err[-2000:]


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(["--debug", "pretrain", "--config", "no/such.yaml", "--out", str(tmp_path / "r")], capsys)
    assert rc == CODES["config"] and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_debug_after_the_command_and_in_the_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(["pretrain", "--config", "no/such.yaml", "--out", str(tmp_path / "r"), "--debug"], capsys)
    assert rc == CODES["config"] and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")
    rc, out = run_main(["--help"], capsys, stdout=True)
    assert rc == 0 and out.startswith("usage: python -m mokd [-h] [--debug] COMMAND")
    rc, out = run_main(["knn", "--help"], capsys, stdout=True)
    assert rc == 0 and "[--debug]" in out.split("\n\n")[0]  # the command's usage line


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mokd.tables.build

    monkeypatch.setattr(mokd.tables.build, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["table", "--spec", "{}", "--out-md", str(tmp_path / "t.md")])


def test_dataloader_worker_errors_keep_only_the_original_message() -> None:
    from mokd.data import UnreadableImageError

    wrapped = UnreadableImageError(
        "Caught UnreadableImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nmokd.data.imagefolder.UnreadableImageError: cannot read image /d/a.png: bad\n'
    )
    assert cli.one_line(wrapped) == "cannot read image /d/a.png: bad"
    assert cli.exit_code(wrapped) == CODES["input"]
    assert cli.exit_code(OSError(errno.ENOSPC, "full")) == CODES["disk_full"]
    assert cli.exit_code(PermissionError(errno.EACCES, "denied")) == CODES["not_writable"]
    assert cli.exit_code(KeyboardInterrupt()) == 130 and cli.exit_code(ZeroDivisionError()) is None
