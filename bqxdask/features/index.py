"""Index series and bar validation (SPEC §3, §4.1).

``idx = 100 · close / B`` where B is the close of the pair's first accepted bar at or after
``index.baseline``; ``open_idx``, ``high_idx``, ``low_idx`` use the same B. Every family reads
the *prepared frame* built here: the four index columns and the BQX series
(``w{series_window}_bqx_return``), indexed by bar time (UTC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import SourceError

PRICE_COLUMNS = ("open", "high", "low", "close")
#: relative slack on the high/low consistency rules (SPEC §3)
HL_TOLERANCE = 1e-9

REASON_MISSING = "{col} is NULL or NaN"
REASON_NONFINITE = "{col} is infinite"
REASON_NONPOSITIVE = "{col} <= 0"
REASON_HIGH = "high < max(open, close)"
REASON_LOW = "low > min(open, close)"
REASON_CONFLICT = "conflicting duplicate time"
REASON_NULL_TIME = "time is NULL"

PREPARED_COLUMNS = ("open_idx", "high_idx", "low_idx", "idx", "bqx")


def normalize_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars with a UTC ``DatetimeIndex`` named ``time`` and float64 OHLC + volume columns."""
    frame = bars
    if "time" in frame.columns:
        frame = frame.set_index("time")
    elif frame.index.name != "time" and not isinstance(frame.index, pd.DatetimeIndex):
        raise SourceError("bars need a 'time' column or a DatetimeIndex; fix: pass bars with bar open times")
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise SourceError(f"bars lack column {missing[0]!r}; fix: provide open, high, low and close")
    index = pd.DatetimeIndex(frame.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    out = pd.DataFrame(
        {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan) for c in PRICE_COLUMNS},
        index=index.rename("time"),
    )
    vol = frame["volume"] if "volume" in frame.columns else 0
    out["volume"] = pd.to_numeric(pd.Series(vol, index=frame.index), errors="coerce").fillna(0).to_numpy("float64")
    return out


def validate_bars(bars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split bars into (accepted, rejected) following SPEC §3.

    ``bars`` is a normalised frame (see :func:`normalize_bars`), in any order. Accepted bars are
    sorted by time with identical duplicates kept once; rejected bars come back as a frame with
    columns ``time`` and ``reason`` (one row per rejected source row). Bars with a NaT time are
    rejected with reason ``time is NULL``.
    """
    if len(bars) == 0:
        return bars.iloc[0:0], pd.DataFrame({"time": pd.DatetimeIndex([], tz="UTC"), "reason": pd.Series([], dtype=object)})
    o, h, lo, c = (bars[col].to_numpy(dtype="float64") for col in PRICE_COLUMNS)
    times = bars.index
    reason = np.full(len(bars), None, dtype=object)

    def mark(mask: np.ndarray, text: str) -> None:
        fresh = mask & (reason == None)  # noqa: E711 - elementwise on an object array
        reason[fresh] = text

    mark(np.asarray(times.isna()), REASON_NULL_TIME)
    for col, arr in zip(PRICE_COLUMNS, (o, h, lo, c)):
        mark(np.isnan(arr), REASON_MISSING.format(col=col))
        mark(np.isinf(arr), REASON_NONFINITE.format(col=col))
        mark(arr <= 0, REASON_NONPOSITIVE.format(col=col))
    with np.errstate(invalid="ignore"):
        top = np.maximum(o, c)
        bottom = np.minimum(o, c)
        mark(h < top * (1 - HL_TOLERANCE), REASON_HIGH)
        mark(lo > bottom * (1 + HL_TOLERANCE), REASON_LOW)

    # duplicates: identical rows kept once, differing rows at one time all rejected
    frame = bars.assign(_row=np.arange(len(bars)))
    good = reason == None  # noqa: E711
    dup_time = frame.index.duplicated(keep=False) & good
    if dup_time.any():
        sub = frame[dup_time]
        key_cols = [*PRICE_COLUMNS, "volume"]
        distinct = sub.reset_index().drop_duplicates(["time", *key_cols]).groupby("time").size()
        conflicting = distinct.index[distinct.to_numpy() > 1]
        conflict_mask = dup_time & frame.index.isin(conflicting)
        reason[conflict_mask] = REASON_CONFLICT
        good = reason == None  # noqa: E711
    accepted = bars[good]
    accepted = accepted[~accepted.index.duplicated(keep="first")].sort_index(kind="stable")
    bad = reason != None  # noqa: E711
    rejected = pd.DataFrame({"time": times[bad], "reason": reason[bad]})
    return accepted, rejected.sort_values("time", kind="stable").reset_index(drop=True)


def index_frame(bars: pd.DataFrame, baseline: float) -> pd.DataFrame:
    """The four index columns of accepted, sorted bars."""
    if not np.isfinite(baseline) or baseline <= 0:
        raise SourceError(f"baseline close {baseline!r} is not a positive number; fix: check baseline_rates")
    return pd.DataFrame(
        {
            "open_idx": 100.0 * bars["open"].to_numpy("float64") / baseline,
            "high_idx": 100.0 * bars["high"].to_numpy("float64") / baseline,
            "low_idx": 100.0 * bars["low"].to_numpy("float64") / baseline,
            "idx": 100.0 * bars["close"].to_numpy("float64") / baseline,
        },
        index=bars.index,
    )
