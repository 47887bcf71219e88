"""Trailing-window views in bounded memory, shared by the windowed families.

Every windowed feature here is computed from the window itself (never from running sums
carried across rows), so a value depends only on the rows inside its window: the result is
bit-for-bit the same however the series is partitioned, and no precision is lost to the
index sitting near 100 while it moves by 1e-3.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: rows per block; a block of windows is ``BLOCK_ROWS × width`` float64 values
BLOCK_ROWS = 8192


def trailing_windows(x: np.ndarray, width: int, *, block: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t0, V)`` where ``V[k] = x[t0 + k - width + 1 : t0 + k + 1]``.

    Only rows ``t >= width - 1`` (full windows) are produced, in blocks of at most ``block``
    rows; ``V`` is a read-only view, not a copy.
    """
    n = len(x)
    if n < width:
        return
    view = sliding_window_view(x, width)  # view[j] = x[j : j + width], ends at row j + width - 1
    for j0 in range(0, len(view), block):
        yield j0 + width - 1, view[j0 : j0 + block]


def nan_columns(n: int, names: list[str]) -> dict[str, np.ndarray]:
    return {name: np.full(n, np.nan) for name in names}


def shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` delayed by ``k`` rows (``out[t] = x[t - k]``), NaN where undefined. Never negative ``k``."""
    if k < 0:
        raise ValueError("shift by a negative k would look into the future")
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out
