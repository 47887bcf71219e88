"""Reading source bars (SPEC §3, §5): survey, warm-up and month reads through binary COPY.

The month read is the body of the Dask ``from_map`` partitions (see :mod:`bqxdask.read`):
``COPY (SELECT …) TO STDOUT (FORMAT binary)`` parsed straight into numpy — every row has the
same six 8-byte fields (NULL prices arrive as NaN and are quarantined downstream), so the
whole buffer is one structured-array view. That is what keeps the read path near the
database's own COPY speed; psycopg2's row fetching is several times slower.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg2.extensions
from psycopg2 import sql

from ..checkpoints import MonthStats
from ..errors import SourceError
from .connect import qualified, table_columns
from .schema import source_table

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_PRICE = ("open", "high", "low", "close")
_TIME_TYPES = ("timestamp with time zone", "timestamp without time zone")
_NUMERIC_TYPES = ("double precision", "real", "numeric", "integer", "bigint", "smallint")


def bars_row_dtype(volume: str) -> np.dtype:
    """One bar as a binary COPY row: field count, then (length, value) per field, big-endian."""
    fields = [("n", ">i2"), ("l_time", ">i4"), ("time", ">i8")]
    for col in _PRICE:
        fields += [(f"l_{col}", ">i4"), (col, ">f8")]
    return np.dtype([*fields, ("l_volume", ">i4"), ("volume", volume)])


#: what the month read receives: volume cast to float8 by the SELECT
ROW_DTYPE = bars_row_dtype(">f8")

#: the frame a month read yields (``meta`` of the Dask partitions)
BARS_META = pd.DataFrame(
    {c: pd.Series([], dtype="float64") for c in (*_PRICE, "volume")},
    index=pd.DatetimeIndex([], tz="UTC", name="time"),
)


@dataclass(frozen=True)
class SourceTable:
    """A checked source table: its schema, name and whether it has a volume column."""

    schema: str
    pair: str
    has_volume: bool
    time_type: str

    @property
    def table(self) -> str:
        return source_table(self.pair)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"


def inspect_source(cur: psycopg2.extensions.cursor, schema: str, pair: str) -> SourceTable:
    """Check that ``<schema>.m1_<pair>`` exists with usable columns; raise SourceError if not."""
    table = source_table(pair)
    cols = table_columns(cur, schema, table)
    if not cols:
        # information_schema hides tables the role may not read: tell that apart from "missing"
        cur.execute(
            "SELECT has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        )
        row = cur.fetchone()
        if row is not None and not row[0]:
            raise SourceError(
                f"pair {pair}: {schema}.{table} exists but this role may not read it; fix: GRANT USAGE ON SCHEMA "
                f"{schema} and SELECT ON {schema}.{table} to the run's role"
            )
        raise SourceError(
            f"pair {pair}: source table {schema}.{table} does not exist; fix: bqxdask import FILE --pair {pair} "
            f"(or bqxdask seed --pairs {pair}), or remove {pair} from run.pairs"
        )
    if "time" not in cols or cols["time"] not in _TIME_TYPES:
        raise SourceError(
            f"{schema}.{table}.time is missing or not a timestamp (found {cols.get('time', 'no column')}); "
            "fix: the bar open time must be a timestamp or timestamptz column named time"
        )
    for col in _PRICE:
        if col not in cols:
            raise SourceError(f"{schema}.{table} has no column {col}; fix: add {col} (double precision or numeric)")
        if cols[col] not in _NUMERIC_TYPES:
            raise SourceError(f"{schema}.{table}.{col} is {cols[col]}, not a number; fix: make it double precision")
    has_volume = "volume" in cols and cols["volume"] in _NUMERIC_TYPES
    return SourceTable(schema, pair, has_volume, cols["time"])


def _select(src: SourceTable) -> sql.Composed:
    volume = sql.SQL("COALESCE(volume::float8, 0)") if src.has_volume else sql.SQL("0::float8")
    prices = sql.SQL(", ").join(
        sql.SQL("COALESCE({}::float8, 'NaN'::float8)").format(sql.Identifier(c)) for c in _PRICE
    )
    return sql.SQL("SELECT time, {}, {} FROM {}").format(prices, volume, qualified(src.schema, src.table))


def parse_copy_binary(buf: bytes) -> pd.DataFrame:
    """Parse a binary COPY of (time, open, high, low, close, volume) into a bars frame."""
    view = memoryview(buf)
    if bytes(view[:11]) != _SIGNATURE:
        raise SourceError("unexpected COPY output (no PGCOPY signature); fix: report this as a bug")
    ext = int.from_bytes(view[15:19], "big")
    start = 19 + ext
    body = len(buf) - start - 2  # trailer: int16 -1
    if body % ROW_DTYPE.itemsize:
        raise SourceError("unexpected COPY row layout (a NULL time?); fix: make time NOT NULL in the source table")
    rows = np.frombuffer(buf, dtype=ROW_DTYPE, count=body // ROW_DTYPE.itemsize, offset=start)
    if len(rows) and ((rows["n"] != 6).any() or (rows["l_time"] != 8).any()):
        raise SourceError("unexpected COPY row layout; fix: report this as a bug")
    micros = rows["time"].astype("int64") + PG_EPOCH_US
    index = pd.DatetimeIndex(micros.astype("datetime64[us]"), name="time").tz_localize("UTC")
    frame = pd.DataFrame({c: rows[c].astype("float64") for c in (*_PRICE, "volume")}, index=index)
    return frame


def copy_out(cur: psycopg2.extensions.cursor, query: sql.Composable) -> bytes:
    buf = io.BytesIO()
    cur.copy_expert(sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(query).as_string(cur.connection), buf)
    return buf.getvalue()


def read_range(cur: psycopg2.extensions.cursor, src: SourceTable, lo: dt.datetime, hi: dt.datetime) -> pd.DataFrame:
    """All bars with ``lo <= time < hi`` (raw: unvalidated, sorted by time)."""
    where = sql.SQL("{} WHERE time >= {} AND time < {}").format(_select(src), sql.Literal(lo), sql.Literal(hi))
    frame = parse_copy_binary(copy_out(cur, where))
    return frame.sort_index(kind="stable")


def read_before(
    cur: psycopg2.extensions.cursor, src: SourceTable, before: dt.datetime, limit: int
) -> tuple[pd.DataFrame, bool]:
    """The last ``limit`` raw bars before ``before``; the flag says whether the limit was hit."""
    query = sql.SQL("{} WHERE time < {} ORDER BY time DESC LIMIT {}").format(
        _select(src), sql.Literal(before), sql.Literal(int(limit))
    )
    frame = parse_copy_binary(copy_out(cur, query)).sort_index(kind="stable")
    return frame, len(frame) >= limit


def read_from(cur: psycopg2.extensions.cursor, src: SourceTable, start: dt.datetime | None, limit: int) -> pd.DataFrame:
    """The first ``limit`` raw bars at or after ``start`` (None: from the first bar)."""
    # rows without a time are quarantined by the plan (null_time_rows), never read as bars
    cond = (
        sql.SQL(" WHERE time IS NOT NULL") if start is None else sql.SQL(" WHERE time >= {}").format(sql.Literal(start))
    )
    query = sql.SQL("{}{} ORDER BY time LIMIT {}").format(_select(src), cond, sql.Literal(int(limit)))
    return parse_copy_binary(copy_out(cur, query)).sort_index(kind="stable")


def survey(
    cur: psycopg2.extensions.cursor, src: SourceTable, lo: dt.datetime, hi: dt.datetime
) -> dict[str, MonthStats]:
    """Row count, first/last time and an order-independent checksum per calendar month in [lo, hi).

    The checksum is computed by the server (the sum of ``hashtextextended`` of each row's text),
    so a plan knows which months changed without moving the bars. Each month is aggregated
    over its own time range (the primary key's index): grouping by ``date_trunc('month', time)``
    instead made the planner, which cannot estimate that expression, sort every row on disk
    first — 30 % of the query (issue 15). The values are the same.
    """
    row_text = sql.SQL("concat_ws(',', time, open, high, low, close, {})").format(
        sql.Identifier("volume") if src.has_volume else sql.SQL("0")
    )
    # sum(bigint) is exact (numeric) like summing each hash cast to numeric, without the casts
    query = sql.SQL(
        "SELECT to_char(m.start, 'YYYY-MM'), s.n, s.first, s.last, s.checksum"
        " FROM generate_series(date_trunc('month', %(lo)s::timestamptz), %(hi)s::timestamptz - interval '1 microsecond',"
        " interval '1 month') AS m(start)"
        " CROSS JOIN LATERAL (SELECT count(*) AS n, min(time) AS first, max(time) AS last,"
        " sum(hashtextextended({}::text, 0))::text AS checksum FROM {}"
        " WHERE time >= greatest(m.start, %(lo)s::timestamptz)"
        " AND time < least(m.start + interval '1 month', %(hi)s::timestamptz)) AS s"
        " WHERE s.n > 0 ORDER BY m.start"
    ).format(row_text, qualified(src.schema, src.table))
    cur.execute(query, {"lo": lo, "hi": hi})
    out = {}
    for month, rows, first, last, checksum in cur.fetchall():
        out[month] = MonthStats(month, int(rows), _utc(first), _utc(last), checksum or "0")
    return out


#: at most this many NULL-time rows are copied into rejected_bars (all are counted)
MAX_NULL_TIME_ROWS = 1000


def null_time_rows(cur: psycopg2.extensions.cursor, src: SourceTable) -> tuple[int, list[str]]:
    """Source rows whose ``time`` is NULL (SPEC §3: they cannot be placed, so they are quarantined,
    never dropped silently): their count and a description of each (up to MAX_NULL_TIME_ROWS).

    A NOT NULL column (a primary key, say) answers from the catalog without reading the table.
    """
    cur.execute(
        "SELECT a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attname = 'time'",
        (src.schema, src.table),
    )
    row = cur.fetchone()
    if row is None or row[0]:
        return 0, []
    table = qualified(src.schema, src.table)
    cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE time IS NULL").format(table))
    count = int(cur.fetchone()[0])
    if not count:
        return 0, []
    cur.execute(
        sql.SQL("SELECT open, high, low, close FROM {} WHERE time IS NULL LIMIT {}").format(
            table, sql.Literal(MAX_NULL_TIME_ROWS)
        )
    )
    rows = [f"time is NULL (open={o}, high={h}, low={lo}, close={c})" for o, h, lo, c in cur.fetchall()]
    return count, rows


def first_time(cur: psycopg2.extensions.cursor, src: SourceTable) -> dt.datetime | None:
    cur.execute(sql.SQL("SELECT min(time) FROM {}").format(qualified(src.schema, src.table)))
    return _utc(cur.fetchone()[0])


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
