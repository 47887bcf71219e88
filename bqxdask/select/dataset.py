"""Stage 3 dataset: one pair's joined features, lagged copies and targets (SPEC §9, §4.7).

Decisions
---------
- **Lags.** Lag k is the value k rows earlier in the pair's series (rows, like every window
  of SPEC §3); lag 0 is the feature itself. The dataset is exactly the requested months: the
  first k rows of ``run.start`` have no lag-k value (NaN), and the last max(h) rows of
  ``run.end`` no target (dropped).
- **Targets.** ``target_h{h}[t] = w{h}_bqx_return[t+h]`` (SPEC §4.7), taken from the bqx
  family's column; when ``families.bqx.windows`` lacks h, the same §4.2 function
  (:func:`bqxdask.features.bqx.bqx_return`) is applied to ``rate_index``. The control target
  ``target_vol_h{h}[t] = Σ_{i=1..h} |idx[t+i] − idx[t+i−1]| / idx[t]`` (the future path
  length) is computed from ``rate_index``. The bqx family is therefore required.
- **Missing feature values** (warm-up rows, constant windows, the first rows of a lag) stay
  NaN: scikit-learn's forests split on them natively, learning on the training rows alone
  which side missing values go to. Nothing is imputed, so nothing is learnt from later rows.
  An infinite value (a family bug) is treated as missing and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import Config
from ..errors import OutputError, SourceError
from .folds import required_rows
from .names import (
    CONTROL,
    LEVEL_COLUMN,
    SEP,
    TARGET_FAMILY,
    Target,
    feature_kind,
    feature_name,
    parse_feature,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The dataset (pure: pandas/numpy in, numpy out)
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """One pair's training dataset: every row with all targets defined, in time order."""

    pair: str
    time: pd.DatetimeIndex  #: bar time of each row
    row: np.ndarray  #: position of each row in the pair's joined feature series
    features: list[str]
    X: np.ndarray  #: (rows, features) float64, column-major, NaN = missing
    targets: tuple[Target, ...]
    Y: np.ndarray  #: (rows, targets) float64, finite
    gap: int  #: purge gap and embargo in rows: max(h)
    level: np.ndarray  #: rate_index over the whole joined series (leakage probes)
    series_rows: int  #: rows of the joined series
    dropped_null_target: int
    families: list[str] = field(default_factory=list)
    infinite_values: dict[str, int] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [feature_kind(f) for f in self.features]

    def frame(self, split: np.ndarray | None = None) -> pd.DataFrame:
        """The dataset as a DataFrame indexed by time: (split,) row, features…, targets…."""
        data: dict[str, Any] = {} if split is None else {"split": split}
        data["row"] = self.row
        data.update({name: self.X[:, j] for j, name in enumerate(self.features)})
        data.update({t.name: self.Y[:, k] for k, t in enumerate(self.targets)})
        return pd.DataFrame(data, index=self.time.rename("time"))


def join_families(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Join one pair's family frames (indexed by time) into one, columns ``<family>__<column>``.

    The in-memory twin of the Dask join in :func:`read_joined` (for ``compute_features`` output).
    """
    parts = [f.rename(columns={c: feature_name(fam, c) for c in f.columns}) for fam, f in frames.items()]
    joined = pd.concat(parts, axis=1, join="outer", sort=True)
    if any(len(p) != len(joined) for p in parts):
        raise OutputError("the families do not have the same bars; fix: recompute them from the same source")
    return joined


def path_length(level: np.ndarray, horizon: int) -> np.ndarray:
    """``Σ_{i=1..h} |level[t+i] − level[t+i−1]| / level[t]``; NaN for the last ``h`` rows."""
    moves = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(level)))])
    out = np.full(len(level), np.nan)
    n = len(level) - horizon
    if n > 0:
        out[:n] = (moves[horizon:] - moves[:n]) / level[:n]
    return out


def build_dataset(
    joined: pd.DataFrame,
    *,
    pair: str,
    lags: Sequence[int],
    targets: Sequence[Target],
    folds: int = 5,
    families: Sequence[str] | None = None,
) -> Dataset:
    """Lagged features, targets, NULL-target rows dropped.

    ``joined`` is one pair's series, sorted by time, columns ``<family>__<column>``
    (:func:`join_families` or :func:`read_joined`).
    """
    from ..features.bqx import bqx_return

    targets = tuple(targets)
    if not joined.index.is_monotonic_increasing or not joined.index.is_unique:
        raise OutputError(
            f"{pair}: the feature rows are not in strictly increasing time order; fix: rerun "
            "bqxdask features --full-refresh for the pair"
        )
    level_col = feature_name(TARGET_FAMILY, LEVEL_COLUMN)
    if level_col not in joined:
        raise SourceError(
            f"{pair}: stage 3 needs the {TARGET_FAMILY} family (its targets and {LEVEL_COLUMN}); "
            f"fix: enable it in families.enabled and run bqxdask features"
        )
    n = len(joined)
    gap = max(t.horizon for t in targets)
    need = required_rows(folds, gap)
    if n - gap < need:  # before any target is computed: a huge horizon fails here, cheaply
        _too_few(pair, max(n - gap, 0), need, gap, folds)
    level = joined[level_col].to_numpy("float64")
    values = np.full((n, len(targets)), np.nan)
    for k, tgt in enumerate(targets):
        h = tgt.horizon
        if tgt.kind == CONTROL:
            values[:, k] = path_length(level, h)
            continue
        col = feature_name(TARGET_FAMILY, f"w{h}_bqx_return")
        series = joined[col].to_numpy("float64") if col in joined else bqx_return(level, h)
        values[: max(n - h, 0), k] = series[h:]  # target at t = w{h}_bqx_return at t+h
    rows = np.flatnonzero(np.isfinite(values).all(axis=1))
    if len(rows) < need:
        _too_few(pair, len(rows), need, gap, folds)

    base_names = list(joined.columns)
    base = joined.to_numpy("float64")
    names = [feature_name(*_split_base(c), lag) for lag in lags for c in base_names]
    X = np.empty((len(rows), len(names)), dtype="float64", order="F")
    j = 0
    for lag in lags:
        src = rows - lag
        ok = src >= 0
        for c in range(len(base_names)):
            col = X[:, j]
            col[ok] = base[src[ok], c]
            col[~ok] = np.nan
            j += 1
    infinite: dict[str, int] = {}
    bad = ~np.isfinite(X) & ~np.isnan(X)
    if bad.any():
        for jj in np.flatnonzero(bad.any(axis=0)):
            infinite[names[jj]] = int(bad[:, jj].sum())
        X[bad] = np.nan
    return Dataset(
        pair=pair,
        time=pd.DatetimeIndex(joined.index[rows]),
        row=rows.astype("int64"),
        features=names,
        X=X,
        targets=targets,
        Y=values[rows],
        gap=gap,
        level=level,
        series_rows=n,
        dropped_null_target=n - len(rows),
        families=list(families) if families is not None else list(dict.fromkeys(c.split(SEP)[0] for c in base_names)),
        infinite_values=infinite,
    )


def _too_few(pair: str, have: int, need: int, gap: int, folds: int) -> None:
    raise SourceError(
        f"{pair}: {have:,} rows have every target, but {folds} walk-forward folds and the test part with gaps of "
        f"{gap} rows need at least {need:,}; fix: select more months (--start/--end), smaller --horizons or "
        f"fewer families.select.folds"
    )


def _split_base(column: str) -> tuple[str, str]:
    family, col, _ = parse_feature(column)
    return family, col


# --------------------------------------------------------------------------------------------
# Reading the Parquet outputs (Dask)
# --------------------------------------------------------------------------------------------
def plan_families(cfg: Config, pair: str) -> tuple[list[str], list[str]]:
    """(families to read, enabled families without Parquet output for ``pair``).

    A family with output for some requested months but not all is an error: joining it would
    silently drop those months.
    """
    from ..outputs.parquet import unit_files

    root = cfg.output.parquet_dir
    months = cfg.months
    used, skipped = [], []
    for fam in cfg.families.enabled:
        try:
            have = {m for _, m, _ in unit_files(root, fam, [pair], cfg.run.start, cfg.run.end)}
        except OutputError:
            have = set()
        if not have:
            if fam == TARGET_FAMILY:
                raise OutputError(
                    f"no feature Parquet for family {fam}, pair {pair}, months {cfg.run.start}..{cfg.run.end} under "
                    f"{root}; fix: run bqxdask features --pairs {pair} --start {cfg.run.start} --end {cfg.run.end}"
                )
            skipped.append(fam)
            continue
        missing = [m for m in months if m not in have]
        if missing:
            raise OutputError(
                f"no feature Parquet for family {fam}, pair {pair}, month {missing[0]}"
                f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''} under {root}; fix: run bqxdask "
                f"features --pairs {pair} --start {missing[0]} --end {missing[-1]}"
            )
        used.append(fam)
    return used, skipped


def read_joined(cfg: Config, pair: str, families: Sequence[str], client: Any = None) -> pd.DataFrame:
    """Every family's Parquet for the pair and months, joined on time with Dask; one pandas frame.

    Each family carries a marker column through the outer join, so a bar that one family has
    and another lacks (outputs of different source versions) is an error, not a silent NaN.
    """
    from ..outputs.parquet import read_features

    parts = []
    for fam in families:
        ddf = read_features(fam, [pair], cfg.run.start, cfg.run.end, parquet_dir=cfg.output.parquet_dir)
        columns = [c for c in ddf.columns if c != "pair"]
        names = [feature_name(fam, c) for c in columns] + [_marker(fam)]
        meta = pd.DataFrame(
            {n: pd.Series([], dtype="float64") for n in names}, index=pd.DatetimeIndex([], tz="UTC", name="time")
        )
        # explicit selection + meta rather than drop/rename: the frame's meta need not list
        # ``pair`` even though its partitions hold it
        parts.append(ddf.map_partitions(_prefixed, fam, columns, meta=meta, enforce_metadata=False))
    joined = parts[0]
    for other in parts[1:]:
        joined = joined.join(other, how="outer")
    frame = client.compute(joined, sync=True) if client is not None else joined.compute()
    frame = frame.sort_index()
    for fam in families:
        absent = frame[_marker(fam)].isna()
        if absent.any():
            when = frame.index[absent.to_numpy()][0]
            raise OutputError(
                f"family {fam} has no row for {pair} at {when:%Y-%m-%d %H:%M} that other families have; fix: "
                f"rerun bqxdask features --pairs {pair} --start {when:%Y-%m} --end {when:%Y-%m} --full-refresh"
            )
    return frame.drop(columns=[_marker(f) for f in families])


def _marker(family: str) -> str:
    return f"_present_{family}"


def _prefixed(part: pd.DataFrame, family: str, columns: list[str]) -> pd.DataFrame:
    """One partition of a family: its columns as ``<family>__<column>`` plus the presence marker."""
    out = pd.DataFrame({feature_name(family, c): part[c].to_numpy("float64") for c in columns}, index=part.index)
    out[_marker(family)] = 1.0
    return out
