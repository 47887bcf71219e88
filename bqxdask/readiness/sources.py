"""The source tables group: per pair, present, readable, its rows and span (SPEC §3, §8).

Read on the connection the run reads from (``database.read_url`` when set). The rows per
requested month are the facts the later groups size the run with.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..calendar import month_bounds
from ..config import Config
from .findings import FAIL, OK, WARN, Check, failed

GROUP = "source tables"


def sources_group(cur: Any, cfg: Config) -> tuple[dict[str, dict[str, int]], list[Check]]:
    """(rows per requested month per pair that could be read, one line per pair)."""
    months = cfg.months
    lo, _ = month_bounds(months[0])
    _, hi = month_bounds(months[-1])
    cur.execute("SELECT current_user")
    user = cur.fetchone()[0]
    rows: dict[str, dict[str, int]] = {}
    checks = []
    for pair in cfg.run.pairs:
        try:
            counted, line = source_pair(cur, cfg, pair, user, lo, hi)
        except Exception as exc:  # one pair's surprise must not hide the others
            counted, line = None, failed(GROUP, pair, exc)
        if counted is not None:
            rows[pair] = counted
        checks.append(line)
    return rows, checks


def source_pair(
    cur: Any, cfg: Config, pair: str, user: str, lo: dt.datetime, hi: dt.datetime
) -> tuple[dict[str, int] | None, Check]:
    """One pair's table: present and readable, its rows, its span, its rows in the requested months."""
    from psycopg2 import sql

    from ..db.connect import qualified
    from ..db.schema import source_table
    from ..db.source import inspect_source
    from ..errors import SourceError

    schema, months = cfg.database.source_schema, cfg.months
    label = f"{schema}.{source_table(pair)}"
    # pg_class is readable by every role; information_schema (used by inspect_source) hides
    # the tables a role may not read, which would make a missing GRANT look like a missing table
    cur.execute(
        "SELECT c.oid, has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT')"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, source_table(pair)),
    )
    found = cur.fetchone()
    if found is not None and not (found[1] and found[2]):
        lacks = "USAGE on schema " + schema if not found[1] else "SELECT on it"
        return None, Check(
            GROUP,
            pair,
            FAIL,
            f"{label} exists but role {user} lacks {lacks}; fix: GRANT USAGE ON "
            f"SCHEMA {schema} TO {user}; GRANT SELECT ON {label} TO {user}",
            {"table": label, "exists": True, "select": False},
        )
    try:
        src = inspect_source(cur, schema, pair)
    except SourceError as exc:
        return None, Check(GROUP, pair, FAIL, str(exc), {"table": label, "exists": found is not None})
    table = qualified(schema, src.table)
    cur.execute(sql.SQL("SELECT count(*), min(time), max(time) FROM {}").format(table))
    total, first, last = cur.fetchone()
    cur.execute(
        sql.SQL(
            "SELECT to_char(date_trunc('month', time), 'YYYY-MM'), count(*) FROM {}"
            " WHERE time >= %s AND time < %s GROUP BY 1 ORDER BY 1"
        ).format(table),
        (lo, hi),
    )
    counted = {m: int(n) for m, n in cur.fetchall()}
    per_month = {m: counted.get(m, 0) for m in months}
    in_run = sum(per_month.values())
    span = f"{utc_minute(first)[:-4]} → {utc_minute(last)}" if total else "no bars"
    req = f"{months[0]}: {in_run:,} rows" if len(months) == 1 else f"{len(months)} months: {in_run:,} rows"
    tz = "" if src.time_type.endswith("with time zone") else " (time without zone, read as UTC)"
    values = {
        "table": src.label,
        "exists": True,
        "select": True,
        "rows": int(total),
        "first": first.isoformat() if first else None,
        "last": last.isoformat() if last else None,
        "rows_in_months": per_month,
        "time_type": src.time_type,
        "has_volume": src.has_volume,
    }
    detail = f"{src.label}: {int(total):,} rows, {span}{tz}; {req}"
    empty = [m for m, n in per_month.items() if n == 0]
    if empty:
        shown = ", ".join(empty[:4]) + (f" (+{len(empty) - 4})" if len(empty) > 4 else "")
        return per_month, Check(
            GROUP,
            pair,
            WARN,
            f"{detail}; no rows in {shown}: the run reports those units as "
            f"failed; fix: bqxdask import/seed --pairs {pair} for them, or narrow "
            "run.start/run.end",
            values,
        )
    return per_month, Check(GROUP, pair, OK, detail, values)


def utc_minute(value: dt.datetime | None) -> str:
    """``2017-02-28 23:59 UTC`` (``?`` for None); a naive time is taken as UTC."""
    if value is None:
        return "?"
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return f"{value:%Y-%m-%d %H:%M} UTC"
