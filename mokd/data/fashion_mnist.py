"""Fashion-MNIST: offline preparation from the Debian package and an RGB dataset on top of torchvision."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets import FashionMNIST

RAW_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_SOURCE_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"


def fashion_mnist_raw_dir(root: str | os.PathLike[str]) -> Path:
    """Where torchvision's ``FashionMNIST(root, download=False)`` looks for the raw idx files."""
    return Path(root) / "FashionMNIST" / "raw"


def missing_raw_files(root: str | os.PathLike[str]) -> list[Path]:
    """Raw idx files that are not present under ``root``."""
    raw = fashion_mnist_raw_dir(root)
    return [raw / name for name in RAW_FILES if not (raw / name).is_file()]


def _source_file(source_dir: Path, name: str) -> Path | None:
    """The gzipped (preferred) or plain copy of ``name`` in ``source_dir``, if any."""
    for candidate in (source_dir / f"{name}.gz", source_dir / name):
        if candidate.is_file():
            return candidate
    return None


def _copy_maybe_gzipped(src: Path, dst: Path) -> None:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, length=1 << 20)


def _install_atomically(raw_dir: Path, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmp_dir)`` to fill a temp dir, then move its files into ``raw_dir`` atomically.

    If ``raw_dir`` does not exist yet, the whole directory is renamed into place; otherwise (another
    process got there first, or raw files were partly present) each file is moved with ``os.replace``.
    An interrupted ``writer`` leaves nothing behind.
    """
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".raw-tmp-", dir=raw_dir.parent))
    try:
        writer(tmp)
        try:
            os.rename(tmp, raw_dir)
            return
        except OSError:
            if not raw_dir.is_dir():
                raise
        for f in tmp.iterdir():
            os.replace(f, raw_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_with_torchvision(tmp: Path) -> None:
    """Download with torchvision (needs network) and leave the four raw files directly in ``tmp``."""
    dl_root = tmp / "download"
    FashionMNIST(str(dl_root), train=True, download=True)
    for name in RAW_FILES:
        shutil.move(str(fashion_mnist_raw_dir(dl_root) / name), str(tmp / name))
    shutil.rmtree(dl_root, ignore_errors=True)


def prepare_fashion_mnist(root: Path, source_dir: Path | None = None) -> Path:
    """Make ``root/FashionMNIST/raw/`` hold the four uncompressed idx files; return that directory.

    Sources, in order: files already there (nothing is done); the Debian package files in
    ``source_dir`` (default ``/usr/share/datasets/fashion-mnist``), gunzipped; torchvision's download.
    Files are written to a temp dir and renamed into place, so an interrupted run leaves no half files.
    """
    root = Path(root)
    raw_dir = fashion_mnist_raw_dir(root)
    if not missing_raw_files(root):
        return raw_dir
    source_dir = Path(source_dir) if source_dir is not None else DEBIAN_SOURCE_DIR
    sources = {name: _source_file(source_dir, name) for name in RAW_FILES}
    if all(src is not None for src in sources.values()):

        def gunzip_all(tmp: Path) -> None:
            for name, src in sources.items():
                assert src is not None
                _copy_maybe_gzipped(src, tmp / name)

        _install_atomically(raw_dir, gunzip_all)
        return raw_dir

    missing_src = next(source_dir / f"{name}.gz" for name, src in sources.items() if src is None)
    try:
        _install_atomically(raw_dir, _download_with_torchvision)
    except Exception as exc:
        raise FileNotFoundError(
            f"Fashion-MNIST source file {missing_src} is missing and {missing_raw_files(root)[0]} "
            f"does not exist; install the Debian package with `{INSTALL_HINT}` (or pass source_dir), "
            f"or run once on a machine with internet access so torchvision can download it "
            f"(download failed: {type(exc).__name__}: {exc})"
        ) from exc
    return raw_dir


class FashionMNISTRGB(FashionMNIST):
    """torchvision's Fashion-MNIST (28x28 grey) returning 3-channel RGB PIL images and int labels.

    ``targets`` is a list of ints. Reads ``root/FashionMNIST/raw/`` (see :func:`prepare_fashion_mnist`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        train: bool = True,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        missing = missing_raw_files(root)
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST raw file {missing[0]} not found; call "
                f"mokd.data.prepare_fashion_mnist({str(root)!r}) (needs `{INSTALL_HINT}` or internet)"
            )
        super().__init__(str(root), train=train, transform=transform, download=False)
        self.targets = [int(t) for t in self.targets.tolist()]

    # torchvision derives these folders from the class name; keep the standard "FashionMNIST".
    @property
    def raw_folder(self) -> str:
        return str(fashion_mnist_raw_dir(self.root))

    @property
    def processed_folder(self) -> str:
        return os.path.join(self.root, "FashionMNIST", "processed")

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self.data[index].numpy()).convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]
