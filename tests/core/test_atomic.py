"""Atomic writes (mokd/atomic.py) and every writer that uses them: a full disk or a read-only folder is one
clear error naming the path, the previous file is kept whole, no temporary file is left behind."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mokd.atomic
from mokd.atomic import DiskFullError, NotWritableError, check_writable, save_torch, write_bytes, write_text
from mokd.checkpoint import atomic_save
from mokd.data.cifar import write_cifar_like
from mokd.data.subsets import write_file_list
from mokd.eval.common import write_metrics


@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write after the first 1000 bytes fails with ENOSPC, as on a full disk."""
    real = mokd.atomic._write_all
    written = [0]

    def write_all(fd: int, data: Any) -> None:
        written[0] += len(memoryview(data).cast("B"))
        if written[0] > 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(mokd.atomic, "_write_all", write_all)


def big() -> dict[str, torch.Tensor]:
    return {"w": torch.arange(10_000, dtype=torch.float32)}


def test_writers_write_whole_files(tmp_path: Path) -> None:
    write_text(tmp_path / "a" / "t.txt", "héllo")
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    save_torch(big(), tmp_path / "c.pt")
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], big()["w"])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.bin", "c.pt", "t.txt"]


WRITERS = {
    "save_torch": lambda p: save_torch(big(), p),
    "checkpoint.atomic_save": lambda p: atomic_save(big(), p),
    "write_text": lambda p: write_text(p, "x" * 5000),
    "write_file_list": lambda p: write_file_list(p, [f"class/img_{i}.png" for i in range(500)]),
    "write_metrics": lambda p: write_metrics(p, "knn", {"top1": 1.0, "pad": "x" * 5000}, [], {}, "d"),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_disk_full_names_the_path_and_keeps_the_old_file(writer: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    path = tmp_path / "out.file"
    path.write_bytes(b"previous content")
    request.getfixturevalue("disk_full")
    with pytest.raises(DiskFullError) as err:
        WRITERS[writer](path)
    assert str(err.value).startswith(f"cannot write {path}: no space left on device")
    assert "\n" not in str(err.value) and err.value.errno == errno.ENOSPC
    assert isinstance(err.value, OSError)
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.file"]  # no temporary file left


def test_table_writer_uses_the_atomic_module(tmp_path: Path, disk_full: None) -> None:
    from mokd.tables import build

    with pytest.raises(DiskFullError):
        build.write_text(tmp_path / "t.tex", "x" * 5000)
    assert not list(tmp_path.iterdir())


def test_read_only_folder_is_not_writable_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(NotWritableError, match=rf"cannot write {tmp_path}/x.json: read-only file system"):
        write_text(tmp_path / "x.json", "{}")
    with pytest.raises(NotWritableError, match=rf"cannot write {tmp_path}/sub: read-only file system"):
        check_writable(tmp_path / "sub")


def test_check_writable_creates_nothing(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not list(tmp_path.iterdir())
    (tmp_path / "file").write_text("")
    with pytest.raises(NotWritableError, match="is not a folder"):
        check_writable(tmp_path / "file" / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_real_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(NotWritableError, match="permission denied"):
            check_writable(folder)
        with pytest.raises(NotWritableError):
            write_text(folder / "x.json", json.dumps({}))
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    """A new file is readable by whom the umask allows, as with open() (mkstemp alone gives 0600);
    a rewritten file keeps its mode, as open() keeps it."""
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "table.md", "x")
        save_torch(big(), tmp_path / "teacher.pt")
        write_cifar_like(tmp_path / "cifar", "cifar10", np.zeros((2, 32, 32, 3), np.uint8), [0, 1], False, ["a", "b"])
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == expected
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == expected
    assert (tmp_path / "teacher.pt").stat().st_mode & 0o777 == expected
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "cifar").rglob("*") if p.is_file()} == {expected}
    os.chmod(tmp_path / "table.md", 0o640)
    write_text(tmp_path / "table.md", "y")
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o640
