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

``skew``, ``kurt`` and ``zscore`` are NaN on a flat window (min = max), ``autocorr1`` when
either of its two windows is flat.

How (two JIT-compiled passes, every window of one series in one call)
----------------------------------------------------------------------
Every value is a function of its own window alone, never of running sums carried across
rows, so it is bit-for-bit the same however the series is partitioned:

* order statistics: a sorted copy of each window. Moving to the next row, the row that
  leaves is replaced by the row that enters and the values between their two ranks shift by
  one place (O(N) per row, as one select per place in vector lanes); the sorted array is the
  sorted window, whatever the rows before it were. min, max and the quantiles are read
  from it.
* moments: the power sums S_k = Σ d^k, k = 1..4, of ``d = x[t−i] − x[t]`` over the N rows
  of each window (exact on the index, which stays within a factor 2 of its baseline, and all
  zeros on a flat window), for blocks of rows at once: the CPU's vector lanes are rows, so
  each row's sum is taken in the same order wherever the block starts. The window of N is
  a prefix of the longest one, so one sweep over the lags serves every N. Central sums
  follow by the binomial expansion about mean(d); d is measured from a row of the window, so
  the expansion cancels at most a factor N+1 (m2) to ~N² (m4) — 4 of 16 digits at N = 120, against
  the 9 (6 for skew/kurt) that §4.9 asks.
* autocorr1: ``b = x[t−N..t−1]`` is the previous row's window; measured from x[t−1], its
  Σd and N·m2 are that row's. Only the cross sum Σ (a − x[t])·(b − x[t−1]) is new: each
  factor is measured from its own window, so a jump at t cancels nothing.

The kernels are compiled by numba on first use and cached on disk (``cache=True``; in the
package's ``__pycache__``, else numba's user-wide cache): a process pays the compilation
(~3–7 s on a shared 2-core machine) once per machine and source version, and afterwards
``import numba`` plus loading the cache (~1.5 s, mostly numba's own start-up) once per
process. They release the GIL, so Dask threads run them in parallel.

Warm-up: rows t < N−1 are NaN (t < N for ``autocorr1``); lookback is max(N) rows.

References: https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.skew.html ,
https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.kurtosis.html ,
https://numpy.org/doc/stable/reference/generated/numpy.quantile.html .
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .params import LEVEL as L
from .params import SCALE_FREE as S
from .params import check_windows

log = logging.getLogger(__name__)

STATS = ("mean", "std", "min", "max", "median", "q25", "q75", "iqr", "skew", "kurt", "zscore", "autocorr1")
#: rows per block of the moment sweep: its five running sums (10 KiB) stay in the L1 cache
BLOCK_ROWS = 256
#: quantiles read from the sorted window, in the order of their columns (median, q25, q75)
QUANTILES = (0.5, 0.25, 0.75)
# positions in STATS, used by the kernels
_NSTATS = len(STATS)
_MEAN, _STD, _MIN, _MAX, _MEDIAN, _Q25, _Q75, _IQR, _SKEW, _KURT, _ZSCORE, _AUTOCORR = range(_NSTATS)


@dataclass(frozen=True)
class StatisticsParams:
    """``[families.statistics]``: the windows N (at least 4 rows: the kurtosis divides by N − 3)."""

    windows: tuple[int, ...] = (15, 30, 60, 120)

    def check(self, key: str = "families.statistics") -> None:
        check_windows(self.windows, f"{key}.windows", minimum=4)


def columns(windows: Sequence[int]) -> list[str]:
    """Column names in SPEC §4.4 order, grouped by window: ``mean_15, std_15, …, autocorr1_120``."""
    return [f"{s}_{n}" for n in windows for s in STATS]


def _order_pass(x: np.ndarray, n: int, jq: np.ndarray, gq: np.ndarray, out: np.ndarray, c0: int) -> None:
    """min, max, median, q25, q75, iqr of every window of ``n`` rows into ``out[c0 + column]``.

    ``jq[k]``, ``gq[k]``: integer and fractional part of the position (N−1)·q of ``QUANTILES[k]``.
    """
    m = x.shape[0]
    width = (n + 7) // 8 * 8  # whole vectors; the places past n hold +inf
    a = np.full(width + 2, np.inf)  # a[1..n]: the window at t, sorted; a[0] = −inf
    a[0] = -np.inf
    for t in range(min(n, m)):  # filling: insertion sort
        v = x[t]
        i = t + 1
        while a[i - 1] > v:
            a[i] = a[i - 1]
            i -= 1
        a[i] = v
        if t < n - 1:
            for c in range(_MIN, _IQR + 1):
                out[c0 + c, t] = np.nan
    b = a.copy()
    for t in range(n - 1, m):
        if t >= n:
            # old leaves, new enters; the values between their ranks move one place towards
            # old's. Written as a select per place (no search, no data-dependent loop), so it
            # runs in vector lanes; a[] keeps ±inf at both ends and each copy of old counts once.
            old = x[t - n]
            new = x[t]
            if new >= old:
                for i in range(1, width + 1):
                    v = a[i]
                    b[i] = v if v < old else max(v, min(a[i + 1], new))
            else:
                for i in range(1, width + 1):
                    v = a[i]
                    u = a[i - 1]
                    b[i] = v if v < new or u >= old else min(v, max(u, new))
            for i in range(1, width + 1):  # (two buffers in turns: 3x the compile time)
                a[i] = b[i]
        out[c0 + _MIN, t] = a[1]
        out[c0 + _MAX, t] = a[n]
        for q in range(3):
            lo = a[jq[q] + 1]
            hi = a[jq[q] + 2]  # (N−1)·q < N−1: always inside the window
            g = gq[q]
            # numpy's lerp: from the nearer end, which keeps the result inside [lo, hi]
            out[c0 + _MEDIAN + q, t] = lo + (hi - lo) * g if g < 0.5 else hi - (hi - lo) * (1.0 - g)
        out[c0 + _IQR, t] = out[c0 + _Q75, t] - out[c0 + _Q25, t]


def _moment_pass(xp: np.ndarray, pad: int, wins: np.ndarray, out: np.ndarray, block: int) -> None:
    """mean, std, skew, kurt, zscore, autocorr1 of every window into ``out``.

    ``xp`` is the series after ``pad`` = max(N) filler rows (they reach only warm-up rows);
    ``out`` must already hold min and max (a window is flat when they are equal).
    """
    nw = wins.shape[0]
    m = xp.shape[0] - pad
    acc = np.empty((5, block))  # Σd, Σd², Σd³, Σd⁴ and the lag-1 cross sum, over the lags swept
    snap = np.empty((nw, 5, block))  # the same, taken when the sweep reaches each window's length
    s1 = np.empty(block + 1)  # [0]: the row before the block; Σd and N·m2 of window N
    c2 = np.empty(block + 1)
    carry = np.zeros((nw, 2))
    for t0 in range(0, m, block):
        nb = min(block, m - t0)
        base = pad + t0
        xt = xp[base : base + nb]
        xt1 = xp[base - 1 : base - 1 + nb]
        for r in range(5):
            for i in range(nb):
                acc[r, i] = 0.0
        j = 1  # the next lag to add (lag 0 adds d = 0)
        while j <= pad:
            stop = pad  # the next lag after which a window takes its sums
            for k in range(nw):
                if wins[k] - 1 >= j:
                    stop = min(stop, wins[k] - 1)
                if wins[k] >= j:
                    stop = min(stop, wins[k])
            while j + 3 <= stop:
                # four lags per pass: the sums are read and written once, added to in the same
                # order as one lag at a time
                x0 = xp[base - j + 1 : base - j + 1 + nb]
                x1 = xp[base - j : base - j + nb]
                x2 = xp[base - j - 1 : base - j - 1 + nb]
                x3 = xp[base - j - 2 : base - j - 2 + nb]
                x4 = xp[base - j - 3 : base - j - 3 + nb]
                for i in range(nb):
                    t = xt[i]
                    t1 = xt1[i]
                    d1 = x1[i] - t
                    d2 = x2[i] - t
                    d3 = x3[i] - t
                    d4 = x4[i] - t
                    q1 = d1 * d1
                    q2 = d2 * d2
                    q3 = d3 * d3
                    q4 = d4 * d4
                    acc[0, i] = acc[0, i] + d1 + d2 + d3 + d4
                    acc[1, i] = acc[1, i] + q1 + q2 + q3 + q4
                    acc[2, i] = acc[2, i] + q1 * d1 + q2 * d2 + q3 * d3 + q4 * d4
                    acc[3, i] = acc[3, i] + q1 * q1 + q2 * q2 + q3 * q3 + q4 * q4
                    acc[4, i] = (
                        acc[4, i]
                        + (x0[i] - t) * (x1[i] - t1)
                        + d1 * (x2[i] - t1)
                        + d2 * (x3[i] - t1)
                        + d3 * (x4[i] - t1)
                    )
                j += 4
            while j <= stop:
                xs = xp[base - j : base - j + nb]
                xq = xp[base - j + 1 : base - j + 1 + nb]
                for i in range(nb):
                    d = xs[i] - xt[i]
                    d2 = d * d
                    acc[0, i] += d
                    acc[1, i] += d2
                    acc[2, i] += d2 * d
                    acc[3, i] += d2 * d2
                    # (x[t−j+1] − x[t])·(x[t−j] − x[t−1]): each factor measured inside its own window
                    acc[4, i] += (xq[i] - xt[i]) * (xs[i] - xt1[i])
                j += 1
            for k in range(nw):
                if wins[k] - 1 == stop:
                    for r in range(4):
                        for i in range(nb):
                            snap[k, r, i] = acc[r, i]
                if wins[k] == stop:
                    for i in range(nb):
                        snap[k, 4, i] = acc[4, i]
        for k in range(nw):
            n = wins[k]
            fn = float(n)
            c0 = _NSTATS * k
            kskew = np.sqrt(fn * (fn - 1.0)) / (fn - 2.0)
            kurt_a = fn * fn - 1.0
            kurt_b = 3.0 * (fn - 1.0) ** 2
            kurt_c = (fn - 2.0) * (fn - 3.0)
            lo = out[c0 + _MIN, t0 : t0 + nb]
            hi = out[c0 + _MAX, t0 : t0 + nb]
            o_mean = out[c0 + _MEAN, t0 : t0 + nb]
            o_std = out[c0 + _STD, t0 : t0 + nb]
            o_skew = out[c0 + _SKEW, t0 : t0 + nb]
            o_kurt = out[c0 + _KURT, t0 : t0 + nb]
            o_z = out[c0 + _ZSCORE, t0 : t0 + nb]
            s1[0] = carry[k, 0]
            c2[0] = carry[k, 1]
            for i in range(nb):  # branch-free, in vector lanes; a flat window's sums are all 0
                a1 = snap[k, 0, i]
                a2 = snap[k, 1, i]
                a3 = snap[k, 2, i]
                mu = a1 / fn
                mu2 = mu * mu
                cc2 = a2 - a1 * mu  # N·m2
                m2 = cc2 / fn
                m3 = (a3 - 3.0 * mu * a2 + 2.0 * mu2 * a1) / fn
                m4 = (snap[k, 3, i] - 4.0 * mu * a3 + 6.0 * mu2 * a2 - 3.0 * mu2 * mu * a1) / fn
                std = np.sqrt(cc2 / (fn - 1.0))
                live = lo[i] != hi[i]
                s1[i + 1] = a1
                c2[i + 1] = cc2
                o_mean[i] = xt[i] + mu
                o_std[i] = std
                o_skew[i] = m3 / (m2 * np.sqrt(m2)) * kskew if live else np.nan
                o_kurt[i] = (kurt_a * (m4 / (m2 * m2)) - kurt_b) / kurt_c if live else np.nan
                o_z[i] = -mu / std if live else np.nan  # x[t] − mean = −mean(d)
            carry[k, 0] = s1[nb]
            carry[k, 1] = c2[nb]
            # a = x[t−N+1..t] is the window at t, b = x[t−N..t−1] the window at t−1 (measured
            # from x[t−1]): its Σd and N·m2 are the previous row's, so only the cross sum is new
            i0 = 1 if t0 == 0 else 0
            lo_b = out[c0 + _MIN, t0 - 1 + i0 : t0 - 1 + nb]
            hi_b = out[c0 + _MAX, t0 - 1 + i0 : t0 - 1 + nb]
            o_ac = out[c0 + _AUTOCORR, t0 + i0 : t0 + nb]
            for i in range(nb - i0):
                r = i + i0
                cov = snap[k, 4, r] - s1[r + 1] * (s1[r] / fn)
                live = lo[r] != hi[r] and lo_b[i] != hi_b[i]
                o_ac[i] = cov / np.sqrt(c2[r + 1] * c2[r]) if live else np.nan
            for t in range(t0, min(t0 + nb, n)):  # warm-up rows
                if t < n - 1:
                    out[c0 + _MEAN, t] = np.nan
                    out[c0 + _STD, t] = np.nan
                    out[c0 + _SKEW, t] = np.nan
                    out[c0 + _KURT, t] = np.nan
                    out[c0 + _ZSCORE, t] = np.nan
                out[c0 + _AUTOCORR, t] = np.nan


@functools.cache
def kernels() -> tuple[Callable, Callable]:
    """The two passes compiled by numba (imported here, so commands that compute nothing skip it)."""
    import numba

    # numpy's error model: IEEE division (no zero checks), which lets the loops vectorise
    try:
        jit = numba.njit(cache=True, nogil=True, error_model="numpy")
        return jit(_order_pass), jit(_moment_pass)
    except RuntimeError as exc:  # no writable cache directory: compile in every process
        log.warning("statistics kernels not cached (%s); fix: set NUMBA_CACHE_DIR to a writable directory", exc)
        jit = numba.njit(cache=False, nogil=True, error_model="numpy")
        return jit(_order_pass), jit(_moment_pass)


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
        ``{stat}_{N}`` → array of ``len(x)`` (rows of one 2-D array), NaN during the warm-up
        and where undefined.
    """
    x = np.asarray(x, dtype="float64")
    order_pass, moment_pass = kernels()
    m = len(x)
    pad = max(windows)
    # a fresh, writable, contiguous copy: one compiled version whatever the caller passes
    # (a read-only view from pandas would be another type for numba, another compilation)
    xp = np.empty(pad + m)
    xp[:pad] = x[0] if m else 0.0
    xp[pad:] = x
    out = np.empty((len(STATS) * len(windows), m))
    for k, n in enumerate(windows):
        pos = [(n - 1) * q for q in QUANTILES]  # as numpy's 'linear' method: floor and fraction
        jq = np.array([int(np.floor(h)) for h in pos], dtype=np.int64)
        gq = np.array([h - np.floor(h) for h in pos], dtype=np.float64)
        order_pass(xp[pad:], int(n), jq, gq, out, len(STATS) * k)
    moment_pass(xp, int(pad), np.asarray(windows, dtype=np.int64), out, BLOCK_ROWS)
    return dict(zip(columns(windows), out, strict=True))


#: the kind (SPEC §9, :mod:`.params`) of each column stem
STEM_KINDS = {
    "mean_{N}": L,
    "std_{N}": S,
    "min_{N}": L,
    "max_{N}": L,
    "median_{N}": L,
    "q{N}_{N}": L,
    "iqr_{N}": S,
    "skew_{N}": S,
    "kurt_{N}": S,
    "zscore_{N}": S,
    "autocorr{N}_{N}": S,
}


def param_columns(p: StatisticsParams) -> list[str]:
    return columns(p.windows)


def lookback(p: StatisticsParams) -> int:
    return max(p.windows)  # autocorr1 needs x[t−N]


def kernel_kwargs(p: StatisticsParams) -> dict:
    return {"windows": tuple(p.windows)}
