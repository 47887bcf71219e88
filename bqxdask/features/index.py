"""Index series (SPEC §4.1); the bars it is built from are validated by :mod:`bqxdask.quality` (SPEC §3).

``idx = 100 · close / B`` where B is the close of the pair's first accepted bar at or after
``index.baseline``; ``open_idx``, ``high_idx``, ``low_idx`` use the same B. Every family reads
the *prepared frame* built here: the four index columns and the BQX series
(``w{series_window}_bqx_return``), indexed by bar time (UTC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import SourceError
from ..quality import PRICE_COLUMNS

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


def index_block(bars: pd.DataFrame, baseline: float, rows: int = 4) -> np.ndarray:
    """The four index series of accepted, sorted bars as rows 0–3 of a C-contiguous ``(rows, n)``
    float64 block (``open_idx, high_idx, low_idx, idx``; any further rows are left to the caller)."""
    if not np.isfinite(baseline) or baseline <= 0:
        raise SourceError(f"baseline close {baseline!r} is not a positive number; fix: check baseline_rates")
    block = np.empty((rows, len(bars)))
    for i, col in enumerate(PRICE_COLUMNS):
        np.divide(100.0 * bars[col].to_numpy("float64"), baseline, out=block[i])
    return block
