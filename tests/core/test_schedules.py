"""Per-iteration schedules: the authors' (DINO's) arithmetic by hand, durations in any unit."""

from __future__ import annotations

import math

import numpy as np
import pytest

import torch

from mokd.schedules import cosine_schedule, duration_iters, teacher_temperature, warmup_then_constant


def test_cosine_with_warmup() -> None:
    """The authors' cosine_scheduler (DINO's arithmetic), by hand: warm-up linspace with its endpoint,
    then the cosine over the R remaining iterations with step i / R (it stops one step short of final)."""
    sched = cosine_schedule(base=1.0, final=0.01, epochs=10, iters_per_epoch=5, warmup_epochs=2, warmup_start=0.0)
    assert len(sched) == 50
    assert sched[0] == 0.0
    assert sched[1] == pytest.approx(1 / 9)  # 10 warm-up values from 0 to 1 inclusive: steps of 1/9
    assert sched[9] == pytest.approx(1.0)  # the warm-up's last value is the base value
    cosine = lambda i: 0.01 + 0.5 * (1.0 - 0.01) * (1 + math.cos(math.pi * i / 40))  # noqa: E731
    assert sched[10] == pytest.approx(1.0) and sched[10] == pytest.approx(cosine(0))
    assert sched[30] == pytest.approx(cosine(20)) == pytest.approx((1.0 + 0.01) / 2)
    assert sched[49] == pytest.approx(cosine(39))
    assert sched[49] == pytest.approx(0.011526, abs=1e-6) and sched[49] > 0.01  # one step short of the final value
    assert np.all(np.diff(sched[10:]) <= 1e-12)  # monotone decay after warm-up


def test_short_run_lr_at_step_one() -> None:
    """At a short run's first steps the arithmetic matters: 4 warm-up iterations give base/3 at step 1
    (the endpoint-excluding warm-up gave base/4)."""
    lr = cosine_schedule(base=0.3, final=0.0, epochs=2, iters_per_epoch=10, warmup_iters=4)
    assert lr[:4] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_teacher_temperature_warmup() -> None:
    temps = warmup_then_constant(0.04, 0.07, warmup_epochs=30, epochs=100)
    assert len(temps) == 100
    assert temps[0] == pytest.approx(0.04)
    assert temps[29] == pytest.approx(0.07)
    assert np.all(temps[29:] == pytest.approx(0.07))


def test_ema_momentum_schedule() -> None:
    """Teacher momentum 0.996 -> 1 without warm-up, as the authors' momentum_schedule: 12 iterations."""
    m = cosine_schedule(0.996, 1.0, epochs=3, iters_per_epoch=4)
    assert m[0] == pytest.approx(0.996)
    assert m[6] == pytest.approx(0.998)  # half-way: cos(pi / 2) = 0
    assert m[-1] == pytest.approx(1.0 - 0.002 * (1 + math.cos(math.pi * 11 / 12)))


def test_durations_in_epochs_iterations_or_fractions() -> None:
    # 10 epochs of 20 iterations: 200 iterations in all
    assert duration_iters({"warmup_epochs": 2}, "warmup", 20, 200) == 40
    assert duration_iters({"warmup_epochs": 0.25}, "warmup", 20, 200) == 5
    assert duration_iters({"warmup_epochs": 2, "warmup_iters": 7}, "warmup", 20, 200) == 7  # iterations replace epochs
    assert duration_iters({"warmup_epochs": 2, "warmup_fraction": 0.1}, "warmup", 20, 200) == 20
    assert duration_iters({"warmup_epochs": 0.5}, "warmup", 20, 200, whole_epochs=True) == 20  # "the first epoch"
    assert duration_iters({"warmup_iters": 500}, "warmup", 20, 200) == 200  # never longer than the run


def test_lr_warmup_in_iterations() -> None:
    lr = cosine_schedule(base=1.0, final=0.0, epochs=10, iters_per_epoch=20, warmup_iters=7)
    assert lr[1] == pytest.approx(1 / 6) and lr[6] == pytest.approx(1.0) and lr[7] == pytest.approx(1.0)
    assert np.array_equal(lr, cosine_schedule(1.0, 0.0, 10, 20, warmup_epochs=0.35))  # the same 7 iterations


def test_teacher_temperature_per_epoch_or_per_iteration() -> None:
    per_epoch = teacher_temperature(0.04, 0.07, {"warmup_epochs": 3}, epochs=6, iters_per_epoch=20)
    assert len(per_epoch) == 120
    assert np.array_equal(per_epoch[::20], warmup_then_constant(0.04, 0.07, 3, 6))  # DINO's values, one per epoch
    assert len(set(per_epoch[:20].tolist())) == 1  # constant within an epoch
    per_iter = teacher_temperature(0.04, 0.07, {"warmup_epochs": 3, "warmup_fraction": 0.5}, epochs=6, iters_per_epoch=20)
    assert per_iter[0] == pytest.approx(0.04) and per_iter[59] == pytest.approx(0.07) and per_iter[-1] == 0.07
    assert np.all(np.diff(per_iter[:60]) > 0)  # rises every iteration of the warm-up


def test_last_layer_freeze_in_iterations(fashion_root, tmp_path) -> None:
    from mokd.data import build_dataset
    from mokd.engine import Trainer
    from tests.core.tiny import PAIRS, tiny_config

    models = PAIRS["dino"]()
    models[0]["freeze_last_layer_iters"] = 2
    cfg = tiny_config(models, fashion_root)
    trainer = Trainer(cfg, tmp_path, build_dataset(cfg["data"], "train"))
    assert trainer.models[0].freeze_iters == 2
    crops = next(iter(trainer.data.epoch(0)))
    layer = trainer.models[0].slot.student.mlp_head.last_layer.direction
    start = layer.detach().clone()
    trainer.train_step(crops, 0)
    trainer.train_step(crops, 0)
    assert torch.equal(layer, start)  # frozen for 2 iterations
    trainer.train_step(crops, 0)
    assert not torch.equal(layer, start)
