"""The prepared frame every family reads: index columns + the BQX series (SPEC §4.1, §4.2)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .bqx import bqx_return
from .index import PREPARED_COLUMNS, index_block


def prepare(accepted: pd.DataFrame, baseline: float, families: Any, *, with_bqx: bool = True) -> pd.DataFrame:
    """``open_idx, high_idx, low_idx, idx, bqx`` for accepted bars sorted by time.

    ``bqx`` is ``w{series_window}_bqx_return``, NaN on the first ``series_window`` rows
    (``families``: the ``families`` config section); ``with_bqx=False`` leaves it out, for
    callers whose families read only the index.
    """
    columns = PREPARED_COLUMNS if with_bqx else PREPARED_COLUMNS[:4]
    block = index_block(accepted, baseline, rows=len(columns))  # one block, no copies
    if with_bqx:
        block[4] = bqx_return(block[3], families.bqx.series_window)
    return pd.DataFrame(block.T, index=accepted.index, columns=list(columns), copy=False)
