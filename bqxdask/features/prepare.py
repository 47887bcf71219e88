"""The prepared frame every family reads: index columns + the BQX series (SPEC §4.1, §4.2)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .bqx import bqx_return
from .index import index_frame


def prepare(accepted: pd.DataFrame, baseline: float, families: Any) -> pd.DataFrame:
    """``open_idx, high_idx, low_idx, idx, bqx`` for accepted bars sorted by time.

    ``bqx`` is ``w{series_window}_bqx_return``, NaN on the first ``series_window`` rows
    (``families``: the ``families`` config section).
    """
    frame = index_frame(accepted, baseline)
    frame["bqx"] = bqx_return(frame["idx"].to_numpy(), families.bqx.series_window)
    return frame
