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
from ..quality import BAR_VALUES, PRICE_COLUMNS

PREPARED_COLUMNS = ("open_idx", "high_idx", "low_idx", "idx", "bqx")


def normalize_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars with a UTC ``DatetimeIndex`` named ``time`` and float64 OHLC + volume columns."""
    frame = bars
    if "time" in frame.columns:
        times = frame["time"]  # read in place: set_index would copy every column first
    elif frame.index.name == "time" or isinstance(frame.index, pd.DatetimeIndex):
        times = frame.index
    else:
        raise SourceError("bars need a 'time' column or a DatetimeIndex; fix: pass bars with bar open times")
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise SourceError(f"bars lack column {missing[0]!r}; fix: provide open, high, low and close")
    index = pd.DatetimeIndex(times)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    # one float64 block (columns × rows): the frame holds it without a copy, its columns are
    # contiguous views for the checks of quality.validate_bars
    block = np.empty((len(BAR_VALUES), len(frame)))
    for i, c in enumerate(PRICE_COLUMNS):
        block[i] = _float64(frame[c])
    if "volume" in frame.columns:
        volume = _float64(frame["volume"])
        np.copyto(block[-1], volume)
        block[-1, np.isnan(volume)] = 0.0  # a missing volume is 0, not a bad bar
    else:
        block[-1] = 0.0
    return pd.DataFrame(block.T, index=index.rename("time"), columns=list(BAR_VALUES), copy=False)


def _float64(column: pd.Series) -> np.ndarray:
    """A column as float64, anything that is not a number (None, NA, text) as NaN."""
    if column.dtype == np.float64:
        return column.to_numpy()
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def index_block(bars: pd.DataFrame, baseline: float, rows: int = 4) -> np.ndarray:
    """The four index series of accepted, sorted bars as rows 0–3 of a C-contiguous ``(rows, n)``
    float64 block (``open_idx, high_idx, low_idx, idx``; any further rows are left to the caller)."""
    if not np.isfinite(baseline) or baseline <= 0:
        raise SourceError(f"baseline close {baseline!r} is not a positive number; fix: check baseline_rates")
    block = np.empty((rows, len(bars)))
    for i, col in enumerate(PRICE_COLUMNS):
        np.divide(100.0 * bars[col].to_numpy("float64"), baseline, out=block[i])
    return block
