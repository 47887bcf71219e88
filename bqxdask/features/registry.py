"""The one registry of feature families (SPEC §4).

A :class:`Family` says what a table family reads (its input series), which config section
holds its parameters, its columns in SPEC order, how many earlier rows one output row needs
(its *lookback*) and the pure function that computes it. Everything else is derived from here:
the warm-up of a partition (:func:`warmup_rows`), the SQL and Parquet schemas, the config
hash that decides whether a checkpoint is still valid.

Inputs are columns of the *prepared frame* (:mod:`bqxdask.features.prepare`):

- ``ohlc``: ``open_idx, high_idx, low_idx, idx``
- ``idx``: the index series (SPEC §4.1)
- ``bqx``: the BQX series ``w{series_window}_bqx_return`` (SPEC §4.2), itself ``series_window``
  rows behind the index; its leading NaNs are cut off before a family sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..config import ALL_FAMILIES, FamiliesConfig, stable_hash
from ..results import FeatureBlock
from . import bqx as _bqx

#: bump when a formula changes, so that old checkpoints stop matching
FEATURE_SCHEMA_VERSION = 1

SeriesFn = Callable[..., Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Family:
    """One table family: ``<name>_<pair>`` in SQL, ``<parquet_dir>/<name>/`` in Parquet."""

    name: str
    input: str  # "ohlc" | "idx" | "bqx"
    section: str  # attribute of FamiliesConfig holding the parameters
    columns: Callable[[Any], list[str]]
    lookback: Callable[[Any], int]  # earlier rows needed by one output row, on its input series
    kernel: SeriesFn  # kernel(x, **params) or kernel(open, high, low, close, **params)
    kwargs: Callable[[Any], dict[str, Any]]  # params -> keyword arguments of the kernel
    summary: str

    def params(self, families: FamiliesConfig) -> Any:
        return getattr(families, self.section)

    def column_names(self, families: FamiliesConfig) -> list[str]:
        return self.columns(self.params(families))

    def total_lookback(self, families: FamiliesConfig) -> int:
        """Rows of *index* history one output row needs, the input series' own lag included."""
        return self.lookback(self.params(families)) + series_lookback(self.input, families)

    def config_hash(self, families: FamiliesConfig, baseline: str) -> str:
        """What the values of this family depend on, besides the bars: a checkpoint key."""
        deps: dict[str, Any] = {"family": self.name, "params": asdict(self.params(families)),
                                "baseline": baseline, "schema": FEATURE_SCHEMA_VERSION}
        if self.input == "bqx":
            deps["series_window"] = families.bqx.series_window
        return stable_hash(deps)

    def compute(self, prepared: pd.DataFrame, families: FamiliesConfig) -> pd.DataFrame:
        """Run the family on a prepared frame; one output row per input row."""
        return self.compute_block(prepared, families).frame()

    def compute_block(self, prepared: pd.DataFrame, families: FamiliesConfig) -> FeatureBlock:
        """Run the family on a prepared frame: its columns as one :class:`FeatureBlock`.

        The columns travel as one float64 block (columns × rows): a kernel that fills such a
        block (reg) hands it over without a copy, others are copied in once.
        """
        params = self.params(families)
        names = self.columns(params)
        kwargs = self.kwargs(params)
        n = len(prepared)
        first = 0
        if self.input == "ohlc":
            arrays = [prepared[c].to_numpy("float64") for c in ("open_idx", "high_idx", "low_idx", "idx")]
            result = dict(self.kernel(*arrays, **kwargs))
        else:
            x = prepared[self.input].to_numpy("float64")
            finite = np.flatnonzero(np.isfinite(x))
            first = int(finite[0]) if len(finite) else n
            if len(finite) and len(finite) != n - first:
                raise ValueError(f"{self.name}: input series {self.input} has an interior NaN")
            result = dict(self.kernel(x[first:], **kwargs)) if first < n else {}
        missing = [c for c in names if c not in result]
        if missing and (result or self.input == "ohlc"):
            raise AssertionError(f"{self.name} did not produce {missing}")
        return FeatureBlock(prepared.index, tuple(names), _column_block(result, names, n, first))


def _column_block(result: dict, names: Sequence[str], n: int, first: int) -> np.ndarray:
    """``result``'s columns as one C-contiguous (len(names), n) float64 array, NaN before ``first``."""
    arrays = [np.asarray(result[c], dtype="float64") for c in names] if result else []
    base = arrays[0].base if arrays else None
    if (first == 0 and isinstance(base, np.ndarray) and base.dtype == np.float64 and base.flags.c_contiguous
            and base.shape == (len(names), n)
            and all(a.base is base and a.ctypes.data == base.ctypes.data + i * n * 8 for i, a in enumerate(arrays))):
        return base
    block = np.full((len(names), n), np.nan)
    for i, a in enumerate(arrays):
        block[i, first:] = a
    return block


def series_lookback(series: str, families: FamiliesConfig) -> int:
    return families.bqx.series_window if series == "bqx" else 0


_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in _REGISTRY:
        raise ValueError(f"family {family.name} registered twice")
    _REGISTRY[family.name] = family
    return family


def get(name: str) -> Family:
    return _REGISTRY[name]


def all_families() -> dict[str, Family]:
    """Registered families in SPEC §4 order (whatever order their modules were imported in)."""
    order = {name: i for i, name in enumerate(ALL_FAMILIES)}
    return dict(sorted(_REGISTRY.items(), key=lambda item: order.get(item[0], len(order))))


def enabled(families: FamiliesConfig, only: list[str] | tuple[str, ...] | None = None) -> list[Family]:
    names = list(only) if only is not None else list(families.enabled)
    return [_REGISTRY[n] for n in names]


def warmup_rows(families: FamiliesConfig, only: list[str] | tuple[str, ...] | None = None) -> int:
    """Rows of accepted history a partition needs before its first row: max of the lookbacks."""
    return max((f.total_lookback(families) for f in enabled(families, only)), default=0)


# --------------------------------------------------------------------------------------------
# Feature kinds (SPEC §9): is a column a price level or scale-free?
# --------------------------------------------------------------------------------------------
LEVEL = "level"
SCALE_FREE = "scale_free"
KINDS = (LEVEL, SCALE_FREE)
L, S = LEVEL, SCALE_FREE

#: The kind of every column *stem* (its name with each number written ``{N}``), per config
#: section, for a family computed on the index (input ``idx`` or ``ohlc``). A ``level`` moves
#: with where the price is (a mean, a band, a quantile, a regression's constant or prediction):
#: over months it wanders, so a forest can learn the training period's price range from it. A
#: ``scale_free`` column measures how the price moves (returns, spreads, widths, oscillators,
#: slopes, r²). Families on the BQX series (input ``bqx``) are scale-free whole: that series is
#: itself a return. A column whose stem is missing here has no kind, and :func:`column_kind`
#: refuses it (a test checks every registered column).
STEM_KINDS: dict[str, dict[str, str]] = {
    "bqx": {"w{N}_bqx_return": S, "w{N}_bqx_endpoint": S, "w{N}_bqx_max": L, "w{N}_bqx_min": L,
            "w{N}_bqx_avg": L, "w{N}_bqx_std": S, "agg_bqx_range": S, "agg_bqx_volatility": S, "rate_index": L},
    "bollinger": {"bb_middle_{N}": L, "bb_upper_{N}": L, "bb_lower_{N}": L, "bb_width_{N}": S,
                  "bb_percent_b_{N}": S, "bb_slope_{N}": S},
    "statistics": {"mean_{N}": L, "std_{N}": S, "min_{N}": L, "max_{N}": L, "median_{N}": L, "q{N}_{N}": L,
                   "iqr_{N}": S, "skew_{N}": S, "kurt_{N}": S, "zscore_{N}": S, "autocorr{N}_{N}": S},
    # MACD and ATR are differences and ranges of the index, not levels
    "technical": {"rsi_{N}": S, "macd": S, "macd_signal": S, "macd_hist": S, "stoch_k": S, "stoch_d": S,
                  "adx_{N}": S, "plus_di_{N}": S, "minus_di_{N}": S, "cci_{N}": S, "willr_{N}": S, "roc_{N}": S,
                  "atr_{N}": S, "mom_{N}": S},
    "reg": {"w{N}_quad": S, "w{N}_lin": S, "w{N}_cubic": S, "w{N}_const": L, "w{N}_quad_term": S,
            "w{N}_lin_term": S, "w{N}_pred": L, "w{N}_resid": S, "w{N}_slope": S, "w{N}_forecast": L,
            "w{N}_r{N}": S, "w{N}_rmse": S},
}
del L, S


def column_stem(column: str) -> str:
    """``bb_middle_20`` → ``bb_middle_{N}``: the column's name with each number written ``{N}``."""
    return re.sub(r"\d+", "{N}", column)


def column_kind(family: str, column: str) -> str:
    """``level`` or ``scale_free`` for one column of a registered family (see :data:`STEM_KINDS`).

    Raises KeyError naming the column when its kind is not declared.
    """
    fam = _REGISTRY[family]
    kind = STEM_KINDS.get(fam.section, {}).get(column_stem(column))
    if kind is None:
        raise KeyError(f"{family}.{column} declares no kind; fix: add {column_stem(column)!r} to "
                       f"bqxdask.features.registry.STEM_KINDS[{fam.section!r}]")
    return SCALE_FREE if fam.input == "bqx" else kind


# --------------------------------------------------------------------------------------------
# The families. Track 1 and Track 2 modules register themselves below.
# --------------------------------------------------------------------------------------------
register(Family(
    name="bqx", input="idx", section="bqx",
    columns=lambda p: _bqx.columns(p.windows),
    lookback=lambda p: max(p.windows),
    kernel=_bqx.bqx,
    kwargs=lambda p: {"windows": p.windows},
    summary="BQX momentum of the index over the W bars before t (SPEC §4.2)",
))
