"""The output size group: what the run writes, against the free disk where it lands (SPEC §6, §8).

The rows of the requested months (counted in the source tables, else assumed per pair-month)
× the enabled families' columns, as Parquet — bytes per value measured on this machine's
existing outputs, else assumed — and as PostgreSQL tuples (:func:`bqxdask.pipeline.estimate.sql_row_bytes`).
Estimates landing on the same filesystem are added up before they are compared with its free
space: ⚠️ above half of it, ❌ above 90 %.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dask.utils import format_bytes

from ..config import Config
from ..errors import OutputError
from ..outputs.locations import is_remote, nearest_existing
from ..pipeline.estimate import PARQUET_BYTES_PER_VALUE, parquet_bytes, sql_row_bytes
from .cluster import ASSUMED_BARS_PER_MONTH, PlanFacts, planned_rows
from .database import DatabaseFacts
from .findings import FAIL, OK, WARN, Check, pct

GROUP = "output size"
#: output size against free disk: ⚠️ above the first share, ❌ above the second
DISK_WARN, DISK_FAIL = 0.50, 0.90
#: Parquet bytes per float64 value, as a share of 8 B, when no output exists yet to measure
ASSUMED_PARQUET_RATIO = PARQUET_BYTES_PER_VALUE / 8


def measured_parquet_ratio(root: str, families: Iterable[str], max_files: int = 24) -> dict[str, tuple[float, int]]:
    """Per family with existing unit files: (Parquet bytes / (8 B × values), files measured).

    Values count the ``time`` column too. At most ``max_files`` files per family are read (their
    footers only), so this stays fast on a large output directory.
    """
    import pyarrow.parquet as pq

    from ..outputs.parquet import unit_files

    if is_remote(root) or not Path(root).is_dir():
        return {}
    out = {}
    for fam in families:
        size = values = files = 0
        try:
            paths = [Path(p) for _, _, p in unit_files(root, fam, None, None, None)][-max_files:]
        except OutputError:  # no output of this family yet
            continue
        for path in paths:
            try:
                meta = pq.read_metadata(path)
                stat = path.stat()
            except Exception:  # a corrupt file is the features run's business, not ours
                continue
            if meta.num_rows == 0:
                continue
            size += stat.st_size
            values += meta.num_rows * meta.num_columns
            files += 1
        if values:
            out[fam] = (size / (8 * values), files)
    return out


def sizing_group(cfg: Config, plan: PlanFacts, database: DatabaseFacts) -> list[Check]:
    """The Parquet and SQL estimates, then one disk line per local filesystem they land on."""
    from ..features import registry

    if not plan.families:
        return [Check(GROUP, "estimate", WARN, "no enabled family is available in this build: nothing to estimate")]
    known = registry.all_families()
    cols = {f: len(known[f].column_names(cfg.families)) for f in plan.families}
    rows, measured_rows, assumed_pairs = planned_rows(cfg, database.rows)
    if assumed_pairs and not measured_rows:
        reason = database.reason or "the source tables were not assessed"
        basis = f"{rows:,} rows assumed ({ASSUMED_BARS_PER_MONTH:,} bars per pair-month; {reason})"
    elif assumed_pairs:
        basis = (
            f"{rows:,} rows ({', '.join(assumed_pairs)}: no usable table, assumed "
            f"{ASSUMED_BARS_PER_MONTH:,} bars per month)"
        )
    else:
        basis = f"{rows:,} source rows in the requested months"
    values_n = rows * sum(c + 1 for c in cols.values())  # +1: time
    raw = 8 * values_n
    checks = []
    loads: dict[int, dict[str, Any]] = {}  # per filesystem: where each estimate lands

    def add_load(path: str, label: str, nbytes: float) -> None:
        base = nearest_existing(path)
        entry = loads.setdefault(
            base.stat().st_dev, {"path": str(path), "free": shutil.disk_usage(base).free, "bytes": 0.0, "what": []}
        )
        entry["bytes"] += nbytes
        entry["what"].append(label)

    if cfg.output.write_parquet:
        measured = measured_parquet_ratio(cfg.output.parquet_dir, plan.families)
        ratios = {f: measured[f][0] if f in measured else ASSUMED_PARQUET_RATIO for f in cols}
        pq_bytes = sum(parquet_bytes(rows, c, 8 * ratios[f]) for f, c in cols.items())
        per_value = pq_bytes / values_n if values_n else 0.0
        assumed = f"{8 * ASSUMED_PARQUET_RATIO:.1f} B/value assumed (float64 features barely compress)"
        if len(measured) == len(cols):
            how = f"{per_value:.1f} B/value measured on {sum(n for _, n in measured.values())} existing files"
        elif measured:
            how = (
                f"{per_value:.1f} B/value: measured on existing files of {', '.join(measured)}; for the "
                f"others {assumed}"
            )
        else:
            how = f"{assumed}; no outputs to measure yet"
        values = {
            "rows": rows,
            "values": values_n,
            "raw_bytes": raw,
            "bytes_per_value": per_value,
            "measured_families": sorted(measured),
            "estimate_bytes": pq_bytes,
        }
        detail = f"≈ {format_bytes(int(pq_bytes))}: {basis} × {sum(cols.values()) + len(cols)} columns, {how}"
        if is_remote(cfg.output.parquet_dir):
            checks.append(Check(GROUP, "Parquet", OK, detail + "; remote storage: free space not checked", values))
        else:
            add_load(cfg.output.parquet_dir, "Parquet", pq_bytes)
            checks.append(Check(GROUP, "Parquet", OK, detail, values))
    else:
        checks.append(Check(GROUP, "Parquet", OK, "output.write_parquet = false: no Parquet written"))

    if cfg.output.write_sql:
        sql_bytes = float(sum(rows * sql_row_bytes(c) for c in cols.values()))
        values = {"rows": rows, "estimate_bytes": sql_bytes, "overhead": round(sql_bytes / raw, 2) if raw else None}
        detail = (
            f"≈ {format_bytes(int(sql_bytes))} in PostgreSQL ({values['overhead']}× the raw 8 B/value: tuple "
            "headers, null bitmaps, the time primary key)"
        )
        if database.embedded:
            add_load(cfg.database.embedded_dir, "SQL (embedded)", sql_bytes)
            checks.append(Check(GROUP, "SQL", OK, detail + "; the embedded database's disk is checked below", values))
        else:
            checks.append(
                Check(
                    GROUP,
                    "SQL",
                    OK,
                    detail + "; the database server's disk is not visible from this "
                    "client: make sure it has that much free (plus WAL while loading)",
                    values,
                )
            )
    else:
        checks.append(Check(GROUP, "SQL", OK, "output.write_sql = false: no feature tables written"))

    for entry in loads.values():
        need, free = entry["bytes"], entry["free"]
        values = {
            "path": entry["path"],
            "needed_bytes": need,
            "free_bytes": free,
            "share": need / free if free else None,
        }
        base = (
            f"{' + '.join(entry['what'])}: {format_bytes(int(need))} of {format_bytes(free)} free at "
            f"{entry['path']} ({pct(need, free)})"
        )
        fix = "fix: free disk space, move output.parquet_dir, or run fewer months at a time"
        if not free or need > DISK_FAIL * free:
            checks.append(Check(GROUP, "disk", FAIL, f"{base}: the disk would fill up; {fix}", values))
        elif need > DISK_WARN * free:
            checks.append(Check(GROUP, "disk", WARN, f"{base}: more than half the free space; {fix}", values))
        else:
            checks.append(Check(GROUP, "disk", OK, base, values))
    return checks
