"""Feature families (SPEC §4): one module per family, one registry, one in-memory API."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..config import ALL_FAMILIES, FamiliesConfig, _build, validate_families
from ..errors import ConfigError, SourceError
from . import registry
from .bqx import bqx_return
from .index import PRICE_COLUMNS, index_frame, normalize_bars, validate_bars
from .prepare import prepare

# isort: split
# Family modules register themselves on import, in SPEC §4 order (bqx: registry.py itself).
from . import (  # noqa: F401
    bollinger,  # Track 1
    reg,  # Track 2: reg_rate, reg_bqx
    statistics,  # Track 1
    technical,  # Track 1
)

log = logging.getLogger(__name__)

__all__ = ["compute_features", "families_config", "family_meta", "registry", "prepare"]


def families_config(params: Mapping[str, Any] | FamiliesConfig | None = None) -> FamiliesConfig:
    """The ``families`` config section with ``params`` (a dict like the TOML section) applied."""
    cfg = params if isinstance(params, FamiliesConfig) else _build(
        FamiliesConfig, dict(params or {}), prefix="families.", source="params")
    validate_families(cfg)
    return cfg


def family_meta(name: str, families: FamiliesConfig) -> pd.DataFrame:
    """The empty frame a family's output looks like: float64 columns in SPEC order, a UTC ``time`` index.

    The ``meta`` of every Dask frame of that family (the pipeline's and :func:`compute_features`').
    """
    columns = registry.get(name).column_names(families)
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in columns},
                        index=pd.DatetimeIndex([], tz="UTC", name="time"))


def compute_features(
    bars: Any,
    families: Sequence[str] | None = None,
    params: Mapping[str, Any] | FamiliesConfig | None = None,
    *,
    baseline: float | None = None,
) -> dict[str, Any]:
    """Compute feature families on one pair's bars, in memory or as Dask DataFrames (SPEC §4.8).

    Parameters
    ----------
    bars
        One pair's 1-minute bars: a ``time`` column or index (UTC; naive times are read as UTC)
        and ``open, high, low, close`` (``volume`` optional), in any order. Bad bars (SPEC §3)
        are dropped and logged, exactly as the pipeline quarantines them. A pandas DataFrame, or
        a Dask DataFrame whose partitions follow each other in time (see Returns).
    families
        Table families to compute (``"bqx"``, ``"reg_rate"``, …); default all of SPEC §4.
    params
        Overrides of the ``families`` config section, e.g. ``{"reg": {"windows": [2880]}}``.
    baseline
        The index baseline B (SPEC §4.1); default the close of the first accepted bar.

    Returns
    -------
    dict
        Family name → DataFrame indexed by ``time`` with the family's columns in SPEC order;
        undefined values are NaN. For Dask bars, lazy Dask DataFrames with the same partitions
        and the same values as for the whole series in pandas: each partition is computed with
        the last warm-up rows (``registry.warmup_rows``) of the one before it (``map_overlap``),
        so a partition must hold at least that many bars.
    """
    cfg = families_config(params)
    names = list(families) if families is not None else list(ALL_FAMILIES)
    known = registry.all_families()
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown family {name!r}; fix: use some of {', '.join(known)}")
    from dask.base import is_dask_collection

    if is_dask_collection(bars):
        return _lazy_features(bars, names, cfg, baseline)
    accepted = _accepted(bars)
    if len(accepted) == 0:
        raise SourceError("no valid bars to compute features from; fix: pass bars with positive, consistent OHLC")
    b = float(accepted["close"].iloc[0]) if baseline is None else float(baseline)
    prepared = prepare(accepted, b, cfg)
    return {name: known[name].compute(prepared, cfg) for name in names}


def _accepted(bars: pd.DataFrame) -> pd.DataFrame:
    """The accepted bars (SPEC §3), the rejected ones logged."""
    accepted, rejected = validate_bars(normalize_bars(bars))
    if len(rejected):
        log.warning("dropped %d bad bars (first: %s at %s)", len(rejected), rejected["reason"].iloc[0],
                    rejected["time"].iloc[0])
    return accepted


def _first_close(firsts: pd.Series) -> float:
    if len(firsts) == 0:
        raise SourceError("no valid bars to compute features from; fix: pass bars with positive, consistent OHLC")
    return float(firsts.iloc[0])


def _head(column: pd.Series) -> pd.Series:
    return column.iloc[:1]


def _family_partition(index: pd.DataFrame, name: str, cfg: FamiliesConfig) -> pd.DataFrame:
    """One family on one partition of the index frame, the warm-up rows map_overlap put in front
    included: :func:`prepare`'s BQX series, then the family."""
    if len(index) == 0:
        return family_meta(name, cfg)
    prepared = index.assign(bqx=bqx_return(index["idx"].to_numpy(), cfg.bqx.series_window))
    return registry.get(name).compute(prepared, cfg)


def _lazy_features(bars: Any, names: Sequence[str], cfg: FamiliesConfig, baseline: float | None) -> dict[str, Any]:
    """:func:`compute_features` on a Dask DataFrame: one lazy frame per family.

    accepted bars (map_partitions) → index columns with the baseline (map_partitions: a lazy
    baseline is a Delayed, which map_overlap does not take) → per family, the BQX series and the
    family over each partition with the warm-up rows of the one before (map_overlap).
    """
    from dask import delayed

    empty = pd.DataFrame({c: pd.Series([], dtype="float64") for c in (*PRICE_COLUMNS, "volume")},
                         index=pd.DatetimeIndex([], tz="UTC", name="time"))
    # a time column becomes the index: the frame's divisions (of another index) no longer hold
    accepted = bars.map_partitions(_accepted, meta=normalize_bars(empty), enforce_metadata=False,
                                   clear_divisions="time" in bars.columns)
    b = delayed(_first_close)(accepted["close"].map_partitions(_head, meta=("close", "float64"))) \
        if baseline is None else float(baseline)
    index = accepted.map_partitions(index_frame, b, meta=index_frame(accepted._meta, 1.0), enforce_metadata=False)
    warmup = registry.warmup_rows(cfg, list(names))
    return {name: index.map_overlap(_family_partition, warmup, 0, name, cfg, meta=family_meta(name, cfg),
                                    enforce_metadata=False)
            for name in names}
