"""The one bar-validation rule of SPEC §3: which source bars are quarantined, and why.

A bar is bad when its open, high, low or close is NULL, NaN, infinite or ≤ 0; when
high < max(open, close) or low > min(open, close) beyond :data:`HL_TOLERANCE` relative; or
when it shares its time with a different bar (all bars at that time are bad: nobody can tell
which one is right). Identical duplicates are one bar, kept once.

:func:`price_faults` and :func:`conflicting` are the rule; :func:`validate_bars` applies it
to a bars frame for the pipeline, the index baseline and ``compute_features``, and
:mod:`bqxdask.ingest.parse` applies it to bar files with its own, per-line reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close")
#: what makes two bars at one time "different": their prices and their volume
BAR_VALUES = (*PRICE_COLUMNS, "volume")
#: relative slack on the high/low consistency rules (SPEC §3: "beyond 1e-9 relative")
HL_TOLERANCE = 1e-9

REASON_MISSING = "{col} is NULL or NaN"
REASON_NONFINITE = "{col} is infinite"
REASON_NONPOSITIVE = "{col} <= 0"
REASON_HIGH = "high < max(open, close)"
REASON_LOW = "low > min(open, close)"
REASON_CONFLICT = "conflicting duplicate time"
REASON_NULL_TIME = "time is NULL"


@dataclass(frozen=True)
class PriceFaults:
    """What is wrong with each bar's prices: (n, 4) masks in :data:`PRICE_COLUMNS` order, and (n,) ones."""

    missing: np.ndarray  #: NULL or NaN
    infinite: np.ndarray  #: ±inf
    nonpositive: np.ndarray  #: ≤ 0 (−inf included)
    high: np.ndarray  #: high < max(open, close) beyond HL_TOLERANCE
    low: np.ndarray  #: low > min(open, close) beyond HL_TOLERANCE


def price_faults(prices: np.ndarray) -> PriceFaults:
    """The SPEC §3 price checks of an (n, 4) float64 array of open, high, low, close."""
    high, low = _high_low(*prices.T)
    with np.errstate(invalid="ignore"):
        return PriceFaults(
            missing=np.isnan(prices), infinite=np.isinf(prices), nonpositive=prices <= 0, high=high, low=low
        )


def _high_low(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """high < max(open, close) and low > min(open, close), beyond HL_TOLERANCE relative."""
    with np.errstate(invalid="ignore"):
        return h < np.maximum(o, c) * (1 - HL_TOLERANCE), lo > np.minimum(o, c) * (1 + HL_TOLERANCE)


def conflicting(times: pd.Index, values: pd.DataFrame, among: np.ndarray | None = None) -> np.ndarray:
    """Rows whose time also carries a *different* bar (other :data:`BAR_VALUES`): all are bad.

    ``times`` and ``values`` are aligned row by row; rows repeated identically do not conflict.
    ``among``: only these rows count (the others are already rejected for another reason).
    """
    times = pd.Index(times)
    shared = np.asarray(times.duplicated(keep=False))
    if among is not None:
        shared &= among
    if not shared.any():
        return shared
    sub = values.loc[shared, list(BAR_VALUES)].assign(_time=np.asarray(times[shared]))
    distinct = sub.drop_duplicates().groupby("_time").size()
    return shared & np.asarray(times.isin(distinct.index[distinct.to_numpy() > 1]))


def validate_bars(bars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split bars into (accepted, rejected) following SPEC §3.

    ``bars`` is a normalised frame (see :func:`bqxdask.features.index.normalize_bars`), in any
    order. Accepted bars are sorted by time with identical duplicates kept once; rejected bars
    come back as a frame with columns ``time`` and ``reason`` (one row per rejected source
    row; the first failing check names it). Bars with a NaT time are rejected with reason
    ``time is NULL``.
    """
    if len(bars) == 0:
        return bars.iloc[0:0], pd.DataFrame(
            {"time": pd.DatetimeIndex([], tz="UTC"), "reason": pd.Series([], dtype=object)}
        )
    times = bars.index
    columns = [bars[col].to_numpy(dtype="float64") for col in PRICE_COLUMNS]  # views of a float64 block
    bad = np.asarray(times.isna())
    with np.errstate(invalid="ignore"):
        for values in columns:
            bad = bad | ~((values > 0) & (values < np.inf))  # NaN fails both comparisons
    high, low = _high_low(*columns)
    bad |= high
    bad |= low
    # which check each bad row fails first (SPEC §3), worked out for the few bad rows only
    at = np.flatnonzero(bad)
    no_time = np.asarray(times[at].isna())
    faults = price_faults(np.column_stack([values[at] for values in columns]))
    reason = np.full(len(at), None, dtype=object)

    def mark(mask: np.ndarray, text: str) -> None:
        fresh = mask & (reason == None)  # noqa: E711 - elementwise on an object array
        reason[fresh] = text

    mark(no_time, REASON_NULL_TIME)
    for j, col in enumerate(PRICE_COLUMNS):
        mark(faults.missing[:, j], REASON_MISSING.format(col=col))
        mark(faults.infinite[:, j], REASON_NONFINITE.format(col=col))
        mark(faults.nonpositive[:, j], REASON_NONPOSITIVE.format(col=col))
    mark(faults.high, REASON_HIGH)
    mark(faults.low, REASON_LOW)

    unique = times.is_unique
    if not unique:
        conflict = conflicting(times, bars, among=~bad)
        if conflict.any():
            full = np.full(len(bars), None, dtype=object)
            full[at] = reason
            full[conflict] = REASON_CONFLICT
            bad = bad | conflict
            at = np.flatnonzero(bad)
            reason = full[at]
    accepted = bars[~bad] if len(at) else bars.copy(deep=False)
    if not unique:
        accepted = accepted[~accepted.index.duplicated(keep="first")]
    if not accepted.index.is_monotonic_increasing:
        accepted = accepted.sort_index(kind="stable")
    rejected = pd.DataFrame({"time": times[at], "reason": reason})
    if len(at) > 1:
        rejected = rejected.sort_values("time", kind="stable").reset_index(drop=True)
    return accepted, rejected
