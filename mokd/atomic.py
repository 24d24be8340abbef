"""Atomic file writing: a file is either its old content or its complete new content, never half-written.

Every writer goes through `atomic_write`: the content goes to a temporary file in the same folder
(so the rename stays on one file system), is flushed and fsync'ed, then renamed over the target; on
any failure the temporary file is removed and the old file is left as it was. The file gets the mode
open() would give it (a new file: 0666 less the umask; a rewritten one keeps its mode), not
mkstemp's private 0600: on a shared cluster others must be able to read the results. A full disk or a
read-only / forbidden folder becomes a `DiskFullError` / `NotWritableError` (both OSError, errno
kept) whose one-line message names the path, never torch's "unexpected pos" RuntimeError.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


class WriteError(OSError):
    """A file could not be written; the message names the path and the reason."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


class DiskFullError(WriteError):
    """No space left on the device (or quota exceeded) while writing a file."""


class NotWritableError(WriteError):
    """The folder of a file is read-only or not writable for this user."""


def as_write_error(exc: BaseException, path: str | Path) -> WriteError | None:
    """The WriteError that `exc` (raised while writing `path`) stands for, or None if it is another error."""
    if isinstance(exc, WriteError):
        return exc
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    if exc.errno in DISK_FULL:
        return DiskFullError(exc.errno, f"cannot write {path}: no space left on device (free some space and "
                                        "run again; the previous file, if any, is unchanged)")
    if exc.errno in NOT_WRITABLE:
        reason = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
        return NotWritableError(exc.errno, f"cannot write {path}: {reason} (choose a writable output folder)")
    return None


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _FdWriter(io.RawIOBase):
    """A binary file object on a descriptor that keeps the first OSError of a write: torch.save turns
    that error into a RuntimeError ("unexpected pos") and the cause would be lost."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            _write_all(self.fd, data)
        except OSError as exc:
            self.error = self.error or exc
            raise
        return len(memoryview(data).cast("B"))


def current_umask() -> int:
    """This process's umask (from /proc where it is there: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_mode(path: Path) -> int:
    """The mode open(path, "w") would leave: an existing file's own, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write `path` atomically: `write(f)` fills a binary file object (module docstring). Returns the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise as_write_error(exc, path) or exc
    writer = _FdWriter(fd)
    try:
        os.fchmod(fd, open_mode(path))
        write(writer)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        error = as_write_error(writer.error or exc, path)
        if error is None:
            raise
        raise error from exc
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes(path, text.encode(encoding))


def save_torch(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically (the previous file stays whole when the disk fills up)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def check_writable(folder: str | Path) -> Path:
    """Fail now, not after hours of computing, if files cannot be created in `folder` (or in the
    nearest existing folder above it, where it would be created). Writes nothing that stays."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotWritableError(errno.ENOTDIR, f"cannot write into {folder}: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".mokd-write-check.", suffix=".tmp")
    except OSError as exc:
        error = as_write_error(exc, folder)
        if error is None:
            raise
        raise error from exc
    os.close(fd)
    os.unlink(probe)
    return folder
