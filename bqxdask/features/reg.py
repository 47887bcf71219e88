"""Rolling polynomial regression families (SPEC §4.6): ``reg_rate`` on idx, ``reg_bqx`` on the BQX series.

For every window W and bar t, the least-squares polynomial of degree d (1, 2 or 3) through
``y[t−W+1..t]`` at ``x = 0..W−1`` (bar t is ``x = W−1``)::

    ŷ(x) = cubic·x³ + quad·x² + lin·x + const        (cubic only for d = 3, quad for d ≥ 2)

and per window, in this column order (grouped by window, SPEC §4.6 order; degree 3 puts the
extra ``cubic`` first, highest power first as ``np.polyfit`` returns them; degree 1 has no
``quad`` and no ``quad_term``)::

    w{W}_cubic, w{W}_quad, w{W}_lin, w{W}_const   coefficients (a = quad, b = lin, c = const)
    w{W}_quad_term = quad·(W−1)²,  w{W}_lin_term = lin·(W−1)
    w{W}_pred      = ŷ(W−1)              the fit at bar t
    w{W}_resid     = y[t] − ŷ(W−1)
    w{W}_slope     = ŷ′(W−1)             per bar, at bar t (includes 3·cubic·(W−1)² for d = 3)
    w{W}_forecast  = ŷ(W)                one bar ahead (the cubic term included for d = 3)
    w{W}_r2        = 1 − SSE/SST         NaN when SST = 0 (a constant window)
    w{W}_rmse      = √(SSE/W)

Rows with fewer than W values of the input series are NaN (``lookback = max(W) − 1``; for
``reg_bqx`` the BQX series' own 15-row lag comes on top, see :mod:`.registry`).

The values are computed in O(1) work per row and window, independent of W, by
:mod:`._reg_fast` (discrete orthogonal polynomials, block-local sums; a compiled float64 pass
whose rows that cannot vouch for their own rounding are redone in double-double arithmetic by
:mod:`._reg_kernel`); they agree with ``np.polyfit`` on each window to SPEC §4.9 and with
exact rational least squares to ~1/1000 of that budget.

References: Savitzky & Golay (1964), *Anal. Chem.* 36(8), 1627–1639; Gram polynomials,
https://en.wikipedia.org/wiki/Discrete_orthogonal_polynomials ; ``numpy.polyfit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._reg_fast import rolling_polyfit
from ._reg_kernel import MAX_WINDOW, output_names
from .params import LEVEL as L
from .params import SCALE_FREE as S
from .params import check_windows

__all__ = ["RegParams", "check_fit", "columns", "reg", "output_names"]

DEGREES = (1, 2, 3)


def check_fit(windows: tuple[int, ...], degree: int, key: str = "families.reg") -> None:
    """The one rule of the fits (SPEC §2, §4.6): degree 1, 2 or 3; windows of ``degree + 2`` rows (at
    least one residual degree of freedom) up to the kernel's :data:`MAX_WINDOW`, each listed once."""
    if degree not in DEGREES:
        raise ConfigError(f"{key}.degree = {degree} is not supported; fix: use 1, 2 or 3")
    check_windows(windows, f"{key}.windows", minimum=degree + 2, maximum=MAX_WINDOW)


@dataclass(frozen=True)
class RegParams:
    """``[families.reg]``: the windows W and the degree d of the rolling fits."""

    windows: tuple[int, ...] = (15, 30, 45, 60, 75, 90, 150, 240, 390, 630)
    degree: int = 2

    def check(self, key: str = "families.reg") -> None:
        check_fit(self.windows, self.degree, key)


def columns(windows: tuple[int, ...], degree: int) -> list[str]:
    """Column names in SPEC §4.6 order, grouped by window: ``w{W}_<output>``."""
    check_fit(windows, degree)
    return [f"w{w}_{name}" for w in windows for name in output_names(degree)]


def reg(x: np.ndarray, *, windows: tuple[int, ...], degree: int) -> dict[str, np.ndarray]:
    """All §4.6 columns of a rolling degree-``degree`` fit of ``x`` over each window.

    Parameters
    ----------
    x
        A finite float64 series in time order (the index or the BQX series with its leading
        NaNs cut off). It may be shorter than a window: that window's columns are all NaN.
    windows, degree
        ``families.reg.windows`` and ``families.reg.degree``.

    Returns
    -------
    dict
        Column name → float64 array of ``len(x)``; the first ``W − 1`` rows of window W are NaN.
    """
    check_fit(windows, degree)
    per_window = len(output_names(degree))
    # one table for every column: one large allocation is page-faulted far faster than ten
    table = np.empty((per_window * len(windows), len(x)))
    out: dict[str, np.ndarray] = {}
    for j, w in enumerate(windows):
        part = table[j * per_window : (j + 1) * per_window]
        for name, values in rolling_polyfit(x, int(w), degree, out=part).items():
            out[f"w{w}_{name}"] = values
    return out


#: the kind (SPEC §9, :mod:`.params`) of each column stem
STEM_KINDS = {
    "w{N}_quad": S,
    "w{N}_lin": S,
    "w{N}_cubic": S,
    "w{N}_const": L,
    "w{N}_quad_term": S,
    "w{N}_lin_term": S,
    "w{N}_pred": L,
    "w{N}_resid": S,
    "w{N}_slope": S,
    "w{N}_forecast": L,
    "w{N}_r{N}": S,
    "w{N}_rmse": S,
}


def param_columns(p: RegParams) -> list[str]:
    return columns(p.windows, p.degree)


def lookback(p: RegParams) -> int:
    return max(p.windows) - 1  # the window includes bar t


def kernel_kwargs(p: RegParams) -> dict:
    return {"windows": tuple(p.windows), "degree": p.degree}
