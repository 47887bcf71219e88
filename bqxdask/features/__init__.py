"""Feature families (SPEC §4): one module per family, one registry, one in-memory API."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SourceError
from . import registry

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["compute_features", "family_meta", "registry"]


def family_meta(name: str, families: Any) -> pd.DataFrame:
    """The empty frame a family's output looks like: float64 columns in SPEC order, a UTC ``time`` index.

    The ``meta`` of the Dask frames :func:`compute_features` returns for Dask bars.
    """
    import pandas as pd

    columns = registry.get(name).column_names(families)
    return pd.DataFrame(
        {c: pd.Series([], dtype="float64") for c in columns}, index=pd.DatetimeIndex([], tz="UTC", name="time")
    )


def compute_features(
    bars: pd.DataFrame,
    families: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    baseline: float | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute feature families on one pair's bars in memory (SPEC §4.8).

    Parameters
    ----------
    bars
        One pair's 1-minute bars: a ``time`` column or index (UTC; naive times are read as UTC)
        and ``open, high, low, close`` (``volume`` optional), in any order. Bad bars (SPEC §3)
        are dropped and logged, exactly as the pipeline quarantines them. A Dask DataFrame of
        bars (partitions in time order, each at least the families' warm-up long) gives one
        lazy Dask DataFrame per family, equal to the pandas result whatever the partitioning.
    families
        Table families to compute (``"bqx"``, ``"reg_rate"``, …); default all of SPEC §4.
    params
        Overrides of the ``families`` config section, e.g. ``{"reg": {"windows": [2880]}}``.
    baseline
        The index baseline B (SPEC §4.1); default the close of the first accepted bar.

    Returns
    -------
    dict
        Family name → DataFrame (or Dask DataFrame) indexed by ``time`` with the family's
        columns in SPEC order; undefined values are NaN.
    """
    # on call: the config is built from this package's registry, so the package does not import it,
    # and loading the config needs none of pandas
    from dask.base import is_dask_collection

    from ..config import families_config
    from .prepare import prepare

    cfg = families_config(params)
    names = registry.check_names(families if families is not None else registry.NAMES, "families")
    known = registry.all_families()
    if is_dask_collection(bars):
        return _lazy_features(bars, names, cfg, baseline)
    accepted = _accepted(bars)
    if len(accepted) == 0:
        raise SourceError("no valid bars to compute features from; fix: pass bars with positive, consistent OHLC")
    b = float(accepted["close"].iloc[0]) if baseline is None else float(baseline)
    prepared = prepare(accepted, b, cfg, with_bqx=any(known[name].input == "bqx" for name in names))
    return {name: known[name].compute(prepared, cfg) for name in names}


def _accepted(bars: pd.DataFrame) -> pd.DataFrame:
    """The accepted bars (SPEC §3), the rejected ones logged."""
    from ..quality import validate_bars
    from .index import normalize_bars

    accepted, rejected = validate_bars(normalize_bars(bars))
    if len(rejected):
        log.warning(
            "dropped %d bad bars (first: %s at %s)", len(rejected), rejected["reason"].iloc[0], rejected["time"].iloc[0]
        )
    return accepted


def _first_close(firsts: pd.Series) -> float:
    if len(firsts) == 0:
        raise SourceError("no valid bars to compute features from; fix: pass bars with positive, consistent OHLC")
    return float(firsts.iloc[0])


def _head(column: pd.Series) -> pd.Series:
    return column.iloc[:1]


def _index_partition(accepted: pd.DataFrame, baseline: float) -> pd.DataFrame:
    """The four index columns of one partition of accepted bars."""
    from .prepare import prepare

    return prepare(accepted, baseline, None, with_bqx=False)


def _family_partition(index: pd.DataFrame, name: str, cfg: Any) -> pd.DataFrame:
    """One family on one partition of the index frame, the warm-up rows map_overlap put in front
    included: the BQX series (when the family reads it), then the family."""
    from .bqx import bqx_return

    if len(index) == 0:
        return family_meta(name, cfg)
    family = registry.get(name)
    prepared = (
        index.assign(bqx=bqx_return(index["idx"].to_numpy(), cfg.bqx.series_window)) if family.input == "bqx" else index
    )
    return family.compute(prepared, cfg)


def _lazy_features(bars: Any, names: Sequence[str], cfg: Any, baseline: float | None) -> dict[str, Any]:
    """:func:`compute_features` on a Dask DataFrame: one lazy frame per family.

    accepted bars (map_partitions) → index columns with the baseline (map_partitions: a lazy
    baseline is a Delayed, which map_overlap does not take) → per family, the BQX series and the
    family over each partition with the warm-up rows of the one before (map_overlap, as many as
    :func:`registry.warmup_rows` says).
    """
    import pandas as pd
    from dask import delayed

    from ..quality import PRICE_COLUMNS
    from .index import normalize_bars

    empty = pd.DataFrame(
        {c: pd.Series([], dtype="float64") for c in (*PRICE_COLUMNS, "volume")},
        index=pd.DatetimeIndex([], tz="UTC", name="time"),
    )
    # a time column becomes the index: the frame's divisions (of another index) no longer hold
    accepted = bars.map_partitions(
        _accepted, meta=normalize_bars(empty), enforce_metadata=False, clear_divisions="time" in bars.columns
    )
    b = (
        delayed(_first_close)(accepted["close"].map_partitions(_head, meta=("close", "float64")))
        if baseline is None
        else float(baseline)
    )
    index = accepted.map_partitions(
        _index_partition, b, meta=_index_partition(accepted._meta, 1.0), enforce_metadata=False
    )
    warmup = registry.warmup_rows(cfg, list(names))
    return {
        name: index.map_overlap(
            _family_partition, warmup, 0, name, cfg, meta=family_meta(name, cfg), enforce_metadata=False
        )
        for name in names
    }
