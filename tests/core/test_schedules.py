"""Per-iteration schedules: warm-up ends where it should, cosine ends at its final value."""

from __future__ import annotations

import numpy as np
import pytest

from mokd.schedules import cosine_schedule, warmup_then_constant


def test_cosine_with_warmup() -> None:
    sched = cosine_schedule(base=1.0, final=0.01, epochs=10, iters_per_epoch=5, warmup_epochs=2, warmup_start=0.0)
    assert len(sched) == 50
    assert sched[0] == 0.0
    assert sched[9] == pytest.approx(0.9)  # linear: 9/10 of the way after 9 of 10 warm-up steps
    assert sched[10] == pytest.approx(1.0)  # warm-up ends at the base value
    assert sched[-1] == pytest.approx(0.01)  # cosine ends exactly at the final value
    assert np.all(np.diff(sched[10:]) <= 1e-12)  # monotone decay after warm-up
    mid = 10 + (40 - 1) / 2
    assert np.interp(mid, np.arange(50), sched) == pytest.approx((1.0 + 0.01) / 2, rel=1e-3)


def test_teacher_temperature_warmup() -> None:
    temps = warmup_then_constant(0.04, 0.07, warmup_epochs=30, epochs=100)
    assert len(temps) == 100
    assert temps[0] == pytest.approx(0.04)
    assert temps[29] == pytest.approx(0.07)
    assert np.all(temps[29:] == pytest.approx(0.07))


def test_ema_momentum_schedule_reaches_one() -> None:
    m = cosine_schedule(0.996, 1.0, epochs=3, iters_per_epoch=4)
    assert m[0] == pytest.approx(0.996) and m[-1] == pytest.approx(1.0)
