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

__all__ = ["compute_features", "registry"]


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
        are dropped and logged, exactly as the pipeline quarantines them.
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
        undefined values are NaN.
    """
    # on call: the config is built from this package's registry, so the package does not import it,
    # and loading the config needs none of pandas
    from ..config import families_config
    from ..quality import validate_bars
    from .index import normalize_bars
    from .prepare import prepare

    cfg = families_config(params)
    names = registry.check_names(families if families is not None else registry.NAMES, "families")
    known = registry.all_families()
    accepted, rejected = validate_bars(normalize_bars(bars))
    if len(rejected):
        log.warning("dropped %d bad bars (first: %s at %s)", len(rejected), rejected["reason"].iloc[0],
                    rejected["time"].iloc[0])
    if len(accepted) == 0:
        raise SourceError("no valid bars to compute features from; fix: pass bars with positive, consistent OHLC")
    b = float(accepted["close"].iloc[0]) if baseline is None else float(baseline)
    prepared = prepare(accepted, b, cfg, with_bqx=any(known[name].input == "bqx" for name in names))
    return {name: known[name].compute(prepared, cfg) for name in names}
