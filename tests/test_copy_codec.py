"""``db.writer.copy_buffer`` against PostgreSQL's binary COPY format, decoded here (SPEC §6).

The decoder below is written from the format's documentation
(https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4), not from the
encoder: an 11-byte signature, a 32-bit flags field and a 32-bit header-extension length;
per row a 16-bit field count, then per field a 32-bit length (−1 for NULL) and that many
bytes; a 16-bit −1 trailer. timestamptz is int64 microseconds since 2000-01-01 UTC, float8 an
IEEE-754 double, all big-endian. COPY does not care about row order (the encoder groups rows
by their NULL pattern), so rows are compared as multisets.

Blocks are drawn by ``hypothesis``: NaN (any payload) must become NULL, ±inf, subnormals
and −0.0 must come back bit for bit, times far before 1970 and far after 2100 too, with every
mix of NULL patterns per row. One test sends drawn blocks through the embedded PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from psycopg2 import sql

from bqxdask.db.connect import connection
from bqxdask.db.writer import CopyReader, copy_buffer

UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
PG_EPOCH_FROM_UNIX_US = (PG_EPOCH - UNIX_EPOCH) // dt.timedelta(microseconds=1)
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: timestamptz's range (4713 BC .. 294276 AD) in Unix microseconds, a little inside it
PG_TIME_RANGE = (-210_000_000_000_000_000, 9_000_000_000_000_000_000)

NAN_PAYLOADS = st.sampled_from([np.nan, -np.nan, struct.unpack(">d", bytes.fromhex("7ff4000000000001"))[0]])
VALUES = st.one_of(
    NAN_PAYLOADS,
    st.sampled_from([np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 2.2250738585072009e-308, 1.7976931348623157e308]),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True, width=64),
)

#: int64 Unix microseconds far before 1970 and far after 2100, without overflowing the epoch shift
ANY_TIME = st.integers(-(2**62), 2**62)


def decode(payload: bytes, ncols: int) -> list[tuple[int, tuple]]:
    """Rows ``(unix microseconds, (float bits or None, …))`` of a binary COPY payload."""
    assert payload[:11] == SIGNATURE
    flags, ext = struct.unpack_from(">iI", payload, 11)
    assert flags == 0
    pos = 19 + ext
    rows = []
    while True:
        (nfields,) = struct.unpack_from(">h", payload, pos)
        pos += 2
        if nfields == -1:
            break
        assert nfields == ncols + 1, f"row with {nfields} fields, expected {ncols + 1}"
        fields = []
        for _ in range(nfields):
            (length,) = struct.unpack_from(">i", payload, pos)
            pos += 4
            if length == -1:
                fields.append(None)
                continue
            assert length == 8, f"field of {length} bytes"
            fields.append(payload[pos : pos + 8])
            pos += 8
        assert fields[0] is not None, "a NULL time"
        (pg_us,) = struct.unpack(">q", fields[0])
        rows.append((pg_us + PG_EPOCH_FROM_UNIX_US, tuple(fields[1:])))
    assert pos == len(payload), f"{len(payload) - pos} bytes after the trailer"
    return rows


def expected_rows(times: np.ndarray, values: np.ndarray) -> list[tuple[int, tuple]]:
    """What COPY must carry: the time, and per value its big-endian bits, NaN as NULL."""
    return [
        (int(t), tuple(None if np.isnan(v) else struct.pack(">d", v) for v in row))
        for t, row in zip(times.tolist(), values.tolist())
    ]


def multiset(rows: list[tuple[int, tuple]]) -> list:
    return sorted(rows, key=lambda r: (r[0], [b"" if f is None else b"\x01" + f for f in r[1]]))


@st.composite
def blocks(draw, *, times=ANY_TIME, max_rows: int = 40):
    """(times, values): int64 Unix µs and an N × C float64 block whose rows mix NULL patterns."""
    ncols = draw(st.integers(1, 6))
    n = draw(st.integers(0, max_rows))
    t = np.array(draw(st.lists(times, min_size=n, max_size=n)), dtype="int64")
    values = draw(hnp.arrays(np.float64, (n, ncols), elements=VALUES))
    # whole rows of NULL and NULL-free rows are the common cases of a feature table
    kinds = draw(st.lists(st.sampled_from(["drawn", "clean", "null"]), min_size=n, max_size=n))
    for i, kind in enumerate(kinds):
        if kind == "clean":
            values[i] = np.where(np.isnan(values[i]), 1.0, values[i])
        elif kind == "null":
            values[i] = np.nan
    return t, values


@settings(max_examples=300, deadline=None, database=None)
@given(blocks())
def test_copy_buffer_decodes_to_the_same_rows(block):
    times, values = block
    got = decode(copy_buffer(times, values), values.shape[1])
    assert multiset(got) == multiset(expected_rows(times, values))


def test_copy_buffer_by_hand():
    """One block spelled out: the header, a NULL-free row, a row with a NULL, the trailer."""
    times = np.array([PG_EPOCH_FROM_UNIX_US, PG_EPOCH_FROM_UNIX_US - 1], dtype="int64")
    payload = copy_buffer(times, np.array([[1.5, -np.inf], [np.nan, 5e-324]]))
    header = SIGNATURE + bytes(8)
    row0 = (
        b"\x00\x03"
        + b"\x00\x00\x00\x08"
        + bytes(8)
        + b"\x00\x00\x00\x08"
        + struct.pack(">d", 1.5)
        + b"\x00\x00\x00\x08"
        + struct.pack(">d", -np.inf)
    )
    row1 = (
        b"\x00\x03"
        + b"\x00\x00\x00\x08"
        + struct.pack(">q", -1)
        + b"\xff\xff\xff\xff"
        + b"\x00\x00\x00\x08"
        + struct.pack(">d", 5e-324)
    )
    assert payload == header + row0 + row1 + b"\xff\xff"


def test_the_copy_reader_hands_out_the_payload_in_order_then_nothing():
    payload = copy_buffer(np.arange(3, dtype="int64"), np.array([[1.0], [np.nan], [2.0]]))
    reader = CopyReader(payload)
    chunks = [reader.read(5) for _ in range(len(payload) // 5 + 1)]
    assert all(type(c) is bytes for c in chunks)  # psycopg2 takes bytes only
    assert [len(c) for c in chunks[:-1]] == [5] * (len(chunks) - 1)
    assert b"".join(chunks) == payload
    assert reader.read(5) == b""
    assert CopyReader(payload).read() == CopyReader(payload).read(-1) == payload


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(times=st.integers(*PG_TIME_RANGE), max_rows=25))
def test_copy_buffer_round_trips_through_postgresql(pg_url, block):
    """The server accepts the payload and stores exactly those rows (time to the microsecond,
    values to the bit, NaN as NULL): read back as text, which PostgreSQL prints round-trip exact."""
    times, values = block
    ncols = values.shape[1]
    table = sql.Identifier("copy_codec", f"block_{ncols}")
    cols = [sql.Identifier(f"v{j}") for j in range(ncols)]
    with connection(pg_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS copy_codec")
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(
            sql.SQL("CREATE TABLE {} (time timestamptz, {})").format(
                table, sql.SQL(", ").join(sql.SQL("{} float8").format(c) for c in cols)
            )
        )
        # as replace_unit sends it, in reads of a few bytes: rows cross the chunks' edges
        cur.copy_expert(
            sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(table).as_string(conn),
            CopyReader(copy_buffer(times, values)),
            size=7,
        )
        cur.execute(
            sql.SQL("SELECT (EXTRACT(EPOCH FROM time) * 1000000)::int8, {} FROM {}").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in cols), table
            )
        )
        stored = [
            (t, tuple(None if v is None else struct.pack(">d", float(v)) for v in rest)) for t, *rest in cur.fetchall()
        ]
        conn.rollback()
    assert multiset(stored) == multiset(expected_rows(times, values))
