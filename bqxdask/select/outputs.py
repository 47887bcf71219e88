"""Stage 3 outputs: ranking, metrics, files under ``<parquet_dir>/selection/pair=<pair>/``, summary.

- ``dataset.parquet``: ``time`` (timestamp[us, UTC]), ``split`` (``initial``, ``purge``,
  ``fold<k>``, ``test``: the walk-forward layout of bqxdask.select.folds), ``row`` (position in
  the pair's feature series), the features, the targets;
- ``ranking.csv``: ``feature, target, horizon, kind, cluster, importance, importance_std,
  p_value, significant, rank`` — one line per model feature and target; the features of one
  cluster share its importance (mean over folds of the drop in R² when the cluster is
  permuted), importance_std (over folds), p_value (Benjamini–Hochberg adjusted), significant
  and rank (1 = the most important cluster);
- ``metrics.json``: per target ``r2_folds``, ``r2_folds_mean``, ``r2_test``, ``r2_test_zero``,
  ``fold_rank_spearman``, ``significant_features``, ``verdict``; the layout, leakage scores,
  every parameter, versions;
- ``top_features.html``: Bokeh bar charts of the top 20 clusters per target (bqxdask.select.charts).

Every file is written to a hidden temporary name in the same folder and renamed into place;
none holds a clock or a path, so the same Parquet and seed give the same bytes.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import pandas as pd

from .. import __version__
from ..config import Config
from ..outputs.parquet import filesystem, write_atomic
from .dataset import Dataset
from .fit import FoldResult
from .folds import TEST_SHARE, Layout
from .names import Target
from .significance import benjamini_hochberg, block_pvalues, fold_rank_spearman, verdict

FILES = ("dataset.parquet", "ranking.csv", "metrics.json", "top_features.html")
RANKING_COLUMNS = [
    "feature",
    "target",
    "horizon",
    "kind",
    "cluster",
    "importance",
    "importance_std",
    "p_value",
    "significant",
    "rank",
]


@dataclass
class TargetRanking:
    target: Target
    ranking: pd.DataFrame  #: RANKING_COLUMNS, sorted by rank then feature
    r2_folds: list[float]
    r2_test: float
    r2_test_zero: float
    fold_rank_spearman: float
    significant_features: int
    significant_clusters: int
    verdict: str
    train_rows: dict[int, int]
    eval_rows: dict[int, int]


@dataclass
class PairResult:
    ds: Dataset
    layout: Layout
    targets: list[TargetRanking]
    leakage: Mapping[str, Any]
    skipped: list[str]
    clusters: int
    model_features: list[str]
    rows_sent: int


def rank_target(
    target: Target,
    features: Sequence[str],
    kinds: Sequence[str],
    clusters: np.ndarray,
    folds: Mapping[int, FoldResult],
    alpha: float,
) -> TargetRanking:
    """Combine one target's fold results: importance ± std over folds, p-values, ranks, verdict."""
    numbers = sorted(n for n in folds if n > 0)
    imp = np.stack([folds[n].importance for n in numbers])  # folds × clusters
    blocks = np.concatenate([folds[n].block_means for n in numbers], axis=1)
    p_adj = benjamini_hochberg(block_pvalues(blocks))
    mean, std = imp.mean(axis=0), imp.std(axis=0, ddof=1)
    order = sorted(range(len(mean)), key=lambda c: (-mean[c], p_adj[c], c))
    rank = np.empty(len(mean), dtype=np.int64)
    rank[order] = np.arange(1, len(mean) + 1)
    frame = pd.DataFrame(
        {
            "feature": list(features),
            "target": target.name,
            "horizon": target.horizon,
            "kind": list(kinds),
            "cluster": clusters + 1,
            "importance": mean[clusters],
            "importance_std": std[clusters],
            "p_value": p_adj[clusters],
            "significant": p_adj[clusters] <= alpha,
            "rank": rank[clusters],
        },
        columns=RANKING_COLUMNS,
    )
    frame = frame.sort_values(["rank", "feature"], kind="stable").reset_index(drop=True)
    sig = p_adj <= alpha
    best = min(range(len(mean)), key=lambda c: (p_adj[c], -mean[c], c))
    best_feature = str(frame.loc[frame["cluster"] == best + 1, "feature"].iloc[0])
    text = verdict(
        target.name,
        len(features),
        int(sig[clusters].sum()),
        len(mean),
        int(sig.sum()),
        best_feature,
        float(p_adj[best]),
    )
    return TargetRanking(
        target,
        frame,
        [folds[n].r2 for n in numbers],
        folds[0].r2,
        folds[0].r2_zero,
        fold_rank_spearman(imp),
        int(sig[clusters].sum()),
        int(sig.sum()),
        text,
        {n: folds[n].train_rows for n in sorted(folds)},
        {n: folds[n].eval_rows for n in sorted(folds)},
    )


def selection_dir(parquet_dir: str, pair: str) -> str:
    return posixpath.join(parquet_dir.rstrip("/"), "selection", f"pair={pair}")


def _num(x: float) -> float | None:
    return float(f"{x:.10g}") if math.isfinite(x) else None


def _range(ds: Dataset, lo: int, hi: int) -> dict[str, Any]:
    return {
        "first_row": int(ds.row[lo]),
        "last_row": int(ds.row[hi - 1]),
        "rows": hi - lo,
        "first_time": ds.time[lo].isoformat(),
        "last_time": ds.time[hi - 1].isoformat(),
    }


def metrics_dict(cfg: Config, res: PairResult) -> dict[str, Any]:
    """Everything metrics.json holds; deterministic (no clock, no paths)."""
    import sklearn

    p = cfg.families.select
    ds, layout = res.ds, res.layout
    targets = {}
    for t in res.targets:
        targets[t.target.name] = {
            "horizon": t.target.horizon,
            "kind": t.target.kind,
            "r2_folds": [_num(x) for x in t.r2_folds],
            "r2_folds_mean": _num(float(np.mean(t.r2_folds))),
            "r2_test": _num(t.r2_test),
            "r2_test_zero": _num(t.r2_test_zero),
            "fold_rank_spearman": _num(t.fold_rank_spearman),
            "significant_features": t.significant_features,
            "significant_clusters": t.significant_clusters,
            "verdict": t.verdict,
            "train_rows_fitted": {str(k): v for k, v in t.train_rows.items()},
            "eval_rows": {str(k): v for k, v in t.eval_rows.items()},
            "leakage": res.leakage[t.target.name].as_dict(),
        }
    kinds = ds.kinds
    return {
        "pair": ds.pair,
        "months": {"start": cfg.run.start, "end": cfg.run.end},
        "bqxdask_version": __version__,
        "sklearn_version": sklearn.__version__,
        "seed": p.seed,
        "feature_count": len(ds.features),
        "model_feature_count": len(res.model_features),
        "level_features": sum(k == "level" for k in kinds),
        "levels_dropped": bool(p.drop_levels),
        "clusters": res.clusters,
        "families": list(ds.families),
        "families_without_output": list(res.skipped),
        "lags": list(p.lags),
        "targets": targets,
        "rows": {
            "series": ds.series_rows,
            "without_target": ds.dropped_null_target,
            "dataset": len(ds.row),
            "sent_to_workers": res.rows_sent,
        },
        "layout": {
            "gap_rows": layout.gap,
            "test_share": TEST_SHARE,
            "initial": _range(ds, *layout.initial),
            "folds": [
                {"fold": f.number, "train_rows": f.train[1] - f.train[0], **_range(ds, *f.evaluate)}
                for f in layout.folds
            ],
            "test": {"train_rows": layout.test.train[1], **_range(ds, *layout.test.evaluate)},
        },
        "missing_feature_share": round(float(np.isnan(ds.X).mean()) if ds.X.size else 0.0, 6),
        "infinite_values_as_missing": dict(ds.infinite_values),
        "params": {
            "model": "sklearn.ensemble.RandomForestRegressor",
            "n_estimators": p.n_estimators,
            "max_depth": p.max_depth,
            "max_features": p.max_features,
            "random_state": p.seed,
            "max_train_rows": p.max_train_rows,
            "tree_rows": p.tree_rows,
            "n_jobs": p.n_jobs,
            "folds": p.folds,
            "permutation_repeats": p.permutation_repeats,
            "max_importance_rows": p.max_importance_rows,
            "significance_blocks": p.significance_blocks,
            "cluster_threshold": p.cluster_threshold,
            "alpha": p.alpha,
            "importance": "drop in R² when a cluster is permuted, on each fold's evaluation rows",
            "significance": "one-sided t-test over blocks of the loss increase, Benjamini–Hochberg adjusted",
            "missing_values": "native (RandomForestRegressor splits on NaN; no imputation)",
            "leakage_r2": p.leakage_r2,
            "leakage_future_r2": p.leakage_future_r2,
        },
    }


def write_outputs(cfg: Config, res: PairResult) -> str:
    """Write the files atomically; returns the folder."""
    from .charts import chart_html

    fs, base = filesystem(cfg.output.parquet_dir)
    folder = selection_dir(base, res.ds.pair)
    fs.makedirs(folder, exist_ok=True)
    metrics = metrics_dict(cfg, res)
    ranking = pd.concat([t.ranking for t in res.targets], ignore_index=True)
    write_atomic(fs, posixpath.join(folder, "dataset.parquet"), lambda fh: _write_dataset(fh, res, metrics))
    write_atomic(
        fs,
        posixpath.join(folder, "ranking.csv"),
        lambda fh: fh.write(ranking.to_csv(index=False, lineterminator="\n").encode()),
    )
    write_atomic(
        fs, posixpath.join(folder, "metrics.json"), lambda fh: fh.write((json.dumps(metrics, indent=2) + "\n").encode())
    )
    write_atomic(
        fs,
        posixpath.join(folder, "top_features.html"),
        lambda fh: fh.write(chart_html(res.ds.pair, res.targets, metrics).encode()),
    )
    return folder


def _write_dataset(fh, res: PairResult, metrics: Mapping[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = res.ds
    arrays = [
        pa.array(ds.time.as_unit("us").asi8, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        pa.array(res.layout.labels().astype(str)).dictionary_encode(),
        pa.array(ds.row, type=pa.int64()),
    ]
    names = ["time", "split", "row"]
    for j, name in enumerate(ds.features):
        arrays.append(pa.array(np.ascontiguousarray(ds.X[:, j]), type=pa.float64(), from_pandas=True))
        names.append(name)
    for k, t in enumerate(ds.targets):
        arrays.append(pa.array(ds.Y[:, k], type=pa.float64()))
        names.append(t.name)
    table = pa.Table.from_arrays(arrays, names=names)
    meta = {
        "pair": ds.pair,
        "bqxdask_version": __version__,
        "seed": metrics["seed"],
        "gap_rows": ds.gap,
        "targets": [t.name for t in ds.targets],
        "lags": metrics["lags"],
        "families": metrics["families"],
    }
    table = table.replace_schema_metadata({b"bqxdask": json.dumps(meta, sort_keys=True).encode()})
    # as the feature files (outputs/parquet.py): no dictionary for unique floats, byte-stream
    # split so that zstd sees the exponent bytes together
    pq.write_table(
        table, fh, compression="zstd", use_dictionary=["split"], use_byte_stream_split=names[3:], row_group_size=65_536
    )


def print_summary(out: TextIO, res: PairResult, folder: str, *, seconds: float, phases: str = "") -> None:
    """R² per target (folds, test, zero), fold stability, verdicts, the top 5 of each target."""
    lines = [
        f"{res.ds.pair}: {len(res.ds.row):,} rows, {len(res.model_features)} model features in "
        f"{res.clusters} clusters, {len(res.layout.folds)} folds + test (gap {res.layout.gap} rows)",
        f"  {'target':<17}{'R² folds':>10}{'R² test':>10}{'zero test':>11}{'fold ρ':>8}{'significant':>13}",
    ]
    for t in res.targets:
        lines.append(
            f"  {t.target.name:<17}{np.mean(t.r2_folds):>10.4f}{t.r2_test:>10.4f}{t.r2_test_zero:>11.4f}"
            f"{t.fold_rank_spearman:>8.2f}{t.significant_features:>13}"
        )
    lines.append("  verdicts:")
    lines += [f"    {t.verdict}" for t in res.targets]
    for t in res.targets:
        top = t.ranking.drop_duplicates("cluster").head(5)
        cells = [f"{r.feature}{'*' if r.significant else ''} {r.importance:+.2g}" for r in top.itertuples()]
        lines.append(f"  top {t.target.name}: " + ", ".join(cells))
    lines.append(
        f"  (* significant at alpha; outputs: {folder}/ ({', '.join(FILES)}) in {seconds:.0f} s"
        + (f": {phases})" if phases else ")")
    )
    out.write("\n".join(lines) + "\n")
    out.flush()
