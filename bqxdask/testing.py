"""Checking numbers against the contract: the SPEC §4.9 tolerances, an exact reference, real bars.

Like ``numpy.testing``, this is what a test of bqxdask's values needs, and it is shared by the
project's tests and benchmarks (neither imports the other):

- :func:`tolerance` — the one place the §4.9 bounds are written down, per family and column;
  :func:`assert_within` checks values against such a bound (:func:`assert_spec`
  against §4.9's), :func:`tolerance_ratio` measures
  how far inside it they are;
- :func:`reference_statistics` — the §4.4 statistics the textbook way (numpy/scipy over every
  window), slow and independent of the kernels;
- :func:`eurusd`, :func:`fxcm_mid` — the real one-minute bars of the shared data folder
  (``$BQX_FX_DATA``, else ``shared/data/fx`` beside the checkout), read in place.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "assert_spec",
    "assert_within",
    "data_dir",
    "eurusd",
    "fxcm_mid",
    "histdata_files",
    "padded",
    "reference_statistics",
    "relative",
    "tolerance",
    "tolerance_ratio",
]

STATISTICS = ("mean", "std", "min", "max", "median", "q25", "q75", "iqr", "skew", "kurt", "zscore", "autocorr1")
STATISTICS_WINDOWS = (15, 30, 60, 120)


# --------------------------------------------------------------------------------------------
# SPEC §4.9
# --------------------------------------------------------------------------------------------
def relative(rel: float, expected, *, floor: float = 1.0) -> np.ndarray:
    """``rel·max(floor, |ref|)`` per value: the shape of every §4.9 bound but two."""
    return rel * np.maximum(floor, np.abs(np.asarray(expected, dtype=float)))


def tolerance(family: str, column: str, expected, *, noise=None) -> np.ndarray:
    """The SPEC §4.9 bound on ``|Δ|`` for each value of ``column`` of ``family`` against ``expected``.

    - technical: ``1e-7·max(1, |ref|)``;
    - statistics skew/kurt: ``1e-6·max(1, |ref|)``; every other statistics, bqx and bollinger
      value: ``1e-9·max(1, |ref|)``;
    - reg: ``r2`` ``1e-8`` absolute, ``rmse`` ``1e-7·|ref|``, every other column
      ``1e-9·max(s, |ref|)`` with s the median ``|ref|`` of ``expected`` (its finite values).

    ``noise`` (a number or one per value) raises the bound to at least that: the caller's
    floating-point noise level of the data, where it documents why one is needed.
    """
    e = np.abs(np.asarray(expected, dtype=float))
    if family.startswith("technical"):
        bound = relative(1e-7, e)
    elif family.startswith("statistics") and column.startswith(("skew", "kurt")):
        bound = relative(1e-6, e)
    elif family.startswith("reg") and column.endswith("r2"):
        bound = np.full(e.shape, 1e-8)
    elif family.startswith("reg") and column.endswith("rmse"):
        bound = 1e-7 * e
    elif family.startswith("reg"):
        finite = e[np.isfinite(e)]
        bound = relative(1e-9, e, floor=float(np.median(finite)) if finite.size else 1.0)
    else:
        bound = relative(1e-9, e)
    return bound if noise is None else np.maximum(bound, noise)


def tolerance_ratio(actual, expected, bound) -> np.ndarray:
    """``|Δ|/bound`` per value: 0 where both are NaN or equal, ``inf`` where only one is NaN."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    both_nan = np.isnan(actual) & np.isnan(expected)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.abs(actual - expected)
        ratio = np.where(both_nan | (delta == 0), 0.0, delta / bound)
    return np.where(np.isnan(ratio), np.inf, ratio)


def assert_within(actual, expected, bound, *, name: str = "", scale: float = 1.0) -> float:
    """Assert ``|Δ| ≤ scale·bound`` everywhere, NaN exactly where ``expected`` is; the worst ratio.

    ``bound`` is :func:`tolerance` (or :func:`relative` where a test holds values tighter
    than §4.9). The message names the values outside it, the first of them and the worst.
    """
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    ratio = tolerance_ratio(actual, expected, bound)
    bad = np.flatnonzero(ratio > scale)
    if bad.size:
        i, w = int(bad[0]), int(np.argmax(ratio))
        raise AssertionError(
            f"{name}: {bad.size} of {ratio.size} values outside the tolerance (×{scale}); first at row {i}: "
            f"got {actual[i]!r}, expected {expected[i]!r} (|Δ| = {abs(actual[i] - expected[i]):.3g}); worst at "
            f"row {w}: {ratio[w]:.3g}× the tolerance"
        )
    return float(ratio.max(initial=0.0))


def assert_spec(
    actual, expected, family: str, column: str, *, name: str | None = None, scale: float = 1.0, noise=None
) -> float:
    """:func:`assert_within` the §4.9 :func:`tolerance` of ``family``'s ``column``; the worst ratio."""
    bound = tolerance(family, column, expected, noise=noise)
    return assert_within(actual, expected, bound, name=name or f"{family}.{column}", scale=scale)


# --------------------------------------------------------------------------------------------
# SPEC §4.4, the textbook way
# --------------------------------------------------------------------------------------------
def padded(values: np.ndarray, n: int) -> np.ndarray:
    """Values of the full windows, placed at the rows where those windows end (NaN before)."""
    out = np.full(n, np.nan)
    if len(values):
        out[n - len(values) :] = values
    return out


def reference_statistics(x: np.ndarray, windows: tuple[int, ...] = STATISTICS_WINDOWS) -> dict[str, np.ndarray]:
    """Every §4.4 column of a finite series ``x`` by numpy/scipy over each whole window.

    ``np.quantile``, ``scipy.stats.skew``/``kurtosis(bias=False)``/``iqr`` along axis 1: a
    different formulation from the kernel's running sums and sorted windows. NaN in the
    warm-up, and for skew, kurt, zscore and autocorr1 in windows holding a single value.
    """
    import scipy.stats

    m = len(x)
    out = {}
    for n in windows:
        if m < n:
            out.update({f"{s}_{n}": np.full(m, np.nan) for s in STATISTICS})
            continue
        v = sliding_window_view(x, n)
        flat = np.ptp(v, axis=1) == 0
        mean = v.mean(axis=1)
        std = v.std(axis=1, ddof=1)
        with warnings.catch_warnings():  # scipy warns about the flat windows it returns NaN for
            warnings.simplefilter("ignore", RuntimeWarning)
            skew = scipy.stats.skew(v, axis=1, bias=False)
            kurt = scipy.stats.kurtosis(v, axis=1, fisher=True, bias=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            zscore = np.where(flat, np.nan, (v[:, -1] - mean) / std)
        col = {
            "mean": mean,
            "std": std,
            "min": v.min(axis=1),
            "max": v.max(axis=1),
            "median": np.median(v, axis=1),
            "q25": np.quantile(v, 0.25, axis=1),
            "q75": np.quantile(v, 0.75, axis=1),
            "iqr": scipy.stats.iqr(v, axis=1),
            "skew": np.where(flat, np.nan, skew),
            "kurt": np.where(flat, np.nan, kurt),
            "zscore": zscore,
        }
        for s, values in col.items():
            out[f"{s}_{n}"] = padded(values, m)
        out[f"autocorr1_{n}"] = _reference_autocorr(x, n)
    return {f"{s}_{n}": out[f"{s}_{n}"] for n in windows for s in STATISTICS}


def _reference_autocorr(x: np.ndarray, n: int) -> np.ndarray:
    """Pearson r of x[t−N+1..t] with x[t−N..t−1] as the mean product of scipy z-scores."""
    import scipy.stats

    if len(x) < n + 1:
        return np.full(len(x), np.nan)
    v = sliding_window_view(x, n + 1)
    a, b = v[:, 1:], v[:, :-1]
    flat = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        r = (scipy.stats.zscore(a, axis=1) * scipy.stats.zscore(b, axis=1)).mean(axis=1)
    return padded(np.where(flat, np.nan, r), len(x))


# --------------------------------------------------------------------------------------------
# real bars
# --------------------------------------------------------------------------------------------
def data_dir() -> Path:
    """The shared real-data folder: $BQX_FX_DATA, else shared/data/fx beside the checkout."""
    here = Path(__file__).resolve().parents[1]
    candidates = [Path(os.environ["BQX_FX_DATA"])] if os.environ.get("BQX_FX_DATA") else []
    candidates += [p / "shared" / "data" / "fx" for p in here.parents]
    candidates.append(Path("/work/shared/data/fx"))
    for c in candidates:
        if (c / "histdata").is_dir():
            return c
    raise FileNotFoundError(
        "real FX data not found: set BQX_FX_DATA to the shared/data/fx folder (looked in ../shared/data/fx)"
    )


def histdata_files() -> list[Path]:
    return sorted((data_dir() / "histdata").glob("DAT_ASCII_EURUSD_M1_*.csv"))


def eurusd(months: int = 6) -> pd.DataFrame:
    """EURUSD 2017-01.. (HistData, fixed UTC-05:00 converted to UTC), first ``months`` files.

    A fresh copy on every call: the parsed files are cached, but a test that edits its bars
    in place must not change what the tests after it read (no dependence on test order).
    """
    return _eurusd(months).copy()


@functools.cache
def _eurusd(months: int) -> pd.DataFrame:
    frames = []
    for path in histdata_files()[:months]:
        raw = pd.read_csv(path, sep=";", header=None, names=["t", "open", "high", "low", "close", "volume"])
        t = pd.to_datetime(raw.pop("t"), format="%Y%m%d %H%M%S") + pd.Timedelta(hours=5)
        raw.insert(0, "time", t.dt.tz_localize("UTC"))
        frames.append(raw)
    out = pd.concat(frames, ignore_index=True).sort_values("time", kind="stable")
    return out.drop_duplicates("time").reset_index(drop=True)


def fxcm_mid(pair: str) -> pd.DataFrame:
    """FXCM GBPUSD 2012-02 or USDJPY 2013-02, mid of bid and ask (a fresh copy, as :func:`eurusd`)."""
    return _fxcm_mid(pair).copy()


@functools.cache
def _fxcm_mid(pair: str) -> pd.DataFrame:
    folder = data_dir() / "fxcm"
    (bid_path,) = folder.glob(f"fxcm-{pair}-m1-bid-*.csv")
    (ask_path,) = folder.glob(f"fxcm-{pair}-m1-ask-*.csv")
    bid, ask = pd.read_csv(bid_path), pd.read_csv(ask_path)
    if not (bid["timestamp"] == ask["timestamp"]).all():
        raise ValueError(f"{bid_path.name} and {ask_path.name}: the bid and ask files have different timestamps")
    out = pd.DataFrame({"time": pd.to_datetime(bid["timestamp"], utc=True)})
    for c in ("open", "high", "low", "close"):
        out[c] = (bid[c].to_numpy() + ask[c].to_numpy()) / 2
    out["volume"] = 0
    return out
