"""What runs on the Dask workers: read → quarantine → prepare → compute → write (SPEC §3–§6).

Everything a task needs travels in a :class:`UnitSpec` of plain values (URL strings, numbers,
frozen config dataclasses): no engine, connection or open file crosses a process boundary,
so the same graph runs on a LocalCluster or on any existing Dask cluster.

Each function is idempotent — a task that a killed worker leaves half done is simply run
again: SQL units are replaced in one transaction, Parquet files renamed into place, the
checkpoint written last.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import __version__, _faults
from .config import FamiliesConfig
from .db import pool
from .db.schema import feature_table
from .db.source import SourceTable, read_before, read_range
from .db.writer import copy_buffer, replace_rejected, replace_unit
from .features import registry
from .features.index import validate_bars
from .features.prepare import prepare
from .outputs import parquet
from .plan import Checkpoint, warmup_read_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitSpec:
    """Everything the tasks of one (pair, month) unit need, as plain picklable values."""

    url: str
    read_url: str
    source: SourceTable
    output_schema: str
    pair: str
    month: str
    lo: dt.datetime
    hi: dt.datetime
    warmup: int
    baseline: float
    families: FamiliesConfig
    run_id: str
    fingerprint: str
    config_hashes: dict[str, str] = field(hash=False)
    parquet_dir: str | None
    write_sql: bool
    max_connections: int


@dataclass
class Prepared:
    """The prepared frame of a unit: warm-up rows first, then the month's accepted bars."""

    frame: pd.DataFrame
    n_warm: int
    rows: int
    rejected: int
    duplicates: int
    seconds: float


# -- reading ----------------------------------------------------------------------------------
def read_month(spec: UnitSpec) -> pd.DataFrame:
    """Raw bars of the unit's month (the body of the Dask ``from_map`` partitions)."""

    def step() -> pd.DataFrame:
        with pool.pooled(spec.read_url, spec.max_connections) as conn, conn.cursor() as cur:
            frame = read_range(cur, spec.source, spec.lo, spec.hi)
            conn.rollback()
            return frame

    return pool.retrying(step, url=spec.read_url, what=f"reading {spec.source.label} {spec.month}")


def read_warmup(spec: UnitSpec) -> pd.DataFrame:
    """The last ``spec.warmup`` *accepted* bars before the month (fewer at the series start)."""
    if spec.warmup == 0:
        return read_range_empty()
    limit = warmup_read_rows(spec.warmup)

    def step() -> pd.DataFrame:
        nonlocal limit
        with pool.pooled(spec.read_url, spec.max_connections) as conn, conn.cursor() as cur:
            while True:
                raw, full = read_before(cur, spec.source, spec.lo, limit)
                if full and len(raw):
                    # the oldest time may have more rows beyond the limit: judge it another time
                    raw = raw[raw.index > raw.index[0]]
                accepted, _ = validate_bars(raw)
                if len(accepted) >= spec.warmup or not full:
                    conn.rollback()
                    return accepted.iloc[-spec.warmup:]
                limit *= 2

    return pool.retrying(step, url=spec.read_url, what=f"reading the warm-up of {spec.source.label} {spec.month}")


def read_range_empty() -> pd.DataFrame:
    from .db.source import BARS_META

    return BARS_META.copy()


# -- preparing --------------------------------------------------------------------------------
def prepare_unit(raw: pd.DataFrame, warm: pd.DataFrame, spec: UnitSpec) -> Prepared:
    """Quarantine the month's bad bars (SPEC §3), then build the prepared frame with warm-up."""
    t0 = time.perf_counter()
    accepted, rejected = validate_bars(raw)
    duplicates = len(raw) - len(accepted) - len(rejected)

    def record() -> None:
        with pool.pooled(spec.url, spec.max_connections) as conn:
            replace_rejected(conn, spec.output_schema, spec.pair, spec.lo, spec.hi,
                             [t.to_pydatetime() for t in rejected["time"]], list(rejected["reason"]), spec.run_id)

    pool.retrying(record, url=spec.url, what=f"recording rejected bars of {spec.pair} {spec.month}")
    bars = pd.concat([warm, accepted]) if len(warm) else accepted
    frame = prepare(bars, spec.baseline, spec.families) if len(bars) else _empty_prepared()
    return Prepared(frame, len(warm), len(accepted), len(rejected), duplicates, time.perf_counter() - t0)


def _empty_prepared() -> pd.DataFrame:
    cols = {c: pd.Series([], dtype="float64") for c in ("open_idx", "high_idx", "low_idx", "idx", "bqx")}
    return pd.DataFrame(cols, index=pd.DatetimeIndex([], tz="UTC", name="time"))


# -- computing and writing --------------------------------------------------------------------
def compute_and_write(prepared: Prepared, family_name: str, spec: UnitSpec) -> dict[str, Any]:
    """Compute one family for the unit, write Parquet then SQL + checkpoint; return its stats."""
    family = registry.get(family_name)
    columns = family.column_names(spec.families)
    t0 = time.perf_counter()
    _faults.point("compute")
    result = family.compute(prepared.frame, spec.families).iloc[prepared.n_warm:]
    t1 = time.perf_counter()
    times_us = result.index.as_unit("us").asi8 if len(result) else np.empty(0, dtype="int64")
    values = result.to_numpy(dtype="float64")
    parquet_path = None
    if spec.parquet_dir is not None:
        meta = {
            "bqxdask_version": __version__,
            "family": family_name,
            "pair": spec.pair,
            "month": spec.month,
            "config_hash": spec.config_hashes[family_name],
            "fingerprint": spec.fingerprint,
            "params": _params(family_name, spec.families),
            "talib_version": _talib_version(),
            "run_id": spec.run_id,
            "baseline": spec.baseline,
        }
        parquet_path = parquet.write_unit(spec.parquet_dir, family_name, spec.pair, spec.month, times_us,
                                          columns, values, meta)
    t2 = time.perf_counter()
    checkpoint = Checkpoint(family_name, spec.pair, spec.month, spec.config_hashes[family_name], spec.fingerprint,
                            len(result), prepared.rejected, spec.write_sql, spec.parquet_dir is not None)
    payload = copy_buffer(times_us, values) if spec.write_sql else None

    def write() -> None:
        with pool.pooled(spec.url, spec.max_connections) as conn:
            replace_unit(conn, spec.output_schema, feature_table(family_name, spec.pair), spec.lo, spec.hi,
                         columns, payload, checkpoint, spec.run_id)

    pool.retrying(write, url=spec.url, what=f"writing {family_name}_{spec.pair} {spec.month}")
    t3 = time.perf_counter()
    return {
        "family": family_name, "pair": spec.pair, "month": spec.month, "status": "done",
        "rows": len(result), "columns": len(columns), "rejected": prepared.rejected,
        "duplicates": prepared.duplicates, "warmup_rows": prepared.n_warm,
        "seconds_compute": t1 - t0, "seconds_parquet": t2 - t1, "seconds_sql": t3 - t2,
        "seconds_prepare": prepared.seconds, "seconds": t3 - t0, "parquet": parquet_path,
        "sql_bytes": len(payload) if payload is not None else 0,
    }


def _params(family_name: str, families: FamiliesConfig) -> dict[str, Any]:
    from dataclasses import asdict

    fam = registry.get(family_name)
    out = {"section": fam.section, **asdict(fam.params(families))}
    if fam.input == "bqx":
        out["series_window"] = families.bqx.series_window
    return out


def _talib_version() -> str:
    from .features.technical import talib_version

    return talib_version()
