"""Sizing a run before it starts: output bytes, connections and wall time (``features --dry-run``).

Throughput comes from measurements, not guesses: the newest ``runs/*/summary.json`` on this
machine that computed a family (task seconds per row, SQL and Parquet writes included), or,
where no run has, the per-core numbers ``make bench`` measured when this file was last updated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config

if TYPE_CHECKING:  # the registry imports every family (TA-Lib…); check needs only the sizes here
    from ..plan import Plan

#: task seconds per source row per family on one worker (compute + SQL COPY + Parquet), median
#: of 3 runs of benchmarks/bench_pipeline.py on the 2-core development machine (2026-11-28,
#: 2 pairs × 3 months, all families, PostgreSQL on the same cores).
DEFAULT_SECONDS_PER_ROW = {
    "bqx": 1.1e-5,
    "bollinger_rate": 5.6e-6,
    "bollinger_bqx": 5.9e-6,
    "statistics_rate": 1.2e-5,
    "statistics_bqx": 1.3e-5,
    "technical_rate": 4.1e-6,
    "technical_bqx": 2.4e-6,
    "reg_rate": 2.5e-5,
    "reg_bqx": 2.1e-5,
}
#: reading + quarantine + index/BQX preparation, per source row
DEFAULT_PREPARE_SECONDS_PER_ROW = 1.2e-6
#: Parquet bytes on disk per float64 value (zstd + byte-stream split; outputs/parquet.py):
#: 23.4 MB for 33,093 rows × 111 columns; 4.8 (statistics) to 6.9 (reg_bqx) on EURUSD 2017
PARQUET_BYTES_PER_VALUE = 6.3
CLUSTER_START_SECONDS = 5.0


@dataclass(frozen=True)
class Estimate:
    rows: int
    values: int
    sql_bytes: int
    parquet_bytes: int
    core_seconds: float
    throughput_source: str

    def wall_seconds(self, workers: int) -> float:
        return CLUSTER_START_SECONDS + self.core_seconds / max(1, workers)


def measured_seconds_per_row(runs_dir: str | Path) -> tuple[dict[str, float], str]:
    """Per-family task seconds per row from the newest run that computed each family."""
    found: dict[str, float] = {}
    source = "defaults measured by make bench"
    root = Path(runs_dir)
    summaries = sorted(root.glob("*/summary.json"), reverse=True) if root.is_dir() else []
    for path in summaries:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for row in data.get("per_family", []):
            fam, rows, secs = row.get("family"), row.get("rows", 0), row.get("seconds", 0.0)
            if fam and fam not in found and rows and secs:
                found[fam] = secs / rows
                source = f"measured by recent runs in {root}/"
        if found.keys() >= DEFAULT_SECONDS_PER_ROW.keys():
            break  # every family has its newest measurement
    return {**DEFAULT_SECONDS_PER_ROW, **found}, source


def sql_row_bytes(n_columns: int) -> int:
    """On-disk bytes of one feature-table row in PostgreSQL: heap tuple + primary-key index entry.

    Heap: 4 B line pointer + 23 B tuple header and a null bitmap (the NaN→NULL warm-up rows
    carry one), padded to 8 B, + 8 B per column (time and the float8 features). Index: the
    btree entry on ``time`` (8 B header + 8 B key + 4 B line pointer) at the 90 % fill factor.
    Page headers and free-space slack add about 2 % more, which the caller's rounding covers.
    """
    header = 23 + math.ceil((n_columns + 1) / 8)
    header = (header + 7) // 8 * 8
    return 4 + header + 8 * (n_columns + 1) + math.ceil(20 / 0.9)


def parquet_bytes(rows: int, n_columns: int, per_value: float = PARQUET_BYTES_PER_VALUE) -> float:
    """Bytes of the Parquet files of ``rows`` rows of a family with ``n_columns`` features.

    ``per_value`` is measured over every column of the files, ``time`` included, so it applies
    to ``n_columns + 1`` columns.
    """
    return rows * (n_columns + 1) * per_value


def estimate(plan: Plan, cfg: Config) -> Estimate:
    from ..features import registry

    per_row, source = measured_seconds_per_row(cfg.run.runs_dir)
    n_cols = {f: len(registry.get(f).column_names(cfg.families)) for f in plan.families}
    values = sql_bytes = 0
    pq_bytes = core = 0.0
    for unit in plan.units:
        if not unit.todo:
            continue
        core += unit.rows * DEFAULT_PREPARE_SECONDS_PER_ROW
        for fam in unit.todo:
            values += unit.rows * n_cols[fam]
            sql_bytes += unit.rows * sql_row_bytes(n_cols[fam])
            pq_bytes += parquet_bytes(unit.rows, n_cols[fam])
            core += unit.rows * per_row.get(fam, max(per_row.values()))
    return Estimate(
        plan.rows_to_compute(),
        values,
        sql_bytes if cfg.output.write_sql else 0,
        int(pq_bytes) if cfg.output.write_parquet else 0,
        core,
        source,
    )
