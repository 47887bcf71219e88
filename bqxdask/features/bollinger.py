"""Bollinger bands (SPEC §4.3), tables ``bollinger_rate_<pair>`` and ``bollinger_bqx_<pair>``.

For each period N and band multiplier k, over the N rows ending at t (t included)::

    bb_middle_N    = mean(x[t−N+1..t])
    bb_upper_N     = middle + k·σ         σ = population std of the window (ddof = 0)
    bb_lower_N     = middle − k·σ
    bb_width_N     = upper − lower        (= 2kσ)
    bb_percent_b_N = (x[t] − lower) / (upper − lower)      NaN when the window is flat
    bb_slope_N     = width[t] − width[t−1]

This is TA-Lib ``BBANDS(x, N, k, k, MA_Type.SMA)`` computed window by window (two passes
over each window, never running sums): the index sits near 100 and moves by 1e-3, where a
running sum of squares loses the digits that the width is made of. The window is taken
relative to its last value x[t] first, which is exact for the index (Sterbenz) and makes a
flat window give σ = 0 exactly, so ``percent_b`` is NaN there rather than noise.

Warm-up: rows t < N−1 are NaN (t < N for the slope); lookback is max(N) rows.

References: https://www.bollingerbands.com/bollinger-bands ,
https://ta-lib.github.io/ta-lib-python/func_groups/overlap_studies.html (BBANDS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._windows import nan_columns, shift, trailing_windows
from .params import LEVEL as L
from .params import SCALE_FREE as S
from .params import check_windows

STATS = ("middle", "upper", "lower", "width", "percent_b", "slope")


@dataclass(frozen=True)
class BollingerParams:
    """``[families.bollinger]``: the periods N and the band multiplier k."""

    periods: tuple[int, ...] = (20, 30, 60, 120)
    k: float = 2.0

    def check(self, key: str = "families.bollinger") -> None:
        check_windows(self.periods, f"{key}.periods", minimum=2)
        if not self.k > 0:
            raise ConfigError(f"{key}.k must be > 0; fix: the SPEC default is 2")


def columns(periods: Sequence[int]) -> list[str]:
    """Column names in SPEC §4.3 order, grouped by period: ``bb_middle_20, bb_upper_20, …``."""
    return [f"bb_{s}_{n}" for n in periods for s in STATS]


def bollinger(x: np.ndarray, *, periods: Sequence[int], k: float) -> dict[str, np.ndarray]:
    """Bollinger band columns of SPEC §4.3 for a finite series ``x`` (time order).

    Parameters
    ----------
    x
        The input series (index or BQX series), finite float64, oldest first.
    periods
        Window lengths N (rows, t included).
    k
        Band half-width in population standard deviations.

    Returns
    -------
    dict
        ``bb_{stat}_{N}`` → array of ``len(x)``, NaN during the warm-up and, for
        ``percent_b``, on flat windows.
    """
    x = np.asarray(x, dtype="float64")
    out = nan_columns(len(x), columns(periods))
    for n in periods:
        middle, upper, lower = out[f"bb_middle_{n}"], out[f"bb_upper_{n}"], out[f"bb_lower_{n}"]
        width, percent_b = out[f"bb_width_{n}"], out[f"bb_percent_b_{n}"]
        for t0, view in trailing_windows(x, n):
            rows = slice(t0, t0 + len(view))
            last = view[:, -1]
            d = view - last[:, None]  # exact for the index; all zeros on a flat window
            d_mean = d.mean(axis=1)
            dev = d - d_mean[:, None]
            band = k * np.sqrt((dev * dev).mean(axis=1))  # k·σ
            middle[rows] = last + d_mean
            upper[rows] = middle[rows] + band
            lower[rows] = middle[rows] - band
            width[rows] = 2.0 * band  # = upper − lower without the rounding of the ≈100 level
            # x[t] − lower = kσ − mean(d): no ≈100 level to cancel
            with np.errstate(divide="ignore", invalid="ignore"):
                percent_b[rows] = np.where(band > 0, (band - d_mean) / (2.0 * band), np.nan)
        out[f"bb_slope_{n}"] = width - shift(width, 1)
    return out


#: the kind (SPEC §9, :mod:`.params`) of each column stem
STEM_KINDS = {
    "bb_middle_{N}": L,
    "bb_upper_{N}": L,
    "bb_lower_{N}": L,
    "bb_width_{N}": S,
    "bb_percent_b_{N}": S,
    "bb_slope_{N}": S,
}


def param_columns(p: BollingerParams) -> list[str]:
    return columns(p.periods)


def lookback(p: BollingerParams) -> int:
    return max(p.periods)  # the slope needs width[t−1], i.e. x[t−N]


def kernel_kwargs(p: BollingerParams) -> dict:
    return {"periods": tuple(p.periods), "k": float(p.k)}
