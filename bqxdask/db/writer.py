"""Writing features to PostgreSQL through binary COPY, one transaction per unit (SPEC §6).

:func:`copy_buffer` turns a time column and a float64 matrix into PostgreSQL's binary COPY
format with numpy alone: rows are grouped by their NULL pattern (NaN → NULL), each group is
one structured array whose fields are the big-endian lengths and values of that pattern. COPY
does not care about row order, and almost every row of a feature table has no NULL at all,
so in practice there are a handful of groups.

:func:`replace_unit` replaces one (family, pair, month) unit: DELETE of the month range, COPY
of the new rows and the checkpoint row (:mod:`bqxdask.checkpoints`), committed together — a rerun never duplicates and a
killed run leaves either the old unit or the new one.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import psycopg2.extensions
from psycopg2 import sql

from .. import _faults
from ..checkpoints import Checkpoint, upsert_checkpoint
from .connect import qualified, table_columns
from .locks import xact_lock
from .source import PG_EPOCH_US, bars_row_dtype

_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
#: bytes per read of :class:`CopyReader` (one CopyData message): psycopg2's default of 8 KiB
#: turns a 20 MiB unit into ~2,600 Python-level reads and libpq calls; 64 KiB is 8× fewer and
#: stays below glibc's mmap threshold (issue 15)
COPY_CHUNK = 1 << 16


def copy_buffer(times_us: np.ndarray, values: np.ndarray) -> memoryview:
    """Binary COPY payload for rows ``(time timestamptz, v0 float8, …, vC float8)``.

    ``times_us`` are Unix microseconds (int64); NaN in ``values`` (N × C) becomes NULL. The rows
    are written once, into one numpy buffer: a unit's payload is tens of MiB, and each further
    copy of it (``tobytes``, ``b"".join``) into fresh memory cost more than filling it (issue 15).
    Send it with :class:`CopyReader`.
    """
    n, ncols = values.shape
    pg_times = np.asarray(times_us, dtype="int64") - PG_EPOCH_US
    nulls = np.isnan(values)
    has_null = nulls.any(axis=1)
    full = np.flatnonzero(~has_null)
    groups: list[tuple[np.ndarray | slice, int, np.ndarray | None]] = []  # (rows, how many, NULL pattern)
    if len(full):
        # the NULL-free rows are one range in nearly every unit: taken as a view, not a copy
        clean = slice(full[0], full[-1] + 1) if full[-1] - full[0] + 1 == len(full) else full
        groups.append((clean, len(full), None))
    if len(full) < n:
        rows = np.flatnonzero(has_null)
        packed = np.ascontiguousarray(np.packbits(nulls[rows], axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse))
        start = 0
        for g, stop in enumerate(bounds):
            groups.append((rows[order[start:stop]], stop - start, nulls[rows[first[g]]]))
            start = stop
    layouts = [_dense_dtype(ncols) if pattern is None else _group_dtype(pattern) for _, _, pattern in groups]
    sizes = [count * layout.itemsize for (_, count, _), layout in zip(groups, layouts)]
    buf = _framed(sum(sizes))
    at = len(_HEADER)
    for (rows, _, pattern), layout, size in zip(groups, layouts, sizes):
        rec = buf[at : at + size].view(layout)
        if pattern is None:
            _fill_dense(rec, pg_times[rows], values[rows])
        else:
            _fill_group(rec, pg_times[rows], values[rows], pattern)
        at += size
    return memoryview(buf)


def _framed(body_bytes: int) -> np.ndarray:
    """A binary COPY payload of ``body_bytes`` of rows: the header and the trailer written, the
    rows between them left for the caller to fill in place."""
    buf = np.empty(len(_HEADER) + body_bytes + len(_TRAILER), dtype=np.uint8)
    buf[: len(_HEADER)] = np.frombuffer(_HEADER, dtype=np.uint8)
    buf[len(buf) - len(_TRAILER) :] = np.frombuffer(_TRAILER, dtype=np.uint8)
    return buf


class CopyReader:
    """A payload as the file ``cursor.copy_expert`` reads: ``read(size)`` returns the next bytes.

    psycopg2 takes ``bytes`` only, so each read copies one chunk of the payload. The chunks are
    :data:`COPY_CHUNK` bytes: below glibc's mmap threshold (128 KiB), a chunk's memory is reused
    from one read to the next instead of being mapped, page-faulted and unmapped, which Dask's
    workers (``MALLOC_TRIM_THRESHOLD_`` fixes the threshold) would do for every larger chunk.
    """

    def __init__(self, payload: bytes | memoryview) -> None:
        self._view = memoryview(payload).cast("B")
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        start = self._at
        stop = len(self._view) if size is None or size < 0 else min(len(self._view), start + size)
        self._at = stop
        return self._view[start:stop].tobytes()


def _dense_dtype(ncols: int) -> np.dtype:
    """A row without NULL: the field count, the time, and each value with its length."""
    cell = np.dtype([("l", ">i4"), ("v", ">f8")])
    return np.dtype([("n", ">i2"), ("lt", ">i4"), ("t", ">i8"), ("c", cell, (ncols,))])


def _fill_dense(rec: np.ndarray, pg_times: np.ndarray, values: np.ndarray) -> None:
    """Rows without NULL: one fixed layout, filled as a 2-D block (row-major, cache friendly)."""
    rec["n"] = values.shape[1] + 1
    rec["lt"] = 8
    rec["t"] = pg_times
    cells = rec["c"]
    cells["l"] = 8
    cells["v"] = values


def _group_dtype(null_pattern: np.ndarray) -> np.dtype:
    """A row of one NULL pattern: a NULL field is a length of -1 and no value."""
    fields: list[tuple[str, str]] = [("n", ">i2"), ("lt", ">i4"), ("t", ">i8")]
    for j, is_null in enumerate(null_pattern):
        fields.append((f"l{j}", ">i4"))
        if not is_null:
            fields.append((f"v{j}", ">f8"))
    return np.dtype(fields)


def _fill_group(rec: np.ndarray, pg_times: np.ndarray, values: np.ndarray, null_pattern: np.ndarray) -> None:
    rec["n"] = len(null_pattern) + 1
    rec["lt"] = 8
    rec["t"] = pg_times
    for j, is_null in enumerate(null_pattern):
        if is_null:
            rec[f"l{j}"] = -1
        else:
            rec[f"l{j}"] = 8
            rec[f"v{j}"] = values[:, j]


#: a source bar as seed and import write it (volume is bigint in the tables they create)
BARS_ROW = bars_row_dtype(">i8")


def copy_bars(cur: psycopg2.extensions.cursor, table: sql.Composable, bars: pd.DataFrame) -> None:
    """Binary COPY of source bars (time, open, high, low, close, volume) into ``table``.

    Used by ``seed`` and ``import``; a missing volume travels as -1 (the merge step keeps the
    stored volume then).
    """
    buf = _framed(len(bars) * BARS_ROW.itemsize)
    rows = buf[len(_HEADER) : len(buf) - len(_TRAILER)].view(BARS_ROW)
    rows["n"] = 6
    for name in ("l_time", "l_open", "l_high", "l_low", "l_close", "l_volume"):
        rows[name] = 8
    times = pd.DatetimeIndex(bars["time"]).tz_convert("UTC").as_unit("us")
    rows["time"] = times.asi8 - PG_EPOCH_US
    for c in ("open", "high", "low", "close"):
        rows[c] = bars[c].to_numpy(dtype="float64")
    volume = (
        bars["volume"].to_numpy(dtype="float64", na_value=np.nan) if "volume" in bars else np.full(len(bars), np.nan)
    )
    rows["volume"] = np.where(np.isnan(volume), -1, volume).astype("int64")
    cur.copy_expert(
        sql.SQL("COPY {} (time, open, high, low, close, volume) FROM STDIN (FORMAT binary)")
        .format(table)
        .as_string(cur.connection),
        CopyReader(buf),
        size=COPY_CHUNK,
    )


def ensure_feature_table(cur: psycopg2.extensions.cursor, schema: str, table: str, columns: Sequence[str]) -> list[str]:
    """Create ``schema.table`` (time timestamptz PRIMARY KEY, float8 columns) or add missing columns.

    The feature columns bqxdask creates get ``STATISTICS 0`` (:func:`no_column_statistics`).
    Returns the columns the existing table has beyond ``columns`` (left in place, written as NULL).
    """
    existing = table_columns(cur, schema, table)
    if not existing:
        cols = sql.SQL(", ").join(sql.SQL("{} double precision").format(sql.Identifier(c)) for c in columns)
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (time timestamptz PRIMARY KEY, {})").format(
                qualified(schema, table), cols
            )
        )
        no_column_statistics(cur, schema, table, columns)
        return []
    added = [c for c in columns if c not in existing]
    for c in added:
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} double precision").format(
                qualified(schema, table), sql.Identifier(c)
            )
        )
    no_column_statistics(cur, schema, table, added)
    return [c for c in existing if c != "time" and c not in columns]


def no_column_statistics(cur: psycopg2.extensions.cursor, schema: str, table: str, columns: Sequence[str]) -> None:
    """``ALTER COLUMN … SET STATISTICS 0`` for feature ``columns``: ANALYZE skips them (issue 15).

    ANALYZE of a freshly written wide feature table sorts its 30,000-row sample once per
    column: for the run's tables that costs the server as much as the COPY that filled them
    (5.8-7.0 core-s for 18 tables, 823 MB; 0.55 with this), and autovacuum runs it behind
    every load. Feature tables are read by ``time`` (the primary key, whose statistics stay),
    so those per-column histograms buy no plan; ``reltuples`` is still kept up to date.
    """
    if columns:
        alters = sql.SQL(", ").join(
            sql.SQL("ALTER COLUMN {} SET STATISTICS 0").format(sql.Identifier(c)) for c in columns
        )
        cur.execute(sql.SQL("ALTER TABLE {} ").format(qualified(schema, table)) + alters)


def replace_unit(
    conn: psycopg2.extensions.connection,
    schema: str,
    table: str,
    lo: dt.datetime,
    hi: dt.datetime,
    columns: Sequence[str],
    payload: bytes | memoryview | None,
    checkpoint: Checkpoint,
    run_id: str,
    *,
    before_checkpoint: Callable[[], object] | None = None,
) -> None:
    """In one transaction: delete the unit's rows, COPY the new ones, record the checkpoint.

    ``payload`` None means SQL output is disabled: only the checkpoint row is written.
    ``before_checkpoint`` runs after the COPY, inside the transaction: what else the checkpoint
    vouches for (the unit's Parquet file) is finished there, or its error rolls the unit back.
    """
    with conn.cursor() as cur:
        if payload is not None:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE time >= %s AND time < %s").format(qualified(schema, table)), (lo, hi)
            )
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in ("time", *columns))
            cur.copy_expert(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)")
                .format(qualified(schema, table), cols)
                .as_string(conn),
                CopyReader(payload),
                size=COPY_CHUNK,
            )
        if before_checkpoint is not None:
            before_checkpoint()
        _faults.point("sql-before-commit")
        upsert_checkpoint(cur, schema, checkpoint, run_id)
    conn.commit()


def replace_rejected(
    conn: psycopg2.extensions.connection,
    schema: str,
    pair: str,
    lo: dt.datetime,
    hi: dt.datetime,
    times: Sequence[dt.datetime],
    reasons: Sequence[str],
    run_id: str,
) -> None:
    """Replace the quarantined bars of one (pair, month) in ``<schema>.rejected_bars``."""
    with conn.cursor() as cur:
        # two runs replacing the same month at once would each keep their copy (no key on the table)
        xact_lock(cur, schema, "rejected_bars", pair, lo.isoformat())
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE pair = %s AND time >= %s AND time < %s").format(
                qualified(schema, "rejected_bars")
            ),
            (pair, lo, hi),
        )
        if len(times):
            buf = io.StringIO()
            for t, r in zip(times, reasons):
                buf.write(f"{pair}\t{t.isoformat()}\t{_text_escape(r)}\t{run_id}\n")
            buf.seek(0)
            cur.copy_expert(
                sql.SQL("COPY {} (pair, time, reason, run_id) FROM STDIN")
                .format(qualified(schema, "rejected_bars"))
                .as_string(conn),
                buf,
            )
    conn.commit()


def replace_null_time_rejects(
    conn: psycopg2.extensions.connection, schema: str, pair: str, reasons: Sequence[str], run_id: str
) -> None:
    """Replace the quarantined rows of ``pair`` that have no time (NULL ``time`` in the source)."""
    table = qualified(schema, "rejected_bars")
    with conn.cursor() as cur:
        xact_lock(cur, schema, "rejected_bars", pair, "null-time")
        cur.execute(sql.SQL("DELETE FROM {} WHERE pair = %s AND time IS NULL").format(table), (pair,))
        if reasons:
            buf = io.StringIO("".join(f"{pair}\t\\N\t{_text_escape(r)}\t{run_id}\n" for r in reasons))
            cur.copy_expert(
                sql.SQL("COPY {} (pair, time, reason, run_id) FROM STDIN").format(table).as_string(conn), buf
            )
    conn.commit()


def _text_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")
