"""Rolling least-squares polynomial fits: a compiled float64 kernel, O(1) work per row.

The kernel behind :mod:`bqxdask.features.reg`; :mod:`._reg_kernel` (double-double, numpy)
is its reference and its fallback.

The fit is the one of :mod:`._reg_kernel`: per window of W rows ending at bar t, the
least-squares polynomial in the window's scaled discrete orthogonal (Gram) polynomials
``P_k(v)``, ``v = 2i − (W−1)``, from the window sums ``K_r = Σ J^r·y'`` (r ≤ d) and ``Σ y'²``.
The same blocks, too: the series is cut into blocks of W rows; the window ending at row
``b + m`` of a block is a suffix of the block before plus a prefix of its own block, summed
*inside the window only*, relative to the level ``y' = y − y[b]`` of the block's first row
``b`` (a row inside the window and at or before t), at the position ``J = 2(j − b)``. Nothing
crosses a block, so a value depends on its own window and on where the blocks fall (a
partitioned run agrees with the whole series to ~1e-15 relative); never on a later bar.

Precision, and the one fallback
-------------------------------
Here everything is plain float64 in compiled loops (numba, :mod:`._reg_jit`): the level is
local, the positions small and centred, the basis orthogonal, so on real bars every column
agrees with the double-double kernel to ~1e-12 of its SPEC §4.9 scale (a thousandth of the
budget). Two things cancel, and only in nearly exact fits:

* ``W·SSE = W·Σy'² − (Σy')² − Σ_k α_k²·W/N_k`` loses ``log10(Σy'²/SSE)`` digits (rmse is
  held to 1e-7 relative, r2 to 1e-8 absolute);
* a Gram coefficient ``α_k = Σ_r c_kr(G)·K_r`` that is tiny next to the terms it is summed
  from (a series that is nearly a lower-degree polynomial) loses as many digits.

Each row bounds its rounding errors (``unit·h_k·Σ|y'|``: W rounded additions as a random walk,
``unit = BUDGET[3]·(√W + 4)·eps``, times ``h_k``, the size of the terms α_k is made of) and
checks them against :data:`BUDGET`: each α_k against ``max(|α_k|, scale_k)`` — ``scale_k``
the typical |α_k| of the previous block, the scale SPEC §4.9 holds a coefficient to — and
W·SSE against W·SSE and W·SST. A row that fails takes *every* output from the double-double
kernel, computed for its block only. The choice is per row, from the row's own window and
earlier rows: causal. Degree 3 accumulates its sums with TwoSum compensation, which takes the
√W out of its bound. On the real series no row falls back but ~1 % of the BQX series' rows at
degree 2, W = 2880; on a smooth synthetic series nearly every row does, and the cost per row
is then the double-double one, still independent of W (``benchmarks/bench_reg.py`` prints
the shares).

The compiled functions are cached on disk (``numba.njit(cache=True)``: beside the source, or
in numba's user cache directory, or in a temporary directory when neither is writable) and
numba is imported on first use only, so commands that compute no regression never pay for it.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading

import numpy as np

from ._reg_kernel import CHUNK_VALUES, checked_series, fit_blocks, gram_constants, output_names

#: a row keeps its float64 values while its rounding bounds stay below
#: [0] of max(|α_k|, scale_k) (coefficients; SPEC §4.9: 1e-9 of their scale),
#: [1] of W·SSE (rmse: 1e-7 relative, i.e. 2e-7 on SSE) and [2] of W·SST (r2: 1e-8 absolute);
#: [3] is the constant of the summation bound. The bounds overestimate the error ~10-100×,
#: so the values kept are within ~1/1000 of the budget (the tests hold them to 1/100).
BUDGET = np.array([1e-10, 2e-9, 1e-10, 4.0])
#: from this degree on the sums are compensated (TwoSum): ~25 % slower, the bounds ~√W tighter
#: — degree 3 needs it to keep its fallback rare at long windows
COMPENSATED_DEGREE = 3


@functools.cache
def _jit():
    """The compiled kernels' module: numba imported and its on-disk cache loaded (or filled), once."""
    try:
        from . import _reg_jit
    except RuntimeError:  # numba found no writable cache directory (read-only install, no home)
        import numba

        numba.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"bqxdask-numba-{os.getuid()}")
        from . import _reg_jit
    return _reg_jit


_scratch = threading.local()


def _work_space(size: int) -> np.ndarray:
    """This thread's scratch for the compiled kernel, allocated once and reused by every call."""
    space = getattr(_scratch, "space", None)
    if space is None or len(space) != size:
        space = _scratch.space = np.empty(size)
    return space


def _padded(y: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``y[start:stop]`` with rows outside the series replaced by the nearest end row."""
    inside = y[max(start, 0) : max(min(stop, len(y)), 0)]
    return np.concatenate([np.full(max(0, -start), y[0]), inside, np.full(max(0, stop - len(y)), y[-1])])


def _refit_exactly(y: np.ndarray, w: int, degree: int, flagged: np.ndarray, out: dict[str, np.ndarray]) -> None:
    """Overwrite every output at the ``flagged`` rows with the double-double kernel's."""
    blocks = np.unique(flagged // w)
    group = max(1, CHUNK_VALUES // w)
    for g0 in range(0, len(blocks), group):
        part = blocks[g0 : g0 + group]
        left = np.stack([_padded(y, (k - 1) * w, k * w) for k in part])
        right = np.stack([_padded(y, k * w, (k + 1) * w) for k in part])
        exact = fit_blocks(left, right, w, degree)
        rows = flagged[(flagged >= part[0] * w) & (flagged < (part[-1] + 1) * w)]
        pos, m = np.searchsorted(part, rows // w), rows % w
        for name, values in out.items():
            values[rows] = exact[name][pos, m]


def rolling_polyfit(y: np.ndarray, window: int, degree: int, out: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All per-window outputs of a rolling degree-``degree`` fit over ``window`` rows.

    ``y`` is a finite float64 series in time order. Row t uses ``y[t−W+1..t]``; the first
    ``W − 1`` rows are NaN. Returns ``{name: array}`` for :func:`output_names` ``(degree)``,
    the rows of ``out``: a C-contiguous ``(len(names), len(y))`` float64 array to fill (one
    large table for many windows is allocated, and page-faulted, once), or a new one.
    """
    y = checked_series(y)
    table = np.empty((len(output_names(degree)), len(y))) if out is None else out
    result, flagged = _float64_pass(y, window, degree, table)
    if len(flagged):
        _refit_exactly(y, window, degree, flagged, result)
    return result


def fallback_rows(y: np.ndarray, window: int, degree: int) -> np.ndarray:
    """The rows whose values :func:`rolling_polyfit` takes from the double-double kernel."""
    y = checked_series(y)
    return _float64_pass(y, window, degree, np.empty((len(output_names(degree)), len(y))))[1]


def _float64_pass(y: np.ndarray, w: int, degree: int, table: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    names = output_names(degree)
    if (
        table.shape != (len(names), len(y))
        or table.dtype != np.float64
        or not table.flags.c_contiguous
        or not table.flags.aligned  # the kernel streams whole cache lines, from an 8-byte boundary
    ):
        raise ValueError(f"out must be an aligned, C-contiguous float64 array of shape {(len(names), len(y))}")
    table[:, : w - 1] = np.nan
    flags = np.zeros(len(y), dtype=np.uint8)
    if len(y) >= w:
        c = gram_constants(w, degree)
        jit = _jit()
        jit.fit_rows(
            y,
            w,
            degree,
            degree >= COMPENSATED_DEGREE,
            c["norm_w"],
            c["inv_norm"],
            c["at_last"],
            c["at_next"],
            c["slope_last"],
            c["mono"],
            BUDGET,
            table,
            flags,
            _work_space(jit.SCRATCH_SIZE),
        )
    return dict(zip(names, table)), np.flatnonzero(flags)
