"""The "before" column: the old per-partition scripts (:mod:`old_way`) timed and extrapolated.

Timed on the first pair-month: the reads of every unit in full, the vectorised parts of each
family on the whole unit, ``rolling().apply`` and rolling ``np.polyfit`` on a sample of rows,
row-by-row INSERT (and two reference write paths) on a sample of rows per family — and
extrapolated to the run's rows (the report says so). The old way's values are compared
with bqxdask's on its sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import old_way as old
import pandas as pd
from psycopg2 import sql
from scratch import SRC, Bench, drop_schema, execute
from timing import timed

from bqxdask.db.connect import connect, qualified
from bqxdask.db.schema import feature_table
from bqxdask.db.writer import ensure_feature_table
from bqxdask.features import registry
from bqxdask.features.prepare import prepare
from bqxdask.plan import warmup_read_rows
from bqxdask.quality import validate_bars

SCHEMA = "old_way"


def old_way(bench: Bench, specs: dict[str, list], total_rows: int, sample: int, insert_sample: int) -> dict[str, Any]:
    """Time the old per-partition scripts (see :mod:`old_way`) and extrapolate to the run."""
    all_specs = [sp for pair_specs in specs.values() for sp in pair_specs]
    spec = all_specs[0]
    eng = old.engine(bench.url)
    try:
        # 1. read, every unit, in full
        t_read, frames = timed(
            lambda: [
                old.read_partition(eng, SRC, sp.pair, sp.lo, sp.hi, warmup_read_rows(sp.warmup)) for sp in all_specs
            ]
        )
        bars, n_warm = frames[0]
        rows_unit = len(bars) - n_warm
        start = max(n_warm, len(bars) - sample)  # the last `sample` rows of the month: every window is full
        # 2. features: vectorised parts on the whole unit, the slow ones on `sample` rows
        fam_t, frames_new = features(bench.setup.families, spec, bars, start, total_rows / rows_unit, total_rows)
        agree = agreement(frames_new, spec, bars, n_warm, start)
        # 3. write: row-by-row INSERT (and the two reference paths) on `insert_sample` rows per family
        write = writes(bench, eng, spec, frames_new, insert_sample, total_rows)
    finally:
        eng.dispose()
    return {
        "read": t_read,
        "families": fam_t,
        "write": write,
        "agreement": agree,
        "sample_unit": f"{spec.pair} {spec.month}",
        "rows_unit": rows_unit,
        "sample_rows": len(bars) - start,
        "insert_rows": insert_sample,
        "total_rows": total_rows,
    }


def features(
    families, spec, bars: pd.DataFrame, start: int, scale: float, total_rows: int
) -> tuple[dict[str, dict[str, Any]], dict[str, pd.DataFrame]]:
    """Each family the old way: seconds extrapolated to the run, and its frame on the sampled rows."""
    from bqxdask.features.bqx import bqx_return

    fc = spec.families
    ix = old.index_frame(bars, spec.baseline)
    idx = ix["idx"]
    series = pd.Series(bqx_return(idx.to_numpy(), fc.bqx.series_window), index=idx.index)
    n = len(idx)
    fam_t: dict[str, dict[str, Any]] = {}
    frames_new: dict[str, pd.DataFrame] = {}
    for name in families:
        whole, sampled, assemble = old.family_parts(name, ix, series, fc, start, n)
        full_s, whole_out = timed(whole) if whole else (0.0, None)
        sample_s, sampled_out = timed(sampled) if sampled else (0.0, None)
        out = assemble(whole_out, sampled_out)[registry.get(name).column_names(fc)]
        out = out.iloc[-(n - start) :] if len(out) > n - start else out
        frames_new[name] = out
        extrapolated = full_s * scale + sample_s / (n - start) * total_rows
        fam_t[name] = {
            "seconds": extrapolated,
            "measured_full_unit": full_s,
            "measured_sample": sample_s,
            "sample_rows": (n - start) if sample_s else 0,
        }
    return fam_t, frames_new


def writes(
    bench: Bench, eng, spec, frames_new: dict[str, pd.DataFrame], insert_sample: int, total_rows: int
) -> dict[str, dict[str, float]]:
    """INSERT, ``to_sql`` and CSV COPY of ``insert_sample`` rows per family, extrapolated to the run."""
    conn = connect(bench.url)
    write: dict[str, dict[str, float]] = {}
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
            for name in frames_new:
                ensure_feature_table(
                    cur, SCHEMA, feature_table(name, spec.pair), registry.get(name).column_names(spec.families)
                )
        conn.commit()
        for name, frame_all in frames_new.items():
            frame = frame_all.iloc[-insert_sample:]
            table = feature_table(name, spec.pair)
            truncate = sql.SQL("TRUNCATE {}").format(qualified(SCHEMA, table))
            seconds = {}
            for path, write_rows in (
                ("insert", lambda f, t: old.insert_rows(conn, SCHEMA, t, f)),
                ("to_sql", lambda f, t: old.to_sql_default(eng, SCHEMA, t, f)),
                ("csv_copy", lambda f, t: old.csv_copy(conn, SCHEMA, t, f)),
            ):
                seconds[path], _ = timed(lambda w=write_rows, f=frame, t=table: w(f, t))
                execute(bench.url, truncate)
            k = total_rows / len(frame)
            write[name] = {**{p: s * k for p, s in seconds.items()}, "rows": len(frame)}
    finally:
        conn.close()
        drop_schema(bench.url, SCHEMA)
    return write


def agreement(
    frames_old: dict[str, pd.DataFrame], spec, bars: pd.DataFrame, n_warm: int, start: int
) -> dict[str, float]:
    """Worst |old − bqxdask| / max(1, |bqxdask|) per family on the rows the old way computed."""
    accepted, _ = validate_bars(bars.iloc[n_warm:])
    frame = prepare(pd.concat([bars.iloc[:n_warm], accepted]), spec.baseline, spec.families)
    out = {}
    for name, got in frames_old.items():
        ref = registry.get(name).compute(frame, spec.families).loc[got.index, list(got.columns)]
        a, e = got.to_numpy(float), ref.to_numpy(float)
        both = np.isfinite(a) & np.isfinite(e)
        mismatch_nan = int((np.isfinite(a) != np.isfinite(e)).sum())
        rel = np.abs(a - e)[both] / np.maximum(1.0, np.abs(e[both]))
        out[name] = float(rel.max()) if rel.size else 0.0
        if mismatch_nan:
            out[f"{name}_nan_mismatch"] = float(mismatch_nan)
    return out
