"""Stage 3 outputs: files under ``<parquet_dir>/selection/pair=<pair>/`` and the console summary.

- ``dataset.parquet``: ``time`` (timestamp[us, UTC]), ``split`` (train/valid/test), ``row``
  (position in the pair's feature series; the purge gaps show as jumps), the features, the
  targets;
- ``ranking.csv``: feature, horizon, importance, importance_std, rank;
- ``metrics.json``: per horizon R² on validation and test and the zero prediction's, rows per
  part, purge gap, parameters, seed, feature count, versions, leakage scores;
- ``top_features.html``: Bokeh bar charts of the 20 most important features, one tab per
  horizon, self-contained (``bokeh.resources.INLINE``: opens offline);
- ``top_features.png``: the same charts drawn with Pillow (already installed with Bokeh).

Every file is written to a hidden temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import io
import json
import math
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import numpy as np
import pandas as pd

from . import __version__
from .config import Config
from .outputs.parquet import filesystem, write_atomic

TOP_N = 20
FILES = ("dataset.parquet", "ranking.csv", "metrics.json", "top_features.html", "top_features.png")


def selection_dir(parquet_dir: str, pair: str) -> str:
    return posixpath.join(parquet_dir.rstrip("/"), "selection", f"pair={pair}")


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def metrics_dict(cfg: Config, ds, results, leakage, *, skipped: Sequence[str], lags: Sequence[int]) -> dict[str, Any]:
    """Everything metrics.json holds; deterministic (no clock, no paths)."""
    import sklearn

    from .select import FRACTIONS, SPLITS, target_name

    p = cfg.families.select
    parts = {}
    for name in SPLITS:
        idx = ds.part(name)
        parts[name] = {"rows": int(len(idx)), "first_row": int(ds.row[idx[0]]), "last_row": int(ds.row[idx[-1]]),
                       "first_time": ds.time[idx[0]].isoformat(), "last_time": ds.time[idx[-1]].isoformat()}
    horizons = {}
    for res in results:
        horizons[str(res.horizon)] = {
            "target": target_name(res.horizon),
            "r2_valid": _finite(res.r2_valid), "r2_test": _finite(res.r2_test),
            "baseline_r2_valid": _finite(res.baseline_r2_valid), "baseline_r2_test": _finite(res.baseline_r2_test),
            "train_rows_fitted": res.train_rows, "importance_rows": res.importance_rows,
            "leakage": leakage[res.horizon].as_dict(),
        }
    missing = float(np.isnan(ds.X).mean()) if ds.X.size else 0.0
    return {
        "pair": ds.pair,
        "months": {"start": cfg.run.start, "end": cfg.run.end},
        "bqxdask_version": __version__,
        "sklearn_version": sklearn.__version__,
        "seed": p.seed,
        "feature_count": len(ds.features),
        "families": list(ds.families),
        "families_without_output": list(skipped),
        "lags": list(lags),
        "horizons": horizons,
        "rows": {"series": ds.series_rows, "without_target": ds.dropped_null_target,
                 "purged": ds.series_rows - ds.dropped_null_target - len(ds.row),
                 **{name: parts[name]["rows"] for name in SPLITS}},
        "splits": parts,
        "purge_gap_rows": ds.gap,
        "split_fractions": dict(zip(SPLITS, (f / 100 for f in FRACTIONS))),
        "missing_feature_share": round(missing, 6),
        "infinite_values_as_missing": dict(ds.infinite_values),
        "params": {
            "model": "sklearn.ensemble.RandomForestRegressor",
            "n_estimators": p.n_estimators, "max_depth": p.max_depth, "random_state": p.seed,
            "max_train_rows": p.max_train_rows, "tree_rows": p.tree_rows,
            "max_samples": min(p.tree_rows, ds.part("train").size, p.max_train_rows) if p.tree_rows else None,
            "permutation_repeats": p.permutation_repeats,
            "max_importance_rows": p.max_importance_rows, "importance_scoring": "r2 (drop in R² when permuted)",
            "missing_values": "native (RandomForestRegressor splits on NaN; no imputation)",
            "leakage_r2": p.leakage_r2, "leakage_future_r2": p.leakage_future_r2,
        },
    }


def write_outputs(parquet_dir: str, ds, ranking: pd.DataFrame, metrics: Mapping[str, Any]) -> str:
    """Write the five files atomically; returns the folder."""
    fs, base = filesystem(parquet_dir)
    folder = selection_dir(base, ds.pair)
    fs.makedirs(folder, exist_ok=True)
    write_atomic(fs, posixpath.join(folder, "dataset.parquet"), lambda fh: _write_dataset(fh, ds, metrics))
    write_atomic(fs, posixpath.join(folder, "ranking.csv"),
                  lambda fh: fh.write(ranking.to_csv(index=False, lineterminator="\n").encode()))
    write_atomic(fs, posixpath.join(folder, "metrics.json"),
                  lambda fh: fh.write((json.dumps(metrics, indent=2) + "\n").encode()))
    top = _top(ranking)
    write_atomic(fs, posixpath.join(folder, "top_features.html"),
                  lambda fh: fh.write(chart_html(ds.pair, top, metrics).encode()))
    write_atomic(fs, posixpath.join(folder, "top_features.png"), lambda fh: fh.write(chart_png(ds.pair, top)))
    return folder


def _write_dataset(fh, ds, metrics: Mapping[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .select import target_name

    arrays = [pa.array(ds.time.as_unit("us").asi8, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
              pa.array(ds.split).dictionary_encode(), pa.array(ds.row, type=pa.int64())]
    names = ["time", "split", "row"]
    for j, name in enumerate(ds.features):
        arrays.append(pa.array(np.ascontiguousarray(ds.X[:, j]), type=pa.float64(), from_pandas=True))
        names.append(name)
    for k, h in enumerate(ds.horizons):
        arrays.append(pa.array(ds.Y[:, k], type=pa.float64()))
        names.append(target_name(h))
    table = pa.Table.from_arrays(arrays, names=names)
    meta = {"pair": ds.pair, "bqxdask_version": __version__, "seed": metrics["seed"], "purge_gap_rows": ds.gap,
            "horizons": list(ds.horizons), "lags": metrics["lags"], "families": metrics["families"]}
    table = table.replace_schema_metadata({b"bqxdask": json.dumps(meta, sort_keys=True).encode()})
    # as the feature files (outputs/parquet.py): no dictionary for unique floats, byte-stream
    # split so that zstd sees the exponent bytes together
    floats = names[3:]
    pq.write_table(table, fh, compression="zstd", use_dictionary=["split"], use_byte_stream_split=floats,
                   row_group_size=65_536)


def _top(ranking: pd.DataFrame) -> dict[int, pd.DataFrame]:
    return {int(h): g.nsmallest(TOP_N, "rank") for h, g in ranking.groupby("horizon", sort=True)}


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------
def chart_html(pair: str, top: Mapping[int, pd.DataFrame], metrics: Mapping[str, Any]) -> str:
    """Self-contained Bokeh page: one tab per horizon, horizontal bars with ±1 std whiskers."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, Div, TabPanel, Tabs, Whisker
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    panels = []
    for h, frame in top.items():
        frame = frame.iloc[::-1]  # most important at the top
        src = ColumnDataSource({
            "feature": frame["feature"].tolist(), "importance": frame["importance"].to_numpy(),
            "lower": (frame["importance"] - frame["importance_std"]).to_numpy(),
            "upper": (frame["importance"] + frame["importance_std"]).to_numpy(),
            "rank": frame["rank"].to_numpy(),
        })
        m = metrics["horizons"][str(h)]
        fig = figure(y_range=frame["feature"].tolist(), height=90 + 24 * len(frame), width=900,
                     title=f"{pair} target_h{h}: permutation importance on validation (drop in R²); "
                           f"R² valid {_fmt(m['r2_valid'])}, test {_fmt(m['r2_test'])}, zero baseline "
                           f"{_fmt(m['baseline_r2_valid'])} / {_fmt(m['baseline_r2_test'])}",
                     tools="hover,save", tooltips=[("feature", "@feature"), ("rank", "@rank"),
                                                   ("importance", "@importance{0.000000}")],
                     x_axis_label="mean drop in R² when the feature is permuted (± 1 std over repeats)")
        fig.hbar(y="feature", right="importance", height=0.7, source=src, color="#3b75af")
        fig.add_layout(Whisker(source=src, base="feature", lower="lower", upper="upper", dimension="width"))
        fig.title.text_font_size = "11pt"
        panels.append(TabPanel(child=fig, title=f"h = {h}"))
    head = Div(text=f"<h2>bqxdask select — {pair}, {metrics['months']['start']}..{metrics['months']['end']}</h2>"
                    f"<p>{metrics['feature_count']} features, top {TOP_N} per horizon; rows train "
                    f"{metrics['rows']['train']:,} / valid {metrics['rows']['valid']:,} / test "
                    f"{metrics['rows']['test']:,}, purge gap {metrics['purge_gap_rows']} rows, seed {metrics['seed']}.</p>")
    return file_html(column(head, Tabs(tabs=panels)), resources=INLINE, title=f"bqxdask select {pair}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def chart_png(pair: str, top: Mapping[int, pd.DataFrame]) -> bytes:
    """The top features as a PNG: one panel of horizontal bars per horizon (Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    bold = ImageFont.load_default(size=15)
    label_w, bar_w, row_h, pad = 380, 420, 20, 14
    heights = [40 + row_h * len(f) for f in top.values()]
    img = Image.new("RGB", (label_w + bar_w + 140, sum(heights) + pad * (len(heights) + 1)), "white")
    draw = ImageDraw.Draw(img)
    y = pad
    for (h, frame), height in zip(top.items(), heights):
        draw.text((pad, y), f"{pair} target_h{h}: permutation importance (drop in R^2 on validation)", fill="black",
                  font=bold)
        values = frame["importance"].to_numpy()
        scale = bar_w / max(float(np.max(np.abs(values))) if len(values) else 0.0, 1e-300)
        for i, (_, r) in enumerate(frame.iterrows()):
            top_y = y + 30 + i * row_h
            draw.text((pad, top_y + 2), f"{int(r['rank']):>2}. {r['feature']}"[:52], fill="black", font=font)
            length = max(0.0, float(r["importance"])) * scale
            draw.rectangle([label_w, top_y + 3, label_w + length, top_y + row_h - 3], fill="#3b75af")
            draw.text((label_w + length + 6, top_y + 2), f"{r['importance']:.2e}", fill="#333333", font=font)
        y += height + pad
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Console
# --------------------------------------------------------------------------------------------
def print_summary(out: TextIO, ds, results, ranking: pd.DataFrame, folder: str, *, seconds: float) -> None:
    """Top 10 features of the first horizon and R² per horizon against the zero baseline."""
    first = results[0].horizon
    n = {name: len(ds.part(name)) for name in ("train", "valid", "test")}
    lines = [f"{ds.pair}: rows train {n['train']:,} / valid {n['valid']:,} / test {n['test']:,} "
             f"(purge gap {ds.gap} rows), {len(ds.features)} features",
             f"  top 10 features for target_h{first} (drop in validation R² when permuted):"]
    top = ranking[ranking["horizon"] == first].nsmallest(10, "rank")
    width = max(len(f) for f in top["feature"])
    for _, r in top.iterrows():
        lines.append(f"    {int(r['rank']):>2}  {r['feature']:<{width}}  {r['importance']:+.6f} ± {r['importance_std']:.6f}")
    lines.append(f"  {'horizon':<10}{'R² valid':>11}{'R² test':>11}{'zero valid':>12}{'zero test':>11}")
    for res in results:
        lines.append(f"  h={res.horizon:<8}{res.r2_valid:>11.4f}{res.r2_test:>11.4f}"
                     f"{res.baseline_r2_valid:>12.4f}{res.baseline_r2_test:>11.4f}")
    lines.append(f"  outputs: {folder}/ ({', '.join(FILES)}) in {seconds:.0f} s")
    out.write("\n".join(lines) + "\n")
    out.flush()
