"""Checkpoints (SPEC §6): what a finished unit records, where, and when it still stands.

A *unit* is one (family, pair, month) output. When it is written, one row of
``<output_schema>.checkpoints`` records the config hash of the family and the *fingerprint*
of the source bars it was computed from, in the same transaction as its SQL rows; its Parquet
file carries the same two values in its metadata. A later run skips the unit when both still
match (:func:`checkpoint_current`) — for the plan, and again under the unit's lock for a run
that waited while another one wrote it (SPEC §11).

The fingerprint:

- a month's is :attr:`MonthStats.fingerprint` — its row count, first and last time and a
  checksum of its rows, as the server's survey reports them (:func:`bqxdask.db.source.survey`);
- a unit's is :func:`unit_fingerprint` — the baseline, its own month's fingerprint and those of
  the months its warm-up reads, so new bars recompute the units they touch and the units whose
  warm-up they feed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg2.extensions
from psycopg2 import sql

from .db.connect import qualified, table_exists
from .errors import OutputError

log = logging.getLogger(__name__)

#: ``(family, pair, month)``
UnitKey = tuple[str, str, str]

_COLUMNS = "family, pair, month, config_hash, fingerprint, rows, rejected, sql_written, parquet_written"


# --------------------------------------------------------------------------------------------
# The record and the fingerprint
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """One row of ``<output_schema>.checkpoints``: a unit as it was written."""

    family: str
    pair: str
    month: str
    config_hash: str
    fingerprint: str
    rows: int
    rejected: int
    sql_written: bool
    parquet_written: bool


@dataclass(frozen=True)
class MonthStats:
    """What the survey knows of one month of one pair's source rows (raw, before quarantine)."""

    month: str
    rows: int
    first: dt.datetime | None
    last: dt.datetime | None
    checksum: str

    @property
    def fingerprint(self) -> str:
        first = self.first.isoformat() if self.first else "-"
        last = self.last.isoformat() if self.last else "-"
        return f"{self.rows}|{first}|{last}|{self.checksum}"


def unit_fingerprint(month: str, stats: Mapping[str, MonthStats], read_rows: int, baseline_key: str) -> str:
    """Hash of the month's rows, the rows of the months its warm-up draws on, and the baseline.

    ``read_rows``: raw rows read before the month (the warm-up and its slack); the months before
    ``month`` are taken, newest first, until they hold that many.
    """
    parts = [baseline_key]
    own = stats.get(month)
    parts.append(f"{month}:{own.fingerprint if own else 'empty'}")
    need = read_rows
    for m in sorted((m for m in stats if m < month), reverse=True):
        if need <= 0:
            break
        parts.append(f"{m}:{stats[m].fingerprint}")
        need -= stats[m].rows
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------
# When a unit's checkpoint still stands
# --------------------------------------------------------------------------------------------
def checkpoint_current(
    ck: Checkpoint | None, config_hash: str, fingerprint: str, *, write_sql: bool, write_parquet: bool, parquet_ok: bool
) -> bool:
    """Whether a unit's checkpoint still stands for this config and these source bars (SPEC §6).

    ``parquet_ok``: the unit's Parquet file exists and its metadata carries the same config
    hash and fingerprint (:func:`parquet_matches`).
    """
    return (
        ck is not None
        and ck.config_hash == config_hash
        and ck.fingerprint == fingerprint
        and (ck.sql_written or not write_sql)
        and (not write_parquet or (ck.parquet_written and parquet_ok))
    )


def parquet_matches(parquet_dir: str, ck: Checkpoint) -> bool:
    """Whether the unit's Parquet file exists with ``ck``'s config hash and fingerprint.

    Raises OutputError when the file is unreadable (corrupt or half-written).
    """
    # on use: seed and import reach this module through db.writer and never read Parquet
    from .outputs import parquet

    meta = parquet.unit_metadata(parquet_dir, ck.family, ck.pair, ck.month)
    return bool(meta) and meta.get("config_hash") == ck.config_hash and meta.get("fingerprint") == ck.fingerprint


def parquet_checks(
    parquet_dir: str, checkpoints: Mapping[UnitKey, Checkpoint], families: Sequence[str], pairs: Sequence[str]
) -> dict[UnitKey, bool]:
    """:func:`parquet_matches` for each checkpoint of ``families`` × ``pairs`` (the plan's input).

    An unreadable file is logged and counts as missing: its unit is recomputed.
    """
    ok = {}
    for key, ck in checkpoints.items():
        if ck.family not in families or ck.pair not in pairs:
            continue
        try:
            ok[key] = parquet_matches(parquet_dir, ck)
        except OutputError as exc:
            log.warning("%s — it will be recomputed", exc)
            ok[key] = False
    return ok


def unit_current(
    ck: Checkpoint | None, config_hash: str, fingerprint: str, *, write_sql: bool, parquet_dir: str | None
) -> bool:
    """:func:`checkpoint_current` with the Parquet side read from ``parquet_dir`` (None: no Parquet output).

    Under the unit's lock, for a run that waited while another one may have written the unit;
    an unreadable Parquet file means "not current".
    """
    if ck is None:
        return False
    parquet_ok = False
    if parquet_dir is not None:
        try:
            parquet_ok = parquet_matches(parquet_dir, ck)
        except OutputError:
            parquet_ok = False
    return checkpoint_current(
        ck, config_hash, fingerprint, write_sql=write_sql, write_parquet=parquet_dir is not None, parquet_ok=parquet_ok
    )


# --------------------------------------------------------------------------------------------
# Storage: <output_schema>.checkpoints
# --------------------------------------------------------------------------------------------
def create_table(cur: psycopg2.extensions.cursor, schema: str) -> None:
    """``<schema>.checkpoints`` unless it exists (the caller holds the schema's DDL lock)."""
    if table_exists(cur, schema, "checkpoints"):
        return
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " family text NOT NULL, pair text NOT NULL, month text NOT NULL,"
            " config_hash text NOT NULL, fingerprint text NOT NULL, rows bigint NOT NULL,"
            " rejected bigint NOT NULL, run_id text NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),"
            " sql_written boolean NOT NULL, parquet_written boolean NOT NULL,"
            " PRIMARY KEY (family, pair, month))"
        ).format(qualified(schema, "checkpoints"))
    )


def upsert_checkpoint(cur: psycopg2.extensions.cursor, schema: str, ck: Checkpoint, run_id: str) -> None:
    """Record ``ck`` as written by ``run_id`` now (the caller commits, with the unit's rows)."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (family, pair, month, config_hash, fingerprint, rows, rejected, run_id, written_at,"
            " sql_written, parquet_written) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s)"
            " ON CONFLICT (family, pair, month) DO UPDATE SET config_hash = EXCLUDED.config_hash,"
            " fingerprint = EXCLUDED.fingerprint, rows = EXCLUDED.rows, rejected = EXCLUDED.rejected,"
            " run_id = EXCLUDED.run_id, written_at = now(), sql_written = EXCLUDED.sql_written,"
            " parquet_written = EXCLUDED.parquet_written"
        ).format(qualified(schema, "checkpoints")),
        (
            ck.family,
            ck.pair,
            ck.month,
            ck.config_hash,
            ck.fingerprint,
            ck.rows,
            ck.rejected,
            run_id,
            ck.sql_written,
            ck.parquet_written,
        ),
    )


def load_checkpoints(cur: psycopg2.extensions.cursor, schema: str, pairs: Sequence[str]) -> dict[UnitKey, Checkpoint]:
    """Every checkpoint of ``pairs``, by (family, pair, month)."""
    cur.execute(
        sql.SQL("SELECT " + _COLUMNS + " FROM {} WHERE pair = ANY(%s)").format(qualified(schema, "checkpoints")),
        (list(pairs),),
    )
    return {(r[0], r[1], r[2]): Checkpoint(*r) for r in cur.fetchall()}


def load_checkpoint(
    cur: psycopg2.extensions.cursor,
    schema: str,
    family: str,
    pair: str,
    month: str,
    *,
    other_than: str,
    since: dt.datetime | None = None,
) -> Checkpoint | None:
    """The unit's checkpoint if another run (not ``other_than``) wrote it, at or after ``since``."""
    cur.execute(
        sql.SQL(
            "SELECT " + _COLUMNS + " FROM {} WHERE family = %s AND pair = %s AND month = %s AND run_id <> %s"
            " AND (%s::timestamptz IS NULL OR written_at >= %s::timestamptz)"
        ).format(qualified(schema, "checkpoints")),
        (family, pair, month, other_than, since, since),
    )
    row = cur.fetchone()
    return Checkpoint(*row) if row else None
