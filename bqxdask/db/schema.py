"""Names and DDL of every table bqxdask reads or writes (SPEC §3, §6).

Identifiers are validated here and quoted with :class:`psycopg2.sql.Identifier`; no SQL text
is ever built from a user string.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from ..checkpoints import create_table as create_checkpoints_table
from ..config import validate_identifier, validate_pair
from .connect import qualified, table_exists
from .locks import xact_lock

SOURCE_COLUMNS = ("time", "open", "high", "low", "close", "volume")


def source_table(pair: str) -> str:
    return f"m1_{validate_pair(pair, 'pair')}"


def feature_table(family: str, pair: str) -> str:
    return f"{family}_{validate_pair(pair, 'pair')}"


def create_source_table(cur: psycopg2.extensions.cursor, schema: str, pair: str) -> None:
    """``<schema>.m1_<pair>`` as seed and import create it (time is the primary key)."""
    validate_identifier(schema, "database.source_schema")
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " time timestamptz PRIMARY KEY,"
            " open double precision, high double precision, low double precision, close double precision,"
            " volume bigint NOT NULL DEFAULT 0)"
        ).format(qualified(schema, source_table(pair)))
    )


def create_output_schema(cur: psycopg2.extensions.cursor, schema: str) -> None:
    """The output schema with its bookkeeping tables (baselines, rejected bars, checkpoints).

    Objects that exist are not touched, so a role that may only write into tables an
    administrator created beforehand needs no CREATE privilege at all.
    """
    validate_identifier(schema, "database.output_schema")
    # concurrent CREATE … IF NOT EXISTS can still collide in the catalogs: one run at a time here
    xact_lock(cur, schema, "ddl")
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    if not table_exists(cur, schema, "baseline_rates"):
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (pair text PRIMARY KEY, time timestamptz NOT NULL,"
                " close double precision NOT NULL)"
            ).format(qualified(schema, "baseline_rates"))
        )
    if not table_exists(cur, schema, "rejected_bars"):
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (pair text NOT NULL, time timestamptz, reason text NOT NULL,"
                " run_id text NOT NULL)"
            ).format(qualified(schema, "rejected_bars"))
        )
        cur.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS rejected_bars_pair_time ON {} (pair, time)").format(
                qualified(schema, "rejected_bars")
            )
        )
    if not table_exists(cur, schema, "runs"):  # who is running: for waiters and bqxdask check (§11)
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (run_id text PRIMARY KEY, host text, pid integer,"
                " started_at timestamptz NOT NULL DEFAULT now())"
            ).format(qualified(schema, "runs"))
        )
    create_checkpoints_table(cur, schema)
