"""Rolling statistics (SPEC §4.4), tables ``statistics_rate_<pair>`` and ``statistics_bqx_<pair>``.

For each window N, over the N rows ending at t (t included), with m_k the k-th central
moment of the window (divided by N)::

    mean_N, std_N (ddof = 1), min_N, max_N, median_N
    q25_N, q75_N      quantiles, linear interpolation (numpy's default method)
    iqr_N           = q75 − q25
    skew_N          = m3/m2^1.5 · √(N(N−1))/(N−2)                      (scipy skew, bias=False)
    kurt_N          = ((N²−1)·m4/m2² − 3(N−1)²) / ((N−2)(N−3))          (scipy kurtosis, bias=False)
    zscore_N        = (x[t] − mean)/std
    autocorr1_N     = Pearson corr of x[t−N+1..t] with x[t−N..t−1]

``skew``, ``kurt`` and ``zscore`` are NaN on a flat window, ``autocorr1`` when either of its
two windows is flat. Every value is computed from its own window (sorted copies for the order
statistics, moments of the window taken relative to its last value and then de-meaned),
never from running sums, so it does not depend on where the series starts; the windows are
processed in blocks of rows, so memory stays bounded whatever the series length.

Warm-up: rows t < N−1 are NaN (t < N for ``autocorr1``); lookback is max(N) rows.

References: https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.skew.html ,
https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.kurtosis.html ,
https://numpy.org/doc/stable/reference/generated/numpy.quantile.html .
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import StatisticsParams
from . import registry
from ._windows import nan_columns, trailing_windows

STATS = ("mean", "std", "min", "max", "median", "q25", "q75", "iqr", "skew", "kurt", "zscore", "autocorr1")
#: rows per block: 2048 × 121 float64 temporaries stay in cache better than the default 8192
BLOCK_ROWS = 2048


def columns(windows: Sequence[int]) -> list[str]:
    """Column names in SPEC §4.4 order, grouped by window: ``mean_15, std_15, …, autocorr1_120``."""
    return [f"{s}_{n}" for n in windows for s in STATS]


def _quantile(s: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of each row of the row-sorted block ``s``, as numpy's 'linear' method."""
    h = (s.shape[1] - 1) * q
    j = int(np.floor(h))
    g = h - j
    if g == 0.0:
        return s[:, j].copy()
    a, b = s[:, j], s[:, j + 1]
    diff = b - a
    # numpy interpolates from the nearer end, which keeps the result inside [a, b]
    return a + diff * g if g < 0.5 else b - diff * (1.0 - g)


def _block_stats(view: np.ndarray) -> dict[str, np.ndarray]:
    """Every column except ``autocorr1`` for a block of windows ``view`` (rows × N)."""
    n = view.shape[1]
    s = np.sort(view, axis=1)
    q25, q75 = _quantile(s, 0.25), _quantile(s, 0.75)
    flat = s[:, 0] == s[:, -1]
    last = view[:, -1]
    d = view - last[:, None]  # exact for the index; all zeros on a flat window
    d_mean = d.mean(axis=1)
    dev = d - d_mean[:, None]
    dev2 = dev * dev
    # row-wise dot products: no N-wide temporaries for the third and fourth powers
    m2 = dev2.sum(axis=1) / n
    m3 = np.einsum("ij,ij->i", dev2, dev) / n
    m4 = np.einsum("ij,ij->i", dev2, dev2) / n
    var = m2 * (n / (n - 1))
    m2_live = np.where(flat, np.nan, m2)  # flat → NaN moments, without dividing by zero
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = m3 / m2_live**1.5 * (np.sqrt(n * (n - 1.0)) / (n - 2.0))
        kurt = ((n * n - 1.0) * (m4 / (m2_live * m2_live)) - 3.0 * (n - 1.0) ** 2) / ((n - 2.0) * (n - 3.0))
        zscore = -d_mean / np.sqrt(np.where(flat, np.nan, var))  # x[t] − mean = −mean(d)
    return {
        "mean": last + d_mean, "std": np.sqrt(var), "min": s[:, 0], "max": s[:, -1],
        "median": _quantile(s, 0.5), "q25": q25, "q75": q75, "iqr": q75 - q25,
        "skew": skew, "kurt": kurt, "zscore": zscore,
    }


def _block_autocorr(view: np.ndarray) -> np.ndarray:
    """Lag-1 Pearson correlation for a block of (N+1)-row windows ``x[t−N..t]``."""
    a, b = view[:, 1:], view[:, :-1]  # x[t−N+1..t] and x[t−N..t−1]
    ca = a - a[:, -1:]  # each relative to its own last value: a flat window becomes exact zeros
    cb = b - b[:, -1:]
    ca -= ca.mean(axis=1)[:, None]
    cb -= cb.mean(axis=1)[:, None]
    saa = np.sqrt(np.einsum("ij,ij->i", ca, ca))
    sbb = np.sqrt(np.einsum("ij,ij->i", cb, cb))
    live = (saa > 0) & (sbb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(live, np.einsum("ij,ij->i", ca, cb) / (saa * sbb), np.nan)


def statistics(x: np.ndarray, *, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """Rolling statistics columns of SPEC §4.4 for a finite series ``x`` (time order).

    Parameters
    ----------
    x
        The input series (index or BQX series), finite float64, oldest first.
    windows
        Window lengths N (rows, t included), each ≥ 4.

    Returns
    -------
    dict
        ``{stat}_{N}`` → array of ``len(x)``, NaN during the warm-up and where undefined.
    """
    x = np.asarray(x, dtype="float64")
    out = nan_columns(len(x), columns(windows))
    for n in windows:
        for t0, view in trailing_windows(x, n, block=BLOCK_ROWS):
            rows = slice(t0, t0 + len(view))
            for stat, values in _block_stats(view).items():
                out[f"{stat}_{n}"][rows] = values
        for t0, view in trailing_windows(x, n + 1, block=BLOCK_ROWS):
            out[f"autocorr1_{n}"][t0 : t0 + len(view)] = _block_autocorr(view)
    return out


def _kwargs(p: StatisticsParams) -> dict:
    return {"windows": tuple(p.windows)}


for _name, _input, _what in (("statistics_rate", "idx", "the index"), ("statistics_bqx", "bqx", "the BQX series")):
    registry.register(registry.Family(
        name=_name, input=_input, section="statistics",
        columns=lambda p: columns(p.windows),
        lookback=lambda p: max(p.windows),  # autocorr1 needs x[t−N]
        kernel=statistics,
        kwargs=_kwargs,
        summary=f"rolling mean, std, quantiles, skew, kurtosis, z-score, lag-1 autocorrelation of {_what} (SPEC §4.4)",
    ))
del _name, _input, _what
