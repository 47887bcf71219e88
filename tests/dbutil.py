"""Test helpers that put bars into the real PostgreSQL (independently of bqxdask's importer)."""

from __future__ import annotations

import io

import pandas as pd
from psycopg2 import sql

from bqxdask.db.connect import connection


def load_bars(
    url: str,
    schema: str,
    pair: str,
    bars: pd.DataFrame,
    *,
    primary_key: bool = True,
    time_type: str = "timestamptz",
    replace: bool = True,
) -> None:
    """Create ``schema.m1_<pair>`` and COPY ``bars`` (columns time, open, high, low, close[, volume])."""
    table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(f"m1_{pair}"))
    pk = " PRIMARY KEY" if primary_key else ""
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        if replace:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (time " + time_type + pk + ", open double precision, "
                "high double precision, low double precision, close double precision, volume bigint)"
            ).format(table)
        )
        frame = bars.copy()
        if "volume" not in frame:
            frame["volume"] = 0
        frame = frame[["time", "open", "high", "low", "close", "volume"]]
        if time_type == "timestamp":
            frame["time"] = frame["time"].dt.tz_convert("UTC").dt.tz_localize(None)
        buf = io.StringIO()
        frame.to_csv(buf, index=False, header=False, na_rep="")
        buf.seek(0)
        cur.copy_expert(
            sql.SQL("COPY {} (time, open, high, low, close, volume) FROM STDIN CSV").format(table).as_string(conn), buf
        )
        conn.commit()


def query(url: str, text: str, params=None) -> list[tuple]:
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute(text, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


def read_table(url: str, schema: str, table: str) -> pd.DataFrame:
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {}.{} ORDER BY time").format(sql.Identifier(schema), sql.Identifier(table)))
        names = [d.name for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame = frame.set_index("time")
    return frame.astype("float64")
