"""Clean bars into ``<schema>.m1_<pair>``: COPY-staged, idempotent, without ``ON CONFLICT`` (SPEC §7).

Used by ``import`` (changed bars are updated) and ``seed`` (only new times are inserted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import psycopg2.extensions
from psycopg2 import sql

from ..db.connect import qualified, table_columns, table_exists
from ..db.schema import create_source_table, source_table
from ..db.writer import copy_bars
from ..errors import SourceError
from ..quality import PRICE_COLUMNS

_STAGE = "bqx_ingest_stage"


@dataclass(frozen=True)
class MergeCounts:
    """What :func:`merge_bars` did with the staged bars."""

    inserted: int
    updated: int
    unchanged: int


def prepare_target(cur: psycopg2.extensions.cursor, schema: str, pair: str) -> bool:
    """Create ``<schema>.m1_<pair>`` if missing and check its columns; return whether it has volume."""
    table = source_table(pair)
    if not table_exists(cur, schema, table):
        create_source_table(cur, schema, pair)
    cols = table_columns(cur, schema, table)
    if cols.get("time") not in ("timestamp with time zone", "timestamp without time zone"):
        raise SourceError(
            f"{schema}.{table}.time is {cols.get('time', 'missing')}; fix: the table needs a timestamptz "
            f"column time (drop or rename the table and import again to have it created)"
        )
    for col in PRICE_COLUMNS:
        if cols.get(col) not in ("double precision", "numeric", "real"):
            raise SourceError(
                f"{schema}.{table}.{col} is {cols.get(col, 'missing')}; fix: the table needs a double precision "
                f"column {col} (drop or rename the table and import again to have it created)"
            )
    return "volume" in cols


def merge_bars(
    cur: psycopg2.extensions.cursor, schema: str, pair: str, bars: pd.DataFrame, *, update_existing: bool
) -> MergeCounts:
    """Merge clean bars (unique times) into ``<schema>.m1_<pair>`` through a COPY-staged temp table.

    ``update_existing=True`` (import): bars whose values differ from the table's are updated.
    ``update_existing=False`` (seed): only times absent from the table are inserted.
    Works without a primary key on the target; the caller commits.
    """
    target = qualified(schema, source_table(pair))
    cols = table_columns(cur, schema, source_table(pair))
    has_volume = "volume" in cols
    if not update_existing and len(bars) and _copy_compatible(cols) and bars["volume"].notna().all():
        # fast path (seed into an empty range): COPY straight into the table, no staging
        cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
        cur.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE time >= %s AND time <= %s)").format(target),
            (bars["time"].min().to_pydatetime(), bars["time"].max().to_pydatetime()),
        )
        if not cur.fetchone()[0]:
            copy_bars(cur, target, bars)
            return MergeCounts(len(bars), 0, 0)
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (time timestamptz NOT NULL, open float8, high float8,"
            " low float8, close float8, volume bigint) ON COMMIT DELETE ROWS"
        ).format(sql.Identifier(_STAGE))
    )
    cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(_STAGE)))
    copy_bars(cur, sql.Identifier(_STAGE), bars)
    staged = len(bars)
    if not staged:
        return MergeCounts(0, 0, 0)
    cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(_STAGE)))
    # SHARE ROW EXCLUSIVE: readers go on, a concurrent import or seed of the same table waits
    cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
    stage = sql.Identifier(_STAGE)
    updated = 0
    if update_existing:
        prices = sql.SQL(", ").join(sql.Identifier(c) for c in PRICE_COLUMNS)
        s_prices = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in PRICE_COLUMNS)
        t_prices = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in PRICE_COLUMNS)
        if has_volume:  # -1 marks "no volume in the file": keep the table's
            set_cols = sql.SQL("({}, volume) = ({}, COALESCE(NULLIF(s.volume, -1), t.volume))").format(prices, s_prices)
            differs = sql.SQL(
                "(({}) IS DISTINCT FROM ({}) OR (s.volume <> -1 AND t.volume IS DISTINCT FROM s.volume))"
            ).format(t_prices, s_prices)
        else:
            set_cols = sql.SQL("({}) = ({})").format(prices, s_prices)
            differs = sql.SQL("({}) IS DISTINCT FROM ({})").format(t_prices, s_prices)
        cur.execute(
            sql.SQL(
                "WITH u AS (UPDATE {target} AS t SET {set_cols} FROM {stage} AS s"
                " WHERE t.time = s.time AND {differs} RETURNING s.time)"
                " SELECT count(DISTINCT time) FROM u"
            ).format(target=target, set_cols=set_cols, stage=stage, differs=differs)
        )
        updated = int(cur.fetchone()[0])
    columns = ["time", *PRICE_COLUMNS] + (["volume"] if has_volume else [])
    values = [sql.SQL("s.{}").format(sql.Identifier(c)) for c in ["time", *PRICE_COLUMNS]]
    if has_volume:
        values.append(sql.SQL("COALESCE(NULLIF(s.volume, -1), 0)"))
    cur.execute(
        sql.SQL(
            "INSERT INTO {target} ({cols}) SELECT {values} FROM {stage} AS s"
            " WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.time = s.time)"
        ).format(
            target=target,
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(values),
            stage=stage,
        )
    )
    inserted = cur.rowcount
    cur.execute(sql.SQL("TRUNCATE {}").format(stage))
    return MergeCounts(inserted, updated, staged - inserted - updated)


def _copy_compatible(cols: Mapping[str, str]) -> bool:
    """Whether binary COPY of our six columns fits the table's types exactly."""
    wanted = {"time": "timestamp with time zone", **{c: "double precision" for c in PRICE_COLUMNS}, "volume": "bigint"}
    return all(cols.get(c) == t for c, t in wanted.items())
