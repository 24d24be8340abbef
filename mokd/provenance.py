"""Provenance of every artefact: code version, file hashes, time."""

from __future__ import annotations

import datetime as _dt
import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

import mokd


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit (and '-dirty' for uncommitted changes) when in a checkout."""
    root = Path(mokd.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return mokd.__version__
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "mokd"],
            capture_output=True, text=True, timeout=10,
        )
        suffix = "-dirty" if dirty.stdout.strip() else ""
        return f"{mokd.__version__}+g{commit.stdout.strip()}{suffix}"
    except (OSError, subprocess.TimeoutExpired):
        return mokd.__version__


def file_sha256(path: str | Path, length: int = 16) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
