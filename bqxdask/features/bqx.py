"""BQX momentum family (SPEC §4.2), table ``bqx_<pair>``.

For each window W, over the W bars *before* t (t excluded)::

    w{W}_bqx_return   = (Σ_{i=1..W} idx[t−i] − W·idx[t]) / idx[t]     (positive = price fell)
    w{W}_bqx_endpoint = (idx[t−W] − idx[t]) / idx[t]
    w{W}_bqx_max/min/avg/std                                         of idx[t−W..t−1], std ddof=1

and, with M the largest window, ``agg_bqx_range = (max_M − min_M)/idx[t]``,
``agg_bqx_volatility = std_M/idx[t]``, ``rate_index = idx[t]``. Rows with fewer than W
earlier bars are NaN. The return is summed from the differences ``idx[t−i] − idx[t]`` so the
≈100 level of the index cancels before rounding, not after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._windows import nan_columns, trailing_windows
from .params import LEVEL as L
from .params import SCALE_FREE as S
from .params import check_windows


@dataclass(frozen=True)
class BqxParams:
    """``[families.bqx]``: the momentum windows and the window of the BQX series other families read."""

    windows: tuple[int, ...] = (15, 30, 45, 60, 75)
    series_window: int = 15

    def check(self, key: str = "families.bqx") -> None:
        check_windows(self.windows, f"{key}.windows", minimum=1)
        if self.series_window < 1:
            raise ConfigError(f"{key}.series_window must be >= 1; fix: the SPEC default is 15")


def columns(windows: tuple[int, ...]) -> list[str]:
    names = []
    for w in windows:
        names += [f"w{w}_bqx_{s}" for s in ("return", "endpoint", "max", "min", "avg", "std")]
    return names + ["agg_bqx_range", "agg_bqx_volatility", "rate_index"]


def bqx_return(idx: np.ndarray, window: int) -> np.ndarray:
    """``w{window}_bqx_return`` alone: the BQX series that the ``_bqx`` families read."""
    out = np.full(len(idx), np.nan)
    for t0, view in trailing_windows(idx, window + 1):
        current = view[:, window]
        out[t0 : t0 + len(view)] = (view[:, :window] - current[:, None]).sum(axis=1) / current
    return out


def bqx(idx: np.ndarray, *, windows: tuple[int, ...]) -> dict[str, np.ndarray]:
    """All §4.2 columns for the index series ``idx`` (finite, positive, in time order)."""
    n = len(idx)
    out = nan_columns(n, columns(windows))
    for w in windows:
        for t0, view in trailing_windows(idx, w + 1):
            rows = slice(t0, t0 + len(view))
            past, current = view[:, :w], view[:, w]
            mean = past.mean(axis=1)
            dev = past - mean[:, None]
            out[f"w{w}_bqx_return"][rows] = (past - current[:, None]).sum(axis=1) / current
            out[f"w{w}_bqx_endpoint"][rows] = (past[:, 0] - current) / current
            out[f"w{w}_bqx_max"][rows] = past.max(axis=1)
            out[f"w{w}_bqx_min"][rows] = past.min(axis=1)
            out[f"w{w}_bqx_avg"][rows] = mean
            out[f"w{w}_bqx_std"][rows] = (
                np.sqrt(np.einsum("ij,ij->i", dev, dev) / (w - 1)) if w > 1 else np.full(len(view), np.nan)
            )
    m = max(windows)
    out["agg_bqx_range"] = (out[f"w{m}_bqx_max"] - out[f"w{m}_bqx_min"]) / idx
    out["agg_bqx_volatility"] = out[f"w{m}_bqx_std"] / idx
    out["rate_index"] = np.asarray(idx, dtype="float64").copy()
    return out


#: the kind (SPEC §9, :mod:`.params`) of each column stem
STEM_KINDS = {
    "w{N}_bqx_return": S,
    "w{N}_bqx_endpoint": S,
    "w{N}_bqx_max": L,
    "w{N}_bqx_min": L,
    "w{N}_bqx_avg": L,
    "w{N}_bqx_std": S,
    "agg_bqx_range": S,
    "agg_bqx_volatility": S,
    "rate_index": L,
}


def param_columns(p: BqxParams) -> list[str]:
    return columns(p.windows)


def lookback(p: BqxParams) -> int:
    return max(p.windows)


def kernel_kwargs(p: BqxParams) -> dict:
    return {"windows": p.windows}
