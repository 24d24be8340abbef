"""Image transforms: DINO multi-crop views (docs/METHOD_NOTES.md §2) and classification pipelines.

All transforms take a PIL image (any mode; it is converted to RGB first) and are picklable, so they
work in DataLoader worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from mokd.data.normalization import IMAGENET_MEAN, IMAGENET_STD

_BICUBIC = InterpolationMode.BICUBIC
_BLUR_SIGMA = (0.1, 2.0)
_SOLARIZE_THRESHOLD = 128


class ToRGB:
    """Convert a PIL image to RGB (grey datasets such as Fashion-MNIST become 3-channel)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def blur_kernel_size(crop_size: int, frac: float) -> int:
    """Odd Gaussian-blur kernel size of about ``frac * crop_size`` pixels, at least 3."""
    k = int(round(frac * crop_size))
    if k % 2 == 0:
        k += 1
    return max(3, k)


def _check_scale(name: str, scale: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(s) for s in scale)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
    return lo, hi


def _normalize(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [T.ToTensor(), T.Normalize(tuple(mean), tuple(std))]


class MultiCropTransform:
    """DINO multi-crop: 2 global crops then ``n_local`` local crops, as normalised float tensors.

    Every crop: bicubic RandomResizedCrop, horizontal flip, colour jitter (p=0.8; brightness .4,
    contrast .4, saturation .2, hue .1) and random grayscale (p=0.2) when ``jitter`` is true, Gaussian
    blur (sigma 0.1-2.0; p=1.0 on global 1, 0.1 on global 2, 0.5 on locals) and solarisation
    (p=0.2, global 2 only). The blur kernel is ``blur_kernel_frac`` of the crop size (odd, >= 3).
    """

    CONFIG_KEYS: tuple[str, ...] = (
        "global_size",
        "local_size",
        "n_local",
        "global_scale",
        "local_scale",
        "mean",
        "std",
        "blur_kernel_frac",
        "jitter",
    )

    def __init__(
        self,
        global_size: int = 224,
        local_size: int = 96,
        n_local: int = 8,
        global_scale: Sequence[float] = (0.25, 1.0),
        local_scale: Sequence[float] = (0.05, 0.25),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        blur_kernel_frac: float = 0.1,
        jitter: bool = True,
    ) -> None:
        if global_size <= 0 or local_size <= 0:
            raise ValueError(f"crop sizes must be positive, got {global_size} and {local_size}")
        if n_local < 0:
            raise ValueError(f"n_local must be >= 0, got {n_local}")
        if blur_kernel_frac <= 0:
            raise ValueError(f"blur_kernel_frac must be positive, got {blur_kernel_frac}")
        self.global_size = int(global_size)
        self.local_size = int(local_size)
        self.n_local = int(n_local)
        self.global_scale = _check_scale("global_scale", global_scale)
        self.local_scale = _check_scale("local_scale", local_scale)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.blur_kernel_frac = float(blur_kernel_frac)
        self.jitter = bool(jitter)

        self.global1 = self._view(self.global_size, self.global_scale, blur_p=1.0, solarize_p=0.0)
        self.global2 = self._view(self.global_size, self.global_scale, blur_p=0.1, solarize_p=0.2)
        self.local = self._view(self.local_size, self.local_scale, blur_p=0.5, solarize_p=0.0)

    def _view(self, size: int, scale: tuple[float, float], blur_p: float, solarize_p: float) -> T.Compose:
        ops: list[Any] = [
            ToRGB(),
            T.RandomResizedCrop(size, scale=scale, interpolation=_BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
        ]
        if self.jitter:
            ops += [
                T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
            ]
        blur = T.GaussianBlur(blur_kernel_size(size, self.blur_kernel_frac), sigma=_BLUR_SIGMA)
        ops.append(blur if blur_p >= 1.0 else T.RandomApply([blur], p=blur_p))
        if solarize_p > 0:
            ops.append(T.RandomSolarize(_SOLARIZE_THRESHOLD, p=solarize_p))
        return T.Compose(ops + _normalize(self.mean, self.std))

    @property
    def n_crops(self) -> int:
        """Total number of crops returned per image (2 + n_local)."""
        return 2 + self.n_local

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        crops = [self.global1(img), self.global2(img)]
        crops += [self.local(img) for _ in range(self.n_local)]
        return crops

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> MultiCropTransform:
        """Build from a `crops` config; missing keys take the paper values, unknown keys raise ValueError.

        `pipeline` (which of this class and `BatchedMultiCrop` runs the recipe) is the caller's and ignored.
        """
        cfg = {k: v for k, v in cfg.items() if k != "pipeline"}
        unknown = [k for k in cfg if k not in cls.CONFIG_KEYS]
        if unknown:
            raise ValueError(
                f"unknown multi-crop config key {unknown[0]!r}; allowed keys: {', '.join(cls.CONFIG_KEYS)}"
            )
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        return cls(**kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(global_size={self.global_size}, local_size={self.local_size}, "
            f"n_local={self.n_local}, global_scale={self.global_scale}, local_scale={self.local_scale}, "
            f"jitter={self.jitter})"
        )


def eval_transform(
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_ratio: float = 0.875,
) -> T.Compose:
    """DINO-style evaluation transform: bicubic resize to ``size / resize_ratio``, centre crop ``size``."""
    if not 0.0 < resize_ratio <= 1.0:
        raise ValueError(f"resize_ratio must be in (0, 1], got {resize_ratio}")
    resize = int(round(size / resize_ratio))
    return T.Compose(
        [ToRGB(), T.Resize(resize, interpolation=_BICUBIC), T.CenterCrop(size)] + _normalize(mean, std)
    )


INTERPOLATIONS = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}


def train_classification_transform(
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bicubic",
) -> T.Compose:
    """Training transform for linear probing / fine-tuning: RandomResizedCrop and flip.

    `interpolation` of the crop: bicubic (fine-tuning), or bilinear (torchvision's default, the
    authors' linear probe)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    return T.Compose(
        [ToRGB(), T.RandomResizedCrop(size, interpolation=INTERPOLATIONS[interpolation]), T.RandomHorizontalFlip()]
        + _normalize(mean, std)
    )
