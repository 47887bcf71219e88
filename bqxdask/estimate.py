"""Sizing a run before it starts: output bytes, connections and wall time (``features --dry-run``).

Throughput comes from measurements, not guesses: the newest ``runs/*/summary.json`` on this
machine that computed a family (task seconds per row, SQL and Parquet writes included), or,
where no run has, the per-core numbers ``make bench`` measured when this file was last updated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .features import registry
from .plan import Plan

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
#: bytes on disk per value: PostgreSQL heap (8 B + tuple header share) and Parquet (zstd + byte-stream-split)
SQL_TUPLE_OVERHEAD = 24 + 8 + 4  # header, time, alignment/null bitmap
SQL_INDEX_BYTES_PER_ROW = 24
PARQUET_BYTES_PER_VALUE = 6.3  # measured: 23.4 MB for 33,093 rows × 111 columns
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
    return {**DEFAULT_SECONDS_PER_ROW, **found}, source


def estimate(plan: Plan, cfg: Config) -> Estimate:
    per_row, source = measured_seconds_per_row(cfg.run.runs_dir)
    rows = values = sql_bytes = 0
    core = 0.0
    for unit in plan.units:
        if not unit.todo:
            continue
        rows += unit.rows
        core += unit.rows * DEFAULT_PREPARE_SECONDS_PER_ROW
        for fam in unit.todo:
            n_cols = len(registry.get(fam).column_names(cfg.families))
            values += unit.rows * n_cols
            sql_bytes += unit.rows * (SQL_TUPLE_OVERHEAD + 8 * n_cols + SQL_INDEX_BYTES_PER_ROW)
            core += unit.rows * per_row.get(fam, max(per_row.values()))
    parquet_bytes = int(values * PARQUET_BYTES_PER_VALUE)
    return Estimate(rows, values, sql_bytes if cfg.output.write_sql else 0,
                    parquet_bytes if cfg.output.write_parquet else 0, core, source)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError  # pragma: no cover


def human_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"
