"""The database floor: what PostgreSQL itself needs to move the run's bytes, one session (issue 6).

(a) ``COPY (SELECT time, open, high, low, close, volume …) TO STDOUT (FORMAT binary)`` of the
source bars the run reads (each month and its warm-up rows), into memory;
(b) binary ``COPY … FROM STDIN`` of exactly the rows and columns the run wrote, dumped from its
feature tables (not timed) into empty tables with the same primary key, one transaction per
(family, pair, month) as the run. Floor = (a) + (b). The same load over 2 sessions is
measured too (the run uses 2 workers).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from psycopg2 import sql
from scratch import SRC, execute

from bqxdask.calendar import month_bounds, month_range
from bqxdask.db.connect import connect, qualified, table_columns
from bqxdask.db.schema import feature_table, source_table
from bqxdask.db.source import copy_out
from bqxdask.db.writer import BARS_ROW, no_column_statistics
from bqxdask.plan import warmup_read_rows

#: bytes of a binary COPY stream that are not rows: the 19-byte header and the 2-byte trailer
COPY_FRAME_BYTES = 21


def unit_list(pairs: Sequence[str], start: str, end: str) -> list[tuple[str, str]]:
    return [(p, m) for p in pairs for m in month_range(start, end)]


def floor_copy_out(url: str, units: Sequence[tuple[str, str]], warmup: int) -> tuple[int, int]:
    """Binary COPY TO STDOUT of every month and its warm-up rows; returns (rows, bytes)."""
    conn = connect(url)
    rows = nbytes = 0
    try:
        with conn.cursor() as cur:
            for pair, month in units:
                lo, hi = month_bounds(month)
                table = qualified(SRC, source_table(pair))
                cols = sql.SQL("SELECT time, open, high, low, close, volume FROM {}").format(table)
                for q in (
                    sql.SQL("{} WHERE time >= {} AND time < {}").format(cols, sql.Literal(lo), sql.Literal(hi)),
                    sql.SQL("{} WHERE time < {} ORDER BY time DESC LIMIT {}").format(
                        cols, sql.Literal(lo), sql.Literal(warmup_read_rows(warmup))
                    ),
                ):
                    data = copy_out(cur, q)
                    nbytes += len(data)
                    rows += (len(data) - COPY_FRAME_BYTES) // BARS_ROW.itemsize
        conn.rollback()
    finally:
        conn.close()
    return rows, nbytes


@dataclass(frozen=True)
class Dump:
    """One (family, pair, month) unit the run wrote, as a binary COPY file."""

    family: str
    pair: str
    month: str
    table: str
    path: Path
    rows: int
    columns: int
    nbytes: int


def create_floor_tables(cur, schema: str, floor_schema: str, done: Sequence[dict]) -> None:
    """Empty tables LIKE the run's feature tables (same primary key, and the same per-column
    statistics targets, which LIKE does not copy), in ``floor_schema``."""
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(floor_schema)))
    for t in sorted({feature_table(r["family"], r["pair"]) for r in done}):
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)").format(
                qualified(floor_schema, t), qualified(schema, t)
            )
        )
        no_column_statistics(cur, floor_schema, t, [c for c in table_columns(cur, schema, t) if c != "time"])


def dump_unit(conn, cur, schema: str, r: dict, dump_dir: Path) -> Dump:
    """COPY TO a file the rows of unit ``r`` (a ``RunResult.results`` row); checks their count."""
    lo, hi = month_bounds(r["month"])
    table = feature_table(r["family"], r["pair"])
    path = dump_dir / f"{table}_{r['month']}.bin"
    q = sql.SQL("SELECT * FROM {} WHERE time >= {} AND time < {}").format(
        qualified(schema, table), sql.Literal(lo), sql.Literal(hi)
    )
    with open(path, "wb") as fh:
        cur.copy_expert(sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(q).as_string(conn), fh)
    cur.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE time >= %s AND time < %s").format(qualified(schema, table)), (lo, hi)
    )
    n = cur.fetchone()[0]
    if n != r["rows"]:
        raise RuntimeError(f"{schema}.{table} {r['month']}: {n} rows in SQL, the run reported {r['rows']}")
    return Dump(r["family"], r["pair"], r["month"], table, path, n, r["columns"], path.stat().st_size)


def dump_outputs(url: str, cfg, result, dump_dir: Path, floor_schema: str) -> list[Dump]:
    """Binary COPY TO files of every unit the run wrote; empty floor tables LIKE the run's."""
    dump_dir.mkdir(parents=True, exist_ok=True)
    schema = cfg.database.output_schema
    done = sorted(
        (r for r in result.results if r["status"] == "done"), key=lambda r: (r["family"], r["pair"], r["month"])
    )
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            create_floor_tables(cur, schema, floor_schema, done)
            conn.commit()
            dumps = [dump_unit(conn, cur, schema, r, dump_dir) for r in done]
        conn.rollback()
    finally:
        conn.close()
    return dumps


def copy_in(conn, schema: str, dump: Dump) -> float:
    """One dump into its floor table, one transaction; seconds."""
    t0 = time.perf_counter()
    with conn.cursor() as cur, open(dump.path, "rb") as fh:
        cur.copy_expert(
            sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(qualified(schema, dump.table)).as_string(conn),
            fh,
            size=1 << 20,
        )
    conn.commit()
    return time.perf_counter() - t0


def truncate(url: str, schema: str, dumps: Sequence[Dump]) -> None:
    tables = sorted({d.table for d in dumps})
    execute(url, sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(qualified(schema, t) for t in tables)), "CHECKPOINT")


def settle(url: str, schema: str, dumps: Sequence[Dump]) -> None:
    """VACUUM (ANALYZE) the floor's freshly loaded tables, not timed.

    Otherwise the autovacuum they trigger (ANALYZE of the freshly loaded tables: its first
    read sets every row's hint bits, issue 15) runs during whatever is measured next — the
    run — and is charged to it. The
    run's own tables are dropped right after it, so they leave nothing behind.
    """
    tables = sorted({d.table for d in dumps})
    execute(url, sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(qualified(schema, t) for t in tables)))


def floor_copy_in(url: str, schema: str, dumps: Sequence[Dump]) -> tuple[float, dict[Dump, float]]:
    """One session, one transaction per (family, pair, month) dump, into empty tables."""
    truncate(url, schema, dumps)
    conn = connect(url)
    try:
        per = {d: copy_in(conn, schema, d) for d in dumps}
    finally:
        backend = conn.get_backend_pid()
        conn.close()
        wait_reaped(backend)
    return sum(per.values()), per


def wait_reaped(pid: int, timeout: float = 5.0) -> None:
    """Wait until the server has reaped backend ``pid``: only then is its CPU in the
    postmaster's children times (a snapshot taken before missed the floor's whole session)."""
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def floor_copy_in_parallel(url: str, schema: str, dumps: Sequence[Dump], sessions: int) -> float:
    """The same COPYs spread over ``sessions`` connections (threads); wall seconds."""
    truncate(url, schema, dumps)
    order = sorted(dumps, key=lambda d: -d.nbytes)
    lanes: list[list[Dump]] = [order[i::sessions] for i in range(sessions)]
    errors: list[BaseException] = []
    backends: list[int] = []

    def lane(items: list[Dump]) -> None:
        try:
            conn = connect(url)
            try:
                for d in items:
                    copy_in(conn, schema, d)
            finally:
                backends.append(conn.get_backend_pid())
                conn.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(items,)) for items in lanes]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t = time.perf_counter() - t0
    for pid in backends:  # as floor_copy_in: the caller's CPU snapshot must see the sessions' CPU
        wait_reaped(pid)
    if errors:
        raise errors[0]
    return t


def floor_by(per_dump: dict[Dump, float], key: Callable[[Dump], Any]) -> dict[Any, float]:
    """The floor's COPY seconds summed per ``key(dump)`` (a family, a (pair, month) unit)."""
    out: dict[Any, float] = defaultdict(float)
    for d, t in per_dump.items():
        out[key(d)] += t
    return dict(out)
