"""ImageNet-style image folders ``split_dir/<class>/<file>``: class lists, file lists, bad images."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BAD_IMAGE_POLICIES: tuple[str, ...] = ("error", "skip")


class UnreadableImageError(OSError):
    """An image file could not be decoded; the message names the file."""


def file_list_entry_path(entry: str) -> str:
    """Relative path ``class/filename`` of a file-list entry.

    Accepts ``class/filename`` as is, and SimCLR-style bare names such as ``n01440764_10026.JPEG``,
    whose class folder is the part before the first ``_``.
    """
    entry = entry.strip().replace("\\", "/")
    if "/" in entry:
        return entry
    cls, sep, _ = entry.partition("_")
    if not sep or not cls:
        raise ValueError(f"file-list entry {entry!r} is neither 'class/filename' nor 'class_xxx.ext'")
    return f"{cls}/{entry}"


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image as RGB."""
    with Image.open(path) as img:
        return img.convert("RGB")


def _list_images(class_dir: Path) -> list[str]:
    if not class_dir.is_dir():
        raise FileNotFoundError(f"class folder not found: {class_dir}")
    with os.scandir(class_dir) as it:
        return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))


def flat_layout_error(split_dir: Path) -> str | None:
    """What to do when `split_dir` holds images directly and no class folder (ILSVRC-2012's val archive
    unpacks flat), or None for any other layout."""
    if not split_dir.is_dir():
        return None
    with os.scandir(split_dir) as it:
        entries = list(it)
    if any(e.is_dir() and not e.name.startswith(".") for e in entries):
        return None
    n = sum(e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS) for e in entries)
    if n == 0:
        return None
    return (
        f"{split_dir} holds {n} images directly and no class folders: the flat layout of ILSVRC-2012's validation "
        f"archive. Arrange them as {split_dir}/<wnid>/<image> with the devkit's ground truth (for instance the "
        f"valprep.sh script of PyTorch's ImageNet example moves every image into its class folder), then run again"
    )


class FlatImageFolderError(FileNotFoundError):
    """An image folder split holds its images without class folders (the message says how to arrange them)."""


def list_class_dirs(split_dir: Path) -> list[str]:
    """Sorted names of the sub-folders of ``split_dir`` (the default class list)."""
    if not split_dir.is_dir():
        raise FileNotFoundError(f"image folder split not found: {split_dir}")
    with os.scandir(split_dir) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


class ImageFolderDataset(Dataset):
    """Labelled images under ``split_dir/<class>/``; items are ``(image or transform(image), label)``.

    - ``class_list``: keep these classes only, labelled 0..C-1 in the given order (default: all
      sub-folders, sorted).
    - ``files``: file-list entries (see :func:`file_list_entry_path`) selecting exactly those images,
      in list order; entries of classes outside ``class_list`` are dropped. Without ``files`` each
      class folder is scanned (sorted names).
    - ``max_per_class``: keep the first N images of every class (deterministic).
    - ``on_bad_image``: ``"error"`` raises :class:`UnreadableImageError` naming the file; ``"skip"``
      logs a warning naming it and returns the next readable sample instead.
    """

    def __init__(
        self,
        split_dir: str | os.PathLike[str],
        class_list: Sequence[str] | None = None,
        files: Sequence[str] | None = None,
        max_per_class: int | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        on_bad_image: str = "error",
    ) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        if max_per_class is not None and max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
        self.root = Path(split_dir)
        flat = flat_layout_error(self.root)
        if flat is not None:
            raise FlatImageFolderError(flat)
        self.transform = transform
        self.on_bad_image = on_bad_image
        explicit_classes = class_list is not None
        self.classes: list[str] = list(class_list) if explicit_classes else list_class_dirs(self.root)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("class list contains duplicate class names")
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}

        self.samples: list[tuple[str, int]] = []  # (path relative to root, label)
        if files is None:
            for cls in self.classes:
                names = _list_images(self.root / cls)[:max_per_class]
                self.samples += [(f"{cls}/{name}", self.class_to_idx[cls]) for name in names]
        else:
            counts: dict[str, int] = defaultdict(int)
            for entry in files:
                rel = file_list_entry_path(entry)
                cls = rel.split("/", 1)[0]
                if cls not in self.class_to_idx:
                    if explicit_classes:
                        continue
                    raise FileNotFoundError(
                        f"class folder {self.root / cls} of file-list entry {entry!r} not found"
                    )
                if max_per_class is not None and counts[cls] >= max_per_class:
                    continue
                counts[cls] += 1
                self.samples.append((rel, self.class_to_idx[cls]))
        if not self.samples:
            raise FileNotFoundError(f"no images found under {self.root} (classes: {len(self.classes)})")
        self.targets: list[int] = [y for _, y in self.samples]
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, index: int) -> Path:
        """Absolute path of sample ``index``."""
        return self.root / self.samples[index][0]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for offset in range(n):
            i = (index + offset) % n
            if i in self._bad:
                continue
            path = self.path(i)
            try:
                img = load_rgb(path)
            except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
                if self.on_bad_image == "error":
                    raise UnreadableImageError(f"cannot read image {path}: {exc}") from exc
                self._bad.add(i)
                logger.warning("skipping unreadable image %s (%s: %s)", path, type(exc).__name__, exc)
                continue
            if self.transform is not None:
                img = self.transform(img)
            return img, self.samples[i][1]
        raise UnreadableImageError(f"no readable image left under {self.root}")
