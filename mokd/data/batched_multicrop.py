"""DINO multi-crop augmentation of a whole batch at once, as tensor operations (docs/METHOD_NOTES.md §2).

The per-image reference is `MultiCropTransform` (torchvision's PIL transforms, one image at a time).
This module produces the same views from a batch of decoded uint8 images, with per-sample random
parameters, on the CPU or on the training device:

    random resized crop (bicubic, antialiased) -> horizontal flip (p 0.5) -> colour jitter (p 0.8:
    brightness .4, contrast .4, saturation .2, hue .1, in a random order per sample) -> grayscale
    (p 0.2) -> Gaussian blur (sigma 0.1-2; p 1.0 global 1, 0.1 global 2, 0.5 locals) -> solarise
    (p 0.2, global 2) -> normalise.

Every random number comes from uniform draws made for the *global* batch by a generator that the
caller seeds with (seed, epoch, iteration): a resumed run draws exactly what an uninterrupted one
does, and the W processes of a distributed run take their rows of the same draws, so together they
augment exactly what one process would. Draws are turned into pixel parameters with each image's own
size, so images of different sizes (ImageNet) are handled; only the crop-and-resize runs per image.

Differences from the PIL reference (by design, documented in docs/METHOD_NOTES.md §2): the colour
operations work on float images in [0, 1] instead of 8-bit images (no rounding between operations;
the contrast mean is not rounded to an integer; hue is shifted in float HSV instead of PIL's 8-bit
HSV); crop-and-resize is torch's antialiased bicubic, PIL's bicubic up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mokd.data.transforms import IMAGENET_MEAN, IMAGENET_STD, MultiCropTransform, blur_kernel_size

# torchvision's RandomResizedCrop: 10 attempts, aspect ratio log-uniform in [3/4, 4/3].
_CROP_ATTEMPTS = 10
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1}
_JITTER_P = 0.8
_GRAY_P = 0.2
_FLIP_P = 0.5
_BLUR_SIGMA = (0.1, 2.0)
_SOLARIZE_THRESHOLD = 128 / 255
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
_HSV_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)

# Columns of one view's uniform draws.
_C_CROP = 0  # 4 x _CROP_ATTEMPTS: area, log-ratio, top, left of each attempt
_C_FLIP = 4 * _CROP_ATTEMPTS
_C_JITTER = _C_FLIP + 1  # apply, then 4 factors, then 4 order keys
_C_GRAY = _C_JITTER + 9
_C_BLUR = _C_GRAY + 1  # apply, sigma
_C_SOLARIZE = _C_BLUR + 2
N_DRAWS = _C_SOLARIZE + 1


@dataclass(frozen=True)
class ViewRecipe:
    """One kind of view: output size, crop area range, blur and solarisation probabilities."""

    size: int
    scale: tuple[float, float]
    blur_p: float
    solarize_p: float
    blur_kernel: int


@dataclass
class ViewParams:
    """Per-sample parameters of one view for the images of this process (tensors of length B)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor  # (B, 4): brightness, contrast, saturation factors and hue shift
    order: torch.Tensor  # (B, 4): which operation comes at each position
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor


def crop_boxes(draws: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor, scale: tuple[float, float]) -> tuple[torch.Tensor, ...]:
    """torchvision's RandomResizedCrop.get_params for every sample at once, from uniform draws.

    draws: (B, 4 * attempts) in [0, 1). The first attempt whose box fits the image wins; when none
    fits, the central crop clamped to the ratio range (torchvision's fallback). Returns top, left,
    height, width (int64, length B).
    """
    b = draws.shape[0]
    d = draws.view(b, 4, _CROP_ATTEMPTS).double()
    area = (heights * widths).double().unsqueeze(1)
    target = area * (scale[0] + (scale[1] - scale[0]) * d[:, 0])
    ratio = torch.exp(_LOG_RATIO[0] + (_LOG_RATIO[1] - _LOG_RATIO[0]) * d[:, 1])
    w = torch.round(torch.sqrt(target * ratio)).long()
    h = torch.round(torch.sqrt(target / ratio)).long()
    hh, ww = heights.unsqueeze(1), widths.unsqueeze(1)
    ok = (w > 0) & (w <= ww) & (h > 0) & (h <= hh)
    top = torch.floor(d[:, 2] * (hh - h + 1).double()).long()
    left = torch.floor(d[:, 3] * (ww - w + 1).double()).long()
    first = torch.argmax(ok.int(), dim=1)  # first fitting attempt (0 when none fits)
    pick = lambda t: t.gather(1, first.unsqueeze(1)).squeeze(1)  # noqa: E731
    any_ok = ok.any(dim=1)
    fb_top, fb_left, fb_h, fb_w = _central_crop(heights, widths)
    return (
        torch.where(any_ok, pick(top), fb_top),
        torch.where(any_ok, pick(left), fb_left),
        torch.where(any_ok, pick(h), fb_h),
        torch.where(any_ok, pick(w), fb_w),
    )


def _central_crop(heights: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, ...]:
    in_ratio = widths.double() / heights.double()
    lo, hi = 3 / 4, 4 / 3
    w = torch.where(in_ratio > hi, torch.round(heights.double() * hi).long(), widths)
    h = torch.where(in_ratio < lo, torch.round(widths.double() / lo).long(), heights)
    return (heights - h) // 2, (widths - w) // 2, h, w


def view_params(recipe: ViewRecipe, draws: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor, jitter: bool) -> ViewParams:
    """Pixel parameters of one view from its uniform draws (B, N_DRAWS) and the images' sizes."""
    top, left, h, w = crop_boxes(draws[:, _C_CROP:_C_FLIP], heights, widths, recipe.scale)
    j = draws[:, _C_JITTER : _C_JITTER + 9]
    lo_hi = torch.tensor(
        [[1 - _JITTER["brightness"], 1 + _JITTER["brightness"]],
         [1 - _JITTER["contrast"], 1 + _JITTER["contrast"]],
         [1 - _JITTER["saturation"], 1 + _JITTER["saturation"]],
         [-_JITTER["hue"], _JITTER["hue"]]],
        dtype=draws.dtype,
    )
    factors = lo_hi[:, 0] + (lo_hi[:, 1] - lo_hi[:, 0]) * j[:, 1:5]
    s_lo, s_hi = _BLUR_SIGMA
    return ViewParams(
        top=top, left=left, height=h, width=w,
        flip=draws[:, _C_FLIP] < _FLIP_P,
        jitter=(j[:, 0] < _JITTER_P) & jitter,
        factors=factors,
        order=torch.argsort(j[:, 5:9], dim=1),  # a uniformly random permutation per sample
        gray=(draws[:, _C_GRAY] < _GRAY_P) & jitter,
        blur=draws[:, _C_BLUR] < recipe.blur_p,
        sigma=s_lo + (s_hi - s_lo) * draws[:, _C_BLUR + 1],
        solarize=draws[:, _C_SOLARIZE] < recipe.solarize_p,
    )


# ------------------------------------------------------------------------------- tensor operations
def resized_crops(images: Sequence[torch.Tensor], p: ViewParams, size: int) -> torch.Tensor:
    """Crop each uint8 (C, H, W) image to its box and resize it to size x size: float (B, C, S, S) in [0, 1]."""
    out = []
    for img, t, l, h, w in zip(images, p.top.tolist(), p.left.tolist(), p.height.tolist(), p.width.tolist()):
        crop = img[None, :, t : t + h, l : l + w].float()
        out.append(F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True, align_corners=False))
    x = torch.cat(out).div_(255.0).clamp_(0.0, 1.0)
    flip = p.flip.to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luminance, torchvision's weights."""
    r, g, b = x.unbind(1)
    wr, wg, wb = _GRAY_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of (B, 3, H, W) images in [0, 1] by `shift` (fraction of a turn) per sample."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    eq = maxc == minc
    safe = torch.where(eq, torch.ones_like(delta), delta)
    sat = torch.where(eq, torch.zeros_like(delta), delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(eq, torch.zeros_like(hue), hue)
    hue6 = torch.remainder(hue + 6.0 * shift.view(-1, 1, 1), 6.0)  # hue in sixths of a turn
    # HSV -> RGB: channel n (R 5, G 3, B 1) is V - V S clamp(min(k, 4 - k), 0, 1), k = (n + hue6) mod 6.
    k = torch.remainder(_HSV_OFFSETS.to(x.device, x.dtype) + hue6.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) * (1.0 - sat.unsqueeze(1) * ramp)


def color_jitter(x: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """torchvision's ColorJitter per sample: four operations in the sample's own random order.

    Each position applies, to every sample, the operation that its permutation puts there; samples
    not jittered keep their pixels.
    """
    sel = p.jitter.to(x.device)
    if not bool(sel.any()):
        return x
    factors = p.factors.to(x.device, x.dtype)
    order = p.order.to(x.device)
    y = x
    for position in range(4):
        op_here = order[:, position]
        for op in range(4):
            mask = sel & (op_here == op)
            if not bool(mask.any()):
                continue
            idx = mask.nonzero().squeeze(1)
            y = y.clone() if y is x else y
            y[idx] = _jitter_op(op, y[idx], factors[idx, op])
    return y


def _jitter_op(op: int, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if op == 0:  # brightness: blend with black
        return _blend(x, torch.zeros_like(x), f)
    if op == 1:  # contrast: blend with the mean grey level of the image
        return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), f)
    if op == 2:  # saturation: blend with the image's grey version
        return _blend(x, grayscale(x), f)
    return adjust_hue(x, f)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per sample, reflect padding (torchvision's GaussianBlur)."""
    b, c, h, w = x.shape
    half = (kernel - 1) * 0.5
    pos = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (pos.unsqueeze(0) / sigma.to(x.device, x.dtype).unsqueeze(1)) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, k)
    pad = kernel // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, kernel), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, kernel, 1), groups=b * c)
    return y.view(b, c, h, w)


class BatchedMultiCrop:
    """DINO multi-crop of a batch: 2 global crops then `n_local` local crops, per-sample parameters.

    Same settings as `MultiCropTransform` (they are read from the same config keys); call it with
    decoded uint8 images (a list of (3, H, W) tensors, or one (B, 3, H, W) tensor) and the uniform
    draws of `draws(generator, global_batch)` sliced to this process's rows.
    """

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
        # The PIL reference validates the settings; this pipeline mirrors its recipe.
        ref = MultiCropTransform(
            global_size, local_size, n_local, global_scale, local_scale, mean, std, blur_kernel_frac, jitter
        )
        self.n_local = ref.n_local
        self.jitter = ref.jitter
        self.mean = torch.tensor(ref.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(ref.std).view(1, 3, 1, 1)
        g = dict(size=ref.global_size, scale=ref.global_scale, blur_kernel=blur_kernel_size(ref.global_size, ref.blur_kernel_frac))
        loc = dict(size=ref.local_size, scale=ref.local_scale, blur_kernel=blur_kernel_size(ref.local_size, ref.blur_kernel_frac))
        self.recipes = (
            [ViewRecipe(blur_p=1.0, solarize_p=0.0, **g), ViewRecipe(blur_p=0.1, solarize_p=0.2, **g)]
            + [ViewRecipe(blur_p=0.5, solarize_p=0.0, **loc)] * self.n_local
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "BatchedMultiCrop":
        """From the `crops` config, validated as `MultiCropTransform.from_config` validates it."""
        ref = MultiCropTransform.from_config(cfg)
        return cls(ref.global_size, ref.local_size, ref.n_local, ref.global_scale, ref.local_scale, ref.mean, ref.std,
                   ref.blur_kernel_frac, ref.jitter)

    @property
    def n_crops(self) -> int:
        return 2 + self.n_local

    def draws(self, generator: torch.Generator, global_batch: int) -> torch.Tensor:
        """Uniform draws (views, global_batch, N_DRAWS) for one global batch."""
        return torch.rand(self.n_crops, global_batch, N_DRAWS, generator=generator, dtype=torch.float64)

    def params(self, draws: torch.Tensor, sizes: torch.Tensor) -> list[ViewParams]:
        """Every view's parameters for images of `sizes` (B, 2: height, width) from draws (V, B, N)."""
        return [view_params(r, d, sizes[:, 0], sizes[:, 1], self.jitter) for r, d in zip(self.recipes, draws)]

    def __call__(self, images: Sequence[torch.Tensor] | torch.Tensor, draws: torch.Tensor) -> list[torch.Tensor]:
        sizes = torch.tensor([list(img.shape[-2:]) for img in images], dtype=torch.long)
        return [self.view(images, recipe, p) for recipe, p in zip(self.recipes, self.params(draws, sizes))]

    def view(self, images: Sequence[torch.Tensor] | torch.Tensor, recipe: ViewRecipe, p: ViewParams) -> torch.Tensor:
        """One view of every image: crop, flip, jitter, grayscale, blur, solarise, normalise."""
        x = resized_crops(images, p, recipe.size)
        x = color_jitter(x, p)
        gray = p.gray.to(x.device).view(-1, 1, 1, 1)
        x = torch.where(gray, grayscale(x).expand_as(x), x)
        blur = p.blur.to(x.device)
        if bool(blur.all()):
            x = gaussian_blur(x, p.sigma, recipe.blur_kernel)
        elif bool(blur.any()):
            idx = blur.nonzero().squeeze(1)
            x = x.clone()
            x[idx] = gaussian_blur(x[idx], p.sigma[idx.cpu()], recipe.blur_kernel)
        if recipe.solarize_p > 0:
            sol = p.solarize.to(x.device).view(-1, 1, 1, 1)
            x = torch.where(sol & (x >= _SOLARIZE_THRESHOLD), 1.0 - x, x)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __repr__(self) -> str:
        r = self.recipes
        return f"{type(self).__name__}(global {r[0].size} px x2, local {self.recipes[-1].size if self.n_local else '-'} px x{self.n_local}, jitter={self.jitter})"
