"""The index baseline B per pair (SPEC §4.1), stored in ``<output_schema>.baseline_rates``.

B is found once — the close of the first accepted bar at or after ``index.baseline`` — and
reused by every later run, so loading older or newer bars never moves the index.
"""

from __future__ import annotations

import datetime as dt

import psycopg2.extensions
from psycopg2 import sql

from ..config import parse_time
from ..errors import ConfigError, SourceError
from ..plan import Baseline
from ..quality import validate_bars
from .connect import qualified, table_exists
from .source import SourceTable, read_from

_BATCH = 10_000


def resolve_baseline(
    conn: psycopg2.extensions.connection, src: SourceTable, output_schema: str, setting: str, *, store: bool = True
) -> Baseline:
    """Read B from ``baseline_rates`` or find it — and store it unless ``store`` is false (dry runs)."""
    table = qualified(output_schema, "baseline_rates")
    with conn.cursor() as cur:
        row = None
        if table_exists(cur, output_schema, "baseline_rates"):
            cur.execute(sql.SQL("SELECT time, close FROM {} WHERE pair = %s").format(table), (src.pair,))
            row = cur.fetchone()
        if row is not None:
            stored = Baseline(src.pair, row[0].astimezone(dt.timezone.utc), float(row[1]))
            if setting != "first" and stored.time < parse_time(setting):
                raise ConfigError(
                    f"index.baseline = {setting} but {output_schema}.baseline_rates already holds {src.pair} at "
                    f"{stored.time.isoformat()}; fix: delete that row and rerun with --full-refresh to rebase the index"
                )
            conn.rollback()
            return stored
        start = None if setting == "first" else parse_time(setting)
        found = _first_accepted(cur, src, start)
        if not store:
            conn.rollback()
            return found
        cur.execute(
            sql.SQL("INSERT INTO {} (pair, time, close) VALUES (%s, %s, %s) ON CONFLICT (pair) DO NOTHING").format(
                table
            ),
            (src.pair, found.time, found.close),
        )
        cur.execute(sql.SQL("SELECT time, close FROM {} WHERE pair = %s").format(table), (src.pair,))
        row = cur.fetchone()
    conn.commit()
    return Baseline(src.pair, row[0].astimezone(dt.timezone.utc), float(row[1]))


def _first_accepted(cur: psycopg2.extensions.cursor, src: SourceTable, start: dt.datetime | None) -> Baseline:
    limit = _BATCH
    while True:
        raw = read_from(cur, src, start, limit)
        full = len(raw) >= limit
        if full:
            raw = raw[raw.index < raw.index[-1]]  # the newest time may continue beyond the limit
        accepted, _ = validate_bars(raw)
        if len(accepted):
            first = accepted.index[0]
            return Baseline(src.pair, first.to_pydatetime(), float(accepted["close"].iloc[0]))
        if not full:
            where = "" if start is None else f" at or after {start.isoformat()}"
            raise SourceError(
                f"{src.label} has no valid bar{where} to take the index baseline from; "
                "fix: load bars for this pair (bqxdask import/seed) or change index.baseline"
            )
        limit *= 4
