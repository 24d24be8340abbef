"""The batched multi-crop pipeline against the per-image PIL reference (torchvision) and its own invariants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from mokd.data import MultiCropTransform, build_dataset
from mokd.data import batched_multicrop as bm
from mokd.data.training_crops import TrainingCrops, to_uint8_tensor

RECIPE = dict(global_size=32, local_size=16, n_local=2, global_scale=(0.4, 1.0), local_scale=(0.1, 0.4))


@pytest.fixture
def photo() -> Image.Image:
    """A smooth colourful 60x80 image (colour jitter, hue and blur all change it)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((80, 60), Image.BICUBIC)


def draws_for(pipeline: bm.BatchedMultiCrop, batch: int, seed: int = 0) -> torch.Tensor:
    return pipeline.draws(torch.Generator().manual_seed(seed), batch)


def test_shapes_dtype_and_mixed_image_sizes() -> None:
    pipe = bm.BatchedMultiCrop(**RECIPE)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in ((28, 28), (60, 80), (375, 500))]
    views = pipe(images, draws_for(pipe, 3))
    assert [tuple(v.shape) for v in views] == [(3, 3, 32, 32)] * 2 + [(3, 3, 16, 16)] * 2
    assert all(v.dtype == torch.float32 for v in views)
    assert not torch.equal(views[0], views[1])


def test_normalisation_of_a_constant_image() -> None:
    """A flat image stays flat under crop, flip, grayscale and blur: its value is (v / 255 - mean) / std."""
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)
    pipe = bm.BatchedMultiCrop(**RECIPE, mean=mean, std=std, jitter=False)
    images = torch.full((4, 3, 28, 28), 100, dtype=torch.uint8)
    view = pipe(images, draws_for(pipe, 4))[0]  # global 1: never solarised
    expected = (100 / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(view, expected.view(1, 3, 1, 1).expand_as(view), atol=1e-5)


def test_crop_boxes_follow_torchvisions_distribution() -> None:
    """Area fraction, aspect ratio and position of the boxes: KS tests against RandomResizedCrop.get_params."""
    n = 3000
    torch.manual_seed(0)
    for (h, w), scale in (((28, 28), (0.4, 1.0)), ((375, 500), (0.05, 0.25)), ((30, 200), (0.25, 1.0))):
        ours = bm.crop_boxes(torch.rand(n, 4 * 10, dtype=torch.float64), torch.full((n,), h), torch.full((n,), w), scale)
        top, left, bh, bw = (t.numpy().astype(float) for t in ours)
        assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
        img = Image.new("RGB", (w, h))
        ref = np.array([T.RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3]) for _ in range(n)], dtype=float)
        features = {
            "area": (bh * bw / (h * w), ref[:, 2] * ref[:, 3] / (h * w)),
            "aspect": (bw / bh, ref[:, 3] / ref[:, 2]),
            "top": (top / h, ref[:, 0] / h),
            "left": (left / w, ref[:, 1] / w),
        }
        for name, (a, b) in features.items():
            assert stats.ks_2samp(a, b).pvalue > 1e-3, (h, w, scale, name)


def reference_probabilities(view: T.Compose) -> dict[str, float]:
    """Flip, jitter, grayscale, blur and solarise probabilities read off a torchvision view pipeline."""
    p = {"flip": 0.0, "jitter": 0.0, "gray": 0.0, "blur": 0.0, "solarize": 0.0}
    for op in view.transforms:
        inner = op.transforms[0] if isinstance(op, T.RandomApply) else op
        prob = op.p if isinstance(op, T.RandomApply) else getattr(op, "p", 1.0)
        kind = {T.RandomHorizontalFlip: "flip", T.ColorJitter: "jitter", T.RandomGrayscale: "gray",
                T.GaussianBlur: "blur", T.RandomSolarize: "solarize"}.get(type(inner))
        if kind:
            p[kind] = prob
    return p


def test_random_decisions_match_the_reference_probabilities() -> None:
    ref = MultiCropTransform(**RECIPE)
    pipe = bm.BatchedMultiCrop(**RECIPE)
    n = 20000
    params = pipe.params(draws_for(pipe, n), torch.full((n, 2), 28))
    for view, p in zip((ref.global1, ref.global2, ref.local, ref.local), params):
        expected = reference_probabilities(view)
        observed = {"flip": p.flip, "jitter": p.jitter, "gray": p.gray, "blur": p.blur, "solarize": p.solarize}
        for name, prob in expected.items():
            k = int(observed[name].sum())
            if prob in (0.0, 1.0):
                assert k == prob * n, name
            else:
                assert stats.binomtest(k, n, prob).pvalue > 1e-3, (name, k / n, prob)
    jitter = next(op.transforms[0] for op in ref.global1.transforms if isinstance(op, T.RandomApply))
    factors = params[0].factors.numpy()
    for col, (lo, hi) in enumerate((jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)):
        assert stats.kstest(factors[:, col], "uniform", args=(lo, hi - lo)).pvalue > 1e-3
    orders = {tuple(o) for o in params[0].order.tolist()}
    assert len(orders) == 24  # every order of the four operations occurs (torch.randperm(4) in torchvision)
    sigma = params[0].sigma.numpy()
    assert stats.kstest(sigma, "uniform", args=(0.1, 1.9)).pvalue > 1e-3


def test_colour_operations_equal_torchvisions_tensor_operations() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 3, 12, 12)
    x[0] = x[0, :1]  # a grey image: hue and saturation leave it alone
    f = torch.rand(6) + 0.5
    for op, fn in enumerate((TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)):
        ref = torch.stack([fn(x[i], float(f[i])) for i in range(6)])
        assert torch.allclose(bm._jitter_op(op, x, f), ref, atol=1e-6)
    shift = torch.rand(6) * 0.2 - 0.1
    ref = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(6)])
    assert torch.allclose(bm.adjust_hue(x, shift), ref, atol=1e-5)
    assert torch.allclose(bm.grayscale(x).expand_as(x), TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-6)
    sigma = torch.rand(6) * 1.9 + 0.1
    ref = torch.stack([TF.gaussian_blur(x[i], [5, 5], [float(sigma[i])] * 2) for i in range(6)])
    assert torch.allclose(bm.gaussian_blur(x, sigma, 5), ref, atol=1e-5)


def test_colour_jitter_applies_each_samples_own_order() -> None:
    torch.manual_seed(1)
    x = torch.rand(24, 3, 8, 8)
    params = bm.BatchedMultiCrop(**RECIPE).params(torch.rand(1, 24, bm.N_DRAWS, dtype=torch.float64), torch.full((24, 2), 8))[0]
    params.jitter = torch.ones(24, dtype=torch.bool)
    params.order = torch.stack([torch.randperm(4) for _ in range(24)])
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    out = bm.color_jitter(x, params)
    for i in range(24):
        ref = x[i]
        for op in params.order[i].tolist():
            ref = ops[op](ref, float(params.factors[i, op]))
        assert torch.allclose(out[i], ref, atol=1e-5), i


def test_crop_and_resize_is_close_to_pil(photo: Image.Image) -> None:
    """The same box through torch's antialiased bicubic and PIL's bicubic: within rounding."""
    image = to_uint8_tensor(photo)
    for (top, left, h, w), size in (((5, 7, 40, 50), 32), ((0, 0, 60, 80), 32), ((10, 20, 12, 9), 16)):
        p = bm.ViewParams(*(torch.tensor([v]) for v in (top, left, h, w)), flip=torch.tensor([False]),
                          jitter=torch.tensor([False]), factors=torch.zeros(1, 4), order=torch.zeros(1, 4, dtype=torch.long),
                          gray=torch.tensor([False]), blur=torch.tensor([False]), sigma=torch.ones(1),
                          solarize=torch.tensor([False]))
        ours = bm.resized_crops([image], p, size)[0]
        ref = TF.to_tensor(TF.resized_crop(photo, top, left, h, w, [size, size], T.InterpolationMode.BICUBIC))
        assert (ours - ref).abs().mean() < 1.5 / 255 and (ours - ref).abs().max() < 12 / 255


def test_views_have_the_reference_pixel_statistics(photo: Image.Image) -> None:
    """End to end, per view: the distributions of a view's mean and spread over many draws match PIL's."""
    ref = MultiCropTransform(**RECIPE)
    pipe = bm.BatchedMultiCrop(**RECIPE)
    n = 600
    torch.manual_seed(0)
    pil_views = [ref(photo) for _ in range(n)]
    image = to_uint8_tensor(photo)
    ours = pipe(image.unsqueeze(0).expand(n, -1, -1, -1), draws_for(pipe, n))
    for v in range(pipe.n_crops):
        a = torch.stack([views[v] for views in pil_views])
        for stat in (lambda t: t.mean(dim=(1, 2, 3)), lambda t: t.std(dim=(1, 2, 3))):
            assert stats.ks_2samp(stat(a).numpy(), stat(ours[v]).numpy()).pvalue > 1e-3, v


def test_training_crops_are_the_same_for_any_split_across_processes(fashion_root: Path) -> None:
    """Two processes' rows of a global batch, concatenated, are the one-process batch (and resumable)."""
    data = build_dataset({"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 2}, "train")
    crops_cfg = {**RECIPE, "pipeline": "batched"}
    one = TrainingCrops(data, crops_cfg, seed=3, batch_size=6, num_workers=0, device=torch.device("cpu"))
    two = [TrainingCrops(data, crops_cfg, 3, 6, 0, torch.device("cpu"), rank=r, world_size=2) for r in (0, 1)]
    whole = list(one.epoch(1))
    halves = [list(t.epoch(1)) for t in two]
    assert len(whole) == len(halves[0]) == 20 // 6
    for step, views in enumerate(whole):
        for v, view in enumerate(views):
            assert torch.equal(view, torch.cat([halves[0][step][v], halves[1][step][v]]))
    resumed = next(iter(one.epoch(1, start_iter=2)))
    assert all(torch.equal(a, b) for a, b in zip(resumed, whole[2]))
    assert not torch.equal(whole[0][0], next(iter(one.epoch(2)))[0])  # another epoch, other crops
