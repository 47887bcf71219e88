"""Stage 3: the training dataset and random-forest feature ranking (SPEC §9, §4.7).

``bqxdask select`` does, per pair of ``run.pairs`` over the months ``run.start..run.end``::

    read   every enabled family's Parquet (read_features, Dask), joined on time
    build  lagged copies, targets, drop rows without a target, 70/15/15 split with purge gaps
    check  leakage (bqxdask._select_leakage) — fails the run before anything is fitted
    fit    per horizon: RandomForestRegressor on the training part, R² on validation and test
           against the zero prediction, permutation importance on validation
    write  <parquet_dir>/selection/pair=<pair>/ dataset.parquet, ranking.csv, metrics.json,
           top_features.html (+ .png)

Decisions
---------
- **Names.** A feature is ``<family>__<column>`` (``bqx__w15_bqx_return``), its lagged copy
  ``<family>__<column>__lag<k>``; :func:`parse_feature` reads them back. Lag k is the value k
  rows earlier in the pair's series (rows, like every window of SPEC §3); lag 0 is the
  feature itself; a negative lag is refused by the config. The dataset is exactly the
  requested months: the first k rows of ``run.start`` have no lag-k value (NaN), and the
  last max(h) rows of ``run.end`` no target (dropped).
- **Targets.** ``target_h{h}[t] = w{h}_bqx_return[t+h]`` (SPEC §4.7), taken from the bqx
  family's column. When ``families.bqx.windows`` lacks h, the same §4.2 function
  (:func:`bqxdask.features.bqx.bqx_return`) is applied to the family's ``rate_index``
  column, which gives the same numbers. The bqx family is therefore required. Any positive
  horizon works; the rows it needs are checked.
- **Missing feature values** (warm-up rows, constant windows, the first rows of a lag) stay
  NaN: scikit-learn's ``RandomForestRegressor`` (≥ 1.4) splits on them natively, learning on
  the training rows alone which side missing values go to. Nothing is imputed, so nothing can
  be learnt from validation or test rows. An infinite value (a family bug) is treated as
  missing and reported.
- **Split.** Rows with every target defined are split in time order 70/15/15; between
  train and validation and between validation and test ``max(h)`` rows are dropped (the
  purge gap), so no training target reaches a bar of the validation part and no validation
  target one of the test part. Each part needs :data:`MIN_PART_ROWS` rows.
- **Reproducible.** The training-row cap and the importance-row cap sample rows with
  ``numpy.random.default_rng((seed, k))``; the forest and the permutations use ``seed``;
  ``ranking.csv`` and ``metrics.json`` contain no clock, so the same Parquet and seed give
  byte-identical files.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import pandas as pd

from .config import Config, SelectParams
from .errors import BqxError, ConfigError, OutputError, SourceError

log = logging.getLogger(__name__)

SEP = "__"
LAG_RE = re.compile(r"lag(\d+)")
SPLITS = ("train", "valid", "test")
#: shares of the rows left after the two purge gaps, in SPLITS order (SPEC §9)
FRACTIONS = (70, 15, 15)
#: fewest rows a part may have: below this an R² or an importance is noise
MIN_PART_ROWS = 100
#: the family that yields the targets (SPEC §4.7) and the index level for the leakage check
TARGET_FAMILY = "bqx"
LEVEL_COLUMN = "rate_index"


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
def feature_name(family: str, column: str, lag: int = 0) -> str:
    """``bqx__w15_bqx_return`` (lag 0) or ``bqx__w15_bqx_return__lag60``."""
    base = f"{family}{SEP}{column}"
    return base if lag == 0 else f"{base}{SEP}lag{lag}"


def parse_feature(name: str) -> tuple[str, str, int]:
    """Inverse of :func:`feature_name`: ``(family, column, lag)``."""
    parts = name.split(SEP)
    if len(parts) == 3 and LAG_RE.fullmatch(parts[2]):
        return parts[0], parts[1], int(parts[2][3:])
    if len(parts) == 2:
        return parts[0], parts[1], 0
    raise ValueError(f"{name!r} is not a stage-3 feature name (<family>__<column>[__lag<k>])")


def target_name(horizon: int) -> str:
    return f"target_h{horizon}"


def validate_horizons(horizons: Sequence[int] | None, params: SelectParams) -> tuple[int, ...]:
    """The horizons to fit, ascending; ConfigError for a non-positive or repeated one."""
    hs = tuple(params.horizons if horizons is None else horizons)
    key = "--horizons" if horizons is not None else "families.select.horizons"
    if not hs:
        raise ConfigError(f"{key} is empty; fix: give at least one horizon in bars, e.g. 15")
    for h in hs:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ConfigError(f"{key}: {h!r} is not a horizon; fix: horizons are whole numbers of bars >= 1, "
                              f"e.g. 15,30,45,60,75")
    if len(set(hs)) != len(hs):
        raise ConfigError(f"{key} lists a horizon twice; fix: list each horizon once")
    if not params.lags or len(set(params.lags)) != len(params.lags):
        raise ConfigError("families.select.lags must list each lag once and at least one (0 = the feature "
                          "itself); fix: e.g. lags = [0, 60]")
    return tuple(sorted(hs))


# --------------------------------------------------------------------------------------------
# The dataset (pure: pandas/numpy in, numpy out)
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """One pair's training dataset: the rows of the three parts, in time order."""

    pair: str
    time: pd.DatetimeIndex  #: bar time of each row
    row: np.ndarray  #: position of each row in the pair's joined feature series
    split: np.ndarray  #: "train" | "valid" | "test"
    features: list[str]
    X: np.ndarray  #: (rows, features) float64, column-major, NaN = missing
    horizons: tuple[int, ...]
    Y: np.ndarray  #: (rows, horizons) float64, finite
    gap: int  #: purge gap in rows
    level: np.ndarray  #: rate_index over the whole joined series (leakage probes)
    series_rows: int  #: rows of the joined series
    dropped_null_target: int
    families: list[str] = field(default_factory=list)
    infinite_values: dict[str, int] = field(default_factory=dict)

    def part(self, name: str) -> np.ndarray:
        """Row positions (into X, Y) of one part."""
        return np.flatnonzero(self.split == name)

    def frame(self) -> pd.DataFrame:
        """The dataset as a DataFrame indexed by time: split, row, features…, targets…."""
        data: dict[str, Any] = {"split": pd.Categorical(self.split, categories=SPLITS), "row": self.row}
        data.update({name: self.X[:, j] for j, name in enumerate(self.features)})
        data.update({target_name(h): self.Y[:, k] for k, h in enumerate(self.horizons)})
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


def required_rows(gap: int) -> int:
    """Fewest rows with targets that the 70/15/15 split with two purge gaps of ``gap`` rows needs."""
    usable = MIN_PART_ROWS
    while min(_part_sizes(usable)) < MIN_PART_ROWS:
        usable += 1
    return usable + 2 * gap


def _part_sizes(usable: int) -> tuple[int, int, int]:
    train = usable * FRACTIONS[0] // 100
    valid = usable * FRACTIONS[1] // 100
    return train, valid, usable - train - valid


def split_labels(n: int, gap: int) -> np.ndarray:
    """Labels of ``n`` time-ordered rows: train, valid, test, and "" for the purged rows between them."""
    usable = n - 2 * gap
    sizes = _part_sizes(max(usable, 0))
    labels = np.full(n, "", dtype=object)
    start = 0
    for name, size in zip(SPLITS, sizes):
        labels[start:start + size] = name
        start += size + gap
    return labels


def build_dataset(joined: pd.DataFrame, *, pair: str, lags: Sequence[int], horizons: Sequence[int],
                  families: Sequence[str] | None = None) -> Dataset:
    """Lagged features, targets, NULL-target rows dropped, split with purge gaps.

    ``joined`` is one pair's series, sorted by time, columns ``<family>__<column>``
    (:func:`join_families` or :func:`read_joined`).
    """
    from .features.bqx import bqx_return

    horizons = tuple(sorted(horizons))
    if not joined.index.is_monotonic_increasing or not joined.index.is_unique:
        raise OutputError(f"{pair}: the feature rows are not in strictly increasing time order; fix: rerun "
                          "bqxdask features --full-refresh for the pair")
    level_col = feature_name(TARGET_FAMILY, LEVEL_COLUMN)
    if level_col not in joined:
        raise SourceError(f"{pair}: stage 3 needs the {TARGET_FAMILY} family (its targets and {LEVEL_COLUMN}); "
                          f"fix: enable it in families.enabled and run bqxdask features")
    n = len(joined)
    gap = max(horizons)
    need = required_rows(gap)
    if n - gap < need:  # before any target is computed: a huge horizon fails here, cheaply
        _too_few(pair, max(n - gap, 0), need, gap)
    level = joined[level_col].to_numpy("float64")
    targets = np.full((n, len(horizons)), np.nan)
    for k, h in enumerate(horizons):
        col = feature_name(TARGET_FAMILY, f"w{h}_bqx_return")
        series = joined[col].to_numpy("float64") if col in joined else bqx_return(level, h)
        targets[: max(n - h, 0), k] = series[h:]  # target at t = w{h}_bqx_return at t+h
    keep = np.flatnonzero(np.isfinite(targets).all(axis=1))
    if len(keep) < need:
        _too_few(pair, len(keep), need, gap)
    labels = split_labels(len(keep), gap)
    in_part = labels != ""
    rows = keep[in_part]

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
        pair=pair, time=pd.DatetimeIndex(joined.index[rows]), row=rows.astype("int64"),
        split=labels[in_part].astype(str), features=names, X=X, horizons=horizons, Y=targets[rows], gap=gap,
        level=level, series_rows=n, dropped_null_target=n - len(keep),
        families=list(families) if families is not None else list(dict.fromkeys(c.split(SEP)[0] for c in base_names)),
        infinite_values=infinite,
    )


def _too_few(pair: str, have: int, need: int, gap: int) -> None:
    raise SourceError(
        f"{pair}: {have:,} rows have every target, but the 70/15/15 split with purge gaps of {gap} rows "
        f"needs at least {need:,}; fix: select more months (--start/--end) or smaller --horizons"
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
    from .outputs.parquet import unit_files

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
    from .outputs.parquet import read_features

    parts = []
    for fam in families:
        ddf = read_features(fam, [pair], cfg.run.start, cfg.run.end, parquet_dir=cfg.output.parquet_dir)
        columns = [c for c in ddf.columns if c != "pair"]
        names = [feature_name(fam, c) for c in columns] + [_marker(fam)]
        meta = pd.DataFrame({n: pd.Series([], dtype="float64") for n in names},
                            index=pd.DatetimeIndex([], tz="UTC", name="time"))
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


# --------------------------------------------------------------------------------------------
# Fitting and ranking
# --------------------------------------------------------------------------------------------
@dataclass
class HorizonResult:
    horizon: int
    r2_valid: float
    r2_test: float
    baseline_r2_valid: float
    baseline_r2_test: float
    importance: np.ndarray
    importance_std: np.ndarray
    train_rows: int
    importance_rows: int
    seconds: float


def sample_rows(positions: np.ndarray, cap: int, seed: int, stream: int) -> np.ndarray:
    """At most ``cap`` of ``positions``, drawn reproducibly, kept in time order."""
    if len(positions) <= cap:
        return positions
    rng = np.random.default_rng((seed, stream))
    return np.sort(rng.choice(positions, size=cap, replace=False))


def fit_horizon(ds: Dataset, k: int, params: SelectParams, train: np.ndarray, imp: np.ndarray) -> HorizonResult:
    """Fit the forest for horizon ``ds.horizons[k]``; R² and permutation importance."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import r2_score

    t0 = time.perf_counter()
    y = ds.Y[:, k]
    tree_rows = min(params.tree_rows, len(train)) if params.tree_rows else None
    model = RandomForestRegressor(n_estimators=params.n_estimators, max_depth=params.max_depth,
                                  max_samples=tree_rows, random_state=params.seed, n_jobs=params.n_jobs)
    # sklearn's worker threads reset and rebuild the process-wide warning filters (Python < 3.14
    # keeps them global); catch_warnings() here restores the caller's filters afterwards and
    # suppresses nothing.
    with warnings.catch_warnings():
        model.fit(np.asarray(ds.X[train], dtype=np.float32, order="F"), y[train])
        scores = {}
        for name in ("valid", "test"):
            rows = ds.part(name)
            pred = model.predict(np.asarray(ds.X[rows], dtype=np.float32))
            scores[name] = (float(r2_score(y[rows], pred)), float(r2_score(y[rows], np.zeros(len(rows)))))
    # One predict per (feature, repeat) on a few thousand rows: a thread pool per predict costs
    # ten times the prediction, so these run serially. (Threads over features would gain ~20 %
    # but race: sklearn snapshots the process-wide warning filters in one thread while another
    # has reset them, and warns.)
    model.set_params(n_jobs=1)
    pi = permutation_importance(model, np.asarray(ds.X[imp], dtype=np.float32), y[imp],
                                n_repeats=params.permutation_repeats, random_state=params.seed, n_jobs=None)
    return HorizonResult(
        horizon=ds.horizons[k], r2_valid=scores["valid"][0], r2_test=scores["test"][0],
        baseline_r2_valid=scores["valid"][1], baseline_r2_test=scores["test"][1],
        importance=pi.importances_mean, importance_std=pi.importances_std, train_rows=len(train),
        importance_rows=len(imp), seconds=time.perf_counter() - t0,
    )


def ranking_frame(ds: Dataset, results: Sequence[HorizonResult]) -> pd.DataFrame:
    """feature, horizon, importance, importance_std, rank (1 = most important; ties by name)."""
    frames = []
    for res in results:
        f = pd.DataFrame({"feature": ds.features, "horizon": res.horizon, "importance": res.importance,
                          "importance_std": res.importance_std})
        f = f.sort_values(["importance", "feature"], ascending=[False, True], kind="stable")
        f["rank"] = np.arange(1, len(f) + 1)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
def select_pair(cfg: Config, pair: str, horizons: tuple[int, ...], *, families: Sequence[str],
                skipped: Sequence[str], out: TextIO, client: Any = None) -> dict[str, Any]:
    """Stage 3 for one pair; returns its metrics (also written to metrics.json)."""
    from ._select_leakage import check_leakage
    from ._select_report import metrics_dict, print_summary, write_outputs

    params = cfg.families.select
    t0 = time.perf_counter()
    joined = read_joined(cfg, pair, families, client)
    ds = build_dataset(joined, pair=pair, lags=params.lags, horizons=horizons, families=families)
    del joined
    for name, count in ds.infinite_values.items():
        out.write(f"warning: {pair}: {name} has {count} infinite values; they are treated as missing\n")
    train = sample_rows(ds.part("train"), params.max_train_rows, params.seed, 0)
    imp = sample_rows(ds.part("valid"), params.max_importance_rows, params.seed, 1)
    leakage = check_leakage(ds.X[train], ds.features, {h: ds.Y[train, k] for k, h in enumerate(ds.horizons)},
                            ds.level, ds.row[train], copy_r2=params.leakage_r2, future_r2=params.leakage_future_r2,
                            pair=pair)
    out.write(f"{pair}: {len(ds.row):,} rows × {len(ds.features)} features from {len(families)} families; "
              f"fitting {len(horizons)} horizon(s) ({params.n_estimators} trees, depth {params.max_depth}, "
              f"{len(train):,} training rows" + (f", {min(params.tree_rows, len(train)):,} per tree" if params.tree_rows else "")
              + ")\n")
    out.flush()
    results = []
    for k, h in enumerate(ds.horizons):
        res = fit_horizon(ds, k, params, train, imp)
        out.write(f"  {target_name(h)}: R² valid {res.r2_valid:.4f}, test {res.r2_test:.4f} ({res.seconds:.0f} s)\n")
        out.flush()
        results.append(res)
    ranking = ranking_frame(ds, results)
    metrics = metrics_dict(cfg, ds, results, leakage, skipped=skipped, lags=params.lags)
    where = write_outputs(cfg.output.parquet_dir, ds, ranking, metrics)
    print_summary(out, ds, results, ranking, where, seconds=time.perf_counter() - t0)
    return metrics


def run_select(cfg: Config, *, horizons: Sequence[int] | None = None, out: TextIO | None = None,
               client: Any = None) -> int:
    """``bqxdask select``: stage 3 for every pair of ``cfg.run.pairs``; returns the exit code.

    All pairs are checked (horizons, Parquet coverage) before any is read, so a missing month
    fails in a second, not after the first pair's forests. Errors are :class:`BqxError`.
    """
    out = out or sys.stdout
    hs = validate_horizons(horizons, cfg.families.select)
    plans = {pair: plan_families(cfg, pair) for pair in cfg.run.pairs}
    for pair, (_, skipped) in plans.items():
        if skipped:
            out.write(f"note: {pair}: no Parquet output for {', '.join(skipped)}; selecting without "
                      f"{'it' if len(skipped) == 1 else 'them'} (fix: bqxdask features --families "
                      f"{','.join(skipped)} to include)\n")
    for pair, (families, skipped) in plans.items():
        try:
            select_pair(cfg, pair, hs, families=families, skipped=skipped, out=out, client=client)
        except MemoryError:
            raise BqxError(f"{pair}: out of memory building or fitting the dataset; fix: select fewer months or "
                           "lower families.select.max_train_rows") from None
    return 0
