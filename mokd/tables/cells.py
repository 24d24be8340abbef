"""One table cell: our value (a number, a text or a Stat over seeds) and the paper's reported value, as shown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from mokd.tables.reported import Reported
from mokd.tables.stats import Stat

NO_VALUE = "—"
UNKNOWN = "n/a"
FLAG = "†"

Value = float | str | Stat | None


def number_of(value: Value) -> float | None:
    """The number a value stands for (a Stat's mean); None for a text or no value."""
    if isinstance(value, Stat):
        return value.mean
    return value if isinstance(value, float) else None


@dataclass(frozen=True)
class Cell:
    ours: Value
    reported: Reported | None
    gain: Value = None  # ours − the cell's reference (a random initialisation), paired by seed
    seeds: tuple[float, ...] = ()  # the per-seed numbers behind a mean ± std (n), for paired differences
    collapsed: bool = False  # our value comes (in some seed) from a teacher that ended collapsed (marks.py)

    @property
    def delta(self) -> float | None:
        """ours − reported, when both are numbers (a Stat by its mean)."""
        ours = number_of(self.ours)
        if ours is not None and self.reported is not None and self.reported.is_number:
            return ours - float(self.reported.value)
        return None


def _round(value: float, decimals: int) -> float:
    if not math.isfinite(value):
        return value
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def round_half_up(value: Value, decimals: int) -> Value:
    """Numbers rounded as shown (61.25 -> 61.3), so that every Δ agrees with the printed values."""
    if isinstance(value, Stat):
        return Stat(_round(value.mean, decimals), _round(value.std, decimals), value.n)
    if not isinstance(value, float):
        return value
    return _round(value, decimals)


def fmt_number(value: float, decimals: int, signed: bool = False) -> str:
    if round(value, decimals) == 0:
        value = 0.0  # no "-0.0"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def fmt_value(value: Value, decimals: int) -> str:
    """A value as printed: `61.3`, `61.3 ± 0.4 (3)` over seeds, a text as it is, `—` for none."""
    if value is None:
        return NO_VALUE
    if isinstance(value, Stat):
        return f"{fmt_number(value.mean, decimals)} ± {fmt_number(value.std, decimals)} ({value.n})"
    return fmt_number(value, decimals) if isinstance(value, float) else value


def fmt_signed(value: Value, decimals: int) -> str:
    """A difference as printed: `+3.5`, `+3.5 ± 1.8 (3)` over seeds, `—` for none."""
    if value is None:
        return NO_VALUE
    if isinstance(value, Stat):
        return f"{fmt_number(value.mean, decimals, signed=True)} ± {fmt_number(value.std, decimals)} ({value.n})"
    return fmt_number(value, decimals, signed=True) if isinstance(value, float) else value


def fmt_reported(cell: Cell, decimals: int) -> str:
    """The paper's value and Δ in one cell, `72.1 (-2.1)`; `n/a` when the paper's value is not known."""
    if cell.reported is None:
        return UNKNOWN
    text = fmt_value(cell.reported.value, decimals) + (FLAG if cell.reported.flagged else "")
    return text if cell.delta is None else f"{text} ({fmt_number(cell.delta, decimals, signed=True)})"
